"""core.quat against an independent implementation (scipy's Rotation) and against its own algebraic laws."""
from __future__ import annotations

import numpy as np
import pytest

from core import quat as Q

Rotation = pytest.importorskip("scipy.spatial.transform").Rotation


@pytest.fixture(scope="module")
def rots():
    return Rotation.random(2000, random_state=1)


def same_rotation(a, b):
    """|dot| = 1 for each pair (q and -q are the same rotation)."""
    return np.abs(np.abs(np.sum(a * b, axis=-1)) - 1.0).max()


def test_matrix_round_trip_and_against_scipy(rots):
    q = rots.as_quat()                          # scipy is (x, y, z, w), scalar last, like ours
    assert np.abs(Q.to_matrix(q) - rots.as_matrix()).max() < 1e-12
    assert same_rotation(Q.from_matrix(rots.as_matrix()), q) < 1e-12


def test_shepperd_is_accurate_near_180_degrees():
    # every branch of Shepperd's method: rotations by ~π about each axis and an oblique one, plus identity
    axes = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1], [1, -2, 0.5]], dtype=float)
    for ang in (np.pi, np.pi - 1e-7, 1e-9, 0.0):
        r = Rotation.from_rotvec(axes / np.linalg.norm(axes, axis=1, keepdims=True) * ang)
        assert same_rotation(Q.from_matrix(r.as_matrix()), r.as_quat()) < 1e-12


def test_multiply_rotate_inverse(rots):
    q = rots.as_quat()
    p = q[::-1]
    assert same_rotation(Q.multiply(q, p), (rots * rots[::-1]).as_quat()) < 1e-12
    v = np.random.default_rng(0).normal(size=(len(q), 3))
    assert np.abs(Q.rotate(q, v) - rots.apply(v)).max() < 1e-12
    assert np.abs(Q.rotate(Q.inverse(q), Q.rotate(q, v)) - v).max() < 1e-12
    # inverse of a non-unit quaternion
    assert np.abs(Q.multiply(3 * q, Q.inverse(3 * q)) - Q.identity(len(q))).max() < 1e-12
    # broadcasting: one rotation, many vectors
    assert Q.rotate(q[0], v).shape == v.shape


def test_axis_angle_and_angle(rots):
    q = rots.as_quat()
    rv = rots.as_rotvec()
    ang = np.linalg.norm(rv, axis=1)
    axis, a = Q.to_axis_angle(q)
    assert np.abs(a - ang).max() < 1e-12
    assert np.abs(Q.angle(q) - ang).max() < 1e-12
    assert same_rotation(Q.from_axis_angle(axis, a), q) < 1e-12
    assert same_rotation(Q.from_axis_angle(rv, ang), q) < 1e-12
    # right-hand rule: +90° about Z takes X to Y
    assert np.allclose(Q.rotate(Q.from_axis_angle([0, 0, 1], np.pi / 2), [1, 0, 0]), [0, 1, 0])
    assert np.abs(Q.angle_between(q, -q)).max() < 1e-6


def test_from_two_vectors_is_the_shortest_arc():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(1000, 3))
    b = rng.normal(size=(1000, 3)) * 3
    q = Q.from_two_vectors(a, b)
    ua = a / np.linalg.norm(a, axis=1, keepdims=True)
    ub = b / np.linalg.norm(b, axis=1, keepdims=True)
    assert np.abs(Q.rotate(q, ua) - ub).max() < 1e-12
    # shortest: its angle equals the angle between the vectors, and its axis is ⊥ both
    assert np.abs(Q.angle(q) - np.arccos(np.clip(np.sum(ua * ub, 1), -1, 1))).max() < 1e-7
    assert np.abs(np.sum(q[:, :3] * ua, 1)).max() < 1e-12
    # opposite and degenerate inputs
    for u in ([1, 0, 0], [0, 0, 1], [0.3, -0.2, 0.9]):
        u = np.asarray(u, float)
        qo = Q.from_two_vectors(u, -2 * u)
        assert np.allclose(Q.rotate(qo, u), -u)
    assert np.allclose(Q.from_two_vectors([0, 0, 0], [1, 0, 0]), [0, 0, 0, 1])


