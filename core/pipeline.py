"""The main job: video (or keypoints) -> 2D -> 3D -> smoothing -> trajectory -> retargeting -> VMD.

Two stages, split where the heavy dependencies end:

* :func:`detect_stage` (worker side: PyAV, mediapipe/detectron2, torch) decodes, detects, fills gaps and lifts to 3D.
  Its result, a :class:`core.pose_io.PoseSequence`, is saved as ``OUT.npz`` so the rest can be re-run without
  detecting again (``--from-npz``; the Blender add-on caches it).
* :func:`motion_stage` (numpy only: also runs inside Blender) smooths, finds the root trajectory, levels the camera
  tilt, resamples to MMD's 30 fps and retargets onto the model's rest skeleton.

:func:`run` chains them and writes the files. Frames and units: ``core.conventions``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from . import conventions, filters, pose_io, trajectory
from .errors import PipelineError

#: progress(stage, done, total): called as work advances; total is None when unknown.
Progress = Callable[[str, int, Optional[int]], None]

BACKENDS = ("mediapipe", "detectron2")
LIFTERS = ("native", "videopose3d")


def _no_progress(stage: str, done: int, total: int | None) -> None:
    pass


@dataclass
class EstimateOptions:
    """Everything the main job needs; the CLI, the worker and the add-on fill it.

    Attributes:
        video: input video path (unless ``from_npz`` / ``from_keypoints``).
        output: the VMD to write.
        model: target PMX; None = the built-in standard skeleton (``RestSkeleton.standard``).
        start, end: seconds into the video (None = from the start / to the end).
        crop: ``(x, y, w, h)`` px of the source frame to analyse (e.g. one half of a side-by-side video).
        key_fps: keys per second in the VMD (30 = a key on every MMD frame; MMD always plays at 30 fps).
        backend: 2D/3D detector, one of :data:`BACKENDS`.
        lifter: ``"native"`` (the backend's own 3D: MediaPipe world landmarks) or ``"videopose3d"``.
        checkpoint: VideoPose3D checkpoint (``.bin``) for ``lifter="videopose3d"``.
        from_npz: a pose file written earlier (skips detection).
        from_keypoints: 2D/3D keypoints from other tools (detectron2 npz, OpenPose JSON folder, VideoPose3D files).
        keypoints_fps: frame rate of ``from_keypoints`` files that do not record one.
        image_size: ``(w, h)`` of the frames ``from_keypoints`` came from, when the file does not say.
        smoothing: 0 (off) .. 1 (strong), see :func:`core.filters.smooth`.
        device: ``"cpu"`` or ``"cuda"``.
        overlay: write the video with the 2D skeleton drawn on it here.
        npz: where to save the pose file; default ``output`` with ``.npz``.
        overwrite: allow replacing existing output files.
        level: remove the camera's tilt (:func:`core.trajectory.up_rotation`).
        hfov: assumed horizontal field of view of the camera, degrees (for the trajectory).
        detectron2_model: Keypoint R-CNN variant for ``backend="detectron2"``: ``R50``, ``R101`` or ``X101`` (FPN 3x).
        weights_dir: where downloaded weights are found (``core.weights.find_weights``).
    """

    video: str | None = None
    output: str | None = None
    model: str | None = None
    start: float | None = None
    end: float | None = None
    crop: tuple[int, int, int, int] | None = None
    key_fps: float = 30.0
    backend: str = "mediapipe"
    lifter: str = "native"
    checkpoint: str | None = None
    from_npz: str | None = None
    from_keypoints: str | None = None
    keypoints_fps: float | None = None
    image_size: tuple[int, int] | None = None
    smoothing: float = 0.5
    device: str = "cpu"
    overlay: str | None = None
    npz: str | None = None
    overwrite: bool = False
    level: bool = True
    hfov: float = trajectory.DEFAULT_HFOV_DEG
    detectron2_model: str = "R101"
    weights_dir: str | None = None

    def validate(self) -> None:
        """Check the options before any long work; raises :class:`PipelineError` ("bad_input"/"exists")."""
        sources = [s for s in (self.video, self.from_npz, self.from_keypoints) if s]
        if len(sources) != 1:
            raise PipelineError("bad_input", "give exactly one input: a video, --from-npz FILE or --from-keypoints PATH")
        for p in sources:
            if not Path(p).exists():
                raise PipelineError("bad_input", f"{p}: no such file or folder")
        if self.backend not in BACKENDS:
            raise PipelineError("bad_input", f"unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        if self.lifter not in LIFTERS:
            raise PipelineError("bad_input", f"unknown lifter {self.lifter!r}; choose one of {', '.join(LIFTERS)}")
        if self.lifter == "videopose3d" and not self.checkpoint:
            raise PipelineError("bad_input", "--lifter videopose3d needs --checkpoint PATH (e.g. pretrained_h36m_detectron_coco.bin; "
                                             "python tools/install_deps.py --weights downloads it)")
        if self.checkpoint and not Path(self.checkpoint).is_file():
            raise PipelineError("bad_input", f"{self.checkpoint}: checkpoint not found")
        if self.model and not Path(self.model).is_file():
            raise PipelineError("bad_input", f"{self.model}: model not found")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise PipelineError("bad_input", f"--end ({self.end}) must be after --start ({self.start})")
        if not 0.0 <= self.smoothing <= 1.0:
            raise PipelineError("bad_input", f"--smoothing must be within 0..1, got {self.smoothing}")
        if not 0 < self.key_fps <= conventions.MMD_FPS:
            raise PipelineError("bad_input", f"--fps must be within (0, {conventions.MMD_FPS}], got {self.key_fps}")
        if self.crop is not None and (len(self.crop) != 4 or self.crop[2] <= 0 or self.crop[3] <= 0 or min(self.crop[:2]) < 0):
            raise PipelineError("bad_input", f"--crop must be x,y,w,h with w, h > 0, got {self.crop}")
        if not self.overwrite:
            for p in self.outputs():
                if p.exists():
                    raise PipelineError("exists", f"{p} already exists; choose another name or pass --overwrite")

    def npz_path(self) -> Path | None:
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


@dataclass
class RunResult:
    """What :func:`run` produced: paths, frame counts, notes for the user and seconds per stage."""

    vmd_path: Path | None
    npz_path: Path | None
    overlay_path: Path | None
    frames_in: int
    frames_out: int
    gaps: int
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------- detect stage

def _fill(poses: pose_io.PoseSequence) -> pose_io.PoseSequence:
    """Interpolate frames without a detection (2D with confidence 0, and 3D), and note where."""
    t = poses.timestamps
    if not poses.detected.any():
        raise PipelineError("no_detection", f"no person was found in {poses.source or 'the input'}; check that the "
                                            "dancer's whole body is visible and the crop box contains them")
    kp = poses.keypoints_2d.copy()
    xy, report = filters.fill_gaps(kp[..., :2], t, poses.detected)
    kp[..., :2] = xy
    kp[~poses.detected, :, 2] = 0.0
    notes = list(poses.notes)
    j3 = poses.joints_3d
    if j3 is not None:
        j3, _ = filters.fill_gaps(j3, t, poses.detected)
    if report.runs:
        notes.append(report.describe(t))
    return replace(poses, keypoints_2d=kp, joints_3d=j3, notes=notes)


def _lift_videopose3d(poses: pose_io.PoseSequence, opts: EstimateOptions, progress: Progress) -> pose_io.PoseSequence:
    from .lifting.videopose3d import VideoPose3DLifter, lift_pose_sequence  # torch: worker side only

    if poses.keypoints_2d.shape[1] == 0:
        raise PipelineError("bad_input", "these keypoints are already 3D; drop --lifter videopose3d")
    try:
        lifter = VideoPose3DLifter.from_checkpoint(opts.checkpoint, device=opts.device)
    except FileNotFoundError as e:
        raise PipelineError("bad_input", f"{opts.checkpoint}: checkpoint not found ({e})") from e
    except ImportError as e:
        raise PipelineError("missing_dependency", f"the VideoPose3D lifter needs torch ({e}); "
                                                  "run python3 tools/install_deps.py") from e
    return lift_pose_sequence(poses, lifter, progress)


def detect_stage(opts: EstimateOptions, progress: Progress | None = None) -> pose_io.PoseSequence:
    """Decode, detect, fill gaps and lift: the heavy half of the job (worker side).

    Returns:
        A gap-filled :class:`PoseSequence` with ``joints_3d`` set.
    Raises:
        PipelineError: bad input, no frames, no detection, a missing dependency.
    """
    progress = progress or _no_progress
    if opts.from_npz:
        poses = pose_io.load(opts.from_npz)
    elif opts.from_keypoints:
        from .keypoints_io import load_keypoints

        kwargs = {}
        if opts.keypoints_fps:
            kwargs["fps"] = opts.keypoints_fps
        if opts.image_size:
            kwargs["image_size"] = opts.image_size
        try:
            poses = load_keypoints(opts.from_keypoints, **kwargs)
        except (ValueError, OSError) as e:
            raise PipelineError("bad_input", str(e)) from e
    else:
        from .detect import detect_video

        backend_options = {}
        if opts.backend == "detectron2":
            backend_options = {"model": opts.detectron2_model, "weights_dir": opts.weights_dir}
        poses = detect_video(opts.video, backend=opts.backend, start=opts.start, end=opts.end, crop=opts.crop,
                             device=opts.device, progress=progress, backend_options=backend_options)
    if len(poses) == 0:
        raise PipelineError("no_frames", f"{poses.source or 'the input'} holds no frames in the chosen range")
    if poses.keypoints_2d.shape[1] > 0:
        poses = _fill(poses)
    if opts.lifter == "videopose3d":
        poses = _lift_videopose3d(poses, opts, progress)
    if poses.joints_3d is None:
        raise PipelineError("bad_input", f"{poses.backend} gives 2D keypoints only; lift them to 3D with "
                                         "--lifter videopose3d --checkpoint PATH")
    return poses


# --------------------------------------------------------------------------------------------------- motion stage

def _smooth_finite(x: np.ndarray, t: np.ndarray, strength: float) -> np.ndarray:
    """Smooth the columns of ``(T, J, C)`` that have values; all-NaN joints (absent in the source) stay NaN."""
    out = np.array(x, dtype=np.float64)
    cols = np.isfinite(out).all(axis=(0, 2))
    if cols.any():
        out[:, cols] = filters.smooth(out[:, cols], t, strength)
    return out


def key_times(t_last: float, key_fps: float = 30.0) -> tuple[np.ndarray, np.ndarray]:
    """MMD frames to key and their times: ``(frames (K,) int64, seconds (K,))`` covering ``[0, t_last]``.

    Keys fall on integer 30-fps frames, ``key_fps`` per second (``round(k * 30 / key_fps)``, duplicates dropped).
    """
    n = int(np.floor(t_last * key_fps + 1e-6)) + 1
    frames = np.unique(np.rint(np.arange(n) * conventions.MMD_FPS / key_fps).astype(np.int64))
    frames = frames[frames <= int(np.floor(t_last * conventions.MMD_FPS + 1e-6))]
    return frames, frames / conventions.MMD_FPS


def world_joints(poses: pose_io.PoseSequence, opts: EstimateOptions) -> np.ndarray:
    """Smoothed absolute joints in the camera frame, levelled: ``(T, 27, 3)`` metres (``core.conventions``)."""
    t = poses.timestamps - poses.timestamps[0]
    j3 = _smooth_finite(poses.joints_3d, t, opts.smoothing)
    if poses.trajectory is not None:
        root = np.asarray(poses.trajectory, dtype=np.float64)
    elif poses.keypoints_2d.shape[1] > 0:
        kp = poses.keypoints_canonical_2d()
        root = trajectory.root_translation(j3, kp, poses.image_size,
                                           focal=trajectory.focal_from_fov(poses.image_size[0], opts.hfov))
        root, _ = filters.fill_gaps(root, t)
        if np.isnan(root).any():
            root = np.zeros_like(root)
    else:
        root = np.zeros((len(poses), 3))
    # Depth from a monocular view is the noisiest axis: smooth the trajectory at least moderately.
    root = filters.smooth(root, t, max(opts.smoothing, 0.6))
    absolute = j3 + root[:, None, :]
    if opts.level:
        absolute = absolute @ trajectory.up_rotation(j3).T
    return absolute


def load_rest(model: str | None):
    """The target skeleton: read from a PMX (``core.formats.pmx``) or the built-in standard one."""
    from .rest_skeleton import RestSkeleton

    if not model:
        return RestSkeleton.standard(), "Anime MMD standard"
    from .formats import pmx
    from .formats.errors import FormatError

    try:
        m = pmx.read(model)
    except FormatError as e:
        raise PipelineError("bad_model", f"cannot read the model: {e}") from e
    rest = RestSkeleton.from_pmx(m)
    return rest, m.header.name


def motion_stage(poses: pose_io.PoseSequence, rest, opts: EstimateOptions):
    """Smooth, place, level, resample to 30 fps and retarget onto ``rest`` (numpy only; runs in Blender too).

    Args:
        poses: output of :func:`detect_stage`.
        rest: :class:`core.rest_skeleton.RestSkeleton` of the target model.
    Returns:
        :class:`core.motion.BoneMotion` keyed at the frames of :func:`key_times`.
    """
    from .retarget import retarget

    if poses.joints_3d is None:
        raise PipelineError("bad_input", "the pose sequence has no 3D joints")
    absolute = world_joints(poses, opts)
    t = poses.timestamps - poses.timestamps[0]
    frames, t_keys = key_times(float(t[-1]), opts.key_fps)
    resampled = filters.resample(np.nan_to_num(absolute, nan=0.0), t, t_keys)
    missing = ~np.isfinite(absolute).all(axis=(0, 2))
    resampled[:, missing] = np.nan
    joints_mmd = conventions.camera_to_mmd(resampled)
    return retarget(joints_mmd, rest, frames=frames)


# --------------------------------------------------------------------------------------------------- run

def run(opts: EstimateOptions, progress: Progress | None = None) -> RunResult:
    """Run the whole job and write the VMD, the pose ``.npz`` and (optionally) the overlay video.

    Raises:
        PipelineError: with a code from :data:`core.errors.CODES` and a message that says what to do. Nothing is
        written when the job fails (all files are written at the end, each atomically).
    """
    progress = progress or _no_progress
    opts.validate()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    poses = detect_stage(opts, progress)
    timings["detect"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    rest, model_name = load_rest(opts.model)
    timings["load_model"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    progress("retarget", 0, 1)
    motion = motion_stage(poses, rest, opts)
    progress("retarget", 1, 1)
    timings["motion"] = time.perf_counter() - t1

    t1 = time.perf_counter()
    progress("write", 0, 1)
    vmd_path = None
    if opts.output:
        from .formats import vmd

        vmd_path = Path(opts.output)
        vmd.write(vmd_path, motion.to_vmd(model_name), overwrite=opts.overwrite)
    npz_path = opts.npz_path()
    if npz_path is not None:
        pose_io.save(npz_path, poses, overwrite=opts.overwrite)
    timings["write"] = time.perf_counter() - t1
    progress("write", 1, 1)

    overlay_path = None
    if opts.overlay:
        if not opts.video:
            raise PipelineError("bad_input", "--overlay needs the source video")
        from .overlay import write_overlay

        t1 = time.perf_counter()
        overlay_path = Path(opts.overlay)
        write_overlay(opts.video, poses, overlay_path, overwrite=opts.overwrite, progress=progress)
        timings["overlay"] = time.perf_counter() - t1
    timings["total"] = time.perf_counter() - t0
    return RunResult(vmd_path=vmd_path, npz_path=npz_path, overlay_path=overlay_path, frames_in=len(poses),
                     frames_out=len(motion.frames), gaps=int((~poses.detected).sum()), notes=list(poses.notes),
                     timings=timings)
