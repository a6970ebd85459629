"""Foot contact per heel and toe, from height, 3D and 2D speed and (optionally) a lifter's probabilities (numpy only).

A foot point is in contact when it is near the floor and not moving. Each cue gives a score in [0, 1] that falls
linearly from 1 at its "on" value to 0 at its "off" value; the speed cues (3D, 2D) are averaged with weights (cues
that are missing drop out) into a "still" score, and the contact score is the geometric mean of the height score
and the still score (both must agree); a lifter's contact probability is averaged in with equal weight. A confident
lifter contact on a foot point that stays still in the image is a contact whatever the 3D says: the score is at least
the geometric mean of a ramp on the probability and one on the 2D speed (``ContactParams.learned_2d``). The 3D cues
fail where the estimated body travels: its stance foot is carried along with the body (the lifter damps the legs'
sweep; 1.2-1.8 m/s in the stance of the closed-loop run) and its floor drifts in height (0.5 m along that run), while
the lifter's probability (0.77 in true contact, 0.15 out, there) and the foot's 2D track (still, with a still or
compensated camera) hold. The result goes through a hysteresis (separate on/off thresholds, then minimum durations:
contacts shorter than ``min_on_s`` are dropped, releases shorter than ``min_off_s`` are bridged), so contact does not
flicker.

The cues miss contacts where the estimated foot drifts while the true one stands (the lifter's error, not the
dancer's): :func:`support_contacts` then adds the supporting foot -- a dancer who is not in the air stands on
something, and that is her lower, slower foot.

The four points and their order, :data:`CONTACT_POINTS`: the subject's left heel, left toe, right heel, right toe
(``CANONICAL`` LHeel, LFootIndex, RHeel, RFootIndex; the ankle stands in where a set lacks heel or toe). The
per-frame contact array is stored in the pose npz as :data:`NPZ_KEY`, ``(T, 4)`` bool. Frames: ``core.conventions``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .skeletons import CANONICAL

__all__ = ["CONTACT_POINTS", "NPZ_KEY", "ContactParams", "foot_points", "point_speed", "body_size_2d",
           "contact_scores", "hysteresis", "detect_contacts", "support_contacts", "SUPPORT_MAX_HEIGHT",
           "SUPPORT_MAX_SPEED", "SUPPORT_MAX_WANDER", "SUPPORT_MIN_KNEE", "SUPPORT_MIN_HIP", "flat_feet",
           "FLAT_MAX_HEIGHT"]

#: Order of the last axis of every contact array (the subject's left/right).
CONTACT_POINTS: tuple[str, ...] = ("LHeel", "LToe", "RHeel", "RToe")

#: Key of the ``(T, 4)`` bool contact array in the pose npz (order :data:`CONTACT_POINTS`).
NPZ_KEY = "foot_contacts"

_SRC = (("LHeel", "LFoot"), ("LFootIndex", "LFoot"), ("RHeel", "RFoot"), ("RFootIndex", "RFoot"))


@dataclass(frozen=True)
class ContactParams:
    """Thresholds of :func:`contact_scores` and :func:`hysteresis`.

    Heights are of the heel / toe landmarks above the floor (metres; landmarks sit a few cm above the sole), 3D
    speeds in m/s, 2D speeds in body heights per second (so they do not depend on the image size or zoom). The
    speeds were set on real dance mocap (CMU subject 5) seen through estimate-like noise (tests/core/mocap_poses.py):
    a foot sliding along the floor at 0.3 m/s (a glissade) is not planted. ``speed_window``: the speeds are slopes
    over ``2 * speed_window + 1`` frames (:func:`point_speed`), so a detector's jitter does not read as motion.
    ``learned_2d``: the floor under the score where a lifter's probability and the 2D speed agree (module
    docstring): 0 at probability ``learned_prob_on``, 1 from ``learned_prob_full``, times 1 up to
    ``learned_speed2d_full`` body heights/s and 0 from ``learned_speed2d_off``, square-rooted (set on the closed-loop
    walks and run, where it raised the share of the true contact frames pinned from 10% to 66% on the run, 50% to 80%
    on a walk, 73% to 86% on a walk-turn; docs/benchmark.md).
    """

    height_on: float = 0.04
    height_off: float = 0.12
    speed_on: float = 0.12
    speed_off: float = 0.4
    speed2d_on: float = 0.08
    speed2d_off: float = 0.3
    w_speed: float = 0.5
    w_speed2d: float = 0.5
    on: float = 0.6
    off: float = 0.4
    min_on_s: float = 0.1
    min_off_s: float = 0.1
    speed_window: int = 2
    learned_2d: bool = True
    learned_prob_on: float = 0.6
    learned_prob_full: float = 0.8
    learned_speed2d_full: float = 0.3
    learned_speed2d_off: float = 0.6


def foot_points(points) -> np.ndarray:
    """The four contact points of a ``CANONICAL`` pose: ``(T, 27, D)`` -> ``(T, 4, D)`` (order :data:`CONTACT_POINTS`).

    Where a heel or toe is NaN (a set without them, e.g. COCO or H36M input) the ankle stands in.
    """
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 3 or p.shape[1] != len(CANONICAL):
        raise ValueError(f"foot_points expects (T, {len(CANONICAL)}, D), got {p.shape}")
    out = np.empty((p.shape[0], 4, p.shape[2]))
    for k, (name, fallback) in enumerate(_SRC):
        a = p[:, CANONICAL.index(name)]
        b = p[:, CANONICAL.index(fallback)]
        out[:, k] = np.where(np.isfinite(a).all(axis=-1, keepdims=True), a, b)
    return out


def point_speed(x, t, half_window: int = 0) -> np.ndarray:
    """Speed of points over time: ``x (T, K, C)``, ``t (T,)`` s -> ``(T, K)`` units/s.

    ``half_window`` 0: central differences. ``h > 0``: the slope of a least-squares line through the ``2h + 1``
    samples around each frame (edges padded with the end value), which averages out a detector's frame-to-frame
    jitter: with ``h = 2`` white noise of sigma ``s`` px gives a speed noise of ``s * fps / sqrt(10)`` instead of
    ``s * fps / sqrt(2)``.
    """
    x = np.asarray(x, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    if x.ndim != 3 or t.shape != (x.shape[0],):
        raise ValueError(f"point_speed: expected x (T, K, C) and t (T,), got {x.shape}, {t.shape}")
    T = x.shape[0]
    if T < 2:
        return np.zeros(x.shape[:2])
    h = int(half_window)
    if h <= 0:
        return np.linalg.norm(np.gradient(x, t, axis=0), axis=-1)
    xp = np.pad(x, ((h, h), (0, 0), (0, 0)), mode="edge")
    tp = np.pad(t, (h, h), mode="reflect", reflect_type="odd")     # time keeps running past the ends
    num = np.zeros_like(x)
    den = np.zeros(T)
    for k in range(-h, h + 1):
        if k:
            dtk = tp[h + k:h + k + T] - t
            num += dtk[:, None, None] * (xp[h + k:h + k + T] - x)
            den += dtk * dtk
    return np.linalg.norm(num / den[:, None, None], axis=-1)


def body_size_2d(keypoints) -> np.ndarray:
    """Per-frame body height in px from ``CANONICAL`` 2D keypoints ``(T, 27, 2+)``: head top to the mid-ankle span
    estimated as the sum of the neck-hip, hip-knee and knee-ankle segments (robust to bending). ``(T,)``."""
    k = np.asarray(keypoints, dtype=np.float64)[..., :2]
    c = {n: i for i, n in enumerate(CANONICAL)}
    seg = lambda a, b: np.linalg.norm(k[:, c[a]] - k[:, c[b]], axis=-1)  # noqa: E731
    legs = 0.5 * (seg("LHip", "LKnee") + seg("LKnee", "LFoot") + seg("RHip", "RKnee") + seg("RKnee", "RFoot"))
    return seg("Head", "Thorax") + seg("Thorax", "Hip") + legs


def _ramp(v, on, off):
    return np.clip((off - v) / (off - on), 0.0, 1.0)


def contact_scores(heights, speed3d=None, speed2d=None, probs=None, params: ContactParams = ContactParams()):
    """Per-point contact score in [0, 1] from the cues given (see the module docstring).

    Args:
        heights: ``(T, 4)`` metres above the floor (NaN = unknown).
        speed3d: ``(T, 4)`` m/s or None.  speed2d: ``(T, 4)`` body heights / s or None.
        probs: ``(T, 4)`` lifter contact probabilities in [0, 1] or None.
    Returns:
        ``(T, 4)`` float64; 0 where no cue is known.
    """
    h = np.asarray(heights, dtype=np.float64)
    if h.ndim != 2 or h.shape[1] != 4:
        raise ValueError(f"contact_scores: heights must be (T, 4), got {h.shape}")
    num = np.zeros_like(h)
    den = np.zeros_like(h)
    for val, on, off, w in ((speed3d, params.speed_on, params.speed_off, params.w_speed),
                            (speed2d, params.speed2d_on, params.speed2d_off, params.w_speed2d)):
        if val is None:
            continue
        v = np.asarray(val, dtype=np.float64)
        if v.shape != h.shape:
            raise ValueError(f"contact_scores: cue shape {v.shape} differs from heights {h.shape}")
        ok = np.isfinite(v)
        num += np.where(ok, w * _ramp(np.nan_to_num(v), on, off), 0.0)
        den += np.where(ok, w, 0.0)
    still = np.where(den > 0, num / np.maximum(den, 1e-12), np.nan)
    near = np.where(np.isfinite(h), _ramp(np.nan_to_num(h), params.height_on, params.height_off), np.nan)
    # near AND still: the geometric mean, so a foot held still in the air (a ballet retiré) is not a contact
    score = np.where(np.isfinite(near) & np.isfinite(still), np.sqrt(np.nan_to_num(near) * np.nan_to_num(still)),
                     np.where(np.isfinite(near), near, np.nan_to_num(still)))
    den = np.isfinite(near) | np.isfinite(still)
    if probs is not None:
        p = np.asarray(probs, dtype=np.float64)
        if p.shape != h.shape:
            raise ValueError(f"contact_scores: probs must be {h.shape}, got {p.shape}")
        ok = np.isfinite(p)
        score = np.where(ok & (den > 0), 0.5 * score + 0.5 * np.clip(np.nan_to_num(p), 0, 1),
                         np.where(ok, np.clip(np.nan_to_num(p), 0, 1), score))
        if params.learned_2d and speed2d is not None:
            # a confident lifter contact on a foot still in the image (see the module docstring)
            v2 = np.asarray(speed2d, dtype=np.float64)
            sure = _ramp(np.nan_to_num(p), params.learned_prob_full, params.learned_prob_on)   # rising with p
            still2d = np.where(np.isfinite(v2), _ramp(np.nan_to_num(v2), params.learned_speed2d_full,
                                                      params.learned_speed2d_off), 0.0)
            score = np.maximum(score, np.where(ok, np.sqrt(sure * still2d), 0.0))
    return score


def _runs(mask: np.ndarray):
    d = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1)


def hysteresis(score, t, *, on: float = 0.6, off: float = 0.4, min_on_s: float = 0.1,
               min_off_s: float = 0.1) -> np.ndarray:
    """Binary contact from scores: switch on above ``on``, off below ``off``; then bridge releases shorter than
    ``min_off_s`` and drop contacts shorter than ``min_on_s`` (seconds, measured on the timestamps).

    Args:
        score: ``(T, K)`` in [0, 1].  t: ``(T,)`` seconds.
    Returns:
        ``(T, K)`` bool.
    """
    s = np.asarray(score, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    if s.ndim != 2 or t.shape != (s.shape[0],):
        raise ValueError(f"hysteresis: expected score (T, K) and t (T,), got {s.shape}, {t.shape}")
    if not off <= on:
        raise ValueError(f"hysteresis: off ({off}) must not exceed on ({on})")
    T, K = s.shape
    out = np.zeros((T, K), dtype=bool)
    dt = float(np.median(np.diff(t))) if T > 1 else 1.0
    for k in range(K):
        state = False
        for i in range(T):
            state = s[i, k] >= on if not state else s[i, k] > off
            out[i, k] = state
        col = out[:, k]
        a, b = _runs(~col)
        for x, y in zip(a, b):                    # short releases between contacts
            if x > 0 and y < T and (t[y - 1] - t[x] + dt) < min_off_s:
                col[x:y] = True
        a, b = _runs(col)
        for x, y in zip(a, b):                    # short contacts
            if (t[y - 1] - t[x] + dt) < min_on_s:
                col[x:y] = False
    return out


def detect_contacts(points, t, heights, *, points_2d=None, body_px=None, probs=None,
                    params: ContactParams = ContactParams()) -> tuple[np.ndarray, np.ndarray]:
    """Contact of the four foot points (order :data:`CONTACT_POINTS`).

    Args:
        points: ``(T, 4, 3)`` foot points in a world frame (metres; e.g. camera frame with the root trajectory,
            :func:`foot_points` of absolute joints).
        t: ``(T,)`` seconds.
        heights: ``(T, 4)`` metres above the floor (``core.floor.FloorPlane.height``).
        points_2d: ``(T, 4, 2)`` px or None.  body_px: ``(T,)`` body height in px (:func:`body_size_2d`), needed
            with ``points_2d``.
        probs: ``(T, 4)`` lifter probabilities or None.
    Returns:
        ``(contacts (T, 4) bool, scores (T, 4) float64)``.
    """
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 3 or p.shape[1:] != (4, 3):
        raise ValueError(f"detect_contacts: points must be (T, 4, 3), got {p.shape}")
    t = np.asarray(t, dtype=np.float64)
    v3 = point_speed(p, t, params.speed_window)
    v2 = None
    if points_2d is not None:
        if body_px is None:
            raise ValueError("detect_contacts: points_2d needs body_px (core.contact.body_size_2d)")
        b = np.asarray(body_px, dtype=np.float64)
        size = np.nanmedian(b[np.isfinite(b) & (b > 0)]) if np.any(np.isfinite(b) & (b > 0)) else np.nan
        b = np.where(np.isfinite(b) & (b > 0.3 * size), b, size)
        v2 = point_speed(np.asarray(points_2d, dtype=np.float64)[..., :2], t, params.speed_window) / b[:, None]
    score = contact_scores(heights, v3, v2, probs, params)
    return hysteresis(score, t, on=params.on, off=params.off, min_on_s=params.min_on_s,
                      min_off_s=params.min_off_s), score


#: :func:`support_contacts`: the lowest foot point must be within this of the floor (metres); the floor stage has
#: already settled a lower foot that hovers just above the floor (``core.floor.ground``), so most are much lower.
SUPPORT_MAX_HEIGHT = 0.06
#: :func:`support_contacts`: nor faster than this (m/s): a gliding or swinging foot is not planted (the lifter lets a
#: planted foot drift at 0.3-0.6 m/s on the closed-loop renders; a swing foot moves at 2-4).
SUPPORT_MAX_SPEED = 1.0
#: :func:`support_contacts`: no foot is the support where a knee is lower than this (m, a kneel) or the hip lower
#: than :data:`SUPPORT_MIN_HIP` (sitting): the body rests on its knees or seat.
SUPPORT_MIN_KNEE = 0.12
SUPPORT_MIN_HIP = 0.3
#: :func:`support_contacts`: a pin the estimated point wanders farther from (metres, along the floor) is a step,
#: not a support; the lifter's drift of a truly planted foot on the closed-loop renders stays within 0.17 m.
SUPPORT_MAX_WANDER = 0.2


def support_contacts(points, t, heights, contacts, *, body_heights=None, shots=None,
                     max_height: float = SUPPORT_MAX_HEIGHT, max_speed: float = SUPPORT_MAX_SPEED,
                     max_wander: float = SUPPORT_MAX_WANDER, min_on_s: float = 0.1, min_off_s: float = 0.1,
                     speed_window: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Add the supporting foot on frames where no contact was detected but the dancer is not in the air.

    On such a frame the lowest of the four foot points is taken as in contact when it is within ``max_height`` of
    the floor, slower than ``max_speed``, and its foot is the slower one (the slowest point of each foot compared):
    a body on the ground rests on its lower, slower foot, and the swing foot is the faster. A jump (every point
    higher), a glide (the low foot fast) and a kneel or a seat (``body_heights``) add nothing. Per foot, the frames
    so found go through the same minimum durations as :func:`hysteresis` (runs shorter than ``min_on_s`` dropped,
    gaps shorter than ``min_off_s`` bridged, seconds; per shot), and each run adds one point (the lock pins it and
    lets the foot turn about it, as on a pivot): the point of that foot's detected contact just before or after the
    run where only its heel or only its toe is down there, else the one of heel and toe that is the lower on most
    of the run's frames. A run is dropped where the pin it makes (with the detected contacts of that point it
    joins) would hold a point that the estimate moves more than ``max_wander`` from the pin's median along the
    floor: a missed step or a travelling turn, not a support.

    Args:
        points: ``(T, 4, 3)`` foot points in a world frame, metres (:func:`foot_points` of the grounded joints).
        t: ``(T,)`` seconds.
        heights: ``(T, 4)`` metres above the floor (NaN = unknown).
        contacts: ``(T, 4)`` bool, the detected contacts (order :data:`CONTACT_POINTS`).
        body_heights: ``(T, 3)`` metres above the floor of the left knee, right knee and hip (``CANONICAL`` LKnee,
            RKnee, Hip), or None: where a knee is below :data:`SUPPORT_MIN_KNEE` or the hip below
            :data:`SUPPORT_MIN_HIP` the dancer kneels or sits, and nothing is added.
        shots: ``[(start, stop), ...]`` frame ranges (stop exclusive; default one shot): speeds are not taken
            across a cut.
    Returns:
        ``(contacts | added, added)``, both ``(T, 4)`` bool.
    Raises:
        ValueError: mismatched shapes.
    """
    p = np.asarray(points, dtype=np.float64)
    h = np.asarray(heights, dtype=np.float64)
    c = np.asarray(contacts, dtype=bool)
    t = np.asarray(t, dtype=np.float64)
    T = c.shape[0] if c.ndim == 2 else -1
    if body_heights is not None and np.shape(body_heights) != (T, 3):
        raise ValueError(f"support_contacts: body_heights must be (T, 3), got {np.shape(body_heights)}")
    if p.shape != (T, 4, 3) or h.shape != (T, 4) or c.shape != (T, 4) or t.shape != (T,):
        raise ValueError(f"support_contacts: expected points (T, 4, 3), heights and contacts (T, 4), t (T,); got "
                         f"{p.shape}, {h.shape}, {c.shape}, {t.shape}")
    added = np.zeros((T, 4), dtype=bool)
    ranges = [(0, T)] if shots is None or len(shots) == 0 else [(int(a), int(b)) for a, b in shots]
    for a, b in ranges:
        if b - a < 2:
            continue
        v = point_speed(p[a:b], t[a:b], speed_window)
        hh = np.where(np.isfinite(h[a:b]), h[a:b], np.inf)
        n = np.arange(b - a)
        k = np.argmin(hh, axis=1)
        foot = k // 2
        v_safe = np.where(np.isfinite(v), v, np.inf)
        slowest = np.stack([v_safe[:, :2].min(axis=1), v_safe[:, 2:].min(axis=1)], axis=1)
        ok = (~c[a:b].any(axis=1) & (hh[n, k] < max_height) & (v_safe[n, k] < max_speed)
              & (slowest[n, foot] <= slowest[n, 1 - foot]))
        if body_heights is not None:
            bh = np.asarray(body_heights, dtype=np.float64)[a:b]
            ok &= ~((np.nan_to_num(bh[:, :2], nan=np.inf).min(axis=1) < SUPPORT_MIN_KNEE)
                    | (np.nan_to_num(bh[:, 2], nan=np.inf) < SUPPORT_MIN_HIP))
        feet = np.zeros((b - a, 2))
        feet[n[ok], foot[ok]] = 1.0
        feet = hysteresis(feet, t[a:b], on=0.5, off=0.5, min_on_s=min_on_s, min_off_s=min_off_s)
        cs = c[a:b]
        for s in range(2):
            # one point per run (heel and toe take turns as the lower one in the noise, and a pin that hopped
            # between them would make the foot hop): the point of the foot's own contact just before or after the
            # run, where only one of heel and toe is down there (a pivot on the toe stays on the toe); else the
            # point that is the lower on most of the run's frames
            toe_lower = hh[:, 2 * s + 1] < hh[:, 2 * s]
            for x, y in zip(*_runs(feet[:, s])):
                near = [cs[f, 2 * s:2 * s + 2] for f in (x - 1, y)
                        if 0 <= f < b - a and cs[f, 2 * s:2 * s + 2].sum() == 1]
                toe = bool(near[0][1]) if near else bool(toe_lower[x:y].mean() > 0.5)
                added[a + x:a + y, 2 * s + int(toe)] = True
        added[a:b] &= ~c[a:b]
        # a run that makes one pin of a point the estimate moves farther than max_wander is a step the cues
        # missed, or a travelling turn (chaînés): not a support
        for k in range(4):
            held = c[a:b, k] | added[a:b, k]
            for x, y in zip(*_runs(held)):
                if added[a + x:a + y, k].any():
                    xz = p[a + x:a + y, k][:, [0, 2]]
                    xz = xz[np.isfinite(xz).all(axis=1)]
                    if len(xz) and np.linalg.norm(xz - np.median(xz, axis=0), axis=1).max() > max_wander:
                        added[a + x:a + y, k] = False
    return c | added, added


