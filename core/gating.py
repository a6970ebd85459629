"""Plausibility gate for per-frame 2D skeletons (numpy only): what a detector found is not yet a detection.

A backend returns *a* skeleton on most frames of an anime clip, but some are not the dancer: a tiny skeleton inside
the character's face, a limb laid on the hair or a tail, a skeleton on a bystander or on the still half of a
side-by-side upload, legs guessed below the frame edge. :func:`gate` checks each detected frame against the track
the frames around it make (per shot, ``core.shots``) and returns which frames are *usable*, which were *rejected*
(detected but refused: they do not count as detected), and a per-joint confidence where joints the frame does not
really show are set to 0 (handed to the lifter and the motion stage as missing).

Checks, per frame ``t`` (2D keypoints in ``image`` px, ``core.conventions``), with ``s_t`` the body scale (the
larger of the shoulder-to-hip length and 1.25 x the shoulder width, px) and the references ``s_ref``, ``c_ref``
running medians over the usable frames within ``window_s`` of ``t`` in the same shot:

* **joints seen**: a joint counts as seen when its confidence is at least ``min_joint_conf`` and it lies inside the
  frame (``margin`` x the frame size outside the edge at most). Unseen joints get confidence 0.
* **core**: at least one shoulder and a second of {other shoulder, hips} seen, else rejected (``"core"``).
* **tiny**: ``s_t`` under ``min_scale_frac`` x the frame height is not a person (``"tiny"``).
* **scale**: ``s_t / s_ref`` outside ``[1 / max_scale_ratio, max_scale_ratio]``, or ``s_t`` over the shot's median
  scale outside ``[1 / max_shot_scale_ratio, max_shot_scale_ratio]`` (``"scale"``: a face-sized or a screen-sized
  skeleton in a track of body-sized ones, also when such skeletons fill a whole second).
* **position**: the shoulder centre farther than ``max_offset`` x ``s_ref`` from ``c_ref`` (``"position"``: a
  skeleton on another figure).
* **bone ratios**: each limb bone's length over ``s_t``, against the shot's median of that ratio: a bone longer than
  ``max_bone_ratio`` x its median (and 0.35 ``s_t`` more) is implausible: its distal joints get confidence 0 (a
  limb on the hair); ``max_bad_bones`` or more such bones reject the frame (``"bones"``).
* **spikes**: a joint farther than ``max_spike`` x ``s_ref`` from the median of its own positions over the 5 frames
  around it gets confidence 0 for that frame.

``upper_body`` marks usable frames where neither knee nor ankle is seen (legs out of frame): only the upper body is
known there, and the caller says so rather than inventing legs.

Joint names are the backend's (``skeletons.COCO17`` or ``skeletons.MEDIAPIPE33``; both name the limb joints the
same), so the gate works on the native set that ``core.pose_io.PoseSequence.keypoints_2d`` carries.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import warnings

import numpy as np

__all__ = ["GateResult", "TrackReference", "gate", "candidate_cost", "body_scale", "REASONS", "LIMB_BONES",
           "DISTAL"]

#: Why a frame was rejected (index = code in :attr:`GateResult.reason`; 0 = not rejected).
REASONS = ("", "core", "tiny", "scale", "position", "bones")

#: Limb bones (proximal, distal) checked for their length ratio.
LIMB_BONES = (
    ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
    ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"),
    ("left_hip", "left_knee"), ("left_knee", "left_ankle"),
    ("right_hip", "right_knee"), ("right_knee", "right_ankle"),
)

#: Joints that go missing with a joint (its distal chain), by name; names absent from a joint set are ignored.
DISTAL = {
    "left_elbow": ("left_wrist",), "right_elbow": ("right_wrist",),
    "left_wrist": ("left_pinky", "left_index", "left_thumb"),
    "right_wrist": ("right_pinky", "right_index", "right_thumb"),
    "left_knee": ("left_ankle",), "right_knee": ("right_ankle",),
    "left_ankle": ("left_heel", "left_foot_index"), "right_ankle": ("right_heel", "right_foot_index"),
}

_LEGS = ("left_knee", "right_knee", "left_ankle", "right_ankle")


def _chain(name: str) -> list[str]:
    out, todo = [], [name]
    while todo:
        n = todo.pop()
        out.append(n)
        todo.extend(DISTAL.get(n, ()))
    return out


@dataclass
class TrackReference:
    """What a frame is compared with: ``scale`` (px), ``centre`` ``(2,)`` px, ``bone_ratio`` ``(len(LIMB_BONES),)``
    median bone length over scale (NaN where unknown)."""

    scale: float
    centre: np.ndarray
    bone_ratio: np.ndarray


@dataclass
class GateResult:
    """The gate's verdict (see the module docstring).

    Attributes:
        keypoints_2d: ``(T, J, 3)`` float32, the input positions with gated confidences (0 for unseen or implausible
            joints, and for every joint of a frame that is not usable).
        usable: ``(T,)`` bool, detected and not rejected.
        rejected: ``(T,)`` bool, detected but refused by a check.
        reason: ``(T,)`` int8 index into :data:`REASONS` (0 where not rejected).
        joint_missing: ``(T, J)`` bool, joints of usable frames set to confidence 0 (unseen, implausible, spikes).
        upper_body: ``(T,)`` bool, usable frames without any seen knee or ankle.
        scale: ``(T,)`` float64 body scale px (NaN where undefined).
        centre: ``(T, 2)`` float64 shoulder centre px.
        counts: reason name -> frames rejected for it.
    """

    keypoints_2d: np.ndarray
    usable: np.ndarray
    rejected: np.ndarray
    reason: np.ndarray
    joint_missing: np.ndarray
    upper_body: np.ndarray
    scale: np.ndarray
    centre: np.ndarray
    counts: dict = field(default_factory=dict)

    def reference(self, t: int, shots=None, window: int = 25) -> TrackReference | None:
        """The track around frame ``t`` (usable frames within ``window`` frames, same shot), or None if none."""
        T = len(self.usable)
        a, b = 0, T
        for s0, s1 in (shots if shots is not None else [(0, T)]):
            if s0 <= t < s1:
                a, b = s0, s1
        lo, hi = max(a, t - window), min(b, t + window + 1)
        ok = np.flatnonzero(self.usable[lo:hi]) + lo
        if ok.size == 0:
            ok = np.flatnonzero(self.usable[a:b]) + a
        if ok.size == 0:
            return None
        return TrackReference(float(np.nanmedian(self.scale[ok])), np.nanmedian(self.centre[ok], axis=0),
                              np.asarray(self._bone_ratio_median, dtype=np.float64))

    _bone_ratio_median: np.ndarray = field(default_factory=lambda: np.full(len(LIMB_BONES), np.nan))


def _idx(names, name):
    try:
        return names.index(name)
    except ValueError:
        return -1


def _seen(kp: np.ndarray, image_size, min_joint_conf: float, margin: float) -> np.ndarray:
    w, h = float(image_size[0]), float(image_size[1])
    x, y, c = kp[..., 0], kp[..., 1], kp[..., 2]
    with np.errstate(invalid="ignore"):
        inside = (x >= -margin * w) & (x <= (1 + margin) * w) & (y >= -margin * h) & (y <= (1 + margin) * h)
    return np.isfinite(x) & np.isfinite(y) & inside & (np.nan_to_num(c) >= min_joint_conf)


def body_scale(kp: np.ndarray, names, seen: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Body scale and centre per frame.

    Args:
        kp: ``(T, J, >=2)`` image px; names: the J joint names; seen: ``(T, J)`` bool (default: finite).
    Returns:
        ``(scale (T,) px, centre (T, 2) px)``: scale = max(|mid-shoulder - mid-hip|, 1.25 x shoulder width) using
        the joints seen (NaN where neither is defined); centre = the mid-shoulder point (one shoulder if only one is
        seen).
    """
    kp = np.asarray(kp, dtype=np.float64)
    seen = np.isfinite(kp[..., :2]).all(-1) if seen is None else seen
    ls, rs, lh, rh = (_idx(names, n) for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip"))
    P = np.where(seen[..., None], kp[..., :2], np.nan)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sh = np.nanmean(np.stack([P[:, ls], P[:, rs]]), axis=0)
        hip = np.nanmean(np.stack([P[:, lh], P[:, rh]]), axis=0)
        both_sh = seen[:, ls] & seen[:, rs]
        both_hip = seen[:, lh] & seen[:, rh]
        torso = np.where(both_sh | both_hip, np.linalg.norm(sh - hip, axis=1), np.nan)
        width = np.where(both_sh, 1.25 * np.linalg.norm(P[:, ls] - P[:, rs], axis=1), np.nan)
        scale = np.fmax(torso, width)
    return scale, sh


def _running_median(x: np.ndarray, ok: np.ndarray, half: int, shots) -> np.ndarray:
    """Median of ``x[ok]`` within ``half`` frames, per shot; ``x`` is ``(T,)`` or ``(T, D)``."""
    x = np.asarray(x, dtype=np.float64)
    squeeze = x.ndim == 1
    X = x[:, None] if squeeze else x
    out = np.full(X.shape, np.nan)
    for a, b in shots:
        seg = np.where(ok[a:b, None], X[a:b], np.nan)
        n = b - a
        if n == 0:
            continue
        pad = np.full((half, X.shape[1]), np.nan)
        padded = np.concatenate([pad, seg, pad])
        win = np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1, axis=0)  # (n, D, w)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(win, axis=-1)
            whole = np.nanmedian(seg, axis=0)
        med = np.where(np.isfinite(med), med, whole[None])
        out[a:b] = med
    return out[:, 0] if squeeze else out


