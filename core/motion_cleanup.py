"""The motion stage with cleanup, floor, contact, camera compensation and foot locking (numpy only).

:func:`clean_motion` is a drop-in alternative to ``core.motion_stage.motion_stage`` (same inputs, a
:class:`core.motion.BoneMotion` out, plus a :class:`CleanupReport`). In order, at the video's frame rate:

1. gaps filled (``core.filters.fill_gaps``), single-joint outliers repaired (``core.smoothing.hampel``), left/right
   swaps found in the 2D keypoints (``core.smoothing.repair_swaps``) and undone there and on the 3D joints lifted
   from them (``core.smoothing.apply_swaps``; on the 3D alone where there are no 2D keypoints);
2. root trajectory from the repaired 2D/3D pairs (``core.trajectory.root_translation``), implausible root jumps
   held or interpolated (``core.smoothing.repair_root_jumps``);
3. adaptive smoothing (``core.smoothing.one_euro``) of the joints and, harder, of the root, whose distance from
   the camera is smoothed on its own without the speed term (``one_euro_params(..., "depth")``); camera tilt levelled
   with the lifter's estimate of the world's up (``poses.camera_up``) or, without one, from the torso
   (``core.trajectory.levelling``); steps 1-3 are done shot by shot (``poses.shots``, ``core.shots``: each shot has
   its own camera), and the shots are then joined (``core.shots.align_shots``: each turned about the vertical and
   moved so the dancer's heading and path go on through the cut, in the first shot's camera frame);
4. contacts and a floor plane per shot (``core.floor.ground``): feet in contact on the floor, none below it;
5. camera motion (``core.camera_motion.compensate``): zoom and pan not turned into travel, or the dancer kept in
   place; a background track measured by the worker (``poses.background_motion``, used where
   ``core.camera_motion.background_usable``) is undone first, before step 4, so the floor and the contacts see the
   world's motion; without one the planted feet are the reference, after step 4;
6. resampled to the key times, converted to MMD axes (the floor at the model's standing height, ``core.conventions``
   "Floor"), retargeted (``core.retarget``, without its percentile ground shift), single-frame rotation flips and
   knee-limit violations repaired (``core.smoothing.repair_rotation_flips``), the key rotations smoothed on the
   sphere (``core.smoothing.smooth_rotations``), then the feet locked (``core.foot_lock.lock_feet``) at the contacts of
   step 4 plus the supporting foot of the frames where none was found (``core.contact.support_contacts``: the
   lower, slower foot of a dancer who is neither in the air nor kneeling or sitting) and the other point of a foot
   down on one point and flat on the floor (``core.contact.flat_feet``); the floor and the camera of steps 4-5 keep
   to the detected contacts;
7. the leg IK keys (足ＩＫ, つま先ＩＫ) set again from the final FK legs (``core.retarget.leg_ik_from_fk``), so that MMD's
   IK-on playback shows the legs that were repaired and measured.

Frames and units: ``core.conventions``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from . import camera_motion, contact, conventions, filters, floor, pose_io, smoothing, trajectory
from .errors import PipelineError
from .shots import align_shots, continue_height, shot_ranges
from .skeletons import CANONICAL

_J = {n: i for i, n in enumerate(CANONICAL)}

#: Largest floor tilt (degrees) the floor fit may add after levelling with the lifter's estimate of the world's up
#: (``poses.camera_up``); chosen on the closed-loop benchmark (docs/benchmark.md).
FLOOR_TILT_WITH_LIFTER_UP_DEG = 5.0

__all__ = ["CleanupReport", "clean_motion", "prepare_world", "key_contacts", "KNEE_LIMIT_DEG", "ANKLE_LIMIT_DEG"]

#: Largest turn of 足首 from its rest relative to the shin, degrees (a human ankle's combined range is under ~80°;
#: the detector's heel/toe confusions give 150°+).
ANKLE_LIMIT_DEG = 90.0

#: Smooth the key rotations on the sphere after retargeting (``core.smoothing.smooth_rotations``).
ROTATION_SMOOTHING = True

#: Lifters whose 3D is not exchanged where the 2D swaps are repaired: the trained temporal lifter learnt on 2D with
#: left/right swaps (docs/lifter.md §3) and undoes them from the frames around. On the six closed-loop renders its 3D
#: carried the 2D's labels on 10 of the 45 repaired (group, frame) pairs, against the truth (MediaPipe's world
#: landmarks on 23); exchanging it anyway swapped the other 35 and cost up to 7 mm MPJPE (CMU 005_15) and jitter on
#: five of the six.
LIFTERS_UNDOING_SWAPS = ("trained",)

#: Knee hinge range used to flag impossible knees: a negative turn about +X (docs/MMD_FACTS.md §2.2, §2.5).
KNEE_LIMIT_DEG = (-180.0, -0.5)


@dataclass
class CleanupReport:
    """What :func:`clean_motion` repaired and decided, for the run report and the pose npz.

    Attributes:
        repairs: the :class:`core.smoothing.Repair` of each step (outliers, swaps 2D / 3D, root jumps, flips).
        contacts: ``(T, 4)`` bool at the video frames (``core.contact.CONTACT_POINTS``; npz key
            ``core.contact.NPZ_KEY``).
        planes: the floor plane of each shot.
        camera: the :class:`core.camera_motion.CameraReport`.
        lock: the :class:`core.foot_lock.LockReport` (None when locking is off).
        notes: one line per item.
    """

    repairs: list = field(default_factory=list)
    contacts: np.ndarray | None = None
    planes: list = field(default_factory=list)
    camera: object = None
    lock: object = None
    notes: list = field(default_factory=list)


def key_contacts(contacts, t, t_keys) -> np.ndarray:
    """Contacts at the key times: each key takes the contact of the nearest video frame. ``(K, 4)`` bool."""
    c = np.asarray(contacts, dtype=bool)
    t = np.asarray(t, dtype=np.float64)
    idx = np.clip(np.searchsorted(t, t_keys), 1, len(t) - 1) if len(t) > 1 else np.zeros(len(t_keys), dtype=int)
    if len(t) > 1:
        left = t_keys - t[idx - 1] < t[idx] - t_keys
        idx = np.where(left, idx - 1, idx)
    return c[idx]


def _opt(opts, name, default):
    return getattr(opts, name, default) if opts is not None else default


def _merge_repairs(parts: list, what: str | None = None) -> smoothing.Repair:
    """One :class:`core.smoothing.Repair` from the per-shot repairs ``[(start, stop, Repair), ...]``: frames offset
    to the clip, counts and numeric details summed (``max…`` ones: the largest), ``masks`` (group -> ``(stop -
    start,)`` bool, :func:`core.smoothing.repair_swaps`) joined end to end. One shot's repair is returned as it is."""
    if len(parts) == 1:
        rep = parts[0][2]
    else:
        details: dict = {}
        for _, _, r in parts:
            for k, v in r.details.items():
                if isinstance(v, (int, float, np.integer, np.floating)):
                    details[k] = max(details.get(k, v), v) if k.startswith("max") else details.get(k, 0) + v
        groups = sorted({g for _, _, r in parts for g in r.details.get("masks", {})})
        if any("masks" in r.details for _, _, r in parts):
            details["masks"] = {g: np.concatenate([np.asarray(r.details.get("masks", {}).get(g, np.zeros(b - a)),
                                                              dtype=bool) for a, b, r in parts]) for g in groups}
        rep = smoothing.Repair(parts[0][2].what, np.concatenate([a + r.frames for a, _, r in parts]).astype(np.int64),
                               int(sum(r.count for _, _, r in parts)), details)
    if what is not None:
        rep.what = what
    return rep


