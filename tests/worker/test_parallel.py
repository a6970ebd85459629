"""core.worker.parallel: the detection in parts at once joins into what one pass gives, on a real video.

A detector whose answer depends on the frame alone (no tracking state) must give exactly the same sequence split into
parts as in one pass: frames, times, keypoints, shots and the camera's background track. MediaPipe (which tracks)
gives the same frames and keypoints within a pixel or two, and the same result whatever the number of threads.
"""
from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np
import pytest

from core import skeletons
from core.errors import PipelineError
from core.worker import parallel
from core.worker.backends import FrameDetections

av = pytest.importorskip("av", reason="PyAV (av) is not installed: the detection stage cannot decode video")
pytest.importorskip("cv2", reason="OpenCV is not installed: the background track needs it")

from core.worker import backends, detect, video  # noqa: E402


@pytest.fixture(scope="module")
def kunkun(shared_data):
    return shared_data / "videos" / "kunkun_dance_864x480_25fps.mp4"


class FrameOnlyBackend:
    """A PoseBackend whose answer is a function of each image alone: one person whose keypoints and box move with
    the image's brightness (so a part's fresh instance answers as one instance fed every frame would)."""

    name = "mediapipe"
    joint_names_2d = skeletons.COCO17
    provides_3d = False
    built: list = []

    def __init__(self, fail_first_after: int | None = None, delay: float = 0.0, **_):
        self.calls = 0
        # the first detector built fails after that many frames; the others take ``delay`` seconds a frame
        self.fail_after = fail_first_after if not FrameOnlyBackend.built else None
        self.delay = delay
        self.closed = False
        self.resets = 0
        FrameOnlyBackend.built.append(self)

    def process_batch(self, images):
        out = []
        for img in images:
            self.calls += 1
            if self.fail_after is not None and self.calls > self.fail_after:
                raise PipelineError("internal", "scripted detector failure")
            if self.delay:
                __import__("time").sleep(self.delay)
            m = float(img[::4, ::4].mean())
            x0, y0 = 200.0 + 2.0 * m, 60.0 + m
            box = np.array([[x0, y0, x0 + 200.0, y0 + 380.0]], np.float32)
            kp = np.zeros((1, 17, 3), np.float32)
            kp[0, :, 0] = x0 + 100.0 + np.sin(np.arange(17) + m)
            kp[0, :, 1] = np.linspace(y0, y0 + 380.0, 17)
            kp[0, :, 2] = 0.9
            out.append(FrameDetections(kp, box, np.array([0.9], np.float32)))
        return out

    @staticmethod
    def sequence_extras(dets, choice):
        return {}

    def reset(self):
        self.resets += 1

    def close(self):
        self.closed = True


@pytest.fixture
def frame_only(monkeypatch):
    FrameOnlyBackend.built = []
    opts = {}
    monkeypatch.setattr(backends, "get_backend", lambda name, **kw: FrameOnlyBackend(**{**kw, **opts}))
    return opts


def test_plan_parts_by_length_alone(kunkun):
    info = video.probe(kunkun)                      # 338 frames at 25 fps
    two = parallel.plan_parts(info, None, None)
    assert len(two) == 2 and two[0] == parallel.Part(None, None, two[1].own_from)
    assert two[1].own_from == pytest.approx((169 - 0.5) / info.fps) and two[1].end is None
    assert two[1].decode_from == pytest.approx(two[1].own_from - parallel.WARMUP_S)
    eight = parallel.plan_parts(info, 2.0, None, parts="8")
    assert len(eight) == 8 and eight[0].decode_from == 2.0
    assert all(a.end == b.own_from for a, b in zip(eight, eight[1:]))
    # every boundary half a frame before a frame's time, so each frame belongs to one part
    assert all(abs((p.own_from * info.fps) % 1 - 0.5) < 1e-6 for p in eight[1:])
    assert len(parallel.plan_parts(info, 0.0, 7.0)) == 1            # 175 frames: under two parts' worth
    assert len(parallel.plan_parts(info, None, None, parts="1")) == 1
    assert len(parallel.plan_parts(SimpleNamespace(fps=0.0, duration=0.0, presented_frames=0), None, None)) == 1
    with pytest.raises(ValueError, match="auto, 1, 2, 4, 8"):
        parallel.plan_parts(info, None, None, parts="3")
    assert tuple(parallel.PART_CHOICES) == tuple(c.value for c in __import__("core.options").options.DETECT_PARTS)


