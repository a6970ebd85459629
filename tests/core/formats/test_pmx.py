"""Tests for core.formats.pmx on the shared real PMX files (docs/MMD_FACTS.md §3.7, 4) and on a synthetic PMX 2.1 file
written here byte by byte (SDEF, QDEF, every morph type, soft bodies: none of the real files has them)."""
from __future__ import annotations

import math
import struct
import time
from pathlib import Path

import numpy as np
import pytest

from core.formats import pmx
from core.formats.errors import FormatError

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
PMX_DIR = DATA / "pmx"
YW = PMX_DIR / "yw_test_model" / "yw_test_model.pmx"
MAT4 = PMX_DIR / "mat4_trace_model" / "mat4_v4_trace_model.pmx"
BAD = PMX_DIR / "fixtures" / "joint_orient_test.pmx"

if not YW.exists() or not MAT4.exists():
    pytest.skip(f"shared PMX data missing under {PMX_DIR}", allow_module_level=True)

ALL_PMX = sorted(PMX_DIR.rglob("*.pmx"))
GOOD_PMX = [p for p in ALL_PMX if p.name != BAD.name]


@pytest.fixture(scope="module")
def yw():
    return pmx.read(YW)


@pytest.fixture(scope="module")
def mat4():
    return pmx.read(MAT4)


# ------------------------------------------------------------------------------------------------------------------
# Real files
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", GOOD_PMX, ids=lambda p: p.name)
def test_real_file_reads_to_eof_and_is_consistent(path):
    data = path.read_bytes()
    m = pmx.read(path)
    assert m.path == path
    assert m.header.version == 2.0
    n = len(m.vertices)
    v = m.vertices
    assert v.positions.shape == (n, 3) and v.positions.dtype == np.float32
    assert v.additional_uvs.shape == (n, m.header.additional_uv, 4)
    assert v.bone_indices.shape == (n, 4) and v.bone_indices.dtype == np.int32
    assert m.faces.dtype == np.int32 and m.faces.shape[1] == 3
    if n:
        assert m.faces.min() >= 0 and m.faces.max() < n
        assert v.bone_indices.max() < len(m.bones)
        assert (v.bone_indices[:, 0] >= 0).all()
    # materials consume the face index buffer consecutively
    assert sum(mat.index_count for mat in m.materials) == 3 * len(m.faces)
    # read() consumed exactly the file: one extra byte is an error at that offset
    with pytest.raises(FormatError) as ei:
        pmx.loads(data + b"\0", name=path.name)
    assert ei.value.offset == len(data)
    assert "trailing" in str(ei.value) and path.name in str(ei.value)


def test_joint_orient_fixture_is_rejected_at_vertex_1():
    data = BAD.read_bytes()
    with pytest.raises(FormatError) as ei:
        pmx.read(BAD)
    e = ei.value
    msg = str(e)
    assert str(BAD) in msg and f"byte {e.offset}" in msg and "vertex 1:" in msg
    # Independent layout walk: header (4 magic + 4 version + 1 + 8 globals), 4 UTF-8 texts, vertex count; with
    # the declared 1-byte bone index a BDEF1 vertex record without additional UVs is 32 + 1 + 1 + 4 = 38 bytes.
    assert data[8] == 8 and data[9] == 1 and data[10] == 0 and data[14] == 1  # globals: utf-8, 0 add. UV, bone 1
    pos = 17
    for _ in range(4):
        pos += 4 + struct.unpack_from("<i", data, pos)[0]
    first_vertex = pos + 4
    assert data[first_vertex + 32] == 0  # vertex 0 is BDEF1
    assert e.offset == first_vertex + 38
    assert "2-byte" in msg  # the diagnosis names the bone index size the records really use


def test_yw_counts(yw):
    h = yw.header
    assert (h.version, h.encoding, h.additional_uv) == (2.0, "utf-16-le", 1)
    assert (h.vertex_index_size, h.texture_index_size, h.material_index_size, h.bone_index_size,
            h.morph_index_size, h.rigid_body_index_size) == (2, 1, 1, 1, 1, 1)
    assert len(yw.vertices) == 2141
    assert np.bincount(yw.vertices.deform_type, minlength=5).tolist() == [1438, 616, 87, 0, 0]
    assert yw.faces.shape == (3516, 3)
    assert len(yw.textures) == 2 and len(yw.materials) == 1
    assert yw.materials[0].index_count == 3 * 3516
    assert len(yw.bones) == 114 and sum(b.is_ik for b in yw.bones) == 4
    assert len(yw.morphs) == 0 and len(yw.display_frames) == 9
    assert len(yw.rigid_bodies) == 19 and len(yw.joints) == 0 and yw.soft_bodies == []


def test_yw_deform_weights(yw):
    v = yw.vertices
    t = v.deform_type
    b1, b2 = t == 0, t == 1
    assert (v.weights[b1] == [1, 0, 0, 0]).all() and (v.bone_indices[b1, 1:] == -1).all()
    np.testing.assert_allclose(v.weights[b2, 0] + v.weights[b2, 1], 1.0, atol=1e-6)
    assert (v.weights[b2, 2:] == 0).all() and (v.bone_indices[b2, 2:] == -1).all()
    assert (v.bone_indices[b2, :2] >= 0).all()
    assert np.isnan(v.sdef_c).all()  # no SDEF rows in this model
    np.testing.assert_allclose(np.linalg.norm(v.normals, axis=1), 1.0, atol=1e-3)
    assert np.isfinite(v.edge_scale).all()


