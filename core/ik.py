"""MMD inverse kinematics in numpy: the PMX IK chains (足ＩＫ, つま先ＩＫ, any other) solved the way MMD does.

What it is for: evaluating any VMD with IK keys on a model (:func:`evaluate_motion`), and letting the motion stage
place a foot and get the leg rotations a user will see in MMD plus the 足ＩＫ keys that produce them
(:func:`place_feet`). numpy and the standard library only.

Frames, units, quaternion order: ``core.conventions`` (MMD model space and units; quaternions (x, y, z, w)). Local
rotations and translations are VMD key semantics (docs/MMD_FACTS.md §2.2, ``core.motion``): a key rotation is
relative to the parent's posed frame, a key translation is an offset from rest in the parent's posed axes. World
rotations carry a bone from its rest pose to its posed frame (PMX bones have no rest orientation).

Algorithm (docs/MMD_FACTS.md §2.5, §3.4, §5.3-5.4; [BM] is that document's source key for babylon-mmd, here its
``src/Runtime/ikSolver.ts`` and ``mmdRuntimeBone.ts``, a port of saba's ``MMDIkSolver.cpp``; both follow MMD's
reverse-engineered behaviour, nothing here is documented by MMD itself):

* **Evaluation order** (§3.4): bones are evaluated sorted by (after-physics flag, transform layer 変形階層, PMX
  index), not by hierarchy. A bone's local rotation is its key composed with its rotation inheritance (付与,
  ``q_key · slerp(I, q(source), ratio)`` as ``RestSkeleton.fk``), where the source's rotation includes the IK
  rotation if the source's chain was already solved at that point of the order. An IK bone's chain is solved when
  the IK bone itself is reached, so e.g. yw's D bones (layer 1, after the IK bones) follow the solved legs.
* **CCD per IK bone**, starting from the FK pose of the current frame (IK rotations reset every frame, so FK keys
  on the links choose the solution but cannot move the foot off its target, §2.5):
  ``min(loop_count, 256)`` iterations; in each, every link from the one nearest the target outward is turned by
  the rotation taking (link -> target bone) onto (link -> IK bone): axis ``t × k`` (skipped when ``|t × k|² <
  1e-8``), angle ``min(unit_angle · (link index + 1), acos(t · k))``, applied in the link's parent frame and stacked
  on the link's FK rotation. A frame stops iterating once the target is within ``1e-4`` units (squared distance
  ``< 1e-8``) of the IK bone, and is not solved at all if it starts there. (A frame where no link turned in a
  whole iteration is also dropped early: it could not change any more, so the result is the same, only faster.)
  The 1e-4 rad skip makes CCD stall up to ~3e-3 units short of the target; with few loops (mat4: 40) targets near
  full extension can stay up to ~0.15 units short. That is what MMD shows too; ``tests/core/test_ik.py`` has the
  figures.
* **Angle limits** (the knee): a link with limits is decomposed into Euler angles (order YXZ if the X range lies
  inside ±90°, else ZYX if the Y range does, else XZY; the middle angle capped at ±88°), each angle limited to its
  [min, max] and the rotation rebuilt. During the first half of the iterations (``i < loop_count >> 1``) a link
  limited to one axis (the knee: X only) turns about that axis of its parent (sign from the world axis), and an
  angle past a limit is *reflected* back inside (``2·min - a``) instead of clamped: this is what makes MMD's knee
  bend forward from a straight rest leg instead of locking or bending backwards. A link whose limits are all zero is
  never turned. Limits come from the PMX (``IkChain.limits``); where a chain has none recorded (``limits=None``,
  e.g. read from a Blender armature), links named 左ひざ / 右ひざ get ``rest_skeleton.KNEE_LIMIT`` (§5.4).

Not modelled (none of the shared models needs them): translation inheritance, local inheritance (0x0080), fixed-axis
projection of keys (§5.5), bone morphs, physics (after-physics bones are simply evaluated last), external parents.
A link must be an ancestor of its chain's target (true of every PMX IK chain we know of); a chain that breaks this
is a ``PipelineError('bad_model')``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from . import quat as Q
from .errors import PipelineError
from .rest_skeleton import KNEE_LIMIT, RestSkeleton

__all__ = ["IkLinkSpec", "IkSolverSpec", "IkPose", "LegPlacement", "evaluation_order", "ik_solvers", "evaluate",
           "solve_ik", "evaluate_motion", "motion_arrays", "place_feet", "leg_reach", "MAX_LOOPS"]

#: [BM] ``IkSolver.iteration`` caps the loop count at 256 (docs/MMD_FACTS.md §2.5: MMD appears to cap it at 255).
MAX_LOOPS = 256
_DIST2_EPS = 1e-8      # [BM]: squared distance target <-> IK bone below which a frame is solved
_AXIS2_EPS = 1e-8      # [BM]: squared length of t × k below which a link is not turned
_EULER_CAP = np.deg2rad(88.0)   # [BM]: the middle Euler angle is capped at ±88°

# link solve axes and Euler orders ([BM] ikSolver.ts IkChain)
_AXIS_NONE, _AXIS_FIXED, _AXIS_X, _AXIS_Y, _AXIS_Z = range(5)
_ORDER_YXZ, _ORDER_ZYX, _ORDER_XZY = range(3)
_BASIS = np.eye(3)


@dataclass(frozen=True)
class IkLinkSpec:
    """One link of a solver: bone ``index``; ``lo`` / ``hi`` ``(3,)`` Euler limits in radians or None; the Euler
    ``order`` and single ``axis`` derived from them ([BM] ``IkChain``); ``path_pos``: its place in the solver's
    ``path``."""

    index: int
    lo: np.ndarray | None
    hi: np.ndarray | None
    order: int
    axis: int
    path_pos: int


@dataclass(frozen=True)
class IkSolverSpec:
    """One IK bone's solver: ``bone`` (IK bone index), ``target`` (the bone brought onto it), ``loop_count`` (capped at
    :data:`MAX_LOOPS`), ``unit_angle`` (radians), ``links`` (nearest the target first, as in the PMX), ``path``
    (bone indices from the outermost link down to the target, every bone in between included) and ``subtree``
    (the outermost link and all its descendants, parents before children)."""

    bone: int
    target: int
    loop_count: int
    unit_angle: float
    links: tuple
    path: tuple
    subtree: np.ndarray


@dataclass
class IkPose:
    """Result of :func:`evaluate`.

    Attributes:
        positions: ``(T, N, 3)`` world positions (MMD units).
        rotations: ``(T, N, 4)`` world rotations (rest -> posed).
        local_rotations: ``(T, N, 4)`` every bone's final local rotation: key, inheritance and, for IK links, the
            IK rotation (what MMD displays for the links; FK of these with IK off reproduces ``positions`` for
            bones that do not themselves inherit rotation).
        residual: IK bone name -> ``(T,)`` distance (units) from the chain's target bone to the IK bone after
            solving; NaN on frames where the chain is switched off.
    """

    positions: np.ndarray
    rotations: np.ndarray
    local_rotations: np.ndarray
    residual: dict


# ---------------------------------------------------------------------------------------------------------- setup

def evaluation_order(rest: RestSkeleton) -> np.ndarray:
    """MMD's bone evaluation order ``(N,)``: sorted by after-physics flag, then transform layer, then PMX index
    (docs/MMD_FACTS.md §3.4; [BM] sorts stably by transform order)."""
    n = len(rest)
    return np.lexsort((np.arange(n), rest.layers, rest.after_physics.astype(np.int64)))


def _link_spec(index: int, limit, path_pos: int) -> IkLinkSpec:
    if limit is None:
        return IkLinkSpec(index, None, None, _ORDER_XZY, _AXIS_NONE, path_pos)
    a = np.asarray(limit[0], dtype=np.float64)
    b = np.asarray(limit[1], dtype=np.float64)
    if a.shape != (3,) or b.shape != (3,) or not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise PipelineError("bad_model", f"IK link limits must be two finite 3-vectors, got {limit!r}; "
                                         f"re-save the model in PmxEditor")
    lo, hi = np.minimum(a, b), np.maximum(a, b)     # [BM] accepts swapped min / max
    half = 0.5 * np.pi
    if -half < lo[0] and hi[0] < half:
        order = _ORDER_YXZ
    elif -half < lo[1] and hi[1] < half:
        order = _ORDER_ZYX
    else:
        order = _ORDER_XZY
    zero = (lo == 0.0) & (hi == 0.0)
    if zero.all():
        axis = _AXIS_FIXED
    elif zero[1] and zero[2]:
        axis = _AXIS_X
    elif zero[0] and zero[2]:
        axis = _AXIS_Y
    elif zero[0] and zero[1]:
        axis = _AXIS_Z
    else:
        axis = _AXIS_NONE
    return IkLinkSpec(index, lo, hi, order, axis, path_pos)


def ik_solvers(rest: RestSkeleton) -> list[IkSolverSpec]:
    """The model's IK solvers in evaluation order (:func:`evaluation_order` of their IK bones).

    Raises:
        PipelineError: ``bad_model`` when a chain names a bone the model lacks, a link that is not an ancestor of
            the target, or malformed limits.
    """
    order = evaluation_order(rest)
    rank = np.empty(len(rest), dtype=np.int64)
    rank[order] = np.arange(len(rest))
    out = []
    for chain in rest.ik_chains:
        try:
            bone, target = rest.names.index(chain.bone), rest.names.index(chain.target)
            links = [rest.names.index(n) for n in chain.links]
        except ValueError:
            raise PipelineError("bad_model", f"IK chain {chain.bone!r} names a bone the model does not have "
                                             f"({chain.target!r}, {chain.links!r})") from None
        if not links:
            continue
        anc = [target] + rest.ancestors(target)        # target, its parent, ... root
        if any(l not in anc for l in links):
            bad = [rest.names[l] for l in links if l not in anc]
            raise PipelineError("bad_model", f"IK chain {chain.bone!r}: link(s) {bad} are not ancestors of the "
                                             f"target {chain.target!r}; core.ik cannot solve such a chain")
        top = max(anc.index(l) for l in links)
        path = tuple(reversed(anc[:top + 1]))          # outermost link ... target
        limits = chain.limits
        if limits is None:
            limits = tuple(KNEE_LIMIT if n.endswith("ひざ") and n[:1] in "左右" and len(n) == 3 else None
                           for n in chain.links)
        if len(limits) != len(links):
            raise PipelineError("bad_model", f"IK chain {chain.bone!r}: {len(limits)} limits for {len(links)} links")
        specs = tuple(_link_spec(l, lim, path.index(l)) for l, lim in zip(links, limits))
        sub = np.zeros(len(rest), dtype=bool)
        sub[path[0]] = True
        for i in rest._order:                          # topological order: parents first
            p = int(rest.parents[i])
            if p >= 0 and sub[p]:
                sub[i] = True
        subtree = np.array([i for i in rest._order if sub[i]], dtype=np.int64)
        out.append(IkSolverSpec(bone, target, int(min(max(int(chain.loop_count), 0), MAX_LOOPS)),
                                float(chain.unit_angle), specs, path, subtree))
    out.sort(key=lambda s: rank[s.bone])
    return out


# ------------------------------------------------------------------------------------------------------- helpers
# Internally every per-bone array is component-major, ``(4, F)`` quaternions and ``(3, F)`` vectors, so each
# component is one contiguous row (several times faster than (F, 4) slices of a (T, N, 4) array). Same algebra as
# ``core.quat`` (Hamilton product, v' = q v q*).

def _mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return np.array([aw * bx + ax * bw + ay * bz - az * by, aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw, aw * bw - ax * bx - ay * by - az * bz])


def _conj(q: np.ndarray) -> np.ndarray:
    return np.array([-q[0], -q[1], -q[2], q[3]])


def _rot(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``q v q*`` for ``q (4, F)``, ``v (3, F)`` or ``(3, 1)`` (``v + w t + u × t``, ``t = 2 u × v``)."""
    x, y, z, w = q
    vx, vy, vz = v
    tx = 2.0 * (y * vz - z * vy)
    ty = 2.0 * (z * vx - x * vz)
    tz = 2.0 * (x * vy - y * vx)
    return np.array([vx + w * tx + y * tz - z * ty, vy + w * ty + z * tx - x * tz, vz + w * tz + x * ty - y * tx])


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.sqrt(np.sum(v * v, axis=0))
    return v / np.where(n < 1e-300, 1.0, n)       # a zero vector stays zero, as Babylon's normalize leaves it


