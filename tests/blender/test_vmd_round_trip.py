"""Import VMD then Export VMD gives the records back (bones the model has, interpolation included); the imported
Bézier handles play MMD's curves; IK switches and morphs travel; frame numbering lines up with MMD Tools' rule."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import BPY_MISSING_REASON

bpy = pytest.importorskip("bpy", reason=BPY_MISSING_REASON)

BONES_ROT = ("上半身", "首", "頭", "左腕", "右ひじ", "左足", "右ひざ", "左手首")
BONES_LOC = ("センター", "左足ＩＫ", "右足ＩＫ")


@pytest.fixture
def yw(addon, scene, yw_pmx):
    res = addon.pmx_import.import_pmx(yw_pmx, bpy.context)
    return res


def _records(vmd, motion, names) -> dict:
    keys = vmd.sort_keys(motion.bone_keys)
    dn = vmd.decode_names(keys["name"])
    out = {}
    for k, n in zip(keys, dn):
        if n in names:
            out[(n, int(k["frame"]))] = k
    return out


def _assert_same_records(vmd, a, b, names, *, atol_loc=2e-4, atol_rot=2e-5):
    ra, rb = _records(vmd, a, names), _records(vmd, b, names)
    assert ra.keys() == rb.keys()
    assert len(ra) > 0
    for key, ka in ra.items():
        kb = rb[key]
        assert np.array_equal(ka["interpolation"], kb["interpolation"]), (key, ka["interpolation"],
                                                                         kb["interpolation"])
        qa, qb = vmd.rotations_xyzw(ka[None])[0], vmd.rotations_xyzw(kb[None])[0]
        assert abs(abs(float(qa @ qb)) - 1.0) < atol_rot, key
        assert np.allclose(ka["location"], kb["location"], atol=atol_loc), key


def _random_vmd(vmd, rng, n_keys=14):
    """Hand-keyed-like motion: sparse keys at irregular frames, random rotations and translations, every curve of
    every key random in 0..127, some keys with the physics-off bytes."""
    names, frames, locs, rots, blocks = [], [], [], [], []
    for b, name in enumerate(BONES_ROT + BONES_LOC):
        f = np.cumsum(rng.integers(1, 12, size=n_keys)) - 1
        axis = rng.normal(size=(n_keys, 3))
        axis /= np.linalg.norm(axis, axis=1, keepdims=True)
        ang = rng.uniform(-1.2, 1.2, size=n_keys)
        q = np.c_[np.sin(ang / 2)[:, None] * axis, np.cos(ang / 2)]
        loc = rng.uniform(-3, 3, size=(n_keys, 3)) if name in BONES_LOC else np.zeros((n_keys, 3))
        c = rng.integers(0, 128, size=(n_keys, 4, 4))
        blk = vmd.interpolation_block(c[:, 0], c[:, 1], c[:, 2], c[:, 3])
        blk[rng.random(n_keys) < 0.2, 2:4] = (0x63, 0x0F)
        names += [name] * n_keys
        frames.append(f)
        locs.append(loc)
        rots.append(q)
        blocks.append(blk)
    keys = vmd.make_bone_keys(names, np.concatenate(frames), np.concatenate(locs), np.concatenate(rots),
                              np.concatenate(blocks))
    ik = vmd.PropertyKey(frame=0, visible=True, ik_states=[("左足ＩＫ", True), ("右足ＩＫ", True)])
    ik2 = vmd.PropertyKey(frame=20, visible=True, ik_states=[("左足ＩＫ", False), ("右足ＩＫ", True)])
    return vmd.VmdMotion(model_name="yw", bone_keys=vmd.sort_keys(keys), property_keys=[ik, ik2])


def test_random_bezier_vmd_comes_back_record_for_record(addon, yw, tmp_path):
    vmd = addon.core("formats.vmd")
    src = _random_vmd(vmd, np.random.default_rng(3))
    path = tmp_path / "random.vmd"
    vmd.write(path, src)
    arm = yw.armature
    res = addon.op_import_vmd.import_vmd(arm, path)
    assert res.skipped_bones == [] and res.key_count == len(src.bone_keys)
    out = tmp_path / "back.vmd"
    addon.vmd_export.export_vmd(arm, out)
    back = vmd.read(out)
    _assert_same_records(vmd, src, back, set(BONES_ROT + BONES_LOC))
    assert [(k.frame, k.ik_states) for k in back.property_keys] == [(k.frame, k.ik_states) for k in src.property_keys]


def test_edited_handles_win_over_the_stored_block(addon, yw, tmp_path):
    """The stored block is only a fallback: moving a handle changes the exported curve."""
    vmd = addon.core("formats.vmd")
    src = _random_vmd(vmd, np.random.default_rng(4))
    path = tmp_path / "random.vmd"
    vmd.write(path, src)
    arm = yw.armature
    action = addon.op_import_vmd.import_vmd(arm, path).action
    fcs = addon.vmd_export._action_fcurves(arm, action)
    bname = addon.armature_rest.bone_name_map(arm)["センター"]
    loc_fc = [fc for fc in fcs if fc.data_path == f'pose.bones["{bname}"].location']
    fc = max(loc_fc, key=lambda c: abs(c.keyframe_points[1].co[1] - c.keyframe_points[0].co[1]))
    k0, k1 = fc.keyframe_points[0], fc.keyframe_points[1]
    dx, dy = k1.co[0] - k0.co[0], k1.co[1] - k0.co[1]
    k0.handle_right = (k0.co[0] + dx * 100 / 127, k0.co[1] + dy * 5 / 127)   # curve (100, 5, x2, y2)
    out = tmp_path / "edited.vmd"
    addon.vmd_export.export_vmd(arm, out)
    back = _records(vmd, vmd.read(out), {"センター"})
    f1 = int(round(k1.co[0]))
    curves = {c: vmd.read_curves(back[("センター", f1)]["interpolation"])[c] for c in "xyz"}
    assert any(tuple(v[:2]) == (100, 5) for v in curves.values()), curves


def test_imported_handles_play_mmd_curves(addon, yw, tmp_path):
    """Between keys Blender's Bézier F-Curves give MMD's interpolation (core.vmd_sample): exactly for translations,
    within 3° for rotations of up to 140° per segment (Blender blends quaternion components, MMD slerps; docs/MMD_FACTS.md §2.3)."""
    vmd = addon.core("formats.vmd")
    sample = addon.core("vmd_sample")
    src = _random_vmd(vmd, np.random.default_rng(5))
    path = tmp_path / "random.vmd"
    vmd.write(path, src)
    arm = yw.armature
    addon.op_import_vmd.import_vmd(arm, path)
    aw = addon.action_writer
    frames = np.arange(0, 60)
    want = sample.sample_vmd(src, frames)
    bmap = addon.armature_rest.bone_name_map(arm)
    names = ["センター", "左足ＩＫ", "左腕", "頭"]
    m = aw.mmd_to_local_matrices(arm, [bmap[n] for n in names])
    got_q = np.empty((len(frames), len(names), 4))
    got_l = np.empty((len(frames), len(names), 3))
    scene = bpy.context.scene
    for i, f in enumerate(frames):
        scene.frame_set(int(f))
        for j, n in enumerate(names):
            pb = arm.pose.bones[bmap[n]]
            got_q[i, j] = tuple(pb.rotation_quaternion)
            got_l[i, j] = tuple(pb.location)
    q, t = aw.pose_to_mmd(m, got_q, got_l)
    for j, n in enumerate(names):
        if n in ("センター", "左足ＩＫ"):
            assert np.allclose(t[:, j], want.locations[n], atol=1e-3), n
        qn = q[:, j] / np.linalg.norm(q[:, j], axis=1, keepdims=True)
        ang = np.degrees(2 * np.arccos(np.clip(np.abs(np.sum(qn * want.rotations[n], axis=1)), 0, 1)))
        assert ang.max() < 3.0 and ang.mean() < 0.5, (n, ang.max(), ang.mean())


def test_hand_keyed_yyb_motion_with_morphs_and_ik(addon, yw, shared_data, tmp_path):
    """The real hand-keyed yyb motion (454 keys, 100 morphs, one property key): the bones the model has and the
    morphs its mesh has come back record for record."""
    vmd = addon.core("formats.vmd")
    path = shared_data / "vmd" / "physics_toggle_test_yyb10th.vmd"
    src = vmd.read(path)
    arm, mesh = yw.armature, yw.mesh
    morphs = vmd.morph_names(src)[:6]
    mesh.shape_key_add(name="Basis")
    for n in morphs:
        mesh.shape_key_add(name=n)
    res = addon.op_import_vmd.import_vmd(arm, path)
    bmap = addon.armature_rest.bone_name_map(arm)
    have = {n for n in vmd.bone_names(src) if n in bmap}
    assert len(have) > 80 and res.skipped_bones and res.morph_count == len(morphs)
    assert any("morphs" in w for w in res.warnings)
    out = tmp_path / "back.vmd"
    addon.vmd_export.export_vmd(arm, out)
    back = vmd.read(out)
    _assert_same_records(vmd, src, back, have)
    sm = {(vmd.decode_name(k["name"]), int(k["frame"])): float(k["weight"]) for k in src.morph_keys
          if vmd.decode_name(k["name"]) in morphs}
    bm = {(vmd.decode_name(k["name"]), int(k["frame"])): float(k["weight"]) for k in back.morph_keys}
    assert bm.keys() == sm.keys() and all(abs(bm[k] - sm[k]) < 1e-6 for k in sm)
    assert [(k.frame, k.ik_states) for k in back.property_keys] == [(k.frame, k.ik_states) for k in src.property_keys]


def test_frames_line_up_with_mmd_tools(addon, yw, tmp_path, scene):
    """Our import puts VMD frame 0 on Blender frame 0 (and says so on the action); an action without that mark,
    e.g. from MMD Tools' importer (VMD frame 0 on the current frame, 1), is exported with MMD Tools' own rule
    ``VMD = Blender - min(1, scene.frame_start)``."""
    vmd = addon.core("formats.vmd")
    src = _random_vmd(vmd, np.random.default_rng(6))
    path = tmp_path / "random.vmd"
    vmd.write(path, src)
    arm = yw.armature
    action = addon.op_import_vmd.import_vmd(arm, path).action
    assert scene.frame_start == 0 and action["mmd_frame_offset"] == 0
    first = {fc.data_path: fc.keyframe_points[0].co[0] for fc in addon.vmd_export._action_fcurves(arm, action)
             if fc.data_path.endswith(".rotation_quaternion")}
    assert min(first.values()) == float(src.bone_keys["frame"].min())
    for fc in addon.vmd_export._action_fcurves(arm, action):   # what MMD Tools' importer would have made
        for kp in fc.keyframe_points:
            kp.co.x += 1
            kp.handle_left.x += 1
            kp.handle_right.x += 1
    del action["mmd_frame_offset"]
    scene.frame_start = 1
    out = tmp_path / "mmdtools_style.vmd"
    addon.vmd_export.export_vmd(arm, out)
    _assert_same_records(vmd, src, vmd.read(out), set(BONES_ROT + BONES_LOC))


def test_apply_with_key_reduction_exports_what_the_command_line_writes(addon, yw, shared_data, tmp_path, scene):
    """Apply without "Key Every Frame" keys the reduced motion (core.keyreduce) with its curves, and Export VMD
    writes exactly the records the command line's reducer gives."""
    vmd = addon.core("formats.vmd")
    keyreduce = addon.core("keyreduce")
    kio = addon.core("keypoints_io")
    ms = addon.core("motion_stage")
    arm = yw.armature
    poses = kio.load_keypoints(shared_data / "keypoints" / "lia_kim_dance" / "videopose3d_export.npy")
    rest = addon.armature_rest.rest_skeleton(arm)
    motion = ms.motion_stage(poses, rest)
    action = addon.op_import_vmd.apply_reduced(arm, motion, name="lia", scene=scene)
    kept, dense = action["mmd_key_counts"]
    assert kept < 0.8 * dense and (scene.frame_start, scene.frame_end) == (0, motion.frames[-1])
    out = tmp_path / "reduced.vmd"
    addon.vmd_export.export_vmd(arm, out)
    want = keyreduce.reduce_motion(motion, rest).to_vmd()   # with the model's levers, as the job passes them
    _assert_same_records(vmd, want, vmd.read(out), set(motion.bone_names))


