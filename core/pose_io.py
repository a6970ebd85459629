"""The pose sequence carried between pipeline stages, and its ``.npz`` file (no pickles).

A :class:`PoseSequence` holds what detection and lifting produced for one video, so later stages (smoothing,
trajectory, retargeting, VMD writing) can be re-run from the file without detecting again (``--from-npz``).
Frames follow ``core.conventions``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import safe_npz, skeletons, upright
from .atomic import atomic_output
from .errors import PipelineError

FORMAT_VERSION = 1


@dataclass
class PoseSequence:
    """Per-frame 2D keypoints and 3D joints of one dancer.

    Attributes:
        keypoints_2d: ``(T, J2, 3)`` float32, image px of the (cropped) frame + confidence in [0, 1]; the backend's
            native joint set, named by ``joint_names_2d`` (MEDIAPIPE33 or COCO17). Gap-filled frames carry the
            interpolated positions and confidence 0.
        joints_3d: ``(T, 27, 3)`` float32, ``camera`` frame, metres, root-relative (pelvis at the origin), joint set
            ``skeletons.CANONICAL`` (NaN where the source lacks a joint), or ``None`` before lifting.
        timestamps: ``(T,)`` float64 seconds, presentation time of each frame relative to the first kept frame.
        frame_indices: ``(T,)`` int64 index of each frame in the source video (or keypoint file).
        detected: ``(T,)`` bool, False where the frame had no detection and was gap-filled.
        fps: the source's nominal frame rate.
        image_size: ``(width, height)`` of the (cropped) frame in px.
        joint_names_2d: names of the 2D joints (``skeletons.MEDIAPIPE33`` or ``skeletons.COCO17``).
        backend: what produced the 2D keypoints (``"mediapipe"``, ``"detectron2"``, ``"openpose"``...).
        lifter: what produced the 3D joints (``"mediapipe"``, ``"videopose3d"``, ``"import"``...).
        source: the input path, for reports.
        crop: ``(x, y, w, h)`` px in the source frame, or None.
        rotate: degrees (0, 90, 180, 270) counter-clockwise the source's frames were turned before detection, after
            their display rotation and before the crop (``core.worker.video.iter_frames``; a video filmed sideways).
        trajectory: ``(T, 3)`` float32 root (pelvis) position in the camera frame, metres, or None.
        notes: human-readable notes (gaps filled, frames that failed to decode...).
        shots: ``(S, 2)`` int64 ``[start, stop)`` frame ranges between shot cuts (``core.shots``), covering all
            frames in order; None = one shot (files written before shots were detected). Nothing is interpolated
            across a cut, and the motion stage places each shot on its own.
        rejected: ``(T,)`` bool, frames where a skeleton was found but the plausibility gate refused it
            (``core.gating``); they are not ``detected`` (gap-filled like frames without a person). None = not gated.
        upper_body: ``(T,)`` bool, frames where the legs are not seen (only the upper body comes from them; the leg
            joints carry confidence 0 and are interpolated or held); None = unknown.
        quality: the run's quality report as JSON (``core.quality.QualityReport.to_json``), or "".
        hands: ``(T, 2, 21, 3)`` float32, the dancer's left (0) and right (1) hand's 21 MediaPipe hand landmarks
            (``core.hands_face.HAND_LANDMARKS``): image px x, y and a relative depth z in px (wrist at 0, larger =
            farther), NaN where the hand was not found; None = no hand model ran (``core.worker.backends.holistic``).
        face: ``(T, F, 3)`` float32, the face-mesh points ``core.hands_face.FACE_POINTS`` in that order, px x, y and
            relative depth z in px, NaN where no face was found; None = no face model ran.
        contact_probs: ``(T, 4)`` float32 foot-contact probabilities from the lifter, order left heel, left toe,
            right heel, right toe (``core.lifting.trained.CONTACT_ORDER``); None = the lifter gives none.
        foot_contacts: ``(T, 4)`` bool, the foot contacts the motion stage decided (same order; ``core.contact``),
            written by a whole run; None = not computed.
        world_landmarks: ``(T, 27, 3)`` float32, the backend's own 3D (MediaPipe's world landmarks: ``camera`` axes,
            metres, root-relative), kept when a lifter replaced ``joints_3d``, so a re-run from this file
            (``--from-npz``) can lift again or go back to ``--lifter native``; None = not kept.
        camera_up: ``(T, 3)`` float32 unit vectors, the world's up direction in the ``camera`` frame as the lifter
            estimates it (``core.lifting.trained``; the motion stage levels the camera's tilt with it); None = the
            lifter gives none (the motion stage then levels from the torso, ``core.trajectory.up_rotation``).
        background_motion: ``(T, 3)`` float32, the image motion of the static background relative to the first
            frame, ``dx``, ``dy`` px of the (cropped) frame and the log of its scale, about the frame's centre (the
            camera's pan and zoom, ``core.worker.background``; read by ``core.camera_motion``); None = not measured.
        background_measured: ``(T,)`` bool, the frames whose step from the previous one was measured (the others
            take their neighbours' motion); given with ``background_motion``.
    """

    keypoints_2d: np.ndarray
    timestamps: np.ndarray
    frame_indices: np.ndarray
    detected: np.ndarray
    fps: float
    image_size: tuple[int, int]
    joint_names_2d: tuple[str, ...]
    backend: str
    joints_3d: np.ndarray | None = None
    lifter: str = ""
    source: str = ""
    crop: tuple[int, int, int, int] | None = None
    trajectory: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)
    shots: np.ndarray | None = None
    rejected: np.ndarray | None = None
    upper_body: np.ndarray | None = None
    quality: str = ""
    hands: np.ndarray | None = None
    face: np.ndarray | None = None
    contact_probs: np.ndarray | None = None
    foot_contacts: np.ndarray | None = None
    camera_up: np.ndarray | None = None
    world_landmarks: np.ndarray | None = None
    background_motion: np.ndarray | None = None
    background_measured: np.ndarray | None = None
    rotate: int = 0

    def __post_init__(self) -> None:
        self.keypoints_2d = np.asarray(self.keypoints_2d, dtype=np.float32)
        t = self.keypoints_2d.shape[0] if self.keypoints_2d.ndim == 3 else -1
        if self.keypoints_2d.ndim != 3 or self.keypoints_2d.shape[2] != 3:
            raise ValueError(f"keypoints_2d must be (T, J, 3), got {self.keypoints_2d.shape}")
        self.joint_names_2d = tuple(str(n) for n in self.joint_names_2d)
        if len(self.joint_names_2d) != self.keypoints_2d.shape[1]:
            raise ValueError(f"{len(self.joint_names_2d)} joint names for {self.keypoints_2d.shape[1]} 2D joints")
        self.timestamps = np.asarray(self.timestamps, dtype=np.float64)
        self.frame_indices = np.asarray(self.frame_indices, dtype=np.int64)
        self.detected = np.asarray(self.detected, dtype=bool)
        for name in ("timestamps", "frame_indices", "detected"):
            if getattr(self, name).shape != (t,):
                raise ValueError(f"{name} must be ({t},), got {getattr(self, name).shape}")
        if self.joints_3d is not None:
            self.joints_3d = np.asarray(self.joints_3d, dtype=np.float32)
            if self.joints_3d.shape != (t, len(skeletons.CANONICAL), 3):
                raise ValueError(f"joints_3d must be ({t}, {len(skeletons.CANONICAL)}, 3), got {self.joints_3d.shape}")
        if self.trajectory is not None:
            self.trajectory = np.asarray(self.trajectory, dtype=np.float32)
            if self.trajectory.shape != (t, 3):
                raise ValueError(f"trajectory must be ({t}, 3), got {self.trajectory.shape}")
        for name in ("rejected", "upper_body"):
            if getattr(self, name) is not None:
                setattr(self, name, np.asarray(getattr(self, name), dtype=bool))
                if getattr(self, name).shape != (t,):
                    raise ValueError(f"{name} must be ({t},), got {getattr(self, name).shape}")
        if self.shots is not None:
            self.shots = np.asarray(self.shots, dtype=np.int64).reshape(-1, 2)
            s = self.shots
            if len(s) == 0 or s[0, 0] != 0 or s[-1, 1] != t or np.any(s[1:, 0] != s[:-1, 1]) or np.any(s[:, 1] <= s[:, 0]):
                raise ValueError(f"shots must be [start, stop) frame ranges covering 0..{t} in order, got {s.tolist()}")
        self.quality = str(self.quality or "")
        for name, tail in (("hands", (2, 21, 3)), ("face", None)):
            if getattr(self, name) is not None:
                a = np.asarray(getattr(self, name), dtype=np.float32)
                if a.ndim != 1 + (3 if tail else 2) or a.shape[0] != t or (tail and a.shape[1:] != tail) \
                        or (not tail and a.shape[2] != 3):
                    raise ValueError(f"{name} must be ({t}, {', '.join(map(str, tail)) if tail else 'F, 3'}), "
                                     f"got {a.shape}")
                setattr(self, name, a)
        for name, dtype in (("contact_probs", np.float32), ("foot_contacts", bool)):
            if getattr(self, name) is not None:
                a = np.asarray(getattr(self, name), dtype=dtype)
                if a.shape != (t, 4):
                    raise ValueError(f"{name} must be ({t}, 4), got {a.shape}")
                setattr(self, name, a)
        if self.world_landmarks is not None:
            a = np.asarray(self.world_landmarks, dtype=np.float32)
            if a.shape != (t, len(skeletons.CANONICAL), 3):
                raise ValueError(f"world_landmarks must be ({t}, {len(skeletons.CANONICAL)}, 3), got {a.shape}")
            self.world_landmarks = a
        if self.camera_up is not None:
            a = np.asarray(self.camera_up, dtype=np.float32)
            if a.shape != (t, 3) or not np.all(np.isfinite(a)):
                raise ValueError(f"camera_up must be ({t}, 3) finite, got {a.shape}")
            self.camera_up = a
        if (self.background_motion is None) != (self.background_measured is None):
            raise ValueError("background_motion and background_measured come together")
        if self.background_motion is not None:
            a = np.asarray(self.background_motion, dtype=np.float32)
            m = np.asarray(self.background_measured, dtype=bool)
            if a.shape != (t, 3) or not np.all(np.isfinite(a)) or m.shape != (t,):
                raise ValueError(f"background_motion must be ({t}, 3) finite and background_measured ({t},), got "
                                 f"{a.shape}, {m.shape}")
            self.background_motion, self.background_measured = a, m
        if t > 1 and np.any(np.diff(self.timestamps) <= 0):
            raise ValueError("timestamps must increase strictly")
        self.fps = float(self.fps)
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        if self.crop is not None:
            self.crop = tuple(int(v) for v in self.crop)  # type: ignore[assignment]
        if isinstance(self.rotate, bool) or self.rotate not in upright.TURNS:
            raise ValueError(f"rotate must be one of {upright.TURNS} degrees, got {self.rotate!r}")
        self.rotate = int(self.rotate)

    def __len__(self) -> int:
        return int(self.keypoints_2d.shape[0])

    def backend_3d(self) -> np.ndarray | None:
        """The backend's own 3D (MediaPipe's world landmarks, ``(T, 27, 3)`` camera axes, metres): as kept beside
        a lifter's output (:attr:`world_landmarks`), else :attr:`joints_3d` where no lifter replaced it; None when
        neither holds it."""
        if self.world_landmarks is not None:
            return self.world_landmarks
        return self.joints_3d if self.lifter not in ("trained", "videopose3d") else None

    def keypoints_canonical_2d(self) -> np.ndarray:
        """2D keypoints in the ``CANONICAL`` set: ``(T, 27, 3)`` px + confidence (NaN where the set lacks a joint)."""
        return skeletons.to_canonical(self.keypoints_2d, self.joint_names_2d, has_confidence=True)

    def keypoints_coco17(self) -> np.ndarray:
        """2D keypoints as COCO-17: ``(T, 17, 3)`` px + confidence (the input of VideoPose3D)."""
        return skeletons.to_coco17(self.keypoints_2d, self.joint_names_2d)


def save(path: str | os.PathLike, poses: PoseSequence, *, overwrite: bool = False) -> Path:
    """Write ``poses`` to ``path`` (``.npz``, compressed, no object arrays) atomically.

    Raises:
        FileExistsError: if ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; choose another name or allow overwriting")
    arrays: dict[str, np.ndarray] = {
        "format_version": np.array(FORMAT_VERSION),
        "keypoints_2d": poses.keypoints_2d,
        "timestamps": poses.timestamps,
        "frame_indices": poses.frame_indices,
        "detected": poses.detected,
        "fps": np.array(poses.fps),
        "image_size": np.array(poses.image_size, dtype=np.int64),
        "joint_names_2d": np.array(poses.joint_names_2d, dtype=np.str_),
        "joint_names_3d": np.array(skeletons.CANONICAL, dtype=np.str_),
        "backend": np.array(poses.backend, dtype=np.str_),
        "lifter": np.array(poses.lifter, dtype=np.str_),
        "source": np.array(poses.source, dtype=np.str_),
        "notes": np.array(poses.notes, dtype=np.str_),
    }
    if poses.joints_3d is not None:
        arrays["joints_3d"] = poses.joints_3d
    if poses.crop is not None:
        arrays["crop"] = np.array(poses.crop, dtype=np.int64)
    if poses.rotate:
        arrays["rotate"] = np.array(poses.rotate, dtype=np.int64)
    if poses.trajectory is not None:
        arrays["trajectory"] = poses.trajectory
    for name in ("shots", "rejected", "upper_body", "hands", "face", "contact_probs", "foot_contacts", "camera_up",
                 "world_landmarks", "background_motion", "background_measured"):
        if getattr(poses, name) is not None:
            arrays[name] = getattr(poses, name)
    if poses.quality:
        arrays["quality"] = np.array(poses.quality, dtype=np.str_)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path, suffix=".tmp.npz") as tmp:
        np.savez_compressed(tmp, **arrays)
    return path


