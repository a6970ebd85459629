"""Quaternion operations for retargeting, vectorised over leading axes (numpy only).

Conventions (``core.conventions``): quaternions are stored ``(x, y, z, w)`` -- VMD's on-disk order -- in the last
axis of float64 arrays; the product is Hamilton's; a unit quaternion ``q`` rotates a vector as ``v' = q v q*``;
``multiply(a, b)`` is "apply ``b`` first, then ``a``" (``R(ab) = R(a) R(b)`` with column vectors). Every function
broadcasts over leading axes, so ``(T, 4)`` tracks or ``(T, N, 4)`` poses need no Python loops.

Why not a library: scipy's ``Rotation`` or ``quaternion`` would do, but this module must import in Blender's bundled
Python, which has numpy and nothing else (see ``core/__init__``), so the dozen operations the retargeter needs are
written out here, each with its formula's source.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "identity", "normalize", "multiply", "conjugate", "inverse", "rotate", "to_matrix", "from_matrix",
    "frame_matrix", "from_frame", "from_axis_angle", "to_axis_angle", "angle", "angle_between",
    "from_two_vectors", "slerp", "make_continuous", "swing_twist", "twist_swing",
]

_EPS = 1e-12


def _q(q, what: str = "q") -> np.ndarray:
    a = np.asarray(q, dtype=np.float64)
    if a.shape[-1:] != (4,):
        raise ValueError(f"{what}: expected (..., 4) quaternions (x, y, z, w), got shape {a.shape}")
    return a


def _v(v, what: str = "v") -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    if a.shape[-1:] != (3,):
        raise ValueError(f"{what}: expected (..., 3) vectors, got shape {a.shape}")
    return a


def identity(shape=()) -> np.ndarray:
    """Identity quaternions ``(*shape, 4)`` = (0, 0, 0, 1)."""
    shape = (int(shape),) if np.isscalar(shape) else tuple(int(n) for n in shape)
    out = np.zeros(shape + (4,), dtype=np.float64)
    out[..., 3] = 1.0
    return out


def normalize(q) -> np.ndarray:
    """Unit quaternions ``(..., 4)``; an all-zero quaternion becomes identity (as [MT] reads VMD keys, docs/MMD_FACTS.md §1.4)."""
    q = _q(q)
    n = np.linalg.norm(q, axis=-1, keepdims=True)
    zero = n[..., 0] < _EPS
    out = q / np.where(n < _EPS, 1.0, n)
    if np.any(zero):
        out[zero] = (0.0, 0.0, 0.0, 1.0)
    return out


def multiply(a, b) -> np.ndarray:
    """Hamilton product ``a b`` of ``(..., 4)`` quaternions (broadcasting); as rotations: ``b`` first, then ``a``."""
    a = _q(a, "multiply a")
    b = _q(b, "multiply b")
    ax, ay, az, aw = np.moveaxis(a, -1, 0)
    bx, by, bz, bw = np.moveaxis(b, -1, 0)
    return np.stack([
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
        aw * bw - ax * bx - ay * by - az * bz,
    ], axis=-1)


def conjugate(q) -> np.ndarray:
    """``q*`` = (-x, -y, -z, w); the inverse of a unit quaternion."""
    q = _q(q)
    return q * np.array([-1.0, -1.0, -1.0, 1.0])


def inverse(q) -> np.ndarray:
    """``q⁻¹ = q* / |q|²`` for any non-zero quaternion ``(..., 4)``."""
    q = _q(q)
    return conjugate(q) / np.sum(q * q, axis=-1, keepdims=True)


def rotate(q, v) -> np.ndarray:
    """Rotate vectors ``v (..., 3)`` by unit quaternions ``q (..., 4)``: ``q v q*`` (broadcasting).

    Uses the expansion ``v' = v + 2w (u × v) + 2 u × (u × v)`` with ``u`` the vector part (equivalent to the
    sandwich product for unit ``q``).
    """
    q = _q(q, "rotate q")
    v = _v(v, "rotate v")
    u = q[..., :3]
    w = q[..., 3:4]
    t = 2.0 * _cross(u, v)
    return v + w * t + _cross(u, t)


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a × b`` of ``(..., 3)`` arrays (broadcasting), component by component: the same as ``np.cross``, without its
    per-call axis handling (it dominated the cost of small batches)."""
    a0, a1, a2 = a[..., 0], a[..., 1], a[..., 2]
    b0, b1, b2 = b[..., 0], b[..., 1], b[..., 2]
    out = np.empty(np.broadcast_shapes(a.shape, b.shape), dtype=np.result_type(a, b))
    out[..., 0] = a1 * b2 - a2 * b1
    out[..., 1] = a2 * b0 - a0 * b2
    out[..., 2] = a0 * b1 - a1 * b0
    return out


