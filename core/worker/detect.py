"""Detection stage (worker side): decode a video, run a pose backend on every frame, keep one dancer.

:func:`detect_video` streams frames from :func:`core.video.iter_frames` into a backend of :mod:`core.backends` in
small batches (a longer clip in parts at once, one detector per CPU core: ``core.worker.parallel``), keeps every
detection of every frame, then follows one person with
:func:`core.tracking.select_track` when some frame holds several people. Frames without the dancer get NaN
positions, confidence 0 and ``detected = False``; they are NOT gap-filled here (``core.worker.job`` does that).

Hard input (issue 10): without a crop, a still half beside the dancer (side-by-side uploads) is found first and
cropped away (:func:`_auto_crop`, ``core.crop_help``); every frame's colour signature gives the shot cuts
(``core.shots``, ``PoseSequence.shots``); frames whose skeleton is missing or fails the plausibility gate
(``core.gating``) are re-detected on padded, upscaled and mirrored windows around the track (:func:`_retry`).
The gate itself is applied to every 2D input by ``core.worker.job.detect_stage``.
Heavy packages (av, mediapipe, torch) are imported by the modules this one calls, inside functions.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .. import gating, skeletons
from .backends.base import PoseBackend
from ..crop_help import find_static_half
from ..errors import PipelineError
from ..pose_io import PoseSequence
from ..shots import detect_shots, frame_signature

Progress = Callable[[str, int, "int | None"], None]


def _no_progress(stage: str, done: int, total: int | None) -> None:
    pass


def _expected_frames(info, start: float | None, end: float | None) -> int | None:
    """Frames the window should hold (for progress bars; exact for a constant rate), or None when unknown."""
    if start is None and end is None:
        return info.presented_frames or None
    if info.fps <= 0 or info.duration <= 0:
        return None
    s = start or 0.0
    e = info.duration if end is None else min(end, info.duration)

    def first_at_or_after(t: float) -> int:  # frames sit at k / fps
        return int(math.ceil(t * info.fps - 1e-6))

    n = max(0, first_at_or_after(e) - first_at_or_after(s))
    return min(n, info.presented_frames) if info.presented_frames else n


def detect_video(path: str | os.PathLike, *, backend: str | PoseBackend = "mediapipe", start: float | None = None,
                 end: float | None = None, crop=None, device: str = "cpu", progress: Progress | None = None,
                 backend_options: dict | None = None, batch_size: int = 8, auto_crop: bool = True,
                 retry: bool = True, background: bool = True, rotate: int = 0, detect_parts: str = "auto",
                 threads: int | None = None) -> PoseSequence:
    """Detect the dancer's 2D keypoints (and the backend's 3D joints) on every frame of a video.

    Args:
        path: video file.
        backend: a registry name of :mod:`core.backends` (``"mediapipe"``, ``"detectron2"``), or a built
            :class:`~core.backends.base.PoseBackend` (then it is used as is and not closed).
        start, end: optional window in seconds (``core.video.iter_frames`` semantics: ``start <= t < end``).
        crop: optional ``(x, y, w, h)`` px box in the source frame; keypoints are then in the cropped frame's px.
        device: ``"cpu"`` or e.g. ``"cuda"``, passed to the backend.
        progress: ``progress("detect", done, total)`` after every batch (``total`` an estimate, or None).
        backend_options: extra keyword arguments for the backend's constructor.
        batch_size: frames per ``process_batch`` call (>= 1).
        auto_crop: without ``crop``, look for a still half beside the dancer (``core.crop_help``) and analyse only
            the moving half (said in ``notes``).
        retry: re-detect frames where the pose is missing or implausible (``core.gating``) on crops around the
            track's box, padded, upscaled and mirrored, keeping the candidate most consistent with the track
            (:func:`_retry`; MediaPipe backend by name only).
        background: measure the camera's pan and zoom on the background around the people found
            (``core.worker.background``; ``background_motion`` / ``background_measured`` of the result).
        rotate: turn every frame 0, 90, 180 or 270 degrees counter-clockwise before anything else sees it (after
            the display rotation; ``core.worker.video.iter_frames``): the crop, keypoints and image size are those
            of the turned frames (``rotate`` of the result).
        detect_parts: ``"auto"`` or ``"1"``, ``"2"``, ``"4"``, ``"8"``: into how many parts of the window the
            detection is split, each part detected by a detector of its own, the parts at once on ``threads``
            threads (``core.worker.parallel``; a backend given by name in :data:`PARALLEL_BACKENDS` only). ``"auto"``
            chooses by the window's length alone, so the result does not depend on the machine; ``"1"`` is one pass.
        threads: parts detected at once (None: one per CPU core, at most the parts and 4); the result does not
            depend on it.

    Returns:
        :class:`~core.pose_io.PoseSequence` with ``T`` = decoded frames in the window:
        ``keypoints_2d (T, J, 3)`` image px of the (cropped) frame + confidence in the backend's joint set
        (NaN x, y and confidence 0 where ``detected`` is False); ``joints_3d (T, 27, 3)`` CANONICAL camera metres
        root-relative when the backend provides 3D (``lifter = "mediapipe"``), else None;
        ``timestamps`` from the frames' real pts, relative to the first decoded frame of the window;
        ``frame_indices`` as in a full decode; ``fps``; ``image_size`` (w, h) of the cropped frame; ``crop``;
        ``backend``; ``source``; ``notes`` (frames that failed to decode, frames without a person, several people,
        the crop chosen, frames retried); ``shots`` ``(S, 2)`` frame ranges between shot cuts (``core.shots``).
        Keypoints are not gated here: ``core.worker.job.detect_stage`` gates every 2D input.

    Raises:
        PipelineError("bad_input"): missing file, not a video, a crop outside the frame, a bad window.
        PipelineError("no_frames"): nothing decodes in the window.
        PipelineError("no_detection"): no frame shows a person.
        PipelineError("missing_dependency"): the backend's packages are not installed.
    """
    from . import video

    progress = progress or _no_progress
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    crop_note = ""
    if crop is None and auto_crop:
        crop, crop_note = _auto_crop(path, start, end, rotate=rotate)
    try:
        frames = video.iter_frames(path, start=start, end=end, crop=crop, rotate=rotate)
    except ValueError as e:
        raise PipelineError("bad_input", f"{path}: {e}") from e
    info = frames.info
    total = _expected_frames(info, frames.start, frames.end)
    own_backend = isinstance(backend, str)

    parts = [None]
    if own_backend and backend in PARALLEL_BACKENDS:
        from . import parallel

        try:
            parts = parallel.plan_parts(info, frames.start, frames.end, parts=detect_parts)
        except ValueError as e:
            frames.close()
            raise PipelineError("bad_input", str(e)) from e
    span = model = None
    if len(parts) > 1:
        frames.close()
        span, model = parallel.detect_parts(
            path, parts, crop=frames.crop, rotate=frames.rotate, backend=backend, device=device,
            backend_options=backend_options, background=background, batch_size=batch_size, progress=progress,
            total=total, threads=threads, windowed=frames.report.windowed)
        if span is None:      # the parts did not join up (a damaged or oddly timed file): one pass, as before
            frames = video.iter_frames(path, start=start, end=end, crop=crop, rotate=rotate)
    if span is None:
        span, model = _detect_whole(frames, backend, own_backend, device, backend_options, background, batch_size,
                                    progress, total)
    dets, indices, times, signatures, image_size = span.dets, span.indices, span.times, span.signatures, span.image_size
    track = span.track

    report = span.report
    if not dets:
        window = "" if start is None and end is None else f" between {start or 0:.2f} s and " \
                                                          f"{'the end' if end is None else f'{end:.2f} s'}"
        why = report.message() or "the stream holds no decodable frame"
        raise PipelineError("no_frames", f"{path}: no frame decoded{window} ({why}); "
                                         "check the window, or re-encode the video")

    names = tuple(model.joint_names_2d)
    n, j2 = len(dets), len(names)
    has_3d = bool(model.provides_3d)
    counts = np.array([len(d) for d in dets])
    if np.any(counts > 1):
        from ..tracking import select_track

        choice = select_track([d.boxes for d in dets], [d.scores for d in dets])
    else:
        choice = np.where(counts == 1, 0, -1).astype(np.int64)
    detected = choice >= 0

    kp = np.full((n, j2, 3), np.nan, dtype=np.float32)
    kp[:, :, 2] = 0.0
    j3 = np.full((n, len(skeletons.CANONICAL), 3), np.nan, dtype=np.float32) if has_3d else None
    for t in np.flatnonzero(detected):
        d, k = dets[t], choice[t]
        if d.keypoints_2d.shape[1] != j2:
            raise PipelineError("internal", f"backend {model.name!r} gave {d.keypoints_2d.shape[1]} joints for a "
                                            f"{j2}-joint set")
        kp[t] = d.keypoints_2d[k]
        if has_3d and d.joints_3d is not None:
            j3[t] = d.joints_3d[k]
    t = np.asarray(times, dtype=np.float64)
    shots = detect_shots(np.asarray(signatures), t)
    notes = [crop_note] if crop_note else []
    if span.parts > 1:
        notes.append(f"detected in {span.parts} parts of the clip at once (--detect-parts)")
    if retry and own_backend and backend in ("mediapipe", "holistic") and n >= 3:
        n_try, n_won = _retry(path, start, end, frames.crop, kp, j3, detected, names, image_size, t, shots,
                              progress, backend_options, rotate=frames.rotate)
        if n_try:
            notes.append(f"retried {n_try} frames without a plausible pose on windows around the dancer "
                         f"(padded, upscaled, mirrored; searched where no neighbour had one): {n_won} recovered")
    if not detected.any():
        raise PipelineError(
            "no_detection",
            f"no person was found in any of the {n} frames of {path}"
            + (f" inside the crop {tuple(frames.crop)}" if frames.crop else "")
            + "; check the crop and that the video shows a dancer's full body",
        )

    if crop_note:
        edge = _edge_fraction(kp, detected, image_size, crop, info)
        if edge > 0.2:
            notes.append(f"the dancer reaches the inner edge of the automatic crop in {100 * edge:.0f}% of the "
                         "frames: if she crosses into the other half, run again with --no-auto-crop")
    msg = report.message()
    if msg:
        notes.append(msg)
    missing = int(n - detected.sum())
    if missing:
        notes.append(f"no person detected in {missing} of {n} frames")
    several = int((counts > 1).sum())
    if several:
        notes.append(f"several people in {several} frames; followed the largest, most persistent one")
    if len(shots) > 1:
        notes.append(f"{len(shots)} shots: cuts at " + ", ".join(f"{t[a] - t[0]:.2f} s" for a, _ in shots[1:]))
    bg = {}
    if track is not None:
        bg = {"background_motion": track.motion, "background_measured": track.measured}
    return PoseSequence(
        keypoints_2d=kp, timestamps=t - t[0], frame_indices=np.asarray(indices, dtype=np.int64),
        detected=detected, fps=info.fps, image_size=image_size, joint_names_2d=names, backend=model.name,
        joints_3d=j3, lifter=model.name if has_3d else "", source=str(path), crop=frames.crop, rotate=frames.rotate,
        notes=notes,
        shots=shots, **bg,
        # a backend with more than the body (core.worker.backends.holistic: hands, face) gives those arrays here
        **(model.sequence_extras(dets, choice) if hasattr(model, "sequence_extras") else {}),
    )


#: Backends (by registry name) whose detection may run in parts at once (``core.worker.parallel``): MediaPipe's
#: graphs run on the CPU, one core each, and are cheap to build; detectron2 keeps one model on its device.
PARALLEL_BACKENDS = ("mediapipe", "holistic")


@dataclass
class _Span:
    """What one pass of the detector over consecutive frames found: per kept frame its index, time (s), detections
    and shot signature; the background tracker fed every frame (or None); the decode report; the frame size."""

    indices: list
    times: list
    dets: list
    signatures: list
    tracker: object
    report: object
    image_size: tuple | None
    warmup: int = 0          # frames before ``own_from``: detected and tracked, not kept
    parts: int = 1           # parts of the window joined into this span (``core.worker.parallel``)

    @property
    def track(self):
        """The camera's :class:`~core.worker.background.BackgroundTrack` of the kept frames, or None."""
        return None if self.tracker is None else self.tracker.result()


