"""core.retarget and core.motion: known poses of real models come back as the same bone rotations.

Method: pose the target model itself with known keys (``RestSkeleton.fk``), read the CANONICAL joints off the posed
skeleton (``joints_from_pose``: Hip = midpoint of 左足/右足, shoulders = 腕, ... ), retarget, and compare.

What the 27 joints determine (and so what is asserted to < 1°):

* fully: the world rotations of 頭 (ears + nose), 腕 / 足 (the elbow / knee bend plane, once bent past
  ``HINGE_BLEND_DEG``), ひじ / ひざ (hinge + residual; ひじ's twist from the hand), 手首 (hand points), 足首 (toe
  + heel), the chest (上半身2; on mat4 the 上半身3 that inherits 0.4 of it carries neck and shoulders, so that is the
  rigid chest frame), 首 (its direction; it is keyed without twist).
* up to a rotation about one axis: 下半身 (only the hip line is seen: Hip, LHip, RHip are collinear; its pitch is
  taken from the lumbar direction) and 上半身 (its direction Hip -> Spine is seen; the twist about it is a fixed
  share of the hip-to-shoulder twist). 肩 and 首 twist are unobservable (keyed without twist).

So the generator poses the model within those conventions where it must (pelvis and lumbar turning together, 肩 at
rest, 首 a swing, ひじ / ひざ hinges, the wrist without twist about the forearm) and otherwise at random; a second
test frees the pelvis and shrugs the shoulders and checks what stays determined.
"""
from __future__ import annotations

import numpy as np
import pytest

from core import quat as Q
from core.motion import BoneMotion
from core.rest_skeleton import RestSkeleton
from core.retarget import (HINGE_BLEND_DEG, KEYED_BONES, joints_from_pose, match_widths, rest_joints, retarget,
                           virtual_joints)
from core.skeletons import CANONICAL, CANONICAL_EXTRAS

J = {n: i for i, n in enumerate(CANONICAL)}
FORWARD = np.array([0.0, 0.0, -1.0])




# ---------------------------------------------------------------------------------------------------- generators


def _axes(rng, n):
    a = rng.normal(size=(n, 3))
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def _rand_rot(rng, n, max_deg):
    return Q.from_axis_angle(_axes(rng, n), np.radians(rng.uniform(0, max_deg, n)))


def _swing(rng, n, d, max_deg):
    """Rotations about random axes ⊥ d (no twist about d)."""
    return Q.from_axis_angle(np.cross(_axes(rng, n), d), np.radians(rng.uniform(0, max_deg, n)))


def _hinge_axis(rest, upper, lower, flex):
    d1 = rest.positions[rest.find(lower)] - rest.positions[rest.find(upper)]
    h = np.cross(d1, flex)
    return h / np.linalg.norm(h)


def random_pose(rest, n, rng, *, free_pelvis=False, shrug=False):
    """Known local keys (name -> (n, 4)) and センター translations; see the module docstring."""
    p, f = rest.positions, rest.find
    q = {}
    torso = _rand_rot(rng, n, 30)
    q["下半身"] = _rand_rot(rng, n, 30) if free_pelvis else torso
    q["上半身"] = torso
    if "上半身2" in rest:
        q["上半身2"] = _swing(rng, n, p[f("首")] - p[f("上半身2")], 25)
    q["首"] = _swing(rng, n, p[f("頭")] - p[f("首")], 25)
    q["頭"] = _rand_rot(rng, n, 35)
    for s in "左右":
        if shrug and s + "肩" in rest:
            q[s + "肩"] = _swing(rng, n, p[f(s + "腕")] - p[f(s + "肩")], 15)
        d2 = p[f(s + "手首")] - p[f(s + "ひじ")]
        q[s + "腕"] = _rand_rot(rng, n, 60)
        q[s + "ひじ"] = Q.multiply(
            Q.from_axis_angle(np.tile(_hinge_axis(rest, s + "腕", s + "ひじ", FORWARD), (n, 1)),
                              np.radians(rng.uniform(40, 120, n))),
            Q.from_axis_angle(np.tile(d2, (n, 1)), np.radians(rng.uniform(-50, 50, n))))
        q[s + "手首"] = _swing(rng, n, d2, 40)
        q[s + "足"] = _rand_rot(rng, n, 40)
        q[s + "ひざ"] = Q.from_axis_angle(np.tile(_hinge_axis(rest, s + "足", s + "ひざ", -FORWARD), (n, 1)),
                                         np.radians(rng.uniform(40, 110, n)))
        q[s + "足首"] = _rand_rot(rng, n, 25)
    return q, {"センター": rng.normal(size=(n, 3)) * [3.0, 1.0, 3.0]}


