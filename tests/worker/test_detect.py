"""core.worker.detect.detect_video end to end on real videos, and its bookkeeping with a scripted backend."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from core import pose_io, skeletons
from core.worker.backends import FrameDetections
from core.errors import PipelineError

av = pytest.importorskip("av", reason="PyAV (av) is not installed: the detection stage cannot decode video")

from core.worker.detect import detect_video  # noqa: E402

REPO = __import__("pathlib").Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def videos(shared_data):
    return shared_data / "videos"


class ScriptedBackend:
    """A PoseBackend whose answers are a function of the frame number (counts calls; checks the images)."""

    name = "scripted"
    joint_names_2d = skeletons.COCO17
    provides_3d = False

    def __init__(self, people):
        self.people = people  # frame number -> list of (box xyxy, score)
        self.seen = 0
        self.shapes = set()

    def process_batch(self, images):
        out = []
        for img in images:
            self.shapes.add((img.shape, img.dtype.str))
            found = self.people(self.seen)
            self.seen += 1
            if not found:
                out.append(FrameDetections.empty(17))
                continue
            boxes = np.array([b for b, _ in found], np.float32)
            kp = np.zeros((len(found), 17, 3), np.float32)
            kp[:, :, 0] = (0.5 * (boxes[:, 0] + boxes[:, 2]))[:, None]
            kp[:, :, 1] = np.linspace(boxes[:, 1], boxes[:, 3], 17).T
            kp[:, :, 2] = 0.9
            out.append(FrameDetections(kp, boxes, np.array([s for _, s in found], np.float32)))
        return out

    def close(self):
        pass


def test_kunkun_two_second_window_end_to_end(videos):
    calls = []
    poses = detect_video(videos / "kunkun_dance_864x480_25fps.mp4", start=2.0, end=4.0,
                         progress=lambda stage, done, total: calls.append((stage, done, total)))
    assert len(poses) == 50
    np.testing.assert_array_equal(poses.frame_indices, np.arange(51, 101))
    # timestamps: the real pts (1000 ticks of 1/25051 s a frame) relative to the first kept frame
    np.testing.assert_allclose(poses.timestamps, np.arange(50) * 1000 / 25051, atol=1e-9)
    assert poses.fps == pytest.approx(25.051)
    assert poses.image_size == (864, 480) and poses.crop is None
    assert poses.backend == "mediapipe" and poses.lifter == "mediapipe"
    assert poses.joint_names_2d == skeletons.MEDIAPIPE33
    assert poses.detected.mean() >= 0.95
    assert poses.keypoints_2d.shape == (50, 33, 3) and poses.joints_3d.shape == (50, 27, 3)
    d = poses.detected
    np.testing.assert_allclose(poses.joints_3d[d, 0], 0.0, atol=1e-6)
    hips = poses.keypoints_2d[d][:, [23, 24], :2].mean(1)
    assert np.all((hips[:, 0] > 250) & (hips[:, 0] < 600) & (hips[:, 1] > 150) & (hips[:, 1] < 400))
    # 2D motion is continuous: the hip centre moves less than 40 px between consecutive frames
    assert np.abs(np.diff(hips, axis=0)).max() < 40
    assert calls[0] == ("detect", 0, 50) and calls[-1] == ("detect", 50, 50)
    assert all(s == "detect" for s, _, _ in calls) and [c[1] for c in calls] == sorted(c[1] for c in calls)
    assert poses.notes == []
    assert poses.source.endswith("kunkun_dance_864x480_25fps.mp4")


def test_anime_character_in_the_crop(videos, tmp_path):
    poses = detect_video(videos / "anime_dance_sidebyside_1536x768_25fps.mp4", crop=(768, 0, 768, 768))
    rate = poses.detected.mean()
    print(f"anime crop detection rate: {poses.detected.sum()}/{len(poses)} = {rate:.3f}")
    assert len(poses) == 195
    assert rate >= 0.9
    assert poses.image_size == (768, 768) and poses.crop == (768, 0, 768, 768)
    head = poses.keypoints_2d[poses.detected][:, 0, :2]  # nose, in the crop's px
    assert np.all((head >= 0) & (head < 768))
    # the shoulders are above the hips on (nearly) every detected frame
    k = poses.keypoints_2d[poses.detected]
    assert np.mean(k[:, [11, 12], 1].mean(1) < k[:, [23, 24], 1].mean(1)) > 0.95
    path = pose_io.save(tmp_path / "anime.npz", poses)
    back = pose_io.load(path)
    assert back.crop == (768, 0, 768, 768) and back.lifter == "mediapipe"
    np.testing.assert_array_equal(back.detected, poses.detected)


def test_empty_region_is_no_detection(videos):
    """The wall at the top-left of kunkun holds nobody."""
    with pytest.raises(PipelineError) as e:
        detect_video(videos / "kunkun_dance_864x480_25fps.mp4", end=0.5, crop=(0, 0, 200, 120))
    assert e.value.code == "no_detection"
    assert "crop" in e.value.message and "full body" in e.value.message


def test_figure_skater_decode_note_and_gaps(videos):
    backend = ScriptedBackend(lambda t: [] if 100 <= t < 110 else [((500, 100, 700, 600), 0.9)])
    poses = detect_video(videos / "figure_skater_1280x720_25fps.mp4", backend=backend, batch_size=16)
    assert backend.seen == len(poses) == 185
    assert backend.shapes == {((720, 1280, 3), "|u1")}
    assert poses.backend == "scripted" and poses.lifter == "" and poses.joints_3d is None
    assert poses.notes[0] == ("decoded 185 of 207 frames: the container's edit list hides 22 frames "
                              "(players skip them too)")
    assert "no person detected in 10 of 185 frames" in poses.notes
    gap = ~poses.detected
    np.testing.assert_array_equal(np.flatnonzero(gap), np.arange(100, 110))
    assert np.all(np.isnan(poses.keypoints_2d[gap, :, :2])) and np.all(poses.keypoints_2d[gap, :, 2] == 0)
    assert np.all(np.isfinite(poses.keypoints_2d[~gap]))


def test_several_people_follow_the_dancer(videos):
    """A large, steady dancer and a small bystander with a higher score: the dancer is followed."""
    dancer = ((300, 80, 560, 470), 0.8)
    bystander = ((20, 300, 80, 420), 0.99)

    def people(t):
        if t % 3 == 0:
            return [bystander, dancer]  # order changes between frames
        return [dancer, bystander] if t % 3 == 1 else [dancer]

    poses = detect_video(videos / "kunkun_dance_864x480_25fps.mp4", backend=ScriptedBackend(people), end=1.0)
    assert len(poses) == 26 and poses.detected.all()
    np.testing.assert_allclose(poses.keypoints_2d[:, :, 0], 430.0)  # the dancer's box centre
    assert any(n.startswith("several people in 18 frames") for n in poses.notes)


def test_no_person_anywhere_is_no_detection(videos):
    with pytest.raises(PipelineError) as e:
        detect_video(videos / "kunkun_dance_864x480_25fps.mp4", backend=ScriptedBackend(lambda t: []), end=0.4)
    assert e.value.code == "no_detection" and "11 frames" in e.value.message


def test_bad_inputs_are_pipeline_errors(videos, shared_data, tmp_path):
    kunkun = videos / "kunkun_dance_864x480_25fps.mp4"
    cases = [
        (dict(path=kunkun, crop=(700, 0, 300, 300)), "bad_input", "outside the 864x480 frame"),
        (dict(path=kunkun, start=4.0, end=2.0), "bad_input", "after start"),
        (dict(path=kunkun, start=30.0), "no_frames", "end of the video"),
        (dict(path=tmp_path / "missing.mp4"), "bad_input", "no such file"),
        (dict(path=shared_data / "pmx" / "yw_test_model" / "yw_test_model.pmx"), "bad_input", "not a video"),
        (dict(path=kunkun, backend="openpose"), "bad_input", "unknown pose backend"),
    ]
    for kwargs, code, text in cases:
        path = kwargs.pop("path")
        with pytest.raises(PipelineError) as e:
            detect_video(path, **kwargs)
        assert e.value.code == code and text in e.value.message, (kwargs, e.value)


def test_worker_stage_modules_import_without_heavy_packages():
    """The seam: these modules must import with av, cv2, mediapipe, torch unavailable (Blender's Python)."""
    code = textwrap.dedent("""
        import sys
        for name in ("av", "cv2", "mediapipe", "torch"):
            sys.modules[name] = None  # makes 'import name' raise ImportError
        import core.worker.video, core.worker.detect, core.worker.overlay, core.worker.backends, core.worker.backends.base
        import core.worker.backends.mediapipe_pose
        from core.worker.backends import get_backend
        from core.errors import PipelineError
        try:
            get_backend("mediapipe")
        except PipelineError as e:
            assert e.code == "missing_dependency" and "mediapipe" in e.message, e
        else:
            raise AssertionError("get_backend built a backend without mediapipe")
        print("ok")
    """)
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"
