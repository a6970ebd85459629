"""Command line: ``python -m core estimate VIDEO -o OUT.vmd [--model MODEL.pmx] ...`` and ``python -m core inspect FILE``.

Exit codes: 0 done, 1 a pipeline error (the message says what to do; also a run with too few usable frames, whose
message holds the quality report, unless ``--force``), 2 bad arguments.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__
from .errors import PipelineError, os_error_message


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


def _tolerance(text: str) -> tuple:
    """``DEG,MM`` as a tuple; each part a float where it reads as one. Never fails here: the declaration's check
    (``core.options.check_value``, run by ``EstimateOptions.validate``) words every mistake in one line."""
    def number(part: str):
        try:
            return float(part)
        except ValueError:
            return part

    return tuple(number(v) for v in text.replace(" ", "").split(","))


#: Options given as positional arguments or handled by the CLI itself, not by a flag of their declaration.
_POSITIONAL = ("video",)
_PARSERS = {"float": float, "path": str, "str": str, "crop": _crop, "size": _size, "tolerance": _tolerance}


def add_declared_arguments(parser: argparse.ArgumentParser, cls: type, names: tuple[str, ...] | None = None) -> None:
    """One argument per option of the options dataclass ``cls`` (``core.options``), from its declaration: flag,
    help, choices, type and default. ``names`` limits it to these options (in the dataclass's order)."""
    import dataclasses

    from .options import values

    for f in dataclasses.fields(cls):
        if names is not None and f.name not in names:
            continue
        meta = f.metadata
        if f.name in _POSITIONAL:
            parser.add_argument(f.name, nargs="?", help=f"{meta['help']} (omit with --from-npz / --from-keypoints)")
            continue
        flags = [meta["flag"]] + (["-o"] if f.name == "output" else [])
        kw: dict = {"dest": f.name, "help": meta["help"]}
        if meta["kind"] == "bool" and meta.get("negatable"):
            kw["action"], kw["default"] = argparse.BooleanOptionalAction, f.default   # --flag / --no-flag
        elif meta["kind"] == "bool":
            kw["action"] = "store_false" if f.default else "store_true"
        else:
            kw["type"] = _PARSERS[meta["kind"]]
            kw["default"] = f.default
            if meta["choices"] is not None:
                kw["choices"] = values(meta["choices"])
            if meta["kind"] == "tolerance":
                kw["metavar"] = "DEG,MM"
        if f.name == "output":
            kw["required"] = True
        parser.add_argument(*sorted(flags, key=len), **kw)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core", description="Anime MMD: dance video -> MikuMikuDance motion (VMD).")
    p.add_argument("--version", action="version", version=f"anime-mmd {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("estimate", help="video (or keypoints) -> VMD motion",
                       description="Detect the dancer, lift to 3D, retarget onto the model and write a VMD.")
    from .options import EstimateOptions

    add_declared_arguments(e, EstimateOptions)
    e.add_argument("-q", "--quiet", action="store_true", help="no progress bars (for scripts)")
    e.add_argument("-v", "--verbose", action="store_true",
                   help="also show the detector libraries' own log lines (TensorFlow Lite, absl, glog)")

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
    import dataclasses

    from .options import EstimateOptions
    from .worker.job import run_job  # the worker side, imported only when a job runs
    from .worker.native_logs import quiet_native_logs

    quiet_native_logs(args.verbose)

    opts = EstimateOptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(EstimateOptions)})
    bars = _Bars(args.quiet)
    try:
        result = run_job(opts, progress=bars)
    finally:
        bars.close()
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr))
    for note in result.notes:
        if not note.startswith("quality:"):  # the quality report is printed as a block below
            print(f"note: {note}", file=sys.stderr)
    if result.quality is not None:
        for line in result.quality.lines():
            print(line, file=sys.stderr)
    keys = ""
    if result.bone_keys:
        dense = result.motion.n_frames * len(result.motion.bone_names)   # a key on every frame for every bone
        keys = (f", {result.bone_keys:,} bone keys (a key on every frame)" if opts.dense else
                f", {result.bone_keys:,} bone keys with MMD's Bézier curves ({result.bone_keys / dense:.2f}x "
                f"a key on every frame, within {opts.key_tolerance[0]:g}° / {opts.key_tolerance[1]:g} mm)")
    say(f"{result.frames_in} frames in -> {result.frames_out} frames at 30 fps{keys}; "
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
              f"{int((~p.detected).sum())} interpolated, image {p.image_size[0]}x{p.image_size[1]}"
              + (f" (the video's frames turned {p.rotate}° counter-clockwise)" if p.rotate else ""))
        if p.quality:
            from .quality import QualityReport

            for line in QualityReport.from_json(p.quality).lines():
                print(line)
    else:
        raise PipelineError("bad_input", f"{path}: inspect reads .vmd, .pmx and .npz files")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 done, 1 an error the message explains, 2 bad arguments, 130 cancelled)."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "estimate":
            return _estimate(args)
        return _inspect(args)
    except PipelineError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 1
    except (FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: {os_error_message(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("cancelled: nothing was written", file=sys.stderr)
        return 130
