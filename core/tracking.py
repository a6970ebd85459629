"""Follow one person through per-frame detections (numpy only).

Detectors (detectron2 Keypoint R-CNN, OpenPose) return 0, 1 or several people per frame, in no stable order.
:func:`select_track` picks, for every frame, the detection that belongs to the dancer: the *largest and most
persistent* person. Method (a greedy tracking-by-detection in the spirit of SORT, Bewley et al., ICIP 2016, without
the Kalman filter):

1. **Tracklets.** Frames are visited in order; each live tracklet predicts its box at the current frame by constant
   velocity of its box centre (from its last two boxes). Detections are matched to tracklets greedily by the lowest
   cost ``1 - IoU(predicted, detection)``, accepted when ``IoU >= iou_threshold`` or when the centre distance is
   below ``centre_threshold`` x the predicted box diagonal *and* the box sizes agree within a factor ``size_ratio``.
   A tracklet survives ``max_gap`` frames without a match (missed detections); unmatched detections start tracklets.
2. **Choice.** Each tracklet scores ``sum over its frames of (box area x detection score)``: large people seen often
   win over small, short-lived or low-confidence ones (bystanders, false positives).
3. **Stitching.** Other tracklets that do not overlap the chosen frames in time and whose first (or last) box matches
   the chosen track's neighbouring box (the test of 1 with twice the centre threshold) are appended, best score first, so a
   dancer lost for longer than ``max_gap`` frames is picked up again.

Boxes are ``xyxy`` image px (``core.conventions`` ``image`` frame).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["select_track", "box_iou"]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every pair of boxes.

    Args:
        a: ``(N, 4)`` xyxy px; b: ``(M, 4)`` xyxy px.
    Returns:
        ``(N, M)`` float64 in [0, 1] (0 for degenerate boxes).
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return iou


def _area(b: np.ndarray) -> np.ndarray:
    return np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)


def _centre(b: np.ndarray) -> np.ndarray:
    return 0.5 * (b[..., :2] + b[..., 2:4])


def _compatible(pred: np.ndarray, dets: np.ndarray, iou_threshold: float, centre_threshold: float,
                size_ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Match test of one predicted box ``(4,)`` against detections ``(M, 4)``: (ok (M,) bool, cost (M,))."""
    iou = box_iou(pred[None], dets)[0]
    diag = np.hypot(pred[2] - pred[0], pred[3] - pred[1])
    dist = np.linalg.norm(_centre(dets) - _centre(pred), axis=1)
    pa, da = _area(pred), _area(dets)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where((pa > 0) & (da > 0), np.maximum(pa / da, da / pa), np.inf)
    near = (dist <= centre_threshold * max(diag, 1e-9)) & (ratio <= size_ratio ** 2)
    ok = (iou >= iou_threshold) | near
    cost = (1.0 - iou) + 0.5 * dist / max(diag, 1e-9)
    return ok, cost


