"""Closed-loop metrics: estimated vs ground-truth joints and motions (numpy only).

Inputs are ``CANONICAL`` joints ``(T, 27, 3)`` in MMD axes and units (``core.conventions``: 1 unit = 8 cm, Y up,
the floor at y = 0), estimate and ground truth in the same frame and at the same 30 fps frames. The main job
writes its motion in the camera's heading, levelled; the benchmark rotates the ground truth into that frame first
(``Camera.heading_rotation``). Every function returns plain floats in the unit its name or docstring states.

Standard definitions (the Human3.6M protocols as VideoPose3D reports them, Pavllo et al., CVPR 2019):
MPJPE = mean Euclidean distance over joints and frames after aligning the roots (here the ``Hip`` joint, the
midpoint of the MMD 足 bones); PA-MPJPE = the same after a per-frame similarity Procrustes alignment (rotation,
translation and scale; Umeyama, IEEE TPAMI 1991) of the estimate onto the ground truth. Both use the 17 H36M joints.
"""
from __future__ import annotations

import numpy as np

from core.conventions import METRES_PER_UNIT, MMD_FPS
from core.skeletons import CANONICAL, CANONICAL_MIRROR

__all__ = ["MM_PER_UNIT", "H36M", "FOOT_POINTS", "mpjpe", "pa_mpjpe", "procrustes", "root_error", "jitter",
           "foot_contacts", "foot_skate", "foot_height_error", "below_floor", "rotation_steps", "speed_p99",
           "error_2d", "mirrored_2d"]

#: Millimetres per MMD unit (80).
MM_PER_UNIT = METRES_PER_UNIT * 1000.0
#: Indices of the 17 H36M joints in ``CANONICAL``.
H36M = np.arange(17)
_J = {n: i for i, n in enumerate(CANONICAL)}
#: Foot points used for contact, skate, height and floor metrics.
FOOT_POINTS = ("LHeel", "LFootIndex", "RHeel", "RFootIndex")


def _check(est, gt):
    e = np.asarray(est, dtype=np.float64)
    g = np.asarray(gt, dtype=np.float64)
    if e.shape != g.shape or e.ndim != 3 or e.shape[2] != 3:
        raise ValueError(f"estimate and ground truth must both be (T, J, 3), got {e.shape} and {g.shape}")
    return e, g


def mpjpe(est, gt, joints=H36M, root: int = 0) -> float:
    """Root-aligned MPJPE, mm: the ``root`` joint (default Hip) of each frame is moved onto the ground truth's."""
    e, g = _check(est, gt)
    e = e[:, joints] - e[:, [root]]
    g = g[:, joints] - g[:, [root]]
    return float(np.nanmean(np.linalg.norm(e - g, axis=-1)) * MM_PER_UNIT)


def procrustes(x, y) -> np.ndarray:
    """Per-frame similarity transform of ``x`` onto ``y`` (Umeyama 1991): ``(T, J, 3)`` aligned copy of ``x``.

    Minimises ``Σ_j |s·R·x_j + t - y_j|²`` over a proper rotation R (det +1), scale s > 0 and translation t.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    mx = x.mean(axis=1, keepdims=True)
    my = y.mean(axis=1, keepdims=True)
    x0, y0 = x - mx, y - my
    cov = np.einsum("tji,tjk->tik", y0, x0)                  # Σ y0 x0ᵀ  (T, 3, 3)
    u, s, vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(u @ vt))
    fix = np.ones_like(s)
    fix[:, 2] = d
    r = u @ (fix[:, :, None] * vt)                            # R = U diag(1, 1, d) Vᵀ
    var_x = np.sum(x0 ** 2, axis=(1, 2))
    scale = np.sum(s * fix, axis=1) / np.where(var_x > 0, var_x, 1.0)
    return scale[:, None, None] * np.einsum("tik,tjk->tji", r, x0) + my


def pa_mpjpe(est, gt, joints=H36M) -> float:
    """Procrustes-aligned MPJPE (rotation, translation and scale per frame), mm."""
    e, g = _check(est, gt)
    e, g = e[:, joints], g[:, joints]
    return float(np.mean(np.linalg.norm(procrustes(e, g) - g, axis=-1)) * MM_PER_UNIT)


def root_error(est, gt, root: int = 0) -> float:
    """Root trajectory error, mm: mean distance between the root paths after removing each one's start position."""
    e, g = _check(est, gt)
    pe = e[:, root] - e[0, root]
    pg = g[:, root] - g[0, root]
    return float(np.mean(np.linalg.norm(pe - pg, axis=-1)) * MM_PER_UNIT)


def jitter(x, fps: float = MMD_FPS, joints=H36M) -> float:
    """Mean acceleration magnitude (second difference x fps²), m/s², over ``joints`` (the quantity of
    ``core.filters.jitter``, in metres)."""
    p = np.asarray(x, dtype=np.float64)[:, joints] * METRES_PER_UNIT
    acc = np.diff(p, n=2, axis=0) * fps ** 2
    return float(np.mean(np.linalg.norm(acc, axis=-1)))


def foot_contacts(gt, fps: float = MMD_FPS, *, max_height_m: float = 0.05, max_speed_ms: float = 0.25,
                  floor: float | None = None) -> np.ndarray:
    """Ground-truth contact per frame and foot point: ``(T, 4)`` bool, :data:`FOOT_POINTS` order.

    A point is in contact where it is within ``max_height_m`` of the floor and its horizontal speed (central
    difference) is under ``max_speed_ms``. ``floor`` (MMD units) defaults to y = 0, the model's floor.
    """
    g = np.asarray(gt, dtype=np.float64)
    idx = [_J[n] for n in FOOT_POINTS]
    p = g[:, idx]
    f0 = 0.0 if floor is None else float(floor)
    h = (p[..., 1] - f0) * METRES_PER_UNIT
    v = _horizontal_speed(p, fps)
    return (h < max_height_m) & (v < max_speed_ms)


