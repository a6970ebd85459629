"""Write a retargeted MMD motion onto a Blender armature as a NEW action, in bulk (Blender 4.2 .. 5.x).

MMD values -> Blender pose values (docs/MMD_FACTS.md §2.2, 2.3)
-----------------------------------------------------------
An MMD bone key holds a rotation ``q`` (x, y, z, w), relative to the parent's posed frame, and a translation ``t``
(MMD units), an offset from rest in the parent's posed axes; every MMD rest frame is aligned with the model axes.
A Blender pose bone holds ``rotation_quaternion`` ``r`` (w, x, y, z) and ``location`` ``l`` in the bone's own rest
frame ``B`` (the 3x3 rotation of ``bone.matrix_local``, armature space), applied as
``pose = parent_pose · parent_rest⁻¹ · rest · T(l) · R(r)``.
With ``P`` the MMD->Blender axis swap (``(x, y, z)_blender = (x, z, y)_mmd``, ``core.conventions``, det P = -1)
and ``M = Bᵀ·P`` (det M = -1), the posed model matches MMD's when ``R(r) = M·R(q)·M⁻¹`` and ``l = 0.08·M·t``.
Because M is improper, conjugating by it keeps the angle and maps the axis ``a`` to ``-M·a``, so exactly::

    r_w   = q_w
    r_xyz = -M · q_xyz          (M = Bᵀ·P, per bone, from the armature's actual rest matrices)
    l     = 0.08 · M · t        (metres: 1 MMD unit = 8 cm, core.conventions.METRES_PER_UNIT)

For a bone whose rest frame is the armature's (B = I) this is MMD Tools' mapping
``(w, x, y, z)_blender = (q_w, -q_x, -q_z, -q_y)`` (docs/MMD_FACTS.md §2.3). The bones ``pmx_import`` builds point from head
to tail with roll 0 (MMD Tools does the same, and Blender's IK needs chain bones that point at the next joint), so B
differs per bone and the general formula is used for every bone; armatures imported by MMD Tools convert the same
way. ``vmd_export`` applies the inverse (``q_xyz = -Mᵀ·r_xyz``, ``t = Mᵀ·l / 0.08``; M is orthogonal).

Keys
----
Frames are MMD frames (30 fps), used as Blender frame numbers unchanged (MMD frame 0 = Blender frame 0), so a
round trip through :mod:`vmd_export` keeps them. Quaternions are made sign-continuous per bone (docs/MMD_FACTS.md §5.1:
Blender interpolates components, not slerp), keys are LINEAR, and everything is written with
``keyframe_points.add`` + ``foreach_set`` (no per-key Python calls).

Blender versions: 5.x layered actions (slot + layer + keyframe strip + channelbag, through
``bpy_extras.anim_utils.action_ensure_channelbag_for_slot``), 4.4/4.5 (slots, channelbag made by hand) and 4.2/4.3
(legacy ``action.fcurves``).
"""
from __future__ import annotations

import re

import bpy
import numpy as np

from . import compat
from ._core import conventions
from ._core import quat as quat_math
from .armature_rest import bone_name_map

#: Blender's enum value of LINEAR keyframe interpolation (for ``foreach_set('interpolation', ...)``).
_LINEAR = bpy.types.Keyframe.bl_rna.properties["interpolation"].enum_items["LINEAR"].value


def mmd_to_local_matrix(bone) -> np.ndarray:
    """``M = Bᵀ·P`` for a Blender data bone (docs/MMD_FACTS.md §2.3): maps an MMD-axes vector to the bone's local rest
    axes (``B`` = the bone's rest rotation in armature space, ``P`` = ``core.conventions.MMD_TO_BLENDER_AXES``).
    (3, 3) float64."""
    b = np.array(bone.matrix_local.to_3x3(), dtype=np.float64)
    b /= np.linalg.norm(b, axis=0, keepdims=True)
    return b.T @ conventions.MMD_TO_BLENDER_AXES


def mmd_to_local_matrices(obj, bone_names) -> np.ndarray:
    """:func:`mmd_to_local_matrix` for each named bone of armature object ``obj``: ``(N, 3, 3)`` float64."""
    out = np.empty((len(bone_names), 3, 3))
    for k, name in enumerate(bone_names):
        out[k] = mmd_to_local_matrix(obj.data.bones[name])
    return out


