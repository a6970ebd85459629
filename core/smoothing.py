"""Adaptive smoothing and outlier repair for pose tracks (numpy only).

Everything here works on time-first tracks with timestamps ``(T,)`` in seconds (frames: ``core.conventions``) and
returns, next to the repaired data, a :class:`Repair` saying what was changed, so a run can report it.

* :func:`one_euro` -- the One Euro filter (Casiez, Roussel & Vogel, "1€ Filter: A Simple Speed-based Low-pass Filter
  for Noisy Input in Interactive Systems", CHI 2012): a first-order low-pass whose cutoff rises with the signal's
  speed, ``f_c = min_cutoff + beta·|ẋ|``, so slow parts are smoothed hard and fast dance accents keep their peaks.
  Offline we run it forwards and backwards and average the two passes, which cancels the filter's lag (zero phase to
  first order).
* :func:`smooth_rotations` -- the same filter on sign-continuous quaternions (``core.quat.make_continuous``),
  renormalised after each step: a normalised-linear average on the sphere, accurate for the small steps between
  frames.
* :func:`hampel` -- outlier-robust repair of single joints (Hampel identifier: distance from a local quadratic fit
  above ``n_sigma`` robust standard deviations).
* :func:`repair_rotation_flips` -- a bone that turns more than ``max_step_deg`` in one frame and comes back within a
  few frames (or leaves a joint limit and comes back) is re-interpolated on the sphere (``core.quat.slerp``).
* :func:`hinge_violations` -- frames where a hinge bone (ひざ, ひじ) turns outside its limit about its axis.
* :func:`repair_swaps` -- temporary left/right label exchanges of a detector, found by a two-state Viterbi path
  over per-frame continuity costs of the unswapped and swapped labelling.
* :func:`repair_root_jumps` -- a root that moves faster than a person can is a detection error: spikes are
  interpolated (Hampel), and remaining jumps are held (the excess offset is removed).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import quat as Q
from .filters import line_at
from .skeletons import CANONICAL, CANONICAL_MIRROR

__all__ = ["Repair", "one_euro", "one_euro_params", "smooth_rotations", "hampel", "repair_rotation_flips",
           "hinge_violations", "clamp_rotation_angle", "repair_swaps", "apply_swaps", "repair_root_jumps", "SWAP_GROUPS",
           "rotation_pops", "POP_DEG"]


#: A rotation pop: a bone turning more than this (degrees) in one frame (:func:`rotation_pops`, and what
#: :func:`repair_rotation_flips` repairs by default).
POP_DEG = 45.0


@dataclass
class Repair:
    """What a repair function changed.

    Attributes:
        what: short name of the repair (``"swap"``, ``"flip"``, ``"outlier"``, ``"root_jump"``...).
        frames: ``(K,)`` int64 indices of the frames changed (sorted, unique).
        count: number of repaired events (a run of frames counts once where that makes sense; else points).
        details: free-form extra figures (per group, per bone...).
    """

    what: str
    frames: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    count: int = 0
    details: dict = field(default_factory=dict)

    def describe(self, timestamps: np.ndarray | None = None) -> str:
        """One line for a user."""
        if not self.count:
            return f"{self.what}: nothing to repair"
        f = self.frames
        where = ""
        if f.size:
            at = (lambda i: f"{timestamps[i]:.2f}s") if timestamps is not None else (lambda i: f"#{i}")
            where = " at " + ", ".join(at(int(i)) for i in f[:6]) + (f" and {f.size - 6} more frames" if f.size > 6 else "")
        return f"{self.what}: {self.count} repaired ({f.size} frames){where}"


def _time(t, n: int, what: str) -> np.ndarray:
    t = np.asarray(t, dtype=np.float64)
    if t.shape != (n,):
        raise ValueError(f"{what}: timestamps must be ({n},), got {t.shape}")
    if n > 1 and np.any(np.diff(t) <= 0):
        raise ValueError(f"{what}: timestamps must increase strictly")
    return t


def _alpha(cutoff: np.ndarray, dt: float) -> np.ndarray:
    tau = 1.0 / (2.0 * np.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


def _one_euro_pass(x: np.ndarray, t: np.ndarray, min_cutoff: float, beta: float, d_cutoff: float) -> np.ndarray:
    """One causal pass over ``x (T, ..., C)`` (the reference loop; :func:`one_euro` runs :func:`_one_euro_passes`)."""
    out = np.empty_like(x)
    out[0] = x[0]
    dx = np.zeros(x.shape[1:-1] + (1,))
    for i in range(1, x.shape[0]):
        dt = abs(t[i] - t[i - 1])
        raw = (x[i] - out[i - 1]) / dt
        speed = np.linalg.norm(raw, axis=-1, keepdims=True)
        a_d = _alpha(np.asarray(d_cutoff), dt)
        dx = dx + a_d * (speed - dx)
        a = _alpha(min_cutoff + beta * dx, dt)
        out[i] = out[i - 1] + a * (x[i] - out[i - 1])
    return out


def _one_euro_passes(x: np.ndarray, t: np.ndarray, min_cutoff: float, beta: float,
                     d_cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """The forward and the backward pass of :func:`_one_euro_pass` in one time loop: ``(forward, backward)``.

    The filter is recursive in time, so the loop over frames stays; each step works on both directions and every
    track at once (``(2, ..., C)``), and what does not depend on the state (time steps, the speed filter's
    coefficient) is computed for all steps before the loop. The arithmetic is the reference loop's, operation for
    operation, so the result is the same to the bit (``tests/core/test_smoothing.py``).
    """
    T = x.shape[0]
    both = np.stack([x, x[::-1]], axis=1)                       # (T, 2, ..., C): forward and time-reversed
    tt = np.stack([t, t[::-1]], axis=1)                         # (T, 2)
    dts = np.abs(tt[1:] - tt[:-1])                              # (T - 1, 2) |t[i] - t[i - 1]| of each direction
    shape = (T - 1, 2) + (1,) * (x.ndim - 1)
    a_ds = _alpha(np.asarray(d_cutoff), dts).reshape(shape)
    dts = dts.reshape(shape)
    out = np.empty_like(both)
    out[0] = both[0]
    dx = np.zeros((2,) + x.shape[1:-1] + (1,))
    prev = out[0]
    for i in range(1, T):
        dt = dts[i - 1]
        diff = both[i] - prev
        raw = diff / dt
        speed = np.sqrt(np.add.reduce(raw * raw, axis=-1, keepdims=True))  # np.linalg.norm's own arithmetic
        dx = dx + a_ds[i - 1] * (speed - dx)
        a = _alpha(min_cutoff + beta * dx, dt)
        prev = out[i]
        np.add(out[i - 1], a * diff, out=prev)
    return out[:, 0], out[::-1, 1]


#: :func:`one_euro` with ``pad_s``: the line each padded end is reflected about is fitted to this many seconds.
EDGE_FIT_S = 0.5


def _odd_pad(x: np.ndarray, t: np.ndarray, pad_s: float) -> tuple[np.ndarray, np.ndarray, int]:
    """``x``, ``t`` extended at each end by the samples within ``pad_s`` of it, reflected through the edge's fitted
    value (point reflection: ``2·x_edge - x``, times mirrored), so a trend continues past the ends; returns
    ``(x_padded, t_padded, n_front)``."""
    T = x.shape[0]
    n0 = int(np.clip(np.searchsorted(t - t[0], pad_s, side="right") - 1, 0, T - 1))
    n1 = int(np.clip(np.searchsorted(t[-1] - t[::-1], pad_s, side="right") - 1, 0, T - 1))
    k0 = max(int(np.searchsorted(t - t[0], EDGE_FIT_S, side="right")), 1)
    k1 = max(int(np.searchsorted(t[-1] - t[::-1], EDGE_FIT_S, side="right")), 1)
    a0 = line_at(x[:k0], t[:k0], t[0])                      # each end's value on a line fitted near it
    a1 = line_at(x[::-1][:k1], t[::-1][:k1], t[-1])
    xr, tr = x[::-1][1:n1 + 1], t[::-1][1:n1 + 1]              # x[T-2], x[T-3], ... (n1 of them)
    xp = np.concatenate([2.0 * a0 - x[n0:0:-1], x, 2.0 * a1 - xr])
    tp = np.concatenate([2.0 * t[0] - t[n0:0:-1], t, 2.0 * t[-1] - tr])
    return xp, tp, n0


def one_euro(x, t, *, min_cutoff: float = 1.0, beta: float = 1.0, d_cutoff: float = 1.0,
             pad_s: float = 0.0) -> np.ndarray:
    """Zero-lag One Euro filter (mean of a forward and a backward pass; see the module docstring).

    Each pass starts on the track's first (last) sample and takes about ``1 / (2π·cutoff)`` seconds to settle, so
    near the ends the two passes no longer cancel each other's lag: a track that moves steadily at speed v comes
    out off by about v/2 times that time at the ends. ``pad_s`` > 0 removes this the way zero-phase filtering
    usually does (the "odd" padding of scipy.signal.filtfilt): each end is extended by the ``pad_s`` seconds next to
    it, reflected through the value a line fitted to its first :data:`EDGE_FIT_S` seconds takes there, and the pad
    is cut off afterwards.

    Args:
        x: ``(T, ..., C)`` track without NaN (fill gaps first); the speed that opens the filter is the norm over
            the last axis (e.g. a 3D point's speed, so all coordinates of a joint share one cutoff).
        t: ``(T,)`` seconds, strictly increasing.
        min_cutoff: Hz, the cutoff at rest (lower = smoother when still).
        beta: Hz per unit of speed (units of ``x`` per second): how fast the cutoff opens with speed.
        d_cutoff: Hz, the cutoff of the speed estimate.
        pad_s: seconds of reflected padding at each end (0: none, the filter starts on the end samples).
    Returns:
        ``(T, ..., C)`` float64.
    Raises:
        ValueError: NaN in ``x``, bad shapes, non-positive cutoffs, negative ``pad_s``.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 2:
        raise ValueError(f"one_euro: expected (T, ..., C), got shape {x.shape}")
    t = _time(t, x.shape[0], "one_euro")
    if not (min_cutoff > 0 and d_cutoff > 0 and beta >= 0):
        raise ValueError(f"one_euro: need min_cutoff > 0, d_cutoff > 0, beta >= 0 (got {min_cutoff}, {d_cutoff}, {beta})")
    if not pad_s >= 0:
        raise ValueError(f"one_euro: pad_s must be >= 0 seconds, got {pad_s}")
    if np.isnan(x).any():
        raise ValueError("one_euro: fill gaps before smoothing (NaN in input)")
    T = x.shape[0]
    if T < 3:
        return x.copy()
    n0 = 0
    if pad_s > 0:
        x, t, n0 = _odd_pad(x, t, pad_s)
    fwd, bwd = _one_euro_passes(x, t, min_cutoff, beta, d_cutoff)
    return (0.5 * (fwd + bwd))[n0:n0 + T]


def one_euro_params(strength: float, kind: str = "position") -> dict:
    """Filter parameters for a user-facing smoothing strength (the CLI's ``--smoothing 0..1``).

    ``min_cutoff`` falls geometrically from 2 Hz (strength 0) through 0.32 Hz (0.5, the default) to 0.05 Hz (1);
    ``beta`` (0.7 Hz per m/s for joints) opens the filter on fast motion. At the default this matches the jitter of
    the former fixed 0.45 s Savitzky-Golay window on the shared real clips while keeping more of the wrists' peak
    speed (measured with ``benchmarks/bench_feet.py``'s clips). ``kind="root"`` smooths the root twice as hard;
    ``kind="depth"`` is for the root's distance from the camera, the noisiest axis of a monocular estimate (on the
    closed-loop renders its frame-to-frame acceleration is 5-40x the truth's, and its error is slow: correlation
    0.8-0.9 at one frame, 0.4-0.8 at five): twice the joints' cutoff (0.63 Hz at the default) without the speed
    term (the noise itself would open the filter) and padded ends (``pad_s``: three of the filter's time constants),
    so a steady walk towards the camera keeps its speed up to the clip's ends. Against the true depth of the ten
    closed-loop renders (the lifter's depth scaled to it) it leaves 9.8 cm of mean error, where the root's own
    filter leaves 11.5 cm and the raw depth 13.6 cm; half this cutoff leaves 8.6 cm there but smooths away real
    motion towards the camera (CMU 005_03's, at 1 m/s, in ``tests/core/test_contact_floor.py``) (docs/benchmark.md).
    ``kind="rotation"`` works on quaternion components (speed in quaternion units per second, about half the angular
    speed in rad/s).

    Raises:
        ValueError: strength outside 0..1 or an unknown kind.
    """
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"smoothing strength must be within 0..1, got {strength}")
    base = 2.0 * (0.05 / 2.0) ** strength
    if kind == "position":
        return {"min_cutoff": base, "beta": 0.7, "d_cutoff": 1.0}
    if kind == "root":
        return {"min_cutoff": 0.5 * base, "beta": 0.3, "d_cutoff": 1.0}
    if kind == "depth":
        return {"min_cutoff": 2.0 * base, "beta": 0.0, "d_cutoff": 1.0, "pad_s": 3.0 / (2.0 * np.pi * 2.0 * base)}
    if kind == "rotation":
        return {"min_cutoff": 2.0 * base, "beta": 1.5, "d_cutoff": 1.0}
    raise ValueError(f"one_euro_params: kind must be position, root, depth or rotation, got {kind!r}")


