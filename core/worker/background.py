"""The camera's pan and zoom, measured on the background around the dancer (OpenCV; worker side).

A zoom or pan moves the whole background in the image; a dancer walking does not. :class:`BackgroundTracker` is fed
every decoded frame with the boxes of the people in it and, between consecutive frames, tracks corner features
(Shi & Tomasi 1994, ``cv2.goodFeaturesToTrack``) outside those boxes with pyramidal Lucas-Kanade optical flow
(``cv2.calcOpticalFlowPyrLK``), keeps the tracks that pass a forward-backward check, and fits a similarity (scale,
rotation, shift) to them with RANSAC (``cv2.estimateAffinePartial2D``). The steps are chained to frame 0.

The result, :class:`BackgroundTrack`, is what ``core.camera_motion.compensate`` reads as its ``background``:
``(dx px, dy px, log scale)`` of the background relative to frame 0, about the image centre, in px of the analysed
(cropped) frame; plus which steps were measured. A background with too few corners to track but unchanged edges
(a plain studio wall and floor seen by a still camera) counts as measured and not moving. A step is not measured
where too little background is seen (a close-up, a wall without edges) or the tracks disagree (a shot cut): it
takes the motion of the measured steps around it, and the motion stage uses the track only where at least half of
the steps were measured (``core.camera_motion.background_usable``).

Frames are analysed in grey at :data:`WIDTH` px wide: 2-5 ms a frame on this project's 2-core CPU (measured on the
shared videos and renders), against tens of ms for the pose detector. The detection loop runs the tracker on a
thread of its own (``core.worker.detect._OnThread``; OpenCV releases the GIL), so on a second core it adds almost
nothing to the detect stage's wall time (``benchmarks/bench_pipeline.py``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["WIDTH", "BackgroundTrack", "BackgroundTracker", "joined"]

#: Width (px) of the grey frames the tracker works on.
WIDTH = 320


@dataclass
class BackgroundTrack:
    """The background's motion over a clip.

    Attributes:
        motion: ``(T, 3)`` float64: ``dx``, ``dy`` (px of the analysed frame, x right, y down) and the natural log of
            the scale of the background relative to frame 0, about the frame's centre (frame 0 is ``(0, 0, 0)``).
        measured: ``(T,)`` bool: the step from the previous frame was measured (frame 0: True).
        inliers: ``(T,)`` int64: background tracks that agreed with the step (0 where not measured).
    """

    motion: np.ndarray
    measured: np.ndarray
    inliers: np.ndarray


class BackgroundTracker:
    """Chain the background's frame-to-frame similarity (module docstring). Feed frames in order with :meth:`add`.

    Args:
        width: analysis width in px.
        max_corners: features sought per frame.
        min_inliers: RANSAC inliers a step needs to count as measured.
        pad: the people's boxes are grown by this fraction of their size before they are masked out.
    """

    def __init__(self, width: int = WIDTH, max_corners: int = 200, min_inliers: int = 12, pad: float = 0.15):
        import cv2  # noqa: F401  (fail at construction, not on the first frame)

        self.width = int(width)
        self.max_corners = int(max_corners)
        self.min_inliers = int(min_inliers)
        self.pad = float(pad)
        self._prev = None          # (grey, mask)
        self._scale = 1.0          # analysed px per frame px
        self._size = None          # (w, h) of the frames
        self._steps: list = []     # per step t-1 -> t: (dx, dy, log scale, angle) about the centre, or None
        self._inliers: list = []

    def _grey(self, image: np.ndarray):
        import cv2

        h, w = image.shape[:2]
        if self._size is None:
            self._size = (w, h)
            self._scale = min(1.0, self.width / float(w))
        elif (w, h) != self._size:
            raise ValueError(f"BackgroundTracker: frame size changed from {self._size} to {(w, h)}")
        g = image if image.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2GRAY)
        if self._scale < 1.0:
            g = cv2.resize(g, (max(8, int(round(w * self._scale))), max(8, int(round(h * self._scale)))),
                           interpolation=cv2.INTER_AREA)
        return g

    def _mask(self, shape, boxes) -> np.ndarray:
        m = np.full(shape, 255, dtype=np.uint8)
        for b in ([] if boxes is None else np.asarray(boxes, dtype=np.float64).reshape(-1, 4)):
            if not np.all(np.isfinite(b)):
                continue
            x0, y0, x1, y1 = b * self._scale
            px, py = self.pad * (x1 - x0), self.pad * (y1 - y0)
            r0, r1 = int(max(0, np.floor(y0 - py))), int(min(shape[0], np.ceil(y1 + py)))
            c0, c1 = int(max(0, np.floor(x0 - px))), int(min(shape[1], np.ceil(x1 + px)))
            m[r0:r1, c0:c1] = 0
        return m

    def _step(self, g0, m0, g1, m1):
        """Similarity ``(3, 3)`` from frame t-1 to t (analysed px) and its inlier count: tracked corners, or the
        identity of :meth:`_still` (count 0), or ``(None, 0)`` where neither measures the step."""
        S, n = self._tracked(g0, m0, g1, m1)
        return (S, n) if S is not None else (self._still(g0, m0, g1, m1), 0)

    def _tracked(self, g0, m0, g1, m1):
        """The step from corner tracks outside the people (module docstring), or ``(None, 0)``."""
        import cv2

        p0 = cv2.goodFeaturesToTrack(g0, maxCorners=self.max_corners, qualityLevel=0.01, minDistance=7, mask=m0,
                                     blockSize=7)
        if p0 is None or len(p0) < self.min_inliers:
            return None, 0
        lk = dict(winSize=(21, 21), maxLevel=3, criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03))
        p1, st, _ = cv2.calcOpticalFlowPyrLK(g0, g1, p0, None, **lk)
        if p1 is None:
            return None, 0
        back, st2, _ = cv2.calcOpticalFlowPyrLK(g1, g0, p1, None, **lk)
        ok = (st[:, 0] == 1) & (st2[:, 0] == 1) & (np.linalg.norm((back - p0)[:, 0], axis=1) < 0.5)
        a, b = p0[ok, 0], p1[ok, 0]
        # a track that ends on a person in the new frame is not background
        xi = np.clip(np.rint(b[:, 0]).astype(int), 0, g1.shape[1] - 1)
        yi = np.clip(np.rint(b[:, 1]).astype(int), 0, g1.shape[0] - 1)
        keep = m1[yi, xi] > 0
        a, b = a[keep], b[keep]
        if len(a) < self.min_inliers:
            return None, 0
        A, inl = cv2.estimateAffinePartial2D(a, b, method=cv2.RANSAC, ransacReprojThreshold=0.5, maxIters=500,
                                             confidence=0.99)
        n = int(inl.sum()) if inl is not None else 0
        if A is None or n < self.min_inliers or n < 0.5 * len(a):
            return None, 0
        return np.vstack([A, [0.0, 0.0, 1.0]]), n

    @staticmethod
    def _still(g0, m0, g1, m1):
        """Too few corners to track (a plain wall, a rendered studio): the identity where the background has edges
        to show a move in both directions (at least 0.2% of its pixels on a step above 8 grey levels, and 0.02% in
        each of x and y) and under 20% of those edge pixels changed by more than 6 grey levels; otherwise None (not
        measured)."""
        both = (m0 > 0) & (m1 > 0)
        if both.sum() < 0.05 * both.size:
            return None
        a, b = g0.astype(np.int16), g1.astype(np.int16)
        ex = np.zeros(both.shape, dtype=bool)   # steps along x: vertical edges, which show a horizontal move
        ey = np.zeros(both.shape, dtype=bool)   # steps along y: horizontal edges, which show a vertical move
        ex[:, 1:] = np.abs(np.diff(a, axis=1)) > 8
        ey[1:, :] = np.abs(np.diff(a, axis=0)) > 8
        ex &= both
        ey &= both
        edge = ex | ey
        if edge.sum() < 0.002 * both.sum() or min(ex.sum(), ey.sum()) < 0.0002 * both.sum():
            return None
        # a move of even 1 px changes most edge pixels by about their gradient; compression noise and a shadow few
        if float((np.abs(a - b)[edge] > 6).mean()) >= 0.2:
            return None
        return np.eye(3)

    def add(self, image: np.ndarray, boxes=None) -> None:
        """Add the next frame.

        Args:
            image: ``(H, W, 3)`` uint8 RGB (or ``(H, W)`` grey), the same size on every call.
            boxes: ``(N, 4)`` px ``x0, y0, x1, y1`` of the people in this frame (masked out), or None.
        Raises:
            ValueError: a frame of another size.
        """
        g = self._grey(np.asarray(image))
        m = self._mask(g.shape, boxes)
        if self._prev is not None:
            S, n = self._step(self._prev[0], self._prev[1], g, m)
            self._steps.append(None if S is None else _params(S, g.shape))
            self._inliers.append(n if S is not None else 0)
        self._prev = (g, m)

    def result(self) -> BackgroundTrack:
        """The track of every frame added so far (:class:`BackgroundTrack`).

        Steps that were not measured take the motion of the measured steps around them (linear in time between
        the nearest ones before and after; none at all where no step was measured)."""
        T = len(self._steps) + (1 if self._prev is not None else 0)
        if T == 0:
            return BackgroundTrack(np.zeros((0, 3)), np.zeros(0, dtype=bool), np.zeros(0, dtype=np.int64))
        measured = np.array([True] + [p is not None for p in self._steps], dtype=bool)[:T]
        steps = np.zeros((T - 1, 4))
        ok = measured[1:]
        if ok.any():
            known = np.array([p for p in self._steps if p is not None])
            idx = np.flatnonzero(ok)
            for k in range(4):
                steps[:, k] = np.interp(np.arange(T - 1), idx, known[:, k])
        h, w = self._prev[0].shape
        c = np.array([0.5 * (w - 1), 0.5 * (h - 1)])
        M = np.eye(3)
        motion = np.zeros((T, 3))
        for i, (dx, dy, ls, ang) in enumerate(steps, start=1):
            M = _matrix(dx, dy, ls, ang, c) @ M
            d = M[:2, :2] @ c + M[:2, 2] - c
            motion[i] = (d[0] / self._scale, d[1] / self._scale, float(np.log(np.sqrt(abs(np.linalg.det(M[:2, :2]))))))
        return BackgroundTrack(motion, measured, np.array([0] + self._inliers, dtype=np.int64)[:T])


def joined(parts) -> BackgroundTracker:
    """One tracker for a clip whose consecutive parts were each tracked by a tracker of their own
    (``core.worker.parallel``): its :meth:`~BackgroundTracker.result` is the track of the whole clip.

    Args:
        parts: ``(tracker, warmup)`` pairs in time order. Tracker k was fed ``warmup`` frames before its part's
            first frame (the last frames of the part before), then its part's frames. The step into a part's
            first frame is the one its tracker measured from the warm-up frame just before it (so with a warm-up
            the joined track equals one tracker fed every frame, up to the people's boxes the detectors gave); a
            later part without a warm-up frame has that step unmeasured.
    Raises:
        ValueError: parts of different frame sizes or analysis settings, or more warm-up frames than frames.
    """
    parts = list(parts)
    if not parts:
        raise ValueError("joined: no parts")
    first = parts[0][0]
    out = BackgroundTracker(first.width, first.max_corners, first.min_inliers, first.pad)
    for tracker, warmup in parts:
        if (tracker.width, tracker.max_corners, tracker.min_inliers, tracker.pad) != \
                (out.width, out.max_corners, out.min_inliers, out.pad):
            raise ValueError("joined: the parts were tracked with different settings")
        n = len(tracker._steps) + (1 if tracker._prev is not None else 0)
        warmup = int(warmup)
        if not 0 <= warmup <= n:
            raise ValueError(f"joined: {warmup} warm-up frames of a part of {n} frames")
        if n == warmup:
            continue
        if out._size is not None and tracker._size != out._size:
            raise ValueError(f"joined: frame size {tracker._size} after {out._size}")
        if out._prev is None:               # the joined track's frame 0: no step into it
            steps, inliers = tracker._steps[warmup:], tracker._inliers[warmup:]
        elif warmup:
            steps, inliers = tracker._steps[warmup - 1:], tracker._inliers[warmup - 1:]
        else:
            steps, inliers = [None] + tracker._steps, [0] + tracker._inliers
        out._steps += list(steps)
        out._inliers += list(inliers)
        out._prev, out._scale, out._size = tracker._prev, tracker._scale, tracker._size
    return out


def _params(S: np.ndarray, shape) -> np.ndarray:
    """A similarity ``(3, 3)`` as ``(dx, dy, log scale, angle)`` about the centre of a frame of ``shape`` (h, w)."""
    h, w = shape
    c = np.array([0.5 * (w - 1), 0.5 * (h - 1)])
    A = S[:2, :2]
    d = A @ c + S[:2, 2] - c
    s = float(np.sqrt(abs(np.linalg.det(A))))
    return np.array([d[0], d[1], np.log(max(s, 1e-6)), np.arctan2(A[1, 0], A[0, 0])])


def _matrix(dx, dy, log_s, angle, c) -> np.ndarray:
    """Inverse of :func:`_params`: the similarity ``(3, 3)`` about the centre ``c`` (2,)."""
    s = np.exp(log_s)
    A = s * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    M = np.eye(3)
    M[:2, :2] = A
    M[:2, 2] = c + np.array([dx, dy]) - A @ c
    return M
