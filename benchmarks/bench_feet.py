"""Feet, floor and root figures of the motion stage on pose files, before (plain motion stage) and after cleanup.

For each pose ``.npz`` (a run's output, e.g. ``python -m core estimate VIDEO -o OUT.vmd``): the VMD motion is made
twice -- the former stage (``--cleanup none``) and ``core.motion_cleanup.clean_motion`` (the default) -- and played on the model with
MMD's IK (``core.ik.evaluate_motion``). Printed per clip (issue 9's real-video figures):

* floor %: frames whose lower foot point (heel / toe, ``core.foot_lock.foot_points_mmd``) is within -2 .. +4 cm
  of the floor, i.e. of where that point stands in the model's rest pose (``core.foot_lock.standing_height``,
  ``core.conventions`` "Floor"; 0 on mat4) -- for the plain stage too (retarget's percentile shift grounds it so);
* float cm: median height of the lower foot point;  below cm: the lowest foot point over the clip (both above the
  same standing height);
* skate cm/s: median horizontal speed of foot points during contact (the cleanup's contacts, for both);
* centre p99 m/s: 99th percentile of the センター (+グルーブ) world speed;
* pops/min: frame-to-frame turns above 45° of any keyed bone's local rotation, per minute.

Usage: ``.venv/bin/python benchmarks/bench_feet.py [--model PMX] NPZ...``
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import ik, motion_cleanup, motion_stage, options, pose_io, smoothing  # noqa: E402
from core.conventions import METRES_PER_UNIT, MMD_FPS  # noqa: E402
from core.foot_lock import foot_points_mmd, standing_height  # noqa: E402


def figures(motion, rest, contacts_keys):
    pos, rot = ik.evaluate_motion(rest, motion)
    fp = foot_points_mmd(rest, pos, rot) * METRES_PER_UNIT * 100.0          # cm
    low = fp[..., 1].min(axis=1) - standing_height(rest) * METRES_PER_UNIT * 100.0
    dt = np.diff(motion.frames) / MMD_FPS
    v = np.linalg.norm(np.diff(fp[..., [0, 2]], axis=0), axis=-1) / dt[:, None]   # cm/s
    c = contacts_keys[1:] & contacts_keys[:-1]
    skate = float(np.median(v[c])) if c.any() else float("nan")
    ci = rest.find("センター")
    g = rest.index_of("グルーブ")
    root = pos[:, g if g is not None else ci] * METRES_PER_UNIT
    sp = np.linalg.norm(np.diff(root, axis=0), axis=1) / dt
    pops = sum(smoothing.rotation_pops(q) for n, q in motion.rotations.items())
    minutes = (motion.frames[-1] - motion.frames[0]) / MMD_FPS / 60.0
    return {"floor%": 100 * np.mean((low >= -2) & (low <= 4)), "float_cm": float(np.median(low)),
            "below_cm": float(low.min()), "skate_cm/s": skate, "centre_p99": float(np.percentile(sp, 99)),
            "pops/min": pops / max(minutes, 1e-9)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("npz", nargs="+")
    ap.add_argument("--model", default=None)
    ap.add_argument("--camera", default="auto")
    a = ap.parse_args(argv)
    rest, _ = motion_stage.load_rest(a.model)

    class Opts:
        smoothing, key_fps, hfov, level, camera, foot_lock = 0.5, 30.0, 60.0, True, a.camera, True

    for path in a.npz:
        poses = pose_io.load(path)
        t0 = time.perf_counter()
        before = motion_stage.motion_stage(poses, rest, options.MotionOptions(cleanup="none"))
        t1 = time.perf_counter()
        after, rep = motion_cleanup.clean_motion(poses, rest, Opts())
        t2 = time.perf_counter()
        t = poses.timestamps - poses.timestamps[0]
        ck = motion_cleanup.key_contacts(rep.contacts, t, before.frames / MMD_FPS)
        fb, fa = figures(before, rest, ck), figures(after, rest, ck)
        print(f"{Path(path).name}: {len(poses)} frames, plain {t1 - t0:.2f} s, cleanup {t2 - t1:.2f} s")
        for k in fb:
            print(f"  {k:11s} before {fb[k]:9.2f}   after {fa[k]:9.2f}")
        for n in rep.notes:
            print("   ", n)


if __name__ == "__main__":
    main()
