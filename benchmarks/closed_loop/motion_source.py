"""Motions the closed-loop benchmark plays on a model: a VMD made dense (every frame keyed), numpy only.

A VMD keys bones sparsely with Bézier interpolation (MMD_FACTS.md §1.5). The benchmark's ground truth is whatever
motion is rendered, so :func:`dense_from_vmd` only needs to be a smooth, deterministic densification: rotations are
slerped and translations interpolated linearly between keys (the VMD's Bézier curves are not evaluated), held
constant before the first and after the last key of each bone. Leg IK keys (足ＩＫ) are kept as translations; the
renderer (``benchmarks.closed_loop.render``) solves the legs with Blender's IK and bakes them into FK keys.

Frames and units: ``core.conventions`` (MMD frames at 30 fps, MMD units, quaternions x, y, z, w).
"""
from __future__ import annotations

import numpy as np

from core import quat as Q
from core.formats import vmd as vmd_format
from core.motion import BoneMotion

__all__ = ["dense_from_vmd"]


def dense_from_vmd(motion, *, first: int | None = None, last: int | None = None) -> BoneMotion:
    """Key every bone of a (sparse) VMD motion on every frame ``first..last``.

    Args:
        motion: a ``core.formats.vmd.VmdMotion`` (or a path to a ``.vmd``).
        first, last: frame range (default: the first and last key over all bones).

    Returns:
        :class:`core.motion.BoneMotion` with a rotation and a translation track for every keyed bone
        (``meta["source"]`` = "vmd", ``meta["interpolation"]`` = "slerp/linear").

    Raises:
        ValueError: the motion has no bone keys, or ``last < first``.
    """
    if not hasattr(motion, "bone_keys"):
        motion = vmd_format.read(motion)
    keys = vmd_format.sort_keys(motion.bone_keys)
    if len(keys) == 0:
        raise ValueError("dense_from_vmd: the motion has no bone keys")
    names = vmd_format.decode_names(keys["name"])
    kf = keys["frame"].astype(np.int64)
    f0 = int(kf.min()) if first is None else int(first)
    f1 = int(kf.max()) if last is None else int(last)
    if f1 < f0:
        raise ValueError(f"dense_from_vmd: last frame {f1} < first frame {f0}")
    frames = np.arange(f0, f1 + 1, dtype=np.int64)
    rot_all = Q.normalize(vmd_format.rotations_xyzw(keys))
    loc_all = keys["location"].astype(np.float64)
    rotations, locations = {}, {}
    for name in dict.fromkeys(names.tolist()):
        sel = np.flatnonzero(names == name)
        f = kf[sel]
        _, uniq = np.unique(f[::-1], return_index=True)      # the later of duplicate keys wins
        sel = sel[::-1][uniq]
        f = kf[sel]
        q = Q.make_continuous(rot_all[sel])
        p = loc_all[sel]
        i = np.clip(np.searchsorted(f, frames, side="right") - 1, 0, len(f) - 1)
        j = np.clip(i + 1, 0, len(f) - 1)
        span = np.maximum(f[j] - f[i], 1)
        u = np.clip((frames - f[i]) / span, 0.0, 1.0)
        u[j == i] = 0.0
        rotations[name] = Q.slerp(q[i], q[j], u)
        locations[name] = p[i] + (p[j] - p[i]) * u[:, None]
    return BoneMotion(frames=frames, rotations=rotations, locations=locations, model_name=motion.model_name,
                      meta={"source": "vmd", "interpolation": "slerp/linear"})
