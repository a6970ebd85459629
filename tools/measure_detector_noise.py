#!/usr/bin/env python3
"""Measure MediaPipe's 2D keypoint noise on headless renders of real MMD models in known poses.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python tools/measure_detector_noise.py \
        [--cases 12] [--frames 60] [--seed 0] [--cache /work/cache/closed_loop/noise] \
        [--out tools/lifter_training/mediapipe_noise.json] [--cli-repo DIR]

What it does (issue 8, item 2: "measure these statistics ... do not guess them"):

1. **Poses.** Each case plays a window of ``--frames`` frames of a real motion on one of the shared PMX models
   (``../shared/data/pmx/mat4_trace_model``, ``yw_test_model``, alternately): in turn the real OpenMMD dance
   (``../shared/data/vmd/openmmd_output_sample.vmd``, 161 frames) and a clip of the mocap TRAIN split
   (``tools/lifter_training/mocap.py``: ``split()["train"]``, ``load_clip``, ``to_mmd``), when that module imports.
2. **Render.** ``benchmarks.closed_loop.render.render_case`` (bpy, Workbench, textured) from a random camera:
   horizontal field of view 30..90°, yaw all around, height 0.6..2.0 m, roll ±6°, the dancer's height 45..85 % of
   the image height, image 640x640 / 640x480 / 480x640; the ground truth is the model's own ``CANONICAL`` joints by
   core FK, projected through the same camera.
3. **Detect.** The main job's CLI, ``python -m core estimate render.mp4 -o est.vmd --model M.pmx`` (MediaPipe,
   default settings), and its pose file's 2D keypoints, converted to ``CANONICAL`` (``PoseSequence.
   keypoints_canonical_2d``: BlazePose hips as the hip points, Head = the ears' midpoint pushed up).
4. **Compare** per joint and write the statistics to ``--out`` (JSON, described by its own ``schema`` entry).

Error unit: the height of the frame's ground-truth 2D bounding box over the 27 ``CANONICAL`` joints ("bbox"), so the
figures apply to any image size and camera distance; pixel figures are given too. Renders and detections are cached
in ``--cache``; re-running only recomputes the statistics (delete a case folder to render it again).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data"
MODELS = {"mat4": DATA / "pmx" / "mat4_trace_model" / "mat4_v4_trace_model.pmx",
          "yw": DATA / "pmx" / "yw_test_model" / "yw_test_model.pmx"}
VMD = DATA / "vmd" / "openmmd_output_sample.vmd"

from core import skeletons  # noqa: E402
from core.skeletons import CANONICAL  # noqa: E402

J = {n: i for i, n in enumerate(CANONICAL)}
#: Left/right pairs checked for swaps (subject's left first).
SWAP_PAIRS = (("LHip", "RHip"), ("LKnee", "RKnee"), ("LFoot", "RFoot"), ("LShoulder", "RShoulder"),
              ("LElbow", "RElbow"), ("LWrist", "RWrist"), ("LHeel", "RHeel"), ("LFootIndex", "RFootIndex"),
              ("LHandIndex", "RHandIndex"), ("LHandPinky", "RHandPinky"), ("LEar", "REar"))
CONF_MISS = 0.5
LAGS = (1, 2, 3, 5, 10)


# ------------------------------------------------------------------------------------------------ cases

def _random_camera(rng, rest, joints):
    """A random camera framing ``joints`` ((T, 27, 3) MMD units); see the module docstring for the ranges."""
    from benchmarks.closed_loop.camera import framing_camera
    size = [(640, 640), (640, 480), (480, 640)][rng.integers(3)]
    hfov = float(rng.uniform(30.0, 90.0))
    yaw = float(rng.uniform(0.0, 360.0))
    height_m = float(rng.uniform(0.6, 2.0))
    roll = float(rng.uniform(-6.0, 6.0))
    fill = float(rng.uniform(0.45, 0.85))
    return framing_camera(joints, yaw_deg=yaw, hfov_deg=hfov, height_m=height_m, width=size[0], height_px=size[1],
                          fill=fill, roll_deg=roll)


def _window(motion, start: int, n: int):
    from core.motion import BoneMotion
    sl = slice(start, start + n)
    return BoneMotion(frames=np.arange(len(motion.frames[sl])), rotations={k: v[sl] for k, v in motion.rotations.items()},
                      locations={k: v[sl] for k, v in motion.locations.items()}, model_name=motion.model_name,
                      meta=dict(motion.meta))


def mocap_window(rng, mocap, clips: list, n_frames: int, rest, tries: int = 20):
    """A random ``n_frames`` window of a random clip of ``clips`` (mocap BVH paths; the first of ``tries`` draws that
    is long enough), retargeted onto ``rest``: ``(clip name, dense BoneMotion with frames 0..n-1, (n, 27, 3) joints
    MMD units, source text "mocap:NAME[a:b]")``."""
    for _ in range(tries):
        clip = mocap.load_clip(clips[int(rng.integers(len(clips)))])
        if len(clip.joints) >= n_frames:
            break
    start = int(rng.integers(0, len(clip.joints) - n_frames + 1))
    motion, joints = mocap.to_mmd(clip.joints[start:start + n_frames], rest)
    return clip.name, _window(motion, 0, n_frames), joints, f"mocap:{clip.name}[{start}:{start + n_frames}]"


def make_cases(n_cases: int, n_frames: int, seed: int) -> list[dict]:
    """The case list (deterministic for a seed): model, motion source, window, camera."""
    from benchmarks.closed_loop.motion_source import dense_from_vmd
    from core.formats import pmx as pmx_format
    from core.rest_skeleton import RestSkeleton
    from core.retarget import joints_from_pose

    rng = np.random.default_rng(seed)
    try:
        sys.path.insert(0, str(REPO / "tools"))
        from lifter_training import mocap
        train = [p for p in mocap.split()["train"]]
    except Exception as e:  # noqa: BLE001 (optional source; the reason is printed)
        print(f"[noise] mocap clips unavailable ({type(e).__name__}: {e}); using the VMD dance only", file=sys.stderr)
        mocap, train = None, []
    rests = {k: RestSkeleton.from_pmx(pmx_format.read(p)) for k, p in MODELS.items()}
    vmd_motion = dense_from_vmd(VMD, first=0)
    cases = []
    for i in range(n_cases):
        model = list(MODELS)[i % len(MODELS)]
        rest = rests[model]
        use_mocap = mocap is not None and train and (i // 2) % 2 == 1   # both models get both sources
        if use_mocap:
            _, motion, joints, source = mocap_window(rng, mocap, train, n_frames, rest)
        else:
            start = int(rng.integers(0, max(vmd_motion.n_frames - n_frames, 0) + 1))
            motion = _window(vmd_motion, start, n_frames)
            pos, rot = rest.fk(motion.rotations, motion.locations)
            joints = joints_from_pose(rest, pos, rot)  # FK legs only (IK not solved): for framing only
            source = f"vmd:{VMD.name}[{start}:{start + n_frames}]"
        cam = _random_camera(rng, rest, joints)
        cases.append({"name": (f"s{seed}_" if seed else "") + f"case{i:02d}_{model}", "model": model, "source": source, "motion": motion,
                      "camera": cam})
    return cases


def render_and_detect(case: dict, cache: Path, cli_repo: Path, shading: str = "studio") -> Path:
    """Render the case (unless cached) with ``shading`` (``render_case``'s) and run the CLI on it; returns the case
    folder."""
    from benchmarks.closed_loop.render import render_case
    d = cache / case["name"]
    gt = d / "gt.npz"
    if not gt.is_file() or not (d / "render.mp4").is_file() or json.loads((d / "case.json").read_text()) != _desc(case):
        d.mkdir(parents=True, exist_ok=True)
        render_case(MODELS[case["model"]], case["motion"], case["camera"], d, shading=shading, progress=False)
        (d / "case.json").write_text(json.dumps(_desc(case), indent=1))
    est = d / "est.npz"
    if not est.is_file() or est.stat().st_mtime < gt.stat().st_mtime:
        cmd = [sys.executable, "-m", "core", "estimate", str((d / "render.mp4").resolve()), "-o",
               str((d / "est.vmd").resolve()), "--model", str(MODELS[case["model"]].resolve()), "--overwrite",
               "--quiet"]
        env = dict(os.environ, OMP_NUM_THREADS="1")
        proc = subprocess.run(cmd, cwd=cli_repo, capture_output=True, text=True, env=env)
        if proc.returncode != 0 or not est.is_file():
            raise RuntimeError(f"the CLI failed on {d}: {proc.stderr.strip().splitlines()[-1:]}")
    return d


def _desc(case: dict) -> dict:
    out = {"model": case["model"], "source": case["source"], "camera": case["camera"].to_dict(),
           "frames": int(case["motion"].n_frames)}
    if case.get("shading", "studio") != "studio":
        out["shading"] = case["shading"]
    return out


# ------------------------------------------------------------------------------------------------ statistics

def _body_frames(joints: np.ndarray) -> np.ndarray:
    """``(T, 3, 3)`` body frames from ground-truth MMD joints: rows left (LHip - RHip, made horizontal), up (+Y),
    back (left × up, MMD's left-handed cross = the direction the body faces away from)."""
    left = joints[:, J["LHip"]] - joints[:, J["RHip"]]
    left[:, 1] = 0.0
    left /= np.linalg.norm(left, axis=1, keepdims=True)
    up = np.broadcast_to(np.array([0.0, 1.0, 0.0]), left.shape)
    fwd = np.cross(up, left)        # MMD axes: for the rest pose (left +X) this is -Z, the facing direction
    return np.stack([left, up, fwd], axis=1)


def _projection_jacobian(K, R, cam_pos, p):
    """``(..., 2, 3)`` d(pixel)/d(MMD point) of the pinhole camera at points ``p (..., 3)``."""
    c = (p - cam_pos) @ R.T
    f = K[0, 0]
    z = c[..., 2:3]
    jc = np.zeros(p.shape[:-1] + (2, 3))
    jc[..., 0, 0] = f / z[..., 0]
    jc[..., 1, 1] = f / z[..., 0]
    jc[..., 0, 2] = -f * c[..., 0] / z[..., 0] ** 2
    jc[..., 1, 2] = -f * c[..., 1] / z[..., 0] ** 2
    return jc @ R


def load_case(d: Path) -> dict:
    from core import pose_io
    gt = dict(np.load(d / "gt.npz"))
    poses = pose_io.load(d / "est.npz")
    det = poses.keypoints_canonical_2d().astype(np.float64)
    t = min(len(det), len(gt["joints_px"]))
    world = poses.backend_3d()          # MediaPipe's own 3D, also where the CLI's default lifter replaced joints_3d
    return {"gt": gt, "det": det[:t], "detected": poses.detected[:t], "T": t, "name": d.name,
            "world": world[:t] if world is not None else np.full((t, len(CANONICAL), 3), np.nan),
            "case": json.loads((d / "case.json").read_text())}


def _swaps(det, gt_px, scale, ok):
    """Per frame and pair: True where exchanging the two detections fits the ground truth much better."""
    out = np.zeros((det.shape[0], len(SWAP_PAIRS)), dtype=bool)
    for k, (a, b) in enumerate(SWAP_PAIRS):
        da, db, ga, gb = det[:, J[a], :2], det[:, J[b], :2], gt_px[:, J[a]], gt_px[:, J[b]]
        straight = np.linalg.norm(da - ga, axis=1) + np.linalg.norm(db - gb, axis=1)
        crossed = np.linalg.norm(da - gb, axis=1) + np.linalg.norm(db - ga, axis=1)
        sep = np.linalg.norm(ga - gb, axis=1)
        good = ok[:, J[a]] & ok[:, J[b]] & (sep > 0.03 * scale)
        out[:, k] = good & (crossed < 0.5 * straight) & (straight > 0.05 * scale)
    return out


def statistics(cases: list[dict]) -> dict:
    """All statistics (see the ``schema`` entry of the JSON written by :func:`main`)."""
    nj = len(CANONICAL)
    rec = {k: [] for k in ("err_bbox", "err_px", "conf", "ok", "swapped", "body_jac", "case_id")}
    per_case = []
    frame_total = frame_missed = 0
    series = []   # (case, joint) -> (T, 2) error in bbox units with NaN where not usable
    for ci, c in enumerate(cases):
        gt, det = c["gt"], c["det"]
        t = c["T"]
        gpx = gt["joints_px"][:t]
        W, H = (int(v) for v in gt["image_size"])
        bbox_h = np.nanmax(gpx[..., 1], axis=1) - np.nanmin(gpx[..., 1], axis=1)
        scale = bbox_h[:, None]
        inside = (gpx[..., 0] >= 0) & (gpx[..., 0] < W) & (gpx[..., 1] >= 0) & (gpx[..., 1] < H)
        det_frame = c["detected"].astype(bool)
        frame_total += t
        frame_missed += int((~det_frame).sum())
        conf = np.where(np.isfinite(det[..., 2]), det[..., 2], 0.0)
        ok = det_frame[:, None] & inside & np.isfinite(det[..., 0])
        sw = _swaps(det, gpx, bbox_h, ok)
        swapped_j = np.zeros((t, nj), dtype=bool)
        for k, (a, b) in enumerate(SWAP_PAIRS):
            swapped_j[:, J[a]] |= sw[:, k]
            swapped_j[:, J[b]] |= sw[:, k]
        err_px = det[..., :2] - gpx
        err = err_px / scale[..., None]
        jac = _projection_jacobian(gt["K"], gt["R"], gt["cam_position"], gt["joints"][:t])      # (t, nj, 2, 3)
        bf = _body_frames(gt["joints"][:t])                                                      # (t, 3, 3)
        leg = _leg_len(gt["joints"][:t])
        # d(px)/d(offset in body frame, leg lengths) / bbox
        body_jac = jac @ np.transpose(bf, (0, 2, 1))[:, None] * leg / scale[..., None, None]
        rec["err_bbox"].append(err)
        rec["err_px"].append(err_px)
        rec["conf"].append(conf)
        rec["ok"].append(ok & ~swapped_j)
        rec["swapped"].append(sw)
        rec["body_jac"].append(body_jac)
        rec["case_id"].append(np.full(t, ci))
        series.append((err, ok & ~swapped_j))
        e = np.linalg.norm(err_px, axis=-1)
        per_case.append({"name": c["name"], "model": c["case"]["model"], "source": c["case"]["source"],
                         "camera": c["case"]["camera"], "frames": t,
                         "median_err_px_h36m17": float(np.nanmedian(np.where(ok, e, np.nan)[:, :17])),
                         "mean_err_px_h36m17": float(np.nanmean(np.where(ok, e, np.nan)[:, :17])),
                         "median_bbox_height_px": float(np.median(bbox_h)),
                         "frames_missed": int((~det_frame).sum())})
    err = np.concatenate(rec["err_bbox"])
    err_px = np.concatenate(rec["err_px"])
    conf = np.concatenate(rec["conf"])
    ok = np.concatenate(rec["ok"])
    sw = np.concatenate(rec["swapped"])
    body_jac = np.concatenate(rec["body_jac"])
    det_any = np.concatenate([np.isfinite(c["det"][..., 0]) & c["detected"][:, None] for c in cases])
    joints = {}
    for j, name in enumerate(CANONICAL):
        m = ok[:, j]
        e = err[m, j]
        # Systematic offset as a constant 3D offset in the body frame (leg lengths), least squares on the
        # linearised projection: e ≈ A · o.
        A = body_jac[m, j].reshape(-1, 3)
        o, *_ = np.linalg.lstsq(A, e.reshape(-1), rcond=None)
        resid = e - (body_jac[m, j] @ o)
        mean_img = e.mean(axis=0)
        core_sigma = 1.4826 * np.median(np.abs(resid - np.median(resid, axis=0)), axis=0)
        rn = np.linalg.norm(resid / core_sigma, axis=1)
        tail = rn > 3.0
        rnorm = np.linalg.norm(resid, axis=1)
        joints[name] = {
            "n": int(m.sum()),
            "offset_image_bbox": [round(float(v), 5) for v in mean_img],
            "offset_body_leglen": [round(float(v), 4) for v in o],
            "std_image_bbox": [round(float(v), 5) for v in e.std(axis=0)],
            "resid_std_bbox": [round(float(v), 5) for v in resid.std(axis=0)],
            "core_sigma_bbox": [round(float(v), 5) for v in core_sigma],
            "tail_fraction": round(float(tail.mean()), 4),
            "tail_norm_median_bbox": round(float(np.median(rnorm[tail])), 4) if tail.any() else None,
            "tail_norm_p90_bbox": round(float(np.percentile(rnorm[tail], 90)), 4) if tail.any() else None,
            "err_median_px": round(float(np.median(np.linalg.norm(err_px[m, j], axis=1))), 2),
            "miss_rate_conf_lt_0.5": round(float(np.mean(~det_any[:, j] | (conf[:, j] < CONF_MISS))), 4),
            "miss_rate_conf_lt_0.3": round(float(np.mean(~det_any[:, j] | (conf[:, j] < 0.3))), 4),
            "conf_mean": round(float(np.mean(conf[det_any[:, j], j])), 4) if det_any[:, j].any() else None,
            "conf_quantiles": [round(float(v), 4) for v in np.percentile(conf[det_any[:, j], j], [10, 25, 50, 75, 90])]
            if det_any[:, j].any() else None,
            "conf_mean_tail": round(float(np.mean(conf[m, j][tail])), 4) if tail.any() else None,
            "conf_mean_core": round(float(np.mean(conf[m, j][~tail])), 4) if (~tail).any() else None,
            "_resid": resid, "_mask": m,
        }
    # Temporal structure of the residual (after the per-joint offset): autocorrelation by lag, frame-to-frame std.
    ac = {lag: [] for lag in LAGS}
    d1, s0 = [], []
    for ci, (e_c, ok_c) in enumerate(series):
        t = e_c.shape[0]
        for j, name in enumerate(CANONICAL):
            info = joints[name]
            o = np.array(info["offset_body_leglen"])
            bj = rec["body_jac"][ci][:, j]
            r = e_c[:, j] - bj @ o
            r[~ok_c[:, j]] = np.nan
            r = r - np.nanmean(r, axis=0)
            for lag in LAGS:
                if t > lag:
                    a, b = r[:-lag], r[lag:]
                    g = np.isfinite(a).all(1) & np.isfinite(b).all(1)
                    if g.sum() > 10:
                        ac[lag].append((np.sum(a[g] * b[g]), np.sum(a[g] ** 2 + b[g] ** 2) / 2, j))
            g = np.isfinite(r).all(1)
            dd = np.diff(r, axis=0)
            gg = np.isfinite(dd).all(1)
            if gg.sum() > 10:
                d1.append(dd[gg])
                s0.append(r[g])
    auto = {}
    for lag in LAGS:
        num = sum(x[0] for x in ac[lag])
        den = sum(x[1] for x in ac[lag])
        auto[str(lag)] = round(float(num / den), 4) if den > 0 else None
    auto_per_joint = {}
    for j, name in enumerate(CANONICAL):
        v = [x for x in ac[1] if x[2] == j]
        if v:
            auto_per_joint[name] = round(float(sum(x[0] for x in v) / sum(x[1] for x in v)), 4)
    d1 = np.concatenate(d1)
    s0 = np.concatenate(s0)
    for name in joints:
        joints[name].pop("_resid")
        joints[name].pop("_mask")
    swap_rate = {f"{a}/{b}": round(float(sw[:, k].mean()), 5) for k, (a, b) in enumerate(SWAP_PAIRS)}
    legs = [k for k, (a, b) in enumerate(SWAP_PAIRS) if a in ("LHip", "LKnee", "LFoot")]
    arms = [k for k, (a, b) in enumerate(SWAP_PAIRS) if a in ("LShoulder", "LElbow", "LWrist")]
    case_id = np.concatenate(rec["case_id"])
    by_model = {}
    for model in sorted({c["case"]["model"] for c in cases}):
        sel = np.isin(case_id, [i for i, c in enumerate(cases) if c["case"]["model"] == model])
        e = np.where(ok[sel], np.linalg.norm(err_px[sel], axis=-1), np.nan)[:, :17]
        by_model[model] = {"frames": int(sel.sum()),
                           "swap_rate_any_leg": round(float(sw[sel][:, legs].any(axis=1).mean()), 5),
                           "swap_rate_any_arm": round(float(sw[sel][:, arms].any(axis=1).mean()), 5),
                           "swap_rate_whole_legs": round(float(sw[sel][:, legs].all(axis=1).mean()), 5),
                           "error_px_h36m17_median": round(float(np.nanmedian(e)), 2)}
    return {
        "joints": joints,
        "by_model": by_model,
        "joints.<name>.conf_quantiles": "10th, 25th, 50th, 75th, 90th percentiles of the confidence where present "
             "(low confidence does not mean a wrong position: compare miss_rate with tail_fraction)",
    "frame_miss_rate": round(frame_missed / max(frame_total, 1), 5),
        "swap_rate": swap_rate,
        "swap_rate_any_leg": round(float(sw[:, legs].any(axis=1).mean()), 5),
        "swap_rate_any_arm": round(float(sw[:, arms].any(axis=1).mean()), 5),
        "swap_rate_whole_legs": round(float(sw[:, legs].all(axis=1).mean()), 5),
        "residual_autocorrelation": auto,
        "residual_autocorrelation_lag1_per_joint": auto_per_joint,
        "residual_std_bbox_all": round(float(np.sqrt(np.mean(s0 ** 2))), 5),
        "residual_frame_diff_std_bbox_all": round(float(np.sqrt(np.mean(d1 ** 2))), 5),
        "error_px_h36m17_median": round(float(np.nanmedian(np.where(ok, np.linalg.norm(err_px, axis=-1), np.nan)[:, :17])), 2),
        "cases": per_case,
    }


def _leg_len(joints):
    L = 0.0
    for s in "LR":
        L = L + np.linalg.norm(joints[:, J[s + "Knee"]] - joints[:, J[s + "Hip"]], axis=1) \
              + np.linalg.norm(joints[:, J[s + "Foot"]] - joints[:, J[s + "Knee"]], axis=1)
    return (L / 2.0)[:, None, None, None]


SCHEMA = {
    "units": "'bbox' = height in pixels of the frame's ground-truth 2D bounding box over the 27 CANONICAL joints "
             "(errors divided by it, so they hold for any image size or distance); 'leglen' = the model's leg length "
             "(hip -> knee -> ankle, mean of both legs); 'px' = pixels of the render. Image axes: x right, y down "
             "(core.conventions 'image'). Body frame axes: [left (LHip - RHip made horizontal), up (+Y), forward "
             "(the direction the body faces)] in MMD model space.",
    "error": "detected CANONICAL 2D keypoint (core.pose_io.PoseSequence.keypoints_canonical_2d of the CLI's pose file) "
             "minus the ground-truth joint projected through the render camera",
    "joints.<name>.n": "number of (frame, joint) samples used: detected frames, joint inside the image, not in a swap",
    "joints.<name>.offset_image_bbox": "mean error (x, y), bbox units (view dependent; see offset_body_leglen)",
    "joints.<name>.offset_body_leglen": "systematic offset as a constant 3D displacement of the joint in the body "
             "frame [left, up, forward], leg lengths, fitted by least squares on the linearised projection over all "
             "views: add it to the ground-truth joint before projecting to reproduce the detector's bias (e.g. "
             "BlazePose's hip landmarks vs the MMD 足 bones)",
    "joints.<name>.std_image_bbox": "std of the raw error (x, y), bbox units",
    "joints.<name>.resid_std_bbox": "std of the error after removing offset_body_leglen (x, y), bbox units (tails included)",
    "joints.<name>.core_sigma_bbox": "robust sigma (1.4826 MAD) of that residual (x, y), bbox units: the Gaussian core",
    "joints.<name>.tail_fraction": "fraction of samples whose residual, scaled per axis by core_sigma, exceeds 3 in norm "
             "(a 2D Gaussian gives 0.011)",
    "joints.<name>.tail_norm_median_bbox": "median residual norm of those tail samples, bbox units; _p90_: 90th percentile",
    "joints.<name>.err_median_px": "median error norm, pixels of these renders",
    "joints.<name>.miss_rate_conf_lt_0.5": "fraction of all frames where the joint is absent (no detection / NaN) or "
             "its confidence (BlazePose visibility) < 0.5; _0.3: the same below 0.3",
    "joints.<name>.conf_mean": "mean confidence where present; conf_mean_tail / conf_mean_core: in tail / core samples",
    "frame_miss_rate": "fraction of frames with no person detected (the CLI gap-fills them with confidence 0)",
    "swap_rate.<L>/<R>": "fraction of frames where exchanging the left and right detections fits the ground truth with "
             "under half the summed error (both present, ground-truth points > 0.03 bbox apart, error > 0.05 bbox)",
    "swap_rate_any_leg / _any_arm / _whole_legs": "fraction of frames with a swap in any of hips/knees/ankles, any of "
             "shoulders/elbows/wrists, and in all three leg pairs at once",
    "residual_autocorrelation.<lag>": "autocorrelation of the residual (after the offset, per case and joint mean "
             "removed) at that lag in frames (30 fps), pooled over joints and axes: temporal correlation of the noise",
    "residual_autocorrelation_lag1_per_joint": "the lag-1 value per joint",
    "residual_std_bbox_all / residual_frame_diff_std_bbox_all": "RMS of the residual and of its frame-to-frame "
             "difference, bbox units (white noise: diff = sqrt(2) x std)",
    "error_px_h36m17_median": "median 2D error of the 17 H36M joints, pixels",
    "by_model": "swap rates and median 2D error per model: yw_test_model is an untextured dark mannequin (no face), "
                "so BlazePose confuses its front and back far more often than on the textured mat4 model",
    "cases": "per rendered case: model, motion source and window, camera (MMD units), frames, errors",
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=12)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", type=Path, default=Path("/work/cache/closed_loop/noise"))
    ap.add_argument("--out", type=Path, default=REPO / "tools" / "lifter_training" / "mediapipe_noise.json")
    ap.add_argument("--cli-repo", type=Path, default=REPO,
                    help="checkout whose 'python -m core estimate' runs the detector (default: this one)")
    ap.add_argument("--from-cache", action="store_true",
                    help="no new renders: compute the statistics over every finished case folder in --cache")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    cases = [] if args.from_cache else make_cases(args.cases, args.frames, args.seed)
    dirs = sorted(p.parent for p in args.cache.glob("*/est.npz")
                  if (p.parent / "gt.npz").is_file() and (p.parent / "case.json").is_file()) if args.from_cache else []
    for c in cases:
        t1 = time.perf_counter()
        dirs.append(render_and_detect(c, args.cache, args.cli_repo))
        print(f"[noise] {c['name']} {c['source']} hfov {c['camera'].hfov_deg:.0f}: {time.perf_counter() - t1:.0f} s",
              file=sys.stderr, flush=True)
    loaded = [load_case(d) for d in dirs]
    stats = statistics(loaded)
    from tools.lifter_training import world3d
    stats["world_3d"] = world3d.measure(loaded)
    # per model too: MediaPipe's 3D is far better on the textured mat4 than on the faceless yw mannequin, and the
    # lifter trains on a mixture of the two (tools/lifter_training/train.py)
    stats["world_3d_by_model"] = {m: world3d.measure([c for c in loaded if c["case"].get("model") == m])
                                  for m in sorted({c["case"].get("model") for c in loaded})}
    out = {
        "schema": {**SCHEMA, **world3d.SCHEMA},
        "description": "MediaPipe BlazePose (mediapipe 0.10.21, model complexity 1, video mode with its landmark "
                       "smoothing: the main job's CLI defaults) 2D "
                       "keypoint errors, measured on headless Workbench renders of the shared PMX models in known "
                       "poses (tools/measure_detector_noise.py; its docstring says how). For the lifter's synthetic "
                       "2D noise (issue 8 item 2).",
        "measured_with": {"command": " ".join(["tools/measure_detector_noise.py"] + (argv if argv is not None else sys.argv[1:])),
                          "models": {k: str(v.relative_to(REPO.parent)) for k, v in MODELS.items()},
                          "cases": len(loaded), "frames": int(sum(c["T"] for c in loaded)),
                          "seed": None if args.from_cache else args.seed,
                          "camera_ranges": "hfov 30..90 deg, yaw 0..360, height 0.6..2.0 m, roll +-6 deg, dancer "
                                           "45..85 % of the image height, 640x640 / 640x480 / 480x640",
                          "conf_threshold": CONF_MISS},
        **stats,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    print(f"[noise] {out['measured_with']['frames']} frames in {len(loaded)} cases -> {args.out} "
          f"({time.perf_counter() - t0:.0f} s); median 2D error {stats['error_px_h36m17_median']} px, "
          f"frame miss {stats['frame_miss_rate']:.3f}, leg swap {stats['swap_rate_any_leg']:.3f}, "
          f"lag-1 autocorrelation {stats['residual_autocorrelation']['1']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
