"""Build a Blender armature + mesh from a PMX model read by ``core.formats.pmx``.

What is built (MMD_FACTS.md sections 3 and 4):

* **Armature** with the PMX bone hierarchy. Bone names are the Japanese PMX names, byte for byte (docs/MMD_FACTS.md §4:
  full-width ＩＫ etc.), so motions match by name; each data bone also stores ``mmd_name_j`` (the exact PMX name,
  which survives Blender's renaming of duplicates), ``mmd_name_en`` (the English alias) and ``mmd_index``.
  Heads are the PMX positions converted with ``core.conventions.mmd_to_blender`` (metres, Z up, the model faces -Y).
* **Bone orientation.** Each bone points from its head to its PMX tail (the tail bone's position, or head + tail
  offset), with roll 0, like MMD Tools. Bones without a usable tail point up (+Z). Bones of an IK chain are made to
  meet: the first link's tail is the IK target's head and each further link's tail is the previous link's head,
  because Blender's IK moves the *tail* of the chain (a bone's tail must be its child joint). PMX bones have no rest
  orientation (docs/MMD_FACTS.md §2.2), so the Blender rest orientation is only a display choice: ``action_writer`` converts
  MMD values with each bone's actual rest matrix (the exact mapping is documented there), so any orientation,
  including MMD Tools' own, converts exactly.
* **IK** (docs/MMD_FACTS.md §2.5): for each PMX IK bone, an ``IK`` constraint on the link nearest the target (ひざ for
  足ＩＫ, 足首 for つま先ＩＫ) with the IK bone as target, ``chain_count`` = number of links and ``use_tail``.
  Link angle limits become pose-bone IK limits on the local axis that carries the MMD axis (ひざ: X only, the
  others locked). Blender's limits must contain 0, so ひざ's MMD range [-180°, -0.5°] becomes [0°, 180°] about the
  bone's local X (the sign flips, see ``action_writer``).
* **Inherited (付与) rotation / translation** (docs/MMD_FACTS.md §3.4): ``COPY_ROTATION`` / ``COPY_LOCATION`` constraints
  from the source bone in local space (target space "owner orientation", so differently oriented bones copy the
  same model-space rotation), influence = |ratio|, axes inverted for a negative ratio. Exact for ratio ±1 (D bones,
  腰キャンセル, 肩C); an approximation of MMD's slerp for fractional ratios (捩1-3). Fixed / local axes, local
  inherit and external parents are not modelled (they do not change how VMD keys are read, docs/MMD_FACTS.md §2.2).
* **Mesh** with the PMX vertices, faces (winding reversed: PMX front faces are clockwise, docs/MMD_FACTS.md §3.3; of
  faces repeated on the same vertices only the most opaque material's is kept, Blender allows one),
  UVs (V flipped: PMX uses V down), custom normals, one vertex group per weighted bone (BDEF1/2/4; SDEF as BDEF2,
  QDEF as BDEF4), an Armature modifier, and one material per PMX material with its texture. Texture paths are
  relative to the PMX (``\\`` separators, case-insensitive fallback); a missing or unreadable texture is a warning,
  not an error.
* **Morphs as shape keys** (docs/MMD_FACTS.md §3.5): a ``Basis`` key, then, in PMX order, one relative shape key per
  vertex morph, named exactly as the PMX's Japanese morph name (so VMD morph keys, Apply and Import VMD find it), at
  the morphed positions ``mmd_to_blender(position + offset)`` (the same conversion as the vertices). A **group
  morph** is baked into one shape key: the weighted sum of its vertex members' offsets (nested groups followed, a
  cycle ignored); that is exact, because MMD applies a group at weight w as each member at w × its weight and vertex
  offsets add. Members of other types (bone, material, UV: mat4's あ/い/う also move bones) cannot live in
  a shape key: they are left out with a warning (the VMD morph key still carries the whole morph for MMD), and a
  group without any vertex member, like bone, material, UV, flip and impulse morphs, gets no shape key (counted in a
  warning). Written with ``ShapeKey.points.foreach_set``, one call per key.
* Rigid bodies, joints and soft bodies are not built.

Everything is created only after the whole file was read; if building fails half-way, every data-block created so
far is removed again (nothing half-built is left).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import bpy
import numpy as np

from . import compat
from ._core import conventions, pmx
from .action_writer import mmd_to_local_matrix

#: Smallest bone length (metres); Blender deletes zero-length bones.
MIN_BONE_LENGTH = 0.01


@dataclass
class BuildResult:
    """What :func:`build_model` made.

    Attributes:
        armature: the armature object (custom properties ``mmd_model_name``, ``mmd_model_name_en``, ``mmd_source``).
        mesh: the mesh object, or None for a bone-only PMX (0 vertices).
        bone_names: Blender bone name of each PMX bone, in PMX index order.
        materials: the Blender materials, in PMX order.
        warnings: problems that did not stop the import (missing textures...), for the user.
    """

    armature: object
    mesh: object | None
    bone_names: list
    materials: list = field(default_factory=list)
    warnings: list = field(default_factory=list)


def import_pmx(filepath, context=None, *, collection=None) -> BuildResult:
    """Read ``filepath`` with ``core.formats.pmx.read`` and build it into ``collection`` (default: the scene's
    active collection).

    Raises:
        core.formats.errors.FormatError: the file is malformed (nothing is created; the message names the file
            and the byte offset).
        OSError: the file cannot be read.
    """
    model = pmx.read(filepath)  # read fully first: a bad file creates nothing
    return build_model(model, context=context, collection=collection)


def build_model(model, context=None, *, collection=None, name: str | None = None) -> BuildResult:
    """Build a :class:`core.formats.pmx.PmxModel` (see the module docstring for what is built).

    Args:
        model: the parsed PMX; ``model.path`` (if set) is where texture paths are resolved from.
        context: Blender context (default ``bpy.context``).
        collection: collection to link the objects into (default: the view layer's active collection).
        name: object name (default: the model's Japanese name, else the file stem).

    Returns:
        :class:`BuildResult`. The armature is left active and selected, in object mode.

    Raises:
        Exception: whatever building raised, after removing every data-block it had created.
    """
    context = context or bpy.context
    collection = collection or context.view_layer.active_layer_collection.collection
    base = Path(model.path).parent if getattr(model, "path", None) else None
    name = name or model.header.name.strip() or (Path(model.path).stem if getattr(model, "path", None) else "MMD model")
    created: list = []
    try:
        return _build(model, context, collection, name, base, created)
    except BaseException:
        _remove_created(created)
        raise


# ------------------------------------------------------------------------------------------------------------------
def _remove_created(created: list) -> None:
    """Remove data-blocks created by a failed build, newest first."""
    for idb in reversed(created):
        try:
            coll = {bpy.types.Object: bpy.data.objects, bpy.types.Mesh: bpy.data.meshes,
                    bpy.types.Armature: bpy.data.armatures, bpy.types.Material: bpy.data.materials,
                    bpy.types.Image: bpy.data.images}
            for t, c in coll.items():
                if isinstance(idb, t):
                    c.remove(idb)
                    break
        except ReferenceError:
            pass


def _ensure_object_mode(context) -> None:
    if context.mode != "OBJECT" and context.view_layer.objects.active is not None:
        bpy.ops.object.mode_set(mode="OBJECT")


def _bone_tails(model, heads: np.ndarray) -> np.ndarray:
    """Tail of each bone in Blender metres: tail bone's head or head + offset; IK chains forced to meet."""
    n = len(model.bones)
    tails = heads.copy()
    for i, b in enumerate(model.bones):
        if b.tail_is_bone:
            if 0 <= b.tail_bone < n and b.tail_bone != i:
                tails[i] = heads[b.tail_bone]
        elif b.tail_offset is not None:
            tails[i] = heads[i] + conventions.mmd_to_blender(np.asarray(b.tail_offset, dtype=np.float64))
    for b in model.bones:
        if b.ik is None or not (0 <= b.ik.target < n):
            continue
        prev = b.ik.target
        for link in b.ik.links:
            if 0 <= link.bone < n and link.bone != prev:
                tails[link.bone] = heads[prev]
                prev = link.bone
    return tails


def _fix_short_bones(heads: np.ndarray, tails: np.ndarray, min_len: float) -> np.ndarray:
    """Bones shorter than ``min_len`` point up (+Z) with length ``min_len`` (Blender drops zero-length bones)."""
    length = np.linalg.norm(tails - heads, axis=1)
    short = length < min_len
    tails = tails.copy()
    tails[short] = heads[short] + np.array([0.0, 0.0, min_len])
    return tails


def _build_armature(model, context, collection, name, created) -> tuple:
    n = len(model.bones)
    arm = bpy.data.armatures.new(name)
    created.append(arm)
    obj = bpy.data.objects.new(name, arm)
    created.append(obj)
    collection.objects.link(obj)
    arm.display_type = "STICK"
    obj.show_in_front = True
    obj["mmd_model_name"] = model.header.name
    obj["mmd_model_name_en"] = model.header.name_en
    if getattr(model, "path", None):
        obj["mmd_source"] = str(model.path)
    if n == 0:
        return obj, []

    heads = conventions.mmd_to_blender(np.array([b.position for b in model.bones], dtype=np.float64).reshape(n, 3))
    height = float(np.ptp(heads[:, 2])) if n > 1 else 0.0
    min_len = max(MIN_BONE_LENGTH, 0.02 * height)
    tails = _fix_short_bones(heads, _bone_tails(model, heads), min_len)

    _ensure_object_mode(context)
    for o in context.view_layer.objects.selected:
        o.select_set(False)
    context.view_layer.objects.active = obj
    obj.select_set(True)
    bpy.ops.object.mode_set(mode="EDIT")
    try:
        ebs = arm.edit_bones
        names = []
        for i, b in enumerate(model.bones):
            eb = ebs.new(b.name or f"bone{i:03d}")
            eb.head = heads[i].tolist()
            eb.tail = tails[i].tolist()
            eb.roll = 0.0
            names.append(eb.name)
        for i, b in enumerate(model.bones):
            if 0 <= b.parent < n and b.parent != i:
                ebs[names[i]].parent = ebs[names[b.parent]]
        visible = arm.collections.new("MMD bones")
        hidden = arm.collections.new("MMD hidden bones")
        for i, b in enumerate(model.bones):
            (visible if b.visible else hidden).assign(ebs[names[i]])
        hidden.is_visible = False
    finally:
        bpy.ops.object.mode_set(mode="OBJECT")

    for i, b in enumerate(model.bones):
        db = arm.bones[names[i]]
        db["mmd_name_j"] = b.name
        db["mmd_name_en"] = b.name_en
        db["mmd_index"] = i
        if (b.inherit_rotation or b.inherit_translation) and 0 <= b.inherit_source < n and b.inherit_source != i:
            db["mmd_inherit_source"] = names[b.inherit_source]
            db["mmd_inherit_ratio"] = float(b.inherit_ratio)
            db["mmd_inherit_rotation"] = bool(b.inherit_rotation)
        if b.ik is not None and 0 <= b.ik.target < n:
            db["mmd_ik_target"] = names[b.ik.target]
        pb = obj.pose.bones[names[i]]
        pb.rotation_mode = "QUATERNION"
        if not b.translatable:
            pb.lock_location = (True, True, True)
        if not b.rotatable:
            pb.lock_rotation = (True, True, True)
            pb.lock_rotation_w = True
    _add_ik(model, obj, names)
    _add_inherit(model, obj, names)
    return obj, names


def _add_ik(model, obj, names) -> None:
    n = len(model.bones)
    for i, b in enumerate(model.bones):
        ik = b.ik
        if ik is None or not ik.links or not (0 <= ik.target < n):
            continue
        first = ik.links[0].bone
        if not (0 <= first < n):
            continue
        con = obj.pose.bones[names[first]].constraints.new("IK")
        con.name = f"IK {b.name}"
        con.target = obj
        con.subtarget = names[i]
        con.chain_count = len(ik.links)
        con.use_tail = True
        con.iterations = int(min(max(ik.loop_count * 10, 50), 500))
        for link in ik.links:
            if link.has_limit and 0 <= link.bone < n:
                _set_ik_limits(obj.pose.bones[names[link.bone]], obj.data.bones[names[link.bone]],
                               np.asarray(link.limit_min, dtype=np.float64),
                               np.asarray(link.limit_max, dtype=np.float64))


def _set_ik_limits(pb, bone, lo: np.ndarray, hi: np.ndarray) -> None:
    """MMD Euler limits (radians, model axes) -> pose-bone IK limits / locks on the local axes.

    A rotation by θ about MMD axis a is a rotation by θ about ``-M·a`` in the bone's local frame
    (``action_writer``), so each MMD axis maps to the local axis that ``M·a`` is closest to, with the sign flipped
    when that component is positive. Axes with a zero range are locked. Blender needs min <= 0 <= max.
    """
    m = mmd_to_local_matrix(bone)
    for ax in range(3):
        v = m[:, ax]
        j = int(np.argmax(np.abs(v)))
        if abs(v[j]) < 0.7:  # the MMD axis is not close to any local axis: leave this one free
            continue
        s = -np.sign(v[j])
        a, c = sorted((s * lo[ax], s * hi[ax]))
        key = "xyz"[j]
        if abs(a) < 1e-9 and abs(c) < 1e-9:
            setattr(pb, f"lock_ik_{key}", True)
            continue
        setattr(pb, f"use_ik_limit_{key}", True)
        setattr(pb, f"ik_min_{key}", float(np.clip(min(a, 0.0), -np.pi, 0.0)))
        setattr(pb, f"ik_max_{key}", float(np.clip(max(c, 0.0), 0.0, np.pi)))


def _add_inherit(model, obj, names) -> None:
    n = len(model.bones)
    for i, b in enumerate(model.bones):
        src = b.inherit_source
        if not (b.inherit_rotation or b.inherit_translation) or not (0 <= src < n) or src == i:
            continue
        ratio = float(b.inherit_ratio)
        if ratio == 0.0:
            continue
        pb = obj.pose.bones[names[i]]
        kinds = []
        if b.inherit_rotation:
            kinds.append(("COPY_ROTATION", "mmd_inherit_rotation"))
        if b.inherit_translation:
            kinds.append(("COPY_LOCATION", "mmd_inherit_location"))
        for ctype, cname in kinds:
            con = pb.constraints.new(ctype)
            con.name = cname
            con.target = obj
            con.subtarget = names[src]
            con.target_space = "LOCAL_OWNER_ORIENT"
            con.owner_space = "LOCAL"
            con.influence = min(abs(ratio), 1.0)
            if ratio < 0:
                con.invert_x = con.invert_y = con.invert_z = True
            if ctype == "COPY_ROTATION":
                con.mix_mode = "AFTER"
            else:
                con.use_offset = True


# ------------------------------------------------------------------------------------------------------------------
def _resolve_texture(base: Path | None, stored: str) -> Path | None:
    """A PMX texture path (relative to the PMX, Windows separators) -> an existing file, case-insensitively."""
    rel = stored.replace("\\", "/").strip()
    if not rel:
        return None
    p = Path(rel)
    if not p.is_absolute():
        if base is None:
            return None
        p = base / p
    if p.is_file():
        return p
    hit = _walk_case_insensitive(base, p, rel)
    if hit is None and base is not None:  # e.g. an absolute Windows path: try the file name beside the PMX
        hit = _walk_case_insensitive(base, base / Path(rel).name, Path(rel).name)
    return hit


def _walk_case_insensitive(base: Path | None, p: Path, rel: str) -> Path | None:
    """Follow ``rel`` from ``base`` (or from the root for an absolute path) matching each part case-insensitively."""
    cur = base if not Path(rel).is_absolute() and base is not None else Path(p.anchor)
    parts = [x for x in Path(rel).parts if x not in ("", ".", p.anchor)]
    for part in parts:
        if part == "..":
            cur = cur.parent
            continue
        try:
            match = next((c for c in cur.iterdir() if c.name.lower() == part.lower()), None)
        except OSError:
            return None
        if match is None:
            return None
        cur = match
    return cur if cur.is_file() else None


def _load_image(path: Path, warnings: list, created: list, stored: str):
    existing = {im.filepath for im in bpy.data.images}
    try:
        img = bpy.data.images.load(str(path), check_existing=True)
    except RuntimeError as e:
        warnings.append(f"texture {stored!r} could not be loaded ({e}); the material is left untextured")
        return None
    if img.filepath not in existing:
        created.append(img)
    return img


def _make_material(mat_pmx, image, name: str):
    mat = bpy.data.materials.new(name or "material")
    if mat.node_tree is None:
        mat.use_nodes = True
    nt = mat.node_tree
    bsdf = next((nd for nd in nt.nodes if nd.type == "BSDF_PRINCIPLED"), None)
    out = next((nd for nd in nt.nodes if nd.type == "OUTPUT_MATERIAL"), None)
    if bsdf is None:
        bsdf = nt.nodes.new("ShaderNodeBsdfPrincipled")
    if out is None:
        out = nt.nodes.new("ShaderNodeOutputMaterial")
    if not any(link.to_node == out for link in nt.links):
        nt.links.new(bsdf.outputs["BSDF"], out.inputs["Surface"])
    diffuse = np.asarray(mat_pmx.diffuse, dtype=np.float64)
    rgba = (float(diffuse[0]), float(diffuse[1]), float(diffuse[2]), 1.0)
    alpha = float(np.clip(diffuse[3], 0.0, 1.0))
    bsdf.inputs["Base Color"].default_value = rgba
    bsdf.inputs["Roughness"].default_value = 0.7
    bsdf.inputs["Alpha"].default_value = alpha
    mat.diffuse_color = (rgba[0], rgba[1], rgba[2], alpha)
    if image is not None:
        tex = nt.nodes.new("ShaderNodeTexImage")
        tex.image = image
        tex.location = (bsdf.location.x - 400, bsdf.location.y)
        nt.links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
        if alpha < 1.0:
            mul = nt.nodes.new("ShaderNodeMath")
            mul.operation = "MULTIPLY"
            mul.inputs[1].default_value = alpha
            mul.location = (bsdf.location.x - 200, bsdf.location.y - 300)
            nt.links.new(tex.outputs["Alpha"], mul.inputs[0])
            nt.links.new(mul.outputs[0], bsdf.inputs["Alpha"])
        else:
            nt.links.new(tex.outputs["Alpha"], bsdf.inputs["Alpha"])
    mat.use_backface_culling = not mat_pmx.double_sided
    compat.set_dithered_transparency(mat)
    mat["mmd_name_j"] = mat_pmx.name
    mat["mmd_name_en"] = mat_pmx.name_en
    return mat


def _build_materials(model, base, warnings, created) -> list:
    images: dict = {}
    mats = []
    for k, m in enumerate(model.materials):
        image = None
        if 0 <= m.texture < len(model.textures):
            stored = model.textures[m.texture]
            if stored not in images:
                path = _resolve_texture(base, stored)
                if path is None:
                    warnings.append(f"texture {stored!r} of material {m.name!r} not found"
                                    f"{' next to ' + str(base) if base else ''}; the material is left untextured")
                    images[stored] = None
                else:
                    images[stored] = _load_image(path, warnings, created, stored)
            image = images[stored]
        mat = _make_material(m, image, m.name or f"material{k:03d}")
        created.append(mat)
        mats.append(mat)
    return mats


def _vertex_weights(model) -> tuple:
    """Per (vertex, bone) summed weights: ``(vertex (K,), bone (K,), weight (K,))``, weights > 0 only."""
    v = model.vertices
    n = len(v)
    bones = np.asarray(v.bone_indices, dtype=np.int64).reshape(n, 4)
    w = np.asarray(v.weights, dtype=np.float64).reshape(n, 4)
    vid = np.repeat(np.arange(n, dtype=np.int64), 4)
    b = bones.reshape(-1)
    ww = w.reshape(-1)
    keep = (b >= 0) & (b < len(model.bones)) & (ww > 0)
    vid, b, ww = vid[keep], b[keep], ww[keep]
    key = vid * (len(model.bones) + 1) + b
    uniq, inv = np.unique(key, return_inverse=True)
    total = np.bincount(inv.reshape(-1), weights=ww)
    return uniq // (len(model.bones) + 1), uniq % (len(model.bones) + 1), total


def _build_mesh(model, name, collection, arm_obj, bone_names, mats, created, warnings):
    v = model.vertices
    nv = len(v)
    faces = np.asarray(model.faces, dtype=np.int64).reshape(-1, 3)[:, ::-1]  # reverse winding (docs/MMD_FACTS.md §3.3)
    counts = np.array([m.index_count // 3 for m in model.materials], dtype=np.int64)
    face_mat = np.repeat(np.arange(len(counts), dtype=np.int32), counts)
    if len(face_mat) != len(faces):
        face_mat = np.zeros(len(faces), dtype=np.int32)
    keep = _unique_faces(faces, face_mat, model.materials)
    if len(keep) != len(faces):
        warnings.append(f"{len(faces) - len(keep)} of {len(faces)} faces repeat other faces (same vertices, e.g. "
                        f"material variants that morphs switch on); one per place is kept, the most opaque")
    faces, face_mat = faces[keep], face_mat[keep]
    nf = len(faces)
    me = bpy.data.meshes.new(name)
    created.append(me)
    co = conventions.mmd_to_blender(np.asarray(v.positions, dtype=np.float64)).astype(np.float32)
    me.vertices.add(nv)
    me.vertices.foreach_set("co", co.ravel())
    me.loops.add(nf * 3)
    me.loops.foreach_set("vertex_index", faces.astype(np.int32).ravel())
    me.polygons.add(nf)
    me.polygons.foreach_set("loop_start", np.arange(0, nf * 3, 3, dtype=np.int32))
    # Material slots and per-face material index from the materials' index ranges (docs/MMD_FACTS.md §3.3).
    for m in mats:
        me.materials.append(m)
    if len(mats):
        me.polygons.foreach_set("material_index", face_mat)
    me.polygons.foreach_set("use_smooth", np.ones(nf, dtype=bool))
    uv = np.asarray(v.uvs, dtype=np.float32).reshape(nv, 2).copy()
    uv[:, 1] = 1.0 - uv[:, 1]  # PMX V points down
    layer = me.uv_layers.new(name="UVMap")
    layer.data.foreach_set("uv", uv[faces.ravel()].ravel())
    me.update(calc_edges=True)
    me.validate(clean_customdata=False)
    if len(me.polygons) != nf:
        warnings.append(f"{nf - len(me.polygons)} invalid faces were dropped")
    normals = conventions.mmd_to_blender(np.asarray(v.normals, dtype=np.float64))
    lengths = np.linalg.norm(normals, axis=1, keepdims=True)
    if np.all(np.isfinite(normals)) and np.all(lengths > 1e-8):
        me.normals_split_custom_set_from_vertices((normals / lengths).astype(np.float32))

    obj = bpy.data.objects.new(name + "_mesh", me)
    created.append(obj)
    collection.objects.link(obj)
    obj.parent = arm_obj
    _build_shape_keys(obj, model, co, warnings)
    if bone_names:
        vid, bid, w = _vertex_weights(model)
        _assign_weights(obj, bone_names, vid, bid, w)
        mod = obj.modifiers.new("Armature", "ARMATURE")
        mod.object = arm_obj
    return obj


def _morph_vertex_parts(model) -> tuple[dict, dict]:
    """What each morph contributes to a shape key.

    Returns:
        ``(parts, lost)``: ``parts[i] = (vertex indices (K,) int64, offsets (K, 3) float64 MMD units)`` for every
        vertex morph and every group morph with at least one vertex member (a group's offsets are its vertex members'
        scaled by the member weights, recursively; duplicate indices are summed); ``lost[i]`` = sorted type names of
        the non-vertex members a group morph ``i`` leaves out.
    """
    morphs = model.morphs
    n = len(morphs)
    memo: dict = {}

    def collect(i: int, stack: tuple) -> tuple[list, set]:
        if i in memo:
            return memo[i]
        m = morphs[i]
        if m.type == pmx.MORPH_VERTEX:
            out = ([(m.offsets["index"].astype(np.int64), m.offsets["offset"].astype(np.float64))], set())
        elif m.type == pmx.MORPH_GROUP:
            pieces, lost = [], set()
            for j, w in zip(m.offsets["index"].tolist(), m.offsets["weight"].tolist()):
                if not (0 <= j < n) or j in stack or j == i:
                    continue  # the reader checked the range; a cycle adds nothing more
                sub = morphs[j]
                if sub.type not in (pmx.MORPH_VERTEX, pmx.MORPH_GROUP):
                    lost.add(sub.type_name)
                    continue
                sp, sl = collect(j, stack + (i,))
                pieces.extend((idx, off * float(w)) for idx, off in sp)
                lost |= sl
            out = (pieces, lost)
        else:
            out = ([], set())
        memo[i] = out
        return out

    parts, lost = {}, {}
    for i, m in enumerate(morphs):
        if m.type not in (pmx.MORPH_VERTEX, pmx.MORPH_GROUP):
            continue
        pieces, lo = collect(i, ())
        if m.type == pmx.MORPH_GROUP:
            if lo:
                lost[i] = sorted(lo)
            if not pieces:
                continue
        if pieces:
            idx = np.concatenate([p[0] for p in pieces])
            off = np.concatenate([p[1].reshape(-1, 3) for p in pieces])
        else:
            idx, off = np.zeros(0, np.int64), np.zeros((0, 3))
        uniq, inv = np.unique(idx, return_inverse=True)
        total = np.zeros((len(uniq), 3))
        np.add.at(total, inv.reshape(-1), off)
        parts[i] = (uniq, total)
    return parts, lost


def _build_shape_keys(obj, model, co: np.ndarray, warnings: list) -> None:
    """Basis + one shape key per vertex morph and per group morph with vertex members (module docstring).

    ``co``: the mesh's vertex coordinates ``(V, 3)`` float32, as written (``mmd_to_blender`` of the positions).
    """
    parts, lost = _morph_vertex_parts(model)
    skipped = [m for i, m in enumerate(model.morphs) if i not in parts]
    if parts:
        nv = len(co)
        positions = np.asarray(model.vertices.positions, dtype=np.float64).reshape(nv, 3)
        obj.shape_key_add(name="Basis", from_mix=False)
        renamed = []
        for i, (idx, off) in parts.items():
            m = model.morphs[i]
            want = m.name or f"morph{i:03d}"
            kb = obj.shape_key_add(name=want, from_mix=False)
            kb.value = 0.0   # Blender 5 starts a new key at 1.0; a PMX's morphs rest at 0
            if kb.name != want:
                renamed.append(f"{want!r} -> {kb.name!r}")
            keyed = co.copy()   # indices were range-checked by the reader
            keyed[idx] = conventions.mmd_to_blender(positions[idx] + off).astype(np.float32)
            kb.points.foreach_set("co", keyed.ravel())   # ``points``: 30x faster than ``data`` here
        obj.data.shape_keys.use_relative = True
        obj.active_shape_key_index = 0
        if renamed:
            warnings.append(f"{len(renamed)} morph names repeat or are too long for Blender, so their shape keys "
                            f"were renamed ({', '.join(renamed[:5])}); a motion's keys of such a name reach only the "
                            f"first shape key of that name, or none if the name was cut: rename them in the PMX")
    if lost:
        names = [model.morphs[i].name for i in lost if i in parts]
        kinds = sorted({t for i, v in lost.items() if i in parts for t in v})
        if names:
            warnings.append(f"{len(names)} group morphs also have {'/'.join(kinds)} members, which a shape key cannot "
                            f"hold (e.g. {', '.join(names[:5])}): the preview shows only their vertex part; the VMD "
                            f"morph keys are unchanged, MMD plays the whole morph")
    if skipped:
        counts: dict = {}
        for m in skipped:
            counts[m.type_name] = counts.get(m.type_name, 0) + 1
        what = ", ".join(f"{c} {t}" for t, c in sorted(counts.items()))
        warnings.append(f"{len(skipped)} morphs ({what}) have no vertex offsets and get no shape key "
                        f"(e.g. {', '.join(m.name for m in skipped[:5])}); Apply and Import VMD skip their keys on "
                        f"this model (MMD Tools builds bone and material morphs)")


def _unique_faces(faces: np.ndarray, face_mat: np.ndarray, materials) -> np.ndarray:
    """Indices of the faces to build, in file order: of faces on the same three vertices (Blender allows only one),
    keep the one whose material is the most opaque (diffuse alpha), the first in the file on a tie. Models stack
    such copies for material variants that morphs fade in (mat4: 頬染め over the face, alpha 0)."""
    if len(faces) == 0:
        return np.arange(0)
    alpha = np.array([float(m.diffuse[3]) for m in materials] or [1.0])[np.clip(face_mat, 0, None)]
    key = np.sort(faces, axis=1)
    _, group = np.unique(key, axis=0, return_inverse=True)
    group = group.reshape(-1)
    order = np.lexsort((np.arange(len(faces)), -alpha, group))
    first = np.ones(len(order), dtype=bool)
    first[1:] = group[order[1:]] != group[order[:-1]]
    return np.sort(order[first])


def _assign_weights(obj, bone_names, vid, bid, w) -> None:
    """One vertex group per bone with weights; vertices with equal weight go in one ``VertexGroup.add`` call."""
    if len(vid) == 0:
        return
    order = np.lexsort((w, bid))
    vid, bid, w = vid[order], bid[order], w[order]
    # Runs of equal (bone, weight).
    brk = np.flatnonzero((bid[1:] != bid[:-1]) | (w[1:] != w[:-1])) + 1
    starts = np.concatenate(([0], brk))
    ends = np.concatenate((brk, [len(vid)]))
    groups = {}
    vid_list = vid.tolist()
    for s, e in zip(starts.tolist(), ends.tolist()):
        b = int(bid[s])
        g = groups.get(b)
        if g is None:
            g = groups[b] = obj.vertex_groups.new(name=bone_names[b])
        g.add(vid_list[s:e], float(w[s]), "REPLACE")


def _build(model, context, collection, name, base, created) -> BuildResult:
    warnings: list = []
    arm_obj, bone_names = _build_armature(model, context, collection, name, created)
    mats = _build_materials(model, base, warnings, created)
    mesh_obj = None
    if len(model.vertices) > 0:
        mesh_obj = _build_mesh(model, name, collection, arm_obj, bone_names, mats, created, warnings)
    context.view_layer.objects.active = arm_obj
    arm_obj.select_set(True)
    return BuildResult(armature=arm_obj, mesh=mesh_obj, bone_names=bone_names, materials=mats, warnings=warnings)
