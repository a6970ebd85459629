"""PMX import into Blender: every shared PMX model, counts against the file, hierarchy, IK, weights, UVs, textures,
and the malformed file that must create nothing."""
from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import BPY_MISSING_REASON

bpy = pytest.importorskip("bpy", reason=BPY_MISSING_REASON)

MALFORMED = "joint_orient_test.pmx"


def _all_pmx(pmx_dir):
    return sorted(p for p in pmx_dir.rglob("*.pmx"))


def _data_counts() -> dict:
    return {k: len(getattr(bpy.data, k)) for k in ("objects", "meshes", "armatures", "materials", "images", "actions")}


def test_every_shared_pmx_imports_with_the_file_counts(addon, scene, pmx_dir):
    pmx = addon.core("formats.pmx")
    files = [p for p in _all_pmx(pmx_dir) if p.name != MALFORMED]
    assert len(files) >= 17
    for path in files:
        model = pmx.read(path)
        before = set(bpy.data.objects)
        res = bpy.ops.anime_mmd.import_pmx(filepath=str(path))
        assert res == {"FINISHED"}, path.name
        new = set(bpy.data.objects) - before
        arms = [o for o in new if o.type == "ARMATURE"]
        meshes = [o for o in new if o.type == "MESH"]
        assert len(arms) == 1, path.name
        arm = arms[0]
        assert scene.anime_mmd.target_armature == arm
        assert len(arm.data.bones) == len(model.bones), path.name
        assert sorted(b["mmd_name_j"] for b in arm.data.bones) == sorted(b.name for b in model.bones)
        if len(model.vertices):
            assert len(meshes) == 1 and meshes[0].parent == arm
            me = meshes[0].data
            assert len(me.vertices) == len(model.vertices), path.name
            assert len(me.materials) == len(model.materials), path.name
            unique_faces = len(np.unique(np.sort(np.asarray(model.faces), axis=1), axis=0))
            assert len(me.polygons) == unique_faces, path.name
        else:
            assert meshes == [] and len(model.materials) == 0


def test_malformed_pmx_gives_a_clear_error_and_creates_nothing(addon, scene, pmx_dir):
    before = _data_counts()
    with pytest.raises(RuntimeError, match=r"joint_orient_test\.pmx.*byte \d+"):
        bpy.ops.anime_mmd.import_pmx(filepath=str(pmx_dir / "fixtures" / MALFORMED))
    assert _data_counts() == before
    assert scene.anime_mmd.target_armature is None


def test_failure_half_way_removes_what_was_built(addon, scene, yw_pmx, monkeypatch):
    mod = addon.pmx_import
    before = _data_counts()

    def boom(*a, **k):
        raise RuntimeError("simulated failure while building the mesh")

    monkeypatch.setattr(mod, "_build_mesh", boom)
    with pytest.raises(RuntimeError, match="simulated"):
        mod.import_pmx(yw_pmx, bpy.context)
    assert _data_counts() == before


@pytest.fixture
def yw(addon, scene, yw_pmx):
    pmx = addon.core("formats.pmx")
    model = pmx.read(yw_pmx)
    result = addon.pmx_import.import_pmx(yw_pmx, bpy.context)
    return model, result


def test_hierarchy_names_and_rest_positions(addon, yw):
    model, res = yw
    conv = addon.core("conventions")
    arm = res.armature
    assert arm["mmd_model_name"] == model.header.name
    for i, b in enumerate(model.bones):
        db = arm.data.bones[res.bone_names[i]]
        assert db.name == b.name and db["mmd_name_j"] == b.name and db["mmd_name_en"] == b.name_en
        assert np.allclose(tuple(db.head_local), conv.mmd_to_blender(np.asarray(b.position)), atol=1e-5)
        parent = db.parent["mmd_index"] if db.parent else -1
        assert parent == b.parent
    # Japanese names byte for byte, full-width ＩＫ (docs/MMD_FACTS.md §4).
    assert "左足ＩＫ" in arm.data.bones and "右つま先ＩＫ" in arm.data.bones


