"""PMX 2.0 / 2.1 model reader (numpy + standard library only).

Reads a whole PMX file into a :class:`PmxModel`: header, vertices (as vectorised numpy arrays), faces, textures,
materials, bones (with IK blocks), morphs, display frames, rigid bodies, joints and, for 2.1, soft bodies.
Every value is returned as stored in the file: MMD model units, MMD axes (left-handed, Y up, the model faces -Z,
its left is +X; see ``core.conventions``), file face winding (clockwise front faces), texture paths as written.

Strictness: any malformed file raises :class:`core.formats.errors.FormatError` naming the file and the byte offset
where reading failed (truncation, a bad magic / version / globals / encoding / index size, an unknown deform, morph or
display-item type, an index out of range, material index counts that do not cover the faces, or trailing bytes after
the last section). A model is never returned half-read.

Sources (layout and semantics):

- ``docs/MMD_FACTS.md`` section 3 (3.1 header, index signedness and text; 3.2 vertex; 3.3 faces, textures,
  materials and flag bits; 3.4 bone record, field order and flag bits; 3.5 morphs, display frames, rigid bodies,
  joints; 3.6 the 2.1 additions and the soft-body record; 3.7 the shared sample files, checked to parse to EOF) and
  section 4 (standard bone names), which in turn cite the English PMX 2.0/2.1 description [SPEC-EN]
  (felixjones' gist, ``PMX2.1.md``), ``PMX仕様.txt`` shipped with PmxEditor [SPEC-JA], MMD Tools
  ``core/pmx/__init__.py`` [MT] and babylon-mmd ``pmxReader.ts`` [BM].
- Soft-body config names (VCF ... AHR, SRHR_CL ... SS_SPLT_CL, V_IT ... C_IT, LST/AST/VST) follow [SPEC-EN].

Index conventions (MMD_FACTS 3.1): vertex indices are unsigned when 1 or 2 bytes wide (4-byte ones are read as
int32 and must be >= 0); every other index is signed and -1 means "none". All indices are returned as Python ints
or int32 arrays.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from .errors import FormatError

__all__ = [
    "read", "loads", "PmxModel", "PmxHeader", "PmxVertices", "Material", "Bone", "IkBlock", "IkLink", "Morph",
    "DisplayFrame", "RigidBody", "Joint", "SoftBody",
    "DEFORM_BDEF1", "DEFORM_BDEF2", "DEFORM_BDEF4", "DEFORM_SDEF", "DEFORM_QDEF",
    "MORPH_GROUP", "MORPH_VERTEX", "MORPH_BONE", "MORPH_UV", "MORPH_UV1", "MORPH_UV2", "MORPH_UV3", "MORPH_UV4",
    "MORPH_MATERIAL", "MORPH_FLIP", "MORPH_IMPULSE", "MORPH_TYPE_NAMES",
    "SOFT_BODY_CONFIG_NAMES", "SOFT_BODY_CLUSTER_NAMES", "SOFT_BODY_ITERATION_NAMES", "SOFT_BODY_MATERIAL_NAMES",
]

MAGIC = b"PMX "

# Vertex deform types (MMD_FACTS 3.2).
DEFORM_BDEF1, DEFORM_BDEF2, DEFORM_BDEF4, DEFORM_SDEF, DEFORM_QDEF = 0, 1, 2, 3, 4

# Morph types (MMD_FACTS 3.5; 9 flip and 10 impulse are PMX 2.1).
MORPH_GROUP, MORPH_VERTEX, MORPH_BONE, MORPH_UV = 0, 1, 2, 3
MORPH_UV1, MORPH_UV2, MORPH_UV3, MORPH_UV4 = 4, 5, 6, 7
MORPH_MATERIAL, MORPH_FLIP, MORPH_IMPULSE = 8, 9, 10
MORPH_TYPE_NAMES = ("group", "vertex", "bone", "uv", "uv1", "uv2", "uv3", "uv4", "material", "flip", "impulse")

# Bone flag bits (MMD_FACTS 3.4).
BONE_TAIL_IS_BONE = 0x0001
BONE_ROTATABLE = 0x0002
BONE_TRANSLATABLE = 0x0004
BONE_VISIBLE = 0x0008
BONE_OPERABLE = 0x0010
BONE_IK = 0x0020
BONE_LOCAL_INHERIT = 0x0080
BONE_INHERIT_ROTATION = 0x0100
BONE_INHERIT_TRANSLATION = 0x0200
BONE_FIXED_AXIS = 0x0400
BONE_LOCAL_AXES = 0x0800
BONE_AFTER_PHYSICS = 0x1000
BONE_EXTERNAL_PARENT = 0x2000

# Material flag bits (MMD_FACTS 3.3; 0x20..0x80 are PMX 2.1).
MATERIAL_DOUBLE_SIDED = 0x01
MATERIAL_GROUND_SHADOW = 0x02
MATERIAL_SELF_SHADOW_MAP = 0x04
MATERIAL_SELF_SHADOW = 0x08
MATERIAL_EDGE = 0x10
MATERIAL_VERTEX_COLOR = 0x20
MATERIAL_POINT = 0x40
MATERIAL_LINE = 0x80

# Soft-body parameter block names, in file order (MMD_FACTS 3.6, [SPEC-EN]).
SOFT_BODY_CONFIG_NAMES = ("VCF", "DP", "DG", "LF", "PR", "VC", "DF", "MT", "CHR", "KHR", "SHR", "AHR")
SOFT_BODY_CLUSTER_NAMES = ("SRHR_CL", "SKHR_CL", "SSHR_CL", "SR_SPLT_CL", "SK_SPLT_CL", "SS_SPLT_CL")
SOFT_BODY_ITERATION_NAMES = ("V_IT", "P_IT", "D_IT", "C_IT")
SOFT_BODY_MATERIAL_NAMES = ("LST", "AST", "VST")

_S_U8 = struct.Struct("<B")
_S_I8 = struct.Struct("<b")
_S_U16 = struct.Struct("<H")
_S_I32 = struct.Struct("<i")
_S_F32 = struct.Struct("<f")
_S_VEC = {n: struct.Struct(f"<{n}f") for n in (2, 3, 4, 12, 6)}
_S_I32X = {n: struct.Struct(f"<{n}i") for n in (3, 4)}

# Index struct formats / numpy dtypes: signed for everything but 1- and 2-byte vertex indices (MMD_FACTS 3.1).
_SIGNED_FMT = {1: struct.Struct("<b"), 2: struct.Struct("<h"), 4: struct.Struct("<i")}
_VERTEX_FMT = {1: struct.Struct("<B"), 2: struct.Struct("<H"), 4: struct.Struct("<i")}
_SIGNED_DT = {1: np.dtype("i1"), 2: np.dtype("<i2"), 4: np.dtype("<i4")}
_VERTEX_DT = {1: np.dtype("u1"), 2: np.dtype("<u2"), 4: np.dtype("<i4")}


# ------------------------------------------------------------------------------------------------------------------
# Data classes
# ------------------------------------------------------------------------------------------------------------------
@dataclass
class PmxHeader:
    """PMX header and globals (MMD_FACTS 3.1).

    ``version`` is 2.0 or 2.1 (the stored f32 rounded to one decimal; 2.1 is stored as ~2.0999999).
    ``encoding`` is ``'utf-16-le'`` or ``'utf-8'``. Index sizes are 1, 2 or 4 bytes. ``extra_globals`` holds any
    global bytes beyond the 8 defined ones (normally empty).
    """

    version: float
    encoding: str
    additional_uv: int
    vertex_index_size: int
    texture_index_size: int
    material_index_size: int
    bone_index_size: int
    morph_index_size: int
    rigid_body_index_size: int
    name: str
    name_en: str
    comment: str
    comment_en: str
    extra_globals: bytes = b""


@dataclass
class PmxVertices:
    """All vertices as parallel arrays (MMD_FACTS 3.2). N vertices, A = header.additional_uv.

    - ``positions`` (N,3) float32, MMD model units and axes; ``normals`` (N,3) float32; ``uvs`` (N,2) float32
      (DirectX convention, V down); ``additional_uvs`` (N,A,4) float32.
    - ``deform_type`` (N,) uint8: 0 BDEF1, 1 BDEF2, 2 BDEF4, 3 SDEF, 4 QDEF.
    - ``bone_indices`` (N,4) int32, -1 for unused slots; ``weights`` (N,4) float32: BDEF1 -> [1,0,0,0],
      BDEF2 and SDEF -> [w1, 1-w1, 0, 0], BDEF4 / QDEF as stored (the sum is not guaranteed to be 1).
    - ``sdef_c``, ``sdef_r0``, ``sdef_r1`` (N,3) float32, NaN on non-SDEF rows.
    - ``edge_scale`` (N,) float32.
    """

    positions: np.ndarray
    normals: np.ndarray
    uvs: np.ndarray
    additional_uvs: np.ndarray
    deform_type: np.ndarray
    bone_indices: np.ndarray
    weights: np.ndarray
    sdef_c: np.ndarray
    sdef_r0: np.ndarray
    sdef_r1: np.ndarray
    edge_scale: np.ndarray

    def __len__(self) -> int:
        return int(self.positions.shape[0])


@dataclass
class Material:
    """One material (MMD_FACTS 3.3). Colours are float64 arrays: ``diffuse`` (4,) RGBA, ``specular`` (3,),
    ``ambient`` (3,), ``edge_color`` (4,). ``texture`` / ``sphere`` are texture indices (-1 none); ``toon`` is a
    shared toon number 0-9 (toon01-10.bmp) when ``shared_toon`` is True, else a texture index (-1 none).
    ``index_start`` / ``index_count`` give the material's slice of the flat face index buffer (3 per triangle)."""

    name: str
    name_en: str
    diffuse: np.ndarray
    specular: np.ndarray
    specular_power: float
    ambient: np.ndarray
    flags: int
    edge_color: np.ndarray
    edge_size: float
    texture: int
    sphere: int
    sphere_mode: int
    shared_toon: bool
    toon: int
    memo: str
    index_count: int
    index_start: int = 0

    double_sided = property(lambda self: bool(self.flags & MATERIAL_DOUBLE_SIDED))
    ground_shadow = property(lambda self: bool(self.flags & MATERIAL_GROUND_SHADOW))
    self_shadow_map = property(lambda self: bool(self.flags & MATERIAL_SELF_SHADOW_MAP))
    self_shadow = property(lambda self: bool(self.flags & MATERIAL_SELF_SHADOW))
    edge = property(lambda self: bool(self.flags & MATERIAL_EDGE))
    vertex_color = property(lambda self: bool(self.flags & MATERIAL_VERTEX_COLOR))
    point = property(lambda self: bool(self.flags & MATERIAL_POINT))
    line = property(lambda self: bool(self.flags & MATERIAL_LINE))