def smooth_pose(rest, n, rng, fps=30.0):
    """Slow dance-like motion: every angle a sum of sinusoids (0.05-0.4 Hz); elbows and knees pass through straight."""
    p, f = rest.positions, rest.find
    t = np.arange(n) / fps

    def wave(amp):
        out = sum(rng.uniform(0.3, 1) * np.sin(2 * np.pi * rng.uniform(0.05, 0.4) * t + rng.uniform(0, 2 * np.pi))
                  for _ in range(3))
        return amp * out / 3

    def rot(max_deg):
        ax = np.stack([wave(1) + rng.normal() for _ in range(3)], 1)
        return Q.from_axis_angle(ax, np.radians(1.5 * wave(max_deg)))
    q = {"下半身": rot(30), "上半身": rot(30), "首": rot(20), "頭": rot(30)}
    if "上半身2" in rest:
        q["上半身2"] = rot(20)
    for s in "左右":
        d2 = p[f(s + "手首")] - p[f(s + "ひじ")]
        q[s + "腕"] = rot(90)
        q[s + "ひじ"] = Q.multiply(
            Q.from_axis_angle(np.tile(_hinge_axis(rest, s + "腕", s + "ひじ", FORWARD), (n, 1)),
                              np.radians(np.clip(50 + wave(150), 0, 130))),
            Q.from_axis_angle(np.tile(d2, (n, 1)), np.radians(wave(60))))
        q[s + "手首"] = rot(30)
        q[s + "足"] = rot(50)
        q[s + "ひざ"] = Q.from_axis_angle(np.tile(_hinge_axis(rest, s + "足", s + "ひざ", -FORWARD), (n, 1)),
                                         np.radians(np.clip(30 + wave(120), 0, 120)))
        q[s + "足首"] = rot(25)
    return q, {"センター": np.stack([wave(5), wave(1), wave(5)], 1)}


def deg(a, b):
    return np.degrees(Q.angle_between(a, b))


def angle_deg(u, v):
    """Angle between vectors, degrees (atan2 form: accurate near 0)."""
    return np.degrees(np.arctan2(np.linalg.norm(np.cross(u, v), axis=-1), np.sum(u * v, -1)))


def check_leg_ik(rest, motion, wpos, wrot):
    """足ＩＫ keys reproduce the FK ankle (and つま先ＩＫ the FK toe) on every frame (docs/MMD_FACTS.md §2.5, 5.3)."""
    for s in "左右":
        ik, ankle = rest.find(s + "足ＩＫ"), rest.find(s + "足首")
        assert np.abs(wpos[:, ik] - wpos[:, ankle]).max() < 1e-9
        par = rest.parents[ik]
        if par < 0:   # a root IK bone: the key is simply ankle - rest IK position
            assert np.allclose(motion.locations[s + "足ＩＫ"], wpos[:, ankle] - rest.positions[ik], atol=1e-9)
        assert deg(wrot[:, ik], wrot[:, ankle]).max() < 1e-6
        toe_ik, toe = rest.index_of(s + "つま先ＩＫ"), rest.index_of(s + "つま先")
        if toe_ik is not None and toe is not None:
            assert np.abs(wpos[:, toe_ik] - wpos[:, toe]).max() < 1e-3   # rest positions agree to ~1e-3 in yw


