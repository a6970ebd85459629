"""Time-series filters for joint tracks: gap filling, resampling and smoothing (numpy only).

All functions take tracks shaped ``(T, ...)`` (time first) with timestamps ``(T,)`` in seconds, in whatever frame the
caller uses (``core.conventions``); NaN marks a missing value. They run in Blender's bundled Python too (no scipy there),
which is why the Savitzky-Golay filter is written here; the tests check it against ``scipy.signal.savgol_filter``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _flat(x: np.ndarray, t: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    if x.ndim < 1 or t.ndim != 1 or x.shape[0] != t.shape[0]:
        raise ValueError(f"{what}: expected x (T, ...) and t (T,), got {x.shape} and {t.shape}")
    if t.shape[0] > 1 and np.any(np.diff(t) <= 0):
        raise ValueError(f"{what}: timestamps must increase strictly")
    return x.reshape(x.shape[0], -1), t


@dataclass(frozen=True)
class GapReport:
    """What :func:`fill_gaps` did: ``filled`` frames ``(K,)`` that had no value, as runs ``[(first, last), ...]``."""

    filled: np.ndarray
    runs: tuple[tuple[int, int], ...]

    def describe(self, timestamps: np.ndarray | None = None) -> str:
        """One line for a user: how many frames were filled and where."""
        if not self.runs:
            return "no gaps"
        def at(i: int) -> str:
            return f"{timestamps[i]:.2f}s" if timestamps is not None else f"#{i}"
        parts = [at(a) if a == b else f"{at(a)}-{at(b)}" for a, b in self.runs[:8]]
        more = f" and {len(self.runs) - 8} more" if len(self.runs) > 8 else ""
        return f"{len(self.filled)} frames without a detection were interpolated ({', '.join(parts)}{more})"


def _runs(idx: np.ndarray) -> tuple[tuple[int, int], ...]:
    if idx.size == 0:
        return ()
    breaks = np.flatnonzero(np.diff(idx) > 1)
    starts = np.concatenate(([idx[0]], idx[breaks + 1]))
    ends = np.concatenate((idx[breaks], [idx[-1]]))
    return tuple((int(a), int(b)) for a, b in zip(starts, ends))


def fill_gaps(x: np.ndarray, t: np.ndarray, valid: np.ndarray | None = None) -> tuple[np.ndarray, GapReport]:
    """Linearly interpolate missing values over time; hold the nearest value before the first and after the last.

    Args:
        x: ``(T, ...)`` track; NaN entries are missing.
        t: ``(T,)`` timestamps, seconds, strictly increasing.
        valid: optional ``(T,)`` bool; False marks a whole frame as missing (its values are ignored).
    Returns:
        ``(filled (T, ...) float64, GapReport)``. A column with no value at all stays NaN. The report lists the frames
        that were invalid (``valid`` False or all-NaN).
    Raises:
        ValueError: on mismatched shapes or non-increasing timestamps.
    """
    flat, t = _flat(x, t, "fill_gaps")
    flat = flat.copy()
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != t.shape:
            raise ValueError(f"fill_gaps: valid must be {t.shape}, got {valid.shape}")
        flat[~valid] = np.nan
    if flat.shape[1]:
        missing_frames = np.all(np.isnan(flat), axis=1)
    else:
        missing_frames = ~valid if valid is not None else np.zeros(len(t), dtype=bool)
    for c in np.flatnonzero(np.isnan(flat).any(axis=0)):
        col = flat[:, c]
        ok = ~np.isnan(col)
        if ok.any():
            flat[:, c] = np.interp(t, t[ok], col[ok])
    idx = np.flatnonzero(missing_frames)
    return flat.reshape(np.shape(x)), GapReport(filled=idx, runs=_runs(idx))


def line_at(x: np.ndarray, t: np.ndarray, at: float) -> np.ndarray:
    """Value at time ``at`` of the least-squares straight line through ``x`` (``(n, ...)``, n >= 1, finite) over
    ``t`` (``(n,)``); one sample is returned as it is. ``(...)`` float64."""
    x = np.asarray(x, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    if x.shape[0] < 2:
        return x[0].copy()
    A = np.stack([t - at, np.ones_like(t)], axis=1)
    coef = np.linalg.lstsq(A, x.reshape(x.shape[0], -1), rcond=None)[0]
    return coef[1].reshape(x.shape[1:])


def resample(x: np.ndarray, t: np.ndarray, t_new: np.ndarray) -> np.ndarray:
    """Linearly resample a track at new times (held at the ends).

    Args:
        x: ``(T, ...)``, no NaN (fill gaps first); t: ``(T,)`` seconds; t_new: ``(K,)`` seconds.
    Returns:
        ``(K, ...)`` float64.
    """
    flat, t = _flat(x, t, "resample")
    t_new = np.asarray(t_new, dtype=np.float64)
    if t_new.ndim != 1:
        raise ValueError(f"resample: t_new must be (K,), got {t_new.shape}")
    if len(t) == 1:
        return np.repeat(flat, len(t_new), axis=0).reshape((len(t_new),) + np.shape(x)[1:])
    i = np.clip(np.searchsorted(t, t_new, side="right") - 1, 0, len(t) - 2)
    w = np.clip((t_new - t[i]) / (t[i + 1] - t[i]), 0.0, 1.0)[:, None]
    out = flat[i] * (1.0 - w) + flat[i + 1] * w
    return out.reshape((len(t_new),) + np.shape(x)[1:])


def savgol(x: np.ndarray, window: int, order: int = 2) -> np.ndarray:
    """Savitzky-Golay smoothing along time: a least-squares polynomial fit over a sliding window.

    Savitzky & Golay, "Smoothing and Differentiation of Data by Simplified Least Squares Procedures", Analytical
    Chemistry 36(8), 1964. Zero-phase (no lag) and it keeps the peaks of a motion better than a moving average.
    The ends are fitted with the first/last full window's polynomial (scipy's ``mode='interp'``), so there is no
    padding artefact. Samples are assumed evenly spaced.

    Args:
        x: ``(T, ...)`` track without NaN.
        window: odd window length in samples, > order; shortened (kept odd) when ``T`` is smaller.
        order: polynomial order.
    Returns:
        ``(T, ...)`` float64.
    Raises:
        ValueError: for an even or too short window, or NaN in ``x``.
    """
    x = np.asarray(x, dtype=np.float64)
    if window % 2 == 0 or window <= order:
        raise ValueError(f"savgol: window must be odd and > order, got window={window}, order={order}")
    if np.isnan(x).any():
        raise ValueError("savgol: fill gaps before smoothing (NaN in input)")
    T = x.shape[0]
    n = min(window, T if T % 2 else T - 1)
    if n <= order:
        return x.copy()
    flat = x.reshape(T, -1)
    half = n // 2
    offsets = np.arange(n) - half
    V = offsets[:, None] ** np.arange(order + 1)[None, :]   # (n, order+1) Vandermonde matrix
    C = V @ np.linalg.pinv(V)                                # (n, n): row i = fitted value at window position i
    out = np.empty_like(flat)
    windows = np.lib.stride_tricks.sliding_window_view(flat, n, axis=0)  # (T-n+1, D, n)
    out[half:T - half] = windows @ C[half]
    out[:half] = C[:half] @ flat[:n]
    out[T - half:] = C[half + 1:] @ flat[T - n:]
    return out.reshape(x.shape)


def smooth(x: np.ndarray, t: np.ndarray, strength: float) -> np.ndarray:
    """Smooth a joint track for offline use: Savitzky-Golay (order 2) with a window set by ``strength``.

    Args:
        x: ``(T, ...)`` track without NaN; t: ``(T,)`` seconds, nearly evenly spaced (real video timestamps).
        strength: 0 (off) .. 1 (strong): the window spans ``0.15 + 0.6 * strength`` seconds (0.45 s at the default
            0.5, which halves MediaPipe-like noise on dance-speed motion; see tests/test_filters.py).
    Returns:
        ``(T, ...)`` float64 (a copy of ``x`` when strength is 0).
    """
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"smoothing strength must be within 0..1, got {strength}")
    x, t = np.asarray(x, dtype=np.float64), np.asarray(t, dtype=np.float64)
    if x.shape[:1] != t.shape:
        raise ValueError(f"smooth: expected x (T, ...) and t (T,), got {x.shape} and {t.shape}")
    if strength == 0.0 or len(t) < 4:
        return x.copy()
    dt = float(np.median(np.diff(t)))
    n = int(round((0.15 + 0.6 * strength) / dt))
    n = max(n + (n % 2 == 0), 5)
    return savgol(x, n, 2)


def jitter(x: np.ndarray, t: np.ndarray) -> float:
    """Mean magnitude of the second time difference (acceleration), in units/s², over all points.

    Args:
        x: ``(T, J, C)`` positions; t: ``(T,)`` seconds (assumed nearly uniform).
    Returns:
        A scalar; lower is smoother. Used by benchmarks to compare filters.
    """
    x = np.asarray(x, dtype=np.float64)
    dt = float(np.median(np.diff(t)))
    acc = np.diff(x, n=2, axis=0) / dt ** 2
    return float(np.nanmean(np.linalg.norm(acc, axis=-1)))
