"""Frames per second of the VideoPose3D temporal lifter (full-size 3,3,3,3,3 / 1024-channel model).

Usage (from the repository root)::

    python benchmarks/bench_lifter.py [--checkpoint PATH] [--frames 300] [--device cpu|cuda] [--repeat 3]

Without ``--checkpoint`` a random-weight checkpoint in the official layout is written to a temporary folder (the
speed does not depend on the weights). Input: the shared detectron2 file (``../shared/data/keypoints/lia_kim_dance/
detectron2_raw.npz``, its 219 frames from the first detection on), tiled or cut to ``--frames``. Reports best-of-``repeat`` wall time of
``VideoPose3DLifter.lift`` (normalisation, padding, flip augmentation, model and trajectory model when present).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core import keypoints_io  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "keypoints" / "lia_kim_dance" / "detectron2_raw.npz"


def random_checkpoint(path: Path, channels: int = 1024, widths=(3, 3, 3, 3, 3)) -> Path:
    """Random weights under the official keys (see tests/test_videopose3d.py) saved like run.py does."""
    import torch

    from core.worker.lifting.videopose3d import Architecture, temporal_model_class

    model = temporal_model_class()(Architecture(tuple(widths), channels))
    torch.save({"epoch": 0, "model_pos": model.state_dict(), "model_traj": None}, path)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--chunk-frames", type=int, default=4096)
    args = ap.parse_args(argv)

    import torch

    from core.worker.lifting.videopose3d import VideoPose3DLifter

    poses = keypoints_io.load_keypoints(DATA)
    kp = poses.keypoints_coco17()[int(np.argmax(poses.detected)):]  # from the first detection (frame 84) on
    reps = int(np.ceil(args.frames / len(kp)))
    kp = np.concatenate([kp] * reps)[:args.frames]
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.checkpoint or random_checkpoint(Path(tmp) / "random_243.bin")
        t0 = time.perf_counter()
        lifter = VideoPose3DLifter.from_checkpoint(ckpt, device=args.device, chunk_frames=args.chunk_frames)
        t_load = time.perf_counter() - t0
    lifter.lift(kp, poses.image_size)  # warm-up (allocator, cuDNN autotune)
    best = float("inf")
    for _ in range(args.repeat):
        if str(lifter.device).startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        lifter.lift(kp, poses.image_size)
        if str(lifter.device).startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    a = lifter.architecture
    print(f"VideoPose3D {','.join(map(str, a.filter_widths))} / {a.channels} ch (receptive field "
          f"{lifter.receptive_field}), device {lifter.device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, CPU cores {os.cpu_count()}")
    print(f"load: {t_load:.2f} s; lift {len(kp)} frames (flip augmentation): best of {args.repeat} "
          f"{best:.3f} s = {len(kp) / best:.0f} frames/s")
    for note in lifter.notes:
        print("note:", note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
