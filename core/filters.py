"""Time-series filters for joint tracks: gap filling, resampling and smoothing (numpy only).

All functions take tracks shaped ``(T, ...)`` (time first) with timestamps ``(T,)`` in seconds, in whatever frame the
caller uses (``core.conventions``); NaN marks a missing value. They run in Blender's bundled Python too, which is why
the One Euro filter is written here instead of taken from scipy.
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


def _alpha(cutoff: np.ndarray, dt: float) -> np.ndarray:
    tau = 1.0 / (2.0 * np.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


def one_euro(x: np.ndarray, t: np.ndarray, min_cutoff: float = 1.0, beta: float = 0.0,
             d_cutoff: float = 1.0) -> np.ndarray:
    """Causal One Euro filter, vectorised over everything but time.

    The filter of Casiez, Roussel & Vogel, "1€ Filter: A Simple Speed-based Low-pass Filter for Noisy Input in
    Interactive Systems", CHI 2012: an exponential smoother whose cutoff rises with speed,
    ``cutoff = min_cutoff + beta * |dx/dt|``, so slow motion is smoothed hard and fast motion lags little.

    Args:
        x: ``(T, ...)`` track without NaN; t: ``(T,)`` seconds.
        min_cutoff: Hz, > 0. beta: speed coefficient, in 1 / (unit of x) (e.g. 1/m for metres). d_cutoff: Hz, the
            cutoff of the speed estimate.
    Returns:
        ``(T, ...)`` float64.
    """
    flat, t = _flat(x, t, "one_euro")
    if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
        raise ValueError("one_euro: min_cutoff and d_cutoff must be > 0 and beta >= 0")
    if np.isnan(flat).any():
        raise ValueError("one_euro: fill gaps before smoothing (NaN in input)")
    out = np.empty_like(flat)
    if len(t) == 0:
        return out.reshape(np.shape(x))
    prev = flat[0].copy()
    dprev = np.zeros_like(prev)
    out[0] = prev
    for k in range(1, len(t)):
        dt = t[k] - t[k - 1]
        dx = (flat[k] - prev) / dt
        dprev = dprev + _alpha(np.asarray(d_cutoff), dt) * (dx - dprev)
        a = _alpha(min_cutoff + beta * np.abs(dprev), dt)
        prev = prev + a * (flat[k] - prev)
        out[k] = prev
    return out.reshape(np.shape(x))


def smooth(x: np.ndarray, t: np.ndarray, strength: float, *, speed_scale: float = 1.0) -> np.ndarray:
    """Zero-phase smoothing for offline tracks: the One Euro filter run forward, then backward over the result.

    Running the causal filter in both directions cancels its lag (the forward-backward idea of ``filtfilt``).

    Args:
        x: ``(T, ...)`` track without NaN; t: ``(T,)`` seconds.
        strength: 0 (off) .. 1 (strong). Maps to ``min_cutoff = 8 * 0.02 ** strength`` Hz (8 Hz at 0+, 1.13 Hz at
            0.5, 0.16 Hz at 1).
        speed_scale: a typical speed of the track in its units per second (1.0 for metres, ~300 for pixels), so
            that ``beta = 0.5 / speed_scale`` behaves the same in any unit.
    Returns:
        ``(T, ...)`` float64 (a copy of ``x`` when strength is 0).
    """
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"smoothing strength must be within 0..1, got {strength}")
    x = np.asarray(x, dtype=np.float64)
    if strength == 0.0 or len(x) < 3:
        return x.copy()
    min_cutoff = 8.0 * 0.02 ** strength
    beta = 0.5 / speed_scale
    t = np.asarray(t, dtype=np.float64)
    fwd = one_euro(x, t, min_cutoff, beta)
    back = one_euro(fwd[::-1], -t[::-1], min_cutoff, beta)
    return back[::-1].copy()


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