def _axis_quat(axis: int, ang: np.ndarray) -> np.ndarray:
    q = np.zeros((4,) + ang.shape)
    q[axis] = np.sin(0.5 * ang)
    q[3] = np.cos(0.5 * ang)
    return q


def _limit_angle(a: np.ndarray, lo: float, hi: float, reflect: bool) -> np.ndarray:
    """[BM] ``_limitAngle``: inside [lo, hi] unchanged; outside, reflected about the limit when ``reflect`` and the
    reflection lands inside, else clamped."""
    if not reflect:
        return np.clip(a, lo, hi)
    r_lo = 2.0 * lo - a
    r_hi = 2.0 * hi - a
    return np.where(a < lo, np.where(r_lo <= hi, r_lo, lo), np.where(a > hi, np.where(r_hi >= lo, r_hi, hi), a))


def _apply_limits(q: np.ndarray, link: IkLinkSpec, reflect: bool) -> np.ndarray:
    """Euler-decompose ``q (4, F)`` in the link's order, limit each angle, rebuild ([BM] ``_solveChain``).

    ``mRC`` below are elements of the column-vector rotation matrix of ``q``; [BM] indexes Babylon's row-vector
    (transposed) matrix, so its ``m[r * 4 + c]`` is ``mCR`` here."""
    x, y, z, w = q
    lo, hi = link.lo, link.hi
    if link.order == _ORDER_YXZ:        # q = Ry · Rx · Rz
        m12, m02, m22 = 2 * (y * z - w * x), 2 * (x * z + w * y), 1 - 2 * (x * x + y * y)
        m10, m11 = 2 * (x * y + w * z), 1 - 2 * (x * x + z * z)
        rx = np.clip(np.arcsin(np.clip(-m12, -1.0, 1.0)), -_EULER_CAP, _EULER_CAP)
        ry = np.arctan2(m02, m22)
        rz = np.arctan2(m10, m11)
    elif link.order == _ORDER_ZYX:      # q = Rz · Ry · Rx
        m20, m21, m22 = 2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)
        m10, m00 = 2 * (x * y + w * z), 1 - 2 * (y * y + z * z)
        ry = np.clip(np.arcsin(np.clip(-m20, -1.0, 1.0)), -_EULER_CAP, _EULER_CAP)
        rx = np.arctan2(m21, m22)
        rz = np.arctan2(m10, m00)
    else:                               # q = Rx · Rz · Ry
        m01, m21, m11 = 2 * (x * y - w * z), 2 * (y * z + w * x), 1 - 2 * (x * x + z * z)
        m02, m00 = 2 * (x * z + w * y), 1 - 2 * (y * y + z * z)
        rz = np.clip(np.arcsin(np.clip(-m01, -1.0, 1.0)), -_EULER_CAP, _EULER_CAP)
        rx = np.arctan2(m21, m11)
        ry = np.arctan2(m02, m00)
    rx = _limit_angle(rx, lo[0], hi[0], reflect)
    ry = _limit_angle(ry, lo[1], hi[1], reflect)
    rz = _limit_angle(rz, lo[2], hi[2], reflect)
    qx, qy, qz = _axis_quat(0, rx), _axis_quat(1, ry), _axis_quat(2, rz)
    if link.order == _ORDER_YXZ:
        return _mul(_mul(qy, qx), qz)
    if link.order == _ORDER_ZYX:
        return _mul(_mul(qz, qy), qx)
    return _mul(_mul(qx, qz), qy)


