"""Every option of the main job, declared once (numpy-free, stdlib only).

The command line (``core.cli``), the worker (``core.worker.server``, which validates each request against these
declarations), ``tools/batch.py`` and the add-on's scene properties (``anime_mmd_addon.props``) are all derived from
the dataclasses below: each field carries its help text, its choices, its range and the command-line flag in its
``metadata``, so adding an option is one edit here.

Three groups, by the stage that uses them:

* :class:`DetectOptions` -- what the worker needs to decode, detect and lift (``core.worker.job.detect_stage``);
  a worker ``estimate`` request carries exactly these (:data:`REQUEST_FIELDS`).
* :class:`MotionOptions` -- what the motion stage needs (``core.motion_stage``; numpy only, runs in Blender's Apply).
* :class:`EstimateOptions` -- both, plus the outputs of a whole run (VMD, pose ``.npz``, overlay).

Choices (:data:`BACKENDS`, :data:`LIFTERS`, :data:`DEVICES`) carry the worker packages they need, from which
:func:`requirements_for` tells the worker what a request needs before it starts.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from .errors import PipelineError

#: The camera's assumed horizontal field of view, degrees (the focal length of a video is not recorded).
DEFAULT_HFOV_DEG = 60.0
#: Default tolerance of the Bézier key reduction: (rotation, degrees; joint position after FK, mm), issue 11's
#: 0.5° / 1 mm (``core.keyreduce.DEFAULT_ROT_TOL_DEG`` / ``DEFAULT_POS_TOL_MM``, which a test keeps equal).
DEFAULT_KEY_TOLERANCE = (0.5, 1.0)


@dataclass(frozen=True)
class Choice:
    """One value of a choice option: ``value`` (what files and requests carry), a UI ``label``, a ``description``
    and the worker packages (import names, as in ``core.protocol.PACKAGES``) it ``needs``."""

    value: str
    label: str
    description: str
    needs: tuple[str, ...] = ()


BACKENDS: tuple[Choice, ...] = (
    Choice("mediapipe", "MediaPipe", "MediaPipe Pose (BlazePose): 2D and 3D joints, runs on the CPU",
           ("mediapipe",)),
    Choice("detectron2", "Detectron2", "Detectron2 Keypoint R-CNN 2D joints (needs detectron2 installed)",
           ("torch",)),
)
LIFTERS: tuple[Choice, ...] = (
    Choice("trained", "Anime MMD (trained)", "The project's temporal lifter, trained on motion capture: 3D joints, root "
                                             "depth, foot contacts and the camera's tilt from MediaPipe's 2D keypoints "
                                             "and 3D together (other detectors: from the 2D; numpy, no torch; weights "
                                             "CC BY-NC 4.0, core/lifting/weights)"),
    Choice("native", "Native", "The backend's own 3D joints (MediaPipe world landmarks)"),
    Choice("videopose3d", "VideoPose3D", "VideoPose3D temporal convolution network (needs a checkpoint)",
           ("torch",)),
)
DEVICES: tuple[Choice, ...] = (
    Choice("cpu", "CPU", "Run the worker's models on the CPU"),
    Choice("cuda", "CUDA", "Run torch models on an NVIDIA GPU (needs a CUDA build of torch)"),
)
CLEANUPS: tuple[Choice, ...] = (
    Choice("feet", "Feet on the floor", "repair outliers, swaps, flips and root jumps, adaptive smoothing, a floor "
                                        "per shot, foot contacts and foot locking (core.motion_cleanup)"),
    Choice("none", "None (former)", "the former motion stage: fixed Savitzky-Golay smoothing and a percentile "
                                    "ground shift, nothing locked"),
)
CAMERA_MODES: tuple[Choice, ...] = (
    Choice("auto", "Auto", "detect zoom and pan (background track if given, else the planted feet) instead of "
                           "turning them into travel"),
    Choice("static", "Dancer in place", "no root travel along the floor (jumps and crouches kept)"),
    Choice("off", "Off", "keep the root trajectory as estimated"),
)
ROOT_SOURCES: tuple[Choice, ...] = (
    Choice("auto", "Auto", "the lifter's own root path where it gives one (the trained lifter's depth, VideoPose3D's "
                           "trajectory model), else the reprojection fit"),
    Choice("fit", "Fit", "fit the root to the 2D keypoints by least squares (core.trajectory), whatever the lifter"),
)
POSE_MODELS: tuple[Choice, ...] = (
    Choice("full", "Full", "BlazePose full landmark model (bundled with mediapipe; the default)"),
    Choice("heavy", "Heavy", "BlazePose heavy landmark model: about 3x slower, slightly more accurate on the "
                             "closed-loop renders (benchmarks/bench_landmark_models.py); installed at set-up"),
    Choice("lite", "Lite", "BlazePose lite landmark model: faster, less accurate; installed at set-up"),
)
ROTATIONS: tuple[Choice, ...] = (
    Choice("auto", "Auto", "stand a video filmed sideways or upside down upright before the detection, where the "
                           "dancer's body lies across the frame on most frames (core.upright), and say so"),
    Choice("0", "None", "take the frames as they are (after the file's own rotation flag)"),
    Choice("90", "90° left", "turn every frame 90 degrees counter-clockwise"),
    Choice("180", "180°", "turn every frame upside down"),
    Choice("270", "90° right", "turn every frame 90 degrees clockwise"),
)
DETECT_PARTS: tuple[Choice, ...] = (
    Choice("auto", "Auto", "split the clip by its length alone: 1 part under 180 frames (6 s at 30 fps), 2 under 360, 4 under "
                           "720, else 8; the parts are detected at once, one per CPU core (core.worker.parallel)"),
    Choice("1", "1", "one pass over the whole clip (the only way before 6 December 2026)"),
) + tuple(Choice(v, v, f"{v} parts of equal length, detected at once") for v in ("2", "4", "8"))
DETECTRON2_MODELS: tuple[Choice, ...] = tuple(
    Choice(v, v, f"Keypoint R-CNN {v}-FPN 3x") for v in ("R50", "R101", "X101"))


def values(choices: Iterable[Choice]) -> tuple[str, ...]:
    """The ``value`` of each choice, in order."""
    return tuple(c.value for c in choices)


def _option(default: Any, help: str, *, kind: str, flag: str | None = None, choices: tuple[Choice, ...] | None = None,
            minimum: float | None = None, maximum: float | None = None, open_minimum: bool = False,
            negatable: bool = False) -> Any:
    """A dataclass field with its declaration in ``metadata`` (see the module docstring).

    ``kind`` is one of ``"path"``, ``"float"``, ``"bool"``, ``"str"``, ``"crop"`` (x, y, w, h ints), ``"size"``
    (w, h ints), ``"tolerance"`` (degrees, mm: two finite numbers >= ``minimum``); every option may also be None
    unless its default is a non-None value of that kind. A ``negatable`` bool gets both ``--flag`` and ``--no-flag``
    on the command line.
    """
    meta = {"help": help, "kind": kind, "flag": flag, "choices": choices, "min": minimum, "max": maximum,
            "open_min": open_minimum, "negatable": negatable}
    return field(default=default, metadata=meta)


@dataclass
class DetectOptions:
    """Options of the detection half (worker side). Paths are strings; None = not given."""

    video: str | None = _option(None, "input video", kind="path")
    start: float | None = _option(None, "start time in the video, seconds", kind="float", flag="--start", minimum=0.0)
    end: float | None = _option(None, "end time in the video, seconds", kind="float", flag="--end", minimum=0.0)
    crop: tuple[int, int, int, int] | None = _option(
        None, "analyse only this box of the frame: x,y,w,h in pixels", kind="crop", flag="--crop")
    rotate: str = _option("auto", "turn the frames before the detection: auto (stand a dancer upright who lies "
                                  "across the frame on most frames: a video filmed sideways), or 0, 90, 180, 270 "
                                  "degrees counter-clockwise; a --crop is in the turned frame", kind="str",
                          flag="--rotate", choices=ROTATIONS)
    backend: str = _option("mediapipe", "2D/3D detector", kind="str", flag="--backend", choices=BACKENDS)
    lifter: str = _option("trained", "what turns 2D joints into 3D: the project's trained temporal lifter (trained, "
                                     "the default: MediaPipe's 2D and 3D together), the backend's own 3D (native) or "
                                     "VideoPose3D's model", kind="str", flag="--lifter",
                          choices=LIFTERS)
    checkpoint: str | None = _option(None, "VideoPose3D checkpoint (.bin) for --lifter videopose3d", kind="path",
                                     flag="--checkpoint")
    from_npz: str | None = _option(None, "re-run from a pose file written by an earlier run (no detection)",
                                   kind="path", flag="--from-npz")
    from_keypoints: str | None = _option(None, "keypoints from other tools: detectron2 .npz, VideoPose3D .npz/.npy, "
                                               "or an OpenPose JSON folder", kind="path", flag="--from-keypoints")
    keypoints_fps: float | None = _option(None, "frame rate of --from-keypoints data that does not record one",
                                          kind="float", flag="--keypoints-fps", minimum=0.0, open_minimum=True)
    image_size: tuple[int, int] | None = _option(None, "WxH of the frames --from-keypoints came from, if not recorded",
                                                 kind="size", flag="--image-size")
    device: str = _option("cpu", "where torch models run", kind="str", flag="--device", choices=DEVICES)
    pose_model: str = _option("full", "MediaPipe landmark model for --backend mediapipe: full (bundled, default), "
                                      "heavy or lite (installed at set-up by "
                                      "core.worker.backends.pose_models.install_landmark_models)", kind="str",
                              flag="--pose-model", choices=POSE_MODELS)
    detectron2_model: str = _option("R101", "Keypoint R-CNN variant for --backend detectron2 (FPN 3x configs)",
                                    kind="str", flag="--detectron2-model", choices=DETECTRON2_MODELS)
    weights_dir: str | None = _option(None, "folder of downloaded weights (default ~/.cache/anime_mmd/weights)",
                                      kind="path", flag="--weights-dir")
    detect_parts: str = _option("auto", "split the clip into parts detected at once, one per CPU core: auto (by the "
                                        "clip's length alone, so the result does not depend on the machine), or 1 "
                                        "(one pass), 2, 4, 8; MediaPipe only", kind="str", flag="--detect-parts",
                                choices=DETECT_PARTS)
    auto_crop: bool = _option(True, "look for a still half beside the dancer (a side-by-side video) and analyse only "
                                    "the moving half when no --crop is given (on by default; --no-auto-crop keeps "
                                    "the whole frame)", kind="bool", flag="--no-auto-crop")
    retry: bool = _option(True, "re-detect frames whose pose is missing or implausible on crops around the dancer "
                                "(on by default; --no-retry skips it)", kind="bool", flag="--no-retry")
    gate: bool = _option(True, "plausibility gate: refuse skeletons whose scale, bone lengths or position do not fit "
                               "the dancer's track, and joints out of frame (on by default; --no-gate keeps every "
                               "skeleton the detector gives)", kind="bool", flag="--no-gate")
    min_usable: float = _option(0.7, "fraction of the frames that must hold a usable skeleton, else the run stops "
                                     "with the quality report (default 0.7)", kind="float", flag="--min-usable",
                                minimum=0.0, maximum=1.0)
    force: bool = _option(False, "write the motion even when too few frames hold a usable skeleton",
                          kind="bool", flag="--force")
    hands: bool | None = _option(None, "fingers and wrists from MediaPipe Holistic's hand model (--hands; off by "
                                       "default: about 2.3x slower than the pose model alone, "
                                       "benchmarks/bench_holistic.py; needs --backend mediapipe). Hands it cannot see "
                                       "get a relaxed pose. Unset, a pose file that has hands (--from-npz) keys them; "
                                       "--no-hands never does", kind="bool", flag="--hands", negatable=True)
    face: bool | None = _option(None, "head and the morphs まばたき, ウィンク, ウィンク右, あ, い, う from MediaPipe "
                                      "Holistic's face mesh (--face; the same slower model as --hands). Unset, a pose "
                                      "file that has a face keys it; --no-face never does", kind="bool", flag="--face",
                                negatable=True)


@dataclass
class MotionOptions:
    """Options of the motion stage (``core.motion_stage``): smoothing, placement, key rate, and whether the VMD keeps
    every key (``dense``; the writers of the VMD apply ``core.keyreduce`` otherwise)."""

    key_fps: float = _option(30.0, "keys per second in the VMD (default 30: a key on every MMD frame; MMD plays at "
                                   "30 fps)", kind="float", flag="--fps", minimum=0.0, maximum=30.0, open_minimum=True)
    smoothing: float = _option(0.5, "0 (off) .. 1 (strong); default 0.5", kind="float", flag="--smoothing",
                               minimum=0.0, maximum=1.0)
    level: bool = _option(True, "level away the camera's tilt (on by default; --no-level keeps the tilt)", kind="bool", flag="--no-level")
    hfov: float = _option(DEFAULT_HFOV_DEG, "camera's horizontal field of view, degrees (default 60)", kind="float",
                          flag="--hfov", minimum=1.0, maximum=179.0)
    cleanup: str = _option("feet", "motion cleanup: feet (default: repairs, adaptive smoothing, floor, foot locking) "
                                   "or none (the former stage)", kind="str", flag="--cleanup", choices=CLEANUPS)
    camera: str = _option("auto", "camera motion: auto (zoom/pan are not travel), static (dancer kept in place) or "
                                  "off", kind="str", flag="--camera", choices=CAMERA_MODES)
    root: str = _option("auto", "where the root's path comes from: auto (the lifter's own, when it has one) or fit "
                                "(reprojection onto the 2D keypoints)", kind="str", flag="--root", choices=ROOT_SOURCES)
    dense: bool = _option(False, "keep a key on every frame (default: MMD Bézier key reduction within "
                                 "--key-tolerance, core.keyreduce)", kind="bool", flag="--dense")
    key_tolerance: tuple[float, float] = _option(
        DEFAULT_KEY_TOLERANCE, "tolerance of the Bézier key reduction, DEG,MM: each bone's keys move no joint of the "
                               "model after FK by more than MM millimetres, nor the bone's own rotation by more than "
                               "DEG degrees (default 0.5,1; larger: fewer keys, less accurate, e.g. 3,3; 0,0 keeps "
                               "every key; not used with --dense)", kind="tolerance", flag="--key-tolerance",
        minimum=0.0)
    twist_bones: bool = _option(True, "put the forearm / upper-arm twist on 手捩 / 腕捩 where the model has them (on by "
                                      "default, same pose; --no-twist-bones keeps it on ひじ / 腕 as before)",
                                kind="bool", flag="--no-twist-bones")


@dataclass
class EstimateOptions(DetectOptions, MotionOptions):
    """Everything a whole run needs: detection, motion, and the output files.

    The output fields: ``output`` (the VMD), ``model`` (target PMX; None = ``RestSkeleton.standard``), ``overlay``
    (the video with the 2D skeleton drawn on it), ``npz`` (the pose file; default ``output`` with ``.npz``) and
    ``overwrite`` (allow replacing existing files).
    """

    output: str | None = _option(None, "VMD file to write", kind="path", flag="--output")
    model: str | None = _option(None, "target MMD model (.pmx); default: a built-in standard MMD skeleton",
                                kind="path", flag="--model")
    overlay: str | None = _option(None, "also write the video with the 2D skeleton drawn on it (.mp4)", kind="path",
                                  flag="--overlay")
    npz: str | None = _option(None, "where to write the pose file (default: OUTPUT with .npz)", kind="path",
                              flag="--npz")
    overwrite: bool = _option(False, "replace existing output files", kind="bool", flag="--overwrite")

    def validate(self) -> None:
        """Check the options before any long work: every value against its declaration, the inputs exist, and the
        outputs (``core.preflight.check_paths``: suffix, distinct from each other and the inputs, writable folder).

        Raises:
            PipelineError: ``bad_input`` (a value out of range, a missing input) or ``exists`` (an output exists and
            ``overwrite`` is off).
        """
        check_fields(self)
        sources = [s for s in (self.video, self.from_npz, self.from_keypoints) if s]
        if len(sources) != 1:
            raise PipelineError("bad_input", "give exactly one input: a video, --from-npz FILE or --from-keypoints PATH")
        for p in sources:
            if not Path(p).exists():
                raise PipelineError("bad_input", f"{p}: no such file or folder")
        if self.lifter == "videopose3d" and not self.checkpoint:
            raise PipelineError("bad_input", "--lifter videopose3d needs --checkpoint PATH (e.g. pretrained_h36m_detectron_coco.bin; "
                                             "python tools/install_deps.py --weights downloads it)")
        if self.checkpoint and not Path(self.checkpoint).is_file():
            raise PipelineError("bad_input", f"{self.checkpoint}: checkpoint not found")
        if self.model and not Path(self.model).is_file():
            raise PipelineError("bad_input", f"{self.model}: model not found")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise PipelineError("bad_input", f"--end ({self.end}) must be after --start ({self.start})")
        if (self.hands or self.face) and self.video and self.backend != "mediapipe":
            raise PipelineError("bad_input", "--hands / --face use MediaPipe Holistic: use --backend mediapipe, or "
                                             "drop --hands / --face")
        if self.overlay and not self.video:
            raise PipelineError("bad_input", "--overlay needs the source video")
        from .preflight import check_paths

        check_paths({"vmd": self.output, "npz": self.npz_path(), "overlay": self.overlay},
                    [self.video, self.from_npz, self.from_keypoints, self.model, self.checkpoint],
                    overwrite=self.overwrite)

    def npz_path(self) -> Path | None:
        """Where the pose file goes: ``npz``, else ``output`` with ``.npz`` (none when re-running from a pose file)."""
        if self.npz:
            return Path(self.npz)
        if self.output and not self.from_npz:
            return Path(self.output).with_suffix(".npz")
        return None

    def outputs(self) -> list[Path]:
        """The files this run will write."""
        out = [Path(p) for p in (self.output, self.overlay) if p]
        n = self.npz_path()
        return out + ([n] if n else [])


#: Fields a worker ``estimate`` request's ``options`` may carry: the detection half, plus the overlay it renders.
REQUEST_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(DetectOptions)) + ("overlay",)
#: Fields of the motion stage (what Blender's Apply passes on).
MOTION_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(MotionOptions))


def declaration(cls: type, name: str) -> Mapping[str, Any]:
    """The metadata of option ``name`` of the options dataclass ``cls`` (help, kind, flag, choices, min, max)."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f.metadata
    raise KeyError(f"{cls.__name__} has no option {name!r}")


