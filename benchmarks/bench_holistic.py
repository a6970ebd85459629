"""Per-frame milliseconds of MediaPipe Holistic (pose + hands + face mesh) against MediaPipe Pose alone.

Usage (from the repository root)::

    nice -n 10 python benchmarks/bench_holistic.py [VIDEO ...] [--frames N] [--size 640] [--job]

Each video's first ``N`` frames are letterboxed to ``size`` x ``size`` px (the shape the brief of issue 11 asks for),
held in memory, then fed to both models in video mode, alternating blocks of 10 frames between them so that the load
of a shared machine falls on both alike. Printed per clip: median and mean ms per frame of each, the ratio, and how
often Holistic found each hand and the face. ``--job`` also times the whole job (``core.worker.job.run_job``,
``--hands --face`` against the detector alone on the same clip and window) and prints the overhead.
Defaults: the three shared clips in ``../shared/data/videos``, 100 frames each.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("GLOG_minloglevel", "2")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

VIDEOS = REPO.parent / "shared" / "data" / "videos"
MAT4 = REPO.parent / "shared" / "data" / "pmx" / "mat4_trace_model" / "mat4_v4_trace_model.pmx"
DEFAULT = [VIDEOS / "kunkun_dance_864x480_25fps.mp4", VIDEOS / "figure_skater_1280x720_25fps.mp4",
           VIDEOS / "anime_dance_sidebyside_1536x768_25fps.mp4"]


def letterbox(img: np.ndarray, size: int) -> np.ndarray:
    """``img`` (H, W, 3) uint8 scaled to fit ``size`` x ``size`` and centred on black."""
    import cv2

    h, w = img.shape[:2]
    s = size / max(h, w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    out = np.zeros((size, size, 3), np.uint8)
    y0, x0 = (size - nh) // 2, (size - nw) // 2
    out[y0:y0 + nh, x0:x0 + nw] = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)
    return out


def load_frames(path: Path, n: int, size: int) -> list[np.ndarray]:
    from core.worker import video

    frames = []
    it = video.iter_frames(path)
    try:
        for f in it:
            frames.append(np.ascontiguousarray(letterbox(f.image, size)))
            if len(frames) >= n:
                break
    finally:
        it.close()
    return frames


def bench_models(frames: list[np.ndarray], block: int = 10) -> dict:
    import mediapipe as mp

    pose = mp.solutions.pose.Pose(static_image_mode=False, model_complexity=1, smooth_landmarks=True)
    holo = mp.solutions.holistic.Holistic(static_image_mode=False, model_complexity=1, smooth_landmarks=True,
                                          refine_face_landmarks=False)
    t_pose, t_holo = [], []
    found = {"left_hand": 0, "right_hand": 0, "face": 0, "pose_holistic": 0, "pose_alone": 0}
    try:
        # warm both graphs (model loading, first detection)
        pose.process(frames[0])
        holo.process(frames[0])
        for a in range(0, len(frames), block):
            chunk = frames[a:a + block]
            for img in chunk:
                t0 = time.perf_counter()
                r = pose.process(img)
                t_pose.append(time.perf_counter() - t0)
                found["pose_alone"] += r.pose_landmarks is not None
            for img in chunk:
                t0 = time.perf_counter()
                r = holo.process(img)
                t_holo.append(time.perf_counter() - t0)
                found["pose_holistic"] += r.pose_landmarks is not None
                found["left_hand"] += r.left_hand_landmarks is not None
                found["right_hand"] += r.right_hand_landmarks is not None
                found["face"] += r.face_landmarks is not None
    finally:
        pose.close()
        holo.close()
    return {"pose_ms": 1e3 * np.array(t_pose), "holistic_ms": 1e3 * np.array(t_holo), "found": found,
            "n": len(frames)}


def bench_job(path: Path, end: float, repeat: int = 1) -> dict:
    """Seconds of the whole job with --hands --face, of the detector alone (holistic backend), and of the default
    job (pose model), on ``[0, end)`` s of ``path``: the fastest of ``repeat`` rounds (each round runs all three in
    turn, so a busy machine slows them alike)."""
    import tempfile

    from core.options import EstimateOptions
    from core.worker.detect import detect_video
    from core.worker.job import run_job

    out: dict = {}
    with tempfile.TemporaryDirectory() as d:
        for _ in range(repeat):
            t0 = time.perf_counter()
            detect_video(path, backend="holistic", end=end)   # decoding + the detector (its own retries included)
            out["holistic_detector_s"] = min(out.get("holistic_detector_s", np.inf), time.perf_counter() - t0)
            for tag, hf in (("job_hands_face_s", True), ("job_default_s", None)):
                opts = EstimateOptions(video=str(path), end=end, output=str(Path(d) / f"{tag}.vmd"), hands=hf,
                                       face=hf, model=str(MAT4), overwrite=True)
                t0 = time.perf_counter()
                res = run_job(opts)
                dt = time.perf_counter() - t0
                if dt < out.get(tag, np.inf):
                    out[tag] = dt
                    out[tag.replace("_s", "_timings")] = {k: round(v, 2) for k, v in res.timings.items()}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("videos", nargs="*", default=[str(p) for p in DEFAULT])
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--size", type=int, default=640)
    ap.add_argument("--job", action="store_true", help="also time the whole job with --hands --face")
    ap.add_argument("--job-end", type=float, default=6.0, help="seconds of each clip the --job runs use")
    ap.add_argument("--repeat", type=int, default=2, help="rounds of the --job timings (the fastest is printed)")
    ap.add_argument("--frames-only", action="store_true", help="skip the per-frame model timings (with --job)")
    args = ap.parse_args(argv)
    print(f"CPU cores {os.cpu_count()}, load {os.getloadavg()[0]:.1f}; {args.frames} frames per clip at "
          f"{args.size}x{args.size}, pose and holistic alternating in blocks of 10")
    ratios = []
    for v in args.videos:
        path = Path(v)
        if args.frames_only and args.job:
            j = bench_job(path, args.job_end, args.repeat)
            over = j["job_hands_face_s"] / j["holistic_detector_s"] - 1.0
            print(f"{path.name}: job on [0, {args.job_end:g}) s: holistic detector alone {j['holistic_detector_s']:.2f} s, "
                  f"whole job --hands --face {j['job_hands_face_s']:.2f} s ({100 * over:+.1f} % over the detector), "
                  f"default job (pose model) {j['job_default_s']:.2f} s; stages {j['job_hands_face_timings']}")
            continue
        frames = load_frames(path, args.frames, args.size)
        r = bench_models(frames)
        p, h = r["pose_ms"], r["holistic_ms"]
        ratio = float(np.median(h) / np.median(p))
        ratios.append(ratio)
        f = r["found"]
        print(f"{path.name}: pose {np.median(p):.1f} ms median ({p.mean():.1f} mean), holistic "
              f"{np.median(h):.1f} ms median ({h.mean():.1f} mean): holistic / pose = {ratio:.2f}x; "
              f"person found pose {f['pose_alone']}/{r['n']}, holistic {f['pose_holistic']}/{r['n']}; "
              f"left hand {f['left_hand']}, right hand {f['right_hand']}, face {f['face']} of {r['n']} frames")
        if args.job:
            j = bench_job(path, args.job_end, args.repeat)
            over = j["job_hands_face_s"] / j["holistic_detector_s"] - 1.0
            print(f"  job on [0, {args.job_end:g}) s: holistic detector alone {j['holistic_detector_s']:.2f} s, "
                  f"whole job --hands --face {j['job_hands_face_s']:.2f} s ({100 * over:+.1f} % over the detector), "
                  f"default job (pose model) {j['job_default_s']:.2f} s; stages {j['job_hands_face_timings']}")
    if ratios:
        print(f"holistic / pose, median over clips: {np.median(ratios):.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
