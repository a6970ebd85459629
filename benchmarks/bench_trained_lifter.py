"""Frames per second of the project's trained temporal lifter, numpy inference (core.lifting.trained).

Usage (from the repository root)::

    python benchmarks/bench_trained_lifter.py [--weights PATH] [--frames 9000] [--repeat 3]

Input: the shared detectron2 file of a real dance (``../shared/data/keypoints/lia_kim_dance/detectron2_raw.npz``,
COCO-17 converted to CANONICAL with NaN extras) tiled to ``--frames``. Reports the best-of-``repeat`` wall time of
``Lifter.lift`` (normalisation, padding, the network, root and contacts) as frames/s, and of the network alone. For
weights that take MediaPipe's world landmarks (the default), a world input is made from the 2D (its values do not
change the cost) and ``lift`` runs as the job calls it, with the test-time flip (two passes).
Target (issue 8): at least 2,000 frames/s on the project's 2-core CPU. numpy's BLAS threads follow
``OMP_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS`` (printed).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core import keypoints_io, skeletons  # noqa: E402
from core.lifting import trained  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "keypoints" / "lia_kim_dance" / "detectron2_raw.npz"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", type=Path, default=None)
    ap.add_argument("--frames", type=int, default=9000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    lifter = trained.load_lifter(args.weights)
    poses = keypoints_io.load_detectron2_raw(DATA)
    kp = skeletons.to_canonical(poses.keypoints_2d, skeletons.COCO17, has_confidence=True)
    kp = kp[np.isfinite(kp[:, 0, 0])]
    kp = np.concatenate([kp] * (args.frames // len(kp) + 1))[:args.frames]
    feats, *_ = trained.normalise_keypoints(kp, poses.image_size)
    extra = {}
    if lifter.uses_world:
        world = np.nan_to_num(kp.copy())
        world[..., 2] = 0.0
        world = world / 1000.0                                           # any (T, 27, 3) metres: the cost is the same
        feats = np.concatenate([feats, trained.world_features(world, len(kp))], axis=1)
        extra = {"world_3d": world, "flip": True}
    best_lift = best_net = float("inf")
    for _ in range(args.repeat):
        t = time.perf_counter()
        lifter.lift(kp, poses.image_size, **extra)
        best_lift = min(best_lift, time.perf_counter() - t)
        t = time.perf_counter()
        lifter.forward(feats)
        best_net = min(best_net, time.perf_counter() - t)
    n_params = sum(w.size + b.size for w, b in lifter._layers)
    print(f"trained lifter ({n_params / 1e6:.2f} M parameters, receptive field {lifter.receptive_field} frames), "
          f"{args.frames} frames, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
          f"load average {os.getloadavg()[0]:.1f}")
    how = " (with world landmarks and the test-time flip, as the job runs it)" if extra else ""
    print(f"Lifter.lift{how}: {args.frames / best_lift:,.0f} frames/s ({1000 * best_lift:.0f} ms)")
    print(f"network only: {args.frames / best_net:,.0f} frames/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
