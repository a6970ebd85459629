"""Dense MMD bone motion (every listed bone keyed on every frame) and its conversion to / from VMD.

A :class:`BoneMotion` is what ``core.retarget.retarget`` returns and what the VMD writer and the Blender add-on
consume: per bone, a local key rotation (x, y, z, w; relative to the parent's posed frame) and/or a key translation
(offset from rest in the parent's posed axes, MMD units), at integer MMD frames (30 fps). Semantics: MMD_FACTS.md
§2.2; axes and quaternion order: ``core.conventions``. numpy and the standard library only.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import quat as Q
from .formats import vmd as vmd_format

__all__ = ["BoneMotion"]


@dataclass
class BoneMotion:
    """Dense bone keys: every bone in ``rotations`` / ``locations`` has a value on every frame.

    Attributes:
        frames: ``(T,)`` int64 MMD frame numbers (30 fps), strictly increasing, >= 0.
        rotations: bone name -> ``(T, 4)`` float64 unit quaternions (x, y, z, w), local (docs/MMD_FACTS.md §2.2).
        locations: bone name -> ``(T, 3)`` float64 translations from rest, MMD units, parent's posed axes.
        model_name: the target model's name (used as the VMD header's model name by default).
        meta: free-form facts about how the motion was made (e.g. ``retarget``'s scale and ground shift).
        morphs: morph name -> ``(T,)`` float64 weights (0 = off, 1 = full; docs/MMD_FACTS.md §1.3 morph keys), e.g.
            まばたき from ``core.hands_face``; written as VMD morph keys by :meth:`to_vmd`.

    A bone may appear in either dict or both; :meth:`to_vmd` writes identity / zero for the missing half.

    Raises:
        ValueError: (on construction) frames not 1-D, not integer, negative or not strictly increasing; an array of
            the wrong shape; non-finite values.
    """

    frames: np.ndarray
    rotations: dict = field(default_factory=dict)
    locations: dict = field(default_factory=dict)
    model_name: str = ""
    meta: dict = field(default_factory=dict)
    morphs: dict = field(default_factory=dict)

    def __post_init__(self):
        f = np.asarray(self.frames)
        if f.ndim != 1:
            raise ValueError(f"BoneMotion: frames must be (T,), got shape {f.shape}")
        if f.size and not np.issubdtype(f.dtype, np.integer):
            if not np.all(np.isfinite(f)) or np.any(f != np.round(f)):
                raise ValueError("BoneMotion: frames must be integers (MMD frames at 30 fps)")
        f = f.astype(np.int64)
        if f.size and (f[0] < 0 or np.any(np.diff(f) <= 0)):
            raise ValueError("BoneMotion: frames must be >= 0 and strictly increasing")
        self.frames = f
        t = f.shape[0]
        rot, loc = {}, {}
        for src, dst, width, what in ((self.rotations, rot, 4, "rotations"), (self.locations, loc, 3, "locations")):
            for name, arr in dict(src).items():
                a = np.asarray(arr, dtype=np.float64)
                if a.shape != (t, width):
                    raise ValueError(f"BoneMotion.{what}[{name!r}] must be ({t}, {width}) for {t} frames, "
                                     f"got {a.shape}")
                if not np.all(np.isfinite(a)):
                    raise ValueError(f"BoneMotion.{what}[{name!r}] contains NaN or inf")
                dst[str(name)] = Q.normalize(a) if width == 4 else a
        self.rotations, self.locations = rot, loc
        morphs = {}
        for name, arr in dict(self.morphs).items():
            a = np.asarray(arr, dtype=np.float64)
            if a.shape != (t,) or not np.all(np.isfinite(a)):
                raise ValueError(f"BoneMotion.morphs[{name!r}] must be ({t},) finite weights, got {a.shape}")
            morphs[str(name)] = a
        self.morphs = morphs

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def bone_names(self) -> list[str]:
        """Keyed bones: those with rotations (in insertion order), then those with only a translation."""
        return list(self.rotations) + [n for n in self.locations if n not in self.rotations]

    def to_vmd(self, model_name: str | None = None, *, model_name_en: str = "",
               english_names: dict | None = None, notes: list | None = None):
        """A :class:`core.formats.vmd.VmdMotion` with every listed bone keyed on every frame.

        Rotations are made sign-continuous per bone first (docs/MMD_FACTS.md §5.1); interpolation is the linear MMD pattern
        (§1.5, ``LINEAR_INTERPOLATION``). Keys are grouped by bone.

        Args:
            model_name: VMD header model name (default: :attr:`model_name`); cut to 20 cp932 bytes by the writer.
            model_name_en, english_names: English model / bone names (bone name -> English), the fallbacks for names
                cp932 cannot hold (``core.formats.vmd``, docs/MMD_FACTS.md §1.2).
            notes: a list that receives one sentence per name written with a fallback.

        Raises:
            ValueError: two names equal after the 15-byte cut (from ``make_bone_keys``); no bones.
        """
        names = self.bone_names
        if not names:
            raise ValueError("BoneMotion.to_vmd: no bones to write")
        t = self.n_frames
        rot = np.empty((t, len(names), 4))
        loc = np.zeros((t, len(names), 3))
        for j, n in enumerate(names):
            rot[:, j] = Q.make_continuous(self.rotations[n]) if n in self.rotations else Q.identity(t)
            if n in self.locations:
                loc[:, j] = self.locations[n]
        keys = vmd_format.make_bone_keys(names, self.frames, loc, rot, english_names=english_names, notes=notes)
        return vmd_format.VmdMotion(model_name=self.model_name if model_name is None else model_name,
                                    bone_keys=keys, morph_keys=self.morph_keys(), model_name_en=model_name_en)

    def morph_keys(self) -> np.ndarray:
        """VMD morph keys (``vmd.MORPH_KEY_DTYPE``) of :attr:`morphs`, grouped by morph. MMD interpolates morph
        weights linearly between keys, so inside a run of equal weights only the run's first and last keys are
        written (the result plays back the same)."""
        from .formats.cp932 import encode_name

        parts = []
        for name, w in self.morphs.items():
            if w.size == 0:
                continue
            same_prev = np.r_[False, w[1:] == w[:-1]]
            same_next = np.r_[w[:-1] == w[1:], False]
            keep = ~(same_prev & same_next)
            k = np.empty(int(keep.sum()), dtype=vmd_format.MORPH_KEY_DTYPE)
            k["name"] = encode_name(name, 15)
            k["frame"] = self.frames[keep]
            k["weight"] = w[keep]
            parts.append(k)
        return np.concatenate(parts) if parts else np.zeros(0, dtype=vmd_format.MORPH_KEY_DTYPE)

    @classmethod
    def from_vmd(cls, motion, *, sparse: str = "sample") -> "BoneMotion":
        """Dense arrays from a VMD motion's bone keys (inverse of :meth:`to_vmd`), and its morph keys in
        :attr:`morphs` (linear between keys, at the same frames).

        When every bone is keyed on every frame of the union of all key frames (what :meth:`to_vmd` writes), those
        frames are the frame axis and the keys are taken as they are (duplicate (bone, frame) keys: the later one
        wins, as ``vmd.sort_keys`` / [BM] do). Otherwise (hand-keyed VMDs, reduced output of ``core.keyreduce``)
        ``sparse`` decides.

        Args:
            motion: a ``VmdMotion`` (or its ``bone_keys`` array).
            sparse: ``"sample"`` (default) evaluates every bone on every frame from the first key to the last with
                MMD's Bézier interpolation (``core.vmd_sample.sample_vmd``, docs/MMD_FACTS.md §2.4; a bone holds its
                first / last key outside its own keys); ``"error"`` raises; ``"skip"`` leaves the sparse bones out.

        Raises:
            ValueError: no bone keys; a sparse bone with ``sparse="error"``; an unknown ``sparse`` value.
        """
        if sparse not in ("error", "skip", "sample"):
            raise ValueError(f"BoneMotion.from_vmd: sparse must be 'sample', 'error' or 'skip', got {sparse!r}")
        keys = motion.bone_keys if hasattr(motion, "bone_keys") else np.asarray(motion)
        if len(keys) == 0:
            raise ValueError("BoneMotion.from_vmd: the motion has no bone keys")
        keys = vmd_format.sort_keys(keys)
        names = vmd_format.decode_names(keys["name"])
        frames = np.unique(keys["frame"].astype(np.int64))
        rot_all = vmd_format.rotations_xyzw(keys)
        loc_all = keys["location"].astype(np.float64)
        rotations, locations, missing = {}, {}, []
        order = list(dict.fromkeys(names.tolist()))
        for name in order:
            sel = np.flatnonzero(names == name)
            f = keys["frame"][sel].astype(np.int64)
            if f.shape != frames.shape or np.any(f != frames):
                missing.append(f"{name} ({len(f)} of {len(frames)} frames)")
                continue
            rotations[name] = rot_all[sel]
            locations[name] = loc_all[sel]
        model_name = getattr(motion, "model_name", "")
        if missing and sparse == "sample":
            from .vmd_sample import sample_vmd
            from .formats.vmd import VmdMotion

            src = motion if hasattr(motion, "bone_keys") else VmdMotion(bone_keys=keys)
            out = sample_vmd(src, np.arange(int(frames[0]), int(frames[-1]) + 1))
            out.model_name = model_name
            out.morphs = _morphs_at(motion, out.frames)
            return out
        if missing and sparse == "error":
            raise ValueError("BoneMotion.from_vmd: bones not keyed on every frame: " + ", ".join(missing[:10])
                             + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
                             + " (pass sparse='sample' to interpolate them or sparse='skip' to leave them out)")
        return cls(frames=frames, rotations=rotations, locations=locations, model_name=model_name,
                   morphs=_morphs_at(motion, frames))


def _morphs_at(motion, frames: np.ndarray) -> dict:
    """Morph weights of a VMD motion's morph keys at ``frames``: name -> ``(T,)``, linear between keys (as MMD
    plays them), held before the first and after the last key; {} for a bare key array or no morph keys."""
    keys = getattr(motion, "morph_keys", None)
    if keys is None or len(keys) == 0:
        return {}
    keys = vmd_format.sort_keys(keys)
    names = vmd_format.decode_names(keys["name"])
    out = {}
    for name in dict.fromkeys(names.tolist()):
        sel = names == name
        out[name] = np.interp(frames, keys["frame"][sel].astype(np.float64), keys["weight"][sel].astype(np.float64))
    return out