def test_mat4_counts(mat4):
    h = mat4.header
    assert (h.version, h.encoding, h.additional_uv) == (2.0, "utf-16-le", 0)
    assert (h.vertex_index_size, h.texture_index_size, h.material_index_size, h.bone_index_size,
            h.morph_index_size, h.rigid_body_index_size) == (2, 1, 1, 2, 2, 1)
    assert len(mat4.vertices) == 59947
    assert np.bincount(mat4.vertices.deform_type, minlength=5).tolist() == [17841, 29278, 12828, 0, 0]
    assert mat4.faces.shape == (60024, 3)
    assert len(mat4.textures) == 43 and len(mat4.materials) == 35
    assert len(mat4.bones) == 159 and sum(b.is_ik for b in mat4.bones) == 4
    assert len(mat4.morphs) == 171
    types = [m.type for m in mat4.morphs]
    assert (types.count(pmx.MORPH_VERTEX), types.count(pmx.MORPH_GROUP), types.count(pmx.MORPH_BONE),
            types.count(pmx.MORPH_MATERIAL)) == (106, 44, 14, 7)
    assert len(mat4.display_frames) == 14 and len(mat4.rigid_bodies) == 54 and len(mat4.joints) == 50
    starts = [m.index_start for m in mat4.materials]
    assert starts[0] == 0 and all(a.index_start + a.index_count == b.index_start
                                  for a, b in zip(mat4.materials, mat4.materials[1:]))


def test_mat4_morph_and_physics_contents(mat4):
    nv, nb, nm, nmat = len(mat4.vertices), len(mat4.bones), len(mat4.morphs), len(mat4.materials)
    for m in mat4.morphs:
        idx = m.offsets["index"]
        assert idx.dtype == np.int32
        if m.type == pmx.MORPH_VERTEX:
            assert m.offsets["offset"].shape == (len(m), 3) and (idx >= 0).all() and (idx < nv).all()
        elif m.type == pmx.MORPH_GROUP:
            assert (idx >= 0).all() and (idx < nm).all() and np.isfinite(m.offsets["weight"]).all()
        elif m.type == pmx.MORPH_BONE:
            assert (idx >= 0).all() and (idx < nb).all()
            np.testing.assert_allclose(np.linalg.norm(m.offsets["rotation"], axis=1), 1.0, atol=1e-3)
        elif m.type == pmx.MORPH_MATERIAL:
            assert (idx >= -1).all() and (idx < nmat).all() and set(m.offsets["op"].tolist()) <= {0, 1}
    assert all(-1 <= rb.bone < nb and rb.shape in (0, 1, 2) and rb.mode in (0, 1, 2) for rb in mat4.rigid_bodies)
    nr = len(mat4.rigid_bodies)
    assert all(0 <= j.rigid_a < nr and 0 <= j.rigid_b < nr for j in mat4.joints)
    assert [f.special for f in mat4.display_frames[:2]] == [True, True]


FIXTURE_BONES = {
    "test_basic_bone.pmx": (79, 4), "test_semi_basic_bone.pmx": (100, 4), "test_given_bone_comprehensive.pmx": (23, 0),
    "test_append_bone.pmx": (9, 0), "test_fix_axis.pmx": (5, 0), "bone_hierarchy_test.pmx": (5, 0),
    "bone_flag_test.pmx": (3, 0), "bone_hierarchy_test2.pmx": (3, 0), "constraint_test.pmx": (2, 0),
    "constraint_test2.pmx": (2, 0), "constraint_test3.pmx": (2, 0), "constraint_test4.pmx": (2, 0),
    "matcap_sample.pmx": (2, 0), "uv_morph_test.pmx": (2, 0), "test_1bone_cube.pmx": (1, 0),
}


@pytest.mark.parametrize("name", sorted(FIXTURE_BONES))
def test_fixture_bone_counts(name):
    m = pmx.read(PMX_DIR / "fixtures" / name)
    assert (len(m.bones), sum(b.is_ik for b in m.bones)) == FIXTURE_BONES[name]
    assert m.header.encoding == "utf-16-le"
    if name.startswith("constraint_test"):
        assert (len(m.rigid_bodies), len(m.joints)) == (2, 1)
    if name == "uv_morph_test.pmx":
        assert m.morphs == []
    if name == "test_given_bone_comprehensive.pmx":
        assert m.header.bone_index_size == 2


def test_standard_fixture_has_root_leg_iks():
    m = pmx.read(PMX_DIR / "fixtures" / "test_basic_bone.pmx")
    for absent in ("全ての親", "グルーブ", "腰", "上半身2", "左肩P", "左足D", "左足IK親"):
        assert m.bone_index(absent) is None
    for side in "左右":
        assert m.bone_by_name[f"{side}足ＩＫ"].parent == -1
    ik = m.bone_by_name["左足ＩＫ"].ik
    assert (ik.loop_count, ik.limit_angle) == (40, pytest.approx(2.0))