def test_a_frame_only_detector_gives_one_pass_exactly(kunkun, frame_only):
    kw = dict(retry=False, auto_crop=False, end=9.0)
    one = detect.detect_video(kunkun, detect_parts="1", **kw)
    calls_one = sum(b.calls for b in FrameOnlyBackend.built)
    FrameOnlyBackend.built = []
    seen = []
    four = detect.detect_video(kunkun, detect_parts="4", threads=2, progress=lambda s, d, t: seen.append((d, t)), **kw)
    # one detector per thread, reset before each further part, all closed at the end
    assert len(FrameOnlyBackend.built) == 2 and all(b.closed for b in FrameOnlyBackend.built)
    assert sum(b.resets for b in FrameOnlyBackend.built) == 2
    # three warm-ups of 0.5 s (13 frames at 25 fps) detected and not kept
    assert sum(b.calls for b in FrameOnlyBackend.built) == calls_one + 3 * 13
    n = len(one)
    assert len(four) == n and n > 220
    np.testing.assert_array_equal(one.frame_indices, four.frame_indices)
    np.testing.assert_array_equal(one.timestamps, four.timestamps)
    np.testing.assert_array_equal(one.keypoints_2d, four.keypoints_2d)
    np.testing.assert_array_equal(one.shots, four.shots)
    np.testing.assert_array_equal(one.background_measured, four.background_measured)
    np.testing.assert_array_equal(one.background_motion, four.background_motion)
    assert any("4 parts" in n for n in four.notes) and not any("parts" in n for n in one.notes)
    done = [d for d, _ in seen]
    assert done == sorted(done) and seen[-1] == (n, n)


def test_a_failing_part_stops_the_others_and_raises(kunkun, frame_only):
    import time

    frame_only.update(fail_first_after=5, delay=0.02)   # the others would take 85 frames x 20 ms each
    t0 = threading.active_count()
    start = time.perf_counter()
    with pytest.raises(PipelineError, match="scripted detector failure"):
        detect.detect_video(kunkun, detect_parts="4", threads=2, retry=False, auto_crop=False)
    assert time.perf_counter() - start < 5.0
    assert all(b.closed for b in FrameOnlyBackend.built)
    assert all(b.calls < 60 for b in FrameOnlyBackend.built[1:])    # stopped early, not run to their end
    deadline = time.time() + 10
    while threading.active_count() > t0 and time.time() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= t0          # decode, tracker and pool threads all ended


def test_parts_that_do_not_follow_on_are_not_joined():
    def span(idx, error=None):
        s = detect._Span(list(idx), [i / 25 for i in idx], [None] * len(idx), [None] * len(idx), None,
                         video.DecodeReport(decoded=len(idx), error=error), (8, 8))
        return s

    assert parallel._join([span(range(0, 10)), span(range(10, 20))], False, False).indices == list(range(20))
    assert parallel._join([span(range(0, 10)), span(range(11, 20))], False, False) is None      # a frame missing
    assert parallel._join([span(range(0, 10)), span(range(9, 20))], False, False) is None       # one twice
    assert parallel._join([span(range(0, 10)), span([]), span(range(10, 20))], False, False) is None
    assert parallel._join([span(range(0, 10), error="damaged"), span(range(10, 20))], False, False) is None
    assert parallel._join([span(range(0, 10)), span([])], False, False).report.decoded == 10   # the video ended


def test_mediapipe_in_parts_matches_one_pass_and_not_the_thread_count(kunkun):
    pytest.importorskip("mediapipe", reason="mediapipe is not installed")
    kw = dict(auto_crop=False, retry=False, end=8.0)  # 200 frames: "auto" makes 2 parts
    one = detect.detect_video(kunkun, detect_parts="1", **kw)
    two = detect.detect_video(kunkun, **kw)
    two_serial = detect.detect_video(kunkun, threads=1, **kw)
    assert any("2 parts" in n for n in two.notes)
    np.testing.assert_array_equal(two.keypoints_2d, two_serial.keypoints_2d)   # the result is not the machine's
    np.testing.assert_array_equal(one.frame_indices, two.frame_indices)
    np.testing.assert_array_equal(one.detected, two.detected)
    np.testing.assert_array_equal(one.keypoints_2d[:100], two.keypoints_2d[:100])   # the first part: one pass
    d = np.linalg.norm(one.keypoints_2d[100:, :, :2] - two.keypoints_2d[100:, :, :2], axis=-1)
    assert np.nanmean(d) < 1.0 and np.nanpercentile(d, 95) < 4.0, (np.nanmean(d), np.nanpercentile(d, 95))
    assert np.nanmean(np.linalg.norm(one.joints_3d - two.joints_3d, axis=-1)) < 0.02   # metres
    np.testing.assert_array_equal(one.background_measured, two.background_measured)
    np.testing.assert_allclose(one.background_motion, two.background_motion, atol=0.5)