def _identity(f: int) -> np.ndarray:
    q = np.zeros((4, f))
    q[3] = 1.0
    return q


def _solve(spec: IkSolverSpec, goal: np.ndarray, par_pos: np.ndarray, par_rot: np.ndarray, offs: list,
           qloc: list) -> list:
    """CCD for one solver over F frames (vectorised). Returns the links' IK rotations ``[(4, F)]`` (to be applied
    as ``ik · q_fk``).

    Args:
        goal: ``(3, F)`` IK bone world positions.  par_pos, par_rot: ``(3, F)``, ``(4, F)`` world transform of the
            outermost link's parent.  offs, qloc: per path bone, ``(3, F)`` local offsets (rest offset + key) and
            ``(4, F)`` local rotations before IK.
    """
    f_all = goal.shape[1]
    n_path = len(spec.path)
    links = list(spec.links)
    link_at = {l.path_pos: j for j, l in enumerate(links)}
    ik_out = [_identity(f_all) for _ in links]
    idx = np.arange(f_all)
    ik = [q.copy() for q in ik_out]
    pos = [None] * n_path
    rot = [None] * n_path

    def fk_from(k0: int):
        for k in range(k0, n_path):
            pp, pr = (par_pos, par_rot) if k == 0 else (pos[k - 1], rot[k - 1])
            pos[k] = pp + _rot(pr, offs[k])
            if k < n_path - 1:
                j = link_at.get(k)
                rot[k] = _mul(pr, qloc[k] if j is None else _mul(ik[j], qloc[k]))

    def keep(mask: np.ndarray):
        nonlocal idx, goal, par_pos, par_rot, offs, qloc, ik
        for j in range(len(links)):
            ik_out[j][:, idx] = ik[j]
        idx = idx[mask]
        goal, par_pos, par_rot = goal[:, mask], par_pos[:, mask], par_rot[:, mask]
        offs = [o[:, mask] for o in offs]
        qloc = [q[:, mask] for q in qloc]
        ik = [q[:, mask] for q in ik]
        for k in range(n_path):
            pos[k] = pos[k][:, mask]
            if rot[k] is not None:
                rot[k] = rot[k][:, mask]

    def converged() -> np.ndarray:
        d = pos[-1] - goal
        return np.sum(d * d, axis=0) < _DIST2_EPS

    fk_from(0)
    done = converged()
    if done.any():
        keep(~done)
    half = spec.loop_count >> 1
    for it in range(spec.loop_count):
        if idx.size == 0:
            break
        use_axis = it < half
        turned = np.zeros(idx.size, dtype=bool)
        for j, link in enumerate(links):
            if link.axis == _AXIS_FIXED:
                continue
            k = link.path_pos
            pr = par_rot if k == 0 else rot[k - 1]
            t = _unit(pos[k] - pos[-1])
            kv = _unit(pos[k] - goal)
            axis_w = _cross(t, kv)
            ok = np.sum(axis_w * axis_w, axis=0) >= _AXIS2_EPS
            if not ok.any():
                continue
            turned |= ok
            limited = link.lo is not None
            if limited and use_axis and link.axis in (_AXIS_X, _AXIS_Y, _AXIS_Z):
                a = link.axis - _AXIS_X
                e = _rot(pr, _BASIS[a][:, None])
                sign = np.where(np.sum(axis_w * e, axis=0) >= 0.0, 1.0, -1.0)
                axis_l = _BASIS[a][:, None] * sign
            else:
                axis_l = _unit(_rot(_conj(pr), axis_w))
            ang = np.minimum(spec.unit_angle * (j + 1), np.arccos(np.clip(np.sum(t * kv, axis=0), -1.0, 1.0)))
            h = 0.5 * ang
            dq = np.concatenate([axis_l * np.sin(h), np.cos(h)[None]], axis=0)
            new = _mul(dq, ik[j])
            if limited:
                q_fk = qloc[k]
                new = _mul(_apply_limits(_mul(new, q_fk), link, use_axis), _conj(q_fk))
            ik[j] = np.where(ok, new, ik[j])
            fk_from(k)
        # A frame where no link turned in a whole iteration cannot change any more (whether a link turns depends
        # only on the positions): dropping it early gives exactly the full loop's result, faster.
        done = converged() | ~turned
        if done.any():
            keep(~done)
    keep(np.ones(idx.size, dtype=bool))
    return ik_out


