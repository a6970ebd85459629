"""What the layout change (one orchestrator, numpy-only ``core``) must keep, and the bug it fixed.

* The README's main command writes the same VMD, byte for byte, as before the change: its SHA-256 was recorded by
  running that command on the last commit before the split (8782ca9), once per machine kind (MediaPipe's detections
  differ in their last bits between CPUs). On a machine kind not recorded, 8782ca9 itself is taken from the
  repository's history and run on the same input, and the two outputs must be identical.
* A run that fails after detection (an overlay without a video) exits non-zero and leaves no file: before the change
  it wrote ``x.vmd`` and ``x.npz`` and then failed.
"""
from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

#: SHA-256 of ``kunkun.vmd`` from the README's main command at commit 8782ca9 (before the layout change), per machine
#: kind it was recorded on.
MAIN_COMMAND_VMD_SHA256 = {
    "909f3f4c0f68ce9adf530c2aef8cbbe208603bf8f36164fdbaba94363fc60783": "the machine of the layout change",
    "7258a41994d1c08f65e746b9075de941e5029649bd1948c66a16ac09fd48b9af": "2-core AMD EPYC, 2 December",
}
#: The last commit before the layout change.
BEFORE_LAYOUT = "8782ca9"

#: Options that pin the job to what the main command did at 8782ca9, since later work changed the defaults on
#: purpose: MediaPipe's own 3D, the former motion stage (--cleanup none), a key on every frame (--dense; Bézier key
#: reduction is the default), the arm twist on ひじ (--no-twist-bones), no plausibility gate, auto-crop or
#: re-detection, one detection pass (--detect-parts 1; the clip is detected in two parts at once by default since the
#: fifteenth session) and --force because the quality report now refuses a motion with as many rotation pops as the
#: former stage wrote.
PINNED = ("--lifter", "native", "--smoothing", "0.5", "--hfov", "60", "--cleanup", "none", "--dense",
          "--no-twist-bones", "--no-gate", "--no-auto-crop", "--no-retry", "--detect-parts", "1", "--force")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600)


def test_main_command_output_is_byte_identical_to_before_the_layout_change(tmp_path, shared_data):
    for mod in ("mediapipe", "av"):
        pytest.importorskip(mod, reason=f"{mod} is part of the worker environment (tools/install_deps.py)")
    out = tmp_path / "kunkun.vmd"
    r = _cli("estimate", str(shared_data / "videos" / "kunkun_dance_864x480_25fps.mp4"), "-o", str(out),
             "--model", str(shared_data / "pmx" / "mat4_trace_model" / "mat4_v4_trace_model.pmx"), *PINNED, "-q")
    assert r.returncode == 0, r.stderr[-3000:]
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    if digest in MAIN_COMMAND_VMD_SHA256:
        return
    # a machine kind not recorded: run the commit before the layout change itself on the same input
    old = tmp_path / "before"
    old.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", BEFORE_LAYOUT], capture_output=True, timeout=120)
    if archive.returncode != 0:
        pytest.fail(f"{digest} is not a recorded output and {BEFORE_LAYOUT} is not in this clone's history to "
                    f"compare with: {archive.stderr.decode(errors='replace')[-500:]}")
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True, timeout=120)
    ref = tmp_path / "before.vmd"
    r = subprocess.run([sys.executable, "-m", "core", "estimate",
                        str(shared_data / "videos" / "kunkun_dance_864x480_25fps.mp4"), "-o", str(ref), "--model",
                        str(shared_data / "pmx" / "mat4_trace_model" / "mat4_v4_trace_model.pmx")],
                       cwd=old, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert digest == hashlib.sha256(ref.read_bytes()).hexdigest(), f"{BEFORE_LAYOUT} wrote other bytes here"


def test_overlay_without_a_video_fails_before_work_and_leaves_no_file(tmp_path, shared_data):
    src = shared_data / "keypoints" / "lia_kim_dance" / "videopose3d_export.npy"
    r = subprocess.run([sys.executable, "-m", "core", "estimate", "--from-keypoints", str(src), "-o", "x.vmd",
                        "--overlay", "x.mp4"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                       env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 1, r.stderr
    assert "--overlay needs the source video" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_failure_while_writing_removes_every_staged_output(tmp_path, shared_data, monkeypatch):
    """The orchestrator stages all outputs and moves them together: an error in the last writer (the overlay)
    leaves neither the VMD nor the pose file, nor any temporary file."""
    pytest.importorskip("av")
    from core import options
    from core.errors import PipelineError
    from core.worker import job, overlay

    def broken_overlay(video, poses, out_path, **kwargs):
        Path(out_path).write_bytes(b"half an mp4")
        raise PipelineError("internal", "the encoder broke")

    monkeypatch.setattr(overlay, "write_overlay", broken_overlay)
    src = shared_data / "keypoints" / "lia_kim_dance" / "videopose3d_export.npy"
    video = tmp_path / "in" / "clip.mp4"  # an overlay needs a video; detection is replaced by the keypoints below
    video.parent.mkdir()
    video.write_bytes(b"not decoded")
    opts = options.EstimateOptions(video=str(video), output=str(tmp_path / "x.vmd"), overlay=str(tmp_path / "x.mp4"))
    from core import keypoints_io

    with pytest.raises(PipelineError, match="encoder broke"):
        job.run_job(opts, detect=lambda o, p: keypoints_io.load_keypoints(src))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]