def smooth_rotations(q, t, *, min_cutoff: float = 2.0, beta: float = 3.0, d_cutoff: float = 1.0) -> np.ndarray:
    """One Euro filter on quaternion tracks, on the sphere (sign-continuous, renormalised).

    Args:
        q: ``(T, ..., 4)`` unit quaternions (x, y, z, w), time first.  t: ``(T,)`` seconds.
        min_cutoff, beta, d_cutoff: as :func:`one_euro` (speed in quaternion units per second).
    Returns:
        ``(T, ..., 4)`` float64 unit quaternions, sign-continuous.
    """
    qc = Q.make_continuous(Q.normalize(q))
    if qc.shape[0] < 3:
        return qc
    return Q.normalize(one_euro(qc, t, min_cutoff=min_cutoff, beta=beta, d_cutoff=d_cutoff))


def _median_window(x: np.ndarray, half: int) -> np.ndarray:
    """Running median over ``2·half + 1`` frames (shrunk at the ends), NaN ignored; ``x (T, ...)``."""
    T = x.shape[0]
    pad = np.concatenate([np.full((half,) + x.shape[1:], np.nan), x, np.full((half,) + x.shape[1:], np.nan)])
    win = np.lib.stride_tricks.sliding_window_view(pad, 2 * half + 1, axis=0)
    with np.errstate(all="ignore"):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmedian(win, axis=-1)[:T]


