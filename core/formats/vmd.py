"""VMD (Vocaloid Motion Data) motion files: read and write.

Layout and semantics follow ``docs/MMD_FACTS.md``, which was checked byte for byte against
the shared sample files ([DATA]) and cites these sources: [MT] MMD Tools ``mmd_tools/core/vmd``,
[BM] babylon-mmd ``src/Loader/Parser/vmdObject.ts`` and ``src/Loader/vmdLoader.ts``, [YW]
three-mmd-loader ``src/parser/vmd/VmdParser.ts`` and [WIKI] the MMD wiki "VMD file format".

* §1.1 header: 30-byte signature ``Vocaloid Motion Data 0002`` + 20-byte cp932 model name. The
  old format ``Vocaloid Motion Data file`` has a **10**-byte model name ([WIKI]); other
  ``Vocaloid Motion Data...`` signatures (e.g. the generated ``joint_orient_test.vmd``, which has
  NULs after ``Data``) are read with a 20-byte name, as [YW] does.
* §1.2 names: cp932, stop at the first NUL, cut by bytes at a character boundary
  (:mod:`core.formats.cp932`).
* §1.3 sections, each a u32 count + records: bone (111 B), morph (23 B), camera (61 B), light
  (28 B), self-shadow (9 B), property (9 + 21·n B). A file may end after section 2, 4 or 5
  ([BM] ``VmdData.CheckedCreate``); the missing sections read as empty. The writer always writes
  the ``0002`` signature and all six counts ([MT] ``File.save``).
* §1.4 bone key: name, u32 frame (30 fps), translation, rotation quaternion stored **x, y, z, w**,
  64-byte interpolation block. [MT] reads an all-zero quaternion as identity
  (:func:`rotations_xyzw`); [BM] keeps the later of duplicate (bone, frame) keys (:func:`sort_keys`).
* §1.5 interpolation block: curves X/Y/Z/R are read at bytes 0/16/32/48 with stride 4 ([MT]
  importer, [BM] ``vmdLoader.ts``); bytes 2, 3 are a physics toggle (``63 0F`` = off, ``00 00`` =
  on; [BM] ``vmdLoader.ts``, [YW] ``readBonePhysicsToggle``), never Z/R control points.
* §1.6 camera/light/self-shadow records, §1.7 property (display / IK switch) keys.
* Names cp932 cannot store (Hangul, simplified Chinese, emoji) never fail a write: the writer stores
  a fallback (the English name when given, else ``?`` for each such character; see
  :func:`core.formats.cp932.check_encodable`) and reports a one-line note, appended to the ``notes``
  list given to :func:`write` / :func:`dumps` / :func:`make_bone_keys`, or issued as a
  :class:`NameFallbackWarning` when no list is given. ``strict_names=True`` raises instead.
  :func:`name_notes` lists the notes a write would give, for pre-flight checks.
* §5.1/§5.2/§5.9/§5.10 pitfalls: normalise quaternions, write the full MMD interpolation pattern
  with bytes 2, 3 = 0, names ≤ 15 bytes in cp932, sort keys and keep one per (bone, frame).
  Quaternion sign continuity (§5.1) is the caller's job (retargeting), not this module's.

Records are numpy structured arrays (``np.frombuffer`` to read, ``.tobytes()`` to write) that keep
the names as raw bytes, so read -> write -> read reproduces every record byte for byte.

numpy and the standard library only (imported by Blender).
"""
from __future__ import annotations

import dataclasses
import os
import struct
import warnings
from pathlib import Path

import numpy as np

from .cp932 import check_encodable, decode_name, decode_names, encode_name, encode_name_fallback
from .cp932 import ENCODING
from .cp932 import fallback_note as cp932_note
from ..atomic import atomic_output
from .errors import FormatError

__all__ = [
    "BONE_KEY_DTYPE", "MORPH_KEY_DTYPE", "CAMERA_KEY_DTYPE", "LIGHT_KEY_DTYPE", "SHADOW_KEY_DTYPE",
    "SIGNATURE", "LINEAR_INTERPOLATION", "PHYSICS_ON", "PHYSICS_OFF", "PHYSICS_UNKNOWN",
    "PropertyKey", "VmdMotion", "read", "write", "loads", "dumps", "name_notes", "NameFallbackWarning",
    "check_encodable",
    "encode_name", "decode_name", "decode_names", "bone_names", "morph_names",
    "interpolation_block", "read_curves", "physics_toggle",
    "make_bone_keys", "rotations_xyzw", "sort_keys",
]

# --------------------------------------------------------------------------------------------
# Record layouts (MMD_FACTS §1.3, §1.4, §1.6). Little-endian, packed.

