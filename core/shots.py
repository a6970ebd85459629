"""Shot cuts: found from colour histograms, and the shots joined into one motion (numpy only).

An edited dance video cuts between shots: a close-up, then the full body, another angle. Across a cut nothing is
continuous -- gaps must not be interpolated over it, a temporal lifter or filter must not look across it, and the
dancer must not turn or jump with the camera -- so the pipeline finds the cuts first and handles each shot on its
own (``core.gating`` per shot, gap filling and lifting per shot in ``core.worker.job``, the ``shots`` array of the
pose ``.npz`` for the motion stage's repairs, smoothing, levelling and floor per shot), then joins the shots
(:func:`align_shots`, :func:`continue_height`).

Method (a histogram test, as in PySceneDetect's ``HistogramDetector`` / the classic colour-histogram shot-boundary
detectors): every frame is reduced to :func:`frame_signature`, a normalised joint histogram of its coarsely
quantised RGB colours (``bins`` levels per channel) on a subsampled grid, plus the same for each of 2 x 2 image
quarters (so a cut between two shots of similar colours still changes the layout). The distance between consecutive
frames is half the L1 distance of their signatures (in [0, 1]). A cut is a frame whose distance is above
``threshold`` and ``ratio`` times the median distance of the frames around it (a fast pan or a flash changes
histograms too, but for several frames; a cut is one spike, after which the scene does not come back, as it does
after a flash of a frame or two), or, between two angles on the same set (the same
colours, only their layout moves), a smaller distance, above ``quiet_threshold``, that stands out ``quiet_ratio``
times from frames around it that barely change. Measured (``benchmarks`` renders and the shared videos): a cut from one
camera to another on the closed-loop set scored 0.085, 26 times its neighbours; no frame of the shared videos or of
the one-camera renders scored more than 0.048 or more than 7 times its neighbours. Cuts closer than ``min_shot_s``
to the previous cut are dropped. PySceneDetect itself is not used: its wheels pull in a second OpenCV build beside mediapipe's.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .filters import line_at
from .skeletons import CANONICAL

__all__ = ["frame_signature", "detect_shots", "signature_distance", "shot_ranges", "lift_ranges", "facing_yaw",
           "align_shots", "ShotAlignment", "continue_height", "SIGNATURE_SIZE"]

_BINS = 4
#: Longest flash (frames) that :func:`detect_shots` tells from a cut: the scene looks as before once it is over.
_FLASH_FRAMES = 2
#: Length of :func:`frame_signature`'s output: one whole-frame histogram and four quarter histograms.
SIGNATURE_SIZE = 5 * _BINS ** 3


def frame_signature(image: np.ndarray, *, step: int | None = None) -> np.ndarray:
    """The histogram signature of one RGB frame.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        step: pixel subsampling stride (default: about 96 samples along the longer side).
    Returns:
        ``(SIGNATURE_SIZE,)`` float32; each of the five histograms sums to 1 (weight 0.5 for the whole frame and
        0.125 for each quarter, so the signature sums to 1).
    Raises:
        ValueError: not an ``(H, W, 3)`` image.
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"frame_signature: expected (H, W, 3), got {img.shape}")
    h, w = img.shape[:2]
    s = step or max(1, max(h, w) // 96)
    small = img[::s, ::s].astype(np.int32) * _BINS // 256
    code = (small[..., 0] * _BINS + small[..., 1]) * _BINS + small[..., 2]
    n = _BINS ** 3
    out = np.empty(SIGNATURE_SIZE, dtype=np.float32)
    hh, ww = code.shape
    parts = [(code, 0.5)] + [(code[i * hh // 2:(i + 1) * hh // 2, j * ww // 2:(j + 1) * ww // 2], 0.125)
                             for i in range(2) for j in range(2)]
    for k, (c, weight) in enumerate(parts):
        hist = np.bincount(c.reshape(-1), minlength=n).astype(np.float64)
        out[k * n:(k + 1) * n] = weight * hist / max(hist.sum(), 1.0)
    return out


def signature_distance(signatures: np.ndarray) -> np.ndarray:
    """``(T,)`` distance of each frame's signature from the previous frame's (half L1, in [0, 1]; 0 for frame 0)."""
    s = np.asarray(signatures, dtype=np.float64)
    d = np.zeros(len(s))
    if len(s) > 1:
        d[1:] = 0.5 * np.abs(np.diff(s, axis=0)).sum(axis=1)
    return d


def detect_shots(signatures, timestamps=None, *, threshold: float = 0.35, ratio: float = 4.0,
                 quiet_threshold: float = 0.05, quiet_ratio: float = 12.0, min_shot_s: float = 0.4,
                 window: int = 12) -> np.ndarray:
    """Shots as frame ranges.

    Args:
        signatures: ``(T, SIGNATURE_SIZE)`` from :func:`frame_signature` (NaN rows, e.g. frames that failed to
            decode, never start a cut).
        timestamps: ``(T,)`` seconds (default 25 fps), for ``min_shot_s``.
        threshold: smallest distance (in [0, 1]) that can be a cut.
        ratio: a cut's distance is also above ``ratio`` x the median distance of the ``window`` frames on each side.
        quiet_threshold, quiet_ratio: or it is above ``quiet_threshold`` and ``quiet_ratio`` x that median (a cut
            between two views of the same colours).
        min_shot_s: shortest shot, seconds.
    Returns:
        ``(S, 2)`` int64 ``[start, stop)`` frame ranges covering ``0..T`` in order (``(1, 2)`` for one shot;
        ``(0, 2)`` when ``T == 0``).
    Raises:
        ValueError: not a ``(T, N)`` array, or timestamps of another length.
    """
    s = np.asarray(signatures, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"detect_shots: signatures must be (T, N), got {s.shape}")
    T = len(s)
    if T == 0:
        return np.zeros((0, 2), dtype=np.int64)
    t = np.arange(T) / 25.0 if timestamps is None else np.asarray(timestamps, dtype=np.float64)
    if t.shape != (T,):
        raise ValueError(f"detect_shots: timestamps must be ({T},), got {t.shape}")
    d = np.nan_to_num(signature_distance(s), nan=0.0)
    cuts: list[int] = []
    for i in np.flatnonzero(d >= min(threshold, quiet_threshold)):     # only frames that can be a cut
        i = int(i)
        if i == 0:
            continue
        around = np.concatenate([d[max(1, i - window):i], d[i + 1:i + 1 + window]])
        base = float(np.median(around)) if around.size else 0.0
        loud = d[i] >= threshold and d[i] >= ratio * max(base, 0.01)
        quiet = d[i] >= quiet_threshold and d[i] >= quiet_ratio * max(base, 1e-3)
        if not (loud or quiet):
            continue
        # a flash (a strobe, a camera flash) changes a frame or two and gives the scene back, so the frames just
        # before the spike and just after it (its start or its end) look alike; across a cut they do not
        back = [0.5 * float(np.abs(s[i + k] - s[i - 1 - m]).sum()) for m in (0, 1, 2) for k in (0, 1, 2)
                if 1 <= m + k <= _FLASH_FRAMES and i + k < T and i - 1 - m >= 0]
        back = [b for b in back if np.isfinite(b)]
        if back and min(back) < 0.5 * d[i]:
            continue
        if cuts and t[i] - t[cuts[-1]] < min_shot_s:
            if d[i] > d[cuts[-1]]:
                cuts[-1] = i
            continue
        if not cuts and t[i] - t[0] < min_shot_s and i < 2:
            continue
        cuts.append(i)
    bounds = [0] + cuts + [T]
    return np.array([(a, b) for a, b in zip(bounds[:-1], bounds[1:])], dtype=np.int64)


def shot_ranges(shots, T: int) -> list[tuple[int, int]]:
    """``shots`` (``(S, 2)`` ``[start, stop)`` frame ranges, or None for one shot) as a list of int pairs that
    cover ``0..T`` in order.

    Raises:
        ValueError: ranges that do not cover ``0..T`` in order (or an empty shot).
    """
    if shots is None or len(shots) == 0:
        return [(0, int(T))] if T > 0 else []
    out = [(int(a), int(b)) for a, b in np.asarray(shots, dtype=np.int64).reshape(-1, 2)]
    if out[0][0] != 0 or out[-1][1] != T or any(b <= a for a, b in out) or \
            any(p[1] != q[0] for p, q in zip(out, out[1:])):
        raise ValueError(f"shots must cover 0..{T} in order, got {out}")
    return out


def lift_ranges(shots, detected) -> list[tuple[int, int]]:
    """The frame ranges a temporal lifter is run on: each shot on its own (its window must not see across a cut,
    where the camera changes), except that a shot without a detected frame is lifted together with the shot before
    it (the first such shot with the one after it): alone it has nothing to lift.

    Args:
        shots: ``(S, 2)`` ``[start, stop)`` frame ranges or None (:func:`shot_ranges`).
        detected: ``(T,)`` bool, frames the detector found the dancer on.
    Returns:
        ``[(start, stop), ...]`` covering ``0..T`` in order.
    """
    det = np.asarray(detected, dtype=bool)
    groups: list[tuple[int, int]] = []
    for a, b in shot_ranges(shots, len(det)):
        if groups and not (det[a:b].any() and det[groups[-1][0]:groups[-1][1]].any()):
            groups[-1] = (groups[-1][0], b)
        else:
            groups.append((a, b))
    return groups


#: ``CANONICAL`` indices of the left and right hips and shoulders (the body's left-right axis).
_LR = tuple((CANONICAL.index("L" + n), CANONICAL.index("R" + n)) for n in ("Hip", "Shoulder"))


def facing_yaw(joints, up=(0.0, -1.0, 0.0)) -> np.ndarray:
    """The body's heading about ``up``, per frame: the angle (radians) of its left-right axis (left minus right
    hip plus left minus right shoulder, ``CANONICAL``) in the plane normal to ``up``, measured from the camera
    frame's x axis projected on that plane. NaN where that axis is undefined (missing joints, a body lying along
    ``up``).

    Args:
        joints: ``(T, 27, 3)`` ``CANONICAL`` joints, metres, levelled ``camera`` frame (``core.conventions``).
        up: the world's up in that frame (y points down in the camera frame).
    Returns:
        ``(T,)`` float64 radians in (-pi, pi].
    """
    j = np.asarray(joints, dtype=np.float64)
    if j.ndim != 3 or j.shape[1] < 15 or j.shape[2] != 3:
        raise ValueError(f"facing_yaw expects (T, 27, 3) joints, got {j.shape}")
    u = np.asarray(up, dtype=np.float64)
    u = u / np.linalg.norm(u)
    e1 = np.array([1.0, 0.0, 0.0]) - u[0] * u
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(u, e1)
    lr = sum(j[:, a] - j[:, b] for a, b in _LR)
    x, y = lr @ e1, lr @ e2
    yaw = np.arctan2(y, x)
    yaw[~(np.hypot(x, y) > 1e-6)] = np.nan
    return yaw


def _joints_and_up(joints, up, what: str) -> tuple[np.ndarray, np.ndarray]:
    """``(T, J, 3)`` float64 copy of ``joints`` (ValueError otherwise) and ``up`` as a unit vector."""
    j = np.array(joints, dtype=np.float64)
    if j.ndim != 3 or j.shape[2] != 3:
        raise ValueError(f"{what} expects (T, J, 3) joints, got {j.shape}")
    u = np.asarray(up, dtype=np.float64)
    return j, u / np.linalg.norm(u)


def _edge_fit(values: np.ndarray, frames: np.ndarray, at: float, circular: bool = False):
    """``core.filters.line_at`` of ``values`` (``(N,)`` or ``(N, D)``, NaN rows skipped) over ``frames`` at frame
    ``at``; the angles of ``circular`` values are unwrapped first. None without two finite rows."""
    v = np.asarray(values, dtype=np.float64)
    v2 = v.reshape(len(v), -1)
    ok = np.isfinite(v2).all(axis=1)
    if ok.sum() < 2:
        return None
    v2 = np.unwrap(v2[ok], axis=0) if circular else v2[ok]
    out = line_at(v2, frames[ok], at)
    return out.reshape(v.shape[1:]) if v.ndim > 1 else float(out[0])


@dataclass
class ShotAlignment:
    """What :func:`align_shots` did at each cut.

    Attributes:
        turns_deg: ``(S,)`` the turn about the up axis given to each shot (0 for the first and for shots whose
            heading could not be measured), degrees.
        shifts_m: ``(S, 3)`` the translation added to each shot (in the floor plane), metres.
    """

    turns_deg: np.ndarray
    shifts_m: np.ndarray

    def describe(self) -> str:
        if len(self.turns_deg) < 2:
            return "shots: one shot, nothing to align"
        parts = [f"shot {k + 1}: turned {self.turns_deg[k]:+.0f}°, moved {np.linalg.norm(self.shifts_m[k]):.2f} m"
                 for k in range(1, len(self.turns_deg))]
        return ("shots: each cut's new camera undone (the dancer's heading and place go on from the shot before): "
                + "; ".join(parts))


def align_shots(joints, shots, *, up=(0.0, -1.0, 0.0), root: int = 0, edge: int = 5) -> tuple[np.ndarray, ShotAlignment]:
    """Join the shots of an edited video into one continuous motion.

    Each shot's joints are in its own camera's frame: at a cut to another angle the whole dancer turns about the
    vertical and jumps, although she did neither. The dancer's heading and place go on through a cut, so each shot
    after the first is turned about ``up`` (through its first root) until the body's heading (:func:`facing_yaw`)
    at the cut continues the previous shot's, then moved in the floor plane until its root continues the previous
    shot's (each side's heading and root extrapolated to the cut by a straight-line fit over its ``edge`` frames
    nearest to it, so a turn or a walk through the cut keeps its pace). Heights are left to the floor fit per shot
    (``core.floor.ground``). Later shots move with each one, so the first shot's camera frame is kept throughout.

    Args:
        joints: ``(T, 27, 3)`` ``CANONICAL`` absolute joints, metres, levelled camera frame (``core.conventions``).
        shots: ``(S, 2)`` ``[start, stop)`` frame ranges covering ``0..T`` in order, or None (one shot).
        up: the world's up in that frame.
        root: the joint whose path is re-anchored (``CANONICAL`` Hip).
        edge: frames on each side of a cut that the heading and root are fitted over.
    Returns:
        ``(aligned (T, 27, 3) float64, ShotAlignment)``; one shot is returned unchanged (a copy).
    Raises:
        ValueError: bad shapes or shots.
    """
    j, u = _joints_and_up(joints, up, "align_shots")
    T = len(j)
    rng = shot_ranges(shots, T)
    turns = np.zeros(len(rng))
    shifts = np.zeros((len(rng), 3))
    flat = np.eye(3) - np.outer(u, u)
    for k in range(1, len(rng)):
        a, b = rng[k]
        pa = max(rng[k - 1][0], a - edge)
        prev, cur = np.arange(pa, a), np.arange(a, min(b, a + edge))
        at = a - 0.5
        y0 = _edge_fit(facing_yaw(j[prev], u), prev, at, circular=True)
        y1 = _edge_fit(facing_yaw(j[cur], u), cur, at, circular=True)
        if y0 is not None and y1 is not None:
            turn = float(np.angle(np.exp(1j * (y0 - y1))))
            # a turn by `turn` about up: Rodrigues' formula (the yaw grows from e1 towards e2 = up x e1)
            kx = np.array([[0, -u[2], u[1]], [u[2], 0, -u[0]], [-u[1], u[0], 0]])
            rot = np.eye(3) + np.sin(turn) * kx + (1.0 - np.cos(turn)) * (kx @ kx)
            pivot = j[a, root].copy() if np.isfinite(j[a, root]).all() else np.nanmean(j[cur, root], axis=0)
            j[a:] = (j[a:] - pivot) @ rot.T + pivot
            turns[k:] += np.degrees(turn)
        r0 = _edge_fit(j[prev, root], prev, at)
        r1 = _edge_fit(j[cur, root], cur, at)
        if r0 is not None and r1 is not None:
            d = flat @ (r0 - r1)
            j[a:] += d
            shifts[k:] += d
    turns = np.degrees(np.angle(np.exp(1j * np.radians(turns))))
    return j, ShotAlignment(turns, shifts)


def continue_height(joints, shots, legs_seen, *, up=(0.0, -1.0, 0.0), root: int = 0, edge: int = 5,
                    min_seen: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Give a shot that does not see the dancer's legs the height of the shot beside it that does.

    The floor is fitted per shot from the feet in contact (``core.floor.ground``); in a close-up the feet are out of
    frame and the legs guessed, so that shot's floor, hence its height, means nothing, and the hips would jump at
    the cut. Such a shot (legs seen on fewer than ``min_seen`` of its frames) is moved along ``up`` so that its root
    height at the cut continues that of the nearest shot (the one before first) whose legs are seen, each extrapolated
    to the cut by a straight line over its ``edge`` frames nearest to it. Shots beside none with seen legs are left.

    Args:
        joints: ``(T, J, 3)`` absolute joints, metres, levelled, each shot on its floor.
        shots: ``(S, 2)`` ``[start, stop)`` frame ranges covering ``0..T`` in order, or None (one shot).
        legs_seen: ``(T,)`` bool, frames that see a knee or an ankle (``~poses.upper_body``).
        up: the world's up in that frame.
    Returns:
        ``(joints (T, J, 3) float64, shifts (S,) metres along up given to each shot)``.
    Raises:
        ValueError: bad shapes or shots.
    """
    j, u = _joints_and_up(joints, up, "continue_height")
    T = len(j)
    seen = np.asarray(legs_seen, dtype=bool)
    if seen.shape != (T,):
        raise ValueError(f"continue_height: legs_seen must be ({T},), got {seen.shape}")
    rng = shot_ranges(shots, T)
    good = [bool(seen[a:b].mean() >= min_seen) for a, b in rng]
    shifts = np.zeros(len(rng))
    h = j[:, root] @ u
    for k, (a, b) in enumerate(rng):
        if good[k]:
            continue
        for n in ([k - 1, k + 1] if k > 0 else [k + 1]):
            if not 0 <= n < len(rng) or not good[n]:
                continue
            na, nb = rng[n]
            if n < k:
                side, own, at = np.arange(max(na, a - edge), a), np.arange(a, min(b, a + edge)), a - 0.5
            else:
                side, own, at = np.arange(na, min(nb, na + edge)), np.arange(max(a, b - edge), b), b - 0.5
            h_n, h_k = _edge_fit(h[side], side, at), _edge_fit(h[own], own, at)
            if h_n is None or h_k is None:
                continue
            shifts[k] = h_n - h_k
            j[a:b] += shifts[k] * u
            break
    return j, shifts
