"""A pinhole camera placed in MMD model space, its projection to pixels, and its Blender pose (numpy only).

The closed-loop benchmark renders a posed model through this camera and projects the ground-truth joints through
the same one, so the two agree exactly (``tests/benchmarks/test_render.py`` checks the projection against
Blender's own ``world_to_camera_view``).

Frames and units (``core.conventions``): the camera is placed in the ``mmd`` frame (model units, left-handed, Y up,
the model faces -Z); points in front of it are expressed in the ``camera`` frame (x right, y down, z forward) and
projected to ``image`` pixels (origin at the top-left corner of the image, x right, y down). The camera frame here is
in MMD units (multiply by ``core.conventions.METRES_PER_UNIT`` for metres); a yaw-0 camera (in front of the model,
looking along +Z) maps ``mmd`` axes to camera axes exactly as ``core.conventions.mmd_to_camera`` does.

Pinhole model: ``u = cx + f·x/z``, ``v = cy + f·y/z`` with ``f = (W/2) / tan(hfov/2)`` (square pixels),
``cx = W/2``, ``cy = H/2`` (Blender's camera with horizontal sensor fit and no shift).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, asdict

import numpy as np

__all__ = ["Camera", "framing_camera", "orbit_camera"]

_UP = np.array([0.0, 1.0, 0.0])


@dataclass(frozen=True)
class Camera:
    """A camera in MMD model space.

    Attributes:
        position: ``(3,)`` camera centre, MMD units, ``mmd`` frame.
        target: ``(3,)`` the point it looks at (the image centre), MMD units.
        hfov_deg: horizontal field of view, degrees (0 < hfov < 180).
        width, height: image size in pixels.
        roll_deg: rotation of the image about the viewing axis, degrees (positive turns the picture clockwise
            as seen in the image, i.e. the camera rotates anticlockwise).
    """

    position: tuple
    target: tuple
    hfov_deg: float
    width: int
    height: int
    roll_deg: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "position", tuple(float(v) for v in self.position))
        object.__setattr__(self, "target", tuple(float(v) for v in self.target))
        if not 0.0 < self.hfov_deg < 180.0:
            raise ValueError(f"Camera: hfov_deg must be within (0, 180), got {self.hfov_deg}")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"Camera: image size must be positive, got {self.width}x{self.height}")
        f = np.subtract(self.target, self.position)
        if np.linalg.norm(f) < 1e-9:
            raise ValueError("Camera: position and target coincide")
        if np.linalg.norm(np.cross(_UP, f / np.linalg.norm(f))) < 1e-6:
            raise ValueError("Camera: looking straight up or down is not supported (the right axis is undefined)")

    @property
    def focal_px(self) -> float:
        """Focal length in pixels, ``(W/2) / tan(hfov/2)``."""
        return 0.5 * self.width / math.tan(math.radians(self.hfov_deg) / 2.0)

    @property
    def intrinsics(self) -> np.ndarray:
        """``(3, 3)`` matrix K: ``[[f, 0, W/2], [0, f, H/2], [0, 0, 1]]``."""
        f = self.focal_px
        return np.array([[f, 0.0, self.width / 2.0], [0.0, f, self.height / 2.0], [0.0, 0.0, 1.0]])

    @property
    def rotation(self) -> np.ndarray:
        """``(3, 3)`` matrix R mapping an ``mmd`` direction to the ``camera`` frame: ``x_cam = R @ (p - position)``.

        Its rows are the camera's right, down and forward axes in MMD coordinates. det R = -1 (MMD is left-handed,
        the camera frame right-handed), as for ``core.conventions.mmd_to_camera``.
        """
        fwd = np.subtract(self.target, self.position)
        fwd = fwd / np.linalg.norm(fwd)
        right = np.cross(_UP, fwd)   # in MMD's left-handed axes this is the viewer's right (yaw 0: +X)
        right /= np.linalg.norm(right)
        down = np.cross(right, fwd)
        a = math.radians(self.roll_deg)
        r2 = math.cos(a) * right + math.sin(a) * down
        d2 = -math.sin(a) * right + math.cos(a) * down
        return np.stack([r2, d2, fwd])

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """``(..., 3)`` MMD points -> ``(..., 3)`` camera-frame points (MMD units; z = depth)."""
        p = np.asarray(points, dtype=np.float64)
        return (p - np.asarray(self.position)) @ self.rotation.T

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project ``(..., 3)`` MMD points to pixels.

        Returns:
            ``(uv (..., 2) px, depth (...,) MMD units)``; points behind the camera (depth <= 0) get NaN pixels.
        """
        c = self.to_camera(points)
        z = c[..., 2]
        f = self.focal_px
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = np.stack([self.width / 2.0 + f * c[..., 0] / z, self.height / 2.0 + f * c[..., 1] / z], axis=-1)
        uv[z <= 0] = np.nan
        return uv, z

    def heading_rotation(self) -> np.ndarray:
        """``(3, 3)`` rotation about MMD +Y (det +1) that turns the camera's horizontal viewing direction onto +Z.

        The main job writes the motion in the camera's heading, levelled (``core.pipeline.world_joints``, then
        ``core.conventions.camera_to_mmd``): applying this to ground-truth MMD points puts them in that frame.
        """
        f = np.subtract(self.target, self.position)
        h = math.atan2(f[0], f[2])
        c, s = math.cos(h), math.sin(h)
        return np.array([[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]])

    def blender_matrix_world(self) -> np.ndarray:
        """``(4, 4)`` world matrix of a Blender camera object with this pose (Blender world, metres).

        A Blender camera looks along its local -Z with local +Y up and +X right; MMD -> Blender is the Y<->Z swap
        scaled by 0.08 (``core.conventions.mmd_to_blender``).
        """
        from core import conventions

        r = self.rotation
        swap = lambda v: np.asarray(v, dtype=np.float64)[[0, 2, 1]]  # noqa: E731 (direction: no scale)
        m = np.eye(4)
        m[:3, 0] = swap(r[0])
        m[:3, 1] = -swap(r[1])
        m[:3, 2] = -swap(r[2])
        m[:3, 3] = conventions.mmd_to_blender(np.asarray(self.position))
        return m

    def to_dict(self) -> dict:
        d = asdict(self)
        d["position"], d["target"] = list(self.position), list(self.target)
        return d