#: Bone key, 111 bytes (§1.4). ``rotation`` is stored x, y, z, w.
BONE_KEY_DTYPE = np.dtype([
    ("name", "S15"),
    ("frame", "<u4"),
    ("location", "<f4", (3,)),
    ("rotation", "<f4", (4,)),
    ("interpolation", "u1", (64,)),
])
#: Morph key, 23 bytes: name, frame, weight (§1.3).
MORPH_KEY_DTYPE = np.dtype([("name", "S15"), ("frame", "<u4"), ("weight", "<f4")])
#: Camera key, 61 bytes (§1.6): rotation is Euler radians; interpolation is 6 curves
#: (X, Y, Z, rotation, distance, FOV) of 4 bytes each in the order x1, x2, y1, y2;
#: ``perspective`` 0 means perspective on ([MT], [YW]).
CAMERA_KEY_DTYPE = np.dtype([
    ("frame", "<u4"),
    ("distance", "<f4"),
    ("target", "<f4", (3,)),
    ("rotation", "<f4", (3,)),
    ("interpolation", "u1", (24,)),
    ("view_angle", "<u4"),
    ("perspective", "u1"),
])
#: Light key, 28 bytes (§1.6): colour RGB in 0..1, direction vector.
LIGHT_KEY_DTYPE = np.dtype([("frame", "<u4"), ("color", "<f4", (3,)), ("direction", "<f4", (3,))])
#: Self-shadow key, 9 bytes (§1.6): mode 0 off / 1 / 2, raw f32 distance parameter.
SHADOW_KEY_DTYPE = np.dtype([("frame", "<u4"), ("mode", "u1"), ("distance", "<f4")])

assert BONE_KEY_DTYPE.itemsize == 111 and MORPH_KEY_DTYPE.itemsize == 23
assert CAMERA_KEY_DTYPE.itemsize == 61 and LIGHT_KEY_DTYPE.itemsize == 28
assert SHADOW_KEY_DTYPE.itemsize == 9

_SECTION_DTYPES = {
    "bone_keys": BONE_KEY_DTYPE,
    "morph_keys": MORPH_KEY_DTYPE,
    "camera_keys": CAMERA_KEY_DTYPE,
    "light_keys": LIGHT_KEY_DTYPE,
    "shadow_keys": SHADOW_KEY_DTYPE,
}

_SIGNATURE_PREFIX = b"Vocaloid Motion Data"
#: The 30-byte signature every file written here starts with (§1.1).
SIGNATURE = b"Vocaloid Motion Data 0002".ljust(30, b"\0")
_OLD_SIGNATURE_VERSION = "file"   # "Vocaloid Motion Data file": 10-byte model name ([WIKI])
_MODEL_NAME_BYTES = 20
_OLD_MODEL_NAME_BYTES = 10
_BONE_NAME_BYTES = 15
_IK_NAME_BYTES = 20
_U32_MAX = 0xFFFFFFFF

# --------------------------------------------------------------------------------------------
# Interpolation (MMD_FACTS §1.5)

PHYSICS_ON = 1        #: bytes 2, 3 == 00 00
PHYSICS_OFF = 0       #: bytes 2, 3 == 63 0F (99, 15)
PHYSICS_UNKNOWN = -1  #: any other value ([BM]/[YW] report no toggle)
_PHYSICS_OFF_BYTES = (0x63, 0x0F)
_CURVES = ("x", "y", "z", "r")


def interpolation_block(x=(20, 20, 107, 107), y=(20, 20, 107, 107), z=(20, 20, 107, 107),
                        r=(20, 20, 107, 107), *, physics_off: bool = False) -> np.ndarray:
    """Build the 64-byte MMD bone interpolation block (MMD_FACTS §1.5).

    Row 0 is ``Xx1 Yx1 Zx1 Rx1 Xy1 Yy1 Zy1 Ry1 Xx2 Yx2 Zx2 Rx2 Xy2 Yy2 Zy2 Ry2``; row r (1..3) is
    that row shifted left by r bytes, ending in r zero bytes; then bytes 2, 3 are overwritten by
    the physics toggle (``00 00``, or ``63 0F`` when ``physics_off``), as MMD writes it.
    The curve stored on key k shapes the segment from key k-1 to key k.

    Args:
        x, y, z, r: Bézier control points ``(x1, y1, x2, y2)`` of the X/Y/Z-translation and
            rotation curves, integers in 0..127 (endpoints (0, 0) and (127, 127) are implied).
            Each may be an array of shape (..., 4); they broadcast together. The default
            (20, 20, 107, 107) is MMD's linear curve.
        physics_off: write ``63 0F`` at bytes 2, 3 (turns physics off for the bone at this key).

    Returns:
        uint8 array of shape (..., 64) (``(64,)`` for scalar curves).

    Raises:
        ValueError: a control point is not an integer in 0..127 or a curve is not length 4.
    """
    curves = []
    for label, c in zip(_CURVES, (x, y, z, r)):
        a = np.asarray(c)
        if a.ndim == 0 or a.shape[-1] != 4:
            raise ValueError(f"curve {label!r} must have shape (..., 4) = (x1, y1, x2, y2), "
                             f"got shape {a.shape}")
        if a.dtype.kind == "f":
            if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
                raise ValueError(f"curve {label!r}: control points must be integers, got {c!r}")
        elif a.dtype.kind not in "iu":
            raise ValueError(f"curve {label!r}: control points must be integers, got dtype {a.dtype}")
        if np.any(a < 0) or np.any(a > 127):
            raise ValueError(f"curve {label!r}: control points must be in 0..127, got {c!r}")
        curves.append(a.astype(np.uint8))
    curves = np.broadcast_arrays(*curves)
    lead = curves[0].shape[:-1]
    # ideal row 0: for p in (x1, y1, x2, y2): X, Y, Z, R
    row0 = np.stack(curves, axis=-1).reshape(lead + (16,))
    block = np.zeros(lead + (4, 16), dtype=np.uint8)
    for row in range(4):
        block[..., row, :16 - row] = row0[..., row:]
    block = block.reshape(lead + (64,))
    if physics_off:
        block[..., 2], block[..., 3] = _PHYSICS_OFF_BYTES
    else:
        block[..., 2:4] = 0
    return block