def hampel(x, t, *, window_s: float = 0.3, scale_window_s: float = 1.0, n_sigma: float = 4.0,
           min_dev: float = 0.08) -> tuple[np.ndarray, Repair]:
    """Replace point outliers (a Hampel identifier on each point's distance from a local fit).

    The local reference is a Savitzky-Golay quadratic over ``window_s`` (``core.filters.savgol``), which follows
    fast real motion, unlike a running median, so dance peaks are not taken for outliers. A point (joint) is an
    outlier where its distance from the reference exceeds both ``n_sigma`` robust standard deviations (1.4826 × the
    running median of those distances over ``scale_window_s``, long enough that a spike's own pull on the fit does
    not raise it) and ``min_dev``; outliers are re-interpolated in time from the good samples of the same joint.

    Args:
        x: ``(T, J, C)`` points (any frame); joints with NaN anywhere are left as they are.  t: ``(T,)`` seconds.
        window_s: window length in seconds.  n_sigma: threshold.  min_dev: smallest deviation that can be an
            outlier, in the units of ``x`` (default 8 cm for metres), so noise is never "repaired".
    Returns:
        ``(repaired (T, J, C) float64, Repair)``; ``details["points"]`` counts the points replaced.
    """
    from .filters import savgol

    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(f"hampel: expected (T, J, C), got {x.shape}")
    t = _time(t, x.shape[0], "hampel")
    out = x.copy()
    cols = np.isfinite(x).all(axis=(0, 2))
    if x.shape[0] < 7 or not cols.any():
        return out, Repair("outlier")
    dt = float(np.median(np.diff(t)))
    n = max(5, int(round(window_s / dt)) | 1)
    half = n // 2
    xc = x[:, cols]
    bad = np.zeros(xc.shape[:2], dtype=bool)
    for _ in range(2):                                  # a second pass once the worst are out of the fit
        ref = savgol(np.where(bad[..., None], _interp_bad(xc, bad, t), xc), n, 2)
        dev = np.linalg.norm(xc - ref, axis=-1)          # (T, Jc)
        mad = _median_window(dev, max(half, int(round(0.5 * scale_window_s / dt))))
        bad = (dev > n_sigma * 1.4826 * mad) & (dev > min_dev)   # pass 2 judges against the cleaner fit
    out[:, cols] = _interp_bad(xc, bad, t)
    full = np.zeros(x.shape[:2], dtype=bool)
    full[:, cols] = bad
    frames = np.flatnonzero(full.any(axis=1))
    return out, Repair("outlier", frames, int(frames.size), {"points": int(full.sum())})


