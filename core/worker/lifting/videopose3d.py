"""VideoPose3D temporal lifting: COCO-17 2D keypoint sequences -> H36M-17 3D joints (worker side, torch).

The network (its layout and the official checkpoints' ``state_dict`` keys) is
:mod:`core.worker.lifting.vp3d_network`; reading and checking checkpoint files is
:mod:`core.worker.lifting.vp3d_checkpoint`. This module is the lifter adapter, and re-exports the names of both
that callers use (:class:`Architecture`, :func:`temporal_model_class`, ``TemporalModel``, :class:`CheckpointError`,
:func:`load_checkpoint`). Importing any of the three needs no torch.

Model: Pavllo, Feichtenhofer, Grangier, Auli, "3D human pose estimation in video with temporal convolutions and
semi-supervised training", CVPR 2019 (github.com/facebookresearch/VideoPose3D).

Inference as the reference's ``run.py`` (``evaluate`` with an ``UnchunkedGenerator``): 2D px normalised by
``normalize_screen_coordinates`` (``x / w * 2 - [1, h / w]``: [0, w] -> [-1, 1], aspect kept), edge-replication
padding of ``(rf - 1) / 2`` frames at both ends (``rf - 1`` before and none after for causal models),
horizontal-flip test-time augmentation (negate x, swap left/right joints with ``skeletons.COCO17_MIRROR`` on input
and ``skeletons.H36M17_MIRROR`` on output, average with the unflipped pass; the trajectory model's output is only
negated in x). Long sequences run in chunks of ``chunk_frames`` output frames, each with its receptive-field
context, so memory stays bounded; the result equals one pass over the whole sequence.

Input joint order: ``pretrained_h36m_detectron_coco.bin`` takes COCO-17 keypoints (what detectron2 gives);
``pretrained_h36m_cpn.bin`` was trained on CPN detections in the Human3.6M 17-joint order (the reference's
``h36m_metadata`` symmetry). The lifter always takes COCO-17 and, for ``input_joints="h36m17"``, converts with
``skeletons.coco17_to_h36m17`` (pelvis, spine, thorax and head built from COCO points: an approximation of what CPN
detects, notably Head is the mid-eye point rather than the head top) and mirrors with ``H36M17_MIRROR``. A
checkpoint does not record its input order: ``from_checkpoint`` takes ``input_joints`` or guesses ``"h36m17"`` when
the file name contains ``cpn`` and ``"coco17"`` otherwise, and says so in ``notes``.

Output: ``(T, 17, 3)`` H36M-17 joints, ``camera`` frame of ``core.conventions`` (x right, y down, z forward), metres,
root-relative; ``model_traj`` when present gives the root (pelvis) position ``(T, 3)`` in the same frame.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ... import filters, skeletons
from .vp3d_checkpoint import CheckpointError, architecture_from_state_dict, check_state_dict, load_checkpoint
from .vp3d_network import Architecture, build_model, temporal_model_class

#: 2D joint orders a checkpoint may have been trained on.
INPUT_JOINTS = ("coco17", "h36m17")

__all__ = ["INPUT_JOINTS", "Architecture", "CheckpointError", "LiftResult", "VideoPose3DLifter", "load_checkpoint",
           "normalize_screen_coordinates", "fill_gaps", "lift_pose_sequence", "temporal_model_class"]


def __getattr__(name: str) -> Any:  # PEP 562: ``videopose3d.TemporalModel`` imports torch only when asked for
    if name == "TemporalModel":
        return temporal_model_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ------------------------------------------------------------------------------------------------ preprocessing
def normalize_screen_coordinates(xy: np.ndarray, w: float, h: float) -> np.ndarray:
    """Map image px to VideoPose3D's input range: ``xy / w * 2 - [1, h / w]`` ([0, w] -> [-1, 1], aspect kept).

    Args:
        xy: ``(..., 2)`` image px; w, h: image size px.
    Returns:
        ``(..., 2)`` float64.
    """
    xy = np.asarray(xy, dtype=np.float64)
    if xy.shape[-1:] != (2,):
        raise ValueError(f"normalize_screen_coordinates expects (..., 2), got {xy.shape}")
    return xy / w * 2.0 - np.array([1.0, h / w])


def fill_gaps(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fill NaN frames of each joint coordinate by linear interpolation in time (nearest value at the ends).

    Args:
        values: ``(T, J, D)``; a joint counts as missing in a frame when any of its D values is NaN.
    Returns:
        (filled ``(T, J, D)`` float64, missing ``(T, J)`` bool).
    Raises:
        ValueError: a joint that is missing in every frame (its index and COCO-17 name when J = 17).
    """
    v = np.array(values, dtype=np.float64)
    missing = ~np.all(np.isfinite(v), axis=-1)
    if not missing.any():
        return v, missing
    never = np.flatnonzero(missing.all(axis=0))
    if len(never) == v.shape[1]:
        raise ValueError(f"none of the {len(v)} frames has 2D keypoints; cannot lift")
    if len(never):
        names = [skeletons.COCO17[j] if v.shape[1] == 17 else str(j) for j in never]
        raise ValueError(f"joints {names} have no finite position in any frame; cannot lift")
    v[missing] = np.nan  # a joint with any NaN coordinate is missing as a whole
    filled, _ = filters.fill_gaps(v, np.arange(len(v), dtype=np.float64))
    return filled, missing


