"""core.worker.backends.mediapipe_pose on real kunkun frames: plausible 2D, 3D in the camera axes of core.conventions."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mediapipe", reason="mediapipe is not installed: the mediapipe backend cannot run")
pytest.importorskip("av", reason="PyAV (av) is not installed: cannot decode the test video")

from core import skeletons  # noqa: E402
from core.worker import video  # noqa: E402
from core.worker.backends import FrameDetections, PoseBackend, get_backend  # noqa: E402

M = {n: i for i, n in enumerate(skeletons.MEDIAPIPE33)}
C = {n: i for i, n in enumerate(skeletons.CANONICAL)}


@pytest.fixture(scope="module")
def kunkun_frames(shared_data):
    """Frames 0..4 and 26..30 of kunkun (two windows; the dancer faces the camera)."""
    path = shared_data / "videos" / "kunkun_dance_864x480_25fps.mp4"
    first = [f.image for f in video.iter_frames(path, end=0.2)][:5]
    second = [f.image for f in video.iter_frames(path, start=1.0, end=1.2)][:5]
    assert len(first) == len(second) == 5
    return first + second


@pytest.fixture(scope="module")
def detections(kunkun_frames):
    backend = get_backend("mediapipe")
    try:
        assert isinstance(backend, PoseBackend)
        assert backend.name == "mediapipe" and backend.provides_3d
        assert backend.joint_names_2d == skeletons.MEDIAPIPE33
        first = backend.process_batch(kunkun_frames[:5])
        backend.reset()  # the second window is not continuous with the first
        return first + backend.process_batch(kunkun_frames[5:])
    finally:
        backend.close()


def test_one_person_per_frame(detections):
    assert len(detections) == 10
    for d in detections:
        assert isinstance(d, FrameDetections) and len(d) == 1
        assert d.keypoints_2d.shape == (1, 33, 3) and d.keypoints_2d.dtype == np.float32
        assert d.joints_3d.shape == (1, 27, 3) and d.boxes.shape == (1, 4) and d.scores.shape == (1,)
        assert 0.5 < d.scores[0] <= 1.0


def test_2d_is_plausible(detections):
    kp = np.stack([d.keypoints_2d[0] for d in detections])  # (10, 33, 3)
    body = [M[n] for n in ("nose", "left_shoulder", "right_shoulder", "left_hip", "right_hip",
                           "left_knee", "right_knee")]
    xy = kp[:, body, :2]
    assert np.all((xy[..., 0] > 0) & (xy[..., 0] < 864) & (xy[..., 1] > 0) & (xy[..., 1] < 480))
    assert np.all(kp[:, body, 2] > 0.9)  # clearly visible
    sh_y = kp[:, [M["left_shoulder"], M["right_shoulder"]], 1].mean(1)
    hip_y = kp[:, [M["left_hip"], M["right_hip"]], 1].mean(1)
    assert np.all(sh_y < hip_y - 50)  # shoulders above hips (image y down), by a torso's length
    # facing the camera: the subject's left shoulder is at image right
    assert np.all(kp[:, M["left_shoulder"], 0] > kp[:, M["right_shoulder"], 0])
    # the person box encloses the visible landmarks and is a person-shaped box
    for d in detections:
        x0, y0, x1, y1 = d.boxes[0]
        assert 0 <= x0 < x1 <= 864 and 0 <= y0 < y1 <= 480 and (y1 - y0) > (x1 - x0)


def test_3d_is_camera_frame_metres_root_relative(detections):
    j = np.stack([d.joints_3d[0] for d in detections]).astype(np.float64)  # (10, 27, 3)
    assert np.all(np.isfinite(j))
    np.testing.assert_allclose(j[:, C["Hip"]], 0.0, atol=1e-6)
    # bone lengths in metres
    thigh = np.linalg.norm(j[:, C["LKnee"]] - j[:, C["LHip"]], axis=-1)
    shin = np.linalg.norm(j[:, C["LFoot"]] - j[:, C["LKnee"]], axis=-1)
    shoulders = np.linalg.norm(j[:, C["LShoulder"]] - j[:, C["RShoulder"]], axis=-1)
    assert np.all((thigh > 0.3) & (thigh < 0.6)), thigh
    assert np.all((shin > 0.3) & (shin < 0.6)), shin
    assert np.all((shoulders > 0.2) & (shoulders < 0.5)), shoulders
    # axes (core.conventions camera frame): x right -> left shoulder at +x for a dancer facing the camera,
    # y down -> the thorax above the pelvis has y < 0, z forward -> the nose in front of the body has z < 0
    assert np.all(j[:, C["LShoulder"], 0] > j[:, C["RShoulder"], 0])
    assert np.all(j[:, C["LShoulder"], 0] > 0)
    assert np.all(j[:, C["Thorax"], 1] < -0.2)
    assert np.all(j[:, C["Head"], 1] < j[:, C["Thorax"], 1])
    assert np.all(j[:, C["LFoot"], 1] > 0.5)
    assert np.all(j[:, C["Nose"], 2] < j[:, C["Thorax"], 2])


def test_no_person_gives_empty_detections():
    backend = get_backend("mediapipe")
    try:
        out = backend.process_batch([np.zeros((240, 320, 3), np.uint8)])
    finally:
        backend.close()
    assert len(out) == 1 and len(out[0]) == 0
    assert out[0].keypoints_2d.shape == (0, 33, 3) and out[0].joints_3d.shape == (0, 27, 3)


def test_bad_input_and_closed_backend():
    backend = get_backend("mediapipe")
    with pytest.raises(ValueError, match="RGB uint8"):
        backend.process_batch([np.zeros((240, 320), np.uint8)])
    with pytest.raises(ValueError, match="RGB uint8"):
        backend.process_batch([np.zeros((240, 320, 3), np.float32)])
    backend.close()
    backend.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        backend.process_batch([np.zeros((240, 320, 3), np.uint8)])
    with pytest.raises(ValueError, match="model_complexity"):
        get_backend("mediapipe", model_complexity=3)
