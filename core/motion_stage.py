"""The motion stage: 3D joints -> cleanup and smoothing -> root trajectory -> levelling -> floor and feet -> 30 fps ->
MMD bone keys (numpy only; the default path is ``core.motion_cleanup``).

It runs in the worker's whole-job orchestrator (``core.worker.job``) and inside Blender (the add-on's Apply reads a
pose ``.npz`` and calls :func:`motion_stage`), so it imports numpy and the standard library only. Its options are
:class:`core.options.MotionOptions`. Frames and units: ``core.conventions``.
"""
from __future__ import annotations

import numpy as np

from . import conventions, filters, pose_io, trajectory
from .errors import PipelineError
from .options import MotionOptions


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


def world_joints(poses: pose_io.PoseSequence, opts: MotionOptions) -> np.ndarray:
    """Smoothed absolute joints in the camera frame, levelled: ``(T, 27, 3)`` metres (``core.conventions``)."""
    t = poses.timestamps - poses.timestamps[0]
    j3 = _smooth_finite(poses.joints_3d, t, opts.smoothing)
    if poses.trajectory is not None and getattr(opts, "root", "auto") != "fit":
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
        absolute = absolute @ trajectory.levelling(j3, poses.camera_up).T
    return absolute


def load_rest(model: str | None):
    """The target skeleton and its name: read from a PMX (``core.formats.pmx``) or the built-in standard one.

    Raises:
        PipelineError: ``bad_model`` when the file is not a readable PMX.
    """
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


def motion_stage(poses: pose_io.PoseSequence, rest, opts: MotionOptions | None = None):
    """Smooth, place, level, resample to 30 fps and retarget onto ``rest``.

    By default (``opts.cleanup == "feet"``) this is ``core.motion_cleanup.clean_motion``: outlier, swap, root-jump
    and flip repair, adaptive (One Euro) smoothing, a floor plane per shot with foot contacts, camera-motion
    compensation (``opts.camera``) and foot locking; its report lines are in ``motion.meta["cleanup"]`` and the
    per-frame contacts (``core.contact.NPZ_KEY``) in ``motion.meta["foot_contacts"]``. ``cleanup="none"`` runs the
    former stage below unchanged (fixed Savitzky-Golay smoothing, a percentile ground shift). Either way, when the
    pose file has hand / face landmarks (``--hands`` / ``--face``), ``core.hands_face`` takes the wrists and head from
    them and keys the fingers and face morphs (unless ``opts.hands`` / ``opts.face`` is False; None, the default, keys
    what the file has).

    Args:
        poses: a pose sequence with ``joints_3d`` (``core.worker.job.detect_stage``, or ``core.pose_io.load``).
        rest: :class:`core.rest_skeleton.RestSkeleton` of the target model.
        opts: :class:`core.options.MotionOptions` (or any options object that extends it); default values if None.
    Returns:
        :class:`core.motion.BoneMotion` keyed at the frames of :func:`key_times`.
    Raises:
        PipelineError: ``bad_input`` (no 3D joints), ``bad_model`` (the model lacks a bone retargeting needs).
    """
    from .retarget import retarget

    opts = opts if opts is not None else MotionOptions()
    if poses.joints_3d is None:
        raise PipelineError("bad_input", "the pose sequence has no 3D joints")
    if getattr(opts, "cleanup", "feet") != "none":
        from .motion_cleanup import clean_motion

        motion, _ = clean_motion(_refined(poses, opts), rest, opts)
        return _with_hands_face(motion, poses, rest, opts)
    # --cleanup none: the former stage (Savitzky-Golay smoothing, retarget's percentile ground shift), kept as it was
    poses = _refined(poses, opts)
    absolute = world_joints(poses, opts)
    t = poses.timestamps - poses.timestamps[0]
    frames, t_keys = key_times(float(t[-1]), opts.key_fps)
    resampled = filters.resample(np.nan_to_num(absolute, nan=0.0), t, t_keys)
    missing = ~np.isfinite(absolute).all(axis=(0, 2))
    resampled[:, missing] = np.nan
    joints_mmd = conventions.camera_to_mmd(resampled)
    return _with_hands_face(retarget(joints_mmd, rest, frames=frames,
                                     twist_bones=getattr(opts, "twist_bones", True)), poses, rest, opts)


def _refined(poses: pose_io.PoseSequence, opts) -> pose_io.PoseSequence:
    """Hand and head points from the hand / face models where the pose file has them (``core.hands_face``)."""
    if getattr(poses, "hands", None) is None and getattr(poses, "face", None) is None:
        return poses
    from .hands_face import refine_joints

    return refine_joints(poses, hands=getattr(opts, "hands", None) is not False,
                         face=getattr(opts, "face", None) is not False)


def _with_hands_face(motion, poses: pose_io.PoseSequence, rest, opts):
    """Finger keys and face morphs where the pose file has hands / a face (``core.hands_face.add_hands_face``)."""
    if getattr(poses, "hands", None) is None and getattr(poses, "face", None) is None:
        return motion
    from .hands_face import add_hands_face

    return add_hands_face(motion, poses, rest, opts)