# ---------------------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("name", ["builtin", "mat4", "yw", "basic"])
def test_rest_pose_gives_identity(model, name):
    rest = model(name)
    m = retarget(np.tile(rest_joints(rest), (4, 1, 1)), rest, fit_scale=False, ground=False, center_start=False)
    assert set(m.rotations) == {b for b in KEYED_BONES if b in rest and b != "センター"}
    for n, q in m.rotations.items():
        assert deg(q, Q.identity(4)).max() < 1e-5, n
    for n, t in m.locations.items():
        assert np.abs(t).max() < 1e-4, n           # yw's 足ＩＫ rests 1e-5 off its ankle


@pytest.mark.parametrize("name", ["builtin", "mat4", "yw", "basic"])
def test_known_pose_comes_back(model, name):
    rest = model(name)
    rng = np.random.default_rng(7)
    q_true, loc = random_pose(rest, 150, rng)
    pos, wrot = rest.fk(q_true, loc)
    joints = joints_from_pose(rest, pos, wrot)
    # twists folded into 腕 / ひじ (random_pose keys no 捩 bone); the 腕捩 / 手捩 split is tested in test_hands_face.py
    m = retarget(joints, rest, fit_scale=False, ground=False, center_start=False, twist_bones=False)
    assert "センター" not in m.rotations and not any("捩" in n for n in m.bone_names)
    pos2, wrot2 = rest.fk(m.rotations, m.locations)
    f = rest.find
    chest = int(rest.parents[f("首")])     # 上半身2, mat4's 上半身3, or 上半身 (basic)
    world_exact = [chest, f("首"), f("頭")] + [f(s + n) for s in "左右" for n in
                                              ("肩", "腕", "ひじ", "手首", "足", "ひざ", "足首") if s + n in rest]
    for i in world_exact:
        assert deg(wrot2[:, i], wrot[:, i]).max() < 1.0, rest.names[i]
    local_exact = ["頭"] + [s + n for s in "左右" for n in ("腕", "ひじ", "手首", "足", "ひざ", "足首")]
    for n in local_exact:
        assert deg(m.rotations[n], q_true[n]).max() < 1.0, n
    # 下半身: the hip line exactly; the rest within the pelvis-pitch convention
    lo = f("下半身")
    assert angle_deg(Q.rotate(wrot2[:, lo], [1.0, 0, 0]), Q.rotate(wrot[:, lo], [1.0, 0, 0])).max() < 1e-6
    assert deg(wrot2[:, lo], wrot[:, lo]).max() < 1.0
    # 上半身: its direction (Hip -> Spine, or Hip -> Thorax without 上半身2)
    top = "Spine" if "上半身2" in rest else "Thorax"
    rj = rest_joints(rest)
    d_r = rj[J[top]] - rj[J["Hip"]]
    up = f("上半身")
    assert angle_deg(Q.rotate(wrot2[:, up], d_r), joints[:, J[top]] - joints[:, J["Hip"]]).max() < 1.0
    # every joint lands where it was (4 mm: the pelvis-pitch and 上半身 twist conventions move the torso slightly)
    back = joints_from_pose(rest, pos2, wrot2)
    assert np.abs(back - joints).max() < 0.05
    # legs exactly (センター puts the hip point on the dancer's)
    legs = [J[n] for n in ("Hip", "LHip", "RHip", "LKnee", "RKnee", "LFoot", "RFoot", "LFootIndex", "RHeel")]
    assert np.abs(back[:, legs] - joints[:, legs]).max() < 1e-9
    check_leg_ik(rest, m, pos2, wrot2)


