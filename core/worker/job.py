"""The one orchestrator of the main job: input -> 2D -> 3D -> motion -> outputs, written together or not at all.

Everything that runs the job calls :func:`run_job`: the command line (``core.cli``), the worker server
(``core.worker.server``, which asks for the pose file only: Blender runs the motion stage itself on Apply),
``tools/batch.py`` (in process, or through the worker protocol) and the benchmarks.

Two stages, split where the heavy dependencies end:

* :func:`detect_stage` (worker side: PyAV, mediapipe/detectron2, torch) decodes, detects, fills gaps and lifts to
  3D. Its result, a :class:`core.pose_io.PoseSequence`, is saved as ``OUT.npz`` so the rest can be re-run without
  detecting again (``--from-npz``; the Blender add-on caches it).
* ``core.motion_stage.motion_stage`` (numpy only: also runs inside Blender) smooths, places, levels, resamples to
  MMD's 30 fps and retargets onto the model's rest skeleton.

Outputs (VMD, pose ``.npz``, overlay video) are written to temporary files beside their destinations and moved into
place together at the very end (``core.atomic.OutputSet``): a failure or a cancel at any point leaves no file.
Frames and units: ``core.conventions``.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .. import filters, gating, pose_io, quality, upright
from ..quality import QualityReport
from ..atomic import OutputSet, remove_stale
from ..errors import PipelineError, os_error_message
from ..motion_stage import motion_stage
from ..options import EstimateOptions
from ..preflight import check_model

#: progress(stage, done, total): called as work advances; total is None when unknown.
Progress = Callable[[str, int, Optional[int]], None]


def _no_progress(stage: str, done: int, total: int | None) -> None:
    pass


@dataclass
class JobResult:
    """What :func:`run_job` produced: paths written, frame counts, notes for the user and seconds per stage.

    ``poses`` is the pose sequence and ``motion`` the :class:`core.motion.BoneMotion` (None when no VMD was asked
    for), so callers can use them without reading the files back.
    """

    vmd_path: Path | None
    npz_path: Path | None
    overlay_path: Path | None
    frames_in: int
    frames_out: int
    gaps: int
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    poses: pose_io.PoseSequence | None = None
    motion: object | None = None
    quality: QualityReport | None = None
    bone_keys: int = 0        # bone keys written to the VMD (0 without one)


# --------------------------------------------------------------------------------------------------- detect stage

def _fill(poses: pose_io.PoseSequence) -> pose_io.PoseSequence:
    """Interpolate frames without a usable detection (2D with confidence 0, and 3D; joints the gate dropped too),
    shot by shot (``poses.shots``): nothing is interpolated across a cut; a shot's frames before its first or after
    its last detection hold the nearest one, and a shot without any takes the nearest shot's edge frame."""
    t = poses.timestamps
    if not poses.detected.any():
        raise PipelineError("no_detection", f"no person was found in {poses.source or 'the input'}; check that the "
                                            "dancer's whole body is visible and the crop box contains them")
    kp = poses.keypoints_2d.astype(np.float64)
    j3 = None if poses.joints_3d is None else poses.joints_3d.astype(np.float64)
    shots = poses.shots.tolist() if poses.shots is not None else [(0, len(poses))]
    empty = []
    for a, b in shots:
        det = poses.detected[a:b]
        if not det.any():
            empty.append((a, b))
            continue
        kp[a:b, :, :2], _ = filters.fill_gaps(kp[a:b, :, :2], t[a:b], det)
        if j3 is not None:
            j3[a:b], _ = filters.fill_gaps(j3[a:b], t[a:b], det)
    for a, b in empty:  # a shot without any usable frame: hold the nearest frame of a neighbouring shot
        src = a - 1 if a > 0 and (b >= len(poses) or poses.detected[:a].any()) else b
        kp[a:b, :, :2] = kp[src, :, :2]
        if j3 is not None:
            j3[a:b] = j3[src]
    kp[~poses.detected, :, 2] = 0.0
    notes = list(poses.notes)
    _, report = filters.fill_gaps(np.zeros((len(poses), 0)), t, poses.detected)
    if report.runs:
        notes.append(report.describe(t))
    return replace(poses, keypoints_2d=kp.astype(np.float32), notes=notes,
                   joints_3d=None if j3 is None else j3.astype(np.float32))


