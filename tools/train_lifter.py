#!/usr/bin/env python3
"""Train the project's temporal lifter from the shared motion capture and write its numpy weights (issue 8).

    # the shipped weights, in two stages (docs/lifter.md §4):
    OMP_NUM_THREADS=1 .venv/bin/python tools/train_lifter.py              # -> core/lifting/weights/mocap_tcn.npz
    OMP_NUM_THREADS=1 .venv/bin/python tools/train_lifter.py --world --up --init core/lifting/weights/mocap_tcn.npz \
        --steps 8000 --lr 5e-4 --eval-every 400                         # -> core/lifting/weights/mocap_tcn_world.npz
    # commercially usable (CMU clips only): the same two commands with --cmu-only (-> mocap_tcn_cmu.npz, then
    # --init core/lifting/weights/mocap_tcn_cmu.npz -> mocap_tcn_world_cmu.npz)

Reads ``../shared/data/mocap`` (BVH), retargets every clip onto the shared PMX models and the built-in standard
skeleton with random proportions (cached in ``--cache``, built once), trains ``tools.lifter_training.model`` on
synthetic 2D from random cameras with the measured MediaPipe noise (``tools/lifter_training/mediapipe_noise.json``)
and exports the best held-out checkpoint as a ``.npz`` that ``core.lifting.trained`` runs without torch.
Deterministic for a seed and thread count. ``--cmu-only`` trains on the CMU clips alone: the result may be used
commercially (CMU terms), while the default model inherits CC BY-NC 4.0 from the Bandai Namco data. Needs torch
(installed by ``tools/install_deps.py``). Details, figures and the licence: docs/lifter.md.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=None,
                    help="output .npz (default core/lifting/weights/mocap_tcn[_world][_cmu].npz after --world / "
                         "--cmu-only)")
    ap.add_argument("--cmu-only", action="store_true", help="train on the CMU clips only (commercially usable)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--channels", type=int, default=256)
    ap.add_argument("--blocks", type=int, default=3, help="residual blocks (receptive field 3^(blocks+1) frames)")
    ap.add_argument("--batch", type=int, default=32, help="windows per step")
    ap.add_argument("--out-frames", type=int, default=64, help="output frames per window")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--dropout", type=float, default=0.05)
    ap.add_argument("--eval-every", type=int, default=150)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 is fastest on the shared 2-core machine: two spin against other load)")
    ap.add_argument("--time-budget", type=float, default=None, help="stop after this many seconds (best kept)")
    ap.add_argument("--cache", type=Path, default=Path("/work/cache/lifter"),
                    help="folder for the retargeted training data (outside the repository)")
    ap.add_argument("--noise", type=Path, default=REPO / "tools" / "lifter_training" / "mediapipe_noise.json")
    ap.add_argument("--history", type=Path, default=None, help="write the per-evaluation figures here (JSON)")
    ap.add_argument("--world", action="store_true",
                    help="also take MediaPipe's 3D world landmarks as input (simulated in training with the measured "
                         "'world_3d' error model); the shipped default")
    ap.add_argument("--up", action="store_true",
                    help="also estimate the world's up direction in the camera frame (levels the camera's tilt)")
    ap.add_argument("--init", type=Path, default=None,
                    help="start from these exported weights (warm start; with --world their input is widened)")
    ap.add_argument("--mirror", type=float, default=0.0,
                    help="fraction of training sequences with runs of frames read back to front (BlazePose's "
                         "front/back mistake; default 0)")
    ap.add_argument("--rendered", type=Path, default=None,
                    help="folder of rendered cases (python -m tools.lifter_training.rendered): part of each batch is "
                         "real MediaPipe output on renders of training clips; the checkpoint is chosen on its "
                         "validation clips (needs --world)")
    ap.add_argument("--p-rendered", type=float, default=0.25, help="fraction of each batch from --rendered")
    ap.add_argument("--rendered-models", default=None,
                    help="comma-separated: use only these models' renders (mat4, yw; default all)")
    ap.add_argument("--warmup", type=int, default=0, help="linear learning-rate warm-up over this many steps")
    ap.add_argument("--limb-corr", default=None, metavar="ARM,LEG",
                    help="correlation of the synthetic 2D errors within a forearm / shin (measured: python -m "
                         "tools.lifter_training.rendered --limb-correlation); default independent")
    ap.add_argument("--noise-range", default=None, metavar="LO,HI",
                    help="factor on the measured 2D noise (sigma and tails), drawn uniformly per batch "
                         "(default 0.7,1.5)")
    args = ap.parse_args(argv)
    from tools.lifter_training.train import NOISE_SCALE, train
    name = "mocap_tcn" + ("_world" if args.world else "") + ("_cmu" if args.cmu_only else "") + ".npz"
    out = args.out or REPO / "core" / "lifting" / "weights" / name
    cmd = "tools/train_lifter.py " + " ".join(argv if argv is not None else sys.argv[1:])
    res = train(seed=args.seed, steps=args.steps, channels=args.channels, blocks=args.blocks, batch=args.batch,
                out_frames=args.out_frames, lr=args.lr, dropout=args.dropout, eval_every=args.eval_every, out=out,
                cache=args.cache,
                cmu_only=args.cmu_only, threads=args.threads, time_budget_s=args.time_budget,
                noise_file=args.noise, command=cmd.strip(), history=args.history, world=args.world, init=args.init,
                up=args.up, p_mirror=args.mirror, rendered=args.rendered, p_rendered=args.p_rendered,
                rendered_models=args.rendered_models.split(",") if args.rendered_models else None, warmup=args.warmup,
                limb_corr=dict(zip(("arm", "leg"), map(float, args.limb_corr.split(",")))) if args.limb_corr else None,
                noise_range=tuple(map(float, args.noise_range.split(","))) if args.noise_range else NOISE_SCALE,
                log=lambda s: print(s, flush=True))
    print(f"done: {res['steps']} steps in {res['seconds']:.0f} s; best held-out: {res['best']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
