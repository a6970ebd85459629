"""MediaPipe Holistic backend: BlazePose's 33 landmarks and 3D world landmarks, plus 21 landmarks per hand and the
face-mesh points :data:`core.hands_face.FACE_POINTS` needs for blinks, mouth shapes and the head, one person per frame.

Model: ``mediapipe.solutions.holistic.Holistic`` (mediapipe 0.10.21; the pose landmark model of
``model_complexity=1``, the hand landmark model, ``hand_recrop.tflite`` and the face-mesh model are all bundled in
the wheel, so it runs offline). It runs the pose model on the whole frame, then the hand models on crops around each
wrist the pose predicts and the face mesh on a crop around the face, in video mode (tracking between frames). It is
slower than the pose model alone (``benchmarks/bench_holistic.py`` prints by how much), which is why the job uses
it only when ``--hands`` or ``--face`` is asked for (``core.options``).

Outputs, per frame, follow :mod:`core.worker.backends.base` and ``core.conventions``; the body is exactly as
:mod:`core.worker.backends.mediapipe_pose` gives it (2D px + visibility in ``skeletons.MEDIAPIPE33``; 3D world
landmarks as ``CANONICAL`` camera metres, pelvis at the origin; box; mean visibility as the score). The extra
arrays are on :class:`HolisticDetections`:

* ``hands`` ``(N, 2, 21, 3)`` float32: the dancer's left hand (index 0) and right hand (1), MediaPipe's 21 hand
  landmarks (wrist, then four per finger from thumb to little finger, ``core.hands_face.HAND_LANDMARKS``) as image px
  x, y and a depth z in px (MediaPipe's relative z, wrist at 0, same scale as x, larger = farther from the camera);
  NaN where that hand was not found. Holistic names hands after the pose wrist they were cropped from
  (``left_hand_landmarks`` = the person's left); that is checked against the pose wrists in the tests.
* ``face`` ``(N, F, 3)`` float32: the face-mesh landmarks listed in ``core.hands_face.FACE_POINTS`` (in that order),
  image px x, y and depth z in px (relative to the face's centre); NaN where no face was found.

:meth:`HolisticBackend.sequence_extras` turns the per-frame detections of a whole clip into the ``hands`` / ``face``
arrays of ``core.pose_io.PoseSequence`` for the track ``core.worker.detect.detect_video`` chose.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ... import skeletons
from ...errors import PipelineError
from ...hands_face import FACE_INDICES, N_HAND
from .base import FrameDetections

__all__ = ["HolisticBackend", "HolisticDetections"]


class HolisticDetections(FrameDetections):
    """:class:`FrameDetections` plus ``hands (N, 2, 21, 3)`` and ``face (N, F, 3)`` (see the module docstring)."""

    def __init__(self, keypoints_2d, boxes, scores, joints_3d=None, hands=None, face=None):
        super().__init__(keypoints_2d=keypoints_2d, boxes=boxes, scores=scores, joints_3d=joints_3d)
        n = len(self)
        self.hands = np.full((n, 2, N_HAND, 3), np.nan, np.float32) if hands is None \
            else np.asarray(hands, np.float32).reshape(n, 2, N_HAND, 3)
        self.face = np.full((n, len(FACE_INDICES), 3), np.nan, np.float32) if face is None \
            else np.asarray(face, np.float32).reshape(n, len(FACE_INDICES), 3)


def _landmarks(lms, w: int, h: int, index=None) -> np.ndarray:
    """A NormalizedLandmarkList as ``(K, 3)`` px (x * w, y * h, z * w); ``index`` picks landmarks."""
    pts = lms.landmark
    if index is not None:
        pts = [pts[i] for i in index]
    return np.array([(p.x * w, p.y * h, p.z * w) for p in pts], dtype=np.float32)


class HolisticBackend:
    """MediaPipe Holistic in video mode; build once, then call :meth:`process_batch` on consecutive frames.

    Args:
        model_complexity: pose model 0 (lite), 1 (full, bundled, default) or 2 (heavy; downloaded by mediapipe).
        smooth_landmarks: mediapipe's temporal landmark filter (default True).
        refine_face_landmarks: the attention face model with irises (slower; the points used here do not need it).
        min_detection_confidence, min_tracking_confidence: in [0, 1], as for the pose backend.
        static_image_mode: run the detectors on every image (no tracking), for unrelated images.
        device: accepted for interface symmetry; the solution API runs on the CPU.
        hands, face: accepted so the job can say what it asked for; Holistic always runs both models (its graph has
            no switch), the motion stage ignores what is switched off.

    Raises:
        ValueError: an option out of range.
        ImportError: mediapipe is not installed (``core.worker.backends.get_backend`` turns it into
            PipelineError("missing_dependency")).
        PipelineError("missing_dependency"): the pose landmark model of that complexity is not installed.
    """

    #: The body is MediaPipe's BlazePose, as from the pose backend (same visibility scores, same gate thresholds);
    #: the ``hands`` / ``face`` arrays of the pose file say that Holistic ran. Registry name: ``"holistic"``.
    name = "mediapipe"
    joint_names_2d = skeletons.MEDIAPIPE33
    provides_3d = True

    def __init__(self, model_complexity: int = 1, smooth_landmarks: bool = True, refine_face_landmarks: bool = False,
                 min_detection_confidence: float = 0.5, min_tracking_confidence: float = 0.5,
                 static_image_mode: bool = False, device: str = "cpu", hands: bool = True, face: bool = True):
        if model_complexity not in (0, 1, 2):
            raise ValueError(f"model_complexity must be 0, 1 or 2, got {model_complexity!r}")
        for n, v in (("min_detection_confidence", min_detection_confidence),
                     ("min_tracking_confidence", min_tracking_confidence)):
            if not 0.0 <= float(v) <= 1.0:
                raise ValueError(f"{n} must be in [0, 1], got {v}")
        os.environ.setdefault("GLOG_minloglevel", "2")
        from .mp_import import import_mediapipe

        mp = import_mediapipe()  # without matplotlib and sounddevice (unused here)

        from .mediapipe_pose import _LANDMARK_MODELS

        model = Path(mp.__file__).parent / "modules" / "pose_landmark" / _LANDMARK_MODELS[int(model_complexity)]
        if not model.exists():  # as the pose backend: never a download at run time
            raise PipelineError(
                "missing_dependency",
                f"mediapipe model_complexity={model_complexity} needs {model.name}, which is not installed; install "
                "it once with: python -c \"from core.worker.backends.pose_models import install_landmark_models; "
                "install_landmark_models()\" (or use the bundled full model)")

        self._holistic = mp.solutions.holistic.Holistic(
            static_image_mode=bool(static_image_mode), model_complexity=int(model_complexity),
            smooth_landmarks=bool(smooth_landmarks), enable_segmentation=False,
            refine_face_landmarks=bool(refine_face_landmarks),
            min_detection_confidence=float(min_detection_confidence),
            min_tracking_confidence=float(min_tracking_confidence),
        )
        self.device = device
        self.hands, self.face = bool(hands), bool(face)

    def process_batch(self, images: Sequence[np.ndarray]) -> list[HolisticDetections]:
        """Run Holistic on consecutive frames (tracking carries over between calls).

        Args:
            images: RGB uint8 ``(H, W, 3)`` arrays, in video order.
        Returns:
            one :class:`HolisticDetections` per image (``N`` is 1 when a person was found, else 0).
        Raises:
            ValueError: an image that is not ``(H, W, 3)`` uint8. RuntimeError: the backend was closed.
        """
        if self._holistic is None:
            raise RuntimeError("this HolisticBackend is closed")
        return [self._process(img) for img in images]

    def _process(self, image: np.ndarray) -> HolisticDetections:
        img = np.asarray(image)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 (H, W, 3) image, got {img.dtype} {img.shape}")
        img = np.ascontiguousarray(img)
        img.flags.writeable = False
        r = self._holistic.process(img)
        if r.pose_landmarks is None or r.pose_world_landmarks is None:
            return HolisticDetections(keypoints_2d=np.zeros((0, 33, 3)), boxes=np.zeros((0, 4)),
                                      scores=np.zeros(0), joints_3d=np.zeros((0, len(skeletons.CANONICAL), 3)))
        h, w = img.shape[:2]
        lm = np.array([(p.x, p.y, p.visibility) for p in r.pose_landmarks.landmark], dtype=np.float64)
        kp = np.empty((33, 3), dtype=np.float32)
        kp[:, 0], kp[:, 1] = lm[:, 0] * w, lm[:, 1] * h
        kp[:, 2] = np.clip(lm[:, 2], 0.0, 1.0)
        world = np.array([(p.x, p.y, p.z) for p in r.pose_world_landmarks.landmark], dtype=np.float64)
        j3 = skeletons.mediapipe33_to_canonical(world)
        j3 -= j3[0]
        vis = kp[:, 2] >= 0.5
        pts = kp[vis, :2] if vis.sum() >= 2 else kp[:, :2]
        box = np.array([pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()], dtype=np.float32)
        box = np.clip(box, 0.0, [w, h, w, h]).astype(np.float32)
        hands = np.full((2, N_HAND, 3), np.nan, np.float32)
        for k, lms in enumerate((r.left_hand_landmarks, r.right_hand_landmarks)):
            if lms is not None:
                hands[k] = _landmarks(lms, w, h)
        face = np.full((len(FACE_INDICES), 3), np.nan, np.float32)
        if r.face_landmarks is not None:
            face[:] = _landmarks(r.face_landmarks, w, h, FACE_INDICES)
        return HolisticDetections(keypoints_2d=kp[None], boxes=box[None], scores=np.array([kp[:, 2].mean()]),
                                  joints_3d=j3[None], hands=hands[None], face=face[None])

    @staticmethod
    def sequence_extras(dets: Sequence[FrameDetections], choice: np.ndarray) -> dict:
        """The ``hands`` ``(T, 2, 21, 3)`` and ``face`` ``(T, F, 3)`` arrays of a clip (NaN where absent), for
        person ``choice[t]`` of frame ``t`` (-1: none), as ``core.pose_io.PoseSequence`` keyword arguments."""
        t = len(dets)
        hands = np.full((t, 2, N_HAND, 3), np.nan, np.float32)
        face = np.full((t, len(FACE_INDICES), 3), np.nan, np.float32)
        for i, (d, k) in enumerate(zip(dets, np.asarray(choice))):
            if k >= 0 and isinstance(d, HolisticDetections) and k < len(d):
                hands[i], face[i] = d.hands[k], d.face[k]
        return {"hands": hands, "face": face}

    def reset(self) -> None:
        """Forget the tracked person."""
        if self._holistic is not None:
            self._holistic.reset()

    def close(self) -> None:
        """Release the mediapipe graph (idempotent)."""
        if self._holistic is not None:
            self._holistic.close()
            self._holistic = None

    def __enter__(self) -> "HolisticBackend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
