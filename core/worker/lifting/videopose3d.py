"""VideoPose3D temporal lifting: COCO-17 2D keypoint sequences -> H36M-17 3D joints (worker side, torch).

Model: Pavllo, Feichtenhofer, Grangier, Auli, "3D human pose estimation in video with temporal convolutions and
semi-supervised training", CVPR 2019 (github.com/facebookresearch/VideoPose3D, ``common/model.py``). Written here
from the paper and the reference's documented layout; its ``state_dict`` has the reference's keys and shapes so the
official checkpoints (``pretrained_h36m_detectron_coco.bin``, ``pretrained_h36m_cpn.bin``: a ``torch.save`` dict
with ``model_pos`` and, for models trained semi-supervised, ``model_traj``) load unchanged with ``strict=True``:

* ``expand_conv.weight`` ``(C, J_in * F_in, w_0)``, ``expand_bn.*`` ``(C,)``: a ``w_0``-wide convolution over time of
  the flattened 2D joints, batch norm, ReLU;
* for each further filter width ``w_i`` a residual block: ``layers_conv.{2i}`` ``(C, C, w_i)`` with dilation
  ``w_0 * ... * w_{i-1}``, ``layers_bn.{2i}``, ReLU, ``layers_conv.{2i+1}`` ``(C, C, 1)``, ``layers_bn.{2i+1}``, ReLU,
  plus the input cropped by the block's padding (shifted by the causal offset for causal models);
* ``shrink`` ``(J_out * 3, C, 1)`` + bias: the 3D joints. Dropout (p = 0.25 in training) is the identity here.

Every convolution is "valid", so ``T + receptive_field - 1`` input frames give ``T`` output frames; the receptive
field is ``w_0 * w_1 * ...`` (243 for 3,3,3,3,3; 27 for 3,3,3). Inference as the reference's ``run.py``
(``evaluate`` with an ``UnchunkedGenerator``): 2D px normalised by ``normalize_screen_coordinates``
(``x / w * 2 - [1, h / w]``: [0, w] -> [-1, 1], aspect kept), edge-replication padding of ``(rf - 1) / 2`` frames at
both ends (``rf - 1`` before and none after for causal models), horizontal-flip test-time augmentation (negate x,
swap left/right joints with ``skeletons.COCO17_MIRROR`` on input and ``skeletons.H36M17_MIRROR`` on output, average
with the unflipped pass; the trajectory model's output is only negated in x). Long sequences run in chunks of
``chunk_frames`` output frames, each with its receptive-field context, so memory stays bounded; the result equals one
pass over the whole sequence.

Input joint order: ``pretrained_h36m_detectron_coco.bin`` takes COCO-17 keypoints (what detectron2 gives);
``pretrained_h36m_cpn.bin`` was trained on CPN detections in the Human3.6M 17-joint order (the reference's
``h36m_metadata`` symmetry). The lifter always takes COCO-17 and, for ``input_joints="h36m17"``, converts with
``skeletons.coco17_to_h36m17`` (pelvis, spine, thorax and head built from COCO points: an approximation of what CPN
detects, notably Head is the mid-eye point rather than the head top) and mirrors with ``H36M17_MIRROR``. A
checkpoint does not record its input order: ``from_checkpoint`` takes ``input_joints`` or guesses ``"h36m17"`` when
the file name contains ``cpn`` and ``"coco17"`` otherwise, and says so in ``notes``.

Output: ``(T, 17, 3)`` H36M-17 joints, ``camera`` frame of ``core.conventions`` (x right, y down, z forward), metres,
root-relative; ``model_traj`` when present gives the root (pelvis) position ``(T, 3)`` in the same frame.

Checkpoints are read with ``torch.load(..., weights_only=True)``: no arbitrary unpickling. The official files also
pickle the training generator's ``numpy.random.RandomState`` and the optimizer state; those numpy globals are mapped
to an inert placeholder (``_Discarded``) so the weights load while nothing from numpy is executed.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ... import filters, skeletons
from ...errors import PipelineError

#: 2D joint orders a checkpoint may have been trained on.
INPUT_JOINTS = ("coco17", "h36m17")

__all__ = ["INPUT_JOINTS", "Architecture", "CheckpointError", "LiftResult", "VideoPose3DLifter", "load_checkpoint",
           "normalize_screen_coordinates", "fill_gaps", "lift_pose_sequence", "temporal_model_class"]


class CheckpointError(PipelineError, ValueError):
    """A checkpoint that is not a VideoPose3D temporal model this lifter can use (code ``"bad_input"``)."""

    def __init__(self, message: str):
        super().__init__("bad_input", message)


# ------------------------------------------------------------------------------------------------ architecture
_BN_PARAMS = ("weight", "bias", "running_mean", "running_var")


@dataclass(frozen=True)
class Architecture:
    """Hyper-parameters of one temporal model, as far as a ``state_dict`` determines them.

    Attributes:
        filter_widths: odd temporal kernel widths, e.g. ``(3, 3, 3, 3, 3)``.
        channels: convolution channels ``C`` (1024 in the paper).
        num_joints_in: 2D joints ``J_in`` (17, COCO order); in_features: values per joint (2: x, y; 3: + confidence).
        num_joints_out: 3D joints ``J_out`` (17 for the pose model, 1 for the trajectory model).
        causal: causal convolutions (a weights-only checkpoint cannot tell; the reference's ``--causal``).
    """

    filter_widths: tuple[int, ...]
    channels: int
    num_joints_in: int = 17
    in_features: int = 2
    num_joints_out: int = 17
    causal: bool = False

    @property
    def receptive_field(self) -> int:
        """Input frames that determine one output frame: ``prod(filter_widths)``."""
        return int(np.prod(self.filter_widths))

    @property
    def pads(self) -> tuple[int, ...]:
        """Per-block padding: ``w_0 // 2`` then ``(w_i - 1) * dilation_i / 2``; ``1 + 2 * sum`` = receptive field."""
        pads = [self.filter_widths[0] // 2]
        dilation = self.filter_widths[0]
        for w in self.filter_widths[1:]:
            pads.append((w - 1) * dilation // 2)
            dilation *= w
        return tuple(pads)

    @property
    def causal_shifts(self) -> tuple[int, ...]:
        """Per-block residual offsets: ``w_i // 2 * dilation_i`` for causal models, else 0."""
        if not self.causal:
            return (0,) * len(self.filter_widths)
        shifts = [self.filter_widths[0] // 2]
        dilation = self.filter_widths[0]
        for w in self.filter_widths[1:]:
            shifts.append(w // 2 * dilation)
            dilation *= w
        return tuple(shifts)

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        """``state_dict`` key -> shape of the reference layout (``num_batches_tracked`` keys are ``()``)."""
        c = self.channels
        shapes: dict[str, tuple[int, ...]] = {
            "expand_conv.weight": (c, self.num_joints_in * self.in_features, self.filter_widths[0])}
        bns = ["expand_bn"]
        for i, w in enumerate(self.filter_widths[1:]):
            shapes[f"layers_conv.{2 * i}.weight"] = (c, c, w)
            shapes[f"layers_conv.{2 * i + 1}.weight"] = (c, c, 1)
            bns += [f"layers_bn.{2 * i}", f"layers_bn.{2 * i + 1}"]
        for bn in bns:
            for p in _BN_PARAMS:
                shapes[f"{bn}.{p}"] = (c,)
            shapes[f"{bn}.num_batches_tracked"] = ()
        shapes["shrink.weight"] = (self.num_joints_out * 3, c, 1)
        shapes["shrink.bias"] = (self.num_joints_out * 3,)
        return shapes

    @classmethod
    def from_state_dict(cls, state: dict, *, causal: bool = False, num_joints_in: int = 17,
                        what: str = "model_pos") -> "Architecture":
        """Infer the architecture from tensor shapes, then check every key against the reference layout.

        Args:
            state: ``{key: tensor or array}``; causal: see the class; num_joints_in: 2D joints the caller feeds;
            what: name used in messages.
        Returns:
            Architecture.
        Raises:
            CheckpointError: missing/unexpected keys or wrong shapes (all listed), even widths, an input width that
                is not ``num_joints_in`` x 2 or 3.
        """
        def shape(key: str) -> tuple[int, ...]:
            return tuple(int(s) for s in state[key].shape)

        if "expand_conv.weight" not in state or "shrink.weight" not in state:
            keys = sorted(state)[:8]
            raise CheckpointError(f"{what}: not a VideoPose3D temporal model: no expand_conv.weight/shrink.weight "
                                  f"(keys start {keys})")
        ew = shape("expand_conv.weight")
        sw = shape("shrink.weight")
        if len(ew) != 3 or len(sw) != 3:
            raise CheckpointError(f"{what}: expand_conv.weight {ew} / shrink.weight {sw} are not Conv1d weights")
        channels, in_ch, w0 = ew
        widths = [w0]
        i = 0
        while f"layers_conv.{2 * i}.weight" in state:
            s = shape(f"layers_conv.{2 * i}.weight")
            if len(s) != 3:
                raise CheckpointError(f"{what}: layers_conv.{2 * i}.weight has shape {s}, not a Conv1d weight")
            widths.append(s[2])
            i += 1
        even = [w for w in widths if w % 2 == 0]
        if even:
            raise CheckpointError(f"{what}: filter widths {tuple(widths)} include even widths {even}; "
                                  "VideoPose3D supports odd widths only")
        if in_ch % num_joints_in or in_ch // num_joints_in not in (2, 3):
            raise CheckpointError(f"{what}: expand_conv.weight takes {in_ch} input channels; this lifter feeds "
                                  f"{num_joints_in} COCO-17 joints x 2 (x, y) or x 3 (x, y, confidence)")
        if sw[0] % 3:
            raise CheckpointError(f"{what}: shrink.weight gives {sw[0]} outputs, not a multiple of 3 (x, y, z)")
        arch = cls(tuple(widths), channels, num_joints_in, in_ch // num_joints_in, sw[0] // 3, bool(causal))
        arch.check_state_dict(state, what=what)
        return arch

    def check_state_dict(self, state: dict, *, what: str = "model_pos") -> None:
        """Compare ``state`` with :meth:`expected_shapes`; ``num_batches_tracked`` keys may be absent (old torch).

        Raises:
            CheckpointError: listing every missing key, unexpected key and shape mismatch.
        """
        expected = self.expected_shapes()
        missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
        unexpected = [k for k in state if k not in expected]
        wrong = [f"{k}: {tuple(state[k].shape)} (expected {expected[k]})" for k in expected
                 if k in state and tuple(int(s) for s in state[k].shape) != expected[k]]
        if missing or unexpected or wrong:
            parts = []
            if missing:
                parts.append(f"missing keys {missing}")
            if unexpected:
                parts.append(f"unexpected keys {unexpected}")
            if wrong:
                parts.append(f"mismatching shapes {wrong}")
            raise CheckpointError(
                f"{what} does not fit a VideoPose3D temporal model with filter widths {self.filter_widths}, "
                f"{self.channels} channels, {self.num_joints_in}x{self.in_features} inputs, "
                f"{self.num_joints_out} joints out: " + "; ".join(parts))


# ------------------------------------------------------------------------------------------------ torch model
@functools.lru_cache(maxsize=None)
def temporal_model_class():
    """The ``torch.nn.Module`` class of the temporal model (built on first use so importing this module needs no torch).

    ``TemporalModel(arch: Architecture)``; ``forward(x)``: ``x`` ``(B, T + rf - 1, J_in, F_in)`` float ->
    ``(B, T, J_out, 3)``.
    """
    import torch
    from torch import nn

    class TemporalModel(nn.Module):
        """VideoPose3D temporal convolutional model; parameter names follow the reference (module docstring)."""

        def __init__(self, arch: Architecture):
            super().__init__()
            self.arch = arch
            c = arch.channels
            self.expand_conv = nn.Conv1d(arch.num_joints_in * arch.in_features, c, arch.filter_widths[0],
                                         bias=False)
            self.expand_bn = nn.BatchNorm1d(c, momentum=0.1)
            convs: list[nn.Module] = []
            bns: list[nn.Module] = []
            dilation = arch.filter_widths[0]
            for w in arch.filter_widths[1:]:
                convs += [nn.Conv1d(c, c, w, dilation=dilation, bias=False), nn.Conv1d(c, c, 1, bias=False)]
                bns += [nn.BatchNorm1d(c, momentum=0.1), nn.BatchNorm1d(c, momentum=0.1)]
                dilation *= w
            self.layers_conv = nn.ModuleList(convs)
            self.layers_bn = nn.ModuleList(bns)
            self.shrink = nn.Conv1d(c, arch.num_joints_out * 3, 1)
            self._crops = list(zip(arch.pads[1:], arch.causal_shifts[1:]))

        def forward(self, x: "torch.Tensor") -> "torch.Tensor":
            a = self.arch
            if x.ndim != 4 or x.shape[2] != a.num_joints_in or x.shape[3] != a.in_features:
                raise ValueError(f"TemporalModel expects (B, T, {a.num_joints_in}, {a.in_features}), "
                                 f"got {tuple(x.shape)}")
            if x.shape[1] < a.receptive_field:
                raise ValueError(f"TemporalModel needs at least {a.receptive_field} input frames, got {x.shape[1]}")
            b = x.shape[0]
            h = x.reshape(b, x.shape[1], -1).transpose(1, 2)
            h = torch.relu(self.expand_bn(self.expand_conv(h)))
            for i, (pad, shift) in enumerate(self._crops):
                res = h[:, :, pad + shift: h.shape[2] - pad + shift]
                h = torch.relu(self.layers_bn[2 * i](self.layers_conv[2 * i](h)))
                h = res + torch.relu(self.layers_bn[2 * i + 1](self.layers_conv[2 * i + 1](h)))
            out = self.shrink(h)
            return out.transpose(1, 2).reshape(b, -1, a.num_joints_out, 3)

    return TemporalModel


def __getattr__(name: str) -> Any:  # PEP 562: ``videopose3d.TemporalModel`` imports torch only when asked for
    if name == "TemporalModel":
        return temporal_model_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ------------------------------------------------------------------------------------------------ checkpoints
class _Discarded:
    """Inert stand-in for the numpy objects an official checkpoint pickles besides the weights (random state)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __new__(cls, *args: Any, **kwargs: Any) -> "_Discarded":
        return super().__new__(cls)

    def __setstate__(self, state: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> "_Discarded":
        return _Discarded()


_DISCARDED_NAMES = (
    "numpy.random.__RandomState_ctor", "numpy.random._pickle.__RandomState_ctor",
    "numpy.random._pickle.__randomstate_ctor", "numpy.random._pickle.__bit_generator_ctor",
    "numpy.random.mtrand.RandomState", "numpy.random._mt19937.MT19937",
    "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
    "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar", "numpy.ndarray", "numpy.dtype",
    "_codecs.encode",
)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a VideoPose3D checkpoint with ``torch.load(weights_only=True)`` onto the CPU.

    Args:
        path: ``.bin`` written by the reference's ``run.py`` (a dict with ``model_pos``, optional ``model_traj``,
            ``epoch``, ``lr``, ``optimizer``, ``random_state``...) or a bare temporal-model ``state_dict``.
    Returns:
        ``{"model_pos": state_dict, "model_traj": state_dict or None, "epoch": int or None, "causal": bool or None}``
        (numpy objects in the file are replaced by inert placeholders).
    Raises:
        FileNotFoundError: no such file.
        CheckpointError: unreadable, not weights-only-loadable, or no ``model_pos``.
    """
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    extra = [(_Discarded, name) for name in _DISCARDED_NAMES]
    try:
        safe = getattr(torch.serialization, "safe_globals", None)
        if safe is not None:
            with safe(extra):
                raw = torch.load(path, map_location="cpu", weights_only=True)
        else:  # pragma: no cover - torch < 2.5
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{path}: not a loadable weights-only torch checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: holds a {type(raw).__name__}, not a checkpoint dict")
    if "model_pos" in raw:
        pos, traj = raw["model_pos"], raw.get("model_traj")
    elif "expand_conv.weight" in raw:
        pos, traj = raw, None
    else:
        raise CheckpointError(f"{path}: no 'model_pos' in the checkpoint (keys {sorted(map(str, raw))[:10]})")
    for what, sd in (("model_pos", pos), ("model_traj", traj)):
        if sd is None:
            continue
        if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
            raise CheckpointError(f"{path}: {what} is not a state_dict of tensors")
    causal = raw.get("causal")
    epoch = raw.get("epoch")
    return {"model_pos": pos, "model_traj": traj, "epoch": epoch if isinstance(epoch, int) else None,
            "causal": bool(causal) if isinstance(causal, bool) else None}


def _build_model(state: dict, arch: Architecture, device):
    """Instantiate, fill missing ``num_batches_tracked`` (old checkpoints), ``load_state_dict(strict=True)``, eval."""
    import torch

    model = temporal_model_class()(arch)
    state = dict(state)
    for key in arch.expected_shapes():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.tensor(0, dtype=torch.long)
    model.load_state_dict(state, strict=True)
    return model.eval().to(device)


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
        arch = Architecture.from_state_dict(ckpt["model_pos"], causal=causal, what=f"{path} model_pos")
        if filter_widths is not None and tuple(filter_widths) != arch.filter_widths:
            want = Architecture(tuple(int(w) for w in filter_widths), arch.channels, arch.num_joints_in,
                                arch.in_features, arch.num_joints_out, arch.causal)
            try:
                want.check_state_dict(ckpt["model_pos"], what=f"{path} model_pos")
            except CheckpointError as e:
                raise CheckpointError(f"{e} (the checkpoint's own filter widths are {arch.filter_widths})") from None
        if arch.num_joints_out != 17:
            raise CheckpointError(f"{path}: model_pos outputs {arch.num_joints_out} joints; this lifter needs the "
                                  "17 Human3.6M joints (a HumanEva or other-dataset checkpoint?)")
        model_pos = _build_model(ckpt["model_pos"], arch, torch_device)
        model_traj = None
        if ckpt["model_traj"] is not None:
            tarch = Architecture.from_state_dict(ckpt["model_traj"], causal=causal, what=f"{path} model_traj")
            if tarch.num_joints_out != 1 or tarch.receptive_field != arch.receptive_field \
                    or tarch.in_features != arch.in_features:
                raise CheckpointError(f"{path}: model_traj (widths {tarch.filter_widths}, {tarch.num_joints_out} "
                                      f"joints out) does not pair with model_pos (widths {arch.filter_widths})")
            model_traj = _build_model(ckpt["model_traj"], tarch, torch_device)
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
        A new PoseSequence with ``joints_3d`` ``(T, 27, 3)`` CANONICAL (H36M-17 + NaN extras), ``lifter =
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
    res = lifter.lift(kp, poses.image_size)
    joints = skeletons.h36m17_to_canonical(res.joints)
    notes = list(poses.notes) + list(lifter.notes)
    notes.append(f"lifted with VideoPose3D (receptive field {lifter.receptive_field} frames"
                 f"{', flip augmentation' if lifter.flip_augment else ''}"
                 f"{', trajectory model' if res.trajectory is not None else ''})")
    if progress:
        progress("lift", n, n)
    return dataclasses.replace(poses, joints_3d=joints, lifter="videopose3d",
                               trajectory=res.trajectory if res.trajectory is not None else poses.trajectory,
                               notes=notes)
