"""A hostile OpenPose JSON folder is refused with a one-line bad_input error (issue 7, item 4)."""
from __future__ import annotations

import pytest

from core import keypoints_io
from core.errors import PipelineError


def test_deeply_nested_json_is_a_bad_input_error(tmp_path):
    (tmp_path / "a_000000000000_keypoints.json").write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(PipelineError, match=r"a_000000000000_keypoints\.json: not an OpenPose keypoints JSON") as e:
        keypoints_io.load_keypoints(tmp_path)
    assert e.value.code == "bad_input" and "\n" not in e.value.message


@pytest.mark.parametrize("doc", ['{"people": 5}', '{"people": [1]}', '{"people": [{"pose_keypoints_2d": ["a", {}]}]}',
                                 '{"people": [{"pose_keypoints_2d": [[1, 2, 3], [4, 5, 6]]}]}', '[]'])
def test_malformed_people_are_a_bad_input_error(doc, tmp_path):
    (tmp_path / "x_000000000001_keypoints.json").write_text(doc)
    with pytest.raises(PipelineError, match=r"x_000000000001_keypoints\.json") as e:
        keypoints_io.load_keypoints(tmp_path)
    assert e.value.code == "bad_input"


def test_a_folder_larger_than_the_limit_is_refused_before_reading(tmp_path, monkeypatch):
    for i in range(3):
        (tmp_path / f"f_{i:012d}_keypoints.json").write_text('{"people": []}' + " " * 5000)
    monkeypatch.setenv("ANIME_MMD_MAX_INPUT_BYTES", "10000")
    with pytest.raises(PipelineError, match=r"over the limit of 10,000 bytes.*ANIME_MMD_MAX_INPUT_BYTES") as e:
        keypoints_io.load_keypoints(tmp_path)
    assert e.value.code == "bad_input"


def test_the_real_openpose_folder_still_loads(shared_data):
    poses = keypoints_io.load_keypoints(shared_data / "openpose" / "openmmd_sample_json")
    assert len(poses) == 171
