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

from .. import gating, skeletons
from .backends.base import FrameDetections, PoseBackend
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
                 retry: bool = True) -> PoseSequence:
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
        crop, crop_note = _auto_crop(path, start, end)
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
    signatures: list = []
    try:
        progress("detect", 0, total)
        batch: list = []
        for frame in stream:
            signatures.append(frame_signature(frame.image))
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

    t = np.asarray(times, dtype=np.float64)
    shots = detect_shots(np.asarray(signatures), t)
    notes = [crop_note] if crop_note else []
    if retry and own_backend and backend == "mediapipe" and n >= 3:
        n_try, n_won = _retry(path, start, end, frames.crop, kp, j3, detected, names, image_size, t, shots,
                              progress, backend_options)
        if n_try:
            notes.append(f"retried {n_try} frames without a plausible pose on crops around the dancer "
                         f"(padded, upscaled, mirrored): {n_won} recovered")
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
    return PoseSequence(
        keypoints_2d=kp, timestamps=t - t[0], frame_indices=np.asarray(indices, dtype=np.int64),
        detected=detected, fps=info.fps, image_size=image_size, joint_names_2d=names, backend=model.name,
        joints_3d=j3, lifter=model.name if has_3d else "", source=str(path), crop=frames.crop, notes=notes,
        shots=shots,
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


def _auto_crop(path, start, end, *, max_frames: int = 24, span_s: float = 6.0) -> tuple[tuple | None, str]:
    """Sample up to ``max_frames`` frames over the first ``span_s`` seconds of the window and look for a still
    half (``core.crop_help.find_static_half``): ``(crop or None, note)``. A video that cannot be sampled gives
    ``(None, "")`` (the main decode reports the problem)."""
    from . import video

    try:
        frames = video.iter_frames(path, start=start, end=end)
    except ValueError:
        return None, ""
    info = frames.info
    step = max(1, int(round(span_s * (info.fps or 25.0) / max_frames)))
    sample, size = [], None
    try:
        for i, f in enumerate(frames):
            if size is None:
                size = (f.image.shape[1], f.image.shape[0])
            if i % step == 0:
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


def _boxes(kp: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """``(T, 4)`` xyxy box of each usable frame's confident joints (NaN elsewhere)."""
    out = np.full((len(kp), 4), np.nan)
    for t in np.flatnonzero(usable):
        p = kp[t][kp[t, :, 2] > 0]
        if len(p) >= 2:
            out[t] = (p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max())
    return out


def _predicted_box(boxes: np.ndarray, t: int, a: int, b: int) -> np.ndarray | None:
    """The track's box at frame ``t`` of the shot ``[a, b)``: linear between the nearest boxes before and after."""
    ok = np.flatnonzero(np.isfinite(boxes[a:b, 0])) + a
    if ok.size == 0:
        return None
    before, after = ok[ok < t], ok[ok > t]
    if before.size and after.size:
        i, j = before[-1], after[0]
        w = (t - i) / (j - i)
        return boxes[i] * (1 - w) + boxes[j] * w
    return boxes[before[-1]] if before.size else boxes[after[0]]


def _mirror_perm(names) -> np.ndarray:
    swap = {n: (n.replace("left", "right") if "left" in n else n.replace("right", "left")) for n in names}
    return np.array([names.index(swap[n]) if swap[n] in names else i for i, n in enumerate(names)])


#: Windows tried for a frame with a track: (pad factor of the square around the track's box, mirrored).
RETRY_CANDIDATES = ((1.4, False), (1.4, True), (2.0, False), (2.0, True))
#: Windows tried for a frame of a shot without any usable frame: the whole frame zoomed out to this factor (the
#: person detector misses bodies cut by the frame edge, as in a close-up), plain and mirrored.
RETRY_ZOOM_OUT = 1.6
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
    if box is None or ref is None:
        w, h = int(round(W * RETRY_ZOOM_OUT)), int(round(H * RETRY_ZOOM_OUT))
        x0, y0 = (W - w) // 2, (H - h) // 2
        return [(x0, y0, w, h, False), (x0, y0, w, h, True)]
    cx, cy = 0.5 * (box[0] + box[2]), 0.5 * (box[1] + box[3])
    side0 = max(box[2] - box[0], box[3] - box[1], 0.05 * max(W, H))
    out = []
    for pad, mirror in RETRY_CANDIDATES:
        side = int(round(side0 * pad))
        out.append((int(round(cx - side / 2)), int(round(cy - side / 2)), side, side, mirror))
    return out


def _retry(path, start, end, crop, kp, j3, detected, names, image_size, t, shots, progress,
           backend_options=None, *, max_fraction: float = 0.5):
    """Re-detect frames the gate does not accept, in place (``kp``, ``j3``, ``detected``).

    For each such frame with a track in its shot, square windows around the track's box at that frame (the boxes
    of the usable frames before and after, interpolated; padded by each factor of :data:`RETRY_CANDIDATES`, black
    beyond the frame edge, upscaled to at least 256 px, plain and mirrored) go through MediaPipe in static-image
    mode; each result is mapped back to frame px (mirrored ones with left and right exchanged) and scored with
    :func:`core.gating.candidate_cost` against the track; the best one replaces the frame's skeleton when it costs
    less than the current one and under :data:`RETRY_MAX_COST`. In a shot without any usable frame, the whole
    frame zoomed out (:data:`RETRY_ZOOM_OUT`) is tried instead and the candidate that shows the most of a body is
    kept (the gate of ``core.worker.job`` still judges it). At most ``max_fraction`` of the frames are retried.

    Returns:
        ``(frames retried, frames whose skeleton was replaced)``.
    """
    import cv2

    from . import video
    from .backends import get_backend

    g = gating.gate(kp, names, image_size, detected=detected, timestamps=t, shots=shots)
    bad = np.flatnonzero(~g.usable)
    if bad.size == 0:
        return 0, 0
    boxes = _boxes(g.keypoints_2d.astype(np.float64), g.usable)
    plan: dict[int, tuple] = {}
    for a, b in shots:
        for f in bad[(bad >= a) & (bad < b)]:
            box = _predicted_box(boxes, int(f), int(a), int(b))
            ref = g.reference(int(f), shots) if box is not None and g.usable[a:b].any() else None
            plan[int(f)] = (box if ref is not None else None, ref)
    limit = max(1, int(max_fraction * len(kp)))
    todo = sorted(plan)[:limit]
    perm = _mirror_perm(tuple(names))
    perm3 = skeletons.CANONICAL_MIRROR
    opts = dict(backend_options or {})
    opts["static_image_mode"] = True
    model = get_backend("mediapipe", **opts)
    won = 0
    want = set(todo)
    try:
        frames = video.iter_frames(path, start=start, end=end, crop=crop)
        try:
            done = 0
            progress("retry", 0, len(todo))
            for i, frame in enumerate(frames):
                if i not in want:
                    continue
                box, ref = plan[i]
                if ref is not None:
                    cur = gating.candidate_cost(kp[i], names, image_size, ref) if detected[i] else np.inf
                else:
                    cur = np.inf
                best = (cur, None, None)
                for x0, y0, w, h, mirror in _windows(box, ref, image_size):
                    if w < 16 or h < 16:
                        continue
                    img = _window(frame.image, x0, y0, w, h)
                    up = max(1.0, 256.0 / max(img.shape[:2]))
                    if up > 1.0:
                        img = cv2.resize(img, (int(round(img.shape[1] * up)), int(round(img.shape[0] * up))),
                                         interpolation=cv2.INTER_LINEAR)
                    if mirror:
                        img = img[:, ::-1]
                    d = model.process_batch([np.ascontiguousarray(img)])[0]
                    if len(d) == 0:
                        continue
                    k = d.keypoints_2d[0].astype(np.float64).copy()
                    x3 = d.joints_3d[0].astype(np.float64).copy() if d.joints_3d is not None else None
                    if mirror:
                        k[:, 0] = img.shape[1] - k[:, 0]
                        k = k[perm]
                        if x3 is not None:
                            x3[:, 0] = -x3[:, 0]
                            x3 = x3[perm3]
                    k[:, 0] = k[:, 0] / up + x0
                    k[:, 1] = k[:, 1] / up + y0
                    if ref is not None:
                        c = gating.candidate_cost(k, names, image_size, ref)
                    else:  # no track to compare with: the candidate that shows the most of a body
                        seen = (k[:, 2] >= 0.5) & (k[:, 0] >= 0) & (k[:, 0] <= image_size[0]) & \
                               (k[:, 1] >= 0) & (k[:, 1] <= image_size[1])
                        c = 1.0 - float(seen.mean())
                    if c < best[0]:
                        best = (c, k, x3)
                if best[1] is not None and best[0] < RETRY_MAX_COST:
                    kp[i] = best[1]
                    if j3 is not None and best[2] is not None:
                        j3[i] = best[2]
                    detected[i] = True
                    won += 1
                done += 1
                progress("retry", done, len(todo))
                if done == len(todo):
                    break
        finally:
            frames.close()
    finally:
        model.close()
    return len(todo), won
