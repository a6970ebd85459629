"""A damaged pose file is reported with the file, the missing array and what writes pose files (issue 7, item 4)."""
from __future__ import annotations

import zipfile

import numpy as np
import pytest

from core import keypoints_io, pose_io
from core.errors import PipelineError

#: Every array a pose file must hold (the others are optional).
REQUIRED = ["format_version", "keypoints_2d", "timestamps", "frame_indices", "detected", "fps", "image_size",
            "joint_names_2d", "backend"]


@pytest.fixture(scope="module")
def real_pose_file(shared_data, tmp_path_factory):
    """A pose file written by pose_io.save from the real detectron2 keypoints (303 frames)."""
    poses = keypoints_io.load_keypoints(shared_data / "keypoints" / "lia_kim_dance" / "detectron2_raw.npz")
    return pose_io.save(tmp_path_factory.mktemp("pose") / "lia.npz", poses)


def _without(src, dst, drop: set[str], replace: dict | None = None):
    """Copy the zip ``src`` to ``dst`` leaving out the members ``drop`` (names without .npy)."""
    replace = replace or {}
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            key = info.filename[:-4]
            if key in drop:
                continue
            if key in replace:
                with zout.open(info.filename, "w") as fp:
                    np.lib.format.write_array(fp, np.asarray(replace[key]), allow_pickle=False)
                continue
            zout.writestr(info.filename, zin.read(info.filename))
    return dst


def test_the_real_pose_file_loads(real_pose_file):
    assert len(pose_io.load(real_pose_file)) == 303


@pytest.mark.parametrize("missing", [k for k in REQUIRED if k not in ("format_version", "keypoints_2d")])
def test_a_missing_array_is_named_with_what_writes_pose_files(missing, real_pose_file, tmp_path):
    damaged = _without(real_pose_file, tmp_path / f"no_{missing}.npz", {missing})
    with pytest.raises(PipelineError) as e:
        pose_io.load(damaged)
    msg = e.value.message
    assert e.value.code == "bad_input" and isinstance(e.value, ValueError)
    assert f"no_{missing}.npz" in msg and f"'{missing}'" in msg and "array" in msg, msg
    assert "core.pose_io.save" in msg and "--npz" in msg, msg
    assert "\n" not in msg


def test_several_missing_arrays_are_all_named(real_pose_file, tmp_path):
    damaged = _without(real_pose_file, tmp_path / "gutted.npz", {"timestamps", "fps", "detected"})
    with pytest.raises(PipelineError, match=r"'timestamps', 'detected', 'fps' arrays"):
        pose_io.load(damaged)


def test_a_file_that_is_no_pose_file_says_what_writes_them(real_pose_file, tmp_path):
    damaged = _without(real_pose_file, tmp_path / "no_version.npz", {"format_version"})
    with pytest.raises(PipelineError, match=r"no_version\.npz: not an Anime MMD pose file.*--npz"):
        pose_io.load(damaged)


@pytest.mark.parametrize("key, value, expect", [
    ("fps", np.array(["thirty"]), r"fps"),
    ("image_size", np.array([1920]), r"image_size|inconsistent"),
    ("timestamps", np.zeros(5), r"timestamps must be \(303,\)"),
    ("format_version", np.array("one"), r"format_version is not a number"),
])
def test_wrong_arrays_give_a_bad_input_error_naming_the_file(key, value, expect, real_pose_file, tmp_path):
    damaged = _without(real_pose_file, tmp_path / f"bad_{key}.npz", set(), {key: value})
    with pytest.raises(PipelineError, match=expect) as e:
        pose_io.load(damaged)
    assert e.value.code == "bad_input" and f"bad_{key}.npz" in e.value.message
