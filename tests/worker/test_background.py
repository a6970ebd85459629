"""core.worker.background: the camera's pan and zoom measured on the background, on synthetic frames with a known
motion and on the shared real videos."""
from __future__ import annotations

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from core.worker.background import BackgroundTracker  # noqa: E402


def _texture(h=360, w=640, seed=0):
    rng = np.random.default_rng(seed)
    g = cv2.GaussianBlur(rng.uniform(0, 255, (h, w)).astype(np.float32), (0, 0), 3.0)
    g = (g - g.min()) / (g.max() - g.min()) * 255.0
    return np.repeat(g.astype(np.uint8)[..., None], 3, axis=2)


def _frames(dx, scale, seed=0):
    """A textured background shifted by ``dx`` px and zoomed by ``scale`` about the centre, with a 'dancer' (a box
    of fresh noise, moving right) over it on every frame; returns frames and the dancer's boxes."""
    bg = _texture(seed=seed)
    h, w = bg.shape[:2]
    c = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    rng = np.random.default_rng(seed + 1)
    frames, boxes = [], []
    for i, (d, k) in enumerate(zip(dx, scale)):
        A = np.array([[k, 0.0, c[0] - k * c[0] + d], [0.0, k, c[1] - k * c[1]]])
        f = cv2.warpAffine(bg, A, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        x0, y0 = 200 + 3 * i, 80
        f[y0:y0 + 220, x0:x0 + 90] = rng.integers(0, 255, (220, 90, 1), dtype=np.uint8)
        frames.append(f)
        boxes.append([[x0, y0, x0 + 90, y0 + 220]])
    return frames, boxes


def test_a_known_pan_and_zoom_are_measured_and_the_dancer_is_ignored():
    T = 30
    dx = np.linspace(0.0, -60.0, T)                  # the background slides left: the camera turns right
    k = np.linspace(1.0, 1.15, T)                    # and zooms in
    frames, boxes = _frames(dx, k)
    tr = BackgroundTracker()
    for f, b in zip(frames, boxes):
        tr.add(f, b)
    r = tr.result()
    assert r.motion.shape == (T, 3) and r.measured.all() and (r.inliers[1:] >= 12).all()
    np.testing.assert_allclose(r.motion[:, 0], dx, atol=1.5)          # px of the 640-px frame
    np.testing.assert_allclose(r.motion[:, 1], 0.0, atol=1.5)
    np.testing.assert_allclose(np.exp(r.motion[:, 2]), k, rtol=0.005)


def test_a_still_plain_studio_counts_as_measured_and_still_and_a_blank_one_as_unmeasured():
    """Rendered studios have too few corners to track: unchanged edges still say the camera did not move; a frame
    with no edge at all says nothing."""
    h, w = 320, 480
    studio = np.full((h, w, 3), 200, dtype=np.uint8)
    studio[200:] = 120                                # the floor meets the wall
    studio[:200, 300:] = 170                          # a wall corner
    blank = np.full((h, w, 3), 150, dtype=np.uint8)
    for base, expect in ((studio, True), (blank, False)):
        tr = BackgroundTracker()
        for i in range(10):
            f = base.copy()
            f[60:300, 100 + 10 * i:160 + 10 * i] = 20     # a dark dancer walking right
            tr.add(f, [[100 + 10 * i, 60, 160 + 10 * i, 300]])
        r = tr.result()
        assert (r.measured[1:] == expect).all()
        np.testing.assert_array_equal(r.motion, 0.0)


def test_frames_of_another_size_are_refused():
    tr = BackgroundTracker()
    tr.add(np.zeros((100, 200, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="frame size changed"):
        tr.add(np.zeros((100, 201, 3), dtype=np.uint8))


def test_a_real_panning_camera(shared_data):
    """The figure skater is followed by a panning camera: the background streams one way, steadily."""
    from core.worker import video

    def track(name, n, box=None):
        tr = BackgroundTracker()
        frames = video.iter_frames(shared_data / "videos" / name)
        try:
            for i, f in enumerate(frames):
                if i >= n:
                    break
                tr.add(f.image, box)
        finally:
            frames.close()
        return tr.result()

    skater = track("figure_skater_1280x720_25fps.mp4", 40)
    assert skater.measured.mean() > 0.6          # no boxes given here: the unmasked skater spoils some steps
    steps = np.diff(skater.motion[:, 0])
    assert skater.motion[-1, 0] > 200 and (steps > 0).mean() > 0.9      # px: the background moves right, steadily


def test_on_its_own_thread_the_track_is_the_same_and_errors_reach_the_caller():
    """The detection loop feeds the tracker through ``core.worker.detect._OnThread`` (it overlaps the detector):
    the track is the one the frames give in order, and a tracker error is raised by ``result()``, not lost."""
    from core.worker.detect import _OnThread

    T = 20
    frames, boxes = _frames(np.linspace(0.0, -30.0, T), np.linspace(1.0, 1.08, T))
    serial = BackgroundTracker()
    threaded = _OnThread(BackgroundTracker(), depth=3)      # a short queue: add() has to wait for the thread
    for f, b in zip(frames, boxes):
        serial.add(f, b)
        threaded.add(f, b)
    a, b = serial.result(), threaded.result()
    threaded.close()
    np.testing.assert_array_equal(a.motion, b.motion)
    np.testing.assert_array_equal(a.measured, b.measured)

    bad = _OnThread(BackgroundTracker())
    bad.add(np.zeros((100, 200, 3), dtype=np.uint8))
    bad.add(np.zeros((100, 201, 3), dtype=np.uint8))
    bad.add(np.zeros((100, 200, 3), dtype=np.uint8))        # after the error: still accepted, not processed
    with pytest.raises(ValueError, match="frame size changed"):
        bad.result()
    bad.close()


def test_parts_tracked_apart_join_into_the_whole_track():
    """core.worker.parallel tracks each part of a clip on its own tracker, the part after the first fed a few frames
    before its own: joined, the track is the one tracker fed every frame gives; without a warm-up frame the step
    into a part is unmeasured and takes its neighbours' motion."""
    from core.worker.background import joined

    T = 40
    frames, boxes = _frames(np.linspace(0.0, -60.0, T), np.linspace(1.0, 1.1, T))
    whole = BackgroundTracker()
    for f, b in zip(frames, boxes):
        whole.add(f, b)
    a, b = BackgroundTracker(), BackgroundTracker()
    for i in range(0, 20):
        a.add(frames[i], boxes[i])
    for i in range(16, T):                          # 4 warm-up frames before frame 20
        b.add(frames[i], boxes[i])
    ref, got = whole.result(), joined([(a, 0), (b, 4)]).result()
    np.testing.assert_array_equal(got.measured, ref.measured)
    np.testing.assert_array_equal(got.inliers, ref.inliers)
    np.testing.assert_allclose(got.motion, ref.motion, atol=1e-9)
    assert abs(got.motion[-1, 0]) > 50                # it did follow the pan
    c = BackgroundTracker()
    for i in range(20, T):
        c.add(frames[i], boxes[i])
    cold = joined([(a, 0), (c, 0)]).result()
    assert len(cold.measured) == T and not cold.measured[20] and cold.measured[21:].all()
    np.testing.assert_allclose(cold.motion, ref.motion, atol=0.5)   # the missing step interpolated
    with pytest.raises(ValueError, match="warm-up"):
        joined([(a, 0), (c, 21)])
