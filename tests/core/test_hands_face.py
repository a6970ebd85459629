"""core.hands_face (fingers, relaxed hands, gates, face morphs), BoneMotion morph keys, pose files with hands / face,
and core.retarget's twist bones (腕捩 / 手捩), on the shared models and real CMU dance motion capture."""
from __future__ import annotations

import numpy as np
import pytest

from core import hands_face as HF
from core import pose_io
from core import quat as Q
from core.formats import vmd
from core.motion import BoneMotion
from core.retarget import retarget





def deg(a, b):
    return np.degrees(Q.angle_between(a, b))


# ------------------------------------------------------------------------------------------------ twist bones

@pytest.mark.parametrize("name", ["mat4", "yw", "builtin"])
def test_twist_bones_take_the_arm_twist_and_keep_fk(model, name, shared_data):
    """Real dance (CMU 05_11): with the twist on 腕捩 / 手捩 every posed elbow, wrist and finger is where the folded keys
    put it (1e-4 units), the hands turn the same, ひじ keeps (almost) no twist and the 捩 bones turn only about their
    axis."""
    mocap = pytest.importorskip("tools.lifter_training.mocap")
    rest = model(name)
    joints = mocap.load_clip(shared_data / "mocap" / "cmu_iclone" / "005_11.bvh").joints
    folded = retarget(joints, rest, twist_bones=False)
    split = retarget(joints, rest)
    assert not any("捩" in n for n in folded.rotations)
    p0, r0 = rest.fk(folded.rotations, folded.locations)
    p1, r1 = rest.fk(split.rotations, split.locations)
    for s in "左右":
        assert {s + "腕捩", s + "手捩"} <= set(split.rotations)
        hand = [rest.find(s + n) for n in ("ひじ", "手首", "人指１", "小指１") if s + n in rest]
        hand += [i for i, n in enumerate(rest.names) if n.startswith(s) and "指" in n]
        assert np.abs(p1[:, hand] - p0[:, hand]).max() < 1e-4
        assert deg(r1[:, rest.find(s + "手首")], r0[:, rest.find(s + "手首")]).max() < 1e-6
        fore = rest.positions[rest.find(s + "手首")] - rest.positions[rest.find(s + "ひじ")]
        upper = rest.positions[rest.find(s + "ひじ")] - rest.positions[rest.find(s + "腕")]
        tw_before = np.degrees(Q.angle(Q.swing_twist(folded.rotations[s + "ひじ"], fore)[1]))
        tw_after = np.degrees(Q.angle(Q.swing_twist(split.rotations[s + "ひじ"], fore)[1]))
        assert tw_before.max() > 20.0              # the dance does twist the forearm
        # ...and ひじ no longer carries it: what is left is the hinge's own component along the forearm, ~0 on a
        # model whose rest arm is straight (mat4, yw), larger at full flexion where the rest arm bends (builtin: 10°)
        assert np.median(tw_after) < 1.5 and tw_after.max() < (3.0 if name != "builtin" else 25.0)
        arm_tw = np.degrees(Q.angle(Q.swing_twist(split.rotations[s + "腕"], upper)[1]))
        assert arm_tw.max() < 1e-3                 # 腕 is a pure swing
        for bone, child in (("腕捩", "ひじ"), ("手捩", "手首")):
            axis = rest.positions[rest.find(s + child)] - rest.positions[rest.find(s + bone)]
            swing, _ = Q.swing_twist(split.rotations[s + bone], axis)
            assert np.degrees(Q.angle(swing)).max() < 1e-4, bone   # rotation about the twist axis only
        for q in split.rotations.values():
            assert np.all(np.sum(q[1:] * q[:-1], axis=-1) >= 0)    # sign-continuous


# ------------------------------------------------------------------------------------------------ fingers

def _landmarks_from_model(rest, side, rot, loc=None):
    """MediaPipe-style 21 landmarks (T, 21, 3) read off the posed model: 手首, then each finger's bones and tip."""
    pos, _ = rest.fk(rot, loc or {})
    order = ["手首", "親指０", "親指１", "親指２", "親指先"]
    for f in ("人指", "中指", "薬指", "小指"):
        order += [f + "１", f + "２", f + "３", f + "先"]
    return np.stack([pos[:, rest.find(side + n)] for n in order], axis=1)


