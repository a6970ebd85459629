"""Bring-your-own keypoints (core.keypoints_io) and the restricted unpickler (core.safe_npz), on the real shared files."""
from __future__ import annotations

import io
import json
import os
import pickle
import zipfile

import numpy as np
import pytest

from core import keypoints_io, pose_io, safe_npz, skeletons
from core.errors import PipelineError


@pytest.fixture(scope="module")
def d2_path(shared_data):
    return shared_data / "keypoints" / "lia_kim_dance" / "detectron2_raw.npz"


@pytest.fixture(scope="module")
def export_path(shared_data):
    return shared_data / "keypoints" / "lia_kim_dance" / "videopose3d_export.npy"


@pytest.fixture(scope="module")
def openpose_dir(shared_data):
    return shared_data / "openpose" / "openmmd_sample_json"


# ------------------------------------------------------------------------------------------------ safe_npz
def _npz_with_pickle(path, name: str, payload: bytes, shape=(1,)) -> None:
    """An .npz whose member ``name`` is an object array with the raw pickle ``payload`` (as np.save would lay out)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|O", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(name + ".npy", buf.getvalue() + payload)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_safe_npz_reads_the_real_detectron2_file(d2_path):
    d = safe_npz.load_npz(d2_path)
    assert set(d) == {"boxes", "segments", "keypoints", "metadata"}
    assert d["boxes"].shape == (303, 2) and d["boxes"].dtype == object
    assert d["metadata"].item() == {"w": 1920, "h": 1080}
    counts = np.array([len(d["boxes"][t][1]) for t in range(303)])
    assert (counts == 0).sum() == 84 and (counts == 1).sum() == 219
    t = int(np.flatnonzero(counts)[0])
    assert d["keypoints"][t][1].shape == (1, 4, 17) and d["keypoints"][t][1].dtype == np.float32
    assert d["boxes"][t][1].shape == (1, 5)


def test_safe_npz_refuses_os_system_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.npz"
    _npz_with_pickle(evil, "boxes", pickle.dumps(np.array([_Evil(marker)], dtype=object), protocol=3))
    with pytest.raises(safe_npz.UnsafePickleError, match=r"refusing to unpickle global (posix|nt|os)\.system"):
        safe_npz.load_npz(evil)
    assert not marker.exists()
    # The same file through load_keypoints: refused, nothing run.
    with pytest.raises(safe_npz.UnsafePickleError):
        keypoints_io.load_keypoints(evil)
    assert not marker.exists()


@pytest.mark.parametrize("payload", [
    b"cbuiltins\neval\n(V__import__('os').getcwd()\ntR.",      # builtins.eval
    b"ccopyreg\n_reconstructor\n(cos\n_Environ\ncbuiltins\nobject\nNtR.",  # arbitrary class construction
    b"\x80\x03Q.",                                               # persistent id
    b"not a pickle at all",
])
def test_restricted_unpickler_refuses_globals_and_garbage(payload):
    with pytest.raises(safe_npz.UnsafePickleError):
        safe_npz.restricted_loads(payload)


def test_restricted_unpickler_keeps_arrays_and_containers():
    obj = {"model": {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}, "__author__": "x", "n": [1, 2.5, (3,)],
           "s": {1, 2}, "scalar": np.float64(2.5)}
    for proto in (2, 3, 4):
        back = safe_npz.restricted_loads(pickle.dumps(obj, protocol=proto))
        assert np.array_equal(back["model"]["w"], obj["model"]["w"]) and back["model"]["w"].dtype == np.float32
        assert back["n"] == [1, 2.5, (3,)] and back["s"] == {1, 2} and back["scalar"] == 2.5


def test_load_pickle_reads_a_detectron2_model_zoo_layout(tmp_path):
    p = tmp_path / "model_final.pkl"
    p.write_bytes(pickle.dumps({"model": {"backbone.w": np.ones((2, 2), np.float32)},
                                "__author__": "Detectron2 Model Zoo"}, protocol=2))
    d = safe_npz.load_pickle(p)
    assert d["__author__"] == "Detectron2 Model Zoo" and d["model"]["backbone.w"].shape == (2, 2)


def test_safe_npz_plain_arrays_and_bad_zip(tmp_path):
    p = tmp_path / "plain.npz"
    a, b = np.arange(12.0).reshape(3, 4), np.asfortranarray(np.arange(6, dtype=np.int16).reshape(2, 3))
    np.savez(p, a=a, b=b)
    d = safe_npz.load_npz(p)
    assert np.array_equal(d["a"], a) and np.array_equal(d["b"], b)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="bad.npz"):
        safe_npz.load_npz(bad)


# ------------------------------------------------------------------------------------------------ (a) detectron2
def test_detectron2_raw_real_file(d2_path):
    poses = keypoints_io.load_keypoints(d2_path)
    raw = safe_npz.load_npz(d2_path)
    assert len(poses) == 303 and poses.image_size == (1920, 1080) and poses.fps == 30.0
    assert poses.joint_names_2d == skeletons.COCO17 and poses.backend == "detectron2"
    assert poses.keypoints_2d.shape == (303, 17, 3)
    empty = np.array([len(raw["boxes"][t][1]) == 0 for t in range(303)])
    assert np.array_equal(~poses.detected, empty)
    assert np.isnan(poses.keypoints_2d[~poses.detected]).all()
    assert np.isfinite(poses.keypoints_2d[poses.detected]).all()
    t = int(np.flatnonzero(poses.detected)[10])
    k = raw["keypoints"][t][1][0]  # rows x, y, logit, prob
    assert np.allclose(poses.keypoints_2d[t, :, 0], k[0]) and np.allclose(poses.keypoints_2d[t, :, 1], k[1])
    assert np.allclose(poses.keypoints_2d[t, :, 2], np.clip(k[3], 0, 1))  # detectron2's score can exceed 1
    c = poses.keypoints_2d[poses.detected, :, 2]
    assert c.min() >= 0 and c.max() <= 1
    assert np.allclose(np.diff(poses.timestamps), 1 / 30)
    # It round-trips through the project's own pose file.
    assert "219 of 303" in poses.notes[0]


def _write_d2(path, frames, w=1280, h=720):
    """A detectron2 raw file in infer_video_d2.py's layout: per frame [[], (N,5)] boxes and [[], (N,4,17)] keypoints."""
    boxes, kps = [], []
    for people in frames:
        if not people:
            boxes.append([[], []])
            kps.append([[], []])
            continue
        b = np.array([p[0] for p in people], dtype=np.float32)
        k = np.array([p[1] for p in people], dtype=np.float32)
        boxes.append([[], b])
        kps.append([[], k])
    bo = np.empty((len(frames), 2), dtype=object)
    ko = np.empty((len(frames), 2), dtype=object)
    for t in range(len(frames)):
        bo[t, 0], bo[t, 1] = boxes[t]
        ko[t, 0], ko[t, 1] = kps[t]
    np.savez_compressed(path, boxes=bo, segments=np.array([None] * len(frames), dtype=object), keypoints=ko,
                        metadata=np.array({"w": w, "h": h}, dtype=object))