@pytest.mark.parametrize("name", ["builtin", "mat4"])
def test_free_pelvis_and_shrugs(model, name):
    """Pelvis independent of the lumbar and shrugged shoulders: limbs and head stay exact in world terms, the hip
    line stays exact, and the legs land exactly (センター absorbs the pelvis-pitch ambiguity)."""
    rest = model(name)
    rng = np.random.default_rng(8)
    q_true, loc = random_pose(rest, 150, rng, free_pelvis=True, shrug=True)
    pos, wrot = rest.fk(q_true, loc)
    joints = joints_from_pose(rest, pos, wrot)
    m = retarget(joints, rest, fit_scale=False, ground=False, center_start=False,
                 twist_bones=False)  # 腕 world = the truth: twists folded (the 捩 split: test_hands_face.py)
    pos2, wrot2 = rest.fk(m.rotations, m.locations)
    for n in ["頭"] + [s + b for s in "左右" for b in ("腕", "ひじ", "手首", "足", "ひざ", "足首")]:
        i = rest.find(n)
        assert deg(wrot2[:, i], wrot[:, i]).max() < 1.0, n
    lo = rest.find("下半身")
    assert angle_deg(Q.rotate(wrot2[:, lo], [1.0, 0, 0]), Q.rotate(wrot[:, lo], [1.0, 0, 0])).max() < 1e-6
    back = joints_from_pose(rest, pos2, wrot2)
    legs = [J[n] for n in ("Hip", "LHip", "RHip", "LKnee", "RKnee", "LFoot", "RFoot")]
    assert np.abs(back[:, legs] - joints[:, legs]).max() < 1e-9
    # shoulders: the direction of each 肩 is reproduced to within a few degrees (its pivot rides on the chest,
    # whose twist the shrugs disturb)
    for s, tag in (("左", "L"), ("右", "R")):
        i = rest.find(s + "肩")
        d_r = rest.positions[rest.find(s + "腕")] - rest.positions[i]
        assert angle_deg(Q.rotate(wrot2[:, i], d_r), Q.rotate(wrot[:, i], d_r)).max() < 10.0
    check_leg_ik(rest, m, pos2, wrot2)


def test_global_rotation_only_changes_the_root_chain(model):
    rest = model("mat4")
    rng = np.random.default_rng(9)
    q_true, loc = random_pose(rest, 60, rng)
    joints = joints_from_pose(rest, *rest.fk(q_true, loc))
    turn = Q.from_axis_angle([0.3, 1.0, -0.2], np.radians(130.0))
    turned = Q.rotate(turn, joints)
    kw = dict(fit_scale=True, ground=False, center_start=False)
    a, b = retarget(joints, rest, **kw), retarget(turned, rest, **kw)
    root_chain = {"下半身", "上半身", "左足ＩＫ", "右足ＩＫ"}
    for n in a.rotations:
        if n in root_chain:
            assert deg(b.rotations[n], Q.multiply(turn, a.rotations[n])).max() < 1e-6, n
        else:
            assert deg(b.rotations[n], a.rotations[n]).max() < 1e-6, n
    assert a.meta["scale"] == pytest.approx(b.meta["scale"])
    # the root translations follow: the model's FK ankles are the turned ones
    pa, _ = rest.fk(a.rotations, a.locations, bones=["左足首", "右足首", "頭"])
    pb, _ = rest.fk(b.rotations, b.locations, bones=["左足首", "右足首", "頭"])
    assert np.abs(pb - Q.rotate(turn, pa)).max() < 1e-9


def test_scale_ground_and_start_are_translation_only(model):
    """Scaling and moving the dancer changes no rotation; ground / start / scale undo it; a jump survives."""
    rest = model("builtin")
    rng = np.random.default_rng(10)
    q_true, loc = random_pose(rest, 80, rng)
    joints = joints_from_pose(rest, *rest.fk(q_true, loc))
    moved = joints * 0.5 + [10.0, -3.0, 4.0]
    a, b = retarget(joints, rest), retarget(moved, rest)
    assert b.meta["scale"] == pytest.approx(2.0 * a.meta["scale"]) and a.meta["scale"] == pytest.approx(1.0)
    for n in a.rotations:
        assert deg(a.rotations[n], b.rotations[n]).max() < 1e-6
    for n in a.locations:
        assert np.abs(a.locations[n] - b.locations[n]).max() < 1e-9, n
    assert np.allclose(a.locations["センター"][0, [0, 2]], 0.0)            # starts at the origin
    # feet on the floor: the low percentile of the lower ankle sits at the model's rest ankle height
    pos, _ = rest.fk(a.rotations, a.locations, bones=["左足首", "右足首"])
    low = pos[..., 1].min(axis=1)
    assert np.percentile(low, 5) == pytest.approx(rest.positions[rest.find("左足首"), 1], abs=1e-9)
    # a jump of 5 units on frames 30-39 is kept, not pressed into the floor
    jump = joints.copy()
    jump[30:40, :, 1] += 5.0
    c = retarget(jump, rest)
    dy = c.locations["センター"][:, 1] - a.locations["センター"][:, 1]
    assert np.allclose(dy[30:40], 5.0) and np.allclose(np.delete(dy, range(30, 40)), 0.0)


