"""Bring-your-own keypoints: read other tools' 2D/3D output into a :class:`core.pose_io.PoseSequence` (numpy + stdlib).

:func:`load_keypoints` recognises the content (not the file name):

(a) **detectron2 raw output** as written by VideoPose3D's ``inference/infer_video_d2.py`` (and Detectron1's
    ``infer_video.py``): an ``.npz`` with object arrays ``boxes`` and ``keypoints`` of one ``[[], per_person]`` pair
    per frame, Detectron1's per-class layout (index 1 = person): ``boxes[t][1]`` is ``(N, 5)`` xyxy px + score,
    ``keypoints[t][1]`` is ``(N, 4, 17)`` with rows x, y, logit, probability; ``N`` may be 0 (an empty list);
    ``metadata`` is ``{'w', 'h'}``. The dancer is chosen by :func:`core.tracking.select_track`; confidence is the
    probability row (detectron2's ``pred_keypoints[:, :, 2]``: a spatial soft-max of the keypoint heatmap normalised
    at the pooled heatmap size, so >= 0 but not bounded by 1; 15 % of the lia_kim values exceed 1) clipped to [0, 1].
(b) **VideoPose3D custom dataset** ``data_2d_custom_*.npz`` (``data/prepare_data_2d_custom.py``):
    ``positions_2d = {video: {'custom': [array (T, 17, 2)]}}`` and ``metadata`` with ``layout_name`` (must be
    ``'coco'``) and ``video_metadata = {video: {'w', 'h'}}``. That script already interpolated missing frames and
    dropped the confidences: every frame is reported detected, confidence 1.
(c) **OpenPose JSON folder**: one ``*_keypoints.json`` per frame (``people[].pose_keypoints_2d``, or
    ``pose_keypoints`` before OpenPose 1.2), ordered by the last number in the file name. COCO-18 and BODY-25 are
    mapped to COCO-17 (OpenPose doc/02_output.md, "Pose Output Format"); a joint OpenPose did not find (0, 0, 0) is
    NaN with confidence 0. Several people: :func:`core.tracking.select_track` on the keypoints' bounding boxes.
    OpenPose JSON has no image size: pass ``image_size``; otherwise it is **estimated** as the smallest common
    resolution that contains every keypoint: 16:9 landscape (640x360 up to 3840x2160), or 9:16 portrait when the
    largest y exceeds the largest x; a note says so. The VideoPose3D lifter normalises by the image width, so a
    wrong size scales its input: give the real size when you know it.
(d) **VideoPose3D 3D export** ``.npy`` ``(T, 17, 3)`` H36M-17 (``run.py --viz-export``): per ``run.py`` these are
    *camera-space* metres (the export happens before ``camera_to_world``), x right, y down, z forward, i.e. our
    ``camera`` frame; root-relative unless a trajectory model added the root position. Returned as ``joints_3d`` in
    the ``CANONICAL`` set (pelvis moved exactly to the origin; a pelvis that moves more than 1 cm becomes the
    ``trajectory``) with an empty 2D set (``J = 0``), ``image_size`` (0, 0), ``lifter = "import"``.

Frames are numbered from 0 in file order; ``timestamps = frame_indices / fps``.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from . import safe_npz, skeletons, tracking
from .errors import PipelineError
from .pose_io import PoseSequence

__all__ = ["KeypointsFormatError", "load_keypoints", "load_detectron2_raw", "load_videopose3d_custom",
           "load_openpose_folder", "load_videopose3d_export", "OPENPOSE_COCO18", "OPENPOSE_BODY25",
           "estimate_image_size"]


class KeypointsFormatError(PipelineError, ValueError):
    """A keypoint file this module cannot read; ``code`` is ``"bad_input"`` and the message names the file."""

    def __init__(self, message: str):
        super().__init__("bad_input", message)


#: OpenPose COCO-18 joint order (OpenPose doc/02_output.md, ``POSE_COCO_BODY_PARTS``).
OPENPOSE_COCO18: tuple[str, ...] = (
    "Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist", "RHip", "RKnee", "RAnkle",
    "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar",
)

#: OpenPose BODY-25 joint order (OpenPose doc/02_output.md, ``POSE_BODY_25_BODY_PARTS``).
OPENPOSE_BODY25: tuple[str, ...] = (
    "Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist", "MidHip", "RHip", "RKnee",
    "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar", "LBigToe", "LSmallToe", "LHeel", "RBigToe",
    "RSmallToe", "RHeel",
)

_OPENPOSE_TO_COCO17 = {
    "nose": "Nose", "left_eye": "LEye", "right_eye": "REye", "left_ear": "LEar", "right_ear": "REar",
    "left_shoulder": "LShoulder", "right_shoulder": "RShoulder", "left_elbow": "LElbow", "right_elbow": "RElbow",
    "left_wrist": "LWrist", "right_wrist": "RWrist", "left_hip": "LHip", "right_hip": "RHip", "left_knee": "LKnee",
    "right_knee": "RKnee", "left_ankle": "LAnkle", "right_ankle": "RAnkle",
}

#: Resolutions tried by :func:`estimate_image_size` (16:9; portrait uses the transposes).
_COMMON_16_9 = ((640, 360), (854, 480), (960, 540), (1280, 720), (1920, 1080), (2560, 1440), (3840, 2160))


def _openpose_index(names: tuple[str, ...]) -> np.ndarray:
    return np.array([names.index(_OPENPOSE_TO_COCO17[n]) for n in skeletons.COCO17], dtype=np.int64)


def _sequence(keypoints: np.ndarray, detected: np.ndarray, fps: float, image_size, backend: str, source: Path,
              notes: list[str], joints_3d=None, trajectory=None, joint_names=skeletons.COCO17,
              lifter: str = "") -> PoseSequence:
    n = len(detected)
    if fps <= 0 or not np.isfinite(fps):
        raise ValueError(f"fps must be positive, got {fps}")
    frames = np.arange(n, dtype=np.int64)
    return PoseSequence(keypoints_2d=keypoints, timestamps=frames / float(fps), frame_indices=frames,
                        detected=detected, fps=fps, image_size=image_size, joint_names_2d=joint_names,
                        backend=backend, joints_3d=joints_3d, lifter=lifter, source=str(source),
                        trajectory=trajectory, notes=notes)


# --------------------------------------------------------------------------------------------- (a) detectron2 raw
def _person_entry(cell, t: int, what: str, path: Path):
    """``boxes[t]`` / ``keypoints[t]`` in Detectron1's per-class layout -> the person entry (class index 1)."""
    try:
        entry = cell[1]
    except (IndexError, TypeError, KeyError):
        raise KeypointsFormatError(f"{path}: frame {t}: {what} is not a per-class [background, person] pair") from None
    return entry