# ---------------------------------------------------------------------------------------------------- evaluation

def _check_arrays(rest: RestSkeleton, local_rotations, local_translations) -> tuple[np.ndarray, np.ndarray]:
    n = len(rest)
    q = np.asarray(local_rotations, dtype=np.float64)
    if q.ndim != 3 or q.shape[1:] != (n, 4):
        raise ValueError(f"core.ik: local_rotations must be (T, {n}, 4) for this {n}-bone model, got {q.shape}")
    t_len = q.shape[0]
    if local_translations is None:
        t = np.zeros((t_len, n, 3))
    else:
        t = np.asarray(local_translations, dtype=np.float64)
        if t.shape != (t_len, n, 3):
            raise ValueError(f"core.ik: local_translations must be ({t_len}, {n}, 3), got {t.shape}")
    if not (np.all(np.isfinite(q)) and np.all(np.isfinite(t))):
        raise ValueError("core.ik: local rotations / translations contain NaN or inf")
    return Q.normalize(q), t


def _per_frame_flags(rest: RestSkeleton, solvers, ik_enabled, t_len: int) -> np.ndarray:
    on = np.ones((t_len, len(solvers)), dtype=bool)
    if not ik_enabled:
        return on
    col = {rest.names[s.bone]: c for c, s in enumerate(solvers)}
    for name, val in ik_enabled.items():
        c = col.get(name)
        if c is None:
            continue                    # an IK switch for a bone this model lacks is dropped (docs/MMD_FACTS.md §5.6)
        v = np.asarray(val, dtype=bool)
        if v.ndim == 0:
            on[:, c] = bool(v)
        elif v.shape == (t_len,):
            on[:, c] = v
        else:
            raise ValueError(f"core.ik: ik_enabled[{name!r}] must be a bool or ({t_len},), got shape {v.shape}")
    return on