class _Stopped(Exception):
    """A pass stopped early because another part failed or the run was cancelled."""


def _detect_span(stream, model: PoseBackend, *, background: bool, batch_size: int, on_batch=None, stop=None,
                 own_from: float | None = None) -> _Span:
    """Run ``model`` over the ``(frame, signature)`` pairs of ``stream`` (a :class:`_Prefetch`) in batches.

    Frames before ``own_from`` (seconds, ``VideoFrame.time``) warm the detector's tracking and the background
    tracker up but are not kept (``_Span.warmup`` counts them). ``on_batch(kept)`` is called after every batch;
    ``stop`` (a ``threading.Event``), once set, ends the pass with :class:`_Stopped`. The background tracker runs on
    a thread of its own (:class:`_OnThread`); the caller closes ``stream`` and ``model``.
    """
    tracker = None
    if background:
        from .background import BackgroundTracker

        tracker = _OnThread(BackgroundTracker())
    span = _Span([], [], [], [], None, None, None)
    try:
        batch: list = []
        for frame, signature in stream:
            if stop is not None and stop.is_set():
                raise _Stopped()
            keep = own_from is None or frame.time >= own_from - 1e-9
            if keep:
                span.signatures.append(signature)
            else:
                span.warmup += 1
            batch.append((frame, keep))
            if len(batch) >= batch_size:
                _run(model, batch, span, tracker)
                batch = []
                if on_batch is not None:
                    on_batch(len(span.dets))
            if span.image_size is None:
                span.image_size = (frame.image.shape[1], frame.image.shape[0])
        if batch:
            _run(model, batch, span, tracker)
        if on_batch is not None:
            on_batch(len(span.dets))
        span.tracker = tracker.finish() if tracker is not None else None
    finally:
        if tracker is not None:
            tracker.close()
    return span