def _by_shot(ranges, repair_one, what: str | None = None) -> smoothing.Repair:
    """Run ``repair_one(a, b)`` (which repairs frames ``[a, b)`` in place and returns their
    :class:`core.smoothing.Repair`) on each shot of ``ranges`` and merge the repairs (:func:`_merge_repairs`)."""
    return _merge_repairs([(a, b, repair_one(a, b)) for a, b in ranges], what)


def prepare_world(poses: pose_io.PoseSequence, opts=None, shots=None):
    """Steps 1-3 of the module docstring: repaired, smoothed, levelled absolute joints at the video frames.

    Shot by shot (``shots``, default ``poses.shots``; ``core.shots``): each shot is seen by its own camera, so the
    repairs, the root's path, the smoothing and the levelling are done within each shot, never across a cut, and the
    shots are then joined into one motion (``core.shots.align_shots``: the dancer's heading and place go on through a
    cut, in the first shot's camera frame). One shot is the whole clip.

    Args:
        poses: the pose sequence (``joints_3d`` needed).
        opts: options (``smoothing``, ``hfov``, ``level``, ``root``), as for :func:`clean_motion`.
        shots: ``[(start, stop), ...]`` frame ranges covering the clip, or None for ``poses.shots``.
    Returns:
        ``(absolute (T, 27, 3) camera frame metres, keypoints (T, 27, 3) CANONICAL px + confidence or None,
        t (T,) seconds from the first frame, repairs list)``.
    Raises:
        PipelineError: ``bad_input`` without 3D joints.
    """
    if poses.joints_3d is None:
        raise PipelineError("bad_input", "the pose sequence has no 3D joints")
    strength = float(_opt(opts, "smoothing", 0.5))
    hfov = float(_opt(opts, "hfov", trajectory.DEFAULT_HFOV_DEG))
    level = bool(_opt(opts, "level", True))
    repairs = []
    t = poses.timestamps - poses.timestamps[0]
    T = len(poses)
    ranges = shot_ranges(getattr(poses, "shots", None) if shots is None else shots, T)

    # 1. gaps, outliers, swaps
    j3 = np.array(poses.joints_3d, dtype=np.float64)
    cols = np.isfinite(j3).all(axis=(0, 2)) | (np.isfinite(j3).all(axis=2).sum(axis=0) >= 2)
    j3[:, ~cols] = np.nan
    valid = np.asarray(poses.detected, dtype=bool) if poses.detected.any() else None
    rep2 = None
    if poses.keypoints_2d.shape[1] > 0:
        kp = poses.keypoints_canonical_2d().astype(np.float64)
        def swaps_2d(a, b):
            kp[a:b, :, :2], r = smoothing.repair_swaps(kp[a:b, :, :2], confidence=np.nan_to_num(kp[a:b, :, 2]))
            return r

        rep2 = _by_shot(ranges, swaps_2d, "left/right swap (2D)")
        if getattr(poses, "lifter", "") not in LIFTERS_UNDOING_SWAPS:
            # a 3D from the same detection (MediaPipe's world landmarks) carries its labels: exchange the same
            # joints on the same frames (repairing 3D on its own leaves 2D and 3D disagreeing, and the trajectory
            # fit then jumps), before the outlier filter, which would take a swapped limb for a spike and move it
            j3 = smoothing.apply_swaps(j3, rep2.details["masks"])
    else:
        kp = None
    def gaps_and_outliers(a, b):
        v = valid[a:b] if valid is not None and valid[a:b].any() else None    # a shot the job filled from its neighbour
        j3[a:b, cols], _ = filters.fill_gaps(j3[a:b, cols], t[a:b], v)
        j3[a:b, cols], r = smoothing.hampel(j3[a:b, cols], t[a:b])
        return r

    def swaps_3d(a, b):       # 3D alone: after the outliers (a glitch is not a swap)
        j3[a:b], r = smoothing.repair_swaps(j3[a:b])
        return r

    repairs.append(_by_shot(ranges, gaps_and_outliers))
    if rep2 is None:
        rep2 = _by_shot(ranges, swaps_3d, "left/right swap (3D)")
    repairs.append(rep2)

    # 2. root
    if poses.trajectory is not None and _opt(opts, "root", "auto") != "fit":
        root = np.asarray(poses.trajectory, dtype=np.float64)
    elif kp is not None:
        focal = trajectory.focal_from_fov(poses.image_size[0], hfov)
        root = trajectory.root_translation(np.nan_to_num(j3), np.where(np.isfinite(j3), kp, np.nan),
                                           poses.image_size, focal=focal)
    else:
        root = np.zeros((T, 3))
    root = np.array(root, dtype=np.float64)

    def root_jumps(a, b):     # a cut's jump is the camera's: each shot's own root is checked
        root[a:b], r = smoothing.repair_root_jumps(root[a:b], t[a:b])
        return r

    repairs.append(_by_shot(ranges, root_jumps))

    # 3. smoothing, levelling
    absolute = np.zeros_like(j3)
    up = getattr(poses, "camera_up", None)
    for a, b in ranges:
        js, rs, ts = j3[a:b], root[a:b], t[a:b]
        if strength > 0 and b - a >= 3:
            js[:, cols] = smoothing.one_euro(js[:, cols], ts, **smoothing.one_euro_params(strength, "position"))
            depth = smoothing.one_euro(rs[:, None, 2:], ts, **smoothing.one_euro_params(strength, "depth"))[:, 0, 0]
            rs[:] = smoothing.one_euro(rs[:, None, :], ts, **smoothing.one_euro_params(strength, "root"))[:, 0]
            # the camera frame's z (core.conventions) smoothed on its own, without the speed term its noise would
            # open; the root is moved along its camera ray to that depth, so it still projects where the smoothed
            # root did
            z = rs[:, 2]
            ok = (z > 1e-6) & (depth > 1e-6)
            rs[ok] *= (depth[ok] / z[ok])[:, None]
        absolute[a:b] = js + rs[:, None, :]
        if level:
            absolute[a:b] = absolute[a:b] @ trajectory.levelling(js, None if up is None else up[a:b]).T
    if len(ranges) > 1:
        absolute, aligned = align_shots(absolute, ranges, up=floor.CAMERA_UP)
        repairs.append(smoothing.Repair("shot cut", np.array([a for a, _ in ranges[1:]], dtype=np.int64),
                                        len(ranges) - 1, {"turns_deg": aligned.turns_deg.tolist(),
                                                          "shifts_m": aligned.shifts_m.tolist(),
                                                          "note": aligned.describe()}))
    return absolute, kp, t, repairs


