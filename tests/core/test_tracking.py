"""core.tracking.select_track: follow one person through 0..N detections per frame."""
from __future__ import annotations

import numpy as np
import pytest

from core import safe_npz, tracking


def _box(cx, cy, w, h):
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def test_real_detectron2_file_frames_with_and_without_people(shared_data):
    d = safe_npz.load_npz(shared_data / "keypoints" / "lia_kim_dance" / "detectron2_raw.npz")
    entries = [np.asarray(b[1], dtype=np.float64).reshape(-1, 5) for b in d["boxes"]]
    idx = tracking.select_track([e[:, :4] for e in entries], [e[:, 4] for e in entries])
    assert idx.shape == (303,) and idx.dtype == np.int64
    counts = np.array([len(e) for e in entries])
    assert np.array_equal(idx >= 0, counts > 0)  # one dancer: every detection is hers, no frame invented
    assert np.all(idx[counts > 0] < counts[counts > 0])


def test_crossing_people_keep_their_identity():
    """Two people of equal size cross at the same height; detection order is shuffled; the one followed keeps
    moving the same way (needs the constant-velocity prediction: by nearest box alone it would swap at frame 31)."""
    rng = np.random.default_rng(1)
    boxes, scores, truth = [], [], []
    for t in range(60):
        a = _box(100 + 10 * t, 300, 120, 300)      # walks right, seen in every frame: the most persistent
        b = _box(705 - 10 * t, 300, 120, 300)      # walks left; after frame 30 b is nearer a's last box
        dets = [(a, 0.9, True), (b, 0.95, False)]
        if t in range(40, 55):
            dets = dets[:1]                        # b leaves early: a is the most persistent
        order = rng.permutation(len(dets))
        boxes.append(np.array([dets[i][0] for i in order]))
        scores.append(np.array([dets[i][1] for i in order]))
        truth.append(int(np.flatnonzero([dets[i][2] for i in order])[0]))
    idx = tracking.select_track(boxes, scores)
    assert np.array_equal(idx, truth)


def test_bystander_missed_frames_and_false_positives():
    boxes, scores = [], []
    for t in range(50):
        dancer = _box(640 + 40 * np.sin(t / 5), 360, 200, 500)
        dets = [dancer, _box(80, 600, 50, 100), _box(1200, 100, 30, 30)]  # a child and a flicker
        sc = [0.8, 0.99, 0.7]
        if t in (10, 11, 12, 30):                  # missed by the detector
            dets, sc = dets[1:], sc[1:]
        if t % 7 == 0:                             # the flicker comes and goes
            dets, sc = dets[:-1], sc[:-1]
        boxes.append(np.array(dets))
        scores.append(np.array(sc))
    idx = tracking.select_track(boxes, scores)
    for t in range(50):
        if t in (10, 11, 12, 30):
            assert idx[t] == -1
        else:
            assert idx[t] >= 0 and np.isclose(boxes[t][idx[t]][2] - boxes[t][idx[t]][0], 200)


def test_a_long_absence_is_stitched_back():
    boxes = []
    for t in range(80):
        if 20 <= t < 60:                           # gone 40 frames (> max_gap): a new tracklet afterwards
            boxes.append(np.zeros((0, 4)))
        else:
            boxes.append(np.array([_box(500 + t, 300, 150, 400), _box(1000, 500, 40, 80)]))
    idx = tracking.select_track(boxes, None, max_gap=15)
    assert np.all(idx[:20] == 0) and np.all(idx[60:] == 0) and np.all(idx[20:60] == -1)


def test_empty_and_invalid_inputs():
    assert tracking.select_track([], []).shape == (0,)
    assert np.all(tracking.select_track([np.zeros((0, 4))] * 3, [np.zeros(0)] * 3) == -1)
    # A NaN box is never chosen.
    idx = tracking.select_track([np.array([[np.nan, 0, 1, 1], [0, 0, 10, 10]])], [np.array([0.9, 0.5])])
    assert idx.tolist() == [1]
    with pytest.raises(ValueError, match="frame 1"):
        tracking.select_track([np.zeros((1, 4)), np.zeros((2, 3))])
    with pytest.raises(ValueError, match="2 boxes but 1 scores"):
        tracking.select_track([np.zeros((2, 4))], [np.zeros(1)])
    with pytest.raises(ValueError, match="frames of scores"):
        tracking.select_track([np.zeros((2, 4))], [])


def test_box_iou():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 0, 0]])
    assert np.allclose(tracking.box_iou(a, b), [[1.0, 50 / 150, 0.0, 0.0]])
