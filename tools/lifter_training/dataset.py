"""Training data for the lifter: mocap retargeted onto many MMD body builds, cached as joints (docs/lifter.md §2).

Per clip, a few *variants* (rest skeleton, random proportions, mirrored or not) are retargeted with
:func:`tools.lifter_training.mocap.to_mmd`; each variant's joints ``(T, 27, 3)`` (MMD units, the model's own joint
definitions) and foot-contact labels ``(T, 4)`` are written to a cache folder outside the repository, so data
preparation runs once. 2D inputs are made from these on the fly (:mod:`.synth`).

Contact labels (order :data:`CONTACT_POINTS`: left heel, left toe, right heel, right toe): a point is in contact on
a frame when its height is within :data:`CONTACT_HEIGHT_M` of its floor (the 3rd percentile of that point's height
over the clip: MMD models put heel and toe points at different heights) and its speed is below
:data:`CONTACT_SPEED_MPS`.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.conventions import METRES_PER_UNIT
from core.formats import pmx
from core.rest_skeleton import RestSkeleton
from core.skeletons import CANONICAL

from . import mocap

__all__ = ["REST_MODELS", "load_rests", "scaled_rest", "contact_labels", "build_cache", "load_cache", "Variant",
           "CONTACT_POINTS", "DEFAULT_CACHE"]

J = {n: i for i, n in enumerate(CANONICAL)}

#: Rest skeletons used for training: shared PMX models (relative to ../shared/data/pmx) and the built-in standard.
REST_MODELS = {
    "mat4": "mat4_trace_model/mat4_v4_trace_model.pmx",
    "yw": "yw_test_model/yw_test_model.pmx",
    "basic": "fixtures/test_basic_bone.pmx",
    "semi": "fixtures/test_semi_basic_bone.pmx",
    "standard": None,
}

CONTACT_POINTS = ("LHeel", "LFootIndex", "RHeel", "RFootIndex")
CONTACT_HEIGHT_M = 0.05
CONTACT_SPEED_MPS = 0.5

DEFAULT_CACHE = Path("/work/cache/lifter")


def load_rests(pmx_dir: Path | None = None) -> dict[str, RestSkeleton]:
    """The :data:`REST_MODELS` as :class:`RestSkeleton` (KeyError-free: every one is required)."""
    pmx_dir = Path(pmx_dir) if pmx_dir is not None else mocap.MOCAP_DIR.parent / "pmx"
    out = {}
    for name, rel in REST_MODELS.items():
        out[name] = RestSkeleton.standard() if rel is None else RestSkeleton.from_pmx(pmx.read(pmx_dir / rel))
    return out


def _group(name: str) -> str:
    if "ＩＫ" in name or "IK" in name:
        return "ik"
    if any(k in name for k in ("ひざ", "足首", "つま先", "かかと")) or name in ("左足", "右足"):
        return "leg"
    if name.endswith("肩") or name.endswith("肩P") or name.endswith("肩C"):
        return "clavicle"
    if any(k in name for k in ("腕", "ひじ", "手首", "指", "手捩", "ダミー")):
        return "arm"
    if name.startswith("上半身") or name == "首":
        return "spine"
    if name == "頭":
        return "neck"
    return "other"


def scaled_rest(rest: RestSkeleton, rng: np.random.Generator, amount: float = 1.0) -> RestSkeleton:
    """A copy of ``rest`` with random body proportions: legs, arms, spine, neck, clavicles scaled by independent
    factors in ``1 ± 0.15·amount`` (spine up to +0.2), hip width by ``0.8..1.3``; IK bones follow their targets.

    Bone offsets from the parent are scaled in hierarchy order, so each group's bones keep their directions.
    """
    a = float(amount)
    k = {"leg": rng.uniform(1 - 0.15 * a, 1 + 0.15 * a), "arm": rng.uniform(1 - 0.15 * a, 1 + 0.15 * a),
         "spine": rng.uniform(1 - 0.15 * a, 1 + 0.2 * a), "neck": rng.uniform(1 - 0.2 * a, 1 + 0.2 * a),
         "clavicle": rng.uniform(1 - 0.2 * a, 1 + 0.3 * a), "ik": 1.0, "other": 1.0}
    hip_w = rng.uniform(1 - 0.2 * a, 1 + 0.3 * a)
    p = rest.positions
    new = p.copy()
    for i in rest._order:
        par = int(rest.parents[i])
        if par < 0:
            continue
        off = (p[i] - p[par]) * k[_group(rest.names[i])]
        if rest.names[i] in ("左足", "右足") or "腰キャンセル" in rest.names[i]:
            off = p[i] - p[par]
            off[0] *= hip_w       # the hip width sits on 足 or on a 腰キャンセル bone above it
        new[i] = new[par] + off
    for c in rest.ik_chains:
        b, t = rest.index_of(c.bone), rest.index_of(c.target)
        if b is not None and t is not None:
            new[b] = new[t]
    return RestSkeleton(names=list(rest.names), positions=new, parents=rest.parents.copy(),
                        names_en=list(rest.names_en), ik_chains=list(rest.ik_chains),
                        inherit_source=rest.inherit_source.copy(), inherit_ratio=rest.inherit_ratio.copy(),
                        inherit_rotation=rest.inherit_rotation.copy(), model_name=rest.model_name + " (scaled)")


def contact_labels(joints: np.ndarray, fps: float = mocap.FPS) -> np.ndarray:
    """``(T, 4)`` uint8 foot contacts from ``(T, 27, 3)`` MMD-unit joints (module docstring)."""
    pts = joints[:, [J[n] for n in CONTACT_POINTS]] * METRES_PER_UNIT       # (T, 4, 3) metres, Y up
    floor = np.percentile(pts[..., 1], 3, axis=0)          # per point: models place heel and toe differently
    vel = np.zeros(pts.shape[:2])
    if len(pts) > 1:
        d = np.linalg.norm(np.diff(pts, axis=0), axis=-1) * fps
        vel[1:-1] = 0.5 * (d[1:] + d[:-1])
        vel[0], vel[-1] = d[0], d[-1]
    return ((pts[..., 1] - floor < CONTACT_HEIGHT_M) & (vel < CONTACT_SPEED_MPS)).astype(np.uint8)


@dataclass
class Variant:
    """One cached training sequence: joints (T, 27, 3) float32 MMD units, contacts (T, 4) uint8, and its origin."""

    clip: str
    rest: str
    mirrored: bool
    joints: np.ndarray
    contacts: np.ndarray
    split: str


def _n_variants(clip_name: str) -> int:
    if clip_name.startswith("cmu_iclone/005_"):
        return 10            # modern dance: every model, mirrored and not
    if clip_name.startswith("cmu_iclone"):
        return 6
    if "dance" in clip_name:
        return 10
    return 3


def build_cache(cache: Path = DEFAULT_CACHE, seed: int = 0, cmu_only: bool = False, log=print) -> Path:
    """Retarget every clip of :func:`mocap.split` into variants and write ``cache/<tag>/variants.npz`` + index.

    Deterministic for a seed. Returns the folder. Skips the work when the folder already holds a finished cache
    built with the same settings.
    """
    tag = f"seed{seed}" + ("_cmu" if cmu_only else "")
    out = Path(cache) / tag
    done = out / "index.json"
    if done.is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    rests = load_rests()
    names = list(rests)
    rng = np.random.default_rng(seed)
    sp = mocap.split()
    arrays, index = {}, []
    t0 = time.time()
    for side in ("train", "test"):
        for path in sp[side]:
            if cmu_only and path.parent.name != "cmu_iclone":
                continue
            clip = mocap.load_clip(path)
            n = _n_variants(clip.name) if side == "train" else 2
            for v in range(n):
                if side == "test":
                    rest_name, mirrored, amount = ("mat4", "yw")[v], False, 0.0
                else:
                    rest_name = names[v % len(names)] if n >= len(names) else names[rng.integers(len(names))]
                    mirrored = bool(v % 2) if n >= 2 * len(names) else bool(rng.integers(2))
                    amount = 1.0
                rest = rests[rest_name] if amount == 0 else scaled_rest(rests[rest_name], rng, amount)
                src = mocap.mirror(clip.joints) if mirrored else clip.joints
                _, j = mocap.to_mmd(src, rest)
                key = f"v{len(index)}"
                arrays[key + "_j"] = j.astype(np.float32)
                arrays[key + "_c"] = contact_labels(j)
                index.append({"key": key, "clip": clip.name, "rest": rest_name, "mirrored": mirrored,
                              "split": side, "frames": int(len(j))})
            if len(index) % 50 < n:
                log(f"cache: {len(index)} variants, {sum(e['frames'] for e in index)} frames, "
                    f"{time.time() - t0:.0f} s")
    np.savez(out / "variants.npz", **arrays)
    done.write_text(json.dumps(index))
    log(f"cache: wrote {len(index)} variants to {out} in {time.time() - t0:.0f} s")
    return out


def load_cache(folder: Path) -> list[Variant]:
    """The variants of a cache folder written by :func:`build_cache`."""
    folder = Path(folder)
    index = json.loads((folder / "index.json").read_text())
    with np.load(folder / "variants.npz") as z:
        return [Variant(e["clip"], e["rest"], e["mirrored"], z[e["key"] + "_j"], z[e["key"] + "_c"], e["split"])
                for e in index]