#: MMD's standard linear block (§1.5): all curves (20, 20, 107, 107), bytes 2, 3 = 0. Read-only.
LINEAR_INTERPOLATION = interpolation_block()
LINEAR_INTERPOLATION.flags.writeable = False


def _check_blocks(block) -> np.ndarray:
    b = np.asarray(block)
    if b.ndim == 0 or b.shape[-1] != 64:
        raise ValueError(f"interpolation block must have shape (..., 64), got {b.shape}")
    if b.dtype.kind not in "iu":
        raise ValueError(f"interpolation block must be integer bytes, got dtype {b.dtype}")
    return b


def read_curves(block) -> dict:
    """Read the four Bézier curves of bone interpolation block(s) (MMD_FACTS §1.5).

    (x1, y1, x2, y2) of X, Y, Z, R are read at bytes 0/16/32/48 with stride 4 ([MT] importer,
    [BM] ``vmdLoader.ts``); bytes 2 and 3 (the physics toggle) are never read as control points.

    Args:
        block: (..., 64) integer array, e.g. one key's ``keys["interpolation"][i]`` or the whole
            column (K, 64).

    Returns:
        ``{"x": a, "y": a, "z": a, "r": a}``, each a uint8 array of shape (..., 4).

    Raises:
        ValueError: the last axis is not 64 long.
    """
    b = _check_blocks(block)
    return {label: b[..., 16 * i:16 * i + 16:4].astype(np.uint8) for i, label in enumerate(_CURVES)}


def physics_toggle(block):
    """Decode the physics toggle stored in bytes 2, 3 of bone interpolation block(s) (§1.5).

    ``00 00`` -> :data:`PHYSICS_ON` (1), ``63 0F`` -> :data:`PHYSICS_OFF` (0), anything else ->
    :data:`PHYSICS_UNKNOWN` (-1), following [BM] ``vmdLoader.ts`` and [YW]
    ``readBonePhysicsToggle`` (not verified in MMD itself).

    Args:
        block: (64,) or (..., 64) integer array.

    Returns:
        int for a single block, else an int8 array of shape (...,).
    """
    b = _check_blocks(block)
    out = np.full(b.shape[:-1], PHYSICS_UNKNOWN, dtype=np.int8)
    out[(b[..., 2] == 0) & (b[..., 3] == 0)] = PHYSICS_ON
    out[(b[..., 2] == _PHYSICS_OFF_BYTES[0]) & (b[..., 3] == _PHYSICS_OFF_BYTES[1])] = PHYSICS_OFF
    return int(out) if out.ndim == 0 else out


# --------------------------------------------------------------------------------------------
# Data model


@dataclasses.dataclass
class PropertyKey:
    """A display / IK-switch key (MMD_FACTS §1.7). The state holds until the next property key.

    Attributes:
        frame: frame number (30 fps).
        visible: model shown.
        ik_states: ``[(ik_bone_name, enabled), ...]``, e.g. ``[("左足ＩＫ", False), ...]``.
        ik_names_raw: the 20-byte name fields as read (None for keys built in code); the writer
            reuses a raw field when it still decodes to the same name, so a round trip is exact.
    """

    frame: int
    visible: bool = True
    ik_states: list = dataclasses.field(default_factory=list)
    ik_names_raw: list | None = None


def _empty(dtype) -> np.ndarray:
    return np.zeros(0, dtype=dtype)


@dataclasses.dataclass(eq=False)
class VmdMotion:
    """A VMD motion: six sections of keys plus the model name (MMD_FACTS §1).

    Attributes:
        model_name: model name (≤ 20 cp932 bytes when written; ``カメラ・照明`` for camera files).
        bone_keys: (K,) :data:`BONE_KEY_DTYPE`; use :func:`make_bone_keys` to build.
        morph_keys: (M,) :data:`MORPH_KEY_DTYPE`.
        camera_keys: (C,) :data:`CAMERA_KEY_DTYPE`.
        light_keys: (L,) :data:`LIGHT_KEY_DTYPE`.
        shadow_keys: (S,) :data:`SHADOW_KEY_DTYPE`.
        property_keys: list of :class:`PropertyKey`.
        signature_version: what followed ``Vocaloid Motion Data`` in the file read (``"0002"``,
            ``"file"`` for the old format, ``""`` for none); files are always written as 0002.
        model_name_raw: the model-name field as read (None if built in code); reused on write
            when it still decodes to ``model_name``.
        section_count: how many of the six sections the file read contained (2, 4, 5 or 6).
        model_name_en: English model name (e.g. the PMX ``name_en``), not stored in the file: written
            instead of ``model_name`` when cp932 cannot store that (see the module docstring).

    Raises:
        ValueError: (on construction) a key array has the wrong dtype or is not 1-D.
    """

    model_name: str = ""
    bone_keys: np.ndarray = dataclasses.field(default_factory=lambda: _empty(BONE_KEY_DTYPE))
    morph_keys: np.ndarray = dataclasses.field(default_factory=lambda: _empty(MORPH_KEY_DTYPE))
    camera_keys: np.ndarray = dataclasses.field(default_factory=lambda: _empty(CAMERA_KEY_DTYPE))
    light_keys: np.ndarray = dataclasses.field(default_factory=lambda: _empty(LIGHT_KEY_DTYPE))
    shadow_keys: np.ndarray = dataclasses.field(default_factory=lambda: _empty(SHADOW_KEY_DTYPE))
    property_keys: list = dataclasses.field(default_factory=list)
    signature_version: str = "0002"
    model_name_raw: bytes | None = None
    section_count: int = 6
    model_name_en: str = ""

    def __post_init__(self):
        for field, dtype in _SECTION_DTYPES.items():
            arr = getattr(self, field)
            if arr is None:
                setattr(self, field, _empty(dtype))
            else:
                _check_section(field, arr, dtype)
        if self.property_keys is None:
            self.property_keys = []


