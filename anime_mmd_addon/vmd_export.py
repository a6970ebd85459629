"""Export an armature's action as a VMD motion through ``core.formats.vmd``, keeping its Bézier curves.

Every bone with ``rotation_quaternion`` / ``rotation_euler`` / ``location`` F-Curves becomes bone keys named with its
MMD (Japanese) name (``armature_rest.mmd_name``), at the frames where any of its channels has a key; channels keyed
at other frames are evaluated there. Blender pose values are converted back to MMD values with the inverse of the
mapping documented in ``action_writer`` (``q_xyz = -Mᵀ·r_xyz``, ``t = Mᵀ·l / 0.08``), quaternions
are made sign-continuous (docs/MMD_FACTS.md §5.1) and the keys go through ``vmd.make_bone_keys`` / ``vmd.sort_keys``. The
leg IK bones' (足ＩＫ / つま先ＩＫ) locations are exported like any other translation key (docs/MMD_FACTS.md §2.5).

Interpolation: where a channel is keyed on the bone's key frames, each segment's Blender Bézier handles become the
MMD curve (the inverse of ``op_import_vmd.handles``: ``x1 = 127·(handle_right.x - x0)/dx``, ``y1 = 127·(handle_right.y
- y0)/dy``, the same for ``handle_left`` and x2, y2; LINEAR / CONSTANT segments write MMD's linear curve; a channel
keyed on fewer frames than its bone gives each piece of its Bézier between the bone's frames, so it keeps its shape). The rotation curve comes from the quaternion (or Euler) channel that changes most over the
segment; each translation curve from the location channel its MMD axis maps to (``op_import_vmd.location_axes``).
A channel that does not change over a segment (|dy| tiny) cannot hold a curve: there, and for bytes handles never
hold (the physics toggle), the block stored at import (``action["mmd_interpolation"]``) is written, and it is written
unchanged while the handles still give its curves (within 1/127), so Import VMD then Export VMD gives the records
back. IK switches (keyed ``influence`` of IK constraints) become property keys and shape-key ``value`` F-Curves of
the armature's meshes become morph keys.

Frames (docs/MMD_FACTS.md §2.7): VMD frame = Blender frame - offset, where the offset is the action's
``mmd_frame_offset`` (0 for actions written by this add-on) or, for other actions, MMD Tools' exporter rule
``min(1, scene.frame_start)``. An existing file is never replaced unless ``overwrite`` is set.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import bpy
import numpy as np

from . import compat
from ._core import vmd
from ._core import quat as quat_math
from .action_writer import mmd_to_local_matrices, pose_to_mmd
from .op_import_vmd import (FRAME_OFFSET_PROP, IK_ORDER_PROP, INTERP_PROP, VISIBLE_PROP, location_axes)
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


_KP = bpy.types.Keyframe.bl_rna.properties
_BEZIER = _KP["interpolation"].enum_items["BEZIER"].value
_LINEAR_CURVE = np.array([20, 20, 107, 107], dtype=np.float64)


def _bezier(p: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Point and derivative of cubic Béziers ``p (S, 4, 2)`` at ``t (S,)``: ``((S, 2), (S, 2))``."""
    t = t[:, None]
    u = 1.0 - t
    pt = u ** 3 * p[:, 0] + 3 * u * u * t * p[:, 1] + 3 * u * t * t * p[:, 2] + t ** 3 * p[:, 3]
    dt = 3 * u * u * (p[:, 1] - p[:, 0]) + 6 * u * t * (p[:, 2] - p[:, 1]) + 3 * t * t * (p[:, 3] - p[:, 2])
    return pt, dt


