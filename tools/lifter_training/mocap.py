"""Motion capture (BVH) -> ``CANONICAL`` joints in MMD axes and units, retargeted onto MMD rest skeletons.

Data: ``../shared/data/mocap`` (``SOURCES.md`` there): Bandai Namco Research Motiondataset 1 and 2 (one skeleton,
joints ``Hips, Spine, Chest, ... Toes_R``, 30 fps, CC BY-NC 4.0) and 61 CMU clips converted by iClone to the
Character Creator skeleton (``CC_Base_*``, 60 fps, CMU terms). Units in both are centimetres, axes Y up and
right-handed (the dancer facing +Z has their left at +X); :func:`load_clip` converts to MMD axes and units
(``core.conventions``: flip Z, 1 unit = 8 cm).

BVH reading: a compact own reader (:func:`read_bvh`, vectorised numpy forward kinematics). The PyPI candidates were
weighed: ``bvh`` (0.3, 2017, unmaintained) only tokenises channels and leaves forward kinematics to the caller;
``bvhio`` (maintained) builds per-joint, per-frame Python objects (PyGLM), far too slow for the ~200k frames here
on a 2-core machine. The file format is small: ``HIERARCHY`` (ROOT / JOINT / End Site with OFFSET and CHANNELS) and
``MOTION`` (one line of channel values per frame); a joint with position channels takes them as its local
translation (both families store the rest offset in them), otherwise its OFFSET; rotation channels compose in the
listed order, ``R = R_c1 · R_c2 · R_c3`` (column vectors, parent <- local), angles in degrees.

CANONICAL joints from the mocap skeleton (positions exact unless said):

* hips, knees, ankles, shoulders (upper-arm joint), elbows, wrists: the matching joints; Hip = mid-hips (as the
  MMD skeleton defines it, ``core.retarget.virtual_joints``); Thorax = neck base; Spine = the chest joint
  (Bandai ``Chest``; CC ``Spine02`` + 0.25 of the way to the neck), which puts it at ~0.6 of the way from Hip to
  Thorax like an MMD 上半身2.
* hand index / pinky knuckles: CC ``*_Index1`` / ``*_Pinky1``; Bandai has no fingers, so points fixed in the hand
  joint's frame (calibrated, below) like ``virtual_joints``' defaults on a model without fingers.
* toe tips: 0.3 of the ankle -> ball vector beyond the ball (Bandai ``Toes_*``, CC ``*_ToeBase``), ~ on the ground.
* heels: a point fixed in the ankle joint's frame, at the ball's height and 0.065 leg lengths behind the ankle in
  the calibration pose.
* nose, head top, ears: ``core.retarget``'s human head layout (``_HEAD_POINTS``, in leg lengths) fixed in the head
  joint's frame.

Calibration ("points fixed in a joint's frame"): per skeleton family, a normal walking clip (listed in
:data:`_FAMILIES`) gives per frame the body frame (left = shoulder line made horizontal, up = +Y, back = left × up
in MMD axes); each point's offset is expressed there as in an MMD rest pose, taken into the joint's local frame, and
the median over frames is kept, so the point follows the joint's rotation in every other clip.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from core import quat as Q
from core.motion import BoneMotion
from core.rest_skeleton import RestSkeleton
from core.retarget import _HEAD_POINTS, joints_from_pose, retarget
from core.skeletons import CANONICAL, CANONICAL_MIRROR

__all__ = ["Bvh", "MocapClip", "read_bvh", "load_clip", "to_mmd", "split", "mirror", "all_clips", "MOCAP_DIR",
           "UNITS_PER_CM", "family_of"]

#: The shared mocap folder, beside the checkout.
MOCAP_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mocap"

#: BVH centimetres -> MMD units (1 unit = 8 cm, core.conventions).
UNITS_PER_CM = 1.0 / 8.0

FPS = 30

J = {n: i for i, n in enumerate(CANONICAL)}

# ----------------------------------------------------------------------------------------------------------------
# BVH reading


@dataclass
class Bvh:
    """A parsed BVH file.

    Attributes:
        names: joint names (End Sites excluded), hierarchy order (parents before children).
        parents: ``(J,)`` parent index, -1 for the root.
        offsets: ``(J, 3)`` rest offsets from the parent, file units (cm here), file axes.
        frame_time: seconds per frame.
        local_t: ``(T, J, 3)`` local translations (position channels if any, else the offset).
        local_r: ``(T, J, 3, 3)`` local rotation matrices (parent <- local).
    """

    names: list
    parents: np.ndarray
    offsets: np.ndarray
    frame_time: float
    local_t: np.ndarray
    local_r: np.ndarray

    @property
    def n_frames(self) -> int:
        return int(self.local_t.shape[0])

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"BVH has no joint {name!r}") from None

    def fk(self) -> tuple[np.ndarray, np.ndarray]:
        """World positions ``(T, J, 3)`` (file units and axes) and world rotations ``(T, J, 3, 3)``."""
        t, n = self.local_t.shape[:2]
        pos = np.empty((t, n, 3))
        rot = np.empty((t, n, 3, 3))
        for j in range(n):
            p = self.parents[j]
            if p < 0:
                pos[:, j] = self.local_t[:, j]
                rot[:, j] = self.local_r[:, j]
            else:
                pos[:, j] = pos[:, p] + np.einsum("tab,tb->ta", rot[:, p], self.local_t[:, j])
                rot[:, j] = rot[:, p] @ self.local_r[:, j]
        return pos, rot


def _axis_rot(axis: str, deg: np.ndarray) -> np.ndarray:
    a = np.radians(deg)
    c, s = np.cos(a), np.sin(a)
    m = np.zeros(a.shape + (3, 3))
    i = "XYZ".index(axis)
    j, k = (i + 1) % 3, (i + 2) % 3
    m[..., i, i] = 1.0
    m[..., j, j] = c
    m[..., k, k] = c
    m[..., j, k] = -s
    m[..., k, j] = s
    return m


def read_bvh(path) -> Bvh:
    """Read a BVH file (see the module docstring for the semantics).

    Raises:
        ValueError: a malformed file (the message names the file and what is wrong).
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8", errors="replace")
    head, sep, motion = text.partition("MOTION")
    if not sep:
        raise ValueError(f"{path}: no MOTION section; not a BVH file")
    tok = head.split()
    if not tok or tok[0] != "HIERARCHY":
        raise ValueError(f"{path}: does not start with HIERARCHY; not a BVH file")
    names, parents, offsets, chans = [], [], [], []
    stack: list[int] = []
    i, last, end_site = 1, -1, False
    try:
        while i < len(tok):
            w = tok[i]
            if w in ("ROOT", "JOINT"):
                names.append(tok[i + 1])
                parents.append(stack[-1] if stack else -1)
                offsets.append(None)
                chans.append([])
                last = len(names) - 1
                i += 2
            elif w == "End":
                end_site = True
                i += 2
            elif w == "{":
                stack.append(-2 if end_site else last)
                i += 1
            elif w == "}":
                stack.pop()
                end_site = False
                i += 1
            elif w == "OFFSET":
                if stack and stack[-1] >= 0:
                    offsets[stack[-1]] = [float(x) for x in tok[i + 1:i + 4]]
                i += 4
            elif w == "CHANNELS":
                n = int(tok[i + 1])
                chans[stack[-1]] = tok[i + 2:i + 2 + n]
                i += 2 + n
            else:
                raise ValueError(f"unexpected token {w!r}")
    except (IndexError, ValueError) as e:
        raise ValueError(f"{path}: malformed HIERARCHY ({e})") from None
    if any(o is None for o in offsets):
        raise ValueError(f"{path}: a joint without OFFSET")
    m = re.search(r"Frames:\s*(\d+)\s*Frame Time:\s*([0-9.eE+-]+)", motion)
    if not m:
        raise ValueError(f"{path}: MOTION lacks 'Frames:' / 'Frame Time:'")
    n_frames, frame_time = int(m.group(1)), float(m.group(2))
    values = np.array(motion[m.end():].split(), dtype=np.float64)
    n_ch = sum(len(c) for c in chans)
    if n_frames == 0 or values.size < n_frames * n_ch:
        raise ValueError(f"{path}: {values.size} channel values for {n_frames} frames x {n_ch} channels")
    values = values[:n_frames * n_ch].reshape(n_frames, n_ch)
    n = len(names)
    off = np.array(offsets, dtype=np.float64)
    local_t = np.broadcast_to(off, (n_frames, n, 3)).copy()
    local_r = np.broadcast_to(np.eye(3), (n_frames, n, 3, 3)).copy()
    col = 0
    for j, ch in enumerate(chans):
        for c in ch:
            if c.endswith("position"):
                local_t[:, j, "XYZ".index(c[0].upper())] = values[:, col]
            col += 1
        rots = [(k, c[0].upper()) for k, c in enumerate(ch) if c.endswith("rotation")]
        if rots:
            base = col - len(ch)
            r = np.broadcast_to(np.eye(3), (n_frames, 3, 3)).copy()
            for k, ax in rots:
                r = r @ _axis_rot(ax, values[:, base + k])
            local_r[:, j] = r
    return Bvh(names=names, parents=np.array(parents, dtype=np.int64), offsets=off, frame_time=frame_time,
               local_t=local_t, local_r=local_r)


