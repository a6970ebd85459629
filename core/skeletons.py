"""Joint sets and the conversions between them (numpy only).

Joint sets (names in index order):

* ``COCO17`` -- the 17 COCO keypoints (Lin et al., ECCV 2014; the order used by detectron2 Keypoint R-CNN,
  OpenPose's COCO output minus the neck, and VideoPose3D's 2D input).
* ``H36M17`` -- the 17 Human3.6M joints in VideoPose3D's order (Pavllo et al., CVPR 2019,
  ``common/h36m_dataset.py`` after removing the unused joints). ``Nose`` is the point the H36M papers call
  "Neck/Nose"; ``Head`` is the head top.
* ``MEDIAPIPE33`` -- BlazePose's 33 landmarks (Bazarevsky et al., 2020; ``mp.solutions.pose.PoseLandmark``).
* ``CANONICAL`` -- what the pipeline carries between stages: ``H36M17`` followed by ``CANONICAL_EXTRAS``
  (toe tips, heels, hand index and pinky knuckles, ears), which give foot, hand and head orientation. Sources that lack
  the extras (COCO-17, H36M-17 input) fill them with NaN.

Left and right are always the *subject's* left and right. Coordinates follow ``core.conventions``.
"""
from __future__ import annotations

import numpy as np

COCO17: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)

H36M17: tuple[str, ...] = (
    "Hip", "RHip", "RKnee", "RFoot", "LHip", "LKnee", "LFoot", "Spine", "Thorax", "Nose", "Head",
    "LShoulder", "LElbow", "LWrist", "RShoulder", "RElbow", "RWrist",
)

MEDIAPIPE33: tuple[str, ...] = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye", "right_eye_outer",
    "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_pinky", "right_pinky", "left_index", "right_index",
    "left_thumb", "right_thumb", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_heel", "right_heel", "left_foot_index", "right_foot_index",
)

CANONICAL_EXTRAS: tuple[str, ...] = (
    "LFootIndex", "RFootIndex", "LHeel", "RHeel", "LHandIndex", "RHandIndex", "LHandPinky", "RHandPinky",
    "LEar", "REar",
)

#: The pipeline's joint set: H36M-17 (indices 0..16) then the extras (17..26).
CANONICAL: tuple[str, ...] = H36M17 + CANONICAL_EXTRAS

#: Parent of each H36M-17 joint (-1 for the pelvis), for drawing and bone lengths.
H36M17_PARENTS: tuple[int, ...] = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15)

#: Bones (pairs of COCO-17 indices) for drawing a skeleton.
COCO17_EDGES: tuple[tuple[int, int], ...] = (
    (0, 1), (0, 2), (1, 3), (2, 4), (5, 6), (5, 7), (7, 9), (6, 8), (8, 10), (5, 11), (6, 12), (11, 12),
    (11, 13), (13, 15), (12, 14), (14, 16),
)

#: Bones (pairs of CANONICAL indices) for drawing a skeleton.
CANONICAL_EDGES: tuple[tuple[int, int], ...] = tuple(
    (p, c) for c, p in enumerate(H36M17_PARENTS) if p >= 0
) + ((6, 17), (3, 18), (6, 19), (3, 20), (13, 21), (16, 22), (13, 23), (16, 24))


def index(names: tuple[str, ...], name: str) -> int:
    """Index of ``name`` in the joint set ``names``; ``KeyError`` naming the set's members if absent."""
    try:
        return names.index(name)
    except ValueError:
        raise KeyError(f"joint {name!r} is not one of {names}") from None


def _mirror_permutation(names: tuple[str, ...]) -> np.ndarray:
    """Permutation swapping left and right joints of a set (for horizontal-flip augmentation)."""
    def swap(n: str) -> str:
        for a, b in (("left_", "right_"), ("right_", "left_")):
            if n.startswith(a):
                return b + n[len(a):]
        if len(n) > 1 and n[0] in "LR" and n[1].isupper():
            return ("R" if n[0] == "L" else "L") + n[1:]
        return n
    return np.array([names.index(swap(n)) for n in names], dtype=np.int64)


#: Index permutations that swap the subject's left and right.
COCO17_MIRROR = _mirror_permutation(COCO17)
H36M17_MIRROR = _mirror_permutation(H36M17)
CANONICAL_MIRROR = _mirror_permutation(CANONICAL)
MEDIAPIPE33_MIRROR = _mirror_permutation(MEDIAPIPE33)


def _check(points: np.ndarray, n: int, what: str) -> np.ndarray:
    p = np.asarray(points)
    if p.ndim < 2 or p.shape[-2] != n:
        raise ValueError(f"{what} expects (..., {n}, D) points, got shape {p.shape}")
    return p


def _mid(p: np.ndarray, a: int, b: int) -> np.ndarray:
    return 0.5 * (p[..., a, :] + p[..., b, :])


