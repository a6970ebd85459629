"""VideoPose3D checkpoints: safe loading and checks of their state dicts against the network's layout (worker).

The official checkpoints (``pretrained_h36m_detectron_coco.bin``, ``pretrained_h36m_cpn.bin``, written by the
reference's ``run.py``) are a ``torch.save`` dict with ``model_pos`` and, for models trained semi-supervised,
``model_traj``: state dicts in the layout :mod:`core.worker.lifting.vp3d_network` describes. A bare
temporal-model ``state_dict`` is accepted too. :func:`architecture_from_state_dict` reads the architecture off
the tensor shapes and :func:`check_state_dict` lists every missing / unexpected key and wrong shape, so a
checkpoint that does not fit is refused with a :class:`CheckpointError` before a model is built from it.

Checkpoints are read with ``torch.load(..., weights_only=True)``: no arbitrary unpickling. The official files also
pickle the training generator's ``numpy.random.RandomState`` and the optimizer state; those numpy globals are mapped
to an inert placeholder (``_Discarded``) so the weights load while nothing from numpy is executed.

Importing this module needs numpy only (torch is imported inside :func:`load_checkpoint`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ...errors import PipelineError
from .vp3d_network import Architecture

__all__ = ["CheckpointError", "load_checkpoint", "architecture_from_state_dict", "check_state_dict"]


class CheckpointError(PipelineError, ValueError):
    """A checkpoint that is not a VideoPose3D temporal model this lifter can use (code ``"bad_input"``)."""

    def __init__(self, message: str):
        super().__init__("bad_input", message)


def architecture_from_state_dict(state: dict, *, causal: bool = False, num_joints_in: int = 17,
                                 what: str = "model_pos") -> Architecture:
    """Infer the :class:`Architecture` from tensor shapes, then check every key against the reference layout.

    Args:
        state: ``{key: tensor or array}``; causal: see :class:`Architecture`; num_joints_in: 2D joints the caller
        feeds; what: name used in messages.
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
    arch = Architecture(tuple(widths), channels, num_joints_in, in_ch // num_joints_in, sw[0] // 3, bool(causal))
    check_state_dict(arch, state, what=what)
    return arch


def check_state_dict(arch: Architecture, state: dict, *, what: str = "model_pos") -> None:
    """Compare ``state`` with ``arch.expected_shapes()``; ``num_batches_tracked`` keys may be absent (old torch).

    Raises:
        CheckpointError: listing every missing key, unexpected key and shape mismatch.
    """
    expected = arch.expected_shapes()
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
            f"{what} does not fit a VideoPose3D temporal model with filter widths {arch.filter_widths}, "
            f"{arch.channels} channels, {arch.num_joints_in}x{arch.in_features} inputs, "
            f"{arch.num_joints_out} joints out: " + "; ".join(parts))


# ------------------------------------------------------------------------------------------------ loading
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
