"""Detection stage (worker side): decode a video, run a pose backend on every frame, keep one dancer.

:func:`detect_video` streams frames from :func:`core.video.iter_frames` into a backend of :mod:`core.backends` in
small batches, keeps every detection of every frame, then follows one person with
:func:`core.tracking.select_track` when some frame holds several people. Frames without the dancer get NaN
positions, confidence 0 and ``detected = False``; they are NOT gap-filled here (``core.pipeline`` does that).
Heavy packages (av, mediapipe, torch) are imported by the modules this one calls, inside functions.
"""
from __future__ import annotations

import math
import os
from typing import Callable

import numpy as np

from .. import skeletons
from .backends.base import FrameDetections, PoseBackend
from ..errors import PipelineError
from ..pose_io import PoseSequence

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
                 backend_options: dict | None = None, batch_size: int = 8) -> PoseSequence:
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

    Returns:
        :class:`~core.pose_io.PoseSequence` with ``T`` = decoded frames in the window:
        ``keypoints_2d (T, J, 3)`` image px of the (cropped) frame + confidence in the backend's joint set
        (NaN x, y and confidence 0 where ``detected`` is False); ``joints_3d (T, 27, 3)`` CANONICAL camera metres
        root-relative when the backend provides 3D (``lifter = "mediapipe"``), else None;
        ``timestamps`` from the frames' real pts, relative to the first decoded frame of the window;
        ``frame_indices`` as in a full decode; ``fps``; ``image_size`` (w, h) of the cropped frame; ``crop``;
        ``backend``; ``source``; ``notes`` (frames that failed to decode, frames without a person, several people).

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
    try:
        frames = video.iter_frames(path, start=start, end=end, crop=crop)
    except ValueError as e:
        raise PipelineError("bad_input", f"{path}: {e}") from e
    info = frames.info
    total = _expected_frames(info, frames.start, frames.end)

    # Decode on a background thread so that decoding and colour conversion (PyAV releases the GIL) overlap with the
    # detector instead of adding to it; the first frames decode while the model is being built.
    stream = _Prefetch(frames)
    own_backend = isinstance(backend, str)
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
    indices: list[int] = []
    times: list[float] = []
    dets: list[FrameDetections] = []
    image_size: tuple[int, int] | None = None
    try:
        progress("detect", 0, total)
        batch: list = []
        for frame in stream:
            batch.append(frame)
            if len(batch) >= batch_size:
                _run(model, batch, indices, times, dets)
                progress("detect", len(dets), total)
                batch = []
            if image_size is None:
                image_size = (frame.image.shape[1], frame.image.shape[0])
        if batch:
            _run(model, batch, indices, times, dets)
        progress("detect", len(dets), len(dets))
    finally:
        stream.close()
        frames.close()
        if own_backend:
            model.close()

    report = frames.report
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
    if not detected.any():
        raise PipelineError(
            "no_detection",
            f"no person was found in any of the {n} frames of {path}"
            + (f" inside the crop {tuple(frames.crop)}" if frames.crop else "")
            + "; check the crop and that the video shows a dancer's full body",
        )

    notes = []
    msg = report.message()
    if msg:
        notes.append(msg)
    missing = int(n - detected.sum())
    if missing:
        notes.append(f"no person detected in {missing} of {n} frames")
    several = int((counts > 1).sum())
    if several:
        notes.append(f"several people in {several} frames; followed the largest, most persistent one")
    t = np.asarray(times, dtype=np.float64)
    return PoseSequence(
        keypoints_2d=kp, timestamps=t - t[0], frame_indices=np.asarray(indices, dtype=np.int64),
        detected=detected, fps=info.fps, image_size=image_size, joint_names_2d=names, backend=model.name,
        joints_3d=j3, lifter=model.name if has_3d else "", source=str(path), crop=frames.crop, notes=notes,
    )


class _Prefetch:
    """Iterate ``frames`` on a daemon thread, ``depth`` frames ahead (bounded memory: depth x one frame).

    Exceptions raised while decoding are re-raised in the consuming thread; :meth:`close` stops the thread early.
    """

    _END = object()

    def __init__(self, frames, depth: int = 12):
        import queue
        import threading

        self._frames = frames
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
                if not self._put(frame):
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


def _run(model: PoseBackend, batch: list, indices: list, times: list, dets: list) -> None:
    out = model.process_batch([f.image for f in batch])
    if len(out) != len(batch):
        raise PipelineError("internal", f"backend {model.name!r} returned {len(out)} results for {len(batch)} frames")
    indices.extend(f.index for f in batch)
    times.extend(f.time for f in batch)
    dets.extend(out)
