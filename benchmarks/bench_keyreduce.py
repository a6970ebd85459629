#!/usr/bin/env python3
"""Benchmark: Bézier key reduction (``core.keyreduce``) of a 3-minute dance (5,400 frames at 30 fps) on mat4.

    python benchmarks/bench_keyreduce.py [--frames 5400] [--model PMX] [--vmd DENSE.vmd] [--tol DEG MM ...]
        [--runs DIR] [--no-refit]

The motion is real: the CMU modern-dance clips of subject 5 (``../shared/data/mocap/cmu_iclone/005_*.bvh``, read and
retargeted onto the model by ``tools.lifter_training.mocap``), one after the other until ``--frames`` (repeated
from the first clip if they run out); or a dense VMD given with ``--vmd`` (e.g. the CLI's ``--dense`` output for
the kunkun video). Prints, per tolerance, the wall and CPU time of ``reduce_motion`` (best of ``--repeat``), the keys
before and after, the VMD sizes, and the error on the model as MMD plays it (``core.ik.evaluate_motion``: FK with the
leg IK solved): MPJPE and max over the ``CANONICAL`` joints (``core.retarget.joints_from_pose``), the max world
rotation error and the max world position error over every bone of the model. Target (issue 11): under 2 s at the default tolerance.

With ``--runs DIR`` (default ``/work/cache/s3/base/runs`` when it exists) it first does the same for the closed-loop
benchmark's estimates (``DIR/<case>/<lifter>/est.npz``, the job's pose files of ``benchmarks/closed_loop`` renders):
each is put through the motion stage (``core.motion_stage``, default options) onto its case's model
(``benchmarks.closed_loop.evaluate.MODELS``: ``_yw`` in the case name = yw, else mat4) and reduced with that model,
and one line per estimate gives the keys ratio, the MPJPE of the reduced against the dense motion (mean distance of
the 27 ``CANONICAL`` joints played with IK, no alignment, mm), the max joint error and the seconds. Target (issue 11):
within 2 mm MPJPE with at most 0.2x the keys. ``--no-refit`` keeps the dense samples as key values (the former
method) for comparison.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data"
DEFAULT_MODEL = SHARED / "pmx" / "mat4_trace_model" / "mat4_v4_trace_model.pmx"


def dance(rest, frames: int):
    """Subject 5's clips retargeted onto ``rest`` and joined into one :class:`BoneMotion` of ``frames`` frames."""
    from core.motion import BoneMotion
    from tools.lifter_training import mocap

    parts = []
    clips = sorted((SHARED / "mocap" / "cmu_iclone").glob("005_*.bvh"))
    total = 0
    while total < frames:
        for path in clips:
            m = mocap.to_mmd(mocap.load_clip(path), rest)[0]
            parts.append(m)
            total += m.n_frames
            if total >= frames:
                break
    names = [n for n in parts[0].rotations if all(n in p.rotations for p in parts)]
    lnames = [n for n in parts[0].locations if all(n in p.locations for p in parts)]
    rot = {n: np.concatenate([p.rotations[n] for p in parts])[:frames] for n in names}
    loc = {n: np.concatenate([p.locations[n] for p in parts])[:frames] for n in lnames}
    return BoneMotion(frames=np.arange(frames), rotations=rot, locations=loc, model_name=rest.model_name)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=5400)
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--vmd", help="a dense VMD to reduce instead of the mocap dance")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tol", type=float, nargs=2, action="append", metavar=("DEG", "MM"),
                    help="rotation cap (degrees) and joint position (mm) tolerance; repeatable (default: "
                         "core.keyreduce's defaults)")
    ap.add_argument("--runs", default="/work/cache/s3/base/runs",
                    help="closed-loop pose files DIR/<case>/<lifter>/est.npz ('' to skip)")
    ap.add_argument("--no-refit", action="store_true", help="key values = the dense samples (former method)")
    args = ap.parse_args(argv)
    tols = args.tol or [(None, None)]

    from core import keyreduce, retarget
    from core.formats import pmx, vmd
    from core.motion import BoneMotion
    from core.rest_skeleton import RestSkeleton

    from core import ik

    def joints_on(r, m):
        p, q = ik.evaluate_motion(r, m)          # as MMD plays it: leg IK on
        return retarget.joints_from_pose(r, p, q)

    def tol_kw(deg, mm):
        return {} if deg is None else {"rot_tol_deg": deg, "pos_tol_mm": mm}

    runs = Path(args.runs) if args.runs else None
    if runs is not None and runs.is_dir():
        from benchmarks.closed_loop.evaluate import MODELS
        from core import motion_stage, pose_io

        models = {}
        for npz in sorted(runs.glob("*/*/est.npz")):
            case, lifter = npz.parent.parent.name, npz.parent.name
            key = "yw" if "_yw" in case else "mat4"
            if key not in models:
                models[key] = RestSkeleton.from_pmx(pmx.read(MODELS[key]))
            r = models[key]
            dense = motion_stage.motion_stage(pose_io.load(npz), r)
            jd_ = joints_on(r, dense)
            for deg, mm in tols:
                t0 = time.perf_counter()
                red = keyreduce.reduce_motion(dense, r, refit=not args.no_refit, **tol_kw(deg, mm))
                sec = time.perf_counter() - t0
                e = np.linalg.norm(jd_ - joints_on(r, red.sampled()), axis=-1) * 80.0
                print(f"closed loop {case:>16} {lifter:>7} ({key}, {dense.n_frames} frames): keys "
                      f"{red.key_count / red.dense_key_count:.3f}x, MPJPE vs dense {e.mean():.2f} mm, max joint "
                      f"{e.max():.1f} mm, {sec:.2f} s", flush=True)

    rest = RestSkeleton.from_pmx(pmx.read(args.model))
    if args.vmd:
        motion = BoneMotion.from_vmd(vmd.read(args.vmd))
        src = args.vmd
    else:
        motion = dance(rest, args.frames)
        src = f"CMU subject 5 dance clips joined, {motion.n_frames} frames"
    print(f"motion: {src}; {motion.n_frames} frames ({motion.n_frames / 30:.0f} s), {len(motion.bone_names)} bones; "
          f"model {Path(args.model).name}")

    def joints(m):
        p, q = ik.evaluate_motion(rest, m)       # as MMD plays it: leg IK on
        return retarget.joints_from_pose(rest, p, q), p, q

    dense_vmd = len(vmd.dumps(motion.to_vmd()))
    jd, pd, qd = joints(motion)
    for deg, mm in tols:
        best = cpu = np.inf
        for _ in range(max(1, args.repeat)):
            t0, c0 = time.perf_counter(), time.process_time()
            red = keyreduce.reduce_motion(motion, rest, refit=not args.no_refit, **tol_kw(deg, mm))
            best = min(best, time.perf_counter() - t0)
            cpu = min(cpu, time.process_time() - c0)
        size = len(vmd.dumps(red.to_vmd()))
        jr, pr, qr = joints(red.sampled())
        e = np.linalg.norm(jd - jr, axis=-1) * 80.0
        from core import quat as Q

        deg = keyreduce.DEFAULT_ROT_TOL_DEG if deg is None else deg
        mm = keyreduce.DEFAULT_POS_TOL_MM if mm is None else mm
        print(f"tolerance {deg:g}° {mm:g} mm: {best:.2f} s wall, {cpu:.2f} s CPU; keys {red.dense_key_count} -> {red.key_count} "
              f"({red.key_count / red.dense_key_count:.3f}x); VMD {dense_vmd / 1e6:.2f} MB -> {size / 1e6:.2f} MB; "
              f"MPJPE {e.mean():.2f} mm, max joint {e.max():.1f} mm; max bone world rotation "
              f"{np.degrees(Q.angle_between(qd, qr).max()):.2f}°, position {np.linalg.norm(pd - pr, axis=-1).max() * 80:.1f} mm")
    return 0


if __name__ == "__main__":
    sys.exit(main())
