"""The 2D/3D pose backend protocol shared by every detector (numpy + stdlib only at import time).

A backend is built once (it loads its model then) and called per batch of frames, in the style of detectron2's
``DefaultPredictor``. Backends import their heavy packages (mediapipe, torch, detectron2, cv2) inside ``__init__`` or
methods, never at module import time, so this module and ``core.backends`` import in Blender's bundled Python.

Frames follow ``core.conventions``: 2D keypoints in ``image`` px of the frame that was passed in (already cropped),
3D joints in the ``camera`` frame, metres, root-relative (pelvis, H36M joint 0, at the origin), joint set
``skeletons.CANONICAL``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from ... import skeletons


@dataclass
class FrameDetections:
    """Every person a backend found in one frame.

    Attributes:
        keypoints_2d: ``(N, J, 3)`` float32, image px (x, y) + confidence in [0, 1]; ``J`` is the backend's
            ``len(joint_names_2d)``. ``N`` may be 0.
        boxes: ``(N, 4)`` float32 person boxes ``(x0, y0, x1, y1)`` px (xyxy).
        scores: ``(N,)`` float32 detection scores in [0, 1].
        joints_3d: ``(N, 27, 3)`` float32 ``CANONICAL`` joints, camera frame, metres, root-relative; or None when the
            backend gives no 3D.
    """

    keypoints_2d: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    joints_3d: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.keypoints_2d = np.asarray(self.keypoints_2d, dtype=np.float32)
        if self.keypoints_2d.ndim != 3 or self.keypoints_2d.shape[2] != 3:
            raise ValueError(f"keypoints_2d must be (N, J, 3), got {self.keypoints_2d.shape}")
        n = self.keypoints_2d.shape[0]
        self.boxes = np.asarray(self.boxes, dtype=np.float32)
        if self.boxes.size == 0:
            self.boxes = self.boxes.reshape(0, 4)
        if self.boxes.shape != (n, 4):
            raise ValueError(f"boxes must be ({n}, 4), got {self.boxes.shape}")
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if self.scores.shape != (n,):
            raise ValueError(f"scores must be ({n},), got {self.scores.shape}")
        if self.joints_3d is not None:
            self.joints_3d = np.asarray(self.joints_3d, dtype=np.float32)
            if self.joints_3d.shape != (n, len(skeletons.CANONICAL), 3):
                raise ValueError(f"joints_3d must be ({n}, {len(skeletons.CANONICAL)}, 3), got {self.joints_3d.shape}")

    def __len__(self) -> int:
        return int(self.keypoints_2d.shape[0])

    @classmethod
    def empty(cls, num_joints: int, with_3d: bool = False) -> "FrameDetections":
        """No person: ``N = 0`` arrays of the right shapes (``num_joints`` 2D joints)."""
        return cls(
            keypoints_2d=np.zeros((0, num_joints, 3), np.float32),
            boxes=np.zeros((0, 4), np.float32),
            scores=np.zeros((0,), np.float32),
            joints_3d=np.zeros((0, len(skeletons.CANONICAL), 3), np.float32) if with_3d else None,
        )


@runtime_checkable
class PoseBackend(Protocol):
    """What ``core.detect`` needs from a pose detector.

    Attributes:
        name: registry name (``"mediapipe"``, ``"detectron2"``), stored in ``PoseSequence.backend``.
        joint_names_2d: the 2D joint set (``skeletons.MEDIAPIPE33`` or ``skeletons.COCO17``).
        provides_3d: True when :meth:`process_batch` fills ``FrameDetections.joints_3d``.
    """

    name: str
    joint_names_2d: tuple[str, ...]
    provides_3d: bool

    def process_batch(self, images: Sequence[np.ndarray]) -> list[FrameDetections]:
        """Detect people in consecutive frames.

        Args:
            images: RGB uint8 ``(H, W, 3)`` frames, in video order (tracking backends keep state between calls).
        Returns:
            one :class:`FrameDetections` per image.
        """
        ...

    def close(self) -> None:
        """Release the model (idempotent)."""
        ...
