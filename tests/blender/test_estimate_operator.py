"""Estimate / Cancel / Check worker inside Blender (headless bpy), on the extension installed from its zip.

The worker's Python is set in the add-on preferences to small wrapper scripts: one that runs the real
``python -m core.worker`` with a fake pipeline (its ``ANIME_MMD_FAKE_PIPELINE`` test hook), and ones that run the
misbehaving fake workers of ``tests/worker/fake_workers``. Each wrapper logs its start, so the tests see when the cache
spared a run. In background mode the Estimate operator runs to the end synchronously (``op_estimate.run_blocking``);
the Cancel test drives an :class:`EstimateJob` step by step the way the modal timer does.
"""
from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path

import pytest

from conftest import BPY_MISSING_REASON, PACKAGE, REPO

bpy = pytest.importorskip("bpy", reason=BPY_MISSING_REASON)

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the fake worker wrappers are shell scripts")

FAKES = REPO / "tests" / "worker" / "fake_workers"


def wrapper(tmp_path: Path, name: str, *, pipeline: str | None = None, fake_mode: str | None = None,
            python_flags: str = "") -> tuple[Path, Path]:
    """An executable that stands in for the worker's interpreter; returns ``(script, start log)``."""
    log = tmp_path / f"{name}.starts"
    lines = ["#!/bin/sh", f"echo start >> {shlex.quote(str(log))}",
             f'export PYTHONPATH="$PYTHONPATH:{FAKES}"']
    if pipeline:
        lines.append(f"export ANIME_MMD_FAKE_PIPELINE=fake_pipeline:{pipeline}")
    if fake_mode:  # ignore "-m core.worker": run the fake worker instead
        lines.append(f"exec {shlex.quote(sys.executable)} {shlex.quote(str(FAKES / 'fake_worker.py'))} {fake_mode}")
    else:
        lines.append(f'exec {shlex.quote(sys.executable)} {python_flags} "$@"')
    script = tmp_path / name
    script.write_text("\n".join(lines) + "\n")
    script.chmod(0o755)
    return script, log


