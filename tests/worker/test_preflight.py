"""Issue 7: every run checks before it works, and a failure leaves nothing behind.

Each case below was a real failure before the pre-flight checks (data lost with exit code 0, or an error only after
the whole detection). Here detection is replaced by a function that fails the test if it is ever reached, so each
test proves the mistake is caught *before* any decoding.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core import options
from core.errors import PipelineError
from core.worker import job

REPO = Path(__file__).resolve().parents[2]


def _never(opts, progress):
    raise AssertionError("detection ran although the options were invalid")


def _run(**kwargs):
    return job.run_job(options.EstimateOptions(**kwargs), detect=_never)


@pytest.fixture()
def video(tmp_path, shared_data):
    """A private copy of a real clip (so a bug that overwrote it could not harm the shared data)."""
    dst = tmp_path / "clip.mp4"
    dst.write_bytes((shared_data / "videos" / "kunkun_dance_864x480_25fps.mp4").read_bytes())
    return dst


def test_output_equal_to_the_input_video_is_refused_even_with_overwrite(video, tmp_path):
    before = video.read_bytes()
    with pytest.raises(PipelineError, match="end in .vmd"):
        _run(video=str(video), output=str(video), overwrite=True)
    link = tmp_path / "link.vmd"
    link.symlink_to(video)
    with pytest.raises(PipelineError, match="is the input"):
        _run(video=str(video), output=str(link), overwrite=True)
    assert video.read_bytes() == before


def test_outputs_that_collide_are_refused(video, tmp_path):
    # -o OUT.npz used to collide with the pose file (OUT.npz), replacing the VMD without a word
    with pytest.raises(PipelineError, match="end in .vmd"):
        _run(video=str(video), output=str(tmp_path / "out.npz"))
    # two outputs that are one file once symlinks are resolved: the overlay points at the pose file's path
    (tmp_path / "pose.mp4").symlink_to(tmp_path / "pose.npz")
    with pytest.raises(PipelineError, match="same file"):
        _run(video=str(video), output=str(tmp_path / "pose.vmd"), overlay=str(tmp_path / "pose.mp4"))


def test_overlay_equal_to_the_output_is_refused(video, tmp_path):
    with pytest.raises(PipelineError, match="--overlay"):
        _run(video=str(video), output=str(tmp_path / "a.vmd"), overlay=str(tmp_path / "a.vmd"))


@pytest.mark.parametrize("make, words", [
    (lambda d: d / "missing" / "out.vmd", "does not exist"),
    (lambda d: (d / "folder.vmd").mkdir() or d / "folder.vmd", "is a folder"),
])
def test_output_folder_problems_are_one_line_before_any_work(video, tmp_path, make, words):
    with pytest.raises(PipelineError, match=words) as e:
        _run(video=str(video), output=str(make(tmp_path)))
    assert "\n" not in e.value.message and ".anime-mmd-partial" not in e.value.message


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True,
                    reason="root may write into any folder, so an unwritable folder cannot be made here")
def test_unwritable_folder_is_refused(video, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(PipelineError, match="not writable"):
            _run(video=str(video), output=str(tmp_path / "a.vmd"), npz=str(ro / "a.npz"))
    finally:
        ro.chmod(0o700)


@pytest.mark.parametrize("model, words", [
    ("vmd/test_append_bone.vmd", "not a PMX file"),
    ("pmx/fixtures/joint_orient_test.pmx", "cannot read the model"),
    ("pmx/fixtures/bone_flag_test.pmx", "lacks the bones"),
])
def test_a_model_retargeting_cannot_use_is_refused_before_detection(video, tmp_path, shared_data, model, words):
    with pytest.raises(PipelineError, match=words) as e:
        _run(video=str(video), output=str(tmp_path / "a.vmd"), model=str(shared_data / model))
    assert e.value.code == "bad_model"


def test_a_file_that_is_not_a_video_is_refused_by_the_probe(tmp_path, shared_data):
    pytest.importorskip("av")
    fake = tmp_path / "clip.mp4"
    fake.write_bytes((shared_data / "vmd" / "test_append_bone.vmd").read_bytes())
    with pytest.raises(PipelineError, match="not a video"):
        job.run_job(options.EstimateOptions(video=str(fake), output=str(tmp_path / "a.vmd")))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_cli_messages_are_one_line_without_the_code_twice_and_crop_x_is_named(tmp_path, video):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "core", "estimate", *args], cwd=REPO, capture_output=True,
                              text=True, timeout=60)
    r = cli(str(video), "-o", str(tmp_path / "a.vmd"), "--crop=-5,0,100,100")
    assert r.returncode == 1 and r.stderr.strip() == "error: --crop: the box's x and y must be 0 or more, got -5,0"
    r = cli("--from-keypoints", str(tmp_path / "nope.npz"), "-o", str(tmp_path / "a.vmd"))
    assert r.returncode == 1 and r.stderr.count("error:") == 1 and "bad_input" not in r.stderr
    r = cli(str(video), "-o", str(tmp_path / "missing" / "a.vmd"))
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_quiet_run_prints_no_library_log_lines(tmp_path, shared_data):
    pytest.importorskip("mediapipe")
    r = subprocess.run([sys.executable, "-m", "core", "estimate",
                        str(shared_data / "videos" / "kunkun_dance_864x480_25fps.mp4"), "-o", str(tmp_path / "a.vmd"),
                        "--end", "0.5", "-q"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "TensorFlow Lite" not in r.stderr and "W0000" not in r.stderr and "absl" not in r.stderr, r.stderr


def test_staged_files_of_a_killed_worker_are_removed(tmp_path):
    from anime_mmd_addon import cache
    from core.atomic import OutputSet

    npz = tmp_path / "key.npz"
    outputs = OutputSet()
    staged = outputs.stage(npz)            # what a worker killed with SIGKILL leaves behind
    other = tmp_path / "keep.npz"
    other.write_bytes(b"a finished pose file")
    assert cache.remove_partial(npz) == [staged] and other.exists() and not staged.exists()


def test_unwritable_folder_message_when_the_system_says_so(video, tmp_path, monkeypatch):
    """Where the test runs as root (every folder writable), the check is driven through what the OS reports."""
    from core import preflight

    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access
    monkeypatch.setattr(preflight.os, "access", lambda p, mode: False if Path(p) == ro else real(p, mode))
    with pytest.raises(PipelineError, match="not writable"):
        _run(video=str(video), output=str(tmp_path / "a.vmd"), npz=str(ro / "a.npz"))


def test_a_model_name_shift_jis_cannot_hold_is_written_with_a_fallback_and_a_note(tmp_path, shared_data):
    """A PMX renamed to Korean used to fail at write time, after the whole detection: now the VMD is written with
    the model's English name in the header and the run says so."""
    import struct

    from core.formats import vmd

    data = (shared_data / "pmx" / "yw_test_model" / "yw_test_model.pmx").read_bytes()
    at = 9 + data[8]
    old_len = struct.unpack_from("<i", data, at)[0]
    name = "한국어 모델".encode("utf-16-le")
    model = tmp_path / "korean.pmx"
    model.write_bytes(data[:at] + struct.pack("<i", len(name)) + name + data[at + 4 + old_len:])
    src = shared_data / "keypoints" / "lia_kim_dance" / "videopose3d_export.npy"
    result = job.run_job(options.EstimateOptions(from_keypoints=str(src), output=str(tmp_path / "k.vmd"),
                                                 model=str(model)))
    written = vmd.read(result.vmd_path).model_name
    assert written and "?" not in written            # the English name of the model
    assert any("한국어 모델" in n for n in result.notes)


def test_a_cancel_during_the_overlay_leaves_neither_outputs_nor_temporary_files(tmp_path, shared_data, monkeypatch):
    """Ctrl-C in the CLI (KeyboardInterrupt) or the worker's SIGTERM (a BaseException) while the last output is
    being written: the staged VMD and pose file are removed with it."""
    pytest.importorskip("av")
    from core import keypoints_io
    from core.worker import overlay

    def cancelled_overlay(video, poses, out_path, **kwargs):
        Path(out_path).write_bytes(b"part of a video")
        raise KeyboardInterrupt

    monkeypatch.setattr(overlay, "write_overlay", cancelled_overlay)
    video = tmp_path / "in" / "clip.mp4"
    video.parent.mkdir()
    video.write_bytes(b"not decoded: detection is replaced")
    src = shared_data / "keypoints" / "lia_kim_dance" / "videopose3d_export.npy"
    opts = options.EstimateOptions(video=str(video), output=str(tmp_path / "x.vmd"), overlay=str(tmp_path / "x.mp4"))
    with pytest.raises(KeyboardInterrupt):
        job.run_job(opts, detect=lambda o, p: keypoints_io.load_keypoints(src))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]
