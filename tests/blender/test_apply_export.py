"""Apply a motion to an imported model (bulk keys, new action, scene set-up), check the posed bones against
``core.rest_skeleton`` FK, export it as VMD and read it back."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import BPY_MISSING_REASON

bpy = pytest.importorskip("bpy", reason=BPY_MISSING_REASON)

T = 90
ROTATED = ("下半身", "上半身", "上半身2", "首", "頭", "左肩", "左腕", "左ひじ", "左手首", "右腕", "右ひじ",
           "左足", "左ひざ", "左足首", "右足", "右ひざ")
CHECK_FRAMES = (0, 17, 42, 89)


def _known_motion(addon, rest):
    """Smooth, large, known rotations on many bones, センター translation, 足ＩＫ at the FK ankle."""
    motion_mod = addon.core("motion")
    rng = np.random.default_rng(7)
    t = np.arange(T, dtype=np.float64)
    rot = {}
    for k, name in enumerate(ROTATED):
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        ang = 0.9 * np.sin(t / 9.0 + k) + 0.3
        rot[name] = np.c_[np.sin(ang / 2)[:, None] * axis, np.cos(ang / 2)]
    loc = {"センター": np.c_[0.5 * np.sin(t / 11), 0.8 * np.cos(t / 7) - 0.8, 0.3 * t / T]}
    pos, wrot = rest.fk(rot, loc)
    for side in "左右":
        ik = rest.find(side + "足ＩＫ")
        ankle = rest.find(side + "足首")
        loc[side + "足ＩＫ"] = pos[:, ankle] - rest.positions[ik]  # IK target = FK ankle (parent unanimated)
    return motion_mod.BoneMotion(frames=np.arange(T) * 1, rotations=rot, locations=loc, model_name="yw")


@pytest.fixture
def posed(addon, scene, yw_pmx):
    res = addon.pmx_import.import_pmx(yw_pmx, bpy.context)
    arm = res.armature
    rest = addon.armature_rest.rest_skeleton(arm)
    motion = _known_motion(addon, rest)
    action = addon.action_writer.apply_motion(arm, motion, name="known_motion", scene=scene)
    return arm, rest, motion, action


def _world_mmd(addon, arm, names) -> np.ndarray:
    conv = addon.core("conventions")
    mw = np.array(arm.matrix_world)
    heads = np.array([tuple(arm.pose.bones[n].head) for n in names])
    world = (np.c_[heads, np.ones(len(heads))] @ mw.T)[:, :3]
    return conv.blender_to_mmd(world)


def test_rest_skeleton_from_armature_matches_the_pmx(addon, scene, yw_pmx):
    pmx = addon.core("formats.pmx")
    rs = addon.core("rest_skeleton")
    want = rs.RestSkeleton.from_pmx(pmx.read(yw_pmx))
    arm = addon.pmx_import.import_pmx(yw_pmx, bpy.context).armature
    got = addon.armature_rest.rest_skeleton(arm)
    assert got.names == want.names and np.array_equal(got.parents, want.parents)
    assert np.allclose(got.positions, want.positions, atol=1e-4)
    assert sorted(got.ik_chains, key=str) == sorted(want.ik_chains, key=str)
    assert np.array_equal(got.inherit_source, want.inherit_source)
    assert np.allclose(got.inherit_ratio, want.inherit_ratio)
    assert got.model_name == want.model_name


def test_new_action_scene_fps_and_range(addon, posed, scene):
    arm, rest, motion, action = posed
    assert arm.animation_data.action == action and action.name == "known_motion"
    assert scene.render.fps == 30 and scene.render.fps_base == 1.0
    assert (scene.frame_start, scene.frame_end) == (0, T - 1)
    # Never overwrite: applying again makes a new, suffixed action and keeps the first one intact.
    again = addon.action_writer.apply_motion(arm, motion, name="known_motion", scene=scene)
    assert again.name == "known_motion.001" and "known_motion" in bpy.data.actions
    assert bpy.data.actions["known_motion"] is action
    assert action.use_fake_user  # the replaced action survives saving the file
    from bpy_extras import anim_utils
    bag = anim_utils.action_get_channelbag_for_slot(action, action.slots[0])
    n_curves = 4 * len(motion.rotations) + 3 * len(motion.locations)
    assert len(bag.fcurves) == n_curves and all(len(fc.keyframe_points) == T for fc in bag.fcurves)
    assert {fc.keyframe_points[0].interpolation for fc in bag.fcurves} == {"LINEAR"}


def test_posed_bones_match_fk_with_ik_off(addon, posed, scene):
    """FK legs (IK muted): every bone's posed head equals core.rest_skeleton.fk, D bones included (付与 1.0)."""
    arm, rest, motion, _ = posed
    for pb in arm.pose.bones:
        for c in pb.constraints:
            if c.type == "IK":
                c.mute = True
    names = [n for n in rest.names if "ＩＫ" not in n]  # IK bones are keyed for the IK-on case only
    idx = [rest.find(n) for n in names]
    pos, _ = rest.fk(motion.rotations, motion.locations)
    for f in CHECK_FRAMES:
        scene.frame_set(f)
        got = _world_mmd(addon, arm, names)
        err = np.linalg.norm(got - pos[f, idx], axis=1)
        assert err.max() < 5e-4, (f, names[int(err.argmax())], err.max())  # model units (0.04 mm; float32)
    moved = np.linalg.norm(pos[CHECK_FRAMES[2], idx] - rest.positions[idx], axis=1)
    assert moved.max() > 3.0  # the check is not vacuous: bones moved by several units