def _bone_ratios(kp, names, seen, scale) -> tuple[np.ndarray, np.ndarray]:
    """``(T, B)`` bone length / scale (NaN where a joint is unseen) and the (B, 2) joint indices."""
    T = kp.shape[0]
    ij = np.array([(_idx(names, a), _idx(names, b)) for a, b in LIMB_BONES])
    r = np.full((T, len(LIMB_BONES)), np.nan)
    for k, (i, j) in enumerate(ij):
        if i < 0 or j < 0:
            continue
        ok = seen[:, i] & seen[:, j]
        length = np.linalg.norm(kp[:, i, :2] - kp[:, j, :2], axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            r[:, k] = np.where(ok, length / scale, np.nan)
    return r, ij


def candidate_cost(kp: np.ndarray, names, image_size, ref: TrackReference, *, min_joint_conf: float = 0.5,
                   margin: float = 0.02) -> float:
    """How badly one candidate skeleton ``(J, 3)`` px fits the track ``ref`` (lower is better; ``inf`` = unusable).

    The sum of ``|log(s / s_ref)|``, the centre offset over ``s_ref``, the mean excess of the bone ratios over their
    medians, and the fraction of the joints not seen; used to pick among retried detections (``core.worker.detect``).
    """
    kp = np.asarray(kp, dtype=np.float64)[None]
    seen = _seen(kp, image_size, min_joint_conf, margin)
    scale, centre = body_scale(kp, names, seen)
    s = scale[0]
    if not np.isfinite(s) or s <= 0 or not np.isfinite(centre[0]).all():
        return float("inf")
    cost = abs(np.log(s / ref.scale)) + float(np.linalg.norm(centre[0] - ref.centre)) / ref.scale
    r, _ = _bone_ratios(kp, names, seen, scale)
    with np.errstate(invalid="ignore"):
        excess = np.clip(r[0] / ref.bone_ratio - 1.0, 0.0, None)
    if np.isfinite(excess).any():
        cost += float(np.nanmean(excess))
    cost += 1.0 - float(seen.mean())
    return cost


def gate(keypoints_2d, names, image_size, *, detected=None, timestamps=None, shots=None, window_s: float = 0.5,
         min_joint_conf: float = 0.5, margin: float = 0.02, min_scale_frac: float = 0.03,
         max_scale_ratio: float = 1.8, max_shot_scale_ratio: float = 4.0, max_offset: float = 2.5,
         max_bone_ratio: float = 1.7, max_bad_bones: int = 3, max_spike: float = 1.5) -> GateResult:
    """Check every detected frame against the track (see the module docstring).

    Args:
        keypoints_2d: ``(T, J, 3)`` image px + confidence in [0, 1] (NaN where nothing was detected).
        names: the J joint names (``skeletons.COCO17`` or ``skeletons.MEDIAPIPE33``).
        image_size: ``(width, height)`` px of the (cropped) frame.
        detected: ``(T,)`` bool, frames where the backend returned a skeleton (default: a finite shoulder).
        timestamps: ``(T,)`` seconds (default 25 fps), for ``window_s``.
        shots: ``[(start, stop), ...]`` frame ranges (stop exclusive), or None for one shot (``core.shots``).
        window_s: half-width of the running references, seconds.
        min_joint_conf, margin, min_scale_frac, max_scale_ratio, max_shot_scale_ratio, max_offset, max_bone_ratio,
        max_bad_bones, max_spike: thresholds of the checks (module docstring).
    Returns:
        :class:`GateResult`.
    Raises:
        ValueError: inconsistent shapes, or a joint set without shoulders and hips.
    """
    kp = np.array(keypoints_2d, dtype=np.float64)
    if kp.ndim != 3 or kp.shape[2] != 3:
        raise ValueError(f"gate: keypoints_2d must be (T, J, 3), got {kp.shape}")
    names = tuple(names)
    if len(names) != kp.shape[1]:
        raise ValueError(f"gate: {len(names)} names for {kp.shape[1]} joints")
    if any(_idx(names, n) < 0 for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip")):
        raise ValueError("gate: the joint set needs left/right shoulders and hips (COCO-17 or MediaPipe-33 names)")
    T, J = kp.shape[:2]
    if detected is None:
        detected = np.isfinite(kp[:, _idx(names, "left_shoulder"), 0])
    detected = np.asarray(detected, dtype=bool)
    if detected.shape != (T,):
        raise ValueError(f"gate: detected must be ({T},), got {detected.shape}")
    t = np.arange(T) / 25.0 if timestamps is None else np.asarray(timestamps, dtype=np.float64)
    shots = [(0, T)] if shots is None else [(int(a), int(b)) for a, b in shots]
    dt = float(np.median(np.diff(t))) if T > 1 else 0.04
    half = max(2, int(round(window_s / max(dt, 1e-6))))
    H = float(image_size[1])

    seen = _seen(kp, image_size, min_joint_conf, margin) & detected[:, None]
    scale, centre = body_scale(kp, names, seen)
    ls, rs, lh, rh = (_idx(names, n) for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip"))
    core_ok = (seen[:, ls] | seen[:, rs]) & ((seen[:, ls] & seen[:, rs]) | seen[:, lh] | seen[:, rh])
    core_ok &= np.isfinite(scale) & (scale > 0)
    reason = np.zeros(T, dtype=np.int8)
    reason[detected & ~core_ok] = REASONS.index("core")
    tiny = detected & core_ok & (scale < min_scale_frac * H)
    reason[tiny] = REASONS.index("tiny")

    ratios, ij = _bone_ratios(kp, names, seen, scale)
    ok = detected & (reason == 0)
    med_ratio = np.full(len(LIMB_BONES), np.nan)
    bad_bone = np.zeros((T, len(LIMB_BONES)), dtype=bool)
    for _ in range(2):  # references from the frames still accepted, twice (the second pass without the outliers)
        s_ref = _running_median(scale, ok, half, shots)
        c_ref = _running_median(centre, ok, half, shots)
        with np.errstate(invalid="ignore", divide="ignore"):
            sr = scale / s_ref
            off = np.linalg.norm(centre - c_ref, axis=1) / s_ref
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med_ratio = np.nanmedian(np.where(ok[:, None], ratios, np.nan), axis=0)
        with np.errstate(invalid="ignore"):
            bad_bone = (ratios > max_bone_ratio * med_ratio[None]) & (ratios > med_ratio[None] + 0.35)
        s_shot = np.full(T, np.nan)
        for a, b in shots:
            if ok[a:b].any():
                s_shot[a:b] = np.median(scale[a:b][ok[a:b]])
        with np.errstate(invalid="ignore", divide="ignore"):
            srs = scale / s_shot
        new = np.zeros(T, dtype=np.int8)
        new[detected & ~core_ok] = REASONS.index("core")
        new[tiny] = REASONS.index("tiny")
        base = detected & (new == 0)
        with np.errstate(invalid="ignore"):
            new[base & ((sr > max_scale_ratio) | (sr < 1.0 / max_scale_ratio))] = REASONS.index("scale")
            # a long run of face-sized skeletons can own the running median: the shot's median catches it
            new[base & (new == 0) & ((srs > max_shot_scale_ratio) | (srs < 1.0 / max_shot_scale_ratio))] = \
                REASONS.index("scale")
            new[base & (new == 0) & (off > max_offset)] = REASONS.index("position")
        new[base & (new == 0) & (bad_bone.sum(axis=1) >= max_bad_bones)] = REASONS.index("bones")
        reason = new
        ok = detected & (reason == 0)
        if not ok.any():
            break

    usable = detected & (reason == 0)
    rejected = detected & ~usable
    missing = ~seen
    # implausible bones: their distal chain is missing
    for k in range(len(LIMB_BONES)):
        rows = usable & bad_bone[:, k]
        if rows.any():
            for n in _chain(LIMB_BONES[k][1]):
                j = _idx(names, n)
                if j >= 0:
                    missing[rows, j] = True
    # spikes: a joint far from its own 5-frame median
    s_ref = _running_median(scale, usable, half, shots)
    P = np.where(seen[..., None], kp[..., :2], np.nan)
    for a, b in shots:
        n = b - a
        if n < 5:
            continue
        pad = np.full((2, J, 2), np.nan)
        win = np.lib.stride_tricks.sliding_window_view(np.concatenate([pad, P[a:b], pad]), 5, axis=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(win, axis=-1)                             # (n, J, 2)
        with np.errstate(invalid="ignore"):
            dev = np.linalg.norm(P[a:b] - med, axis=-1) / s_ref[a:b, None]
            cnt = np.isfinite(win[:, :, 0, :]).sum(axis=-1)
        spike = (dev > max_spike) & (cnt >= 4)
        missing[a:b] |= spike & usable[a:b, None]
    missing &= usable[:, None]
    out = kp.astype(np.float32)
    out[..., 2] = np.where(usable[:, None] & ~missing, np.clip(np.nan_to_num(kp[..., 2]), 0, 1), 0.0)
    legs = [_idx(names, n) for n in _LEGS]
    upper = usable & ~(seen[:, legs] & ~missing[:, legs]).any(axis=1)
    counts = {REASONS[k]: int((reason == k).sum()) for k in range(1, len(REASONS)) if (reason == k).any()}
    res = GateResult(keypoints_2d=out, usable=usable, rejected=rejected, reason=reason, joint_missing=missing,
                     upper_body=upper, scale=scale, centre=centre, counts=counts)
    res._bone_ratio_median = med_ratio
    return res


# ------------------------------------------------------------------------------------------- on a pose sequence

#: Native 2D joint name -> the ``CANONICAL`` 3D joint it stands for (for handing missing joints to the lifter).
_TO_CANONICAL = {
    "left_hip": "LHip", "right_hip": "RHip", "left_knee": "LKnee", "right_knee": "RKnee", "left_ankle": "LFoot",
    "right_ankle": "RFoot", "left_shoulder": "LShoulder", "right_shoulder": "RShoulder", "left_elbow": "LElbow",
    "right_elbow": "RElbow", "left_wrist": "LWrist", "right_wrist": "RWrist", "left_foot_index": "LFootIndex",
    "right_foot_index": "RFootIndex", "left_heel": "LHeel", "right_heel": "RHeel", "left_index": "LHandIndex",
    "right_index": "RHandIndex", "left_pinky": "LHandPinky", "right_pinky": "RHandPinky",
}
_LEG_CHAINS = (("LHip", "LKnee", "LFoot", "LHeel", "LFootIndex"), ("RHip", "RKnee", "RFoot", "RHeel", "RFootIndex"))


def neutral_legs(joints_3d: np.ndarray) -> np.ndarray:
    """Straight standing legs under the hips, for frames of a shot that never shows the legs.

    Args:
        joints_3d: ``(N, 27, 3)`` ``CANONICAL`` camera metres (``core.conventions``) with hips and thorax.
    Returns:
        a copy where, per side, knee, ankle, heel and toe hang from the hip along the pelvis->hip "down" direction
        (thorax -> pelvis), thigh 0.85 and shin 0.82 torso lengths, the toe 0.3 torso lengths forward (the facing
        direction, from the hips' left-right axis) -- a neutral stance, not a guess at the dancer's legs.
    """
    from .skeletons import CANONICAL

    x = np.array(joints_3d, dtype=np.float64)
    c = {n: i for i, n in enumerate(CANONICAL)}
    down = x[:, c["Hip"]] - x[:, c["Thorax"]]
    torso = np.linalg.norm(down, axis=-1, keepdims=True)
    down = down / np.maximum(torso, 1e-9)
    lr = x[:, c["LHip"]] - x[:, c["RHip"]]
    fwd = np.cross(down, lr)
    fwd /= np.maximum(np.linalg.norm(fwd, axis=-1, keepdims=True), 1e-9)
    for hip, knee, ankle, heel, toe in _LEG_CHAINS:
        h = x[:, c[hip]]
        x[:, c[knee]] = h + 0.85 * torso * down
        x[:, c[ankle]] = x[:, c[knee]] + 0.82 * torso * down
        x[:, c[heel]] = x[:, c[ankle]] + 0.1 * torso * down - 0.05 * torso * fwd
        x[:, c[toe]] = x[:, c[ankle]] + 0.12 * torso * down + 0.3 * torso * fwd
    return x


def min_joint_confidence(backend: str) -> float:
    """The confidence under which a joint of ``backend`` counts as not seen: 0.5 for MediaPipe's visibility (a
    probability), 0.05 for the others (detectron2's keypoint probabilities are a heat-map soft-max, median 0.16 on
    the shared lia_kim detections; OpenPose gives 0 for joints it did not find)."""
    return 0.5 if backend == "mediapipe" else 0.05


#: A joint must be seen in this fraction of a shot's usable frames for the others to take it from them.
MIN_SEEN_FRACTION = 0.25


def gate_poses(poses, *, min_seen_fraction: float = MIN_SEEN_FRACTION, **options):
    """Gate a :class:`core.pose_io.PoseSequence` and hand what was refused on as missing.

    * frames the gate rejects become undetected (``detected`` False, 2D NaN with confidence 0, 3D NaN), and
      ``rejected`` marks them;
    * joints of usable frames the gate drops get 2D confidence 0; where the shot shows the joint in at least
      ``min_seen_fraction`` of its usable frames they also get 2D and 3D NaN (interpolated from the frames that show
      them, ``core.worker.job``); a joint seen less often keeps the detector's guess (holding one rare sighting
      over a whole shot would be worse), and a shot that never shows any leg joint gets :func:`neutral_legs`;
    * ``upper_body`` marks usable frames without seen legs.

    Args:
        poses: the sequence (2D keypoints in a joint set with COCO-17 / MediaPipe-33 names); options: :func:`gate`'s
            thresholds (``min_joint_conf`` defaults to :func:`min_joint_confidence` of ``poses.backend``).
    Returns:
        ``(gated PoseSequence, GateResult)``; a sequence without 2D keypoints, or in a joint set the gate cannot
        read, is returned unchanged with ``None``.
    """
    from dataclasses import replace

    from .skeletons import CANONICAL

    names = tuple(poses.joint_names_2d)
    need = ("left_shoulder", "right_shoulder", "left_hip", "right_hip")
    if poses.keypoints_2d.shape[1] == 0 or any(n not in names for n in need) or len(poses) == 0:
        return poses, None
    shots = poses.shots.tolist() if poses.shots is not None else None
    options.setdefault("min_joint_conf", min_joint_confidence(poses.backend))
    g = gate(poses.keypoints_2d, names, poses.image_size, detected=poses.detected, timestamps=poses.timestamps,
             shots=shots, **options)
    kp = g.keypoints_2d.copy()
    kp[~g.usable, :, :2] = np.nan
    shot_list = shots or [(0, len(poses))]
    # per shot and joint: is it seen often enough that the frames which do not show it can take it from those?
    often = np.zeros((len(shot_list), len(names)), dtype=bool)
    for si, (a, b) in enumerate(shot_list):
        use = g.usable[a:b]
        if use.any():
            often[si] = (use[:, None] & ~g.joint_missing[a:b]).sum(axis=0) >= min_seen_fraction * use.sum()
            drop = g.joint_missing[a:b] & use[:, None] & often[si][None]
            kp[a:b, :, :2][drop] = np.nan
    j3 = None
    notes = list(poses.notes)
    if poses.joints_3d is not None:
        j3 = np.array(poses.joints_3d, dtype=np.float32)
        j3[~g.usable] = np.nan
        ci = {n: i for i, n in enumerate(CANONICAL)}
        cols = [(names.index(n), ci[m]) for n, m in _TO_CANONICAL.items() if n in names]
        leg_j2 = [names.index(n) for n in _LEGS if n in names]
        neutral_frames = 0
        for si, (a, b) in enumerate(shot_list):
            use = g.usable[a:b]
            if not use.any():
                continue
            for j2, j in cols:
                if often[si, j2]:
                    rows = np.flatnonzero(g.joint_missing[a:b, j2] & use) + a
                    j3[rows, j] = np.nan
            legs_seen = (use[:, None] & ~g.joint_missing[a:b][:, leg_j2]).any()
            if not legs_seen and g.upper_body[a:b].any():
                rows = np.flatnonzero(use) + a
                j3[rows] = neutral_legs(j3[rows]).astype(np.float32)
                neutral_frames += rows.size
        if neutral_frames:
            notes.append(f"the legs are out of frame in a whole shot ({neutral_frames} frames): they are keyed "
                         "standing straight, not guessed")
    rare = sorted({names[j] for si in range(len(shot_list)) for j in np.flatnonzero(~often[si])
                   if g.joint_missing[slice(*shot_list[si])][g.usable[slice(*shot_list[si])], j].any()})
    if rare:
        notes.append(f"seen in under {100 * min_seen_fraction:.0f}% of a shot's frames, so kept as the detector "
                     f"guessed them (confidence 0): {', '.join(rare)}")
    if g.rejected.any():
        why = ", ".join(f"{k} {v}" for k, v in sorted(g.counts.items()))
        notes.append(f"plausibility gate: {int(g.rejected.sum())} of {len(poses)} skeletons rejected ({why}); "
                     "they count as missing")
    out = replace(poses, keypoints_2d=kp, joints_3d=j3, detected=g.usable, rejected=g.rejected,
                  upper_body=g.upper_body, notes=notes)
    return out, g
