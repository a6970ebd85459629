"""Hard input on real clips (issue 10): the still half of a side-by-side video, shot cuts in a spliced video,
retries that recover frames whose pose is missing or implausible, and the loud refusal of a run with too few
usable frames. Clips are cut to 1-3 s so the detector runs briefly."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from core import gating, pose_io, quality
from core.errors import PipelineError
from core.options import EstimateOptions

pytest.importorskip("av")
pytest.importorskip("mediapipe")

ANIME = "videos/anime_dance_sidebyside_1536x768_25fps.mp4"
KUNKUN = "videos/kunkun_dance_864x480_25fps.mp4"
SKATER = "videos/figure_skater_1280x720_25fps.mp4"


def test_auto_crop_finds_the_still_half_of_the_side_by_side_clip(shared_data):
    from core.worker.detect import _auto_crop

    crop, note = _auto_crop(shared_data / ANIME, None, 3.0)
    assert crop == (768, 0, 768, 768) and "left half of the frame is still" in note
    assert _auto_crop(shared_data / KUNKUN, None, 3.0) == (None, "")
    assert _auto_crop(shared_data / SKATER, None, 3.0) == (None, "")


def _frames(path, n, size=(640, 360)):
    import cv2

    from core.worker import video

    out = []
    for f in video.iter_frames(path):
        out.append(cv2.resize(f.image, size, interpolation=cv2.INTER_AREA))
        if len(out) == n:
            break
    return out


def _write(path, frames, fps=25):
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=fps)
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        s.bit_rate = 4_000_000
        for img in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def test_spliced_clip_is_cut_into_its_shots_and_each_is_filled_alone(shared_data, tmp_path):
    from core.worker.detect import detect_video
    from core.worker.job import _fill

    clip = tmp_path / "spliced.mp4"
    _write(clip, _frames(shared_data / KUNKUN, 30) + _frames(shared_data / SKATER, 30))
    p = detect_video(clip, retry=False)
    assert p.shots.tolist() == [[0, 30], [30, 60]]
    assert any("cuts at 1.20 s" in n for n in p.notes)
    # no interpolation across the cut: a gap around it is held on each side from that shot's own frames
    det = p.detected.copy()
    det[26:35] = False
    f = _fill(replace(p, detected=det))
    assert np.allclose(f.keypoints_2d[26:30, :, :2], f.keypoints_2d[25, :, :2])
    assert np.allclose(f.keypoints_2d[30:35, :, :2], f.keypoints_2d[35, :, :2])
    assert np.allclose(f.joints_3d[30:35], f.joints_3d[35], equal_nan=True)


def test_retry_recovers_missing_and_face_sized_skeletons(shared_data):
    from core import skeletons
    from core.worker import detect

    path = shared_data / ANIME
    crop = (768, 0, 768, 768)
    p = detect.detect_video(path, end=1.6, crop=crop, retry=False, auto_crop=False)
    kp, j3, det = p.keypoints_2d.copy(), p.joints_3d.copy(), p.detected.copy()
    names = p.joint_names_2d
    g0 = gating.gate(kp, names, p.image_size, detected=det, timestamps=p.timestamps)
    assert g0.usable.all()
    blank, tiny = [8, 20, 31], [14, 26]
    kp[blank] = np.nan
    kp[blank, :, 2] = 0
    det[blank] = False
    nose = kp[tiny, 0:1, :2]
    kp[tiny, :, :2] = nose + 0.1 * (kp[tiny, :, :2] - nose)      # a skeleton inside the face
    tried, won = detect._retry(path, None, 1.6, crop, kp, j3, det, names, p.image_size, p.timestamps,
                               p.shots.tolist(), lambda *a: None)
    assert tried == 5 and won >= 4
    g = gating.gate(kp, names, p.image_size, detected=det, timestamps=p.timestamps)
    fixed = [t for t in blank + tiny if g.usable[t]]
    assert len(fixed) >= 4
    body = [names.index(n) for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip", "left_elbow",
                                     "right_elbow")]
    for t in fixed:  # the recovered skeleton is the dancer's: near what video mode had found there
        err = np.linalg.norm(kp[t, body, :2] - p.keypoints_2d[t, body, :2], axis=-1)
        assert np.median(err) < 0.25 * g0.scale[t], (t, err)
    assert np.isfinite(j3[fixed][:, : len(skeletons.H36M17)]).all()


def test_too_few_usable_frames_stop_the_run_with_the_report_unless_forced(shared_data, tmp_path):
    from core.worker.job import detect_stage

    kp = shared_data / "keypoints" / "lia_kim_dance" / "detectron2_raw.npz"   # a person in 72% of the frames
    opts = EstimateOptions(from_keypoints=str(kp), output=str(tmp_path / "a.vmd"), min_usable=0.9)
    with pytest.raises(PipelineError) as e:
        detect_stage(opts)
    msg = e.value.message
    assert e.value.code == "no_detection" and "% of the frames hold a usable skeleton" in msg
    assert "quality:" in msg and "--start/--end" in msg and "--force" in msg
    poses = detect_stage(replace(opts, force=True))                # past the check: lifted (the default lifter)
    assert poses.lifter == "trained" and poses.joints_3d is not None
    with pytest.raises(PipelineError, match="2D keypoints only"):   # --lifter native has no 3D to take here
        detect_stage(replace(opts, force=True, lifter="native"))
    r = subprocess.run([sys.executable, "-m", "core", "estimate", "--from-keypoints", str(kp), "-o",
                        str(tmp_path / "b.vmd"), "--min-usable", "0.9", "-q"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 1 and "usable skeleton" in r.stderr and "--force" in r.stderr
    assert not (tmp_path / "b.vmd").exists() and not (tmp_path / "b.npz").exists()


def test_side_by_side_clip_end_to_end_reports_its_quality(shared_data, tmp_path, repo_root):
    out = tmp_path / "anime.vmd"
    r = subprocess.run([sys.executable, "-m", "core", "estimate", str(shared_data / ANIME), "--end", "2", "-o",
                        str(out), "-q"], capture_output=True, text=True, timeout=600, cwd=repo_root)
    assert r.returncode == 0, r.stderr
    assert "quality: " in r.stderr and "crop 768,0,768,768 chosen automatically" in r.stderr
    p = pose_io.load(out.with_suffix(".npz"))
    q = quality.QualityReport.from_json(p.quality)
    assert q.crop == [768, 0, 768, 768] and q.usable_fraction >= 0.95 and q.frames == 50
    assert q.feet_unseen >= q.upper_body and q.centre_speed_p99 is not None and q.centre_speed_p99 < 4.0
    assert p.shots.tolist() == [[0, 50]] and p.rejected is not None and p.upper_body is not None
    assert json.loads(p.quality)["usable"] == int(p.detected.sum())


def test_a_small_dancer_the_video_mode_misses_is_found_and_followed(shared_data, tmp_path):
    """kunkun shrunk to 0.3 of its size and walking across a grey frame: MediaPipe's video mode finds nobody; the
    retry searches zoomed-in windows, then follows the dancer's box frame to frame."""
    import cv2

    from core.worker import detect

    out = []
    for i, f in enumerate(_frames(shared_data / KUNKUN, 30, size=(864, 480))):
        small = cv2.resize(f, None, fx=0.3, fy=0.3, interpolation=cv2.INTER_AREA)
        canvas = np.full((480, 864, 3), 128, np.uint8)
        canvas[200:200 + small.shape[0], 100 + 8 * i:100 + 8 * i + small.shape[1]] = small
        out.append(canvas)
    clip = tmp_path / "small.mp4"
    _write(clip, out)
    with pytest.raises(PipelineError, match="no person was found"):
        detect.detect_video(clip, retry=False, auto_crop=False)
    p = detect.detect_video(clip, auto_crop=False)
    g = gating.gate(p.keypoints_2d, p.joint_names_2d, p.image_size, detected=p.detected, timestamps=p.timestamps)
    assert g.usable.mean() >= 0.8, p.notes
    hip = p.keypoints_2d[g.usable][:, p.joint_names_2d.index("left_hip"), 0]
    x = 100 + 8 * np.flatnonzero(g.usable) + 0.3 * 864 / 2
    assert np.median(np.abs(hip - x)) < 40          # on the dancer, who moves 8 px a frame


