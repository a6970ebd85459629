"""PoseSequence.backend_3d: MediaPipe's own 3D is found where the lifter kept it beside its output, and never taken
from a lifter's output; it survives a save / load round trip."""
from __future__ import annotations

import numpy as np

from core import pose_io
from core.skeletons import CANONICAL

T = 5


def _poses(**kw):
    return pose_io.PoseSequence(keypoints_2d=np.ones((T, len(CANONICAL), 3)), timestamps=np.arange(T) / 30.0,
                                frame_indices=np.arange(T), detected=np.ones(T, bool), fps=30.0, image_size=(64, 48),
                                joint_names_2d=CANONICAL, backend="mediapipe", **kw)


def test_backend_3d_is_the_detectors_own_never_a_lifters(tmp_path):
    own = np.random.default_rng(0).normal(size=(T, len(CANONICAL), 3)).astype(np.float32)
    lifted = own + 1.0
    assert np.array_equal(_poses(joints_3d=own, lifter="native").backend_3d(), own)
    assert _poses(joints_3d=lifted, lifter="trained").backend_3d() is None
    assert _poses(joints_3d=lifted, lifter="videopose3d").backend_3d() is None
    kept = _poses(joints_3d=lifted, lifter="trained", world_landmarks=own)
    assert np.array_equal(kept.backend_3d(), own)
    pose_io.save(tmp_path / "p.npz", kept)
    assert np.array_equal(pose_io.load(tmp_path / "p.npz").backend_3d(), own)