def load_detectron2_raw(path: str | os.PathLike, *, fps: float = 30.0, data: dict | None = None) -> PoseSequence:
    """Read detectron2/Detectron raw output (format (a) of the module docstring).

    Args:
        path: the ``.npz``; fps: the video's frame rate; data: its arrays if already read with
            :func:`core.safe_npz.load_npz`.
    Returns:
        PoseSequence: ``keypoints_2d (T, 17, 3)`` COCO-17 px + confidence; NaN and ``detected`` False where the
        followed person is absent; ``image_size`` from ``metadata``; ``backend = "detectron2"``.
    Raises:
        KeypointsFormatError: missing arrays, wrong shapes (message names the frame).
    """
    path = Path(path)
    d = safe_npz.load_npz(path) if data is None else data
    for key in ("boxes", "keypoints"):
        if key not in d:
            raise KeypointsFormatError(f"{path}: no '{key}' array: not detectron2 output from infer_video_d2.py")
    boxes_in, kps_in = d["boxes"], d["keypoints"]
    if len(boxes_in) != len(kps_in):
        raise KeypointsFormatError(f"{path}: {len(boxes_in)} frames of boxes but {len(kps_in)} of keypoints")
    n = len(boxes_in)
    if n == 0:
        raise KeypointsFormatError(f"{path}: no frames")
    boxes, scores, kps = [], [], []
    for t in range(n):
        b = _person_entry(boxes_in[t], t, "boxes", path)
        k = _person_entry(kps_in[t], t, "keypoints", path)
        b = np.asarray(b, dtype=np.float64)
        k = np.asarray(k, dtype=np.float64)
        if b.size == 0 or k.size == 0:
            boxes.append(np.zeros((0, 4)))
            scores.append(np.zeros(0))
            kps.append(np.zeros((0, 17, 3)))
            continue
        if b.ndim != 2 or b.shape[1] < 4:
            raise KeypointsFormatError(f"{path}: frame {t}: boxes must be (N, 5), got {b.shape}")
        if k.ndim != 3 or k.shape[1:] != (4, 17) or len(k) != len(b):
            raise KeypointsFormatError(f"{path}: frame {t}: keypoints must be ({len(b)}, 4, 17), got {k.shape}")
        boxes.append(b[:, :4])
        scores.append(b[:, 4] if b.shape[1] > 4 else np.ones(len(b)))
        kp = np.stack([k[:, 0], k[:, 1], np.clip(k[:, 3], 0.0, 1.0)], axis=-1)  # (N, 17, 3)
        kps.append(kp)
    chosen = tracking.select_track(boxes, scores)
    out = np.full((n, 17, 3), np.nan, dtype=np.float32)
    have = chosen >= 0
    if not have.any():
        raise KeypointsFormatError(f"{path}: no person detected in any of its {n} frames")
    out[have] = np.stack([kps[t][chosen[t]] for t in np.flatnonzero(have)])
    meta = d.get("metadata")
    meta = meta.item() if isinstance(meta, np.ndarray) and meta.shape == () else meta
    if not isinstance(meta, dict) or "w" not in meta or "h" not in meta:
        raise KeypointsFormatError(f"{path}: no metadata {{'w', 'h'}} with the video size")
    several = sum(1 for b in boxes if len(b) > 1)
    notes = [f"detectron2 keypoints from {path.name}: person followed in {int(have.sum())} of {n} frames"]
    if several:
        notes.append(f"{several} frames had several people; the largest, most persistent track was kept")
    return _sequence(out, have, fps, (int(meta["w"]), int(meta["h"])), "detectron2", path, notes)