def test_yw_bone_facts(yw):
    by = yw.bone_by_name
    assert [b.index for b in yw.bones] == list(range(114))
    # 左肩C inherits -1 x 左肩P (rotation inherit)
    c = by["左肩C"]
    assert c.inherit_rotation and c.inherit_source == by["左肩P"].index and c.inherit_ratio == pytest.approx(-1.0)
    # twist bones: fixed axis on 腕捩, partial inherit on 腕捩1..3
    assert by["左腕捩"].has_fixed_axis and by["左腕捩"].fixed_axis.shape == (3,)
    np.testing.assert_allclose(np.linalg.norm(by["左腕捩"].fixed_axis), 1.0, atol=1e-3)
    for k, r in ((1, 0.25), (2, 0.5), (3, 0.75)):
        b = by[f"左腕捩{k}"]
        assert b.inherit_source == by["左腕捩"].index and b.inherit_ratio == pytest.approx(r)
    assert by["左足D"].inherit_source == by["左足"].index and by["左足D"].inherit_ratio == pytest.approx(1.0)
    assert by["腰キャンセル左"].inherit_source == by["腰"].index and by["腰キャンセル左"].inherit_ratio == -1
    # IK: full-width ＩＫ in the names, ASCII IK in 足IK親
    ik_names = sorted(b.name for b in yw.bones if b.is_ik)
    assert ik_names == sorted(["左足ＩＫ", "右足ＩＫ", "左つま先ＩＫ", "右つま先ＩＫ"])
    assert "\uff29\uff2b" in ik_names[0]
    leg = by["左足ＩＫ"]
    assert leg.parent == by["左足IK親"].index and by["左足IK親"].parent == by["全ての親"].index
    assert leg.ik.target == by["左足首"].index
    assert (leg.ik.loop_count, leg.ik.limit_angle) == (200, pytest.approx(2.0))
    knee, thigh = leg.ik.links
    assert knee.bone == by["左ひざ"].index and thigh.bone == by["左足"].index
    assert knee.has_limit and not thigh.has_limit and thigh.limit_min is None
    np.testing.assert_allclose(np.degrees(knee.limit_min), [-170, 0, 0], atol=1e-3)
    np.testing.assert_allclose(np.degrees(knee.limit_max), [-0.5, 0, 0], atol=1e-3)
    toe = by["左つま先ＩＫ"]
    assert toe.parent == leg.index and toe.ik.target == by["左つま先"].index
    assert [l.bone for l in toe.ik.links] == [by["左足首"].index]
    assert (toe.ik.loop_count, toe.ik.limit_angle) == (50, pytest.approx(4.0))
    # each IK bone rests at its target (docs/MMD_FACTS.md §2.5)
    np.testing.assert_allclose(leg.position, by["左足首"].position, atol=1e-5)
    # axes: model's left is +X, センター at y ~ 8
    left = [b for b in yw.bones if b.name.startswith("左")]
    assert len(left) > 30 and all(b.position[0] > 0 for b in left)
    assert all(b.position[0] < 0 for b in yw.bones if b.name.startswith("右"))
    center = by["センター"]
    assert center.position.dtype == np.float64 and 7.0 < center.position[1] < 9.0
    assert center.parent == by["全ての親"].index and by["全ての親"].parent == -1
    # the mirror: 右腕 = 左腕 with x negated
    np.testing.assert_allclose(by["右腕"].position, by["左腕"].position * [-1, 1, 1], atol=1e-4)
    assert yw.bone_index("存在しない") is None and yw.bone_index("センター") == center.index


def test_mat4_bone_facts(mat4):
    by = mat4.bone_by_name
    assert all(b.layer == 0 for b in mat4.bones)
    assert by["上半身3"].inherit_source == by["上半身2"].index and by["上半身3"].inherit_ratio == pytest.approx(0.4)
    assert by["左肩C"].inherit_ratio == pytest.approx(-1.0)
    assert by["左足ＩＫ"].parent == by["全ての親"].index
    knee = by["左足ＩＫ"].ik.links[0]
    np.testing.assert_allclose(np.degrees(knee.limit_min[0]), -180, atol=1e-3)
    np.testing.assert_allclose(np.degrees(knee.limit_max[0]), -0.5, atol=1e-3)
    assert (by["左足ＩＫ"].ik.loop_count, by["左足ＩＫ"].ik.limit_angle) == (40, pytest.approx(1.0))
    assert by["左つま先"].position[2] == pytest.approx(-1.708, abs=1e-3)
    assert by["左かかと"].position[2] == pytest.approx(1.005, abs=1e-3)
    assert by["左腕"].has_local_axes and by["左腕"].local_x.shape == (3,) and by["左腕"].local_z.shape == (3,)
    assert by["左腕捩"].has_fixed_axis and not by["センター"].has_local_axes
    for name in ("全ての親", "センター", "グルーブ", "腰", "上半身", "上半身2", "下半身", "首", "頭"):
        assert mat4.bone_index(name) is not None
    for absent in ("左足IK親", "左足D", "左足先EX", "左手先", "左ダミー"):
        assert mat4.bone_index(absent) is None


def test_mat4_read_is_fast():
    data = MAT4.read_bytes()
    pmx.loads(data)  # warm-up (imports, caches)
    t0 = time.perf_counter()
    pmx.loads(data)
    assert time.perf_counter() - t0 < 1.0