# ----------------------------------------------------------------------------------------------------------------
# Skeleton families -> CANONICAL


_BANDAI = {
    "LHip": "UpperLeg_L", "RHip": "UpperLeg_R", "LKnee": "LowerLeg_L", "RKnee": "LowerLeg_R",
    "LFoot": "Foot_L", "RFoot": "Foot_R", "Thorax": "Neck",
    "LShoulder": "UpperArm_L", "RShoulder": "UpperArm_R", "LElbow": "LowerArm_L", "RElbow": "LowerArm_R",
    "LWrist": "Hand_L", "RWrist": "Hand_R",
    "_head": "Head", "_LBall": "Toes_L", "_RBall": "Toes_R", "_spine_a": "Chest", "_spine_b": "Chest",
}
_CC = {
    "LHip": "CC_Base_L_Thigh", "RHip": "CC_Base_R_Thigh", "LKnee": "CC_Base_L_Calf", "RKnee": "CC_Base_R_Calf",
    "LFoot": "CC_Base_L_Foot", "RFoot": "CC_Base_R_Foot", "Thorax": "CC_Base_NeckTwist01",
    "LShoulder": "CC_Base_L_Upperarm", "RShoulder": "CC_Base_R_Upperarm", "LElbow": "CC_Base_L_Forearm",
    "RElbow": "CC_Base_R_Forearm", "LWrist": "CC_Base_L_Hand", "RWrist": "CC_Base_R_Hand",
    "LHandIndex": "CC_Base_L_Index1", "RHandIndex": "CC_Base_R_Index1",
    "LHandPinky": "CC_Base_L_Pinky1", "RHandPinky": "CC_Base_R_Pinky1",
    "_head": "CC_Base_Head", "_LBall": "CC_Base_L_ToeBase", "_RBall": "CC_Base_R_ToeBase",
    "_spine_a": "CC_Base_Spine02", "_spine_b": "CC_Base_NeckTwist01",
}