# ------------------------------------------------------------------------------------- (b) VideoPose3D custom 2D
def load_videopose3d_custom(path: str | os.PathLike, *, fps: float = 30.0, video: str | None = None,
                            data: dict | None = None) -> PoseSequence:
    """Read a VideoPose3D ``data_2d_custom_*.npz`` (format (b) of the module docstring).

    Args:
        path: the ``.npz``; fps: frame rate; video: which video of the file (needed when it holds several);
        data: its arrays if already read.
    Returns:
        PoseSequence: ``keypoints_2d (T, 17, 3)`` COCO-17 px, confidence 1, all frames detected, ``backend =
        "videopose3d-custom"``.
    Raises:
        KeypointsFormatError: not COCO layout, unknown/ambiguous video, bad shapes.
    """
    path = Path(path)
    d = safe_npz.load_npz(path) if data is None else data
    try:
        positions = d["positions_2d"].item()
        meta = d["metadata"].item()
    except (KeyError, ValueError, AttributeError):
        raise KeypointsFormatError(f"{path}: needs 'positions_2d' and 'metadata' (VideoPose3D data_2d_custom)") from None
    if not isinstance(positions, dict) or not isinstance(meta, dict):
        raise KeypointsFormatError(f"{path}: 'positions_2d' and 'metadata' must be dicts")
    layout = meta.get("layout_name")
    if layout != "coco" or int(meta.get("num_joints", 17)) != 17:
        raise KeypointsFormatError(f"{path}: keypoint layout {layout!r} with {meta.get('num_joints')} joints; "
                                   "only VideoPose3D's 'coco' layout (17 COCO keypoints) is supported")
    names = sorted(positions)
    if video is None:
        if len(names) != 1:
            raise KeypointsFormatError(f"{path}: holds {len(names)} videos {names}; say which one")
        video = names[0]
    if video not in positions:
        raise KeypointsFormatError(f"{path}: no video {video!r}; it holds {names}")
    try:
        arr = np.asarray(positions[video]["custom"][0], dtype=np.float64)
        vm = meta["video_metadata"][video]
        size = (int(vm["w"]), int(vm["h"]))
    except (KeyError, IndexError, TypeError) as e:
        raise KeypointsFormatError(f"{path}: video {video!r} lacks positions_2d[..]['custom'][0] or "
                                   f"video_metadata w/h ({e})") from None
    if arr.ndim != 3 or arr.shape[1:] != (17, 2) or len(arr) == 0:
        raise KeypointsFormatError(f"{path}: video {video!r}: keypoints must be (T, 17, 2), got {arr.shape}")
    finite = np.all(np.isfinite(arr), axis=(1, 2))
    kp = np.concatenate([arr, np.where(finite, 1.0, 0.0)[:, None, None] * np.ones((1, 17, 1))], axis=-1)
    notes = [f"VideoPose3D custom 2D keypoints of video {video!r} from {path.name} (no confidences: set to 1)"]
    return _sequence(kp, finite, fps, size, "videopose3d-custom", path, notes)


