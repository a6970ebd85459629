#!/usr/bin/env python3
"""Headless batch: video -> poses -> PMX model in Blender -> applied action -> VMD (+ .blend), without a window.

    blender -b --python tools/batch.py -- VIDEO --model MODEL.pmx --out OUT.vmd [--blend OUT.blend] [options]
    python tools/batch.py VIDEO --model MODEL.pmx --out OUT.vmd [--blend OUT.blend] [options]   # bpy module

Steps:

1. **Estimate** the poses (the heavy part). In this process with ``core.pipeline.detect_stage`` when the backend's
   packages import here (plain ``python`` with the worker's packages installed), otherwise in the worker environment
   with ``python -m core estimate ... --npz POSES`` as a subprocess (``--worker-python``, default the repository's
   ``.venv`` made by ``tools/install_deps.py``). ``--from-npz`` reuses a pose file and skips this step.
2. **Import** the PMX model (``anime_mmd_addon.pmx_import``) into an empty scene.
3. **Apply**: retarget the poses onto the armature's rest skeleton (``core.pipeline.motion_stage``) and key a new
   action (``anime_mmd_addon.action_writer``); scene at 30 fps with the frame range set.
4. **Export** the action as VMD (``anime_mmd_addon.vmd_export``), and save the scene as ``.blend`` (with the video on
   a plane beside the model unless ``--no-video``).

Existing output files are never replaced unless ``--overwrite`` is given; this is checked before any work. Exit
status: 0 done, 1 error (message on stderr), 2 bad arguments.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _script_args(argv: list[str]) -> list[str]:
    """Arguments meant for this script: after ``--`` (how Blender passes them), else everything after argv[0]."""
    return argv[argv.index("--") + 1:] if "--" in argv else argv[1:]


def _crop(text: str) -> tuple[int, int, int, int]:
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("crop must be x,y,w,h in pixels, e.g. 768,0,768,768") from None
    return x, y, w, h


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="batch.py", description="Dance video -> MMD motion on a PMX model, headless.")
    p.add_argument("video", nargs="?", help="the dance video (omit with --from-npz)")
    p.add_argument("--model", required=True, help="target MMD model (.pmx)")
    p.add_argument("--out", required=True, help="VMD file to write")
    p.add_argument("--blend", help="also save the scene (model + action + video plane) as this .blend")
    p.add_argument("--npz", help="also keep the pose file here (.npz)")
    p.add_argument("--from-npz", help="use this pose file instead of estimating (no detection)")
    p.add_argument("--start", type=float, help="start time in the video, seconds")
    p.add_argument("--end", type=float, help="end time in the video, seconds")
    p.add_argument("--crop", type=_crop, help="analyse only this box: x,y,w,h pixels")
    p.add_argument("--backend", default="mediapipe", choices=("mediapipe", "detectron2"))
    p.add_argument("--lifter", default="native", choices=("native", "videopose3d"))
    p.add_argument("--checkpoint", help="VideoPose3D checkpoint for --lifter videopose3d")
    p.add_argument("--smoothing", type=float, default=0.5, help="0 (off) .. 1 (strong); default 0.5")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--worker-python", help="worker environment's python (default: <repo>/.venv)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--in-process", dest="mode", action="store_const", const="in-process",
                      help="run detection in this process (needs the worker packages here)")
    mode.add_argument("--subprocess", dest="mode", action="store_const", const="subprocess",
                      help="run detection with the worker python")
    p.add_argument("--no-video", action="store_true", help="do not put the video beside the model in the .blend")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("-q", "--quiet", action="store_true", help="print only errors and the final summary")
    return p


class BatchError(Exception):
    """A failure to report on stderr (exit status 1)."""


def _log(args, msg: str) -> None:
    if not args.quiet:
        print(f"[batch] {msg}", file=sys.stderr, flush=True)


def _check_outputs(args) -> None:
    for label, p in (("--out", args.out), ("--blend", args.blend), ("--npz", args.npz)):
        if p and Path(p).exists() and not args.overwrite:
            raise BatchError(f"{p} ({label}) already exists; choose another name or pass --overwrite")
        if p and not Path(p).resolve().parent.is_dir():
            raise BatchError(f"{label}: folder {Path(p).resolve().parent} does not exist")
    if not args.video and not args.from_npz:
        raise BatchError("give a VIDEO (or --from-npz POSES.npz)")
    for p in (args.video, args.from_npz, args.model):
        if p and not Path(p).is_file():
            raise BatchError(f"{p}: no such file")


def _needs(args) -> list[str]:
    mods = ["av", "numpy"]
    mods.append("mediapipe" if args.backend == "mediapipe" else "detectron2")
    if args.backend == "detectron2" or args.lifter == "videopose3d":
        mods.append("torch")
    return mods


def _can_run_here(args) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in _needs(args))


def _worker_python(args) -> str:
    if args.worker_python:
        return args.worker_python
    py = REPO / ".venv" / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    if not py.is_file():
        raise BatchError(f"the detection packages ({', '.join(_needs(args))}) are not importable here and there is "
                         f"no worker environment at {REPO / '.venv'}: run 'python tools/install_deps.py' or pass "
                         f"--worker-python")
    return str(py)


def estimate(args, npz: Path) -> None:
    """Write the pose file ``npz`` for ``args.video`` (in this process or with the worker python)."""
    from core import pipeline, pose_io
    from core.errors import PipelineError

    opts = pipeline.EstimateOptions(video=args.video, start=args.start, end=args.end, crop=args.crop,
                                    backend=args.backend, lifter=args.lifter, checkpoint=args.checkpoint,
                                    smoothing=args.smoothing, device=args.device)
    mode = args.mode or ("in-process" if _can_run_here(args) else "subprocess")
    if mode == "in-process":
        _log(args, f"detecting in this process ({args.backend}, {args.lifter})")
        last = {}

        def progress(stage, done, total):
            if not args.quiet and (stage != last.get("stage") or done == total or done % 50 == 0):
                last["stage"] = stage
                print(f"[batch] {stage} {done}/{total if total is not None else '?'}", file=sys.stderr, flush=True)

        try:
            poses = pipeline.detect_stage(opts, progress)
        except PipelineError as e:
            raise BatchError(e.message) from e
        pose_io.save(npz, poses, overwrite=True)
        return
    py = _worker_python(args)
    _log(args, f"detecting with the worker python {py}")
    with tempfile.TemporaryDirectory(prefix="anime_mmd_batch_") as tmp:
        cmd = [py, "-m", "core", "estimate", str(Path(args.video).resolve()), "-o", str(Path(tmp) / "cli.vmd"),
               "--npz", str(npz), "--overwrite", "--backend", args.backend, "--lifter", args.lifter,
               "--smoothing", str(args.smoothing), "--device", args.device, "-q"]
        for flag, val in (("--start", args.start), ("--end", args.end), ("--checkpoint", args.checkpoint)):
            if val is not None:
                cmd += [flag, str(val)]
        if args.crop:
            cmd += ["--crop", ",".join(str(v) for v in args.crop)]
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0 or not npz.is_file():
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise BatchError(f"the worker failed ({proc.returncode}): {msg[-1] if msg else 'no message'}")


def build_scene(args, npz: Path) -> dict:
    """Import the model, apply the poses, export the VMD and save the .blend; returns a summary."""
    import bpy

    from anime_mmd_addon import action_writer, armature_rest, pmx_import, video_reference, vmd_export
    from core import pipeline, pose_io
    from core.errors import PipelineError
    from core.formats.errors import FormatError

    bpy.ops.wm.read_factory_settings(use_empty=True)
    ctx = bpy.context
    try:
        built = pmx_import.import_pmx(args.model, ctx)
    except FormatError as e:
        raise BatchError(f"cannot read the model: {e}") from e
    for w in built.warnings:
        _log(args, f"model: {w}")
    arm = built.armature
    poses = pose_io.load(npz)
    try:
        motion = pipeline.motion_stage(poses, armature_rest.rest_skeleton(arm),
                                       pipeline.EstimateOptions(smoothing=args.smoothing))
    except PipelineError as e:
        raise BatchError(e.message) from e
    name = Path(args.video or poses.source or npz).stem
    action = action_writer.apply_motion(arm, motion, name=name, scene=ctx.scene)
    result = vmd_export.export_vmd(arm, args.out, overwrite=args.overwrite)
    for w in result.warnings:
        _log(args, f"export: {w}")
    if args.blend:
        video = args.video or poses.source
        if video and not args.no_video and Path(video).is_file():
            video_reference.show_video(ctx, video, mode="PLANE", start_time=float(args.start or 0.0), armature=arm)
        ctx.scene.frame_set(ctx.scene.frame_start)
        bpy.ops.wm.save_as_mainfile(filepath=str(Path(args.blend).resolve()), check_existing=False)
    return {"frames": len(motion.frames), "bones": result.bone_count, "keys": result.key_count,
            "action": action.name, "vmd": str(result.path), "blend": args.blend}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(_script_args(sys.argv if argv is None else [""] + argv))
    t0 = time.perf_counter()
    try:
        _check_outputs(args)
        try:
            import bpy  # noqa: F401  (fail before the long detection if Blender is missing)
        except ImportError as e:
            raise BatchError(f"bpy is not importable ({e}): run this with 'blender -b --python tools/batch.py -- "
                             f"...' or install the bpy module (pip install bpy==5.0.1, Python 3.11)") from e
        with tempfile.TemporaryDirectory(prefix="anime_mmd_batch_") as tmp:
            if args.from_npz:
                npz = Path(args.from_npz)
            else:
                npz = Path(args.npz) if args.npz else Path(tmp) / "poses.npz"
                estimate(args, npz)
            t1 = time.perf_counter()
            summary = build_scene(args, npz)
    except BatchError as e:
        print(f"batch: error: {e}", file=sys.stderr)
        return 1
    print(f"[batch] {summary['frames']} frames, {summary['bones']} bones, {summary['keys']} keys -> {summary['vmd']}"
          + (f" and {summary['blend']}" if summary["blend"] else "")
          + f" (estimate {t1 - t0:.1f}s, Blender {time.perf_counter() - t1:.1f}s)", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    code = main()
    if code:
        sys.exit(code)