@dataclass
class IkLink:
    """One IK chain link: ``bone`` index; Euler angle limits in radians ``limit_min`` / ``limit_max`` (3,) float64,
    both None when the link is unlimited (MMD_FACTS 3.4 item 6)."""

    bone: int
    limit_min: Optional[np.ndarray] = None
    limit_max: Optional[np.ndarray] = None

    @property
    def has_limit(self) -> bool:
        return self.limit_min is not None


@dataclass
class IkBlock:
    """IK solver settings of an IK bone: ``target`` bone index, ``loop_count``, ``limit_angle`` (radians per
    iteration), ``links`` from the bone nearest the target outward, as stored (MMD_FACTS 3.4 item 6, 2.5)."""

    target: int
    loop_count: int
    limit_angle: float
    links: list = field(default_factory=list)


@dataclass
class Bone:
    """One bone (MMD_FACTS 3.4). ``position`` (3,) float64 is absolute, model space (no rest orientation exists).

    ``parent``: bone index or -1. ``layer``: transform layer (変形階層). ``flags``: raw u16.
    ``tail_bone`` (index or -1) when the tail is a bone, else ``tail_offset`` (3,) float64 relative to ``position``.
    ``inherit_source`` / ``inherit_ratio`` (付与): set when flag 0x0100 or 0x0200 is set, else -1 / 0.0; the ratio may
    be negative or above 1. ``fixed_axis``, ``local_x``, ``local_z``: (3,) float64 model-space vectors or None.
    ``external_key``: the external-parent key (int32, not a bone index) or None. ``ik``: :class:`IkBlock` or None.
    """

    index: int
    name: str
    name_en: str
    position: np.ndarray
    parent: int
    layer: int
    flags: int
    tail_bone: int = -1
    tail_offset: Optional[np.ndarray] = None
    inherit_source: int = -1
    inherit_ratio: float = 0.0
    fixed_axis: Optional[np.ndarray] = None
    local_x: Optional[np.ndarray] = None
    local_z: Optional[np.ndarray] = None
    external_key: Optional[int] = None
    ik: Optional[IkBlock] = None

    tail_is_bone = property(lambda self: bool(self.flags & BONE_TAIL_IS_BONE))
    rotatable = property(lambda self: bool(self.flags & BONE_ROTATABLE))
    translatable = property(lambda self: bool(self.flags & BONE_TRANSLATABLE))
    visible = property(lambda self: bool(self.flags & BONE_VISIBLE))
    operable = property(lambda self: bool(self.flags & BONE_OPERABLE))
    is_ik = property(lambda self: bool(self.flags & BONE_IK))
    local_inherit = property(lambda self: bool(self.flags & BONE_LOCAL_INHERIT))
    inherit_rotation = property(lambda self: bool(self.flags & BONE_INHERIT_ROTATION))
    inherit_translation = property(lambda self: bool(self.flags & BONE_INHERIT_TRANSLATION))
    has_fixed_axis = property(lambda self: bool(self.flags & BONE_FIXED_AXIS))
    has_local_axes = property(lambda self: bool(self.flags & BONE_LOCAL_AXES))
    after_physics = property(lambda self: bool(self.flags & BONE_AFTER_PHYSICS))
    external_parent = property(lambda self: bool(self.flags & BONE_EXTERNAL_PARENT))