# ------------------------------------------------------------------------------------------------ (c) OpenPose
def _frame_number(p: Path) -> int:
    nums = re.findall(r"\d+", p.name)
    if not nums:
        raise KeypointsFormatError(f"{p}: no frame number in the file name")
    return int(nums[-1])


def estimate_image_size(keypoints: np.ndarray) -> tuple[int, int]:
    """Smallest common video size that contains every keypoint (see the module docstring, (c)).

    Args:
        keypoints: ``(..., 2+)`` px; NaN ignored.
    Returns:
        ``(width, height)`` px.
    Raises:
        ValueError: no finite keypoint.
    """
    xy = np.asarray(keypoints, dtype=np.float64)[..., :2].reshape(-1, 2)
    xy = xy[np.all(np.isfinite(xy), axis=1)]
    if len(xy) == 0:
        raise ValueError("no keypoints to estimate the image size from")
    hi = xy.max(0)
    portrait = hi[1] > hi[0]
    for w, h in _COMMON_16_9:
        if portrait:
            w, h = h, w
        if hi[0] <= w and hi[1] <= h:
            return (w, h)
    return (int(np.ceil(hi[0])) + 1, int(np.ceil(hi[1])) + 1)


def load_openpose_folder(path: str | os.PathLike, *, fps: float = 30.0,
                         image_size: tuple[int, int] | None = None) -> PoseSequence:
    """Read a folder of OpenPose JSON frames (format (c) of the module docstring).

    Args:
        path: the folder; fps: frame rate; image_size: ``(w, h)`` px of the video (estimated when None).
    Returns:
        PoseSequence: COCO-17 ``keypoints_2d (T, 17, 3)``, NaN/confidence 0 for joints OpenPose missed, NaN and
        ``detected`` False for frames without the followed person; ``backend = "openpose"``.
    Raises:
        KeypointsFormatError: no JSON frames, unreadable or pathologically nested JSON, unknown joint count,
            duplicate frame numbers.
        core.safe_npz.LimitExceededError: the JSON files hold more than :func:`core.safe_npz.default_max_bytes`.
    """
    path = Path(path)
    files = sorted(path.glob("*_keypoints.json")) or sorted(path.glob("*.json"))
    if not files:
        raise KeypointsFormatError(f"{path}: no OpenPose *_keypoints.json files in this folder")
    numbers = [_frame_number(f) for f in files]
    if len(set(numbers)) != len(numbers):
        raise KeypointsFormatError(f"{path}: two JSON files share a frame number")
    files = [f for _, f in sorted(zip(numbers, files))]
    limit = safe_npz.default_max_bytes()
    total = sum(f.stat().st_size for f in files)
    if total > limit:
        raise safe_npz.LimitExceededError(
            f"{path}: refusing to read it: its {len(files)} JSON files hold {total:,} bytes, over the limit of "
            f"{limit:,} bytes (a safeguard against files built to exhaust memory); if you trust them, raise the "
            f"limit with the environment variable {safe_npz.MAX_BYTES_ENV}=<bytes>")
    per_frame: list[np.ndarray] = []
    layout: tuple[str, ...] | None = None
    for f in files:
        try:
            doc = json.loads(f.read_text(encoding="utf-8"))
            people = doc["people"]
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as e:
            raise KeypointsFormatError(f"{f}: not an OpenPose keypoints JSON ({type(e).__name__}: {e})") from None
        if not isinstance(people, list):
            raise KeypointsFormatError(f"{f}: 'people' is a {type(people).__name__}, not a list")
        arrs = []
        for i, person in enumerate(people):
            flat = person.get("pose_keypoints_2d", person.get("pose_keypoints")) if isinstance(person, dict) else None
            if flat is None:
                raise KeypointsFormatError(f"{f}: person {i} has no pose_keypoints_2d")
            try:
                a = np.asarray(flat, dtype=np.float64)
            except (TypeError, ValueError):
                raise KeypointsFormatError(f"{f}: person {i}: pose_keypoints_2d is not a flat list of numbers") from None
            if a.ndim != 1:
                raise KeypointsFormatError(f"{f}: person {i}: pose_keypoints_2d is not a flat list of numbers")
            if a.size % 3:
                raise KeypointsFormatError(f"{f}: person {i}: {a.size} numbers is not (x, y, c) triples")
            a = a.reshape(-1, 3)
            names = {18: OPENPOSE_COCO18, 25: OPENPOSE_BODY25}.get(len(a))
            if names is None:
                raise KeypointsFormatError(f"{f}: person {i} has {len(a)} keypoints; expected 18 (COCO-18) "
                                           "or 25 (BODY-25)")
            if layout is not None and names != layout:
                raise KeypointsFormatError(f"{f}: mixes COCO-18 and BODY-25 frames")
            layout = names
            arrs.append(a[_openpose_index(names)])
        per_frame.append(np.stack(arrs) if arrs else np.zeros((0, 17, 3)))
    n = len(files)
    boxes, scores = [], []
    for a in per_frame:
        found = a[..., 2] > 0
        a[~found, :2] = np.nan
        a[~found, 2] = 0.0
        with np.errstate(all="ignore"):
            lo = np.nanmin(a[..., :2], axis=1) if len(a) else np.zeros((0, 2))
            hi = np.nanmax(a[..., :2], axis=1) if len(a) else np.zeros((0, 2))
        box = np.concatenate([lo, hi], axis=1)
        score = np.where(found.any(axis=1), a[..., 2].sum(axis=1) / np.maximum(found.sum(axis=1), 1), np.nan)
        boxes.append(box)
        scores.append(score)
    chosen = tracking.select_track(boxes, scores)
    have = chosen >= 0
    if not have.any():
        raise KeypointsFormatError(f"{path}: no person in any of its {n} OpenPose frames")
    out = np.full((n, 17, 3), np.nan)
    out[have] = np.stack([per_frame[t][chosen[t]] for t in np.flatnonzero(have)])
    notes = [f"OpenPose {'COCO-18' if layout == OPENPOSE_COCO18 else 'BODY-25'} keypoints from {n} JSON frames; "
             f"person followed in {int(have.sum())} frames"]
    if image_size is None:
        image_size = estimate_image_size(np.concatenate([p.reshape(-1, 3) for p in per_frame if len(p)]))
        notes.append(f"image size {image_size[0]}x{image_size[1]} estimated from the keypoint extent (OpenPose "
                     "JSON has none); pass the real size if you know it")
    else:
        image_size = (int(image_size[0]), int(image_size[1]))
        if min(image_size) <= 0:
            raise ValueError(f"image_size must be positive, got {image_size}")
    return _sequence(out, have, fps, image_size, "openpose", path, notes)