def _interp_bad(x: np.ndarray, bad: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``x (T, J, C)`` with the ``bad (T, J)`` samples linearly re-interpolated over time per joint."""
    out = x.copy()
    for j in np.flatnonzero(bad.any(axis=0)):
        ok = ~bad[:, j]
        if ok.sum() >= 2:
            for c in range(x.shape[2]):
                out[~ok, j, c] = np.interp(t[~ok], t[ok], x[ok, j, c])
    return out


def _angles(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.degrees(Q.angle_between(a, b))


def rotation_pops(q, max_step_deg: float = POP_DEG) -> int:
    """Number of frame-to-frame steps above ``max_step_deg`` in ``(T, ..., 4)`` quaternion tracks."""
    q = Q.normalize(q)
    if q.shape[0] < 2:
        return 0
    return int((_angles(q[1:], q[:-1]) > max_step_deg).sum())


def hinge_violations(q, axis, lo_deg: float, hi_deg: float, *, tol_deg: float = 10.0) -> np.ndarray:
    """Frames where a hinge bone's rotation about ``axis`` leaves ``[lo_deg, hi_deg]`` by more than ``tol_deg``.

    The signed hinge angle is that of the twist about ``axis`` (``core.quat.swing_twist``); e.g. MMD knees bend by a
    negative rotation about +X within [-180°, -0.5°] (docs/MMD_FACTS.md §2.2, §2.5).

    Args:
        q: ``(T, 4)`` local key rotations.  axis: ``(3,)`` hinge axis.
    Returns:
        ``(T,)`` bool.
    """
    q = Q.normalize(q)
    _, tw = Q.swing_twist(q, np.broadcast_to(np.asarray(axis, dtype=np.float64), q.shape[:-1] + (3,)))
    a = np.asarray(axis, dtype=np.float64)
    s = np.sum(tw[..., :3] * (a / np.linalg.norm(a)), axis=-1)
    ang = np.degrees(2.0 * np.arctan2(s, tw[..., 3]))
    ang = (ang + 180.0) % 360.0 - 180.0
    return (ang < lo_deg - tol_deg) | (ang > hi_deg + tol_deg)


def repair_rotation_flips(q, *, max_step_deg: float = POP_DEG, max_len: int = 4, invalid=None,
                          spread: bool = True, keep=None) -> tuple[np.ndarray, Repair]:
    """Re-interpolate short excursions of a rotation track: a turn of more than ``max_step_deg`` in one frame that
    comes back (to within ``max_step_deg`` of the frame before it) within ``max_len`` frames, and runs of frames
    flagged ``invalid`` (e.g. :func:`hinge_violations`) up to ``4 × max_len`` frames long.

    The replaced frames are slerped (``core.quat.slerp``) between the good frames on either side. With ``spread``, a
    step that does not come back (a real fast turn, or a persistent error) is spread over the fewest frames around
    it (up to ``max_len`` on each side) that keep every step under ``0.9 × max_step_deg``; steps that remain are
    counted in ``details["kept_steps"]``.

    Args:
        q: ``(T, 4)`` or ``(T, N, 4)`` quaternion tracks (each of the N tracks is repaired on its own).
        invalid: optional ``(T,)`` or ``(T, N)`` bool, frames known to be wrong.
        keep: optional ``(T,)`` bool, frames that must not change (e.g. a planted foot's); repairs that would touch
            them are moved to the other side of the step or skipped.
    Returns:
        ``(repaired, Repair)``; repaired is sign-continuous float64 of q's shape.
    """
    q = Q.make_continuous(Q.normalize(q))
    single = q.ndim == 2
    qq = q[:, None] if single else q.copy()
    T, N = qq.shape[:2]
    inv = np.zeros((T, N), dtype=bool) if invalid is None else np.asarray(invalid, dtype=bool).reshape(T, -1)
    if inv.shape != (T, N):
        raise ValueError(f"repair_rotation_flips: invalid must be ({T},) or ({T}, {N}), got {np.shape(invalid)}")
    changed = np.zeros((T, N), dtype=bool)
    kept = np.zeros(T, dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
    if kept.shape != (T,):
        raise ValueError(f"repair_rotation_flips: keep must be ({T},), got {kept.shape}")
    events, spread_events = 0, 0

    def fill(n, a, b):  # frames a..b-1 replaced between a-1 and b (b may be T: hold)
        nonlocal events
        if kept[a:b].any():
            return False
        if b >= T:
            qq[a:, n] = qq[a - 1, n]
        elif a == 0:
            qq[:b, n] = qq[b, n]
        else:
            w = (np.arange(a, b) - (a - 1)) / (b - (a - 1))
            qq[a:b, n] = Q.slerp(np.broadcast_to(qq[a - 1, n], (b - a, 4)), np.broadcast_to(qq[b, n], (b - a, 4)), w)
        changed[a:b, n] = True
        events += 1
        return True

    # The tracks are independent (fill() changes one track), so each stage runs on every track before the next
    # stage starts, and the frame-to-frame angles that seed a stage are computed for all tracks at once.
    for n in range(N):
        # 1. invalid runs
        idx = np.flatnonzero(inv[:, n])
        if idx.size:
            starts = idx[np.concatenate(([True], np.diff(idx) > 1))]
            ends = idx[np.concatenate((np.diff(idx) > 1, [True]))] + 1
            for a, b in zip(starts, ends):
                if b - a <= 4 * max_len and not (a == 0 and b >= T):
                    fill(n, a, b)
    # 2. out-and-back steps
    steps = _angles(qq[1:], qq[:-1]) > max_step_deg if T > 1 else np.zeros((0, N), dtype=bool)
    for n in range(N):
        cand = np.flatnonzero(steps[:, n]) + 1
        for i in cand:
            if _angles(qq[i, n], qq[i - 1, n]) <= max_step_deg:
                continue  # already repaired as part of an earlier excursion
            ref = qq[i - 1, n]
            for L in range(1, max_len + 1):
                if i + L >= T:
                    break
                if _angles(qq[i + L, n], ref) <= max_step_deg:
                    fill(n, i, i + L)
                    break
    # 3. steps that stay: spread over the fewest frames around them that keep every step under the limit
    if spread:
        steps = _angles(qq[1:], qq[:-1]) > max_step_deg if T > 1 else np.zeros((0, N), dtype=bool)
        for n in range(N):
            cand = np.flatnonzero(steps[:, n]) + 1
            for i in cand:
                if _angles(qq[i, n], qq[i - 1, n]) <= max_step_deg:
                    continue
                done = False
                for m in range(1, max_len + 1):
                    for a, b in ((i - m, i + m), (i, i + 2 * m), (i - 2 * m, i)):
                        a, b = max(a, 1), min(b, T - 1)
                        if b > a and _angles(qq[b, n], qq[a - 1, n]) / (b - a + 1) <= 0.9 * max_step_deg \
                                and fill(n, a, b):
                            spread_events += 1
                            done = True
                            break
                    if done:
                        break
    out = Q.make_continuous(qq)
    out = out[:, 0] if single else out
    frames = np.flatnonzero(changed.any(axis=1))
    steps_left = rotation_pops(out, max_step_deg)
    return out, Repair("flip", frames, events, {"kept_steps": steps_left, "spread": spread_events})


def clamp_rotation_angle(q, max_deg: float) -> tuple[np.ndarray, int]:
    """Limit the rotation angle of ``(..., 4)`` quaternions to ``max_deg`` (axis kept): a joint-range limit for bones
    whose range is a cone (e.g. 足首 relative to the shin). Returns ``(clamped, number of rotations clamped)``."""
    q = Q.normalize(q)
    axis, ang = Q.to_axis_angle(q)
    lim = np.radians(max_deg)
    over = ang > lim
    if not over.any():
        return q.copy(), 0
    out = q.copy()
    out[over] = Q.from_axis_angle(axis[over], np.full(int(over.sum()), lim))
    out[over] *= np.sign(np.sum(out[over] * q[over], axis=-1, keepdims=True) + 1e-12)
    return out, int(over.sum())


#: Left/right joint groups of ``CANONICAL`` that :func:`repair_swaps` tests on their own (a detector often swaps
#: the legs without the arms, or the whole body when the dancer turns).
SWAP_GROUPS: dict[str, tuple[str, ...]] = {
    "legs": ("LHip", "LKnee", "LFoot", "LHeel", "LFootIndex"),
    "arms": ("LShoulder", "LElbow", "LWrist", "LHandIndex", "LHandPinky"),
}


def _body_scale(x: np.ndarray) -> float:
    c = {n: i for i, n in enumerate(CANONICAL)}
    torso = np.linalg.norm(x[:, c["Thorax"]] - x[:, c["Hip"]], axis=-1)
    hips = np.linalg.norm(x[:, c["LHip"]] - x[:, c["RHip"]], axis=-1)
    s = np.nanmedian(np.concatenate([torso, 2.0 * hips]))
    return float(s) if np.isfinite(s) and s > 0 else 1.0


def repair_swaps(points, *, confidence=None, groups: dict | None = None, switch_cost: float = 0.05,
                 swapped_cost: float = 0.02, max_run: int = 4, min_separation: float = 0.3) -> tuple[np.ndarray, Repair]:
    """Undo temporary left/right label exchanges (detector swaps when the dancer turns).

    For each group (:data:`SWAP_GROUPS`, left-side names; the right side is the mirror), a two-state path over the
    frames -- labels as given (0) or exchanged (1) -- is chosen by Viterbi to minimise the sum of frame-to-frame
    smoothness costs ``Σ_j w_j ‖x_{t+1}[j] - 2 x_t[j] + x_{t-1}[j]‖² / s²`` (squared acceleration, so a real crossing
    of the limbs at steady speed costs nothing while a label exchange is a spike; ``s`` = the body scale, median
    torso length; ``w_j`` = the smallest confidence of the three, 1 without confidences) plus ``switch_cost`` per change of state and
    ``swapped_cost`` per frame spent exchanged (so the labelling of most frames is kept). Frames on state 1 get their
    left and right joints of that group exchanged, except in runs longer than ``max_run`` frames (default 4, about
    0.15 s: a detector swap is a glitch of a frame or two; on the closed-loop renders, undoing runs of 5-30 frames
    was wrong about as often as right and cost 20 mm MPJPE, while runs of up to 4 were right), and in runs where the
    two sides are closer than ``min_separation`` body scales (median over the run): there the exchange is not
    visible and undoing it could only flip which limb is in front. Remove single-joint
    outliers first (:func:`hampel`): a glitch is not a swap.

    Args:
        points: ``(T, 27, D)`` ``CANONICAL`` points: 2D px (D = 2 or 3 with confidence last) or 3D metres; NaN
            joints are ignored. With D = 3 and ``confidence=None`` all three channels are coordinates.
        confidence: optional ``(T, 27)`` weights in [0, 1].
        groups: name -> left-side joint names (default :data:`SWAP_GROUPS`).
    Returns:
        ``(repaired (T, 27, D) float64, Repair)``; ``details`` maps group -> number of swapped runs, and
        ``"masks"`` -> {group: ``(T,)`` bool frames exchanged} (for :func:`apply_swaps`).
    """
    x = np.asarray(points, dtype=np.float64)
    if x.ndim != 3 or x.shape[1] != len(CANONICAL):
        raise ValueError(f"repair_swaps expects (T, {len(CANONICAL)}, D), got {x.shape}")
    T = x.shape[0]
    coords = x
    conf = np.ones(x.shape[:2]) if confidence is None else np.asarray(confidence, dtype=np.float64)
    if conf.shape != x.shape[:2]:
        raise ValueError(f"repair_swaps: confidence must be {x.shape[:2]}, got {conf.shape}")
    s = _body_scale(coords)
    groups = SWAP_GROUPS if groups is None else groups
    out = x.copy()
    changed = np.zeros(T, dtype=bool)
    details, events, masks = {}, 0, {}
    if T < 3:
        return out, Repair("swap", details={"masks": {}})
    for name, left in groups.items():
        li = np.array([CANONICAL.index(n) for n in left])
        ri = CANONICAL_MIRROR[li]
        idx = np.concatenate([li, ri])
        sw = np.concatenate([ri, li])
        p = coords[:, idx]                       # (T, K, D) as labelled
        ps = coords[:, sw]                       # exchanged
        w = np.minimum(conf[:, idx], conf[:, sw])
        states = (p, ps)
        ww = np.minimum(np.minimum(w[2:], w[1:-1]), w[:-2])               # (T-2, K)
        # acc[t, a, b, c]: squared acceleration at frame t+1 for states a, b, c at frames t, t+1, t+2
        acc = np.zeros((T - 2, 2, 2, 2))
        for a in range(2):
            for b in range(2):
                for c in range(2):
                    d = np.sum((states[c][2:] - 2.0 * states[b][1:-1] + states[a][:-2]) ** 2, axis=-1) / s ** 2
                    acc[:, a, b, c] = np.where(np.isfinite(d), d * ww, 0.0).sum(axis=1)
        # Viterbi over pair states (s_{t-1}, s_t) -> index 2*s_{t-1} + s_t.
        unary = np.array([0.0, swapped_cost])
        best = np.array([unary[a] + unary[b] + switch_cost * (a != b) + switch_cost * a
                         for a in range(2) for b in range(2)])
        back = np.zeros((T, 4), dtype=np.int64)
        for t_ in range(2, T):
            new = np.full(4, np.inf)
            for b in range(2):
                for c in range(2):
                    cand = [best[2 * a + b] + acc[t_ - 2, a, b, c] for a in range(2)]
                    k = int(np.argmin(cand))
                    new[2 * b + c] = cand[k] + unary[c] + switch_cost * (b != c)
                    back[t_, 2 * b + c] = 2 * k + b
            best = new
        path = np.zeros(T, dtype=np.int64)
        st = int(np.argmin(best))
        path[-1], path[-2] = st % 2, st // 2
        for t_ in range(T - 1, 1, -1):
            st = back[t_, st]
            path[t_ - 2] = st // 2
        on = path == 1
        if on.any():
            d = np.diff(np.concatenate(([0], on.astype(np.int64), [0])))
            sep = np.nanmean(np.linalg.norm(coords[:, li] - coords[:, ri], axis=-1), axis=1) / s   # (T,)
            for a, b in zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)):
                # too long: ambiguous labels (a spin), not a swap; sides too close together (a side view, legs
                # overlapping): the exchange is not visible and flipping it would flip which limb is in front
                if b - a > max_run or not np.nanmedian(sep[a:b]) >= min_separation:
                    on[a:b] = False
        if on.any():
            out[np.ix_(on, idx)] = x[np.ix_(on, sw)]
            runs = int(np.sum(np.diff(np.concatenate(([0], on.astype(np.int64)))) == 1))
            details[name] = runs
            masks[name] = on
            events += runs
            changed |= on
    frames = np.flatnonzero(changed)
    details["masks"] = masks
    return out, Repair("swap", frames, events, details)


def apply_swaps(points, masks: dict, groups: dict | None = None) -> np.ndarray:
    """Exchange left and right joints of ``(T, 27, D)`` ``CANONICAL`` points on the frames a :func:`repair_swaps`
    found (``repair.details["masks"]``: group -> ``(T,)`` bool), e.g. to give the 3D joints the labels repaired on
    the 2D keypoints they were lifted from (a lifter's 3D shares its 2D's labels)."""
    x = np.asarray(points, dtype=np.float64)
    out = x.copy()
    groups = SWAP_GROUPS if groups is None else groups
    for name, on in masks.items():
        li = np.array([CANONICAL.index(n) for n in groups[name]])
        ri = CANONICAL_MIRROR[li]
        idx, sw = np.concatenate([li, ri]), np.concatenate([ri, li])
        on = np.asarray(on, dtype=bool)
        if on.any():
            out[np.ix_(on, idx)] = x[np.ix_(on, sw)]
    return out


def repair_root_jumps(root, t, *, max_speed: float = 6.0, window_s: float = 0.5,
                      min_dev: float = 0.3, noise_window_s: float = 2.0) -> tuple[np.ndarray, Repair]:
    """Make a root (pelvis) track physically plausible.

    1. Spikes: positions farther than ``min_dev`` (and 4 robust sigmas) from the running median over ``window_s``
       are replaced by linear interpolation between their good neighbours.
    2. Jumps: wherever the remaining step between frames is faster than ``max_speed`` and stands out of the track's
       own frame-to-frame noise (a coordinate more than 4 robust sigmas from the running median of the steps over
       ``noise_window_s``), the excess displacement is removed from that frame on (the root is held; nobody covers
       metres in a frame). A noisy monocular depth steps faster than ``max_speed`` back and forth without going
       anywhere (on the closed-loop walks and run, 0.2-0.45 m steps at a robust step sigma of 0.13-0.16 m): holding
       those steps would add their excesses up into a drift, so they are left to the smoothing.

    Args:
        root: ``(T, 3)`` positions, metres (camera frame, ``core.conventions``), NaN allowed (filled by interpolation).
        t: ``(T,)`` seconds.
        max_speed: m/s; the fastest plausible root speed.  window_s, min_dev: spike detection (seconds, metres).
        noise_window_s: seconds over which the steps' noise is measured.
    Returns:
        ``(repaired (T, 3) float64, Repair)``; ``details`` has ``spikes`` and ``jumps`` (frame counts) and
        ``max_speed_before`` (m/s).
    """
    r = np.asarray(root, dtype=np.float64)
    if r.ndim != 2 or r.shape[1] != 3:
        raise ValueError(f"repair_root_jumps expects (T, 3), got {r.shape}")
    t = _time(t, r.shape[0], "repair_root_jumps")
    T = r.shape[0]
    out = r.copy()
    ok = np.isfinite(out).all(axis=1)
    if ok.sum() == 0:
        return out, Repair("root_jump")
    for c in range(3):
        out[:, c] = np.interp(t, t[ok], out[ok, c])
    if T < 3:
        return out, Repair("root_jump")
    dt = np.diff(t)
    speed_before = float(np.max(np.linalg.norm(np.diff(out, axis=0), axis=1) / dt))
    # 1. spikes
    half = max(2, int(round(window_s / float(np.median(dt)) / 2)))
    med = _median_window(out[:, None, :], half)[:, 0]
    dev = np.linalg.norm(out - med, axis=1)
    mad = _median_window(dev[:, None], half)[:, 0]
    spike = (dev > min_dev) & (dev > 4.0 * 1.4826 * mad)
    if spike.any() and (~spike).sum() >= 2:
        good = ~spike
        for c in range(3):
            out[spike, c] = np.interp(t[spike], t[good], out[good, c])
    # 2. jumps: too fast, and out of the steps' own noise
    step = np.diff(out, axis=0)
    sp = np.linalg.norm(step, axis=1) / dt
    hs = max(2, int(round(noise_window_s / float(np.median(dt)) / 2)))
    dev_s = np.abs(step - _median_window(step, hs))
    sigma_s = 1.4826 * _median_window(dev_s, hs)
    jump = (sp > max_speed) & (dev_s > 4.0 * sigma_s).any(axis=1)
    if jump.any():
        excess = np.where(jump[:, None], step * (1.0 - (max_speed / np.maximum(sp, 1e-12)))[:, None], 0.0)
        out[1:] -= np.cumsum(excess, axis=0)
    frames = np.unique(np.concatenate([np.flatnonzero(spike), np.flatnonzero(jump) + 1])).astype(np.int64)
    count = int(np.sum(np.diff(np.concatenate(([0], spike.astype(np.int64)))) == 1) + jump.sum())
    return out, Repair("root_jump", frames, count, {"spikes": int(spike.sum()), "jumps": int(jump.sum()),
                                                    "max_speed_before": speed_before})
