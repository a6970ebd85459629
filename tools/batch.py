#!/usr/bin/env python3
"""Headless batch: video -> poses -> PMX model in Blender -> applied action -> VMD (+ .blend), without a window.

    blender -b --python tools/batch.py -- VIDEO --model MODEL.pmx --out OUT.vmd [--blend OUT.blend] [options]
    python tools/batch.py VIDEO --model MODEL.pmx --out OUT.vmd [--blend OUT.blend] [options]   # bpy module

Steps:

1. **Estimate** the poses (the heavy part). In this process with the job orchestrator (``core.worker.job.run_job``) when the backend's
   packages import here (plain ``python`` with the worker's packages installed), otherwise in the worker environment
   through the worker protocol (``python -m core.worker``, as the add-on does) (``--worker-python``, default the repository's
   ``.venv`` made by ``tools/install_deps.py``). ``--from-npz`` reuses a pose file and skips this step.
2. **Import** the PMX model (``anime_mmd_addon.pmx_import``) into an empty scene.
3. **Apply**: retarget the poses onto the armature's rest skeleton (``core.motion_stage.motion_stage``) and key a new
   action: MMD Bézier keys (``core.keyreduce`` through ``anime_mmd_addon.op_import_vmd.apply_reduced``, within
   ``--key-tolerance DEG,MM`` on the model), or with ``--dense`` a key on every frame
   (``anime_mmd_addon.action_writer``); scene at 30 fps with the frame range set.
4. **Export** the action as VMD (``anime_mmd_addon.vmd_export``), and save the scene as ``.blend`` (with the video on
   a plane beside the model unless ``--no-video``).

Existing output files are never replaced unless ``--overwrite`` is given; this is checked before any work. Exit
status: 0 done, 1 error (message on stderr), 2 bad arguments.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from core import options  # noqa: E402  (numpy-free: the option declarations)
from core.cli import add_declared_arguments  # noqa: E402


def _script_args(argv: list[str]) -> list[str]:
    """Arguments meant for this script: after ``--`` (how Blender passes them), else everything after argv[0]."""
    return argv[argv.index("--") + 1:] if "--" in argv else argv[1:]


#: The detection options this script offers (declared in ``core.options``, like every option).
DETECT_OPTIONS = ("start", "end", "crop", "backend", "lifter", "checkpoint", "device")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="batch.py", description="Dance video -> MMD motion on a PMX model, headless.")
    p.add_argument("video", nargs="?", help="the dance video (omit with --from-npz)")
    p.add_argument("--model", required=True, help="target MMD model (.pmx)")
    p.add_argument("--out", required=True, help="VMD file to write")
    p.add_argument("--blend", help="also save the scene (model + action + video plane) as this .blend")
    p.add_argument("--npz", help="also keep the pose file here (.npz)")
    p.add_argument("--from-npz", help="use this pose file instead of estimating (no detection)")
    add_declared_arguments(p, options.DetectOptions, DETECT_OPTIONS)
    add_declared_arguments(p, options.MotionOptions)
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
    _motion_options(args)
    for p in (args.video, args.from_npz, args.model):
        if p and not Path(p).is_file():
            raise BatchError(f"{p}: no such file")


def _motion_options(args) -> "options.MotionOptions":
    """The declared motion options as given on the command line, each checked against its declaration (a bad
    ``--key-tolerance`` or ``--smoothing`` is one line before any work)."""
    from core.errors import PipelineError

    opts = options.MotionOptions(**{n: getattr(args, n) for n in options.MOTION_FIELDS})
    try:
        options.check_fields(opts)
    except PipelineError as e:
        raise BatchError(e.message) from e
    return opts


def _detect_options(args) -> dict:
    """The request's options: the declared detection options as given on the command line."""
    return {"video": str(Path(args.video).resolve()), **{n: getattr(args, n) for n in DETECT_OPTIONS}}