def orbit_camera(target, *, yaw_deg: float, distance: float, height: float, hfov_deg: float, width: int,
                 height_px: int, roll_deg: float = 0.0, target_height: float | None = None) -> Camera:
    """A camera on a circle around ``target`` (MMD units).

    Args:
        target: ``(3,)`` point looked at, MMD units.
        yaw_deg: 0 = in front of a model facing -Z (the camera at -Z), 90 = at the model's left (+X) ... .
        distance: horizontal distance from the target, MMD units.
        height: camera height above MMD y = 0 (the floor), units.
        hfov_deg, width, height_px, roll_deg: see :class:`Camera`.
        target_height: override the target's y.
    """
    t = np.asarray(target, dtype=np.float64).copy()
    if target_height is not None:
        t[1] = target_height
    a = math.radians(yaw_deg)
    pos = np.array([t[0] + distance * math.sin(a), height, t[2] - distance * math.cos(a)])
    return Camera(position=tuple(pos), target=tuple(t), hfov_deg=hfov_deg, width=width, height=height_px,
                  roll_deg=roll_deg)


def framing_camera(joints, *, yaw_deg: float, hfov_deg: float, height_m: float, width: int, height_px: int,
                   fill: float = 0.7, roll_deg: float = 0.0, min_inside: float = 0.995) -> Camera:
    """A camera at ``yaw_deg`` around the dancer that keeps the whole motion in the picture.

    Looks at the mean hip position (x, z) at half the highest head height; the distance makes the highest head
    ``fill`` of the image height, then grows by 15 % steps (at most 12) until ``min_inside`` of the joints project
    inside the image (2 px margin).

    Args:
        joints: ``(T, 27, 3)`` ``CANONICAL`` joints, MMD units (``core.conventions`` 'mmd').
        yaw_deg: see :func:`orbit_camera`; height_m: camera height above the floor, metres; fill: 0..1.
    """
    from core.conventions import UNITS_PER_METRE
    from core.skeletons import CANONICAL

    j = np.asarray(joints, dtype=np.float64)
    hip = j[:, CANONICAL.index("Hip")]
    top = float(np.nanmax(j[:, CANONICAL.index("Head"), 1]))
    centre = np.array([np.mean(hip[:, 0]), 0.5 * top, np.mean(hip[:, 2])])
    vfov = 2 * math.atan(math.tan(math.radians(hfov_deg) / 2) * height_px / width)
    dist = top / fill / (2 * math.tan(vfov / 2))
    cam = None
    for _ in range(12):
        a = math.radians(yaw_deg)
        pos = centre + np.array([dist * math.sin(a), 0.0, -dist * math.cos(a)])
        pos[1] = height_m * UNITS_PER_METRE
        cam = Camera(position=tuple(pos), target=tuple(centre), hfov_deg=hfov_deg, width=width, height=height_px,
                     roll_deg=roll_deg)
        uv, z = cam.project(j)
        inside = (z > 0) & (uv[..., 0] > 2) & (uv[..., 0] < width - 2) & (uv[..., 1] > 2) & (uv[..., 1] < height_px - 2)
        if inside.mean() >= min_inside:
            return cam
        dist *= 1.15
    return cam
