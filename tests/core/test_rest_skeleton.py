"""core.rest_skeleton: the built-in skeleton against its source file, PMX loading, name lookup, forward kinematics."""
from __future__ import annotations

import numpy as np
import pytest

from core import quat as Q
from core.rest_skeleton import BONE_ALIASES, STANDARD_BONES, IkChain, RestSkeleton

Rotation = pytest.importorskip("scipy.spatial.transform").Rotation

MODELS = {
    "semi": "pmx/fixtures/test_semi_basic_bone.pmx",
    "basic": "pmx/fixtures/test_basic_bone.pmx",
    "mat4": "pmx/mat4_trace_model/mat4_v4_trace_model.pmx",
    "yw": "pmx/yw_test_model/yw_test_model.pmx",
}


@pytest.fixture(scope="module")
def pmx_model(shared_data):
    from core.formats import pmx
    cache = {}

    def get(key):
        if key not in cache:
            cache[key] = pmx.read(shared_data / MODELS[key])
        return cache[key]
    return get


def test_builtin_constants_equal_the_fixture_file(pmx_model):
    """STANDARD_BONES are test_semi_basic_bone.pmx's numbers (rounded to 3 decimals), parents = nearest kept ancestor."""
    model = pmx_model("semi")
    by_name = model.bone_by_name
    kept = {b[0] for b in STANDARD_BONES}
    for name, name_en, pos, parent in STANDARD_BONES:
        bone = by_name[name]
        assert bone.name_en == name_en
        assert np.abs(np.asarray(pos) - bone.position).max() <= 5e-4 + 1e-9, name
        p = bone.parent
        while p != -1 and model.bones[p].name not in kept:
            p = model.bones[p].parent
        assert (model.bones[p].name if p != -1 else None) == parent, name
    std = RestSkeleton.standard()
    # the IK chains are the file's
    file_chains = RestSkeleton.from_pmx(model).ik_chains
    assert sorted(std.ik_chains, key=lambda c: c.bone) == sorted(file_chains, key=lambda c: c.bone)
    # file order is kept, so every parent comes before its child
    assert all(p < i for i, p in enumerate(std.parents))


def test_from_pmx_real_models(pmx_model):
    for key, n_bones in (("mat4", 159), ("yw", 114), ("basic", 79), ("semi", 100)):
        model = pmx_model(key)
        rest = RestSkeleton.from_pmx(model)
        assert len(rest) == n_bones
        assert rest.model_name == model.header.name
        assert np.array_equal(rest.positions, np.array([b.position for b in model.bones]))
        chains = {c.bone: c for c in rest.ik_chains}
        assert chains["左足ＩＫ"] == IkChain("左足ＩＫ", "左足首", ("左ひざ", "左足"))
        assert chains["右つま先ＩＫ"] == IkChain("右つま先ＩＫ", "右つま先", ("右足首",))
        # docs/MMD_FACTS.md §2.5: the IK bone rests at its target
        for c in rest.ik_chains:
            assert np.allclose(rest.positions[rest.find(c.bone)], rest.positions[rest.find(c.target)], atol=2e-3)
    mat4 = RestSkeleton.from_pmx(pmx_model("mat4"))
    i = mat4.find("上半身3")
    assert mat4.inherit_rotation[i] and mat4.names[mat4.inherit_source[i]] == "上半身2"
    assert mat4.inherit_ratio[i] == pytest.approx(0.4)
    # the 79-bone standard model's 足ＩＫ are roots (docs/MMD_FACTS.md §4)
    basic = RestSkeleton.from_pmx(pmx_model("basic"))
    assert basic.parents[basic.find("左足ＩＫ")] == -1 and "上半身2" not in basic


def test_find_names_and_aliases(pmx_model):
    std = RestSkeleton.standard()
    assert std.find("左足ＩＫ") == std.find("leg IK_L") == std.find("LEG_ik_l")
    assert std.find("センター") == std.find("center") == 0
    assert std.find("upper body2") == std.find("上半身2")
    assert BONE_ALIASES["右ひじ"] == "elbow_R"
    # exact matching: ASCII "IK" is not the full-width bone
    with pytest.raises(KeyError, match="full-width"):
        std.find("左足IK")
    assert std.index_of("groove") is None and "groove" not in std
    yw = RestSkeleton.from_pmx(pmx_model("yw"))
    assert yw.names[yw.find("leg IKP_L")] == "左足IK親"
    assert yw.names[yw.find("waist cancel_L")] == "腰キャンセル左"
    # mat4's own English names: unique ones are accepted, duplicated ones are not guessed
    mat4 = RestSkeleton.from_pmx(pmx_model("mat4"))
    assert mat4.names[mat4.find("J_Bip_L_UpperArm")] == "左腕"
    assert mat4.index_of("J_Bip_C_Head") is None      # 4 bones share it


def _reference_fk(rest: RestSkeleton, rot: dict, loc: dict) -> np.ndarray:
    """Independent FK with 4x4 matrices, one frame, no inheritance: world_b = world_p · T(rest_b - rest_p + t) · R(q)."""
    n = len(rest)
    world = [None] * n
    done = np.zeros(n, bool)
    while not done.all():
        for i in range(n):
            p = rest.parents[i]
            if done[i] or (p >= 0 and not done[p]):
                continue
            m = np.eye(4)
            m[:3, 3] = rest.positions[i] - (rest.positions[p] if p >= 0 else 0) + loc.get(rest.names[i], 0)
            r = np.eye(4)
            if rest.names[i] in rot:
                r[:3, :3] = Rotation.from_quat(rot[rest.names[i]]).as_matrix()
            world[i] = (world[p] if p >= 0 else np.eye(4)) @ m @ r
            done[i] = True
    return np.array([w[:3, 3] for w in world])


