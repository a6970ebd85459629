"""Gap filling, resampling and smoothing on joint tracks."""
from __future__ import annotations

import numpy as np
import pytest

from core import filters


def _track(T=200, fps=25.0, seed=0):
    t = np.arange(T) / fps
    # Dance-like joint motion in metres: ~0.3 m swings at 0.5-1.2 Hz, with 1.5 cm detector noise.
    truth = 0.3 * np.stack([np.sin(2 * np.pi * 1.2 * t), np.cos(2 * np.pi * 0.5 * t), np.sin(2 * np.pi * 0.8 * t + 1)], -1)
    truth = truth[:, None, :] * np.array([1.0, 0.5, 1.5])[None, :, None]  # (T, 3 joints, 3)
    noisy = truth + np.random.default_rng(seed).normal(0, 0.015, truth.shape)
    return t, truth, noisy


def test_fill_gaps_interpolates_linearly_and_reports_runs():
    t = np.arange(10) / 10.0
    x = np.stack([t * 2.0, -t], axis=-1)[:, None, :]  # linear tracks: interpolation must be exact
    valid = np.ones(10, bool)
    valid[[3, 4, 7]] = False
    filled, rep = filters.fill_gaps(np.where(valid[:, None, None], x, 123.0), t, valid)
    np.testing.assert_allclose(filled, x, atol=1e-12)
    assert rep.filled.tolist() == [3, 4, 7] and rep.runs == ((3, 4), (7, 7))
    assert "3 frames" in rep.describe(t) and "0.30s-0.40s" in rep.describe(t)


def test_fill_gaps_holds_ends_and_keeps_absent_columns_nan():
    t = np.arange(5.0)
    x = np.full((5, 2, 1), np.nan)
    x[2, 0, 0] = 4.0
    filled, rep = filters.fill_gaps(x, t)
    assert np.all(filled[:, 0, 0] == 4.0)
    assert np.all(np.isnan(filled[:, 1, 0]))
    assert rep.filled.tolist() == [0, 1, 3, 4]


def test_fill_gaps_rejects_bad_shapes_and_time():
    with pytest.raises(ValueError):
        filters.fill_gaps(np.zeros((4, 2)), np.arange(5.0))
    with pytest.raises(ValueError, match="increase"):
        filters.fill_gaps(np.zeros((3, 2)), np.array([0.0, 1.0, 1.0]))


def test_resample_25_to_30_fps_is_exact_for_linear_motion():
    t = np.arange(26) / 25.0
    x = np.stack([3 * t, 1 - t], -1)
    t_new = np.arange(31) / 30.0
    y = filters.resample(x, t, t_new)
    np.testing.assert_allclose(y, np.stack([3 * t_new, 1 - t_new], -1), atol=1e-12)


def test_smooth_reduces_noise_and_jitter_without_lag():
    t, truth, noisy = _track()
    s = filters.smooth(noisy, t, 0.5)
    err_noisy = np.abs(noisy - truth).mean()
    err_smooth = np.abs(s - truth).mean()
    assert err_smooth < 0.6 * err_noisy
    assert filters.jitter(s, t) < 0.5 * filters.jitter(noisy, t)
    # Zero phase: the smoothed sine is not shifted in time (cross-correlation peaks at lag 0).
    a = s[20:-20, 0, 0] - s[20:-20, 0, 0].mean()
    b = truth[20:-20, 0, 0] - truth[20:-20, 0, 0].mean()
    lags = range(-5, 6)
    corr = [np.dot(np.roll(a, k), b) for k in lags]
    assert list(lags)[int(np.argmax(corr))] == 0


def test_smooth_strength_zero_is_identity_and_strength_is_monotonic():
    t, truth, noisy = _track()
    np.testing.assert_array_equal(filters.smooth(noisy, t, 0.0), noisy)
    still = np.zeros_like(noisy) + np.random.default_rng(5).normal(0, 0.015, noisy.shape)  # a dancer holding a pose
    j = [filters.jitter(filters.smooth(still, t, s), t) for s in (0.0, 0.2, 0.5, 0.9)]
    assert j[0] > j[1] > j[2] > j[3]
    with pytest.raises(ValueError):
        filters.smooth(noisy, t, 1.5)


def test_savgol_matches_scipy_including_the_ends():
    signal = pytest.importorskip("scipy.signal", reason="scipy is the reference implementation")
    _, _, noisy = _track(T=57)
    for window, order in ((5, 2), (11, 2), (11, 3), (21, 4)):
        np.testing.assert_allclose(filters.savgol(noisy, window, order),
                                   signal.savgol_filter(noisy, window, order, axis=0, mode="interp"), atol=1e-10)


def test_savgol_keeps_polynomials_and_rejects_bad_input():
    t = np.linspace(-1, 1, 40)
    quad = (2 * t ** 2 - t + 0.5)[:, None]
    np.testing.assert_allclose(filters.savgol(quad, 9, 2), quad, atol=1e-12)
    with pytest.raises(ValueError, match="odd"):
        filters.savgol(quad, 8, 2)
    with pytest.raises(ValueError, match="fill gaps"):
        filters.savgol(np.array([0.0, np.nan, 1.0, 2.0, 3.0]), 3, 1)


def test_line_at_extrapolates_the_least_squares_line():
    from core.filters import line_at

    t = np.array([0.0, 0.1, 0.2, 0.3])
    x = np.stack([2.0 + 3.0 * t, -1.0 * t], axis=1) + np.array([[0.01], [-0.01], [-0.01], [0.01]])
    np.testing.assert_allclose(line_at(x, t, 0.5), [3.5, -0.5], atol=1e-12)   # the noise is symmetric: no bias
    np.testing.assert_array_equal(line_at(x[:1], t[:1], 9.0), x[0])          # one sample: itself