# ------------------------------------------------------------------------------------------------------------------
# Corrupt input
# ------------------------------------------------------------------------------------------------------------------
def test_truncated_copies_raise_with_offset():
    data = YW.read_bytes()
    rng = np.random.default_rng(0)
    cuts = {0, 3, 4, 8, 9, 16, 17, 20, 100, 1000, 50_000, 100_000, len(data) - 1}
    cuts |= set(rng.integers(1, len(data), 40).tolist())
    for k in sorted(cuts):
        with pytest.raises(FormatError) as ei:
            pmx.loads(data[:k], name="yw_cut.pmx")
        e = ei.value
        assert 0 <= e.offset <= k, (k, str(e))
        assert str(e).startswith(f"yw_cut.pmx: byte {e.offset}: ")


def test_every_prefix_of_a_small_real_file_is_rejected():
    data = (PMX_DIR / "fixtures" / "test_append_bone.pmx").read_bytes()
    pmx.loads(data)
    for k in range(len(data)):
        with pytest.raises(FormatError) as ei:
            pmx.loads(data[:k])
        assert ei.value.offset <= k


def test_mat4_truncated_in_vertices_and_morphs():
    data = MAT4.read_bytes()
    for k in (500_000, 2_600_000, len(data) - 10):
        with pytest.raises(FormatError) as ei:
            pmx.loads(data[:k], name="mat4")
        assert ei.value.offset <= k


def _patched(data: bytes, offset: int, raw: bytes) -> bytes:
    return data[:offset] + raw + data[offset + len(raw):]


@pytest.mark.parametrize("offset,raw,where,words", [
    (0, b"PMD ", 0, "magic"),
    (4, struct.pack("<f", 3.0), 4, "version"),
    (4, struct.pack("<f", 1.0), 4, "version"),
    (8, bytes([7]), 8, "globals count"),
    (9, bytes([2]), 9, "encoding"),
    (10, bytes([5]), 10, "additional UV"),
    (11, bytes([3]), 11, "vertex index size"),
    (14, bytes([3]), 14, "bone index size"),
    (16, bytes([0]), 16, "rigid index size"),
])
def test_corrupt_header(offset, raw, where, words):
    data = _patched(YW.read_bytes(), offset, raw)
    with pytest.raises(FormatError) as ei:
        pmx.loads(data, name="hdr.pmx")
    assert ei.value.offset == where and words in str(ei.value)


def test_version_2_1_float_is_accepted_with_tolerance():
    # 2.1 as stored by PmxEditor (0x40066666) parses the header; the 2.0 body then lacks the soft-body count.
    data = _patched(YW.read_bytes(), 4, struct.pack("<I", 0x40066666))
    with pytest.raises(FormatError) as ei:
        pmx.loads(data)
    assert "soft body count" in str(ei.value) and ei.value.offset == len(data)


def test_inflated_count_is_rejected_without_allocation():
    data = YW.read_bytes()
    m = pmx.loads(data)
    # the vertex count follows the four header texts
    pos = 17
    for _ in range(4):
        pos += 4 + struct.unpack_from("<i", data, pos)[0]
    assert struct.unpack_from("<i", data, pos)[0] == len(m.vertices)
    with pytest.raises(FormatError) as ei:
        pmx.loads(_patched(data, pos, struct.pack("<i", 2**31 - 1)))
    assert ei.value.offset == pos and "vertex count" in str(ei.value)
    with pytest.raises(FormatError):
        pmx.loads(_patched(data, pos, struct.pack("<i", -5)))


# ------------------------------------------------------------------------------------------------------------------
# Synthetic PMX 2.1 (written here with struct, following docs/MMD_FACTS.md §3.1-3.6)
# ------------------------------------------------------------------------------------------------------------------
SIZES = {"vertex": 1, "texture": 1, "material": 1, "bone": 2, "morph": 1, "rigid": 1}
N_VERT = 200  # > 127: 1-byte vertex indices must be read unsigned


class _Writer:
    def __init__(self, encoding="utf-8"):
        self.buf = bytearray()
        self.enc = encoding
        self.marks = {}

    def mark(self, key):
        self.marks.setdefault(key, len(self.buf))

    def put(self, fmt, *values):
        self.buf += struct.pack("<" + fmt, *values)

    def text(self, s):
        raw = s.encode(self.enc)
        self.put("i", len(raw))
        self.buf += raw

    def idx(self, kind, value, key=None):
        if key:
            self.mark(key)
        size = SIZES[kind]
        fmt = {1: "B", 2: "H", 4: "i"}[size] if kind == "vertex" else {1: "b", 2: "h", 4: "i"}[size]
        self.put(fmt, value)


def _vertex_expect(i):
    """Deform data of synthetic vertex i: (type, bones, weights, sdef (C, R0, R1) or None)."""
    t = i % 5
    if t == 0:
        return t, [i % 4], [1.0], None
    if t == 1:
        return t, [1, 2], [0.25], None
    if t == 2:
        return t, [0, 1, 2, -1], [0.1, 0.2, 0.3, 0.4], None
    if t == 3:
        return t, [0, 2], [0.6], ((1.0 + i, 2.0, 3.0), (4.0, 5.0, 6.0), (7.0, 8.0, -i))
    return t, [3, 1, 0, -1], [0.5, 0.25, 0.25, 0.0], None