def test_hand_keyed_action_keeps_its_curves_even_where_channels_are_keyed_apart(addon, yw, tmp_path, scene):
    """An action keyed by hand in Blender (random Bézier handles; センター's X keyed on fewer frames than its Y and Z,
    MMD Tools' ``mmd_ik_toggle`` for an IK switch): the exported VMD plays, in MMD's interpolation, what Blender
    plays, also between the keys and across the pieces of X's curve."""
    vmd = addon.core("formats.vmd")
    sample = addon.core("vmd_sample")
    aw = addon.action_writer
    arm = yw.armature
    rng = np.random.default_rng(8)
    bmap = addon.armature_rest.bone_name_map(arm)
    center = bmap["センター"]
    action = bpy.data.actions.new("hand")
    sink = addon.op_import_vmd._Sink(arm, action, "OBJECT")
    base = f'pose.bones["{center}"].location'
    keyed = {0: [0, 40], 1: [0, 10, 17, 40], 2: [0, 10, 17, 40]}
    for i, fr in keyed.items():
        fc = sink.new(base, i, center)
        fr = np.array(fr, dtype=np.float64)
        val = rng.uniform(-0.3, 0.3, size=len(fr))
        curves = np.c_[rng.integers(0, 128, (len(fr), 4))]
        addon.op_import_vmd.write_fcurve(fc, fr, val, curves)
    tog = sink.new(f'pose.bones["{bmap["左足ＩＫ"]}"].mmd_ik_toggle', 0, "ik")
    addon.op_import_vmd.write_fcurve(tog, np.array([0.0, 25.0]), np.array([1.0, 0.0]), interpolation=2)
    arm.animation_data.action = action
    scene.frame_start = 0
    out = tmp_path / "hand.vmd"
    addon.vmd_export.export_vmd(arm, out, action=action)
    back = vmd.read(out)
    assert sorted(set(back.bone_keys["frame"].tolist())) == [0, 10, 17, 40]
    assert [(k.frame, k.ik_states) for k in back.property_keys] == [(0, [("左足ＩＫ", True)]),
                                                                    (25, [("左足ＩＫ", False)])]
    frames = np.arange(41)
    played = sample.sample_vmd(back, frames).locations["センター"]
    fcs = {fc.array_index: fc for fc in addon.vmd_export._action_fcurves(arm, action) if fc.data_path == base}
    blender = np.array([[fcs[i].evaluate(float(f)) for i in range(3)] for f in frames])
    m = aw.mmd_to_local_matrices(arm, [center])
    _, want = aw.pose_to_mmd(m, None, blender[:, None, :])
    span = np.ptp(want[:, 0], axis=0).max()
    assert np.abs(played - want[:, 0]).max() < 0.01 * span + 1e-4


