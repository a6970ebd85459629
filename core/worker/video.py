"""Streaming video decoding with PyAV (FFmpeg): probe a file, iterate its frames as RGB arrays.

Worker-side module: ``av`` is imported inside the functions, never at import time.

Frames are yielded one at a time (the video is never held in memory) with the codec's own threading enabled.
Each :class:`VideoFrame` carries

* ``index``: 0-based position among the frames a player presents (FFmpeg's order after the container's edit list),
  the same for a windowed and a full decode;
* ``time``: seconds from the stream's real presentation timestamp (pts), relative to the stream's start time, so
  the first presented frame is at (about) 0; ``start`` / ``end`` windows use the same time line;
* ``image``: RGB uint8 ``(H, W, 3)`` in the ``image`` frame of ``core.conventions``, after applying the stream's
  display rotation (phone videos), then any further turn asked for (``rotate``: a video filmed sideways without a
  rotation flag), then the crop.

A decoding error in the middle of a stream (a truncated or damaged file) ends the iteration instead of raising:
the :class:`DecodeReport` of the iterator says how many frames were decoded, how many the container announced, how
many the container's edit list hides on purpose, and the first error message.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from .. import upright
from ..errors import PipelineError

#: Seconds of stream time read past the window start when counting the frames before it (covers B-frame reordering).
_REORDER_MARGIN_S = 2.0


@dataclass(frozen=True)
class VideoInfo:
    """What a video file announces, plus its display rotation.

    Attributes:
        width, height: displayed frame size in px (after the display rotation; before any crop).
        fps: nominal frame rate (frames per second; the stream's average rate, else FFmpeg's guess).
        frame_count: frames the container lists for the stream (its sample count), or ``round(duration * fps)``
            when it lists none: an estimate; see ``hidden_frames``.
        duration: seconds the stream presents (container duration when the stream has none).
        codec: FFmpeg decoder name (``"h264"``...).
        rotation: display rotation in degrees counter-clockwise (0, 90, 180, -90), applied to every frame.
        hidden_frames: frames in ``frame_count`` that the container's edit list marks as not presented
            (FFmpeg and players skip them), 0 when the container has no such list.
        path: the file.
    """

    width: int
    height: int
    fps: float
    frame_count: int
    duration: float
    codec: str
    rotation: int = 0
    hidden_frames: int = 0
    path: str = ""

    @property
    def presented_frames(self) -> int:
        """``frame_count - hidden_frames``: the frames a player shows (an estimate when the container lists none)."""
        return max(0, self.frame_count - self.hidden_frames)


@dataclass
class VideoFrame:
    """One decoded frame: ``index`` (int), ``time`` (float seconds), ``image`` RGB uint8 ``(H, W, 3)``."""

    index: int
    time: float
    image: np.ndarray


@dataclass
class DecodeReport:
    """How a decode went; complete only after the iteration ends.

    Attributes:
        decoded: frames yielded.
        expected: frames the container lists for the whole stream (``VideoInfo.frame_count``).
        hidden: frames the container's edit list hides (``VideoInfo.hidden_frames``); FFmpeg does not present them.
        error: first decoding / demuxing error message, or None. Iteration stopped there.
        dropped: frames decoded but not yielded because they had no timestamp or one not after the previous frame's
            (broken timestamps; yielded times always increase strictly).
        windowed: True when ``start`` or ``end`` limited the decode (then ``decoded < expected`` is normal).
        finished: True once the iteration has ended (stream end, window end, or error).
    """

    decoded: int = 0
    expected: int = 0
    hidden: int = 0
    error: str | None = None
    dropped: int = 0
    windowed: bool = False
    finished: bool = False

    @property
    def complete(self) -> bool:
        """No error and, for a full decode, every frame a player would present was decoded
        (``decoded >= expected - hidden``)."""
        if self.error is not None:
            return False
        return self.windowed or self.decoded >= self.expected - self.hidden

    def message(self) -> str:
        """A one-line account for reports, ``""`` when there is nothing to say. Examples:
        ``"decoded 185 of 207 frames: the container's edit list hides 22 frames (players skip them too)"``,
        ``"decoded 168 of 338 frames: decoding stopped at an error: <FFmpeg message>"``.
        """
        reasons = []
        if self.error is not None:
            reasons.append(f"decoding stopped at an error: {self.error}")
        if self.dropped:
            reasons.append(f"{self.dropped} frames without an increasing timestamp were dropped")
        if self.windowed:
            return f"decoded {self.decoded} frames in the window: " + "; ".join(reasons) if reasons else ""
        missing = self.expected - self.decoded
        if missing <= 0 and not reasons:
            return ""
        if self.hidden and missing > 0:
            reasons.append(f"the container's edit list hides {min(self.hidden, missing)} frames "
                           "(players skip them too)")
            missing -= self.hidden
        if self.error is None and missing > 0:
            reasons.append(f"{missing} frames the container lists never arrived (truncated or damaged file?)")
        return f"decoded {self.decoded} of {self.expected} frames: " + "; ".join(reasons)


def _check_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise PipelineError("bad_input", f"{p}: no such file; check the video path")
    if not p.is_file():
        raise PipelineError("bad_input", f"{p}: not a file; choose a video file (.mp4, .mov, .mkv, .webm...)")
    return p


def _open(path: Path):
    """Open ``path`` with PyAV and return ``(container, video stream)``; PipelineError("bad_input") otherwise."""
    import av

    try:
        container = av.open(str(path), mode="r")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise PipelineError(
            "bad_input", f"{path}: not a video FFmpeg can read ({e}); choose a video file (.mp4, .mov, .mkv...)"
        ) from e
    if not container.streams.video:
        container.close()
        raise PipelineError("bad_input", f"{path}: the file has no video stream; choose a video file")
    return container, container.streams.video[0]


def _fps(stream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return float(rate)
    return 0.0


def _hidden_frames(stream) -> int:
    try:
        return int(sum(1 for e in stream.index_entries if e.is_discard))
    except (AttributeError, TypeError):  # older PyAV without index access, or formats without an index
        return 0


def _start_seconds(stream) -> Fraction:
    return Fraction(stream.start_time or 0) * stream.time_base


def probe(path: str | os.PathLike) -> VideoInfo:
    """Read a video's size, rate, length and codec (decodes one frame to learn the display rotation).

    Args:
        path: a video file.
    Returns:
        :class:`VideoInfo`.
    Raises:
        PipelineError("bad_input"): missing file, not a video, no video stream.
        PipelineError("no_frames"): the video stream has no decodable frame.
    """
    import av

    p = _check_path(path)
    container, stream = _open(p)
    try:
        fps = _fps(stream)
        if stream.duration is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000.0
        else:
            duration = 0.0
        frame_count = int(stream.frames or 0)
        if frame_count <= 0 and fps > 0:
            frame_count = int(round(duration * fps))
        try:
            first = next(iter(container.decode(stream)), None)
        except av.FFmpegError as e:
            raise PipelineError("no_frames", f"{p}: its first frame cannot be decoded ({e}); re-encode the video") \
                from e
        if first is None:
            raise PipelineError("no_frames", f"{p}: the video stream has no frames; choose another video")
        rotation = _rotation(first)
        w, h = (stream.height, stream.width) if rotation % 180 else (stream.width, stream.height)
        return VideoInfo(width=int(w), height=int(h), fps=fps, frame_count=frame_count, duration=duration,
                         codec=stream.codec_context.name, rotation=rotation, hidden_frames=_hidden_frames(stream),
                         path=str(p))
    finally:
        container.close()


def _rotation(frame) -> int:
    """Display rotation of a decoded frame, degrees counter-clockwise, snapped to a multiple of 90."""
    try:
        r = float(frame.rotation or 0)
    except (AttributeError, TypeError, ValueError):
        return 0
    return int(round(r / 90.0)) * 90 % 360 if not math.isnan(r) else 0


def validate_crop(crop, width: int, height: int) -> tuple[int, int, int, int] | None:
    """Check a crop box against a frame size.

    Args:
        crop: ``(x, y, w, h)`` integer px in the displayed frame (top-left corner, size), or None.
        width, height: the displayed frame size in px.
    Returns:
        the crop as a tuple of 4 ints, or None.
    Raises:
        ValueError: wrong length, non-integer values, non-positive size, or a box not inside the frame (the
            message gives the frame size).
    """
    if crop is None:
        return None
    try:
        vals = [float(v) for v in crop]
    except (TypeError, ValueError):
        raise ValueError(f"crop must be (x, y, w, h) in px, got {crop!r}") from None
    if len(vals) != 4 or not all(math.isfinite(v) and v == int(v) for v in vals):
        raise ValueError(f"crop must be 4 whole numbers (x, y, w, h) in px, got {crop!r}")
    x, y, w, h = (int(v) for v in vals)
    if w <= 0 or h <= 0:
        raise ValueError(f"crop width and height must be positive, got w={w}, h={h}")
    if x < 0 or y < 0 or x + w > width or y + h > height:
        raise ValueError(
            f"crop (x={x}, y={y}, w={w}, h={h}) reaches outside the {width}x{height} frame: "
            f"need 0 <= x, x + w <= {width}, 0 <= y, y + h <= {height}"
        )
    return x, y, w, h


def _validate_window(start, end) -> tuple[float | None, float | None]:
    s = None if start is None else float(start)
    e = None if end is None else float(end)
    for name, v in (("start", s), ("end", e)):
        if v is not None and (not math.isfinite(v) or v < 0):
            raise ValueError(f"{name} must be a non-negative number of seconds, got {v}")
    if s is not None and e is not None and e <= s:
        raise ValueError(f"end ({e} s) must be after start ({s} s)")
    return s, e


class FrameIterator:
    """Iterator over the :class:`VideoFrame` objects of one video; see :func:`iter_frames`.

    Attributes:
        info: the :class:`VideoInfo` of the file.
        crop: the validated crop ``(x, y, w, h)`` or None.
        every: yield every ``every``-th frame (see :func:`iter_frames`); may be set until the first frame is read.
        report: the :class:`DecodeReport`, final once iteration has ended.
        rotate: degrees counter-clockwise every frame is turned after its display rotation (see :func:`iter_frames`).
    """

    def __init__(self, path: Path, info: VideoInfo, start: float | None, end: float | None,
                 crop: tuple[int, int, int, int] | None, every: int = 1, rotate: int = 0):
        self.path = path
        self.info = info
        self.rotate = rotate
        self.start = start
        self.end = end
        self.crop = crop
        self.every = every
        self.report = DecodeReport(expected=info.frame_count, hidden=info.hidden_frames,
                                   windowed=start is not None or end is not None)
        self._gen = self._frames()

    def __iter__(self) -> "FrameIterator":
        return self

    def __next__(self) -> VideoFrame:
        return next(self._gen)

    def close(self) -> None:
        """Stop decoding and release the file (also done when iteration ends)."""
        self._gen.close()

    def __enter__(self) -> "FrameIterator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _index_before(self, start_s: float) -> tuple[int, int]:
        """Number of presented frames with time < ``start_s`` and the first pts at or after it (demux only)."""
        import av

        container, stream = _open(self.path)
        try:
            t0 = stream.start_time or 0
            tb = stream.time_base
            target = t0 + int(math.ceil(Fraction(start_s) / tb - Fraction(1, 1000)))
            stop = target + int(_REORDER_MARGIN_S / tb)
            pts = []
            try:
                for packet in container.demux(stream):
                    if packet.pts is None:
                        if packet.dts is None:
                            continue
                    elif not packet.is_discard:
                        pts.append(packet.pts)
                    if packet.dts is not None and packet.dts > stop:
                        break
            except av.FFmpegError:
                pass  # a damaged tail: the decode pass reports it
            return sum(1 for p in pts if p < target), target
        finally:
            container.close()

    def _frames(self) -> Iterator[VideoFrame]:
        import av

        container, stream = _open(self.path)
        try:
            stream.thread_type = "AUTO"  # frame + slice threading in the decoder
            tb = stream.time_base
            t0 = stream.start_time or 0
            index = 0
            start_pts = None
            count_skipped = False  # True when skipped frames must be counted (decoding from the top)
            if self.start is not None and self.start > 0:
                index, start_pts = self._index_before(self.start)
                try:
                    container.seek(start_pts, stream=stream, backward=True, any_frame=False)
                except av.FFmpegError:  # not seekable: reopen, decode from the top and skip
                    container.close()
                    container, stream = _open(self.path)
                    stream.thread_type = "AUTO"
                    index, count_skipped = 0, True
            end_s = self.end
            last_pts = None
            position = 0  # frames of the window so far (``every``)
            frames = container.decode(stream)
            while True:
                try:
                    frame = next(frames)
                except StopIteration:
                    break
                except av.FFmpegError as e:
                    self.report.error = str(e)
                    break
                if frame.pts is None or (last_pts is not None and frame.pts <= last_pts):
                    self.report.dropped += 1
                    continue
                if start_pts is not None and frame.pts < start_pts:
                    index += count_skipped
                    continue
                t = float((frame.pts - t0) * tb)
                if end_s is not None and t >= end_s - 1e-9:
                    break
                if position % self.every:  # decoded (later frames depend on it) but not converted nor yielded
                    position += 1
                    self.report.decoded += 1
                    last_pts = frame.pts
                    index += 1
                    continue
                position += 1
                image = frame.to_ndarray(format="rgb24")
                rot = (_rotation(frame) + self.rotate) % 360
                if rot:
                    image = np.rot90(image, k=rot // 90)
                if self.crop is not None:
                    x, y, w, h = self.crop
                    image = image[y:y + h, x:x + w]
                image = np.ascontiguousarray(image)
                self.report.decoded += 1
                last_pts = frame.pts
                yield VideoFrame(index=index, time=t, image=image)
                index += 1
        finally:
            self.report.finished = True
            container.close()


def iter_frames(path: str | os.PathLike, *, start: float | None = None, end: float | None = None,
                crop=None, every: int = 1, rotate: int = 0) -> FrameIterator:
    """Decode a video frame by frame (streaming; PyAV with codec threading).

    Args:
        path: a video file.
        start, end: optional window in seconds on the time line of ``VideoFrame.time`` (frames with
            ``start <= time < end`` are yielded). The decoder seeks to the key frame before ``start`` and skips
            precisely to it; frame indices stay those of a full decode.
        crop: optional ``(x, y, w, h)`` px box in the displayed frame; images are cut to it.
        every: yield only the 1st, ``every + 1``-th, ... frame of the window (indices and times as in a full
            decode; ``report.decoded`` counts every frame decoded): the frames between are decoded, as the codec
            needs them, but not converted to RGB, which is most of a frame's cost (a sample, e.g. the automatic
            crop's, of every 10th frame costs about a fifth of the full decode).
        rotate: turn every frame a further 0, 90, 180 or 270 degrees counter-clockwise after its display rotation
            (a video filmed sideways without a rotation flag; ``core.upright``); the crop and ``.info``'s size and
            ``rotation`` are those of the turned frames.
    Returns:
        a :class:`FrameIterator` (iterate it; read ``.report`` afterwards, ``.info`` any time).
    Raises:
        PipelineError("bad_input"): missing file, not a video (e.g. a .pmx), no video stream.
        PipelineError("no_frames"): no decodable frame at all, or ``start`` at or after the end (the message gives
            the video's length). A window that holds no frame otherwise just yields nothing (callers check the count,
            as :func:`core.detect.detect_video` does).
        ValueError: a crop outside the frame or a bad window (messages say the valid range).
    """
    start, end = _validate_window(start, end)
    if not isinstance(every, int) or every < 1:
        raise ValueError(f"every must be a whole number >= 1, got {every!r}")
    rotate = check_rotate(rotate)
    info = rotated(probe(path), rotate)
    c = validate_crop(crop, info.width, info.height)
    if start is not None and info.duration > 0 and start >= info.duration:
        raise PipelineError("no_frames", f"{path}: start {start:.3f} s is at or after the end of the video "
                                         f"({info.duration:.3f} s); choose an earlier start")
    return FrameIterator(Path(path), info, start, end, c, every, rotate)


def check_rotate(rotate) -> int:
    """``rotate`` as an int of ``core.upright.TURNS``; ValueError otherwise."""
    if isinstance(rotate, bool) or rotate not in upright.TURNS:
        raise ValueError(f"rotate must be 0, 90, 180 or 270 degrees, got {rotate!r}")
    return int(rotate)


def rotated(info: VideoInfo, rotate: int) -> VideoInfo:
    """``info`` for frames turned a further ``rotate`` degrees counter-clockwise (size swapped at 90 / 270)."""
    if not rotate:
        return info
    w, h = (info.height, info.width) if rotate % 180 else (info.width, info.height)
    return replace(info, width=w, height=h, rotation=(info.rotation + rotate) % 360)
