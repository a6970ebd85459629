"""3D joints of a dancer -> MMD bone rotations and translations on a target model (numpy only).

Input: ``joints (T, 27, 3)`` in the ``CANONICAL`` order of ``core.skeletons`` (H36M-17 + toe tips, heels, hand
index / pinky knuckles, ears), **MMD axes and units** (``core.conventions``: left-handed, Y up, the dancer faces -Z,
the dancer's left is +X, 1 unit = 8 cm), absolute positions including the root trajectory. The extras may be NaN
(all frames or some). Output: a :class:`core.motion.BoneMotion` keyed on every frame.

Method (docs/MMD_FACTS.md §2.2): for each keyed bone b we build ``G_b``, the world rotation taking b from its rest pose to
the dancer's pose, from joint directions; the key is ``q_b = W_parent⁻¹ G_b`` where ``W_parent`` is the world rotation
of b's parent bone under the keys already computed (unkeyed ancestors such as グルーブ, 腰, 肩P, 肩C, 腕捩, 手捩 are
identity, and rotation inheritance such as mat4's 上半身3 = 0.4 × 上半身2 is included, so the model plays back the
pose). Rest directions are the *target model's*: the same joints are read off its rest skeleton
(:func:`rest_joints`), so a pose produced by the model itself comes back as the same keys (see the tests).

After ``_scale_and_ground`` has scaled, width-matched and grounded the joints, one function per body part keys the
bones, each parent before its children: ``_retarget_torso``, ``_retarget_head``, ``_retarget_arm`` (left, then
right), ``_retarget_leg`` (left, then right), ``_place_center``, ``_leg_ik_keys``. Per bone (``d_r`` = rest
direction, the "parent-transported" frame is the parent's world rotation):

* 下半身: frame from the hip line (LHip - RHip, exact) and the lumbar direction Hip -> Spine (sets the pelvis pitch,
  which the joints cannot see: Hip, LHip, RHip are collinear).
* 上半身: Hip -> Spine (Hip -> Thorax when the model has no 上半身2), twist from the mean of the hip and shoulder
  lines; 上半身2: Spine -> Thorax, twist from the shoulder line. So torso twist is shared between the two.
* 頭: ears (lateral) and nose (forward) when present, else Nose -> Head with the chest's lateral axis; 首: shortest
  arc from its rest direction to Thorax -> (head pivot implied by the head frame): no neck twist (unobservable; the
  head takes it).
* 肩: shortest arc (no twist) from the shoulder pivot, carried by the chest, to the shoulder joint.
* 腕 + ひじ and 足 + ひざ: a hinge model. The upper bone's twist is chosen so that the lower bone is a rotation about
  the model's hinge axis (elbow: ``d_r × forward`` so the elbow flexes toward -Z; knee: ``d_r × back`` so bending the
  knee is a negative rotation about +X, docs/MMD_FACTS.md §2.2), solved in closed form. Below a bend of ~15° the bend plane
  is noise, so the twist blends smoothly (smoothstep over 15°..30°) to the parent-transported, twist-free frame:
  nothing flips when a limb straightens.
* 手首: hand frame from the wrist, index and pinky knuckles; its twist about the forearm goes into 手捩 and the upper
  arm's twist about itself into 腕捩 where the model has them in the standard chain (腕 → 腕捩 → ひじ → 手捩 → 手首),
  so the forearm's skin twists along 手捩1–3 instead of candy-wrapping at the elbow (docs/MMD_FACTS.md §5.5: only
  rotation about the twist axis on 捩 bones, never 腕捩1–3); otherwise both twists fold into 腕 / ひじ as [MS]'s
  ArmTwistOffPanel does. The twist axis is the rest direction from the 捩 bone to the bone it carries (ひじ /
  手首), which is how PMX editors set the fixed axis (mat4's stored axes are within 0.1° of it), so the posed
  elbow, wrist and hand are exactly where the folded keys put them. The rest (flexion / deviation) goes into 手首.
  Identity relative to the forearm without hand points.
* 足首: foot frame from ankle -> toe and heel -> ankle; shortest arc to the toe with the toe only; identity relative
  to the shin with neither.
* センター: translation only (no rotation, docs/MMD_FACTS.md §5.7), chosen so the model's hip point lands on the dancer's.
* 足ＩＫ: translation = ankle position given by FK of the computed keys on this model - rest 足ＩＫ position, in the
  IK bone's (unanimated) parent frame; rotation = the ankle's world rotation, so つま先ＩＫ follows the foot
  (docs/MMD_FACTS.md §2.5, §5.3): IK-on playback agrees with FK.

Quaternion signs are made continuous per bone (docs/MMD_FACTS.md §5.1).
"""
from __future__ import annotations

import numpy as np

from . import quat as Q
from .errors import ModelError
from .motion import BoneMotion
from .rest_skeleton import RestSkeleton
from .skeletons import CANONICAL

__all__ = ["retarget", "leg_ik_from_fk", "rest_joints", "joints_from_pose", "virtual_joints", "KEYED_BONES",
           "REQUIRED_BONES", "HINGE_BLEND_DEG"]

J = {n: i for i, n in enumerate(CANONICAL)}
_N_CORE = 17

#: Bones :func:`retarget` keys when the model has them (rotation; センター translation only; 足ＩＫ both).
KEYED_BONES: tuple[str, ...] = (
    "センター", "下半身", "上半身", "上半身2", "首", "頭",
    "左肩", "左腕", "左腕捩", "左ひじ", "左手捩", "左手首", "右肩", "右腕", "右腕捩", "右ひじ", "右手捩", "右手首",
    "左足", "左ひざ", "左足首", "右足", "右ひざ", "右足首", "左足ＩＫ", "右足ＩＫ",
)

#: Bones a target model must have.
REQUIRED_BONES: tuple[str, ...] = (
    "センター", "下半身", "上半身", "首", "頭",
    "左腕", "左ひじ", "左手首", "右腕", "右ひじ", "右手首", "左足", "左ひざ", "左足首", "右足", "右ひざ", "右足首",
)

#: Bend angles (degrees) between which the hinge twist blends from parent-transported (below) to bend-plane (above).
HINGE_BLEND_DEG: tuple[float, float] = (15.0, 30.0)

