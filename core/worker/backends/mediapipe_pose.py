"""BlazePose (MediaPipe Pose) backend: 33 2D landmarks and 3D world landmarks for one person per frame.

Model: BlazePose GHUM (Bazarevsky et al., "BlazePose: On-device Real-time Body Pose tracking", CVPR-W 2020), run
through ``mediapipe.solutions.pose.Pose`` in video mode (``static_image_mode=False``): the person detector runs on the
first frame and whenever tracking is lost; in between the landmark model tracks the person from the previous frame's
landmarks, and ``smooth_landmarks`` filters jitter. mediapipe 0.10.21 ships the weights of ``model_complexity=1``
(``pose_landmark_full.tflite``) in its wheel, so the default works offline; complexities 0 (lite) and 2 (heavy) need
their models installed at set-up (``core.worker.backends.pose_models``): without them the backend refuses rather than
let mediapipe download at run time.

Outputs, per frame, follow :mod:`core.backends.base` and ``core.conventions``:

* 2D: ``pose_landmarks`` (normalised to the image) times ``(w, h)`` -> image px, with each landmark's
  ``visibility`` as its confidence; joint set ``skeletons.MEDIAPIPE33``.
* 3D: ``pose_world_landmarks`` (metres, origin midway between the hips) mapped to ``skeletons.CANONICAL`` with
  ``skeletons.mediapipe33_to_canonical`` and made root-relative at the pelvis (H36M joint 0).
  Axes, checked on kunkun_dance (a dancer facing the camera, tests/test_mediapipe_backend.py): the subject's left
  shoulder (at image right) has larger x; the head has smaller y than the hips (y down); the nose, in front of the
  body, has smaller z than the hips (z away from the camera). These are exactly the ``camera`` axes of
  ``core.conventions`` (x right, y down, z forward, right-handed), so no axis change is applied.
* box: the bounding box of the 2D landmarks with visibility >= 0.5 (all landmarks if fewer than 2 are), clipped to
  the image; score: the mean visibility of the 33 landmarks (the solution API exposes no detector score).

The solution API tracks a single person; ``N`` is 0 or 1. It times frames as a 30 fps stream (its own simulated
clock), which only affects the strength of its landmark smoothing.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ... import skeletons
from ...errors import PipelineError
from .base import FrameDetections

#: Landmark model file mediapipe needs for each ``model_complexity``.
_LANDMARK_MODELS = {0: "pose_landmark_lite.tflite", 1: "pose_landmark_full.tflite", 2: "pose_landmark_heavy.tflite"}


class MediaPipePoseBackend:
    """BlazePose in video mode; build once, then call :meth:`process_batch` on consecutive frames.

    Args:
        model_complexity: 0 (lite), 1 (full, bundled, default) or 2 (heavy).
        smooth_landmarks: mediapipe's temporal landmark filter (default True).
        min_detection_confidence: person detector threshold in [0, 1].
        min_tracking_confidence: below this the tracker re-runs the detector, in [0, 1].
        static_image_mode: run the person detector on every image, with no tracking between calls (for unrelated
            images, e.g. the crops ``core.worker.detect`` retries a failed frame on); default False (video mode).
        device: accepted for interface symmetry; only ``"cpu"`` is used (the Python solution API runs on CPU).

    Raises:
        ValueError: an option out of range.
        ImportError: mediapipe is not installed (``core.backends.get_backend`` turns it into
            PipelineError("missing_dependency")).
        PipelineError("missing_dependency"): the landmark model of the chosen complexity is not bundled and cannot
            be downloaded.
    """

    name = "mediapipe"
    joint_names_2d = skeletons.MEDIAPIPE33
    provides_3d = True

    def __init__(self, model_complexity: int = 1, smooth_landmarks: bool = True,
                 min_detection_confidence: float = 0.5, min_tracking_confidence: float = 0.5,
                 device: str = "cpu", static_image_mode: bool = False):
        if model_complexity not in _LANDMARK_MODELS:
            raise ValueError(f"model_complexity must be 0, 1 or 2, got {model_complexity!r}")
        for n, v in (("min_detection_confidence", min_detection_confidence),
                     ("min_tracking_confidence", min_tracking_confidence)):
            if not 0.0 <= float(v) <= 1.0:
                raise ValueError(f"{n} must be in [0, 1], got {v}")
        os.environ.setdefault("GLOG_minloglevel", "2")  # quieten mediapipe's C++ logging on stderr
        from .mp_import import import_mediapipe

        mp = import_mediapipe()  # without matplotlib and sounddevice (unused here)

        model = Path(mp.__file__).parent / "modules" / "pose_landmark" / _LANDMARK_MODELS[model_complexity]
        if not model.exists():  # mediapipe would download it now: models are installed at set-up, never at run time
            raise PipelineError(
                "missing_dependency",
                f"mediapipe model_complexity={model_complexity} needs {model.name}, which is not installed; install "
                "it once with: python -c \"from core.worker.backends.pose_models import install_landmark_models; "
                "install_landmark_models()\" (or use the bundled full model)")
        try:
            self._pose = mp.solutions.pose.Pose(
                static_image_mode=bool(static_image_mode), model_complexity=int(model_complexity),
                smooth_landmarks=bool(smooth_landmarks), enable_segmentation=False,
                min_detection_confidence=float(min_detection_confidence),
                min_tracking_confidence=float(min_tracking_confidence),
            )
        except (OSError, RuntimeError) as e:
            if not model.exists():
                raise PipelineError(
                    "missing_dependency",
                    f"mediapipe model_complexity={model_complexity} needs {model.name}, which is not bundled and "
                    f"could not be downloaded ({e}); use model_complexity=1 (bundled) or go online once",
                ) from e
            raise
        self.device = device
        self.model_complexity = int(model_complexity)

    def process_batch(self, images: Sequence[np.ndarray]) -> list[FrameDetections]:
        """Run BlazePose on consecutive frames (the tracker carries state from one call to the next).

        Args:
            images: RGB uint8 ``(H, W, 3)`` arrays, in video order.
        Returns:
            one :class:`FrameDetections` per image: ``keypoints_2d (N, 33, 3)`` px + visibility,
            ``joints_3d (N, 27, 3)`` camera metres root-relative, ``boxes (N, 4)`` xyxy px, ``scores (N,)``;
            ``N`` is 1 when a person was found, else 0.
        Raises:
            ValueError: an image that is not ``(H, W, 3)`` uint8.
            RuntimeError: the backend was closed.
        """
        if self._pose is None:
            raise RuntimeError("this MediaPipePoseBackend is closed")
        return [self._process(img) for img in images]

    def _process(self, image: np.ndarray) -> FrameDetections:
        img = np.asarray(image)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 (H, W, 3) image, got {img.dtype} {img.shape}")
        img = np.ascontiguousarray(img)
        img.flags.writeable = False  # lets mediapipe wrap the buffer without a copy
        result = self._pose.process(img)
        if result.pose_landmarks is None:
            return FrameDetections.empty(len(self.joint_names_2d), with_3d=True)
        h, w = img.shape[:2]
        lm = np.array([(p.x, p.y, p.visibility) for p in result.pose_landmarks.landmark], dtype=np.float64)
        kp = np.empty((33, 3), dtype=np.float32)
        kp[:, 0] = lm[:, 0] * w
        kp[:, 1] = lm[:, 1] * h
        kp[:, 2] = np.clip(lm[:, 2], 0.0, 1.0)
        world = np.array([(p.x, p.y, p.z) for p in result.pose_world_landmarks.landmark], dtype=np.float64)
        j3 = skeletons.mediapipe33_to_canonical(world)
        j3 -= j3[0]  # root-relative: the pelvis (H36M 0, mid-hips) at the origin
        vis = kp[:, 2] >= 0.5
        pts = kp[vis, :2] if vis.sum() >= 2 else kp[:, :2]
        box = np.array([pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()], dtype=np.float32)
        box = np.clip(box, 0.0, [w, h, w, h]).astype(np.float32)
        return FrameDetections(keypoints_2d=kp[None], boxes=box[None], scores=np.array([kp[:, 2].mean()]),
                               joints_3d=j3[None])

    def reset(self) -> None:
        """Forget the tracked person (e.g. before a new, unrelated clip)."""
        if self._pose is not None:
            self._pose.reset()

    def close(self) -> None:
        """Release the mediapipe graph (idempotent)."""
        if self._pose is not None:
            self._pose.close()
            self._pose = None

    def __enter__(self) -> "MediaPipePoseBackend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