def _check_inputs(boxes: Sequence, scores: Sequence | None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    bxs: list[np.ndarray] = []
    scs: list[np.ndarray] = []
    if scores is not None and len(scores) != len(boxes):
        raise ValueError(f"select_track: {len(boxes)} frames of boxes but {len(scores)} frames of scores")
    for t, b in enumerate(boxes):
        b = np.asarray(b, dtype=np.float64)
        if b.size == 0:
            b = np.zeros((0, 4))
        if b.ndim != 2 or b.shape[1] < 4:
            raise ValueError(f"select_track: frame {t}: boxes must be (N, 4) xyxy, got shape {b.shape}")
        b = b[:, :4]
        if scores is None:
            s = np.ones(len(b))
        else:
            s = np.asarray(scores[t], dtype=np.float64).reshape(-1)
            if s.shape != (len(b),):
                raise ValueError(f"select_track: frame {t}: {len(b)} boxes but {s.size} scores")
        finite = np.all(np.isfinite(b), axis=1) & np.isfinite(s)
        # Keep indices stable: non-finite boxes get score -inf and a zero box so they never win.
        b = np.where(finite[:, None], b, 0.0)
        s = np.where(finite, s, -np.inf)
        bxs.append(b)
        scs.append(s)
    return bxs, scs


def select_track(boxes: Sequence[np.ndarray], scores: Sequence[np.ndarray] | None = None, *,
                 iou_threshold: float = 0.3, centre_threshold: float = 0.5, size_ratio: float = 1.6,
                 max_gap: int = 15) -> np.ndarray:
    """Index of the followed person's detection in every frame.

    Args:
        boxes: length-``T`` sequence of ``(N_t, 4)`` xyxy px arrays (``N_t`` may be 0; extra columns such as a score
            are ignored).
        scores: length-``T`` sequence of ``(N_t,)`` detection confidences in [0, 1], or None (all 1).
        iou_threshold: IoU at or above which a detection continues a tracklet.
        centre_threshold: centre distance, as a fraction of the predicted box diagonal, under which a detection of
            similar size (see ``size_ratio``) continues a tracklet even with a low IoU (fast motion).
        size_ratio: largest ratio of box side lengths (square root of the area ratio) for a centre match.
        max_gap: frames a tracklet may go unmatched before it ends (missed detections).
    Returns:
        ``(T,)`` int64: index into frame ``t``'s detections, or -1 where the followed person is absent.
    Raises:
        ValueError: inconsistent shapes (message names the frame).
    """
    bxs, scs = _check_inputs(boxes, scores)
    n_frames = len(bxs)
    result = np.full(n_frames, -1, dtype=np.int64)
    if n_frames == 0:
        return result

    # 1. Greedy frame-to-frame association into tracklets.
    tracks: list[dict] = []  # frames, dets, boxes (lists); last_t
    live: list[int] = []
    for t in range(n_frames):
        b, s = bxs[t], scs[t]
        valid = np.isfinite(s)
        live = [k for k in live if t - tracks[k]["frames"][-1] <= max_gap + 1]
        pairs: list[tuple[float, int, int]] = []
        for k in live:
            tr = tracks[k]
            last = tr["boxes"][-1]
            pred = last.copy()
            if len(tr["boxes"]) >= 2:
                dt_prev = tr["frames"][-1] - tr["frames"][-2]
                vel = (_centre(last) - _centre(tr["boxes"][-2])) / max(dt_prev, 1)
                shift = vel * (t - tr["frames"][-1])
                pred[:2] += shift
                pred[2:] += shift
            if len(b):
                ok, cost = _compatible(pred, b, iou_threshold, centre_threshold, size_ratio)
                for j in np.flatnonzero(ok & valid):
                    pairs.append((float(cost[j]), k, int(j)))
        pairs.sort()
        used_t: set[int] = set()
        used_d: set[int] = set()
        for _, k, j in pairs:
            if k in used_t or j in used_d:
                continue
            used_t.add(k)
            used_d.add(j)
            tracks[k]["frames"].append(t)
            tracks[k]["dets"].append(j)
            tracks[k]["boxes"].append(b[j])
            tracks[k]["score"] += _area(b[j]) * max(s[j], 0.0)
        for j in np.flatnonzero(valid):
            if int(j) not in used_d:
                tracks.append({"frames": [t], "dets": [int(j)], "boxes": [b[j]],
                               "score": _area(b[j]) * max(s[j], 0.0)})
                live.append(len(tracks) - 1)
    if not tracks:
        return result

    # 2. The largest, most persistent, most confident tracklet.
    order = sorted(range(len(tracks)), key=lambda k: -tracks[k]["score"])
    chosen = tracks[order[0]]
    result[chosen["frames"]] = chosen["dets"]
    chosen_box = {f: bx for f, bx in zip(chosen["frames"], chosen["boxes"])}

    # 3. Stitch non-overlapping tracklets that continue the chosen one after a long gap.
    for k in order[1:]:
        tr = tracks[k]
        frames = np.asarray(tr["frames"])
        if np.any(result[frames] >= 0):
            continue
        taken = np.flatnonzero(result >= 0)
        before = taken[taken < frames[0]]
        after = taken[taken > frames[-1]]
        if np.any((taken > frames[0]) & (taken < frames[-1])):
            continue  # interleaved with the chosen frames: not a continuation
        link = False
        if len(before):
            ok, _ = _compatible(chosen_box[int(before[-1])], tr["boxes"][0][None], iou_threshold,
                                2.0 * centre_threshold, size_ratio)
            link = link or bool(ok[0])
        if len(after):
            ok, _ = _compatible(chosen_box[int(after[0])], tr["boxes"][-1][None], iou_threshold,
                                2.0 * centre_threshold, size_ratio)
            link = link or bool(ok[0])
        if link:
            result[frames] = tr["dets"]
            chosen_box.update({f: bx for f, bx in zip(tr["frames"], tr["boxes"])})
    return result