def _gate_and_assess(poses: pose_io.PoseSequence, opts) -> tuple[pose_io.PoseSequence, QualityReport]:
    """Plausibility gate (``core.gating.gate_poses``, once: a pose file read back is already gated; skipped with
    ``opts.gate`` False), gap filling per shot, and the quality report (``core.quality``) stored in
    ``poses.quality`` (a pose file's own report is kept)."""
    already = poses.rejected is not None
    counts = {}
    if not already and getattr(opts, "gate", True):
        poses, g = gating.gate_poses(poses)
        counts = g.counts if g is not None else {}
    rejected = poses.rejected if poses.rejected is not None else np.zeros(len(poses), dtype=bool)
    if not poses.detected.any():
        why = f"{int(rejected.sum())} skeletons were found but none fits a body" if rejected.any() \
            else "no skeleton was found"
        raise PipelineError("no_detection", f"{poses.source or 'the input'}: {why}; check that the dancer is "
                                            "visible, and the crop box (--crop X,Y,W,H) contains them")
    auto = next((n for n in poses.notes if "half of the frame is still" in n), "")
    crop_note = (f"crop {','.join(str(v) for v in poses.crop)} chosen automatically: the "
                 f"{auto.split('the ', 1)[1].split(' half', 1)[0]} half of the frame is still") if auto and poses.crop \
        else ""
    if already and poses.quality:
        report = quality.QualityReport.from_json(poses.quality)
    else:
        report = quality.assess(detected=poses.detected | rejected, usable=poses.detected,
                                timestamps=poses.timestamps, fps=poses.fps,
                                keypoints_canonical=poses.keypoints_canonical_2d(),
                                shots=poses.shots.tolist() if poses.shots is not None else None,
                                upper_body=poses.upper_body, rejected_by=counts, crop=poses.crop,
                                crop_note=crop_note)
    poses = _fill(poses)
    notes = [n for n in poses.notes if not n.startswith("quality:")] + report.lines()
    return replace(poses, quality=report.to_json(), notes=notes), report


def _lift_videopose3d(poses: pose_io.PoseSequence, opts, progress: Progress) -> pose_io.PoseSequence:
    from .lifting.videopose3d import VideoPose3DLifter, lift_pose_sequence  # torch

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


def _lift_per_shot(lifter, kp: np.ndarray, poses: pose_io.PoseSequence, hfov, world):
    """``lifter.lift`` on each shot of ``poses`` on its own (``core.shots.lift_ranges``: the lifter's window must not
    see across a cut). Returns one ``core.lifting.trained.LiftOutput`` for the whole clip."""
    from ..lifting.trained import LiftOutput, lift_timed
    from ..shots import lift_ranges

    groups = lift_ranges(poses.shots, poses.detected)
    # by the frames' own times: a 50 / 60 fps video is lifted at the 30 fps the network learnt (lift_timed)
    outs = [lift_timed(lifter, kp[a:b], poses.image_size, poses.timestamps[a:b], hfov_deg=hfov,
                       world_3d=None if world is None else world[a:b], world_present=poses.detected[a:b],
                       flip=world is not None) for a, b in groups]
    if len(outs) == 1:
        return outs[0]
    cat = lambda name: np.concatenate([getattr(o, name) for o in outs])   # noqa: E731
    return LiftOutput(joints_3d=cat("joints_3d"), root=cat("root"), root_depth=cat("root_depth"),
                      contacts=cat("contacts"), valid=cat("valid"),
                      up=None if any(o.up is None for o in outs) else cat("up"))