def _needed(rest: RestSkeleton, solvers, bones) -> np.ndarray:
    """Bones that ``bones`` depend on: ancestors, inheritance sources and every IK chain that turns one of them
    (its IK bone, path and target), closed under the same rule. ``(N,)`` bool."""
    need = np.zeros(len(rest), dtype=bool)
    stack = [rest.find(b) for b in bones]
    while stack:
        i = stack.pop()
        if need[i]:
            continue
        need[i] = True
        p, src = int(rest.parents[i]), int(rest.inherit_source[i])
        stack += [j for j in (p, src) if j >= 0 and not need[j]]
        for s in solvers:
            if any(l.index == i for l in s.links):
                stack += [j for j in (s.bone, s.target, *s.path) if not need[j]]
    return need


def evaluate(rest: RestSkeleton, local_rotations, local_translations=None, *, targets: Mapping | None = None,
             ik_enabled: Mapping | None = None, solvers: list | None = None, bones=None,
             _checked: bool = False, _positions_only: bool = False) -> IkPose:
    """Pose a model the way MMD does: FK in MMD's evaluation order with every IK chain solved in turn.

    Args:
        rest: the model (:class:`RestSkeleton`; IK parameters and layers from :meth:`RestSkeleton.from_pmx`).
        local_rotations: ``(T, N, 4)`` key rotations (x, y, z, w), local (normalised here).
        local_translations: ``(T, N, 3)`` key translations (MMD units), or None for zeros.
        targets: optional IK bone name -> ``(T, 3)`` world positions (MMD units) that replace the IK bone's own
            world position as the chain's goal (NaN rows keep the motion's); bones under the IK bone (つま先ＩＫ
            under 足ＩＫ) move with it. Names that are not IK bones of the model raise KeyError.
        ik_enabled: optional IK bone name -> bool or ``(T,)`` bool (VMD IK switches, docs/MMD_FACTS.md §1.7,
            §2.5); default all on. Names the model lacks are ignored, as MMD drops keys for absent bones.
        solvers: :func:`ik_solvers` of ``rest``, to skip rebuilding them on repeated calls.
        bones: optional bone names: evaluate only these and what they depend on (ancestors, inheritance sources,
            the IK chains that move them), e.g. the legs for foot placement; the others' outputs are NaN and their
            chains are not solved (no residual entry).

    Returns:
        :class:`IkPose` (world positions / rotations, final local rotations, per-chain residuals).

    Raises:
        ValueError: arrays of the wrong shape or non-finite.  KeyError: a ``targets`` name that is not an IK bone.
        PipelineError: ``bad_model`` (see :func:`ik_solvers`).
    """
    if _checked:                     # place_feet: already checked and normalised
        q_key, t_key = local_rotations, local_translations
    else:
        q_key, t_key = _check_arrays(rest, local_rotations, local_translations)
    t_len, n = q_key.shape[:2]
    solvers = ik_solvers(rest) if solvers is None else solvers
    by_bone = {s.bone: c for c, s in enumerate(solvers)}
    goals = {}
    for name, arr in (targets or {}).items():
        i = rest.index_of(name)
        if i is None or i not in by_bone:
            raise KeyError(f"core.ik: {name!r} is not an IK bone of model {rest.model_name!r} "
                           f"(IK bones: {[rest.names[s.bone] for s in solvers]})")
        g = np.asarray(arr, dtype=np.float64)
        if g.shape != (t_len, 3):
            raise ValueError(f"core.ik: targets[{name!r}] must be ({t_len}, 3), got {g.shape}")
        goals[i] = g
    on = _per_frame_flags(rest, solvers, ik_enabled, t_len)

    rp = rest.positions
    par = rest.parents
    rest_off = rp - np.where(par[:, None] >= 0, rp[np.maximum(par, 0)], 0.0)
    need = np.ones(n, dtype=bool) if bones is None else _needed(rest, solvers, bones)
    # component-major per bone, only for the bones evaluated: (4, T) rotations, (3, T) offsets (rest + key)
    qk = [np.ascontiguousarray(q_key[:, i].T) if need[i] else None for i in range(n)]
    off_all = [np.ascontiguousarray(t_key[:, i].T) + rest_off[i][:, None] if need[i] else None for i in range(n)]
    q_anim = list(qk)                # per bone (4, T): key + inheritance, before IK (replaced, never written into)
    q_cur = list(qk)                 # per bone (4, T): final local rotation (IK included once solved)
    prepared = np.zeros(n, dtype=bool)
    have = np.zeros(n, dtype=bool)
    wpos = [None] * n                # per bone (3, T) world position
    wrot = [None] * n                # per bone (4, T) world rotation

    def prepare(i: int):
        if prepared[i]:
            return
        prepared[i] = True
        src = int(rest.inherit_source[i])
        ratio = float(rest.inherit_ratio[i])
        if rest.inherit_rotation[i] and src >= 0 and ratio != 0.0:
            prepare(src)
            part = q_cur[src] if ratio == 1.0 else Q.slerp(Q.identity(t_len), q_cur[src].T, ratio).T
            q_anim[i] = _mul(qk[i], part)
            q_cur[i] = q_anim[i]

    def world(i: int):
        p = int(par[i])
        if p >= 0 and not have[p]:
            world(p)                 # a parent later in MMD's order: evaluated first here (MMD would use stale data)
        prepare(i)
        if p < 0:
            wpos[i] = off_all[i]
            wrot[i] = q_cur[i]
        else:
            wpos[i] = wpos[p] + _rot(wrot[p], off_all[i])
            wrot[i] = _mul(wrot[p], q_cur[i])
        have[i] = True

    residual = {}
    for i in evaluation_order(rest):
        i = int(i)
        if not need[i]:
            continue
        world(i)
        c = by_bone.get(i)
        if c is None or not any(need[l.index] for l in solvers[c].links):
            continue
        s = solvers[c]
        if i in goals:
            g = goals[i].T
            wpos[i] = np.where(np.isnan(g), wpos[i], g)
        for b in s.path:
            if not have[b]:
                world(b)
        frames = np.flatnonzero(on[:, c])
        res = np.full(t_len, np.nan)
        if frames.size:
            sel = slice(None) if frames.size == t_len else frames
            top_par = int(par[s.path[0]])
            pp = wpos[top_par][:, sel] if top_par >= 0 else np.zeros((3, frames.size))
            pr = wrot[top_par][:, sel] if top_par >= 0 else _identity(frames.size)
            offs = [off_all[b][:, sel] for b in s.path]
            link_ids = {l.index for l in s.links}
            qloc = [(q_anim[b] if b in link_ids else q_cur[b])[:, sel] for b in s.path]
            iks = _solve(s, wpos[i][:, sel], pp, pr, offs, qloc)
            for l, q_ik in zip(s.links, iks):
                if frames.size == t_len:
                    q_cur[l.index] = _mul(q_ik, q_anim[l.index])
                else:
                    q_new = q_cur[l.index].copy()
                    q_new[:, sel] = _mul(q_ik, q_anim[l.index][:, sel])
                    q_cur[l.index] = q_new
            for b in s.subtree:      # re-pose what is already posed below the chain ([BM] updateIkChainWorldMatrix)
                if have[b]:
                    world(int(b))
            d = wpos[s.target][:, sel] - wpos[i][:, sel]
            res[sel] = np.sqrt(np.sum(d * d, axis=0))
        residual[rest.names[i]] = res
    if _positions_only:              # the key reduction's IK check: rotations are not gathered (None)
        return IkPose(positions=_gather(wpos, need, 3, t_len), rotations=None, local_rotations=None,
                      residual=residual)
    return IkPose(positions=_gather(wpos, need, 3, t_len), rotations=_gather(wrot, need, 4, t_len),
                  local_rotations=_gather(q_cur, need, 4, t_len), residual=residual)


