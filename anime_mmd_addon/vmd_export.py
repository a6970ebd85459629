"""Export an armature's action as a VMD motion through ``core.formats.vmd``.

Every bone with ``rotation_quaternion`` / ``rotation_euler`` / ``location`` F-Curves becomes bone keys named with its
MMD (Japanese) name (``armature_rest.mmd_name``), at the frames where any of its channels has a key; channels keyed
at other frames are evaluated there. Blender pose values are converted back to MMD values with the inverse of the
mapping documented in ``action_writer`` (``q_xyz = -Mᵀ·r_xyz``, ``q_w = r_w``, ``t = Mᵀ·l / 0.08``), quaternions
are made sign-continuous (docs/MMD_FACTS.md §5.1) and the keys go through ``vmd.make_bone_keys`` / ``vmd.sort_keys``. The
leg IK bones' (足ＩＫ / つま先ＩＫ) locations are exported like any other translation key (docs/MMD_FACTS.md §2.5).
Blender frame numbers are used as MMD frames (30 fps; the action writer keys MMD frame f at Blender frame f).
An existing file is never replaced unless ``overwrite`` is set.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import bpy
import numpy as np

from ._core import vmd
from . import compat
from ._core import quat as quat_math
from .action_writer import mmd_to_local_matrices, pose_to_mmd
from .armature_rest import mmd_name, model_name

_PATH_RE = re.compile(r'^pose\.bones\["((?:[^"\\]|\\.)*)"\]\.(rotation_quaternion|rotation_euler|location)$')


@dataclass
class ExportResult:
    """What :func:`export_vmd` wrote: ``path``, ``bone_count``, ``key_count``, ``frame_range`` (first, last MMD
    frame) and ``warnings`` (bones skipped and why)."""

    path: Path
    bone_count: int
    key_count: int
    frame_range: tuple
    warnings: list = field(default_factory=list)


def _action_fcurves(obj, action):
    ad = obj.animation_data
    if compat.has_slotted_actions(action):
        slot = ad.action_slot if ad is not None and ad.action == action else None
        if slot is None and len(action.slots):
            slot = action.slots[0]
        bag = compat.channelbag_for_slot(action, slot, ensure=False) if slot is not None else None
        return list(bag.fcurves) if bag is not None else []
    return list(action.fcurves)


def _euler_to_quat_xyz_order(e: np.ndarray, order: str) -> np.ndarray:
    """Euler angles ``(K, 3)`` (x, y, z radians) with Blender rotation order (e.g. 'XYZ': X first) -> ``(K, 4)``
    (w, x, y, z)."""
    half = e / 2.0
    c, s = np.cos(half), np.sin(half)
    out = np.zeros((len(e), 4))
    out[:, 0] = 1.0
    for ax in order:  # apply in order: q = q_axis * q
        i = "XYZ".index(ax)
        qa = np.zeros((len(e), 4))
        qa[:, 0] = c[:, i]
        qa[:, 1 + i] = s[:, i]
        w1, x1, y1, z1 = qa.T
        w2, x2, y2, z2 = out.T
        out = np.stack([w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2, w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                        w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2, w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2], axis=1)
    return out


def _curve_keys(fc) -> np.ndarray:
    n = len(fc.keyframe_points)
    co = np.empty(2 * n, dtype=np.float32)
    fc.keyframe_points.foreach_get("co", co)
    return co.reshape(n, 2).astype(np.float64)


def _channel(fc, frames: np.ndarray) -> np.ndarray:
    co = _curve_keys(fc)
    if len(co) == len(frames) and np.array_equal(np.rint(co[:, 0]), frames):
        return co[:, 1]
    return np.array([fc.evaluate(float(f)) for f in frames])


def collect_keys(obj, action=None) -> tuple:
    """Bone keys of ``obj``'s action in MMD terms.

    Returns:
        ``(names, frames, rotations, locations, warnings)``: per key the MMD bone name (list of K str), the MMD frame
        ``(K,)`` int64, ``(K, 4)`` (x, y, z, w) rotations, ``(K, 3)`` translations in MMD units, and warnings.

    Raises:
        ValueError: no action, or no bone channel in it.
    """
    action = action or (obj.animation_data.action if obj.animation_data is not None else None)
    if action is None:
        raise ValueError(f"armature {obj.name!r} has no action to export")
    per_bone: dict = {}
    for fc in _action_fcurves(obj, action):
        m = _PATH_RE.match(fc.data_path)
        if not m or len(fc.keyframe_points) == 0:
            continue
        bname = bpy.utils.unescape_identifier(m.group(1)) if hasattr(bpy.utils, "unescape_identifier") \
            else m.group(1).replace('\\"', '"').replace("\\\\", "\\")
        per_bone.setdefault(bname, {}).setdefault(m.group(2), {})[fc.array_index] = fc
    warnings: list = []
    names_out, frames_out, rot_out, loc_out = [], [], [], []
    for bname, chans in per_bone.items():
        pb = obj.pose.bones.get(bname)
        if pb is None:
            warnings.append(f"{bname!r}: animated but not a bone of {obj.name!r}; skipped")
            continue
        jp = mmd_name(pb)
        try:
            vmd.encode_name(jp, 15)
        except (ValueError, UnicodeError) as e:
            warnings.append(f"{jp!r}: name cannot be written to a VMD ({e}); skipped")
            continue
        fr = np.unique(np.concatenate([np.rint(_curve_keys(fc)[:, 0]) for d in chans.values() for fc in d.values()]))
        k = len(fr)
        quat = np.zeros((k, 4))
        quat[:, 0] = 1.0
        if "rotation_quaternion" in chans:
            for i, fc in chans["rotation_quaternion"].items():
                if 0 <= i < 4:
                    quat[:, i] = _channel(fc, fr)
        elif "rotation_euler" in chans:
            e = np.zeros((k, 3))
            for i, fc in chans["rotation_euler"].items():
                if 0 <= i < 3:
                    e[:, i] = _channel(fc, fr)
            order = pb.rotation_mode if pb.rotation_mode in ("XYZ", "XZY", "YXZ", "YZX", "ZXY", "ZYX") else "XYZ"
            quat = _euler_to_quat_xyz_order(e, order)
        loc = np.zeros((k, 3))
        for i, fc in chans.get("location", {}).items():
            if 0 <= i < 3:
                loc[:, i] = _channel(fc, fr)
        norm = np.linalg.norm(quat, axis=1, keepdims=True)
        quat = np.where(norm > 1e-12, quat / np.where(norm > 1e-12, norm, 1.0), np.array([1.0, 0, 0, 0]))
        mm = mmd_to_local_matrices(obj, [bname])
        q, t = pose_to_mmd(mm, quat[:, None, :], loc[:, None, :])
        names_out += [jp] * k
        frames_out.append(fr.astype(np.int64))
        rot_out.append(quat_math.make_continuous(q[:, 0]))
        loc_out.append(t[:, 0])
    if not names_out:
        raise ValueError(f"action {action.name!r} has no bone rotation or location keys")
    frames = np.concatenate(frames_out)
    if frames.min() < 0:
        shift = -int(frames.min())
        warnings.append(f"keys before frame 0 were shifted by {shift} frames (VMD frames start at 0)")
        frames = frames + shift
    return names_out, frames, np.concatenate(rot_out), np.concatenate(loc_out), warnings


def export_vmd(obj, path, *, overwrite: bool = False, action=None, model: str | None = None) -> ExportResult:
    """Write ``obj``'s action (or ``action``) to the VMD file ``path``.

    Args:
        obj: armature object.
        path: destination ``.vmd``.
        overwrite: replace an existing file (otherwise ``FileExistsError``).
        action: the action to export (default: the armature's current one).
        model: model name in the VMD header (default: ``armature_rest.model_name``).

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False (checked before any work).
        ValueError: nothing to export.  OSError: the folder is missing or not writable.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists")
    names, frames, rot, loc, warnings = collect_keys(obj, action)
    keys = vmd.sort_keys(vmd.make_bone_keys(names, frames, loc, rot))
    name = model or model_name(obj)
    try:
        vmd.encode_name(name, 20)
    except (ValueError, UnicodeError):
        warnings.append(f"model name {name!r} cannot be written in cp932; left empty")
        name = ""
    motion = vmd.VmdMotion(model_name=name, bone_keys=keys)
    vmd.write(path, motion, overwrite=overwrite)
    return ExportResult(path=path, bone_count=len(set(names)), key_count=len(keys),
                        frame_range=(int(frames.min()), int(frames.max())), warnings=warnings)