def test_nan_extras(model):
    """Without toes, heels, hands and ears the keys stay finite; what the core joints fix is still exact."""
    rest = model("mat4")
    rng = np.random.default_rng(11)
    q_true, loc = random_pose(rest, 100, rng)
    n = 100
    for s in "左右":    # no forearm twist: without hand points it cannot be seen
        q_true[s + "ひじ"] = Q.from_axis_angle(np.tile(_hinge_axis(rest, s + "腕", s + "ひじ", FORWARD), (n, 1)),
                                              np.radians(rng.uniform(40, 120, n)))
    pos, wrot = rest.fk(q_true, loc)
    joints = joints_from_pose(rest, pos, wrot)
    full = retarget(joints, rest, fit_scale=False, ground=False, center_start=False, twist_bones=False)
    bare = joints.copy()
    bare[:, 17:] = np.nan
    m = retarget(bare, rest, fit_scale=False, ground=False, center_start=False, twist_bones=False)  # folded twists
    for v in list(m.rotations.values()) + list(m.locations.values()):
        assert np.all(np.isfinite(v))
    pos2, wrot2 = rest.fk(m.rotations, m.locations)
    for name in [s + b for s in "左右" for b in ("腕", "ひじ", "足", "ひざ")]:
        i = rest.find(name)
        assert deg(wrot2[:, i], wrot[:, i]).max() < 1.0, name
    for s in "左右":   # hands and feet fall back to the forearm / shin
        assert deg(m.rotations[s + "手首"], Q.identity(n)).max() < 1e-9
        assert deg(m.rotations[s + "足首"], Q.identity(n)).max() < 1e-9
    # the head still faces the right way: Nose -> Head is reproduced, and the neck direction too
    back = joints_from_pose(rest, pos2, wrot2)
    assert angle_deg(back[:, J["Head"]] - back[:, J["Nose"]], joints[:, J["Head"]] - joints[:, J["Nose"]]).max() \
        < 1e-6
    # extras missing on some frames only: those frames fall back, the others are exactly the full result
    part = joints.copy()
    gone = np.zeros(n, bool)
    gone[::3] = True
    part[gone, 17:] = np.nan
    mp = retarget(part, rest, fit_scale=False, ground=False, center_start=False, twist_bones=False)
    for name in full.rotations:
        assert deg(mp.rotations[name][~gone], full.rotations[name][~gone]).max() < 1e-6, name
        assert deg(mp.rotations[name][gone], m.rotations[name][gone]).max() < 1e-6, name
    # one extra missing: a toe without heel still aims the foot at the toe
    toe_only = joints.copy()
    toe_only[:, J["LHeel"]] = np.nan
    mt = retarget(toe_only, rest, fit_scale=False, ground=False, center_start=False)
    pt, wt = rest.fk(mt.rotations, mt.locations)
    bt = joints_from_pose(rest, pt, wt)
    assert angle_deg(bt[:, J["LFootIndex"]] - bt[:, J["LFoot"]],
                     joints[:, J["LFootIndex"]] - joints[:, J["LFoot"]]).max() < 1e-6


