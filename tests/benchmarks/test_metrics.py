"""Closed-loop metrics on hand-made cases built from a real rest skeleton (the shared mat4 model's CANONICAL joints).

Each case has a known answer worked out by hand: a rigid/scaled copy has zero PA-MPJPE, a planted foot has zero
skate, a constant-velocity root has zero jitter, and so on; the perturbed variants check that the metrics do move.
"""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks.closed_loop import metrics as M
from core import quat as Q
from core.formats import pmx
from core.rest_skeleton import RestSkeleton
from core.retarget import rest_joints
from core.skeletons import CANONICAL

J = {n: i for i, n in enumerate(CANONICAL)}
T = 40


@pytest.fixture(scope="module")
def pose(shared_data):
    rest = RestSkeleton.from_pmx(pmx.read(shared_data / "pmx" / "mat4_trace_model" / "mat4_v4_trace_model.pmx"))
    return rest_joints(rest)            # (27, 3) MMD units, feet on y ~ 0


def _seq(pose, t=T):
    return np.repeat(pose[None], t, axis=0).copy()


def _rot_y(deg):
    a = np.radians(deg)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def test_mpjpe_ignores_the_root_position_and_measures_a_known_offset(pose):
    gt = _seq(pose)
    est = gt + np.array([3.0, -1.0, 2.0])           # whole body moved: hips-aligned error 0
    assert M.mpjpe(est, gt) == pytest.approx(0.0, abs=1e-9)
    est[:, J["LWrist"]] += np.array([0.0, 0.0, 1.25])  # one joint 1.25 units = 100 mm off, 1 of 17 joints
    assert M.mpjpe(est, gt) == pytest.approx(100.0 / 17, rel=1e-9)


def test_pa_mpjpe_of_a_rotated_scaled_moved_copy_is_zero(pose):
    gt = _seq(pose)
    rng = np.random.default_rng(1)
    est = np.empty_like(gt)
    for t in range(T):
        q = Q.normalize(rng.normal(size=4))
        est[t] = 1.7 * Q.rotate(np.broadcast_to(q, (27, 4)), gt[t]) + rng.normal(size=3) * 10
    assert M.pa_mpjpe(est, gt) == pytest.approx(0.0, abs=1e-6)
    assert M.mpjpe(est, gt) > 100.0                 # not aligned for MPJPE: large


def test_pa_mpjpe_does_not_undo_a_mirror_image(pose):
    """Procrustes allows only proper rotations: a left/right mirror image keeps an error."""
    gt = _seq(pose)
    est = gt * np.array([-1.0, 1.0, 1.0])
    assert M.pa_mpjpe(est, gt) > 5.0


def test_pa_mpjpe_is_at_most_mpjpe_on_noisy_poses(pose):
    rng = np.random.default_rng(2)
    gt = _seq(pose) + rng.normal(size=(T, 27, 3)) * 0.3
    est = (gt @ _rot_y(20).T) * 0.9 + rng.normal(size=(T, 27, 3)) * 0.5
    assert 0.0 < M.pa_mpjpe(est, gt) < M.mpjpe(est, gt)


def test_root_error_removes_the_start_offset_only(pose):
    gt = _seq(pose)
    gt += np.linspace(0, 10, T)[:, None, None] * np.array([1.0, 0.0, 0.0])   # walks 10 units along x
    assert M.root_error(gt + np.array([5.0, 2.0, -3.0]), gt) == pytest.approx(0.0, abs=1e-9)
    est = _seq(pose)                                                          # stays where it started
    # error at frame t is 10 t / (T - 1) units: mean 5 units = 400 mm
    assert M.root_error(est, gt) == pytest.approx(400.0, rel=1e-9)


def test_jitter_of_constant_velocity_is_zero_and_of_a_parabola_is_its_acceleration(pose):
    t = np.arange(T) / 30.0
    lin = _seq(pose) + (t * 12.5)[:, None, None] * np.array([0.0, 0.0, 1.0])   # 1 m/s
    assert M.jitter(lin) == pytest.approx(0.0, abs=1e-9)
    par = _seq(pose) + (0.5 * 3.0 * t ** 2 * 12.5)[:, None, None] * np.array([0.0, 1.0, 0.0])  # a = 3 m/s²
    assert M.jitter(par) == pytest.approx(3.0, rel=1e-6)


