"""core.camera_motion: a camera zoom on a real dance (CMU mocap) must not become travel; --camera static / off."""
from __future__ import annotations

import numpy as np
import pytest

import mocap_poses as M
from core import camera_motion as CM, floor as F, motion_cleanup
from core.skeletons import CANONICAL

HIP = CANONICAL.index("Hip")


def _path(x):
    return float(np.sum(np.linalg.norm(np.diff(x[:, [0, 2]], axis=0), axis=1)))


@pytest.fixture(scope="module")
def zoomed(shared_data):
    """005_12 (a dancer mostly in place) with a 1.6× zoom-in over the clip: the 2D body grows, so the trajectory
    reads it as the dancer walking ~1.3 m towards the camera."""
    tr = M.truth(shared_data, "cmu_iclone/005_12.bvh")
    est = M.estimate(tr)
    k = np.linspace(1.0, 1.6, len(tr.t))                      # focal length / initial focal length
    traj = est.trajectory.astype(np.float64).copy()
    traj[:, 2] /= k                                            # apparent depth shrinks with the zoom
    kp = est.keypoints_2d.copy()
    kp[..., :2] = (kp[..., :2] - [M.WIDTH / 2, M.HEIGHT / 2]) * k[:, None, None] + [M.WIDTH / 2, M.HEIGHT / 2]
    est.trajectory = traj.astype(np.float32)
    est.keypoints_2d = kp.astype(np.float32)
    absolute, kp27, _, _ = motion_cleanup.prepare_world(est)
    g = F.ground(absolute, tr.t, keypoints_2d=kp27)
    return tr, g, kp27


def test_auto_uses_the_feet_and_removes_the_zoom_walk(zoomed):
    tr, g, kp = zoomed
    before = _path(g.joints[:, HIP])
    out, rep = CM.compensate(g.joints, tr.t, g.contacts, keypoints_2d=kp)
    true_path = _path(tr.joints[:, HIP])
    assert rep.used == "feet" and rep.zoom and rep.scale_change > 1.4
    assert "zoom" in rep.note and "feet" in rep.note
    net_before = np.linalg.norm(g.joints[-1, HIP, [0, 2]] - g.joints[0, HIP, [0, 2]])
    net_after = np.linalg.norm(out[-1, HIP, [0, 2]] - out[0, HIP, [0, 2]])
    net_true = np.linalg.norm(tr.joints[-1, HIP, [0, 2]] - tr.joints[0, HIP, [0, 2]])
    assert net_before > net_true + 0.8                          # the zoom read as a walk of about a metre
    assert abs(net_after - net_true) < 0.3 * (net_before - net_true)
    assert _path(out[:, HIP]) < before
    assert true_path < before


def test_static_keeps_the_dancer_in_place_and_off_changes_nothing(zoomed):
    tr, g, kp = zoomed
    out, rep = CM.compensate(g.joints, tr.t, g.contacts, mode="static", keypoints_2d=kp)
    assert rep.used == "static"
    hip = out[:, HIP]
    assert np.abs(hip[:, [0, 2]] - hip[0, [0, 2]]).max() < 1e-9
    np.testing.assert_allclose(hip[:, 1], g.joints[:, HIP, 1])   # jumps and crouches are kept
    same, rep_off = CM.compensate(g.joints, tr.t, g.contacts, mode="off")
    assert rep_off.used == "off"
    np.testing.assert_array_equal(same, g.joints)


def test_background_track_undoes_a_known_zoom(shared_data):
    tr = M.truth(shared_data, "cmu_iclone/005_12.bvh")
    j = tr.joints.copy()
    k = np.linspace(1.0, 1.5, len(tr.t))
    seen = j.copy()
    # a zoom by k about the centre: the body looks k times larger, so its depth reads k times nearer; its image
    # position (hence x and y at that depth) is unchanged: u' = k f x / z read at depth z / k gives x again
    seen[..., 2] -= ((1.0 - 1.0 / k) * j[:, HIP, 2])[:, None]
    bg = np.stack([np.zeros_like(k), np.zeros_like(k), np.log(k)], axis=1)
    out, rep = CM.compensate(seen, tr.t, mode="auto", background=bg, focal=M.FOCAL)
    assert rep.used == "background"
    np.testing.assert_allclose(out[:, HIP], j[:, HIP], atol=1e-6)
    np.testing.assert_allclose(out - out[:, HIP:HIP + 1], j - j[:, HIP:HIP + 1], atol=1e-6)   # the pose is kept


def test_background_pan_turns_the_body_back_into_the_first_frame():
    """A still dancer 3 m ahead, the camera turning right by up to 40°: in each frame's camera axes she drifts left
    and turns; the background moved left by f * psi. Undone, she stands still with one heading."""
    T, f = 60, 800.0
    psi = np.radians(np.linspace(0.0, 40.0, T))
    rng = np.random.default_rng(0)
    body = rng.normal(0.0, 0.3, (27, 3))
    body -= body[HIP]
    world = body + np.array([0.0, 0.0, 3.0])
    c, s_ = np.cos(psi), np.sin(psi)
    # camera axes after a turn by psi about the vertical (y down): x' = x cos - z sin, z' = x sin + z cos
    seen = np.empty((T, 27, 3))
    seen[..., 0] = world[None, :, 0] * c[:, None] - world[None, :, 2] * s_[:, None]
    seen[..., 1] = world[None, :, 1]
    seen[..., 2] = world[None, :, 0] * s_[:, None] + world[None, :, 2] * c[:, None]
    bg = np.stack([-f * psi, np.zeros(T), np.zeros(T)], axis=1)
    out, rep = CM.compensate(seen, np.arange(T) / 30.0, mode="auto", background=bg, focal=f)
    np.testing.assert_allclose(out, np.broadcast_to(world, out.shape), atol=1e-9)
    assert "pan 40°" in rep.note


def test_background_usable_and_2d_undo():
    assert CM.background_usable(np.array([True] + [True, False] * 10))
    assert not CM.background_usable(np.array([True] + [False, False, True] * 10))
    assert not CM.background_usable(np.array([True]))
    # a static point seen through a zoom x2 about the centre and a 10 px shift comes back to its first position
    size = (101, 51)
    c = np.array([50.0, 25.0])
    p0 = np.array([[[70.0, 30.0, 0.9]]])
    bg = np.array([[10.0, -4.0, np.log(2.0)]])
    seen = p0.copy()
    seen[..., :2] = c + 2.0 * (p0[..., :2] - c) + bg[:, None, :2]
    np.testing.assert_allclose(CM.undo_background_2d(seen, bg, size), p0)


def test_bad_arguments():
    j = np.zeros((5, 27, 3))
    t = np.arange(5) / 30.0
    with pytest.raises(ValueError):
        CM.compensate(j, t, mode="zoom")
    with pytest.raises(ValueError):
        CM.compensate(j, t, mode="auto")                       # no contacts and no background
    with pytest.raises(ValueError):
        CM.compensate(j, t, mode="auto", background=np.zeros((5, 3)))   # no focal length