def _check_section(field: str, arr, dtype) -> None:
    if not isinstance(arr, np.ndarray) or arr.dtype != dtype or arr.ndim != 1:
        got = f"shape {arr.shape} dtype {arr.dtype}" if isinstance(arr, np.ndarray) else type(arr).__name__
        raise ValueError(f"VmdMotion.{field} must be a 1-D array of the module's "
                         f"{field.split('_')[0].upper()}_KEY_DTYPE ({dtype.itemsize}-byte records), got {got}")


# --------------------------------------------------------------------------------------------
# Reading


class _Reader:
    """Bounds-checked cursor over the file bytes; every failure is a FormatError with offset."""

    def __init__(self, data: bytes, name):
        self.data = data
        self.name = name
        self.pos = 0
        self.size = len(data)

    def fail(self, offset: int, message: str):
        raise FormatError(self.name, offset, message)

    def at_end(self) -> bool:
        return self.pos == self.size

    def u32(self, what: str) -> int:
        if self.pos + 4 > self.size:
            self.fail(self.pos, f"file ends inside the {what} (needs 4 bytes, "
                                f"{self.size - self.pos} left, file is {self.size} bytes)")
        (v,) = struct.unpack_from("<I", self.data, self.pos)
        self.pos += 4
        return v

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > self.size:
            self.fail(self.pos, f"file ends inside the {what} (needs {n} bytes, "
                                f"{self.size - self.pos} left, file is {self.size} bytes)")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return bytes(out)

    def records(self, dtype, what: str) -> np.ndarray:
        count_at = self.pos
        count = self.u32(f"{what} count")
        need = count * dtype.itemsize
        start = self.pos
        if start + need > self.size:
            have = (self.size - start) // dtype.itemsize
            self.fail(count_at, f"{what}: count says {count} keys ({need} bytes of "
                                f"{dtype.itemsize}-byte records from byte {start}) but the file "
                                f"ends at byte {self.size} ({have} whole keys)")
        arr = np.frombuffer(self.data, dtype=dtype, count=count, offset=start).copy()
        self.pos = start + need
        return arr


def _read_property_keys(rd: _Reader) -> list:
    count_at = rd.pos
    count = rd.u32("property key count")
    if count * 9 > rd.size - rd.pos:
        rd.fail(count_at, f"property keys: count says {count} keys (at least {9 * count} bytes) "
                          f"but only {rd.size - rd.pos} bytes follow")
    keys = []
    for i in range(count):
        key_at = rd.pos
        frame = rd.u32(f"property key {i} frame")
        visible = rd.take(1, f"property key {i} visible flag")[0]
        n_at = rd.pos
        n = rd.u32(f"property key {i} IK count")
        if n * 21 > rd.size - rd.pos:
            rd.fail(n_at, f"property key {i} (starting at byte {key_at}): IK count says {n} "
                          f"entries ({21 * n} bytes) but only {rd.size - rd.pos} bytes follow")
        raw_names, states = [], []
        for j in range(n):
            raw = rd.take(_IK_NAME_BYTES, f"property key {i} IK name {j}")
            enabled = rd.take(1, f"property key {i} IK flag {j}")[0]
            raw_names.append(raw)
            states.append((decode_name(raw), bool(enabled)))
        keys.append(PropertyKey(frame=frame, visible=bool(visible), ik_states=states,
                                ik_names_raw=raw_names))
    return keys