def build_synthetic(encoding="utf-8"):
    w = _Writer(encoding)
    w.buf += b"PMX "
    w.put("f", 2.1)
    w.put("B", 8)
    w.put("8B", 1 if encoding == "utf-8" else 0, 1, *(SIZES[k] for k in ("vertex", "texture", "material", "bone", "morph", "rigid")))
    for s in ("合成モデル", "synthetic", "コメント", "comment"):
        w.text(s)
    # vertices
    w.put("i", N_VERT)
    for i in range(N_VERT):
        w.mark(f"vertex{i}")
        w.put("3f", 0.1 * i, 0.1 * i + 0.5, -0.1 * i)
        w.put("3f", 0.0, 1.0, 0.0)
        w.put("2f", i / N_VERT, 1 - i / N_VERT)
        w.put("4f", i, 0, 0, 1)
        t, bones, weights, sdef = _vertex_expect(i)
        w.put("B", t)
        for k, b in enumerate(bones):
            w.idx("bone", b, key=f"vertex{i}.bone{k}")
        if t != pmx.DEFORM_BDEF1:  # BDEF1 stores no weight
            w.put(f"{len(weights)}f", *weights)
        if sdef:
            for v3 in sdef:
                w.put("3f", *v3)
        w.put("f", 1.0 + i / 1000)
    # faces: 3 triangles, one using indices > 127
    w.put("i", 9)
    for k, v in enumerate((0, 1, 2, 197, 198, 199, 3, 150, 199)):
        w.idx("vertex", v, key=f"face{k}")
    # textures
    w.put("i", 2)
    w.text("tex\\a.png")
    w.text("toon.bmp")
    # materials
    w.put("i", 2)
    for m in range(2):
        w.text(f"材質{m}")
        w.text(f"mat{m}")
        w.put("4f", 0.5, 0.6, 0.7, 1.0)
        w.put("3f", 0.1, 0.2, 0.3)
        w.put("f", 5.0 + m)
        w.put("3f", 0.3, 0.2, 0.1)
        w.put("B", 0x01 | 0x10 | 0x20 if m == 0 else 0x80)
        w.put("4f", 0, 0, 0, 1)
        w.put("f", 1.5)
        w.idx("texture", 0 if m == 0 else -1, key=f"material{m}.texture")
        w.idx("texture", -1)
        w.put("B", 1 if m == 0 else 0)
        if m == 0:
            w.put("BB", 1, 3)  # shared toon03
        else:
            w.put("B", 0)
            w.idx("texture", 1)
        w.text("memo")
        w.mark(f"material{m}.count")
        w.put("i", 6 if m == 0 else 3)
    # bones
    w.mark("bones")
    w.put("i", 4)
    w.text("センター"); w.text("center"); w.put("3f", 0, 8, 0)
    w.idx("bone", -1, key="bone0.parent"); w.put("i", 0); w.put("H", 0x0001 | 0x0002 | 0x0004 | 0x0008 | 0x0010)
    w.idx("bone", 1, key="bone0.tail")
    w.text("上半身"); w.text("upper body"); w.put("3f", 0, 10, 0)
    w.idx("bone", 0); w.put("i", 0); w.put("H", 0x0002 | 0x0100 | 0x0400)
    w.put("3f", 0, 1, 0)                                    # tail offset
    w.idx("bone", 0, key="bone1.inherit"); w.put("f", -0.5)  # inherit rotation
    w.put("3f", 1, 0, 0)                                    # fixed axis
    w.text("左足"); w.text("leg_L"); w.put("3f", 1, 9, 0)
    w.idx("bone", 0); w.put("i", 1); w.put("H", 0x0080 | 0x0200 | 0x0800 | 0x1000 | 0x2000)
    w.put("3f", 0, -4, 0)
    w.idx("bone", 1); w.put("f", 2.0)                       # inherit translation
    w.put("3f", 1, 0, 0); w.put("3f", 0, 0, 1)              # local axes
    w.put("i", 7)                                           # external parent key
    w.text("左足ＩＫ"); w.text("leg IK_L"); w.put("3f", 1, 1, 0)
    w.idx("bone", -1); w.put("i", 0); w.put("H", 0x0002 | 0x0004 | 0x0020)
    w.put("3f", 0, 0, 1)
    w.idx("bone", 2, key="bone3.ik_target"); w.put("i", 40); w.put("f", 1.0); w.put("i", 2)
    w.idx("bone", 1, key="bone3.link0"); w.put("B", 1); w.put("3f", -math.pi, 0, 0); w.put("3f", -0.0087, 0, 0)
    w.idx("bone", 0); w.put("B", 0)
    # morphs, one of every type 0..10
    w.put("i", 11)
    for t in range(11):
        w.text(f"モーフ{t}"); w.text(f"morph{t}"); w.put("b", 4 if t else 1)
        w.mark(f"morph{t}.type"); w.put("b", t)
        if t in (0, 9):
            w.put("i", 2)
            w.idx("morph", 1, key=f"morph{t}.index0"); w.put("f", 0.5)
            w.idx("morph", 2); w.put("f", 1.0)
        elif t == 1:
            w.put("i", 2)
            w.idx("vertex", 199, key="morph1.index0"); w.put("3f", 1, 2, 3)
            w.idx("vertex", 0); w.put("3f", 0, 0, -1)
        elif t == 2:
            w.put("i", 1)
            w.idx("bone", 3, key="morph2.index0"); w.put("3f", 1, 2, 3); w.put("4f", 0, 0, 0.6, 0.8)
        elif 3 <= t <= 7:
            w.put("i", 1)
            w.idx("vertex", 5 + t); w.put("4f", 0.1 * t, 0.2, 0.3, 0.4)
        elif t == 8:
            w.put("i", 1)
            w.idx("material", -1, key="morph8.index0"); w.put("B", 1)
            w.put("28f", *[0.01 * k for k in range(28)])
        else:
            w.put("i", 1)
            w.idx("rigid", 1, key="morph10.index0"); w.put("B", 1); w.put("3f", 1, 2, 3); w.put("3f", 4, 5, 6)
    # display frames
    w.put("i", 3)
    for name, special, items in (("Root", 1, [(0, 0)]), ("表情", 1, [(1, 0), (1, 10)]), ("体", 0, [(0, 1), (0, 3)])):
        w.text(name); w.text(name); w.put("B", special); w.put("i", len(items))
        for j, (kind, ix) in enumerate(items):
            w.put("B", kind)
            w.idx("bone" if kind == 0 else "morph", ix, key=f"frame.{name}.{j}")
    # rigid bodies
    w.put("i", 2)
    for r in range(2):
        w.text(f"剛体{r}"); w.text(f"rigid{r}")
        w.idx("bone", 1 if r == 0 else -1, key=f"rigid{r}.bone")
        w.put("B", 3); w.put("H", 0xFFF7); w.put("B", 2)
        w.put("3f", 0.5, 1.0, 0.0); w.put("3f", 0, 10 + r, 0); w.put("3f", 0.1, 0.2, 0.3)
        w.put("5f", 1.0, 0.5, 0.6, 0.1, 0.9); w.put("B", r + 1)
    # joints
    w.put("i", 1)
    w.text("ジョイント"); w.text("joint"); w.put("B", 5)
    w.idx("rigid", 0); w.idx("rigid", 1, key="joint0.b")
    for k in range(8):
        w.put("3f", k, k + 0.5, -k)
    # soft bodies
    w.put("i", 1)
    w.text("ソフト"); w.text("soft"); w.put("B", 1); w.idx("material", 1); w.put("B", 3); w.put("H", 0xFFFE)
    w.put("B", 0x03); w.put("i", 2); w.put("i", 4); w.put("f", 1.5); w.put("f", 0.05); w.put("i", 2)
    w.put("12f", *[0.1 * k for k in range(12)])
    w.put("6f", *[1.0 + k for k in range(6)])
    w.put("4i", 1, 2, 3, 4)
    w.put("3i", 5, 6, 7)
    w.put("i", 2)
    w.idx("rigid", 0); w.idx("vertex", 10); w.put("B", 1)
    w.idx("rigid", 1); w.idx("vertex", 199, key="soft.anchor1.vertex"); w.put("B", 0)
    w.put("i", 2)
    w.idx("vertex", 3); w.idx("vertex", 198, key="soft.pin1")
    return bytes(w.buf), w.marks