def _detect_whole(frames, backend, own_backend: bool, device, backend_options, background: bool, batch_size: int,
                  progress, total):
    """One pass over the whole window (the detector built here when ``backend`` is a name): ``(_Span, model)``."""
    # Decode on a background thread so that decoding and colour conversion (PyAV releases the GIL) overlap with the
    # detector instead of adding to it; the first frames decode while the model is being built.
    stream = _Prefetch(frames, each=frame_signature)
    if own_backend:
        from .backends import get_backend

        try:
            model = get_backend(backend, device=device, **(backend_options or {}))
        except BaseException:
            stream.close()
            frames.close()
            raise
    else:
        model = backend
    try:
        progress("detect", 0, total)
        span = _detect_span(stream, model, background=background, batch_size=batch_size,
                            on_batch=lambda n: progress("detect", n, total))
        progress("detect", len(span.dets), len(span.dets))
    finally:
        stream.close()
        frames.close()
        if own_backend:
            model.close()
    span.report = frames.report
    return span, model


class _Prefetch:
    """Iterate ``frames`` on a daemon thread, ``depth`` frames ahead (bounded memory: depth x one frame), as
    ``(frame, each(frame.image))`` pairs: ``each`` is per-frame work that needs the image alone (the shot
    signature), done on the decode thread too.

    Exceptions raised while decoding are re-raised in the consuming thread; :meth:`close` stops the thread early.
    """

    _END = object()

    def __init__(self, frames, depth: int = 12, each=None):
        import queue
        import threading

        self._frames = frames
        self._each = each if each is not None else (lambda image: None)
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="anime-mmd-decode", daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        import queue

        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _work(self) -> None:
        try:
            for frame in self._frames:
                if not self._put((frame, self._each(frame.image))):
                    return
            self._put(self._END)
        except BaseException as e:  # handed to the consumer
            self._put(e)

    def __iter__(self):
        while True:
            item = self._queue.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class _OnThread:
    """Run a background tracker's :meth:`add` calls in order on a daemon thread, so that the camera's track (OpenCV,
    which releases the GIL) overlaps with the pose detector on a second core instead of adding to the detect stage.

    :meth:`add` queues a frame (at most ``depth`` wait: bounded memory); :meth:`result` waits for the queue to drain
    and returns the tracker's result, re-raising in the caller's thread what the tracker raised; :meth:`close`
    stops the thread early (idempotent).
    """

    _END = object()

    def __init__(self, tracker, depth: int = 12):
        import queue
        import threading

        self._tracker = tracker
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="anime-mmd-background", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is self._END or self._stop.is_set():
                return
            if self._error is None:
                try:
                    self._tracker.add(*item)
                except BaseException as e:  # handed to the caller by result()
                    self._error = e

    def add(self, image, boxes=None) -> None:
        import queue

        while self._thread.is_alive():
            try:
                self._queue.put((image, boxes), timeout=0.1)
                return
            except queue.Full:
                continue

    def finish(self):
        """Wait for every queued frame and return the tracker (re-raising what it raised)."""
        self._queue.put(self._END)
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._tracker

    def result(self):
        return self.finish().result()

    def close(self) -> None:
        import queue

        self._stop.set()
        try:
            self._queue.put_nowait(self._END)
        except queue.Full:
            pass
        self._thread.join(timeout=10)