# ------------------------------------------------------------------------------------ (d) VideoPose3D 3D export
def load_videopose3d_export(path: str | os.PathLike, *, fps: float = 30.0,
                            array: np.ndarray | None = None) -> PoseSequence:
    """Read VideoPose3D's ``--viz-export`` ``.npy`` (format (d) of the module docstring).

    Args:
        path: the ``.npy`` ``(T, 17, 3)`` H36M-17 camera-frame metres; fps: frame rate; array: its content if
            already read.
    Returns:
        PoseSequence with ``joints_3d (T, 27, 3)`` CANONICAL (extras NaN), pelvis at the origin, ``trajectory`` the
        pelvis positions when they are not all within 1 cm of the origin, and no 2D joints.
    Raises:
        KeypointsFormatError: wrong shape or non-finite values.
    """
    path = Path(path)
    a = safe_npz.load_npy(path, allow_pickle=False) if array is None else array
    if a.ndim != 3 or a.shape[1:] != (17, 3) or len(a) == 0 or a.dtype.kind != "f":
        raise KeypointsFormatError(f"{path}: a VideoPose3D export is a float (T, 17, 3) array, got {a.shape} "
                                   f"{a.dtype}")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise KeypointsFormatError(f"{path}: contains NaN or infinite joint positions")
    root = a[:, :1, :]
    joints = a - root
    trajectory = None
    notes = [f"VideoPose3D 3D export {path.name}: H36M-17, camera frame, metres"]
    if np.max(np.linalg.norm(root[:, 0], axis=1)) > 0.01:
        trajectory = root[:, 0]
        notes.append("the export carries the root position: kept as the trajectory")
    n = len(a)
    return _sequence(np.zeros((n, 0, 3)), np.ones(n, dtype=bool), fps, (0, 0), "import", path, notes,
                     joints_3d=skeletons.h36m17_to_canonical(joints), trajectory=trajectory, joint_names=(),
                     lifter="import")


