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
    seen[..., 2] /= k[:, None]                                 # how a zoom shows up in the estimated root depth
    seen[..., 0] /= k[:, None]
    seen[..., 1] /= k[:, None]
    bg = np.stack([np.zeros_like(k), np.zeros_like(k), np.log(k)], axis=1)
    out, rep = CM.compensate(seen, tr.t, mode="auto", background=bg, focal=M.FOCAL)
    assert rep.used == "background"
    np.testing.assert_allclose(out[:, HIP, [0, 2]], j[:, HIP, [0, 2]], atol=1e-6)


def test_bad_arguments():
    j = np.zeros((5, 27, 3))
    t = np.arange(5) / 30.0
    with pytest.raises(ValueError):
        CM.compensate(j, t, mode="zoom")
    with pytest.raises(ValueError):
        CM.compensate(j, t, mode="auto")                       # no contacts and no background
    with pytest.raises(ValueError):
        CM.compensate(j, t, mode="auto", background=np.zeros((5, 3)))   # no focal length