def _finger_truth(rest, side, n, rng):
    """Random finger curls (bend about an axis ⊥ the bone, i.e. observable) for the bones of FINGER_BONES."""
    out = {}
    for name, _a, _b, _p in HF.FINGER_BONES:
        i = rest.find(side + name)
        child = rest.find(side + HF._CHILD[name])
        d = rest.positions[child] - rest.positions[i]
        axis = np.cross(d, rng.normal(size=(n, 3)))
        out[side + name] = Q.from_axis_angle(axis, np.radians(rng.uniform(0, 70, n)))
    return out


@pytest.mark.parametrize("side", ["左", "右"])
def test_finger_keys_come_back_from_the_models_own_hand(model, side):
    """Landmarks read off mat4 posed with known curls (and a hand turned and moved anywhere) give back those keys."""
    rest = model("mat4")
    rng = np.random.default_rng(3)
    n = 60
    truth = _finger_truth(rest, side, n, rng)
    lm = _landmarks_from_model(rest, side, truth)
    # the whole hand turned, scaled and moved: only its shape matters
    g = Q.from_axis_angle(rng.normal(size=(n, 3)), rng.uniform(0, np.pi, n))
    lm = 3.7 * Q.rotate(g[:, None], lm - lm[:, :1]) + rng.normal(size=(n, 1, 3))
    got = HF.finger_rotations(rest, side, lm)
    assert set(got) == set(truth)
    for name, q in truth.items():
        assert deg(got[name], q).max() < 0.5, name


def test_relaxed_pose_curls_toward_the_palm(model):
    rest = model("mat4")
    for side in "左右":
        relaxed = HF.relaxed_rotations(rest, side, 2)
        pos, _ = rest.fk(relaxed)
        _, _, palm = HF._hand_rest(rest, side)
        tip, base = rest.find(side + "人指先"), rest.find(side + "人指１")
        moved = (pos[0, tip] - pos[0, base]) - (rest.positions[tip] - rest.positions[base])
        assert moved @ palm > 0          # the fingertip went to the palm side
        assert 10 < np.degrees(Q.angle(relaxed[side + "人指２"][0])) < 40


# ------------------------------------------------------------------------------------------------ gates

