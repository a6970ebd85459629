"""Which way up a video is: the turn that stands a dancer upright who lies across the frame on most frames.

A phone video filmed sideways whose rotation flag was lost (an editor, a messenger, a screen recording) shows the
dancer on her side on every frame. The 2D detector still finds her (BlazePose estimates its region's rotation), but
the lifter learnt cameras rolled by a few degrees at most, so the result is a model lying on the floor. This module
reads the frame's orientation from the 2D keypoints themselves: on each frame with both shoulders and both hips
seen, the direction from the hips' midpoint to the shoulders' midpoint in the image (x right, y down; frame
``image`` of ``core.conventions``) is snapped to the nearest of up, left, down and right. When one direction other
than up holds on at least :data:`MIN_SHARE` of those frames (and there are at least :data:`MIN_FRAMES` of them),
the video is taken as turned: floor work, a cartwheel or a handstand lasts a part of a dance, not most of it.

:func:`turn_needed` returns the counter-clockwise turn of the frames, in degrees, that stands the dancer upright
(``core.worker.video.iter_frames``'s ``rotate``): 270 when her head points to the image's left (the picture was
turned 90° counter-clockwise), 90 when it points right, 180 when down, 0 otherwise.

numpy only.
"""
from __future__ import annotations

import numpy as np

from .skeletons import CANONICAL

__all__ = ["turn_needed", "torso_directions", "TURNS", "MIN_SHARE", "MIN_FRAMES", "MIN_CONFIDENCE"]

#: The turns a video's frames can be given, degrees counter-clockwise (``core.worker.video.iter_frames``'s
#: ``rotate``, ``core.pose_io.PoseSequence.rotate``).
TURNS = (0, 90, 180, 270)

#: Share of the frames with a seen torso that must point the same way, not up, for the video to count as turned.
MIN_SHARE = 0.6
#: Frames with a seen torso needed before anything is decided.
MIN_FRAMES = 10
#: Confidence (visibility) from which a shoulder or hip counts as seen.
MIN_CONFIDENCE = 0.5

_J = {n: i for i, n in enumerate(CANONICAL)}
#: Counter-clockwise turn of the frames that brings each snapped torso direction up (index: up, left, down, right).
_TURN = (0, 270, 180, 90)


def torso_directions(keypoints_2d, min_confidence: float = MIN_CONFIDENCE) -> np.ndarray:
    """Per frame, where the torso points in the image: ``(T,)`` int, 0 up, 1 left, 2 down, 3 right (the nearest of
    the four to the hips' midpoint -> shoulders' midpoint), -1 where a shoulder or hip is missing or unsure.

    Args:
        keypoints_2d: ``(T, 27, 3)`` ``CANONICAL`` (x, y, confidence), image px (NaN where absent).
    Raises:
        ValueError: another shape.
    """
    kp = np.asarray(keypoints_2d, dtype=np.float64)
    if kp.ndim != 3 or kp.shape[1:] != (len(CANONICAL), 3):
        raise ValueError(f"torso_directions expects (T, {len(CANONICAL)}, 3) CANONICAL keypoints, got {kp.shape}")
    idx = [_J["LShoulder"], _J["RShoulder"], _J["LHip"], _J["RHip"]]
    p = kp[:, idx]
    seen = np.all(np.isfinite(p[..., :2]), axis=(1, 2)) & np.all(np.nan_to_num(p[..., 2]) >= min_confidence, axis=1)
    v = 0.5 * (p[:, 0, :2] + p[:, 1, :2]) - 0.5 * (p[:, 2, :2] + p[:, 3, :2])
    # image y points down: "up" is -y; angle counter-clockwise from up as the viewer sees it
    ang = np.degrees(np.arctan2(-np.nan_to_num(v[:, 0]), -np.nan_to_num(v[:, 1])))
    out = (np.round(ang / 90.0).astype(np.int64) % 4)
    out[~seen | (np.linalg.norm(np.nan_to_num(v), axis=1) <= 0)] = -1
    return out


def turn_needed(keypoints_2d, detected=None, *, min_share: float = MIN_SHARE,
                min_frames: int = MIN_FRAMES) -> tuple[int, float]:
    """The counter-clockwise turn (0, 90, 180 or 270 degrees) that stands the dancer upright, and the share of the
    frames with a seen torso that asked for it (0 when nothing is turned; module docstring).

    Args:
        keypoints_2d: ``(T, 27, 3)`` ``CANONICAL`` keypoints, image px.
        detected: ``(T,)`` bool, frames the detector found the dancer on (default: all).
    """
    d = torso_directions(keypoints_2d)
    if detected is not None:
        d = np.where(np.asarray(detected, dtype=bool), d, -1)
    seen = d[d >= 0]
    if len(seen) < min_frames:
        return 0, 0.0
    share = np.bincount(seen, minlength=4) / len(seen)
    k = int(np.argmax(share[1:])) + 1
    if share[k] >= min_share:
        return _TURN[k], float(share[k])
    return 0, 0.0