def _stand_upright(poses: pose_io.PoseSequence, opts: EstimateOptions, kw: dict) -> pose_io.PoseSequence:
    """``--rotate auto``: where the dancer lies across the frame on most frames (``core.upright``: a video filmed
    sideways or upside down), detect again on the frames turned upright and say so; with a ``--crop`` (a box in
    the frames as they are) only say which ``--rotate`` to pass."""
    from .detect import detect_video

    turn, share = upright.turn_needed(poses.keypoints_canonical_2d(), poses.detected)
    if not turn:
        return poses
    why = (f"the dancer lies across the frame on {share:.0%} of the frames where the torso is seen (a video filmed "
           f"sideways or upside down)")
    if opts.crop is not None:
        return replace(poses, notes=list(poses.notes) + [
            f"rotate: {why}; pass --rotate {turn} with a --crop in the turned frame to stand the dancer upright"])
    turned = detect_video(opts.video, rotate=turn, **kw)
    return replace(turned, notes=list(turned.notes) + [
        f"rotate: {why}: the frames were turned {turn}° counter-clockwise before the detection (--rotate 0 keeps "
        f"them as they are)"])


def lift_trained(poses: pose_io.PoseSequence, hfov: float | None = None,
                 progress: Progress | None = None) -> pose_io.PoseSequence:
    """Lift with the project's trained temporal lifter (``core.lifting.trained``, numpy): 3D joints, the root's path
    (``trajectory``, from the lifter's depth) and the feet's contact probabilities (``contact_probs``).

    Args:
        poses: gap-filled 2D keypoints (any set ``core.skeletons.to_canonical`` maps; missing joints NaN or
            confidence 0).
        hfov: the camera's horizontal field of view, degrees (None: the lifter's default, 60°).
    Raises:
        PipelineError: ``bad_input`` when the sequence has no 2D keypoints or no frame with enough joints;
            ``missing_dependency`` when the weights are not installed.
    """
    from ..lifting import trained

    if poses.keypoints_2d.shape[1] == 0:
        raise PipelineError("bad_input", "these keypoints are already 3D: use --lifter native to take them as they are")
    progress = progress or _no_progress
    progress("lift", 0, len(poses))
    # MediaPipe's own 3D (world landmarks) is the second input of the default weights; other detectors' 2D-only
    # keypoints go to the 2D-only weights
    world = None
    if poses.backend in ("mediapipe", "holistic"):
        # MediaPipe's own 3D: as detected, or as kept by an earlier trained run (a re-run from its pose file)
        world = poses.backend_3d()
    try:
        lifter = trained.load_lifter(trained.WEIGHTS_WORLD if world is not None else trained.WEIGHTS_2D)
    except FileNotFoundError as e:
        raise PipelineError("missing_dependency", f"{e}; reinstall the extension or choose --lifter native") from e
    kp = poses.keypoints_canonical_2d().astype(np.float64)
    if poses.backend not in ("mediapipe", "holistic"):
        # the lifter learnt BlazePose's visibility scale (about 0.9 for a clearly seen joint); other detectors'
        # scores mean something else (detectron2's median is 0.16 on a clean dance), so a kept point counts as seen
        kp[..., 2] = np.where(np.nan_to_num(kp[..., 2]) > 0, 0.9, 0.0)
    kp[~poses.detected, :, 2] = 0.0  # interpolated frames are guesses: the lifter treats them as missing
    # frames the detector missed (gap-filled) count as absent in the world landmarks too, as in the 2D
    try:
        out = _lift_per_shot(lifter, kp, poses, hfov, world)
    except ValueError as e:
        raise PipelineError("bad_input", str(e)) from e
    progress("lift", len(poses), len(poses))
    used = " from the 2D keypoints and MediaPipe's world landmarks" if lifter.uses_world and world is not None else ""
    notes = [n for n in poses.notes if not n.startswith("3D by the trained lifter")]     # a re-run lifts again
    notes.append(f"3D by the trained lifter ({lifter.receptive_field}-frame window){used}")
    return replace(poses, joints_3d=out.joints_3d, trajectory=out.root, contact_probs=out.contacts, camera_up=out.up,
                   world_landmarks=None if world is None else np.asarray(world, dtype=np.float32), lifter="trained",
                   notes=notes)