@dataclass
class LiftResult:
    """Output of :meth:`VideoPose3DLifter.lift`.

    Attributes:
        joints: ``(T, 17, 3)`` float32 H36M-17, camera frame, metres, root-relative (unless ``root_relative=False``).
        trajectory: ``(T, 3)`` float32 root position (camera frame, metres) from ``model_traj``, or None.
        filled: ``(T, 17)`` bool, 2D joints that were NaN and interpolated before lifting.
    """

    joints: np.ndarray
    trajectory: np.ndarray | None
    filled: np.ndarray


# ------------------------------------------------------------------------------------------------ lifter
class VideoPose3DLifter:
    """Lift COCO-17 2D keypoint sequences to H36M-17 3D joints with a VideoPose3D checkpoint.

    Build with :meth:`from_checkpoint`; call ``lifter(keypoints_coco17, image_size)`` -> ``(T, 17, 3)``, or
    :meth:`lift` for the trajectory as well. See the module docstring for the model and the inference procedure.

    Attributes:
        architecture: of the pose model; receptive_field: its receptive field in frames; device: torch device used;
        has_trajectory: a trajectory model was loaded; input_joints: ``"coco17"`` or ``"h36m17"`` (the 2D order the
        checkpoint was trained on; input is always COCO-17, converted when needed); notes: e.g. CUDA requested but
        unavailable, the guessed input order;
        last_trajectory: ``(T, 3)`` root positions of the latest call when ``has_trajectory``, else None.
    """

    def __init__(self, model_pos, model_traj=None, *, device: Any = "cpu", chunk_frames: int = 4096,
                 flip_augment: bool = True, input_joints: str = "coco17", notes: list[str] | None = None):
        if chunk_frames < 1:
            raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
        if input_joints not in INPUT_JOINTS:
            raise ValueError(f"input_joints must be one of {INPUT_JOINTS}, got {input_joints!r}")
        self.input_joints = input_joints
        self.model_pos = model_pos
        self.model_traj = model_traj
        self.architecture: Architecture = model_pos.arch
        self.device = device
        self.chunk_frames = int(chunk_frames)
        self.flip_augment = bool(flip_augment)
        self.notes = list(notes or [])
        self.last_trajectory: np.ndarray | None = None

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str = "cpu", *, causal: bool | None = None,
                        filter_widths: tuple[int, ...] | None = None, chunk_frames: int = 4096,
                        flip_augment: bool = True, input_joints: str | None = None) -> "VideoPose3DLifter":
        """Load a checkpoint in the official layout.

        Args:
            path: the ``.bin`` (see :func:`load_checkpoint`).
            device: ``"cpu"`` or ``"cuda"``/``"cuda:N"`` (falls back to CPU, with a note, when CUDA is unavailable).
            causal: causal convolutions; None: the checkpoint's ``causal`` entry if any, else False (the official
                checkpoints are not causal).
            filter_widths: the architecture you expect (e.g. ``(3, 3, 3, 3, 3)``); a checkpoint of another
                architecture is refused. None: take it from the checkpoint.
            chunk_frames: output frames per forward pass (memory bound); flip_augment: test-time flip averaging.
            input_joints: ``"coco17"`` or ``"h36m17"``, the 2D joint order the checkpoint was trained on; None:
                guessed from the file name (module docstring).
        Raises:
            FileNotFoundError; CheckpointError (message lists mismatching keys/shapes).
        """
        import torch

        ckpt = load_checkpoint(path)
        if causal is None:
            causal = bool(ckpt["causal"]) if ckpt["causal"] is not None else False
        notes: list[str] = []
        if input_joints is None:
            input_joints = "h36m17" if "cpn" in Path(path).name.lower() else "coco17"
            if input_joints == "h36m17":
                notes.append(f"{Path(path).name}: taken as a CPN checkpoint (Human3.6M-ordered 2D input); COCO-17 "
                             "keypoints are converted to that order")
        dev = str(device)
        if dev.startswith("cuda") and not torch.cuda.is_available():
            notes.append(f"device {dev!r} requested but CUDA is not available: running on the CPU")
            dev = "cpu"
        torch_device = torch.device(dev)
        arch = architecture_from_state_dict(ckpt["model_pos"], causal=causal, what=f"{path} model_pos")
        if filter_widths is not None and tuple(filter_widths) != arch.filter_widths:
            want = Architecture(tuple(int(w) for w in filter_widths), arch.channels, arch.num_joints_in,
                                arch.in_features, arch.num_joints_out, arch.causal)
            try:
                check_state_dict(want, ckpt["model_pos"], what=f"{path} model_pos")
            except CheckpointError as e:
                raise CheckpointError(f"{e} (the checkpoint's own filter widths are {arch.filter_widths})") from None
        if arch.num_joints_out != 17:
            raise CheckpointError(f"{path}: model_pos outputs {arch.num_joints_out} joints; this lifter needs the "
                                  "17 Human3.6M joints (a HumanEva or other-dataset checkpoint?)")
        model_pos = build_model(ckpt["model_pos"], arch, torch_device)
        model_traj = None
        if ckpt["model_traj"] is not None:
            tarch = architecture_from_state_dict(ckpt["model_traj"], causal=causal, what=f"{path} model_traj")
            if tarch.num_joints_out != 1 or tarch.receptive_field != arch.receptive_field \
                    or tarch.in_features != arch.in_features:
                raise CheckpointError(f"{path}: model_traj (widths {tarch.filter_widths}, {tarch.num_joints_out} "
                                      f"joints out) does not pair with model_pos (widths {arch.filter_widths})")
            model_traj = build_model(ckpt["model_traj"], tarch, torch_device)
        return cls(model_pos, model_traj, device=torch_device, chunk_frames=chunk_frames,
                   flip_augment=flip_augment, input_joints=input_joints, notes=notes)

    @property
    def receptive_field(self) -> int:
        """Receptive field of the pose model in frames (243 for 3,3,3,3,3)."""
        return self.architecture.receptive_field

    @property
    def has_trajectory(self) -> bool:
        """True when the checkpoint had a ``model_traj``."""
        return self.model_traj is not None

    def _prepare(self, keypoints: np.ndarray, image_size) -> tuple[np.ndarray, np.ndarray]:
        kp = np.asarray(keypoints, dtype=np.float64)
        if kp.ndim != 3 or kp.shape[1] != 17 or kp.shape[2] not in (2, 3):
            raise ValueError(f"keypoints must be (T, 17, 2 or 3) COCO-17 px, got {kp.shape}")
        if len(kp) == 0:
            raise ValueError("keypoints has no frames")
        try:
            w, h = (float(image_size[0]), float(image_size[1]))
        except (TypeError, IndexError, ValueError):
            raise ValueError(f"image_size must be (width, height) px, got {image_size!r}") from None
        if not (w > 0 and h > 0):
            raise ValueError(f"image_size must be positive, got {image_size!r}")
        feats = self.architecture.in_features
        if feats == 3 and kp.shape[2] != 3:
            raise ValueError("this checkpoint takes a confidence per keypoint: pass (T, 17, 3) keypoints")
        xy, missing = fill_gaps(kp[..., :2])
        x = normalize_screen_coordinates(xy, w, h)
        if feats == 3:
            conf = np.where(missing, 0.0, np.nan_to_num(kp[..., 2]))
            x = np.concatenate([x, conf[..., None]], axis=-1)
        if self.input_joints == "h36m17":
            x = skeletons.coco17_to_h36m17(x)
        return x, missing

    def _run(self, model, x: np.ndarray, mirror_out: np.ndarray | None) -> np.ndarray:
        """Pad, (flip), chunk and run ``model`` on normalised input ``x`` ``(T, 17, F)`` -> ``(T, J_out, 3)``."""
        import torch

        arch = model.arch
        rf = arch.receptive_field
        pad = (rf - 1) // 2
        shift = pad if arch.causal else 0
        padded = np.pad(x, ((pad + shift, pad - shift), (0, 0), (0, 0)), mode="edge")
        batch = padded[None]
        if self.flip_augment:
            mirror_in = skeletons.COCO17_MIRROR if self.input_joints == "coco17" else skeletons.H36M17_MIRROR
            flipped = padded[:, mirror_in].copy()
            flipped[..., 0] *= -1.0
            batch = np.stack([padded, flipped])
        n = len(x)
        out = np.empty((n, arch.num_joints_out, 3), dtype=np.float32)
        inp = torch.from_numpy(batch.astype(np.float32))
        with torch.inference_mode():
            for s in range(0, n, self.chunk_frames):
                e = min(n, s + self.chunk_frames)
                y = model(inp[:, s:e + rf - 1].to(self.device)).cpu().numpy()
                if self.flip_augment:
                    back = y[1] if mirror_out is None else y[1][:, mirror_out]
                    back = back.copy()
                    back[..., 0] *= -1.0
                    y = 0.5 * (y[0] + back)
                else:
                    y = y[0]
                out[s:e] = y
        return out

    def lift(self, keypoints: np.ndarray, image_size: tuple[float, float], *,
             root_relative: bool = True) -> LiftResult:
        """Lift a 2D sequence.

        Args:
            keypoints: ``(T, 17, 2|3)`` COCO-17 image px (+ confidence, used only by 3-feature checkpoints); NaN
                joints are interpolated in time first (see :func:`fill_gaps`).
            image_size: ``(width, height)`` px of the frame the keypoints refer to.
            root_relative: subtract the predicted pelvis so it is exactly at the origin (the model's pelvis output
                is near, not at, zero: it was trained on root-relative targets). False returns the raw output,
                identical to the reference's ``--viz-export`` without trajectory.
        Returns:
            LiftResult.
        Raises:
            ValueError: bad shapes/size, or a joint never seen.
        """
        x, missing = self._prepare(keypoints, image_size)
        joints = self._run(self.model_pos, x, skeletons.H36M17_MIRROR)
        if root_relative:
            joints = joints - joints[:, :1]
        traj = None
        if self.model_traj is not None:
            traj = self._run(self.model_traj, x, None)[:, 0]
        self.last_trajectory = traj
        return LiftResult(joints=joints.astype(np.float32), trajectory=traj, filled=missing)

    def __call__(self, keypoints: np.ndarray, image_size: tuple[float, float]) -> np.ndarray:
        """``(T, 17, 2|3)`` COCO-17 px -> ``(T, 17, 3)`` float32 H36M-17, camera frame, metres, root-relative."""
        return self.lift(keypoints, image_size).joints


