"""core.shots and core.crop_help on frames built from numpy (the real-video cases are in tests/worker)."""
from __future__ import annotations

import numpy as np
import pytest

from core import crop_help, shots


def _scene(rng, n, colour, drift):
    """n frames of a textured scene of one dominant colour, panning slowly (continuous change, no cut)."""
    base = (rng.integers(0, 60, (120, 200 + 2 * n, 3)) + np.array(colour)).clip(0, 255).astype(np.uint8)
    return [base[:, drift * i:drift * i + 200] for i in range(n)]


def test_one_cut_between_two_scenes_and_none_inside_a_pan():
    rng = np.random.default_rng(0)
    frames = _scene(rng, 30, (180, 60, 40), 2) + _scene(rng, 30, (40, 90, 170), 3)
    sig = np.stack([shots.frame_signature(f) for f in frames])
    assert sig.shape == (60, shots.SIGNATURE_SIZE) and np.allclose(sig.sum(axis=1), 1.0)
    assert shots.detect_shots(sig).tolist() == [[0, 30], [30, 60]]
    assert shots.detect_shots(sig[:30]).tolist() == [[0, 30]]
    assert shots.detect_shots(np.zeros((0, 5))).shape == (0, 2)
    with pytest.raises(ValueError):
        shots.frame_signature(np.zeros((4, 4)))


def _studio(rng, n, horizon, x0, size):
    """n frames of one grey set (wall above the horizon row, floor below) with a dark figure of ``size`` px walking
    slowly from column ``x0``: a camera on a dance studio."""
    out = []
    for i in range(n):
        img = np.empty((120, 200, 3))
        img[:horizon] = 175.0
        img[horizon:] = 120.0
        x = x0 + i
        img[40:40 + size, x:x + size // 3] = 20.0
        out.append((img + rng.normal(0, 3, img.shape)).clip(0, 255).astype(np.uint8))
    return out


def test_a_cut_between_two_angles_on_the_same_set_is_found():
    """The same colours before and after: only their layout changes (the horizon, the figure's place and size). The
    whole-frame histogram hardly moves; the spike of the quarter histograms stands out of the quiet frames around."""
    rng = np.random.default_rng(2)
    frames = _studio(rng, 30, 50, 60, 45) + _studio(rng, 30, 66, 110, 66)
    sig = np.stack([shots.frame_signature(f) for f in frames])
    d = shots.signature_distance(sig)
    assert d[30] < 0.35                       # below the colour-change threshold: the loud rule alone misses it
    assert shots.detect_shots(sig).tolist() == [[0, 30], [30, 60]]
    assert shots.detect_shots(sig, quiet_threshold=1.0).tolist() == [[0, 60]]
    assert shots.detect_shots(sig[:30]).tolist() == [[0, 30]]   # a figure moving on a still set is no cut
    # a strobe: one frame much brighter, then the same scene again: no cut (the scene comes back)
    flashed = list(frames[:30])
    flashed[12] = np.clip(flashed[12].astype(int) + 90, 0, 255).astype(np.uint8)
    fsig = np.stack([shots.frame_signature(f) for f in flashed])
    assert shots.signature_distance(fsig)[12] > 0.35                # loud enough for either rule
    assert shots.detect_shots(fsig).tolist() == [[0, 30]]
    flashed[20] = flashed[21] = np.clip(flashed[20].astype(int) + 90, 0, 255).astype(np.uint8)   # two frames
    assert shots.detect_shots(np.stack([shots.frame_signature(f) for f in flashed])).tolist() == [[0, 30]]


def test_still_half_found_and_moving_halves_left_alone():
    rng = np.random.default_rng(1)
    still = rng.integers(0, 255, (60, 80, 3)).astype(np.uint8)
    frames = np.stack([np.concatenate([still, rng.integers(0, 255, (60, 80, 3)).astype(np.uint8)], axis=1)
                       for _ in range(8)])
    s = crop_help.find_static_half(frames, frame_size=(320, 120))
    assert s.still == "left" and s.crop == (160, 0, 160, 120) and "--crop 160,0,160,120" in s.note
    assert crop_help.find_static_half(frames[:, :, ::-1]).still == "right"
    moving = np.stack([rng.integers(0, 255, (60, 160, 3)).astype(np.uint8) for _ in range(8)])
    assert crop_help.find_static_half(moving).crop is None
    assert crop_help.find_static_half(frames[:1]).crop is None


def test_lift_ranges_keep_shots_apart_unless_one_has_no_detection():
    """Each shot is lifted on its own; a shot the detector never found the dancer in goes with the shot before it
    (the first such shot with the one after it), since alone it holds nothing to lift."""
    cuts = [(0, 10), (10, 20), (20, 30), (30, 40)]
    det = np.ones(40, dtype=bool)
    assert shots.lift_ranges(cuts, det) == cuts
    det[20:30] = False                                    # the third shot: nobody found
    assert shots.lift_ranges(cuts, det) == [(0, 10), (10, 30), (30, 40)]
    det = np.ones(40, dtype=bool)
    det[0:10] = False                                     # the first shot: nobody found
    assert shots.lift_ranges(cuts, det) == [(0, 20), (20, 30), (30, 40)]
    assert shots.lift_ranges(None, np.ones(7, dtype=bool)) == [(0, 7)]
