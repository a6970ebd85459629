"""Shot cuts in the motion stage: each shot is cleaned on its own, and the shots are joined so the dancer's
heading and place go on through a cut (``core.shots.align_shots``, ``core.motion_cleanup.prepare_world``).

The truth is a real CMU dance clip (``tests/core/mocap_poses.py``) filmed by two cameras: the first as in the other
motion-stage tests, the second from 50° to the side, nearer and tilted more; the clip cuts from one to the other.
"""
from __future__ import annotations

import numpy as np
import pytest

from core import motion_cleanup, pose_io, shots
from core.floor import CAMERA_UP
from core.skeletons import CANONICAL

import mocap_poses as mp

CUT = 120
TURN_DEG = 50.0


def _rot_x(deg):
    a = np.radians(deg)
    return np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])


def _rot_y(deg):
    a = np.radians(deg)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


@pytest.fixture(scope="module")
def clip(shared_data):
    tr = mp.truth(shared_data)
    world = (tr.joints - np.array([0.0, 1.2, 3.5])) @ _rot_x(mp.TILT_DEG)    # untilted: camera A's heading, y down
    second = (world - world[CUT, 0] * [1, 0, 1]) @ _rot_y(TURN_DEG).T @ _rot_x(15.0).T + np.array([0.3, 1.5, 2.6])
    seen = np.concatenate([tr.joints[:CUT], second[CUT:]])
    return tr, world, seen


def _poses(tr, seen, *, with_shots: bool, seed: int = 0, first: int | None = None) -> pose_io.PoseSequence:
    """The noisy estimate (as ``mocap_poses.estimate``) of what the cameras saw; ``first``: only that many frames."""
    rng = np.random.default_rng(seed)
    root = seen[:, 0]
    rel = seen - root[:, None] + rng.normal(0, 0.015, seen.shape)
    rel -= rel[:, :1]
    kp = mp.project(seen) + rng.normal(0, 2.0, seen.shape[:2] + (2,))
    kp3 = np.concatenate([kp, np.full(seen.shape[:2] + (1,), 0.9)], axis=-1)
    traj = root + rng.normal(0, 1, root.shape) * np.array([0.02, 0.02, 0.06])
    T = len(seen) if first is None else first
    rel, kp3, traj = rel[:T], kp3[:T], traj[:T]
    return pose_io.PoseSequence(keypoints_2d=kp3, timestamps=tr.t[:T], frame_indices=np.arange(T),
                                detected=np.ones(T, dtype=bool), fps=30.0, image_size=(mp.WIDTH, mp.HEIGHT),
                                joint_names_2d=CANONICAL, backend="test", joints_3d=rel, trajectory=traj,
                                lifter="test", shots=np.array([[0, CUT], [CUT, T]]) if with_shots else None)


def _heading_error_deg(est, world):
    d = shots.facing_yaw(est, CAMERA_UP) - shots.facing_yaw(world, CAMERA_UP)
    return np.degrees(np.abs(np.angle(np.exp(1j * d))))


def test_facing_yaw_turns_with_the_body(clip):
    _, world, _ = clip
    turned = world @ _rot_y(30.0).T
    d = np.degrees(np.angle(np.exp(1j * (shots.facing_yaw(turned) - shots.facing_yaw(world)))))
    np.testing.assert_allclose(np.abs(d), 30.0, atol=1e-6)
    bad = world.copy()
    bad[3] = np.nan
    assert np.isnan(shots.facing_yaw(bad)[3]) and np.isfinite(shots.facing_yaw(bad)[4])


def test_align_shots_undoes_a_cuts_turn_and_jump(clip):
    _, world, _ = clip
    moved = world.copy()
    moved[CUT:] = (world[CUT:] - world[CUT, 0]) @ _rot_y(-40.0).T + world[CUT, 0] + np.array([1.0, 0.0, 1.5])
    out, rep = shots.align_shots(moved, [(0, CUT), (CUT, len(world))])
    assert rep.turns_deg[0] == 0.0 and abs(abs(rep.turns_deg[1]) - 40.0) < 6.0   # about up (-y): the sign flips
    err = np.linalg.norm(out - world, axis=-1)
    assert np.median(_heading_error_deg(out, world)[CUT:]) < 6.0
    assert np.linalg.norm((out[CUT:, 0] - world[CUT:, 0]) * [1, 0, 1], axis=-1).max() < 0.5
    np.testing.assert_array_equal(out[:CUT], world[:CUT])          # the first shot is the reference
    assert err[CUT:].mean() < 0.3
    one, rep1 = shots.align_shots(moved, None)
    np.testing.assert_array_equal(one, moved)
    assert "one shot" in rep1.describe()


def test_shot_ranges_checks_the_cover():
    assert shots.shot_ranges(None, 5) == [(0, 5)]
    with pytest.raises(ValueError, match="cover"):
        shots.shot_ranges([[0, 2], [3, 5]], 5)


def test_a_cut_to_another_camera_keeps_the_dancers_heading_and_place(clip):
    """Without the shots the second camera's view turns the dancer by 50° and moves her at the cut; with them her
    heading and path go on: the heading within a few degrees of the truth after the cut, no step at the cut."""
    tr, world, seen = clip
    T = len(seen)
    merged, *_ = motion_cleanup.prepare_world(_poses(tr, seen, with_shots=False))
    split, _, _, repairs = motion_cleanup.prepare_world(_poses(tr, seen, with_shots=True))
    after = slice(CUT + 10, T)
    before_fix = np.median(_heading_error_deg(merged, world)[after])
    fixed = np.median(_heading_error_deg(split, world)[after])
    assert before_fix > 35.0, before_fix
    assert fixed < 8.0, fixed
    # each shot is cleaned on its own: the first shot is what the first shot's frames alone give
    alone, *_ = motion_cleanup.prepare_world(_poses(tr, seen, with_shots=False, first=CUT))
    np.testing.assert_allclose(split[:CUT], alone, atol=1e-12)
    # no teleport at the cut: the hip's step there is like its steps around it
    step = np.linalg.norm(np.diff(split[:, 0] * [1, 0, 1], axis=0), axis=1)
    assert step[CUT - 1] < 3.0 * np.median(step[CUT - 15:CUT + 15]) + 0.02
    cut = [r for r in repairs if r.what == "shot cut"]
    assert len(cut) == 1 and cut[0].frames.tolist() == [CUT] and "shot 2: turned" in cut[0].details["note"]


def test_a_close_up_takes_its_height_from_the_shot_beside(clip):
    """A first shot that never sees the legs (a close-up) sits 0.4 m too low (its floor was fitted to guessed feet):
    it is raised to continue the hips of the next shot, which sees them; a shot whose legs are seen is left."""
    _, world, _ = clip
    T = len(world)
    low = world.copy()
    low[:CUT] -= 0.4 * CAMERA_UP
    seen = np.ones(T, dtype=bool)
    seen[:CUT] = False
    out, dh = shots.continue_height(low, [(0, CUT), (CUT, T)], seen, up=CAMERA_UP)
    assert abs(dh[0] - 0.4) < 0.05 and dh[1] == 0.0
    assert np.abs((out - world) @ CAMERA_UP).max() < 0.05
    np.testing.assert_array_equal(out[CUT:], world[CUT:])
    same, dh2 = shots.continue_height(low, [(0, CUT), (CUT, T)], np.ones(T, dtype=bool), up=CAMERA_UP)
    assert not np.any(dh2)
    np.testing.assert_array_equal(same, low)