def test_a_dancer_at_the_inner_edge_of_an_automatic_crop_is_pointed_out():
    from types import SimpleNamespace

    from core.worker.detect import _edge_fraction

    info = SimpleNamespace(width=1536, height=768)
    kp = np.zeros((10, 33, 3), np.float32)
    kp[..., 0], kp[..., 1], kp[..., 2] = 384, 300, 0.9
    det = np.ones(10, bool)
    assert _edge_fraction(kp, det, (768, 768), (768, 0, 768, 768), info) == 0.0
    kp[:4, 15, 0] = 5.0                       # a wrist at the left edge of the right half: towards the still half
    assert _edge_fraction(kp, det, (768, 768), (768, 0, 768, 768), info) == pytest.approx(0.4)
    kp[:4, 15, 0] = 763.0                     # the right edge of the right half is the frame's own edge
    assert _edge_fraction(kp, det, (768, 768), (768, 0, 768, 768), info) == 0.0


def test_a_video_filmed_sideways_is_stood_upright(shared_data, tmp_path, capsys):
    """kunkun turned on its side (as a phone video whose rotation flag was lost): ``--rotate auto`` turns the frames
    back before the detection and says so, so the keypoints are those of the upright clip; ``--rotate 0`` keeps the
    frames as they are. The turn is kept in the pose file, which the overlay reads to draw on the turned frames."""
    from core.worker import job
    from core.worker.overlay import write_overlay

    frames = _frames(shared_data / KUNKUN, 40, size=(432, 240))
    upright_clip, sideways = tmp_path / "upright.mp4", tmp_path / "sideways.mp4"
    _write(upright_clip, frames)
    _write(sideways, [np.ascontiguousarray(np.rot90(f)) for f in frames])   # head to the left: turned 90° ccw
    ref = job.detect_stage(EstimateOptions(video=str(upright_clip)), None)
    p = job.detect_stage(EstimateOptions(video=str(sideways)), None)
    assert p.rotate == 270 and p.image_size == ref.image_size == (432, 240)
    assert any(n.startswith("rotate: ") and "turned 270°" in n for n in p.notes), p.notes
    both = ref.detected & p.detected
    assert both.mean() > 0.9
    err = np.linalg.norm(p.keypoints_2d[both, :, :2] - ref.keypoints_2d[both, :, :2], axis=-1)
    assert np.nanmedian(err) < 3.0                          # px: the same detections as on the upright clip
    kept = job.detect_stage(EstimateOptions(video=str(sideways), rotate="0"), None)
    assert kept.rotate == 0 and kept.image_size == (240, 432) and not any(n.startswith("rotate:") for n in kept.notes)
    path = pose_io.save(tmp_path / "p.npz", p)
    back = pose_io.load(path)
    assert back.rotate == 270 and pose_io.load(pose_io.save(tmp_path / "k.npz", kept)).rotate == 0
    from core import cli
    assert cli.main(["inspect", str(path)]) == 0
    assert "image 432x240 (the video's frames turned 270° counter-clockwise)" in capsys.readouterr().out
    out = write_overlay(sideways, back, tmp_path / "overlay.mp4")
    from core.worker import video
    assert video.probe(out).width == 432                    # drawn on the turned frames
    with pytest.raises(PipelineError, match="rotate"):
        EstimateOptions(video=str(sideways), rotate="45").validate()