def _gather(per_bone: list, need: np.ndarray, width: int, t_len: int) -> np.ndarray:
    """``(T, N, width)`` from per-bone ``(width, T)`` arrays (NaN for bones not evaluated); a transposed view of one
    stacked copy when every bone was evaluated."""
    if need.all():
        return np.array(per_bone).transpose(2, 0, 1)
    out = np.full((len(per_bone), width, t_len), np.nan)
    for i in np.flatnonzero(need):
        out[i] = per_bone[i]
    return out.transpose(2, 0, 1)


def solve_ik(rest: RestSkeleton, local_rotations, local_translations=None, targets: Mapping | None = None, *,
             ik_enabled: Mapping | None = None) -> np.ndarray:
    """Local rotations ``(T, N, 4)`` after MMD's IK: the input keys with every IK link's rotation replaced by the
    solved one (see :func:`evaluate` for the arguments, errors and the algorithm's source)."""
    return evaluate(rest, local_rotations, local_translations, targets=targets, ik_enabled=ik_enabled).local_rotations


def motion_arrays(rest: RestSkeleton, motion) -> tuple[np.ndarray, np.ndarray]:
    """Dense key arrays of a :class:`core.motion.BoneMotion` on a model: ``(T, N, 4)`` rotations (identity where
    unkeyed) and ``(T, N, 3)`` translations (zero where unkeyed). Bone names are matched exactly; bones the model
    lacks are dropped, as MMD does (docs/MMD_FACTS.md §5.6)."""
    t_len, n = motion.n_frames, len(rest)
    index = {}
    for i, name in enumerate(rest.names):
        index.setdefault(name, i)
    q = np.zeros((t_len, n, 4))
    q[..., 3] = 1.0
    t = np.zeros((t_len, n, 3))
    for name, arr in motion.rotations.items():
        if name in index:
            q[:, index[name]] = arr
    for name, arr in motion.locations.items():
        if name in index:
            t[:, index[name]] = arr
    return q, t