def test_import_vmd_operator_and_menu(addon, yw, shared_data, scene):
    path = shared_data / "vmd" / "openmmd_output_sample.vmd"
    scene.anime_mmd.target_armature = yw.armature
    assert bpy.ops.anime_mmd.import_vmd(filepath=str(path)) == {"FINISHED"}
    action = yw.armature.animation_data.action
    assert action is not None and action.name.startswith("openmmd_output_sample")
    assert "openmmd_output_sample" in scene.anime_mmd.status and scene.frame_end == 160
    draw_funcs = bpy.types.TOPBAR_MT_file_import._dyn_ui_initialize()
    assert any(getattr(f, "__module__", "").endswith("op_import_vmd") for f in draw_funcs)
    with pytest.raises(RuntimeError, match="no such file"):
        bpy.ops.anime_mmd.import_vmd(filepath=str(shared_data / "vmd" / "missing.vmd"))


def test_a_camera_motion_is_refused_with_a_reason(addon, yw, tmp_path):
    vmd = addon.core("formats.vmd")
    cam = np.zeros(2, dtype=vmd.CAMERA_KEY_DTYPE)
    cam["frame"] = [0, 30]
    path = tmp_path / "camera.vmd"
    vmd.write(path, vmd.VmdMotion(model_name="カメラ・照明", camera_keys=cam))
    with pytest.raises(ValueError, match="camera motion"):
        addon.op_import_vmd.import_vmd(yw.armature, path)
    assert yw.armature.animation_data is None or yw.armature.animation_data.action is None
