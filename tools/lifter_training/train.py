"""Losses, batches, evaluation and the training loop of the lifter (docs/lifter.md §4).

Windows of ``W = out_frames + receptive_field - 1`` frames are cut from the cached variants (:mod:`.dataset`), with
indices clipped to the clip (edge repetition, as inference pads), optionally time-stretched (0.8..1.25x), projected
through random cameras with detector noise (:mod:`.synth`) and normalised by ``core.lifting.trained``. Loss on the
``out_frames`` centre outputs of each window (frames inside the clip only):

    MPJPE (m)  +  0.5 · velocity error (m/frame)  +  0.5 · bone-length error (m)
    +  0.1 · |d - d_gt|  +  0.02 · BCE(contacts)

Adam, learning rate decaying exponentially from ``lr`` to ``lr · lr_final`` over the steps. Every ``eval_every``
steps the model is evaluated on the held-out clips (fixed synthetic 2D from a fixed seed): MPJPE and PA-MPJPE (mm,
root-relative joints, all 27), root-depth error (%), contact accuracy; the best checkpoint so far is exported.
"""
from __future__ import annotations

import json
import math
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from core.lifting.trained import CONTACTS, N_JOINTS, N_OUTPUTS, N_OUTPUTS_UP, load_lifter
from core.skeletons import CANONICAL_EDGES

from . import dataset, synth
from .model import TemporalLifter, export_npz

__all__ = ["train", "pa_mpjpe", "make_eval_set", "evaluate"]

EDGES = np.array(CANONICAL_EDGES)


#: Mixture weights of the per-model world-landmark error models (``world_3d_by_model``) in training, and the
#: range of the noise-level factor drawn per batch.
WORLD_MIX = {"mat4": 0.6, "yw": 0.4}
WORLD_SCALE = (0.6, 1.3)
#: Range of the 2D noise-level factor (``synth.NoiseModel.scale``) drawn per batch, around the measurement.
NOISE_SCALE = (0.7, 1.5)


def _weight(clip: str) -> float:
    if clip.startswith("cmu_iclone/005_"):
        return 3.0
    if clip.startswith("cmu_iclone"):
        return 1.5
    if "dance" in clip:
        return 3.0
    return 1.0


def sample_windows(rng, variants, probs, n: int, out_frames: int, rf: int):
    """``n`` windows: joints ``(n, W, 27, 3)`` MMD units, contacts ``(n, out_frames, 4)``, mask ``(n, out_frames)``."""
    w = out_frames + rf - 1
    half = rf // 2
    js, cs, ms = [], [], []
    for vi in rng.choice(len(variants), size=n, p=probs):
        v = variants[vi]
        t = len(v.joints)
        rate = rng.uniform(0.8, 1.25) if rng.random() < 0.5 else 1.0
        span = (out_frames - 1) * rate
        start = rng.uniform(0, max(t - 1 - span, 0.0))
        x = start + (np.arange(w) - half) * rate
        xc = np.clip(x, 0, t - 1)
        i0 = np.floor(xc).astype(int)
        i1 = np.minimum(i0 + 1, t - 1)
        a = (xc - i0)[:, None, None]
        js.append(v.joints[i0] * (1 - a) + v.joints[i1] * a)
        xo = x[half:half + out_frames]
        cs.append(v.contacts[np.clip(np.rint(xo).astype(int), 0, t - 1)])
        ms.append((xo >= -1e-6) & (xo <= t - 1 + 1e-6))
    return np.stack(js), np.stack(cs).astype(np.float32), np.stack(ms)


def _bone_len(j):
    return torch.linalg.norm(j[..., EDGES[:, 0], :] - j[..., EDGES[:, 1], :], dim=-1)