# Morph offset record layouts (returned with int32 'index'; MMD_FACTS 3.5).
_MORPH_FIELDS = {
    MORPH_GROUP: [("weight", "<f4")],
    MORPH_VERTEX: [("offset", "<f4", (3,))],
    MORPH_BONE: [("translation", "<f4", (3,)), ("rotation", "<f4", (4,))],
    MORPH_UV: [("offset", "<f4", (4,))],
    MORPH_MATERIAL: [("op", "u1"), ("diffuse", "<f4", (4,)), ("specular", "<f4", (3,)), ("specular_power", "<f4"),
                     ("ambient", "<f4", (3,)), ("edge_color", "<f4", (4,)), ("edge_size", "<f4"),
                     ("texture_tint", "<f4", (4,)), ("sphere_tint", "<f4", (4,)), ("toon_tint", "<f4", (4,))],
    MORPH_IMPULSE: [("local", "u1"), ("velocity", "<f4", (3,)), ("torque", "<f4", (3,))],
}
for _t in (MORPH_UV1, MORPH_UV2, MORPH_UV3, MORPH_UV4):
    _MORPH_FIELDS[_t] = _MORPH_FIELDS[MORPH_UV]
_MORPH_FIELDS[MORPH_FLIP] = _MORPH_FIELDS[MORPH_GROUP]
# What each morph type's 'index' refers to.
_MORPH_TARGET = {MORPH_GROUP: "morph", MORPH_FLIP: "morph", MORPH_VERTEX: "vertex", MORPH_BONE: "bone",
                 MORPH_UV: "vertex", MORPH_UV1: "vertex", MORPH_UV2: "vertex", MORPH_UV3: "vertex",
                 MORPH_UV4: "vertex", MORPH_MATERIAL: "material", MORPH_IMPULSE: "rigid"}


@dataclass
class Morph:
    """One morph (MMD_FACTS 3.5). ``panel``: 0 system, 1 eyebrow, 2 eye, 3 mouth, 4 other. ``type``: MORPH_* code.

    ``offsets`` is a numpy structured array (K,) with an int32 ``index`` field (vertex / bone / material (-1 all) /
    morph / rigid-body index, by type) and, by type:

    - vertex: ``offset`` (K,3) f32;  uv and uv1-4: ``offset`` (K,4) f32;
    - bone: ``translation`` (K,3) f32, ``rotation`` (K,4) f32 quaternion (x, y, z, w);
    - group / flip: ``weight`` (K,) f32;
    - material: ``op`` u8 (0 multiply, 1 add), ``diffuse`` (4), ``specular`` (3), ``specular_power``, ``ambient``
      (3), ``edge_color`` (4), ``edge_size``, ``texture_tint`` / ``sphere_tint`` / ``toon_tint`` (4) f32;
    - impulse: ``local`` u8, ``velocity`` (3) f32, ``torque`` (3) f32.
    """

    name: str
    name_en: str
    panel: int
    type: int
    offsets: np.ndarray

    @property
    def type_name(self) -> str:
        return MORPH_TYPE_NAMES[self.type]

    def __len__(self) -> int:
        return int(self.offsets.shape[0])


@dataclass
class DisplayFrame:
    """A display frame (表示枠): ``special`` is True for the fixed `Root` and `表情` frames; ``items`` is a list of
    (kind, index) with kind 0 = bone, 1 = morph (MMD_FACTS 3.5)."""

    name: str
    name_en: str
    special: bool
    items: list = field(default_factory=list)

    @property
    def bone_indices(self) -> list:
        return [i for k, i in self.items if k == 0]

    @property
    def morph_indices(self) -> list:
        return [i for k, i in self.items if k == 1]


@dataclass
class RigidBody:
    """A rigid body (MMD_FACTS 3.5). ``bone``: index or -1. ``group`` 0-15, ``collision_mask`` u16 non-collision
    mask. ``shape``: 0 sphere, 1 box, 2 capsule. ``size``, ``position`` (model units), ``rotation`` (Euler radians):
    (3,) float64. ``mode``: 0 follows bone, 1 physics, 2 physics with bone position."""

    name: str
    name_en: str
    bone: int
    group: int
    collision_mask: int
    shape: int
    size: np.ndarray
    position: np.ndarray
    rotation: np.ndarray
    mass: float
    linear_damping: float
    angular_damping: float
    restitution: float
    friction: float
    mode: int


@dataclass
class Joint:
    """A joint between two rigid bodies (MMD_FACTS 3.5). ``type``: 0 spring 6DOF (2.1 adds 1 6DOF, 2 P2P,
    3 cone-twist, 4 slider, 5 hinge). ``rigid_a`` / ``rigid_b``: rigid-body indices (-1 none). All vectors are (3,)
    float64: position, rotation (radians), translation and rotation limits, spring constants."""

    name: str
    name_en: str
    type: int
    rigid_a: int
    rigid_b: int
    position: np.ndarray
    rotation: np.ndarray
    position_min: np.ndarray
    position_max: np.ndarray
    rotation_min: np.ndarray
    rotation_max: np.ndarray
    spring_position: np.ndarray
    spring_rotation: np.ndarray


@dataclass
class SoftBody:
    """A PMX 2.1 soft body (MMD_FACTS 3.6, [SPEC-EN]). ``shape``: 0 tri-mesh, 1 rope. ``material``: index.
    ``flags`` u8 (0x01 B-link, 0x02 cluster creation, 0x04 link crossing). ``config`` (12,) f32 in the order
    SOFT_BODY_CONFIG_NAMES, ``cluster`` (6,) f32 (SOFT_BODY_CLUSTER_NAMES), ``iterations`` (4,) int32
    (SOFT_BODY_ITERATION_NAMES), ``material_params`` (3,) int32 (SOFT_BODY_MATERIAL_NAMES). Anchors: parallel
    arrays ``anchor_rigid_bodies`` (K,) int32, ``anchor_vertices`` (K,) int32, ``anchor_near_modes`` (K,) uint8;
    ``pin_vertices`` (P,) int32."""

    name: str
    name_en: str
    shape: int
    material: int
    group: int
    collision_mask: int
    flags: int
    b_link_distance: int
    cluster_count: int
    mass: float
    margin: float
    aero_model: int
    config: np.ndarray
    cluster: np.ndarray
    iterations: np.ndarray
    material_params: np.ndarray
    anchor_rigid_bodies: np.ndarray
    anchor_vertices: np.ndarray
    anchor_near_modes: np.ndarray
    pin_vertices: np.ndarray