def starts(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


@pytest.fixture
def est(addon, scene, tmp_path):
    """The installed ``op_estimate`` module with preferences pointing the cache at ``tmp_path/cache``, and a
    3-byte 'video' set on the scene (the fake pipelines do not decode it)."""
    p = addon.prefs.get(bpy.context)
    assert p is not None
    p.cache_dir = str(tmp_path / "cache")
    p.device = "CPU"
    video = tmp_path / "dance.mp4"
    video.write_bytes(b"mp4")
    props = scene.anime_mmd
    props.video_path = str(video)
    props.backend, props.lifter = "mediapipe", "native"
    props.start_time = props.end_time = 0.0
    props.use_crop = False
    props.result_npz = ""
    yield addon.op_estimate
    p.worker_python = ""
    p.cache_dir = ""
    p.worker_status = ""
    assert addon.op_estimate._ACTIVE is None  # no job left behind


def set_python(script: Path | str) -> None:
    """Point the add-on preference "Worker Python" at ``script``."""
    bpy.context.preferences.addons[PACKAGE].preferences.worker_python = str(script)


def cache_files(tmp_path: Path) -> list[str]:
    d = tmp_path / "cache"
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def test_estimate_operator_runs_the_worker_and_caches(est, scene, tmp_path, addon):
    script, log = wrapper(tmp_path, "py_ok", pipeline="ok")
    set_python(script)
    props = scene.anime_mmd
    assert bpy.ops.anime_mmd.estimate() == {"FINISHED"}
    assert starts(log) == 1
    npz = Path(props.result_npz)
    assert npz.parent == tmp_path / "cache" and npz.suffix == ".npz" and len(npz.stem) == 64
    poses = addon.core("pose_io").load(npz)
    assert len(poses) == 20 and int(poses.detected.sum()) == 19
    assert not props.is_running and props.progress == pytest.approx(1.0) and props.progress_stage == "done"
    assert props.status.startswith("Estimated 20 frames (19 with the dancer found)")
    assert cache_files(tmp_path) == [npz.name]  # nothing else: no temporaries

    # Same detection settings, other retargeting settings: the cache answers, the worker does not start.
    props.result_npz = ""
    props.smoothing = 0.9
    assert bpy.ops.anime_mmd.estimate() == {"FINISHED"}
    assert starts(log) == 1 and props.result_npz == str(npz)
    assert "cached" in props.status and "20 frames" in props.status

    # A detection setting changed: detect again, into another cache file.
    props.start_time = 0.5
    assert bpy.ops.anime_mmd.estimate() == {"FINISHED"}
    assert starts(log) == 2 and props.result_npz != str(npz) and len(cache_files(tmp_path)) == 2


def test_run_blocking_reports_progress_and_an_unreadable_cache_file_is_redone(est, scene, tmp_path):
    script, log = wrapper(tmp_path, "py_ok", pipeline="ok")
    set_python(script)
    seen = []
    message = est.run_blocking(bpy.context, on_message=lambda m: seen.append((m["type"], scene.anime_mmd.status)))
    assert message["type"] == "done" and message["result"]["frames"] == 20
    kinds = [k for k, _ in seen]
    assert kinds[0] == "hello" and kinds[-1] == "done" and "progress" in kinds and "artifact" in kinds
    # When a message is handed out, the scene already shows it.
    assert any(k == "progress" and status.startswith("detect: ") for k, status in seen)
    npz = Path(scene.anime_mmd.result_npz)
    npz.write_bytes(b"not an npz")  # e.g. a cache file from an old version
    message = est.run_blocking(bpy.context)
    assert message["type"] == "done" and not message["result"].get("cached")
    assert starts(log) == 2 and scene.anime_mmd.result_npz == str(npz) and npz.stat().st_size > 100


@pytest.mark.parametrize("kind", ["crash", "pipeline_error", "garbage"])
def test_failures_are_reported_and_nothing_is_applied(est, scene, tmp_path, kind):
    if kind == "crash":
        script, _ = wrapper(tmp_path, "py_crash", fake_mode="crash")
        needle = "RuntimeError: fake crash boom"
    elif kind == "garbage":
        script, _ = wrapper(tmp_path, "py_garbage", fake_mode="garbage")
        needle = "invalid line"
    else:
        script, _ = wrapper(tmp_path, "py_bad", pipeline="bad_video")
        needle = "holds no frames"
    set_python(script)
    props = scene.anime_mmd
    props.result_npz = "/earlier/result.npz"
    message = est.run_blocking(bpy.context, timeout=20)
    assert message["type"] == "error" and needle in message["message"]
    assert props.result_npz == "/earlier/result.npz"  # unchanged
    assert not props.is_running and props.status.startswith("Estimate failed: ")
    assert cache_files(tmp_path) == []
    # The operator reports the same failure as an error (which bpy.ops raises in a script) and applies nothing.
    with pytest.raises(RuntimeError, match="Estimate failed"):
        bpy.ops.anime_mmd.estimate()
    assert props.result_npz == "/earlier/result.npz" and not props.is_running


def test_missing_worker_python_names_the_install_command(est, scene, tmp_path):
    set_python(tmp_path / "no" / "python")
    message = est.run_blocking(bpy.context)
    assert message["code"] == "missing_dependency"
    assert "Worker Python not found" in message["message"] and "Set Up Worker" in message["message"]
    assert scene.anime_mmd.status.startswith("Estimate failed: Worker Python not found")
    set_python("")  # nothing set, and the installed extension has no .venv
    message = est.run_blocking(bpy.context)
    assert message["message"].startswith("No worker environment found. Press Set Up Worker in Edit > Preferences")


def test_bad_settings_are_refused_before_starting(est, scene, tmp_path):
    script, log = wrapper(tmp_path, "py_ok", pipeline="ok")
    set_python(script)
    props = scene.anime_mmd
    props.start_time, props.end_time = 4.0, 2.0
    props.lifter = "videopose3d"
    message = est.run_blocking(bpy.context)
    assert message["code"] == "bad_input"
    assert "checkpoint" in message["message"] and "End time" in message["message"]
    assert starts(log) == 0
    props.video_path = ""
    assert not bpy.ops.anime_mmd.estimate.poll()


def test_cancel_operator_stops_a_running_estimate(est, scene, tmp_path):
    script, log = wrapper(tmp_path, "py_slow", pipeline="slow")
    set_python(script)
    props = scene.anime_mmd
    props.result_npz = "/earlier/result.npz"
    job, cached = est.start(bpy.context)
    assert cached is None and est._ACTIVE is job and props.is_running
    assert not bpy.ops.anime_mmd.estimate.poll()  # one at a time
    deadline = time.monotonic() + 20
    while props.progress_stage != "detect":  # what the modal timer does every 0.1 s
        assert job.step(wait=0.1) is None
        assert time.monotonic() < deadline
    assert bpy.ops.anime_mmd.cancel() == {"FINISHED"}
    t0 = time.monotonic()
    message = job.step(wait=0.1)
    assert time.monotonic() - t0 < 1.0
    assert message["code"] == "cancelled"
    assert job.worker.proc.returncode is not None  # gone and reaped
    assert not props.is_running and props.status == "Estimate cancelled"
    assert props.result_npz == "/earlier/result.npz" and cache_files(tmp_path) == []
    assert est._ACTIVE is None and bpy.ops.anime_mmd.estimate.poll()


def test_cancel_clears_a_stale_running_flag(est, scene):
    props = scene.anime_mmd
    props.is_running = True  # e.g. a file saved while an estimate ran, opened again
    assert bpy.ops.anime_mmd.estimate.poll()
    assert bpy.ops.anime_mmd.cancel() == {"FINISHED"}
    assert not props.is_running and props.status == "No estimate was running"
    assert not bpy.ops.anime_mmd.cancel.poll()


def test_check_worker_writes_the_summary_into_the_preferences(est, addon, tmp_path):
    p = addon.prefs.get(bpy.context)
    script, _ = wrapper(tmp_path, "py_bare", python_flags="-S")  # no site-packages: nothing installed
    set_python(script)
    assert bpy.ops.anime_mmd.check_worker() == {"FINISHED"}
    assert p.worker_status.startswith("Missing numpy, av, cv2, mediapipe (")
    assert "install_deps.py" in p.worker_status
    set_python(sys.executable)
    import importlib.util

    missing = [m for m in ("numpy", "av", "cv2", "mediapipe", "torch") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"the full check needs {missing} in this interpreter")
    import numpy

    assert bpy.ops.anime_mmd.check_worker() == {"FINISHED"}
    assert p.worker_status.startswith("Python ") and f"numpy {numpy.__version__}" in p.worker_status
    assert "CUDA " in p.worker_status and "Missing" not in p.worker_status


def test_estimate_a_real_clip_with_the_installed_worker(est, scene, shared_data, tmp_path, addon):
    """The real worker of the installed extension (its own ``core``) on one second of a real video."""
    import importlib.util

    missing = [m for m in ("numpy", "av", "mediapipe") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"the real worker needs {missing} in this interpreter")
    set_python(sys.executable)
    props = scene.anime_mmd
    props.video_path = str(shared_data / "videos" / "kunkun_dance_864x480_25fps.mp4")
    props.start_time, props.end_time = 2.0, 3.0
    message = est.run_blocking(bpy.context, timeout=120)
    assert message["type"] == "done", message
    poses = addon.core("pose_io").load(props.result_npz)
    assert 20 <= len(poses) <= 30 and poses.image_size == (864, 480) and poses.joints_3d is not None
    assert poses.timestamps[0] == pytest.approx(0.0) and poses.frame_indices[0] >= 45  # from 2 s at 25 fps
    assert props.status.startswith(f"Estimated {len(poses)} frames")
