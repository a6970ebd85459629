"""VideoPose3D's temporal convolutional network: its architecture, the torch module, model building (worker).

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
field is ``w_0 * w_1 * ...`` (243 for 3,3,3,3,3; 27 for 3,3,3).

Importing this module needs numpy only: torch is imported inside :func:`temporal_model_class` and
:func:`build_model`. Checkpoint files are read and checked by :mod:`core.worker.lifting.vp3d_checkpoint`; the
lifter that runs the model on 2D keypoint sequences is :mod:`core.worker.lifting.videopose3d`.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

from typing import Any

import numpy as np

__all__ = ["Architecture", "temporal_model_class", "build_model"]

_BN_PARAMS = ("weight", "bias", "running_mean", "running_var")


@dataclass(frozen=True)
class Architecture:
    """Hyper-parameters of one temporal model, as far as a ``state_dict`` determines them
    (:func:`core.worker.lifting.vp3d_checkpoint.architecture_from_state_dict` reads them off a checkpoint).

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


def __getattr__(name: str) -> Any:  # PEP 562: ``vp3d_network.TemporalModel`` imports torch only when asked for
    if name == "TemporalModel":
        return temporal_model_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_model(state: dict, arch: Architecture, device):
    """Instantiate, fill missing ``num_batches_tracked`` (old checkpoints), ``load_state_dict(strict=True)``, eval.

    Args:
        state: a ``state_dict`` of tensors that fits ``arch`` (checked beforehand by
            :func:`core.worker.lifting.vp3d_checkpoint.check_state_dict`); arch: its architecture; device: torch
            device.
    Returns:
        the ``TemporalModel`` on ``device``, in eval mode.
    Raises:
        RuntimeError: (from torch) keys or shapes that do not fit ``arch``.
    """
    import torch

    model = temporal_model_class()(arch)
    state = dict(state)
    for key in arch.expected_shapes():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.tensor(0, dtype=torch.long)
    model.load_state_dict(state, strict=True)
    return model.eval().to(device)
