"""Held-out figures of a lifter ``.npz`` on synthetic 2D of the held-out clips (docs/lifter.md §5).

    OMP_NUM_THREADS=1 .venv/bin/python -m tools.lifter_training.evaluate [--weights PATH] [--cache DIR]

For every held-out variant (each held-out clip on ``mat4`` and ``yw``; :func:`.mocap.split`) one random camera and
the measured detector noise (fixed seed, the same as training's evaluation), run by the numpy inference. Prints, for
all clips, CMU subject 5 (dance) and Bandai: MPJPE, PA-MPJPE and scale-aligned N-MPJPE (mm, 27 joints, root-relative
in the camera frame; MPJPE also over the 17 H36M joints),
root-depth error (median %, true field of view), jitter (mean joint acceleration, m/s², predicted vs the truth's),
contact accuracy; and the same MPJPE when the field of view is unknown (60° assumed) and with COCO-17 input only.
Weights that take MediaPipe's world landmarks (``Lifter.uses_world``) get them simulated with the measured error
model (``world3d.py``, same seed) for the main figures; ``mpjpe_2d_only_mm`` / ``pa_mpjpe_2d_only_mm`` are the
same weights without them (another detector), and ``world_input_mpjpe_mm`` / ``_pa_`` score the simulated input
itself (what ``--lifter native`` would give).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from core.lifting import trained
from core.lifting.trained import N_JOINTS, normalise_keypoints

from . import dataset, synth
from .train import pa_mpjpe

FPS = 30.0


def n_mpjpe(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-frame mean joint error after the least-squares scale of the root-relative prediction (N-MPJPE); the
    pipeline's retargeting fits the dancer's scale to the model anyway (``core.retarget``, ``fit_scale``)."""
    k = np.sum(pred * gt, axis=(1, 2)) / np.maximum(np.sum(pred * pred, axis=(1, 2)), 1e-12)
    return np.linalg.norm(k[:, None, None] * pred - gt, axis=-1).mean(1)


def _accel(j: np.ndarray) -> float:
    """Mean joint acceleration magnitude (m/s²) of ``(T, J, 3)`` metres at 30 fps."""
    if len(j) < 3:
        return float("nan")
    return float(np.linalg.norm(j[2:] - 2 * j[1:-1] + j[:-2], axis=-1).mean() * FPS * FPS)