def _run(model: PoseBackend, batch: list, span: _Span, tracker=None) -> None:
    """Detect ``batch`` (``(frame, keep)`` pairs), feed the background tracker, keep the frames marked ``keep``."""
    out = model.process_batch([f.image for f, _ in batch])
    if len(out) != len(batch):
        raise PipelineError("internal", f"backend {model.name!r} returned {len(out)} results for {len(batch)} frames")
    for (f, keep), d in zip(batch, out):
        if tracker is not None:   # the people just found are masked out of the background
            tracker.add(f.image, d.boxes)
        if keep:
            span.indices.append(f.index)
            span.times.append(f.time)
            span.dets.append(d)


def _auto_crop(path, start, end, *, max_frames: int = 24, span_s: float = 10.0,
               rotate: int = 0) -> tuple[tuple | None, str]:
    """Sample up to ``max_frames`` frames over the first ``span_s`` seconds of the window and look for a still
    half (``core.crop_help.find_static_half``): ``(crop or None, note)``. A video that cannot be sampled gives
    ``(None, "")`` (the main decode reports the problem)."""
    from . import video

    try:
        frames = video.iter_frames(path, start=start, end=end, rotate=rotate)
    except ValueError:
        return None, ""
    info = frames.info
    step = max(1, int(round(span_s * (info.fps or 25.0) / max_frames)))
    frames.every = step  # before the first frame: the frames between are decoded only, not converted to RGB
    sample, size = [], None
    try:
        for f in frames:
            if size is None:
                size = (f.image.shape[1], f.image.shape[0])
            s = max(1, max(size) // 256)
            sample.append(np.ascontiguousarray(f.image[::s, ::s]))
            if len(sample) >= max_frames:
                break
    except Exception:  # noqa: BLE001 - a decode error is reported by the main pass
        return None, ""
    finally:
        frames.close()
    if len(sample) < 4:
        return None, ""
    found = find_static_half(np.stack(sample), frame_size=size)
    return found.crop, (found.note + " (pass --crop to choose another box, or --no-auto-crop)" if found.crop else "")


def _edge_fraction(kp, detected, image_size, crop, info) -> float:
    """Fraction of detected frames whose confident joints come within 3% of the crop's edge that borders the rest
    of the source frame (where a dancer leaving an automatic crop would go)."""
    W, H = image_size
    x0, y0 = crop[0], crop[1]
    inner = [("x", 0.0)] if x0 > 0 else []
    inner += [("x", float(W))] if x0 + W < info.width else []
    inner += [("y", 0.0)] if y0 > 0 else []
    inner += [("y", float(H))] if y0 + H < info.height else []
    if not inner or not detected.any():
        return 0.0
    near = np.zeros(len(kp), dtype=bool)
    conf = kp[..., 2] >= 0.5
    for axis, at in inner:
        c = kp[..., 0] if axis == "x" else kp[..., 1]
        size = W if axis == "x" else H
        with np.errstate(invalid="ignore"):
            near |= (conf & (np.abs(c - at) < 0.03 * size)).any(axis=1)
    return float(near[detected].mean())


def _boxes(kp: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """``(T, 4)`` xyxy box of each usable frame's confident joints (NaN elsewhere)."""
    out = np.full((len(kp), 4), np.nan)
    for t in np.flatnonzero(usable):
        p = kp[t][kp[t, :, 2] > 0]
        if len(p) >= 2:
            out[t] = (p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max())
    return out


def _mirror_perm(names) -> np.ndarray:
    swap = {n: (n.replace("left", "right") if "left" in n else n.replace("right", "left")) for n in names}
    return np.array([names.index(swap[n]) if swap[n] in names else i for i, n in enumerate(names)])


#: Windows tried for a frame with a track: (pad factor of the square around the track's box, mirrored).
RETRY_CANDIDATES = ((1.5, False), (1.5, True), (2.5, False), (2.5, True))
#: A frame of a run without an accepted neighbour is searched: the whole frame zoomed out to this factor (the
#: person detector misses bodies cut by the frame edge, as in a close-up), and windows zoomed in (a small dancer).
RETRY_ZOOM_OUT = 1.6
#: Side of the zoomed-in search windows, as a fraction of the frame's longer side.
RETRY_SEARCH_WINDOW = 0.6
#: In a run without an accepted neighbour, the search is tried on every this many frames until one succeeds.
RETRY_SEARCH_EVERY = 5
#: Candidates above this :func:`core.gating.candidate_cost` are not taken.
RETRY_MAX_COST = 1.5


def _window(image: np.ndarray, x0: int, y0: int, w: int, h: int) -> np.ndarray:
    """The ``(h, w)`` window of ``image`` at ``(x0, y0)``, black where it leaves the image."""
    H, W = image.shape[:2]
    out = np.zeros((h, w, 3), dtype=image.dtype)
    ax0, ay0, ax1, ay1 = max(0, x0), max(0, y0), min(W, x0 + w), min(H, y0 + h)
    if ax1 > ax0 and ay1 > ay0:
        out[ay0 - y0:ay1 - y0, ax0 - x0:ax1 - x0] = image[ay0:ay1, ax0:ax1]
    return out


def _windows(box, ref, image_size):
    """Candidate windows ``(x0, y0, w, h, mirrored)`` in frame px for one frame (module constants above)."""
    W, H = image_size
    if box is None or ref is None:  # a search: the frame zoomed out, and five overlapping windows zoomed in
        w, h = int(round(W * RETRY_ZOOM_OUT)), int(round(H * RETRY_ZOOM_OUT))
        out = [((W - w) // 2, (H - h) // 2, w, h, False)]
        side = int(round(RETRY_SEARCH_WINDOW * max(W, H)))
        for fx, fy in ((0, 0), (1, 0), (0, 1), (1, 1), (0.5, 0.5)):
            out.append((int(round(fx * (W - side))), int(round(fy * (H - side))), side, side, False))
        return out
    cx, cy = 0.5 * (box[0] + box[2]), 0.5 * (box[1] + box[3])
    side0 = max(box[2] - box[0], box[3] - box[1], 0.05 * max(W, H))
    out = []
    for pad, mirror in RETRY_CANDIDATES:
        side = int(round(side0 * pad))
        out.append((int(round(cx - side / 2)), int(round(cy - side / 2)), side, side, mirror))
    return out


def _retry(path, start, end, crop, kp, j3, detected, names, image_size, t, shots, progress,
           backend_options=None, *, max_fraction: float = 1.0, max_run: int = 150, rotate: int = 0):
    """Re-detect frames the gate does not accept, in place (``kp``, ``j3``, ``detected``), following the dancer.

    The frames to retry form runs (consecutive frames of one shot, at most ``max_run`` long: their images are held
    while the run is worked on). Each run is worked from both ends inwards: a frame is tried on square windows around
    the box of the accepted frame next to it on that side (padded by each factor of :data:`RETRY_CANDIDATES`,
    black beyond the frame edge, upscaled to at least 256 px, plain and mirrored; MediaPipe in static-image mode);
    each result is mapped back to frame px (mirrored ones with left and right exchanged) and scored with
    :func:`core.gating.candidate_cost` against that neighbour (its scale and centre: continuity from frame to frame)
    and the shot's bone ratios; the best one under :data:`RETRY_MAX_COST` that also beats the frame's own skeleton
    is taken, and its box becomes the next frame's reference, so the windows follow a dancer who moves or grows.
    A run with no accepted neighbour (a shot without any usable frame) tries the whole frame zoomed out
    (:data:`RETRY_ZOOM_OUT`) and keeps the candidate that shows the most of a body. The gate of
    ``core.worker.job`` judges every result again. At most ``max_fraction`` of the frames are retried, those nearest a usable frame first.

    Returns:
        ``(frames retried, frames whose skeleton was replaced)``.
    """
    from . import video
    from .backends import get_backend

    g = gating.gate(kp, names, image_size, detected=detected, timestamps=t, shots=shots)
    bad = ~g.usable
    if not bad.any():
        return 0, 0
    limit = max(1, int(max_fraction * len(kp)))
    shot_of = np.zeros(len(kp), dtype=np.int64)
    dist = np.full(len(kp), np.inf)  # frames to the nearest usable frame of the same shot: the nearest go first
    for si, (a, b) in enumerate(shots):
        shot_of[a:b] = si
        ok = np.flatnonzero(g.usable[a:b])
        if ok.size:
            dist[a:b] = np.abs(np.arange(b - a)[:, None] - ok[None]).min(axis=1)
    cand = np.flatnonzero(bad)
    todo = np.sort(cand[np.argsort(dist[cand], kind="stable")][:limit])
    want = np.zeros(len(kp), dtype=bool)
    want[todo] = True
    boxes = _boxes(g.keypoints_2d.astype(np.float64), g.usable)
    med_ratio = g.reference(int(np.flatnonzero(g.usable)[0]), shots).bone_ratio if g.usable.any() else None
    opts = dict(backend_options or {})
    opts["static_image_mode"] = True
    model = get_backend("mediapipe", **opts)
    ctx = dict(kp=kp, j3=j3, detected=detected, names=tuple(names), image_size=image_size, boxes=boxes,
               model=model, perm=_mirror_perm(tuple(names)), med_ratio=med_ratio, won=0, done=0, total=len(todo),
               progress=progress, usable=g.usable.copy())
    try:
        frames = video.iter_frames(path, start=start, end=end, crop=crop, rotate=rotate)
        try:
            progress("retry", 0, len(todo))
            run: list = []
            for i, frame in enumerate(frames):
                if run and (not want[i] or shot_of[i] != shot_of[run[0][0]] or len(run) >= max_run):
                    _retry_run(run, shots[shot_of[run[0][0]]], ctx)
                    run = []
                if want[i]:
                    run.append((i, frame.image))
                if i >= todo[-1] and not run:
                    break
            if run:
                _retry_run(run, shots[shot_of[run[0][0]]], ctx)
        finally:
            frames.close()
    finally:
        model.close()
    return len(todo), ctx["won"]


def _retry_run(run: list, shot, ctx: dict) -> None:
    """Work one run of :func:`_retry` from both ends inwards (see there)."""
    a, b = int(shot[0]), int(shot[1])
    first, last = run[0][0], run[-1][0]
    usable, boxes = ctx["usable"], ctx["boxes"]
    left = first - 1 if first - 1 >= a and usable[first - 1] else None
    right = last + 1 if last + 1 < b and last + 1 < len(usable) and usable[last + 1] else None
    lo, hi = 0, len(run) - 1
    side = 0
    while lo <= hi:
        if left is None and right is None:  # search every few frames until the dancer is found, then follow
            i, img = run[lo]
            if lo % RETRY_SEARCH_EVERY == 0 and _retry_frame(i, img, None, ctx):
                left = i
            lo += 1
        else:
            from_left = (side == 0 and left is not None) or right is None
            side ^= 1
            if from_left:
                i, img = run[lo]
                lo += 1
                if _retry_frame(i, img, left, ctx):
                    left = i
            else:
                i, img = run[hi]
                hi -= 1
                if _retry_frame(i, img, right, ctx):
                    right = i
        ctx["done"] += 1
        ctx["progress"]("retry", ctx["done"], ctx["total"])


def _retry_frame(i: int, image: np.ndarray, ref_frame: int | None, ctx: dict) -> bool:
    """Try the windows of frame ``i`` against the accepted frame ``ref_frame`` (or none); True when replaced."""
    import cv2

    kp, names, size = ctx["kp"], ctx["names"], ctx["image_size"]
    if ref_frame is not None:
        scale, centre = gating.body_scale(kp[ref_frame:ref_frame + 1], names,
                                          kp[ref_frame:ref_frame + 1, :, 2] > 0)
        ratio = ctx["med_ratio"] if ctx["med_ratio"] is not None else np.full(len(gating.LIMB_BONES), np.nan)
        ref = gating.TrackReference(float(scale[0]), centre[0], ratio)
        if not np.isfinite(ref.scale) or ref.scale <= 0 or not np.isfinite(ref.centre).all():
            ref = None
    else:
        ref = None
    box = ctx["boxes"][ref_frame] if ref is not None else None
    if box is not None and not np.isfinite(box).all():
        box, ref = None, None
    cur = gating.candidate_cost(kp[i], names, size, ref) if ref is not None and ctx["detected"][i] else np.inf
    best = (cur, None, None)
    for x0, y0, w, h, mirror in _windows(box, ref, size):
        if w < 16 or h < 16:
            continue
        img = _window(image, x0, y0, w, h)
        up = max(1.0, 256.0 / max(img.shape[:2]))
        if up > 1.0:
            img = cv2.resize(img, (int(round(img.shape[1] * up)), int(round(img.shape[0] * up))),
                             interpolation=cv2.INTER_LINEAR)
        if mirror:
            img = img[:, ::-1]
        d = ctx["model"].process_batch([np.ascontiguousarray(img)])[0]
        if len(d) == 0:
            continue
        k = d.keypoints_2d[0].astype(np.float64).copy()
        x3 = d.joints_3d[0].astype(np.float64).copy() if d.joints_3d is not None else None
        if mirror:
            k[:, 0] = img.shape[1] - k[:, 0]
            k = k[ctx["perm"]]
            if x3 is not None:
                x3[:, 0] = -x3[:, 0]
                x3 = x3[skeletons.CANONICAL_MIRROR]
        k[:, 0] = k[:, 0] / up + x0
        k[:, 1] = k[:, 1] / up + y0
        if ref is not None:
            c = gating.candidate_cost(k, names, size, ref)
        else:  # no track to compare with: the candidate that shows the most of a body
            seen = (k[:, 2] >= 0.5) & (k[:, 0] >= 0) & (k[:, 0] <= size[0]) & (k[:, 1] >= 0) & (k[:, 1] <= size[1])
            c = 1.0 - float(seen.mean())
        if c < best[0]:
            best = (c, k, x3)
    if best[1] is None or best[0] >= RETRY_MAX_COST:
        return False
    kp[i] = best[1]
    if ctx["j3"] is not None and best[2] is not None:
        ctx["j3"][i] = best[2]
    ctx["detected"][i] = True
    ctx["won"] += 1
    ok = best[1][:, 2] >= 0.5
    p = best[1][ok] if ok.sum() >= 2 else best[1]
    ctx["boxes"][i] = (p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max())
    return True