#: family -> (joint map, calibration clip relative to MOCAP_DIR (a normal walk), unused, spine fraction a -> b).
_FAMILIES = {
    "bandai": (_BANDAI, "bandai_namco_1/dataset-1_walk_normal_001.bvh", 0, 0.0),
    "cc": (_CC, "cmu_iclone/002_01.bvh", 0, 0.25),
}


def family_of(bvh: Bvh) -> str:
    """``"bandai"`` or ``"cc"``; ValueError for a skeleton this module does not know."""
    if "Hips" in bvh.names and "UpperLeg_L" in bvh.names:
        return "bandai"
    if "CC_Base_Hip" in bvh.names:
        return "cc"
    raise ValueError(f"unknown BVH skeleton (joints {bvh.names[:6]} ...): expected the Bandai Namco or the "
                     f"CC_Base (iClone) skeleton")


_FLIP = np.diag([1.0, 1.0, -1.0])


def _world_mmd(bvh: Bvh) -> tuple[np.ndarray, np.ndarray]:
    """FK in MMD axes and units: positions (T, J, 3), rotations (T, J, 3, 3) (posed-from-local, MMD axes)."""
    pos, rot = bvh.fk()
    return pos @ _FLIP * UNITS_PER_CM, _FLIP @ rot @ _FLIP