@pytest.mark.parametrize("key", ["mat4", "yw"])
def test_fk_against_matrix_reference(pmx_model, key):
    rest = RestSkeleton.from_pmx(pmx_model(key))
    rng = np.random.default_rng(5)
    names = [n for n in rest.names if rng.random() < 0.5]
    rot = {n: Rotation.random(random_state=rng.integers(1 << 30)).as_quat() for n in names}
    loc = {n: rng.normal(size=3) for n in rest.names if rng.random() < 0.2}
    pos, wrot = rest.fk({k: v[None] for k, v in rot.items()}, {k: v[None] for k, v in loc.items()}, inherit=False)
    assert pos.shape == (1, len(rest), 3) and wrot.shape == (1, len(rest), 4)
    assert np.abs(pos[0] - _reference_fk(rest, rot, loc)).max() < 1e-9
    # subset evaluation gives the same numbers
    sub, _ = rest.fk({k: v[None] for k, v in rot.items()}, {k: v[None] for k, v in loc.items()}, inherit=False,
                     bones=["左足首", "頭"])
    assert np.allclose(sub[0], pos[0, [rest.find("左足首"), rest.find("頭")]])


def test_fk_semantics_on_the_builtin_skeleton():
    std = RestSkeleton.standard()
    t = 3
    # rest pose
    pos, rot = std.fk(n_frames=t)
    assert np.allclose(pos, std.positions) and np.allclose(rot, Q.identity((t, len(std))))
    # センター translation moves the body, not the (root) leg IKs
    move = np.tile([1.0, 2.0, -3.0], (t, 1))
    pos, _ = std.fk(locations={"センター": move})
    assert np.allclose(pos[:, std.find("頭")], std.positions[std.find("頭")] + move)
    assert np.allclose(pos[:, std.find("左足ＩＫ")], std.positions[std.find("左足ＩＫ")])
    # bending the knee is a negative rotation about +X: the shin swings toward +Z (docs/MMD_FACTS.md §2.2)
    bend = Q.from_axis_angle(np.tile([1.0, 0, 0], (t, 1)), -np.radians([10, 45, 90]))
    pos, rot = std.fk({"左ひざ": bend})
    ank = pos[:, std.find("左足首")]
    assert np.all(np.diff(ank[:, 2]) > 0) and ank[0, 2] > 0
    assert np.allclose(Q.angle(rot[:, std.find("左つま先")]), np.radians([10, 45, 90]))
    # a translation key is in the parent's posed axes
    turn = Q.from_axis_angle([[0, 1.0, 0]], [np.pi / 2])
    pos, _ = std.fk({"上半身": turn}, {"上半身2": np.array([[1.0, 0, 0]])})
    i2, i1 = std.find("上半身2"), std.find("上半身")
    expected = std.positions[i1] + Q.rotate(turn[0], std.positions[i2] - std.positions[i1] + [1.0, 0, 0])
    assert np.allclose(pos[0, i2], expected)
    assert np.isclose(expected[2], std.positions[i2, 2] - 1.0, atol=0.1)   # +X turned by +90° about Y is -Z


def test_fk_rotation_inheritance_mat4(pmx_model):
    """mat4's 上半身3 inherits 0.4 of 上半身2's rotation: the unkeyed 首 turns by 1.4 θ."""
    rest = RestSkeleton.from_pmx(pmx_model("mat4"))
    ang = np.radians([10.0, 30.0])
    q = Q.from_axis_angle(np.tile([0, 1.0, 0], (2, 1)), ang)
    _, rot = rest.fk({"上半身2": q})
    assert np.allclose(Q.angle(rot[:, rest.find("首")]), 1.4 * ang)
    _, rot = rest.fk({"上半身2": q}, inherit=False)
    assert np.allclose(Q.angle(rot[:, rest.find("首")]), ang)
    # yw: 腰キャンセル inherits -1 x 腰, so a 腰 key leaves the thighs' orientation alone
    yw = RestSkeleton.from_pmx(pmx_model("yw"))
    _, rot = yw.fk({"腰": q})
    assert np.allclose(Q.angle(rot[:, yw.find("左足")]), 0.0, atol=1e-12)
    assert np.allclose(Q.angle(rot[:, yw.find("上半身")]), ang)


def test_errors():
    std = RestSkeleton.standard()
    with pytest.raises(ValueError, match=r"\(T, 4\)"):
        std.fk({"頭": np.zeros((3, 3))})
    with pytest.raises(ValueError, match="frames"):
        std.fk({"頭": Q.identity(3)}, {"センター": np.zeros((4, 3))})
    with pytest.raises(KeyError):
        std.fk({"尻尾": Q.identity(3)})
    with pytest.raises(ValueError, match="cycle"):
        RestSkeleton(names=["a", "b"], positions=np.zeros((2, 3)), parents=[1, 0])
    with pytest.raises(ValueError, match="positions"):
        RestSkeleton(names=["a", "b"], positions=np.zeros((3, 3)), parents=[-1, 0])
    with pytest.raises(ValueError, match="out of range"):
        RestSkeleton(names=["a"], positions=np.zeros((1, 3)), parents=[4])