def loads(data: bytes, name="<bytes>") -> VmdMotion:
    """Parse VMD bytes (MMD_FACTS §1).

    Args:
        data: the whole file content.
        name: file name used in error messages.

    Returns:
        A :class:`VmdMotion`; sections missing at the end of an older file (it may end after
        section 2, 4 or 5, §1.3) are empty and ``section_count`` says how many were present.

    Raises:
        FormatError: not a VMD signature, truncated header/section/record (e.g. a count larger
            than the bytes left), the file ending anywhere other than after section 2, 4, 5 or 6,
            or bytes left over after section 6. The message names ``name`` and the byte offset.
    """
    data = bytes(data)
    rd = _Reader(data, name)
    if len(data) < 30:
        rd.fail(0, f"file is {len(data)} bytes, shorter than the 30-byte VMD signature")
    sig = data[:30]
    if not sig.startswith(_SIGNATURE_PREFIX):
        shown = sig.split(b"\0", 1)[0]
        rd.fail(0, f"not a VMD file: signature {shown!r} does not start with {_SIGNATURE_PREFIX!r}")
    version = sig[len(_SIGNATURE_PREFIX):].split(b"\0", 1)[0].strip().decode("ascii", "replace")
    name_bytes = _OLD_MODEL_NAME_BYTES if version == _OLD_SIGNATURE_VERSION else _MODEL_NAME_BYTES
    rd.pos = 30
    model_raw = rd.take(name_bytes, f"{name_bytes}-byte model name")

    sections = {}
    sections["bone_keys"] = rd.records(BONE_KEY_DTYPE, "bone keys")
    sections["morph_keys"] = rd.records(MORPH_KEY_DTYPE, "morph keys")
    section_count = 2
    property_keys = []
    if not rd.at_end():
        sections["camera_keys"] = rd.records(CAMERA_KEY_DTYPE, "camera keys")
        sections["light_keys"] = rd.records(LIGHT_KEY_DTYPE, "light keys")
        section_count = 4
        if not rd.at_end():
            sections["shadow_keys"] = rd.records(SHADOW_KEY_DTYPE, "self-shadow keys")
            section_count = 5
            if not rd.at_end():
                property_keys = _read_property_keys(rd)
                section_count = 6
                if not rd.at_end():
                    rd.fail(rd.pos, f"{rd.size - rd.pos} unexpected bytes after the last "
                                    f"section (property keys)")
    return VmdMotion(
        model_name=decode_name(model_raw),
        property_keys=property_keys,
        signature_version=version,
        model_name_raw=model_raw,
        section_count=section_count,
        **sections,
    )


def read(path) -> VmdMotion:
    """Read a .vmd file. See :func:`loads` for the result and the FormatError cases.

    Raises:
        FileNotFoundError / OSError: the file cannot be read.
        FormatError: malformed file (message names the path and the byte offset).
    """
    path = Path(path)
    return loads(path.read_bytes(), name=str(path))


# --------------------------------------------------------------------------------------------
# Writing


class NameFallbackWarning(UserWarning):
    """A name was written with its cp932 fallback and the caller gave no ``notes`` list to report it in."""


def _report(note: str, notes: list | None) -> None:
    if notes is None:
        warnings.warn(note, NameFallbackWarning, stacklevel=3)
    else:
        notes.append(note)


def _name_field(name: str, raw: bytes | None, nbytes: int, *, english: str = "", kind: str = "name",
                notes: list | None = None, strict: bool = False) -> bytes:
    """The nbytes field for ``name``: the raw field if it still decodes to ``name``, else encoded
    (with the cp932 fallback and a note, or ValueError when ``strict``)."""
    if raw is not None and len(raw) <= nbytes and decode_name(raw) == name:
        return bytes(raw).ljust(nbytes, b"\0")
    if strict:
        return encode_name(name, nbytes).ljust(nbytes, b"\0")
    if not isinstance(name, str):
        raise ValueError(f"{kind} must be a str, got {type(name).__name__}: {name!r}")
    field, note = encode_name_fallback(name, nbytes, english, kind)
    if note is not None:
        _report(note, notes)
    return field.ljust(nbytes, b"\0")


def _count(n: int, what: str) -> bytes:
    if n > _U32_MAX:
        raise ValueError(f"too many {what}: {n} (a VMD count is a u32)")
    return struct.pack("<I", n)


def _dump_property_keys(keys, notes: list | None = None, strict: bool = False) -> list:
    parts = [_count(len(keys), "property keys")]
    for i, key in enumerate(keys):
        if not isinstance(key, PropertyKey):
            raise ValueError(f"property_keys[{i}] must be a PropertyKey, got {type(key).__name__}")
        frame = int(key.frame)
        if not 0 <= frame <= _U32_MAX:
            raise ValueError(f"property_keys[{i}].frame must be in 0..2**32-1, got {key.frame}")
        raws = key.ik_names_raw
        if raws is not None and len(raws) != len(key.ik_states):
            raws = None
        parts.append(struct.pack("<IBI", frame, 1 if key.visible else 0, len(key.ik_states)))
        for j, state in enumerate(key.ik_states):
            try:
                ik_name, enabled = state
            except (TypeError, ValueError):
                raise ValueError(f"property_keys[{i}].ik_states[{j}] must be (name, enabled), "
                                 f"got {state!r}") from None
            parts.append(_name_field(ik_name, None if raws is None else raws[j], _IK_NAME_BYTES,
                                     kind="IK bone name", notes=notes, strict=strict))
            parts.append(b"\x01" if enabled else b"\x00")
    return parts


def dumps(motion: VmdMotion, *, notes: list | None = None, strict_names: bool = False) -> bytes:
    """Serialise a motion to VMD bytes: ``0002`` signature, 20-byte model name, all six sections.

    Records are written exactly as stored in the arrays (no sorting, no normalisation: build keys
    with :func:`make_bone_keys` / :func:`sort_keys` for that).

    Args:
        motion: the motion.
        notes: a list that receives one line per name written with its cp932 fallback (model name:
            ``motion.model_name_en`` when it fits, else ``?`` replacements; IK names: ``?``). When
            None, each note is issued as a :class:`NameFallbackWarning`.
        strict_names: raise ValueError for a name cp932 cannot store instead of the fallback.

    Raises:
        ValueError: a section array has the wrong dtype, a count exceeds a u32, a property key is
            malformed, or (only with ``strict_names``) a name cannot be encoded in cp932.
    """
    if not isinstance(motion, VmdMotion):
        raise ValueError(f"expected a VmdMotion, got {type(motion).__name__}")
    parts = [SIGNATURE, _name_field(motion.model_name, motion.model_name_raw, _MODEL_NAME_BYTES,
                                    english=motion.model_name_en or "", kind="model name", notes=notes,
                                    strict=strict_names)]
    for field, dtype in _SECTION_DTYPES.items():
        arr = getattr(motion, field)
        _check_section(field, arr, dtype)
        parts.append(_count(len(arr), field.replace("_", " ")))
        parts.append(np.ascontiguousarray(arr).tobytes())
    parts.extend(_dump_property_keys(motion.property_keys, notes, strict_names))
    return b"".join(parts)