def test_ik_preview_puts_the_ankles_on_the_ik_targets(addon, posed, scene):
    arm, rest, motion, _ = posed
    pos, _ = rest.fk(motion.rotations, motion.locations)
    ankles = ["左足首", "右足首"]
    idx = [rest.find(n) for n in ankles]
    for f in CHECK_FRAMES:
        scene.frame_set(f)
        got = _world_mmd(addon, arm, ankles)
        assert np.linalg.norm(got - pos[f, idx], axis=1).max() < 5e-3, f  # IK solver tolerance (0.4 mm)
        upper = _world_mmd(addon, arm, ["頭", "左手首"])
        assert np.allclose(upper, pos[f, [rest.find("頭"), rest.find("左手首")]], atol=5e-4)


def test_export_vmd_reads_back_what_was_applied(addon, posed, tmp_path):
    arm, rest, motion, _ = posed
    vmd = addon.core("formats.vmd")
    motion_mod = addon.core("motion")
    out = tmp_path / "known.vmd"
    res = addon.vmd_export.export_vmd(arm, out)
    assert res.key_count == T * len(set(motion.rotations) | set(motion.locations)) and res.frame_range == (0, T - 1)
    back = vmd.read(out)
    assert back.model_name == arm["mmd_model_name"]
    got = motion_mod.BoneMotion.from_vmd(back)
    assert set(got.rotations) | set(got.locations) == set(motion.rotations) | set(motion.locations)
    assert np.array_equal(got.frames, motion.frames)
    for name, q in motion.rotations.items():
        dots = np.abs(np.sum(got.rotations[name] * q, axis=1))
        assert np.all(dots > 1 - 1e-6), name
    for name, t in motion.locations.items():
        assert np.allclose(got.locations[name], t, atol=1e-4), name
    assert "左足ＩＫ" in vmd.bone_names(back) and "右足ＩＫ" in vmd.bone_names(back)


def test_export_never_overwrites_unless_asked(addon, posed, tmp_path):
    arm = posed[0]
    out = tmp_path / "taken.vmd"
    out.write_bytes(b"user's file")
    with pytest.raises(FileExistsError):
        addon.vmd_export.export_vmd(arm, out)
    assert out.read_bytes() == b"user's file"
    bpy.context.scene.anime_mmd.target_armature = arm
    with pytest.raises(RuntimeError, match="Overwrite"):
        bpy.ops.anime_mmd.export_vmd(filepath=str(out))
    assert out.read_bytes() == b"user's file"
    assert bpy.ops.anime_mmd.export_vmd(filepath=str(out), overwrite=True) == {"FINISHED"}
    assert out.read_bytes()[:25] == b"Vocaloid Motion Data 0002"


