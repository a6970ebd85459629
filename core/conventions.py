"""Coordinate frames, units, quaternion order and time base: stated once, here.

Every other module refers to this one instead of restating a convention.

Frames
------
``image``
    Pixels. Origin at the top-left corner of the (cropped) frame, x to the right, y down.
    2D keypoints are ``(..., 2)`` ``(x, y)`` or ``(..., 3)`` ``(x, y, confidence)``, confidence in [0, 1].

``camera``
    Metres. Right-handed, OpenCV style: origin at the camera centre, x right, y down, z forward (depth, away from
    the camera). 3D joints from the lifters (MediaPipe world landmarks, VideoPose3D) are expressed in these axes,
    *root-relative* (the pelvis, H36M joint 0, at the origin) unless a trajectory has been added.

``mmd``
    MikuMikuDance model space: **left-handed, Y up, the model faces -Z and its left is +X**; 1 unit = 8 cm
    (the scale MMD Tools uses: import 0.08 m/unit, export 12.5 units/m). docs/MMD_FACTS.md §2.1.
    A dancer facing the camera maps to a model facing the viewer:
    ``mmd = (x_cam, -y_cam, z_cam) * UNITS_PER_METRE`` (camera is right-handed; negating one axis gives MMD's
    left-handedness; the dancer's left, at image right, lands on MMD +X).

``blender``
    Blender world: right-handed, Z up, metres. MMD Tools maps MMD to Blender as
    ``(x, y, z)_blender = (x, z, y)_mmd * METRES_PER_UNIT`` (a Y<->Z swap, which also flips handedness) and the
    model then faces -Y. docs/MMD_FACTS.md §2.3.

Floor
-----
The floor is the plane ``y = 0`` of the ``mmd`` frame, and a model stands on it **as in its rest pose**: a planted
foot's heel and toe points (``core.retarget.virtual_joints``) are at their rest heights, so a flat planted foot has
its ankle at its rest height and no vertical 足ＩＫ offset -- how MMD motions plant a foot (docs/MMD_FACTS.md §2.5),
and so a VMD made for one model plants the feet of another. On most models those points rest on ``y = 0``;
where they rest higher (yw: its つま先 2.3 cm up) the motion stage lifts the whole motion by that height
(``core.foot_lock.standing_height``). The ``camera``-frame floor of the estimate (``core.floor``) is the plane of
the detected contact points.

Quaternions
-----------
Stored as ``(x, y, z, w)`` (VMD's on-disk order) in every array in ``core``; Hamilton product; a rotation acts as
``v' = q v q*``. Blender's ``mathutils.Quaternion`` is ``(w, x, y, z)``: convert at the Blender boundary only.
A VMD bone key's rotation is relative to the parent's posed frame; its translation is an offset from the rest
position in the parent's posed axes (docs/MMD_FACTS.md §2.2).

Joint orders
------------
``core.skeletons`` defines the joint sets by name: COCO-17 (detectors, OpenPose, detectron2), H36M-17
(VideoPose3D output), and the canonical set ``CANONICAL`` (H36M-17 followed by feet, hand and ear points) that the
pipeline carries between stages.

Time
----
MMD motion is keyed in integer frames at ``MMD_FPS`` = 30 fps, first frame 0. Video frames are mapped by their
presentation time ``t`` (seconds from the first kept frame): ``frame = round(t * 30)`` (docs/MMD_FACTS.md §2.1).
"""
from __future__ import annotations

import numpy as np

#: MMD's frame rate (frames per second). docs/MMD_FACTS.md §2.1.
MMD_FPS = 30

#: Length of one MMD unit in metres (MMD Tools' import scale). docs/MMD_FACTS.md §2.1.
METRES_PER_UNIT = 0.08

#: MMD units per metre (MMD Tools' export scale, 12.5).
UNITS_PER_METRE = 1.0 / METRES_PER_UNIT


def camera_to_mmd(points: np.ndarray, units_per_metre: float = UNITS_PER_METRE) -> np.ndarray:
    """Convert points from the ``camera`` frame (metres) to the ``mmd`` frame (model units).

    Args:
        points: ``(..., 3)`` array, camera frame, metres.
        units_per_metre: scale; default 12.5 (1 unit = 8 cm).

    Returns:
        ``(..., 3)`` float64 array in MMD axes and units.

    Raises:
        ValueError: if the last axis is not 3.
    """
    p = np.asarray(points, dtype=np.float64)
    if p.shape[-1:] != (3,):
        raise ValueError(f"camera_to_mmd expects (..., 3) points, got shape {p.shape}")
    out = p * units_per_metre
    out[..., 1] *= -1.0
    return out


def mmd_to_camera(points: np.ndarray, units_per_metre: float = UNITS_PER_METRE) -> np.ndarray:
    """Inverse of :func:`camera_to_mmd`: ``(..., 3)`` MMD units -> ``(..., 3)`` camera metres."""
    p = np.asarray(points, dtype=np.float64)
    if p.shape[-1:] != (3,):
        raise ValueError(f"mmd_to_camera expects (..., 3) points, got shape {p.shape}")
    out = p / units_per_metre
    out[..., 1] *= -1.0
    return out


#: The MMD -> Blender axis change (MMD Tools' Y<->Z swap, docs/MMD_FACTS.md §2.3) as a matrix: ``v_blender = P · v_mmd``
#: (before scaling to metres). A permutation, so ``P`` is its own inverse and transpose.
MMD_TO_BLENDER_AXES = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])


def mmd_to_blender(points: np.ndarray) -> np.ndarray:
    """Convert ``(..., 3)`` MMD points (units) to Blender world coordinates (metres): swap Y and Z, scale 0.08."""
    p = np.asarray(points, dtype=np.float64)
    if p.shape[-1:] != (3,):
        raise ValueError(f"mmd_to_blender expects (..., 3) points, got shape {p.shape}")
    return (p @ MMD_TO_BLENDER_AXES.T) * METRES_PER_UNIT


def blender_to_mmd(points: np.ndarray) -> np.ndarray:
    """Inverse of :func:`mmd_to_blender`: ``(..., 3)`` Blender metres -> MMD units."""
    p = np.asarray(points, dtype=np.float64)
    if p.shape[-1:] != (3,):
        raise ValueError(f"blender_to_mmd expects (..., 3) points, got shape {p.shape}")
    return (p @ MMD_TO_BLENDER_AXES) / METRES_PER_UNIT


def seconds_to_mmd_frames(t: np.ndarray) -> np.ndarray:
    """Map presentation times ``(T,)`` in seconds to integer MMD frames ``(T,)`` at 30 fps (``round(t * 30)``)."""
    return np.rint(np.asarray(t, dtype=np.float64) * MMD_FPS).astype(np.int64)
