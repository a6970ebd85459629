"""Detection in parts at once: the window split into consecutive parts, each detected by a detector of its own.

MediaPipe's pose graph runs on one CPU core (on the shared 2-core machine its CPU time equals its wall time), so on a
machine with more cores a single pass leaves them idle while the detector is by far the slowest stage of the job.
:func:`plan_parts` splits the window into 1, 2, 4 or 8 consecutive parts of equal length, chosen from the window's
length alone (so the result depends on the video and the options, never on the machine: the number of threads only
changes how many parts run at the same time); :func:`detect_parts` detects them on a pool of threads, each part on
its thread's detector reset to its just-built state, and joins what they found into what one pass gives
(``core.worker.detect._Span``).

Each part after the first starts decoding :data:`WARMUP_S` before its first frame: those frames let the new
detector find the dancer (its person detector runs on a first frame) and settle its landmark filter and tracking,
and give the background tracker the step into the part's first frame (``core.worker.background.joined``); they are
not kept. Parts join exactly (frame for frame) or not at all: when a part stops at a decoding error or the parts'
frame indices do not follow on (a damaged or oddly timed file), :func:`detect_parts` returns None and the caller
makes one pass, as before.

The detections of a part's frames are not bit-identical to those of one pass (MediaPipe tracks each frame from the
previous one's landmarks, so two passes that started apart stay a pixel or two apart; measured in
``benchmarks/bench_pipeline.py`` and ``tests/worker/test_parallel.py``), which is within the detector's own noise.
"""
from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass

from .. import options

__all__ = ["MIN_PART_FRAMES", "MAX_PARTS", "MAX_THREADS", "WARMUP_S", "PART_CHOICES", "Part", "plan_parts", "default_threads",
           "detect_parts"]

#: ``"auto"`` gives every part at least this many frames (3 s at 30 fps): 1 part under 180 frames, 2 under 360,
#: 4 under 720, else 8.
MIN_PART_FRAMES = 90
#: The most parts (and threads) a window is split into.
MAX_PARTS = 8
#: The most parts detected at once by default (:func:`default_threads`): each MediaPipe pose graph holds about
#: 116 MB (measured on the shared machine: 207 MB with one graph, 323 with two, 439 with three).
MAX_THREADS = 4
#: Seconds decoded and detected before a part's first frame, not kept (the module docstring).
WARMUP_S = 0.5
#: Values of ``detect_parts`` (``core.options.DetectOptions.detect_parts``).
PART_CHOICES = options.values(options.DETECT_PARTS)


_BUILD_LOCK = threading.Lock()


@dataclass(frozen=True)
class Part:
    """One part of the window, times in seconds on ``VideoFrame.time``'s line: decode from ``decode_from`` (None: the
    window's start), keep the frames at or after ``own_from`` (None: all), stop before ``end`` (None: the end)."""

    decode_from: float | None
    own_from: float | None
    end: float | None


