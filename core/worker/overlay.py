"""Check video: the source frames with the detected 2D skeleton drawn on them (worker side; av and cv2 lazily).

:func:`write_overlay` re-decodes the source video over the frames a :class:`~core.pose_io.PoseSequence` covers, draws
its 2D keypoints on the full (uncropped) frame -- shifted by the crop offset, with the crop box outlined -- and
encodes an MP4 with PyAV (H.264 via libx264 when the FFmpeg build has it, else MPEG-4 part 2).

Colours: detected frames draw the subject's left side orange, right side blue, the middle green; gap-filled frames
(``detected`` False, interpolated positions) draw every bone magenta and say "gap-filled"; frames without keypoints
say "no detection" in red. Joints with confidence below ``min_confidence`` are not drawn on detected frames.
"""
from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np

from .. import skeletons
from ..atomic import atomic_output
from ..errors import PipelineError
from ..pose_io import PoseSequence

Progress = Callable[[str, int, "int | None"], None]


def _edges_by_name(pairs: tuple[tuple[str, str], ...], names: tuple[str, ...]) -> tuple[tuple[int, int], ...]:
    return tuple((names.index(a), names.index(b)) for a, b in pairs)


def _mirror_pairs(pairs):
    """The pairs plus their left/right mirror images (the subject's left and right swapped), without repeats."""
    def swap(n: str) -> str:
        return "right_" + n[5:] if n.startswith("left_") else "left_" + n[6:] if n.startswith("right_") else n

    out: list[tuple[str, str]] = []
    for a, b in pairs:
        for pair in ((a, b), (swap(a), swap(b))):
            if pair not in out and pair[::-1] not in out:
                out.append(pair)
    return tuple(out)


#: BlazePose's bones (the landmark topology of Bazarevsky et al. 2020, Fig. 4), as pairs of MEDIAPIPE33 indices.
MEDIAPIPE33_EDGES: tuple[tuple[int, int], ...] = _edges_by_name(_mirror_pairs((
    ("nose", "left_eye_inner"), ("left_eye_inner", "left_eye"), ("left_eye", "left_eye_outer"),
    ("left_eye_outer", "left_ear"), ("mouth_left", "mouth_right"), ("left_shoulder", "right_shoulder"),
    ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"), ("left_wrist", "left_pinky"),
    ("left_wrist", "left_index"), ("left_wrist", "left_thumb"), ("left_pinky", "left_index"),
    ("left_shoulder", "left_hip"), ("left_hip", "right_hip"), ("left_hip", "left_knee"), ("left_knee", "left_ankle"),
    ("left_ankle", "left_heel"), ("left_heel", "left_foot_index"), ("left_ankle", "left_foot_index"),
)), skeletons.MEDIAPIPE33)

#: H36M-17 bones from the parent table.
H36M17_EDGES: tuple[tuple[int, int], ...] = tuple((p, c) for c, p in enumerate(skeletons.H36M17_PARENTS) if p >= 0)

_LEFT, _RIGHT, _MID = (255, 140, 0), (0, 150, 255), (0, 220, 0)  # RGB
_GAP, _NONE, _BOX, _TEXT = (255, 0, 255), (255, 40, 40), (255, 255, 0), (255, 255, 255)

_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}


def edges_for(names: tuple[str, ...]) -> tuple[tuple[int, int], ...]:
    """Bones to draw for a joint set (MEDIAPIPE33, COCO17, H36M17, CANONICAL); ``()`` for an unknown set."""
    names = tuple(names)
    if names == skeletons.MEDIAPIPE33:
        return MEDIAPIPE33_EDGES
    if names == skeletons.COCO17:
        return skeletons.COCO17_EDGES
    if names == skeletons.H36M17:
        return H36M17_EDGES
    if names == skeletons.CANONICAL:
        return skeletons.CANONICAL_EDGES
    return ()


def _side(name: str) -> tuple[int, int, int]:
    n = name.lower()
    if n.startswith("left") or (len(name) > 1 and name[0] == "L" and name[1].isupper()):
        return _LEFT
    if n.startswith("right") or (len(name) > 1 and name[0] == "R" and name[1].isupper()):
        return _RIGHT
    return _MID