def evaluate_motion(rest: RestSkeleton, motion, *, ik_enabled: Mapping | None = None) -> tuple[np.ndarray, np.ndarray]:
    """World positions ``(T, N, 3)`` (MMD units) and rotations ``(T, N, 4)`` of a model playing a dense
    :class:`core.motion.BoneMotion` in MMD, IK included (the IK bones' keys set the goals). For a sparse VMD,
    densify it with ``core.vmd_sample.sample_vmd`` first and pass ``ik_enabled=vmd_sample.ik_switches(...)``.
    Raises as :func:`evaluate`."""
    q, t = motion_arrays(rest, motion)
    pose = evaluate(rest, q, t, ik_enabled=ik_enabled)
    return pose.positions, pose.rotations


# ------------------------------------------------------------------------------------------- feet for the motion stage

def leg_reach(rest: RestSkeleton, side: str, *, samples: int = 4001) -> tuple[float, float]:
    """(min, max) distance from the thigh joint 足 to the ankle 足首 that the knee's IK limits allow, MMD units.

    The knee (the 足ＩＫ chain's link ひざ) is turned through its X range (``IkChain.limits``, or
    ``rest_skeleton.KNEE_LIMIT``) with the thigh fixed; an 足ＩＫ target farther than ``max`` (or nearer than
    ``min``) from 足 cannot be reached, so the motion stage can lower or raise the root (センター / グルーブ) first.

    Raises:
        KeyError: the model lacks 足 / ひざ / 足首 / 足ＩＫ for ``side`` ("左" or "右").
    """
    hip, knee, ankle = (rest.find(side + b) for b in ("足", "ひざ", "足首"))
    spec = {rest.names[s.bone]: s for s in ik_solvers(rest)}.get(side + "足ＩＫ")
    if spec is None:
        raise KeyError(f"model {rest.model_name!r} has no {side}足ＩＫ chain")
    link = next((l for l in spec.links if l.index == knee), None)
    lo, hi = (KNEE_LIMIT[0][0], KNEE_LIMIT[1][0]) if link is None or link.lo is None else (link.lo[0], link.hi[0])
    ang = np.linspace(lo, hi, samples)
    shin = Q.rotate(Q.from_axis_angle(np.array([1.0, 0.0, 0.0]), ang),
                    rest.positions[ankle] - rest.positions[knee])
    d = np.linalg.norm(rest.positions[knee] - rest.positions[hip] + shin, axis=1)
    return float(d.min()), float(d.max())



@dataclass
class LegPlacement:
    """Result of :func:`place_feet` (sides are "左" / "右"; arrays ``(T, ...)``).

    Attributes:
        rotations: 足 / ひざ / 足首 bone name -> ``(T, 4)`` local rotations as MMD shows them with IK on (write them
            as the FK keys too, so IK-on and IK-off playback agree).
        ik_locations: 足ＩＫ / つま先ＩＫ name -> ``(T, 3)`` translation keys (MMD units, parent's axes).
        ik_rotations: 足ＩＫ name -> ``(T, 4)`` rotation keys (they swing つま先ＩＫ: the foot's pitch and yaw).
        ankle, toe: side -> ``(T, 3)`` world positions reached by 足首 / つま先.
        residual: side -> ``(T,)`` distance (units) from the reached ankle to the wanted one (0 when reachable).
        pose: the :class:`IkPose` of the legs (evaluated with ``bones=`` the legs and IK bones: other bones NaN).
    """

    rotations: dict
    ik_locations: dict
    ik_rotations: dict
    ankle: dict
    toe: dict
    residual: dict
    pose: IkPose

    def apply_to(self, motion):
        """A copy of ``motion`` (a :class:`core.motion.BoneMotion` on the same frames) with these keys: 足 / ひざ /
        足首 rotations and 足ＩＫ translation + rotation replaced (sign-continuous, docs/MMD_FACTS.md §5.1); つま先ＩＫ gets
        a translation track only if ``motion`` had one or it is not zero. ``meta`` is copied with ``"place_feet":
        True``.

        Raises:
            ValueError: ``motion`` has another number of frames.
        """
        from .motion import BoneMotion
        t_len = next(iter(self.ik_locations.values())).shape[0] if self.ik_locations else motion.n_frames
        if motion.n_frames != t_len:
            raise ValueError(f"LegPlacement.apply_to: the motion has {motion.n_frames} frames, the placement {t_len}")
        rot = dict(motion.rotations)
        loc = dict(motion.locations)
        for name, q in list(self.rotations.items()) + list(self.ik_rotations.items()):
            rot[name] = Q.make_continuous(q)
        for name, v in self.ik_locations.items():
            if name.endswith("足ＩＫ") or name in loc or np.any(v != 0.0):
                loc[name] = v
        return BoneMotion(frames=motion.frames, rotations=rot, locations=loc, model_name=motion.model_name,
                          meta=dict(motion.meta, place_feet=True))