_FORWARD = np.array([0.0, 0.0, -1.0])      # the model faces -Z (docs/MMD_FACTS.md §2.1)
_EX = np.array([1.0, 0.0, 0.0])

# Head points relative to the 頭 pivot, in units of the model's leg length (hip -> knee -> ankle, ~0.85 m on an
# adult): a human-proportioned layout (pivot ~ atlas; ear canal 3.5 cm above; nose tip 10 cm in front of the ears,
# 2 cm below; vertex 15 cm above the ears; ears 15 cm apart). Only directions between these points matter for the
# rest frames; the offsets place the head pivot for the neck direction.
_HEAD_POINTS = {
    "Nose": (0.0, 0.011, -0.106),
    "Head": (0.0, 0.175, 0.012),
    "LEar": (0.088, 0.035, 0.012),
    "REar": (-0.088, 0.035, 0.012),
}


# ----------------------------------------------------------------------------------------------------------------
# Model-side joints


def _leg_length(rest: RestSkeleton) -> float:
    p = rest.positions
    total = 0.0
    for s in "左右":
        hip, knee, ankle = (p[rest.find(s + n)] for n in ("足", "ひざ", "足首"))
        total += np.linalg.norm(knee - hip) + np.linalg.norm(ankle - knee)
    return total / 2.0


def check_model(rest: RestSkeleton) -> None:
    """Raise :class:`core.errors.ModelError` (code ``bad_model``) when ``rest`` lacks a bone retargeting needs
    (:data:`REQUIRED_BONES`) or its hierarchy cannot carry the root translation on センター."""
    missing = [n for n in REQUIRED_BONES if rest.index_of(n) is None]
    if missing:
        raise ModelError(f"target model {rest.model_name!r} lacks the bones {missing} that retargeting needs "
                         f"(standard MMD bones, docs/MMD_FACTS.md §4); pick an MMD model with the standard bone set")
    c = rest.find("センター")
    for n in ("下半身", "上半身"):
        if c not in rest.ancestors(rest.find(n)):
            raise ModelError(f"target model {rest.model_name!r}: {n} is not under センター; cannot put the root "
                             f"translation on センター")


def virtual_joints(rest: RestSkeleton) -> dict[str, tuple[int, np.ndarray]]:
    """Where each ``CANONICAL`` joint sits on the model: joint name -> (bone index, offset (3,) in that bone's rest
    frame, MMD units). The joint's posed position is ``world_pos[bone] + world_rot[bone] · offset``.

    Hip = midpoint of 左足/右足 (carried by 下半身); hips, knees, ankles, shoulders (腕), elbows, wrists = those bones;
    Spine = 上半身2 (or the midpoint of 上半身 and 首); Thorax = 首; toes = つま先; heels = かかと or a point on
    the ground 0.065 leg lengths behind the ankle; hand index / pinky = 人指１ / 小指１ or points 0.45 forearm
    lengths beyond the wrist; nose, head top, ears: :data:`_HEAD_POINTS` on 頭.

    Raises:
        ValueError: the model lacks a :data:`REQUIRED_BONES` bone.
    """
    check_model(rest)
    p = rest.positions
    f = rest.find
    L = _leg_length(rest)
    out: dict[str, tuple[int, np.ndarray]] = {}
    lower = f("下半身")
    out["Hip"] = (lower, 0.5 * (p[f("左足")] + p[f("右足")]) - p[lower])
    for side, tag in (("左", "L"), ("右", "R")):
        out[tag + "Hip"] = (f(side + "足"), np.zeros(3))
        out[tag + "Knee"] = (f(side + "ひざ"), np.zeros(3))
        out[tag + "Foot"] = (f(side + "足首"), np.zeros(3))
        out[tag + "Shoulder"] = (f(side + "腕"), np.zeros(3))
        out[tag + "Elbow"] = (f(side + "ひじ"), np.zeros(3))
        out[tag + "Wrist"] = (f(side + "手首"), np.zeros(3))
        ankle = f(side + "足首")
        toe = rest.index_of(side + "つま先")
        toe_off = p[toe] - p[ankle] if toe is not None else np.array([0.0, -p[ankle, 1], -0.25 * L])
        out[tag + "FootIndex"] = (ankle, toe_off)
        heel = rest.index_of(side + "かかと")
        heel_off = (p[heel] - p[ankle]) if heel is not None else np.array([0.0, toe_off[1], 0.065 * L])
        out[tag + "Heel"] = (ankle, heel_off)
        wrist, elbow = f(side + "手首"), f(side + "ひじ")
        fore = p[wrist] - p[elbow]
        d = fore / max(np.linalg.norm(fore), 1e-9)
        fwd = _FORWARD - np.dot(_FORWARD, d) * d
        fwd /= max(np.linalg.norm(fwd), 1e-9)
        hand = 0.45 * np.linalg.norm(fore)
        for name, bone, default in (("HandIndex", "人指１", hand * (0.95 * d + 0.2 * fwd)),
                                    ("HandPinky", "小指１", hand * (0.85 * d - 0.2 * fwd))):
            b = rest.index_of(side + bone)
            out[tag + name] = (wrist, p[b] - p[wrist] if b is not None else default)
    upper2 = rest.index_of("上半身2")
    if upper2 is not None:
        out["Spine"] = (upper2, np.zeros(3))
    else:
        up = f("上半身")
        out["Spine"] = (up, 0.5 * (p[f("首")] - p[up]))
    out["Thorax"] = (f("首"), np.zeros(3))
    head = f("頭")
    for name, off in _HEAD_POINTS.items():
        out[name] = (head, np.asarray(off) * L)
    return out


