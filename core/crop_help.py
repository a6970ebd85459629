"""Crop help: find the still half of a side-by-side video (numpy only).

Anime dance uploads often put a still reference image beside the animated dancer (the shared
``anime_dance_sidebyside_1536x768_25fps.mp4``: a still on the left, the dance on the right). A detector run on the
whole frame may follow the still figure, which gives a motion that never moves. :func:`find_static_half` looks at
a few frames sampled from the window and tells whether one half (left/right, or top/bottom) does not change while
the other does; :attr:`CropSuggestion.crop` is then the moving half, in px of the source frame, for ``--crop`` (the
worker applies it when no crop was given, and says so).

Motion energy of a region = the mean over its pixels of the temporal standard deviation of the grey level over the
sampled frames (``image`` px, ``core.conventions``; frames subsampled to about 128 px on the longer side). A half is
still when its energy is under ``still_level`` grey levels *and* under ``ratio`` x the other half's, and the other
half's is at least ``moving_level``. A still image re-encoded with the video stays within a fraction of a grey level
(0.0 on the shared clip's reference half), while a filmed background that nobody walks through still carries sensor
noise, flicker and compression noise of a grey level or more, so ``still_level`` is 1: an empty part of a real shot
is not cropped away.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CropSuggestion", "find_static_half", "motion_energy"]


@dataclass
class CropSuggestion:
    """What :func:`find_static_half` found.

    Attributes:
        crop: ``(x, y, w, h)`` px of the moving half in the source frame, or None (no still half).
        still: ``"left"``, ``"right"``, ``"top"``, ``"bottom"`` or ``""``.
        energies: region -> motion energy (grey levels).
        note: one line for a user.
    """

    crop: tuple[int, int, int, int] | None
    still: str
    energies: dict
    note: str


def motion_energy(frames) -> np.ndarray:
    """Per-pixel temporal standard deviation of the grey level: ``(N, H, W, 3)`` uint8 RGB -> ``(h, w)`` float64
    on the subsampled grid (grey = mean of R, G, B)."""
    f = np.asarray(frames)
    if f.ndim != 4 or f.shape[-1] != 3:
        raise ValueError(f"motion_energy: expected (N, H, W, 3) frames, got {f.shape}")
    s = max(1, max(f.shape[1], f.shape[2]) // 128)
    grey = f[:, ::s, ::s].astype(np.float64).mean(axis=-1)
    return grey.std(axis=0)


def find_static_half(frames, *, frame_size: tuple[int, int] | None = None, ratio: float = 0.15,
                     still_level: float = 1.0, moving_level: float = 4.0) -> CropSuggestion:
    """Find a still half beside a moving one (see the module docstring).

    Args:
        frames: ``(N, H, W, 3)`` uint8 RGB frames sampled across the window (N >= 2; about 10-30 spread over a few
            seconds is enough), possibly subsampled.
        frame_size: ``(width, height)`` px of the source frames when ``frames`` are subsampled (the crop is given
            in source px); default the frames' own size.
        ratio, still_level, moving_level: thresholds (module docstring).
    Returns:
        :class:`CropSuggestion` (``crop`` None when no half is still, or fewer than 2 frames).
    Raises:
        ValueError: frames of the wrong shape.
    """
    f = np.asarray(frames)
    if f.ndim != 4 or f.shape[-1] != 3:
        raise ValueError(f"find_static_half: expected (N, H, W, 3) frames, got {f.shape}")
    N, H, W = f.shape[:3]
    if frame_size is not None:
        W, H = int(frame_size[0]), int(frame_size[1])
    if N < 2:
        return CropSuggestion(None, "", {}, "")
    e = motion_energy(f)
    h, w = e.shape
    regions = {"left": e[:, : w // 2], "right": e[:, w - w // 2:], "top": e[: h // 2], "bottom": e[h - h // 2:]}
    energy = {k: float(v.mean()) for k, v in regions.items()}
    boxes = {"left": (W - W // 2, 0, W // 2, H), "right": (0, 0, W - W // 2, H),
             "top": (0, H - H // 2, W, H // 2), "bottom": (0, 0, W, H - H // 2)}
    other = {"left": "right", "right": "left", "top": "bottom", "bottom": "top"}
    best, best_r = "", np.inf
    for still, moving in other.items():
        es, em = energy[still], energy[moving]
        if es <= still_level and em >= moving_level and es <= ratio * em and es / em < best_r:
            best, best_r = still, es / em
    if not best:
        return CropSuggestion(None, "", energy, "")
    crop = boxes[best]
    note = (f"the {best} half of the frame is still (motion {energy[best]:.1f} vs {energy[other[best]]:.1f} grey "
            f"levels): a reference image beside the dancer; analysing only the {other[best]} half, "
            f"--crop {crop[0]},{crop[1]},{crop[2]},{crop[3]}")
    return CropSuggestion(crop, best, energy, note)