def _basic(fam: dict, bvh: Bvh, pos: np.ndarray, frac: float) -> np.ndarray:
    """(T, 27, 3) with the joints read directly off the skeleton (others NaN)."""
    out = np.full((pos.shape[0], len(CANONICAL), 3), np.nan)
    for name, bone in fam.items():
        if not name.startswith("_"):
            out[:, J[name]] = pos[:, bvh.index(bone)]
    out[:, J["Hip"]] = 0.5 * (out[:, J["LHip"]] + out[:, J["RHip"]])
    a, b = pos[:, bvh.index(fam["_spine_a"])], pos[:, bvh.index(fam["_spine_b"])]
    out[:, J["Spine"]] = a + frac * (b - a)
    for s in "LR":
        ankle, ball = out[:, J[s + "Foot"]], pos[:, bvh.index(fam["_" + s + "Ball"])]
        out[:, J[s + "FootIndex"]] = ball + 0.3 * (ball - ankle)
    return out


def _leg_length(j: np.ndarray) -> float:
    leg = 0.5 * sum(np.linalg.norm(j[:, J[s + "Knee"]] - j[:, J[s + "Hip"]], axis=1)
                    + np.linalg.norm(j[:, J[s + "Foot"]] - j[:, J[s + "Knee"]], axis=1) for s in "LR")
    return float(np.median(leg))