def default(cls: type, name: str) -> Any:
    """The default value of option ``name`` of ``cls``."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f.default
    raise KeyError(f"{cls.__name__} has no option {name!r}")


def check(cls: type, name: str, value: Any) -> Any:
    """``value`` of option ``name`` of ``cls`` checked against its declaration (:func:`check_value`), normalised."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            return check_value(f, value)
    raise KeyError(f"{cls.__name__} has no option {name!r}")


def _label(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or f.name


def check_value(f: dataclasses.Field, value: Any) -> Any:
    """Check one option value against its declaration and return it normalised (tuples for crop/size/tolerance,
    floats).

    Raises:
        PipelineError: ``bad_input`` naming the option and what it accepts.
    """
    meta, name = f.metadata, _label(f)
    if value is None:
        if f.default is not None:
            raise PipelineError("bad_input", f"{name} must be given (default {f.default!r})")
        return None
    kind = meta["kind"]
    if kind == "bool":
        if not isinstance(value, bool):
            raise PipelineError("bad_input", f"{name} must be true or false, got {value!r}")
        return value
    if kind in ("path", "str"):
        if not isinstance(value, (str, Path)) or not str(value):
            raise PipelineError("bad_input", f"{name} must be a non-empty text, got {value!r}")
        value = str(value)
        if "\x00" in value:
            raise PipelineError("bad_input", f"{name} must not contain a NUL character")
        if meta["choices"] is not None and value not in values(meta["choices"]):
            raise PipelineError("bad_input", f"{name}: unknown value {value!r}; choose one of "
                                             f"{', '.join(values(meta['choices']))}")
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise PipelineError("bad_input", f"{name} must be a finite number, got {value!r}")
        value = float(value)
        lo, hi = meta["min"], meta["max"]
        if lo is not None and (value < lo or (meta["open_min"] and value == lo)):
            raise PipelineError("bad_input", f"{name} must be {'above' if meta['open_min'] else 'at least'} {lo:g}, "
                                             f"got {value:g}")
        if hi is not None and value > hi:
            raise PipelineError("bad_input", f"{name} must be at most {hi:g}, got {value:g}")
        return value
    if kind in ("crop", "size"):
        n = 4 if kind == "crop" else 2
        what = "x,y,w,h" if kind == "crop" else "w,h"
        if not isinstance(value, (list, tuple)) or len(value) != n or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise PipelineError("bad_input", f"{name} must be {n} whole numbers ({what} in pixels), got {value!r}")
        value = tuple(int(v) for v in value)
        if kind == "crop" and (value[0] < 0 or value[1] < 0):
            raise PipelineError("bad_input", f"{name}: the box's x and y must be 0 or more, got {value[0]},{value[1]}")
        if value[-2] <= 0 or value[-1] <= 0:
            raise PipelineError("bad_input", f"{name}: width and height must be above 0, got {value[-2]}x{value[-1]}")
        return value
    if kind == "tolerance":
        shown = (",".join(f"{v:g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)
                          for v in value) if isinstance(value, (list, tuple)) else repr(value))
        if (not isinstance(value, (list, tuple)) or len(value) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
            raise PipelineError("bad_input", f"{name} must be two numbers DEG,MM (rotation in degrees, joint position "
                                             f"in mm, e.g. 3,3), got {shown}")
        if not all(math.isfinite(v) for v in value):
            raise PipelineError("bad_input", f"{name} must be finite numbers, got {shown}")
        lo = meta["min"]
        if lo is not None and min(value) < lo:
            raise PipelineError("bad_input", f"{name}: degrees and millimetres must be at least {lo:g}, got {shown}")
        return (float(value[0]), float(value[1]))
    raise AssertionError(f"unknown option kind {kind!r}")


def check_fields(opts: Any) -> None:
    """Check every declared field of the options dataclass instance ``opts`` (:func:`check_value`), in place."""
    for f in dataclasses.fields(opts):
        setattr(opts, f.name, check_value(f, getattr(opts, f.name)))


def from_mapping(cls: type, raw: Mapping[str, Any], *, allowed: Iterable[str] | None = None) -> Any:
    """Build and check an options dataclass from a JSON-like mapping (a worker request's ``options``).

    Args:
        cls: :class:`DetectOptions`, :class:`MotionOptions` or :class:`EstimateOptions`.
        raw: option name -> value (lists for crop/size/tolerance are accepted).
        allowed: names the mapping may carry (default: every field of ``cls``).
    Raises:
        PipelineError: ``bad_input`` for an unknown name or a value its declaration refuses.
    """
    if not isinstance(raw, Mapping):
        raise PipelineError("bad_input", f"options must be an object, got {type(raw).__name__}")
    names = {f.name: f for f in dataclasses.fields(cls)}
    allowed = set(names if allowed is None else allowed)
    unknown = sorted(str(k) for k in raw if k not in allowed or k not in names)
    if unknown:
        raise PipelineError("bad_input", f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(allowed))}")
    values_ = {k: check_value(names[k], v) for k, v in raw.items()}
    return cls(**values_)


def requirements_for(options: Mapping[str, Any] | None, full: tuple[str, ...]) -> tuple[str, ...]:
    """Import names of the worker packages a request with these ``options`` needs (``None``: ``full``).

    Keypoint-file and ``.npz`` inputs need only numpy; video input needs ``av`` (decoding) and the backend's
    packages (:data:`BACKENDS`); a lifter adds its own (:data:`LIFTERS`); an overlay needs ``av`` and ``cv2``.
    """
    if options is None:
        return full
    need = ["numpy"]
    by_value = {c.value: c for c in BACKENDS + LIFTERS}
    if not options.get("from_npz") and not options.get("from_keypoints"):
        need.append("av")
        backend = by_value.get(str(options.get("backend") or default(DetectOptions, "backend")))
        need += list(backend.needs) if backend else []
    if not options.get("from_npz"):
        lifter = by_value.get(str(options.get("lifter") or default(DetectOptions, "lifter")))
        need += list(lifter.needs) if lifter else []
    if options.get("overlay"):
        need += ["av", "cv2"]
    return tuple(dict.fromkeys(need))