def test_sign_continuity_and_no_flips_over_a_long_sequence(model):
    """3,000 frames (100 s) of smooth motion whose elbows and knees straighten and bend again, while the dancer
    spins twice about the vertical (so the root chain's rotations pass through 180°, where a sign flip would occur)."""
    rest = model("builtin")
    rng = np.random.default_rng(12)
    n = 3000
    q_true, loc = smooth_pose(rest, n, rng)
    spin = Q.from_axis_angle(np.tile([0, 1.0, 0], (n, 1)), np.linspace(0, 4 * np.pi, n))
    for name in ("下半身", "上半身"):
        q_true[name] = Q.multiply(spin, q_true[name])
    pos, wrot = rest.fk(q_true, loc)
    joints = joints_from_pose(rest, pos, wrot)
    assert np.any(Q.angle(q_true["下半身"]) > np.radians(179))
    lo_deg = HINGE_BLEND_DEG[0]
    d1 = joints[:, J["LElbow"]] - joints[:, J["LShoulder"]]
    d2 = joints[:, J["LWrist"]] - joints[:, J["LElbow"]]
    assert (angle_deg(d1, d2) < lo_deg).mean() > 0.05      # the sequence does pass through straight arms
    m = retarget(joints, rest, twist_bones=False)  # 腕 world = the truth: twists folded (the 捩 split: test_hands_face.py)
    true_step = max(deg(q[1:], q[:-1]).max() for q in q_true.values())
    for n, q in m.rotations.items():
        assert np.all(np.sum(q[1:] * q[:-1], axis=-1) >= 0), n
        # no flips: a key never jumps by more than 3x the fastest true joint motion per frame
        assert deg(q[1:], q[:-1]).max() < 3 * true_step, n
    pos2, wrot2 = rest.fk(m.rotations, m.locations)
    check_leg_ik(rest, m, pos2, wrot2)
    # where the limbs are clearly bent everything is exact
    bend = angle_deg(d1, d2) > HINGE_BLEND_DEG[1]
    i = rest.find("左腕")
    assert deg(wrot2[bend, i], wrot[bend, i]).max() < 1.0


def test_real_videopose3d_dance_on_mat4(model, shared_data):
    """Real VideoPose3D output (lia_kim_dance, 303 frames, H36M-17, camera metres) onto mat4 and the built-in."""
    from core.conventions import camera_to_mmd
    from core.formats import vmd
    from core.skeletons import h36m17_to_canonical
    raw = np.load(shared_data / "keypoints/lia_kim_dance/videopose3d_export.npy", allow_pickle=False)
    joints = h36m17_to_canonical(camera_to_mmd(raw.astype(np.float64)))
    for name in ("mat4", "builtin"):
        rest = model(name)
        m = retarget(joints, rest)
        assert m.n_frames == len(raw) and 0.5 < m.meta["scale"] < 2.0
        for v in list(m.rotations.values()) + list(m.locations.values()):
            assert np.all(np.isfinite(v))
        pos, wrot = rest.fk(m.rotations, m.locations)
        back = joints_from_pose(rest, pos, wrot)
        aimed = match_widths(joints * m.meta["scale"], rest)  # limbs are aimed from the model's hip/shoulder width
        # every limb segment and the head's Nose -> Head and the chest's Spine -> Thorax point the dancer's way
        for a, b in (("LShoulder", "LElbow"), ("LElbow", "LWrist"), ("RShoulder", "RElbow"), ("RElbow", "RWrist"),
                     ("LHip", "LKnee"), ("LKnee", "LFoot"), ("RHip", "RKnee"), ("RKnee", "RFoot"),
                     ("Nose", "Head"), ("Spine", "Thorax")):
            err = angle_deg(back[:, J[b]] - back[:, J[a]], aimed[:, J[b]] - aimed[:, J[a]])
            assert err.max() < 1e-3, (name, a, b)
        hips = angle_deg(back[:, J["LHip"]] - back[:, J["RHip"]], joints[:, J["LHip"]] - joints[:, J["RHip"]])
        assert hips.max() < 1e-6
        check_leg_ik(rest, m, pos, wrot)
    # VMD round trip of the real result
    v = m.to_vmd()
    assert len(v.bone_keys) == m.n_frames * len(m.bone_names)
    back_motion = BoneMotion.from_vmd(vmd.loads(vmd.dumps(v)))
    assert set(back_motion.bone_names) == set(m.bone_names)
    for n in m.rotations:
        assert deg(back_motion.rotations[n], m.rotations[n]).max() < 0.01       # float32 on disk
    for n in m.locations:
        assert np.abs(back_motion.locations[n] - m.locations[n]).max() < 1e-4