@lru_cache(maxsize=None)
def _calibration(family: str) -> dict:
    """Per family: point name -> (BVH joint name, offset (3,) in that joint's local frame, MMD axes, in leg lengths).

    Offsets are medians over the calibration clip's frames (a normal walk: upright, looking ahead, arms hanging);
    heels only over frames with that foot flat on the floor (ankle and ball within 1.5 cm of their lowest).
    """
    fam, clip, _, frac = _FAMILIES[family]
    bvh = read_bvh(MOCAP_DIR / clip)
    pos, rot = _world_mmd(bvh)
    j = _basic(fam, bvh, pos, frac)
    L = _leg_length(j)
    left = j[:, J["LShoulder"]] - j[:, J["RShoulder"]]
    left[:, 1] = 0.0
    left /= np.linalg.norm(left, axis=1, keepdims=True)
    up = np.broadcast_to([0.0, 1.0, 0.0], left.shape)
    back = np.cross(left, up)          # MMD: left +X, up +Y -> back +Z (the model faces -Z)
    basis = np.stack([left, up, back], axis=2)    # (T, 3, 3) columns: MMD rest-frame axes in the world

    def local(bone: str, world_off: np.ndarray, keep=None) -> np.ndarray:
        r = rot[:, bvh.index(bone)]
        loc = np.einsum("tba,tb->ta", r, world_off) / L
        return np.median(loc if keep is None else loc[keep], axis=0)

    cal: dict = {}
    for name, off in _HEAD_POINTS.items():
        cal[name] = (fam["_head"], local(fam["_head"], basis @ (np.asarray(off) * L)))
    flat_tol = 1.5 * UNITS_PER_CM
    for s in "LR":
        ankle, ball = j[:, J[s + "Foot"]], pos[:, bvh.index(fam["_" + s + "Ball"])]
        flat = (ankle[:, 1] < ankle[:, 1].min() + flat_tol) & (ball[:, 1] < ball[:, 1].min() + flat_tol)
        fwd = ball - ankle
        fwd[:, 1] = 0.0
        fwd /= np.maximum(np.linalg.norm(fwd, axis=1, keepdims=True), 1e-9)
        heel = -0.065 * L * fwd
        heel[:, 1] = ball[:, 1] - ankle[:, 1]
        cal[s + "Heel"] = (fam[s + "Foot"], local(fam[s + "Foot"], heel, flat if flat.sum() >= 3 else None))
        if s + "HandIndex" not in fam:
            fore = j[:, J[s + "Wrist"]] - j[:, J[s + "Elbow"]]
            n = np.linalg.norm(fore, axis=1, keepdims=True)
            d = fore / n
            fw = -back - np.sum(-back * d, axis=1, keepdims=True) * d
            fw /= np.linalg.norm(fw, axis=1, keepdims=True)
            hand = 0.45 * n
            for nm, v in (("HandIndex", hand * (0.95 * d + 0.2 * fw)), ("HandPinky", hand * (0.85 * d - 0.2 * fw))):
                cal[s + nm] = (fam[s + "Wrist"], local(fam[s + "Wrist"], v))
    return cal


def canonical_joints(bvh: Bvh) -> np.ndarray:
    """``(T, 27, 3)`` CANONICAL joints of a BVH at its own frame rate, MMD axes and units, no NaN."""
    family = family_of(bvh)
    fam, _, _, frac = _FAMILIES[family]
    pos, rot = _world_mmd(bvh)
    out = _basic(fam, bvh, pos, frac)
    L = _leg_length(out)
    for name, (bone, off) in _calibration(family).items():
        b = bvh.index(bone)
        out[:, J[name]] = pos[:, b] + np.einsum("tab,b->ta", rot[:, b], off * L)
    if not np.all(np.isfinite(out)):
        raise ValueError("canonical_joints: non-finite joints (a malformed BVH?)")
    return out


def resample(joints: np.ndarray, fps_in: float, fps_out: float = FPS) -> np.ndarray:
    """Linear resampling of ``(T, ...)`` positions from ``fps_in`` to ``fps_out`` (exact subsampling for 60 -> 30)."""
    t = joints.shape[0]
    if abs(fps_in - fps_out) < 1e-3:
        return joints.copy()
    dur = (t - 1) / fps_in
    n = int(np.floor(dur * fps_out + 1e-6)) + 1
    x = np.arange(n) * (fps_in / fps_out)
    i0 = np.clip(np.floor(x + 1e-6).astype(int), 0, t - 1)
    i1 = np.minimum(i0 + 1, t - 1)
    w = np.clip(x - i0, 0.0, 1.0).reshape((-1,) + (1,) * (joints.ndim - 1))
    return joints[i0] * (1 - w) + joints[i1] * w


@dataclass
class MocapClip:
    """One mocap clip as CANONICAL joints.

    Attributes:
        joints: ``(T, 27, 3)`` float64, ``core.skeletons.CANONICAL`` order, MMD axes and units
            (``core.conventions``), absolute (root trajectory included), no NaN.
        fps: 30 (after resampling).
        name: ``<dataset folder>/<file stem>``, e.g. ``cmu_iclone/005_01``.
        family: ``"bandai"`` or ``"cc"`` (the BVH skeleton).
    """

    joints: np.ndarray
    fps: float
    name: str
    family: str = ""