def _person(x0, y0, x1, y1, score, tag):
    k = np.zeros((4, 17), np.float32)
    k[0] = np.linspace(x0, x1, 17)
    k[1] = np.linspace(y0, y1, 17)
    k[3] = tag
    return ([x0, y0, x1, y1, score], k)


def test_detectron2_several_people_follows_the_dancer(tmp_path):
    frames = []
    for t in range(40):
        dancer = _person(500 + 3 * t, 100, 700 + 3 * t, 650, 0.95, 0.9)
        bystander = _person(50, 400, 110, 560, 0.99, 0.1)
        if t in (5, 6):
            frames.append([])                      # missed frames
        elif t % 3 == 0:
            frames.append([bystander, dancer])     # order varies
        else:
            frames.append([dancer, bystander] if t > 20 else [dancer])
    p = tmp_path / "multi.npz"
    _write_d2(p, frames)
    poses = keypoints_io.load_keypoints(p, fps=25)
    assert poses.fps == 25 and poses.image_size == (1280, 720)
    assert list(np.flatnonzero(~poses.detected)) == [5, 6]
    assert np.allclose(poses.keypoints_2d[poses.detected, :, 2], 0.9)  # always the dancer's confidences
    assert any("several people" in n for n in poses.notes)


def test_detectron2_file_without_people_is_refused(tmp_path):
    p = tmp_path / "none.npz"
    _write_d2(p, [[], [], []])
    with pytest.raises(keypoints_io.KeypointsFormatError, match="no person"):
        keypoints_io.load_keypoints(p)


# ------------------------------------------------------------------------------------------------ (b) data_2d_custom
def _write_custom(path, videos: dict, layout="coco"):
    meta = {"layout_name": layout, "num_joints": 17,
            "keypoints_symmetry": [[1, 3, 5, 7, 9, 11, 13, 15], [2, 4, 6, 8, 10, 12, 14, 16]],
            "video_metadata": {name: {"w": wh[0], "h": wh[1]} for name, (_, wh) in videos.items()}}
    positions = {name: {"custom": [kp.astype("float32")]} for name, (kp, _) in videos.items()}
    np.savez_compressed(path, positions_2d=positions, metadata=meta)


