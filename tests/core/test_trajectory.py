"""Root trajectory from 2D/3D correspondences, and levelling."""
from __future__ import annotations

import numpy as np
import pytest

from core import skeletons, trajectory


def _pose(rng):
    """A plausible standing CANONICAL pose, camera frame (y down), root-relative, metres."""
    j = np.zeros((len(skeletons.CANONICAL), 3))
    c = {n: i for i, n in enumerate(skeletons.CANONICAL)}
    for n, p in {"RHip": (-0.1, 0, 0), "LHip": (0.1, 0, 0), "RKnee": (-0.1, 0.45, 0.02), "LKnee": (0.1, 0.45, 0.02),
                 "RFoot": (-0.1, 0.88, 0), "LFoot": (0.1, 0.88, 0), "Spine": (0, -0.25, 0), "Thorax": (0, -0.5, 0),
                 "Nose": (0, -0.62, -0.08), "Head": (0, -0.75, 0), "LShoulder": (0.18, -0.5, 0),
                 "RShoulder": (-0.18, -0.5, 0), "LElbow": (0.3, -0.25, 0), "RElbow": (-0.3, -0.25, 0),
                 "LWrist": (0.35, 0.0, -0.05), "RWrist": (-0.35, 0.0, -0.05)}.items():
        j[c[n]] = p
    j[17:] = np.nan
    return j + rng.normal(0, 0.01, j.shape)


def _project(X, f, cx, cy):
    return np.stack([f * X[..., 0] / X[..., 2] + cx, f * X[..., 1] / X[..., 2] + cy], -1)


def test_root_translation_recovers_a_known_path():
    rng = np.random.default_rng(1)
    T = 60
    w, h = 864, 480
    f = trajectory.focal_from_fov(w)
    path = np.stack([np.linspace(-0.8, 0.8, T), 0.1 * np.sin(np.linspace(0, 6, T)), np.linspace(4.0, 5.5, T)], -1)
    poses = np.stack([_pose(rng) for _ in range(T)])
    kp = np.concatenate([_project(poses + path[:, None], f, w / 2, h / 2), np.ones(poses.shape[:2] + (1,))], -1)
    kp[:, 17:] = np.nan
    est = trajectory.root_translation(poses, kp, (w, h))
    # Perspective makes the linearised solution exact for noise-free points: errors come from float rounding only.
    np.testing.assert_allclose(est, path, atol=1e-6)


def test_root_translation_ignores_low_confidence_and_flags_empty_frames():
    rng = np.random.default_rng(2)
    pose = _pose(rng)[None]
    w, h = 640, 480
    path = np.array([[0.2, -0.1, 3.0]])
    kp = np.concatenate([_project(pose + path[:, None], 500.0, w / 2, h / 2), np.ones((1, 27, 1))], -1)
    bad = kp.copy()
    bad[0, 13, :2] += 300.0  # one wild keypoint...
    bad[0, 13, 2] = 0.05     # ...that the detector was unsure of
    np.testing.assert_allclose(trajectory.root_translation(pose, bad, (w, h), focal=500.0), path, atol=1e-6)
    none = kp.copy()
    none[..., 2] = 0.0
    assert np.isnan(trajectory.root_translation(pose, none, (w, h), focal=500.0)).all()
    with pytest.raises(ValueError):
        trajectory.root_translation(pose[:, :17], kp, (w, h))


def test_up_rotation_removes_a_camera_tilt():
    rng = np.random.default_rng(3)
    poses = np.stack([_pose(rng) for _ in range(30)])
    a = np.radians(20)
    tilt = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    R = trajectory.up_rotation(poses @ tilt.T)
    np.testing.assert_allclose(R @ tilt, np.eye(3), atol=0.02)
    np.testing.assert_allclose(trajectory.up_rotation(poses), np.eye(3), atol=0.02)
    upside_down = poses * np.array([1, -1, 1])
    np.testing.assert_array_equal(trajectory.up_rotation(upside_down), np.eye(3))


def test_level_rotation_takes_the_lifters_up_direction():
    """A camera pitched down 15° and rolled 5° sees the world's up at R @ (0, -1, 0): levelling with that estimate
    (per frame, noisy) removes the tilt and keeps the heading; a leaning dancer does not fool it, the torso does."""
    a, b = np.radians(15), np.radians(5)
    pitch = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    roll = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
    cam = roll @ pitch                                     # world (levelled camera axes) -> tilted camera
    rng = np.random.default_rng(0)
    up = cam @ np.array([0.0, -1.0, 0.0]) + rng.normal(0, 0.03, (60, 3))
    R = trajectory.level_rotation(up)
    np.testing.assert_allclose(R @ cam, np.eye(3), atol=0.02)
    # a dancer leaning 20° forward for the whole clip: the torso-based levelling tilts the world by that much
    lean = np.array([[1, 0, 0], [0, np.cos(np.radians(20)), -np.sin(np.radians(20))],
                     [0, np.sin(np.radians(20)), np.cos(np.radians(20))]])
    poses = np.stack([_pose(rng) for _ in range(30)]) @ lean.T @ pitch.T
    err_torso = np.degrees(np.arccos(np.clip((trajectory.up_rotation(poses) @ pitch)[1, 1], -1, 1)))
    err_lifter = np.degrees(np.arccos(np.clip((trajectory.level_rotation(pitch @ [0, -1.0, 0]) @ pitch)[1, 1], -1, 1)))
    assert err_torso > 15 and err_lifter < 0.5, (err_torso, err_lifter)
    # no usable estimate, or an implausible one: identity
    np.testing.assert_array_equal(trajectory.level_rotation(np.zeros(3)), np.eye(3))
    np.testing.assert_array_equal(trajectory.level_rotation(np.array([0.0, 1.0, 0.0])), np.eye(3))