def test_frames():
    rng = np.random.default_rng(3)
    p = rng.normal(size=(500, 3))
    s = rng.normal(size=(500, 3))
    m = Q.frame_matrix(p, s)
    assert np.abs(np.einsum("...ji,...jk->...ik", m, m) - np.eye(3)).max() < 1e-12
    assert np.allclose(np.linalg.det(m), 1.0)
    assert np.allclose(m[..., 0], p / np.linalg.norm(p, axis=1, keepdims=True))
    assert np.all(np.sum(m[..., 1] * s, 1) > 0)          # e2 on the secondary's side
    q = Q.from_frame(p, s)
    assert np.abs(Q.to_matrix(q) - m).max() < 1e-12
    assert np.isnan(Q.frame_matrix([1, 0, 0], [2, 0, 0])).any()   # parallel: undefined, flagged


def test_slerp_against_scipy(rots):
    from scipy.spatial.transform import Slerp
    a, b = rots[0], rots[1]
    ts = np.linspace(0, 1, 11)
    ref = Slerp([0, 1], Rotation.concatenate([a, b]))(ts).as_quat()
    assert same_rotation(Q.slerp(a.as_quat(), b.as_quat(), ts), ref) < 1e-12
    # takes the shorter arc even when given -b
    assert same_rotation(Q.slerp(a.as_quat(), -b.as_quat(), ts), ref) < 1e-12
    assert np.allclose(Q.slerp(a.as_quat(), a.as_quat(), 0.5), a.as_quat())


def test_make_continuous():
    rng = np.random.default_rng(4)
    # a smooth rotation track with random sign flips
    ang = np.linspace(0, 6 * np.pi, 400)
    q = Q.from_axis_angle(np.tile([0.2, 1.0, -0.3], (400, 1)), ang)
    flips = rng.choice([-1.0, 1.0], size=400)
    c = Q.make_continuous(q * flips[:, None])
    assert np.all(np.sum(c[1:] * c[:-1], -1) >= 0)
    assert np.allclose(np.abs(np.sum(c * q, -1)), 1.0)   # same rotations
    assert np.array_equal(c[0], q[0] * flips[0])
    # (T, N, 4): each track independent
    qq = np.stack([q * flips[:, None], -q], axis=1)
    cc = Q.make_continuous(qq)
    assert np.all(np.sum(cc[1:] * cc[:-1], -1) >= 0)
    with pytest.raises(ValueError):
        Q.make_continuous(q[:, :3])


def test_swing_twist(rots):
    q = rots.as_quat()
    axis = np.array([0.3, 0.9, -0.1])
    a = axis / np.linalg.norm(axis)
    sw, tw = Q.swing_twist(q, axis)
    assert np.abs(Q.multiply(sw, tw) - q).max() < 1e-12
    assert np.abs(np.sum(sw[:, :3] * a, 1)).max() < 1e-12         # swing axis ⊥ axis
    assert np.abs(np.cross(tw[:, :3], a)).max() < 1e-12            # twist about axis
    tw2, sw2 = Q.twist_swing(q, axis)
    assert np.abs(Q.multiply(tw2, sw2) - q).max() < 1e-12
    assert np.abs(np.sum(sw2[:, :3] * a, 1)).max() < 1e-12
    assert np.abs(np.cross(tw2[:, :3], a)).max() < 1e-12


def test_shape_errors():
    with pytest.raises(ValueError):
        Q.multiply(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError):
        Q.rotate(np.zeros(4), np.zeros(4))
    with pytest.raises(ValueError):
        Q.from_matrix(np.zeros((3, 4)))
    assert np.allclose(Q.normalize(np.zeros((2, 4))), [[0, 0, 0, 1]] * 2)
