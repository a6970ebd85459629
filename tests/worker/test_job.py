"""The main job end to end: real video in, VMD out (CLI), plus the pipeline's own checks."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core import motion_stage, options
from core.worker import job
from core import pose_io, skeletons
from core.errors import PipelineError

REPO = Path(__file__).resolve().parents[2]
REQUIRED = ["センター", "下半身", "上半身", "上半身2", "首", "頭"] + [
    f"{s}{b}" for s in "左右" for b in ("肩", "腕", "ひじ", "手首", "足", "ひざ", "足首", "足ＩＫ")]


def _cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def _needs_worker_env():
    for mod in ("mediapipe", "av", "cv2"):
        pytest.importorskip(mod, reason=f"{mod} is part of the worker environment (tools/install_deps.py)")


# ------------------------------------------------------------------------------------------------ options

def test_options_refuse_bad_input_before_any_work(tmp_path, shared_data):
    video = str(shared_data / "videos" / "kunkun_dance_864x480_25fps.mp4")
    cases = [
        (dict(output=str(tmp_path / "a.vmd")), "exactly one input"),
        (dict(video=str(tmp_path / "nope.mp4"), output=str(tmp_path / "a.vmd")), "no such file"),
        (dict(video=video, output=str(tmp_path / "a.vmd"), lifter="videopose3d"), "--checkpoint"),
        (dict(video=video, output=str(tmp_path / "a.vmd"), start=5, end=2), "after --start"),
        (dict(video=video, output=str(tmp_path / "a.vmd"), crop=(0, 0, 0, 10)), "--crop"),
        (dict(video=video, output=str(tmp_path / "a.vmd"), smoothing=2.0), "--smoothing"),
    ]
    for kwargs, words in cases:
        with pytest.raises(PipelineError, match=words):
            options.EstimateOptions(**kwargs).validate()
    existing = tmp_path / "mine.vmd"
    existing.write_bytes(b"my own motion")
    with pytest.raises(PipelineError, match="already exists") as e:
        options.EstimateOptions(video=video, output=str(existing)).validate()
    assert e.value.code == "exists" and existing.read_bytes() == b"my own motion"


def test_key_times_cover_the_clip_at_30_fps():
    frames, t = motion_stage.key_times(13.48)  # kunkun: 337 frames at 25 fps
    assert frames[0] == 0 and frames[-1] == 404 and np.all(np.diff(frames) == 1)
    np.testing.assert_allclose(t, frames / 30.0)
    frames15, _ = motion_stage.key_times(2.0, key_fps=15)
    assert frames15.tolist() == list(range(0, 61, 2))


# ------------------------------------------------------------------------------------------------ motion stage

def _synthetic_walk(T=50, fps=25.0):
    """A CANONICAL skeleton translating sideways at 1 m/s in the camera frame, with its 2D projection."""
    t = np.arange(T) / fps
    j = np.zeros((len(skeletons.CANONICAL), 3))
    c = {n: i for i, n in enumerate(skeletons.CANONICAL)}
    for n, p in {"RHip": (-0.1, 0, 0), "LHip": (0.1, 0, 0), "RKnee": (-0.1, 0.45, -0.03), "LKnee": (0.1, 0.45, -0.03),
                 "RFoot": (-0.1, 0.88, 0), "LFoot": (0.1, 0.88, 0), "Spine": (0, -0.25, 0), "Thorax": (0, -0.5, 0),
                 "Nose": (0, -0.62, -0.08), "Head": (0, -0.75, 0), "LShoulder": (0.18, -0.5, 0),
                 "RShoulder": (-0.18, -0.5, 0), "LElbow": (0.3, -0.25, -0.02), "RElbow": (-0.3, -0.25, -0.02),
                 "LWrist": (0.35, 0.0, -0.1), "RWrist": (-0.35, 0.0, -0.1)}.items():
        j[c[n]] = p
    j[17:] = np.nan
    joints = np.repeat(j[None], T, 0)
    root = np.stack([t * 1.0 - 1.0, np.zeros(T), np.full(T, 4.0)], -1)
    w, h = 1280, 720
    f = 0.5 * w / np.tan(np.radians(30))
    X = joints[:, :17] + root[:, None]
    kp = np.concatenate([f * X[..., :2] / X[..., 2:] + np.array([w / 2, h / 2]), np.ones((T, 17, 1))], -1)
    kp17 = kp[:, [skeletons.H36M17.index(n) for n in ("Nose", "Nose", "Nose", "Nose", "Nose", "LShoulder",
                                                       "RShoulder", "LElbow", "RElbow", "LWrist", "RWrist", "LHip",
                                                       "RHip", "LKnee", "RKnee", "LFoot", "RFoot")]]
    return pose_io.PoseSequence(keypoints_2d=kp17, timestamps=t, frame_indices=np.arange(T), detected=np.ones(T, bool),
                                fps=fps, image_size=(w, h), joint_names_2d=skeletons.COCO17, backend="synthetic",
                                joints_3d=joints, lifter="synthetic")


def test_motion_stage_moves_center_with_the_dancer():
    pytest.importorskip("core.retarget", reason="retargeting module not present")
    from core.rest_skeleton import RestSkeleton

    poses = _synthetic_walk()
    rest = RestSkeleton.standard()
    motion = motion_stage.motion_stage(poses, rest, options.EstimateOptions(video="x", smoothing=0.0, level=False))
    assert motion.frames[0] == 0 and motion.frames[-1] == 58  # 49 frames at 25 fps = 1.96 s -> frame 58
    center = motion.locations["センター"]
    # 1 m/s sideways for 1.96 s, scaled to the model: the dancer's leg (0.88 m) onto the model's leg.
    travel = center[-1, 0] - center[0, 0]
    leg_model = rest.positions[rest.names.index("左足")][1] - rest.positions[rest.names.index("左足首")][1]
    expected = 1.96 * leg_model / 0.88
    assert travel == pytest.approx(expected, rel=0.1)
    # The dancer's left (+x in the camera, image right) is MMD +X.
    assert travel > 0
    assert np.ptp(center[:, 1]) < 0.05 * leg_model  # no vertical bobbing from a pure sideways walk


# ------------------------------------------------------------------------------------------------ CLI end to end

@pytest.fixture(scope="module")
def kunkun_run(tmp_path_factory, shared_data):
    """One real run of the CLI on 2 s of the kunkun clip onto the mat4 model, with an overlay."""
    _needs_worker_env()
    out = tmp_path_factory.mktemp("kunkun")
    vmd_path = out / "kunkun.vmd"
    r = _cli("estimate", str(shared_data / "videos" / "kunkun_dance_864x480_25fps.mp4"), "-o", str(vmd_path),
             "--model", str(shared_data / "pmx" / "mat4_trace_model" / "mat4_v4_trace_model.pmx"),
             "--start", "3", "--end", "5", "--overlay", str(out / "overlay.mp4"), "--quiet")
    assert r.returncode == 0, r.stderr[-3000:]
    return out, r


def test_cli_writes_a_vmd_with_bezier_keys_for_every_bone(kunkun_run):
    """The default output is key-reduced (core.keyreduce): every bone keyed at the first and last frame, fewer keys
    than frames, and read back with its curves it covers every frame."""
    from core.formats import vmd
    from core.motion import BoneMotion

    out, _ = kunkun_run
    m = vmd.read(out / "kunkun.vmd")
    names = vmd.decode_names(m.bone_keys["name"])
    frames = m.bone_keys["frame"]
    n_frames = frames.max() + 1
    assert 58 <= n_frames <= 61  # 2 s at 30 fps
    for bone in REQUIRED:
        keyed = np.sort(frames[names == bone])
        assert keyed[0] == 0 and keyed[-1] == n_frames - 1, bone
    assert len(m.bone_keys) < 0.9 * n_frames * len(set(names.tolist()))
    assert np.array_equal(BoneMotion.from_vmd(m).frames, np.arange(n_frames))
    rot = vmd.rotations_xyzw(m.bone_keys)
    np.testing.assert_allclose(np.linalg.norm(rot, axis=1), 1.0, atol=1e-5)
    # Continuous quaternion signs per bone, and a dance is not a still pose.
    for bone in ("左腕", "右ひじ", "上半身"):
        q = rot[names == bone][np.argsort(frames[names == bone])]
        assert np.all(np.sum(q[1:] * q[:-1], axis=1) >= 0)
        assert np.degrees(2 * np.arccos(np.clip(np.abs(q @ q[0]), 0, 1))).max() > 5
    assert "mat4" in m.model_name or m.model_name  # the model's name is written


def test_cli_writes_poses_and_overlay(kunkun_run):
    out, _ = kunkun_run
    poses = pose_io.load(out / "kunkun.npz")
    assert 48 <= len(poses) <= 51 and poses.fps == pytest.approx(25.0, rel=0.01)
    assert poses.joints_3d.shape == (len(poses), 27, 3) and poses.detected.mean() > 0.9
    # Shoulders and hips are in view in this clip (feet can leave the frame: the detector still guesses them).
    torso = poses.keypoints_2d[:, [11, 12, 23, 24], :2]
    assert torso.min() >= 0 and torso[..., 0].max() < 864 and torso[..., 1].max() < 480
    assert (torso[:, :2, 1].mean(1) < torso[:, 2:, 1].mean(1)).all()  # shoulders above hips (image y down)
    av = pytest.importorskip("av")
    with av.open(str(out / "overlay.mp4")) as c:
        n = sum(1 for _ in c.decode(video=0))
    assert n == len(poses)


def test_cli_reruns_from_npz_without_detection_and_refuses_to_overwrite(kunkun_run, tmp_path):
    from core.formats import vmd

    out, _ = kunkun_run
    again = tmp_path / "again.vmd"
    r = _cli("estimate", "--from-npz", str(out / "kunkun.npz"), "-o", str(again), "--model",
             str(Path(__file__).resolve().parents[3] / "shared/data/pmx/mat4_trace_model/mat4_v4_trace_model.pmx"), "-q")
    assert r.returncode == 0, r.stderr
    a, b = vmd.read(out / "kunkun.vmd"), vmd.read(again)
    np.testing.assert_array_equal(a.bone_keys, b.bone_keys)
    before = again.read_bytes()
    r = _cli("estimate", "--from-npz", str(out / "kunkun.npz"), "-o", str(again), "-q")
    assert r.returncode == 1 and "already exists" in r.stderr and again.read_bytes() == before


def test_cli_summary_says_how_many_keys_it_wrote(kunkun_run, tmp_path):
    """The summary counts the bone keys written and how they compare with a key on every frame."""
    import re

    from core.formats import vmd

    out, _ = kunkun_run
    model = str(Path(__file__).resolve().parents[3] / "shared/data/pmx/mat4_trace_model/mat4_v4_trace_model.pmx")
    for extra, pattern in (((), r"(\d[\d,]*) bone keys with MMD's Bézier curves \(0\.\d\dx a key on every frame, "
                                r"within 0\.5° / 1 mm\)"),
                           (("--dense",), r"(\d[\d,]*) bone keys \(a key on every frame\)")):
        path = tmp_path / f"keys{len(extra)}.vmd"
        r = _cli("estimate", "--from-npz", str(out / "kunkun.npz"), "-o", str(path), "--model", model, *extra)
        assert r.returncode == 0, r.stderr
        found = re.search(pattern, r.stderr)
        assert found, r.stderr[-2000:]
        assert int(found.group(1).replace(",", "")) == len(vmd.read(path).bone_keys)


def test_cli_inspect_reads_what_it_wrote(kunkun_run):
    out, _ = kunkun_run
    r = _cli("inspect", str(out / "kunkun.vmd"))
    assert r.returncode == 0 and "センター" in r.stdout and "bone keys" in r.stdout


def test_cli_reports_frames_that_do_not_decode(tmp_path, shared_data):
    """The figure-skater file holds 207 frames of which 185 decode: the run works and says so."""
    _needs_worker_env()
    r = _cli("estimate", str(shared_data / "videos" / "figure_skater_1280x720_25fps.mp4"), "-o",
             str(tmp_path / "skater.vmd"), "-q")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "decoded 185 of 207 frames" in r.stderr
    # the camera follows the skater: the run says the pan was measured on the background and undone
    assert "note: camera motion: measured on the background (pan" in r.stderr
    assert "note: feet locked:" in r.stderr
    poses = pose_io.load(tmp_path / "skater.npz")
    assert len(poses) == 185
    # a re-run from the pose file reports its own cleanup in place of the first run's, not both
    again = _cli("estimate", "--from-npz", str(tmp_path / "skater.npz"), "-o", str(tmp_path / "again.vmd"), "-q")
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("note: camera motion:") == 1 and again.stderr.count("note: feet locked:") == 1
    assert "decoded 185 of 207 frames" in again.stderr            # what the detection said stays


def test_cli_anime_side_by_side_with_crop(tmp_path, shared_data):
    """The animated character is the right half of the anime video: --crop selects it, detection follows it."""
    _needs_worker_env()
    r = _cli("estimate", str(shared_data / "videos" / "anime_dance_sidebyside_1536x768_25fps.mp4"), "-o",
             str(tmp_path / "anime.vmd"), "--crop", "768,0,768,768", "--end", "3", "-q")
    assert r.returncode == 0, r.stderr[-3000:]
    poses = pose_io.load(tmp_path / "anime.npz")
    assert poses.crop == (768, 0, 768, 768) and poses.image_size == (768, 768)
    assert poses.detected.mean() > 0.9
    # Keypoints are in the cropped frame: the character's shoulders sit inside the right half's own coordinates.
    assert np.nanmax(poses.keypoints_2d[:, 11:13, 0]) < 768


def test_cli_clear_error_for_a_file_that_is_not_a_video(tmp_path, shared_data):
    _needs_worker_env()
    r = _cli("estimate", str(shared_data / "vmd" / "test_append_bone.vmd"), "-o", str(tmp_path / "x.vmd"), "-q")
    assert r.returncode == 1 and r.stderr.startswith("error:") and "Traceback" not in r.stderr
    assert not (tmp_path / "x.vmd").exists()