def detect_stage(opts, progress: Progress | None = None) -> pose_io.PoseSequence:
    """Decode, detect, fill gaps and lift: the heavy half of the job (worker side).

    Args:
        opts: :class:`core.options.DetectOptions` (or :class:`~core.options.EstimateOptions`).
    2D input (a video, or keypoints from another tool) goes through the plausibility gate
    (``core.gating.gate_poses``) and is gap-filled per shot; its quality report (``core.quality``) is stored in
    ``poses.quality`` and checked: under ``opts.min_usable`` usable frames the stage refuses unless ``opts.force``.

    Returns:
        A gap-filled :class:`PoseSequence` with ``joints_3d`` set.
    Raises:
        PipelineError: bad input, no frames, no detection (also: too few usable frames, the message gives the
        quality report and what to try), a missing dependency.
    """
    progress = progress or _no_progress
    if opts.from_npz:
        poses = pose_io.load(opts.from_npz)
    elif opts.from_keypoints:
        from ..keypoints_io import load_keypoints

        kwargs = {}
        if opts.keypoints_fps:
            kwargs["fps"] = opts.keypoints_fps
        if opts.image_size:
            kwargs["image_size"] = opts.image_size
        try:
            poses = load_keypoints(opts.from_keypoints, **kwargs)
        except PipelineError:
            raise
        except OSError as e:
            raise PipelineError("bad_input", os_error_message(e)) from e
        except ValueError as e:
            raise PipelineError("bad_input", str(e)) from e
    else:
        from .detect import detect_video

        backend_options = {}
        if opts.backend == "detectron2":
            backend_options = {"model": opts.detectron2_model, "weights_dir": opts.weights_dir}
        elif opts.backend == "mediapipe" and getattr(opts, "pose_model", "full") != "full":
            backend_options = {"model_complexity": {"lite": 0, "full": 1, "heavy": 2}[opts.pose_model]}
        backend = opts.backend
        if backend == "mediapipe" and (getattr(opts, "hands", False) or getattr(opts, "face", False)):
            backend = "holistic"  # the same pose model plus hands and face mesh (core.worker.backends.holistic)
        kw = dict(backend=backend, start=opts.start, end=opts.end, crop=opts.crop, device=opts.device,
                  progress=progress, backend_options=backend_options, auto_crop=getattr(opts, "auto_crop", True),
                  retry=getattr(opts, "retry", True), detect_parts=str(getattr(opts, "detect_parts", "auto")))
        rotate = str(getattr(opts, "rotate", "auto"))
        poses = detect_video(opts.video, rotate=0 if rotate == "auto" else int(rotate), **kw)
        if rotate == "auto":
            poses = _stand_upright(poses, opts, kw)
    if len(poses) == 0:
        raise PipelineError("no_frames", f"{poses.source or 'the input'} holds no frames in the chosen range")
    report = None
    if poses.keypoints_2d.shape[1] > 0:
        poses, report = _gate_and_assess(poses, opts)
    if report is not None and not opts.from_npz:
        report.check(getattr(opts, "min_usable", quality.DEFAULT_MIN_USABLE), getattr(opts, "force", False),
                     source=str(poses.source or ""))
    if opts.lifter == "native" and poses.lifter == "trained" and poses.world_landmarks is not None:
        # a re-run from a trained run's pose file with --lifter native: MediaPipe's own 3D, kept in the file
        poses = replace(poses, joints_3d=poses.world_landmarks, trajectory=None, contact_probs=None, camera_up=None,
                        world_landmarks=None, lifter="native")
    if opts.lifter == "videopose3d":
        poses = _lift_videopose3d(poses, opts, progress)
    elif opts.lifter == "trained":
        if poses.keypoints_2d.shape[1] == 0 and poses.joints_3d is not None:
            # 3D keypoints from another tool (a VideoPose3D export): there is nothing to lift; they go straight to
            # retargeting, as with --lifter native, and the run says so
            poses = replace(poses, notes=list(poses.notes) + [
                "these keypoints are already 3D: taken as they are (no lifting; the same as --lifter native)"])
        else:
            poses = lift_trained(poses, getattr(opts, "hfov", None), progress)
    if poses.joints_3d is None:
        raise PipelineError("bad_input", f"{poses.backend} gives 2D keypoints only; lift them to 3D with "
                                         "--lifter videopose3d --checkpoint PATH")
    return poses