def _t_at_x(p: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Parameter where the Béziers ``p (S, 4, 2)`` reach frame ``x (S,)`` (x is monotonic: bisection)."""
    lo, hi = np.zeros(len(x)), np.ones(len(x))
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        below = _bezier(p, mid)[0][:, 0] < x
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return 0.5 * (lo + hi)


def _channel(fc, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Values of one F-Curve at ``frames (K,)`` (its own key frames among them) and the MMD curve of each segment
    ending there: ``(values (K,), curves (K, 4) float in 0..127, known (K,) bool)``.

    A segment inside one of the channel's BEZIER segments gets the exact piece of that curve (the cubic restricted
    to the sub-range, ``Q1 = B(ta) + (tb - ta)/3·B'(ta)``, ``Q2 = B(tb) - (tb - ta)/3·B'(tb)``), normalised to the
    piece's box, so a channel keyed on fewer frames than its bone keeps its shape; LINEAR / CONSTANT segments give
    the linear curve. ``known`` is False where no curve is given: key 0 (its curve is unused), before the channel's
    first key or after its last, and where the value does not change (|dy| tiny)."""
    co = _curve_keys(fc)
    k, n = len(frames), len(co)
    curves = np.tile(_LINEAR_CURVE, (k, 1))
    known = np.zeros(k, dtype=bool)
    cx = np.rint(co[:, 0])
    exact = np.isin(frames, cx)
    v = np.empty(k)
    pos = np.searchsorted(cx, frames)
    v[exact] = co[np.clip(pos[exact], 0, n - 1), 1]
    if (~exact).any():
        v[~exact] = [fc.evaluate(float(f)) for f in frames[~exact]]
    if k < 2 or n < 2:
        return v, curves, known
    kp = fc.keyframe_points
    hl = np.empty(2 * n, dtype=np.float32)
    hr = np.empty(2 * n, dtype=np.float32)
    interp = np.empty(n, dtype=np.int32)
    kp.foreach_get("handle_left", hl)
    kp.foreach_get("handle_right", hr)
    kp.foreach_get("interpolation", interp)
    hl, hr = hl.reshape(n, 2).astype(np.float64), hr.reshape(n, 2).astype(np.float64)
    fa, fb = frames[:-1].astype(np.float64), frames[1:].astype(np.float64)
    j = np.searchsorted(cx, fa, side="right") - 1                # channel segment holding each bone segment
    inside = (j >= 0) & (j < n - 1)
    jj = np.clip(j, 0, n - 2)
    inside &= fb <= cx[jj + 1] + 1e-6
    dy = np.diff(v)
    flat = np.abs(dy) <= 1e-4 * np.maximum(1.0, np.abs(v[:-1]))
    seg = np.tile(_LINEAR_CURVE, (k - 1, 1))
    bez = inside & (interp[jj] == _BEZIER)
    if bez.any():
        s = np.flatnonzero(bez)
        p = np.stack([co[jj[s]], hr[jj[s]], hl[jj[s] + 1], co[jj[s] + 1]], axis=1)     # (S, 4, 2)
        p[:, 1, 0] = np.clip(p[:, 1, 0], p[:, 0, 0], p[:, 3, 0])                        # x monotonic, as Blender
        p[:, 2, 0] = np.clip(p[:, 2, 0], p[:, 0, 0], p[:, 3, 0])
        whole = (np.abs(p[:, 0, 0] - fa[s]) < 1e-6) & (np.abs(p[:, 3, 0] - fb[s]) < 1e-6)
        ta = np.where(whole, 0.0, _t_at_x(p, fa[s]))
        tb = np.where(whole, 1.0, _t_at_x(p, fb[s]))
        q0, d0 = _bezier(p, ta)
        q3, d3 = _bezier(p, tb)
        h = ((tb - ta) / 3.0)[:, None]
        q1, q2 = q0 + h * d0, q3 - h * d3
        box = q3 - q0
        with np.errstate(divide="ignore", invalid="ignore"):
            c = np.stack([(q1[:, 0] - q0[:, 0]) / box[:, 0], (q1[:, 1] - q0[:, 1]) / box[:, 1],
                          (q2[:, 0] - q0[:, 0]) / box[:, 0], (q2[:, 1] - q0[:, 1]) / box[:, 1]], axis=1) * 127.0
        seg[s] = np.clip(np.rint(np.nan_to_num(c, nan=0.0, posinf=127.0, neginf=0.0)), 0, 127)
    curves[1:] = seg
    known[1:] = inside & ~flat
    return v, curves, known


def _pick(parts: list) -> tuple[np.ndarray, np.ndarray]:
    """The curve per segment from several channels' ``(values, curves, known)``: the known one whose value changes
    most (for the rotation's four quaternion channels)."""
    k = len(parts[0][0])
    curves = np.tile(_LINEAR_CURVE, (k, 1))
    known = np.zeros(k, dtype=bool)
    best = np.full(k, -1.0)
    for v, c, kn in parts:
        dy = np.zeros(k)
        dy[1:] = np.abs(np.diff(v))
        take = kn & (dy > best)
        curves[take], known[take], best[take] = c[take], True, dy[take]
    return curves, known


def _stored_blocks(action, name: str) -> dict:
    raw = action.get(INTERP_PROP) if action is not None else None
    if raw is None or name not in raw:
        return {}
    flat = np.asarray(list(raw[name]), dtype=np.int64).reshape(-1, 65)
    return {int(r[0]): r[1:].astype(np.uint8) for r in flat}


def _blocks(frames_blender: np.ndarray, curves: dict, known: dict, stored: dict, offset: int) -> np.ndarray:
    """64-byte blocks ``(K, 64)`` for one bone's keys (module docstring): the stored block where its curves agree
    with the handles (or the handles say nothing), else one built from the handles' curves (physics bytes kept)."""
    k = len(frames_blender)
    base = {c: np.tile(_LINEAR_CURVE, (k, 1)) for c in "xyzr"}
    physics_off = np.zeros(k, dtype=bool)
    st_rows = np.array([int(f) - offset in stored for f in frames_blender], dtype=bool)
    st = np.zeros((k, 64), dtype=np.uint8)
    if st_rows.any():
        st[st_rows] = np.stack([stored[int(f) - offset] for f in frames_blender[st_rows]])
        sc = vmd.read_curves(st)
        agree = st_rows.copy()
        for c in "xyzr":
            base[c] = np.where(st_rows[:, None], sc[c].astype(np.float64), base[c])
            agree &= ~known[c] | np.all(np.abs(sc[c].astype(np.float64) - curves[c]) <= 1, axis=1)
        physics_off = st_rows & (vmd.physics_toggle(st) == vmd.PHYSICS_OFF)
    else:
        agree = st_rows
    parts = {c: np.where(known[c][:, None], curves[c], base[c]).astype(np.uint8) for c in "xyzr"}
    out = np.empty((k, 64), dtype=np.uint8)
    for off in (False, True):
        sel = physics_off == off
        if sel.any():
            out[sel] = vmd.interpolation_block(parts["x"][sel], parts["y"][sel], parts["z"][sel], parts["r"][sel],
                                               physics_off=off)
    out[agree] = st[agree]
    return out


def frame_offset(action, scene=None) -> int:
    """Blender frame of VMD frame 0 for ``action`` (module docstring: ``mmd_frame_offset`` or MMD Tools' rule)."""
    if action is not None and FRAME_OFFSET_PROP in action:
        return int(action[FRAME_OFFSET_PROP])
    scene = scene or bpy.context.scene
    return min(1, int(scene.frame_start))


def collect_bone_keys(obj, action=None, *, offset: int | None = None) -> dict:
    """Bone keys of ``obj``'s action in MMD terms.

    Returns:
        ``{"names": K str, "frames": (K,) int64 VMD frames, "rotations": (K, 4) xyzw, "locations": (K, 3) MMD units,
        "interpolation": (K, 64) uint8, "warnings": [...], "offset": int}``.

    Raises:
        ValueError: no action, or no bone channel in it.
    """
    action = action or (obj.animation_data.action if obj.animation_data is not None else None)
    if action is None:
        raise ValueError(f"armature {obj.name!r} has no action to export")
    off = frame_offset(action) if offset is None else int(offset)
    per_bone: dict = {}
    for fc in _action_fcurves(obj, action):
        m = _PATH_RE.match(fc.data_path)
        if not m or len(fc.keyframe_points) == 0:
            continue
        bname = bpy.utils.unescape_identifier(m.group(1)) if hasattr(bpy.utils, "unescape_identifier") \
            else m.group(1).replace('\\"', '"').replace("\\\\", "\\")
        per_bone.setdefault(bname, {}).setdefault(m.group(2), {})[fc.array_index] = fc
    warnings: list = []
    names_out, frames_out, rot_out, loc_out, interp_out = [], [], [], [], []
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
        rot_parts = []
        if "rotation_quaternion" in chans:
            for i, fc in chans["rotation_quaternion"].items():
                if 0 <= i < 4:
                    part = _channel(fc, fr)
                    quat[:, i] = part[0]
                    rot_parts.append(part)
        elif "rotation_euler" in chans:
            e = np.zeros((k, 3))
            for i, fc in chans["rotation_euler"].items():
                if 0 <= i < 3:
                    part = _channel(fc, fr)
                    e[:, i] = part[0]
                    rot_parts.append(part)
            order = pb.rotation_mode if pb.rotation_mode in ("XYZ", "XZY", "YXZ", "YZX", "ZXY", "ZYX") else "XYZ"
            quat = _euler_to_quat_xyz_order(e, order)
        loc = np.zeros((k, 3))
        loc_parts = {}
        for i, fc in chans.get("location", {}).items():
            if 0 <= i < 3:
                part = _channel(fc, fr)
                loc[:, i] = part[0]
                loc_parts[i] = part
        norm = np.linalg.norm(quat, axis=1, keepdims=True)
        quat = np.where(norm > 1e-12, quat / np.where(norm > 1e-12, norm, 1.0), np.array([1.0, 0, 0, 0]))
        mm = mmd_to_local_matrices(obj, [bname])
        q, t = pose_to_mmd(mm, quat[:, None, :], loc[:, None, :])
        axes = location_axes(mm)[0]
        curves, known = {}, {}
        curves["r"], known["r"] = _pick(rot_parts) if rot_parts else (np.tile(_LINEAR_CURVE, (k, 1)),
                                                                       np.zeros(k, bool))
        for a, label in enumerate("xyz"):
            part = loc_parts.get(int(axes[a]))
            curves[label], known[label] = (part[1], part[2]) if part is not None else \
                (np.tile(_LINEAR_CURVE, (k, 1)), np.zeros(k, bool))
        names_out += [jp] * k
        frames_out.append(fr.astype(np.int64) - off)
        rot_out.append(quat_math.make_continuous(q[:, 0]))
        loc_out.append(t[:, 0])
        interp_out.append(_blocks(fr.astype(np.int64), curves, known, _stored_blocks(action, jp), off))
    if not names_out:
        raise ValueError(f"action {action.name!r} has no bone rotation or location keys")
    frames = np.concatenate(frames_out)
    if frames.min() < 0:
        shift = -int(frames.min())
        warnings.append(f"keys before frame 0 were shifted by {shift} frames (VMD frames start at 0)")
        frames = frames + shift
        off -= shift
    return {"names": names_out, "frames": frames, "rotations": np.concatenate(rot_out),
            "locations": np.concatenate(loc_out), "interpolation": np.concatenate(interp_out), "warnings": warnings,
            "offset": off}


def collect_keys(obj, action=None) -> tuple:
    """``(names, frames, rotations, locations, warnings)`` of :func:`collect_bone_keys` (kept for callers that do
    not need the interpolation)."""
    d = collect_bone_keys(obj, action)
    return d["names"], d["frames"], d["rotations"], d["locations"], d["warnings"]


_IK_PATH_RE = re.compile(r'^pose\.bones\["((?:[^"\\]|\\.)*)"\]\.constraints\["((?:[^"\\]|\\.)*)"\]\.influence$')
_MORPH_PATH_RE = re.compile(r'^key_blocks\["((?:[^"\\]|\\.)*)"\]\.value$')
#: MMD Tools keys its IK switches as the IK bone's ``mmd_ik_toggle`` property ([MT] importer).
_TOGGLE_PATH_RE = re.compile(r'^pose\.bones\["((?:[^"\\]|\\.)*)"\]\.mmd_ik_toggle$')


def _unescape(s: str) -> str:
    return bpy.utils.unescape_identifier(s) if hasattr(bpy.utils, "unescape_identifier") \
        else s.replace('\\"', '"').replace("\\\\", "\\")


def collect_property_keys(obj, action, offset: int) -> list:
    """IK switches: keyed ``influence`` of IK constraints, or MMD Tools' ``mmd_ik_toggle`` of the IK bone ->
    :class:`vmd.PropertyKey` list (docs/MMD_FACTS.md §1.7)."""
    per_ik: dict = {}
    for fc in _action_fcurves(obj, action):
        t = _TOGGLE_PATH_RE.match(fc.data_path)
        if t and len(fc.keyframe_points) and obj.pose.bones.get(_unescape(t.group(1))) is not None:
            per_ik.setdefault(mmd_name(obj.pose.bones[_unescape(t.group(1))]), fc)
            continue
        m = _IK_PATH_RE.match(fc.data_path)
        if not m or len(fc.keyframe_points) == 0:
            continue
        pb = obj.pose.bones.get(_unescape(m.group(1)))
        con = pb.constraints.get(_unescape(m.group(2))) if pb is not None else None
        if con is None or con.type != "IK" or con.subtarget not in obj.pose.bones:
            continue
        per_ik.setdefault(mmd_name(obj.pose.bones[con.subtarget]), fc)
    if not per_ik:
        return []
    order = [n for n in list(action.get(IK_ORDER_PROP, [])) if n in per_ik]
    order += sorted(n for n in per_ik if n not in order)
    frames = np.unique(np.concatenate([np.rint(_curve_keys(fc)[:, 0]) for fc in per_ik.values()]))
    vis_raw = list(action.get(VISIBLE_PROP, []))
    half = len(vis_raw) // 2
    visible = {int(f): bool(v) for f, v in zip(vis_raw[:half], vis_raw[half:])}
    keys = []
    for f in frames:
        vf = int(f) - offset
        keys.append(vmd.PropertyKey(frame=max(vf, 0), visible=visible.get(vf, True),
                                    ik_states=[(n, bool(per_ik[n].evaluate(float(f)) >= 0.5)) for n in order]))
    return keys


def collect_morph_keys(obj, scene=None) -> np.ndarray:
    """Shape-key ``value`` F-Curves of the meshes under ``obj`` -> morph keys (their key frames, linear)."""
    rows = []
    for mesh in obj.children_recursive:
        sk = mesh.data.shape_keys if mesh.type == "MESH" else None
        ad = sk.animation_data if sk is not None else None
        if ad is None or ad.action is None:
            continue
        off = frame_offset(ad.action, scene)
        bag = ad.action
        if compat.has_slotted_actions(bag):
            slot = ad.action_slot or (bag.slots[0] if len(bag.slots) else None)
            cb = compat.channelbag_for_slot(bag, slot, ensure=False) if slot is not None else None
            fcs = list(cb.fcurves) if cb is not None else []
        else:
            fcs = list(bag.fcurves)
        for fc in fcs:
            m = _MORPH_PATH_RE.match(fc.data_path)
            if not m:
                continue
            name = _unescape(m.group(1))
            try:
                vmd.encode_name(name, 15)
            except (ValueError, UnicodeError):
                continue
            for f, v in _curve_keys(fc):
                rows.append((name, int(round(f)) - off, float(v)))
    out = np.zeros(len(rows), dtype=vmd.MORPH_KEY_DTYPE)
    for i, (n, f, v) in enumerate(rows):
        out[i] = (vmd.encode_name(n, 15), max(f, 0), v)
    return vmd.sort_keys(out) if len(out) else out


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
    d = collect_bone_keys(obj, action)
    names, frames, warnings = d["names"], d["frames"], d["warnings"]
    keys = vmd.sort_keys(vmd.make_bone_keys(names, frames, d["locations"], d["rotations"], d["interpolation"]))
    act = action or obj.animation_data.action
    name = model or model_name(obj)
    try:
        vmd.encode_name(name, 20)
    except (ValueError, UnicodeError):
        warnings.append(f"model name {name!r} cannot be written in cp932; left empty")
        name = ""
    motion = vmd.VmdMotion(model_name=name, bone_keys=keys, property_keys=collect_property_keys(obj, act, d["offset"]),
                           morph_keys=collect_morph_keys(obj))
    vmd.write(path, motion, overwrite=overwrite)
    return ExportResult(path=path, bone_count=len(set(names)), key_count=len(keys),
                        frame_range=(int(frames.min()), int(frames.max())), warnings=warnings)