@dataclass
class PmxModel:
    """A whole PMX model, as stored. ``faces`` (F,3) int32 in file winding; ``textures`` are paths as stored
    (relative to the .pmx, usually with ``\\`` separators); ``path`` is the file read, or None for :func:`loads`."""

    header: PmxHeader
    vertices: PmxVertices
    faces: np.ndarray
    textures: list
    materials: list
    bones: list
    morphs: list
    display_frames: list
    rigid_bodies: list
    joints: list
    soft_bodies: list
    path: Optional[Path] = None

    @property
    def bone_by_name(self) -> dict:
        """Japanese bone name -> :class:`Bone` (built on each access; keep the dict when looking up many names).
        With duplicate names the first bone in file order wins."""
        out = {}
        for b in self.bones:
            out.setdefault(b.name, b)
        return out

    def bone_index(self, name: str) -> Optional[int]:
        """Index of the first bone called ``name`` (exact, byte-for-byte Japanese name; MMD_FACTS 4), or None."""
        for b in self.bones:
            if b.name == name:
                return b.index
        return None


# ------------------------------------------------------------------------------------------------------------------
# Reader
# ------------------------------------------------------------------------------------------------------------------
class _Cursor:
    """Bounds-checked little-endian reads from a bytes buffer; every failure is a FormatError at the read offset."""

    def __init__(self, data: bytes, path: str):
        self.data = data
        self.u8view = np.frombuffer(data, dtype=np.uint8)
        self.pos = 0
        self.end = len(data)
        self.path = path
        self.encoding = "utf-16-le"
        self.isize = {}

    def fail(self, message: str, offset: Optional[int] = None):
        raise FormatError(self.path, self.pos if offset is None else offset, message)

    def need(self, n: int, what: str) -> int:
        if self.pos + n > self.end:
            self.fail(f"{what}: file truncated (needs {n} bytes, {self.end - self.pos} left)")
        p = self.pos
        self.pos += n
        return p

    def unpack(self, st: struct.Struct, what: str):
        p = self.need(st.size, what)
        return st.unpack_from(self.data, p)

    def u8(self, what):
        return self.unpack(_S_U8, what)[0]

    def i8(self, what):
        return self.unpack(_S_I8, what)[0]

    def u16(self, what):
        return self.unpack(_S_U16, what)[0]

    def i32(self, what):
        return self.unpack(_S_I32, what)[0]

    def f32(self, what):
        return self.unpack(_S_F32, what)[0]

    def vec(self, n: int, what: str) -> np.ndarray:
        return np.array(self.unpack(_S_VEC[n], what), dtype=np.float64)

    def count(self, what: str, min_record: int) -> int:
        """An i32 element count, checked against the bytes left (each element needs >= ``min_record`` bytes)."""
        p = self.pos
        n = self.i32(what)
        if n < 0:
            self.fail(f"{what}: negative count {n}", p)
        if n * min_record > self.end - self.pos:
            self.fail(f"{what}: count {n} needs at least {n * min_record} bytes but only {self.end - self.pos} "
                      f"are left (file truncated or corrupt)", p)
        return n

    def text(self, what: str, lenient: bool = False) -> str:
        p = self.pos
        n = self.i32(f"{what} length")
        if n < 0:
            self.fail(f"{what}: negative text length {n}", p)
        q = self.need(n, what)
        raw = self.data[q:q + n]
        try:
            return raw.decode(self.encoding, errors="replace" if lenient else "strict")
        except UnicodeDecodeError as e:
            self.fail(f"{what}: invalid {self.encoding} text ({e.reason})", q + e.start)

    def index(self, kind: str, what: str, count: Optional[int] = None) -> int:
        """Read one index of ``kind`` (vertex/texture/material/bone/morph/rigid). When ``count`` is given, check
        the range now: vertex indices must be in [0, count), others in [-1, count)."""
        size = self.isize[kind]
        p = self.pos
        st = _VERTEX_FMT[size] if kind == "vertex" else _SIGNED_FMT[size]
        v = self.unpack(st, what)[0]
        if count is not None:
            _check_index(self, p, v, count, kind, what)
        return v


def _label(name: str, limit: int = 40) -> str:
    """A name read from the file, as shown inside an error message: control characters (line breaks...) escaped and
    cut to ``limit`` characters, so a message always stays one short line."""
    shown = name if len(name) <= limit else name[:limit] + "..."
    return "".join(c if c.isprintable() or c in "\u3000\u00a0" else repr(c)[1:-1] for c in shown)


def _check_index(cur: _Cursor, offset: int, v: int, count: int, kind: str, what: str):
    lo = 0 if kind == "vertex" else -1
    if not (lo <= v < count):
        cur.fail(f"{what}: {kind} index {v} out of range ({count} {kind}s)", offset)


def _check_refs(cur: _Cursor, refs: list, count: int, kind: str):
    """Deferred index checks: ``refs`` is a list of (offset, value, what)."""
    for off, v, what in refs:
        _check_index(cur, off, v, count, kind, what)


def _check_index_array(cur: _Cursor, values: np.ndarray, offsets: np.ndarray, count: int, kind: str, what: str):
    """Vectorised range check; the message names element i as ``f"{what} {i}"``.

    ``what`` holds names read from the file, so it is never used as a format string (a morph called ``{`` once
    turned an out-of-range index into a ValueError instead of a FormatError)."""
    lo = 0 if kind == "vertex" else -1
    bad = np.flatnonzero((values < lo) | (values >= count))
    if bad.size:
        i = int(bad[0])
        cur.fail(f"{what} {i}: {kind} index {int(values[i])} out of range ({count} {kind}s)", int(offsets[i]))