def _px_hand(rest, rng, n, static=False):
    """(n, 2, 21, 3) px hands of the model's own shape near image-space wrists at (300, 200) and (500, 200), a new
    random curl on every frame (or one held, ``static``)."""
    hands = np.empty((n, 2, 21, 3))
    for k, side in enumerate("左右"):
        truth = _finger_truth(rest, side, 1 if static else n, rng)
        lm = _landmarks_from_model(rest, side, {b: np.repeat(q, n // len(q), axis=0) for b, q in truth.items()})
        lm = (lm - lm[:, :1]) * 70.0                      # ~58 px palm (mat4's is 0.83 units)
        lm[..., 1] *= -1                                  # image y down
        lm[..., 2] /= HF.HAND_Z_SCALE                     # the hand model's depth is compressed (HAND_Z_SCALE)
        hands[:, k] = lm + np.array([300.0 + 200 * k, 200.0, 0.0])
    return hands


def _body_2d(n):
    from core.skeletons import MEDIAPIPE33
    kp = np.zeros((n, 33, 3))
    idx = {nm: i for i, nm in enumerate(MEDIAPIPE33)}
    for nm, xy in (("left_shoulder", (350, 100)), ("right_shoulder", (450, 100)), ("left_hip", (360, 400)),
                   ("right_hip", (440, 400)), ("left_wrist", (300, 200)), ("right_wrist", (500, 200)),
                   ("nose", (400, 60))):
        kp[:, idx[nm]] = (*xy, 1.0)
    return kp


def test_hand_gate_refuses_garbage(model):
    rest = model("mat4")
    rng = np.random.default_rng(5)
    n = 12
    hands = _px_hand(rest, rng, n)
    kp = _body_2d(n)
    assert HF.hand_gate(hands, kp).all()
    bad = hands.copy()
    bad[0, 0] = rng.uniform(250, 350, (21, 3))                      # scattered points
    bad[1, 0, 9:] = bad[1, 0, :1]                                   # collapsed fingers
    bad[2, 1] += np.array([300.0, 150.0, 0.0])                      # far from the body's right wrist
    bad[3, 0] = (bad[3, 0] - bad[3, 0, :1]) * 0.05 + bad[3, 0, :1]  # a speck, not a hand
    bad[4, 1, 5] = np.nan                                           # not all landmarks
    ok = HF.hand_gate(bad, kp)
    assert not ok[0, 0] and not ok[1, 0] and not ok[2, 1] and not ok[3, 0] and not ok[4, 1]
    assert ok[5:].all() and ok[0, 1] and ok[2, 0]


def _poses_with(hands=None, face=None, n=None):
    n = n or len(hands if hands is not None else face)
    kp = _body_2d(n).astype(np.float32)
    j3 = np.zeros((n, 27, 3), np.float32)
    return pose_io.PoseSequence(keypoints_2d=kp, timestamps=np.arange(n) / 30.0, frame_indices=np.arange(n),
                                detected=np.ones(n, bool), fps=30.0, image_size=(800, 600),
                                joint_names_2d=__import__("core.skeletons", fromlist=["x"]).MEDIAPIPE33,
                                backend="mediapipe", joints_3d=j3, hands=hands, face=face)


def test_missing_hands_ease_into_the_relaxed_pose_and_never_key_garbage(model):
    """1 s seen, 2 s of garbage, 1 s seen: the middle holds the relaxed pose, the ends follow the hand."""
    rest = model("mat4")
    rng = np.random.default_rng(9)
    n = 120
    hands = _px_hand(rest, rng, n, static=True)
    hands[30:90] = rng.uniform(0, 800, (60, 2, 21, 3))              # what a hand model says of anime hands
    poses = _poses_with(hands=hands.astype(np.float32))
    motion = BoneMotion(frames=np.arange(n), rotations={"頭": Q.identity(n)})
    HF.add_hands_face(motion, poses, rest, type("O", (), {"smoothing": 0.0, "hands": True, "face": True})())
    assert motion.meta["hands_face"]["hand_frames"] == [60, 60]
    relaxed = HF.relaxed_rotations(rest, "左", n)
    true_depth = hands[:, 0] * [1.0, 1.0, HF.HAND_Z_SCALE]
    seen = HF.finger_rotations(rest, "左", np.asarray(HF.conventions.camera_to_mmd(true_depth, 1.0)))
    for name in ("左人指２", "左小指１", "左親指１"):
        q = motion.rotations[name]
        assert deg(q[45:75], relaxed[name][45:75]).max() < 1e-6, name     # the long gap: relaxed, not garbage
        assert deg(q[:25], seen[name][:25]).max() < 0.5, name              # seen frames follow the hand
        assert deg(q[95:], seen[name][95:]).max() < 0.5, name
        assert np.all(np.degrees(Q.angle_between(q[1:], q[:-1])) < 20), name   # eased, no pop


def test_no_usable_hand_keys_the_relaxed_pose(model):
    rest = model("mat4")
    n = 10
    poses = _poses_with(hands=np.full((n, 2, 21, 3), np.nan, np.float32))
    motion = HF.add_hands_face(BoneMotion(frames=np.arange(n)), poses, rest)
    relaxed = HF.relaxed_rotations(rest, "右", n)
    assert deg(motion.rotations["右中指２"], relaxed["右中指２"]).max() < 1e-6


# ------------------------------------------------------------------------------------------------ face

def _face(n, rng):
    """A frontal face of ~100 px in FACE_POINTS order, eyes open and mouth closed, slight noise."""
    P = {"nose_tip": (0, 0), "forehead": (0, -60), "chin": (0, 55), "cheek_right": (-50, 0), "cheek_left": (50, 0),
         "right_eye_outer": (-35, -20), "right_eye_inner": (-10, -20), "right_eye_upper1": (-28, -24),
         "right_eye_upper2": (-17, -24), "right_eye_lower1": (-28, -16), "right_eye_lower2": (-17, -16),
         "left_eye_outer": (35, -20), "left_eye_inner": (10, -20), "left_eye_upper1": (28, -24),
         "left_eye_upper2": (17, -24), "left_eye_lower1": (28, -16), "left_eye_lower2": (17, -16),
         "mouth_right": (-20, 30), "mouth_left": (20, 30), "lip_upper_inner": (0, 29), "lip_lower_inner": (0, 31),
         "lip_upper_outer": (0, 26), "lip_lower_outer": (0, 35)}
    f = np.array([[*P[k], 0.0] for k in HF.FACE_POINTS], float) + [400.0, 60.0, 0.0]
    return np.tile(f, (n, 1, 1)) + rng.normal(0, 0.2, (n, len(HF.FACE_POINTS), 3))


def test_face_morphs():
    rng = np.random.default_rng(1)
    f = _face(40, rng)
    F = {k: i for i, k in enumerate(HF.FACE_POINTS)}
    for s in ("left", "right"):                      # frames 10-12: both eyes shut
        for k in ("upper1", "upper2", "lower1", "lower2"):
            f[10:13, F[f"{s}_eye_{k}"], 1] = f[10:13, F[f"{s}_eye_outer"], 1]
    for k in ("upper1", "upper2", "lower1", "lower2"):  # frames 20-22: the left eye only
        f[20:23, F[f"left_eye_{k}"], 1] = f[20:23, F["left_eye_outer"], 1]
    f[30:33, F["lip_lower_inner"], 1] += 20          # mouth open
    f[34:36, F["mouth_left"], 0] += 8                # wide
    f[34:36, F["mouth_right"], 0] -= 8
    assert HF.face_gate(f).all()
    w = HF.face_morphs(f)
    assert set(w) == set(HF.MORPHS)
    assert (w["まばたき"][10:13] > 0.9).all() and (w["まばたき"][:10] < 0.1).all()
    assert (w["ウィンク"][20:23] > 0.9).all() and (w["ウィンク右"][20:23] < 0.1).all()
    assert (w["まばたき"][20:23] < 0.1).all()
    assert (w["あ"][30:33] > 0.5).all() and (w["あ"][:10] < 0.1).all()
    assert (w["い"][34:36] > 0.9).all() and (w["う"][34:36] < 0.1).all()
    f[5, F["mouth_left"]] = f[5, F["cheek_left"]] + 400     # a mouth outside the face: refused
    assert not HF.face_gate(f)[5]


# ------------------------------------------------------------------------------------------------ files

def test_morph_keys_round_trip_through_vmd():
    n = 50
    w = np.zeros(n)
    w[10:14] = [0.3, 1.0, 1.0, 0.2]
    m = BoneMotion(frames=np.arange(n) * 2, rotations={"頭": Q.identity(n)}, morphs={"まばたき": w, "あ": np.ones(n)})
    v = m.to_vmd("m")
    assert len(v.morph_keys) < 2 * n                 # constant runs: only their ends
    back = BoneMotion.from_vmd(vmd.loads(vmd.dumps(v)))
    assert set(back.morphs) == {"まばたき", "あ"}
    np.testing.assert_allclose(back.morphs["まばたき"], w, atol=1e-6)
    np.testing.assert_allclose(back.morphs["あ"], 1.0)
    with pytest.raises(ValueError):
        BoneMotion(frames=np.arange(3), morphs={"あ": np.ones(4)})


def test_pose_file_keeps_hands_and_face_and_older_files_load(tmp_path, model):
    rest = model("mat4")
    rng = np.random.default_rng(2)
    poses = _poses_with(hands=_px_hand(rest, rng, 6).astype(np.float32), face=_face(6, rng).astype(np.float32))
    p = pose_io.save(tmp_path / "p.npz", poses)
    back = pose_io.load(p)
    np.testing.assert_array_equal(back.hands, poses.hands)
    np.testing.assert_array_equal(back.face, poses.face)
    plain = _poses_with(face=None, hands=None, n=6)
    back = pose_io.load(pose_io.save(tmp_path / "q.npz", plain))
    assert back.hands is None and back.face is None
    with pytest.raises(ValueError):
        _poses_with(hands=np.zeros((6, 2, 20, 3)))


# ------------------------------------------------------------------------------------------------ motion stage

def test_motion_stage_keys_fingers_from_the_pose_file_and_obeys_the_switches(model, shared_data):
    """Real dance (CMU 05_11 through estimate-like noise) with a pose file holding hands: the motion stage keys the
    fingers and the 捩 bones; --no-hands and --no-twist-bones take them away; the body keys stay finite."""
    import mocap_poses as MP

    from core.motion_stage import motion_stage
    from core.options import EstimateOptions

    rest = model("mat4")
    base = MP.estimate(MP.truth(shared_data))
    n = len(base)
    rng = np.random.default_rng(4)
    hands = _px_hand(rest, rng, n, static=True).astype(np.float32)
    poses = pose_io.PoseSequence(**{**base.__dict__, "hands": hands, "keypoints_2d": base.keypoints_2d})
    full = motion_stage(poses, rest, EstimateOptions(from_npz="x"))
    fingers = [k for k in full.rotations if "指" in k]
    assert len(fingers) == 30 and {"左腕捩", "右手捩"} <= set(full.rotations)
    # the hand points of a test sequence have no body wrists in MEDIAPIPE33 terms: the gate is the hand's own
    assert full.meta["hands_face"]["hand_frames"] == [n, n]
    plain = motion_stage(poses, rest, EstimateOptions(from_npz="x", hands=False, twist_bones=False))
    assert not any("指" in k or "捩" in k for k in plain.rotations)
    for q in full.rotations.values():
        assert np.isfinite(q).all()