@pytest.fixture(scope="module")
def synthetic():
    return build_synthetic()


def test_synthetic_header_and_vertices(synthetic):
    data, _ = synthetic
    m = pmx.loads(data, name="synthetic.pmx")
    h = m.header
    assert m.path is None
    assert (h.version, h.encoding, h.additional_uv, h.name, h.name_en, h.comment) == (
        2.1, "utf-8", 1, "合成モデル", "synthetic", "コメント")
    v = m.vertices
    i = np.arange(N_VERT)
    np.testing.assert_allclose(v.positions, np.stack([0.1 * i, 0.1 * i + 0.5, -0.1 * i], 1), rtol=1e-6)
    np.testing.assert_allclose(v.uvs[:, 0], i / N_VERT, rtol=1e-6)
    np.testing.assert_array_equal(v.additional_uvs[:, 0, 0], i)
    assert v.additional_uvs.shape == (N_VERT, 1, 4)
    np.testing.assert_allclose(v.edge_scale, 1 + i / 1000, rtol=1e-6)
    for k in range(N_VERT):
        t, bones, weights, sdef = _vertex_expect(k)
        assert v.deform_type[k] == t
        np.testing.assert_array_equal(v.bone_indices[k], bones + [-1] * (4 - len(bones)))
        if t == pmx.DEFORM_BDEF1:
            expect_w = [1, 0, 0, 0]
        elif t in (pmx.DEFORM_BDEF2, pmx.DEFORM_SDEF):
            expect_w = [weights[0], 1 - weights[0], 0, 0]
        else:
            expect_w = weights
        np.testing.assert_allclose(v.weights[k], expect_w, rtol=1e-6)
        if t == pmx.DEFORM_SDEF:
            np.testing.assert_allclose(v.sdef_c[k], sdef[0])
            np.testing.assert_allclose(v.sdef_r0[k], sdef[1])
            np.testing.assert_allclose(v.sdef_r1[k], sdef[2])
        else:
            assert np.isnan(v.sdef_c[k]).all() and np.isnan(v.sdef_r1[k]).all()
    assert np.bincount(v.deform_type).tolist() == [40] * 5
    assert m.faces.tolist() == [[0, 1, 2], [197, 198, 199], [3, 150, 199]]