def test_apply_operator_from_a_pose_file(addon, scene, yw_pmx, shared_data, tmp_path):
    """The panel's Apply: pose .npz (real VideoPose3D output) -> retarget on the armature -> action named after the
    video, keyed on every 30 fps frame."""
    kio = addon.core("keypoints_io")
    pose_io = addon.core("pose_io")
    poses = kio.load_keypoints(shared_data / "keypoints" / "lia_kim_dance" / "videopose3d_export.npy")
    npz = pose_io.save(tmp_path / "lia.npz", poses)
    assert bpy.ops.anime_mmd.import_pmx(filepath=str(yw_pmx)) == {"FINISHED"}
    props = scene.anime_mmd
    props.result_npz = str(npz)
    props.video_path = str(tmp_path / "lia_kim_dance.mp4")
    assert bpy.ops.anime_mmd.apply() == {"FINISHED"}
    arm = props.target_armature
    action = arm.animation_data.action
    assert action.name == "lia_kim_dance"
    t_last = poses.timestamps[-1] - poses.timestamps[0]
    assert scene.frame_end == int(np.floor(t_last * 30 + 1e-6)) and scene.frame_start == 0
    assert "Applied" in props.status
    kept, dense = action["mmd_key_counts"]                  # Apply says what the key reduction kept
    assert 0 < kept < dense and f"{kept:,} bone keys with MMD's Bézier curves ({kept / dense:.2f}x" in props.status
    # Something really moves: the head travels over the clip.
    heads = []
    for f in (scene.frame_start, scene.frame_end // 2, scene.frame_end):
        scene.frame_set(f)
        heads.append(np.array(arm.pose.bones["頭"].head))
    assert np.ptp(np.array(heads), axis=0).max() > 0.01
    # A broken pose file is a clear error, and nothing is added.
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    props.result_npz = str(tmp_path / "bad.npz")
    n_actions = len(bpy.data.actions)
    with pytest.raises(RuntimeError, match="Apply failed"):
        bpy.ops.anime_mmd.apply()
    assert len(bpy.data.actions) == n_actions


def test_mmd_tools_style_armature(addon, scene, yw_pmx, tmp_path):
    """An armature like MMD Tools makes: English bone names, the Japanese name in ``pose_bone.mmd_bone.name_j``,
    and bone rolls of its own. Rest skeleton, apply and export must go by the Japanese names and convert with each
    bone's real rest orientation."""
    pmx = addon.core("formats.pmx")
    rs = addon.core("rest_skeleton")
    vmd = addon.core("formats.vmd")
    motion_mod = addon.core("motion")

    class FakeMMDBone(bpy.types.PropertyGroup):
        name_j: bpy.props.StringProperty()
        name_e: bpy.props.StringProperty()

    bpy.utils.register_class(FakeMMDBone)
    bpy.types.PoseBone.mmd_bone = bpy.props.PointerProperty(type=FakeMMDBone)
    try:
        arm = addon.pmx_import.import_pmx(yw_pmx, bpy.context).armature
        rng = np.random.default_rng(3)
        bpy.context.view_layer.objects.active = arm
        bpy.ops.object.mode_set(mode="EDIT")
        for eb in arm.data.edit_bones:
            eb.roll = float(rng.uniform(-np.pi, np.pi))
        bpy.ops.object.mode_set(mode="OBJECT")
        for i, pb in enumerate(arm.pose.bones):
            pb.mmd_bone.name_j = pb.bone["mmd_name_j"]
            for key in list(pb.bone.keys()):
                del pb.bone[key]
            pb.name = f"bone_{i:03d}"
        for pb in arm.pose.bones:
            for c in pb.constraints:
                if c.type == "IK":
                    c.mute = True
        got = addon.armature_rest.rest_skeleton(arm)
        want = rs.RestSkeleton.from_pmx(pmx.read(yw_pmx))
        assert sorted(got.names) == sorted(want.names)
        assert {c.bone for c in got.ik_chains} == {c.bone for c in want.ik_chains}
        motion = _known_motion(addon, want)
        addon.action_writer.apply_motion(arm, motion, name="mmd_tools_style", scene=scene)
        bmap = addon.armature_rest.bone_name_map(arm)
        names = [n for n in want.names if "ＩＫ" not in n and n in bmap]
        pos, _ = want.fk(motion.rotations, motion.locations)
        conv = addon.core("conventions")
        for f in CHECK_FRAMES:
            scene.frame_set(f)
            heads = np.array([tuple(arm.pose.bones[bmap[n]].head) for n in names])
            err = np.linalg.norm(conv.blender_to_mmd(heads) - pos[f, [want.find(n) for n in names]], axis=1)
            assert err.max() < 5e-4, (f, names[int(err.argmax())], err.max())
        out = tmp_path / "mt.vmd"
        addon.vmd_export.export_vmd(arm, out)
        back = motion_mod.BoneMotion.from_vmd(vmd.read(out))
        # Japanese names, not bone_NNN.
        assert set(back.rotations) | set(back.locations) == set(motion.rotations) | set(motion.locations)
        for name, q in motion.rotations.items():
            assert np.all(np.abs(np.sum(back.rotations[name] * q, axis=1)) > 1 - 1e-6), name
    finally:
        for a in list(bpy.data.objects):
            bpy.data.objects.remove(a)
        del bpy.types.PoseBone.mmd_bone
        bpy.utils.unregister_class(FakeMMDBone)
