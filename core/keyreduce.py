"""Key reduction: MMD's per-channel Bézier interpolation fitted to a dense :class:`core.motion.BoneMotion`.

A dense motion keys every bone on every frame. :func:`reduce_motion` keeps, per bone, the fewest keys from which MMD's
own interpolation (docs/MMD_FACTS.md §1.5, §2.4: the curve stored on key k shapes the segment from key k-1; one
weight per translation axis, one for the rotation's slerp) reproduces the dense motion within a tolerance, and
:meth:`Reduction.to_vmd` writes them with their curves. Frames, units and quaternion order: ``core.conventions``.

Method
------
* **Curves.** Every fitted curve has the fixed x control points ``(x1, x2) = (42, 85)`` (of 127): then ``Bx(u)`` is
  almost ``u`` and the weight ``w(s) = By(u(s)) = 3(1-u)²u·y1 + 3(1-u)u²·y2 + u³`` is *linear* in ``(y1, y2)``. The
  three basis functions are evaluated once per segment length with MMD's evaluator (``core.vmd_sample.bezier_weight``),
  so a segment's curve is a 2x2 least-squares solve, clipped to 0..1 and rounded to 1/127, and its error is then
  exact (what MMD plays, up to the evaluator's 2^-24 bisection).
* **Rotation.** For a segment from key a to key b (quaternions qa, qb, sign-continuous), each inner frame's
  quaternion q is split into its angle along the slerp arc (``φ``, from its dot products with qa and qb) and the
  rest; the weight fitted is ``φ / θ`` (θ = the arc's angle) and the error is the rotation angle between q and
  ``slerp(qa, qb, w)``. All dot products come from one table ``q_f · q_(f+k)``, so nothing is recomputed per segment.
* **Translation.** Each axis is fitted separately (MMD has one curve per axis); the error is the Euclidean distance.
* **Keys.** The segments of every bone, from every start and of every length up to ``max_span``, are fitted at once
  (numpy, vectorised over bones and starts; a length is tried only where the one a step shorter fits), then a
  shortest-path pass over the frames picks the fewest keys whose segments all fit; the first and last frames are
  always keys, and a bone that never moves keeps just those two.
* **Tolerance, after FK.** It is stated where it shows, at the model's joints: each bone's keys may move no joint of
  the model by more than ``pos_tol_mm`` on any frame (default **1 mm**), and no bone's own rotation is off by more
  than ``rot_tol_deg`` (default **0.5°**; issue 11's 0.5° / 1 mm; ``--key-tolerance DEG,MM``, the option
  ``key_tolerance`` of ``core.options.MotionOptions``, trades accuracy for fewer keys). A bone's rotation error δ
  moves the joints it carries by at most ``δ · lever`` (first order; :func:`levers`: its farthest ``CANONICAL``
  joint, measured on the dense motion posed on the model by ``RestSkeleton.fk``), so its rotation tolerance is
  ``min(rot_tol_deg, pos_tol_mm / lever)``: on mat4 a hip (下半身, lever about 0.8 m) gets about 0.07°, a wrist
  (7 cm) the 0.5° cap; translations (センター, 足ＩＫ) move what they carry one for one and get ``pos_tol_mm``. The
  errors of the bones along a chain can add up (a wrist joint has about ten keyed ancestors), so the per-frame error
  of a joint is bounded by the sum over its chain, not by 1 mm; they rarely line up. Measured with
  ``benchmarks/bench_keyreduce.py`` (reduced against dense motion, 27 joints played with the leg IK as MMD does,
  every frame):

  ======================  ========================================  ==================================
  tolerance               closed-loop estimates: keys, MPJPE (max)  3-minute CMU dance: keys, MPJPE (max)
  ======================  ========================================  ==================================
  0.5° / 1 mm (default)   0.08–0.55×, 0.39–0.49 mm (1.8–2.3 mm)     0.60×, 0.39 mm (2.3 mm)
  1° / 2 mm               0.07–0.44×, 0.75–1.15 mm (3.7–5.4 mm)     0.47×, 0.89 mm (5.1 mm)
  3° / 3 mm               0.06–0.38×, 1.10–1.77 mm (5.4–8.8 mm)     0.39×, 1.45 mm (9.2 mm)
  ======================  ========================================  ==================================

  Without a model the levers come from ``RestSkeleton.standard()`` (MMD proportions); the job and the add-on's
  Apply pass the target model's. ``strict_fk`` holds every bone's world position
  to ``pos_tol_mm`` and world rotation to ``rot_tol_deg`` instead: while a bone is off by more on some frame, the
  tolerances of that bone and its keyed ancestors are halved and those bones fitted again (a tolerance of 0, the
  last resort, keeps every key: exact). 1 mm = 0.0125 MMD units (``core.conventions``).
* **As MMD plays it: the leg IK** (``hold_ik``, on with a model). MMD solves 足ＩＫ / つま先ＩＫ every frame by CCD
  from the FK leg keys (docs/MMD_FACTS.md §2.5, ``core.ik``). On a dense motion whose IK keys sit on its FK legs
  nothing iterates; between reduced keys seeds and targets are each within the tolerance but no longer meet, and
  from such a near miss CCD can swing a nearly straight knee far off: without this step every one of the 20 CMU
  subject-5 clips played 7–90 mm off somewhere (4 mm or more on 4–93 frames each). So the reduced legs are played
  with IK, and on the frames where a leg joint ends farther from the dense motion than FK alone puts it, plus
  ``pos_tol_mm``, that leg's own keys are kept exactly there: its links (the seeds below) and its IK bones, whose
  values on those frames are set from where the reduced ancestors (センター, グルーブ, 下半身, each within its
  tolerance) and the exact links put the ankle and toe, so that targets and seeds meet and nothing iterates; a
  second round checks the new keys. Afterwards all 20 clips stay within 2.8 mm, for 0–7% more keys
  (:attr:`Reduction.ik_held` counts the frames held). Until 2 December (seventh session) the ancestors were kept
  exactly too, against the dense targets: the larger the tolerance, the more frames CCD misplayed, and on
  ``cmu05_15_yw_back`` at 3° / 4 mm センター was keyed on 75 of its 135 frames (0.24× in all; 0.19× now). Blender's
  IK (the add-on's preview) plays these legs as closely as before or closer (legs against the dense motion, every
  frame; before → after: kunkun on mat4 max 3.07 → 3.07 mm at the default, 9.6 → 7.2 mm at 3° / 3 mm;
  ``cmu05_10_yw`` on yw 2.9 → 2.5 mm, 7.5 → 6.9 mm).
* **The leg IK's seeds.** Played with the IK on, the FK keys of the legs' IK links (足, ひざ, and 足首 under the model's
  つま先ＩＫ chain, keyed or not: :func:`ik_seed_links`) never show as they are: CCD starts from them and puts the joints
  they carry on the IK targets. So their keys are held by the rotation cap alone, not by their lever after FK (a
  thigh's 0.07°), and the IK check above is made with the seeds exact; a second check measures the seeds' own share:
  where the legs played with IK end more than ``pos_tol_mm`` farther from the dense motion than with exact seeds, the
  seeds get their tolerance after FK back on those frames (0 where they already had it) and are fitted again. Measured
  on the closed-loop estimates: 4–16% fewer keys at the default (0.01–0.02 mm more MPJPE), the trained lifter's CMU
  renders 0.19–0.24× at 3° / 3 mm instead of 0.23–0.27×. A larger cap for the seeds gave more keys, not fewer (2° and
  4° on kunkun: +4% and +8%: the check takes back more frames). Blender's IK (the add-on's preview) also starts from
  the FK pose; it plays the reduced legs as closely as before (kunkun on mat4 and cmu05_10_yw on yw, every frame: 99th
  percentile 1.86 / 1.87 mm, max 3.5 mm from the dense motion, with the seeds held either way).
* **Key values (least squares).** Keys are chosen on the dense samples (above); then, per bone, the key values and
  curves are refitted by least squares over the segments they bound, alternately (two rounds): the values with the
  curves held (MMD's interpolation is linear in them, ``(1 - w)·V_a + w·V_b``: a tridiagonal normal system; a
  rotation is solved as a 4-vector and normalised) and the curves with the values held. The reduced curve then
  passes through the estimate's noise instead of through its noisy samples (about 15% lower MPJPE at the same keys).
  The refit is kept only where it stays within the bone's tolerance on every frame; else halfway to the dense
  samples; else the dense samples with their own curves, which fit by construction (``refit=False`` always).
* **Limits.** MMD interpolates a rotation along the great arc between two keys (slerp) with one curve, and every
  weight stays in 0..1 (control points 0..127): where a bone's rotation turns its axis, or a channel reverses,
  by more than the tolerance, a key is needed. Monocular estimates of fast dance keep part of their motion above
  the keys' rate: on the closed-loop CMU renders (5 s of CMU subject 5) the 27 joints move 2.1–4.1 mm on average
  above 6 Hz with the trained lifter (4.1–8.3 mm with MediaPipe's own 3D; mostly the root's path: 0.6–0.9 mm with
  the hips aligned), so a key every 5 frames (0.2×) cannot follow them within the default 1 mm; at the default the
  trained lifter's estimates keep 0.22–0.35 of the keys (0.14–0.22 at 3° / 3 mm, within 1.5–1.8 mm), MediaPipe's own
  3D 0.44–0.55, the slower OpenMMD dance 0.08–0.16 (0.06–0.09); the CMU mocap itself keeps 0.60.

numpy and the standard library only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from . import conventions
from . import quat as Q
from .formats import vmd as vmd_format
from .motion import BoneMotion
from .vmd_sample import bezier_weight

__all__ = ["X_CONTROL", "DEFAULT_ROT_TOL_DEG", "DEFAULT_POS_TOL_MM", "DEFAULT_MORPH_TOL", "DEFAULT_MAX_SPAN", "Reduction",
           "reduce_motion", "fk_errors"]

#: x control points of every fitted curve (of 127): ``Bx(u) ≈ u``, so ``By`` is linear in (y1, y2).
X_CONTROL = (42, 85)
DEFAULT_ROT_TOL_DEG = 0.5
DEFAULT_POS_TOL_MM = 1.0
#: Morph weights (0..1) are linear between keys (docs/MMD_FACTS.md §2.4); their keys stay within this of the dense one.
DEFAULT_MORPH_TOL = 0.01
#: Longest segment tried, in keys of the dense motion (the fit costs grow with its square).
DEFAULT_MAX_SPAN = 30
_LINEAR = (20, 20, 107, 107)
_MAX_ROUNDS = 6
#: Rounds of :func:`_hold_leg_ik` (each plays the reduced legs with IK once), and how many frames on each side of a
#: missed one each round holds too.
_IK_ROUNDS = 2
_IK_WIDEN = (1, 2)


@lru_cache(maxsize=None)
def _basis(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(P1, P2, P3)``, each ``(n-1,)``: MMD's weight at the inner frames j/n of a segment of n steps is
    ``P1·y1 + P2·y2 + P3`` for a curve (42, 127·y1, 85, 127·y2) (docs/MMD_FACTS.md §2.4)."""
    s = np.arange(1, n) / n
    x1, x2 = X_CONTROL
    p3 = bezier_weight(np.array([x1, 0, x2, 0]), s)
    p1 = bezier_weight(np.array([x1, 127, x2, 0]), s) - p3
    p2 = bezier_weight(np.array([x1, 0, x2, 127]), s) - p3
    return p1, p2, p3