def joints_from_pose(rest: RestSkeleton, positions: np.ndarray, rotations: np.ndarray) -> np.ndarray:
    """Read ``CANONICAL`` joints off a posed model (e.g. the output of :meth:`RestSkeleton.fk`).

    Args:
        rest: the model.
        positions: ``(T, N, 3)`` world bone positions (MMD units).
        rotations: ``(T, N, 4)`` world bone rotations (rest -> posed).
    Returns:
        ``(T, 27, 3)`` float64 joints in MMD axes and units (:func:`virtual_joints`).
    Raises:
        ValueError: shapes do not match the model.
    """
    pos = np.asarray(positions, dtype=np.float64)
    rot = np.asarray(rotations, dtype=np.float64)
    n = len(rest)
    if pos.ndim != 3 or pos.shape[1:] != (n, 3) or rot.shape != pos.shape[:2] + (4,):
        raise ValueError(f"joints_from_pose: expected positions (T, {n}, 3) and rotations (T, {n}, 4), "
                         f"got {pos.shape} and {rot.shape}")
    out = np.empty((pos.shape[0], len(CANONICAL), 3))
    for name, (bone, off) in virtual_joints(rest).items():
        out[:, J[name]] = pos[:, bone] + Q.rotate(rot[:, bone], off)
    return out


def rest_joints(rest: RestSkeleton) -> np.ndarray:
    """The model's own ``CANONICAL`` joints at rest, ``(27, 3)`` MMD units (rest directions come from these)."""
    n = len(rest)
    return joints_from_pose(rest, rest.positions[None], Q.identity((1, n)))[0]


# ----------------------------------------------------------------------------------------------------------------
# Geometry helpers (all vectorised over T)


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 1e-12, v / n, np.nan)


def _dot(a, b):
    return np.sum(a * b, axis=-1)


def _frame_rotation(p, s, p_r, s_r, fallback: np.ndarray) -> np.ndarray:
    """World rotation taking the rest frame (p_r, s_r) to the current frame (p, s); ``fallback`` where undefined."""
    fr = Q.frame_matrix(p_r, s_r)
    fc = Q.frame_matrix(p, s)
    g = fc @ fr.T
    bad = ~np.all(np.isfinite(g), axis=(-2, -1))
    g[bad] = np.eye(3)
    q = Q.from_matrix(g)
    if np.any(bad):
        q[bad] = np.broadcast_to(fallback, q.shape)[bad]
    return q


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _wrap(a):
    return (a + np.pi) % (2.0 * np.pi) - np.pi


def _hinge_pair(w_parent, d1, d2, d1_r, d2_r, flex_dir):
    """Upper-bone world rotation and lower-bone local rotation for a hinge joint (elbow / knee).

    The upper bone swings from its parent-transported rest direction onto ``d1`` and then twists about itself by the
    angle that puts ``d2`` on the cone a hinge rotation about the rest hinge axis ``h = d1_r × flex_dir`` sweeps
    out from ``d2_r`` (two solutions; the one flexing toward ``flex_dir``). The lower bone is that hinge rotation,
    followed by a (normally zero) shortest-arc residual. Where the limb is nearly straight the bend plane is noise:
    the twist is weighted by a smoothstep of the bend angle over :data:`HINGE_BLEND_DEG`, down to the
    parent-transported, twist-free frame. (Holding the last seen twist instead was tried: on long straight-arm swings
    it drifts further from the truth than this rest-anchored choice.)

    Args: w_parent (T,4); d1, d2 (T,3) current upper / lower directions; d1_r, d2_r (3,) rest; flex_dir (3,).
    Returns: (G_upper (T,4) world, q_lower_hinge (T,4) local to the upper bone, before any forearm twist).
    """
    a = d1_r / np.linalg.norm(d1_r)
    e2r = d2_r / np.linalg.norm(d2_r)
    h = np.cross(a, flex_dir)
    if np.linalg.norm(h) < 1e-6:         # a rest limb pointing along the flex direction: any perpendicular hinge
        h = np.cross(a, _EX if abs(a[0]) < 0.9 else np.array([0.0, 1.0, 0.0]))
    h /= np.linalg.norm(h)
    k = np.cross(a, h)
    u1, u2 = _unit(d1), _unit(d2)
    swing = Q.multiply(Q.from_two_vectors(Q.rotate(w_parent, a), u1), w_parent)
    v = Q.rotate(Q.conjugate(swing), u2)
    vh, vk = v @ h, v @ k
    rho = np.hypot(vh, vk)
    c_h = float(e2r @ h)
    cos_t = np.clip(c_h / np.maximum(rho, 1e-12), -1.0, 1.0)
    theta_t = np.arctan2(-np.sqrt(1.0 - cos_t ** 2), cos_t)
    phi = _wrap(np.arctan2(vk, vh) - theta_t)
    bend = np.degrees(np.arccos(np.clip(_dot(u1, u2), -1.0, 1.0)))
    lo, hi = HINGE_BLEND_DEG
    w = _smoothstep((bend - lo) / (hi - lo))
    g_up = Q.multiply(swing, Q.from_axis_angle(np.broadcast_to(a, d1.shape), w * phi))
    u = Q.rotate(Q.conjugate(g_up), u2)
    beta = _wrap(np.arctan2(-(u @ k), u @ a) - np.arctan2(-(e2r @ k), e2r @ a))
    hinge = Q.from_axis_angle(np.broadcast_to(h, d1.shape), beta)
    residual = Q.from_two_vectors(Q.rotate(hinge, e2r), u)
    return g_up, Q.multiply(residual, hinge)


class _Pose:
    """World rotations of the model's bones under the keys set so far (unkeyed = identity, plus rotation
    inheritance as in :meth:`RestSkeleton.fk`). Caches are dropped whenever a key changes."""

    def __init__(self, rest: RestSkeleton, t: int):
        self.rest, self.t = rest, t
        self.local: dict[int, np.ndarray] = {}
        self._world: dict[int, np.ndarray] = {}
        self._eff: dict[int, np.ndarray | None] = {}

    def set_world(self, name: str, g: np.ndarray) -> np.ndarray:
        """Key bone ``name`` so that its world rotation is ``g``; returns the local key."""
        i = self.rest.find(name)
        q = Q.multiply(Q.conjugate(self.parent_world(name)), g)
        self.local[i] = q
        self._world, self._eff = {}, {}
        return q

    def _eff_local(self, i: int) -> np.ndarray | None:
        return self.rest.effective_rotation(i, self.local, self._eff, self.t)

    def world(self, i: int) -> np.ndarray:
        if i in self._world:
            return self._world[i]
        p = int(self.rest.parents[i])
        wp = Q.identity((self.t,)) if p < 0 else self.world(p)
        q = self._eff_local(i)
        w = wp if q is None else Q.multiply(wp, q)
        self._world[i] = w
        return w

    def parent_world(self, name: str) -> np.ndarray:
        p = int(self.rest.parents[self.rest.find(name)])
        return Q.identity((self.t,)) if p < 0 else self.world(p)

    def offset(self, a: int, b: int) -> np.ndarray:
        """World vector from bone ``a`` to its descendant ``b`` (``(T, 3)``), under the current keys."""
        chain = [b]
        while chain[-1] != a:
            p = int(self.rest.parents[chain[-1]])
            if p < 0:
                raise ValueError(f"{self.rest.names[b]} is not below {self.rest.names[a]}")
            chain.append(p)
        chain.reverse()
        r = self.rest.positions
        out = np.zeros((self.t, 3))
        for u, v in zip(chain[:-1], chain[1:]):
            out += Q.rotate(self.world(u), r[v] - r[u])
        return out

    def inherits_between(self, a: int, b: int) -> bool:
        """Whether an unkeyed bone between ``a`` and its descendant ``b`` inherits a rotation."""
        p = int(self.rest.parents[b])
        while p != a and p >= 0:
            if self.rest.inherit_rotation[p] and self.rest.inherit_source[p] >= 0 and p not in self.local:
                return True
            p = int(self.rest.parents[p])
        return False


