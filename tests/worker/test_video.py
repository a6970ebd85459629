"""core.worker.video: probing and streaming decode on the real videos in ../shared/data/videos."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av", reason="PyAV (av) is not installed: the video stage cannot run")

from core.worker import video  # noqa: E402
from core.errors import PipelineError  # noqa: E402


@pytest.fixture(scope="module")
def videos(shared_data) -> Path:
    return shared_data / "videos"


@pytest.fixture(scope="module")
def kunkun(videos) -> Path:
    return videos / "kunkun_dance_864x480_25fps.mp4"


def test_probe_kunkun(kunkun):
    info = video.probe(kunkun)
    assert (info.width, info.height) == (864, 480)
    assert info.fps == pytest.approx(25.051, abs=1e-3)
    assert info.frame_count == 338
    assert info.duration == pytest.approx(13.49, abs=0.05)
    assert info.codec == "h264"
    assert info.rotation == 0 and info.hidden_frames == 0


def test_full_decode_kunkun_counts_and_pts_times(kunkun):
    it = video.iter_frames(kunkun)
    idx, times, shapes = [], [], set()
    first_pixels = None
    for f in it:
        idx.append(f.index)
        times.append(f.time)
        shapes.add((f.image.shape, f.image.dtype.str))
        if first_pixels is None:
            first_pixels = f.image.copy()
    assert idx == list(range(338))
    assert shapes == {((480, 864, 3), "|u1")}
    t = np.array(times)
    # kunkun's stream is 25.051 fps (time base 1/25051, 1000 ticks a frame): times come from the real pts
    np.testing.assert_allclose(t, np.arange(338) * 1000 / 25051, atol=1e-9)
    assert it.report.finished and it.report.complete
    assert it.report.decoded == it.report.expected == 338
    assert it.report.message() == ""
    assert first_pixels.std() > 10  # a real picture, not a blank frame


def test_window_2_to_4_seconds(kunkun):
    full = {f.index: f for f in video.iter_frames(kunkun, start=1.9, end=2.2)}
    it = video.iter_frames(kunkun, start=2.0, end=4.0)
    frames = list(it)
    assert len(frames) == 50
    t = np.array([f.time for f in frames])
    assert t.min() >= 2.0 and t.max() < 4.0
    assert np.all(np.diff(t) > 0)
    # indices are those of a full decode: frame 51 is the first at or after 2.0 s (51 / 25.051 = 2.036 s)
    assert [f.index for f in frames] == list(range(51, 101))
    # the seek landed on the same picture a decode from an earlier point gives
    np.testing.assert_array_equal(frames[0].image, full[51].image)
    assert it.report.windowed and it.report.complete and it.report.message() == ""


def test_crop_cuts_the_displayed_frame(videos):
    path = videos / "anime_dance_sidebyside_1536x768_25fps.mp4"
    whole = next(iter(video.iter_frames(path, end=0.01))).image
    it = video.iter_frames(path, end=0.01, crop=(768, 0, 768, 768))
    cropped = [f.image for f in it]
    assert len(cropped) == 1
    assert cropped[0].shape == (768, 768, 3) and cropped[0].flags.c_contiguous
    np.testing.assert_array_equal(cropped[0], whole[:, 768:])


def test_figure_skater_reports_185_of_207(videos):
    """The container lists 207 frames but its edit list starts presentation 22 frames in: 185 decode."""
    path = videos / "figure_skater_1280x720_25fps.mp4"
    info = video.probe(path)
    assert (info.frame_count, info.hidden_frames, info.presented_frames) == (207, 22, 185)
    it = video.iter_frames(path)
    n = sum(1 for _ in it)
    r = it.report
    assert n == r.decoded == 185
    assert r.expected == 207 and r.hidden == 22 and r.error is None
    assert r.complete  # nothing a player would show is missing
    assert r.message().startswith("decoded 185 of 207 frames: ")
    assert "edit list hides 22 frames" in r.message()


def test_truncated_file_ends_iteration_and_reports(kunkun, tmp_path):
    """A real truncation: kunkun remuxed with the index first (faststart), then cut in half."""
    src = av.open(str(kunkun))
    s = src.streams.video[0]
    remuxed = tmp_path / "faststart.mp4"
    out = av.open(str(remuxed), "w", options={"movflags": "faststart"})
    o = out.add_stream_from_template(s)
    for p in src.demux(s):
        if p.dts is None:
            continue
        p.stream = o
        out.mux(p)
    out.close()
    src.close()
    data = remuxed.read_bytes()
    cut = tmp_path / "truncated.mp4"
    cut.write_bytes(data[: len(data) // 2])

    it = video.iter_frames(cut)
    frames = [f.index for f in it]  # must not raise
    r = it.report
    assert 50 < len(frames) < 300
    assert frames == list(range(len(frames)))
    assert r.decoded == len(frames) and r.expected == 338 and not r.complete
    assert r.message().startswith(f"decoded {len(frames)} of 338 frames: ")


def test_damaged_stream_error_is_reported_not_raised(kunkun, tmp_path):
    data = bytearray(kunkun.read_bytes())
    # flip bytes inside the media data (kunkun's mdat spans bytes 40..662215)
    for k in range(300_000, 320_000, 7):
        data[k] ^= 0xFF
    bad = tmp_path / "damaged.mp4"
    bad.write_bytes(bytes(data))
    it = video.iter_frames(bad)
    n = sum(1 for _ in it)
    assert 0 < n < 338
    assert it.report.decoded == n and not it.report.complete
    assert it.report.error or "never arrived" in it.report.message()


@pytest.mark.parametrize("crop", [(800, 0, 100, 100), (0, 0, 864, 481), (-1, 0, 10, 10), (0, 0, 0, 10),
                                  (0, 0, 10.5, 10), (1, 2, 3)])
def test_bad_crop_is_a_clear_value_error(kunkun, crop):
    with pytest.raises(ValueError, match="crop"):
        video.iter_frames(kunkun, crop=crop)


def test_bad_window(kunkun):
    with pytest.raises(ValueError, match="after start"):
        video.iter_frames(kunkun, start=3.0, end=2.0)
    with pytest.raises(PipelineError) as e:
        video.iter_frames(kunkun, start=20.0)
    assert e.value.code == "no_frames" and "13.49" in e.value.message


def test_missing_file(tmp_path):
    with pytest.raises(PipelineError) as e:
        video.probe(tmp_path / "nope.mp4")
    assert e.value.code == "bad_input" and "no such file" in e.value.message


def test_pmx_is_not_a_video(shared_data):
    with pytest.raises(PipelineError) as e:
        video.iter_frames(shared_data / "pmx" / "yw_test_model" / "yw_test_model.pmx")
    assert e.value.code == "bad_input" and "not a video" in e.value.message


def _phone_clip(path):
    """A phone-style file: 3 coded frames of 64x32 with a white block at the coded top-left and a display matrix
    saying 'rotate 90 degrees clockwise'."""
    out = av.open(str(path), "w")
    s = out.add_stream("mpeg4", rate=25)
    s.width, s.height, s.pix_fmt = 64, 32, "yuv420p"
    s.set_display_rotation(-90)  # PyAV/FFmpeg: degrees counter-clockwise
    img = np.zeros((32, 64, 3), np.uint8)
    img[:16, :16] = 255
    for _ in range(3):
        for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            out.mux(p)
    for p in s.encode():
        out.mux(p)
    out.close()
    return path


def test_display_rotation_is_applied(tmp_path):
    path = _phone_clip(tmp_path / "rot.mp4")
    info = video.probe(path)
    assert (info.width, info.height, info.rotation) == (32, 64, 270)
    frames = [f.image for f in video.iter_frames(path)]
    assert len(frames) == 3 and frames[0].shape == (64, 32, 3)
    # rotated clockwise, the coded top-left corner is shown at the top-right
    assert frames[0][:12, -12:].mean() > 200 and frames[0][:12, :12].mean() < 50


@pytest.mark.parametrize("window", [(None, None), (2.0, 6.0)])
def test_every_nth_frame_equals_the_full_decode_sliced(kunkun, window):
    start, end = window
    full = list(video.iter_frames(kunkun, start=start, end=end, crop=(100, 20, 400, 300)))
    it = video.iter_frames(kunkun, start=start, end=end, crop=(100, 20, 400, 300), every=7)
    sub = list(it)
    assert [f.index for f in sub] == [f.index for f in full][::7]
    assert [f.time for f in sub] == [f.time for f in full][::7]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(sub, full[::7]))
    assert it.report.decoded == len(full) and it.report.complete  # every frame was decoded, 1 in 7 converted


def test_every_must_be_a_positive_whole_number(kunkun):
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError, match="every"):
            video.iter_frames(kunkun, every=bad)


def test_auto_crop_sample_is_that_of_the_full_decode(videos):
    from core.crop_help import find_static_half
    from core.worker.detect import _auto_crop

    path = videos / "anime_dance_sidebyside_1536x768_25fps.mp4"
    frames = list(video.iter_frames(path, end=10.0))
    step = max(1, int(round(10.0 * video.probe(path).fps / 24)))
    s = max(1, 1536 // 256)
    sample = np.stack([np.ascontiguousarray(f.image[::s, ::s]) for f in frames[::step][:24]])
    expect = find_static_half(sample, frame_size=(1536, 768))
    crop, note = _auto_crop(path, None, None)
    assert crop == expect.crop == (768, 0, 768, 768)
    assert note.startswith(expect.note)


def test_a_further_turn_follows_the_display_rotation_and_precedes_the_crop(tmp_path):
    """``rotate``: the frames of a phone-style file (display rotation 270) turned a further 90° counter-clockwise
    are its displayed frames turned by numpy; the crop and the size are those of the turned frames."""
    path = _phone_clip(tmp_path / "rot.mp4")
    shown = [f.image for f in video.iter_frames(path)]
    for rot in (90, 180, 270):
        it = video.iter_frames(path, rotate=rot)
        turned = [f.image for f in it]
        assert all(np.array_equal(t, np.rot90(f, k=rot // 90)) for t, f in zip(turned, shown)) and len(turned) == 3
        assert (it.info.width, it.info.height) == (turned[0].shape[1], turned[0].shape[0])
        assert it.info.rotation == (270 + rot) % 360 and it.rotate == rot
    cut = [f.image for f in video.iter_frames(path, rotate=90, crop=(0, 0, 64, 16))]   # 64x32 once turned
    assert np.array_equal(cut[0], np.rot90(shown[0])[:16, :64])
    with pytest.raises(ValueError, match="reaches outside the 64x32 frame"):
        video.iter_frames(path, rotate=90, crop=(0, 0, 32, 64))
    for bad in (45, -90, "90", 360):
        with pytest.raises(ValueError, match="rotate must be 0, 90, 180 or 270"):
            video.iter_frames(path, rotate=bad)