def _solve_y(p1, p2, z1, z2) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares (y1, y2) from the right-hand sides ``z1 = r·P1``, ``z2 = r·P2``, as integers 0..127.

    A tiny ridge towards the straight curve (y1, y2) = (42, 85)/127 keeps two-step segments (one inner frame, two
    unknowns) well posed."""
    lam = 1e-6
    l1, l2 = X_CONTROL[0] / 127.0, X_CONTROL[1] / 127.0
    g11, g12, g22 = p1 @ p1 + lam, p1 @ p2, p2 @ p2 + lam
    z1 = z1 + lam * l1
    z2 = z2 + lam * l2
    det = g11 * g22 - g12 * g12
    y1 = (g22 * z1 - g12 * z2) / det
    y2 = (g11 * z2 - g12 * z1) / det
    return (np.clip(np.rint(127.0 * y1), 0, 127), np.clip(np.rint(127.0 * y2), 0, 127))


def _segment_fits(q: np.ndarray, v: np.ndarray, has_rot: np.ndarray, has_loc: np.ndarray, rot_tol: np.ndarray,
                  pos_tol: np.ndarray, span: int):
    """Fit the segments of B bones: which fit, and their curves.

    Args:
        q: ``(B, T, 4)`` sign-continuous key rotations; v: ``(B, T, 3)`` key translations.
        has_rot, has_loc: ``(B,)`` which halves to fit (a constant channel fits every segment).
        rot_tol (radians), pos_tol (units of ``v``): ``(B, T)``, each inner frame's tolerance.
        span: longest segment.

    Returns:
        ``ok (B, T, span+1)`` bool (segment from frame a of n steps at ``[:, a, n]``; n = 1 always fits),
        ``yr (B, T, span+1, 2)`` and ``yl (B, T, span+1, 3, 2)`` uint8: the (y1, y2) of the R and X/Y/Z curves.

    A segment of n steps is tried only where the one of n - 1 steps from the same frame fits (fits are nearly
    monotone in length), which keeps the work proportional to the segments that fit.
    """
    b_n, t_n, _ = q.shape
    dots = np.zeros((b_n, t_n, span + 1))
    for k in range(span + 1):
        if k < t_n:
            dots[:, :t_n - k, k] = np.einsum("btc,btc->bt", q[:, :t_n - k], q[:, k:])
    ok = np.zeros((b_n, t_n, span + 1), dtype=bool)
    ok[:, :t_n - 1, 1] = True
    yr = np.zeros((b_n, t_n, span + 1, 2), dtype=np.uint8)
    yl = np.zeros((b_n, t_n, span + 1, 3, 2), dtype=np.uint8)
    for n in range(2, min(span, t_n - 1) + 1):
        bb, aa = np.nonzero(ok[:, :t_n - n, n - 1])
        if len(bb) == 0:
            break
        p1, p2, p3 = _basis(n)
        jj = np.arange(1, n)
        good = np.ones(len(bb), dtype=bool)
        r_sel = np.flatnonzero(has_rot[bb])
        if len(r_sel):
            b, a = bb[r_sel], aa[r_sel]
            d = dots[b, a, n]
            sgn = np.where(d < 0, -1.0, 1.0)
            d = np.minimum(np.abs(d), 1.0)
            c0 = dots[b[:, None], a[:, None], jj]                       # q_(a+j) . q_a
            c1 = dots[b[:, None], a[:, None] + jj, n - jj] * sgn[:, None]  # q_(a+j) . q_b
            theta = np.arccos(d)
            sin = np.sqrt(np.maximum(1.0 - d * d, 0.0))
            moving = sin > 1e-7
            sin_s = np.where(moving, sin, 1.0)[:, None]
            theta_s = np.where(moving, theta, 1.0)[:, None]
            e1 = (c1 - d[:, None] * c0) / sin_s
            phi = np.arctan2(e1, c0)
            rho = np.hypot(c0, e1)
            r = phi / theta_s - p3
            y1, y2 = _solve_y(p1, p2, r @ p1, r @ p2)
            w = (y1[:, None] * p1 + y2[:, None] * p2) / 127.0 + p3
            cos_err = np.where(moving[:, None], rho * np.cos(phi - w * theta_s), np.abs(c0))
            err = 2.0 * np.arccos(np.clip(cos_err, -1.0, 1.0))                   # (M, n-1)
            good[r_sel] &= np.all(err <= rot_tol[b[:, None], a[:, None] + jj], axis=-1)
            yr[b, a, n, 0] = y1
            yr[b, a, n, 1] = y2
        l_sel = np.flatnonzero(has_loc[bb])
        if len(l_sel):
            b, a = bb[l_sel], aa[l_sel]
            va = v[b, a]                                                 # (M, 3)
            delta = v[b, a + n] - va
            inner = v[b[:, None], a[:, None] + jj]                       # (M, n-1, 3)
            r = inner - va[:, None] - delta[:, None] * p3[:, None]
            safe = np.where(np.abs(delta) > 1e-12, delta, 1.0)
            y1, y2 = _solve_y(p1, p2, np.einsum("mjc,j->mc", r, p1) / safe, np.einsum("mjc,j->mc", r, p2) / safe)
            w = (y1[:, None] * p1[:, None] + y2[:, None] * p2[:, None]) / 127.0 + p3[:, None]   # (M, n-1, 3)
            e = np.sqrt(np.sum((va[:, None] + delta[:, None] * w - inner) ** 2, axis=-1))     # (M, n-1)
            good[l_sel] &= np.all(e <= pos_tol[b[:, None], a[:, None] + jj], axis=-1)
            yl[b, a, n, :, 0] = y1
            yl[b, a, n, :, 1] = y2
        ok[bb, aa, n] = good
    return ok, yr, yl


def _fewest_keys(ok: np.ndarray) -> list[np.ndarray]:
    """``ok (B, T, span+1)`` segment fits -> per bone the key indices of a shortest chain 0 -> T-1 (n = 1 always
    fits). Ties prefer the longer last segment."""
    b_n, t_n, s1 = ok.shape
    span = s1 - 1
    # ends[b, f, j]: the segment of n = span - j steps that ends on frame f fits (longest first, so that argmin
    # keeps the first of equal costs); the costs are padded with span frames of inf before frame 0, so each frame's
    # candidates are one contiguous slice
    ends = np.zeros((b_n, t_n, span), dtype=bool)
    for n in range(1, min(span, t_n - 1) + 1):
        ends[:, n:, span - n] = ok[:, :t_n - n, n]
    add = np.where(ends, 1.0, np.inf)                  # a key more, or no such segment
    cost = np.full((b_n, span + t_n), np.inf)
    cost[:, span] = 1.0
    ks = np.zeros((b_n, t_n), dtype=np.int64)
    rows = np.arange(b_n)
    for f in range(1, t_n):
        c = cost[:, f:f + span] + add[:, f]
        k = np.argmin(c, axis=1)
        cost[:, span + f] = c[rows, k]
        ks[:, f] = k
    step = span - ks
    step[:, 0] = 1
    out = []
    for b in range(b_n):
        idx, f = [t_n - 1], t_n - 1
        while f > 0:
            f -= int(step[b, f])
            idx.append(f)
        out.append(np.array(idx[::-1], dtype=np.int64))
    return out


def _morph_keys(weights: np.ndarray, tol: float, span: int) -> list[np.ndarray]:
    """Fewest keys of morph tracks ``(M, T)`` whose linear interpolation stays within ``tol`` (as for bones)."""
    m_n, t_n = weights.shape
    ok = np.zeros((m_n, t_n, span + 1), dtype=bool)
    ok[:, :t_n - 1, 1] = True
    for n in range(2, min(span, t_n - 1) + 1):
        a_n = t_n - n
        wa, wb = weights[:, :a_n], weights[:, n:n + a_n]
        err = np.zeros((m_n, a_n))
        for j in range(1, n):
            err = np.maximum(err, np.abs(wa + (wb - wa) * (j / n) - weights[:, j:j + a_n]))
        ok[:, :a_n, n] = ok[:, :a_n, n - 1] & (err <= tol)
    return _fewest_keys(ok)


@dataclass
class Reduction:
    """Reduced keys of a :class:`BoneMotion`: per bone the kept key indices and each key's curves.

    Attributes:
        motion: the dense motion (values are taken from it at the kept keys); after the leg IK check, its 足ＩＫ /
            つま先ＩＫ tracks on the frames held follow the reduced FK legs (:func:`_hold_leg_ik`).
        keys: bone name -> ``(K,)`` int64 indices into ``motion.frames`` (first and last always kept).
        curves: bone name -> ``(K, 4, 4)`` uint8 control points (x1, y1, x2, y2) of the X, Y, Z and R curves of
            each key (key 0's are linear: MMD never uses them, docs/MMD_FACTS.md §1.5).
        rot_tol: bone name -> the rotation tolerance (radians) its keys were fitted to (after FK halvings).
        pos_tol: bone name -> the translation tolerance (MMD units).
        fk_error: with ``strict_fk``: ``{"rotation_deg": max world rotation error, "position_mm": max world
            position error}`` over all bones and frames of the model; empty otherwise (:func:`fk_errors` measures).
        morph_keys: morph name -> ``(K,)`` int64 indices of the kept morph keys (``motion.morphs``; linear).
        rounds: fitting rounds run (1 + FK tightenings).
        key_rotations, key_locations: bone name -> ``(K, 4)`` / ``(K, 3)`` refitted key values (least squares,
            module docstring) where they replace the dense samples at the kept keys; a bone absent keeps those.
        levers: bone name -> lever arm (MMD units, :func:`levers`) the tolerance was converted with.
        ik_held: frames (summed over the legs) whose leg keys were kept exactly so that MMD's leg IK plays them as
            the dense motion (``hold_ik`` of :func:`reduce_motion`).
    """

    motion: BoneMotion
    keys: dict
    curves: dict
    rot_tol: dict = field(default_factory=dict)
    pos_tol: dict = field(default_factory=dict)
    fk_error: dict = field(default_factory=dict)
    rounds: int = 1
    morph_keys: dict = field(default_factory=dict)
    key_rotations: dict = field(default_factory=dict)
    key_locations: dict = field(default_factory=dict)
    levers: dict = field(default_factory=dict)
    ik_held: int = 0

    @property
    def key_count(self) -> int:
        return int(sum(len(k) for k in self.keys.values()))

    @property
    def dense_key_count(self) -> int:
        return self.motion.n_frames * len(self.keys)

    def to_vmd(self, model_name: str | None = None, *, model_name_en: str = "", english_names: dict | None = None,
               notes: list | None = None):
        """A :class:`core.formats.vmd.VmdMotion` with the kept keys and their curves, grouped by bone.

        ``model_name_en``, ``english_names`` and ``notes``: as in :meth:`core.motion.BoneMotion.to_vmd` (fallbacks
        for names cp932 cannot hold, and the sentences saying so).

        Rotations are made sign-continuous per bone (docs/MMD_FACTS.md §5.1); bones with only one half keyed get
        identity / zero for the other, as :meth:`BoneMotion.to_vmd` does.
        """
        m = self.motion
        names, frames, rots, locs, blocks = [], [], [], [], []
        for name in m.bone_names:
            idx = self.keys[name]
            k = len(idx)
            q = Q.make_continuous(m.rotations[name]) if name in m.rotations else Q.identity(m.n_frames)
            loc = m.locations[name] if name in m.locations else np.zeros((m.n_frames, 3))
            c = self.curves[name]
            names += [name] * k
            frames.append(m.frames[idx])
            rots.append(self.key_rotations.get(name, q[idx]))
            locs.append(self.key_locations.get(name, loc[idx]))
            blocks.append(vmd_format.interpolation_block(c[:, 0], c[:, 1], c[:, 2], c[:, 3]))
        keys = vmd_format.make_bone_keys(names, np.concatenate(frames), np.concatenate(locs),
                                         np.concatenate(rots), np.concatenate(blocks),
                                         english_names=english_names, notes=notes)
        morphs = []
        for name, w in getattr(m, "morphs", {}).items():
            idx = self.morph_keys.get(name, np.arange(m.n_frames))
            k = np.empty(len(idx), dtype=vmd_format.MORPH_KEY_DTYPE)
            k["name"] = vmd_format.encode_name(name, 15)
            k["frame"] = m.frames[idx]
            k["weight"] = w[idx]
            morphs.append(k)
        morph_keys = np.concatenate(morphs) if morphs else np.zeros(0, dtype=vmd_format.MORPH_KEY_DTYPE)
        return vmd_format.VmdMotion(model_name=m.model_name if model_name is None else model_name, bone_keys=keys,
                                    morph_keys=morph_keys, model_name_en=model_name_en)

    def sampled(self) -> BoneMotion:
        """The reduced motion as MMD plays it, on the dense motion's frames (``core.vmd_sample.sample_vmd``)."""
        from .vmd_sample import sample_vmd

        return sample_vmd(self.to_vmd(), self.motion.frames)


def _frame_tol(tol: dict, name: str, t_n: int) -> np.ndarray:
    """``(T,)`` tolerance of one bone: its entry is a number (every frame) or a ``(T,)`` array."""
    return np.broadcast_to(np.asarray(tol[name], dtype=np.float64), (t_n,))


def _per_frame(tol: dict, names: list, t_n: int) -> np.ndarray:
    """``(B, T)`` tolerances of ``names`` (:func:`_frame_tol`)."""
    return np.stack([_frame_tol(tol, n, t_n) for n in names])


def _fit(motion: BoneMotion, names: list, rot_tol: dict, pos_tol: dict, span: int):
    """Keys and curves of ``names`` at the given per-bone tolerances."""
    t_n = motion.n_frames
    q = np.stack([Q.make_continuous(motion.rotations[n]) if n in motion.rotations else Q.identity(t_n)
                  for n in names])
    v = np.stack([motion.locations[n] if n in motion.locations else np.zeros((t_n, 3)) for n in names])
    has_rot = np.array([n in motion.rotations and float(Q.angle_between(q[i], q[i, :1]).max()) > 1e-9
                        for i, n in enumerate(names)], dtype=bool)
    has_loc = np.array([n in motion.locations and bool(np.any(v[i] != v[i, :1])) for i, n in enumerate(names)],
                       dtype=bool)
    ok, yr, yl = _segment_fits(q, v, has_rot, has_loc, _per_frame(rot_tol, names, t_n),
                               _per_frame(pos_tol, names, t_n), span)
    keys, curves = {}, {}
    for i, (name, idx) in enumerate(zip(names, _fewest_keys(ok))):
        if not has_rot[i] and not has_loc[i]:
            idx = np.unique([0, t_n - 1])            # constant: the two ends say it all
        c = np.tile(np.array(_LINEAR, dtype=np.uint8), (len(idx), 4, 1))
        if len(idx) > 1:
            starts, steps = idx[:-1], np.diff(idx)
            fitted = steps > 1
            sel = np.flatnonzero(fitted) + 1
            sa, sn = starts[fitted], steps[fitted]
            for ch in range(4):
                if not (has_rot[i] if ch == 3 else has_loc[i]):
                    continue
                yy = yr[i, sa, sn] if ch == 3 else yl[i, sa, sn, ch]
                c[sel, ch, 0] = X_CONTROL[0]
                c[sel, ch, 2] = X_CONTROL[1]
                c[sel, ch, 1] = yy[:, 0]
                c[sel, ch, 3] = yy[:, 1]
        keys[name] = idx
        curves[name] = c
    return keys, curves


# ------------------------------------------------------------------------------- tolerance after FK (lever arms)

def levers(motion: BoneMotion, rest) -> dict:
    """How far each bone of ``motion`` reaches on ``rest``: bone name -> lever arm, MMD units.

    The lever of bone b is the largest distance, over the frames of the dense motion posed on ``rest``
    (``RestSkeleton.fk``), from b to a ``CANONICAL`` joint b carries (``core.retarget.virtual_joints``: the joint's
    bone is b or a descendant of b): a rotation error of δ radians at b moves no joint by more than ``δ · lever``
    (to first order). An IK bone (足ＩＫ) stands for its target (足首): its lever is the target's. A bone that carries
    no joint, or that ``rest`` lacks, has lever 0 (only the rotation cap holds it).
    """
    from .retarget import virtual_joints
    from .skeletons import CANONICAL

    vj = virtual_joints(rest)
    target = {c.bone: c.target for c in rest.ik_chains}
    joint_bones = np.array([vj[c][0] for c in CANONICAL])
    offsets = np.array([vj[c][1] for c in CANONICAL])
    # only the bones the levers are measured between (and their ancestors) are posed
    own = {i for i in (rest.index_of(target.get(n, n)) for n in motion.bone_names) if i is not None}
    wanted = sorted(own | {int(b) for b in joint_bones})
    if len({rest.names[i] for i in wanted}) < len(wanted) or any(rest.find(rest.names[i]) != i for i in wanted):
        wanted = list(range(len(rest)))          # a model with repeated names: pose every bone
    col = np.full(len(rest), -1)
    col[wanted] = np.arange(len(wanted))
    pos, rot = rest.fk({n: v for n, v in motion.rotations.items() if n in rest},
                       {n: v for n, v in motion.locations.items() if n in rest}, n_frames=motion.n_frames,
                       bones=[rest.names[i] for i in wanted])
    jc = col[joint_bones]
    joints = pos[:, jc] + Q.rotate(rot[:, jc], np.broadcast_to(offsets, pos[:, jc].shape))
    carried = {}
    for k, b in enumerate(joint_bones):
        for a in [int(b)] + rest.ancestors(int(b)):
            carried.setdefault(a, []).append(k)
    out = {}
    for name in motion.bone_names:
        i = rest.index_of(target.get(name, name))
        ks = carried.get(i, []) if i is not None else []
        out[name] = float(np.linalg.norm(joints[:, ks] - pos[:, [col[i]]], axis=-1).max()) if ks else 0.0
    return out


# ------------------------------------------------------------------------- least-squares refit of the key values

@lru_cache(maxsize=None)
def _basis_table(span: int) -> np.ndarray:
    """``(span+1, span+1, 3)``: ``[n, j]`` = (P1, P2, P3) of :func:`_basis` at inner frame j of a segment of n steps."""
    t = np.zeros((span + 1, span + 1, 3))
    for n in range(2, span + 1):
        t[n, 1:n] = np.stack(_basis(n), axis=-1)
    return t


def _frame_weights(idx: np.ndarray, y: np.ndarray, t_n: int, span: int):
    """Per frame of a bone with keys ``idx (K,)`` and fitted curves' ``y (K, 2)`` (y1, y2 in 0..127, x at
    :data:`X_CONTROL`): ``(left (T,) key index, w (T,) MMD's weight on key left+1)``; on a key frame the weight is 0
    on that key as ``left`` (1 on the last key)."""
    f = np.arange(t_n)
    e = np.clip(np.searchsorted(idx, f, side="right"), 1, len(idx) - 1)   # key e-1 <= f < key e (f < last)
    a, n = idx[e - 1], idx[e] - idx[e - 1]
    j = f - a
    p = _basis_table(span)[np.minimum(n, span), np.minimum(j, span)]      # (T, 3); zeros where j == 0
    w = (y[e, 0] * p[:, 0] + y[e, 1] * p[:, 1]) / 127.0 + p[:, 2]
    w = np.where(j == 0, 0.0, np.where(n > span, j / n, w))    # n > span: a constant bone's two keys
    w[-1] = 1.0
    return e - 1, w


def _tridiagonal_ls(left: np.ndarray, w: np.ndarray, y: np.ndarray, k_n: int) -> np.ndarray:
    """Key values ``(K, C)`` minimising ``Σ_f |(1 - w_f) V[left_f] + w_f V[left_f + 1] - y_f|²`` (a symmetric
    tridiagonal normal system; every key has its own frame, so it is positive
    definite), by parallel cyclic reduction."""
    a0 = 1.0 - w
    right = np.minimum(left + 1, k_n - 1)
    diag = np.bincount(left, a0 * a0, minlength=k_n) + np.bincount(right, w * w, minlength=k_n)
    off = np.bincount(left, a0 * w, minlength=k_n)[:k_n - 1]
    rhs = np.zeros((k_n, y.shape[1]))
    np.add.at(rhs, left, a0[:, None] * y)
    np.add.at(rhs, right, w[:, None] * y)
    # parallel cyclic reduction (Hockney 1965): log2(K) vectorised elimination steps instead of a K-step loop
    cat = np.concatenate
    lo = cat([[0.0], off])                # a_i: coefficient of x_(i-1)
    up = cat([off, [0.0]])                # c_i: coefficient of x_(i+1)
    b, d = diag.astype(np.float64), rhs
    stride = 1
    while stride < k_n:
        pad1, pad0, padd = np.ones(stride), np.zeros(stride), np.zeros((stride, d.shape[1]))
        b_m, b_p = cat([pad1, b[:-stride]]), cat([b[stride:], pad1])
        a_m, a_p = cat([pad0, lo[:-stride]]), cat([lo[stride:], pad0])
        c_m, c_p = cat([pad0, up[:-stride]]), cat([up[stride:], pad0])
        d_m, d_p = cat([padd, d[:-stride]]), cat([d[stride:], padd])
        al, ga = -lo / b_m, -up / b_p
        b = b + al * c_m + ga * a_p
        d = d + al[:, None] * d_m + ga[:, None] * d_p
        lo, up = al * a_m, ga * c_p
        stride *= 2
    return d / b[:, None]


def _curve_y(idx: np.ndarray, inner_weight_fn) -> np.ndarray:
    """(y1, y2) of every segment ``(K, 2)`` from the target weights ``inner_weight_fn(sel, n)`` of its inner frames
    (``(M, n-1)``), least squares as in :func:`_segment_fits`; linear-shaped (42, 85) where a segment has no inner
    frame."""
    y = np.tile(np.array(X_CONTROL, dtype=np.float64), (len(idx), 1))
    steps = np.diff(idx)
    for n in np.unique(steps[steps > 1]):
        p1, p2, p3 = _basis(int(n))
        sel = np.flatnonzero(steps == n)
        r = inner_weight_fn(sel, int(n)) - p3
        y1, y2 = _solve_y(p1, p2, r @ p1, r @ p2)
        y[sel + 1, 0], y[sel + 1, 1] = y1, y2
    return y


def _rot_targets(q, qk, idx):
    """For :func:`_curve_y`: the slerp fraction φ/θ of each inner frame of q along the arc of its segment's keys."""
    def fn(sel, n):
        qa, qb = qk[sel], qk[sel + 1]
        inner = q[idx[sel][:, None] + np.arange(1, n)]
        d = np.sum(qa * qb, axis=-1)
        sgn = np.where(d < 0, -1.0, 1.0)
        d = np.minimum(np.abs(d), 1.0)
        c0 = np.einsum("mjc,mc->mj", inner, qa)
        c1 = np.einsum("mjc,mc->mj", inner, qb) * sgn[:, None]
        sin = np.sqrt(np.maximum(1.0 - d * d, 0.0))
        moving = sin > 1e-7
        e1 = (c1 - d[:, None] * c0) / np.where(moving, sin, 1.0)[:, None]
        return np.arctan2(e1, c0) / np.where(moving, np.arccos(d), 1.0)[:, None]
    return fn


def _loc_targets(v, vk, idx, ax):
    def fn(sel, n):
        va, vb = vk[sel, ax], vk[sel + 1, ax]
        inner = v[idx[sel][:, None] + np.arange(1, n), ax]
        delta = vb - va
        return (inner - va[:, None]) / np.where(np.abs(delta) > 1e-12, delta, 1.0)[:, None]
    return fn


def _played_bone(qk, vk, idx, curves, t_n, span):
    """What MMD plays, ``(q (T, 4), v (T, 3))``, from keys ``idx`` with values ``qk``, ``vk`` and ``curves (K, 4, 4)``
    (fitted ones, x at :data:`X_CONTROL`)."""
    left, w = _frame_weights(idx, curves[:, 3, [1, 3]].astype(np.float64), t_n, span)
    q = Q.slerp(qk[left], qk[np.minimum(left + 1, len(idx) - 1)], w)
    v = np.empty((t_n, 3))
    for ax in range(3):
        left, w = _frame_weights(idx, curves[:, ax, [1, 3]].astype(np.float64), t_n, span)
        v[:, ax] = vk[left, ax] + w * (vk[np.minimum(left + 1, len(idx) - 1), ax] - vk[left, ax])
    return q, v


def _refit_bone(q, v, idx, curves, has_rot, has_loc, span, rounds: int = 2, start=None):
    """Least-squares key values and curves for fixed keys ``idx``: alternately the values with the curves held
    (linear in them: :func:`_tridiagonal_ls`; rotations as normalised 4-vectors, MMD's slerp taken as a lerp for
    the solve) and the curves with the values held (as :func:`_segment_fits`). Returns ``(qk, vk, curves)``.
    ``start``: ``(qk, vk)`` to begin from (default the dense samples); ``rounds=0`` fits only the curves to them."""
    qk, vk = (q[idx], v[idx]) if start is None else start
    c = curves.copy()
    qk, vk = (np.array(qk, dtype=np.float64), np.array(vk, dtype=np.float64))
    k_n, t_n = len(idx), len(q)
    fitted = np.r_[False, np.diff(idx) > 1]
    if k_n < 3:
        return qk, vk, c
    for r in range(max(rounds, 1)):
        solve = rounds > 0
        if has_rot:
            if solve:
                left, w = _frame_weights(idx, c[:, 3, [1, 3]].astype(np.float64), t_n, span)
                qk = _tridiagonal_ls(left, w, q, k_n)
                qk /= np.linalg.norm(qk, axis=1, keepdims=True)
            y = _curve_y(idx, _rot_targets(q, qk, idx))
            c[fitted, 3, 1], c[fitted, 3, 3] = y[fitted, 0], y[fitted, 1]
            c[fitted, 3, 0], c[fitted, 3, 2] = X_CONTROL
        if has_loc:
            for ax in range(3):
                if solve:
                    left, w = _frame_weights(idx, c[:, ax, [1, 3]].astype(np.float64), t_n, span)
                    vk[:, ax] = _tridiagonal_ls(left, w, v[:, ax:ax + 1], k_n)[:, 0]
                y = _curve_y(idx, _loc_targets(v, vk, idx, ax))
                c[fitted, ax, 1], c[fitted, ax, 3] = y[fitted, 0], y[fitted, 1]
                c[fitted, ax, 0], c[fitted, ax, 2] = X_CONTROL
    return qk, vk, c


def _refit(motion: BoneMotion, names: list, keys: dict, curves: dict, rot_tol: dict, pos_tol: dict, span: int):
    """Least-squares key values (:func:`_refit_bone`) for the kept keys of ``names``, held to the same per-bone
    tolerance as the keys were chosen with: per bone the full refit, else halfway between it and the dense samples,
    else the dense samples with their own curves (which fit by construction). Returns ``(rotations, locations,
    curves)`` of the bones whose values moved."""
    t_n = motion.n_frames
    rots, locs, out_c = {}, {}, {}
    for name in names:
        idx = keys[name]
        if len(idx) < 3:
            continue
        q = Q.make_continuous(motion.rotations[name]) if name in motion.rotations else Q.identity(t_n)
        v = motion.locations[name] if name in motion.locations else np.zeros((t_n, 3))
        has_rot = name in motion.rotations and float(Q.angle_between(q, q[:1]).max()) > 1e-9
        has_loc = name in motion.locations and bool(np.any(v != v[:1]))
        qk, vk, c = _refit_bone(q, v, idx, curves[name], has_rot, has_loc, span)
        q0, v0 = q[idx], v[idx]
        for alpha in (1.0, 0.5):
            if alpha < 1.0:
                qk = Q.normalize(q0 + alpha * (qk - q0 * np.sign(np.sum(qk * q0, axis=1, keepdims=True))))
                vk = v0 + alpha * (vk - v0)
                qk, vk, c = _refit_bone(q, v, idx, curves[name], has_rot, has_loc, span, rounds=0, start=(qk, vk))
            pq, pv = _played_bone(qk, vk, idx, c, t_n, span)
            rt, pt = np.asarray(rot_tol[name]) * (1 + 1e-9), np.asarray(pos_tol[name]) * (1 + 1e-9)
            ok = (not has_rot or bool(np.all(Q.angle_between(pq, q) <= rt))) and \
                 (not has_loc or bool(np.all(np.linalg.norm(pv - v, axis=1) <= pt)))
            if ok:
                rots[name], locs[name], out_c[name] = qk, vk, c
                break
    return rots, locs, out_c


def _fit_again(motion: BoneMotion, red: Reduction, names: list, rot_tol: dict, pos_tol: dict, span: int,
               refit: bool) -> None:
    """Choose the keys of ``names`` again at their (tightened) tolerances, in place on ``red``."""
    keys, curves = _fit(motion, names, rot_tol, pos_tol, span)
    red.keys.update(keys)
    red.curves.update(curves)
    for n in names:
        red.key_rotations.pop(n, None)
        red.key_locations.pop(n, None)
    if refit:
        rots, locs, curves2 = _refit(motion, names, keys, curves, rot_tol, pos_tol, span)
        red.key_rotations.update(rots)
        red.key_locations.update(locs)
        red.curves.update(curves2)


def _leg_chains(rest, names: list) -> dict:
    """side -> (the keyed bones a leg's IK playback depends on: its IK bones, their links and the links' keyed
    ancestors; the bones it is measured on). Sides whose 足ＩＫ the motion does not key, or the model lacks as an IK
    chain, are left out."""
    chains = {c.bone for c in rest.ik_chains}
    keyed = set(names)
    out = {}
    for side in "左右":
        if side + "足ＩＫ" not in chains or side + "足ＩＫ" not in keyed or rest.index_of(side + "足") is None:
            continue
        bones = [side + b for b in ("足ＩＫ", "つま先ＩＫ", "足", "ひざ", "足首")]
        bones += [rest.names[a] for a in rest.ancestors(rest.find(side + "足"))]
        measure = [side + b for b in ("足", "ひざ", "足首", "つま先") if rest.index_of(side + b) is not None]
        out[side] = ([n for n in names if n in set(bones)], measure)
    return out


def ik_seed_links(rest, names: list) -> list:
    """The bones of ``names`` that MMD's leg IK overrides on every frame: the links (足, ひざ, 足首) of the 足ＩＫ /
    つま先ＩＫ chains of the legs that :func:`_leg_chains` checks (the motion keys the leg's 足ＩＫ). A つま先ＩＫ the
    motion does not key counts too: MMD plays the model's chain all the same, with the IK bone at rest under 足ＩＫ
    (docs/MMD_FACTS.md §2.5). Played with the IK on, their FK keys are only CCD's starting point: the joints they
    carry are put on the IK targets, so only the rotation cap holds their keys (their lever counts 0), and
    :func:`_hold_leg_ik` checks what CCD plays from them."""
    chains = _leg_chains(rest, names)
    keyed = set(names)
    out = []
    for c in rest.ik_chains:
        if c.bone[:1] in chains and c.bone[1:] in ("足ＩＫ", "つま先ＩＫ"):
            out += [n for n in c.links if n in keyed and n not in out]
    return out


def _played(red: Reduction, names: list, span: int) -> BoneMotion:
    """The dense motion with ``names`` as MMD plays their reduced keys (:func:`_played_bone`; the other bones keep
    their dense tracks): what the legs' IK check needs, without writing and sampling the whole VMD."""
    m = red.motion
    rot, loc = dict(m.rotations), dict(m.locations)
    for n in names:
        idx = red.keys[n]
        if len(idx) < 2:
            continue
        q = Q.make_continuous(m.rotations[n]) if n in m.rotations else Q.identity(m.n_frames)
        v = m.locations[n] if n in m.locations else np.zeros((m.n_frames, 3))
        pq, pv = _played_bone(red.key_rotations.get(n, q[idx]), red.key_locations.get(n, v[idx]), idx,
                              red.curves[n], m.n_frames, span)
        if n in m.rotations:
            rot[n] = pq
        if n in m.locations:
            loc[n] = pv
    return BoneMotion(frames=m.frames, rotations=rot, locations=loc, model_name=m.model_name)


def _pose_arrays(rest, motion: BoneMotion) -> tuple[np.ndarray, np.ndarray]:
    """``core.ik.motion_arrays`` with the keyed rotations normalised and checked here, so that ``core.ik.evaluate``
    can skip its own pass over every bone of the model (``_checked``)."""
    from . import ik

    q, t = ik.motion_arrays(rest, motion)
    cols = sorted({i for i in (rest.index_of(n) for n in motion.rotations) if i is not None})
    q[:, cols] = Q.normalize(q[:, cols])
    if not (np.isfinite(q).all() and np.isfinite(t).all()):
        raise ValueError("reduce_motion: the motion contains NaN or inf")
    return q, t


def _hold_leg_ik(motion: BoneMotion, red: Reduction, rest, rot_tol: dict, pos_tol: dict, pos0: float, span: int,
                 refit: bool, seed_tol: dict | None = None) -> None:
    """Keys where MMD's leg IK would not play the reduced legs as the dense ones (in place on ``red``).

    MMD solves 足ＩＫ / つま先ＩＫ every frame by CCD starting from the FK leg keys (docs/MMD_FACTS.md §2.5, ``core.ik``).
    The dense motion's IK keys sit on its FK legs, so CCD does not iterate; between reduced keys the FK seeds and the
    IK targets are each within the tolerance but no longer meet, and from such a near miss CCD can swing a nearly
    straight knee far off (on 3 minutes of CMU dance on mat4: 515 frames more than 4 mm off, the worst 9 cm). So the
    reduced legs are played with IK (``core.ik.evaluate``); on the frames where a leg joint ends farther from the
    dense motion than FK alone puts it, plus ``pos0``, that leg's keys are held there (a tolerance of 0, fitted
    again; a second round checks the new keys). ``red.ik_held`` counts the frames held.

    With ``seed_tol`` (bone -> rotation tolerance after FK, radians) the links (:func:`ik_seed_links`) were fitted to
    the rotation cap alone, as CCD's seeds. The check above is then made with the seeds exact (their dense values),
    and a second one measures the seeds' own share: on the frames where the legs played with IK end more than
    ``pos0`` farther off than with exact seeds, the seeds get their tolerance after FK back (``seed_tol``; 0 where
    they already had it) and are fitted again. A held frame then keeps only the leg's own keys exactly, its links
    and IK bones, and the IK bones' values there are set from where the reduced ancestors (センター, グルーブ, 下半身,
    each within its tolerance) and the exact links put the ankle and toe (``core.retarget.leg_ik_from_fk`` of the
    played motion): the targets meet the seeds again, so CCD does not iterate, and the leg moves with the reduced
    hips by their error, as every FK joint does. ``red.motion`` becomes the dense motion with those IK values. Without
    ``seed_tol`` (``strict_fk``, whose rounds may refit the ancestors afterwards) the ancestors are held exactly too
    and the targets stay the dense ones.
    """
    from . import ik

    chains = _leg_chains(rest, red.motion.bone_names)
    if not chains:
        return
    solvers = ik.ik_solvers(rest)
    off = {rest.names[c.bone]: False for c in solvers}
    measure = [n for _, m in chains.values() for n in m]
    iks = [s + b for s in chains for b in ("足ＩＫ", "つま先ＩＫ") if rest.index_of(s + b) is not None]
    targets = {s + "足ＩＫ": s + "足首" for s in chains}
    targets.update({s + "つま先ＩＫ": s + "つま先" for s in chains if rest.index_of(s + "つま先ＩＫ") is not None
                    and rest.index_of(s + "つま先") is not None})

    def play(q, t, bones=measure, **kw) -> np.ndarray:
        """World positions ``(T, N, 3)`` of ``bones`` (and what they need) played by ``core.ik.evaluate``."""
        return ik.evaluate(rest, q, t, solvers=solvers, bones=bones, _checked=True, _positions_only=True,
                           **kw).positions

    q, t = _pose_arrays(rest, motion)
    fk = play(q, t, measure + iks, ik_enabled=off)
    miss = max(float(np.linalg.norm(fk[:, rest.find(b)] - fk[:, rest.find(g)], axis=-1).max())
               for b, g in targets.items())
    # the dense motion as MMD plays it: its FK where every IK target starts on its bone (nothing iterates)
    ref = fk if miss < 0.9e-4 else play(q, t)
    t_n = motion.n_frames
    needed = list(dict.fromkeys(n for bones, _ in chains.values() for n in bones))
    seeds = set(seed_tol or ())

    def widen(bad: np.ndarray, rnd: int) -> np.ndarray:
        for k in range(1, _IK_WIDEN[rnd] + 1):        # the frames beside it too (wider in the second round)
            bad[k:] |= bad[:-k].copy()
            bad[:-k] |= bad[k:].copy()
        return bad

    def set_where(tol: dict, n: str, bad: np.ndarray, to) -> None:
        tol[n] = np.where(bad, to, _frame_tol(tol, n, t_n))

    sides = [(bones, [rest.find(n) for n in meas]) for bones, meas in chains.values()]

    def errors(pos: np.ndarray, frames=slice(None)) -> list:
        return [np.linalg.norm(pos[:, cols] - ref[frames][:, cols], axis=-1).max(axis=1) for _, cols in sides]

    # With seeds, a misplayed frame keeps only the leg's own keys exactly (its seeds and IK bones), and the IK
    # bones' values there are set from where the reduced ancestors and the exact seeds put the leg (retarget_ik): the
    # targets meet the seeds again, so nothing iterates, and センター / グルーブ / 下半身 keep their tolerance. Without
    # seeds (strict_fk) the ancestors are held exactly too, as the targets are then the dense ones.
    held = {side: np.zeros(t_n, dtype=bool) for side in chains} if seeds else {}
    work = motion

    def retarget_ik(names: list) -> None:
        """Set the IK bones of ``names`` on their legs' held frames from the reduced FK legs, and fit them again."""
        nonlocal work
        from .retarget import leg_ik_from_fk

        at = np.flatnonzero(np.any([held[n[:1]] for n in names], axis=0))     # only the held frames are needed
        played = _played(red, [n for n in needed if n not in iks], span)
        fk_legs = leg_ik_from_fk(BoneMotion(frames=played.frames[at],
                                            rotations={n: v[at] for n, v in played.rotations.items()},
                                            locations={n: v[at] for n, v in played.locations.items()}), rest)
        rot, loc = dict(work.rotations), dict(work.locations)
        for n in names:
            h = held[n[:1]][at]
            if n in rot and n in fk_legs.rotations:
                q_fk, q_d = fk_legs.rotations[n], motion.rotations[n][at]
                q_fk = q_fk * np.where(np.sum(q_fk * q_d, axis=-1, keepdims=True) < 0, -1.0, 1.0)  # the dense's signs
                rot[n] = motion.rotations[n].copy()
                rot[n][at] = np.where(h[:, None], q_fk, q_d)
            if n in loc and n in fk_legs.locations:
                loc[n] = motion.locations[n].copy()
                loc[n][at] = np.where(h[:, None], fk_legs.locations[n], motion.locations[n][at])
        work = BoneMotion(frames=motion.frames, rotations=rot, locations=loc, model_name=motion.model_name,
                          meta=motion.meta, morphs=getattr(motion, "morphs", {}))
        red.motion = work
        _fit_again(work, red, names, rot_tol, pos_tol, span, refit)

    # with exact seeds the legs depend only on the other bones: their errors stay valid while only seeds are refitted
    cache_e = cache_f = None
    for rnd in range(_IK_ROUNDS):
        qs, ts = _pose_arrays(rest, _played(red, needed, span))
        e_ik = errors(play(qs, ts))
        # only where a leg is shown more than pos0 off can either check below find anything: the rest is not played
        # again (CCD solves each frame on its own)
        sel = np.flatnonzero(np.any([e > pos0 for e in e_ik], axis=0))
        if sel.size == 0:
            return
        if seeds:   # the seeds exact: what the reduced ancestors and IK bones leave of the legs' error
            if cache_e is None:
                cache_e, cache_f = np.full((2, len(sides), t_n), np.nan)
            new = sel[np.isnan(cache_e[0, sel])]
            if new.size:
                qs, ts = _pose_arrays(rest, _played(red, [n for n in needed if n not in seeds], span))
                cache_e[:, new] = errors(play(qs[new], ts[new]), new)
                cache_f[:, new] = errors(play(qs[new], ts[new], ik_enabled=off), new)
            e_sel, f_sel = cache_e[:, sel], cache_f[:, sel]
        else:
            e_sel = [e[sel] for e in e_ik]
            f_sel = errors(play(qs[sel], ts[sel], ik_enabled=off), sel)
        todo, grew = [], set()
        for side, (bones, _), ei, es, fs in zip(chains, sides, e_ik, e_sel, f_sel):
            e_exact, e_fk = ei.copy(), np.zeros(t_n)     # elsewhere: shown within pos0, nothing to find
            e_exact[sel], e_fk[sel] = es, fs
            # a near miss that CCD swings: hold the whole leg on those frames
            bad = e_exact > np.maximum(e_fk, pos0) + pos0
            if bad.any():
                bad = widen(bad, rnd)
                red.ik_held += int(bad.sum())
                own = [n for n in bones if n in seeds or n in iks] if seeds else bones
                if seeds:
                    held[side] |= bad
                    grew.add(side)
                for n in own:
                    set_where(rot_tol, n, bad, 0.0)
                    set_where(pos_tol, n, bad, 0.0)
                todo += [n for n in own if n not in todo]
            # the seeds' own share more than pos0: back to their tolerance after FK there (0 if it already was)
            loose = ei > e_exact + pos0 if seeds else np.zeros(t_n, dtype=bool)
            if loose.any():
                loose = widen(loose, rnd)
                for n in (b for b in bones if b in seeds):
                    cur = _frame_tol(rot_tol, n, t_n)
                    set_where(rot_tol, n, loose, np.where(cur > seed_tol[n] * (1 + 1e-9), seed_tol[n], 0.0))
                    todo += [n] if n not in todo else []
        if not todo:
            return
        if set(todo) - seeds:
            cache_e = cache_f = None
        if not grew:
            _fit_again(work, red, todo, rot_tol, pos_tol, span, refit)
            continue
        # new held frames: the links first, then the IK bones of those legs, whose values there follow the reduced
        # FK legs (on the frames held before, ancestors and exact links are as they were)
        links = [n for n in todo if n not in iks]
        if links:
            _fit_again(work, red, links, rot_tol, pos_tol, span, refit)
        retarget_ik([n for n in needed if n in iks and n[:1] in grew])


def fk_errors(rest, a: BoneMotion, b: BoneMotion) -> tuple[np.ndarray, np.ndarray]:
    """Per frame and bone of the model, how far posing ``b`` is from posing ``a`` (``RestSkeleton.fk``).

    Returns:
        ``(rotation (T, N) radians, position (T, N) MMD units)``: the angle between the world rotations and the
        distance between the world positions. Bones the model lacks are ignored.
    """
    def pose(m):
        rot = {n: v for n, v in m.rotations.items() if n in rest}
        loc = {n: v for n, v in m.locations.items() if n in rest}
        return rest.fk(rot, loc, n_frames=m.n_frames)

    pa, ra = pose(a)
    pb, rb = pose(b)
    return Q.angle_between(ra, rb), np.linalg.norm(pa - pb, axis=-1)


def reduce_motion(motion: BoneMotion, rest=None, *, rot_tol_deg: float = DEFAULT_ROT_TOL_DEG,
                  pos_tol_mm: float = DEFAULT_POS_TOL_MM, max_span: int = DEFAULT_MAX_SPAN,
                  strict_fk: bool = False, morph_tol: float | None = None, refit: bool = True,
                  hold_ik: bool = True) -> Reduction:
    """Fewest keys with MMD Bézier curves that reproduce ``motion`` within the tolerance (module docstring).

    Args:
        motion: dense :class:`BoneMotion` (every bone on every frame). Its frames must be evenly spaced (the
            motion stage's are); otherwise every key is kept.
        rest: the target model (:class:`core.rest_skeleton.RestSkeleton`), optional: its levers convert the
            tolerance (module docstring; default ``RestSkeleton.standard()``); with ``strict_fk`` the errors after
            FK are measured (:attr:`Reduction.fk_error`) and enforced.
        rot_tol_deg: the most a bone's own rotation may be off, degrees (>= 0; 0 keeps every key).
        pos_tol_mm: the most one bone's keys may move a joint of the model after FK, millimetres (1 MMD unit =
            80 mm; a translation's own error counts one for one).
        max_span: longest segment, in frames of ``motion`` (>= 1).
        strict_fk: hold the tolerance for the world rotation and position of every bone of ``rest`` after FK (the
            errors of a chain add up), by halving the tolerances of the bones involved (module docstring). Without
            it, each bone's own keys stay within the tolerance: the error they add to the posed model at that bone.
        morph_tol: morph weight tolerance (default :data:`DEFAULT_MORPH_TOL`); morphs (``motion.morphs``) are
            linear between keys in MMD, so their keys are chosen the same way with straight segments.
        hold_ik: with ``rest``, play the reduced legs with MMD's IK (``core.ik``) and keep exactly the leg keys of
            the frames where CCD, starting from the reduced FK keys, would put a leg joint farther off than FK
            does, plus ``pos_tol_mm`` (:func:`_hold_leg_ik`; default on: what MMD shows is played with IK).

    Returns:
        :class:`Reduction` (``to_vmd()`` for the file).

    Raises:
        ValueError: a negative or non-finite tolerance, ``max_span`` < 1, ``strict_fk`` without ``rest``.
    """
    if rot_tol_deg < 0 or pos_tol_mm < 0 or not np.isfinite(rot_tol_deg + pos_tol_mm):
        raise ValueError(f"reduce_motion: tolerances must be finite and >= 0, got {rot_tol_deg}°, {pos_tol_mm} mm")
    if int(max_span) < 1:
        raise ValueError(f"reduce_motion: max_span must be >= 1, got {max_span}")
    if strict_fk and rest is None:
        raise ValueError("reduce_motion: strict_fk needs the model (rest)")
    names = motion.bone_names
    rot0 = np.radians(rot_tol_deg)
    pos0 = pos_tol_mm / 1000.0 * conventions.UNITS_PER_METRE
    arms = {}
    if names:
        from .rest_skeleton import RestSkeleton

        try:
            arms = levers(motion, rest if rest is not None else RestSkeleton.standard())
        except ValueError:                       # a model without the joints' bones: only the rotation cap holds
            arms = {}
    # played with the leg IK, the leg links' FK keys are CCD's seeds (ik_seed_links): the rotation cap holds them
    seeds = set(ik_seed_links(rest, names)) if hold_ik and not strict_fk and rest is not None and names else set()
    rot_tol = {n: min(rot0, pos0 / arms[n]) if arms.get(n, 0.0) > 0.0 else rot0 for n in names}
    seed_tol = {n: rot_tol[n] for n in seeds}
    rot_tol.update({n: rot0 for n in seeds})
    pos_tol = {n: pos0 for n in names}
    f = motion.frames
    even = len(f) < 3 or bool(np.all(np.diff(f) == f[1] - f[0]))
    span = int(max_span) if even else 1
    keys, curves = _fit(motion, names, rot_tol, pos_tol, span) if names else ({}, {})
    red = Reduction(motion=motion, keys=keys, curves=curves, rot_tol=rot_tol, pos_tol=pos_tol, levers=arms)
    if refit and names:
        r2, l2, c2 = _refit(motion, names, keys, curves, rot_tol, pos_tol, span)
        red.key_rotations.update(r2)
        red.key_locations.update(l2)
        red.curves.update(c2)
    morphs = getattr(motion, "morphs", {})
    if morphs:
        mnames = list(morphs)
        idx = _morph_keys(np.stack([np.asarray(morphs[n], dtype=np.float64) for n in mnames]),
                          DEFAULT_MORPH_TOL if morph_tol is None else float(morph_tol), span)
        red.morph_keys = dict(zip(mnames, idx))
    if hold_ik and rest is not None and names:
        _hold_leg_ik(motion, red, rest, rot_tol, pos_tol, pos0, span, refit, seed_tol=seed_tol)
    if not strict_fk or not names:
        return red
    keyed = [rest.index_of(n) for n in names]
    owner = {i: n for i, n in zip(keyed, names) if i is not None}
    for rnd in range(_MAX_ROUNDS + 1):
        er, ep = fk_errors(rest, motion, red.sampled())
        red.fk_error = {"rotation_deg": float(np.degrees(er.max(initial=0.0))),
                        "position_mm": float(ep.max(initial=0.0) * conventions.METRES_PER_UNIT * 1000.0)}
        bad = (er > rot0 * (1 + 1e-9)) | (ep > pos0 * (1 + 1e-9))
        if not strict_fk or not bad.any() or rnd == _MAX_ROUNDS or span == 1:
            break
        culprits = set()
        for i in np.flatnonzero(bad.any(axis=0)):
            for j in [int(i)] + list(rest.ancestors(int(i))):
                if j in owner:
                    culprits.add(owner[j])
        todo = [n for n in names if n in culprits]
        if not todo:
            break
        last = rnd == _MAX_ROUNDS - 1
        for n in todo:
            rot_tol[n] = 0.0 if last else rot_tol[n] * 0.5
            pos_tol[n] = 0.0 if last else pos_tol[n] * 0.5
        _fit_again(motion, red, todo, rot_tol, pos_tol, span, refit)
        red.rounds += 1
    return red