def _read_header(cur: _Cursor) -> PmxHeader:
    if cur.end < 4 or cur.data[:4] != MAGIC:
        cur.fail(f"not a PMX file (magic {cur.data[:4]!r}, expected {MAGIC!r})", 0)
    cur.pos = 4
    p = cur.pos
    raw_version = cur.f32("header version")
    if abs(raw_version - 2.0) < 1e-3:
        version = 2.0
    elif abs(raw_version - 2.1) < 1e-3:
        version = 2.1
    else:
        cur.fail(f"unsupported PMX version {raw_version!r} (only 2.0 and 2.1)", p)
    p = cur.pos
    nglobals = cur.u8("header globals count")
    if nglobals < 8:
        cur.fail(f"header globals count {nglobals} < 8", p)
    g0 = cur.need(nglobals, "header globals")
    g = cur.data[g0:g0 + nglobals]
    if g[0] not in (0, 1):
        cur.fail(f"text encoding byte {g[0]} (expected 0 UTF-16LE or 1 UTF-8)", g0)
    if g[1] > 4:
        cur.fail(f"additional UV count {g[1]} (expected 0-4)", g0 + 1)
    kinds = ("vertex", "texture", "material", "bone", "morph", "rigid")
    for k, kind in enumerate(kinds):
        if g[2 + k] not in (1, 2, 4):
            cur.fail(f"{kind} index size {g[2 + k]} (expected 1, 2 or 4)", g0 + 2 + k)
        cur.isize[kind] = g[2 + k]
    cur.encoding = "utf-16-le" if g[0] == 0 else "utf-8"
    name = cur.text("model name")
    name_en = cur.text("model English name")
    comment = cur.text("model comment", lenient=True)
    comment_en = cur.text("model English comment", lenient=True)
    return PmxHeader(version=version, encoding=cur.encoding, additional_uv=g[1],
                     vertex_index_size=g[2], texture_index_size=g[3], material_index_size=g[4],
                     bone_index_size=g[5], morph_index_size=g[6], rigid_body_index_size=g[7],
                     name=name, name_en=name_en, comment=comment, comment_en=comment_en,
                     extra_globals=bytes(g[8:]))


def _gather(u8: np.ndarray, offsets: np.ndarray, nbytes: int, dtype) -> np.ndarray:
    """Gather ``nbytes`` at each offset and view them as ``dtype``: (len(offsets), nbytes // itemsize)."""
    idx = offsets[:, None] + np.arange(nbytes, dtype=np.int64)
    return u8[idx].view(dtype)


def _scan_vertex_records(data: bytes, start: int, n: int, prefix: int, rsize: list) -> tuple:
    """Find the start offset of each vertex record by walking the deform-type bytes (records differ in length
    only by deform type). Returns (offsets of the records that fit (int64), None) or, on the first record that is
    cut short or has an unknown type, (offsets before it, (index, byte offset, message))."""
    offs = []
    append = offs.append
    pos = start
    end = len(data)
    try:
        for _ in range(n):
            size = rsize[data[pos + prefix]]
            if pos + size > end:
                break
            append(pos)
            pos += size
    except IndexError:
        pass
    arr = np.fromiter(offs, dtype=np.int64, count=len(offs))
    i = len(offs)
    if i == n:
        return arr, None
    tpos = pos + prefix
    if tpos >= end or data[tpos] < len(rsize):
        return arr, (i, pos, "file truncated inside the vertex section")
    return arr, (i, tpos, f"unknown deform type {data[tpos]} (expected 0-4)")


def _first_implausible_position(u8: np.ndarray, offs: np.ndarray) -> Optional[int]:
    """Index of the first record whose position cannot be real data, or None.

    Implausible: a non-finite component, a component beyond 1e8 units (8000 km), or two or more subnormal
    components. Bytes shifted by a misaligned read turn ordinary floats into such values; real models do contain
    single subnormal coordinates on the mirror plane (mat4 has 16), so one alone is accepted.
    """
    if offs.size == 0:
        return None
    p = np.abs(_gather(u8, offs, 12, "<f4"))
    with np.errstate(invalid="ignore"):
        subnormal = (p != 0) & (p < np.finfo(np.float32).tiny)
        bad = ~np.isfinite(p).all(axis=1) | (p > 1e8).any(axis=1) | (subnormal.sum(axis=1) >= 2)
    rows = np.flatnonzero(bad)
    return int(rows[0]) if rows.size else None


def _bone_index_size_hint(cur: _Cursor, n: int, prefix: int, b: int) -> str:
    """Error-path diagnostic: say whether the vertex records parse cleanly with another bone index size."""
    for alt in (1, 2, 4):
        if alt == b:
            continue
        dsize = (alt, 2 * alt + 4, 4 * alt + 16, 2 * alt + 4 + 36, 4 * alt + 16)
        offs, err = _scan_vertex_records(cur.data, cur.pos, n, prefix, [prefix + 1 + d + 4 for d in dsize])
        if err is None and _first_implausible_position(cur.u8view, offs) is None:
            return (f" (the header declares {b}-byte bone indices, but the vertex records parse cleanly with "
                    f"{alt}-byte ones)")
    return ""


