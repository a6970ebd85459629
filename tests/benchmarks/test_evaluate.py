"""The closed loop's frame conventions and its retargeting floor, on the shared models and the real VMD dance
(numpy only: the ground truth is computed by ``render.ground_truth`` without rendering)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.closed_loop import evaluate as E
from benchmarks.closed_loop.camera import framing_camera
from benchmarks.closed_loop.motion_source import dense_from_vmd
from benchmarks.closed_loop.render import ground_truth
from core import conventions
from core.formats import pmx, vmd
from core.rest_skeleton import RestSkeleton
from core.retarget import joints_from_pose


@pytest.fixture(scope="module")
def case(shared_data):
    path = shared_data / "pmx" / "mat4_trace_model" / "mat4_v4_trace_model.pmx"
    rest = RestSkeleton.from_pmx(pmx.read(path))
    m = dense_from_vmd(shared_data / "vmd" / "openmmd_output_sample.vmd", first=0)
    j = joints_from_pose(rest, *rest.fk(m.rotations, m.locations))
    return rest, m, j


def _fake_render(tmp_path, rest, m, cam):
    gt = ground_truth(rest, m, cam)
    np.savez(tmp_path / "gt.npz", **gt)
    vmd.write(tmp_path / "gt_motion.vmd", m.to_vmd())
    (tmp_path / "case.json").write_text(json.dumps({"camera": cam.to_dict()}))
    return gt


def test_heading_frame_is_the_frame_the_job_writes(case):
    """A level camera at any yaw: the job's mapping camera -> MMD (core.conventions.camera_to_mmd) of what the
    camera sees equals the ground truth turned by Camera.heading_rotation, up to a translation."""
    rest, m, j = case
    for yaw in (0.0, 70.0, -150.0):
        cam = framing_camera(j, yaw_deg=yaw, hfov_deg=50.0, height_m=0.0, width=640, height_px=640)
        cam = type(cam)(position=(cam.position[0], cam.target[1], cam.position[2]), target=cam.target,
                        hfov_deg=50.0, width=640, height=640)              # no pitch: nothing for the job to level
        seen = conventions.camera_to_mmd(cam.to_camera(j) * conventions.METRES_PER_UNIT)
        want = j @ cam.heading_rotation().T
        d = seen - want
        assert np.allclose(d, d[0, 0], atol=1e-9), yaw


def test_retargeting_floor_is_a_few_millimetres(case, tmp_path):
    """The TRUE joints through core.retarget and back: the benchmark's best case (the issue measured 2-4 mm)."""
    rest, m, j = case
    cam = framing_camera(j, yaw_deg=70.0, hfov_deg=50.0, height_m=1.4, width=640, height_px=480)
    _fake_render(tmp_path, rest, m, cam)
    res = E.evaluate_oracle(tmp_path, rest)
    assert res["mpjpe_mm"] < 10.0 and res["pa_mpjpe_mm"] < 10.0
    assert res["root_error_mm"] < 10.0
    assert res["jitter_ms2"] == pytest.approx(res["jitter_gt_ms2"], rel=0.2)


def test_evaluate_run_scores_a_wrong_heading(case, tmp_path):
    """A job output that is right but turned 90° about the vertical scores a large MPJPE and a small PA-MPJPE."""
    from core.retarget import retarget
    rest, m, j = case
    cam = framing_camera(j, yaw_deg=0.0, hfov_deg=50.0, height_m=1.4, width=640, height_px=640)
    _fake_render(tmp_path, rest, m, cam)
    a = np.radians(90.0)
    turn = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    wrong = retarget(j @ cam.heading_rotation().T @ turn.T, rest)
    vmd.write(tmp_path / "est.vmd", wrong.to_vmd())
    res = E.evaluate_run(tmp_path, E.JobResult(True, vmd=tmp_path / "est.vmd"), rest)
    assert res["mpjpe_mm"] > 100.0 and res["pa_mpjpe_mm"] < 15.0


def test_run_job_reports_a_lifter_the_cli_does_not_know(shared_data, tmp_path):
    """An unknown --lifter name is refused by the CLI before any work; run_job says so (the benchmark skips it)."""
    (tmp_path / "render.mp4").write_bytes(b"")
    res = E.run_job(tmp_path, E.MODELS["yw"], "no_such_lifter", tmp_path / "out")
    assert not res.ok and res.reason.startswith("unknown lifter"), res.reason
    assert "no_such_lifter" in res.reason


def test_busiest_window_finds_the_moving_part(case):
    """A clip that stands still except for frames 200-260 (the real dance's first 60 frames): the chosen 90-frame
    window covers them."""
    rest, m, j = case
    still = np.repeat(j[:1], 400, axis=0)
    still[200:260] = j[:60]
    start = E._busiest_window(still, 90)
    assert start <= 200 and start + 90 >= 260
    assert E._busiest_window(j[:50], 90) == 0          # shorter than the window


def test_lift_diagnostic_scores_true_camera_frame_joints_as_perfect(case, tmp_path):
    """A pose file whose 3D joints are the truth in the camera frame (core.conventions: metres, x right, y down,
    z forward, Hip-relative) scores ~0 mm; the same joints with x negated (a mirror image) do not."""
    from core import pose_io, skeletons
    rest, m, j = case
    cam = framing_camera(j, yaw_deg=40.0, hfov_deg=55.0, height_m=1.6, width=640, height_px=480)
    _fake_render(tmp_path, rest, m, cam)
    truth = cam.to_camera(j) * conventions.METRES_PER_UNIT
    truth -= truth[:, :1]
    t = len(j)
    for name, j3, ok in (("true", truth, True), ("mirror", truth * np.array([-1.0, 1.0, 1.0]), False)):
        poses = pose_io.PoseSequence(keypoints_2d=np.zeros((t, 33, 3)), timestamps=np.arange(t) / 30.0,
                                     frame_indices=np.arange(t), detected=np.ones(t, bool), fps=30.0,
                                     image_size=(640, 480), joint_names_2d=skeletons.MEDIAPIPE33, backend="test",
                                     joints_3d=j3, lifter="test")
        npz = pose_io.save(tmp_path / f"{name}.npz", poses, overwrite=True)
        res = E.lift_diagnostic(tmp_path, {"native": E.JobResult(True, npz=npz)})["native (world landmarks)"]
        if ok:
            assert res["mpjpe_mm"] < 1.0 and res["pa_mpjpe_mm"] < 1.0
        else:
            assert res["mpjpe_mm"] > 30.0 and res["pa_mpjpe_mm"] > 10.0
