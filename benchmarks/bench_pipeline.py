"""Frames per second of each stage of the main job and of the whole run, and peak memory.

    .venv/bin/python benchmarks/bench_pipeline.py [VIDEO] [--model PMX] [--repeat N]

Default input: ``../shared/data/videos/kunkun_dance_864x480_25fps.mp4`` onto the mat4 model. Prints:

* decode alone (PyAV), detector alone (MediaPipe on already decoded frames), and the whole ``core.worker.job.run_job``;
* the numpy stages timed separately (gap filling + smoothing + trajectory + retargeting, VMD writing);
* the overhead of everything but the detector, as a percentage of the detector's own time (target: < 15 %);
* peak resident memory of the run (``ru_maxrss``, measured before the benchmark holds any frames itself).

A benchmark, not a test: figures on shared machines are noisy; run it a few times (``--repeat``).
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("video", nargs="?", default=str(DATA / "videos" / "kunkun_dance_864x480_25fps.mp4"))
    ap.add_argument("--model", default=str(DATA / "pmx" / "mat4_trace_model" / "mat4_v4_trace_model.pmx"))
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()

    from core import options
    from core.worker import job, video
    from core.worker.backends import get_backend

    # 1. the whole run first, so peak memory is the pipeline's own (it streams frames)
    totals = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as d:
            opts = options.EstimateOptions(video=args.video, output=str(Path(d) / "out.vmd"), model=args.model)
            totals.append(job.run_job(opts).timings)
    best = min(totals, key=lambda t: t["total"])
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    # 2. decode alone
    t0 = time.perf_counter()
    frames = [f.image for f in video.iter_frames(args.video)]
    t_decode = time.perf_counter() - t0
    n = len(frames)
    frame_mb = sum(f.nbytes for f in frames) / 2**20

    # 3. the detector alone, on decoded frames (build once, then call per frame)
    t0 = time.perf_counter()
    backend = get_backend("mediapipe")
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    for f in frames:
        backend.process_batch([f])
    t_detector = time.perf_counter() - t0
    backend.close()

    print(f"input: {args.video} ({n} frames), model: {Path(args.model).name}")
    print(f"decode only       : {n / t_decode:8.1f} frames/s  ({t_decode:.2f} s)")
    print(f"detector only     : {n / t_detector:8.1f} frames/s  ({t_detector:.2f} s)  [MediaPipe BlazePose, "
          f"complexity 1; + {t_build:.2f} s to build it]")
    print(f"detect stage      : {n / best['detect']:8.1f} frames/s  ({best['detect']:.2f} s)  "
          "[decode (own thread) + detect + gap fill]")
    print(f"motion stage      : {n / best['motion']:8.1f} frames/s  ({best['motion'] * 1000:.0f} ms)  "
          "[smoothing, trajectory, 30 fps resampling, retargeting]")
    print(f"model load (PMX)  : {best['load_model'] * 1000:8.0f} ms")
    print(f"write VMD + npz   : {best['write'] * 1000:8.0f} ms")
    print(f"whole run         : {n / best['total']:8.1f} frames/s  ({best['total']:.2f} s)")
    print(f"overhead vs detector alone: {(best['total'] - t_detector) / t_detector * 100:+.1f} % "
          f"({(best['total'] - t_detector - t_build) / t_detector * 100:+.1f} % without the one-off detector build; "
          "target < 15 %)")
    print(f"peak RSS of the run: {peak_mb:6.0f} MB  (the decoded frames alone would take {frame_mb:.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