def _read_vertices(cur: _Cursor, n_add_uv: int):
    """Vertex section (MMD_FACTS 3.2). Returns (PmxVertices, bone-slot byte offsets (N,4) for later checks)."""
    b = cur.isize["bone"]
    prefix = 32 + 16 * n_add_uv                     # pos, normal, uv, additional uvs
    dsize = (b, 2 * b + 4, 4 * b + 16, 2 * b + 4 + 36, 4 * b + 16)
    rsize = [prefix + 1 + d + 4 for d in dsize]     # + type byte + deform + edge scale
    n = cur.count("vertex count", prefix + 1 + b + 4)

    offs, err = _scan_vertex_records(cur.data, cur.pos, n, prefix, rsize)
    # A wrong index size in the header shifts every later record; the first shifted record usually shows up as a
    # non-finite or subnormal position long before an impossible deform type does (MMD_FACTS 3.7, joint_orient_test).
    bad_pos = _first_implausible_position(cur.u8view, offs)
    if bad_pos is not None and (err is None or bad_pos < err[0]):
        hint = _bone_index_size_hint(cur, n, prefix, b)
        xyz = _gather(cur.u8view, offs[bad_pos:bad_pos + 1], 12, "<f4")[0]
        cur.fail(f"vertex {bad_pos}: implausible position {xyz} (non-finite, huge or subnormal): vertex records are "
                 f"misaligned from here on{hint}", int(offs[bad_pos]))
    if err is not None:
        i, off, msg = err
        hint = _bone_index_size_hint(cur, n, prefix, b) if "deform type" in msg else ""
        cur.fail(f"vertex {i}: {msg}{hint}", off)
    pos = int(offs[-1]) + rsize[cur.data[int(offs[-1]) + prefix]] if n else cur.pos

    u8 = cur.u8view
    head = _gather(u8, offs, 32, "<f4")
    positions = np.ascontiguousarray(head[:, 0:3])
    normals = np.ascontiguousarray(head[:, 3:6])
    uvs = np.ascontiguousarray(head[:, 6:8])
    if n_add_uv:
        additional_uvs = _gather(u8, offs + 32, 16 * n_add_uv, "<f4").reshape(n, n_add_uv, 4)
    else:
        additional_uvs = np.zeros((n, 0, 4), dtype=np.float32)
    dtype_pos = offs + prefix
    deform_type = u8[dtype_pos].copy()
    dstart = dtype_pos + 1

    bone_indices = np.full((n, 4), -1, dtype=np.int32)
    weights = np.zeros((n, 4), dtype=np.float32)
    sdef_c = np.full((n, 3), np.nan, dtype=np.float32)
    sdef_r0 = sdef_c.copy()
    sdef_r1 = sdef_c.copy()
    bdt = _SIGNED_DT[b]
    for t, nb in ((DEFORM_BDEF1, 1), (DEFORM_BDEF2, 2), (DEFORM_BDEF4, 4), (DEFORM_SDEF, 2), (DEFORM_QDEF, 4)):
        rows = np.flatnonzero(deform_type == t)
        if rows.size == 0:
            continue
        st = dstart[rows]
        bone_indices[rows, :nb] = _gather(u8, st, nb * b, bdt)
        if t == DEFORM_BDEF1:
            weights[rows, 0] = 1.0
        elif t in (DEFORM_BDEF2, DEFORM_SDEF):
            w1 = _gather(u8, st + 2 * b, 4, "<f4")[:, 0]
            weights[rows, 0] = w1
            weights[rows, 1] = 1.0 - w1
            if t == DEFORM_SDEF:
                cr = _gather(u8, st + 2 * b + 4, 36, "<f4")
                sdef_c[rows] = cr[:, 0:3]
                sdef_r0[rows] = cr[:, 3:6]
                sdef_r1[rows] = cr[:, 6:9]
        else:
            weights[rows] = _gather(u8, st + 4 * b, 16, "<f4")
    edge_scale = _gather(u8, dstart + np.asarray(dsize, dtype=np.int64)[deform_type], 4, "<f4")[:, 0].copy()
    slot_offsets = dstart[:, None] + b * np.arange(4, dtype=np.int64)
    cur.pos = pos
    verts = PmxVertices(positions=positions, normals=normals, uvs=uvs, additional_uvs=additional_uvs,
                        deform_type=deform_type, bone_indices=bone_indices, weights=weights, sdef_c=sdef_c,
                        sdef_r0=sdef_r0, sdef_r1=sdef_r1, edge_scale=edge_scale)
    return verts, slot_offsets


def _read_index_array(cur: _Cursor, kind: str, count: int, what: str) -> tuple:
    """``count`` consecutive indices of ``kind`` as int64, plus their byte offsets."""
    size = cur.isize[kind]
    dt = _VERTEX_DT[size] if kind == "vertex" else _SIGNED_DT[size]
    p = cur.need(count * size, what)
    vals = np.frombuffer(cur.data, dtype=dt, count=count, offset=p).astype(np.int64)
    return vals, p + size * np.arange(count, dtype=np.int64)


def _read_faces(cur: _Cursor, n_vertices: int) -> np.ndarray:
    p = cur.pos
    n = cur.count("face index count", cur.isize["vertex"])
    if n % 3:
        cur.fail(f"face index count {n} is not a multiple of 3", p)
    vals, offs = _read_index_array(cur, "vertex", n, "face indices")
    _check_index_array(cur, vals, offs, n_vertices, "vertex", "face index")
    return vals.astype(np.int32).reshape(-1, 3)


def _read_textures(cur: _Cursor) -> list:
    n = cur.count("texture count", 4)
    return [cur.text(f"texture {i} path") for i in range(n)]


def _read_materials(cur: _Cursor, n_textures: int, n_face_indices: int) -> list:
    # names 8, colours/sizes 64, flags/sphere mode/toon flag/toon >= 4, two texture indices, memo 4, index count 4
    n = cur.count("material count", 8 + 64 + 4 + 2 * cur.isize["texture"] + 4 + 4)
    mats = []
    start = 0
    for i in range(n):
        w = f"material {i}"
        name = cur.text(f"{w} name")
        w = f"material {i} ({_label(name)})"
        name_en = cur.text(f"{w} English name")
        diffuse = cur.vec(4, f"{w} diffuse")
        specular = cur.vec(3, f"{w} specular")
        power = cur.f32(f"{w} specular power")
        ambient = cur.vec(3, f"{w} ambient")
        flags = cur.u8(f"{w} flags")
        edge_color = cur.vec(4, f"{w} edge colour")
        edge_size = cur.f32(f"{w} edge size")
        tex = cur.index("texture", f"{w} texture", n_textures)
        sph = cur.index("texture", f"{w} sphere texture", n_textures)
        sphere_mode = cur.u8(f"{w} sphere mode")
        p = cur.pos
        shared = cur.u8(f"{w} shared-toon flag")
        if shared == 1:
            toon = cur.u8(f"{w} shared toon number")
        elif shared == 0:
            toon = cur.index("texture", f"{w} toon texture", n_textures)
        else:
            cur.fail(f"{w}: shared-toon flag {shared} (expected 0 or 1)", p)
        memo = cur.text(f"{w} memo", lenient=True)
        p = cur.pos
        count = cur.i32(f"{w} index count")
        if count < 0 or count % 3:
            cur.fail(f"{w}: index count {count} is negative or not a multiple of 3", p)
        if start + count > n_face_indices:
            cur.fail(f"{w}: index count {count} runs past the {n_face_indices} face indices "
                     f"(materials so far use {start})", p)
        mats.append(Material(name=name, name_en=name_en, diffuse=diffuse, specular=specular,
                             specular_power=power, ambient=ambient, flags=flags, edge_color=edge_color,
                             edge_size=edge_size, texture=tex, sphere=sph, sphere_mode=sphere_mode,
                             shared_toon=bool(shared), toon=toon, memo=memo, index_count=count, index_start=start))
        start += count
    if start != n_face_indices:
        cur.fail(f"materials cover {start} face indices but the file has {n_face_indices}")
    return mats