def place_feet(rest: RestSkeleton, local_rotations, local_translations, ankles: Mapping,
               toes: Mapping | None = None) -> LegPlacement:
    """Put the ankles (and optionally the toes) where the motion stage wants them, as MMD's leg IK would.

    For each side ("左", "右") in ``ankles``: the 足ＩＫ translation key is set so the IK bone sits at the wanted
    ankle (MMD moves the target 足首 onto the IK bone; docs/MMD_FACTS.md §2.5), its rotation key to the FK ankle's world
    rotation (so つま先ＩＫ follows the foot as in ``core.retarget``) or, where a toe point is given, to the smallest
    turn of it that aims つま先ＩＫ at that point; then the model is solved with IK on, starting from the FK leg keys
    given (they choose the knee solution).

    Args:
        rest: the model (must have 足ＩＫ / 足首 and, for toes, つま先ＩＫ for the sides given).
        local_rotations, local_translations: ``(T, N, 4)``, ``(T, N, 3)`` keys of the whole body (as
            :func:`motion_arrays` gives; the IK bones' own keys are replaced).
        ankles: side -> ``(T, 3)`` wanted world ankle positions (MMD units); NaN rows keep the FK ankle.
        toes: optional side -> ``(T, 3)`` wanted world toe positions; NaN rows keep the FK foot orientation.

    Returns:
        :class:`LegPlacement`.

    Raises:
        ValueError: wrong shapes, an unknown side.  KeyError: the model lacks a needed bone.
        PipelineError: ``bad_model`` (see :func:`ik_solvers`).
    """
    q, t = _check_arrays(rest, local_rotations, local_translations)
    q, t = q.copy(), t.copy()
    t_len = q.shape[0]
    toes = dict(toes or {})
    for side in list(ankles) + list(toes):
        if side not in ("左", "右"):
            raise ValueError(f"place_feet: sides are '左' and '右', got {side!r}")
    solvers = ik_solvers(rest)
    legs = [side + b for side in "左右" if side in ankles or side in toes
            for b in ("足", "ひざ", "足首", "つま先", "足ＩＫ", "つま先ＩＫ") if rest.index_of(side + b) is not None]
    fk = evaluate(rest, q, t, ik_enabled={rest.names[s.bone]: False for s in solvers}, solvers=solvers, bones=legs,
                  _checked=True)
    rp = rest.positions
    for side, want in ankles.items():
        want = np.asarray(want, dtype=np.float64)
        if want.shape != (t_len, 3):
            raise ValueError(f"place_feet: ankles[{side!r}] must be ({t_len}, 3), got {want.shape}")
        ik, ankle = rest.find(side + "足ＩＫ"), rest.find(side + "足首")
        a = np.where(np.isnan(want), fk.positions[:, ankle], want)
        g = fk.rotations[:, ankle]
        toe_ik = rest.index_of(side + "つま先ＩＫ")
        if side in toes and toe_ik is not None:
            tw = np.asarray(toes[side], dtype=np.float64)
            if tw.shape != (t_len, 3):
                raise ValueError(f"place_feet: toes[{side!r}] must be ({t_len}, 3), got {tw.shape}")
            d = Q.rotate(g, rp[toe_ik] - rp[ik] + t[:, toe_ik])
            ok = np.all(np.isfinite(tw), axis=1)
            turn = Q.from_two_vectors(d, np.where(ok[:, None], tw - a, d))
            g = Q.multiply(turn, g)
        p = int(rest.parents[ik])
        if p >= 0:
            pw, pr = fk.positions[:, p], fk.rotations[:, p]
            t[:, ik] = Q.rotate(Q.conjugate(pr), a - pw) - (rp[ik] - rp[p])
            q[:, ik] = Q.multiply(Q.conjugate(pr), g)
        else:
            t[:, ik] = a - rp[ik]
            q[:, ik] = g
    pose = evaluate(rest, q, t, solvers=solvers, bones=legs, _checked=True)
    rotations, ik_loc, ik_rot, ankle_out, toe_out, residual = {}, {}, {}, {}, {}, {}
    for side in ankles:
        for b in ("足", "ひざ", "足首"):
            if rest.index_of(side + b) is not None:
                rotations[side + b] = pose.local_rotations[:, rest.find(side + b)]
        ik = rest.find(side + "足ＩＫ")
        ik_loc[side + "足ＩＫ"] = t[:, ik]
        ik_rot[side + "足ＩＫ"] = q[:, ik]
        toe_ik = rest.index_of(side + "つま先ＩＫ")
        if toe_ik is not None:
            ik_loc[side + "つま先ＩＫ"] = t[:, toe_ik]
        ankle_out[side] = pose.positions[:, rest.find(side + "足首")]
        toe_i = rest.index_of(side + "つま先")
        if toe_i is not None:
            toe_out[side] = pose.positions[:, toe_i]
        residual[side] = np.linalg.norm(ankle_out[side] - pose.positions[:, ik], axis=-1)
    return LegPlacement(rotations=rotations, ik_locations=ik_loc, ik_rotations=ik_rot, ankle=ankle_out,
                        toe=toe_out, residual=residual, pose=pose)