def evaluate_weights(weights: Path | None = None, cache: Path = dataset.DEFAULT_CACHE, seed: int = 12345,
                     smooth_sigma: float = trained.DEFAULT_SMOOTH_SIGMA, stride: int = 1, split: str = "test") -> dict:
    """Figures of the module docstring (``stride`` > 1: every stride-th variant; ``split="train"``: training
    variants, for choosing inference settings without looking at the held-out clips)."""
    lifter = trained.load_lifter(weights)
    variants = [v for v in dataset.load_cache(Path(cache) / "seed0") if v.split == split][::stride]
    noise = synth.load_noise()
    wnoise = None
    if lifter.uses_world:
        from .world3d import World3DNoise, simulate
        wnoise = World3DNoise.from_dict(json.loads(synth.NOISE_FILE.read_text())["world_3d"])
    rng = np.random.default_rng(seed)
    rows = []
    for v in variants:
        r = synth.make_inputs(rng, v.joints[None].astype(np.float64), noise, p_assumed_fov=0.0)
        kp, size, focal = r["keypoints"][0], r["size"][0], r["focal"][0]
        truth = r["target"][0]
        hfov = float(np.degrees(2 * np.arctan(0.5 * size[0] / focal)))
        w = {}
        if wnoise is not None:
            sim = simulate(rng, truth[None], r["up"][:1], wnoise)[0]
            w = {"world_3d": sim, "world_present": ~np.all(np.isnan(kp[..., 0]), axis=-1)}
        out = lifter.lift(kp, size, hfov_deg=hfov, smooth_sigma=smooth_sigma, flip=bool(w), **w)
        out2d = lifter.lift(kp, size, hfov_deg=hfov, smooth_sigma=smooth_sigma) if w else out
        out60 = lifter.lift(kp, size, hfov_deg=None, smooth_sigma=smooth_sigma, **w)
        kp17 = kp.copy()
        kp17[:, 17:] = np.nan
        out17 = lifter.lift(kp17, size, hfov_deg=hfov, smooth_sigma=smooth_sigma)
        z = r["root"][0][:, 2]
        contacts = v.contacts.astype(bool)
        rows.append({
            "clip": v.clip,
            "err": np.linalg.norm(out.joints_3d - truth, axis=-1).mean(1),
            "pa": pa_mpjpe(out.joints_3d, truth),
            "n": n_mpjpe(out.joints_3d, truth),
            "h36m": np.linalg.norm(out.joints_3d[:, :17] - truth[:, :17], axis=-1).mean(1),
            "err60": np.linalg.norm(out60.joints_3d - truth, axis=-1).mean(1),
            "err17": np.linalg.norm(out17.joints_3d[:, :17] - truth[:, :17], axis=-1).mean(1),
            "err2d": np.linalg.norm(out2d.joints_3d - truth, axis=-1).mean(1),
            "pa2d": pa_mpjpe(out2d.joints_3d, truth),
            "errw": np.linalg.norm(w["world_3d"] - truth, axis=-1).mean(1) if w else np.full(len(truth), np.nan),
            "paw": pa_mpjpe(w["world_3d"], truth) if w else np.full(len(truth), np.nan),
            "depth": np.abs(out.root_depth / z - 1.0),
            "acc_pred": _accel(out.joints_3d), "acc_true": _accel(truth),
            "contact": ((out.contacts > 0.5) == contacts).mean(1),
        })

    def agg(sel):
        r = [x for x in rows if sel(x["clip"])]
        if not r:
            return None
        cat = {k: np.concatenate([x[k] for x in r]) for k in ("err", "pa", "n", "h36m", "err60", "err17", "depth",
                                                              "contact", "err2d", "pa2d", "errw", "paw")}
        w = np.array([len(x["err"]) for x in r], dtype=float)
        return {"clips": len(r), "frames": int(w.sum()),
                "mpjpe_mm": round(1000 * float(cat["err"].mean()), 1),
                "pa_mpjpe_mm": round(1000 * float(cat["pa"].mean()), 1),
                "n_mpjpe_mm": round(1000 * float(cat["n"].mean()), 1),
                "mpjpe_h36m17_mm": round(1000 * float(cat["h36m"].mean()), 1),
                "mpjpe_fov_unknown_mm": round(1000 * float(cat["err60"].mean()), 1),
                "mpjpe_coco17_input_h36m17_mm": round(1000 * float(cat["err17"].mean()), 1),
                "root_depth_err_median_pct": round(100 * float(np.median(cat["depth"])), 1),
                "jitter_pred_mps2": round(float(np.average([x["acc_pred"] for x in r], weights=w)), 2),
                "jitter_truth_mps2": round(float(np.average([x["acc_true"] for x in r], weights=w)), 2),
                "contact_accuracy": round(float(cat["contact"].mean()), 3),
                "mpjpe_2d_only_mm": round(1000 * float(cat["err2d"].mean()), 1),
                "pa_mpjpe_2d_only_mm": round(1000 * float(cat["pa2d"].mean()), 1),
                "world_input_mpjpe_mm": round(1000 * float(cat["errw"].mean()), 1),
                "world_input_pa_mpjpe_mm": round(1000 * float(cat["paw"].mean()), 1)}
    return {"weights": str(weights or trained.DEFAULT_WEIGHTS), "noise_model": noise.source, "split": split,
            "smooth_sigma": smooth_sigma,
            "all": agg(lambda c: True), "cmu_subject5_dance": agg(lambda c: c.startswith("cmu_iclone/005_")),
            "cmu": agg(lambda c: c.startswith("cmu_iclone")), "bandai": agg(lambda c: c.startswith("bandai"))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", type=Path, default=None)
    ap.add_argument("--cache", type=Path, default=dataset.DEFAULT_CACHE)
    ap.add_argument("--smooth-sigma", type=float, default=trained.DEFAULT_SMOOTH_SIGMA)
    ap.add_argument("--stride", type=int, default=1)
    ap.add_argument("--split", choices=("test", "train"), default="test")
    args = ap.parse_args(argv)
    print(json.dumps(evaluate_weights(args.weights, args.cache, smooth_sigma=args.smooth_sigma, stride=args.stride,
                                      split=args.split), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