def clean_motion(poses: pose_io.PoseSequence, rest, opts=None, *, shots=None, contact_probs=None, background=None):
    """Joints -> cleaned, grounded, foot-locked MMD keys (see the module docstring).

    Args:
        poses: a pose sequence with ``joints_3d``.
        rest: the target model's :class:`core.rest_skeleton.RestSkeleton`.
        opts: options object (``core.options.MotionOptions`` or anything with the same names): ``smoothing``
            (0..1), ``key_fps``, ``hfov``, ``level``, and optionally ``camera`` (``core.camera_motion.MODES``,
            default ``"auto"``) and ``foot_lock`` (default True).
        shots: ``[(start, stop), ...]`` frame ranges (stop exclusive); default ``poses.shots`` where the pose
            sequence has it, else one shot.
        contact_probs: ``(T, 4)`` lifter contact probabilities (``core.contact.CONTACT_POINTS`` order, as
            ``core.lifting.trained.CONTACT_ORDER``); default ``poses.contact_probs`` where the pose sequence has it.
        background: ``(T, 3)`` background motion for ``core.camera_motion.compensate`` or None.
    Returns:
        ``(BoneMotion, CleanupReport)``.
    Raises:
        PipelineError: ``bad_input`` without 3D joints; ``bad_model`` for a model retargeting cannot use.
    """
    from .foot_lock import lock_feet, standing_height
    from .retarget import leg_ik_from_fk, retarget

    absolute, kp, t, repairs = prepare_world(poses, opts, shots=shots)
    key_fps = float(_opt(opts, "key_fps", 30.0))
    hfov = float(_opt(opts, "hfov", trajectory.DEFAULT_HFOV_DEG))
    cam_mode = str(_opt(opts, "camera", "auto"))
    do_lock = bool(_opt(opts, "foot_lock", True))
    report = CleanupReport(repairs=repairs)
    focal = trajectory.focal_from_fov(poses.image_size[0], hfov) if poses.image_size[0] > 0 else None
    bg_note = ""
    if background is None and getattr(poses, "background_motion", None) is not None:
        measured = poses.background_measured
        if camera_motion.background_usable(measured):
            background = poses.background_motion
        else:
            bg_note = (f"; the background could be followed on only {100 * float(np.mean(measured[1:])):.0f}% of "
                       "the frames (too plain or too hidden), so it was not used")

    # 5a. camera motion measured on the background: undone before the floor and the contacts, which then see the
    # world's motion (a planted foot stands still in 3D and, with the background undone, in its 2D track too)
    cam = None
    if background is not None and cam_mode == "auto" and focal is not None:
        absolute, cam = camera_motion.compensate(absolute, t, mode="auto", keypoints_2d=kp, background=background,
                                                 focal=focal)
        if kp is not None:
            kp = camera_motion.undo_background_2d(kp, background, poses.image_size)

    # 4. floor and contacts
    if contact_probs is None:
        contact_probs = getattr(poses, "contact_probs", None)   # a lifter's (T, 4), core.contact.CONTACT_POINTS order
    if shots is None:
        shots = getattr(poses, "shots", None)                   # [(start, stop), ...] from a shot-cut detector
    # levelled by the lifter's up: the floor plane may correct only a little more tilt (a plane fitted to feet whose
    # depth is uncertain tilts easily); levelled from the torso: up to floor.ground's default
    tilt = (FLOOR_TILT_WITH_LIFTER_UP_DEG if getattr(poses, "camera_up", None) is not None and _opt(opts, "level", True)
            else 25.0)
    g = floor.ground(absolute, t, shots=shots, keypoints_2d=kp, probs=contact_probs, max_tilt_deg=tilt)
    report.planes = g.planes
    report.notes += g.notes
    upper = getattr(poses, "upper_body", None)
    if shots is not None and len(shots) > 1 and upper is not None and np.any(upper):
        # a close-up's floor is a guess (its feet are out of frame): its hips go on at the height of the shot beside
        lifted, dh = continue_height(g.joints, shots, ~np.asarray(upper, dtype=bool), up=floor.CAMERA_UP)
        if np.any(dh):
            sizes = [b - a for a, b in shot_ranges(shots, len(t))]
            g = replace(g, joints=lifted, shift=g.shift + np.repeat(dh, sizes))
            report.notes.append("shots without the legs in view (close-ups) take their height from the shot beside: "
                                + ", ".join(f"shot {k + 1} {100 * v:+.0f} cm" for k, v in enumerate(dh) if v))

    # 5. camera motion without a background track: the feet as the reference (or static / off)
    if cam is None:
        placed, cam = camera_motion.compensate(g.joints, t, g.contacts, mode=cam_mode, keypoints_2d=kp, focal=focal)
        cam.note += bg_note
    else:
        placed = g.joints
    report.camera = cam
    report.notes.append(cam.note)

    # 6. keys
    from .motion_stage import key_times

    frames, t_keys = key_times(float(t[-1]), key_fps)
    resampled = filters.resample(np.nan_to_num(placed, nan=0.0), t, t_keys)
    resampled[:, ~np.isfinite(placed).all(axis=(0, 2))] = np.nan
    joints_mmd = conventions.camera_to_mmd(resampled)
    # the floor as the model stands on it in its rest pose (core.conventions, "Floor"): contact points at their rest
    # heights, not at y = 0
    standing = standing_height(rest)
    joints_mmd[..., 1] += standing
    try:
        motion = retarget(joints_mmd, rest, frames=frames, ground=False,
                          twist_bones=bool(_opt(opts, "twist_bones", True)))
    except ValueError as e:
        raise PipelineError("bad_model", str(e)) from e
    flips, events, clamped, late = 0, [], 0, 0
    rotations = dict(motion.rotations)
    for name, q in rotations.items():
        invalid = None
        if name.endswith("足首"):
            q, n_clamped = smoothing.clamp_rotation_angle(q, ANKLE_LIMIT_DEG)
            clamped += n_clamped
        if name.endswith("ひざ"):
            invalid = smoothing.hinge_violations(q, (1.0, 0.0, 0.0), *KNEE_LIMIT_DEG)
        rotations[name], rf = smoothing.repair_rotation_flips(q, invalid=invalid)
        if rf.count:
            flips += rf.count
            events.append(rf.frames)
    rep_f = smoothing.Repair("rotation flip", np.unique(np.concatenate(events)) if events else
                             np.zeros(0, dtype=np.int64), flips, {"ankles_clamped": clamped})
    report.repairs.append(rep_f)
    strength = float(_opt(opts, "smoothing", 0.5))
    if strength > 0 and len(t_keys) >= 3 and ROTATION_SMOOTHING:
        # rotations on the sphere (sign-continuous One Euro): the retargeter's hinge and twist choices add noise of
        # their own on top of the joints'; the legs are re-solved by the lock below
        params = smoothing.one_euro_params(strength, "rotation")
        names = list(rotations)  # all bones in one call: each track keeps its own cutoff (the filter is per track)
        if names:
            smoothed = smoothing.smooth_rotations(np.stack([rotations[n] for n in names], axis=1), t_keys, **params)
            rotations = {n: smoothed[:, k] for k, n in enumerate(names)}
    motion.rotations = rotations
    # the supporting foot where the cues found no contact (core.contact.support_contacts); after the floor and the
    # camera, which keep to the detected contacts, so only the lock sees it
    fp = contact.foot_points(placed)
    body = placed[:, [_J["LKnee"], _J["RKnee"], _J["Hip"]]] @ floor.CAMERA_UP
    used, added = contact.support_contacts(fp, t, fp @ floor.CAMERA_UP, g.contacts, body_heights=body, shots=shots)
    # a foot down on one point and flat on the floor stands on its whole sole (core.contact.flat_feet)
    used, _ = contact.flat_feet(used, fp @ floor.CAMERA_UP, t, shots=shots)
    report.contacts = used
    n_added = int(added.any(axis=1).sum())
    if n_added:
        report.notes.append(f"supporting foot: {n_added} frames without a detected contact rest on the lower, "
                            "slower foot")
    if do_lock:
        ck = key_contacts(used, t, t_keys)
        motion, lock = lock_feet(motion, rest, ck, floor_y=standing)
        report.lock = lock
        report.notes += lock.notes
        # Locking can leave a turn above the limit where the estimated body turns faster than a foot can follow:
        # spread those (the leg IK keys follow the repaired FK legs below).
        late, late_frames = 0, []
        rotations = dict(motion.rotations)
        for name, q in rotations.items():
            if smoothing.rotation_pops(q):
                # never move a planted foot: its leg's keys (and 下半身's, which carries both legs) stay put
                keep = (ck[:, :2].any(axis=1) if name.startswith("左") else ck[:, 2:].any(axis=1)
                        if name.startswith("右") else ck.any(axis=1) if name in ("下半身", "センター") else None)
                rotations[name], rf = smoothing.repair_rotation_flips(q, keep=keep)
                late += rf.count
                late_frames.append(rf.frames)
        if late:
            motion.rotations = rotations
            report.repairs.append(smoothing.Repair("rotation flip after locking", np.unique(np.concatenate(late_frames)),
                                                   late))
    # MMD plays the legs with IK on: where the FK legs changed after their 足ＩＫ keys were last set (the flip repairs
    # and rotation smoothing without a lock, a flip repaired after it; lock_feet sets its own), the IK keys are set
    # from the final FK legs, so what MMD shows is what was measured and repaired here
    if not do_lock or late:
        motion = leg_ik_from_fk(motion, rest)
    report.notes = [r.details.get("note") or r.describe(t_keys if r.what.startswith("rotation flip") else t)
                    for r in report.repairs] + report.notes
    motion.meta["cleanup"] = report.notes
    motion.meta["camera_pan_deg"] = float(getattr(report.camera, "pan_deg", 0.0))
    motion.meta[contact.NPZ_KEY] = report.contacts
    return motion, report