def test_leg_ik_constraints_and_knee_limits(addon, yw):
    model, res = yw
    pb = res.armature.pose.bones
    for side in "左右":
        knee = pb[side + "ひざ"]
        ik = [c for c in knee.constraints if c.type == "IK"]
        assert len(ik) == 1
        c = ik[0]
        assert c.subtarget == side + "足ＩＫ" and c.chain_count == 2 and c.use_tail and c.target == res.armature
        # The chain meets: the knee's tail is the ankle (Blender's IK moves the chain's tail onto the target).
        assert np.allclose(tuple(knee.bone.tail_local), tuple(pb[side + "足首"].bone.head_local), atol=1e-6)
        # ひざ is limited to X only: MMD X in [-170 deg, -0.5 deg] -> local X in [0, 170 deg] (sign flips).
        assert knee.lock_ik_y and knee.lock_ik_z and knee.use_ik_limit_x and not knee.lock_ik_x
        assert knee.ik_min_x == pytest.approx(0.0, abs=1e-6)
        assert math.degrees(knee.ik_max_x) == pytest.approx(170.0, abs=0.01)
        toe = [c for c in pb[side + "足首"].constraints if c.type == "IK"]
        assert len(toe) == 1 and toe[0].subtarget == side + "つま先ＩＫ" and toe[0].chain_count == 1


def test_ik_follows_the_target_in_the_preview(addon, yw):
    """Moving 足ＩＫ moves the ankle there and bends the knee forward, as in MMD."""
    _, res = yw
    arm = res.armature
    pb = arm.pose.bones
    pb["左ひざ"].rotation_quaternion = (math.cos(0.15), math.sin(0.15), 0, 0)  # start slightly bent, as FK keys do
    ik = pb["左足ＩＫ"]
    rest_ankle = np.array(pb["左足首"].bone.head_local)
    ik.location = (0.0, 0.0, 0.0)
    # Raise the IK target 15 cm (armature +Z) expressed in the IK bone's local rest frame.
    local = np.array(ik.bone.matrix_local.to_3x3()).T @ np.array([0.0, 0.0, 0.15])
    ik.location = local.tolist()
    bpy.context.view_layer.update()
    ankle = np.array(pb["左足首"].head)
    assert np.allclose(ankle, rest_ankle + [0, 0, 0.15], atol=0.005)
    knee = np.array(pb["左ひざ"].head)
    assert knee[1] < np.array(pb["左ひざ"].bone.head_local)[1] - 0.02  # the knee goes forward (-Y)


def test_inherit_constraints(addon, yw):
    _, res = yw
    pb = res.armature.pose.bones
    c = pb["左足D"].constraints["mmd_inherit_rotation"]
    assert c.type == "COPY_ROTATION" and c.subtarget == "左足" and c.influence == pytest.approx(1.0)
    assert not c.invert_x
    c = pb["腰キャンセル左"].constraints["mmd_inherit_rotation"]
    assert c.subtarget == "腰" and c.invert_x and c.invert_y and c.invert_z
    # With IK off (FK legs), 付与 1.0 copies the source's model-space rotation although the bones point differently.
    for b in pb:
        for con in b.constraints:
            if con.type == "IK":
                con.mute = True
    q = np.array([0.8, 0.3, -0.4, 0.33])
    pb["左足"].rotation_quaternion = (q / np.linalg.norm(q)).tolist()
    # -1 x 肩P: 肩C undoes the shoulder's raise, so with 肩 at rest the arm's root frame is back at rest.
    pb["左肩P"].rotation_quaternion = (math.cos(0.2), 0.0, math.sin(0.2), 0.0)
    bpy.context.view_layer.update()

    def deform(name):  # rest -> posed rotation in armature space
        return np.array(pb[name].matrix.to_3x3()) @ np.array(pb[name].bone.matrix_local.to_3x3()).T

    assert not np.allclose(deform("左足"), np.eye(3), atol=0.1)
    assert np.allclose(deform("左足"), deform("左足D"), atol=1e-5)
    assert not np.allclose(deform("左肩"), np.eye(3), atol=0.1)
    assert np.allclose(deform("左肩C"), np.eye(3), atol=1e-5)


