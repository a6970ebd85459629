"""tools/batch.py end to end (separate processes, as a user runs it): a real 1.5 s clip -> VMD + .blend."""
from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

from conftest import BPY_MISSING_REASON, REPO

bpy = pytest.importorskip("bpy", reason=BPY_MISSING_REASON)

BATCH = REPO / "tools" / "batch.py"


def _run(*args, timeout=300):
    return subprocess.run([sys.executable, str(BATCH), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


@pytest.fixture(scope="module")
def kunkun(shared_data):
    return shared_data / "videos" / "kunkun_dance_864x480_25fps.mp4"


def _check_vmd(path, model_path, n_frames):
    from core.formats import pmx, vmd
    from core.motion import BoneMotion

    m = vmd.read(path)
    model = pmx.read(model_path)
    names = set(vmd.bone_names(m))
    assert names <= {b.name for b in model.bones}
    assert {"センター", "上半身", "左腕", "左ひじ", "左足ＩＫ", "右足ＩＫ"} <= names
    assert m.model_name == model.header.name
    motion = BoneMotion.from_vmd(m)
    assert motion.frames[0] == 0 and len(motion.frames) == n_frames
    # A dance, not a still pose: the arms rotate over the clip.
    q = motion.rotations["左腕"]
    assert np.degrees(2 * np.arccos(np.clip(np.abs(np.sum(q * q[0], axis=1)), 0, 1))).max() > 10
    return motion


@pytest.mark.skipif(importlib.util.find_spec("mediapipe") is None and not (REPO / ".venv").is_dir(),
                    reason="the worker environment lacks mediapipe (run python tools/install_deps.py)")
def test_batch_on_a_real_clip(kunkun, yw_pmx, tmp_path):
    out, blend, npz = tmp_path / "k.vmd", tmp_path / "k.blend", tmp_path / "k.npz"
    proc = _run(kunkun, "--start", 0, "--end", 1.5, "--model", yw_pmx, "--out", out, "--blend", blend, "--npz", npz)
    assert proc.returncode == 0, proc.stderr[-2000:]
    motion = _check_vmd(out, yw_pmx, 45)
    # The .blend holds the model with the applied action and the video plane (checked in a fresh process).
    check = ("import bpy, sys; bpy.ops.wm.open_mainfile(filepath=sys.argv[1]); "
             "a=[o for o in bpy.data.objects if o.type=='ARMATURE'][0]; "
             "print(a.animation_data.action.name, bpy.context.scene.render.fps, bpy.context.scene.frame_end, "
             "any(o.get('anime_mmd_video') for o in bpy.data.objects))")
    res = subprocess.run([sys.executable, "-c", check, str(blend)], capture_output=True, text=True, timeout=120)
    assert res.stdout.split()[-4:] == ["kunkun_dance_864x480_25fps", "30", str(motion.frames[-1]), "True"], res

    # Re-running from the pose file (no detection) gives the same motion; existing outputs are refused first.
    again = _run("--from-npz", npz, "--model", yw_pmx, "--out", out)
    assert again.returncode == 1 and "already exists" in again.stderr
    out2 = tmp_path / "k2.vmd"
    again = _run("--from-npz", npz, "--model", yw_pmx, "--out", out2)
    assert again.returncode == 0, again.stderr[-2000:]
    assert out2.read_bytes() == out.read_bytes()


def test_batch_refuses_to_overwrite_before_any_work(yw_pmx, tmp_path, kunkun):
    out = tmp_path / "taken.vmd"
    out.write_bytes(b"keep me")
    proc = _run(kunkun, "--model", yw_pmx, "--out", out, timeout=60)
    assert proc.returncode == 1 and "already exists" in proc.stderr and "--overwrite" in proc.stderr
    assert out.read_bytes() == b"keep me"


def test_batch_reports_a_bad_model(shared_data, tmp_path, kunkun):
    bad = shared_data / "pmx" / "fixtures" / "joint_orient_test.pmx"
    npz_src = shared_data / "keypoints" / "lia_kim_dance" / "videopose3d_export.npy"
    from core import pose_io
    from core.keypoints_io import load_keypoints

    npz = pose_io.save(tmp_path / "p.npz", load_keypoints(npz_src))
    proc = _run("--from-npz", npz, "--model", bad, "--out", tmp_path / "x.vmd", timeout=120)
    assert proc.returncode == 1 and "cannot read the model" in proc.stderr and "joint_orient_test" in proc.stderr
    assert not (tmp_path / "x.vmd").exists()


@pytest.mark.skipif(importlib.util.find_spec("mediapipe") is None,
                    reason="mediapipe is not installed in this Python (used here as the worker environment)")
def test_batch_with_a_worker_subprocess(kunkun, yw_pmx, tmp_path):
    """The path Blender's own Python takes: detection in the worker environment via ``python -m core estimate``."""
    out = tmp_path / "w.vmd"
    proc = _run(kunkun, "--start", 1, "--end", 2, "--model", yw_pmx, "--out", out, "--subprocess",
                "--worker-python", sys.executable)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "worker python" in proc.stderr
    _check_vmd(out, yw_pmx, 29)  # 25.051 fps frames in [1 s, 2 s): the last is 0.958 s after the first -> 29 keys
    bad = _run(kunkun, "--model", yw_pmx, "--out", tmp_path / "x.vmd", "--subprocess", "--worker-python",
               tmp_path / "no_python")
    assert bad.returncode != 0 and not (tmp_path / "x.vmd").exists()


def test_batch_key_tolerance_from_the_declaration(yw_pmx, tmp_path, shared_data):
    """``--key-tolerance`` (declared in core.options) reaches the reduced Apply: 3,3 exports fewer keys than the
    default 0.5,1; a bad value is one line before any work."""
    from core import pose_io
    from core.formats import vmd
    from core.keypoints_io import load_keypoints

    npz = pose_io.save(tmp_path / "p.npz",
                       load_keypoints(shared_data / "keypoints" / "lia_kim_dance" / "videopose3d_export.npy"))
    keys = {}
    for tol in ("0.5,1", "3,3"):
        out = tmp_path / f"{tol}.vmd"
        proc = _run("--from-npz", npz, "--model", yw_pmx, "--out", out, "--key-tolerance", tol, timeout=180)
        assert proc.returncode == 0, proc.stderr[-2000:]
        keys[tol] = len(vmd.read(out).bone_keys)
    assert keys["3,3"] < 0.8 * keys["0.5,1"], keys
    bad = _run("--from-npz", npz, "--model", yw_pmx, "--out", tmp_path / "x.vmd", "--key-tolerance=2,-1",
               timeout=60)
    assert bad.returncode == 1 and not (tmp_path / "x.vmd").exists()
    assert bad.stderr.strip() == "batch: error: --key-tolerance: degrees and millimetres must be at least 0, got 2,-1"
