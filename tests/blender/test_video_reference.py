"""The source video beside the model: image plane with a movie texture, or camera background, in sync at 30 fps."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import BPY_MISSING_REASON

bpy = pytest.importorskip("bpy", reason=BPY_MISSING_REASON)


@pytest.fixture
def kunkun(shared_data):
    return shared_data / "videos" / "kunkun_dance_864x480_25fps.mp4"


def test_plane_beside_the_model_in_sync(addon, scene, yw_pmx, kunkun):
    arm = addon.pmx_import.import_pmx(yw_pmx, bpy.context).armature
    props = scene.anime_mmd
    props.video_path = str(kunkun)
    props.start_time = 2.0
    props.target_armature = arm
    assert bpy.ops.anime_mmd.show_video() == {"FINISHED"}
    plane = next(o for o in bpy.data.objects if o.get("anime_mmd_video"))
    tex = next(n for n in plane.data.materials[0].node_tree.nodes if n.type == "TEX_IMAGE")
    assert tex.image.source == "MOVIE" and tuple(tex.image.size) == (864, 480)
    # As tall as the model, with the video's aspect, and not overlapping it.
    corners = np.array([tuple(plane.matrix_world @ v.co) for v in plane.data.vertices])
    bones_x = [tuple(arm.matrix_world @ b.head_local)[0] for b in arm.data.bones]
    height = np.ptp(corners[:, 2])
    assert np.ptp(corners[:, 0]) / height == pytest.approx(864 / 480, rel=1e-4)
    assert corners[:, 0].max() < min(bones_x)
    clip = bpy.data.movieclips[0]
    fps = clip.fps
    for f in (0, 1, 30, 75, 200):
        scene.frame_set(f)
        shown = f + tex.image_user.frame_offset  # 1-based video frame shown at scene frame f (frame_start = 1)
        assert shown == round(2.0 * fps + f * fps / 30) + 1, f


def test_camera_background_mode(addon, scene, kunkun):
    props = scene.anime_mmd
    props.video_path = str(kunkun)
    props.start_time = 0.0
    props.video_display = "CAMERA"
    assert bpy.ops.anime_mmd.show_video() == {"FINISHED"}
    cam = scene.camera
    assert cam is not None and cam.data.show_background_images
    bg = cam.data.background_images[0]
    assert bg.source == "MOVIE_CLIP" and bg.clip.filepath.endswith(kunkun.name)
    scene.frame_set(60)
    assert 60 + bg.clip.frame_offset == round(60 * bg.clip.fps / 30) + 1
    props.video_display = "PLANE"


def test_unreadable_video_is_an_error(addon, scene, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 1000)
    scene.anime_mmd.video_path = str(bad)
    with pytest.raises(RuntimeError, match="Cannot show the video"):
        bpy.ops.anime_mmd.show_video()


def test_plane_shows_the_frames_turned_as_the_estimate_turned_them(addon, scene, kunkun, tmp_path):
    """A video the estimate stood upright (``--rotate``, its pose file's ``rotate``) is shown turned the same way:
    the plane takes the turned aspect and its top-left corner shows the file's top-right (a quarter turn
    counter-clockwise); without a pose file of that video, the file as it is."""
    from core import pose_io
    from core.skeletons import CANONICAL

    props = scene.anime_mmd
    props.video_path = str(kunkun)
    props.start_time = 0.0
    props.video_display = "PLANE"
    poses = pose_io.PoseSequence(keypoints_2d=np.zeros((2, len(CANONICAL), 3)), timestamps=[0.0, 0.04],
                                 frame_indices=[0, 1], detected=np.ones(2, bool), fps=25.0, image_size=(480, 864),
                                 joint_names_2d=CANONICAL, backend="mediapipe", source=str(kunkun), rotate=90)
    props.result_npz = str(pose_io.save(tmp_path / "turned.npz", poses))

    def shown():
        plane = next(o for o in bpy.data.objects if o.get("anime_mmd_video"))
        corners = np.array([tuple(plane.matrix_world @ v.co) for v in plane.data.vertices])
        uv = np.zeros(8)
        plane.data.uv_layers[0].data.foreach_get("uv", uv)
        return np.ptp(corners[:, 0]) / np.ptp(corners[:, 2]), uv.reshape(4, 2)

    assert bpy.ops.anime_mmd.show_video() == {"FINISHED"}
    aspect, uv = shown()
    assert aspect == pytest.approx(480 / 864, rel=1e-4)
    assert uv[3].tolist() == [1.0, 1.0] and uv[0].tolist() == [0.0, 1.0]    # top-left <- top-right, ...
    props.result_npz = ""
    assert bpy.ops.anime_mmd.show_video() == {"FINISHED"}
    aspect, uv = shown()
    assert aspect == pytest.approx(864 / 480, rel=1e-4) and uv.tolist() == [[0, 0], [1, 0], [1, 1], [0, 1]]
