"""core.worker.overlay.write_overlay: a decodable MP4 with the skeleton on the dancer, safe file handling."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("av", reason="PyAV (av) is not installed: cannot decode or encode video")
pytest.importorskip("cv2", reason="OpenCV (cv2) is not installed: cannot draw the overlay")

from core import skeletons  # noqa: E402
from core.worker import video  # noqa: E402
from core.errors import PipelineError  # noqa: E402
from core.worker.overlay import MEDIAPIPE33_EDGES, edges_for, write_overlay  # noqa: E402
from core.pose_io import PoseSequence  # noqa: E402


@pytest.fixture(scope="module")
def kunkun(shared_data):
    return shared_data / "videos" / "kunkun_dance_864x480_25fps.mp4"


@pytest.fixture(scope="module")
def kunkun_poses(kunkun):
    pytest.importorskip("mediapipe", reason="mediapipe is not installed: no real poses to draw")
    from core.worker.detect import detect_video

    return detect_video(kunkun, start=2.0, end=3.0)


def _frames(path):
    it = video.iter_frames(path)
    return [f for f in it], it


def test_overlay_frames_size_and_skeleton_on_the_dancer(kunkun, kunkun_poses, tmp_path):
    poses = kunkun_poses
    calls = []
    out = write_overlay(kunkun, poses, tmp_path / "check.mp4",
                        progress=lambda s, d, t: calls.append((s, d, t)))
    assert out == tmp_path / "check.mp4" and out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["check.mp4"]  # no temporary file left
    frames, it = _frames(out)
    assert len(frames) == len(poses) == 25
    assert it.info.codec in ("h264", "mpeg4") and (it.info.width, it.info.height) == (864, 480)
    assert it.report.complete and it.report.error is None
    assert calls[-1] == ("overlay", 25, 25)

    # compare with the source frames: the drawing changes pixels at the joints, hardly anywhere else
    src = {f.index: f.image for f in video.iter_frames(kunkun, start=2.0, end=3.0)}
    k = 10
    a = frames[k].image.astype(np.int32)
    b = src[int(poses.frame_indices[k])].astype(np.int32)
    diff = np.abs(a - b).sum(-1)
    kp = poses.keypoints_2d[k]
    joints = [skeletons.MEDIAPIPE33.index(n) for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip",
                                                       "left_knee", "right_knee")]
    xs, ys = np.rint(kp[joints, 0]).astype(int), np.rint(kp[joints, 1]).astype(int)
    assert np.all(diff[ys, xs] > 80), diff[ys, xs]  # a coloured dot at every joint
    assert np.median(diff) < 15  # elsewhere only compression noise
    # the subject's left shoulder (at image right) is orange, the right one blue (RGB)
    ls, rs = joints[0], joints[1]
    orange = a[ys[0], xs[0]]
    blue = a[ys[1], xs[1]]
    assert orange[0] > 180 and orange[2] < 120, orange
    assert blue[2] > 180 and blue[0] < 120, blue
    assert kp[ls, 0] > kp[rs, 0]


def test_gaps_and_missing_detections_are_marked(kunkun, kunkun_poses, tmp_path):
    poses = kunkun_poses
    kp = poses.keypoints_2d.copy()
    det = poses.detected.copy()
    det[3:6] = False  # gap-filled frames: positions kept, confidence 0
    kp[3:6, :, 2] = 0
    det[6:8] = False  # frames with no keypoints at all
    kp[6:8, :, :2] = np.nan
    kp[6:8, :, 2] = 0
    marked = replace(poses, keypoints_2d=kp, detected=det)
    out = write_overlay(kunkun, marked, tmp_path / "gaps.mp4")
    frames, _ = _frames(out)
    assert len(frames) == 25

    def magenta(img):
        i = img.astype(np.int32)
        return int(np.sum((i[..., 0] > 200) & (i[..., 1] < 80) & (i[..., 2] > 200)))

    assert magenta(frames[4].image) > 500  # the gap skeleton
    assert magenta(frames[10].image) < 50  # a normal frame has no magenta
    assert magenta(frames[7].image) < 50  # no skeleton at all there ...
    src = {f.index: f.image for f in video.iter_frames(kunkun, start=2.0, end=3.0)}
    body = np.abs(frames[7].image.astype(int) - src[int(poses.frame_indices[7])].astype(int)).sum(-1)
    assert np.median(body[100:, :]) < 15  # ... below the label rows the frame is just the source


def test_crop_offset_and_box(shared_data, tmp_path):
    path = shared_data / "videos" / "anime_dance_sidebyside_1536x768_25fps.mp4"
    n = 5
    kp = np.full((n, 17, 3), np.nan, np.float32)
    kp[:, :, 0] = 384.0  # the middle of the crop, i.e. x = 768 + 384 in the full frame
    kp[:, :, 1] = np.linspace(100, 700, 17)
    kp[:, :, 2] = 1.0
    poses = PoseSequence(keypoints_2d=kp, timestamps=np.arange(n) * 0.04, frame_indices=np.arange(10, 10 + n),
                         detected=np.ones(n, bool), fps=25, image_size=(768, 768),
                         joint_names_2d=skeletons.COCO17, backend="test", crop=(768, 0, 768, 768))
    out = write_overlay(path, poses, tmp_path / "crop.mp4")
    frames, it = _frames(out)
    assert len(frames) == n and (it.info.width, it.info.height) == (1536, 768)
    src = {f.index: f.image for f in video.iter_frames(path, end=0.6)}
    diff = np.abs(frames[0].image.astype(int) - src[10].astype(int)).sum(-1)
    # the skeleton is drawn at x = 768 + 384 (crop offset applied) and not at x = 384
    assert diff[300:600, 1148:1156].mean() > 150
    assert diff[300:600, 380:388].mean() < 20
    # the crop box: yellow line along its left edge x = 768..769
    edge = frames[0].image[200:600, 768:770].astype(int)
    assert np.mean((edge[..., 0] > 180) & (edge[..., 1] > 180) & (edge[..., 2] < 100)) > 0.8


def test_refuses_to_overwrite_unless_asked(kunkun, kunkun_poses, tmp_path):
    out = tmp_path / "mine.mp4"
    out.write_bytes(b"precious")
    with pytest.raises(PipelineError) as e:
        write_overlay(kunkun, kunkun_poses, out)
    assert e.value.code == "exists"
    assert out.read_bytes() == b"precious"
    write_overlay(kunkun, kunkun_poses, out, overwrite=True)
    assert out.read_bytes()[:4] != b"prec"
    assert len(_frames(out)[0]) == 25
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.mp4"]


def test_rejects_poses_from_another_video_and_bad_names(kunkun, kunkun_poses, tmp_path):
    wrong = replace(kunkun_poses, image_size=(1280, 720))
    with pytest.raises(PipelineError) as e:
        write_overlay(kunkun, wrong, tmp_path / "x.mp4")
    assert e.value.code == "bad_input" and "864x480" in e.value.message
    with pytest.raises(PipelineError) as e:
        write_overlay(kunkun, kunkun_poses, tmp_path / "x.gif")
    assert e.value.code == "bad_input" and ".mp4" in e.value.message
    with pytest.raises(PipelineError) as e:
        write_overlay(kunkun, kunkun_poses, kunkun, overwrite=True)
    assert e.value.code == "bad_input" and "source" in e.value.message
    assert list(tmp_path.iterdir()) == []


def test_edges_cover_the_joint_sets():
    assert edges_for(skeletons.COCO17) == skeletons.COCO17_EDGES
    e = np.array(MEDIAPIPE33_EDGES)
    assert e.min() >= 0 and e.max() < 33
    # every BlazePose landmark is on some bone, and left/right bones come in pairs
    assert set(e.ravel()) == set(range(33))
    mirror = skeletons._mirror_permutation(skeletons.MEDIAPIPE33)
    pairs = {tuple(sorted(p)) for p in MEDIAPIPE33_EDGES}
    assert {tuple(sorted((mirror[a], mirror[b]))) for a, b in pairs} == pairs
    assert edges_for(("a", "b")) == ()


def test_overlay_source_frames_survive_a_wrong_nominal_rate(kunkun):
    """Seeking by the nominal rate can overshoot on variable-rate video: then decoding restarts from the top."""
    from core.worker.overlay import _frames_from

    ok = _frames_from(video, kunkun, 150, 25.051)  # a second before frame 150: lands at or before it
    head = next(ok)
    assert 100 < head.index <= 150
    ok.close()
    overshoot = _frames_from(video, kunkun, 150, 5.0)  # "29 s" is past the end: start again at frame 0
    idx = [f.index for f in overshoot]
    assert idx == list(range(338))