def mmd_to_pose(m: np.ndarray, rotations: np.ndarray | None = None, locations: np.ndarray | None = None,
                metres_per_unit: float | None = None) -> tuple:
    """Convert MMD key values to Blender pose values (module doc formula), vectorised.

    Args:
        m: ``(N, 3, 3)`` per-bone ``M = Bᵀ·P``.
        rotations: ``(T, N, 4)`` MMD quaternions (x, y, z, w), or None.
        locations: ``(T, N, 3)`` MMD translations (model units), or None.
        metres_per_unit: default ``core.conventions.METRES_PER_UNIT`` (0.08).

    Returns:
        ``(quat_wxyz (T, N, 4) or None, location (T, N, 3) metres or None)``.

    Raises:
        ValueError: shapes that do not match ``m``.
    """
    m = np.asarray(m, dtype=np.float64)
    if m.ndim != 3 or m.shape[1:] != (3, 3):
        raise ValueError(f"m must be (N, 3, 3), got {m.shape}")
    if metres_per_unit is None:
        metres_per_unit = conventions.METRES_PER_UNIT
    rq = rl = None
    if rotations is not None:
        q = np.asarray(rotations, dtype=np.float64)
        if q.ndim != 3 or q.shape[1:] != (m.shape[0], 4):
            raise ValueError(f"rotations must be (T, {m.shape[0]}, 4), got {q.shape}")
        rq = np.empty_like(q)
        rq[..., 0] = q[..., 3]
        rq[..., 1:] = -np.einsum("nij,tnj->tni", m, q[..., :3])
    if locations is not None:
        t = np.asarray(locations, dtype=np.float64)
        if t.ndim != 3 or t.shape[1:] != (m.shape[0], 3):
            raise ValueError(f"locations must be (T, {m.shape[0]}, 3), got {t.shape}")
        rl = metres_per_unit * np.einsum("nij,tnj->tni", m, t)
    return rq, rl


def pose_to_mmd(m: np.ndarray, quat_wxyz: np.ndarray | None = None, location: np.ndarray | None = None,
                metres_per_unit: float | None = None) -> tuple:
    """Inverse of :func:`mmd_to_pose`: Blender ``(T, N, 4)`` (w, x, y, z) / ``(T, N, 3)`` metres -> MMD
    ``(T, N, 4)`` (x, y, z, w) / ``(T, N, 3)`` model units. ``q_xyz = -Mᵀ·r_xyz``, ``t = Mᵀ·l / 0.08``."""
    m = np.asarray(m, dtype=np.float64)
    if metres_per_unit is None:
        metres_per_unit = conventions.METRES_PER_UNIT
    q = t = None
    if quat_wxyz is not None:
        r = np.asarray(quat_wxyz, dtype=np.float64)
        q = np.empty_like(r)
        q[..., 3] = r[..., 0]
        q[..., :3] = -np.einsum("nji,tnj->tni", m, r[..., 1:])
    if location is not None:
        lo = np.asarray(location, dtype=np.float64)
        t = np.einsum("nji,tnj->tni", m, lo) / metres_per_unit
    return q, t


def unique_action_name(base: str) -> str:
    """``base`` if no action has that name, else ``base.001``-style numeric suffixes until one is free (existing
    actions are never overwritten or renamed)."""
    base = (base or "motion").strip() or "motion"
    base = base[:56]
    if base not in bpy.data.actions:
        return base
    stem = re.sub(r"\.\d{3,}$", "", base)
    k = 1
    while f"{stem}.{k:03d}" in bpy.data.actions:
        k += 1
    return f"{stem}.{k:03d}"


