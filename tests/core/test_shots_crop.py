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


def test_reanchor_removes_the_jump_at_a_cut_and_keeps_each_shots_travel():
    t = np.arange(60)
    root = np.stack([0.02 * t, np.zeros(60), np.full(60, 3.0)], axis=1)
    root[30:] += [1.5, 0.0, -1.0]                    # the camera cut: the root jumps, the dancer did not
    out, off = shots.reanchor(root, [(0, 30), (30, 60)], axes=(0, 2))
    assert np.allclose(np.diff(out[:, 0]), 0.02) and np.allclose(out[:, 2], 3.0)
    assert np.allclose(off[1], [-1.5, 0.0, 1.0]) and np.allclose(off[0], 0)
    assert np.allclose(shots.reanchor(root, [(0, 60)])[0], root)
    with pytest.raises(ValueError):
        shots.reanchor(root, [(0, 20), (30, 60)])
