"""The project's own temporal lifter: 2D keypoints -> root-relative 3D joints, root depth and foot contacts (numpy).

A dilated temporal convolutional network in the layout of VideoPose3D (Pavllo et al., CVPR 2019; docs/lifter.md
§1), trained in this repository on motion capture projected through random virtual cameras with a measured
detector-noise model (docs/lifter.md §2, §3; ``tools/train_lifter.py`` reproduces the weights). This module
is the inference: numpy and the standard library only (it runs wherever ``core`` runs, torch is not needed).

Input normalisation (:func:`normalise_keypoints`, shared with training so both see the same features):

1. pixels -> focal-normalised image coordinates ``u = (x - w/2) / f``, ``v = (y - h/2) / f`` with
   ``f = (w/2) / tan(hfov/2)``; an unknown field of view is taken as :data:`DEFAULT_HFOV_DEG`. Aspect ratio and
   image size then no longer matter; a wrong focal length scales only the root depth (the pose is unaffected).
2. per frame: centre ``c`` = the 2D ``Hip`` (``CANONICAL`` joint 0) when it is present, else the centre of the box
   around the present joints; scale ``s`` = the larger side of that box (focal units). Frames with fewer than
   :data:`MIN_JOINTS` present joints take ``c`` and ``s`` from the nearest frame that has them.
3. features per frame ``(84,)``: for each of the 27 ``CANONICAL`` joints ``((u - c_u) / s, (v - c_v) / s, conf)``
   (0, 0, 0 when missing: NaN, or confidence 0), then ``c_u, c_v, log s``.

4. (weights with :data:`N_FEATURES_WORLD` inputs) MediaPipe's 3D world landmarks, the second input
   (:func:`world_features`): per frame the 27 ``CANONICAL`` joints ``(x, y, z)``, ``camera`` axes, metres, relative
   to the Hip, then a presence flag (1, or 0 with all zeros when the frame has none: another detector, an
   undetected frame). The network was trained with this input both present (simulated from the measured error
   model, ``tools/lifter_training/world3d.py``) and absent, so it lifts 2D-only input too.

Output per frame: 27 joints ``(x, y, z)`` in the ``camera`` frame (``core.conventions``), metres, relative to the
``Hip``; ``d = log(z_root · s)`` (the root depth times the 2D scale, about the dancer's size in metres) so that the
root depth is ``z_root = exp(d) / s`` and the root is ``z_root · (c_u, c_v, 1)`` (through the 2D hip); and four
contact logits; weights with :data:`N_OUTPUTS_UP` outputs add the world's up direction in the camera frame (a
vector, normalised here: gravity's opposite as the camera sees it, from which the motion stage levels the camera's
tilt; trained on the random cameras' true up). Sequence edges are padded by repeating the first / last frame (as in training). :meth:`Lifter.lift`
then smooths the outputs over time with a small Gaussian (:data:`DEFAULT_SMOOTH_SIGMA`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import filters
from ..skeletons import CANONICAL, CANONICAL_MIRROR

__all__ = ["Lifter", "LiftOutput", "load_lifter", "lift_timed", "TRAINED_FPS", "LIFT_FPS", "normalise_keypoints",
           "gaussian_smooth", "DEFAULT_WEIGHTS",
           "WEIGHTS_WORLD", "WEIGHTS_2D",
           "DEFAULT_HFOV_DEG", "DEFAULT_SMOOTH_SIGMA", "CONTACT_ORDER", "N_FEATURES", "N_FEATURES_WORLD", "N_OUTPUTS",
           "N_OUTPUTS_UP", "CONTACTS",
           "MIN_JOINTS", "world_features"]

#: Shipped weights (CC BY-NC 4.0, see weights/LICENSE.md). For MediaPipe input: 2D keypoints + its world landmarks
#: in, and the world's up direction out; fine-tuned from the 2D-only weights (docs/lifter.md §4).
WEIGHTS_WORLD = Path(__file__).resolve().parent / "weights" / "mocap_tcn_world.npz"
#: For 2D-only input (COCO-17 / OpenPose keypoints of other detectors): 2D keypoints in.
WEIGHTS_2D = Path(__file__).resolve().parent / "weights" / "mocap_tcn.npz"
DEFAULT_WEIGHTS = WEIGHTS_WORLD

#: Horizontal field of view assumed when the caller does not know it (a typical phone / webcam video).
DEFAULT_HFOV_DEG = 60.0

#: Order of the four contact probabilities.
CONTACT_ORDER = ("left_heel", "left_toe", "right_heel", "right_toe")

N_JOINTS = len(CANONICAL)
N_FEATURES = N_JOINTS * 3 + 3
#: Inputs of weights that also take the 3D world landmarks (step 4 of the module docstring).
N_FEATURES_WORLD = N_FEATURES + N_JOINTS * 3 + 1
N_OUTPUTS = N_JOINTS * 3 + 1 + 4
#: Outputs of weights that also estimate the world's up direction in the camera frame (module docstring).
N_OUTPUTS_UP = N_OUTPUTS + 3
#: Slice of the contact logits in the output vector.
CONTACTS = slice(N_JOINTS * 3 + 1, N_JOINTS * 3 + 5)

#: A frame needs this many present joints to define its own centre and scale.
MIN_JOINTS = 4

#: Gaussian smoothing of the network's per-frame outputs (joints, depth term, contact logits), in frames: the raw
#: outputs carry frame-to-frame noise from the detector that a light filter removes without loss of accuracy
#: (chosen on training clips: lowest MPJPE, jitter near the truth's own; docs/lifter.md §5). 0 turns it off.
DEFAULT_SMOOTH_SIGMA = 1.5


def gaussian_smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian filter along axis 0 of ``(T, ...)`` (edges padded by repetition); ``sigma`` in frames, 0 = copy."""
    x = np.asarray(x)
    if sigma <= 0 or x.shape[0] < 2:
        return x.copy()
    r = int(math.ceil(3.0 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    xp = np.concatenate([np.repeat(x[:1], r, axis=0), x, np.repeat(x[-1:], r, axis=0)], axis=0)
    out = np.zeros_like(x, dtype=np.result_type(x.dtype, np.float32))
    n = x.shape[0]
    for i, w in enumerate(k):
        out += w * xp[i:i + n]
    return out


def focal_px(image_size, hfov_deg: float | None) -> float:
    """Focal length in pixels for an image ``(w, h)`` and horizontal field of view (degrees)."""
    w = float(image_size[0])
    hfov = DEFAULT_HFOV_DEG if hfov_deg is None else float(hfov_deg)
    if not 1.0 < hfov < 179.0:
        raise ValueError(f"hfov_deg must be in (1, 179) degrees, got {hfov}")
    return 0.5 * w / math.tan(math.radians(hfov) / 2.0)


def _fill_nearest(values: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Replace rows where ``ok`` is False by the nearest row (along axis -2 of (..., T, k)) where it is True."""
    t = ok.shape[-1]
    idx = np.arange(t)
    prev = np.where(ok, idx, -1)
    prev = np.maximum.accumulate(prev, axis=-1)
    nxt = np.where(ok, idx, t)
    nxt = np.flip(np.minimum.accumulate(np.flip(nxt, axis=-1), axis=-1), axis=-1)
    use_prev = (prev >= 0) & ((nxt >= t) | (idx - prev <= nxt - idx))
    src = np.where(use_prev, prev, np.minimum(nxt, t - 1))
    src = np.where((prev < 0) & (nxt >= t), idx, src)
    return np.take_along_axis(values, src[..., None], axis=-2)


def normalise_keypoints(keypoints: np.ndarray, image_size, hfov_deg: float | None = None,
                        focal: float | np.ndarray | None = None):
    """Camera-independent lifter features (module docstring, steps 1-3).

    Args:
        keypoints: ``(..., T, 27, 3)`` ``CANONICAL`` ``(x, y, confidence)``, image pixels (``core.conventions``);
            NaN coordinates or confidence <= 0 mean missing.
        image_size: ``(w, h)`` pixels (or an array ``(..., 2)`` broadcasting against the leading axes).
        hfov_deg: horizontal field of view, degrees; None: :data:`DEFAULT_HFOV_DEG`.
        focal: focal length in pixels (overrides ``hfov_deg``; may be an array over the leading axes).
    Returns:
        ``(features (..., T, 84) float32, centre (..., T, 2) float64 focal units, scale (..., T) float64,
        valid (..., T) bool)`` where ``valid`` marks frames with at least :data:`MIN_JOINTS` present joints.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    size = np.asarray(image_size, dtype=np.float64)
    lead = kp.shape[:-3]
    if focal is None:
        if size.ndim != 1:
            raise ValueError("normalise_keypoints: pass focal= when image sizes differ per sequence")
        focal = focal_px(size, hfov_deg)
    f = np.asarray(focal, dtype=np.float64)
    f = f.reshape(lead + (1, 1, 1)) if f.ndim else f
    half = 0.5 * (size.reshape(lead + (1, 1, 2)) if size.ndim > 1 else size)
    xy = kp[..., :2]
    conf = np.clip(np.nan_to_num(kp[..., 2], nan=0.0), 0.0, 1.0)
    present = np.all(np.isfinite(xy), axis=-1) & (conf > 0)
    conf = np.where(present, conf, 0.0)
    uv = (np.where(present[..., None], xy, 0.0) - half) / f
    big = 1e9
    lo = np.min(np.where(present[..., None], uv, big), axis=-2)
    hi = np.max(np.where(present[..., None], uv, -big), axis=-2)
    valid = present.sum(axis=-1) >= MIN_JOINTS
    box_c = 0.5 * (lo + hi)
    scale = np.max(hi - lo, axis=-1)
    valid &= scale > 1e-6
    centre = np.where(present[..., 0, None], uv[..., 0, :], box_c)
    if not np.all(valid):
        cs = np.concatenate([centre, scale[..., None]], axis=-1)
        cs = _fill_nearest(cs, valid)
        centre, scale = cs[..., :2], cs[..., 2]
        scale = np.where(scale > 1e-6, scale, 1.0)
    rel = (uv - centre[..., None, :]) / scale[..., None, None]
    rel = np.where(present[..., None], rel, 0.0)
    feats = np.concatenate([rel, conf[..., None]], axis=-1).reshape(kp.shape[:-2] + (N_JOINTS * 3,))
    glob = np.concatenate([centre, np.log(scale)[..., None]], axis=-1)
    return np.concatenate([feats, glob], axis=-1).astype(np.float32), centre, scale, valid


_MIRROR = np.array(CANONICAL_MIRROR)
#: Contact order under mirroring (left heel, left toe, right heel, right toe -> right ..., left ...).
_CONTACT_MIRROR = np.array([2, 3, 0, 1])


def _unmirror(out: np.ndarray, has_up: bool) -> np.ndarray:
    """Raw outputs ``(T, 86|89)`` of a mirrored input, mapped back to the direct view: joints and their left/right
    labels mirrored (camera x -> -x), the depth term unchanged, contacts exchanged, the up vector's x negated."""
    o = out.copy()
    j = out[:, :N_JOINTS * 3].reshape(-1, N_JOINTS, 3)[:, _MIRROR] * np.array([-1.0, 1.0, 1.0])
    o[:, :N_JOINTS * 3] = j.reshape(-1, N_JOINTS * 3)
    o[:, CONTACTS] = out[:, CONTACTS][:, _CONTACT_MIRROR]
    if has_up:
        o[:, N_OUTPUTS] = -out[:, N_OUTPUTS]
    return o


def world_features(joints_3d: np.ndarray | None, frames: int, present: np.ndarray | None = None) -> np.ndarray:
    """The world-landmark features (module docstring, step 4): ``(T, 82)`` float32.

    Args:
        joints_3d: ``(T, 27, 3)`` ``CANONICAL`` joints, ``camera`` axes, metres (any origin: made Hip-relative here),
            or None (no 3D input: all zeros, flag 0).
        frames: T.
        present: ``(T,)`` bool, frames whose 3D is a real detection (default: those with every joint finite).
    Raises:
        ValueError: ``joints_3d`` not of shape ``(frames, 27, 3)``.
    """
    out = np.zeros((frames, N_JOINTS * 3 + 1), dtype=np.float32)
    if joints_3d is None:
        return out
    j = np.asarray(joints_3d, dtype=np.float64)
    if j.shape != (frames, N_JOINTS, 3):
        raise ValueError(f"world landmarks must be ({frames}, {N_JOINTS}, 3) CANONICAL metres, got {j.shape}")
    ok = np.isfinite(j).all(axis=(1, 2))
    if present is not None:
        ok &= np.asarray(present, dtype=bool)
    rel = j - j[:, :1]
    out[ok, :N_JOINTS * 3] = rel[ok].reshape(-1, N_JOINTS * 3)
    out[ok, -1] = 1.0
    return out


@dataclass
class LiftOutput:
    """Result of :meth:`Lifter.lift`.

    Attributes:
        joints_3d: ``(T, 27, 3)`` float64 ``CANONICAL`` joints, ``camera`` frame (``core.conventions``), metres,
            relative to the Hip (joint 0 is exactly 0).
        root: ``(T, 3)`` float64 Hip position in the camera frame, metres (depth through the 2D hip point; scaled
            by the true / assumed focal length when the field of view was not given).
        root_depth: ``(T,)`` float64, ``root[:, 2]``.
        contacts: ``(T, 4)`` float64 contact probabilities in [0, 1], order :data:`CONTACT_ORDER`.
        valid: ``(T,)`` bool, frames with enough 2D joints of their own (others are inferred from neighbours).
        up: ``(T, 3)`` float64 unit vectors, the world's up in the camera frame, or None (weights without it).
    """

    joints_3d: np.ndarray
    root: np.ndarray
    root_depth: np.ndarray
    contacts: np.ndarray
    valid: np.ndarray
    up: np.ndarray | None = None


class Lifter:
    """The trained temporal lifter (module docstring). Build with :func:`load_lifter`.

    Attributes:
        receptive_field: frames seen per output frame (81 = 2.7 s at 30 fps).
        meta: facts stored with the weights (training data, figures).
    """

    def __init__(self, layers: list, dilations: list, meta: dict):
        self._layers = layers            # [(W (k, Cin, Cout), b (Cout,)), ...] expand, (conv, 1x1) per block, shrink
        self._dil = dilations
        self.meta = meta
        self.receptive_field = 1 + 2 * sum(dilations)
        #: True when the weights take MediaPipe's world landmarks too (:data:`N_FEATURES_WORLD` inputs).
        self.uses_world = layers[0][0].shape[1] == N_FEATURES_WORLD
        #: True when the weights also estimate the world's up direction (:data:`N_OUTPUTS_UP` outputs).
        self.has_up = layers[-1][0].shape[2] == N_OUTPUTS_UP

    def forward(self, feats: np.ndarray) -> np.ndarray:
        """Raw network: ``(T, 84)`` (or ``(T, 166)`` with world landmarks) float32 features -> ``(T, 86)`` (or
        ``(T, 89)`` with the up direction) float32 outputs (edges padded by repetition)."""
        w, b = self._layers[-1]
        return self.trunk(feats) @ w[0] + b

    def trunk(self, feats: np.ndarray) -> np.ndarray:
        """The network up to its last (1x1, linear) layer: ``(T, F)`` features -> ``(T, C)`` float32 activations,
        so that ``forward(f) == trunk(f) @ W + b`` with the last layer's ``W (C, outputs)`` and ``b``."""
        x = np.asarray(feats, dtype=np.float32)
        pad = self.receptive_field // 2
        x = np.concatenate([np.repeat(x[:1], pad, axis=0), x, np.repeat(x[-1:], pad, axis=0)], axis=0)

        def conv(x, w, b, d):
            # Width-k dilated convolution as one matrix product over the k shifted copies side by side.
            k = w.shape[0]
            n = x.shape[0] - (k - 1) * d
            xc = np.concatenate([x[i * d:i * d + n] for i in range(k)], axis=1)
            return xc @ w.reshape(-1, w.shape[2]) + b

        w, b = self._layers[0]
        x = np.maximum(conv(x, w, b, self._dil[0]), 0.0)
        for i, d in enumerate(self._dil[1:]):
            (w1, b1), (w2, b2) = self._layers[1 + 2 * i], self._layers[2 + 2 * i]
            y = np.maximum(conv(x, w1, b1, d), 0.0)
            y = np.maximum(y @ w2[0] + b2, 0.0)
            x = x[d:x.shape[0] - d] + y
        return x

    def lift(self, keypoints_2d: np.ndarray, image_size, hfov_deg: float | None = None,
             smooth_sigma: float = DEFAULT_SMOOTH_SIGMA, world_3d: np.ndarray | None = None,
             world_present: np.ndarray | None = None, flip: bool = False) -> LiftOutput:
        """Lift a 2D keypoint sequence of one person.

        Args:
            keypoints_2d: ``(T, 27, 3)`` ``CANONICAL`` ``(x, y, confidence)`` in image pixels, T >= 1; NaN or
                confidence 0 for missing joints (COCO-17 sources lack the extras: leave them NaN). Confidences
                are on MediaPipe BlazePose's visibility scale (what the model was trained with: ~0.9 for a clearly
                seen joint, below 0.3 for a guess); map other detectors' scores to it (e.g. 0.9 for a kept point).
            image_size: ``(w, h)`` pixels of the image the keypoints are in.
            hfov_deg: the camera's horizontal field of view (degrees); None: :data:`DEFAULT_HFOV_DEG` (then the
                root depth is scaled by the unknown focal-length ratio; the root-relative pose is not).
            smooth_sigma: Gaussian smoothing of the outputs over time, frames (:data:`DEFAULT_SMOOTH_SIGMA`;
                0: the raw network output). The model was trained on 30 fps sequences time-stretched 0.8-1.25x:
                feed 24-37 fps, resample other rates.
            world_3d: ``(T, 27, 3)`` MediaPipe's world landmarks (``CANONICAL``, camera axes, metres) for weights
                that take them (:attr:`uses_world`; ignored by 2D-only weights); None: lift from the 2D alone.
            world_present: ``(T,)`` bool, frames whose world landmarks are real detections (not gap-filled).
            flip: also lift the mirrored input and average (test-time flip augmentation, as in VideoPose3D; twice the
                time; the job uses it with the world-landmark weights, where it lowers the closed-loop error,
                docs/lifter.md §5). Averaging two directions shortens a bone where they disagree, so with the 2D-only
                weights on COCO-17 input (uneven hips) the thighs come out shorter: the job does not flip there.
        Returns:
            :class:`LiftOutput`.
        Raises:
            ValueError: wrong shapes, a bad image size or field of view, or no frame with at least
                :data:`MIN_JOINTS` joints.
        """
        kp = np.asarray(keypoints_2d, dtype=np.float64)
        if kp.ndim != 3 or kp.shape[1:] != (N_JOINTS, 3) or kp.shape[0] < 1:
            raise ValueError(f"Lifter.lift expects keypoints (T, {N_JOINTS}, 3) in CANONICAL order with (x, y, "
                             f"confidence) in pixels, got shape {kp.shape}")
        size = np.asarray(image_size, dtype=np.float64)
        if size.shape != (2,) or not np.all(np.isfinite(size)) or np.any(size <= 0):
            raise ValueError(f"Lifter.lift: image_size must be (width, height) in pixels, got {image_size!r}")
        feats, centre, scale, valid = normalise_keypoints(kp, size, hfov_deg)
        if not np.any(valid):
            raise ValueError(f"Lifter.lift: no frame has {MIN_JOINTS} or more joints with confidence > 0; "
                             f"nothing to lift (check the detector output)")
        if self.uses_world:
            feats = np.concatenate([feats, world_features(world_3d, len(feats), world_present)], axis=1)
        out = self.forward(feats).astype(np.float64)
        if flip:
            # test-time flip augmentation (VideoPose3D, docs/lifter.md §1): the mirrored view (image x -> w - x,
            # left <-> right), lifted and mirrored back, averaged with the direct one
            mk = kp[:, _MIRROR].copy()
            mk[..., 0] = size[0] - mk[..., 0]
            mf, *_ = normalise_keypoints(mk, size, hfov_deg)
            if self.uses_world:
                mw = None
                if world_3d is not None:
                    mw = np.asarray(world_3d, dtype=np.float64)[:, _MIRROR] * np.array([-1.0, 1.0, 1.0])
                mf = np.concatenate([mf, world_features(mw, len(mf), world_present)], axis=1)
            out = 0.5 * (out + _unmirror(self.forward(mf).astype(np.float64), self.has_up))
        out = gaussian_smooth(out, float(smooth_sigma))
        j = out[:, :N_JOINTS * 3].reshape(-1, N_JOINTS, 3)
        j = j - j[:, :1]
        z = np.exp(out[:, N_JOINTS * 3]) / scale
        root = np.concatenate([centre, np.ones((len(z), 1))], axis=1) * z[:, None]
        contacts = 1.0 / (1.0 + np.exp(-out[:, CONTACTS]))
        up = None
        if self.has_up:
            up = out[:, N_OUTPUTS:N_OUTPUTS_UP]
            up = up / np.maximum(np.linalg.norm(up, axis=1, keepdims=True), 1e-9)
        return LiftOutput(joints_3d=j, root=root, root_depth=z, contacts=contacts, valid=valid, up=up)


#: Frame rates the network saw in training (30 fps clips time-stretched 0.8-1.25x, docs/lifter.md §2); a sequence
#: outside them is lifted at :data:`LIFT_FPS` (:func:`lift_timed`).
TRAINED_FPS = (24.0, 37.5)
LIFT_FPS = 30.0


def _resample_seen(x: np.ndarray, t: np.ndarray, t_new: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """``x (T, J, C)`` at times ``t`` -> at ``t_new``: linear (``core.filters.resample``) where the joint is ``seen``
    (``(T, J)``) on both neighbouring frames, else the nearest frame's value (so a missing joint stays missing)."""
    lin = filters.resample(np.nan_to_num(x), t, t_new)
    i = np.clip(np.searchsorted(t, t_new, side="right") - 1, 0, len(t) - 1)
    k = np.minimum(i + 1, len(t) - 1)
    near = np.where(t_new - t[i] <= t[k] - t_new, i, k)
    return np.where((seen[i] & seen[k])[..., None], lin, x[near])


def lift_timed(lifter: Lifter, keypoints_2d: np.ndarray, image_size, timestamps, *, hfov_deg: float | None = None,
               world_3d: np.ndarray | None = None, world_present: np.ndarray | None = None,
               flip: bool = False) -> LiftOutput:
    """:meth:`Lifter.lift` of a sequence with its frame times: one whose rate is outside :data:`TRAINED_FPS` (a 50 or
    60 fps video, a 15 fps one) is resampled to :data:`LIFT_FPS` by time, lifted, and its outputs interpolated back
    to its own frames (joints, root, contacts, up; ``valid`` from the nearest lifted frame), so the network sees
    motion at the speeds it learnt and smooths over the time it learnt; within them the frames are lifted as they
    are. On the closed-loop renders played at 60 fps the network lifts 0-5% worse than at 30 fps
    (docs/benchmark.md, thirteenth session).

    Args:
        timestamps: ``(T,)`` seconds, strictly increasing; other arguments as :meth:`Lifter.lift`.
    Raises:
        ValueError: as :meth:`Lifter.lift`, or timestamps of another length or not increasing.
    """
    kp = np.asarray(keypoints_2d, dtype=np.float64)
    t = np.asarray(timestamps, dtype=np.float64)
    if t.shape != (len(kp),) or (len(t) > 1 and np.any(np.diff(t) <= 0)):
        raise ValueError(f"lift_timed: timestamps must be ({len(kp)},) and strictly increasing, got shape {t.shape}")
    fps = (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 else LIFT_FPS
    if TRAINED_FPS[0] <= fps <= TRAINED_FPS[1]:
        return lifter.lift(kp, image_size, hfov_deg, world_3d=world_3d, world_present=world_present, flip=flip)
    t30 = t[0] + np.arange(int(np.floor((t[-1] - t[0]) * LIFT_FPS + 1e-6)) + 1) / LIFT_FPS
    k30 = _resample_seen(kp, t, t30, np.nan_to_num(kp[..., 2]) > 0)
    w30 = p30 = None
    if world_3d is not None:
        present = np.ones(len(t), bool) if world_present is None else np.asarray(world_present, dtype=bool)
        w30 = _resample_seen(np.asarray(world_3d, dtype=np.float64), t, t30,
                             np.broadcast_to(present[:, None], (len(t), N_JOINTS)))
        p30 = _resample_seen(present[:, None, None].astype(np.float64), t, t30, present[:, None])[:, 0, 0] > 0.5
    out = lifter.lift(k30, image_size, hfov_deg, world_3d=w30, world_present=p30, flip=flip)
    back = lambda a: filters.resample(a, t30, t)   # noqa: E731  (the outputs are finite on every frame)
    j3 = back(out.joints_3d)
    root = back(out.root)
    up = None
    if out.up is not None:
        up = back(out.up)
        up /= np.maximum(np.linalg.norm(up, axis=1, keepdims=True), 1e-9)
    valid = out.valid[np.clip(np.rint((t - t30[0]) * LIFT_FPS).astype(np.int64), 0, len(t30) - 1)]
    return LiftOutput(joints_3d=j3 - j3[:, :1], root=root, root_depth=root[:, 2].copy(),
                      contacts=np.clip(back(out.contacts), 0.0, 1.0), valid=valid, up=up)


def load_lifter(path=None) -> Lifter:
    """Load lifter weights from a ``.npz`` (no pickles) written by ``tools/lifter_training``.

    Args:
        path: the file; None: :data:`DEFAULT_WEIGHTS`.
    Raises:
        FileNotFoundError: no such file.  ValueError: the file is not a lifter of this layout.
    """
    path = Path(path) if path is not None else DEFAULT_WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"lifter weights not found: {path} (train them with tools/train_lifter.py)")
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as e:
        raise ValueError(f"{path}: not a readable .npz ({e})") from None
    with z:
        try:
            dil = [int(d) for d in z["dilations"]]
            n = int(z["n_layers"])
            layers = [(z[f"w{i}"].astype(np.float32), z[f"b{i}"].astype(np.float32)) for i in range(n)]
            meta = {k[5:]: str(z[k]) for k in z.files if k.startswith("meta_")}
        except KeyError as e:
            raise ValueError(f"{path}: not a lifter weights file (missing {e})") from None
    if n != 2 + 2 * (len(dil) - 1) or layers[0][0].shape[1] not in (N_FEATURES, N_FEATURES_WORLD) \
            or layers[-1][0].shape[2] not in (N_OUTPUTS, N_OUTPUTS_UP):
        raise ValueError(f"{path}: unexpected layout ({n} layers, dilations {dil}, input "
                         f"{layers[0][0].shape[1]}, output {layers[-1][0].shape[2]}; expected input {N_FEATURES} or "
                         f"{N_FEATURES_WORLD}, output {N_OUTPUTS} or {N_OUTPUTS_UP})")
    return Lifter(layers, dil, meta)
