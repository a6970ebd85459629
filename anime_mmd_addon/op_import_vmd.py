"""Import VMD: any VMD motion onto an armature as a NEW action, keeping its Bézier curves, IK switches and morphs.

``anime_mmd.import_vmd`` (File > Import > "MMD motion (.vmd) [Anime MMD]") reads a VMD with ``core.formats.vmd``
and writes, in bulk (``keyframe_points.add`` + ``foreach_set``):

* **Bone keys** on the bones the armature has (by MMD name, ``armature_rest.bone_name_map``; the others are listed
  as skipped), values converted as ``action_writer`` documents (docs/MMD_FACTS.md §2.3). Each key's curves become
  Blender Bézier handles the way MMD Tools' importer sets them: for the segment from key k-1 to key k with curve
  (x1, y1, x2, y2), ``handle_right(k-1) = co(k-1) + (dx·x1, dy·y1)/127`` and ``handle_left(k) = co(k-1) + (dx·x2,
  dy·y2)/127`` (FREE handles, BEZIER interpolation); the rotation curve R goes on all four quaternion channels, and
  each translation curve on the local location channel its MMD axis maps to (the largest entry of ``M``).
  Blender interpolates quaternion components, not slerp, so frames between keys differ slightly from MMD
  (docs/MMD_FACTS.md §2.3).
* The raw 64-byte blocks are also kept on the action (``action["mmd_interpolation"]``, per MMD bone name a flat
  list ``frame, 64 bytes, frame, ...``) so that ``vmd_export`` can give back what handles cannot hold: a curve on a
  channel whose value does not change (dy = 0), and the physics-toggle bytes (docs/MMD_FACTS.md §1.5).
* **IK switches** (property keys, docs/MMD_FACTS.md §1.7): the ``influence`` of the IK constraints whose target is
  that IK bone, keyed 1 / 0 with CONSTANT interpolation; the key order and display flags are kept on the action
  (``mmd_ik_order``, ``mmd_property_visible``).
* **Morphs** (docs/MMD_FACTS.md §2.4: linear): ``key_blocks[name].value`` of the shape keys of the armature's meshes
  that have a shape key of that name, in a new action on the mesh's shape keys; morphs no mesh has are skipped with a
  warning.

Frames (docs/MMD_FACTS.md §2.7): VMD frame f goes on Blender frame f; the scene is set to 30 fps and its range to
the motion's, starting at 0, and ``action["mmd_frame_offset"] = 0`` tells ``vmd_export`` so.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import bpy
import numpy as np
from bpy.props import StringProperty
from bpy_extras.io_utils import ImportHelper

from . import compat
from ._core import conventions, vmd
from ._core import quat as quat_math
from .action_writer import mmd_to_local_matrices, mmd_to_pose, unique_action_name
from .armature_rest import bone_name_map

_KP = bpy.types.Keyframe.bl_rna.properties
_BEZIER = _KP["interpolation"].enum_items["BEZIER"].value
_LINEAR = _KP["interpolation"].enum_items["LINEAR"].value
_CONSTANT = _KP["interpolation"].enum_items["CONSTANT"].value
_FREE = _KP["handle_left_type"].enum_items["FREE"].value

#: Action custom properties shared with ``vmd_export``.
INTERP_PROP = "mmd_interpolation"
FRAME_OFFSET_PROP = "mmd_frame_offset"
IK_ORDER_PROP = "mmd_ik_order"
VISIBLE_PROP = "mmd_property_visible"


@dataclass
class ImportResult:
    """What :func:`import_vmd` did: the new ``action`` (and ``morph_actions``), counts, the frame range and
    ``warnings`` (skipped bones and morphs)."""

    action: object
    bone_count: int
    key_count: int
    morph_count: int
    ik_key_count: int
    frame_range: tuple
    skipped_bones: list = field(default_factory=list)
    morph_actions: list = field(default_factory=list)
    warnings: list = field(default_factory=list)


def location_axes(m: np.ndarray) -> np.ndarray:
    """For each MMD axis a (X, Y, Z) the local location channel that carries its curve: ``(N, 3)`` int, a
    permutation per bone picked greedily by the largest ``|M[i, a]|`` (``M = Bᵀ·P``, ``action_writer``), as MMD Tools'
    ``_InterpolationHelper`` does."""
    m = np.abs(np.asarray(m, dtype=np.float64))
    out = np.empty(m.shape[:1] + (3,), dtype=np.int64)
    for k, mk in enumerate(m):
        rows, cols = set(range(3)), set(range(3))
        for _ in range(3):
            i, a = max(((i, a) for i in rows for a in cols), key=lambda ia: mk[ia[0], ia[1]])
            out[k, a] = i
            rows.discard(i)
            cols.discard(a)
    return out


def handles(frames: np.ndarray, values: np.ndarray, curves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Blender handles for keys ``(frames (K,), values (K,))`` whose curves ``(K, 4)`` (x1, y1, x2, y2 in 0..127;
    curve k shapes the segment k-1 -> k) are MMD's: ``(handle_left (K, 2), handle_right (K, 2))`` (module doc)."""
    f = np.asarray(frames, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    hl = np.stack([f - 1.0, v], axis=1)
    hr = np.stack([f + 1.0, v], axis=1)
    if len(f) > 1:
        c = np.asarray(curves[1:], dtype=np.float64) / 127.0
        dx, dy = np.diff(f), np.diff(v)
        hr[:-1, 0] = f[:-1] + dx * c[:, 0]
        hr[:-1, 1] = v[:-1] + dy * c[:, 1]
        hl[1:, 0] = f[:-1] + dx * c[:, 2]
        hl[1:, 1] = v[:-1] + dy * c[:, 3]
    return hl, hr


def write_fcurve(fc, frames, values, curves=None, *, interpolation: int | None = None) -> None:
    """Fill an empty F-Curve in one go: BEZIER keys with MMD curves ``(K, 4)`` (:func:`handles`), or, with
    ``curves=None``, keys of the given ``interpolation`` (default LINEAR)."""
    f = np.asarray(frames, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    n = len(f)
    kp = fc.keyframe_points
    kp.add(n)
    co = np.stack([f, v], axis=1)
    kp.foreach_set("co", co.astype(np.float32).ravel())
    if curves is None:
        flat = co.astype(np.float32).ravel()
        kp.foreach_set("handle_left", flat)
        kp.foreach_set("handle_right", flat)
        kp.foreach_set("interpolation", np.full(n, _LINEAR if interpolation is None else interpolation, np.int32))
    else:
        hl, hr = handles(f, v, curves)
        kp.foreach_set("interpolation", np.full(n, _BEZIER, dtype=np.int32))
        kp.foreach_set("handle_left_type", np.full(n, _FREE, dtype=np.int32))
        kp.foreach_set("handle_right_type", np.full(n, _FREE, dtype=np.int32))
        kp.foreach_set("handle_left", hl.astype(np.float32).ravel())
        kp.foreach_set("handle_right", hr.astype(np.float32).ravel())
    fc.update()


class _Sink:
    """F-Curves in a fresh action assigned to an ID (object or shape keys), whatever the Blender version."""

    def __init__(self, idblock, action, id_type: str):
        ad = idblock.animation_data or idblock.animation_data_create()
        self.legacy = not compat.has_slotted_actions(action)
        if self.legacy:
            ad.action = action
            self.fcurves = action.fcurves
        else:
            slot = action.slots.new(id_type=id_type, name=idblock.name)
            ad.action = action
            if ad.action_slot != slot:
                ad.action_slot = slot
            self.fcurves = compat.channelbag_for_slot(action, slot, ensure=True).fcurves

    def new(self, data_path: str, index: int = 0, group: str = ""):
        if self.legacy:
            return self.fcurves.new(data_path, index=index, action_group=group)
        try:
            return self.fcurves.new(data_path, index=index, group_name=group)
        except TypeError:  # 4.4
            return self.fcurves.new(data_path, index=index)


def _new_action(idblock, name: str, id_type: str):
    previous = idblock.animation_data.action if idblock.animation_data is not None else None
    action = bpy.data.actions.new(unique_action_name(name))
    try:
        sink = _Sink(idblock, action, id_type)
    except BaseException:
        bpy.data.actions.remove(action)
        raise
    if previous is not None and previous.users == 0 and not previous.use_fake_user:
        previous.use_fake_user = True  # the replaced action stays in the file
    return action, sink


def _bone_groups(motion) -> dict:
    """MMD bone name -> its keys (sorted by frame, later duplicates win: ``vmd.sort_keys``)."""
    keys = vmd.sort_keys(motion.bone_keys)
    names = vmd.decode_names(keys["name"])
    out: dict = {}
    for name in dict.fromkeys(names.tolist()):
        out[name] = keys[names == name]
    return out


def write_vmd_action(obj, motion, *, name: str, bone_map: dict | None = None):
    """Put the bone keys and IK switches of ``motion`` (``core.formats.vmd.VmdMotion``) on armature ``obj`` as a
    NEW action ``name`` (module docstring). Returns ``(action, skipped MMD names, key count, IK keys written)``.

    Raises:
        ValueError: ``obj`` is not an armature, or no bone key names one of its bones (and there are no IK switches).
    """
    if obj is None or obj.type != "ARMATURE":
        raise ValueError("the target must be an armature object")
    bone_map = bone_map if bone_map is not None else bone_name_map(obj)
    groups = _bone_groups(motion) if len(motion.bone_keys) else {}
    known = [n for n in groups if n in bone_map]
    skipped = [n for n in groups if n not in bone_map]
    ik_targets = _ik_constraints(obj)
    ik_keys = [k for k in motion.property_keys if any(n in ik_targets for n, _ in k.ik_states)]
    if not groups and len(motion.camera_keys):
        raise ValueError("this VMD is a camera motion (camera keys, no bone keys); import it onto a camera, e.g. with "
                         "MMD Tools")
    if not known and not ik_keys:
        raise ValueError(f"none of the motion's {len(groups)} bones is in armature {obj.name!r} "
                         f"(e.g. {list(groups)[:3]}); is it the model this motion was made for?")
    action, sink = _new_action(obj, name, "OBJECT")
    try:
        n_keys = 0
        stored = {}
        if known:
            m = mmd_to_local_matrices(obj, [bone_map[n] for n in known])
            axes = location_axes(m)
        for k, mmd in enumerate(known):
            g = groups[mmd]
            bname = bone_map[mmd]
            frames = g["frame"].astype(np.float64)
            q, loc = mmd_to_pose(m[k:k + 1], vmd.rotations_xyzw(g)[:, None], g["location"].astype(np.float64)[:, None])
            q = quat_math.make_continuous(q[:, 0])
            loc = loc[:, 0]
            curves = vmd.read_curves(g["interpolation"])
            pb = obj.pose.bones[bname]
            if pb.rotation_mode != "QUATERNION":
                pb.rotation_mode = "QUATERNION"
            base = f'pose.bones["{bpy.utils.escape_identifier(bname)}"]'
            for i in range(4):
                write_fcurve(sink.new(base + ".rotation_quaternion", i, bname), frames, q[:, i], curves["r"])
            for a, label in enumerate("xyz"):   # local channel axes[a] carries MMD axis a's curve
                i = int(axes[k, a])
                write_fcurve(sink.new(base + ".location", i, bname), frames, loc[:, i], curves[label])
            flat = np.concatenate([g["frame"].astype(np.int64)[:, None], g["interpolation"].astype(np.int64)], axis=1)
            stored[mmd] = flat.ravel().tolist()
            n_keys += len(g)
        ik_written = _write_ik_switches(obj, sink, motion.property_keys, ik_targets, action)
    except BaseException:
        if obj.animation_data is not None and obj.animation_data.action == action:
            obj.animation_data.action = None
        bpy.data.actions.remove(action)
        raise
    action[INTERP_PROP] = stored
    action[FRAME_OFFSET_PROP] = 0
    return action, skipped, n_keys, ik_written


def _ik_constraints(obj) -> dict:
    """IK bone MMD name -> the IK constraints (pose bone name, constraint name) that target it."""
    from .armature_rest import mmd_name

    out: dict = {}
    for pb in obj.pose.bones:
        for con in pb.constraints:
            if con.type == "IK" and con.target == obj and con.subtarget in obj.pose.bones:
                out.setdefault(mmd_name(obj.pose.bones[con.subtarget]), []).append((pb.name, con.name))
    return out


def _write_ik_switches(obj, sink, property_keys, ik_targets: dict, action) -> int:
    keys = sorted(property_keys or [], key=lambda k: k.frame)
    if not keys:
        return 0
    order, per_ik = [], {}
    for k in keys:
        for n, enabled in k.ik_states:
            if n not in order:
                order.append(n)
            per_ik.setdefault(n, []).append((float(k.frame), 1.0 if enabled else 0.0))
    action[IK_ORDER_PROP] = order
    action[VISIBLE_PROP] = [int(k.frame) for k in keys] + [1 if k.visible else 0 for k in keys]
    written = 0
    for n, fv in per_ik.items():
        for pb_name, con_name in ik_targets.get(n, []):
            path = (f'pose.bones["{bpy.utils.escape_identifier(pb_name)}"]'
                    f'.constraints["{bpy.utils.escape_identifier(con_name)}"].influence')
            arr = np.array(fv)
            write_fcurve(sink.new(path, 0, pb_name), arr[:, 0], arr[:, 1], interpolation=_CONSTANT)
            written += len(arr)
    return written


def write_morphs(obj, morph_keys, *, name: str) -> tuple[list, int, list]:
    """VMD morph keys ``morph_keys`` (``vmd.MORPH_KEY_DTYPE``: a ``VmdMotion.morph_keys``, or
    ``BoneMotion.morph_keys()``) onto the shape keys of the meshes under armature ``obj`` that have a shape key of that
    name, in a new action per mesh (linear, docs/MMD_FACTS.md §2.4). The one writer of morphs for Import VMD and both
    Apply paths. Returns ``(new actions, morphs keyed, morph names no mesh has)``; put the last in
    :func:`missing_morphs_warning` for the user."""
    keys = vmd.sort_keys(morph_keys) if len(morph_keys) else morph_keys
    if len(keys) == 0:
        return [], 0, []
    names = vmd.decode_names(keys["name"])
    wanted = list(dict.fromkeys(names.tolist()))
    meshes = [o for o in obj.children_recursive if o.type == "MESH" and o.data.shape_keys is not None]
    used, actions = set(), []
    for mesh in meshes:
        sk = mesh.data.shape_keys
        here = [n for n in wanted if n in sk.key_blocks]
        if not here:
            continue
        action, sink = _new_action(sk, f"{name} morphs", "KEY")
        for n in here:
            sel = names == n
            path = f'key_blocks["{bpy.utils.escape_identifier(n)}"].value'
            write_fcurve(sink.new(path, 0, "morphs"), keys["frame"][sel], keys["weight"][sel].astype(np.float64))
        action[FRAME_OFFSET_PROP] = 0
        actions.append(action)
        used.update(here)
    return actions, len(used), [n for n in wanted if n not in used]


#: Armature action property: the motion's morphs that no mesh had a shape key for (set by both Apply paths).
MISSING_MORPHS_PROP = "mmd_missing_morphs"


def missing_morphs_warning(missing, obj_name: str) -> str:
    """The user's sentence for morphs :func:`write_morphs` found on no mesh ("" when none)."""
    if not missing:
        return ""
    return (f"{len(missing)} morphs of the motion have no shape key on the meshes of {obj_name!r} and were not keyed "
            f"(e.g. {', '.join(list(missing)[:5])}): the model has no such morph, or its mesh came without shape keys "
            f"(Import PMX and MMD Tools build them); add shape keys of those names to see them")


def import_vmd(obj, path, *, scene=None, name: str | None = None) -> ImportResult:
    """Read the VMD file ``path`` and put it on armature ``obj`` (module docstring); set the scene to 30 fps and its
    frame range to the motion's (from 0).

    Raises:
        core.formats.errors.FormatError: not a readable VMD.  OSError: the file cannot be read.
        ValueError: no bone or IK key of the motion fits the armature.
    """
    path = Path(path)
    motion = vmd.read(path)
    name = name or path.stem or "motion"
    warnings: list = []
    action, skipped, n_keys, n_ik = write_vmd_action(obj, motion, name=name)
    morph_actions, n_morphs, missing = write_morphs(obj, motion.morph_keys, name=name)
    if skipped:
        warnings.append(f"{len(skipped)} bones of the motion are not in {obj.name!r} and were skipped "
                        f"(e.g. {', '.join(skipped[:5])})")
    if missing:
        warnings.append(missing_morphs_warning(missing, obj.name))
    frames = [int(motion.bone_keys["frame"].max())] if len(motion.bone_keys) else []
    if len(motion.morph_keys):
        frames.append(int(motion.morph_keys["frame"].max()))
    last = max(frames + [int(k.frame) for k in motion.property_keys] + [0])
    scene = scene or bpy.context.scene
    scene.render.fps = conventions.MMD_FPS
    scene.render.fps_base = 1.0
    scene.frame_start = 0
    scene.frame_end = max(last, 1)
    return ImportResult(action=action, bone_count=len({n for n in _bone_groups(motion)} - set(skipped))
                        if len(motion.bone_keys) else 0, key_count=n_keys, morph_count=n_morphs, ik_key_count=n_ik,
                        frame_range=(0, last), skipped_bones=skipped, morph_actions=morph_actions, warnings=warnings)


def apply_reduced(obj, motion, *, name: str, scene=None, rot_tol_deg: float | None = None,
                  pos_tol_mm: float | None = None, rest=None):
    """Put a dense ``core.motion.BoneMotion`` on ``obj`` as MMD Bézier keys: ``core.keyreduce.reduce_motion`` within
    ``rot_tol_deg`` / ``pos_tol_mm`` (default ``core.keyreduce``'s 0.5° / 1 mm; the panel's Key Tolerance, the option
    ``key_tolerance``) measured at the joints of ``rest`` (the armature's rest skeleton,
    ``armature_rest.rest_skeleton(obj)`` when not given: one pass over its bones), written like an imported VMD
    (:func:`write_vmd_action`), the scene set to 30 fps and the motion's frame range. The counterpart of
    ``action_writer.apply_motion`` (a key on every frame).

    Returns:
        The new action; ``action["mmd_key_counts"]`` = (keys kept, dense keys) and ``action["mmd_key_tolerance"]``
        = (degrees, mm) used; bones the armature lacks are listed in ``action["mmd_skipped_bones"]``, the motion's
        morphs no mesh has (:func:`write_morphs`) in ``action["mmd_missing_morphs"]``.
    """
    from . import armature_rest
    from ._core import keyreduce

    kw = {"rot_tol_deg": keyreduce.DEFAULT_ROT_TOL_DEG if rot_tol_deg is None else float(rot_tol_deg),
          "pos_tol_mm": keyreduce.DEFAULT_POS_TOL_MM if pos_tol_mm is None else float(pos_tol_mm)}
    red = keyreduce.reduce_motion(motion, armature_rest.rest_skeleton(obj) if rest is None else rest, **kw)
    reduced = red.to_vmd()
    action, skipped, _, _ = write_vmd_action(obj, reduced, name=name)
    _, _, missing = write_morphs(obj, reduced.morph_keys, name=name)   # onto the meshes' shape keys of those names
    if skipped:
        action["mmd_skipped_bones"] = skipped
    if missing:
        action[MISSING_MORPHS_PROP] = missing
    action["mmd_key_counts"] = [red.key_count, red.dense_key_count]
    action["mmd_key_tolerance"] = [kw["rot_tol_deg"], kw["pos_tol_mm"]]
    action["mmd_frames"] = [int(motion.frames[0]), int(motion.frames[-1])]
    scene = scene or bpy.context.scene
    scene.render.fps = conventions.MMD_FPS
    scene.render.fps_base = 1.0
    scene.frame_start = int(motion.frames.min())
    scene.frame_end = int(motion.frames.max())
    return action


class ANIMEMMD_OT_import_vmd(bpy.types.Operator, ImportHelper):
    """Import an MMD motion (.vmd) onto the target armature as a new action, keeping its curves, IK switches and
    morphs"""

    bl_idname = "anime_mmd.import_vmd"
    bl_label = "Import VMD"
    bl_options = {"REGISTER", "UNDO"}

    filename_ext = ".vmd"
    filter_glob: StringProperty(default="*.vmd", options={"HIDDEN"})

    @classmethod
    def poll(cls, context):
        from .operators import target_armature

        if target_armature(context) is None:
            cls.poll_message_set("Choose a target armature (or import a PMX model)")
            return False
        return True

    def execute(self, context):
        from ._core import format_errors
        from .operators import _report_warnings, target_armature, user_message

        obj = target_armature(context)
        path = Path(bpy.path.abspath(self.filepath))
        if not path.is_file():
            self.report({"ERROR"}, f"{path}: no such file")
            return {"CANCELLED"}
        try:
            res = import_vmd(obj, path, scene=context.scene)
        except format_errors.FormatError as e:
            self.report({"ERROR"}, f"Not a readable VMD motion: {e}")
            return {"CANCELLED"}
        except (ValueError, OSError) as e:
            self.report({"ERROR"}, f"Import failed: {user_message(e)}")
            return {"CANCELLED"}
        _report_warnings(self, res.warnings)
        msg = (f"Imported {path.name} as action '{res.action.name}': {res.bone_count} bones, {res.key_count} keys, "
               f"{res.morph_count} morphs, frames {res.frame_range[0]}-{res.frame_range[1]}")
        props = getattr(context.scene, "anime_mmd", None)
        if props is not None:
            props.status = msg
        self.report({"INFO"}, msg)
        return {"FINISHED"}


def menu_import(self, context):
    self.layout.operator(ANIMEMMD_OT_import_vmd.bl_idname, text="MMD motion (.vmd) [Anime MMD]")


CLASSES = (ANIMEMMD_OT_import_vmd,)
