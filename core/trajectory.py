"""Root trajectory of the dancer and levelling of the camera's tilt (numpy only).

The lifters give joints relative to the pelvis; the dancer's travel across the stage comes from where the body
appears in the image. For each frame we find the translation ``T`` (camera frame, metres, ``core.conventions``) that
best places the root-relative 3D joints ``X_j`` onto their 2D keypoints ``(u_j, v_j)`` under a pinhole camera with
focal length ``f`` px and principal point ``(c_x, c_y)``. Multiplying the projection equations out gives, per joint,
two equations linear in ``T`` (the direct linear formulation used to initialise camera translation in, e.g.,
SMPLify, Bogo et al., ECCV 2016)::

    f·T_x - (u_j - c_x)·T_z = (u_j - c_x)·Z_j - f·X_j
    f·T_y - (v_j - c_y)·T_z = (v_j - c_y)·Z_j - f·Y_j

solved in weighted least squares (weights = keypoint confidences) for all frames at once.
The focal length is rarely known; the default assumes a 60° horizontal field of view, typical of phone and web
video. It scales depth and travel together, so the motion's shape is kept.
"""
from __future__ import annotations

import numpy as np

from . import skeletons
from .options import DEFAULT_HFOV_DEG  # the camera's assumed horizontal field of view, declared once


def focal_from_fov(image_width: float, hfov_deg: float = DEFAULT_HFOV_DEG) -> float:
    """Focal length in px for an image ``image_width`` px wide with horizontal field of view ``hfov_deg``."""
    if image_width <= 0 or not 1.0 <= hfov_deg <= 179.0:
        raise ValueError(f"need image_width > 0 and 1 <= hfov <= 179 degrees, got {image_width}, {hfov_deg}")
    return 0.5 * image_width / np.tan(np.radians(hfov_deg) / 2.0)


def root_translation(joints_3d: np.ndarray, keypoints_2d: np.ndarray, image_size: tuple[int, int], *,
                     focal: float | None = None, min_confidence: float = 0.3) -> np.ndarray:
    """Per-frame root translation from 3D/2D joint correspondences (see the module docstring for the equations).

    Args:
        joints_3d: ``(T, J, 3)`` camera frame, metres, root-relative; NaN joints are ignored.
        keypoints_2d: ``(T, J, 3)`` px + confidence of the same joints (same set and order as ``joints_3d``).
        image_size: ``(width, height)`` px; the principal point is the image centre.
        focal: px; default :func:`focal_from_fov` of the width.
        min_confidence: joints below it get no weight.
    Returns:
        ``(T, 3)`` float64 root position in the camera frame, metres. Frames without enough usable joints (fewer than
        3) get NaN, for the caller to fill (:func:`core.filters.fill_gaps`).
    Raises:
        ValueError: on mismatched shapes.
    """
    X = np.asarray(joints_3d, dtype=np.float64)
    k = np.asarray(keypoints_2d, dtype=np.float64)
    if X.ndim != 3 or X.shape[-1] != 3 or k.shape != X.shape:
        raise ValueError(f"root_translation: joints_3d and keypoints_2d must both be (T, J, 3), got {X.shape}, {k.shape}")
    w_img, h_img = float(image_size[0]), float(image_size[1])
    f = focal_from_fov(w_img) if focal is None else float(focal)
    cx, cy = w_img / 2.0, h_img / 2.0
    du, dv, conf = k[..., 0] - cx, k[..., 1] - cy, k[..., 2]
    w = np.where((conf >= min_confidence) & np.isfinite(X).all(-1) & np.isfinite(k).all(-1), conf, 0.0)
    du, dv = np.nan_to_num(du), np.nan_to_num(dv)
    Xn = np.nan_to_num(X)
    zeros = np.zeros_like(du)
    # Rows of the design matrix for the u and v equations: (T, J, 3) each.
    A_u = np.stack([np.full_like(du, f), zeros, -du], axis=-1)
    A_v = np.stack([zeros, np.full_like(dv, f), -dv], axis=-1)
    b_u = du * Xn[..., 2] - f * Xn[..., 0]
    b_v = dv * Xn[..., 2] - f * Xn[..., 1]
    AtA = np.einsum("tj,tja,tjb->tab", w, A_u, A_u) + np.einsum("tj,tja,tjb->tab", w, A_v, A_v)
    Atb = np.einsum("tj,tja,tj->ta", w, A_u, b_u) + np.einsum("tj,tja,tj->ta", w, A_v, b_v)
    ok = (w > 0).sum(axis=1) >= 3
    out = np.full((X.shape[0], 3), np.nan)
    if ok.any():
        out[ok] = np.linalg.solve(AtA[ok], Atb[ok][..., None])[..., 0]
    return out