class _CurveSink:
    """Makes F-Curves in a fresh action assigned to ``obj``, whatever the Blender version's action model."""

    def __init__(self, obj, action):
        self.obj = obj
        self.action = action
        ad = obj.animation_data or obj.animation_data_create()
        self.fcurves = None
        self.groups = None
        self.legacy = False
        if compat.has_slotted_actions(action):
            slot = action.slots.new(id_type="OBJECT", name=obj.name)
            ad.action = action
            if ad.action_slot != slot:
                ad.action_slot = slot
            bag = compat.channelbag_for_slot(action, slot, ensure=True)
            self.fcurves = bag.fcurves
            self.groups = getattr(bag, "groups", None)
        else:  # 4.2 / 4.3
            ad.action = action
            self.fcurves = action.fcurves
            self.legacy = True

    def new(self, data_path: str, index: int, group: str):
        if self.legacy:
            return self.fcurves.new(data_path, index=index, action_group=group)
        try:
            return self.fcurves.new(data_path, index=index, group_name=group)
        except TypeError:  # 4.4: no group_name argument
            fc = self.fcurves.new(data_path, index=index)
            if self.groups is not None:
                g = self.groups.get(group) if hasattr(self.groups, "get") else None
                fc.group = g or self.groups.new(group)
            return fc


def _write_curve(fc, co: np.ndarray) -> None:
    """Fill an empty F-Curve with keys ``co`` ``(K, 2)`` (frame, value), LINEAR, in one go."""
    n = len(co)
    kp = fc.keyframe_points
    kp.add(n)
    flat = np.ascontiguousarray(co, dtype=np.float32).reshape(-1)
    kp.foreach_set("co", flat)
    kp.foreach_set("handle_left", flat)
    kp.foreach_set("handle_right", flat)
    kp.foreach_set("interpolation", np.full(n, _LINEAR, dtype=np.int32))
    fc.update()


def write_action(obj, frames, rotations: dict, locations: dict, *, name: str, bone_map: dict | None = None) -> tuple:
    """Create a NEW action ``name`` (suffixed if taken) on armature ``obj`` from MMD key arrays.

    Args:
        obj: armature object.
        frames: ``(T,)`` integer MMD frames (30 fps), used as Blender frames.
        rotations: MMD bone name -> ``(T, 4)`` (x, y, z, w) local key rotations.
        locations: MMD bone name -> ``(T, 3)`` translations, MMD units.
        name: action base name (e.g. the video's file name).
        bone_map: MMD name -> Blender bone name (default :func:`armature_rest.bone_name_map`).

    Returns:
        ``(action, skipped)``: the new action (assigned to ``obj``) and the MMD names not found in the armature.
        The action it replaces on ``obj`` is kept (given a fake user, so saving the file does not drop it).

    Raises:
        ValueError: ``obj`` is not an armature, no key names a bone of it, or arrays of the wrong shape.
    """
    if obj is None or obj.type != "ARMATURE":
        raise ValueError("the target must be an armature object")
    frames = np.asarray(frames)
    if frames.ndim != 1 or len(frames) == 0:
        raise ValueError(f"frames must be a non-empty (T,) array, got shape {frames.shape}")
    t_len = len(frames)
    bone_map = bone_map if bone_map is not None else bone_name_map(obj)
    names = sorted(set(rotations) | set(locations), key=lambda n: (n not in rotations, n))
    known = [n for n in names if n in bone_map]
    skipped = [n for n in names if n not in bone_map]
    if not known:
        raise ValueError(f"none of the motion's {len(names)} bones is in armature {obj.name!r} "
                         f"(e.g. {names[:3]}); is it an MMD model?")
    blender_names = [bone_map[n] for n in known]
    m = mmd_to_local_matrices(obj, blender_names)
    rot_arr = np.zeros((t_len, len(known), 4))
    rot_arr[..., 3] = 1.0
    loc_arr = np.zeros((t_len, len(known), 3))
    for k, n in enumerate(known):
        if n in rotations:
            a = np.asarray(rotations[n], dtype=np.float64)
            if a.shape != (t_len, 4):
                raise ValueError(f"rotation of {n!r} must be ({t_len}, 4), got {a.shape}")
            rot_arr[:, k] = a
        if n in locations:
            a = np.asarray(locations[n], dtype=np.float64)
            if a.shape != (t_len, 3):
                raise ValueError(f"location of {n!r} must be ({t_len}, 3), got {a.shape}")
            loc_arr[:, k] = a
    if not (np.all(np.isfinite(rot_arr)) and np.all(np.isfinite(loc_arr))):
        raise ValueError("the motion contains NaN or infinite values")
    norm = np.linalg.norm(rot_arr, axis=-1, keepdims=True)
    rot_arr = np.where(norm > 1e-12, rot_arr / np.where(norm > 1e-12, norm, 1.0), np.array([0, 0, 0, 1.0]))
    quat, loc = mmd_to_pose(m, rot_arr, loc_arr)
    quat = quat_math.make_continuous(quat)

    previous = obj.animation_data.action if obj.animation_data is not None else None
    action = bpy.data.actions.new(unique_action_name(name))
    try:
        sink = _CurveSink(obj, action)
        fr = frames.astype(np.float64)
        co = np.empty((t_len, 2))
        co[:, 0] = fr
        for k, n in enumerate(known):
            bname = blender_names[k]
            pb = obj.pose.bones[bname]
            if pb.rotation_mode != "QUATERNION":
                pb.rotation_mode = "QUATERNION"
            base = f'pose.bones["{bpy.utils.escape_identifier(bname)}"]'
            if n in rotations:
                for i in range(4):
                    co[:, 1] = quat[:, k, i]
                    _write_curve(sink.new(base + ".rotation_quaternion", i, bname), co)
            if n in locations:
                for i in range(3):
                    co[:, 1] = loc[:, k, i]
                    _write_curve(sink.new(base + ".location", i, bname), co)
    except BaseException:
        if obj.animation_data is not None and obj.animation_data.action == action:
            obj.animation_data.action = None
        bpy.data.actions.remove(action)
        raise
    if previous is not None and previous != action and previous.users == 0 and not previous.use_fake_user:
        previous.use_fake_user = True  # the replaced action stays in the file (a 0-user action is dropped on save)
    action["mmd_frames"] = [int(frames[0]), int(frames[-1])]
    return action, skipped