#: :func:`flat_feet`: the other point of a planted foot is down too where it is at most this high above the floor
#: (metres): a foot that flat is standing on its whole sole, not rolling over its heel or toe. Set on the closed-loop
#: renders (docs/benchmark.md, fourteenth session): 2 cm adds too little, 5-8 cm pins the heel of a walk's toe-off.
FLAT_MAX_HEIGHT = 0.03


def flat_feet(contacts, heights, t, *, max_height: float = FLAT_MAX_HEIGHT, min_on_s: float = 0.1,
              shots=None) -> tuple[np.ndarray, np.ndarray]:
    """Put the whole foot down where one of its points is in contact and the other lies flat on the floor.

    A contact of the heel alone or the toe alone lets the foot turn about that point (``core.foot_lock``: the
    point is pinned, the foot keeps its estimated rotation), which is right for a heel strike, a toe-off or a
    relevé -- the other point is then raised -- but where the other point is within ``max_height`` of the floor
    the foot stands on its whole sole, and its estimated turning is the lifter's noise: the free point would swing
    about the pinned one. There both points are in contact (the lock then holds the foot's heading too). Added
    runs shorter than ``min_on_s`` are dropped (per shot).

    Args:
        contacts: ``(T, 4)`` bool (order :data:`CONTACT_POINTS`).
        heights: ``(T, 4)`` metres above the floor (NaN = unknown: never added).
        t: ``(T,)`` seconds.
        shots: ``[(start, stop), ...]`` or None (one shot).
    Returns:
        ``(contacts | added, added)``, both ``(T, 4)`` bool.
    Raises:
        ValueError: mismatched shapes.
    """
    c = np.asarray(contacts, dtype=bool)
    h = np.asarray(heights, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] != 4 or h.shape != c.shape or t.shape != (c.shape[0],):
        raise ValueError(f"flat_feet: expected contacts and heights (T, 4), t (T,); got {c.shape}, {h.shape}, "
                         f"{t.shape}")
    low = np.isfinite(h) & (h <= max_height)
    added = ~c & c[:, [1, 0, 3, 2]] & low          # the other point of the same foot (heel <-> toe) is planted
    T = c.shape[0]
    ranges = [(0, T)] if shots is None or len(shots) == 0 else [(int(a), int(b)) for a, b in shots]
    for a, b in ranges:                            # too short to stand on: the minimum duration of hysteresis
        if b > a:
            added[a:b] = hysteresis(added[a:b].astype(np.float64), t[a:b], on=0.5, off=0.5, min_on_s=min_on_s,
                                    min_off_s=0.0)
    return c | added, added