def test_virtual_joints_use_the_models_bones(model):
    mat4 = model("mat4")
    v = virtual_joints(mat4)
    assert set(v) == set(CANONICAL)
    bone, off = v["LHeel"]
    assert mat4.names[bone] == "左足首"
    assert np.allclose(mat4.positions[bone] + off, mat4.positions[mat4.find("左かかと")])
    rj = rest_joints(mat4)
    assert np.allclose(rj[J["LHandIndex"]], mat4.positions[mat4.find("左人指１")])
    assert np.allclose(rj[J["Hip"]], 0.5 * (mat4.positions[mat4.find("左足")] + mat4.positions[mat4.find("右足")]))
    assert rj[J["LEar"], 0] > 0 > rj[J["REar"], 0] and rj[J["Nose"], 2] < rj[J["LEar"], 2]   # faces -Z, left +X
    assert len(CANONICAL_EXTRAS) == 10


def test_errors(model):
    rest = model("builtin")
    good = np.tile(rest_joints(rest), (3, 1, 1))
    with pytest.raises(ValueError, match="27"):
        retarget(good[:, :17], rest)
    with pytest.raises(ValueError, match="27"):
        retarget(good[0], rest)
    bad = good.copy()
    bad[1, J["LKnee"], 0] = np.nan
    with pytest.raises(ValueError, match="LKnee"):
        retarget(bad, rest)
    bad = good.copy()
    bad[0, 20, 1] = np.inf
    with pytest.raises(ValueError, match="inf"):
        retarget(bad, rest)
    with pytest.raises(ValueError, match="frames"):
        retarget(good, rest, frames=[0, 1])
    with pytest.raises(ValueError, match="increasing"):
        retarget(good, rest, frames=[0, 2, 1])
    tiny = RestSkeleton(names=["センター", "上半身"], positions=np.zeros((2, 3)), parents=[-1, 0])
    with pytest.raises(ValueError, match="lacks"):
        retarget(good, tiny)
    with pytest.raises(ValueError, match="joints_from_pose"):
        joints_from_pose(rest, np.zeros((2, 3, 3)), np.zeros((2, 3, 4)))


def test_bone_motion_checks_and_vmd(tmp_path):
    t = 5
    rot = {"頭": Q.from_axis_angle(np.tile([0, 1.0, 0], (t, 1)), np.linspace(0, 3, t)) * [[1], [-1], [1], [-1], [1]]}
    loc = {"センター": np.arange(15.0).reshape(t, 3)}
    m = BoneMotion(frames=np.arange(t) * 2, rotations=rot, locations=loc, model_name="テスト")
    assert m.bone_names == ["頭", "センター"] and m.n_frames == t
    v = m.to_vmd()
    from core.formats import vmd
    path = vmd.write(tmp_path / "m.vmd", v)
    with pytest.raises(FileExistsError):
        vmd.write(path, v)
    back = BoneMotion.from_vmd(vmd.read(path))
    assert back.model_name == "テスト" and np.array_equal(back.frames, m.frames)
    assert deg(back.rotations["頭"], rot["頭"]).max() < 0.01
    assert np.all(np.sum(back.rotations["頭"][1:] * back.rotations["頭"][:-1], -1) >= 0)   # written continuous
    assert np.allclose(back.locations["センター"], loc["センター"])
    assert np.allclose(back.rotations["センター"], Q.identity(t))
    # sparse bones
    keys = np.concatenate([v.bone_keys, vmd.make_bone_keys("左ひじ", 4, np.zeros((1, 3)), [[0, 0, 0, 1.0]])])
    with pytest.raises(ValueError, match="左ひじ"):
        BoneMotion.from_vmd(vmd.VmdMotion(bone_keys=keys), sparse="error")
    assert "左ひじ" not in BoneMotion.from_vmd(vmd.VmdMotion(bone_keys=keys), sparse="skip").rotations
    # shape and value checks
    with pytest.raises(ValueError, match=r"\(5, 4\)"):
        BoneMotion(frames=np.arange(t), rotations={"頭": np.zeros((t, 3))})
    with pytest.raises(ValueError, match="increasing"):
        BoneMotion(frames=[0, 0, 1])
    with pytest.raises(ValueError, match="integers"):
        BoneMotion(frames=[0.5, 1.0])
    with pytest.raises(ValueError, match="NaN"):
        BoneMotion(frames=[0], locations={"センター": [[np.nan, 0, 0]]})
    with pytest.raises(ValueError, match="no bones"):
        BoneMotion(frames=[0]).to_vmd()