def level_rotation(up: np.ndarray, max_tilt_deg: float = 45.0) -> np.ndarray:
    """Rotation that levels a camera whose view has the world's up along ``up``: maps it onto the camera's up (-y).

    Only the tilt is removed (the smallest rotation between the two vectors; the heading is kept).

    Args:
        up: ``(3,)`` the world's up direction in the ``camera`` frame (any length > 0), or ``(T, 3)`` per frame (their
            normalised median direction is used).
        max_tilt_deg: beyond this tilt the estimate is not trusted: identity.
    Returns:
        ``(3, 3)`` rotation matrix ``R`` to apply as ``p' = R @ p``.
    """
    u = np.asarray(up, dtype=np.float64)
    if u.ndim == 2:
        n = np.linalg.norm(u, axis=1)
        good = np.isfinite(n) & (n > 1e-9)
        if not good.any():
            return np.eye(3)
        u = np.median(u[good] / n[good, None], axis=0)
    n = float(np.linalg.norm(u))
    if not np.isfinite(n) or n < 1e-9:
        return np.eye(3)
    u = u / n
    target = np.array([0.0, -1.0, 0.0])
    c = float(np.dot(u, target))
    if c < np.cos(np.radians(max_tilt_deg)):
        return np.eye(3)
    # Rodrigues' formula written out rather than quat.to_matrix(quat.from_two_vectors(u, target)), which is the same
    # rotation: its last-bit differences change the pinned output of tests/worker/test_layout_regressions.py
    axis = np.cross(u, target)
    s = float(np.linalg.norm(axis))
    if s < 1e-9:
        return np.eye(3)
    axis /= s
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + s * K + (1.0 - c) * (K @ K)


def levelling(joints_3d: np.ndarray, camera_up: np.ndarray | None = None) -> np.ndarray:
    """The levelling rotation of the motion stage: from the lifter's estimate of the world's up where it gives one
    (``camera_up``, ``(T, 3)``, learnt from random cameras: :func:`level_rotation`), else from the dancer's median
    torso direction (:func:`up_rotation`). ``(3, 3)``, applied as ``p' = R @ p``."""
    return level_rotation(camera_up) if camera_up is not None else up_rotation(joints_3d)


def up_rotation(joints_3d: np.ndarray) -> np.ndarray:
    """Rotation that levels a tilted camera: maps the dancer's median "up" onto the camera's up (-y).

    "Up" is the pelvis->thorax direction (``CANONICAL`` Hip -> Thorax) averaged over the sequence (its median
    direction); a dance leans both ways, so the median is close to vertical while a camera looking down on the dancer
    tilts every frame the same way. Only the tilt is removed (the smallest rotation between the two vectors); the
    dancer's heading is kept.

    Args:
        joints_3d: ``(T, 27, 3)`` camera frame (``CANONICAL`` set).
    Returns:
        ``(3, 3)`` rotation matrix ``R`` to apply as ``p' = R @ p``; identity if the data do not allow an estimate or
        the tilt exceeds 45° (then the "up" guess is not trusted).
    """
    J = np.asarray(joints_3d, dtype=np.float64)
    if J.ndim != 3 or J.shape[1:] != (len(skeletons.CANONICAL), 3):
        raise ValueError(f"up_rotation expects (T, {len(skeletons.CANONICAL)}, 3), got {J.shape}")
    v = J[:, skeletons.CANONICAL.index("Thorax")] - J[:, skeletons.CANONICAL.index("Hip")]
    n = np.linalg.norm(v, axis=1)
    good = np.isfinite(n) & (n > 1e-6)
    if good.sum() < 1:
        return np.eye(3)
    return level_rotation(np.median(v[good] / n[good, None], axis=0))
