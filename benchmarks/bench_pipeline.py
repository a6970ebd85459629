"""Frames per second of each stage of the main job and of the whole run, CPU seconds, and peak memory.

    .venv/bin/python benchmarks/bench_pipeline.py [VIDEO] [--model PMX] [--repeat N] [--detect-parts auto|1|2|4|8]

Default input: ``../shared/data/videos/kunkun_dance_864x480_25fps.mp4`` onto the mat4 model. Prints:

* decode alone (PyAV), detector alone (MediaPipe on already decoded frames, in one pass, and in the parts the run
  splits the clip into, at once on the run's threads: ``core.worker.parallel``), and the whole
  ``core.worker.job.run_job`` (with ``--detect-parts``, default ``auto`` as the job);
* the numpy stages timed separately (gap filling + smoothing + trajectory + retargeting, VMD writing);
* the overhead of everything but the detector, as a percentage of the detector's own time in one pass (target:
  < 15 %) and of the detector's time in the run's parts, in wall time and in CPU time (``time.process_time``: every thread of the process, so the decoder's and MediaPipe's own
  threads count; far steadier than wall time on a shared machine);
* CPU seconds of the parts of the run that are not the detector, each run again on its own: the automatic crop's
  sample decode, the motion stage, the key reduction (best of ``--repeat``), and the camera's background track
  (``core.worker.background.BackgroundTracker`` on the decoded frames, the people masked by the boxes of the run's
  own 2D keypoints);
* wall and CPU figures are each the best of ``--repeat`` runs (the detector alone too);
* peak resident memory of the run (``ru_maxrss``, measured before the benchmark holds any frames itself).

The first run imports mediapipe (in the run's figures, as for the command line); with ``--repeat`` > 1 the best
run is usually a later one, which does not. A benchmark, not a test: figures on shared machines are noisy; run it a
few times (``--repeat``).
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


def _clocks():
    return time.perf_counter(), time.process_time()


def _since(c0) -> tuple[float, float]:
    w, c = _clocks()
    return w - c0[0], c - c0[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("video", nargs="?", default=str(DATA / "videos" / "kunkun_dance_864x480_25fps.mp4"))
    ap.add_argument("--model", default=str(DATA / "pmx" / "mat4_trace_model" / "mat4_v4_trace_model.pmx"))
    ap.add_argument("--repeat", type=int, default=1)
    from core.options import DETECT_PARTS, values

    ap.add_argument("--detect-parts", default="auto", choices=values(DETECT_PARTS),
                    help="the run's --detect-parts (default auto: the job's default)")
    args = ap.parse_args()

    from core import options
    from core.keyreduce import reduce_motion
    from core.motion_stage import motion_stage
    from core.preflight import check_model
    from core.worker import detect, job, video
    from core.worker.backends import get_backend

    # 1. the whole run first, so peak memory is the pipeline's own (it streams frames)
    totals, cpus, result, opts = [], [], None, None
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as d:
            opts = options.EstimateOptions(video=args.video, output=str(Path(d) / "out.vmd"), model=args.model,
                                           detect_parts=args.detect_parts)
            c0 = _clocks()
            result = job.run_job(opts)
            cpus.append(_since(c0)[1])
            totals.append(result.timings)
    best = min(totals, key=lambda t: t["total"])
    cpu_run = min(cpus)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    # 2. the numpy stages and the automatic crop again, each on its own, CPU seconds (best of --repeat)
    rest, _ = check_model(args.model)
    cpu_stage = {"auto crop sample": [], "motion stage": [], "key reduction": []}
    for _ in range(args.repeat):
        c0 = _clocks()
        detect._auto_crop(args.video, None, None)
        cpu_stage["auto crop sample"].append(_since(c0)[1])
        c0 = _clocks()
        motion = motion_stage(result.poses, rest, opts)
        cpu_stage["motion stage"].append(_since(c0)[1])
        c0 = _clocks()
        deg, mm = opts.key_tolerance
        reduce_motion(motion, rest, rot_tol_deg=deg, pos_tol_mm=mm)
        cpu_stage["key reduction"].append(_since(c0)[1])

    # 3. decode alone
    c0 = _clocks()
    decoded = list(video.iter_frames(args.video))
    t_decode, c_decode = _since(c0)
    frames = [f.image for f in decoded]
    n = len(frames)
    frame_mb = sum(f.nbytes for f in frames) / 2**20

    import numpy as np

    # 4. the detector alone, on decoded frames (build once, then call per frame)
    c0 = _clocks()
    backend = get_backend("mediapipe")
    t_build, c_build = _since(c0)
    runs = []
    for _ in range(args.repeat):  # best of --repeat, as the whole run (a fresh tracker each time)
        if runs:
            backend.close()
            backend = get_backend("mediapipe")
        c0 = _clocks()
        for f in frames:
            backend.process_batch([f])
        runs.append(_since(c0))
    backend.close()
    t_detector, c_detector = min(r[0] for r in runs), min(r[1] for r in runs)

    # 4b. the detector alone as the run splits it: the same parts (warm-ups included), each on a fresh detector,
    #     at once on the run's threads (core.worker.parallel)
    from concurrent.futures import ThreadPoolExecutor

    from core.worker import parallel

    plan = parallel.plan_parts(video.probe(args.video), None, None, parts=args.detect_parts)
    threads = parallel.default_threads(len(plan))
    times = np.array([f.time for f in decoded])

    def part_alone(part):
        lo = -np.inf if part.decode_from is None else part.decode_from - 1e-9
        hi = np.inf if part.end is None else part.end - 1e-9
        with parallel._BUILD_LOCK:
            b = get_backend("mediapipe")
        try:
            for i in np.flatnonzero((times >= lo) & (times < hi)):
                b.process_batch([frames[i]])
        finally:
            b.close()

    runs_p = []
    for _ in range(args.repeat):
        c0 = _clocks()
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(part_alone, plan))
        runs_p.append(_since(c0))
    t_parts, c_parts = min(r[0] for r in runs_p), min(r[1] for r in runs_p)

    # 5. the background track alone (in the run it is fed frame by frame from the detection loop, on its own thread)

    from core.worker.background import BackgroundTracker
    xy = result.poses.keypoints_2d[..., :2]
    boxes = [np.array([[np.nanmin(p[:, 0]), np.nanmin(p[:, 1]), np.nanmax(p[:, 0]), np.nanmax(p[:, 1])]])
             if np.isfinite(p).any() else None for p in xy]
    best_bg = None
    for _ in range(args.repeat):
        c0 = _clocks()
        tracker = BackgroundTracker()
        for f, b in zip(frames, boxes):
            tracker.add(f, b)
        tracker.result()
        c = _since(c0)[1]
        best_bg = c if best_bg is None else min(best_bg, c)
    cpu_stage["background track"] = [best_bg]

    print(f"input: {args.video} ({n} frames), model: {Path(args.model).name}")
    print(f"decode only       : {n / t_decode:8.1f} frames/s  ({t_decode:.2f} s; {c_decode:.2f} CPU s)")
    print(f"detector only     : {n / t_detector:8.1f} frames/s  ({t_detector:.2f} s; {c_detector:.2f} CPU s)  "
          f"[MediaPipe BlazePose, complexity 1; + {t_build:.2f} s to build it]")
    print(f"detector in parts : {n / t_parts:8.1f} frames/s  ({t_parts:.2f} s; {c_parts:.2f} CPU s)  "
          f"[--detect-parts {args.detect_parts}: {len(plan)} part(s) at once on {threads} thread(s), warm-ups included]")
    print(f"detect stage      : {n / best['detect']:8.1f} frames/s  ({best['detect']:.2f} s)  "
          "[decode (own thread per part) + detect + gap fill]")
    print(f"motion stage      : {n / best['motion']:8.1f} frames/s  ({best['motion'] * 1000:.0f} ms)  "
          "[smoothing, trajectory, 30 fps resampling, retargeting]")
    print(f"model load (PMX)  : {best['load_model'] * 1000:8.0f} ms")
    print(f"write VMD + npz   : {best['write'] * 1000:8.0f} ms  [key reduction included]")
    print(f"whole run         : {n / best['total']:8.1f} frames/s  ({best['total']:.2f} s; {cpu_run:.2f} CPU s)")
    print(f"overhead vs detector alone (one pass): {(best['total'] - t_detector) / t_detector * 100:+.1f} % "
          f"({(best['total'] - t_detector - t_build) / t_detector * 100:+.1f} % without the one-off detector build; "
          "target < 15 %)")
    print(f"overhead vs detector alone in the run's parts: {(best['total'] - t_parts) / t_parts * 100:+.1f} %")
    print(f"overhead vs detector alone, CPU time: {(cpu_run - c_detector) / c_detector * 100:+.1f} % "
          f"({cpu_run - c_detector:.2f} CPU s over the detector's {c_detector:.2f} in one pass; "
          f"{(cpu_run - c_parts) / c_parts * 100:+.1f} % over its {c_parts:.2f} in the run's parts)")
    print("CPU s of parts of the run, each again on its own: "
          + ", ".join(f"{k} {min(v):.3f}" for k, v in cpu_stage.items()))
    print(f"peak RSS of the run: {peak_mb:6.0f} MB  (the decoded frames alone would take {frame_mb:.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