def _read_bones(cur: _Cursor) -> tuple:
    """Bone section (MMD_FACTS 3.4). Returns (bones, deferred bone-index refs)."""
    b = cur.isize["bone"]
    n = cur.count("bone count", 8 + 12 + b + 4 + 2 + b)
    bones, refs = [], []

    def bref(what):
        p = cur.pos
        v = cur.index("bone", what)
        refs.append((p, v, what))
        return v

    for i in range(n):
        name = cur.text(f"bone {i} name")
        w = f"bone {i} ({_label(name)})"
        name_en = cur.text(f"{w} English name")
        position = cur.vec(3, f"{w} position")
        parent = bref(f"{w} parent")
        layer = cur.i32(f"{w} layer")
        flags = cur.u16(f"{w} flags")
        bone = Bone(index=i, name=name, name_en=name_en, position=position, parent=parent, layer=layer, flags=flags)
        if flags & BONE_TAIL_IS_BONE:
            bone.tail_bone = bref(f"{w} tail bone")
        else:
            bone.tail_offset = cur.vec(3, f"{w} tail offset")
        if flags & (BONE_INHERIT_ROTATION | BONE_INHERIT_TRANSLATION):
            bone.inherit_source = bref(f"{w} inherit source")
            bone.inherit_ratio = cur.f32(f"{w} inherit ratio")
        if flags & BONE_FIXED_AXIS:
            bone.fixed_axis = cur.vec(3, f"{w} fixed axis")
        if flags & BONE_LOCAL_AXES:
            bone.local_x = cur.vec(3, f"{w} local X axis")
            bone.local_z = cur.vec(3, f"{w} local Z axis")
        if flags & BONE_EXTERNAL_PARENT:
            bone.external_key = cur.i32(f"{w} external parent key")
        if flags & BONE_IK:
            target = bref(f"{w} IK target")
            loops = cur.i32(f"{w} IK loop count")
            angle = cur.f32(f"{w} IK limit angle")
            nlinks = cur.count(f"{w} IK link count", b + 1)
            links = []
            for k in range(nlinks):
                lb = bref(f"{w} IK link {k} bone")
                p = cur.pos
                has_limit = cur.u8(f"{w} IK link {k} limit flag")
                if has_limit == 1:
                    links.append(IkLink(lb, cur.vec(3, f"{w} IK link {k} lower limit"),
                                        cur.vec(3, f"{w} IK link {k} upper limit")))
                elif has_limit == 0:
                    links.append(IkLink(lb))
                else:
                    cur.fail(f"{w} IK link {k}: limit flag {has_limit} (expected 0 or 1)", p)
            bone.ik = IkBlock(target=target, loop_count=loops, limit_angle=angle, links=links)
        bones.append(bone)
    return bones, refs


def _struct_records(cur: _Cursor, kind: str, fields: list, count: int, what: str) -> tuple:
    """Read ``count`` packed records (index of ``kind`` followed by ``fields``); returns (array with int32 'index',
    raw int64 index values, byte offset of each index)."""
    size = cur.isize[kind]
    idt = _VERTEX_DT[size] if kind == "vertex" else _SIGNED_DT[size]
    file_dt = np.dtype([("index", idt)] + fields)
    p = cur.need(count * file_dt.itemsize, what)
    raw = np.frombuffer(cur.data, dtype=file_dt, count=count, offset=p)
    out_dt = np.dtype([("index", "<i4")] + fields)
    out = np.empty(count, dtype=out_dt)
    for name in out_dt.names:
        out[name] = raw[name]
    return out, raw["index"].astype(np.int64), p + file_dt.itemsize * np.arange(count, dtype=np.int64)


def _read_morphs(cur: _Cursor, counts: dict) -> tuple:
    """Morph section (MMD_FACTS 3.5). Returns (morphs, deferred (values, offsets, what) for morph and rigid refs)."""
    n = cur.count("morph count", 8 + 1 + 1 + 4)
    morphs, deferred = [], {"morph": [], "rigid": []}
    for i in range(n):
        name = cur.text(f"morph {i} name")
        w = f"morph {i} ({_label(name)})"
        name_en = cur.text(f"{w} English name")
        panel = cur.i8(f"{w} panel")
        p = cur.pos
        mtype = cur.i8(f"{w} type")
        if not 0 <= mtype <= 10:
            cur.fail(f"{w}: unknown morph type {mtype} (expected 0-10)", p)
        kind = _MORPH_TARGET[mtype]
        fields = _MORPH_FIELDS[mtype]
        rec = np.dtype([("index", _SIGNED_DT[cur.isize[kind]])] + fields).itemsize
        k = cur.count(f"{w} offset count", rec)
        offsets, vals, offs = _struct_records(cur, kind, fields, k, f"{w} offsets")
        what = f"{w} offset"
        if kind in ("morph", "rigid"):
            deferred[kind].append((vals, offs, what))
        else:
            _check_index_array(cur, vals, offs, counts[kind], kind, what)
        morphs.append(Morph(name=name, name_en=name_en, panel=panel, type=mtype, offsets=offsets))
    return morphs, deferred


def _read_display_frames(cur: _Cursor, counts: dict) -> list:
    n = cur.count("display frame count", 8 + 1 + 4)
    frames = []
    for i in range(n):
        name = cur.text(f"display frame {i} name")
        w = f"display frame {i} ({_label(name)})"
        name_en = cur.text(f"{w} English name")
        special = cur.u8(f"{w} special flag")
        k = cur.count(f"{w} item count", 1 + min(cur.isize["bone"], cur.isize["morph"]))
        items = []
        for j in range(k):
            p = cur.pos
            kind = cur.u8(f"{w} item {j} type")
            if kind == 0:
                items.append((0, cur.index("bone", f"{w} item {j}", counts["bone"])))
            elif kind == 1:
                items.append((1, cur.index("morph", f"{w} item {j}", counts["morph"])))
            else:
                cur.fail(f"{w} item {j}: type {kind} (expected 0 bone or 1 morph)", p)
        frames.append(DisplayFrame(name=name, name_en=name_en, special=bool(special), items=items))
    return frames


def _read_rigid_bodies(cur: _Cursor, n_bones: int) -> list:
    n = cur.count("rigid body count", 8 + cur.isize["bone"] + 1 + 2 + 1 + 36 + 20 + 1)
    out = []
    for i in range(n):
        name = cur.text(f"rigid body {i} name")
        w = f"rigid body {i} ({_label(name)})"
        name_en = cur.text(f"{w} English name")
        bone = cur.index("bone", f"{w} bone", n_bones)
        group = cur.u8(f"{w} group")
        mask = cur.u16(f"{w} collision mask")
        shape = cur.u8(f"{w} shape")
        size = cur.vec(3, f"{w} size")
        position = cur.vec(3, f"{w} position")
        rotation = cur.vec(3, f"{w} rotation")
        mass, lin, ang, rest, fric = (cur.f32(f"{w} {f}") for f in
                                      ("mass", "linear damping", "angular damping", "restitution", "friction"))
        mode = cur.u8(f"{w} physics mode")
        out.append(RigidBody(name=name, name_en=name_en, bone=bone, group=group, collision_mask=mask, shape=shape,
                             size=size, position=position, rotation=rotation, mass=mass, linear_damping=lin,
                             angular_damping=ang, restitution=rest, friction=fric, mode=mode))
    return out