def test_weights_uvs_winding_and_textures(addon, yw):
    model, res = yw
    conv = addon.core("conventions")
    me = res.mesh.data
    obj = res.mesh
    v = model.vertices
    rng = np.random.default_rng(0)
    groups = {g.index: g.name for g in obj.vertex_groups}
    names = res.bone_names
    for i in rng.choice(len(v), 300, replace=False):
        want: dict = {}
        for b, w in zip(v.bone_indices[i], v.weights[i]):
            if b >= 0 and w > 0:
                want[names[b]] = want.get(names[b], 0.0) + float(w)
        got = {groups[g.group]: g.weight for g in me.vertices[int(i)].groups}
        assert set(got) == set(want), i
        for k in want:
            assert got[k] == pytest.approx(want[k], abs=1e-6)
    # UVs: per loop, the loop's vertex UV with V flipped.
    loops = np.empty(len(me.loops), dtype=np.int32)
    me.loops.foreach_get("vertex_index", loops)
    uv = np.empty(2 * len(me.loops), dtype=np.float32)
    me.uv_layers[0].data.foreach_get("uv", uv)
    uv = uv.reshape(-1, 2)
    want_uv = np.asarray(v.uvs)[loops]
    assert np.allclose(uv[:, 0], want_uv[:, 0], atol=1e-6) and np.allclose(uv[:, 1], 1 - want_uv[:, 1], atol=1e-6)
    # Winding: Blender face normals point the way the file's vertex normals do.
    fn = np.empty(3 * len(me.polygons))
    me.polygons.foreach_get("normal", fn)
    vn = conv.mmd_to_blender(np.asarray(v.normals, dtype=np.float64))[loops.reshape(-1, 3)].mean(axis=1)
    assert np.mean(np.sum(fn.reshape(-1, 3) * vn, axis=1) > 0) > 0.99
    # Textures: the diffuse texture, found relative to the PMX and actually loaded.
    mat = me.materials[0]
    tex = [n for n in mat.node_tree.nodes if n.type == "TEX_IMAGE"]
    assert len(tex) == 1 and tex[0].image.filepath.replace("\\", "/").endswith("tex/diffuse.png")
    assert tex[0].image.size[0] > 0
    assert res.warnings == []


def test_missing_texture_is_a_warning_not_an_error(addon, scene, pmx_dir):
    res = addon.pmx_import.import_pmx(pmx_dir / "fixtures" / "uv_morph_test.pmx", bpy.context)  # ref.jpg absent
    assert any("ref.jpg" in w and "not found" in w for w in res.warnings)
    assert len(res.materials) == 1 and not any(n.type == "TEX_IMAGE" for n in res.materials[0].node_tree.nodes)


def test_big_model_with_many_textures(addon, scene, pmx_dir):
    pmx = addon.core("formats.pmx")
    path = pmx_dir / "mat4_trace_model" / "mat4_v4_trace_model.pmx"
    model = pmx.read(path)
    res = addon.pmx_import.import_pmx(path, bpy.context)
    used = {model.textures[m.texture] for m in model.materials if m.texture >= 0}
    loaded = {n.image.filepath for m in res.materials for n in m.node_tree.nodes if n.type == "TEX_IMAGE"}
    assert len(loaded) == len(used)  # every material texture resolved (Windows '\\' paths)
    assert len(res.armature.data.bones) == 159 and len(res.mesh.data.vertices) == 59947
    assert any("6552 of 60024 faces repeat" in w for w in res.warnings)
    # Of stacked copies the opaque one stays: the face is 00_Face, not the alpha-0 blush variant 00_Face_頬染め.
    me = res.mesh.data
    idx = np.empty(len(me.polygons), dtype=np.int32)
    me.polygons.foreach_get("material_index", idx)
    used = {me.materials[i]["mmd_name_j"] for i in np.unique(idx)}
    assert "00_Face" in used and "00_Face_頬染め" not in used


def test_texture_paths_match_case_insensitively(addon, scene, yw_pmx, tmp_path):
    """Models made on Windows name textures in any case: tex/diffuse.png must find Tex/DIFFUSE.png."""
    import shutil

    (tmp_path / "Tex").mkdir()
    shutil.copy(yw_pmx, tmp_path / "model.pmx")
    shutil.copy(yw_pmx.parent / "tex" / "diffuse.png", tmp_path / "Tex" / "DIFFUSE.png")
    res = addon.pmx_import.import_pmx(tmp_path / "model.pmx", bpy.context)
    tex = [n for n in res.materials[0].node_tree.nodes if n.type == "TEX_IMAGE"]
    assert len(tex) == 1 and tex[0].image.filepath.endswith("Tex/DIFFUSE.png") and res.warnings == []