_CHEST_ITERATIONS = 12


def _key_upper2(pose: _Pose, g_obs: np.ndarray, p_r: np.ndarray, s_r: np.ndarray) -> np.ndarray:
    """Key 上半身2 so the *model* reproduces the observed chest frame ``g_obs``; returns the local key.

    The frame is built from Spine -> Thorax (上半身2 -> 首) and the shoulder line (左腕 - 右腕), points that hang
    below 上半身2. Where an unkeyed bone in between inherits rotation (mat4's 上半身3 takes 0.4 × 上半身2,
    docs/MMD_FACTS.md §3.4) they are not rigid with 上半身2, so we iterate: predict the frame the model would show under the
    current key (Thorax through the bone chain, shoulders with 肩 at rest), and correct the key by the remaining
    world error (a contraction by about |1 - 1.4| per step for mat4). Without such inheritance one pass is exact.
    """
    r = pose.rest
    chest, neck = r.find("上半身2"), r.find("首")
    arm_l, arm_r = r.find("左腕"), r.find("右腕")
    g = g_obs
    q = pose.set_world("上半身2", g)
    if not any(pose.inherits_between(chest, b) for b in (neck, arm_l, arm_r)):
        return q
    for _ in range(_CHEST_ITERATIONS):
        p_pred = pose.offset(chest, neck)
        s_pred = pose.offset(chest, arm_l) - pose.offset(chest, arm_r)
        g_pred = _frame_rotation(p_pred, s_pred, p_r, s_r, g)
        g = Q.normalize(Q.multiply(Q.multiply(g_obs, Q.conjugate(g_pred)), g))
        q = pose.set_world("上半身2", g)
    return q


# ----------------------------------------------------------------------------------------------------------------


def _validate(joints, frames):
    j = np.asarray(joints, dtype=np.float64)
    if j.ndim != 3 or j.shape[1:] != (len(CANONICAL), 3) or j.shape[0] < 1:
        raise ValueError(f"retarget: joints must be (T, {len(CANONICAL)}, 3) CANONICAL joints in MMD units, "
                         f"T >= 1, got shape {j.shape}")
    if np.any(np.isinf(j)):
        raise ValueError("retarget: joints contain inf")
    core_bad = ~np.all(np.isfinite(j[:, :_N_CORE]), axis=2)
    if np.any(core_bad):
        tt, jj = np.nonzero(core_bad)
        names = sorted({CANONICAL[i] for i in jj})
        raise ValueError(f"retarget: the H36M-17 joints must be finite on every frame (fill gaps first); "
                         f"{len(np.unique(tt))} frames have NaN, first frame {int(tt[0])}, joints {names}")
    if frames is None:
        f = np.arange(j.shape[0], dtype=np.int64)
    else:
        f = np.asarray(frames)
        if f.shape != (j.shape[0],):
            raise ValueError(f"retarget: frames must be ({j.shape[0]},), got {f.shape}")
    return j, f


def _present(j, *names):
    """(T,) bool: all listed joints finite on that frame."""
    return np.all(np.isfinite(j[:, [J[n] for n in names]]), axis=(1, 2))


def match_widths(joints: np.ndarray, rest: RestSkeleton) -> np.ndarray:
    """Bring the dancer's hip and shoulder widths to the model's, about each pair's midpoint.

    Detectors put the hip points on the outside of the pelvis (BlazePose's are ~1.5x wider than an MMD model's
    足 bones, relative to leg length). Taking thigh directions from such points makes a model with narrower hips
    cross its feet whenever the dancer stands with feet together. Moving LHip/RHip (and LShoulder/RShoulder) towards
    their midpoint by ``model width / dancer's median width`` keeps each knee, ankle, elbow and wrist where it is,
    so limbs are aimed from the model's own joints. A dancer already built like the model is unchanged.

    Args:
        joints: ``(T, 27, 3)`` ``CANONICAL``, MMD axes, already scaled to the model.
        rest: the target model.
    Returns:
        ``(T, 27, 3)`` copy with the four joints moved.
    """
    j = np.array(joints, dtype=np.float64)
    rj = rest_joints(rest)
    for left, right in (("LHip", "RHip"), ("LShoulder", "RShoulder")):
        a, b = J[left], J[right]
        width = np.linalg.norm(j[:, a] - j[:, b], axis=1)
        med = float(np.median(width))
        if not med > 1e-9:
            continue
        k = float(np.linalg.norm(rj[a] - rj[b])) / med
        mid = 0.5 * (j[:, a] + j[:, b])
        j[:, a] = mid + (j[:, a] - mid) * k
        j[:, b] = mid + (j[:, b] - mid) * k
    return j


# ----------------------------------------------------------------------------------------------------------------
# One function per body part. Shared arguments: ``pose`` (:class:`_Pose`, the model's world rotations under the keys
# set so far; each function keys its bones into it, in the order the module docstring lists them), ``j`` the dancer's
# ``(T, 27, 3)`` ``CANONICAL`` joints and ``rj`` the model's ``(27, 3)`` rest joints (:func:`rest_joints`), both in
# the ``mmd`` frame of ``core.conventions`` (scaled, width-matched and grounded as ``retarget`` prepared them).
# Each returns ``bone name -> (T, 4)`` local keys (relative to the parent's posed frame, quaternion order as in
# ``core.conventions``).