def _read_joints(cur: _Cursor, n_rigid: int) -> list:
    n = cur.count("joint count", 8 + 1 + 2 * cur.isize["rigid"] + 96)
    out = []
    for i in range(n):
        name = cur.text(f"joint {i} name")
        w = f"joint {i} ({_label(name)})"
        name_en = cur.text(f"{w} English name")
        jtype = cur.u8(f"{w} type")
        a = cur.index("rigid", f"{w} rigid body A", n_rigid)
        b = cur.index("rigid", f"{w} rigid body B", n_rigid)
        v = [cur.vec(3, f"{w} {f}") for f in ("position", "rotation", "position min", "position max",
                                              "rotation min", "rotation max", "spring position",
                                              "spring rotation")]
        out.append(Joint(name, name_en, jtype, a, b, *v))
    return out


def _read_soft_bodies(cur: _Cursor, counts: dict) -> list:
    n = cur.count("soft body count", 8 + 1 + cur.isize["material"] + 1 + 2 + 1 + 4 * 4 + 4 + 4 * 25 + 8)
    out = []
    for i in range(n):
        name = cur.text(f"soft body {i} name")
        w = f"soft body {i} ({_label(name)})"
        name_en = cur.text(f"{w} English name")
        shape = cur.u8(f"{w} shape")
        material = cur.index("material", f"{w} material", counts["material"])
        group = cur.u8(f"{w} group")
        mask = cur.u16(f"{w} collision mask")
        flags = cur.u8(f"{w} flags")
        blink = cur.i32(f"{w} B-link distance")
        clusters = cur.i32(f"{w} cluster count")
        mass = cur.f32(f"{w} mass")
        margin = cur.f32(f"{w} collision margin")
        aero = cur.i32(f"{w} aero model")
        config = np.array(cur.unpack(_S_VEC[12], f"{w} config"), dtype=np.float32)
        cluster = np.array(cur.unpack(_S_VEC[6], f"{w} cluster parameters"), dtype=np.float32)
        iters = np.array(cur.unpack(_S_I32X[4], f"{w} iterations"), dtype=np.int32)
        mparams = np.array(cur.unpack(_S_I32X[3], f"{w} material parameters"), dtype=np.int32)
        k = cur.count(f"{w} anchor count", cur.isize["rigid"] + cur.isize["vertex"] + 1)
        anchors, arig, aoffs = _struct_records(cur, "rigid", [("vertex", _VERTEX_DT[cur.isize["vertex"]]),
                                                              ("near_mode", "u1")], k, f"{w} anchors")
        _check_index_array(cur, arig, aoffs, counts["rigid"], "rigid", f"{w} anchor")
        _check_index_array(cur, anchors["vertex"].astype(np.int64), aoffs + cur.isize["rigid"], counts["vertex"],
                           "vertex", f"{w} anchor")
        npins = cur.count(f"{w} pin count", cur.isize["vertex"])
        pins, poffs = _read_index_array(cur, "vertex", npins, f"{w} pins")
        _check_index_array(cur, pins, poffs, counts["vertex"], "vertex", f"{w} pin")
        out.append(SoftBody(name=name, name_en=name_en, shape=shape, material=material, group=group,
                            collision_mask=mask, flags=flags, b_link_distance=blink, cluster_count=clusters,
                            mass=mass, margin=margin, aero_model=aero, config=config, cluster=cluster,
                            iterations=iters, material_params=mparams,
                            anchor_rigid_bodies=anchors["index"].astype(np.int32),
                            anchor_vertices=anchors["vertex"].astype(np.int32),
                            anchor_near_modes=anchors["near_mode"].astype(np.uint8),
                            pin_vertices=pins.astype(np.int32)))
    return out


def loads(data: bytes, name: str = "<bytes>") -> PmxModel:
    """Parse a PMX 2.0 / 2.1 file held in memory.

    Args:
        data: the whole file (bytes, bytearray or memoryview).
        name: what error messages call the file.

    Returns:
        :class:`PmxModel` with ``path`` None.

    Raises:
        FormatError: on any malformed content, naming ``name`` and the byte offset (see the module docstring);
            also when a 2.0 file has bytes after the joint section or a 2.1 file after the soft-body section.
        TypeError: if ``data`` is not a bytes-like object.
    """
    if not isinstance(data, bytes):
        data = bytes(memoryview(data))
    cur = _Cursor(data, name)
    header = _read_header(cur)
    vertices, slot_offsets = _read_vertices(cur, header.additional_uv)
    faces = _read_faces(cur, len(vertices))
    textures = _read_textures(cur)
    materials = _read_materials(cur, len(textures), faces.size)
    bones, bone_refs = _read_bones(cur)
    nb = len(bones)
    _check_refs(cur, bone_refs, nb, "bone")
    # Vertex bone slots (-1 = unused) against the bone count, reported at the offending vertex field.
    bad = (vertices.bone_indices < -1) | (vertices.bone_indices >= nb)
    if bad.any():
        v, s = (int(x[0]) for x in np.nonzero(bad))
        cur.fail(f"vertex {v}: bone index {int(vertices.bone_indices[v, s])} (slot {s}) out of range ({nb} bones)",
                 int(slot_offsets[v, s]))
    counts = {"vertex": len(vertices), "texture": len(textures), "material": len(materials), "bone": nb}
    morphs, deferred = _read_morphs(cur, counts)
    counts["morph"] = len(morphs)
    for vals, offs, what in deferred["morph"]:
        _check_index_array(cur, vals, offs, counts["morph"], "morph", what)
    display_frames = _read_display_frames(cur, counts)
    rigid_bodies = _read_rigid_bodies(cur, nb)
    counts["rigid"] = len(rigid_bodies)
    for vals, offs, what in deferred["rigid"]:
        _check_index_array(cur, vals, offs, counts["rigid"], "rigid", what)
    joints = _read_joints(cur, counts["rigid"])
    soft_bodies = _read_soft_bodies(cur, counts) if header.version == 2.1 else []
    if cur.pos != cur.end:
        last = "soft-body" if header.version == 2.1 else "joint"
        cur.fail(f"{cur.end - cur.pos} unexpected trailing bytes after the {last} section")
    return PmxModel(header=header, vertices=vertices, faces=faces, textures=textures, materials=materials,
                    bones=bones, morphs=morphs, display_frames=display_frames, rigid_bodies=rigid_bodies,
                    joints=joints, soft_bodies=soft_bodies, path=None)


def read(path) -> PmxModel:
    """Read a PMX 2.0 / 2.1 file from disk (see :func:`loads`).

    Raises:
        FormatError: on malformed content, naming ``path`` and the byte offset.
        OSError: if the file cannot be read.
    """
    p = Path(path)
    model = loads(p.read_bytes(), name=str(p))
    model.path = p
    return model