def test_wide_detector_hips_do_not_cross_the_models_feet(model):
    """BlazePose's hip points sit ~1.5x wider than MMD 足 bones: feet together must not become crossed feet."""
    rest = model("mat4")
    rj = rest_joints(rest)
    T = 20
    joints = np.repeat(rj[None], T, 0)
    w = 0.5 * (rj[J["LHip"]] - rj[J["RHip"]])
    for tag, sign in (("L", 1.0), ("R", -1.0)):
        joints[:, J[tag + "Hip"]] += sign * 0.6 * w          # dancer's hip points 1.6x wider than the model's
        for j_name in ("Knee", "Foot", "FootIndex", "Heel"):
            joints[:, J[tag + j_name]] -= sign * 0.8 * w     # knees and feet together, inside the model's hips
    m = retarget(joints, rest, ground=False, center_start=False)
    pos, _ = rest.fk(m.rotations, m.locations)
    gap = pos[:, rest.index_of("左足首"), 0] - pos[:, rest.index_of("右足首"), 0]
    dancer_gap = joints[:, J["LFoot"], 0] - joints[:, J["RFoot"], 0]
    assert np.all(gap > 0), "the model's ankles crossed"
    np.testing.assert_allclose(gap, dancer_gap, rtol=0.05)  # the feet keep the dancer's spacing
    unadapted = retarget(joints, rest, ground=False, center_start=False, adapt_widths=False)
    pos_u, _ = rest.fk(unadapted.rotations, unadapted.locations)
    assert np.all(pos_u[:, rest.index_of("左足首"), 0] - pos_u[:, rest.index_of("右足首"), 0] < gap)


@pytest.mark.parametrize("name", ["mat4", "yw"])
def test_leg_ik_from_fk_makes_mmds_ik_playback_show_the_fk_legs(model, shared_data, name):
    """A real dance (lia_kim, VideoPose3D) retargeted, then its FK legs edited as a flip repair or an unreachable pin
    leave them (足首 turned 60°, the thigh 25°, on a few frames): MMD's IK-on playback (``core.ik``) then differs from
    FK by centimetres; after ``leg_ik_from_fk`` it equals FK, and the frames not edited keep their keys."""
    from core import ik
    from core.conventions import camera_to_mmd
    from core.retarget import leg_ik_from_fk
    from core.skeletons import h36m17_to_canonical
    raw = np.load(shared_data / "keypoints/lia_kim_dance/videopose3d_export.npy", allow_pickle=False)
    rest = model(name)
    m = retarget(h36m17_to_canonical(camera_to_mmd(raw[:120].astype(np.float64))), rest)
    edited = np.zeros(m.n_frames, dtype=bool)
    edited[40:44] = True
    m.rotations["左足首"][edited] = Q.multiply(m.rotations["左足首"][edited],
                                             Q.from_axis_angle(np.array([0.0, 1.0, 0.0]), np.radians(60.0)))
    m.rotations["右足"][edited] = Q.multiply(m.rotations["右足"][edited],
                                            Q.from_axis_angle(np.array([1.0, 0.0, 0.0]), np.radians(25.0)))

    def ik_vs_fk(motion):
        with_ik, _ = ik.evaluate_motion(rest, motion)
        fk, _ = rest.fk(motion.rotations, motion.locations)
        return np.linalg.norm(with_ik - fk, axis=-1).max(axis=1)

    assert ik_vs_fk(m)[edited].min() > 0.1                          # > 8 mm on every edited frame
    synced = leg_ik_from_fk(m, rest)
    assert ik_vs_fk(synced).max() < 1e-6
    for n in ("左足ＩＫ", "右足ＩＫ"):
        assert np.abs(synced.locations[n][~edited] - m.locations[n][~edited]).max() < 1e-9
        assert deg(synced.rotations[n][~edited], m.rotations[n][~edited]).max() < 1e-6
    for n in m.rotations:
        if "ＩＫ" not in n:
            np.testing.assert_allclose(synced.rotations[n], m.rotations[n], rtol=0, atol=1e-12)
