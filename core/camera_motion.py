"""Camera zoom and pan must not become the dancer's travel (numpy only).

The root trajectory (``core.trajectory``) places the body from where and how large it appears in the image, so a
camera that zooms in reads as the dancer walking towards it, and a pan as a sideways walk. Three modes:

* ``"static"`` -- keep the dancer in place: the root's travel along the floor is removed (the height is kept, so
  jumps and crouches survive).
* ``"auto"`` (default) -- with a ``background`` track (the image motion of the static background relative to the
  first frame: ``(dx, dy, log_scale)`` per frame, measured by the worker, ``core.worker.background``), a zoom is
  undone on the root's depth and a pan turns the whole body back into the first frame's axes (a pan is the camera
  turning about the vertical); a still background keeps the estimated travel. Without one, the feet are the
  reference: a foot in contact with the floor does not move, so the travel of the contact points while they are in contact (what a zoom or pan produces, and what a
  foot-skating estimate produces too) is removed from the root, and the dancer travels only by stepping. The body's
  2D scale against its (constant) 3D size is reported, to say whether a zoom was seen.
* ``"off"`` -- the trajectory as estimated.

:func:`compensate` returns a :class:`CameraReport` saying which was used. Frames: ``core.conventions`` (the pipeline
calls it on the levelled camera frame, metres, up = -y, after ``core.floor.ground``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import contact as C
from . import quat
from .skeletons import CANONICAL

__all__ = ["MODES", "MIN_MEASURED", "CameraReport", "compensate", "body_scale_change", "background_usable",
           "background_rotation", "undo_background_2d"]

#: The values of the camera-motion option.
MODES: tuple[str, ...] = ("auto", "static", "off")

_HIP = CANONICAL.index("Hip")


@dataclass
class CameraReport:
    """What :func:`compensate` did.

    Attributes:
        mode: the option given.  used: ``"background"``, ``"feet"``, ``"static"`` or ``"off"``.
        scale_change: max / min of the body's smoothed 2D size (1.0 = no zoom seen; NaN without 2D keypoints).
        zoom: a zoom (or a walk towards the camera) was seen: ``scale_change`` above 1.25.
        removed_travel_m: length of the floor-plane root path removed, metres.
        note: one line for the run report.
        pan_deg: the range of the camera's pan measured on the background, degrees (0 without a background).
    """

    mode: str
    used: str
    scale_change: float
    zoom: bool
    removed_travel_m: float
    note: str
    pan_deg: float = 0.0


def body_scale_change(keypoints_2d, t, window_s: float = 1.0) -> float:
    """Max / min of the body's 2D size (``core.contact.body_size_2d``), median-filtered over ``window_s``.

    Args:
        keypoints_2d: ``(T, 27, 2+)`` ``CANONICAL`` px.  t: ``(T,)`` seconds.
    Returns:
        A ratio >= 1, or NaN when there is no usable size.
    """
    s = C.body_size_2d(keypoints_2d)
    ok = np.isfinite(s) & (s > 0)
    if ok.sum() < 3:
        return float("nan")
    s = np.interp(np.asarray(t, dtype=np.float64), np.asarray(t)[ok], s[ok])
    dt = float(np.median(np.diff(t))) if len(t) > 1 else 1.0
    half = max(1, int(round(window_s / dt / 2)))
    pad = np.pad(s, half, mode="edge")
    med = np.median(np.lib.stride_tricks.sliding_window_view(pad, 2 * half + 1), axis=-1)
    return float(med.max() / med.min())


#: Fewest frames (fraction) whose background step was measured for the track to be used (``background_usable``).
MIN_MEASURED = 0.5


def background_usable(measured) -> bool:
    """Whether a background track (``core.worker.background``) was measured on enough frames to be used: at least
    :data:`MIN_MEASURED` of its steps. ``measured``: ``(T,)`` bool."""
    m = np.asarray(measured, dtype=bool)
    return bool(m.size >= 2 and m[1:].mean() >= MIN_MEASURED)


def background_rotation(background, focal: float, up=(0.0, -1.0, 0.0)) -> np.ndarray:
    """The camera's pan as rotations ``(T, 3, 3)`` that take each frame's (levelled) camera frame to the first's.

    The background's horizontal image shift ``dx`` (px, chained from small steps) is the camera's turn about the
    vertical times the focal length: a turn to the right by ``psi`` moves the background left by ``f * psi``; the
    rotation about ``-up`` by ``psi = -dx / f`` undoes it (a point seen straight ahead after the turn lies at
    ``(sin psi, 0, cos psi)`` in the first frame's axes, x right, z forward).
    """
    bg = np.asarray(background, dtype=np.float64)
    psi = -bg[:, 0] / float(focal)
    axis = -np.asarray(up, dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    return quat.to_matrix(quat.from_axis_angle(np.broadcast_to(axis, (len(psi), 3)), psi))


def undo_background_2d(points, background, image_size) -> np.ndarray:
    """Image points ``(T, K, 2+)`` px moved back to where a static point would be seen in the first frame: the
    background's similarity (shift ``dx, dy`` and scale about the centre) undone, so a planted foot's 2D track
    stands still under a pan or zoom. Extra channels (confidence) are kept."""
    p = np.array(points, dtype=np.float64, copy=True)
    bg = np.asarray(background, dtype=np.float64)
    c = 0.5 * (np.asarray(image_size[:2], dtype=np.float64) - 1.0)
    k = np.exp(bg[:, 2])[:, None, None]
    p[..., :2] = c + (p[..., :2] - c - bg[:, None, :2]) / k
    return p


def _from_background(j, background, focal, u, path_len):
    """The ``background`` branch of :func:`compensate`: ``(joints, note, removed travel m, pan range deg)``. The
    background's vertical shift (a tilt) is not undone in 3D: the floor fit levels the world."""
    if focal is None:
        raise ValueError("compensate: a background track needs the focal length in px")
    T = j.shape[0]
    bg = np.asarray(background, dtype=np.float64)
    if bg.shape != (T, 3):
        raise ValueError(f"compensate: background must be ({T}, 3), got {bg.shape}")
    k = np.exp(bg[:, 2])
    root = j[:, _HIP]
    # Zoom by k: the body looks k times nearer, so the root's depth (along the optical axis, the levelled frame's
    # z to within the camera's tilt) is k times the estimate's; its image position, hence x and y, are right.
    fixed = j.copy()
    fixed[..., 2] += ((k - 1.0) * root[:, 2])[:, None]
    # Pan: the whole body turns back about the vertical through the camera, into the first frame's axes.
    R = background_rotation(bg, focal, u)
    out = np.einsum("tij,tkj->tki", R, fixed)
    removed = max(path_len(root) - path_len(out[:, _HIP]), 0.0)
    pan = float(np.degrees(np.ptp(-bg[:, 0] / float(focal))))
    ratio = float(k.max() / k.min())
    if pan < 1.0 and ratio < 1.02:
        note = (f"camera motion: the background does not move (a still camera: pan {pan:.1f}°, zoom ×{ratio:.2f}); "
                f"the dancer's travel is kept ({path_len(out[:, _HIP]):.2f} m)")
    else:
        note = (f"camera motion: measured on the background (pan {pan:.0f}°, zoom ×{ratio:.2f}) and undone: the "
                f"root's path is {path_len(out[:, _HIP]):.2f} m on the floor ({path_len(root):.2f} m as the camera "
                "saw it)")
    return out, note, removed, pan


def _floor_axes(up: np.ndarray) -> np.ndarray:
    """Projector onto the floor plane ``(3, 3)``."""
    return np.eye(3) - np.outer(up, up)


def compensate(joints, t, contacts=None, *, mode: str = "auto", keypoints_2d=None, background=None,
               focal: float | None = None, up=(0.0, -1.0, 0.0), smooth_hz: float = 1.0) -> tuple[np.ndarray, CameraReport]:
    """Remove camera-induced travel from absolute joints (see the module docstring).

    Args:
        joints: ``(T, 27, 3)`` absolute ``CANONICAL`` joints, metres, floor-levelled (``up`` is the floor normal).
        t: ``(T,)`` seconds.
        contacts: ``(T, 4)`` bool (``core.contact.CONTACT_POINTS``); needed by ``"auto"`` without a background.
        mode: one of :data:`MODES`.
        keypoints_2d: ``(T, 27, 2+)`` ``CANONICAL`` px, for the zoom report.
        background: ``(T, 3)`` ``(dx px, dy px, log scale)`` of the background relative to frame 0, or None.
        focal: focal length in px (needed with ``background``).
        up: the floor normal.
        smooth_hz: cutoff (Hz) of the zero-phase low-pass on the feet-based correction (0 = none).
    Returns:
        ``(joints (T, 27, 3), CameraReport)``.
    Raises:
        ValueError: an unknown mode, bad shapes, ``background`` without ``focal``.
    """
    if mode not in MODES:
        raise ValueError(f"camera motion mode must be one of {MODES}, got {mode!r}")
    j = np.asarray(joints, dtype=np.float64)
    if j.ndim != 3 or j.shape[1:] != (len(CANONICAL), 3):
        raise ValueError(f"compensate expects (T, {len(CANONICAL)}, 3) joints, got {j.shape}")
    t = np.asarray(t, dtype=np.float64)
    T = j.shape[0]
    u = np.asarray(up, dtype=np.float64)
    u = u / np.linalg.norm(u)
    P = _floor_axes(u)
    scale = body_scale_change(keypoints_2d, t) if keypoints_2d is not None else float("nan")
    zoom = bool(np.isfinite(scale) and scale > 1.25)
    root = j[:, _HIP]

    def path_len(d):
        return float(np.sum(np.linalg.norm(np.diff(d @ P.T, axis=0), axis=1))) if T > 1 else 0.0

    if mode == "off":
        return j.copy(), CameraReport(mode, "off", scale, zoom, 0.0, "camera motion: not compensated (--camera off)")
    if mode == "static":
        d = (root - root[0]) @ P.T
        note = (f"camera motion: dancer kept in place (--camera static); {path_len(root):.2f} m of root travel "
                "removed")
        return j - d[:, None, :], CameraReport(mode, "static", scale, zoom, path_len(root), note)
    if background is not None:
        out, note, removed, pan = _from_background(j, background, focal, u, path_len)
        return out, CameraReport(mode, "background", scale, zoom, removed, note, pan)
    if contacts is None:
        raise ValueError("compensate: mode 'auto' without a background needs the foot contacts")
    con = np.asarray(contacts, dtype=bool)
    if con.shape != (T, 4):
        raise ValueError(f"compensate: contacts must be ({T}, 4), got {con.shape}")
    fp = C.foot_points(j)                                   # (T, 4, 3)
    both = con[1:] & con[:-1]                               # in contact at t-1 and t
    step = (fp[1:] - fp[:-1]) @ P.T                         # (T-1, 4, 3) floor-plane motion of each point
    n = both.sum(axis=1)
    drift = np.where(n[:, None] > 0, np.where(both[..., None], step, 0.0).sum(axis=1) / np.maximum(n, 1)[:, None],
                     0.0)
    d = np.concatenate([np.zeros((1, 3)), np.cumsum(drift, axis=0)])
    if smooth_hz and T >= 3:
        # the planted feet's frame-to-frame noise must not shake the whole body: keep the slow part (zoom, pan, skate)
        from .smoothing import one_euro

        d = one_euro(d[:, None, :], t, min_cutoff=smooth_hz, beta=0.0)[:, 0]
    out = j - d[:, None, :]
    removed = float(np.sum(np.linalg.norm(drift, axis=1)))
    travel_after = path_len(out[:, _HIP])
    what = (f"the body's 2D size changed ×{scale:.2f} (a zoom, or a walk towards the camera)" if zoom else
            (f"no zoom seen (2D size ×{scale:.2f})" if np.isfinite(scale) else "no 2D keypoints for a zoom check"))
    note = (f"camera motion: feet used as the reference (no background track): {what}; {removed:.2f} m of "
            f"planted-foot drift removed from the root (zoom/pan/skate), {travel_after:.2f} m of travel kept")
    return out, CameraReport(mode, "feet", scale, zoom, removed, note)