def test_synthetic_materials_bones(synthetic):
    m = pmx.loads(synthetic[0])
    assert m.textures == ["tex\\a.png", "toon.bmp"]
    m0, m1 = m.materials
    assert (m0.name, m0.double_sided, m0.edge, m0.vertex_color, m0.line, m0.point) == ("材質0", True, True, True,
                                                                                       False, False)
    assert (m0.shared_toon, m0.toon, m0.texture, m0.sphere, m0.index_count, m0.index_start) == (True, 3, 0, -1, 6, 0)
    assert (m1.shared_toon, m1.toon, m1.texture, m1.line, m1.index_start, m1.specular_power) == (
        False, 1, -1, True, 6, 6.0)
    np.testing.assert_allclose(m0.diffuse, [0.5, 0.6, 0.7, 1.0], rtol=1e-6)
    center, upper, leg, ik = m.bones
    assert center.tail_is_bone and center.tail_bone == 1 and center.tail_offset is None and center.parent == -1
    assert center.rotatable and center.translatable and center.visible and center.operable and not center.is_ik
    assert not upper.tail_is_bone and upper.tail_bone == -1
    np.testing.assert_array_equal(upper.tail_offset, [0, 1, 0])
    assert upper.inherit_rotation and not upper.inherit_translation
    assert (upper.inherit_source, upper.inherit_ratio) == (0, -0.5)
    assert upper.has_fixed_axis and upper.fixed_axis.tolist() == [1, 0, 0] and upper.local_x is None
    assert leg.inherit_translation and leg.local_inherit and leg.after_physics and leg.external_parent
    assert (leg.inherit_source, leg.inherit_ratio, leg.external_key, leg.layer) == (1, 2.0, 7, 1)
    assert leg.local_x.tolist() == [1, 0, 0] and leg.local_z.tolist() == [0, 0, 1]
    assert ik.is_ik and ik.ik.target == 2 and ik.ik.loop_count == 40 and ik.ik.limit_angle == 1.0
    l0, l1 = ik.ik.links
    assert l0.bone == 1 and l0.limit_min[0] == pytest.approx(-math.pi) and l0.limit_max[0] == pytest.approx(-0.0087)
    assert l1.bone == 0 and l1.limit_min is None and l1.limit_max is None
    assert m.bone_index("左足ＩＫ") == 3 and m.bone_by_name["左足"] is leg


def test_synthetic_morphs_frames_physics(synthetic):
    m = pmx.loads(synthetic[0])
    mo = m.morphs
    assert [x.type for x in mo] == list(range(11))
    assert [x.type_name for x in mo][8:] == ["material", "flip", "impulse"]
    assert mo[0].offsets["index"].tolist() == [1, 2] and mo[0].offsets["weight"].tolist() == [0.5, 1.0]
    assert mo[9].offsets["index"].tolist() == [1, 2]
    assert mo[1].offsets["index"].tolist() == [199, 0]  # unsigned 1-byte vertex index
    np.testing.assert_array_equal(mo[1].offsets["offset"], [[1, 2, 3], [0, 0, -1]])
    np.testing.assert_allclose(mo[2].offsets["rotation"][0], [0, 0, 0.6, 0.8], rtol=1e-6)
    assert mo[2].offsets["index"][0] == 3
    for t in range(3, 8):
        assert mo[t].offsets["index"][0] == 5 + t and mo[t].offsets["offset"].shape == (1, 4)
        assert mo[t].offsets["offset"][0, 0] == pytest.approx(0.1 * t)
    mat = mo[8].offsets
    assert mat["index"][0] == -1 and mat["op"][0] == 1
    np.testing.assert_allclose(mat["diffuse"][0], [0, 0.01, 0.02, 0.03], atol=1e-7)
    assert mat["specular_power"][0] == pytest.approx(0.07) and mat["edge_size"][0] == pytest.approx(0.15)
    np.testing.assert_allclose(mat["toon_tint"][0], [0.24, 0.25, 0.26, 0.27], atol=1e-6)
    imp = mo[10].offsets
    assert imp["index"][0] == 1 and imp["local"][0] == 1 and imp["torque"][0].tolist() == [4, 5, 6]
    assert mo[3].panel == 4 and mo[0].panel == 1
    root, face, body = m.display_frames
    assert root.special and face.special and not body.special
    assert face.morph_indices == [0, 10] and body.bone_indices == [1, 3] and root.items == [(0, 0)]
    r0, r1 = m.rigid_bodies
    assert (r0.bone, r1.bone, r0.group, r0.collision_mask, r0.shape, r0.mode, r1.mode) == (1, -1, 3, 0xFFF7, 2, 1, 2)
    assert r1.position.tolist() == [0, 11, 0] and r0.friction == pytest.approx(0.9)
    (j,) = m.joints
    assert (j.type, j.rigid_a, j.rigid_b) == (5, 0, 1)
    assert j.spring_rotation.tolist() == [7, 7.5, -7] and j.position_min.tolist() == [2, 2.5, -2]
    (sb,) = m.soft_bodies
    assert (sb.name, sb.shape, sb.material, sb.group, sb.collision_mask, sb.flags) == ("ソフト", 1, 1, 3, 0xFFFE, 3)
    assert (sb.b_link_distance, sb.cluster_count, sb.aero_model) == (2, 4, 2)
    assert sb.mass == pytest.approx(1.5) and sb.margin == pytest.approx(0.05)
    np.testing.assert_allclose(sb.config, 0.1 * np.arange(12), atol=1e-6)
    assert sb.cluster.tolist() == [1, 2, 3, 4, 5, 6] and sb.iterations.tolist() == [1, 2, 3, 4]
    assert sb.material_params.tolist() == [5, 6, 7]
    assert sb.anchor_rigid_bodies.tolist() == [0, 1] and sb.anchor_vertices.tolist() == [10, 199]
    assert sb.anchor_near_modes.tolist() == [1, 0] and sb.pin_vertices.tolist() == [3, 198]


