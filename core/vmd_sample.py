"""Sample a sparse VMD motion on every frame, as MMD plays it (Bézier interpolation), and read its IK switches.

``core.motion.BoneMotion.from_vmd`` needs every bone keyed on every frame; real VMD files key bones sparsely and
interpolate. :func:`sample_vmd` evaluates the curves at any integer frames so the result can be posed
(``core.ik.evaluate_motion``) or compared frame by frame. :func:`ik_switches` turns the property keys' IK on/off
states into per-frame flags. numpy and the standard library only; frames and units as ``core.conventions``.
"""
from __future__ import annotations

import numpy as np

from . import quat as Q
from .formats import vmd as vmd_format
from .motion import BoneMotion

__all__ = ["bezier_weight", "sample_vmd", "ik_switches"]

_BISECTIONS = 24   # |u error| < 2^-24; [BM] bezierInterpolate.ts uses 15 steps (2^-15), below VMD's 1/127 precision


def bezier_weight(ctrl: np.ndarray, s: np.ndarray) -> np.ndarray:
    """MMD's interpolation weight for segment fractions ``s`` (docs/MMD_FACTS.md §2.4).

    The curve runs (0, 0), (x1, y1)/127, (x2, y2)/127, (1, 1); solve ``Bx(u) = s`` for u by bisection (Bx is
    monotonic: control x values lie in [0, 1]) and return ``By(u)``.

    Args:
        ctrl: ``(..., 4)`` control points (x1, y1, x2, y2) in 0..127 (``vmd.read_curves`` output).
        s: ``(...)`` fractions in [0, 1].

    Returns:
        ``(...)`` float64 weights in [0, 1].
    """
    c = np.asarray(ctrl, dtype=np.float64) / 127.0
    x1, y1, x2, y2 = np.moveaxis(c, -1, 0)
    s = np.asarray(s, dtype=np.float64)

    def bez(p1, p2, u):
        v = 1.0 - u
        return 3.0 * v * v * u * p1 + 3.0 * v * u * u * p2 + u * u * u

    lo = np.zeros(np.broadcast_shapes(x1.shape, s.shape))
    hi = np.ones_like(lo)
    for _ in range(_BISECTIONS):
        mid = 0.5 * (lo + hi)
        below = bez(x1, x2, mid) < s
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    return bez(y1, y2, 0.5 * (lo + hi))


def sample_vmd(motion, frames=None, *, bones=None) -> BoneMotion:
    """Every keyed bone of a VMD motion at the given frames (docs/MMD_FACTS.md §2.4).

    For a frame between keys k-1 and k, ``s = (f - f[k-1]) / (f[k] - f[k-1])``; key k's curves give one weight per
    translation axis (each lerped with its own) and one for the rotation (``slerp(q[k-1], q[k], w)``, shorter arc
    as ``core.quat.slerp``). Before a bone's first key and after its last the value is held. Duplicate (bone,
    frame) keys: the later one in the file wins (``vmd.sort_keys``).

    Args:
        motion: a ``core.formats.vmd.VmdMotion``.
        frames: ``(F,)`` integer frames (30 fps); default every frame from 0 to the last key.
        bones: optional bone names to keep (default all keyed bones).

    Returns:
        :class:`core.motion.BoneMotion` with a rotation and a location track for every kept bone.

    Raises:
        ValueError: no bone keys; frames not 1-D, negative, not integers or not strictly increasing (BoneMotion).
    """
    keys = vmd_format.sort_keys(motion.bone_keys)
    if len(keys) == 0:
        raise ValueError("sample_vmd: the motion has no bone keys")
    names = vmd_format.decode_names(keys["name"])
    all_frames = keys["frame"].astype(np.int64)
    f = np.arange(int(all_frames.max()) + 1) if frames is None else np.asarray(frames)
    if f.ndim != 1:
        raise ValueError(f"sample_vmd: frames must be (F,), got shape {f.shape}")
    fl = f.astype(np.float64)
    rot_all = vmd_format.rotations_xyzw(keys)
    loc_all = keys["location"].astype(np.float64)
    curves = vmd_format.read_curves(keys["interpolation"])
    want = None if bones is None else set(bones)
    rotations, locations = {}, {}
    for name in dict.fromkeys(names.tolist()):
        if want is not None and name not in want:
            continue
        sel = np.flatnonzero(names == name)           # this bone's keys, by frame
        kf = all_frames[sel].astype(np.float64)
        k = np.searchsorted(kf, fl, side="right")     # first key after f
        i0 = np.clip(k - 1, 0, len(sel) - 1)
        i1 = np.clip(k, 0, len(sel) - 1)
        span = kf[i1] - kf[i0]
        s = np.where(span > 0, (fl - kf[i0]) / np.where(span > 0, span, 1.0), 0.0)
        g0, g1 = sel[i0], sel[i1]
        w = {c: bezier_weight(curves[c][g1], s) for c in ("x", "y", "z", "r")}
        wl = np.stack([w["x"], w["y"], w["z"]], axis=-1)
        locations[name] = loc_all[g0] + (loc_all[g1] - loc_all[g0]) * wl
        rotations[name] = Q.slerp(rot_all[g0], rot_all[g1], w["r"])
    return BoneMotion(frames=f, rotations=rotations, locations=locations,
                      model_name=getattr(motion, "model_name", ""))


def ik_switches(motion, frames) -> dict:
    """Per-frame IK on/off from a VMD's property keys (docs/MMD_FACTS.md §1.7, §2.5): IK bone name -> ``(F,)``
    bool. A state holds from its key until the next key that names the bone; before the first, IK is on (MMD's
    default). Only bones named in some property key appear (pass the result to ``core.ik.evaluate(ik_enabled=)``).
    """
    f = np.asarray(frames, dtype=np.int64)
    out: dict = {}
    for key in sorted(getattr(motion, "property_keys", []) or [], key=lambda k: k.frame):
        for name, enabled in key.ik_states:
            arr = out.setdefault(name, np.ones(f.shape, dtype=bool))
            arr[f >= int(key.frame)] = bool(enabled)
    return out