def _scale_and_ground(j: np.ndarray, rest: RestSkeleton, fit_scale: bool, adapt_widths: bool, ground: bool,
                      ground_percentile: float) -> tuple[np.ndarray, dict]:
    """Scale the dancer to the model, match hip / shoulder widths and shift vertically (see :func:`retarget`).

    Args: j ``(T, 27, 3)`` validated joints, ``mmd`` frame; the flags and percentile of :func:`retarget`.
    Returns: (``(T, 27, 3)`` joints, ``meta`` with ``scale``, ``ground_shift`` and a zero ``start_offset`` (3,)).
    Raises: ValueError: the dancer's legs have zero length (with ``fit_scale``).
    """
    rp = rest.positions
    meta = {"scale": 1.0, "ground_shift": 0.0, "start_offset": np.zeros(3)}
    if fit_scale:
        leg = 0.5 * sum(np.linalg.norm(j[:, J[s + "Knee"]] - j[:, J[s + "Hip"]], axis=1)
                        + np.linalg.norm(j[:, J[s + "Foot"]] - j[:, J[s + "Knee"]], axis=1) for s in "LR")
        med = float(np.median(leg))
        if not med > 1e-9:
            raise ValueError("retarget: the dancer's legs have zero length; cannot fit the scale")
        meta["scale"] = _leg_length(rest) / med
        j = j * meta["scale"]
    if adapt_widths:
        j = match_widths(j, rest)
    if ground:
        low = np.minimum(j[:, J["LFoot"], 1], j[:, J["RFoot"], 1])
        rest_ankle = 0.5 * (rp[rest.find("左足首"), 1] + rp[rest.find("右足首"), 1])
        meta["ground_shift"] = float(rest_ankle - np.percentile(low, ground_percentile))
        j = j.copy()
        j[..., 1] += meta["ground_shift"]
    return j, meta


