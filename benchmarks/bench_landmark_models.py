"""MediaPipe's lite, full (bundled) and heavy landmark models, side by side: detection rate, 2D error and speed.

Inputs: the closed-loop renders (``benchmarks/closed_loop``: a real MMD dance rendered from the shared anime-style
PMX models with exact ground-truth joint pixels, ``gt.npz`` ``joints_px``), one folder per case holding
``render.mp4`` and ``gt.npz``; optionally real videos (no ground truth: detection and gate-usable rates only).
For each model (``model_complexity`` 0, 1, 2; lite and heavy installed by
``core.worker.backends.pose_models.install_landmark_models``) BlazePose runs in video mode over every frame.

Printed per model: frames detected %, usable after the plausibility gate % (``core.gating``), median and mean 2D
error of the H36M-17 joints in px and as a fraction of the ground-truth torso length (PCK-style: % of joints within
0.2 torso), and ms per frame (detector only; 1 thread).

Usage: ``.venv/bin/python benchmarks/bench_landmark_models.py CASE_DIR... [--video VIDEO[:x,y,w,h]]...
[--models 0,1,2]``
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import gating, skeletons  # noqa: E402


def run(video, complexity, crop=None):
    from core.worker import video as vid
    from core.worker.backends import get_backend

    model = get_backend("mediapipe", model_complexity=complexity)
    kps, secs = [], 0.0
    size = None
    try:
        for f in vid.iter_frames(video, crop=crop):
            size = (f.image.shape[1], f.image.shape[0])
            t0 = time.perf_counter()
            d = model.process_batch([f.image])[0]
            secs += time.perf_counter() - t0
            kps.append(d.keypoints_2d[0] if len(d) else np.full((33, 3), np.nan, np.float32))
    finally:
        model.close()
    kp = np.stack(kps)
    kp[~np.isfinite(kp[..., 0]), 2] = 0
    return kp, size, 1000.0 * secs / max(len(kp), 1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cases", nargs="*")
    ap.add_argument("--video", action="append", default=[])
    ap.add_argument("--models", default="0,1,2")
    a = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    names = skeletons.MEDIAPIPE33
    for c in [int(v) for v in a.models.split(",")]:
        det = use = n = 0
        errs, torso_errs, ms = [], [], []
        for case in a.cases:
            case = Path(case)
            gt = np.load(case / "gt.npz")
            kp, size, t = run(case / "render.mp4", c)
            ms.append(t)
            T = min(len(kp), len(gt["joints_px"]))
            kp, gpx = kp[:T], gt["joints_px"][:T]
            found = np.isfinite(kp[:, 0, 0])
            g = gating.gate(kp, names, size, detected=found)
            det += found.sum()
            use += g.usable.sum()
            n += T
            can = skeletons.mediapipe33_to_canonical(kp, has_confidence=True)[:, :17, :2]
            e = np.linalg.norm(can - gpx[:, :17], axis=-1)[g.usable]
            torso = np.linalg.norm(gpx[:, 8] - gpx[:, 0], axis=-1)[g.usable]
            errs.append(e.reshape(-1))
            torso_errs.append((e / torso[:, None]).reshape(-1))
        line = f"model_complexity={c}:"
        if n:
            e, te = np.concatenate(errs), np.concatenate(torso_errs)
            line += (f" renders {n} frames: detected {100 * det / n:.1f}%, usable {100 * use / n:.1f}%, 2D error "
                     f"median {np.nanmedian(e):.1f} px mean {np.nanmean(e):.1f} px, within 0.2 torso "
                     f"{100 * np.nanmean(te < 0.2):.1f}%, {np.mean(ms):.1f} ms/frame;")
        for v in a.video:
            path, _, box = v.partition(":")
            crop = tuple(int(x) for x in box.split(",")) if box else None
            kp, size, t = run(path, c, crop)
            found = np.isfinite(kp[:, 0, 0])
            g = gating.gate(kp, names, size, detected=found)
            line += (f" {Path(path).stem}{'[crop]' if crop else ''}: detected {100 * found.mean():.1f}%, usable "
                     f"{100 * g.usable.mean():.1f}%, legs unseen {100 * g.upper_body.mean():.1f}%, {t:.1f} ms/frame;")
        print(line, flush=True)


if __name__ == "__main__":
    main()