def _needs(args) -> tuple[str, ...]:
    from core import protocol

    return protocol.requirements_for(_detect_options(args))


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


def _print_progress(args):
    last = {}

    def progress(stage, done, total):
        if not args.quiet and (stage != last.get("stage") or done == total or done % 50 == 0):
            last["stage"] = stage
            print(f"[batch] {stage} {done}/{total if total is not None else '?'}", file=sys.stderr, flush=True)
    return progress


def estimate(args, npz: Path) -> None:
    """Write the pose file ``npz`` for ``args.video`` with the job orchestrator (``core.worker.job.run_job``): in
    this process when the detection packages import here, else in the worker environment through the worker
    protocol (``python -m core.worker``), as the add-on does."""
    from core.errors import PipelineError

    raw = _detect_options(args)
    mode = args.mode or ("in-process" if _can_run_here(args) else "subprocess")
    if mode == "in-process":
        from core.worker.job import run_job

        _log(args, f"detecting in this process ({args.backend}, {args.lifter})")
        try:
            opts = options.from_mapping(options.EstimateOptions, raw)
            opts.npz, opts.overwrite = str(npz), True
            run_job(opts, _print_progress(args))
        except PipelineError as e:
            raise BatchError(e.message) from e
        return
    from anime_mmd_addon import worker_client
    from core import protocol

    py = _worker_python(args)
    _log(args, f"detecting with the worker python {py}")
    progress = _print_progress(args)
    try:
        request = protocol.estimate_request(raw, npz.resolve(), overwrite=True)
        with worker_client.WorkerProcess(py, request) as worker:
            for message in worker.messages(None):
                if message["type"] == "progress":
                    progress(message["stage"], message["done"], message.get("total"))
                elif message["type"] == "error":
                    raise BatchError(f"the worker failed: {message['message']}")
    except (OSError, protocol.ProtocolError) as e:
        raise BatchError(f"cannot run the worker {py}: {e}") from e
    if not npz.is_file():
        raise BatchError(f"the worker ended without writing {npz}")


def build_scene(args, npz: Path) -> dict:
    """Import the model, apply the poses, export the VMD and save the .blend; returns a summary."""
    import bpy

    from anime_mmd_addon import action_writer, armature_rest, pmx_import, video_reference, vmd_export
    from core import motion_stage, pose_io
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
    motion_opts = _motion_options(args)
    rest = armature_rest.rest_skeleton(arm)
    try:
        motion = motion_stage.motion_stage(poses, rest, motion_opts)
    except PipelineError as e:
        raise BatchError(e.message) from e
    name = Path(args.video or poses.source or npz).stem
    if motion_opts.dense:
        action = action_writer.apply_motion(arm, motion, name=name, scene=ctx.scene)
    else:  # MMD Bézier keys (core.keyreduce) within --key-tolerance on this model, as the command line writes them
        from anime_mmd_addon.op_import_vmd import apply_reduced

        deg, mm = motion_opts.key_tolerance
        action = apply_reduced(arm, motion, name=name, scene=ctx.scene, rot_tol_deg=deg, pos_tol_mm=mm, rest=rest)
    from anime_mmd_addon.op_import_vmd import MISSING_MORPHS_PROP, missing_morphs_warning

    if action.get(MISSING_MORPHS_PROP):   # the VMD is exported from Blender: those morphs are not in it
        _log(args, f"apply: {missing_morphs_warning(list(action[MISSING_MORPHS_PROP]), arm.name)}")
    result = vmd_export.export_vmd(arm, args.out, overwrite=args.overwrite)
    for w in result.warnings:
        _log(args, f"export: {w}")
    if args.blend:
        video = args.video or poses.source
        if video and not args.no_video and Path(video).is_file():
            video_reference.show_video(ctx, video, mode="PLANE", start_time=float(args.start or 0.0), armature=arm,
                                       turn=poses.rotate)
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