def test_synthetic_every_prefix_is_rejected(synthetic):
    data, _ = synthetic
    for k in range(len(data)):
        with pytest.raises(FormatError) as ei:
            pmx.loads(data[:k], name="cut")
        assert ei.value.offset <= k


def test_synthetic_utf16_reads_the_same():
    data, _ = build_synthetic("utf-16-le")
    m = pmx.loads(data)
    assert m.header.encoding == "utf-16-le" and m.header.name == "合成モデル"
    assert m.bones[3].name == "左足ＩＫ" and m.soft_bodies[0].name == "ソフト" and m.textures[0] == "tex\\a.png"
    # an odd byte count cannot be UTF-16: the model name's length field is at byte 17
    bad = data[:17] + struct.pack("<i", 9) + data[21:]
    with pytest.raises(FormatError) as ei:
        pmx.loads(bad)
    assert "model name" in str(ei.value)


# (mark, bytes written there, words expected in the message); each makes one index out of range
BAD_INDICES = [
    ("vertex0.bone0", struct.pack("<h", 4), "vertex 0"),
    ("vertex12.bone3", struct.pack("<h", 9), "vertex 12"),
    ("face7", struct.pack("<B", 200), "face index 7"),
    ("material0.texture", struct.pack("<b", 2), "material 0"),
    ("material1.count", struct.pack("<i", 6), "runs past the 9 face indices"),
    ("material0.count", struct.pack("<i", 4), "not a multiple of 3"),
    ("bone0.parent", struct.pack("<h", 4), "bone 0 (センター) parent"),
    ("bone0.tail", struct.pack("<h", -2), "tail bone"),
    ("bone1.inherit", struct.pack("<h", 100), "inherit source"),
    ("bone3.ik_target", struct.pack("<h", 4), "IK target"),
    ("bone3.link0", struct.pack("<h", 5), "IK link 0"),
    ("morph0.index0", struct.pack("<b", 11), "morph 0"),
    ("morph9.index0", struct.pack("<b", 12), "morph 9"),
    ("morph1.index0", struct.pack("<B", 200), "morph 1"),
    ("morph2.index0", struct.pack("<h", 4), "morph 2"),
    ("morph8.index0", struct.pack("<b", 2), "morph 8"),
    ("morph10.index0", struct.pack("<b", 2), "morph 10"),
    ("frame.表情.1", struct.pack("<b", 11), "display frame 1"),
    ("rigid1.bone", struct.pack("<h", 4), "rigid body 1"),
    ("joint0.b", struct.pack("<b", 2), "joint 0"),
    ("soft.anchor1.vertex", struct.pack("<B", 200), "anchor 1"),
    ("soft.pin1", struct.pack("<B", 250), "pin 1"),
]


@pytest.mark.parametrize("mark,raw,words", BAD_INDICES, ids=[b[0] for b in BAD_INDICES])
def test_synthetic_bad_index_is_reported_at_its_offset(synthetic, mark, raw, words):
    data, marks = synthetic
    with pytest.raises(FormatError) as ei:
        pmx.loads(_patched(data, marks[mark], raw), name="bad.pmx")
    e = ei.value
    assert words in str(e), str(e)
    assert e.offset == marks[mark], str(e)
    assert str(e).startswith(f"bad.pmx: byte {e.offset}: ")


def test_synthetic_materials_must_cover_all_faces(synthetic):
    data, marks = synthetic
    with pytest.raises(FormatError) as ei:
        pmx.loads(_patched(data, marks["material1.count"], struct.pack("<i", 0)))
    assert ei.value.offset == marks["bones"] and "materials cover 6 face indices but the file has 9" in str(ei.value)


def test_synthetic_unknown_deform_and_morph_types(synthetic):
    data, marks = synthetic
    tpos = marks["vertex7"] + 48  # 32 + 16 additional UV bytes, then the type byte
    assert data[tpos] == 2
    with pytest.raises(FormatError) as ei:
        pmx.loads(_patched(data, tpos, bytes([5])))
    assert ei.value.offset == tpos and "vertex 7" in str(ei.value) and "deform type 5" in str(ei.value)
    # IK link limit flag must be 0 or 1 (it decides the record length)
    lpos = marks["bone3.link0"] + SIZES["bone"]
    with pytest.raises(FormatError) as ei:
        pmx.loads(_patched(data, lpos, bytes([2])))
    assert ei.value.offset == lpos and "limit flag" in str(ei.value)
    mpos = marks["morph4.type"]
    with pytest.raises(FormatError) as ei:
        pmx.loads(_patched(data, mpos, bytes([11])))
    assert ei.value.offset == mpos and "unknown morph type 11" in str(ei.value)
    # display item type must be 0 (bone) or 1 (morph)
    ipos = marks["frame.体.0"] - 1
    with pytest.raises(FormatError) as ei:
        pmx.loads(_patched(data, ipos, bytes([2])))
    assert ei.value.offset == ipos and "type 2" in str(ei.value)


def test_loads_accepts_any_bytes_like(synthetic):
    data, _ = synthetic
    a, b = pmx.loads(bytearray(data)), pmx.loads(memoryview(data))
    np.testing.assert_array_equal(a.vertices.positions, b.vertices.positions)
    assert len(a.morphs) == len(b.morphs) == 11