def to_matrix(q) -> np.ndarray:
    """Rotation matrices ``(..., 3, 3)`` (column-vector convention, ``v' = M v``) of unit quaternions ``(..., 4)``."""
    q = _q(q)
    x, y, z, w = np.moveaxis(q, -1, 0)
    xx, yy, zz = x * x, y * y, z * z
    xy, xz, yz = x * y, x * z, y * z
    wx, wy, wz = w * x, w * y, w * z
    m = np.stack([
        1 - 2 * (yy + zz), 2 * (xy - wz), 2 * (xz + wy),
        2 * (xy + wz), 1 - 2 * (xx + zz), 2 * (yz - wx),
        2 * (xz - wy), 2 * (yz + wx), 1 - 2 * (xx + yy),
    ], axis=-1)
    return m.reshape(q.shape[:-1] + (3, 3))


def from_matrix(m) -> np.ndarray:
    """Unit quaternions ``(..., 4)`` of rotation matrices ``(..., 3, 3)`` by Shepperd's method.

    S. W. Shepperd, "Quaternion from rotation matrix", *Journal of Guidance and Control* 1(3):223-224, 1978: of the
    four expressions for ``4w², 4x², 4y², 4z²`` (trace and diagonal), take the largest, so the square root and the
    division are always well conditioned, then read the other three components off the off-diagonal sums and
    differences. The result has ``w >= 0`` where ``w`` is the component chosen, otherwise the sign is arbitrary
    (q and -q are the same rotation); use :func:`make_continuous` on tracks.

    Raises:
        ValueError: ``m`` is not ``(..., 3, 3)``.
    """
    m = np.asarray(m, dtype=np.float64)
    if m.shape[-2:] != (3, 3):
        raise ValueError(f"from_matrix: expected (..., 3, 3) matrices, got shape {m.shape}")
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    tr = m00 + m11 + m22
    cand = np.stack([tr, m00, m11, m22], axis=-1)
    k = np.argmax(cand, axis=-1)
    out = np.empty(m.shape[:-2] + (4,), dtype=np.float64)
    # case w largest
    s = np.sqrt(np.maximum(1.0 + tr, _EPS)) * 2.0          # s = 4w
    case_w = np.stack([(m21 - m12) / s, (m02 - m20) / s, (m10 - m01) / s, 0.25 * s], axis=-1)
    s = np.sqrt(np.maximum(1.0 + m00 - m11 - m22, _EPS)) * 2.0   # s = 4x
    case_x = np.stack([0.25 * s, (m01 + m10) / s, (m02 + m20) / s, (m21 - m12) / s], axis=-1)
    s = np.sqrt(np.maximum(1.0 + m11 - m00 - m22, _EPS)) * 2.0   # s = 4y
    case_y = np.stack([(m01 + m10) / s, 0.25 * s, (m12 + m21) / s, (m02 - m20) / s], axis=-1)
    s = np.sqrt(np.maximum(1.0 + m22 - m00 - m11, _EPS)) * 2.0   # s = 4z
    case_z = np.stack([(m02 + m20) / s, (m12 + m21) / s, 0.25 * s, (m10 - m01) / s], axis=-1)
    k = k[..., None]
    out = np.where(k == 0, case_w, np.where(k == 1, case_x, np.where(k == 2, case_y, case_z)))
    return normalize(out)