#: Arrays every pose file holds (the others, joints_3d, crop, rotate, trajectory, lifter, source, notes, shots, rejected,
#: upper_body, quality, hands, face, contact_probs, foot_contacts, camera_up, world_landmarks, background_motion and
#: background_measured, are optional: files without them still load).
REQUIRED_ARRAYS = ("format_version", "keypoints_2d", "timestamps", "frame_indices", "detected", "fps", "image_size",
                   "joint_names_2d", "backend")


class PoseFileError(PipelineError, ValueError):
    """A pose file this program cannot use; ``code`` is ``"bad_input"`` and the message names the file."""

    def __init__(self, message: str):
        super().__init__("bad_input", message)


def _number(a: np.ndarray, name: str) -> float:
    if a.size != 1:
        raise ValueError(f"{name} must be one number, got shape {a.shape}")
    return float(a.reshape(-1)[0])


def load(path: str | os.PathLike, *, max_bytes: int | None = None) -> PoseSequence:
    """Read a file written by :func:`save` (never unpickles).

    The file is read by :func:`core.safe_npz.load_npz` with pickles refused and its size limit (``max_bytes``,
    default :func:`core.safe_npz.default_max_bytes`), so a hostile file cannot take more memory than that.

    Raises:
        FileNotFoundError: no such file.
        PoseFileError (a PipelineError "bad_input" and a ValueError): not a pose file of this project, a missing
            array (the message names it and what writes pose files), or inconsistent arrays.
        core.safe_npz.SafeLoadError (also "bad_input" / ValueError): not a readable .npz, an object array, or
            larger than the limit.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such pose file")
    d = safe_npz.load_npz(path, max_bytes=max_bytes, allow_pickle=False)
    if "format_version" not in d or "keypoints_2d" not in d:
        raise PoseFileError(f"{path}: not an Anime MMD pose file (no format_version/keypoints_2d arrays); pose files "
                            f"are written by the pipeline's --npz output (core.pose_io.save)")
    try:
        version = int(d["format_version"])
    except (TypeError, ValueError):
        raise PoseFileError(f"{path}: format_version is not a number ({d['format_version']!r})") from None
    if version > FORMAT_VERSION:
        raise PoseFileError(f"{path}: pose file version {version} is newer than this program "
                            f"(reads up to {FORMAT_VERSION}); update Anime MMD")
    missing = [k for k in REQUIRED_ARRAYS if k not in d]
    if missing:
        names = ", ".join(f"'{k}'" for k in missing)
        raise PoseFileError(
            f"{path}: pose file lacks the {names} array{'s' if len(missing) > 1 else ''} (it holds "
            f"{', '.join(sorted(d))}); pose files are written by core.pose_io.save, i.e. the --npz output of "
            f"'python -m core estimate VIDEO'; write it again that way rather than editing it")
    try:
        if "joint_names_3d" in d and tuple(str(n) for n in d["joint_names_3d"]) != skeletons.CANONICAL:
            raise ValueError("its 3D joint set differs from this program's CANONICAL set")
        return PoseSequence(
            keypoints_2d=d["keypoints_2d"], timestamps=d["timestamps"], frame_indices=d["frame_indices"],
            detected=d["detected"], fps=_number(d["fps"], "fps"), image_size=tuple(d["image_size"].tolist()),
            joint_names_2d=tuple(str(n) for n in d["joint_names_2d"]), backend=str(d["backend"]),
            joints_3d=d.get("joints_3d"), lifter=str(d.get("lifter", "")), source=str(d.get("source", "")),
            crop=tuple(d["crop"].tolist()) if "crop" in d else None, trajectory=d.get("trajectory"),
            notes=[str(n) for n in d.get("notes", [])], shots=d.get("shots"), rejected=d.get("rejected"),
            upper_body=d.get("upper_body"), quality=str(d["quality"]) if "quality" in d else "",
            hands=d.get("hands"), face=d.get("face"), contact_probs=d.get("contact_probs"),
            foot_contacts=d.get("foot_contacts"), camera_up=d.get("camera_up"),
            world_landmarks=d.get("world_landmarks"), background_motion=d.get("background_motion"),
            background_measured=d.get("background_measured"),
            rotate=int(d["rotate"]) if "rotate" in d else 0,
        )
    except (KeyError, ValueError, TypeError, IndexError) as e:
        raise PoseFileError(f"{path}: inconsistent pose file ({e})") from e