def apply_motion(obj, motion, *, name: str, scene=None, fps: int | None = None, set_range: bool = True):
    """Put a ``core.motion.BoneMotion`` on ``obj`` as a new action, set the scene to 30 fps and the frame range.

    Args:
        obj: target armature object.
        motion: ``BoneMotion`` (``frames`` (T,) int, ``rotations`` / ``locations`` dicts of MMD bone name -> arrays).
        name: action base name (the video's name); a numeric suffix is added if taken.
        scene: scene to set up (default ``bpy.context.scene``).
        fps: scene frame rate (default ``core.conventions.MMD_FPS`` = 30).
        set_range: set ``frame_start`` / ``frame_end`` to the motion's first / last frame.

    Returns:
        The new action. Bones the armature lacks are listed in ``action["mmd_skipped_bones"]``. The motion's morph
        weights (``motion.morphs``, e.g. まばたき from ``--face``) are keyed, like the reduced Apply's, by
        ``op_import_vmd.write_morphs`` on the meshes under ``obj`` that have a shape key of that name (their keys are
        ``BoneMotion.morph_keys()``: linear, which plays back every frame's weight); the morphs no mesh has are listed
        in ``action["mmd_missing_morphs"]``.
    """
    from .op_import_vmd import MISSING_MORPHS_PROP, write_morphs  # op_import_vmd imports this module

    morph_keys = motion.morph_keys() if getattr(motion, "morphs", None) else None   # names checked before writing
    action, skipped = write_action(obj, motion.frames, dict(motion.rotations), dict(motion.locations), name=name)
    action["mmd_frame_offset"] = 0   # VMD frame f is Blender frame f, as on the morph actions (vmd_export)
    if skipped:
        action["mmd_skipped_bones"] = skipped
    if morph_keys is not None:
        _, _, missing = write_morphs(obj, morph_keys, name=name)
        if missing:
            action[MISSING_MORPHS_PROP] = missing
    scene = scene or bpy.context.scene
    scene.render.fps = int(fps or conventions.MMD_FPS)
    scene.render.fps_base = 1.0
    if set_range:
        f = np.asarray(motion.frames)
        scene.frame_start = int(f.min())
        scene.frame_end = int(f.max())
    return action