def lift_pose_sequence(poses, lifter: VideoPose3DLifter,
                       progress: Callable[[str, int, int | None], None] | None = None):
    """Lift a :class:`core.pose_io.PoseSequence` (any 2D set convertible to COCO-17: COCO17, MEDIAPIPE33).

    Args:
        poses: with ``keypoints_2d`` in image px; frames whose 2D joints are NaN are interpolated before lifting.
        lifter: a loaded :class:`VideoPose3DLifter`.
        progress: ``progress(stage, done, total)`` callback, called with ``("lift", 0, T)`` and ``("lift", T, T)``.
    Returns:
        A new PoseSequence (each shot of ``poses.shots`` lifted on its own) with ``joints_3d`` ``(T, 27, 3)`` CANONICAL (H36M-17 + NaN extras), ``lifter =
        "videopose3d"``, ``trajectory`` from ``model_traj`` when the checkpoint has one (else the input's), and a
        note; other fields copied.
    Raises:
        ValueError: no 2D joints (e.g. a 3D import), or a 2D set that has no COCO-17 mapping.
    """
    import dataclasses

    if poses.keypoints_2d.shape[1] == 0:
        raise ValueError("this pose sequence has no 2D keypoints to lift")
    n = len(poses)
    if progress:
        progress("lift", 0, n)
    kp = poses.keypoints_coco17()
    from ...shots import lift_ranges

    # shot by shot (core.shots.lift_ranges): the temporal window must not look across a cut, where the camera changes
    parts = [lifter.lift(kp[a:b], poses.image_size) for a, b in lift_ranges(poses.shots, poses.detected)]
    joints = skeletons.h36m17_to_canonical(np.concatenate([r.joints for r in parts]))
    trajectory = (np.concatenate([r.trajectory for r in parts])
                  if all(r.trajectory is not None for r in parts) else None)
    notes = list(poses.notes) + list(lifter.notes)
    notes.append(f"lifted with VideoPose3D (receptive field {lifter.receptive_field} frames"
                 f"{', flip augmentation' if lifter.flip_augment else ''}"
                 f"{', trajectory model' if trajectory is not None else ''})")
    if progress:
        progress("lift", n, n)
    return dataclasses.replace(poses, joints_3d=joints, lifter="videopose3d",
                               trajectory=trajectory if trajectory is not None else poses.trajectory,
                               notes=notes)
