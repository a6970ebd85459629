"""The detection cache: one pose ``.npz`` per input file + detection settings (no bpy here).

Detection (the worker's ``core.worker.job.detect_stage``) is the slow part; everything after it (smoothing,
trajectory, retargeting onto the chosen armature) runs in Blender from the saved ``.npz`` when the user presses
Apply. So the cache key covers exactly what changes the ``.npz``:

* the input file's identity: absolute path, size, modification time (the video, or the keypoint file for the
  ``keypoints`` backend),
* the frame range (start/end seconds, 0 = whole video), the crop box (when used),
* the backend, the lifter and the VideoPose3D checkpoint's identity (for ``lifter="videopose3d"``),
* the protocol version and the engine version (``core.__version__``), so an upgrade never reuses old results.

Not in the key: smoothing, target armature and other retargeting settings (applied after detection), and the device
(CPU and CUDA give the same poses up to float rounding).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from ._core import atomic, core, options, protocol

ENGINE_VERSION: str = core.__version__

#: The engine's backends (``core.options.BACKENDS``) plus the add-on's own choice of reading a keypoint file.
BACKENDS = options.values(options.BACKENDS) + ("keypoints",)
LIFTERS = options.values(options.LIFTERS)

#: Suffix of the temporary files ``core.pose_io.save`` writes before renaming; a killed worker can leave one.
TMP_SUFFIX = ".tmp.npz"
#: Marker of the worker's staged outputs (``core.atomic.STAGED_MARK``).
STAGED_MARK = atomic.STAGED_MARK


def file_identity(path: str | os.PathLike) -> dict[str, Any]:
    """``{"path": absolute path, "size": bytes, "mtime_ns": int}`` of an existing file or folder.

    Raises:
        FileNotFoundError: no such file.
    """
    p = Path(path).expanduser().resolve()
    st = p.stat()
    return {"path": str(p), "size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


@dataclass(frozen=True)
class DetectionSettings:
    """What the worker needs to detect, read from the scene's ``anime_mmd`` properties.

    Attributes:
        video: the video path ('' when the keypoints backend is used without one).
        start, end: seconds; ``None`` = from the start / to the end (the scene's 0 means that).
        crop: ``(x, y, w, h)`` px of the source frame, or None.
        backend: one of :data:`BACKENDS` (``keypoints`` reads ``keypoints`` instead of detecting).
        keypoints: keypoint file or folder for the ``keypoints`` backend.
        lifter: one of :data:`LIFTERS`.
        checkpoint: VideoPose3D checkpoint for ``lifter="videopose3d"``.
        device: ``"cpu"`` or ``"cuda"`` (not part of the cache key).
        force: use the detection even when the quality report would refuse it (``--force``; not in the key).
        hands, face: also detect the hands / face with MediaPipe Holistic (``--hands`` / ``--face``; in the key).
        rotate: ``--rotate`` (``core.options.ROTATIONS``: ``auto`` stands a video filmed sideways upright; in the key).
    """

    video: str
    start: float | None
    end: float | None
    crop: tuple[int, int, int, int] | None
    backend: str
    keypoints: str
    lifter: str
    checkpoint: str
    device: str = "cpu"
    force: bool = False
    hands: bool = False
    face: bool = False
    rotate: str = "auto"

    @classmethod
    def from_props(cls, props: Any, device: str = "CPU", abspath: Callable[[str], str] = str) -> "DetectionSettings":
        """From the scene's ``anime_mmd`` property group (or anything with the same attributes).

        ``abspath`` turns the file properties into absolute paths (the operator passes ``bpy.path.abspath``, which
        resolves Blender's ``//`` relative paths); empty paths stay empty.
        """
        start = float(props.start_time) or None
        end = float(props.end_time) or None
        crop = None
        if props.use_crop:
            crop = (int(props.crop_x), int(props.crop_y), int(props.crop_w), int(props.crop_h))
        def path(value: str) -> str:
            value = str(value or "").strip()
            return str(Path(abspath(value)).expanduser()) if value else ""

        return cls(video=path(props.video_path), start=start, end=end, crop=crop, backend=str(props.backend),
                   keypoints=path(props.keypoints_path), lifter=str(props.lifter),
                   checkpoint=path(props.checkpoint_path), device=str(device).lower(),
                   force=bool(getattr(props, "force", False)), hands=bool(getattr(props, "hands", False)),
                   face=bool(getattr(props, "face", False)), rotate=str(getattr(props, "rotate", "auto")))

    def problems(self) -> list[str]:
        """What prevents a run, as sentences for the UI (empty when the settings are usable)."""
        out = []
        if self.backend not in BACKENDS:
            out.append(f"Unknown backend {self.backend!r}")
        if self.lifter not in LIFTERS:
            out.append(f"Unknown lifter {self.lifter!r}")
        if self.rotate not in options.values(options.ROTATIONS):
            out.append(f"Unknown turn {self.rotate!r}")
        if self.backend == "keypoints":
            if not self.keypoints:
                out.append("Choose a keypoint file for the keypoints backend")
            elif not Path(self.keypoints).exists():
                out.append(f"Keypoint file not found: {self.keypoints}")
        elif not self.video:
            out.append("Choose a video file")
        elif not Path(self.video).is_file():
            out.append(f"Video not found: {self.video}")
        if self.lifter == "videopose3d":
            if not self.checkpoint:
                out.append("The VideoPose3D lifter needs a checkpoint file")
            elif not Path(self.checkpoint).is_file():
                out.append(f"Checkpoint not found: {self.checkpoint}")
        if self.start is not None and self.end is not None and self.end <= self.start:
            out.append(f"End time ({self.end:g} s) must be after start time ({self.start:g} s)")
        if self.start is not None and self.start < 0:
            out.append("Start time must not be negative")
        if self.crop is not None and (self.crop[2] <= 0 or self.crop[3] <= 0 or min(self.crop[:2]) < 0):
            out.append(f"Crop box needs x, y >= 0 and width, height > 0, got {self.crop}")
        return out

    def source(self) -> str:
        """The file detection reads."""
        return self.keypoints if self.backend == "keypoints" else self.video

    def options(self) -> dict[str, Any]:
        """The worker request's ``options`` (fields of ``core.options.DetectOptions``)."""
        opts: dict[str, Any] = {"start": self.start, "end": self.end, "crop": self.crop, "lifter": self.lifter,
                                "device": self.device}
        if self.backend == "keypoints":
            opts["from_keypoints"] = self.keypoints
        else:
            opts["video"] = self.video
            opts["backend"] = self.backend
            if self.rotate != "auto":
                opts["rotate"] = self.rotate
        if self.lifter == "videopose3d":
            opts["checkpoint"] = self.checkpoint
        if self.force:
            opts["force"] = True
        if self.backend == "mediapipe" and (self.hands or self.face):  # MediaPipe Holistic (core.options)
            opts["hands"], opts["face"] = self.hands, self.face
        return opts

    def key(self) -> str:
        """The cache key: sha256 hex of the canonical JSON of what determines the detection result.

        Raises:
            FileNotFoundError: the input (or checkpoint) does not exist.
        """
        d = asdict(self)
        d.pop("device")
        d.pop("force")  # whether a poor detection may be used does not change what is detected
        d["video"] = file_identity(self.video) if self.backend != "keypoints" else None
        d["keypoints"] = file_identity(self.keypoints) if self.backend == "keypoints" else None
        d["checkpoint"] = file_identity(self.checkpoint) if self.lifter == "videopose3d" else None
        for name in ("start", "end"):
            if d[name] is not None:
                d[name] = round(float(d[name]), 3)
        d["crop"] = list(self.crop) if self.crop is not None else None
        d["protocol"] = protocol.PROTOCOL_VERSION
        d["engine"] = ENGINE_VERSION
        text = json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(text.encode("ascii")).hexdigest()


def cache_path(cache_dir: str | os.PathLike, key: str) -> Path:
    """``<cache_dir>/<key>.npz``."""
    return Path(cache_dir) / f"{key}.npz"


def clean_stale(cache_dir: str | os.PathLike, older_than_s: float = 3600.0) -> list[Path]:
    """Delete temporary files a killed worker left in ``cache_dir`` (``*.tmp.npz`` and staged outputs older than
    ``older_than_s``, ``core.atomic.remove_stale``); returns what was deleted. Finished ``.npz`` files are never
    touched."""
    if not Path(cache_dir).is_dir():
        return []
    return atomic.remove_stale(cache_dir, older_than_s, patterns=("*" + TMP_SUFFIX, f".*{STAGED_MARK}*"))


def remove_partial(npz: str | os.PathLike) -> list[Path]:
    """Delete the temporary files a worker writing ``npz`` may have left when it was killed or crashed (the
    staged ``.<stem>.anime-mmd-partial-*`` files of ``core.atomic.OutputSet`` and the older ``*.tmp.npz`` form),
    right away instead of an hour later. Returns what was deleted; the finished ``npz`` is never touched."""
    npz = Path(npz)
    removed = []
    try:
        entries = list(npz.parent.iterdir())
    except OSError:
        return removed
    for p in entries:
        name = p.name
        if p == npz or not name.startswith("."):
            continue
        if f"{npz.stem}{STAGED_MARK}" in name or (name.startswith(f".{npz.name}.") and name.endswith(TMP_SUFFIX)):
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass
    return removed