def plan_parts(info, start: float | None, end: float | None, parts: str = "auto") -> list[Part]:
    """Split the window ``[start, end)`` of a video into consecutive parts.

    Args:
        info: the video's ``core.worker.video.VideoInfo`` (frame rate, duration, frame count).
        start, end: the window in seconds (None: the video's start / end), as ``core.worker.video.iter_frames``.
        parts: one of :data:`PART_CHOICES`: ``"auto"`` (1, 2, 4 or 8 by the window's length, each part at least
            :data:`MIN_PART_FRAMES` frames), or a number of parts (fewer where a part would hold under two warm-ups).
    Returns:
        the parts in time order (one part, the whole window, when the frame rate or length is unknown). Part
        boundaries lie half a frame before a frame's nominal time ``k / fps``, so no frame sits on one.
    Raises:
        ValueError: ``parts`` not one of :data:`PART_CHOICES`.
    """
    if parts not in PART_CHOICES:
        raise ValueError(f"detect parts must be one of {', '.join(PART_CHOICES)}, got {parts!r}")
    from .detect import _expected_frames

    whole = [Part(start, None, end)]
    fps = float(getattr(info, "fps", 0.0) or 0.0)
    n = _expected_frames(info, start, end)
    if not n or fps <= 0 or not math.isfinite(fps):
        return whole
    if parts == "auto":
        k = min(MAX_PARTS, n // MIN_PART_FRAMES)
        k = 1 << (k.bit_length() - 1) if k >= 1 else 1      # 1, 2, 4 or 8: parts share out evenly over threads
    else:
        warm = max(1, int(math.ceil(WARMUP_S * fps)))
        k = max(1, min(int(parts), n // (2 * warm)))
    if k <= 1:
        return whole
    f0 = int(math.ceil((start or 0.0) * fps - 1e-6))         # the window's first frame slot
    bounds = [(f0 + round(i * n / k) - 0.5) / fps for i in range(1, k)]
    out = [Part(start, None, bounds[0])]
    for i, b in enumerate(bounds):
        out.append(Part(max(0.0, b - WARMUP_S), b, bounds[i + 1] if i + 1 < len(bounds) else end))
    return out


def default_threads(n_parts: int) -> int:
    """Parts detected at once by default: one per CPU core this process may use, at most ``n_parts`` and
    :data:`MAX_THREADS`."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(int(n_parts), cores, MAX_THREADS))


def detect_parts(path, parts: list[Part], *, crop, rotate: int, backend: str, device: str, backend_options,
                 background: bool, batch_size: int, progress, total, threads: int | None, windowed: bool):
    """Detect every part on a pool of ``threads`` threads, each part on its thread's ``backend`` reset to its
    just-built state (``reset()``: so a part's detections do not depend on which thread ran it), and join them.

    Args:
        path: the video.  parts: from :func:`plan_parts`.  crop, rotate: as ``core.worker.video.iter_frames``.
        backend, device, backend_options: what ``core.worker.backends.get_backend`` builds for each part.
        background: track the camera on the background (``core.worker.background``), joined over the parts.
        batch_size: frames per detector call.  progress: ``progress("detect", done, total)``, called on the
            calling thread only (about four times a second).  total: the frames expected, or None.
        threads: parts at once (None: :func:`default_threads`).  windowed: the user's window limits the decode
            (for the joined decode report).
    Returns:
        ``(span, model)``: the joined ``core.worker.detect._Span`` and one of the (closed) detectors, for its joint
        names and kind; ``(None, None)`` where the parts do not join up (the module docstring).
    Raises:
        whatever a part raised (the first part's first), after the other parts have stopped; KeyboardInterrupt or a
        cancellation raised in the calling thread (e.g. by ``progress``) also stops them first.
    """
    from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

    from ..shots import frame_signature
    from . import video
    from .backends import get_backend
    from .detect import _detect_span, _Prefetch, _Span, _Stopped

    threads = default_threads(len(parts)) if threads is None else max(1, min(int(threads), len(parts)))
    stop = threading.Event()
    kept = [0] * len(parts)
    local = threading.local()
    built: list = []          # every detector built (one per thread), closed at the end

    def detector():
        """This thread's detector, reset to its just-built state (a new part is a new clip to it): the same
        detections as a detector built per part, one graph per thread instead of per part."""
        model = getattr(local, "model", None)
        if model is not None:
            model.reset()
            return model
        with _BUILD_LOCK:         # one at a time: mediapipe's first import and graph set-up are not thread-safe
            model = get_backend(backend, device=device, **(backend_options or {}))
        built.append(model)
        local.model = model
        return model

    def one(k: int) -> _Span:
        part = parts[k]
        if stop.is_set():
            raise _Stopped()
        frames = video.iter_frames(path, start=part.decode_from, end=part.end, crop=crop, rotate=rotate)
        stream = _Prefetch(frames, each=frame_signature)
        try:
            def on_batch(n: int) -> None:
                if n // _TRIM_EVERY != kept[k] // _TRIM_EVERY:
                    _trim_heap()
                kept[k] = n

            span = _detect_span(stream, detector(), background=background, batch_size=batch_size, on_batch=on_batch,
                                stop=stop, own_from=part.own_from)
        finally:
            stream.close()
            frames.close()
            _trim_heap()
        span.report = frames.report
        return span

    progress("detect", 0, total)
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="anime-mmd-detect")
    futures = [pool.submit(one, k) for k in range(len(parts))]
    try:
        while True:
            _, pending = wait(futures, timeout=0.25, return_when=FIRST_EXCEPTION)
            progress("detect", sum(kept), total)
            errors = [f.exception() for f in futures if f.done() and not f.cancelled()]
            errors = [e for e in errors if e is not None and not isinstance(e, _Stopped)]
            if errors:
                raise errors[0]
            if not pending:
                break
    except BaseException:
        stop.set()
        for f in futures:
            f.cancel()
        raise
    finally:
        pool.shutdown(wait=True)
        for model in built:
            model.close()
    spans = [f.result() for f in futures]
    model = built[0]
    joined = _join(spans, background, windowed)
    if joined is not None:
        progress("detect", len(joined.dets), len(joined.dets))
    return (joined, model) if joined is not None else (None, None)


def _trim_heap() -> None:
    """Give the C heap's free memory back to the system (glibc's ``malloc_trim``; nothing where there is none). A
    part's frames are allocated on its decode thread and freed on the detector's and the tracker's, and glibc keeps
    what they leave behind: on a 54 s clip in 8 parts on 2 threads the process peaked at 813 MB without this, 519 MB
    with it (430 MB in one pass)."""
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        try:
            import ctypes
            import ctypes.util

            _MALLOC_TRIM = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _MALLOC_TRIM = False
    if _MALLOC_TRIM:
        _MALLOC_TRIM(0)


_MALLOC_TRIM = None
#: Frames between two :func:`_trim_heap` calls within a part.
_TRIM_EVERY = 150


def _join(spans: list, background: bool, windowed: bool):
    """The parts' spans as one (``core.worker.detect._Span``), or None where they do not follow on frame for frame."""
    from . import video
    from .detect import _Span

    seen_empty = False
    last = None
    for sp in spans:
        if sp.report.error is not None:
            return None                   # one pass stops at the error and reports it: do that
        if not sp.indices:
            seen_empty = True
            continue
        if seen_empty:                    # frames after a part that held none: not what one pass would give
            return None
        if last is not None and (sp.indices[0] != last[0] + 1 or sp.times[0] <= last[1]):
            return None
        if any(b <= a for a, b in zip(sp.indices, sp.indices[1:])):
            return None
        last = (sp.indices[-1], sp.times[-1])
    out = _Span([], [], [], [], None, None, None)
    for sp in spans:
        out.indices += sp.indices
        out.times += sp.times
        out.dets += sp.dets
        out.signatures += sp.signatures
        if out.image_size is None:
            out.image_size = sp.image_size
    if background:
        from .background import joined as join_tracks

        out.tracker = join_tracks([(sp.tracker, sp.warmup) for sp in spans])
    out.parts = len(spans)
    first = spans[0].report
    out.report = video.DecodeReport(decoded=len(out.indices), expected=first.expected, hidden=first.hidden,
                                    dropped=sum(sp.report.dropped for sp in spans), windowed=windowed, finished=True)
    return out