def losses(out: torch.Tensor, target: torch.Tensor, d: torch.Tensor, contacts: torch.Tensor, mask: torch.Tensor,
           up: torch.Tensor | None = None):
    """Loss terms (dict of scalars) for outputs ``(B, T, 86)`` (``(B, T, 89)`` with ``up``: the true up direction
    per sequence ``(B, 3)``) against targets (module docstring)."""
    b, t = out.shape[:2]
    pj = out[..., :N_JOINTS * 3].reshape(b, t, N_JOINTS, 3)
    pj = pj - pj[:, :, :1]
    m = mask.float()
    msum = m.sum().clamp(min=1.0)
    mpjpe = (torch.linalg.norm(pj - target, dim=-1).mean(-1) * m).sum() / msum
    mv = m[:, 1:] * m[:, :-1]
    vel = (torch.linalg.norm((pj[:, 1:] - pj[:, :-1]) - (target[:, 1:] - target[:, :-1]), dim=-1).mean(-1)
           * mv).sum() / mv.sum().clamp(min=1.0)
    bone = ((_bone_len(pj) - _bone_len(target)).abs().mean(-1) * m).sum() / msum
    dl = (torch.nn.functional.smooth_l1_loss(out[..., N_JOINTS * 3], d, reduction="none", beta=0.05) * m).sum() / msum
    bce = (torch.nn.functional.binary_cross_entropy_with_logits(out[..., CONTACTS], contacts,
                                                                reduction="none").mean(-1) * m).sum() / msum
    total = mpjpe + 0.5 * vel + 0.5 * bone + 0.1 * dl + 0.02 * bce
    upl = torch.zeros(())
    if up is not None:
        pu = out[..., N_OUTPUTS:N_OUTPUTS_UP]
        upl = (torch.linalg.norm(pu - up[:, None, :], dim=-1) * m).sum() / msum
        total = total + 0.05 * upl
    return {"total": total, "mpjpe": mpjpe, "vel": vel, "bone": bone, "depth": dl, "bce": bce, "up": upl}