def draw_pose(image: np.ndarray, keypoints: np.ndarray, names: tuple[str, ...], *, offset=(0, 0),
              gap_filled: bool = False, min_confidence: float = 0.3) -> np.ndarray:
    """Draw one 2D skeleton on an RGB image, in place.

    Args:
        image: ``(H, W, 3)`` uint8 RGB, writable.
        keypoints: ``(J, 3)`` px (x, y) in the (cropped) pose frame + confidence; NaN joints are skipped.
        names: joint names (``len == J``), choosing the bones (:func:`edges_for`) and the left/right colours.
        offset: ``(x, y)`` px added to the keypoints (the crop's top-left corner).
        gap_filled: draw in the gap colour and ignore confidences (interpolated frames have confidence 0).
        min_confidence: joints below it are not drawn (detected frames only).
    Returns:
        ``image``.
    """
    import cv2

    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.ndim != 2 or kp.shape[1] != 3 or kp.shape[0] != len(names):
        raise ValueError(f"keypoints must be ({len(names)}, 3), got {kp.shape}")
    xy = kp[:, :2] + np.asarray(offset, dtype=np.float64)
    ok = np.all(np.isfinite(xy), axis=1)
    if not gap_filled:
        ok &= np.nan_to_num(kp[:, 2]) >= min_confidence
    scale = max(1, int(round(max(image.shape[:2]) / 480)))
    shift = 4  # sub-pixel precision bits for cv2
    pts = np.rint(np.where(ok[:, None], xy, 0.0) * (1 << shift)).astype(np.int64)
    for a, b in edges_for(names):
        if ok[a] and ok[b]:
            colour = _GAP if gap_filled else (_side(names[b]) if _side(names[a]) == _MID else _side(names[a]))
            cv2.line(image, tuple(int(v) for v in pts[a]), tuple(int(v) for v in pts[b]), colour,
                     2 * scale, cv2.LINE_AA, shift)
    for j in np.flatnonzero(ok):
        cv2.circle(image, tuple(int(v) for v in pts[j]), (3 * scale) << shift,
                   _GAP if gap_filled else _side(names[j]), -1, cv2.LINE_AA, shift)
    return image


def _label(image: np.ndarray, text: str, row: int, colour) -> None:
    import cv2

    scale = max(0.5, image.shape[0] / 900)
    y = int((row + 1) * 28 * scale) + 4
    cv2.putText(image, text, (8, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), max(1, int(4 * scale)), cv2.LINE_AA)
    cv2.putText(image, text, (8, y), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, max(1, int(1.5 * scale)), cv2.LINE_AA)


def _pick_codec() -> str:
    import av

    for name in ("libx264", "h264", "mpeg4"):
        try:
            av.codec.Codec(name, "w")
            return name
        except (av.FFmpegError, ValueError):  # UnknownCodecError is a ValueError
            continue
    raise PipelineError("missing_dependency", "this PyAV build has neither an H.264 nor an MPEG-4 encoder; "
                                              "install the 'av' wheel from PyPI")