# ------------------------------------------------------------------------------------------------ dispatcher
def load_keypoints(path: str | os.PathLike, *, fps: float = 30.0, image_size: tuple[int, int] | None = None,
                   video: str | None = None) -> PoseSequence:
    """Read 2D keypoints (or a 3D export) written by another tool, recognising the content.

    Args:
        path: a detectron2 raw ``.npz``, a VideoPose3D ``data_2d_custom`` ``.npz``, an OpenPose JSON folder, or a
            VideoPose3D 3D export ``.npy`` (see the module docstring).
        fps: the source video's frame rate (keypoint files do not record it); 30 by default.
        image_size: ``(w, h)`` px, used for OpenPose folders (others record it).
        video: which video of a multi-video ``data_2d_custom`` file.
    Returns:
        PoseSequence (``keypoints_2d`` COCO-17 for 2D sources; ``joints_3d`` for the 3D export).
    Raises:
        FileNotFoundError: no such path.
        KeypointsFormatError: content not recognised (message lists what is accepted), or malformed.
        core.safe_npz.UnsafePickleError: an ``.npz`` whose pickles name code outside the allow-list (never run).
        core.safe_npz.LimitExceededError: a file that would inflate to, or whose pickles ask for, more memory than
            :func:`core.safe_npz.default_max_bytes` (a zip bomb, ``bytearray(3 << 30)``...). Both are
            ``PipelineError("bad_input")``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    accepted = ("detectron2 output from VideoPose3D's infer_video_d2.py (.npz), a VideoPose3D data_2d_custom .npz, "
                "a folder of OpenPose *_keypoints.json files, or a VideoPose3D 3D export (.npy, T x 17 x 3)")
    if path.is_dir():
        return load_openpose_folder(path, fps=fps, image_size=image_size)
    with open(path, "rb") as fp:
        head = fp.read(8)
    if head.startswith(b"PK"):
        data = safe_npz.load_npz(path)
        if "positions_2d" in data:
            return load_videopose3d_custom(path, fps=fps, video=video, data=data)
        if "boxes" in data and "keypoints" in data:
            return load_detectron2_raw(path, fps=fps, data=data)
        if "keypoints_2d" in data and "format_version" in data:
            raise KeypointsFormatError(f"{path}: this is an Anime MMD pose file; load it with --from-npz")
        raise KeypointsFormatError(f"{path}: an .npz with arrays {sorted(data)}: not one of: {accepted}")
    if head.startswith(b"\x93NUMPY"):
        return load_videopose3d_export(path, fps=fps, array=safe_npz.load_npy(path))
    if head.lstrip()[:1] in (b"{", b"["):
        raise KeypointsFormatError(f"{path}: a single JSON file; pass the folder holding all OpenPose frames")
    raise KeypointsFormatError(f"{path}: unrecognised content; expected {accepted}")