def test_videopose3d_custom_dataset(tmp_path):
    rng = np.random.default_rng(0)
    kp = rng.uniform(0, 640, (50, 17, 2))
    p = tmp_path / "data_2d_custom_myvideos.npz"
    _write_custom(p, {"dance.mp4": (kp, (640, 480))})
    poses = keypoints_io.load_keypoints(p, fps=50)
    assert len(poses) == 50 and poses.image_size == (640, 480) and poses.backend == "videopose3d-custom"
    assert np.allclose(poses.keypoints_2d[..., :2], kp.astype(np.float32)) and np.all(poses.keypoints_2d[..., 2] == 1)
    assert poses.detected.all() and np.isclose(poses.timestamps[-1], 49 / 50)

    two = tmp_path / "data_2d_custom_two.npz"
    _write_custom(two, {"a.mp4": (kp, (640, 480)), "b.mp4": (kp[:10] + 1, (1920, 1080))})
    with pytest.raises(keypoints_io.KeypointsFormatError, match=r"2 videos \['a.mp4', 'b.mp4'\]"):
        keypoints_io.load_keypoints(two)
    b = keypoints_io.load_keypoints(two, video="b.mp4")
    assert len(b) == 10 and b.image_size == (1920, 1080)
    with pytest.raises(keypoints_io.KeypointsFormatError, match="no video 'c.mp4'"):
        keypoints_io.load_keypoints(two, video="c.mp4")

    h36m = tmp_path / "data_2d_custom_h36m.npz"
    _write_custom(h36m, {"a.mp4": (kp, (640, 480))}, layout="h36m")
    with pytest.raises(keypoints_io.KeypointsFormatError, match="only VideoPose3D's 'coco' layout"):
        keypoints_io.load_keypoints(h36m)


# ------------------------------------------------------------------------------------------------ (c) OpenPose
def test_openpose_real_coco18_folder(openpose_dir):
    poses = keypoints_io.load_keypoints(openpose_dir)
    assert len(poses) == 171 and poses.backend == "openpose" and poses.detected.all()
    first = json.loads((openpose_dir / "test3_000000000000_keypoints.json").read_text())
    last = json.loads((openpose_dir / "test3_000000000170_keypoints.json").read_text())
    for t, doc in ((0, first), (170, last)):
        op = np.asarray(doc["people"][0]["pose_keypoints_2d"]).reshape(18, 3)
        # COCO-18: 0 nose, 5 LShoulder, 2 RShoulder, 13 LAnkle, 15 REye
        assert np.allclose(poses.keypoints_2d[t, skeletons.COCO17.index("nose")], op[0])
        assert np.allclose(poses.keypoints_2d[t, skeletons.COCO17.index("left_shoulder")], op[5])
        assert np.allclose(poses.keypoints_2d[t, skeletons.COCO17.index("right_shoulder")], op[2])
        assert np.allclose(poses.keypoints_2d[t, skeletons.COCO17.index("left_ankle")], op[13])
        assert np.allclose(poses.keypoints_2d[t, skeletons.COCO17.index("right_eye")], op[14])
    # No image size in OpenPose JSON: estimated (documented) and said so; an explicit one is used as given.
    assert poses.image_size == (1920, 1080) and any("estimated" in n for n in poses.notes)
    given = keypoints_io.load_keypoints(openpose_dir, image_size=(1280, 960), fps=24)
    assert given.image_size == (1280, 960) and given.fps == 24
    assert not any("estimated" in n for n in given.notes)


def _body25(x, y, scale=1.0, missing=()):
    a = np.zeros((25, 3))
    a[:, 0] = x + scale * np.arange(25)
    a[:, 1] = y + scale * np.arange(25)
    a[:, 2] = 0.8
    a[list(missing)] = 0.0
    return a.reshape(-1).tolist()


def test_openpose_body25_numeric_order_missing_joints_and_people(tmp_path):
    # File names sort wrongly as text (frame_10 before frame_2): frames must follow the numbers.
    for t in (0, 1, 2, 10, 11):
        people = [{"pose_keypoints_2d": _body25(100 + t, 50, scale=10.0, missing=(15,) if t == 2 else ())}]
        if t == 11:
            people.insert(0, {"pose_keypoints_2d": _body25(900, 600, scale=1.0)})  # a small, far person
        (tmp_path / f"clip_{t}_keypoints.json").write_text(json.dumps({"version": 1.3, "people": people}))
    poses = keypoints_io.load_keypoints(tmp_path, image_size=(1280, 720))
    assert len(poses) == 5
    nose = poses.keypoints_2d[:, skeletons.COCO17.index("nose"), 0]
    assert np.allclose(nose, [100, 101, 102, 110, 111])  # numeric order, and the large person at frame 11
    # BODY-25: 15 is REye -> COCO right_eye; 12 LHip -> left_hip.
    assert np.isnan(poses.keypoints_2d[2, skeletons.COCO17.index("right_eye"), :2]).all()
    assert poses.keypoints_2d[2, skeletons.COCO17.index("right_eye"), 2] == 0
    assert np.allclose(poses.keypoints_2d[0, skeletons.COCO17.index("left_hip"), :2], [100 + 120, 50 + 120])


