"""Fixtures shared by the lifter tool tests."""
from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.closed_loop.camera import framing_camera
from benchmarks.closed_loop.render import ground_truth
from core import pose_io
from core.conventions import METRES_PER_UNIT
from core.formats import pmx
from core.rest_skeleton import RestSkeleton
from core.skeletons import CANONICAL

T = 120


@pytest.fixture(scope="session")
def case_dir(shared_data, tmp_path_factory):
    """A case folder (gt.npz, est.npz, rendered.json) of CMU 005_10 on mat4 through a perfect detector: 2D = the
    true projection (confidence 0.9), world landmarks = the true camera-frame joints."""
    mocap = pytest.importorskip("tools.lifter_training.mocap")
    rest = RestSkeleton.from_pmx(pmx.read(shared_data / "pmx" / "mat4_trace_model" / "mat4_v4_trace_model.pmx"))
    motion, joints = mocap.to_mmd(mocap.load_clip(shared_data / "mocap" / "cmu_iclone" / "005_10.bvh").joints[:T],
                                  rest)
    cam = framing_camera(joints, yaw_deg=35.0, hfov_deg=50.0, height_m=1.3, width=640, height_px=480, fill=0.7)
    gt = ground_truth(rest, motion, cam)
    d = tmp_path_factory.mktemp("rendered") / "case"
    d.mkdir()
    np.savez(d / "gt.npz", **gt)
    kp = np.concatenate([gt["joints_px"], np.full((T, len(CANONICAL), 1), 0.9)], axis=-1)
    world = (gt["joints"] - gt["cam_position"]) @ gt["R"].T * METRES_PER_UNIT
    poses = pose_io.PoseSequence(keypoints_2d=kp, timestamps=np.arange(T) / 30.0, frame_indices=np.arange(T),
                                 detected=np.ones(T, bool), fps=30.0, image_size=(640, 480),
                                 joint_names_2d=CANONICAL, backend="mediapipe", joints_3d=world - world[:, :1],
                                 lifter="native")
    pose_io.save(d / "est.npz", poses)
    (d / "rendered.json").write_text(json.dumps({"clip": "cmu_iclone/005_10", "shading": "studio", "model": "mat4"}))
    return d, gt, world
