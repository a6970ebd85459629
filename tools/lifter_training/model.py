"""The torch training model of the lifter and its export to the numpy ``.npz`` that ``core.lifting.trained`` runs.

Architecture (docs/lifter.md §1): the temporal convolutional network of VideoPose3D (Pavllo et al., CVPR 2019):
an expanding convolution (width 3) from the 84 input features to ``channels``, then residual blocks of a dilated
width-3 convolution (dilation 3, 9, 27, ...) and a 1x1 convolution, each followed by batch norm, ReLU and dropout,
and a 1x1 output layer to 86 outputs (27 x 3 joints, the root-depth term, 4 contact logits). Valid (unpadded)
convolutions: an input window of ``T + receptive_field - 1`` frames gives ``T`` outputs, so training on windows and
inference on a whole edge-padded sequence compute the same function. Batch norm is folded into the convolutions on
export.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.lifting.trained import N_FEATURES, N_OUTPUTS

__all__ = ["TemporalLifter", "export_npz", "from_npz", "widen_input", "widen_output", "freeze_batch_norm"]


class TemporalLifter(nn.Module):
    """Dilated temporal convolutions over ``(B, T_in, 84)`` features -> ``(B, T_in - RF + 1, 86)`` outputs."""

    def __init__(self, channels: int = 256, blocks: int = 3, dropout: float = 0.15, n_features: int = N_FEATURES,
                 n_outputs: int = N_OUTPUTS):
        super().__init__()
        self.dilations = [1] + [3 ** (i + 1) for i in range(blocks)]
        self.receptive_field = 1 + 2 * sum(self.dilations)
        self.expand = nn.Conv1d(n_features, channels, 3, bias=False)
        self.expand_bn = nn.BatchNorm1d(channels, momentum=0.1)
        self.convs = nn.ModuleList()
        self.bns = nn.ModuleList()
        for d in self.dilations[1:]:
            self.convs.append(nn.Conv1d(channels, channels, 3, dilation=d, bias=False))
            self.bns.append(nn.BatchNorm1d(channels, momentum=0.1))
            self.convs.append(nn.Conv1d(channels, channels, 1, bias=False))
            self.bns.append(nn.BatchNorm1d(channels, momentum=0.1))
        self.shrink = nn.Conv1d(channels, n_outputs, 1)
        self.drop = nn.Dropout(dropout)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)
        x = self.drop(self.act(self.expand_bn(self.expand(x))))
        for i, d in enumerate(self.dilations[1:]):
            res = x[:, :, d:x.shape[2] - d]
            y = self.drop(self.act(self.bns[2 * i](self.convs[2 * i](x))))
            y = self.drop(self.act(self.bns[2 * i + 1](self.convs[2 * i + 1](y))))
            x = res + y
        return self.shrink(x).transpose(1, 2)


def _fold(conv: nn.Conv1d, bn: nn.BatchNorm1d | None):
    w = conv.weight.detach().double()                       # (Cout, Cin, k)
    b = conv.bias.detach().double() if conv.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    if bn is not None:
        g = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
        w = w * g[:, None, None]
        b = (b - bn.running_mean.double()) * g + bn.bias.detach().double()
    return w.permute(2, 1, 0).numpy().astype(np.float32), b.numpy().astype(np.float32)   # (k, Cin, Cout)


def export_npz(model: TemporalLifter, path: Path, meta: dict | None = None) -> Path:
    """Write the eval-mode model (batch norm folded) as ``w<i>, b<i>, dilations, n_layers, meta_*`` (no pickles)."""
    layers = [_fold(model.expand, model.expand_bn)]
    for c, bn in zip(model.convs, model.bns):
        layers.append(_fold(c, bn))
    layers.append(_fold(model.shrink, None))
    arrays = {f"w{i}": w for i, (w, _) in enumerate(layers)}
    arrays.update({f"b{i}": b for i, (_, b) in enumerate(layers)})
    arrays["dilations"] = np.array(model.dilations, dtype=np.int64)
    arrays["n_layers"] = np.array(len(layers), dtype=np.int64)
    for k, v in (meta or {}).items():
        arrays["meta_" + k] = np.array(str(v))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)
    return path


def from_npz(path: Path) -> TemporalLifter:
    """The torch model of an exported ``.npz`` (batch norm set to the identity plus the folded bias), in eval mode:
    lets the parity test compare numpy and torch on the shipped weights themselves."""
    with np.load(path, allow_pickle=False) as z:
        n = int(z["n_layers"])
        dil = [int(d) for d in z["dilations"]]
        layers = [(z[f"w{i}"], z[f"b{i}"]) for i in range(n)]
    model = TemporalLifter(layers[0][0].shape[2], len(dil) - 1, n_features=layers[0][0].shape[1],
                           n_outputs=layers[-1][0].shape[2])
    convs = [model.expand] + list(model.convs) + [model.shrink]
    bns = [model.expand_bn] + list(model.bns) + [None]
    with torch.no_grad():
        for (w, b), conv, bn in zip(layers, convs, bns):
            conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.transpose(2, 1, 0))))
            if bn is None:
                conv.bias.copy_(torch.from_numpy(b))
            else:
                bn.weight.fill_(1.0)
                bn.bias.copy_(torch.from_numpy(b))
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0 - bn.eps)
    return model.eval()


def widen_input(model: TemporalLifter, n_features: int) -> TemporalLifter:
    """The same network taking ``n_features >= `` its inputs: the new input columns start with zero weights, so the
    widened model computes exactly what the old one did until training gives them weight (warm start)."""
    old = model.expand
    if n_features < old.in_channels:
        raise ValueError(f"widen_input: {n_features} < {old.in_channels} inputs")
    new = nn.Conv1d(n_features, old.out_channels, old.kernel_size[0], bias=False)
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, :old.in_channels] = old.weight
    model.expand = new
    return model


def widen_output(model: TemporalLifter, n_outputs: int) -> TemporalLifter:
    """The same network with ``n_outputs >=`` its outputs: the old ones unchanged, the new ones 0 until trained."""
    old = model.shrink
    if n_outputs < old.out_channels:
        raise ValueError(f"widen_output: {n_outputs} < {old.out_channels} outputs")
    new = nn.Conv1d(old.in_channels, n_outputs, 1)
    with torch.no_grad():
        new.weight.zero_()
        new.bias.zero_()
        new.weight[:old.out_channels] = old.weight
        new.bias[:old.out_channels] = old.bias
    model.shrink = new
    return model


def freeze_batch_norm(model: TemporalLifter) -> TemporalLifter:
    """Batch norm layers held in eval mode (their running statistics fixed, scale and bias still trained) for
    fine-tuning a model loaded by :func:`from_npz`, whose folded batch norm is the identity plus a bias: with batch
    statistics it would compute another function. Call after every ``model.train()``."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.eval()
    return model
