"""core.gating: the plausibility gate on real detections (lia_kim detectron2 keypoints) with real failure modes
injected (a face-sized skeleton, a skeleton on another figure, a limb laid on the hair, legs below the frame)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from core import gating, skeletons
from core.keypoints_io import load_keypoints


@pytest.fixture(scope="module")
def lia(shared_data):
    return load_keypoints(shared_data / "keypoints" / "lia_kim_dance" / "detectron2_raw.npz")


def _gate(p, kp=None, **kw):
    kw.setdefault("min_joint_conf", gating.min_joint_confidence(p.backend))
    return gating.gate(p.keypoints_2d if kp is None else kp, p.joint_names_2d, p.image_size, detected=p.detected,
                       timestamps=p.timestamps, **kw)


def test_clean_real_detections_are_mostly_usable(lia):
    g = _gate(lia)
    assert g.usable.sum() >= 0.95 * lia.detected.sum()
    assert not (g.usable & ~lia.detected).any()          # nothing undetected becomes usable
    assert np.array_equal(g.rejected, lia.detected & ~g.usable)
    assert np.all(g.keypoints_2d[~g.usable, :, 2] == 0)


def test_face_sized_and_displaced_skeletons_are_rejected(lia):
    g0 = _gate(lia)
    frames = np.flatnonzero(g0.usable)[40:200:16]
    tiny, moved = frames[::2], frames[1::2]
    kp = lia.keypoints_2d.copy()
    nose = kp[:, 0, :2].copy()
    for t in tiny:   # the whole skeleton shrunk into the face (what MediaPipe gives on some anime frames)
        kp[t, :, :2] = nose[t] + 0.12 * (kp[t, :, :2] - nose[t])
    for t in moved:  # the same body three torso lengths to the side, inside the frame: on another figure
        side = -1.0 if g0.centre[t, 0] > lia.image_size[0] / 2 else 1.0
        kp[t, :, 0] += side * 3.0 * g0.scale[t]
    g = _gate(lia, kp)
    assert g.rejected[tiny].all() and g.rejected[moved].all()
    assert {gating.REASONS[r] for r in g.reason[tiny]} <= {"scale", "tiny"}
    assert "position" in {gating.REASONS[r] for r in g.reason[moved]}
    others = np.setdiff1d(np.flatnonzero(g0.usable), frames)
    assert g.usable[others].mean() > 0.97                # the track around them is kept


def test_limb_on_the_hair_loses_its_joints_not_the_frame(lia):
    g0 = _gate(lia)
    t = int(np.flatnonzero(g0.usable)[100])
    names = lia.joint_names_2d
    le, lw = names.index("left_elbow"), names.index("left_wrist")
    kp = lia.keypoints_2d.copy()
    kp[t, lw, :2] = kp[t, le, :2] + np.array([0.0, -1.6 * g0.scale[t]])   # a forearm as long as 1.6 torsos
    kp[t, lw, 2] = 0.9
    g = _gate(lia, kp)
    assert g.usable[t]
    assert g.joint_missing[t, lw] and g.keypoints_2d[t, lw, 2] == 0
    assert not g.joint_missing[t, le] or g0.joint_missing[t, le]


def test_legs_below_the_frame_are_marked_upper_body(lia):
    g0 = _gate(lia)
    rows = np.flatnonzero(g0.usable)[50:80]
    names = lia.joint_names_2d
    kp = lia.keypoints_2d.copy()
    h = lia.image_size[1]
    for n in ("left_knee", "right_knee", "left_ankle", "right_ankle"):
        kp[rows, names.index(n), 1] = h * 1.3     # the detector's guess below the frame edge
    g = _gate(lia, kp)
    assert g.upper_body[rows].all() and g.usable[rows].all()
    assert not g.upper_body[np.setdiff1d(np.flatnonzero(g0.usable), rows)].any() or g0.upper_body.any()
    assert np.all(g.keypoints_2d[rows][:, [names.index("left_knee"), names.index("right_ankle")], 2] == 0)


def test_gate_poses_hands_rejected_frames_and_joints_on_as_missing(lia):
    T = len(lia)
    j3 = np.zeros((T, len(skeletons.CANONICAL), 3), np.float32)
    j3[:, :, 1] = np.linspace(-0.5, 0.5, len(skeletons.CANONICAL))[None]
    p = replace(lia, joints_3d=j3)
    g0 = _gate(lia)
    t = int(np.flatnonzero(g0.usable)[60])
    kp = p.keypoints_2d.copy()
    kp[t, :, 0] += (-1.0 if g0.centre[t, 0] > lia.image_size[0] / 2 else 1.0) * 3.0 * g0.scale[t]
    gated, g = gating.gate_poses(replace(p, keypoints_2d=kp))
    assert g.rejected[t] and gated.rejected[t] and not gated.detected[t]
    assert np.isnan(gated.joints_3d[t]).all() and np.isnan(gated.keypoints_2d[t, :, :2]).all()
    lw = skeletons.CANONICAL.index("LWrist")
    miss = g.joint_missing[:, lia.joint_names_2d.index("left_wrist")] & g.usable
    assert miss.any() and np.isnan(gated.joints_3d[miss, lw]).all()
    assert np.isnan(gated.keypoints_2d[miss, lia.joint_names_2d.index("left_wrist"), :2]).all()
    assert np.isfinite(gated.joints_3d[g.usable & ~miss, lw]).all()


def test_neutral_legs_hang_under_the_hips():
    c = {n: i for i, n in enumerate(skeletons.CANONICAL)}
    x = np.zeros((1, len(skeletons.CANONICAL), 3))
    x[0, c["Thorax"]] = (0, -0.5, 0)
    x[0, c["LHip"]], x[0, c["RHip"]] = (0.1, 0, 0), (-0.1, 0, 0)
    y = gating.neutral_legs(x)
    assert np.allclose(y[0, c["LKnee"]], (0.1, 0.425, 0)) and np.allclose(y[0, c["RFoot"]], (-0.1, 0.835, 0))
    assert y[0, c["LFootIndex"], 2] < 0      # the toes point the way a camera-facing dancer faces (-z)


def test_gate_refuses_a_joint_set_without_hips():
    with pytest.raises(ValueError, match="shoulders and hips"):
        gating.gate(np.zeros((3, 2, 3)), ("a", "b"), (100, 100))


def test_a_second_of_face_sized_skeletons_is_rejected_as_a_whole(lia):
    """Thirty face-sized skeletons in a row own the running median around them; the shot's median still tells."""
    g0 = _gate(lia)
    rows = np.flatnonzero(g0.usable)[60:90]
    kp = lia.keypoints_2d.copy()
    nose = kp[rows, 0:1, :2]
    kp[rows, :, :2] = nose + 0.12 * (kp[rows, :, :2] - nose)   # a face is about an eighth of the body
    g = _gate(lia, kp)
    assert g.rejected[rows].mean() >= 0.9
    assert g.usable[np.setdiff1d(np.flatnonzero(g0.usable), rows)].mean() > 0.97


