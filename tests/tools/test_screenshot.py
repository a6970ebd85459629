"""tools/screenshot.py: the video frame shown beside the model is the one the pose came from."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

import screenshot  # noqa: E402

from core import pose_io  # noqa: E402
from core.skeletons import CANONICAL  # noqa: E402


def test_a_pose_files_window_sets_where_the_video_starts(tmp_path):
    """Poses cut from video frame 50 of a 25 fps clip start at 2 s, poses from frame 0 at 0 s: the picture shows the
    video frame the pose came from, not one --start's former default of 2 s away from it."""
    T = 20
    poses = pose_io.PoseSequence(keypoints_2d=np.zeros((T, len(CANONICAL), 3), dtype=np.float32),
                                 timestamps=np.arange(T) / 25.0, frame_indices=np.arange(50, 50 + T),
                                 detected=np.ones(T, bool),
                                 fps=25.0, image_size=(864, 480), joint_names_2d=CANONICAL, backend="test",
                                 joints_3d=np.zeros((T, len(CANONICAL), 3), dtype=np.float32), lifter="test")
    pose_io.save(tmp_path / "cut.npz", poses)
    assert screenshot._npz_start(tmp_path / "cut.npz") == 2.0
    whole = pose_io.PoseSequence(**{**poses.__dict__, "frame_indices": np.arange(T)})
    pose_io.save(tmp_path / "whole.npz", whole)
    assert screenshot._npz_start(tmp_path / "whole.npz") == 0.0


def _poses(source: str) -> pose_io.PoseSequence:
    T = 5
    return pose_io.PoseSequence(keypoints_2d=np.zeros((T, len(CANONICAL), 3), dtype=np.float32),
                                timestamps=np.arange(T) / 25.0, frame_indices=np.arange(T), detected=np.ones(T, bool),
                                fps=25.0, image_size=(864, 480), joint_names_2d=CANONICAL, backend="test",
                                joints_3d=np.zeros((T, len(CANONICAL), 3), dtype=np.float32), lifter="test",
                                source=source)


def test_a_pose_file_shows_its_own_video(tmp_path):
    """Without --video the picture beside the model is the pose file's own clip (a re-cut clip's, not the shared
    kunkun video); a pose file whose video is not there stops with what to pass."""
    clip = tmp_path / "recut.mp4"
    clip.write_bytes(b"\0")
    pose_io.save(tmp_path / "own.npz", _poses(str(clip)))
    assert screenshot._npz_video(tmp_path / "own.npz") == clip
    pose_io.save(tmp_path / "gone.npz", _poses(str(tmp_path / "moved_away.mp4")))
    with pytest.raises(SystemExit, match="moved_away.mp4.*--video"):
        screenshot._npz_video(tmp_path / "gone.npz")
