"""tools.lifter_training.mocap on the real shared BVH clips: every skeleton family maps to CANONICAL joints in MMD
axes and units, retargets onto the shared PMX models, and the held-out split is whole clips."""
from __future__ import annotations

import numpy as np
import pytest

from core.formats import pmx
from core.rest_skeleton import RestSkeleton
from core.retarget import rest_joints
from core.skeletons import CANONICAL

mocap = pytest.importorskip("tools.lifter_training.mocap")

J = {n: i for i, n in enumerate(CANONICAL)}
CLIPS = ["bandai_namco_1/dataset-1_bow_active_001.bvh",
         "bandai_namco_2/dataset-2_raise-up-both-hands_active_001.bvh",
         "cmu_iclone/005_02.bvh", "cmu_iclone/002_01.bvh"]


@pytest.fixture(scope="module")
def mocap_dir(shared_data):
    d = shared_data / "mocap"
    if not d.is_dir():
        pytest.skip(f"no mocap data at {d}")
    return d


def _unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


@pytest.mark.parametrize("rel", CLIPS)
def test_clip_is_canonical_in_mmd_axes(mocap_dir, rel):
    path = mocap_dir / rel
    clip = mocap.load_clip(path)
    j = clip.joints
    assert clip.fps == 30 and j.ndim == 3 and j.shape[1:] == (27, 3) and np.all(np.isfinite(j))
    n_file = int(path.read_text().split("Frames:")[1].split()[0])
    expect = (n_file + 1) // 2 if rel.startswith("cmu") else n_file      # CMU is 60 fps, Bandai 30
    assert abs(len(j) - expect) <= 1
    # Units: a human leg (hip -> knee -> ankle) is 0.7-1.1 m, i.e. 8.75-13.75 MMD units; bones are rigid.
    thigh = np.linalg.norm(j[:, J["LKnee"]] - j[:, J["LHip"]], axis=1)
    shin = np.linalg.norm(j[:, J["LFoot"]] - j[:, J["LKnee"]], axis=1)
    assert 8.75 < np.median(thigh + shin) < 13.75
    assert thigh.std() < 1e-6 * thigh.mean() + 1e-4
    # Axes: Y up (head above the hip, feet below) and MMD's handedness: with left = LHip - RHip and up = +Y, the
    # dancer's forward is up x left (the model faces -Z with its left at +X); toes and nose point that way.
    assert np.all(j[:, J["Head"], 1] > j[:, J["Hip"], 1]) and np.all(j[:, J["LFoot"], 1] < j[:, J["Hip"], 1])
    # Checked on upright frames (spine within 25 deg of vertical) and, for toes, with that foot near the floor: a
    # bow tips the nose down and an arabesque points the raised foot backwards.
    fwd = _unit(np.cross(np.array([0.0, 1.0, 0.0]), j[:, J["LHip"]] - j[:, J["RHip"]]))
    upright = _unit(j[:, J["Thorax"]] - j[:, J["Hip"]])[:, 1] > np.cos(np.radians(25))
    assert upright.mean() > 0.3
    for s in "LR":
        low = j[:, J[s + "Foot"], 1] < np.percentile(j[:, J[s + "Foot"], 1], 10) + 0.5
        toe = np.sum((j[:, J[s + "FootIndex"]] - j[:, J[s + "Foot"]]) * fwd, axis=1)[upright & low]
        assert toe.size > 5 and np.mean(toe > 0) > 0.8
    ears = 0.5 * (j[:, J["LEar"]] + j[:, J["REar"]])
    assert np.mean(np.sum((j[:, J["Nose"]] - ears) * fwd, axis=1)[upright] > 0) > 0.9
    # Left is left: the left ear is on the dancer's left.
    assert np.mean(np.sum((j[:, J["LEar"]] - j[:, J["REar"]]) * (j[:, J["LHip"]] - j[:, J["RHip"]]), axis=1) > 0) > 0.9


def test_mirror_swaps_sides_and_is_an_involution(mocap_dir):
    j = mocap.load_clip(mocap_dir / CLIPS[2]).joints
    m = mocap.mirror(j)
    np.testing.assert_allclose(mocap.mirror(m), j)
    np.testing.assert_allclose(m[:, J["LWrist"], 0], -j[:, J["RWrist"], 0])
    np.testing.assert_allclose(m[:, J["LWrist"], 1:], j[:, J["RWrist"], 1:])


@pytest.mark.parametrize("model", ["mat4_trace_model/mat4_v4_trace_model.pmx", "yw_test_model/yw_test_model.pmx",
                                   "fixtures/test_basic_bone.pmx", None])
def test_to_mmd_gives_the_models_own_joints(mocap_dir, shared_data, model):
    rest = RestSkeleton.standard() if model is None else RestSkeleton.from_pmx(pmx.read(shared_data / "pmx" / model))
    clip = mocap.load_clip(mocap_dir / CLIPS[2])
    motion, j = mocap.to_mmd(clip, rest)
    assert j.shape == clip.joints.shape and np.all(np.isfinite(j)) and motion.n_frames == len(j)
    rj = rest_joints(rest)
    # Bone lengths are the model's (the joints come from FK of the model), not the dancer's.
    for a, b in (("LHip", "LKnee"), ("LKnee", "LFoot"), ("LShoulder", "LElbow"), ("Hip", "Thorax")):
        np.testing.assert_allclose(np.linalg.norm(j[:, J[a]] - j[:, J[b]], axis=1),
                                   np.linalg.norm(rj[J[a]] - rj[J[b]]), rtol=1e-6, atol=1e-6 if a != "Hip" else 2.0)
    # Limb directions are the dancer's (hinge retargeting is exact for thigh and shin directions).
    for a, b in (("LHip", "LKnee"), ("LKnee", "LFoot"), ("RElbow", "RWrist")):
        cos = np.sum(_unit(j[:, J[b]] - j[:, J[a]]) * _unit(clip.joints[:, J[b]] - clip.joints[:, J[a]]), axis=1)
        assert np.median(cos) > np.cos(np.radians(5))


def test_split_holds_out_whole_clips_deterministically(mocap_dir):
    s = mocap.split()
    assert s == mocap.split()
    train, test = set(s["train"]), set(s["test"])
    assert not train & test and train | test == set(mocap.all_clips())
    names = [p.parent.name + "/" + p.stem for p in test]
    assert sum(n.startswith("cmu_iclone/005_") for n in names) >= 3
    for ds in ("bandai_namco_1", "bandai_namco_2"):
        assert any(n.startswith(ds) for n in names)
    assert 0.08 < len(test) / (len(test) + len(train)) < 0.3


def test_malformed_bvh_is_a_clear_error(tmp_path):
    p = tmp_path / "bad.bvh"
    p.write_text("HIERARCHY\nROOT Hips\n{\n OFFSET 0 0 0\n CHANNELS 3 Xposition Yposition Zposition\n}\n"
                 "MOTION\nFrames: 2\nFrame Time: 0.0333\n0 0 0\n")
    with pytest.raises(ValueError, match="bad.bvh"):
        mocap.read_bvh(p)
    p.write_text("nothing here")
    with pytest.raises(ValueError, match="MOTION"):
        mocap.read_bvh(p)