def test_a_one_frame_jump_of_a_joint_is_dropped_for_that_frame(lia):
    g0 = _gate(lia)
    t = int(np.flatnonzero(g0.usable)[120])
    j = lia.joint_names_2d.index("right_knee")
    kp = lia.keypoints_2d.copy()
    kp[t, j, 0] += 2.5 * g0.scale[t]
    g = _gate(lia, kp)
    assert g.usable[t] and g.joint_missing[t, j] and g.keypoints_2d[t, j, 2] == 0
    assert g.joint_missing[t - 1, j] == g0.joint_missing[t - 1, j]


def test_a_joint_a_shot_rarely_shows_keeps_the_detectors_guess(lia):
    """A joint seen in too few frames is not interpolated from them (nor left all-NaN for the motion stage)."""
    T = len(lia)
    j3 = np.random.default_rng(0).normal(size=(T, len(skeletons.CANONICAL), 3)).astype(np.float32)
    kp = lia.keypoints_2d.copy()
    le = lia.joint_names_2d.index("left_elbow")
    kp[:, le, 2] = np.where(np.arange(T) % 10 == 0, kp[:, le, 2], 0.0)     # seen in at most 1 frame in 10
    gated, g = gating.gate_poses(replace(lia, keypoints_2d=kp, joints_3d=j3))
    c = skeletons.CANONICAL.index("LElbow")
    assert np.array_equal(gated.joints_3d[g.usable, c], j3[g.usable, c])
    assert np.isfinite(gated.keypoints_2d[g.usable, le, :2]).all()
    assert np.all(gated.keypoints_2d[g.joint_missing[:, le], le, 2] == 0)
    assert any("left_elbow" in n and "kept as the detector guessed" in n for n in gated.notes)
