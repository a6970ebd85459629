"""Fingers, wrists, head and face morphs from MediaPipe Holistic's hand and face landmarks (numpy only).

Input: the optional ``hands (T, 2, 21, 3)`` and ``face (T, F, 3)`` arrays of a :class:`core.pose_io.PoseSequence`
(written by ``core.worker.backends.holistic``): image px x, y and a relative depth z in px (larger = farther), the
dancer's left hand first, NaN where a hand or the face was not found. Axes and units: ``core.conventions``.

Two steps, both switched by the options ``hands`` / ``face`` (``core.options.MotionOptions``):

1. :func:`refine_joints`, before the motion stage: where a hand passes :func:`hand_gate`, the ``CANONICAL``
   joints ``LHandIndex`` / ``LHandPinky`` (and right) of ``joints_3d`` are replaced by the hand model's index and
   little-finger knuckles (landmarks 5 and 17, metres from the wrist at a palm length of :data:`PALM_M`), so
   ``core.retarget`` keys 手首 from the hand model (its hand frame is built from exactly these two points and the
   wrist, on the model from 人指１ / 小指１). Where the face passes :func:`face_gate`, the head points (Nose, Head,
   LEar, REar) are turned about the ears' midpoint by the face mesh's rotation (forehead-chin and cheek-to-cheek
   axes) relative to the body's, after removing the clip's constant offset between the two (a rotation mean over
   the frames where both are seen), so 頭 follows the face mesh's nods and turns and keeps the body's mean pose;
   faces more than :data:`HEAD_MAX_DEV_DEG` from the body's head are not used; gaps in the face up to
   :data:`MAX_GAP_S` are bridged and longer ones ease back to the body's head over
   :data:`RAMP_S`.
2. :func:`add_hands_face`, after it: the finger bones of :data:`FINGER_BONES` the model has get rotations, and
   the morphs of :data:`MORPHS` get weights, at the motion's key frames.

Fingers: each hand's landmarks are put in the hand's own frame (wrist; knuckles midpoint; index-little lateral, as
``core.retarget`` builds the 手首 frame) and then in the model's rest hand frame (手首; 人指１ / 小指１ midpoint and
lateral), so a finger's key depends only on the hand's shape. Each bone turns by the shortest arc from its rest
direction (the bone to its child, e.g. 人指１ -> 人指２; MediaPipe segment in :data:`FINGER_BONES`), carried by its
parent finger bone, so keys are local as docs/MMD_FACTS.md §2.2 says. Gaps in a hand up to :data:`MAX_GAP_S` are
interpolated; over longer gaps the fingers ease (over :data:`RAMP_S`) into :data:`RELAXED_DEG`, a neutral relaxed
curl toward the palm, which is also what a clip without any usable hand (anime hands, hands out of the frame) gets:
nothing is keyed from a hand the gate refuses.

Morphs (weights 0..1): eye closure from each eye's aspect ratio (lid gap over eye width, two lid pairs, in 3D px),
scaled from :data:`EYE_START_FRACTION` of the clip's open level (:data:`EYE_OPEN_PERCENTILE` of the ratio) down to
:data:`EYE_CLOSED_FRACTION` of it, on faces at least :data:`MIN_FACE_PX_EYES` wide; both eyes closed = まばたき, one
more than the other = ウィンク (left eye) / ウィンク右 (right eye); mouth opening (inner-lip gap over mouth width) = あ;
mouth wider than the clip's median (mouth width over face width) by more than :data:`MOUTH_WIDTH_START` = い,
narrower = う. These are heuristics on the face mesh, stated here with their thresholds; they are not learned.
Finger keys are clamped to :data:`FINGER_LIMIT_DEG`.
Frames without a face hold the eyes open and the mouth closed (weights 0).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from . import conventions, filters
from . import quat as Q
from .skeletons import CANONICAL, MEDIAPIPE33

__all__ = ["HAND_LANDMARKS", "N_HAND", "FACE_POINTS", "FACE_INDICES", "FINGER_BONES", "MORPHS", "RELAXED_DEG",
           "hand_gate", "face_gate", "refine_joints", "finger_rotations", "relaxed_rotations", "face_morphs",
           "add_hands_face", "HandsFaceReport"]

#: MediaPipe's 21 hand landmarks, in order.
HAND_LANDMARKS: tuple[str, ...] = (
    "wrist", "thumb_cmc", "thumb_mcp", "thumb_ip", "thumb_tip", "index_mcp", "index_pip", "index_dip", "index_tip",
    "middle_mcp", "middle_pip", "middle_dip", "middle_tip", "ring_mcp", "ring_pip", "ring_dip", "ring_tip",
    "pinky_mcp", "pinky_pip", "pinky_dip", "pinky_tip")
N_HAND = len(HAND_LANDMARKS)

#: Face-mesh landmarks kept in the pose file (name -> MediaPipe face-mesh index), in the order of the ``face`` array.
#: "left"/"right" are the dancer's: the right eye is at the image's left for a dancer facing the camera.
FACE_POINTS: dict[str, int] = {
    "nose_tip": 1, "forehead": 10, "chin": 152, "cheek_right": 234, "cheek_left": 454,
    "right_eye_outer": 33, "right_eye_inner": 133, "right_eye_upper1": 160, "right_eye_upper2": 158,
    "right_eye_lower1": 144, "right_eye_lower2": 153,
    "left_eye_outer": 263, "left_eye_inner": 362, "left_eye_upper1": 385, "left_eye_upper2": 387,
    "left_eye_lower1": 380, "left_eye_lower2": 373,
    "mouth_right": 61, "mouth_left": 291, "lip_upper_inner": 13, "lip_lower_inner": 14,
    "lip_upper_outer": 0, "lip_lower_outer": 17,
}
FACE_INDICES: tuple[int, ...] = tuple(FACE_POINTS.values())
_F = {n: i for i, n in enumerate(FACE_POINTS)}

#: Finger bones (without the 左/右 prefix), the MediaPipe landmarks of their segment (start, end), and their finger
#: parent (None: 手首). A model without 親指０ starts the thumb at 親指１ (docs/MMD_FACTS.md §4), which then hangs off 手首.
FINGER_BONES: tuple[tuple[str, int, int, str | None], ...] = (
    ("親指０", 1, 2, None), ("親指１", 2, 3, "親指０"), ("親指２", 3, 4, "親指１"),
    ("人指１", 5, 6, None), ("人指２", 6, 7, "人指１"), ("人指３", 7, 8, "人指２"),
    ("中指１", 9, 10, None), ("中指２", 10, 11, "中指１"), ("中指３", 11, 12, "中指２"),
    ("薬指１", 13, 14, None), ("薬指２", 14, 15, "薬指１"), ("薬指３", 15, 16, "薬指２"),
    ("小指１", 17, 18, None), ("小指２", 18, 19, "小指１"), ("小指３", 19, 20, "小指２"),
)
#: The child each finger bone points at in the model's rest pose (the last joint points at its …先 tip bone).
_CHILD = {"親指０": "親指１", "親指１": "親指２", "親指２": "親指先"}
for _f in ("人指", "中指", "薬指", "小指"):
    _CHILD.update({_f + "１": _f + "２", _f + "２": _f + "３", _f + "３": _f + "先"})

#: The neutral relaxed hand: each finger joint's curl toward the palm, degrees.
RELAXED_DEG: dict[str, float] = {"親指０": 5.0, "親指１": 10.0, "親指２": 10.0}
RELAXED_DEG.update({f + k: v for f in ("人指", "中指", "薬指", "小指") for k, v in (("１", 15.0), ("２", 25.0),
                                                                                ("３", 15.0))})

#: Morphs keyed from the face (standard MMD names; ウィンク closes the left eye, ウィンク右 the right).
MORPHS: tuple[str, ...] = ("まばたき", "ウィンク", "ウィンク右", "あ", "い", "う")

#: MediaPipe's hand depth (z) is compressed against x and y: on the closed-loop render
#: (benchmarks/bench_hands_face_loop.py) the true depth extent of a hand is 2.1-2.8x what the hand model gives, and
#: scaling z by 2 lowers the fingers' direction error from 43° / 29° (left / right) to 34° / 23°. Applied to every
#: hand landmark's z before use.
HAND_Z_SCALE = 2.0
#: Palm length (wrist to middle knuckle) used to place the hand points in metres; only their directions matter.
PALM_M = 0.085
#: A face whose rotation differs from the body's head by more than this (after the clip's mean offset) is not used
#: for 頭: the face mesh keeps "tracking" a head turned away from the camera.
HEAD_MAX_DEV_DEG = 35.0
#: Gaps in a hand (or the face) up to this many seconds are interpolated; longer ones ease to the neutral pose.
MAX_GAP_S = 0.3
#: A hand must pass the gate on this many frames in a row to be used.
MIN_RUN = 2
#: A hand shape whose finger turns more than this beyond :data:`FINGER_LIMIT_DEG` is not used on that key (the
#: fingers ease to the relaxed pose there instead of being clamped, which could flip a finger over).
IMPLAUSIBLE_MARGIN_DEG = 20.0
#: Fastest finger turn keyed, degrees per second (a finger flicks at up to ~1000°/s): faster changes are the hand
#: model's jitter and are rate-limited, so a finger never pops.
FINGER_MAX_DEG_S = 900.0
#: Frames of the median filter on the hand's shape.
SHAPE_MEDIAN = 5
#: Seconds over which the fingers ease from the last seen hand into the relaxed pose (and back).
RAMP_S = 0.25
#: The eyes' open level is this percentile of the clip's eye aspect ratio; closed is this fraction of it.
EYE_OPEN_PERCENTILE = 75.0
EYE_CLOSED_FRACTION = 0.35
#: Closure starts below this fraction of the open level (lid jitter of an open eye keys nothing).
EYE_START_FRACTION = 0.85
#: あ is 0 at this inner-lip gap / mouth width and 1 at :data:`MOUTH_OPEN_FULL`.
MOUTH_OPEN_MIN, MOUTH_OPEN_FULL = 0.08, 0.6
#: Eye morphs need a face at least this wide (cheek to cheek, px): on smaller faces the lids are a pixel or two
#: apart and their jitter reads as blinks (kunkun_dance's 38 px face: まばたき on 45 % of the frames).
MIN_FACE_PX_EYES = 56.0
#: Mouth morphs need at least this face width, px.
MIN_FACE_PX_MOUTH = 30.0
#: い / う start at this relative change of the mouth's width (over face width) from the clip's median and reach 1
#: at :data:`MOUTH_WIDTH_FULL` beyond it.
MOUTH_WIDTH_START, MOUTH_WIDTH_FULL = 0.05, 0.15
#: Largest turn of a finger bone from its rest, degrees (a finger joint flexes at most ~90-110°; the thumb's less):
#: keys beyond it (depth noise of the hand model) are clamped, axis kept.
FINGER_LIMIT_DEG = {"親指": 70.0, "": 100.0}

_J = {n: i for i, n in enumerate(CANONICAL)}
_M = {n: i for i, n in enumerate(MEDIAPIPE33)}


# ----------------------------------------------------------------------------------------------------------------
# Gates


def _norm(v):
    return np.linalg.norm(v, axis=-1)


def _unit(v):
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 1e-12, v / n, np.nan)


def _torso_px(keypoints_2d: np.ndarray, names) -> float:
    """Median 2D length (px) from the shoulders' midpoint to the hips' midpoint, over frames where it is finite."""
    idx = {n: i for i, n in enumerate(names)}
    try:
        ls, rs, lh, rh = (idx[n] for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip"))
    except KeyError:
        return float("nan")
    kp = np.asarray(keypoints_2d, dtype=np.float64)[..., :2]
    d = _norm(0.5 * (kp[:, ls] + kp[:, rs]) - 0.5 * (kp[:, lh] + kp[:, rh]))
    d = d[np.isfinite(d) & (d > 0)]
    return float(np.median(d)) if d.size else float("nan")


def hand_gate(hands: np.ndarray, keypoints_2d: np.ndarray | None = None, joint_names_2d=MEDIAPIPE33) -> np.ndarray:
    """Which hands are usable: ``(T, 2)`` bool for ``hands (T, 2, 21, 3)`` (px, NaN where absent).

    A hand passes when all 21 landmarks are finite and it is plausible: its palm (wrist -> middle knuckle, 3D px) is
    0.06-0.6 of the body's median torso length in px; every finger segment is 0.1-1.2 palm lengths; no finger joint
    bends more than 130° and no knuckle more than 110° from its palm bone (real ones bend at most ~110° / ~90°); the four knuckles are ordered index, middle, ring,
    little along the knuckle line; and, with the body's ``keypoints_2d`` (``(T, J, 3)`` in ``joint_names_2d``), its
    wrist is within 1.5 palm lengths of the body's wrist on that side in the image.
    """
    h = np.asarray(hands, dtype=np.float64)
    if h.ndim != 4 or h.shape[1:] != (2, N_HAND, 3):
        raise ValueError(f"hands must be (T, 2, {N_HAND}, 3), got {h.shape}")
    ok = np.isfinite(h).all(axis=(2, 3))
    palm = _norm(h[:, :, 9] - h[:, :, 0])
    with np.errstate(invalid="ignore"):
        if keypoints_2d is not None:
            torso = _torso_px(keypoints_2d, joint_names_2d)
            if np.isfinite(torso):
                ok &= (palm > 0.06 * torso) & (palm < 0.6 * torso)
        ok &= palm > 1e-6
        for _, a, b, _p in FINGER_BONES:
            seg = _norm(h[:, :, b] - h[:, :, a])
            ok &= (seg > 0.1 * palm) & (seg < 1.2 * palm)
        for name, a, b, parent in FINGER_BONES:
            if parent is not None:
                pa = next(x for x in FINGER_BONES if x[0] == parent)
                prev = h[:, :, pa[2]] - h[:, :, pa[1]]
                limit = 130.0
            elif name.startswith("親指"):
                continue
            else:   # a knuckle, against the palm's bone to it (wrist -> knuckle)
                prev, limit = h[:, :, a] - h[:, :, 0], 110.0
            cosang = np.sum(_unit(h[:, :, b] - h[:, :, a]) * _unit(prev), axis=-1)
            ok &= cosang > np.cos(np.radians(limit))
        lat = h[:, :, 5] - h[:, :, 17]
        proj = [np.sum((h[:, :, k] - h[:, :, 17]) * lat, axis=-1) for k in (5, 9, 13, 17)]
        ok &= (proj[0] > proj[1]) & (proj[1] > proj[2]) & (proj[2] > proj[3])
        if keypoints_2d is not None:
            kp = np.asarray(keypoints_2d, dtype=np.float64)
            idx = {n: i for i, n in enumerate(joint_names_2d)}
            for k, name in enumerate(("left_wrist", "right_wrist")):
                if name in idx:
                    w = kp[:, idx[name], :2]
                    near = _norm(h[:, k, 0, :2] - w) < 1.5 * palm[:, k]
                    ok[:, k] &= near | ~np.isfinite(w).all(axis=-1)
    return ok & np.isfinite(palm)


def face_gate(face: np.ndarray, keypoints_2d: np.ndarray | None = None, joint_names_2d=MEDIAPIPE33) -> np.ndarray:
    """Which frames' face landmarks are usable: ``(T,)`` bool for ``face (T, F, 3)``.

    Passes when every point is finite, the face is 0.1-1.5 of the body's torso length wide (cheek to cheek, 2D px),
    its eyes and mouth sit inside the face (each eye's width and the mouth's width 0.1-0.6 of the face's), and, with
    the body's ``keypoints_2d``, its nose tip is within half a face width of the body's nose in the image.
    """
    f = np.asarray(face, dtype=np.float64)
    if f.ndim != 3 or f.shape[1:] != (len(FACE_INDICES), 3):
        raise ValueError(f"face must be (T, {len(FACE_INDICES)}, 3), got {f.shape}")
    ok = np.isfinite(f).all(axis=(1, 2))
    width = _norm(f[:, _F["cheek_left"], :2] - f[:, _F["cheek_right"], :2])
    with np.errstate(invalid="ignore"):
        ok &= width > 1e-6
        for a, b in (("left_eye_outer", "left_eye_inner"), ("right_eye_outer", "right_eye_inner"),
                     ("mouth_left", "mouth_right")):
            r = _norm(f[:, _F[a]] - f[:, _F[b]]) / width
            ok &= (r > 0.1) & (r < 0.6)
        if keypoints_2d is not None:
            kp = np.asarray(keypoints_2d, dtype=np.float64)
            torso = _torso_px(kp, joint_names_2d)
            if np.isfinite(torso):
                ok &= (width > 0.1 * torso) & (width < 1.5 * torso)
            idx = {n: i for i, n in enumerate(joint_names_2d)}
            if "nose" in idx:
                nose = kp[:, idx["nose"], :2]
                ok &= (_norm(f[:, _F["nose_tip"], :2] - nose) < 0.5 * width) | ~np.isfinite(nose).all(axis=-1)
    return ok


# ----------------------------------------------------------------------------------------------------------------
# Step 1: joints


def _rot_mean(m: np.ndarray) -> np.ndarray:
    """The rotation matrix nearest the mean of ``(N, 3, 3)`` rotations (SVD projection)."""
    u, _, vt = np.linalg.svd(m.mean(axis=0))
    r = u @ vt
    if np.linalg.det(r) < 0:
        u[:, -1] *= -1
        r = u @ vt
    return r


def refine_joints(poses, *, hands: bool = True, face: bool = True):
    """The pose sequence with the hand points / head points of ``joints_3d`` taken from the hand and face models
    (step 1 of the module docstring). Returns ``poses`` itself when there is nothing to do (switched off, no
    ``hands`` / ``face`` arrays, no 3D joints, nothing usable); otherwise a copy (``core.pose_io.PoseSequence``)."""
    j3 = getattr(poses, "joints_3d", None)
    if j3 is None:
        return poses
    out = np.array(j3, dtype=np.float64)
    changed = False
    kp, names = poses.keypoints_2d, poses.joint_names_2d
    hd = getattr(poses, "hands", None)
    if hands and hd is not None:
        h = np.asarray(hd, dtype=np.float64)
        ok = hand_gate(h, kp if kp.shape[1] else None, names)
        for k, tag in enumerate("LR"):
            sel = ok[:, k]
            if not sel.any():
                continue
            lm = (h[sel, k] - h[sel, k, :1]) * [1.0, 1.0, HAND_Z_SCALE]
            s = PALM_M / _norm(lm[:, 9] - lm[:, 0])[:, None]
            wrist = out[sel, _J[tag + "Wrist"]]
            out[sel, _J[tag + "HandIndex"]] = wrist + s * (lm[:, 5] - lm[:, 0])
            out[sel, _J[tag + "HandPinky"]] = wrist + s * (lm[:, 17] - lm[:, 0])
            changed = True
    fc = getattr(poses, "face", None)
    if face and fc is not None:
        f = np.asarray(fc, dtype=np.float64)
        ok = face_gate(f, kp if kp.shape[1] else None, names)
        le, re_, nose = out[:, _J["LEar"]], out[:, _J["REar"]], out[:, _J["Nose"]]
        mid = 0.5 * (le + re_)
        r_body = Q.frame_matrix(le - re_, nose - mid)
        r_face = Q.frame_matrix(f[:, _F["cheek_left"]] - f[:, _F["cheek_right"]],
                                f[:, _F["forehead"]] - f[:, _F["chin"]])
        both = ok & np.isfinite(r_body).all(axis=(1, 2)) & np.isfinite(r_face).all(axis=(1, 2))
        for _ in range(2):   # calibrate, drop the faces that disagree with the body's head, calibrate again
            if both.sum() < 3:
                break
            calib = _rot_mean(np.swapaxes(r_face[both], 1, 2) @ r_body[both])
            delta = Q.from_matrix(r_face @ calib @ np.swapaxes(r_body, 1, 2))
            both &= np.degrees(Q.angle(np.nan_to_num(delta, nan=1.0))) < HEAD_MAX_DEV_DEG
        if both.sum() >= 3:
            q = np.full((len(f), 4), np.nan)
            q[both] = Q.make_continuous(delta[both])
            t = np.asarray(poses.timestamps, dtype=np.float64)
            q, _ = filters.fill_gaps(q, t)              # short gaps bridged; the weight below fades long ones
            q = Q.slerp(Q.identity((len(f),)), Q.normalize(q), _keep_weight(both, t))
            use = np.isfinite(mid).all(axis=1)
            for name in ("Nose", "Head", "LEar", "REar"):
                p = out[use, _J[name]] - mid[use]
                out[use, _J[name]] = mid[use] + Q.rotate(q[use], p)
            changed = True
    return replace(poses, joints_3d=out.astype(np.float32)) if changed else poses


# ----------------------------------------------------------------------------------------------------------------
# Step 2: fingers


def _hand_rest(rest, side: str):
    """Model rest hand frame ``(3, 3)`` (columns, as ``Q.frame_matrix``), the rest 手首 position and the palm side
    (unit vector toward the palm, MMD axes), or None when the model lacks 手首 / 人指１ / 小指１."""
    w, i, p = (rest.index_of(side + n) for n in ("手首", "人指１", "小指１"))
    if w is None or i is None or p is None:
        return None
    pos = rest.positions
    prim, lat = 0.5 * (pos[i] + pos[p]) - pos[w], pos[i] - pos[p]
    frame = Q.frame_matrix(prim, lat)
    palm = np.cross(prim, lat)
    palm = palm / np.linalg.norm(palm) * (-1.0 if side == "左" else 1.0)
    return frame, pos[w], palm


def _bones_of(rest, side: str) -> list[tuple[str, int, int, str | None, np.ndarray]]:
    """The model's finger bones on one side: (name, lm start, lm end, keyed finger parent or None, rest direction)."""
    out, have = [], set()
    pos = rest.positions
    for name, a, b, parent in FINGER_BONES:
        i = rest.index_of(side + name)
        if i is None:
            continue
        c = rest.index_of(side + _CHILD[name])
        if c is not None and np.linalg.norm(pos[c] - pos[i]) > 1e-6:
            d = pos[c] - pos[i]
        else:  # no tip bone: continue the parent's direction (or point away from the wrist)
            par = rest.index_of(side + parent) if parent else rest.index_of(side + "手首")
            d = pos[i] - pos[par]
        while parent is not None and parent not in have:
            parent = next(x[3] for x in FINGER_BONES if x[0] == parent)
        out.append((side + name, a, b, side + parent if parent else None, d / np.linalg.norm(d)))
        have.add(name)
    return out


def relaxed_rotations(rest, side: str, n: int) -> dict[str, np.ndarray]:
    """The neutral relaxed hand (:data:`RELAXED_DEG`) on one side: bone name -> ``(n, 4)`` local rotations."""
    hr = _hand_rest(rest, side)
    if hr is None:
        return {}
    palm = hr[2]
    out = {}
    for name, _a, _b, _p, d in _bones_of(rest, side):
        axis = np.cross(d, palm)
        if np.linalg.norm(axis) < 1e-6:
            axis = np.cross(d, [0.0, 1.0, 0.0])
        q = Q.from_axis_angle(axis, np.radians(RELAXED_DEG[name[1:]]))
        out[name] = np.broadcast_to(q, (n, 4)).copy()
    return out


def finger_rotations(rest, side: str, landmarks: np.ndarray) -> dict[str, np.ndarray]:
    """Finger keys of one hand from its landmarks: bone name -> ``(T, 4)`` local rotations (x, y, z, w).

    Args:
        rest: the model (:class:`core.rest_skeleton.RestSkeleton`); only the bones it has are keyed.
        side: "左" or "右" (the dancer's left / right, ``landmarks`` of that hand).
        landmarks: ``(T, 21, 3)`` hand landmarks in MMD axes (any scale; only the hand's shape is used), finite.
    """
    hr = _hand_rest(rest, side)
    if hr is None:
        return {}
    frame_r, _, _ = hr
    lm = np.asarray(landmarks, dtype=np.float64)
    t = lm.shape[0]
    obs = Q.frame_matrix(0.5 * (lm[:, 5] + lm[:, 17]) - lm[:, 0], lm[:, 5] - lm[:, 17])   # (T, 3, 3)
    to_rest = frame_r[None] @ np.swapaxes(obs, 1, 2)                                     # observed -> model rest
    world: dict[str, np.ndarray] = {}
    out = {}
    for name, a, b, parent, d_r in _bones_of(rest, side):
        d = np.einsum("tij,tj->ti", to_rest, lm[:, b] - lm[:, a])
        g_par = world[parent] if parent else Q.identity((t,))
        g = Q.multiply(Q.from_two_vectors(Q.rotate(g_par, d_r), d), g_par)
        bad = ~np.isfinite(g).all(axis=1)
        g[bad] = g_par[bad]
        world[name] = g
        out[name] = Q.multiply(Q.conjugate(g_par), g)
    return out


def _limit(name: str) -> float:
    return FINGER_LIMIT_DEG["親指" if "親指" in name else ""]


def _rate_limit(q: np.ndarray, t: np.ndarray, max_deg_s: float) -> np.ndarray:
    """``(T, ..., 4)`` rotations, each turning at most ``max_deg_s`` degrees per second from the previous output
    (slerped toward its target): a forward pass."""
    out = Q.normalize(np.array(q, dtype=np.float64))
    for i in range(1, len(out)):
        lim = np.radians(max_deg_s * max(float(t[i] - t[i - 1]), 1e-6))
        ang = Q.angle_between(out[i], out[i - 1])
        frac = np.where(ang > lim, lim / np.maximum(ang, 1e-12), 1.0)
        out[i] = Q.slerp(out[i - 1], out[i], frac)
    return out


def _runs_at_least(ok: np.ndarray, n: int) -> np.ndarray:
    """``ok`` with its runs of True shorter than ``n`` frames set False (a hand seen on one frame is not trusted)."""
    out = np.asarray(ok, dtype=bool).copy()
    edges = np.flatnonzero(np.diff(np.r_[0, out.astype(np.int8), 0]))
    for a, b in zip(edges[::2], edges[1::2]):
        if b - a < n:
            out[a:b] = False
    return out


def _hand_shapes(lm: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Hand landmarks ``(T, 21, 3)`` in the hand's own frame (columns of ``Q.frame_matrix`` from the knuckles, as
    :func:`finger_rotations` builds it), in palm lengths, median-filtered over :data:`SHAPE_MEDIAN` usable frames
    (the hand model's landmarks jitter from frame to frame); NaN where not ``ok``."""
    x = (np.asarray(lm, dtype=np.float64) - lm[:, :1]) * [1.0, 1.0, HAND_Z_SCALE]
    f = Q.frame_matrix(0.5 * (x[:, 5] + x[:, 17]), x[:, 5] - x[:, 17])
    x = np.einsum("tji,tkj->tki", f, x) / _norm(x[:, 9])[:, None, None]
    x[~ok] = np.nan
    half = SHAPE_MEDIAN // 2
    out = np.full_like(x, np.nan)
    for i in np.flatnonzero(ok):
        with np.errstate(all="ignore"):
            out[i] = np.nanmedian(x[max(0, i - half):i + half + 1], axis=0)
    return out


def _keep_weight(ok: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``(T,)`` weight of the observed values: 1 on usable frames and gaps up to :data:`MAX_GAP_S`, easing to 0 over
    :data:`RAMP_S` into longer gaps."""
    keep = ok.copy()
    idx = np.flatnonzero(ok)
    for a, b in zip(idx[:-1], idx[1:]):
        if b - a > 1 and t[b] - t[a] <= MAX_GAP_S:
            keep[a:b] = True
    if not keep.any():
        return np.zeros(len(t))
    kt = t[keep]
    pos = np.searchsorted(kt, t)
    d = np.minimum(np.abs(t - kt[np.clip(pos - 1, 0, len(kt) - 1)]), np.abs(kt[np.clip(pos, 0, len(kt) - 1)] - t))
    return np.clip(1.0 - d / RAMP_S, 0.0, 1.0)


# ----------------------------------------------------------------------------------------------------------------
# Step 2: morphs


def _eye_ratio(f: np.ndarray, side: str) -> np.ndarray:
    p = {k: f[:, _F[f"{side}_eye_{k}"]] for k in ("outer", "inner", "upper1", "upper2", "lower1", "lower2")}
    gap = 0.5 * (_norm(p["upper1"] - p["lower1"]) + _norm(p["upper2"] - p["lower2"]))
    return gap / _norm(p["outer"] - p["inner"])


def face_morphs(face: np.ndarray, ok: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Morph weights ``(T,)`` in 0..1 for each of :data:`MORPHS` from ``face (T, F, 3)`` (module docstring).

    Args:
        face: face points in :data:`FACE_POINTS` order, px (any uniform scale).
        ok: ``(T,)`` frames to use (default: :func:`face_gate` without the body); others get 0 (eyes open, mouth
            closed), as do the eyes on faces under :data:`MIN_FACE_PX_EYES` and the mouth under
            :data:`MIN_FACE_PX_MOUTH` px wide.
    """
    f = np.asarray(face, dtype=np.float64)
    ok = face_gate(f) if ok is None else np.asarray(ok, dtype=bool)
    t = f.shape[0]
    out = {m: np.zeros(t) for m in MORPHS}
    fw = _norm(f[:, _F["cheek_left"], :2] - f[:, _F["cheek_right"], :2])
    with np.errstate(invalid="ignore"):
        ok_eyes, ok = ok & (fw >= MIN_FACE_PX_EYES), ok & (fw >= MIN_FACE_PX_MOUTH)
    if ok.sum() < 1:
        return out
    closed = {}
    for side in ("left", "right"):
        if not ok_eyes.any():
            closed[side] = np.zeros(t)
            continue
        r = _eye_ratio(f, side)
        open_level = float(np.percentile(r[ok_eyes], EYE_OPEN_PERCENTILE))
        hi, lo = EYE_START_FRACTION * open_level, EYE_CLOSED_FRACTION * open_level
        c = np.clip((hi - r) / max(hi - lo, 1e-9), 0.0, 1.0)
        closed[side] = np.where(ok_eyes, c, 0.0)
    blink = np.minimum(closed["left"], closed["right"])
    out["まばたき"] = blink
    out["ウィンク"] = closed["left"] - blink
    out["ウィンク右"] = closed["right"] - blink
    mw = _norm(f[:, _F["mouth_left"]] - f[:, _F["mouth_right"]])
    gap = _norm(f[:, _F["lip_upper_inner"]] - f[:, _F["lip_lower_inner"]]) / mw
    out["あ"] = np.where(ok, np.clip((gap - MOUTH_OPEN_MIN) / (MOUTH_OPEN_FULL - MOUTH_OPEN_MIN), 0.0, 1.0), 0.0)
    width = mw / _norm(f[:, _F["cheek_left"]] - f[:, _F["cheek_right"]])
    rel = width / float(np.median(width[ok])) - 1.0
    out["い"] = np.where(ok, np.clip((rel - MOUTH_WIDTH_START) / MOUTH_WIDTH_FULL, 0.0, 1.0), 0.0)
    out["う"] = np.where(ok, np.clip((-rel - MOUTH_WIDTH_START) / MOUTH_WIDTH_FULL, 0.0, 1.0), 0.0)
    return {k: np.nan_to_num(v) for k, v in out.items()}


# ----------------------------------------------------------------------------------------------------------------
# The motion stage's entry point


class HandsFaceReport(dict):
    """What :func:`add_hands_face` keyed (a dict, stored in ``motion.meta["hands_face"]``): ``hand_frames``
    ``[left, right]`` frames whose hand passed the gate, ``frames``, ``face_frames``, ``finger_bones``, ``morphs``
    (name -> frames with a weight above 0.05)."""


def _resample(x: np.ndarray, t: np.ndarray, t_new: np.ndarray) -> np.ndarray:
    return filters.resample(x, t, t_new) if len(t) > 1 else np.repeat(x[:1], len(t_new), axis=0)


def add_hands_face(motion, poses, rest, opts=None):
    """Key fingers and face morphs on ``motion`` (a :class:`core.motion.BoneMotion` from the motion stage), in place.

    Args:
        motion: keyed at ``motion.frames`` (30 fps MMD frames; key time = frame / 30 s from the first video frame).
        poses: the pose sequence it came from, with optional ``hands`` / ``face`` arrays.
        rest: the target model.
        opts: options with ``hands``, ``face`` (False: not keyed; None or True: keyed when the pose file has them) and
            ``smoothing`` (0..1, default 0.5).
    Returns:
        ``motion``, with finger rotations in ``motion.rotations`` (when ``hands`` is on and the pose file has hands),
        morph weights in ``motion.morphs`` (when ``face`` is on and it has a face) and a :class:`HandsFaceReport` in
        ``motion.meta["hands_face"]``.
    """
    from .smoothing import clamp_rotation_angle, one_euro_params, smooth_rotations

    want_hands = getattr(opts, "hands", None) is not False   # None (unset): key what the pose file has
    want_face = getattr(opts, "face", None) is not False
    strength = float(getattr(opts, "smoothing", 0.5)) if opts is not None else 0.5
    t = np.asarray(poses.timestamps, dtype=np.float64) - float(poses.timestamps[0])
    t_keys = motion.frames / conventions.MMD_FPS
    n = motion.n_frames
    report = HandsFaceReport(frames=len(poses))
    kp = poses.keypoints_2d if poses.keypoints_2d.shape[1] else None
    hd = getattr(poses, "hands", None)
    if want_hands and hd is not None:
        h = np.asarray(hd, dtype=np.float64)
        ok = hand_gate(h, kp, poses.joint_names_2d)
        ok = np.stack([_runs_at_least(ok[:, k], MIN_RUN) for k in range(2)], axis=1)
        report["hand_frames"] = [int(ok[:, 0].sum()), int(ok[:, 1].sum())]
        bones = []
        for k, side in enumerate("左右"):
            neutral = relaxed_rotations(rest, side, n)
            if not neutral:
                continue
            ok[:, k] = _runs_at_least(ok[:, k], MIN_RUN)
            w = _resample(_keep_weight(ok[:, k], t), t, t_keys)
            rot = dict(neutral)
            if ok[:, k].any():
                lm = _hand_shapes(h[:, k], ok[:, k])
                lm, _ = filters.fill_gaps(lm, t)
                lm_k = conventions.camera_to_mmd(_resample(lm, t, t_keys), 1.0)
                seen = finger_rotations(rest, side, lm_k)
                # a hand shape with a finger bent past its range (depth confusions) is not used on that key
                bad = np.zeros(n, bool)
                for name, q in seen.items():
                    bad |= np.degrees(Q.angle(q)) > _limit(name) + IMPLAUSIBLE_MARGIN_DEG
                w = np.minimum(w, _keep_weight((w >= 0.5) & ~bad, t_keys))
                for name, q in seen.items():
                    rot[name] = Q.slerp(neutral[name], q, w)
            for name in rot:
                rot[name], _ = clamp_rotation_angle(rot[name], _limit(name))
            names = list(rot)
            q = _rate_limit(np.stack([rot[k] for k in names], axis=1), t_keys, FINGER_MAX_DEG_S)
            if strength > 0 and n >= 3:   # one call for all the hand's bones (the filter is per bone)
                q = smooth_rotations(q, t_keys, **one_euro_params(strength, "rotation"))
            rot = {k: clamp_rotation_angle(q[:, i], _limit(k))[0] for i, k in enumerate(names)}
            motion.rotations.update({name: Q.make_continuous(Q.normalize(q)) for name, q in rot.items()})
            bones += list(rot)
        report["finger_bones"] = bones
    fc = getattr(poses, "face", None)
    if want_face and fc is not None:
        f = np.asarray(fc, dtype=np.float64)
        ok = face_gate(f, kp, poses.joint_names_2d)
        report["face_frames"] = int(ok.sum())
        weights = face_morphs(f, ok)
        keep = _keep_weight(ok, t)
        morphs = {}
        for name, v in weights.items():
            filled, _ = filters.fill_gaps(np.where(ok, v, np.nan)[:, None], t)
            v = np.nan_to_num(filled[:, 0]) * keep
            morphs[name] = np.clip(_resample(v, t, t_keys), 0.0, 1.0)
        motion.morphs.update(morphs)
        report["morphs"] = {k: int((v > 0.05).sum()) for k, v in morphs.items()}
    motion.meta["hands_face"] = report
    return motion