def frame_matrix(primary, secondary) -> np.ndarray:
    """Orthonormal frames ``(..., 3, 3)`` from two non-parallel directions (Gram-Schmidt).

    Columns: ``e1 = primary/|primary|``; ``e2`` = the part of ``secondary`` orthogonal to ``e1``, normalised;
    ``e3 = e1 × e2``. The frame is exact along ``primary``; ``secondary`` only fixes the rotation about it.
    Where the two are (nearly) parallel or zero the result contains NaN -- callers choose a fallback.
    """
    p = _v(primary, "frame_matrix primary")
    s = _v(secondary, "frame_matrix secondary")
    p, s = np.broadcast_arrays(p, s)
    with np.errstate(invalid="ignore", divide="ignore"):
        e1 = p / np.linalg.norm(p, axis=-1, keepdims=True)
        s2 = s - np.sum(s * e1, axis=-1, keepdims=True) * e1
        n2 = np.linalg.norm(s2, axis=-1, keepdims=True)
        e2 = np.where(n2 > 1e-9 * np.maximum(np.linalg.norm(s, axis=-1, keepdims=True), _EPS), s2 / n2, np.nan)
    e3 = np.cross(e1, e2)
    return np.stack([e1, e2, e3], axis=-1)


def from_frame(primary, secondary) -> np.ndarray:
    """Quaternion ``(..., 4)`` of :func:`frame_matrix` (the rotation taking the model axes X, Y, Z to e1, e2, e3)."""
    return from_matrix(frame_matrix(primary, secondary))


def from_axis_angle(axis, angle) -> np.ndarray:
    """Quaternions ``(..., 4)`` rotating by ``angle`` radians (right-hand rule) about ``axis (..., 3)`` (normalised here).

    ``q = (sin(θ/2) â, cos(θ/2))``. A zero axis gives identity.
    """
    axis = _v(axis, "from_axis_angle axis")
    angle = np.asarray(angle, dtype=np.float64)
    n = np.linalg.norm(axis, axis=-1, keepdims=True)
    a = axis / np.where(n < _EPS, 1.0, n)
    h = 0.5 * angle[..., None]
    return np.concatenate([a * np.sin(h), np.cos(h) * np.ones_like(n)], axis=-1)


def to_axis_angle(q) -> tuple[np.ndarray, np.ndarray]:
    """Axis ``(..., 3)`` (unit; X for identity) and angle ``(...)`` in [0, π] of unit quaternions ``(..., 4)``."""
    q = normalize(q)
    q = np.where(q[..., 3:4] < 0, -q, q)
    s = np.linalg.norm(q[..., :3], axis=-1)
    ang = 2.0 * np.arctan2(s, q[..., 3])
    axis = np.where(s[..., None] > _EPS, q[..., :3] / np.where(s < _EPS, 1.0, s)[..., None], [1.0, 0.0, 0.0])
    return axis, ang


def angle(q) -> np.ndarray:
    """Rotation angle ``(...)`` in radians, in [0, π], of quaternions ``(..., 4)`` (``2·atan2(|v|, |w|)``)."""
    q = _q(q)
    return 2.0 * np.arctan2(np.linalg.norm(q[..., :3], axis=-1), np.abs(q[..., 3]))


def angle_between(a, b) -> np.ndarray:
    """Angle ``(...)`` in radians, in [0, π], of the rotation taking ``b`` to ``a`` (``angle(a b*)``); sign-agnostic."""
    return angle(multiply(normalize(a), conjugate(normalize(b))))


def from_two_vectors(a, b) -> np.ndarray:
    """Shortest-arc unit quaternions ``(..., 4)`` rotating direction ``a`` onto direction ``b`` (both ``(..., 3)``).

    ``q ∝ (â × b̂, 1 + â·b̂)``: the rotation about ``â × b̂`` by the angle between them, i.e. the one with no twist
    about either vector. For opposite directions the axis is any vector perpendicular to ``a`` (the choice is
    deterministic). Zero vectors give identity.
    """
    a = _v(a, "from_two_vectors a")
    b = _v(b, "from_two_vectors b")
    a, b = np.broadcast_arrays(a, b)
    na = np.linalg.norm(a, axis=-1, keepdims=True)
    nb = np.linalg.norm(b, axis=-1, keepdims=True)
    bad = (na[..., 0] < _EPS) | (nb[..., 0] < _EPS)
    ua = a / np.where(na < _EPS, 1.0, na)
    ub = b / np.where(nb < _EPS, 1.0, nb)
    d = np.sum(ua * ub, axis=-1, keepdims=True)
    q = np.concatenate([np.cross(ua, ub), 1.0 + d], axis=-1)
    opposite = (d[..., 0] < -1.0 + 1e-12) & ~bad
    if np.any(opposite):
        uo = ua[opposite]
        # a perpendicular axis: cross with the model axis least aligned with a
        pick = np.eye(3)[np.argmin(np.abs(uo), axis=-1)]
        ax = np.cross(uo, pick)
        ax /= np.linalg.norm(ax, axis=-1, keepdims=True)
        q[opposite] = np.concatenate([ax, np.zeros((len(ax), 1))], axis=-1)
    q = normalize(q)
    if np.any(bad):
        q[bad] = (0.0, 0.0, 0.0, 1.0)
    return q