def _retarget_torso(pose: _Pose, j: np.ndarray, rj: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Key 下半身, 上半身 and (when the model has it) 上半身2 from the hip line, shoulder line, Hip, Spine, Thorax.

    Returns: (keys for those bones, ``g_lower`` ``(T, 4)`` the world rotation of 下半身, which places センター).
    """
    has_u2 = pose.rest.index_of("上半身2") is not None
    keys: dict[str, np.ndarray] = {}
    lat_hip = j[:, J["LHip"]] - j[:, J["RHip"]]
    lat_hip_r = rj[J["LHip"]] - rj[J["RHip"]]
    lat_sh = j[:, J["LShoulder"]] - j[:, J["RShoulder"]]
    lat_sh_r = rj[J["LShoulder"]] - rj[J["RShoulder"]]
    g_lower = _frame_rotation(lat_hip, j[:, J["Spine"]] - j[:, J["Hip"]], lat_hip_r, rj[J["Spine"]] - rj[J["Hip"]],
                              pose.parent_world("下半身"))
    keys["下半身"] = pose.set_world("下半身", g_lower)
    top = "Spine" if has_u2 else "Thorax"
    if has_u2:
        s_cur = _unit(lat_hip) + _unit(lat_sh)
        s_rest = lat_hip_r / np.linalg.norm(lat_hip_r) + lat_sh_r / np.linalg.norm(lat_sh_r)
    else:
        s_cur, s_rest = lat_sh, lat_sh_r
    keys["上半身"] = pose.set_world("上半身", _frame_rotation(j[:, J[top]] - j[:, J["Hip"]], s_cur,
                                                          rj[J[top]] - rj[J["Hip"]], s_rest,
                                                          pose.parent_world("上半身")))
    if has_u2:
        p_r, s_r = rj[J["Thorax"]] - rj[J["Spine"]], lat_sh_r
        keys["上半身2"] = _key_upper2(pose, _frame_rotation(j[:, J["Thorax"]] - j[:, J["Spine"]], lat_sh, p_r, s_r,
                                                           pose.parent_world("上半身2")), p_r, s_r)
    return keys, g_lower


def _retarget_head(pose: _Pose, j: np.ndarray, rj: np.ndarray) -> dict[str, np.ndarray]:
    """Key 頭 (ears + nose where both ears are finite, else Nose -> Head with the chest's lateral axis) and 首 (a
    shortest arc from its rest direction to Thorax -> the head pivot the 頭 frame implies; no twist).

    Call after :func:`_retarget_torso` (the neck's parent frame comes from the chest). Returns: keys for 首 and 頭.
    """
    rest = pose.rest
    rp = rest.positions
    w_neck_parent = pose.parent_world("首")
    ears = _present(j, "LEar", "REar")
    mid_ear = 0.5 * (j[:, J["LEar"]] + j[:, J["REar"]])
    mid_ear_r = 0.5 * (rj[J["LEar"]] + rj[J["REar"]])
    g_head = _frame_rotation(j[:, J["Head"]] - j[:, J["Nose"]], Q.rotate(w_neck_parent, _EX),
                             rj[J["Head"]] - rj[J["Nose"]], _EX, w_neck_parent)
    ref = j[:, J["Head"]].copy()
    ref_r = np.broadcast_to(rj[J["Head"]], ref.shape).copy()
    if np.any(ears):
        g_ears = _frame_rotation(j[:, J["LEar"]] - j[:, J["REar"]], j[:, J["Nose"]] - mid_ear,
                                 rj[J["LEar"]] - rj[J["REar"]], rj[J["Nose"]] - mid_ear_r, g_head)
        g_head = np.where(ears[:, None], g_ears, g_head)
        ref = np.where(ears[:, None], mid_ear, ref)
        ref_r = np.where(ears[:, None], mid_ear_r, ref_r)
    head = rest.find("頭")
    pivot = ref - Q.rotate(g_head, ref_r - rp[head])
    d_neck_r = rp[head] - rp[rest.find("首")]
    if np.linalg.norm(d_neck_r) > 1e-6:
        q_neck = Q.from_two_vectors(d_neck_r, Q.rotate(Q.conjugate(w_neck_parent), pivot - j[:, J["Thorax"]]))
    else:
        q_neck = Q.identity((pose.t,))
    keys = {"首": pose.set_world("首", Q.multiply(w_neck_parent, q_neck))}
    keys["頭"] = pose.set_world("頭", g_head)
    return keys


def _twist_bone(rest: RestSkeleton, side: str, name: str, upper: str, lower: str) -> int | None:
    """Index of the twist bone ``side + name`` when it sits between ``upper`` and ``lower`` (its parent and its
    child) and is not itself inheriting a rotation; else None (the twist then stays in the hinge bones)."""
    i = rest.index_of(side + name)
    if i is None or rest.inherit_source[i] >= 0:
        return None
    if rest.parents[i] != rest.find(side + upper) or rest.parents[rest.find(side + lower)] != i:
        return None
    if np.linalg.norm(rest.positions[rest.find(side + lower)] - rest.positions[i]) < 1e-6:
        return None
    return i


def _twist_about(twist: np.ndarray, axis_from: np.ndarray, axis_to: np.ndarray) -> np.ndarray:
    """The rotation by ``twist``'s angle about ``axis_from`` (signed), applied about ``axis_to`` instead."""
    a = axis_from / np.linalg.norm(axis_from)
    ang = 2.0 * np.arctan2(twist[..., :3] @ a, twist[..., 3])
    return Q.from_axis_angle(np.broadcast_to(axis_to, twist[..., :3].shape), ang)


def _retarget_arm(pose: _Pose, j: np.ndarray, rj: np.ndarray, side: str, twist_bones: bool = True
                  ) -> dict[str, np.ndarray]:
    """Key one arm: 肩 (when the model has it; shortest arc from the shoulder pivot carried by the chest), 腕 + ひじ
    (:func:`_hinge_pair`, flexing toward -Z), then the hand frame's twist about the forearm into 手捩 (or ひじ) and
    the rest into 手首 (identity relative to the forearm on frames without both hand points); with ``twist_bones``
    and a 腕捩 between 腕 and ひじ, 腕's twist about the upper arm moves to 腕捩 (module docstring).

    Args: ``side`` "左" or "右" (joints ``L…`` / ``R…``). Call after :func:`_retarget_torso`.
    Returns: keys for that side's 肩 (if any), 腕, 腕捩 / 手捩 (when used), ひじ, 手首.
    """
    rest = pose.rest
    find, rp = rest.find, rest.positions
    tag = "L" if side == "左" else "R"
    keys: dict[str, np.ndarray] = {}
    if rest.index_of(side + "肩") is not None:
        sh = find(side + "肩")
        w = pose.parent_world(side + "肩")
        piv = j[:, J["Thorax"]] + Q.rotate(w, rp[sh] - rj[J["Thorax"]])
        d_r = rp[find(side + "腕")] - rp[sh]
        q = Q.from_two_vectors(d_r, Q.rotate(Q.conjugate(w), j[:, J[tag + "Shoulder"]] - piv)) \
            if np.linalg.norm(d_r) > 1e-6 else Q.identity((pose.t,))
        keys[side + "肩"] = pose.set_world(side + "肩", Q.multiply(w, q))
    arm, elbow, wrist = find(side + "腕"), find(side + "ひじ"), find(side + "手首")
    d1_r, d2_r = rp[elbow] - rp[arm], rp[wrist] - rp[elbow]
    g_arm, q_elbow = _hinge_pair(pose.parent_world(side + "腕"),
                                 j[:, J[tag + "Elbow"]] - j[:, J[tag + "Shoulder"]],
                                 j[:, J[tag + "Wrist"]] - j[:, J[tag + "Elbow"]], d1_r, d2_r, _FORWARD)
    arm_twist = _twist_bone(rest, side, "腕捩", "腕", "ひじ") if twist_bones else None
    hand_twist = _twist_bone(rest, side, "手捩", "ひじ", "手首") if twist_bones else None
    if arm_twist is not None:
        w_par = pose.parent_world(side + "腕")
        swing, twist = Q.swing_twist(Q.multiply(Q.conjugate(w_par), g_arm), d1_r)
        keys[side + "腕"] = pose.set_world(side + "腕", Q.multiply(w_par, swing))
        axis = rp[elbow] - rp[arm_twist]
        keys[side + "腕捩"] = pose.set_world(side + "腕捩", Q.multiply(pose.world(arm), _twist_about(twist, d1_r, axis)))
    else:
        keys[side + "腕"] = pose.set_world(side + "腕", g_arm)
    g_fore = Q.multiply(g_arm, q_elbow)
    hand = _present(j, tag + "HandIndex", tag + "HandPinky")
    g_hand = g_fore
    if np.any(hand):
        idx, pky = j[:, J[tag + "HandIndex"]], j[:, J[tag + "HandPinky"]]
        idx_r, pky_r = rj[J[tag + "HandIndex"]], rj[J[tag + "HandPinky"]]
        g_obs = _frame_rotation(0.5 * (idx + pky) - j[:, J[tag + "Wrist"]], idx - pky,
                                0.5 * (idx_r + pky_r) - rj[J[tag + "Wrist"]], idx_r - pky_r, g_fore)
        g_hand = np.where(hand[:, None], g_obs, g_fore)
        rel = Q.multiply(Q.conjugate(g_fore), g_hand)
        twist, _ = Q.twist_swing(rel, d2_r)
        if hand_twist is None:
            g_fore = Q.multiply(g_fore, twist)
    keys[side + "ひじ"] = pose.set_world(side + "ひじ", g_fore)
    if hand_twist is not None:
        tw = twist if np.any(hand) else Q.identity((pose.t,))
        keys[side + "手捩"] = pose.set_world(side + "手捩", Q.multiply(
            g_fore, _twist_about(tw, d2_r, rp[wrist] - rp[hand_twist])))
    keys[side + "手首"] = pose.set_world(side + "手首", g_hand)
    return keys


def _retarget_leg(pose: _Pose, j: np.ndarray, rj: np.ndarray, side: str) -> dict[str, np.ndarray]:
    """Key one leg: 足 + ひざ (:func:`_hinge_pair`, the knee flexing toward +Z), then 足首 from toe and heel (toe and
    heel: full frame; toe only: shortest arc; neither: identity relative to the shin), per frame.

    Args: ``side`` "左" or "右" (joints ``L…`` / ``R…``). Call after :func:`_retarget_torso`.
    Returns: keys for that side's 足, ひざ, 足首.
    """
    rest = pose.rest
    find, rp = rest.find, rest.positions
    tag = "L" if side == "左" else "R"
    keys: dict[str, np.ndarray] = {}
    hip, knee, ankle = find(side + "足"), find(side + "ひざ"), find(side + "足首")
    g_thigh, q_knee = _hinge_pair(pose.parent_world(side + "足"),
                                  j[:, J[tag + "Knee"]] - j[:, J[tag + "Hip"]],
                                  j[:, J[tag + "Foot"]] - j[:, J[tag + "Knee"]],
                                  rp[knee] - rp[hip], rp[ankle] - rp[knee], -_FORWARD)
    keys[side + "足"] = pose.set_world(side + "足", g_thigh)
    g_shin = Q.multiply(g_thigh, q_knee)
    keys[side + "ひざ"] = pose.set_world(side + "ひざ", g_shin)
    toe, heel = J[tag + "FootIndex"], J[tag + "Heel"]
    w_foot = pose.parent_world(side + "足首")
    toe_ok = _present(j, tag + "FootIndex")
    both = toe_ok & _present(j, tag + "Heel")
    g_foot = w_foot
    if np.any(toe_ok):
        g_toe = Q.multiply(Q.from_two_vectors(Q.rotate(w_foot, rj[toe] - rj[J[tag + "Foot"]]),
                                              j[:, toe] - j[:, J[tag + "Foot"]]), w_foot)
        g_foot = np.where(toe_ok[:, None], g_toe, g_foot)
    if np.any(both):
        g_full = _frame_rotation(j[:, toe] - j[:, J[tag + "Foot"]], j[:, J[tag + "Foot"]] - j[:, heel],
                                 rj[toe] - rj[J[tag + "Foot"]], rj[J[tag + "Foot"]] - rj[heel], g_foot)
        g_foot = np.where(both[:, None], g_full, g_foot)
    keys[side + "足首"] = pose.set_world(side + "足首", g_foot)
    return keys


def _place_center(j: np.ndarray, rest: RestSkeleton, g_lower: np.ndarray, center_start: bool,
                  meta: dict) -> np.ndarray:
    """センター's translation ``(T, 3)`` (MMD units, offset from rest) that puts the model's hip point (carried by
    下半身, world rotation ``g_lower`` ``(T, 4)``) on the dancer's Hip joint.

    With ``center_start`` the first frame's horizontal offset is removed and stored in ``meta["start_offset"]``.
    """
    lower = rest.find("下半身")
    _, hip_off = virtual_joints(rest)["Hip"]
    center_t = j[:, J["Hip"]] - Q.rotate(g_lower, hip_off) - rest.positions[lower]
    if center_start:
        meta["start_offset"] = np.array([-center_t[0, 0], 0.0, -center_t[0, 2]])
        center_t = center_t + meta["start_offset"]
    return center_t


def _leg_ik_keys(rest: RestSkeleton, local: dict[int, np.ndarray],
                 loc: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """足ＩＫ keys from FK of the keys just computed (docs/MMD_FACTS.md §2.5, §5.3).

    Args:
        rest: the model.
        local: bone index -> ``(T, 4)`` local rotation keys (:attr:`_Pose.local`).
        loc: bone name -> ``(T, 3)`` location keys (センター).
    Returns:
        (locations, rotations) for each of 左足ＩＫ / 右足ＩＫ the model has as an IK bone: the location puts the IK
        bone on the ankle (FK), expressed in the IK bone's unanimated parent frame as an offset from rest; the
        rotation is the ankle's world rotation in that frame. Empty dicts when the model has neither.
    """
    find, rp = rest.find, rest.positions
    names = {i: n for i, n in enumerate(rest.names)}
    rot_named = {names[i]: q for i, q in local.items()}
    iks = [c for c in rest.ik_chains if c.bone in ("左足ＩＫ", "右足ＩＫ")]
    loc_ik: dict[str, np.ndarray] = {}
    rot_ik: dict[str, np.ndarray] = {}
    if iks:
        want = []
        for c in iks:
            want.append(c.target)
            p = int(rest.parents[find(c.bone)])
            if p >= 0:
                want.append(rest.names[p])
        wpos, wrot = rest.fk(rot_named, loc, bones=want)
        col = {n: k for k, n in enumerate(want)}
        for c in iks:
            ik = find(c.bone)
            p = int(rest.parents[ik])
            tgt_pos, tgt_rot = wpos[:, col[c.target]], wrot[:, col[c.target]]
            if p >= 0:
                pw, pr = wpos[:, col[rest.names[p]]], wrot[:, col[rest.names[p]]]
                loc_ik[c.bone] = Q.rotate(Q.conjugate(pr), tgt_pos - pw) - (rp[ik] - rp[p])
                rot_ik[c.bone] = Q.multiply(Q.conjugate(pr), tgt_rot)
            else:
                loc_ik[c.bone] = tgt_pos - rp[ik]
                rot_ik[c.bone] = tgt_rot
    return loc_ik, rot_ik


#: つま先ＩＫ offsets (MMD units) below this are rounding of an IK bone that rests on its target (0.8 µm): not keyed.
TOE_IK_ZERO = 1e-5


def leg_ik_from_fk(motion: BoneMotion, rest: RestSkeleton) -> BoneMotion:
    """``motion`` with its leg IK keys recomputed from its FK legs, so that MMD's IK-on playback shows the FK pose.

    With IK on (MMD's default), MMD moves 足首 onto 足ＩＫ and つま先 onto つま先ＩＫ by CCD, starting from the FK keys
    (docs/MMD_FACTS.md §2.5): where an edit changed the FK legs after their IK keys were set (a flip repair, a leg
    the foot lock could not take all the way to its pin), the two disagree and MMD plays neither. Here 足ＩＫ gets the
    FK ankle's position and world rotation (in its unanimated parent's frame, as :func:`retarget` sets them) and
    つま先ＩＫ the offset that puts it on the FK toe (zero where the IK bone rests on its target, as on mat4; a constant
    0.0006 units on yw, whose つま先ＩＫ rest that far from つま先); a chain whose target starts on its IK bone is not
    iterated, so IK-on playback equals FK.

    Args:
        motion: a dense :class:`BoneMotion` on ``rest`` (MMD units, ``core.conventions``).
        rest: the model. Legs it has no 足ＩＫ chain for keep their keys; a model without any returns ``motion``.
    Returns:
        a new :class:`BoneMotion` (same frames and meta); a つま先ＩＫ track is written only where ``motion`` had one
        or the offset is not zero (above :data:`TOE_IK_ZERO`).
    """
    if not any(c.bone in ("左足ＩＫ", "右足ＩＫ") for c in rest.ik_chains):
        return motion
    rot = {n: q for n, q in motion.rotations.items() if rest.index_of(n) is not None}
    loc = {n: v for n, v in motion.locations.items() if rest.index_of(n) is not None}
    local = {rest.find(n): q for n, q in rot.items()}
    if not local:                                  # nothing keyed: FK at rest, as many frames as the motion has
        local = {rest.find("センター"): np.tile(Q.identity(()), (motion.n_frames, 1))}
    loc_ik, rot_ik = _leg_ik_keys(rest, local, loc)
    rotations, locations = dict(motion.rotations), dict(motion.locations)
    rotations.update({n: Q.make_continuous(q) for n, q in rot_ik.items()})
    locations.update(loc_ik)
    toe_iks = [(c.bone, c.target) for c in rest.ik_chains if c.bone in ("左つま先ＩＫ", "右つま先ＩＫ")]
    if toe_iks:
        fk_rot = {n: q for n, q in rotations.items() if rest.index_of(n) is not None}
        fk_loc = {n: v for n, v in locations.items() if rest.index_of(n) is not None}
        parent = {b: int(rest.parents[rest.find(b)]) for b, _ in toe_iks}
        want = list(dict.fromkeys([t for _, t in toe_iks] + [rest.names[p] for p in parent.values() if p >= 0]))
        wpos, wrot = rest.fk(fk_rot, fk_loc, bones=want, n_frames=motion.n_frames)
        col = {n: k for k, n in enumerate(want)}
        rp = rest.positions
        for b, tgt in toe_iks:
            i, p = rest.find(b), parent[b]
            toe = wpos[:, col[tgt]]
            if p >= 0:
                pc = col[rest.names[p]]
                off = Q.rotate(Q.conjugate(wrot[:, pc]), toe - wpos[:, pc]) - (rp[i] - rp[p])
            else:
                off = toe - rp[i]
            if np.abs(off).max(initial=0.0) < TOE_IK_ZERO:
                off = np.zeros_like(off)            # rounding: the IK bone rests on its target, leave it unkeyed
            if b in locations or off.any():
                locations[b] = off
    return BoneMotion(frames=motion.frames, rotations=rotations, locations=locations, model_name=motion.model_name,
                      meta=dict(motion.meta), morphs=dict(motion.morphs))


def retarget(joints: np.ndarray, rest: RestSkeleton, *, frames: np.ndarray | None = None, fit_scale: bool = True,
             ground: bool = True, center_start: bool = True, ground_percentile: float = 5.0,
             adapt_widths: bool = True, twist_bones: bool = True) -> BoneMotion:
    """Retarget dancer joints onto a model: MMD keys on every frame (see the module docstring for the method).

    Args:
        joints: ``(T, 27, 3)`` float, ``CANONICAL`` order, MMD axes and units, absolute (root trajectory included).
            The 17 H36M joints must be finite; the extras (toes, heels, hand points, ears) may be NaN.
        rest: the target model (:meth:`RestSkeleton.from_pmx` or :meth:`RestSkeleton.standard`).
        frames: ``(T,)`` MMD frame numbers (30 fps); default ``0..T-1``.
        fit_scale: scale the dancer by (model leg length) / (dancer's median leg length), hip -> knee -> ankle
            averaged over both legs, before computing translations (docs/MMD_FACTS.md §5.8). Rotations do not depend on it.
        ground: shift vertically so that the ``ground_percentile`` percentile over frames of the lower ankle's height
            equals the model's rest ankle height (feet on y = 0 as on the model); no per-frame contact is forced, so
            jumps survive.
        center_start: shift センター (and with it the feet) horizontally so the dance starts at the origin.
        ground_percentile: see ``ground``.
        adapt_widths: aim thighs and upper arms from the model's hip and shoulder width (:func:`match_widths`).
        twist_bones: put the arm twists on 腕捩 / 手捩 where the model has them (default; same FK), else on 腕 / ひじ.

    Returns:
        :class:`BoneMotion` with rotations for the model's :data:`KEYED_BONES` (not センター), locations for センター
        and 左右足ＩＫ, all sign-continuous; ``meta`` holds ``scale`` (dancer -> model), ``ground_shift`` (units added
        to y) and ``start_offset`` (the horizontal shift applied by ``center_start``).

    Raises:
        ValueError: wrong shapes, non-finite H36M joints, a model lacking :data:`REQUIRED_BONES`, frames of the
            wrong shape (BoneMotion checks that they increase).
    """
    j, f = _validate(joints, frames)
    check_model(rest)
    j, meta = _scale_and_ground(j, rest, fit_scale, adapt_widths, ground, ground_percentile)
    rj = rest_joints(rest)
    pose = _Pose(rest, j.shape[0])
    rot, g_lower = _retarget_torso(pose, j, rj)
    rot.update(_retarget_head(pose, j, rj))
    for side in "左右":
        rot.update(_retarget_arm(pose, j, rj, side, twist_bones))
    for side in "左右":
        rot.update(_retarget_leg(pose, j, rj, side))
    loc = {"センター": _place_center(j, rest, g_lower, center_start, meta)}
    loc_ik, rot_ik = _leg_ik_keys(rest, pose.local, loc)
    loc.update(loc_ik)
    rot.update(rot_ik)

    rotations = {n: Q.make_continuous(Q.normalize(rot[n])) for n in KEYED_BONES if n in rot}
    locations = {n: loc[n] for n in KEYED_BONES if n in loc}
    return BoneMotion(frames=f, rotations=rotations, locations=locations, model_name=rest.model_name, meta=meta)