def _horizontal_speed(p, fps):
    """``(T, K)`` horizontal speed (m/s) of points ``p (T, K, 3)`` (MMD units), central differences."""
    xz = p[..., [0, 2]] * METRES_PER_UNIT
    if len(xz) < 2:
        return np.zeros(xz.shape[:2])
    v = np.gradient(xz, axis=0) * fps
    return np.linalg.norm(v, axis=-1)


def foot_skate(x, contact, fps: float = MMD_FPS) -> float:
    """Mean horizontal speed of the foot points during contact, cm/s (``contact`` from :func:`foot_contacts`).
    NaN without contact frames."""
    p = np.asarray(x, dtype=np.float64)[:, [_J[n] for n in FOOT_POINTS]]
    v = _horizontal_speed(p, fps)
    c = np.asarray(contact, dtype=bool)
    return float(v[c].mean() * 100.0) if c.any() else float("nan")


def foot_height_error(est, gt, contact) -> float:
    """Mean |height difference| of the foot points during ground-truth contact, cm (heights are y, MMD floor 0)."""
    e, g = _check(est, gt)
    idx = [_J[n] for n in FOOT_POINTS]
    d = np.abs(e[:, idx, 1] - g[:, idx, 1]) * METRES_PER_UNIT * 100.0
    c = np.asarray(contact, dtype=bool)
    return float(d[c].mean()) if c.any() else float("nan")


def below_floor(x, *, tolerance_m: float = 0.02) -> dict:
    """Foot points below the floor (y = 0) by more than ``tolerance_m``: count of (frame, point) samples, frames
    with any, and the lowest point (cm; negative = below)."""
    p = np.asarray(x, dtype=np.float64)[:, [_J[n] for n in FOOT_POINTS] + [_J["LFoot"], _J["RFoot"]], 1]
    h = p * METRES_PER_UNIT
    low = h < -tolerance_m
    return {"points": int(low.sum()), "frames": int(low.any(axis=1).sum()), "lowest_cm": float(h.min() * 100.0)}


def rotation_steps(rotations: dict, threshold_deg: float = 45.0) -> int:
    """Number of (bone, frame) steps where a bone's local key rotation turns by more than ``threshold_deg`` between
    consecutive frames. ``rotations``: bone name -> ``(T, 4)`` quaternions (x, y, z, w)."""
    n = 0
    c = np.cos(np.radians(threshold_deg) / 2.0)
    for q in rotations.values():
        q = np.asarray(q, dtype=np.float64)
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        d = np.abs(np.sum(q[1:] * q[:-1], axis=1))               # cos(angle / 2) of the relative rotation
        n += int(np.sum(d < c))
    return n


def speed_p99(x, fps: float = MMD_FPS, joint: int = 0) -> float:
    """99th percentile of the ``joint`` (default Hip, the centre) speed, m/s."""
    p = np.asarray(x, dtype=np.float64)[:, joint] * METRES_PER_UNIT
    v = np.linalg.norm(np.diff(p, axis=0), axis=-1) * fps
    return float(np.percentile(v, 99)) if len(v) else float("nan")


def error_2d(det, gt_px, joints=H36M) -> dict:
    """2D keypoint error, px: ``det (T, J, 2|3)`` detections (NaN where absent), ``gt_px (T, J, 2)``; mean and
    median over present (frame, joint) samples of ``joints``."""
    d = np.asarray(det, dtype=np.float64)[:, joints, :2]
    g = np.asarray(gt_px, dtype=np.float64)[:, joints]
    e = np.linalg.norm(d - g, axis=-1)
    e = e[np.isfinite(e)]
    return {"mean_px": float(e.mean()) if e.size else float("nan"),
            "median_px": float(np.median(e)) if e.size else float("nan")}


#: The limb joints :func:`mirrored_2d` compares (shoulders to wrists, hips to ankles, both sides).
LIMBS = tuple(_J[s + n] for s in "LR" for n in ("Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Foot"))


def mirrored_2d(det, gt_px, *, ratio: float = 0.7) -> np.ndarray:
    """Frames whose 2D detection has the subject's left and right exchanged: ``(T,)`` bool.

    ``det (T, 27, 2|3)`` ``CANONICAL`` detections (NaN where absent), ``gt_px (T, 27, 2)`` the truth. A frame is
    mirrored where its detection with left and right exchanged (``core.skeletons.CANONICAL_MIRROR``) lies closer to
    the truth than ``ratio`` times the detection as labelled, in mean distance over :data:`LIMBS` -- a detector that
    took the dancer's back for her front (or the reverse) labels the whole body this way, which no lifter can undo
    from the 2D alone. Frames without a finite limb joint are not mirrored.
    """
    d = np.asarray(det, dtype=np.float64)[..., :2]
    g = np.asarray(gt_px, dtype=np.float64)[..., :2]
    if d.shape != g.shape or d.ndim != 3 or d.shape[1] != len(CANONICAL):
        raise ValueError(f"mirrored_2d: expected two (T, {len(CANONICAL)}, 2) arrays, got {d.shape} and {g.shape}")
    limbs = list(LIMBS)

    def mean_error(x):
        dist = np.linalg.norm(x[:, limbs] - g[:, limbs], axis=-1)
        ok = np.isfinite(dist)
        return np.where(ok.any(axis=1), np.where(ok, dist, 0.0).sum(axis=1) / np.maximum(ok.sum(axis=1), 1), np.nan)

    e, em = mean_error(d), mean_error(d[:, CANONICAL_MIRROR])
    return np.isfinite(e) & np.isfinite(em) & (em < ratio * e)
