"""Closed loop for fingers and head: render mat4 dancing with known finger curls and head turns, run the job with
``--hands --face`` on the render, and compare with the truth.

Usage (from the repository root; renders with bpy, then runs the CLI in a subprocess)::

    nice -n 10 .venv/bin/python benchmarks/bench_hands_face_loop.py [--frames 75] [--out DIR] [--size 640]

Motion: the first frames of the shared OpenMMD dance (``benchmarks.closed_loop.evaluate.prepare_motion``), plus
known 頭 turns (a nod of ±20° at 0.67 Hz and a turn of ±25° at 0.48 Hz, on top of the dance's own head keys) and
known finger curls (each finger's three joints curled toward the palm by 35-75°, each finger at its own phase,
0.8 Hz). Camera: in front of the model (``framing_camera``, yaw 0, 40° field of view). Morphs are not rendered (the
add-on's importer does not import them), so the face morphs are not measured here.

Printed: hands usable (% of frames, per side); the finger keys' error against the truth over the 30 finger bones
(direction: the angle between where the estimated and the true bone point, relative to 手首; curl: the difference
of their rotation angles), for the hand model's landmarks, for the truth's own finger positions projected through
the camera (the retargeting's own error) and for the relaxed pose (what a hand gets without the hand model); and the head's rotation relative to the chest (上半身2), median / p90 error,
with the face model (``--face``) and without it (the body's ears and nose), whole and without its constant part.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core import hands_face as HF  # noqa: E402
from core import quat as Q  # noqa: E402
from core.formats import pmx as pmx_format  # noqa: E402
from core.formats import vmd as vmd_format  # noqa: E402
from core.motion import BoneMotion  # noqa: E402
from core.rest_skeleton import RestSkeleton  # noqa: E402

MAT4 = REPO.parent / "shared" / "data" / "pmx" / "mat4_trace_model" / "mat4_v4_trace_model.pmx"


def truth_motion(rest: RestSkeleton, frames: int) -> BoneMotion:
    from benchmarks.closed_loop.evaluate import Case, prepare_motion

    m, _, _ = prepare_motion(Case("hands_face", "mat4", "vmd", 0.0, 40.0, 1.3), rest, frames)
    t = np.arange(m.n_frames) / 30.0
    rot = dict(m.rotations)
    nod = Q.from_axis_angle(np.tile([1.0, 0, 0], (len(t), 1)), np.radians(20 * np.sin(2 * np.pi * 0.67 * t)))
    turn = Q.from_axis_angle(np.tile([0, 1.0, 0], (len(t), 1)), np.radians(25 * np.sin(2 * np.pi * 0.48 * t)))
    rot["頭"] = Q.multiply(rot.get("頭", Q.identity(len(t))), Q.multiply(turn, nod))
    for side in "左右":
        _, _, palm = HF._hand_rest(rest, side)
        for k, finger in enumerate(("親指", "人指", "中指", "薬指", "小指")):
            amp = 0.5 if finger == "親指" else 1.0
            curl = np.radians(amp * (55 + 20 * np.sin(2 * np.pi * 0.8 * t + 1.3 * k + (side == "右"))))
            for name, _a, _b, _p, d in HF._bones_of(rest, side):
                if name[1:].startswith(finger):
                    rot[name] = Q.from_axis_angle(np.tile(np.cross(d, palm), (len(t), 1)), curl)
    return BoneMotion(frames=m.frames, rotations=rot, locations=dict(m.locations), model_name=m.model_name)


def _perfect_landmarks(rest, truth, poses, out, n):
    """The motion stage fed the truth's finger positions projected through the render camera (perspective; the depth
    in px, divided by ``core.hands_face.HAND_Z_SCALE`` as the hand model gives it): what the retargeting loses on
    its own, without the hand model's errors."""
    import json
    from dataclasses import replace

    from benchmarks.closed_loop.camera import Camera
    from core.motion_stage import motion_stage
    from core.options import EstimateOptions

    cam = Camera(**json.loads(str(np.load(out / "gt.npz")["camera_json"])))
    pos, _ = rest.fk(truth.rotations, truth.locations)
    order = ["手首", "親指０", "親指１", "親指２", "親指先"] + [f + k for f in ("人指", "中指", "薬指", "小指")
                                                       for k in ("１", "２", "３", "先")]
    h = np.full(poses.hands.shape, np.nan, np.float32)
    m = min(n, len(poses))
    for k, side in enumerate("左右"):
        p = np.stack([pos[:m, rest.find(side + b)] for b in order], axis=1)
        uv, _ = cam.project(p)
        zc = cam.to_camera(p)[..., 2]
        h[:m, k, :, :2] = uv
        h[:m, k, :, 2] = (zc - zc[:, :1]) * cam.focal_px / zc[:, :1] / HF.HAND_Z_SCALE  # as the hand model has it
    return motion_stage(replace(poses, hands=h), rest, EstimateOptions(from_npz="x", face=False))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=75)
    ap.add_argument("--size", type=int, default=640)
    ap.add_argument("--out", default=None, help="keep the render and outputs here (default: a temporary folder)")
    args = ap.parse_args(argv)
    out = Path(args.out or tempfile.mkdtemp(prefix="hands_face_loop_"))
    out.mkdir(parents=True, exist_ok=True)
    rest = RestSkeleton.from_pmx(pmx_format.read(MAT4))
    truth = truth_motion(rest, args.frames)
    if not (out / "render.mp4").is_file():
        from benchmarks.closed_loop.camera import framing_camera
        from benchmarks.closed_loop.render import render_case
        from core.retarget import joints_from_pose

        pos, wr = rest.fk(truth.rotations, truth.locations)
        cam = framing_camera(joints_from_pose(rest, pos, wr), yaw_deg=0.0, hfov_deg=40.0, height_m=1.3,
                             width=args.size, height_px=args.size, fill=0.85)
        render_case(MAT4, truth, cam, out, progress=False)
    py = sys.executable
    base = [py, "-m", "core", "estimate", "--model", str(MAT4), "--dense", "--overwrite", "--quiet"]
    subprocess.run(base + [str(out / "render.mp4"), "--hands", "--face", "-o", str(out / "hf.vmd")], cwd=REPO,
                   check=True, capture_output=True)
    subprocess.run(base + ["--from-npz", str(out / "hf.npz"), "--no-hands", "--no-face", "-o", str(out / "body.vmd")],
                   cwd=REPO, check=True, capture_output=True)
    hf = BoneMotion.from_vmd(vmd_format.read(out / "hf.vmd"))
    body = BoneMotion.from_vmd(vmd_format.read(out / "body.vmd"))
    from core import pose_io

    poses = pose_io.load(out / "hf.npz")
    ok = HF.hand_gate(poses.hands, poses.keypoints_2d, poses.joint_names_2d)
    n = min(hf.n_frames, truth.n_frames)
    print(f"{n} frames {args.size}x{args.size}; hands usable: left {100 * ok[:, 0].mean():.0f} %, right "
          f"{100 * ok[:, 1].mean():.0f} %; face found {100 * np.isfinite(poses.face).all(axis=(1, 2)).mean():.0f} %")
    perfect = _perfect_landmarks(rest, truth, poses, out, n)
    for label, m in (("hand model", hf), ("the truth's own landmarks, projected", perfect), ("relaxed pose", None)):
        d_err, c_err = [], []
        for side in "左右":
            relaxed = HF.relaxed_rotations(rest, side, n)
            for name, _a, _b, _p, d in HF._bones_of(rest, side):
                q = relaxed[name] if m is None else m.rotations[name][:n]
                qt = truth.rotations[name][:n]
                cosang = np.sum(Q.rotate(q, d) * Q.rotate(qt, d), axis=-1)
                d_err.append(np.degrees(np.arccos(np.clip(cosang, -1.0, 1.0))))
                c_err.append(np.abs(np.degrees(Q.angle(q) - Q.angle(qt))))
        d_err, c_err = np.concatenate(d_err), np.concatenate(c_err)
        print(f"fingers, {label}: direction error median {np.median(d_err):.1f}° (p90 {np.percentile(d_err, 90):.1f}°), "
              f"curl angle error median {np.median(c_err):.1f}°")

    def head_rel(m):
        _, w = rest.fk({k: v[:n] for k, v in m.rotations.items()}, {k: v[:n] for k, v in m.locations.items()})
        return Q.multiply(Q.conjugate(w[:, rest.find("上半身2")]), w[:, rest.find("頭")])

    g = head_rel(truth)
    for label, m in (("with --face", hf), ("body only", body)):
        off = Q.multiply(Q.conjugate(g), head_rel(m))
        d = np.degrees(Q.angle(off))
        u, _, vt = np.linalg.svd(Q.to_matrix(off).mean(axis=0))   # the constant part of the error (a bias)
        bias = Q.from_matrix(u @ vt)
        dv = np.degrees(Q.angle(Q.multiply(Q.conjugate(np.broadcast_to(bias, off.shape)), off)))
        print(f"頭 relative to 上半身2, {label}: median {np.median(d):.1f}°, p90 {np.percentile(d, 90):.1f}°; "
              f"a constant {np.degrees(Q.angle(bias)):.1f}° of it, the rest median {np.median(dv):.1f}°, "
              f"p90 {np.percentile(dv, 90):.1f}°")
    print(f"outputs in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
