"""Shot cuts from colour histograms (numpy only).

An edited dance video cuts between shots: a close-up, then the full body, another angle. Across a cut nothing is
continuous -- gaps must not be interpolated over it and the root must be re-anchored -- so the pipeline finds the
cuts first and handles each shot on its own (``core.gating`` per shot, gap filling per shot in
``core.worker.job``, the ``shots`` array of the pose ``.npz`` for the motion stage's floor per shot).

Method (a histogram test, as in PySceneDetect's ``HistogramDetector`` / the classic colour-histogram shot-boundary
detectors): every frame is reduced to :func:`frame_signature`, a normalised joint histogram of its coarsely
quantised RGB colours (``bins`` levels per channel) on a subsampled grid, plus the same for each of 2 x 2 image
quarters (so a cut between two shots of similar colours still changes the layout). The distance between consecutive
frames is half the L1 distance of their signatures (in [0, 1]). A cut is a frame whose distance is above
``threshold`` and ``ratio`` times the median distance of the frames around it (a fast pan or a flash changes
histograms too, but for several frames; a cut is one spike). Cuts closer than ``min_shot_s`` to the previous cut are
dropped. PySceneDetect itself is not used: its wheels pull in a second OpenCV build beside mediapipe's.
"""
from __future__ import annotations

import numpy as np

__all__ = ["frame_signature", "detect_shots", "signature_distance", "reanchor", "SIGNATURE_SIZE"]

_BINS = 4
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
                 min_shot_s: float = 0.4, window: int = 12) -> np.ndarray:
    """Shots as frame ranges.

    Args:
        signatures: ``(T, SIGNATURE_SIZE)`` from :func:`frame_signature` (NaN rows, e.g. frames that failed to
            decode, never start a cut).
        timestamps: ``(T,)`` seconds (default 25 fps), for ``min_shot_s``.
        threshold: smallest distance (in [0, 1]) that can be a cut.
        ratio: a cut's distance is also above ``ratio`` x the median distance of the ``window`` frames on each side.
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
    for i in range(1, T):
        if d[i] < threshold:
            continue
        around = np.concatenate([d[max(1, i - window):i], d[i + 1:i + 1 + window]])
        base = float(np.median(around)) if around.size else 0.0
        if d[i] < ratio * max(base, 0.01):
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


def reanchor(track, shots, *, axes=(0, 1, 2), lookback: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Remove the jump a cut puts into a trajectory: each shot after the first is shifted so that it continues
    from where the previous shot ended (its first frame = the previous shot's last frame plus the previous shot's
    mean step over its last ``lookback`` frames), on the chosen ``axes``.

    A cut changes the camera, so the root's position relative to the camera jumps although the dancer did not move;
    keeping each shot's own trajectory but re-anchoring its start keeps the dancer's travel within the shot and
    drops the teleport (for the motion stage, e.g. the horizontal axes of ``core.motion_cleanup``'s root).

    Args:
        track: ``(T, D)`` positions (e.g. the root, metres, ``core.conventions`` camera frame); NaN rows are kept.
        shots: ``(S, 2)`` ``[start, stop)`` frame ranges (:func:`detect_shots`).
        axes: the columns to re-anchor (e.g. ``(0, 2)``: x and depth, leaving the height to the floor per shot).
    Returns:
        ``(re-anchored (T, D) float64, offsets (S, D) added to each shot)``.
    Raises:
        ValueError: shots that do not cover ``0..T`` in order.
    """
    x = np.array(track, dtype=np.float64)
    s = np.asarray(shots, dtype=np.int64).reshape(-1, 2)
    T = len(x)
    if len(s) == 0 or s[0, 0] != 0 or s[-1, 1] != T or np.any(s[1:, 0] != s[:-1, 1]):
        raise ValueError(f"reanchor: shots must cover 0..{T} in order, got {s.tolist()}")
    offsets = np.zeros((len(s), x.shape[1]))
    cols = list(axes)
    for k in range(1, len(s)):
        a = int(s[k, 0])
        p0, p1 = int(s[k - 1, 0]), a
        prev = x[p0:p1, cols]
        prev = prev[np.isfinite(prev).all(axis=1)]
        cur = x[a:int(s[k, 1]), cols]
        cur = cur[np.isfinite(cur).all(axis=1)]
        if len(prev) == 0 or len(cur) == 0:
            continue
        step = np.diff(prev[-(lookback + 1):], axis=0).mean(axis=0) if len(prev) >= 2 else 0.0
        off = prev[-1] + step - cur[0]
        x[a:, cols] += off     # later shots move with this one, so each cut is re-anchored once
        offsets[k:, cols] += off
    return x, offsets