def write_overlay(video_path: str | os.PathLike, poses: PoseSequence, out_path: str | os.PathLike, *,
                  overwrite: bool = False, progress: Progress | None = None, min_confidence: float = 0.3) -> Path:
    """Write the source video with the 2D skeleton of ``poses`` drawn on it.

    The frames written are the source frames whose index lies in ``poses.frame_indices[0] ..
    poses.frame_indices[-1]`` (matched by index, so a windowed detection gets a windowed overlay), at the full source
    size, played at the source's nominal rate. Atomic: written to a temporary file beside ``out_path``, then renamed.

    Args:
        video_path: the video the poses were detected on.
        poses: keypoints in the (cropped) frame's px; ``poses.crop`` gives the offset.
        out_path: ``.mp4`` (also ``.m4v``, ``.mov``, ``.mkv``).
        overwrite: replace an existing ``out_path``.
        progress: ``progress("overlay", done, total)``.
        min_confidence: joints of detected frames below this confidence are not drawn.
    Returns:
        ``out_path`` as a Path.
    Raises:
        PipelineError("exists"): ``out_path`` exists and ``overwrite`` is False.
        PipelineError("bad_input"): unknown suffix, ``out_path`` is the source, poses that do not fit this video
            (size / crop), an empty pose sequence, or a source that cannot be decoded (core.video's errors).
        PipelineError("missing_dependency"): no usable encoder.
    """
    import av

    from . import video

    progress = progress or (lambda stage, done, total: None)
    src = Path(video_path)
    out = Path(out_path)
    fmt = _FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise PipelineError("bad_input", f"{out}: overlay files are written as .mp4 (or .mov, .mkv); "
                                         f"change the suffix {out.suffix!r}")
    if out.exists() and not overwrite:
        raise PipelineError("exists", f"{out} already exists; choose another name or allow overwriting")
    if src.exists() and out.exists() and out.resolve() == src.resolve():
        raise PipelineError("bad_input", f"{out} is the source video; choose another output name")
    if len(poses) == 0:
        raise PipelineError("bad_input", "the pose sequence is empty: nothing to draw")

    info = video.rotated(video.probe(src), poses.rotate)    # the frames as they were detected (turned, then cut)
    crop = poses.crop
    if crop is not None:
        try:
            crop = video.validate_crop(crop, info.width, info.height)
        except ValueError as e:
            raise PipelineError("bad_input", f"these poses were not detected on {src}: {e}") from e
        if (crop[2], crop[3]) != tuple(poses.image_size):
            raise PipelineError("bad_input", f"the poses' image size {poses.image_size} differs from their crop "
                                             f"{crop}; they were not detected on {src}")
        offset = (crop[0], crop[1])
    else:
        if tuple(poses.image_size) != (info.width, info.height):
            raise PipelineError("bad_input", f"the poses were detected on {poses.image_size[0]}x"
                                             f"{poses.image_size[1]} frames but {src} is {info.width}x{info.height}")
        offset = (0, 0)

    kp = np.asarray(poses.keypoints_2d, dtype=np.float64)
    names = poses.joint_names_2d
    by_index = {int(i): k for k, i in enumerate(poses.frame_indices)}
    first, last = int(poses.frame_indices[0]), int(poses.frame_indices[-1])
    total = last - first + 1
    frames = _frames_from(video, src, first, info.fps, poses.rotate)

    codec = _pick_codec()
    w, h = info.width + info.width % 2, info.height + info.height % 2  # yuv420p needs even sizes
    rate = Fraction(info.fps).limit_denominator(1001) if info.fps > 0 else Fraction(25)
    out.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with atomic_output(out, suffix=".tmp" + out.suffix) as tmp:
        container = av.open(str(tmp), mode="w", format=fmt)
        try:
            stream = container.add_stream(codec, rate=rate)
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            if codec in ("libx264", "h264"):
                stream.options = {"crf": "20", "preset": "veryfast"}
            else:
                stream.bit_rate = int(8 * w * h * float(rate) / 10)  # ~0.8 bit per pixel
            stream.codec_context.thread_type = "AUTO"
            progress("overlay", 0, total)
            for frame in frames:
                if frame.index < first:
                    continue
                if frame.index > last:
                    break
                img = frame.image
                if img.shape[:2] != (h, w):
                    img = np.pad(img, ((0, h - img.shape[0]), (0, w - img.shape[1]), (0, 0)), mode="edge")
                img = np.ascontiguousarray(img)
                _decorate(img, frame, by_index, kp, poses.detected, names, offset, crop, min_confidence)
                for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    container.mux(packet)
                written += 1
                if written % 25 == 0:
                    progress("overlay", written, total)
            for packet in stream.encode():
                container.mux(packet)
        finally:
            container.close()
            frames.close()
        if written == 0:
            raise PipelineError("bad_input", f"none of the poses' frames ({first}..{last}) decoded from {src}; "
                                             "were they detected on this video?")
    progress("overlay", written, written)
    return out


def _frames_from(video, src: Path, first: int, fps: float, rotate: int = 0):
    """Frames of ``src`` from index ``first`` on: seek a second before it by the nominal rate, and decode from the
    top instead when that lands past it (variable frame rate). Frames are matched by exact index afterwards."""
    start = first / fps - 1.0 if fps > 0 else 0.0
    if start > 0:
        try:
            it = video.iter_frames(src, start=start, rotate=rotate)
        except PipelineError:  # "start after the end": the nominal rate is off
            it = iter(())
        head = next(it, None)
        if head is not None and head.index <= first:
            yield head
            try:
                yield from it
            finally:
                it.close()
            return
        if hasattr(it, "close"):
            it.close()
    it = video.iter_frames(src, rotate=rotate)
    try:
        yield from it
    finally:
        it.close()


def _decorate(img, frame, by_index, kp, detected, names, offset, crop, min_confidence) -> None:
    import cv2

    if crop is not None:
        x, y, cw, ch = crop
        cv2.rectangle(img, (x, y), (x + cw - 1, y + ch - 1), _BOX, 2)
    k = by_index.get(frame.index)
    _label(img, f"frame {frame.index}  {frame.time:.2f} s", 0, _TEXT)
    if k is None:
        _label(img, "no pose for this frame", 1, _NONE)
        return
    pts = kp[k]
    if detected[k]:
        draw_pose(img, pts, names, offset=offset, min_confidence=min_confidence)
    elif np.isfinite(pts[:, :2]).any():
        draw_pose(img, pts, names, offset=offset, gap_filled=True)
        _label(img, "gap-filled (no detection)", 1, _GAP)
    else:
        _label(img, "no detection", 1, _NONE)
