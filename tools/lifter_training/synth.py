"""Synthetic 2D detections of mocap joints: random virtual cameras and a measured detector-noise model.

Cameras (:func:`random_cameras`): pinhole, horizontal field of view 30..90°, image sizes of common videos (landscape,
portrait, square), yaw all around the dancer, camera height 0.3..2.2 m, aimed at the dancer with a pitch error of
±6° and a roll of ~N(0, 4°) (clipped at 12°), distance such that the dancer fills 40..95 % of the image height, and
at least 1.5 m more than the dancer travels from the aim point in the window.

Detector noise (:class:`NoiseModel`, fields named as in ``mediapipe_noise.json``, which
``tools/measure_detector_noise.py`` writes from MediaPipe run on headless renders of the shared MMD models; its
``schema`` entry defines each figure): per joint a systematic 3D offset in the body frame (BlazePose's hip points
against the MMD 足 bones, the ear-based head point, ...), a Gaussian core with the measured per-axis sigma and
frame-to-frame autocorrelation (AR(1) noise), heavy-tailed outliers at the measured rate and size, left / right swaps
in runs of frames at the measured per-pair rate, joints with low confidence or missing at the measured rate (the
file's per-joint rate less the missed frames it includes), whole missed frames, and confidences drawn around the
measured means. Left and right joints share the mean of their pair's figures (the offset's left component
mirrored): a detector has no handedness, and the measured differences are sampling noise. Units: the height of the
frame's 2D box around the projected ground-truth joints ("bbox"), as in the measurement. When the measurement file
is absent :data:`PROVISIONAL_NOISE` is used (and says so).

Everything is vectorised over a batch ``(B, T, 27, ...)``; coordinates follow ``core.conventions`` (the world here is
the ``camera`` axes of an MMD scene seen from the front: ``core.conventions.mmd_to_camera``, floor at y = 0, up = -y).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.conventions import mmd_to_camera
from core.lifting.trained import normalise_keypoints
from core.skeletons import CANONICAL, CANONICAL_MIRROR

__all__ = ["NoiseModel", "PROVISIONAL_NOISE", "NOISE_FILE", "load_noise", "random_cameras", "project",
           "detector_noise", "body_offsets", "truncate_legs", "ar1", "IMAGE_SIZES"]

J = {n: i for i, n in enumerate(CANONICAL)}
NJ = len(CANONICAL)

NOISE_FILE = Path(__file__).resolve().parent / "mediapipe_noise.json"

IMAGE_SIZES = np.array([(1920, 1080), (1280, 720), (864, 480), (640, 360), (1080, 1920), (720, 1280), (640, 640),
                        (640, 480), (480, 640), (1024, 1024)], dtype=np.float64)

SWAP_PAIRS = (("LHip", "RHip"), ("LKnee", "RKnee"), ("LFoot", "RFoot"), ("LShoulder", "RShoulder"),
              ("LElbow", "RElbow"), ("LWrist", "RWrist"), ("LHeel", "RHeel"), ("LFootIndex", "RFootIndex"),
              ("LHandIndex", "RHandIndex"), ("LHandPinky", "RHandPinky"), ("LEar", "REar"))


def _provisional() -> dict:
    """PROVISIONAL values (not measured): used only while ``mediapipe_noise.json`` does not exist."""
    sig = {n: 0.012 for n in CANONICAL}
    sig.update({n: 0.02 for n in ("LWrist", "RWrist", "LHandIndex", "RHandIndex", "LHandPinky", "RHandPinky")})
    sig.update({n: 0.016 for n in ("LFoot", "RFoot", "LHeel", "RHeel", "LFootIndex", "RFootIndex", "LElbow",
                                   "RElbow", "LKnee", "RKnee")})
    joints = {}
    for n in CANONICAL:
        off = [0.0, 0.0, 0.0]
        if n in ("LHip", "RHip"):
            off = [0.05 if n[0] == "L" else -0.05, 0.03, 0.0]
        joints[n] = {"offset_body_leglen": off, "core_sigma_bbox": [sig[n], sig[n]], "tail_fraction": 0.03,
                     "tail_norm_median_bbox": 0.06, "miss_rate_conf_lt_0.3": 0.02, "conf_mean_core": 0.9,
                     "conf_mean_tail": 0.6}
    return {"PROVISIONAL": "not measured; replace by tools/measure_detector_noise.py output", "joints": joints,
            "frame_miss_rate": 0.01, "swap_rate": {f"{a}/{b}": 0.003 for a, b in SWAP_PAIRS},
            "residual_autocorrelation": {"1": 0.6}}


PROVISIONAL_NOISE = _provisional()


@dataclass
class NoiseModel:
    """Per-joint arrays over ``CANONICAL`` (see the module docstring; ``source`` says where they came from)."""

    offset_body: np.ndarray          # (27, 3) [left, up, forward] leg lengths
    sigma: np.ndarray                # (27, 2) bbox units
    tail_fraction: np.ndarray        # (27,)
    tail_median: np.ndarray          # (27,) bbox units
    miss_rate: np.ndarray            # (27,)
    conf_core: np.ndarray            # (27,)
    conf_tail: np.ndarray            # (27,)
    swap_rate: np.ndarray            # (len(SWAP_PAIRS),)
    frame_miss_rate: float
    rho: float                       # lag-1 autocorrelation of the core noise
    source: str = ""
    scale: float = 1.0               # multiplies sigma and tails (augmentation)
    extra: dict = field(default_factory=dict)
    #: correlation of the core errors of a limb's joints, ``{"arm": c, "leg": c}`` (:data:`LIMBS`; measured by
    #: ``tools.lifter_training.rendered.limb_correlation``); empty: every joint's error on its own
    limb_corr: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict, source: str = "") -> "NoiseModel":
        jd = d["joints"]

        def arr(key, default, width=None):
            out = []
            for n in CANONICAL:
                v = jd.get(n, {}).get(key)
                out.append(default if v is None else v)
            return np.array(out, dtype=np.float64)

        sw = np.array([float(d.get("swap_rate", {}).get(f"{a}/{b}", 0.0)) for a, b in SWAP_PAIRS])
        rho = d.get("residual_autocorrelation", {}).get("1")
        fmiss = float(d.get("frame_miss_rate", 0.0))
        # The per-joint miss rate counts missed frames too; keep only the joint's own misses.
        miss = np.clip((arr("miss_rate_conf_lt_0.3", 0.02) - fmiss) / max(1.0 - fmiss, 1e-6), 0.0, 1.0)
        offset = arr("offset_body_leglen", [0.0, 0.0, 0.0])
        per_joint = [arr("core_sigma_bbox", [0.012, 0.012]), arr("tail_fraction", 0.02),
                     arr("tail_norm_median_bbox", 0.05), miss, arr("conf_mean_core", 0.9), arr("conf_mean_tail", 0.6)]
        # Left/right symmetric: a detector has no handedness, so the measured left/right differences (a few hundred
        # samples per joint) are sampling noise; average each pair, the offset's "left" component mirrored.
        mir = CANONICAL_MIRROR
        offset = 0.5 * (offset + offset[mir] * np.array([-1.0, 1.0, 1.0]))
        per_joint = [0.5 * (a + a[mir]) for a in per_joint]
        sigma, tail_f, tail_m, miss, conf_c, conf_t = per_joint
        return cls(offset_body=offset, sigma=sigma, tail_fraction=tail_f, tail_median=tail_m, miss_rate=miss,
                   conf_core=conf_c, conf_tail=conf_t, swap_rate=sw, frame_miss_rate=fmiss,
                   rho=float(0.5 if rho is None else np.clip(rho, 0.0, 0.95)), source=source)


def load_noise(path: Path | None = NOISE_FILE) -> NoiseModel:
    """The measured noise model, or :data:`PROVISIONAL_NOISE` (``source`` = "PROVISIONAL") when the file is absent."""
    if path is not None and Path(path).is_file():
        return NoiseModel.from_dict(json.loads(Path(path).read_text()), source=str(Path(path).name))
    return NoiseModel.from_dict(PROVISIONAL_NOISE, source="PROVISIONAL")


# ----------------------------------------------------------------------------------------------------------------
# Cameras


def _unit(v):
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def _axis_angle(axis: np.ndarray, ang: np.ndarray) -> np.ndarray:
    """(B, 3, 3) rotation matrices about unit axes (B, 3) by angles (B,) (Rodrigues)."""
    k = _unit(axis)
    K = np.zeros(k.shape[:-1] + (3, 3))
    K[..., 0, 1], K[..., 0, 2], K[..., 1, 2] = -k[..., 2], k[..., 1], -k[..., 0]
    K[..., 1, 0], K[..., 2, 0], K[..., 2, 1] = k[..., 2], -k[..., 1], k[..., 0]
    s, c = np.sin(ang)[..., None, None], np.cos(ang)[..., None, None]
    return np.eye(3) + s * K + (1 - c) * (K @ K)


def random_cameras(rng: np.random.Generator, world: np.ndarray, hfov_range=(30.0, 90.0)):
    """Random cameras framing each sequence of a batch.

    Args:
        world: ``(B, T, 27, 3)`` joints, metres, world = ``camera`` axes of the MMD scene (y down, floor y = 0).
    Returns:
        ``(R (B, 3, 3) world -> camera, C (B, 3) camera centres, focal (B,) px, size (B, 2) px, hfov (B,) deg)``.
    """
    b = world.shape[0]
    size = IMAGE_SIZES[rng.integers(len(IMAGE_SIZES), size=b)]
    hfov = rng.uniform(*hfov_range, size=b)
    focal = 0.5 * size[:, 0] / np.tan(np.radians(hfov) / 2)
    vfov = 2 * np.arctan(0.5 * size[:, 1] / focal)
    hip = world[:, :, J["Hip"]]
    height = np.max(-world[..., 1], axis=(1, 2))                      # top of the dancer above the floor
    target = hip.mean(axis=1)
    target[:, 1] = -rng.uniform(0.35, 0.65, size=b) * height
    frac = rng.uniform(0.4, 0.95, size=b)
    travel = np.max(np.linalg.norm(hip[:, :, [0, 2]] - target[:, None, [0, 2]], axis=-1), axis=1)
    dist = np.maximum(height / (frac * 2 * np.tan(vfov / 2)), travel + 1.5)     # never nearer than 1.5 m
    yaw = rng.uniform(0, 2 * np.pi, size=b)
    cam_h = rng.uniform(0.3, 2.2, size=b)
    C = target + dist[:, None] * np.stack([np.sin(yaw), np.zeros(b), -np.cos(yaw)], axis=1)
    C[:, 1] = -cam_h
    z = _unit(target - C)
    down = np.array([0.0, 1.0, 0.0])
    y = _unit(down - np.sum(down * z, axis=1, keepdims=True) * z)
    x = np.cross(y, z)
    R = np.stack([x, y, z], axis=1)                                    # rows: camera axes in the world
    pitch = np.radians(rng.uniform(-6, 6, size=b))
    roll = np.radians(np.clip(rng.normal(0, 4, size=b), -12, 12))
    # Perturb in the camera's own frame: pitch about its x axis, roll about its optical axis.
    Rp = _axis_angle(np.broadcast_to([1.0, 0, 0], (b, 3)), pitch)
    Rr = _axis_angle(np.broadcast_to([0, 0, 1.0], (b, 3)), roll)
    R = Rr @ Rp @ R
    return R, C, focal, size, hfov


def project(world: np.ndarray, R: np.ndarray, C: np.ndarray, focal: np.ndarray, size: np.ndarray):
    """World points ``(B, T, N, 3)`` -> camera points ``(B, T, N, 3)`` and pixels ``(B, T, N, 2)``."""
    cam = np.einsum("bij,btnj->btni", R, world - C[:, None, None, :])
    z = np.maximum(cam[..., 2:3], 0.05)
    px = focal[:, None, None, None] * cam[..., :2] / z + 0.5 * size[:, None, None, :]
    return cam, px


# ----------------------------------------------------------------------------------------------------------------
# Detector noise


def body_offsets(joints_mmd: np.ndarray, noise: NoiseModel) -> np.ndarray:
    """``(..., T, 27, 3)`` MMD-unit joints moved by the measured systematic body-frame offsets (detector bias).

    Body frame: left = LHip - RHip made horizontal, up = +Y, forward = up x left (the facing direction in MMD's
    axes); offsets are in leg lengths (hip -> knee -> ankle, mean of both legs, per frame).
    """
    j = joints_mmd
    left = j[..., J["LHip"], :] - j[..., J["RHip"], :]
    left = _unit(left * np.array([1.0, 0.0, 1.0]))
    up = np.broadcast_to([0.0, 1.0, 0.0], left.shape)
    fwd = np.cross(up, left)
    leg = 0.5 * sum(np.linalg.norm(j[..., J[s + "Knee"], :] - j[..., J[s + "Hip"], :], axis=-1)
                    + np.linalg.norm(j[..., J[s + "Foot"], :] - j[..., J[s + "Knee"], :], axis=-1) for s in "LR")
    o = noise.offset_body                                            # (27, 3)
    disp = (o[:, 0, None] * left[..., None, :] + o[:, 1, None] * up[..., None, :] + o[:, 2, None] * fwd[..., None, :])
    return j + disp * leg[..., None, None]


def ar1(rng: np.random.Generator, shape: tuple, rho: float) -> np.ndarray:
    """Unit-variance AR(1) noise ``shape = (B, T, ...)`` along axis 1 with lag-1 autocorrelation ``rho``
    (``e_t = rho e_(t-1) + sqrt(1 - rho²) n_t``); one normal draw of ``(B, ...)`` per frame, in order."""
    e = np.empty(shape)
    e[:, 0] = rng.standard_normal((shape[0],) + tuple(shape[2:]))
    k = math.sqrt(1 - rho * rho)
    for i in range(1, shape[1]):
        e[:, i] = rho * e[:, i - 1] + k * rng.standard_normal((shape[0],) + tuple(shape[2:]))
    return e


def _runs(rng, shape, rate, mean_len):
    """Boolean (B, T) runs: starts with probability rate/mean_len, lengths geometric(mean_len)."""
    b, t = shape
    out = np.zeros((b, t), dtype=bool)
    if rate <= 0:
        return out
    starts = rng.random((b, t)) < rate / mean_len
    for bi, ti in zip(*np.nonzero(starts)):
        out[bi, ti:ti + rng.geometric(1.0 / mean_len)] = True
    return out


#: The joints whose core errors share a limb component (``NoiseModel.limb_corr``): each side's forearm and hand
#: points, and shin and foot points.
LIMBS = {"arm": (("LElbow", "LWrist", "LHandIndex", "LHandPinky"), ("RElbow", "RWrist", "RHandIndex", "RHandPinky")),
         "leg": (("LKnee", "LFoot", "LHeel", "LFootIndex"), ("RKnee", "RFoot", "RHeel", "RFootIndex"))}


def detector_noise(rng: np.random.Generator, px: np.ndarray, size: np.ndarray, noise: NoiseModel,
                   p_no_extras: float = 0.15) -> np.ndarray:
    """Detector-like keypoints from projected (already biased) joints.

    Args:
        px: ``(B, T, 27, 2)`` pixels of the joints (after :func:`body_offsets`).
        size: ``(B, 2)`` image sizes.
    Returns:
        ``(B, T, 27, 3)`` ``(x, y, confidence)``, NaN where the joint is absent.
    """
    b, t = px.shape[:2]
    lo, hi = px.min(axis=2), px.max(axis=2)
    bbox = np.maximum(hi[..., 1] - lo[..., 1], 1.0)                  # (B, T) px
    s = noise.scale
    # AR(1) core noise, unit variance, with the measured lag-1 autocorrelation; with ``limb_corr``, a limb's joints
    # share a component (sqrt(c) shared + sqrt(1 - c) own: unit variance, correlation c within the limb).
    core = ar1(rng, (b, t, NJ, 2), noise.rho)
    for limb, c in sorted(noise.limb_corr.items()):
        for side in LIMBS[limb]:
            idx = [J[n] for n in side]
            shared = ar1(rng, (b, t, 2), noise.rho)
            core[:, :, idx] = math.sqrt(c) * shared[:, :, None] + math.sqrt(1.0 - c) * core[:, :, idx]
    out = px + core * noise.sigma * s * bbox[..., None, None]
    # Heavy tails: outliers of the measured size (log-normal around the median) in a random direction.
    tail = rng.random((b, t, NJ)) < noise.tail_fraction
    mag = noise.tail_median * s * np.exp(0.5 * rng.standard_normal((b, t, NJ)))
    ang = rng.uniform(0, 2 * np.pi, (b, t, NJ))
    out += (tail * mag * bbox[..., None])[..., None] * np.stack([np.cos(ang), np.sin(ang)], axis=-1)
    # Left / right swaps in runs of frames (mean 4 frames).
    for k_pair, (a, c) in enumerate(SWAP_PAIRS):
        sw = _runs(rng, (b, t), noise.swap_rate[k_pair], 4.0)
        if sw.any():
            ia, ic = J[a], J[c]
            pa, pc = out[:, :, ia].copy(), out[:, :, ic].copy()
            out[:, :, ia] = np.where(sw[..., None], pc, pa)
            out[:, :, ic] = np.where(sw[..., None], pa, pc)
    # Confidences around the measured means; low confidence for tails.
    conf = np.clip(noise.conf_core + 0.08 * rng.standard_normal((b, t, NJ)), 0.3, 1.0)
    conf = np.where(tail, np.clip(noise.conf_tail + 0.15 * rng.standard_normal((b, t, NJ)), 0.05, 1.0), conf)
    # Joints missed or with confidence < 0.3 (at the measured rate, in runs): half absent, half low confidence.
    # The low-confidence ones are occluded guesses: their position also gets an outlier-sized error.
    miss = rng.random((b, t, NJ)) < noise.miss_rate
    conf = np.where(miss, rng.uniform(0.0, 0.3, (b, t, NJ)), conf)
    absent = miss & (rng.random((b, t, NJ)) < 0.5)
    guess = miss & ~absent & ~tail
    ang = rng.uniform(0, 2 * np.pi, (b, t, NJ))
    mag = noise.tail_median * s * np.exp(0.5 * rng.standard_normal((b, t, NJ)))
    out += (guess * mag * bbox[..., None])[..., None] * np.stack([np.cos(ang), np.sin(ang)], axis=-1)
    # Outside the image: low confidence.
    outside = (out[..., 0] < 0) | (out[..., 1] < 0) | (out[..., 0] >= size[:, None, None, 0]) | \
              (out[..., 1] >= size[:, None, None, 1])
    conf = np.where(outside, np.minimum(conf, rng.uniform(0.0, 0.4, (b, t, NJ))), conf)
    # Missed frames (runs, mean 3 frames), and sources without the extra joints (COCO-17 detectors).
    frame_miss = _runs(rng, (b, t), noise.frame_miss_rate, 3.0)
    absent |= frame_miss[..., None]
    no_extra = rng.random(b) < p_no_extras
    absent[no_extra, :, 17:] = True
    res = np.concatenate([out, conf[..., None]], axis=-1)
    res[absent] = np.nan
    return res


def truncate_legs(rng: np.random.Generator, kp: np.ndarray, px: np.ndarray, p: float) -> np.ndarray:
    """Tighter framing: for a fraction ``p`` of the sequences, every joint below a fixed image line is absent (NaN),
    as the job gives them when the legs leave the picture (a half-body shot, a crop); the line lies at 55-95 % of the
    dancer's median 2D height from the top, so the dancer moving up and down crosses it.

    Args:
        kp: ``(B, T, 27, 3)`` detections (:func:`detector_noise`).  px: ``(B, T, 27, 2)`` true pixels.
    Returns:
        ``kp`` with those joints NaN (a copy).
    """
    out = kp.copy()
    pick = rng.random(len(kp)) < p
    if not pick.any():
        return out
    top = np.median(px[..., 1].min(axis=2), axis=1)                    # (B,)
    bottom = np.median(px[..., 1].max(axis=2), axis=1)
    line = top + rng.uniform(0.55, 0.95, len(kp)) * (bottom - top)
    below = pick[:, None, None] & (kp[..., 1] > line[:, None, None])
    out[below] = np.nan
    return out


# ----------------------------------------------------------------------------------------------------------------
# Batches


def mmd_world(joints_mmd: np.ndarray) -> np.ndarray:
    """MMD units -> the metric world used here (``core.conventions.mmd_to_camera`` axes)."""
    return mmd_to_camera(joints_mmd)


def mirror_runs(rng: np.random.Generator, shape: tuple, p_seq: float, rate: float, mean_len: float = 8.0):
    """Frames labelled back to front: ``(B, T)`` bool runs (mean ``mean_len`` frames, about ``rate`` of the frames)
    in a fraction ``p_seq`` of the sequences, none elsewhere."""
    runs = _runs(rng, shape, rate, mean_len)
    runs[rng.random(shape[0]) >= p_seq] = False
    return runs


def mirror_detections(kp, world, frames: np.ndarray):
    """What BlazePose gives on frames it reads back to front (a dancer seen from behind, a faceless mannequin): on
    ``frames (B, T)`` the 2D keypoints ``kp (B, T, 27, 3)`` (or None) keep their places with left and right exchanged
    (``CANONICAL_MIRROR``), and the world landmarks ``world (B, T, 27, 3)`` (root-relative camera axes, or None) are
    the body reflected in the image plane (depth negated), labelled the same way -- the other valid body with the
    same image. Returns copies ``(kp, world)`` (None stays None)."""
    if kp is not None:
        kp = kp.copy()
        kp[frames] = kp[frames][:, CANONICAL_MIRROR]
    if world is not None:
        world = world.copy()
        w = world[frames][:, CANONICAL_MIRROR]
        w[..., 2] *= -1.0
        world[frames] = w
    return kp, world


def make_inputs(rng, joints_mmd: np.ndarray, noise: NoiseModel, p_assumed_fov: float = 0.3,
                assumed_hfov: float = 60.0, world_noise=None, p_world: float = 0.75, p_trunc: float = 0.15,
                p_mirror: float = 0.0, mirror_rate: float = 0.15):
    """Synthetic detections and targets for a batch of joint windows.

    Args:
        joints_mmd: ``(B, T, 27, 3)`` MMD-unit ground-truth joints (as the MMD skeleton defines them).
    Returns:
        dict with ``features (B, T, 84) float32``, ``target (B, T, 27, 3)`` root-relative camera metres, ``up (B, 3)``
        the world's up direction in the camera axes,
        ``d (B, T)`` = log(root depth x true 2D scale), ``valid (B, T)``, and the camera (``R, C, focal, size``).
        With probability ``p_assumed_fov`` per sequence the features are normalised with an assumed field of view
        (as at inference when the true one is unknown); ``d`` does not depend on that choice.
        A fraction ``p_trunc`` of the sequences is framed tighter (:func:`truncate_legs`). A fraction ``p_mirror``
        (default 0) has runs of frames read back to front (:func:`mirror_runs`, :func:`mirror_detections`; about
        ``mirror_rate`` of their frames); the targets stay the truth.
        With ``world_noise`` (a ``world3d.World3DNoise``) the features also hold simulated MediaPipe world
        landmarks (``core.lifting.trained.world_features``: ``(B, T, 166)``) for a fraction ``p_world`` of the
        sequences, absent (zeros, flag 0) for the others and on frames the 2D detector missed.
    """
    world = mmd_world(joints_mmd)
    R, C, focal, size, hfov = random_cameras(rng, world)
    cam, _ = project(world, R, C, focal, size)
    biased = mmd_world(body_offsets(joints_mmd, noise))
    _, px = project(biased, R, C, focal, size)
    kp = detector_noise(rng, px, size, noise)
    kp = truncate_legs(rng, kp, px, p_trunc)
    mirrored = mirror_runs(rng, kp.shape[:2], p_mirror, mirror_rate) if p_mirror > 0 else None
    if mirrored is not None:
        kp, _ = mirror_detections(kp, None, mirrored)
    f_in = focal.copy()
    use = rng.random(len(focal)) < p_assumed_fov
    f_in[use] = 0.5 * size[use, 0] / math.tan(math.radians(assumed_hfov) / 2)
    feats, centre, scale, valid = normalise_keypoints(kp, size, focal=f_in)
    scale_true = scale * f_in[:, None] / focal[:, None]
    root = cam[:, :, J["Hip"]]
    d = np.log(np.maximum(root[..., 2], 0.05) * scale_true)
    target = cam - root[:, :, None]
    up = np.einsum("bij,j->bi", R, np.array([0.0, -1.0, 0.0]))            # world up (y down here) in camera axes
    if world_noise is not None:
        from core.lifting.trained import world_features
        from .world3d import simulate
        sim = simulate(rng, target, up, world_noise)
        if mirrored is not None:
            _, sim = mirror_detections(None, sim, mirrored)
        with_world = rng.random(len(sim)) < p_world
        frame_ok = ~np.all(np.isnan(kp[..., 0]), axis=-1)                  # the detector found the person
        wf = np.stack([world_features(sim[i] if with_world[i] else None, sim.shape[1], frame_ok[i])
                       for i in range(len(sim))])
        feats = np.concatenate([feats, wf], axis=-1)
    return {"features": feats, "target": target, "d": d, "valid": valid, "R": R, "C": C, "up": up,
            "focal": focal, "size": size, "keypoints": kp, "root": root}