def name_notes(motion: VmdMotion) -> list:
    """The fallback notes :func:`write` would give for ``motion`` (model and IK names), without writing.

    Cheap, for pre-flight checks: e.g. warn before detection that a Korean model name will be stored
    as its English name. Bone and morph keys hold their names already encoded (see
    :func:`make_bone_keys`), so they give no notes here.
    """
    notes: list = []
    _name_field(motion.model_name, motion.model_name_raw, _MODEL_NAME_BYTES,
                english=motion.model_name_en or "", kind="model name", notes=notes)
    for key in motion.property_keys:
        raws = key.ik_names_raw if key.ik_names_raw is not None and len(key.ik_names_raw) == len(key.ik_states) \
            else [None] * len(key.ik_states)
        for (ik_name, _), raw in zip(key.ik_states, raws):
            _name_field(ik_name, raw, _IK_NAME_BYTES, kind="IK bone name", notes=notes)
    return notes


def write(path, motion: VmdMotion, *, overwrite: bool = False, notes: list | None = None,
          strict_names: bool = False) -> Path:
    """Write a motion to ``path`` atomically.

    The bytes are built first (so encoding errors touch no file), written to a temporary file in
    the same folder, flushed, then moved over ``path`` with ``os.replace``: a failure never leaves
    a half-written .vmd.

    Args:
        path: destination .vmd path (its folder must exist).
        motion: the motion.
        overwrite: replace an existing file. Without it an existing file is never touched.
        notes: a list that receives the cp932 fallback notes (see :func:`dumps`); the CLI prints
            them. When None they are issued as :class:`NameFallbackWarning`.
        strict_names: raise instead of writing a fallback (see :func:`dumps`).

    Returns:
        The path written.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        ValueError: see :func:`dumps` (never for a name cp932 cannot store, unless ``strict_names``).
        OSError: the folder is missing or not writable.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; refusing to overwrite it "
                              f"(pass overwrite=True to replace it)")
    payload = dumps(motion, notes=notes, strict_names=strict_names)
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
    return path


# --------------------------------------------------------------------------------------------
# Helpers on key arrays


def _names_of(motion_or_keys, field: str) -> list:
    keys = getattr(motion_or_keys, field) if isinstance(motion_or_keys, VmdMotion) else motion_or_keys
    keys = np.asarray(keys)
    if keys.dtype.names is None or "name" not in keys.dtype.names:
        raise ValueError(f"expected a VmdMotion or a key array with a 'name' field, got dtype {keys.dtype}")
    if len(keys) == 0:
        return []
    uniq, first = np.unique(keys["name"], return_index=True)
    seen, out = set(), []
    for idx in np.sort(first):
        s = decode_name(keys["name"][idx])
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def bone_names(motion_or_keys) -> list:
    """Distinct bone names of a motion (or bone key array), in order of first appearance.

    Each distinct name field is decoded once. For one name per key use
    ``decode_names(keys["name"])``.
    """
    return _names_of(motion_or_keys, "bone_keys")


def morph_names(motion_or_keys) -> list:
    """Distinct morph names of a motion (or morph key array), in order of first appearance."""
    return _names_of(motion_or_keys, "morph_keys")


def rotations_xyzw(keys) -> np.ndarray:
    """Unit rotation quaternions of bone keys, (x, y, z, w) as stored (MMD_FACTS §1.4, §5.1).

    An all-zero quaternion reads as identity (0, 0, 0, 1), as [MT] does; any other quaternion is
    divided by its norm. Non-finite values are returned as NaN (not hidden).

    Args:
        keys: (K,) :data:`BONE_KEY_DTYPE` array.

    Returns:
        (K, 4) float64.
    """
    keys = np.asarray(keys)
    if keys.dtype != BONE_KEY_DTYPE:
        raise ValueError(f"expected BONE_KEY_DTYPE keys, got dtype {keys.dtype}")
    q = keys["rotation"].astype(np.float64).reshape(-1, 4)
    norm = np.linalg.norm(q, axis=1)
    zero = norm == 0.0
    q[zero] = (0.0, 0.0, 0.0, 1.0)
    norm[zero] = 1.0
    with np.errstate(invalid="ignore"):
        return q / norm[:, None]


def sort_keys(keys: np.ndarray) -> np.ndarray:
    """Sort keys by name then frame and keep the last of duplicate (name, frame) pairs.

    MMD_FACTS §1.4 / §5.10: readers sort by frame and [BM] keeps the later of two keys with the
    same (bone, frame). Names are compared as their bytes up to the first NUL (filler after the
    NUL is ignored), in byte order. Works for bone and morph keys, and for camera / light /
    self-shadow keys (frame only).

    Args:
        keys: (K,) structured array with a ``frame`` field (and optionally ``name``).

    Returns:
        A new sorted array of the same dtype, length ≤ K.
    """
    keys = np.asarray(keys)
    if keys.ndim != 1 or keys.dtype.names is None or "frame" not in keys.dtype.names:
        raise ValueError(f"expected a 1-D key array with a 'frame' field, got shape {keys.shape} "
                         f"dtype {keys.dtype}")
    n = len(keys)
    if n == 0:
        return keys.copy()
    frames = keys["frame"].astype(np.int64)
    if "name" in keys.dtype.names:
        uniq, inverse = np.unique(keys["name"], return_inverse=True)
        canon = np.array([u.split(b"\0", 1)[0] for u in uniq.tolist()], dtype=uniq.dtype)
        _, rank = np.unique(canon, return_inverse=True)
        group = rank.reshape(-1)[inverse.reshape(-1)]
    else:
        group = np.zeros(n, dtype=np.int64)
    order = np.lexsort((np.arange(n), frames, group))
    g, f = group[order], frames[order]
    keep = np.ones(n, dtype=bool)
    keep[:-1] = (g[:-1] != g[1:]) | (f[:-1] != f[1:])
    return keys[order[keep]]


def _as_frames(frames) -> np.ndarray:
    f = np.asarray(frames)
    if f.dtype.kind == "b" or f.dtype.kind not in "iuf":
        raise ValueError(f"frames must be integers, got dtype {f.dtype}")
    if f.dtype.kind == "f" and (not np.all(np.isfinite(f)) or not np.all(f == np.round(f))):
        raise ValueError("frames must be whole numbers (VMD frames are integers at 30 fps; map "
                         "other rates by time first, MMD_FACTS §5.10)")
    if f.size and (f.min() < 0 or f.max() > _U32_MAX):
        raise ValueError(f"frames must be in 0..2**32-1, got range {f.min()}..{f.max()}")
    return f.astype(np.int64)


def _encode_name_column(names, what: str, *, english=None, notes: list | None = None,
                        strict: bool = False):
    """Encode distinct names once; returns (encoded S15 per distinct name, inverse index).

    A name cp932 cannot store gets its fallback (``english[name]`` when it fits, else ``?``
    replacements) and a note; fallbacks that would coincide with another name get ``_2``, ``_3``...
    """
    arr = np.asarray(names)
    if arr.ndim != 1 or arr.dtype.kind not in "UO":
        raise ValueError(f"{what} must be a str or a 1-D sequence of str, got shape {arr.shape} "
                         f"dtype {arr.dtype}")
    if arr.dtype.kind == "O":
        bad = [x for x in set(arr.tolist()) if not isinstance(x, str)]
        if bad:
            raise ValueError(f"{what} must all be str, got {bad[0]!r}")
    uniq, inverse = np.unique(arr, return_inverse=True)
    uniq = uniq.tolist()
    column: list = [None] * len(uniq)
    real: dict = {}
    pending = []
    for i, u in enumerate(uniq):
        if u == "":
            raise ValueError(f"{what}: empty bone name")
        if strict or check_encodable(u)[0]:
            e = encode_name(u, _BONE_NAME_BYTES)
            if e in real:
                raise ValueError(f"{what}: {real[e]!r} and {u!r} are the same after cutting to "
                                 f"{_BONE_NAME_BYTES} cp932 bytes (MMD_FACTS §1.2); rename one")
            real[e] = u
            column[i] = e
        else:
            pending.append(i)
    taken = set(real)  # fallbacks come after the real names, so they never take a real name's bytes
    alt = english or {}
    for i in pending:
        u = uniq[i]
        _, written = check_encodable(u, str(alt.get(u, "") or ""))
        e, n = encode_name(written, _BONE_NAME_BYTES), 1
        while e in taken or e == b"":
            n += 1
            suffix = f"_{n}".encode("ascii")
            e = encode_name(written, _BONE_NAME_BYTES - len(suffix)) + suffix
        taken.add(e)
        column[i] = e
        _report(cp932_note("bone name", u, e.decode(ENCODING)) + "; MMD applies these keys only to a bone "
                "of that name", notes)
    column = np.array(column, dtype=f"S{_BONE_NAME_BYTES}")
    return column, inverse.reshape(-1)


def make_bone_keys(names, frames, locations, rotations, interpolation=None, *, english_names=None,
                   notes: list | None = None, strict_names: bool = False) -> np.ndarray:
    """Build bone keys for writing, vectorised (MMD_FACTS §1.4, §1.5, §5).

    Two layouts:

    * **per key**: ``names`` a str (one bone) or K names; ``frames`` (K,) or a scalar;
      ``locations`` (K, 3); ``rotations`` (K, 4); ``interpolation`` None, (64,) or (K, 64).
    * **grid** (B bones x F frames, e.g. 20 x 5,400 = 108,000 keys): ``names`` B names, one per
      column; ``frames`` (F,); ``locations`` (F, B, 3); ``rotations`` (F, B, 4);
      ``interpolation`` None, (64,) or (F, B, 64). Keys come out grouped by bone (all frames of
      bone 0, then bone 1, ...).

    Each distinct name is encoded once (cp932, cut to 15 bytes at a character boundary).
    Rotations are normalised. ``locations`` may be None for all-zero translation.

    Args:
        names: bone names (MMD Japanese, e.g. ``"センター"``, ``"左足ＩＫ"``).
        frames: integer frame numbers (30 fps), 0..2**32-1.
        locations: translation offsets from rest in MMD model units (1 unit = 8 cm), MMD axes
            (left-handed, Y up; MMD_FACTS §2.1).
        rotations: quaternions (x, y, z, w), Hamilton, in the bone's frame; any non-zero norm.
            Sign continuity between keys (§5.1) is the caller's job.
        interpolation: 64-byte interpolation block(s); None -> :data:`LINEAR_INTERPOLATION`.
        english_names: optional ``{name: English name}``: the fallback for a name cp932 cannot store
            (else ``?`` replaces each such character; a fallback equal to another name gets ``_2``...).
        notes: list that receives one line per fallback (None: :class:`NameFallbackWarning`).
        strict_names: raise ValueError for a name cp932 cannot store instead.

    Returns:
        (K,) :data:`BONE_KEY_DTYPE` array (unsorted; see :func:`sort_keys`).

    Raises:
        ValueError: inconsistent shapes, non-integer or out-of-range frames, non-finite values,
            a zero-norm rotation, an empty name, two names that become equal after the 15-byte cut,
            or (only with ``strict_names``) a name not encodable in cp932.
    """
    rot = np.asarray(rotations, dtype=np.float64)
    grid = rot.ndim == 3
    if grid:
        if rot.shape[-1] != 4:
            raise ValueError(f"grid rotations must have shape (F, B, 4), got {rot.shape}")
        n_frames, n_bones = rot.shape[:2]
        if isinstance(names, str):
            names = [names]
        col, inv = _encode_name_column(names, "names", english=english_names, notes=notes,
                                       strict=strict_names)
        if len(inv) != n_bones:
            raise ValueError(f"grid layout: got {len(inv)} names for {n_bones} bone columns "
                             f"(rotations shape {rot.shape})")
        if len(col) != n_bones:
            raise ValueError("grid layout: bone names must be distinct (one column per bone)")
        f = _as_frames(frames)
        if f.shape != (n_frames,):
            raise ValueError(f"grid layout: frames must have shape ({n_frames},), got {f.shape}")
        loc_shape = (n_frames, n_bones, 3)
        interp_shape = (n_frames, n_bones, 64)
        # bone-major order: (B, F, ...)
        name_idx = np.repeat(inv, n_frames)
        frame_col = np.tile(f, n_bones)
        to_keys = lambda a: np.swapaxes(a, 0, 1).reshape((n_frames * n_bones,) + a.shape[2:])  # noqa: E731
    else:
        if rot.ndim != 2 or rot.shape[1] != 4:
            raise ValueError(f"rotations must have shape (K, 4) or (F, B, 4), got {rot.shape}")
        k = rot.shape[0]
        if isinstance(names, str):
            col, inv = _encode_name_column([names], "names", english=english_names, notes=notes,
                                           strict=strict_names)
            name_idx = np.zeros(k, dtype=np.intp)
        else:
            col, inv = _encode_name_column(names, "names", english=english_names, notes=notes,
                                           strict=strict_names)
            if len(inv) != k:
                raise ValueError(f"per-key layout: got {len(inv)} names for {k} keys "
                                 f"(rotations shape {rot.shape})")
            name_idx = inv
        f = _as_frames(frames)
        if f.ndim == 0:
            f = np.full(k, int(f), dtype=np.int64)
        if f.shape != (k,):
            raise ValueError(f"per-key layout: frames must have shape ({k},), got {f.shape}")
        frame_col = f
        loc_shape = (k, 3)
        interp_shape = (k, 64)
        to_keys = lambda a: a  # noqa: E731

    if locations is None:
        loc = np.zeros(loc_shape, dtype=np.float64)
    else:
        loc = np.asarray(locations, dtype=np.float64)
        if loc.shape != loc_shape:
            raise ValueError(f"locations must have shape {loc_shape}, got {loc.shape}")
    if not np.all(np.isfinite(loc)):
        raise ValueError("locations contain NaN or inf")
    if not np.all(np.isfinite(rot)):
        raise ValueError("rotations contain NaN or inf")
    norm = np.linalg.norm(rot, axis=-1, keepdims=True)
    if np.any(norm < 1e-12):
        bad = np.argwhere(norm[..., 0] < 1e-12)[0]
        raise ValueError(f"rotation at index {tuple(int(i) for i in bad)} has zero norm")
    rot = rot / norm

    if interpolation is None:
        interp = LINEAR_INTERPOLATION
    else:
        interp = _check_blocks(interpolation)
        if np.any(interp < 0) or np.any(interp > 255):
            raise ValueError("interpolation bytes must be in 0..255")
        if interp.shape != (64,) and interp.shape != interp_shape:
            raise ValueError(f"interpolation must have shape (64,) or {interp_shape}, got {interp.shape}")

    out = np.empty(len(frame_col), dtype=BONE_KEY_DTYPE)
    out["name"] = col[name_idx]
    out["frame"] = frame_col
    out["location"] = to_keys(loc)
    out["rotation"] = to_keys(rot)
    out["interpolation"] = interp if interp.ndim == 1 else to_keys(interp)
    return out
