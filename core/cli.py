"""Command line: ``python -m core estimate VIDEO -o OUT.vmd [--model MODEL.pmx] ...`` and ``python -m core inspect FILE``.

Exit codes: 0 done, 1 a pipeline error (the message says what to do), 2 bad arguments.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__
from .errors import PipelineError


def _crop(text: str) -> tuple[int, int, int, int]:
    try:
        parts = tuple(int(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        parts = ()
    if len(parts) != 4:
        raise argparse.ArgumentTypeError(f"--crop wants x,y,w,h in pixels (e.g. 768,0,768,768), got {text!r}")
    return parts  # type: ignore[return-value]


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--image-size wants WxH (e.g. 1920x1080), got {text!r}") from None
    return w, h


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core", description="Anime MMD: dance video -> MikuMikuDance motion (VMD).")
    p.add_argument("--version", action="version", version=f"anime-mmd {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("estimate", help="video (or keypoints) -> VMD motion",
                       description="Detect the dancer, lift to 3D, retarget onto the model and write a VMD.")
    e.add_argument("video", nargs="?", help="input video (omit with --from-npz / --from-keypoints)")
    e.add_argument("-o", "--output", required=True, help="VMD file to write")
    e.add_argument("--model", help="target MMD model (.pmx); default: a built-in standard MMD skeleton")
    e.add_argument("--start", type=float, help="start time in the video, seconds")
    e.add_argument("--end", type=float, help="end time in the video, seconds")
    e.add_argument("--crop", type=_crop, help="analyse only this box of the frame: x,y,w,h in pixels")
    e.add_argument("--fps", type=float, default=30.0, dest="key_fps",
                   help="keys per second in the VMD (default 30: a key on every MMD frame; MMD plays at 30 fps)")
    e.add_argument("--backend", default="mediapipe", choices=("mediapipe", "detectron2"), help="2D/3D detector")
    e.add_argument("--lifter", default="native", choices=("native", "videopose3d"),
                   help="3D from the backend itself (native) or VideoPose3D's temporal model")
    e.add_argument("--checkpoint", help="VideoPose3D checkpoint (.bin) for --lifter videopose3d")
    e.add_argument("--detectron2-model", default="R101", choices=("R50", "R101", "X101"),
                   help="Keypoint R-CNN variant for --backend detectron2 (FPN 3x configs)")
    e.add_argument("--weights-dir", help="folder of downloaded weights (default ~/.cache/anime_mmd/weights)")
    e.add_argument("--from-npz", help="re-run from a pose file written by an earlier run (no detection)")
    e.add_argument("--from-keypoints", help="keypoints from other tools: detectron2 .npz, VideoPose3D .npz/.npy, "
                                            "or an OpenPose JSON folder")
    e.add_argument("--keypoints-fps", type=float, help="frame rate of --from-keypoints data that does not record one")
    e.add_argument("--image-size", type=_size, help="WxH of the frames --from-keypoints came from, if not recorded")
    e.add_argument("--smoothing", type=float, default=0.5, help="0 (off) .. 1 (strong); default 0.5")
    e.add_argument("--hfov", type=float, default=60.0, help="camera's horizontal field of view, degrees (default 60)")
    e.add_argument("--no-level", dest="level", action="store_false", help="keep the camera's tilt")
    e.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    e.add_argument("--overlay", help="also write the video with the 2D skeleton drawn on it (.mp4)")
    e.add_argument("--npz", help="where to write the pose file (default: OUTPUT with .npz)")
    e.add_argument("--overwrite", action="store_true", help="replace existing output files")
    e.add_argument("-q", "--quiet", action="store_true", help="no progress bars (for scripts)")

    i = sub.add_parser("inspect", help="summarise a VMD, PMX or pose .npz file")
    i.add_argument("file")
    return p


class _Bars:
    """One tqdm bar per stage on stderr, shown only when stderr is a terminal (and not ``--quiet``)."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.bar = None
        self.stage = None

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        if self.quiet:
            return
        if stage != self.stage:
            self.close()
            from tqdm import tqdm

            self.stage = stage
            self.bar = tqdm(total=total, desc=f"{stage:>8}", unit="f" if stage in ("detect", "overlay") else "",
                            dynamic_ncols=True, leave=True, file=sys.stderr, disable=None)  # None: only on a TTY
        if total is not None and self.bar.total != total:
            self.bar.total = total
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _estimate(args: argparse.Namespace) -> int:
    from .pipeline import EstimateOptions, run

    opts = EstimateOptions(
        video=args.video, output=args.output, model=args.model, start=args.start, end=args.end, crop=args.crop,
        key_fps=args.key_fps, backend=args.backend, lifter=args.lifter, checkpoint=args.checkpoint,
        from_npz=args.from_npz, from_keypoints=args.from_keypoints, keypoints_fps=args.keypoints_fps,
        image_size=args.image_size, smoothing=args.smoothing, device=args.device, overlay=args.overlay,
        npz=args.npz, overwrite=args.overwrite, level=args.level, hfov=args.hfov,
        detectron2_model=args.detectron2_model, weights_dir=args.weights_dir)
    bars = _Bars(args.quiet)
    try:
        result = run(opts, progress=bars)
    finally:
        bars.close()
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr))
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    say(f"{result.frames_in} frames in -> {result.frames_out} keys per bone at 30 fps; "
        f"{result.gaps} frames interpolated")
    for label, path in (("motion", result.vmd_path), ("poses", result.npz_path), ("overlay", result.overlay_path)):
        if path:
            say(f"{label:>8}: {path}")
    say("   times: " + ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items()))
    return 0


def _inspect(args: argparse.Namespace) -> int:
    path = Path(args.file)
    suffix = path.suffix.lower()
    if suffix == ".vmd":
        from .formats import vmd

        m = vmd.read(path)
        names = vmd.bone_names(m)
        frames = m.bone_keys["frame"]
        print(f"{path}: VMD for {m.model_name!r}: {len(m.bone_keys)} bone keys on {len(names)} bones"
              + (f", frames {frames.min()}..{frames.max()}" if len(frames) else "")
              + f", {len(m.morph_keys)} morph, {len(m.camera_keys)} camera, {len(m.property_keys)} property keys")
        print("bones: " + " ".join(names))
    elif suffix == ".pmx":
        from .formats import pmx

        m = pmx.read(path)
        print(f"{path}: PMX {m.header.version:.1f} {m.header.name!r}: {len(m.vertices.positions)} vertices, "
              f"{len(m.faces)} faces, {len(m.materials)} materials, {len(m.bones)} bones, {len(m.morphs)} morphs")
    elif suffix == ".npz":
        from . import pose_io

        p = pose_io.load(path)
        print(f"{path}: {len(p)} frames at {p.fps:g} fps from {p.source or '?'} ({p.backend} + {p.lifter}), "
              f"{int((~p.detected).sum())} interpolated, image {p.image_size[0]}x{p.image_size[1]}")
    else:
        raise PipelineError("bad_input", f"{path}: inspect reads .vmd, .pmx and .npz files")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "estimate":
            return _estimate(args)
        return _inspect(args)
    except PipelineError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 1
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("cancelled", file=sys.stderr)
        return 130