def slerp(a, b, t) -> np.ndarray:
    """Spherical linear interpolation from ``a`` (t = 0) to ``b`` (t = 1), along the shorter arc.

    Shoemake, "Animating rotation with quaternion curves", SIGGRAPH 1985. ``a, b (..., 4)`` unit, ``t`` broadcastable
    to ``(...)``. ``b`` is negated where ``a·b < 0`` (shorter arc, as Babylon's slerp that [BM] uses; docs/MMD_FACTS.md §2.4);
    nearly equal inputs fall back to normalised lerp.
    """
    a = normalize(a)
    b = normalize(b)
    t = np.asarray(t, dtype=np.float64)[..., None]
    d = np.sum(a * b, axis=-1, keepdims=True)
    b = np.where(d < 0, -b, b)
    d = np.abs(d)
    theta = np.arccos(np.clip(d, -1.0, 1.0))
    s = np.sin(theta)
    small = s < 1e-6
    with np.errstate(invalid="ignore", divide="ignore"):
        wa = np.where(small, 1.0 - t, np.sin((1.0 - t) * theta) / np.where(small, 1.0, s))
        wb = np.where(small, t, np.sin(t * theta) / np.where(small, 1.0, s))
    return normalize(wa * a + wb * b)


def make_continuous(q) -> np.ndarray:
    """Flip signs along time so consecutive quaternions have ``dot(q[t-1], q[t]) >= 0`` (docs/MMD_FACTS.md §5.1).

    Args:
        q: ``(T, ..., 4)`` quaternion tracks, time on axis 0 (any further axes are independent tracks).
    Returns:
        ``(T, ..., 4)`` float64: the same rotations, sign-continuous (the first sample keeps its sign).
    """
    q = _q(q, "make_continuous q")
    if q.ndim < 2:
        raise ValueError(f"make_continuous: expected (T, ..., 4), got shape {q.shape}")
    if q.shape[0] < 2:
        return q.copy()
    d = np.sum(q[1:] * q[:-1], axis=-1)
    step = np.where(d < 0, -1.0, 1.0)
    sign = np.concatenate([np.ones((1,) + step.shape[1:]), np.cumprod(step, axis=0)], axis=0)
    return q * sign[..., None]


def swing_twist(q, axis) -> tuple[np.ndarray, np.ndarray]:
    """Decompose ``q = swing · twist`` where ``twist`` rotates about ``axis`` and ``swing``'s axis is ⊥ ``axis``.

    Standard swing-twist decomposition (e.g. Dobrowolski, "Swing-twist decomposition in Clifford algebra", 2015):
    ``twist`` = normalise(projection of q's vector part on the axis, w). When q is a pure 180° swing the twist is
    undefined and identity is returned.

    Args:
        q: ``(..., 4)`` unit quaternions.  axis: ``(..., 3)`` direction (normalised here).
    Returns:
        (swing, twist), both ``(..., 4)``.
    """
    q = normalize(q)
    axis = _v(axis, "swing_twist axis")
    a = axis / np.maximum(np.linalg.norm(axis, axis=-1, keepdims=True), _EPS)
    proj = np.sum(q[..., :3] * a, axis=-1, keepdims=True) * a
    tw = np.concatenate([proj, q[..., 3:4]], axis=-1)
    tw = normalize(np.broadcast_to(tw, np.broadcast_shapes(tw.shape, q.shape)).copy())
    sw = multiply(q, conjugate(tw))
    return sw, tw


def twist_swing(q, axis) -> tuple[np.ndarray, np.ndarray]:
    """Decompose ``q = twist · swing`` (twist about ``axis`` applied *after* the swing); see :func:`swing_twist`."""
    sw, tw = swing_twist(conjugate(normalize(q)), axis)
    return conjugate(tw), conjugate(sw)