# --------------------------------------------------------------------------------------------------- the job

def _note_kind(note: str) -> str:
    """What a report line is about: its text before the first ':' or '(' (``"camera motion"``, ``"floor"``,
    ``"feet locked"``, ``"left/right swap"``), so a re-run's line can replace the earlier run's."""
    return re.split(r"[:(]", note, maxsplit=1)[0].strip()


def _plausible_root(poses: pose_io.PoseSequence, motion, rest, opts):
    """``--root auto`` takes a lifter's own root path; where that path makes the centre move faster than any dancer
    (``core.quality.MAX_CENTRE_SPEED`` at the 99th percentile, the plausibility check of :func:`_check_motion`) and
    the root fitted to the 2D keypoints (``--root fit``) does not, the fitted one is used and the run says so.
    Returns ``(motion, poses)``."""
    if poses.trajectory is None or getattr(opts, "root", "auto") != "auto" or poses.keypoints_2d.shape[1] == 0:
        return motion, poses
    fast = quality.motion_figures(motion)["centre_speed_p99"]
    if fast is None or fast <= quality.MAX_CENTRE_SPEED:
        return motion, poses
    fitted = motion_stage(poses, rest, replace(opts, root="fit"))
    slow = quality.motion_figures(fitted)["centre_speed_p99"]
    if slow is None or slow > quality.MAX_CENTRE_SPEED:
        return motion, poses
    note = (f"root: the {poses.lifter} lifter's own path moves the centre {fast:.1f} m/s at the 99th percentile, "
            f"faster than a dancer; the root fitted to the 2D keypoints ({slow:.1f} m/s) is used instead (--root fit)")
    return fitted, replace(poses, notes=list(poses.notes) + [note])


def _check_motion(poses: pose_io.PoseSequence, motion, opts) -> pose_io.PoseSequence:
    """Add the motion's plausibility figures (``core.quality.motion_figures``) to the quality report and refuse an
    implausible motion (``QualityReport.check_motion``) unless ``opts.force``."""
    if poses.quality:
        report = quality.QualityReport.from_json(poses.quality)
    else:  # 3D input without 2D keypoints: every frame was given
        n = len(poses)
        report = quality.QualityReport(frames=n, detected=n, rejected=0, usable=n, longest_gap=0,
                                       longest_gap_start_s=0.0, fps=poses.fps, crop=None)
    report = replace(report, **quality.motion_figures(motion))
    notes = [n for n in poses.notes if not n.startswith("quality:")] + report.lines()
    poses = replace(poses, quality=report.to_json(), notes=notes)
    followed = float(getattr(motion, "meta", {}).get("camera_pan_deg", 0.0)) > quality.FOLLOWING_PAN_DEG
    report.check_motion(getattr(opts, "force", False), source=str(poses.source or ""),
                        max_centre_speed=quality.MAX_CENTRE_SPEED_FOLLOWED if followed else quality.MAX_CENTRE_SPEED)
    return poses