def test_planted_foot_has_no_skate_and_a_sliding_one_its_speed(pose):
    gt = _seq(pose)
    contact = M.foot_contacts(gt)
    assert contact.all()                              # rest feet on the floor, still
    assert M.foot_skate(gt, contact) == pytest.approx(0.0, abs=1e-9)
    slide = gt.copy()
    v = 0.4 * 12.5 / 30.0                             # 0.4 m/s in units per frame
    for n in ("LHeel", "LFootIndex"):
        slide[:, J[n], 0] += v * np.arange(T)
    # two of the four foot points slide at 40 cm/s
    assert M.foot_skate(slide, contact) == pytest.approx(20.0, rel=1e-6)
    assert not M.foot_contacts(slide)[:, :2].any()    # too fast to count as contact itself


def test_foot_height_error_and_points_below_the_floor(pose):
    gt = _seq(pose)
    contact = M.foot_contacts(gt)
    low = gt.copy()
    low[..., 1] -= 0.5                                # 4 cm down
    assert M.foot_height_error(low, gt, contact) == pytest.approx(4.0, rel=1e-6)
    b = M.below_floor(low)
    assert b["frames"] == T and b["points"] > 0 and b["lowest_cm"] < -2.0
    assert M.below_floor(gt)["points"] == 0


def test_rotation_steps_count_flips_not_fast_turns():
    t = np.arange(30)
    axis = np.array([0.0, 1.0, 0.0])
    smooth = Q.from_axis_angle(np.broadcast_to(axis, (30, 3)), np.radians(30.0) * t)   # 30°/frame: fast, no pop
    assert M.rotation_steps({"腕": smooth}) == 0
    pop = Q.from_axis_angle(np.broadcast_to(axis, (30, 3)), np.where(t == 10, np.pi, 0.0))  # 180° and back
    assert M.rotation_steps({"腕": pop, "首": smooth}) == 2
    assert M.rotation_steps({"腕": -pop}) == 2        # the sign of a quaternion is not a rotation


def test_speed_p99_and_error_2d(pose):
    t = np.arange(T) / 30.0
    x = _seq(pose) + (t * 2.0 * 12.5)[:, None, None] * np.array([1.0, 0.0, 0.0])   # 2 m/s
    assert M.speed_p99(x) == pytest.approx(2.0, rel=1e-6)
    gt_px = np.zeros((5, 27, 2))
    det = gt_px + np.array([3.0, 4.0])
    det[0, 0] = np.nan
    assert M.error_2d(det, gt_px) == {"mean_px": pytest.approx(5.0), "median_px": pytest.approx(5.0)}


def test_mirrored_2d_finds_the_frames_labelled_back_to_front(pose):
    # the model's rest joints seen from the front (x, y of MMD = image right, up): frames 3-6 have every left and
    # right label exchanged, frame 8 has 4 px of noise (not mirrored), frame 9 has no limb joint at all
    from core.skeletons import CANONICAL_MIRROR
    gt_px = np.repeat((pose[:, :2] * np.array([20.0, -20.0]))[None], 10, axis=0) + 300.0
    det = gt_px.copy()
    det[3:7] = gt_px[3:7][:, CANONICAL_MIRROR]
    det[8] += np.random.default_rng(0).normal(0, 4.0, det[8].shape)
    det[9, list(M.LIMBS)] = np.nan
    assert np.flatnonzero(M.mirrored_2d(det, gt_px)).tolist() == [3, 4, 5, 6]
    # a body in profile (left and right on one line) cannot be told from its mirror: never counted
    side = gt_px.copy()
    side[:, :, 0] = 300.0
    assert not M.mirrored_2d(side[:, CANONICAL_MIRROR], side).any()
    with pytest.raises(ValueError):
        M.mirrored_2d(det[:, :17], gt_px[:, :17])


def test_shapes_are_checked(pose):
    with pytest.raises(ValueError):
        M.mpjpe(_seq(pose, 3), _seq(pose, 4))
