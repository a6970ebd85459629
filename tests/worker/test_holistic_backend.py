"""core.worker.backends.holistic and the job with --hands / --face on real clips (first 2 s of kunkun_dance and of the
anime side-by-side): hands named after the right wrists, finger keys that move, face morphs keyed, nothing of the
kind without the options."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mediapipe", reason="mediapipe is not installed: the holistic backend cannot run")
pytest.importorskip("av", reason="PyAV (av) is not installed: cannot decode the test video")

from core import hands_face as HF  # noqa: E402
from core import pose_io  # noqa: E402
from core import quat as Q  # noqa: E402
from core.formats import vmd  # noqa: E402
from core.motion import BoneMotion  # noqa: E402
from core.options import EstimateOptions  # noqa: E402
from core.skeletons import MEDIAPIPE33  # noqa: E402
from core.worker import video  # noqa: E402
from core.worker.backends import get_backend  # noqa: E402
from core.worker.backends.holistic import HolisticDetections  # noqa: E402
from core.worker.job import run_job  # noqa: E402

KUNKUN = "videos/kunkun_dance_864x480_25fps.mp4"
ANIME = "videos/anime_dance_sidebyside_1536x768_25fps.mp4"
MAT4 = "pmx/mat4_trace_model/mat4_v4_trace_model.pmx"
M = {n: i for i, n in enumerate(MEDIAPIPE33)}


@pytest.fixture(scope="module")
def kunkun_dets(shared_data):
    frames = [f.image for f in video.iter_frames(shared_data / KUNKUN, start=4.0, end=6.0)]
    backend = get_backend("holistic")
    try:
        return backend.process_batch(frames)
    finally:
        backend.close()


def test_backend_gives_body_hands_and_face(kunkun_dets):
    assert len(kunkun_dets) == 50
    n_hand = np.zeros(2, int)
    n_face = 0
    for d in kunkun_dets:
        assert isinstance(d, HolisticDetections) and len(d) == 1
        assert d.hands.shape == (1, 2, 21, 3) and d.face.shape == (1, len(HF.FACE_INDICES), 3)
        kp = d.keypoints_2d[0]
        for k, wrist in enumerate(("left_wrist", "right_wrist")):
            h = d.hands[0, k]
            if np.isfinite(h).all():
                n_hand[k] += 1
                # Holistic's left hand is the dancer's left: its wrist lies on the pose's left wrist, not the right
                own = np.linalg.norm(h[0, :2] - kp[M[wrist], :2])
                other = np.linalg.norm(h[0, :2] - kp[M[("right_wrist", "left_wrist")[k]], :2])
                assert own < other
        f = d.face[0]
        if np.isfinite(f).all():
            n_face += 1
            nose = kp[M["nose"], :2]
            assert np.linalg.norm(f[list(HF.FACE_POINTS).index("nose_tip"), :2] - nose) < 20
    assert (n_hand > 0).all() and n_face > 0


@pytest.fixture(scope="module")
def kunkun_job(shared_data, tmp_path_factory):
    d = tmp_path_factory.mktemp("holistic")
    opts = EstimateOptions(video=str(shared_data / KUNKUN), start=4.0, end=6.0, output=str(d / "k.vmd"),
                           model=str(shared_data / MAT4), hands=True, face=True, dense=True)
    return run_job(opts), d


def test_job_keys_fingers_that_move_and_mouth_morphs(kunkun_job):
    res, d = kunkun_job
    poses = pose_io.load(res.npz_path)
    assert poses.hands.shape == (len(poses), 2, 21, 3) and poses.face.shape[1:] == (len(HF.FACE_INDICES), 3)
    ok = HF.hand_gate(poses.hands, poses.keypoints_2d, poses.joint_names_2d)
    assert ok.any(axis=0).all()                          # both hands seen (and usable) in these 2 s
    m = BoneMotion.from_vmd(vmd.read(res.vmd_path))
    fingers = [n for n in m.rotations if "指" in n]
    assert len(fingers) == 30                            # mat4 has 親指０-２ and four fingers x 3, both sides
    moving = [n for n in fingers if np.degrees(Q.angle_between(m.rotations[n], m.rotations[n][:1])).max() > 10]
    assert len(moving) >= 10
    for n in fingers:
        assert np.degrees(Q.angle(m.rotations[n])).max() <= 100.0 + 1e-6
    assert {"左手捩", "右手捩", "左腕捩", "右腕捩"} <= set(m.rotations)
    assert set(m.morphs) == set(HF.MORPHS)
    assert max(m.morphs[k].max() for k in ("あ", "い", "う")) > 0.3      # the mouth moves
    # kunkun's face is ~38 px wide: too small for the eyes, so no blinks are made up
    assert max(m.morphs[k].max() for k in ("まばたき", "ウィンク", "ウィンク右")) == 0.0
    used = res.motion.meta["hands_face"]["hand_frames"]       # gated, in runs of >= MIN_RUN frames
    assert all(0 < u <= o for u, o in zip(used, ok.sum(axis=0)))
    # fingers never pop (core.quality refuses a motion with too many bones turning over 45° in a frame)
    for n in fingers:
        assert np.degrees(Q.angle_between(m.rotations[n][1:], m.rotations[n][:-1])).max() < 45.0, n


def test_no_hands_from_the_same_pose_file_keys_none(kunkun_job, shared_data):
    res, d = kunkun_job
    opts = EstimateOptions(from_npz=str(res.npz_path), output=str(d / "plain.vmd"), model=str(shared_data / MAT4),
                           hands=False, face=False, dense=True)
    m = BoneMotion.from_vmd(vmd.read(run_job(opts).vmd_path))
    assert not any("指" in n for n in m.rotations) and not m.morphs


def test_default_job_runs_the_pose_model_only(shared_data, tmp_path):
    opts = EstimateOptions(video=str(shared_data / KUNKUN), end=1.0, output=str(tmp_path / "d.vmd"),
                           model=str(shared_data / MAT4))
    res = run_job(opts)
    poses = pose_io.load(res.npz_path)
    assert poses.hands is None and poses.face is None
    motion = vmd.read(res.vmd_path)
    assert len(motion.morph_keys) == 0 and not any("指" in n for n in vmd.bone_names(motion))


def test_anime_eyes_and_reduced_output(shared_data, tmp_path):
    """The anime render's face is large enough for the eyes; the reduced (default) VMD keeps the morph keys."""
    opts = EstimateOptions(video=str(shared_data / ANIME), end=2.0, output=str(tmp_path / "a.vmd"),
                           model=str(shared_data / MAT4), hands=True, face=True)
    res = run_job(opts)
    poses = pose_io.load(res.npz_path)
    width = np.linalg.norm(poses.face[:, list(HF.FACE_POINTS).index("cheek_left"), :2]
                           - poses.face[:, list(HF.FACE_POINTS).index("cheek_right"), :2], axis=1)
    assert np.nanmedian(width) >= HF.MIN_FACE_PX_EYES
    motion = vmd.read(res.vmd_path)
    assert set(vmd.morph_names(motion)) == set(HF.MORPHS)
    eyes = [k for k in motion.morph_keys if vmd.decode_name(k["name"]) in ("まばたき", "ウィンク", "ウィンク右")]
    assert len(eyes) >= 3
    assert any("指" in n for n in vmd.bone_names(motion))
