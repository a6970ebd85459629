"""Face morphs reach the model: Import PMX builds the PMX's vertex morphs (and the vertex part of its group morphs) as
shape keys at the converted offsets. On the real mat4 model, which has the six face morphs the job keys (まばたき,
ウィンク, ウィンク右 as vertex morphs; あ, い, う as groups of a vertex and a bone morph)."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import BPY_MISSING_REASON

bpy = pytest.importorskip("bpy", reason=BPY_MISSING_REASON)

FACE = ("まばたき", "ウィンク", "ウィンク右", "あ", "い", "う")


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
