"""Face morphs reach the model: Import PMX builds the PMX's vertex morphs (and the vertex part of its group morphs) as
shape keys at the converted offsets; Apply, dense and reduced, keys the motion's morph weights on them (reporting the
morphs no mesh has); Export VMD gives the keys back. On the real mat4 model, which has the six face morphs the job
keys (まばたき, ウィンク, ウィンク右 as vertex morphs; あ, い, う as groups of a vertex and a bone morph)."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import BPY_MISSING_REASON

bpy = pytest.importorskip("bpy", reason=BPY_MISSING_REASON)

FACE = ("まばたき", "ウィンク", "ウィンク右", "あ", "い", "う")
MISSING = "存在しない"
T = 60


@pytest.fixture(scope="module")
def mat4_pmx(pmx_dir):
    return pmx_dir / "mat4_trace_model" / "mat4_v4_trace_model.pmx"


@pytest.fixture
def mat4(addon, scene, mat4_pmx):
    pmx = addon.core("formats.pmx")
    model = pmx.read(mat4_pmx)
    return model, addon.pmx_import.build_model(model, bpy.context)


def _expected_delta(pmx, model, i, weight=1.0, out=None):
    """MMD-unit offsets (V, 3) of morph i, groups expanded by hand (the test's own reading of MMD_FACTS §3.5)."""
    out = np.zeros((len(model.vertices), 3)) if out is None else out
    m = model.morphs[i]
    if m.type == pmx.MORPH_VERTEX:
        np.add.at(out, m.offsets["index"], weight * m.offsets["offset"].astype(np.float64))
    elif m.type == pmx.MORPH_GROUP:
        for j, w in zip(m.offsets["index"], m.offsets["weight"]):
            _expected_delta(pmx, model, int(j), weight * float(w), out)
    return out


def _key_co(kb) -> np.ndarray:
    co = np.empty(len(kb.data) * 3, dtype=np.float32)
    kb.data.foreach_get("co", co)
    return co.reshape(-1, 3)


def test_import_builds_vertex_and_group_morphs_as_shape_keys(addon, mat4):
    pmx = addon.core("formats.pmx")
    conv = addon.core("conventions")
    model, res = mat4
    by_name = {m.name: i for i, m in enumerate(model.morphs)}
    assert [model.morphs[by_name[n]].type for n in FACE] == [pmx.MORPH_VERTEX] * 3 + [pmx.MORPH_GROUP] * 3
    sk = res.mesh.data.shape_keys
    assert sk is not None and sk.use_relative
    names = [kb.name for kb in sk.key_blocks]
    vertexish = [m.name for i, m in enumerate(model.morphs) if m.type == pmx.MORPH_VERTEX
                 or (m.type == pmx.MORPH_GROUP and _expected_delta(pmx, model, i).any())]
    assert names == ["Basis"] + vertexish and len(names) == 151
    assert set(FACE) <= set(names)
    assert all(kb.value == 0.0 for kb in sk.key_blocks[1:])   # nothing shows until a motion keys it

    pos = np.asarray(model.vertices.positions, dtype=np.float64)
    basis = _key_co(sk.key_blocks["Basis"])
    assert np.allclose(basis, conv.mmd_to_blender(pos), atol=1e-6)
    # One vertex, read the slow way: まばたき's most displaced vertex sits at the converted PMX position + offset.
    blink = model.morphs[by_name["まばたき"]].offsets
    k = int(np.argmax(np.linalg.norm(blink["offset"], axis=1)))
    v = int(blink["index"][k])
    want = conv.mmd_to_blender(pos[v] + blink["offset"][k].astype(np.float64))
    assert np.linalg.norm(blink["offset"][k]) > 0.1
    assert np.allclose(tuple(sk.key_blocks["まばたき"].data[v].co), want, atol=1e-6)
    assert np.allclose(tuple(res.mesh.data.vertices[v].co), conv.mmd_to_blender(pos[v]), atol=1e-6)
    # Every key, every vertex: vertex morphs and groups (weighted members, e.g. 真面目右 = 0.25 怒り右 + 0.7 下右).
    for name in FACE + ("真面目右", "にこ", "ナチュラル"):
        d = _expected_delta(pmx, model, by_name[name])
        got = _key_co(sk.key_blocks[name])
        assert np.allclose(got, conv.mmd_to_blender(pos + d), atol=2e-6), name
        assert np.array_equal(got[~d.any(axis=1)], basis[~d.any(axis=1)]), name   # untouched vertices exact
    # What cannot be a shape key is said, not dropped silently.
    assert any("21 group morphs also have bone/material members" in w for w in res.warnings), res.warnings
    assert any("14 bone, 7 material" in w for w in res.warnings), res.warnings


def test_shape_keys_deform_the_evaluated_mesh(addon, mat4):
    """The preview: a key's value blends the evaluated mesh linearly (at rest pose), e.g. あ at 0.5."""
    pmx = addon.core("formats.pmx")
    conv = addon.core("conventions")
    model, res = mat4
    idx = [m.name for m in model.morphs].index("あ")
    res.mesh.data.shape_keys.key_blocks["あ"].value = 0.5
    dg = bpy.context.evaluated_depsgraph_get()
    ev = res.mesh.evaluated_get(dg)
    me = ev.to_mesh()
    try:
        co = np.empty(len(me.vertices) * 3, dtype=np.float32)
        me.vertices.foreach_get("co", co)
    finally:
        ev.to_mesh_clear()
    pos = np.asarray(model.vertices.positions, dtype=np.float64)
    want = conv.mmd_to_blender(pos + 0.5 * _expected_delta(pmx, model, idx))
    assert np.abs(co.reshape(-1, 3) - want).max() < 1e-5


def test_a_model_without_morphs_gets_no_shape_keys(addon, scene, yw_pmx):
    res = addon.pmx_import.import_pmx(yw_pmx, bpy.context)
    assert res.mesh.data.shape_keys is None
    assert not any("morph" in w for w in res.warnings)


def _face_motion(addon, arm):
    """A short motion with a head turn and known weights: a blink, a wink, a mouth opening, and one morph the model
    lacks."""
    motion_mod = addon.core("motion")
    t = np.arange(T, dtype=np.float64)
    ang = 0.3 * np.sin(t / 8)
    head = np.c_[np.zeros(T), np.sin(ang / 2), np.zeros(T), np.cos(ang / 2)]
    blink = np.zeros(T)
    blink[20:26] = [0.3, 0.8, 1.0, 1.0, 0.6, 0.2]
    wink = np.clip((t - 30) / 10, 0, 1)
    mouth = 0.5 - 0.5 * np.cos(t / 5)
    return motion_mod.BoneMotion(frames=np.arange(T), rotations={"頭": head},
                                 morphs={"まばたき": blink, "ウィンク右": wink, "あ": mouth, MISSING: mouth})


def _morph_fcurves(addon, mesh) -> dict:
    ad = mesh.data.shape_keys.animation_data
    assert ad is not None and ad.action is not None
    bag = addon.compat.channelbag_for_slot(ad.action, ad.action_slot, ensure=False)
    return {fc.data_path.split('"')[1]: fc for fc in bag.fcurves}


@pytest.mark.parametrize("dense", [True, False], ids=["dense", "reduced"])
def test_apply_keys_the_morphs_and_export_gives_them_back(addon, mat4, scene, tmp_path, dense):
    vmd = addon.core("formats.vmd")
    _, res = mat4
    arm, mesh = res.armature, res.mesh
    motion = _face_motion(addon, arm)
    if dense:
        action = addon.action_writer.apply_motion(arm, motion, name="face", scene=scene)
    else:
        action = addon.op_import_vmd.apply_reduced(arm, motion, name="face", scene=scene)
    tol = 1e-6 if dense else 0.0101   # keyreduce keeps morphs within 0.01
    assert list(action["mmd_missing_morphs"]) == [MISSING]
    fcs = _morph_fcurves(addon, mesh)
    assert set(fcs) == {"まばたき", "ウィンク右", "あ"}
    kb = mesh.data.shape_keys.key_blocks
    for name, fc in fcs.items():
        w = motion.morphs[name]
        assert np.abs([fc.evaluate(f) for f in range(T)] - w).max() <= tol, name
    for f in (0, 21, 22, 35, 44, 59):   # what the preview shows when the frame changes
        scene.frame_set(f)
        for name in fcs:
            assert abs(kb[name].value - motion.morphs[name][f]) <= tol, (name, f)
    assert kb["ウィンク"].value == 0.0   # not in the motion: untouched

    out = tmp_path / "face.vmd"
    addon.vmd_export.export_vmd(arm, out)
    back = vmd.read(out)
    names = vmd.decode_names(back.morph_keys["name"])
    assert set(names.tolist()) == {"まばたき", "ウィンク右", "あ"}
    for name in set(names.tolist()):
        k = back.morph_keys[names == name]
        played = np.interp(np.arange(T), k["frame"].astype(np.float64), k["weight"].astype(np.float64))
        assert np.abs(played - motion.morphs[name]).max() <= tol + 1e-6, name
    assert len(back.bone_keys) > 0


def test_dense_apply_keeps_bones_and_morphs_on_the_same_frames(addon, mat4, scene, tmp_path):
    """A motion starting at frame 3, exported with the scene starting at 1 (MMD Tools' habit): the dense action says
    VMD frame = Blender frame, as its morph action does, so bones and morphs both start at VMD frame 3."""
    vmd = addon.core("formats.vmd")
    motion_mod = addon.core("motion")
    _, res = mat4
    m = _face_motion(addon, res.armature)
    late = motion_mod.BoneMotion(frames=m.frames + 3, rotations=m.rotations, morphs=m.morphs)
    addon.action_writer.apply_motion(res.armature, late, name="late", scene=scene)
    scene.frame_start = 1
    out = tmp_path / "late.vmd"
    addon.vmd_export.export_vmd(res.armature, out)
    back = vmd.read(out)
    assert int(back.bone_keys["frame"].min()) == 3 == int(back.morph_keys["frame"].min())
    assert int(back.bone_keys["frame"].max()) == T + 2 == int(back.morph_keys["frame"].max())


def test_apply_operator_reports_the_morphs_the_model_lacks(addon, mat4, scene, tmp_path, monkeypatch):
    _, res = mat4
    motion = _face_motion(addon, res.armature)
    props = scene.anime_mmd
    props.target_armature = res.armature
    (tmp_path / "face.npz").write_bytes(b"stand-in: _motion_for is replaced")
    props.result_npz = str(tmp_path / "face.npz")
    monkeypatch.setattr(addon.operators, "_motion_for", lambda props, obj: (motion, "face"))
    warned = []
    real = addon.op_import_vmd.missing_morphs_warning
    monkeypatch.setattr(addon.op_import_vmd, "missing_morphs_warning",
                        lambda missing, name: warned.append(list(missing)) or real(missing, name))
    for dense in (True, False):
        props.dense_keys = dense
        assert bpy.ops.anime_mmd.apply() == {"FINISHED"}
        assert "3 morphs keyed" in props.status
    assert warned == [[MISSING], [MISSING]]
    assert MISSING in real([MISSING], "x") and "add shape keys" in real([MISSING], "x")


def test_import_vmd_face_morphs_round_trip_on_an_imported_model(addon, mat4, tmp_path):
    """A hand-made VMD keying the six face morphs: Import VMD keys all six on the imported model's shape keys, Export
    VMD writes the same morph records."""
    vmd = addon.core("formats.vmd")
    _, res = mat4
    rng = np.random.default_rng(11)
    rows = []
    for n in FACE:
        for f in np.unique(rng.integers(0, 120, size=7)):
            rows.append((n, int(f), float(np.round(rng.uniform(0, 1), 3))))
    keys = np.zeros(len(rows), dtype=vmd.MORPH_KEY_DTYPE)
    for i, (n, f, w) in enumerate(rows):
        keys[i] = (vmd.encode_name(n, 15), f, w)
    head = vmd.make_bone_keys("頭", np.array([0]), np.zeros((1, 3)), np.array([[0.0, 0.0, 0.0, 1.0]]))
    src = vmd.VmdMotion(model_name="mat4", bone_keys=head, morph_keys=vmd.sort_keys(keys))
    path = tmp_path / "face_keys.vmd"
    vmd.write(path, src)
    got = addon.op_import_vmd.import_vmd(res.armature, path)
    assert got.morph_count == 6 and not any("morphs" in w for w in got.warnings)
    out = tmp_path / "back.vmd"
    addon.vmd_export.export_vmd(res.armature, out)
    back = vmd.read(out)
    rec = lambda m: sorted((vmd.decode_name(k["name"]), int(k["frame"]), round(float(k["weight"]), 5))  # noqa: E731
                           for k in m.morph_keys)
    assert rec(back) == rec(src)
