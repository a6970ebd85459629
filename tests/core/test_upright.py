"""Which way up a video is (core.upright), on real detections: Keypoint R-CNN's 2D of the shared lia_kim dance
(1920x1080) stand upright; the same keypoints turned as a sideways or upside-down video would show them ask for the
turn that undoes it; a dance with floor work on part of its frames, or too few seen torsos, is left as it is."""
from __future__ import annotations

import numpy as np
import pytest

from core import upright
from core.keypoints_io import load_keypoints


@pytest.fixture(scope="module")
def dance(shared_data):
    p = load_keypoints(shared_data / "keypoints" / "lia_kim_dance" / "detectron2_raw.npz")
    kp = p.keypoints_canonical_2d().astype(np.float64)
    kp[..., 2] = np.where(np.nan_to_num(kp[..., 2]) > 0, 0.9, 0.0)      # detectron2's scores: a kept point is seen
    return kp, p.image_size, p.detected


def _turn(kp, size, k):
    """Keypoints as on the frames turned ``k`` x 90° counter-clockwise (numpy's rot90 of the image)."""
    w, h = size
    x, y = kp[..., 0].copy(), kp[..., 1].copy()
    out = kp.copy()
    for _ in range(k % 4):
        x, y, w, h = y, w - 1 - x, h, w      # a pixel (x, y) of a w x h image goes to (y, w - 1 - x)
    out[..., 0], out[..., 1] = x, y
    return out


def test_the_dance_stands_upright(dance):
    kp, size, det = dance
    d = upright.torso_directions(kp)
    assert (d[det] == 0).mean() > 0.9
    assert upright.turn_needed(kp, det) == (0, 0.0)


@pytest.mark.parametrize("k, undo", [(1, 270), (2, 180), (3, 90)])
def test_a_turned_video_asks_for_the_turn_that_undoes_it(dance, k, undo):
    kp, size, det = dance
    turn, share = upright.turn_needed(_turn(kp, size, k), det)
    assert turn == undo and share > 0.9
    # the turn asked for brings the keypoints back upright
    back = _turn(_turn(kp, size, k), size if k % 2 == 0 else size[::-1], undo // 90)
    assert np.allclose(back[..., :2], kp[..., :2], equal_nan=True)


def test_floor_work_on_part_of_the_dance_and_too_few_torsos_turn_nothing(dance):
    kp, size, det = dance
    part = kp.copy()
    n = int(0.45 * len(kp))
    part[:n] = _turn(kp, size, 1)[:n]           # lying on her side for 45% of the clip
    assert upright.turn_needed(part, det) == (0, 0.0)
    few = _turn(kp, size, 1)
    few[upright.MIN_FRAMES - 1:, :, 2] = 0.0     # the torso seen on 9 frames only
    assert upright.turn_needed(few) == (0, 0.0)
    with pytest.raises(ValueError, match="CANONICAL"):
        upright.torso_directions(kp[:, :17])