def pa_mpjpe(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-frame Procrustes-aligned (rotation, translation, scale) mean joint error; ``(N, J, 3)`` -> ``(N,)``."""
    mp, mg = pred.mean(1, keepdims=True), gt.mean(1, keepdims=True)
    p, g = pred - mp, gt - mg
    h = np.einsum("nji,njk->nik", p, g)
    u, s, vt = np.linalg.svd(h)
    det = np.sign(np.linalg.det(np.einsum("nij,njk->nik", u, vt)))
    s[:, -1] *= det
    u[:, :, -1] *= det[:, None]
    r = np.einsum("nij,njk->nik", u, vt)
    scale = s.sum(1) / np.maximum((p ** 2).sum((1, 2)), 1e-12)
    aligned = scale[:, None, None] * np.einsum("nji,nik->njk", p, r) + mg
    return np.linalg.norm(aligned - gt, axis=-1).mean(1)


def make_eval_set(variants, noise, seed: int = 12345, world_noise=None):
    """Fixed synthetic 2D (and, with ``world_noise``, world landmarks on every variant) for every held-out variant:
    list of dicts (features, target, d, contacts, clip)."""
    rng = np.random.default_rng(seed)
    out = []
    for v in variants:
        r = synth.make_inputs(rng, v.joints[None].astype(np.float64), noise, p_assumed_fov=0.0,
                              world_noise=world_noise, p_world=1.0)
        out.append({"features": r["features"][0], "target": r["target"][0], "d": r["d"][0],
                    "contacts": v.contacts, "clip": v.clip, "valid": r["valid"][0], "up": r["up"][0]})
    return out


def evaluate(lifter, eval_set) -> dict:
    """Held-out figures (mm, %, accuracy) overall and for CMU subject 5 (dance), CMU and Bandai clips.

    ``lifter``: a ``core.lifting.trained.Lifter`` (the exported numpy model, so the figures are those of the
    shipped inference).
    """
    rows = []
    for e in eval_set:
        o = lifter.forward(e["features"]).astype(np.float64)
        pj = o[:, :N_JOINTS * 3].reshape(-1, N_JOINTS, 3)
        pj = pj - pj[:, :1]
        err = np.linalg.norm(pj - e["target"], axis=-1).mean(1)
        pa = pa_mpjpe(pj, e["target"])
        dz = np.abs(np.exp(o[:, N_JOINTS * 3] - e["d"]) - 1.0)
        acc = ((o[:, CONTACTS] > 0) == (e["contacts"] > 0.5)).mean(1)
        if o.shape[1] >= N_OUTPUTS_UP:
            u = o[:, N_OUTPUTS:N_OUTPUTS_UP]
            u = u / np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-9)
            upe = np.degrees(np.arccos(np.clip(u @ e["up"], -1, 1)))
        else:
            upe = np.full(len(o), np.nan)
        rows.append((e["clip"], err, pa, dz, acc, upe))

    def agg(sel):
        r = [x for x in rows if sel(x[0])]
        if not r:
            return None
        cat = [np.concatenate([x[k] for x in r]) for k in (1, 2, 3, 4, 5)]
        return {"mpjpe_mm": 1000 * float(cat[0].mean()), "pa_mpjpe_mm": 1000 * float(cat[1].mean()),
                "root_depth_err_pct": 100 * float(np.median(cat[2])), "contact_acc": float(cat[3].mean()),
                "up_err_deg": float(np.mean(cat[4])),
                "frames": int(cat[0].size), "clips": len(r)}
    return {"all": agg(lambda c: True), "cmu_dance": agg(lambda c: c.startswith("cmu_iclone/005_")),
            "cmu": agg(lambda c: c.startswith("cmu_iclone")), "bandai": agg(lambda c: c.startswith("bandai"))}


def train(*, seed: int = 0, steps: int = 6000, channels: int = 256, blocks: int = 3, batch: int = 32,
          out_frames: int = 64, lr: float = 1e-3, lr_final: float = 0.03, eval_every: int = 150, dropout: float = 0.05,
          out: Path, cache: Path = dataset.DEFAULT_CACHE, cmu_only: bool = False, threads: int = 2,
          time_budget_s: float | None = None, noise_file: Path | None = synth.NOISE_FILE, log=print,
          command: str = "", history: Path | None = None, world: bool = False, init: Path | None = None,
          up: bool = False, p_mirror: float = 0.0, rendered: Path | None = None, p_rendered: float = 0.25,
          rendered_models=None, warmup: int = 0, limb_corr: dict | None = None,
          noise_range: tuple = NOISE_SCALE) -> dict:
    """Train and export the best checkpoint to ``out`` (``.npz``); returns the best held-out figures.

    ``world``: the model also takes MediaPipe's world landmarks (``core.lifting.trained.N_FEATURES_WORLD`` inputs),
    simulated with the ``world_3d`` error model of ``noise_file`` (``world3d.py``). ``init``: start from these
    exported weights (their input widened with zero weights, batch norm frozen: :func:`model.widen_input`,
    :func:`model.freeze_batch_norm`) instead of a random initialisation. ``up``: the model also estimates the
    world's up direction in the camera frame (``N_OUTPUTS_UP`` outputs; loss 0.05 x its L2 error).
    ``rendered``: a folder of rendered cases (:mod:`.rendered`, needs ``world``): a fraction ``p_rendered`` of each
    batch's windows is real MediaPipe output on renders of training clips (``rendered_models``: only those models'
    renders), and the checkpoint is chosen on the rendered validation clips instead of the synthetic held-out set.
    ``warmup``: the learning rate rises linearly over this many first steps (a fine-tune's first Adam steps move
    every weight by about ``lr`` at once, which throws a trained network off). ``limb_corr``: the synthetic 2D
    errors of a limb's joints correlate this much (``synth.NoiseModel.limb_corr``; default: independent).
    ``noise_range``: ``(lo, hi)``, the factor on the measured 2D noise (sigma and tails) drawn uniformly per batch.
    """
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    t_start = time.time()
    folder = dataset.build_cache(cache, seed=0, cmu_only=cmu_only, log=log)
    variants = dataset.load_cache(folder)
    if cmu_only:
        variants = [v for v in variants if v.clip.startswith("cmu_iclone")]
    train_v = [v for v in variants if v.split == "train"]
    test_v = [v for v in variants if v.split == "test"]
    w = np.array([len(v.joints) * _weight(v.clip) for v in train_v])
    probs = w / w.sum()
    noise = synth.load_noise(noise_file)
    if limb_corr:
        noise.limb_corr = dict(limb_corr)
    world_noise = None
    if world:
        from .world3d import World3DNoise
        nd = json.loads(Path(noise_file).read_text()) if noise_file is not None else {}
        if "world_3d" not in nd:
            raise ValueError(f"{noise_file}: no 'world_3d' statistics; run tools/measure_detector_noise.py --from-cache")
        world_noise = World3DNoise.from_dict(nd["world_3d"])            # pooled: the fixed evaluation set
        # training: a mixture of the per-model measurements (MediaPipe's 3D is good on the textured model, poor on
        # the faceless mannequin; real videos vary the same way), so the network learns to judge it from its
        # agreement with the 2D rather than trust it by one average amount
        by_model = nd.get("world_3d_by_model") or {"all": nd["world_3d"]}
        mixture = [(WORLD_MIX.get(k, 1.0), World3DNoise.from_dict(v)) for k, v in sorted(by_model.items())]
        mix_p = np.array([w for w, _ in mixture]) / sum(w for w, _ in mixture)
    r_train, r_val, n_r = [], [], 0
    if rendered is not None:
        from . import rendered as rendered_mod
        if not world:
            raise ValueError("rendered cases carry MediaPipe's world landmarks: train them with world=True")
        cases = rendered_mod.load_all(rendered, models=rendered_models, log=log)
        r_train = [c for c in cases if not rendered_mod.is_validation(c.clip)]
        r_val = [c for c in cases if rendered_mod.is_validation(c.clip)]
        if not r_train or not r_val:
            raise ValueError(f"{rendered}: need rendered training and validation cases, found {len(r_train)} and "
                             f"{len(r_val)} (render more: python -m tools.lifter_training.rendered)")
        n_r = int(round(batch * p_rendered))
        log(f"rendered: {len(r_train)} training cases ({sum(len(c.d) for c in r_train)} frames), {len(r_val)} "
            f"validation cases ({sum(len(c.d) for c in r_val)} frames); {n_r} of {batch} windows per step")
    log(f"data: {len(train_v)} train variants ({sum(len(v.joints) for v in train_v)} frames), {len(test_v)} test "
        f"variants ({sum(len(v.joints) for v in test_v)} frames); noise model: {noise.source}")
    full_eval = make_eval_set(test_v, noise, world_noise=world_noise)
    # During training: every CMU held-out variant and every third Bandai one (the full set at the end).
    eval_set = [e for i, e in enumerate(full_eval) if e["clip"].startswith("cmu") or i % 3 == 0]
    tmp_out = Path(cache) / "last_checkpoint.npz"
    from core.lifting.trained import N_FEATURES, N_FEATURES_WORLD
    n_feat = N_FEATURES_WORLD if world else N_FEATURES
    n_out = N_OUTPUTS_UP if up else N_OUTPUTS
    if init is not None:
        from .model import from_npz, widen_input, widen_output, freeze_batch_norm
        model = widen_output(widen_input(from_npz(Path(init)), n_feat), n_out)
        model.drop.p = dropout
        model.train()
        freeze_batch_norm(model)
    else:
        model = TemporalLifter(channels, blocks, dropout, n_features=n_feat, n_outputs=n_out)
    rf = model.receptive_field
    opt = torch.optim.Adam(model.parameters(), lr=lr, amsgrad=True)
    gamma = lr_final ** (1.0 / max(steps, 1))
    base_lr = lr
    best, best_fig, hist = math.inf, None, []
    run = {"mpjpe": 0.0, "vel": 0.0, "bone": 0.0, "depth": 0.0, "bce": 0.0, "up": 0.0}
    t0 = time.time()
    def make_batch():
        j, c, m = sample_windows(rng, train_v, probs, batch - n_r, out_frames, rf)
        noise.scale = float(rng.uniform(*noise_range))       # noise-level augmentation around the measurement
        wn = None
        if world_noise is not None:
            wn = mixture[int(rng.choice(len(mixture), p=mix_p))][1]
            wn.scale = float(rng.uniform(*WORLD_SCALE))
        r = synth.make_inputs(rng, j, noise, world_noise=wn, p_mirror=p_mirror)
        if n_r:
            rw = rendered_mod.sample_windows(rng, r_train, n_r, out_frames, rf)
            r = {k: np.concatenate([r[k], rw[k]]) for k in ("features", "target", "d", "up")}
            c, m = np.concatenate([c, rw["contacts"].astype(np.float32)]), np.concatenate([m, rw["mask"]])
        return r, c, m

    # The next batch is made (numpy, one generator, in order: deterministic) while torch trains on this one.
    pool = ThreadPoolExecutor(1)
    pending = pool.submit(make_batch)
    half = rf // 2
    for step in range(1, steps + 1):
        r, c, m = pending.result()
        if step < steps:
            pending = pool.submit(make_batch)
        tgt = torch.from_numpy(r["target"][:, half:half + out_frames].astype(np.float32))
        d = torch.from_numpy(r["d"][:, half:half + out_frames].astype(np.float32))
        mask = torch.from_numpy(m)
        o = model(torch.from_numpy(r["features"]))
        up_t = None
        if up:
            up_t = torch.from_numpy(r["up"].astype(np.float32))
        ls = losses(o, tgt, d, torch.from_numpy(c), mask, up_t)
        opt.zero_grad()
        ls["total"].backward()
        for g in opt.param_groups:
            g["lr"] = base_lr * (min(1.0, step / warmup) if warmup else 1.0)
        opt.step()
        base_lr *= gamma
        for k in run:
            run[k] += float(ls[k].detach())
        last = step == steps or (time_budget_s is not None and time.time() - t_start > time_budget_s)
        if step % eval_every == 0 or last:
            n = eval_every if step % eval_every == 0 else (step % eval_every)
            model.eval()
            export_npz(model, tmp_out, {})
            model.train()
            if init is not None:
                freeze_batch_norm(model)
            exported = load_lifter(tmp_out)
            fig = evaluate(exported, eval_set)
            if r_val:
                fig["rendered_val"] = rendered_mod.evaluate_rendered(exported, r_val)
            el = time.time() - t0
            hist.append({"step": step, "elapsed_s": round(el), **{k: v / n for k, v in run.items()},
                         "eval": fig})
            a = fig["all"]
            dance = (f" | cmu dance {fig['cmu_dance']['mpjpe_mm']:.1f}/{fig['cmu_dance']['pa_mpjpe_mm']:.1f}"
                     if fig["cmu_dance"] else "")
            log(f"step {step}/{steps} {el:.0f}s lr {opt.param_groups[0]['lr']:.2e} train mpjpe "
                f"{1000 * run['mpjpe'] / n:.1f}mm vel {1000 * run['vel'] / n:.2f} bone {1000 * run['bone'] / n:.1f} "
                f"depth {run['depth'] / n:.4f} bce {run['bce'] / n:.3f} up {run['up'] / n:.3f} | held-out MPJPE "
                f"{a['mpjpe_mm']:.1f} up {a['up_err_deg']:.1f}° "
                f"PA {a['pa_mpjpe_mm']:.1f} mm depth {a['root_depth_err_pct']:.1f}% contacts "
                f"{a['contact_acc']:.3f}{dance}" + (
                    f" | rendered val {fig['rendered_val']['all']['mpjpe_mm']:.1f}/"
                    f"{fig['rendered_val']['all']['pa_mpjpe_mm']:.1f} up {fig['rendered_val']['all']['up_err_deg']:.1f}°"
                    if r_val else ""))
            run = {k: 0.0 for k in run}
            score = fig["rendered_val"]["all"]["mpjpe_mm"] if r_val else a["mpjpe_mm"]
            if score < best:
                best, best_fig = score, fig
                meta = {"trained_steps": step, "seed": seed, "channels": channels, "blocks": blocks, "dropout": dropout,
                        "receptive_field": rf, "noise_model": noise.source + (
                            f" + limb correlation {json.dumps(noise.limb_corr)}" if noise.limb_corr else ""),
                        "inputs": "2D keypoints + MediaPipe world landmarks" if world else "2D keypoints",
                        "outputs": "joints, root depth, contacts, up" if up else "joints, root depth, contacts",
                        "init": str(init) if init is not None else "random", "data": "CMU only" if cmu_only else
                        "Bandai Namco Research Motiondataset 1+2 (CC BY-NC 4.0) + CMU (iClone BVH)",
                        "license": "CMU data terms (commercial use allowed)" if cmu_only else "CC BY-NC 4.0",
                        "heldout": json.dumps(fig), "command": command, "train_seconds": round(el)}
                if r_train:
                    meta["rendered"] = (f"{len(r_train)} rendered training cases ({n_r}/{batch} windows per step), "
                                        f"{len(r_val)} validation cases: MediaPipe on renders of mocap TRAIN clips "
                                        f"(tools/lifter_training/rendered.py)")
                model.eval()
                export_npz(model, out, meta)
                model.train()
                if init is not None:
                    freeze_batch_norm(model)
                log(f"  saved best ({'rendered validation' if r_val else 'held-out'} MPJPE {best:.1f} mm) to {out}")
            if last:
                break
    pool.shutdown(wait=True, cancel_futures=True)
    # The best checkpoint on the whole held-out set; its figures go into the weights' metadata.
    best_lifter = load_lifter(out)
    final = evaluate(best_lifter, full_eval)
    if r_val:
        final["rendered_val"] = rendered_mod.evaluate_rendered(best_lifter, r_val)
    with np.load(out, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["meta_heldout"] = np.array(json.dumps(final))
    arrays["meta_heldout_note"] = np.array("MPJPE / PA-MPJPE in mm over all 27 CANONICAL joints, root-relative, on "
                                           "synthetic 2D (random cameras, measured noise) of the held-out clips")
    np.savez(out, **arrays)
    log(f"best checkpoint on all held-out clips: {json.dumps(final)}")
    if history is not None:
        Path(history).write_text(json.dumps(hist, indent=1))
    return {"best": final, "steps": step, "seconds": time.time() - t_start}