def load_clip(path) -> MocapClip:
    """Read a BVH clip of ``../shared/data/mocap`` as CANONICAL joints at 30 fps (module docstring).

    Raises:
        ValueError: a malformed file or an unknown skeleton.
    """
    path = Path(path)
    bvh = read_bvh(path)
    j = canonical_joints(bvh)
    j = resample(j, 1.0 / bvh.frame_time, FPS)
    return MocapClip(joints=j, fps=FPS, name=f"{path.parent.name}/{path.stem}", family=family_of(bvh))


def mirror(joints: np.ndarray) -> np.ndarray:
    """Left/right mirror of ``(..., 27, 3)`` MMD-axes joints: negate X and swap the subject's sides."""
    m = np.asarray(joints, dtype=np.float64)[..., CANONICAL_MIRROR, :].copy()
    m[..., 0] *= -1.0
    return m


def to_mmd(clip: MocapClip | np.ndarray, rest: RestSkeleton, **retarget_kw) -> tuple[BoneMotion, np.ndarray]:
    """Retarget a clip onto an MMD rest skeleton and read the joints back *as that skeleton defines them*.

    ``core.retarget.retarget`` (leg-length scale fit, grounding, start at the origin), then ``rest.fk`` of its keys
    and ``core.retarget.joints_from_pose``: these joints are the lifter's training target and the benchmark's ground
    truth (the model's own hip points, 上半身2 height, toe and head points).

    Args:
        clip: a :class:`MocapClip` or ``(T, 27, 3)`` joints in MMD axes and units.
        rest: the target skeleton.
        **retarget_kw: passed to ``retarget``.
    Returns:
        ``(motion, joints)``: the :class:`core.motion.BoneMotion` and ``(T, 27, 3)`` float64 joints, MMD axes and
        units, absolute.
    """
    j = clip.joints if isinstance(clip, MocapClip) else np.asarray(clip, dtype=np.float64)
    motion = retarget(j, rest, **retarget_kw)
    pos, rot = rest.fk(motion.rotations, motion.locations)
    return motion, joints_from_pose(rest, pos, rot)


# ----------------------------------------------------------------------------------------------------------------
# Splits


def all_clips(root: Path | None = None) -> list[Path]:
    """Every BVH under ``root`` (default :data:`MOCAP_DIR`), sorted by dataset and name."""
    root = Path(root) if root is not None else MOCAP_DIR
    return sorted(root.glob("*/*.bvh"))


def _hash_frac(s: str) -> float:
    return int(hashlib.sha1(s.encode()).hexdigest()[:8], 16) / 2 ** 32


def split(root: Path | None = None) -> dict[str, list[Path]]:
    """Deterministic held-out split of whole clips: ``{"train": [...], "test": [...]}``.

    Test: CMU subject 5 (modern dance) trials 05, 10, 15, 20 and one other CMU trial per other subject with a trial
    number ending in 2 (a fixed rule, no randomness), Bandai dataset 1's only dance clip is kept for training
    (dance is scarce) while every clip of one actor style per action group goes to test: style ``feminine``
    (dataset 1) and ``youthful`` (dataset 2); plus a hash-chosen 5% of the remaining Bandai clips.
    """
    train, test = [], []
    for p in all_clips(root):
        ds, stem = p.parent.name, p.stem
        held = False
        if ds == "cmu_iclone":
            subj, trial = (int(x) for x in stem.split("_"))
            held = (subj == 5 and trial in (5, 10, 15, 20)) or (subj != 5 and trial % 10 == 2 and subj in (2, 6, 7))
        elif ds.startswith("bandai"):
            parts = stem.split("_")
            style = parts[2] if len(parts) > 2 else ""
            held = (ds == "bandai_namco_1" and style == "feminine" and parts[1] != "dance-short") or \
                   (ds == "bandai_namco_2" and style == "youthful") or _hash_frac(stem) < 0.05
        (test if held else train).append(p)
    return {"train": train, "test": test}
