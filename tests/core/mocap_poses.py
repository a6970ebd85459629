"""Pose sequences made from real motion capture, with known truth, for the feet / floor / cleanup tests.

A real CMU dance clip (``../shared/data/mocap/cmu_iclone``, read by ``tools.lifter_training.mocap``) is put in
front of a pinhole camera (tilted down, 3.5 m away), projected to 2D, and given the kinds of error a monocular
estimate has: per-joint noise in 3D and 2D, a noisier root depth. Tests then inject specific faults (spikes, swaps,
root jumps, zoom) and check the repairs against the truth. Frames and units: ``core.conventions``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from core import conventions, pose_io
from core.skeletons import CANONICAL

mocap = pytest.importorskip("tools.lifter_training.mocap")

WIDTH, HEIGHT = 1280, 720
FOCAL = 0.5 * WIDTH / np.tan(np.radians(30.0))          # 60° horizontal field of view
TILT_DEG = 8.0                                          # camera pitched down


@dataclass
class Truth:
    """The clean clip: camera-frame joints ``(T, 27, 3)`` m, the floor (a point and the up normal, camera frame),
    contacts ``(T, 4)`` (heel / toe within 5 cm of its lowest resting height and slower than 0.25 m/s), timestamps ``(T,)``."""

    joints: np.ndarray
    floor_point: np.ndarray
    up: np.ndarray
    contacts: np.ndarray
    t: np.ndarray


def truth(shared_data, clip: str = "cmu_iclone/005_11.bvh") -> Truth:
    c = mocap.load_clip(shared_data / "mocap" / clip)
    cam = conventions.mmd_to_camera(c.joints)           # metres, y down
    fi = [CANONICAL.index(n) for n in ("LHeel", "LFootIndex", "RHeel", "RFootIndex")]
    floor_y = np.percentile(cam[:, fi, 1], 99.0)        # y down: the floor is the largest y
    cam[..., 1] -= floor_y                              # floor at y = 0
    cam[..., 0] -= cam[0, 0, 0]
    cam[..., 2] -= cam[0, 0, 2]
    a = np.radians(TILT_DEG)                            # camera looking down: rotate the world about x
    R = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    cam = cam @ R.T
    offset = np.array([0.0, 1.2, 3.5])                  # camera 1.2 m above the floor, dancer 3.5 m ahead
    cam = cam + offset
    up = R @ np.array([0.0, -1.0, 0.0])
    floor_point = offset.copy()
    t = np.arange(cam.shape[0]) / c.fps
    h = (cam[:, fi] - floor_point) @ up
    v = np.linalg.norm(np.gradient(cam[:, fi], t, axis=0), axis=-1)
    # the mocap toe points sit a few cm above the sole: measure each point from its own lowest resting height
    rest_h = np.array([np.percentile(h[v[:, k] < 0.2, k], 5) for k in range(4)])
    contacts = (h - rest_h < 0.05) & (v < 0.25)
    return Truth(cam, floor_point, up, contacts, t)


def project(joints: np.ndarray) -> np.ndarray:
    """Camera-frame joints ``(T, J, 3)`` m -> ``(T, J, 2)`` px (principal point at the image centre)."""
    return np.stack([FOCAL * joints[..., 0] / joints[..., 2] + WIDTH / 2,
                     FOCAL * joints[..., 1] / joints[..., 2] + HEIGHT / 2], axis=-1)


def estimate(tr: Truth, *, seed: int = 0, noise_3d: float = 0.015, noise_2d: float = 2.0,
             root_noise=(0.02, 0.02, 0.06)) -> pose_io.PoseSequence:
    """A noisy estimate of the truth as the pipeline stores it (root-relative 3D + trajectory + 2D)."""
    rng = np.random.default_rng(seed)
    j = tr.joints
    root = j[:, 0]
    rel = j - root[:, None] + rng.normal(0, noise_3d, j.shape)
    rel -= rel[:, :1]
    kp = project(j) + rng.normal(0, noise_2d, j.shape[:2] + (2,))
    kp3 = np.concatenate([kp, np.full(j.shape[:2] + (1,), 0.9)], axis=-1)
    traj = root + rng.normal(0, 1, root.shape) * np.asarray(root_noise)
    T = j.shape[0]
    return pose_io.PoseSequence(keypoints_2d=kp3, timestamps=tr.t, frame_indices=np.arange(T),
                                detected=np.ones(T, dtype=bool), fps=30.0, image_size=(WIDTH, HEIGHT),
                                joint_names_2d=CANONICAL, backend="test", joints_3d=rel, trajectory=traj,
                                lifter="test")