def coco17_to_h36m17(points: np.ndarray) -> np.ndarray:
    """Approximate H36M-17 joints from COCO-17 keypoints.

    The usual construction of VideoPose3D-style converters: Hip = mid-hips, Thorax = mid-shoulders,
    Spine = mid(Hip, Thorax), Nose = nose, Head = mid-eyes; limbs map one to one. A confidence channel (D = 3) is
    averaged the same way (min would also be defensible; the mean keeps a half-visible pair usable).

    Args:
        points: ``(..., 17, D)`` COCO-17, any frame (image px or metres), D = 2 or 3.
    Returns:
        ``(..., 17, D)`` H36M-17, same frame and dtype kind (float).
    """
    p = _check(points, 17, "coco17_to_h36m17").astype(np.float64, copy=False)
    c = {n: i for i, n in enumerate(COCO17)}
    out = np.empty(p.shape, dtype=np.float64)
    hip = _mid(p, c["left_hip"], c["right_hip"])
    thorax = _mid(p, c["left_shoulder"], c["right_shoulder"])
    out[..., 0, :] = hip
    for h, k in (("RHip", "right_hip"), ("RKnee", "right_knee"), ("RFoot", "right_ankle"), ("LHip", "left_hip"),
                 ("LKnee", "left_knee"), ("LFoot", "left_ankle"), ("Nose", "nose"),
                 ("LShoulder", "left_shoulder"), ("LElbow", "left_elbow"), ("LWrist", "left_wrist"),
                 ("RShoulder", "right_shoulder"), ("RElbow", "right_elbow"), ("RWrist", "right_wrist")):
        out[..., H36M17.index(h), :] = p[..., c[k], :]
    out[..., 7, :] = 0.5 * (hip + thorax)
    out[..., 8, :] = thorax
    out[..., 10, :] = _mid(p, c["left_eye"], c["right_eye"])
    return out


def mediapipe33_to_coco17(points: np.ndarray) -> np.ndarray:
    """Select the COCO-17 keypoints from BlazePose's 33 landmarks (a pure re-indexing).

    Args:
        points: ``(..., 33, D)``.
    Returns:
        ``(..., 17, D)``.
    """
    p = _check(points, 33, "mediapipe33_to_coco17")
    return p[..., [MEDIAPIPE33.index(n) for n in COCO17], :]


def mediapipe33_to_canonical(points: np.ndarray, has_confidence: bool = False) -> np.ndarray:
    """BlazePose's 33 landmarks -> the ``CANONICAL`` joint set.

    H36M-17 joints are built as in :func:`coco17_to_h36m17` except Head, which is the mid-ear point pushed up along
    the thorax->mid-ear direction by half that distance (a head-top estimate). Extras copy the matching landmark.

    Args:
        points: ``(..., 33, D)`` (image px, or world metres).
        has_confidence: the last channel is a confidence in [0, 1] (then Head's confidence is the ears' mean).
    Returns:
        ``(..., 27, D)`` float64.
    """
    p = _check(points, 33, "mediapipe33_to_canonical").astype(np.float64, copy=False)
    m = {n: i for i, n in enumerate(MEDIAPIPE33)}
    out = np.empty(p.shape[:-2] + (len(CANONICAL), p.shape[-1]), dtype=np.float64)
    out[..., :17, :] = coco17_to_h36m17(mediapipe33_to_coco17(p))
    ears = _mid(p, m["left_ear"], m["right_ear"])
    head = ears + 0.5 * (ears - out[..., 8, :])
    out[..., 10, :] = head
    if has_confidence:
        out[..., 10, -1] = ears[..., -1]
    for name, src in zip(CANONICAL_EXTRAS, ("left_foot_index", "right_foot_index", "left_heel", "right_heel",
                                             "left_index", "right_index", "left_pinky", "right_pinky",
                                             "left_ear", "right_ear")):
        out[..., CANONICAL.index(name), :] = p[..., m[src], :]
    return out


def h36m17_to_canonical(points: np.ndarray) -> np.ndarray:
    """Pad ``(..., 17, D)`` H36M-17 joints to ``(..., 27, D)`` ``CANONICAL`` with NaN extras."""
    p = _check(points, 17, "h36m17_to_canonical").astype(np.float64, copy=False)
    out = np.full(p.shape[:-2] + (len(CANONICAL), p.shape[-1]), np.nan)
    out[..., :17, :] = p
    return out


def to_coco17(points: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """Convert keypoints of a named joint set (``COCO17`` or ``MEDIAPIPE33``) to COCO-17.

    Args:
        points: ``(..., J, D)``; names: the set's joint names (``len(names) == J``).
    Returns:
        ``(..., 17, D)`` float64.
    Raises:
        ValueError: for a joint set this function does not know.
    """
    names = tuple(names)
    p = np.asarray(points, dtype=np.float64)
    if names == COCO17:
        return p.copy()
    if names == MEDIAPIPE33:
        return mediapipe33_to_coco17(p)
    raise ValueError(f"cannot convert a {len(names)}-joint set starting {names[:3]} to COCO-17")


def to_canonical(points: np.ndarray, names: tuple[str, ...], has_confidence: bool = False) -> np.ndarray:
    """Convert keypoints of a named joint set (``MEDIAPIPE33``, ``COCO17``, ``H36M17`` or ``CANONICAL``) to ``CANONICAL``.

    Args:
        points: ``(..., J, D)``; names: the set's joint names; has_confidence: last channel is a confidence.
    Returns:
        ``(..., 27, D)`` float64, NaN for joints the source set lacks.
    Raises:
        ValueError: for a joint set this function does not know.
    """
    names = tuple(names)
    p = np.asarray(points, dtype=np.float64)
    if names == CANONICAL:
        return p.copy()
    if names == MEDIAPIPE33:
        return mediapipe33_to_canonical(p, has_confidence=has_confidence)
    if names == COCO17:
        out = h36m17_to_canonical(coco17_to_h36m17(p))
        out[..., CANONICAL.index("LEar"), :] = p[..., COCO17.index("left_ear"), :]
        out[..., CANONICAL.index("REar"), :] = p[..., COCO17.index("right_ear"), :]
        return out
    if names == H36M17:
        return h36m17_to_canonical(p)
    raise ValueError(f"cannot convert a {len(names)}-joint set starting {names[:3]} to CANONICAL")