def test_openpose_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(keypoints_io.KeypointsFormatError, match="no OpenPose"):
        keypoints_io.load_keypoints(empty)
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "x_0_keypoints.json").write_text(json.dumps({"people": [{"pose_keypoints_2d": [1.0] * 45}]}))
    with pytest.raises(keypoints_io.KeypointsFormatError, match="15 keypoints"):
        keypoints_io.load_keypoints(odd)
    single = odd / "x_0_keypoints.json"
    with pytest.raises(keypoints_io.KeypointsFormatError, match="pass the folder"):
        keypoints_io.load_keypoints(single)


def test_estimate_image_size():
    assert keypoints_io.estimate_image_size(np.array([[100.0, 100.0], [630, 350]])) == (640, 360)
    assert keypoints_io.estimate_image_size(np.array([[1043.0, 899.8]])) == (1920, 1080)
    assert keypoints_io.estimate_image_size(np.array([[600.0, 1200.0]])) == (720, 1280)
    assert keypoints_io.estimate_image_size(np.array([[5000.0, 10.0], [np.nan, 1]])) == (5001, 11)
    with pytest.raises(ValueError):
        keypoints_io.estimate_image_size(np.full((3, 2), np.nan))


# ------------------------------------------------------------------------------------------------ (d) 3D export
def test_videopose3d_export_real_file(export_path, tmp_path):
    raw = np.load(export_path, allow_pickle=False)
    poses = keypoints_io.load_keypoints(export_path)
    assert len(poses) == 303 and poses.keypoints_2d.shape == (303, 0, 3) and poses.joint_names_2d == ()
    assert poses.joints_3d.shape == (303, 27, 3) and poses.lifter == "import"
    assert np.isnan(poses.joints_3d[:, 17:]).all() and np.isfinite(poses.joints_3d[:, :17]).all()
    assert np.all(poses.joints_3d[:, 0] == 0)
    assert np.allclose(poses.joints_3d[:, :17], raw - raw[:, :1], atol=1e-6)
    assert poses.trajectory is None  # the export is root-relative (pelvis within 1e-4 m of the origin)
    # Camera frame (y down), metres: the head is above the pelvis, the torso 0.2-0.8 m long.
    head_y = np.median(poses.joints_3d[:, skeletons.H36M17.index("Head"), 1])
    assert head_y < -0.3
    torso = np.linalg.norm(poses.joints_3d[:, skeletons.H36M17.index("Thorax")], axis=1)
    assert 0.2 < np.median(torso) < 0.8
    # A pose file round trip keeps it.
    back = pose_io.load(pose_io.save(tmp_path / "p.npz", poses))
    assert np.allclose(back.joints_3d, poses.joints_3d, equal_nan=True)


def test_videopose3d_export_with_trajectory_and_bad_shapes(tmp_path):
    a = np.zeros((20, 17, 3), np.float32)
    a[:, :, 1] = np.linspace(-0.5, 0.5, 17)
    a += np.linspace([0, 0, 3], [1, 0, 4], 20)[:, None].astype(np.float32)
    p = tmp_path / "with_traj.npy"
    np.save(p, a)
    poses = keypoints_io.load_keypoints(p, fps=50)
    assert np.allclose(poses.trajectory, a[:, 0]) and np.allclose(poses.joints_3d[:, 0], 0)
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((5, 16, 3)))
    with pytest.raises(keypoints_io.KeypointsFormatError, match=r"\(T, 17, 3\)"):
        keypoints_io.load_keypoints(bad)


# ------------------------------------------------------------------------------------------------ dispatcher errors
def test_unknown_content_gives_a_clear_bad_input_error(tmp_path):
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    with pytest.raises(keypoints_io.KeypointsFormatError, match="unrecognised content") as e:
        keypoints_io.load_keypoints(txt)
    assert isinstance(e.value, PipelineError) and e.value.code == "bad_input" and isinstance(e.value, ValueError)
    other = tmp_path / "other.npz"
    np.savez(other, foo=np.zeros(3))
    with pytest.raises(keypoints_io.KeypointsFormatError, match=r"arrays \['foo'\]"):
        keypoints_io.load_keypoints(other)
    with pytest.raises(FileNotFoundError):
        keypoints_io.load_keypoints(tmp_path / "missing.npz")


def test_own_pose_file_points_to_from_npz(export_path, tmp_path):
    p = pose_io.save(tmp_path / "own.npz", keypoints_io.load_keypoints(export_path))
    with pytest.raises(keypoints_io.KeypointsFormatError, match="--from-npz"):
        keypoints_io.load_keypoints(p)