def run_job(opts: EstimateOptions, progress: Progress | None = None, *,
            detect: Callable[..., pose_io.PoseSequence] | None = None) -> JobResult:
    """Run the job and write its outputs: the VMD (``opts.output``, when given), the pose ``.npz``
    (``opts.npz_path()``) and the overlay video (``opts.overlay``).

    Args:
        opts: the options; validated here first (:meth:`EstimateOptions.validate`).
        progress: ``progress(stage, done, total)``.
        detect: replaces :func:`detect_stage` (the worker's test hook); called as ``detect(opts, progress)``.
    Raises:
        PipelineError: with a code from :data:`core.errors.CODES` and a message that says what to do. Nothing is
        written when the job fails or is cancelled: all files are staged and moved into place together at the end.
    """
    progress = progress or _no_progress
    opts.validate()
    for out in opts.outputs():  # what a killed earlier run left behind (older than an hour)
        remove_stale(out.resolve().parent)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    rest = model_name = None
    if opts.output:
        t1 = time.perf_counter()
        rest, model_name = check_model(opts.model)
        timings["load_model"] = time.perf_counter() - t1
    if opts.video and detect is None:
        from .video import probe

        probe(opts.video)  # a file FFmpeg cannot read fails here, before the detector starts
    t1 = time.perf_counter()
    poses = (detect or detect_stage)(opts, progress)
    if not isinstance(poses, pose_io.PoseSequence):
        raise TypeError(f"detect_stage returned {type(poses).__name__}, not a PoseSequence")
    timings["detect"] = time.perf_counter() - t1

    motion = None
    if opts.output:
        t1 = time.perf_counter()
        progress("retarget", 0, 1)
        motion = motion_stage(poses, rest, opts)
        motion, poses = _plausible_root(poses, motion, rest, opts)
        progress("retarget", 1, 1)
        timings["motion"] = time.perf_counter() - t1
        poses = _check_motion(poses, motion, opts)
        # what the cleanup did (repairs, floor, camera motion, foot locking) goes into the run's report, in place of
        # what an earlier run's cleanup said (a re-run from its pose file would list both)
        cleanup = motion.meta.get("cleanup", []) if isinstance(motion.meta, dict) else []
        if cleanup:
            kinds = {_note_kind(n) for n in cleanup}
            kept = [n for n in poses.notes if _note_kind(n) not in kinds]
            poses = replace(poses, notes=kept + [n for n in cleanup if not n.endswith("nothing to repair")])
        contacts = motion.meta.get("foot_contacts") if isinstance(motion.meta, dict) else None
        if contacts is not None and np.shape(contacts) == (len(poses), 4):
            poses = replace(poses, foot_contacts=contacts)  # per video frame, saved in the pose file

    vmd_path, npz_path, overlay_path = (Path(opts.output) if opts.output else None), opts.npz_path(), None
    bone_keys = 0
    name_notes: list[str] = []  # names cp932 cannot hold, written with a fallback (never a failure at this point)
    with OutputSet(overwrite=opts.overwrite) as outputs:
        t1 = time.perf_counter()
        progress("write", 0, 1)
        if vmd_path is not None:
            from ..formats import vmd

            names = {"model_name_en": rest.model_name_en, "notes": name_notes,
                     "english_names": {n: e for n, e in zip(rest.names, rest.names_en) if e}}
            if opts.dense:
                vmd_motion = motion.to_vmd(model_name, **names)
            else:  # MMD Bézier keys within --key-tolerance after FK on the model (core.keyreduce); --dense: every frame
                from ..keyreduce import reduce_motion

                t2 = time.perf_counter()
                deg, mm = opts.key_tolerance
                vmd_motion = reduce_motion(motion, rest, rot_tol_deg=deg, pos_tol_mm=mm).to_vmd(model_name, **names)
                timings["reduce"] = time.perf_counter() - t2
            bone_keys = len(vmd_motion.bone_keys)
            vmd.write(outputs.stage(vmd_path), vmd_motion, overwrite=True, notes=name_notes)
        if npz_path is not None:
            pose_io.save(outputs.stage(npz_path), poses, overwrite=True)
        timings["write"] = time.perf_counter() - t1
        progress("write", 1, 1)
        if opts.overlay:
            from .overlay import write_overlay

            t1 = time.perf_counter()
            overlay_path = Path(opts.overlay)
            write_overlay(opts.video, poses, outputs.stage(overlay_path), overwrite=True, progress=progress)
            timings["overlay"] = time.perf_counter() - t1
        try:
            outputs.commit()
        except FileExistsError as e:
            raise PipelineError("exists", str(e)) from e
    timings["total"] = time.perf_counter() - t0
    return JobResult(vmd_path=vmd_path, npz_path=npz_path, overlay_path=overlay_path, frames_in=len(poses),
                     frames_out=len(motion.frames) if motion is not None else 0,
                     gaps=int((~poses.detected).sum()), timings=timings,
                     notes=list(poses.notes) + list(dict.fromkeys(name_notes)),
                     poses=poses, motion=motion,
                     quality=quality.QualityReport.from_json(poses.quality) if poses.quality else None,
                     bone_keys=bone_keys)
