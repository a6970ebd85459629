"""Foot locking on MMD keys: a planted foot stays put on the floor, level, and is released smoothly (numpy only).

Input is a dense :class:`core.motion.BoneMotion` (``core.retarget``) and per-frame contacts of the four foot points
(``core.contact.CONTACT_POINTS``) at the motion's frames. For each leg and each contact run:

* both heel and toe in contact: the foot takes one rotation for the whole flat phase (the mean of its estimated
  rotations, levelled: the heel->toe line turned horizontal, heading and roll kept) and the ankle is pinned where
  it stands (median of the phase), at the height that puts the model's sole on the floor (the model's heel / toe
  points at rest, ``core.retarget.virtual_joints``, are its sole);
* toe only (heel raised) or heel only: that point is pinned on the floor and the foot keeps its estimated pitch;
  where such a phase follows or precedes a flat phase of the same run, the pinned point is the one the flat pose
  left, so the foot rolls over it without sliding;
* each contact run is first widened by ``pad_frames`` on each side (detected edges lag or lead the true ones);
* outside contact the correction (ankle offset and foot turn) fades out over ``blend_frames`` with a smoothstep, so
  nothing pops when a contact starts or ends; a free foot that would go below the floor is lifted onto it;
* where no foot is in contact and the lowest one floats for longer than a jump's flight (``max_flight_frames``),
  the whole body comes down onto the floor, no further than puts a knee on it.

The legs are then solved by MMD's own IK (``core.ik.place_feet``: CCD with the PMX knee limits), 足首 is given the
wanted foot rotation under the solved shin, and the 足ＩＫ keys are set from these FK legs
(``core.retarget.leg_ik_from_fk``), so MMD, which starts its CCD from them, plays them. Where a pinned ankle is out
of the leg's reach (the knee cannot straighten past its limit), the root comes down or over to it, smoothly: グルーブ carries the vertical part where the model has it, センター the
horizontal part (and the vertical part on models without グルーブ) -- the MMD convention (docs/MMD_FACTS.md §4,
§5.7). 足ＩＫ is not under センター (§2.5), so moving the root keeps the feet where they are pinned.

Axes and units: ``core.conventions`` (MMD model space, units; a planted foot's lowest point is at ``y = floor_y``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import ik, smoothing
from .conventions import METRES_PER_UNIT, MMD_FPS
from . import quat as Q
from .motion import BoneMotion
from .rest_skeleton import RestSkeleton
from .retarget import TOE_IK_ZERO, leg_ik_from_fk, virtual_joints

__all__ = ["LockReport", "lock_feet", "foot_points_mmd", "standing_height"]

#: Height (MMD units) of a knee joint's centre above the floor when the knee rests on it (about 5 cm).
KNEE_CLEARANCE = 0.05 / METRES_PER_UNIT

_SIDES = (("左", "L", 0, 1), ("右", "R", 2, 3))   # side, tag, heel column, toe column


@dataclass
class LockReport:
    """What :func:`lock_feet` did.

    Attributes:
        locked_frames: side ("左" / "右") -> number of frames with the foot pinned.
        runs: side -> number of contact runs.
        root_drop_max: largest downward root correction, MMD units (グルーブ, or センター y).
        root_shift_max: largest horizontal root correction, MMD units (センター x/z).
        residual_max: side -> largest distance (units) between the pinned ankle and where IK got it.
        released: side -> contact frames released because their pin was out of the leg's reach.
        followed: side -> contact frames whose pin was drawn towards the hip (``follow_reach``).
        grounded_frames: frames without contact lowered onto the floor (a float longer than a jump's flight).
        grounded_max: the most they were lowered, MMD units.
        notes: lines for the run report.
    """

    locked_frames: dict = field(default_factory=dict)
    runs: dict = field(default_factory=dict)
    root_drop_max: float = 0.0
    root_shift_max: float = 0.0
    residual_max: dict = field(default_factory=dict)
    released: dict = field(default_factory=dict)
    followed: dict = field(default_factory=dict)
    grounded_frames: int = 0
    grounded_max: float = 0.0
    notes: list = field(default_factory=list)


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _runs(mask):
    d = np.diff(np.concatenate(([0], np.asarray(mask, dtype=np.int8), [0])))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def _level(g: np.ndarray, heel_off: np.ndarray, toe_off: np.ndarray) -> np.ndarray:
    """Turn world foot rotations ``(T, 4)`` so the heel->toe line is horizontal (smallest turn: yaw and roll kept);
    feet pitched more than 30° are levelled less, not at all past 60°."""
    d = Q.rotate(g, np.broadcast_to(toe_off - heel_off, g.shape[:-1] + (3,)))
    flat = d.copy()
    flat[..., 1] = 0.0
    ok = np.linalg.norm(flat, axis=-1) > 1e-9
    turn = Q.from_two_vectors(d, np.where(ok[..., None], flat, d))
    # A foot pointing steeply up or down (on its toes, mid-spin) has no reliable "level": fade the levelling out
    # between 30° and 60° of pitch instead of snapping its yaw around.
    pitch = np.degrees(np.arcsin(np.clip(np.abs(d[..., 1]) / np.maximum(np.linalg.norm(d, axis=-1), 1e-12), 0, 1)))
    return Q.slerp(g, Q.multiply(turn, g), _smoothstep((60.0 - pitch) / 30.0))


def foot_points_mmd(rest: RestSkeleton, positions, rotations) -> np.ndarray:
    """The model's four foot points (heel, toe per side, order ``core.contact.CONTACT_POINTS``) from world bone
    positions ``(T, N, 3)`` and rotations ``(T, N, 4)`` (``core.ik.evaluate``): ``(T, 4, 3)`` MMD units."""
    vj = virtual_joints(rest)
    pos = np.asarray(positions)
    rot = np.asarray(rotations)
    out = []
    for _, tag, _, _ in _SIDES:
        for name in ("Heel", "FootIndex"):
            b, off = vj[tag + name]
            out.append(pos[:, b] + Q.rotate(rot[:, b], np.broadcast_to(off, pos[:, b].shape)))
    return np.stack(out, axis=1)


def standing_height(rest: RestSkeleton) -> float:
    """Height (MMD units) of the model's lowest foot point in its rest pose: where its heel and toe points stand when
    it stands on the floor (``core.conventions``, "Floor"). 0 on models whose つま先 rest on y = 0 (mat4, the
    standard skeleton); 0.29 units (2.3 cm) on yw, whose つま先 sit above the floor."""
    vj = virtual_joints(rest)
    rp = rest.positions
    return float(min(rp[vj[tag + n][0], 1] + vj[tag + n][1][1]
                     for _, tag, _, _ in _SIDES for n in ("Heel", "FootIndex")))


def _blend(values: np.ndarray, on: np.ndarray, frames: int, identity: np.ndarray, slerp: bool):
    """Spread per-frame corrections ``values (T, C)`` given on ``on`` frames to ``frames`` neighbours, fading out.

    A frame between two contacts takes both: each neighbour's correction weighted by its smoothstep fade, the
    weights scaled down to sum to 1 where the fades overlap (a short gap), so the correction changes continuously
    from one contact's to the next instead of jumping where the nearer neighbour changes.
    """
    T = values.shape[0]
    out = np.broadcast_to(identity, values.shape).copy()
    out[on] = values[on]
    if frames <= 0 or not on.any() or on.all():
        return out
    idx = np.flatnonzero(on)
    ts = np.arange(T)
    pos = np.searchsorted(idx, ts)
    prev = idx[np.clip(pos - 1, 0, idx.size - 1)]
    nxt = idx[np.clip(pos, 0, idx.size - 1)]
    wp = np.where(prev < ts, _smoothstep(1.0 - (ts - prev) / (frames + 1.0)), 0.0)
    wn = np.where(nxt > ts, _smoothstep(1.0 - (nxt - ts) / (frames + 1.0)), 0.0)
    total = wp + wn
    scale = np.where(total > 1.0, 1.0 / np.maximum(total, 1e-12), 1.0)
    wp, wn = wp * scale, wn * scale
    fade = (~on) & (wp + wn > 0)
    if not fade.any():
        return out
    f = np.flatnonzero(fade)
    if slerp:
        both = wp[f] + wn[f]
        mix = Q.slerp(values[prev[f]], values[nxt[f]], wn[f] / np.maximum(both, 1e-12))
        out[f] = Q.slerp(np.broadcast_to(identity, (f.size, 4)), mix, both)
    else:
        out[f] = values[prev[f]] * wp[f, None] + values[nxt[f]] * wn[f, None]
    return out


def _floor_filter(x: np.ndarray, half: int, fn) -> np.ndarray:
    pad = np.pad(x, (half, half), mode="edge")
    return fn(np.lib.stride_tricks.sliding_window_view(pad, 2 * half + 1), axis=-1)


def _sole_low(ankle: np.ndarray, rot: np.ndarray, heel_off: np.ndarray, toe_off: np.ndarray) -> np.ndarray:
    """Height (``y``, units) of the lower of a foot's heel and toe points, ``(T,)``, from its ankle positions
    ``(T, 3)``, world rotations ``(T, 4)`` and the two points' offsets in the ankle's frame."""
    return np.minimum(*[(ankle + Q.rotate(rot, np.broadcast_to(o, ankle.shape)))[:, 1] for o in (heel_off, toe_off)])


def _sink_floating(vj: dict, ankles: dict, feet_rot: dict, con: np.ndarray, floor_y: float,
                   max_flight_frames: int, knees: np.ndarray | None = None) -> np.ndarray:
    """How far (units, ``(T,)`` >= 0) to lower the whole body on frames where no foot point is in contact and the
    lowest one stays above the floor for more than ``max_flight_frames`` frames in a row: nobody is airborne that
    long (a 60 cm jump flies 0.7 s: ``t = 2 sqrt(2h / g)``), so such a float is a support the contacts missed.
    The amount is the lowest sole point's height, which falls to about 0 at the run's ends (no step), but never
    more than brings a knee (``knees``: ``(T, K)`` heights of the knee joints, units) within :data:`KNEE_CLEARANCE`
    of the floor: a dancer kneeling or sitting with her feet raised rests on her knees or hips, not on air.
    ``vj``: the model's ``core.retarget.virtual_joints``."""
    sink = np.zeros(con.shape[0])
    if max_flight_frames <= 0:
        return sink
    low = np.min([_sole_low(ankles[side], feet_rot[side], vj[tag + "Heel"][1], vj[tag + "FootIndex"][1])
                  for side, tag, _, _ in _SIDES], axis=0) - floor_y
    floating = ~con.any(axis=1) & (low > 0.0)
    for a, b in _runs(floating):
        if b - a > max_flight_frames:
            sink[a:b] = low[a:b]
    if knees is not None:
        room = np.min(np.asarray(knees, dtype=np.float64), axis=1) - floor_y - KNEE_CLEARANCE
        sink = np.clip(np.minimum(sink, room), 0.0, None)
    return sink


def lock_feet(motion: BoneMotion, rest: RestSkeleton, contacts, *, floor_y: float = 0.0, blend_frames: int = 10,
              reach: float = 0.99, root_window: int = 4, max_turn_deg: float = 30.0, max_drop: float = 0.2,
              release_unreachable: bool = True, turn_blend_frames: int = 4,
              max_flight_frames: int = 21, pad_frames: int = 1,
              follow_reach: float | None = 0.85) -> tuple[BoneMotion, LockReport]:
    """Pin planted feet, level them, release smoothly, and move the root where a knee would pass its limit.

    Args:
        motion: dense keys (``core.retarget.retarget``); its leg, 足ＩＫ, センター (and グルーブ) tracks are replaced.
        rest: the target model (with 足ＩＫ chains; ``RestSkeleton.from_pmx`` gives the knee limits).
        contacts: ``(T, 4)`` bool at ``motion.frames`` (``core.contact.CONTACT_POINTS``).
        floor_y: the height of the lowest foot point of a planted foot, MMD units (:func:`standing_height` puts
            the foot as it stands in the model's rest pose, ``core.conventions`` "Floor"; 0 puts that point on y = 0).
        blend_frames: frames over which a correction fades in / out around a contact (default 10, a third of a
            second at MMD's 30 fps: on the closed-loop renders 4 -> 10 frames took the skate during the true
            contacts down on all six, the Bandai walk's 60 -> 44 cm/s, and its jitter from 1.70x to 1.47x the truth's,
            with MPJPE within 2 mm; a detected contact's edges are uncertain by a few frames, and a short fade turned
            each release into a jerk).
        pad_frames: every contact run is widened by this many frames on each side before pinning (default 1: on
            the closed-loop renders 0 -> 1 took the skate during the true contacts down on all six, the Bandai walk's
            41 -> 33 cm/s, MPJPE within 1 mm; 2 frames took it to 28 but the walk's jitter to 1.5x the truth's).
        max_flight_frames: frames without contact (MMD's 30 fps) the lowest foot may stay above the floor before
            the body is lowered onto it (default 21, 0.7 s: the flight of a 60 cm vertical jump; 0 = never).
        turn_blend_frames: the same for the foot's turn (levelled heading): shorter, because a foot pivoting with the
            body (a pirouette turns it ~45° a frame) cannot hold its contact heading for long after the contact.
        reach: fraction of the farthest hip-ankle distance the knee limits allow (``core.ik.leg_reach``) that a
            pinned ankle may be from the hip before the root moves.
        root_window: half-width in frames of the smoothing of the root correction (it never under-corrects).
        max_turn_deg: the wanted foot rotation never turns more than this between frames where it can be spread
            over up to 8 frames on each side (``core.smoothing.repair_rotation_flips``).
        max_drop: with ``release_unreachable``, a contact frame whose pin would need the root lowered by more than
            this fraction of the leg's reach (or a pin beyond the reach along the floor) is released instead.
        release_unreachable: release such frames (see ``max_drop``) and pin the rest again.
        follow_reach: where a contact frame's pin lies farther from the hip (足), along the floor, than this fraction
            of what the leg reaches there with the root lowered by ``max_drop`` of its reach, the pin is drawn along
            the floor towards the hip to that distance instead of being released: the foot stays on the floor and
            level and slides slowly after a body that travels on (a walk or a run whose estimated leg swept less
            than the body moved), where a released foot would follow its noisy estimate. Frames drawn so are in
            ``LockReport.followed``; None keeps the pins where they are (and ``release_unreachable`` decides).
    Returns:
        ``(new BoneMotion, LockReport)``; ``meta`` is copied and gets ``foot_lock`` (the report's figures).
    Raises:
        ValueError: contacts of the wrong shape; a model without 足ＩＫ on both legs.
    """
    con = np.asarray(contacts, dtype=bool)
    T = motion.n_frames
    if con.shape != (T, 4):
        raise ValueError(f"lock_feet: contacts must be ({T}, 4) for {T} frames, got {con.shape}")
    if pad_frames > 0 and T > 1:
        # a detected contact's edges lag or lead the true ones by a frame or two (speed slopes, hysteresis): widen
        # each run so the foot is held through its heel strike and toe-off instead of sliding with the estimate
        wide = con.copy()
        for k in range(1, int(pad_frames) + 1):
            wide[k:] |= con[:-k]
            wide[:-k] |= con[k:]
        con = wide
    for s in "左右":
        if rest.index_of(s + "足ＩＫ") is None:
            raise ValueError(f"lock_feet: model {rest.model_name!r} has no {s}足ＩＫ; cannot lock the feet")
    q, tr = ik.motion_arrays(rest, motion)
    solvers = ik.ik_solvers(rest)
    # FK of what is read below only (the legs: 足, 足首 and what they hang from), not of the whole body
    fk = ik.evaluate(rest, q, tr, ik_enabled={rest.names[s.bone]: False for s in solvers}, solvers=solvers,
                     bones=[side + b for side in "左右" for b in ("足", "足首")])
    rp = rest.positions
    vj = virtual_joints(rest)
    report = LockReport()

    def pin(con):
        """Pinned ankles, toes and foot rotations per side for contacts ``con``, the root correction they need,
        and per side the frames whose pin lies farther from the hip, along the floor, than the leg reaches."""
        beyond = {}
        ankles, toes, feet_rot = {}, {}, {}
        need = np.zeros((T, 3))      # root correction wanted (x, z horizontal; y vertical, <= 0)
        drop = np.zeros(T)
        for side, tag, ch, ct in _SIDES:
            ai = rest.find(side + "足首")
            A = fk.positions[:, ai]
            G = fk.rotations[:, ai]
            heel_off, toe_off = vj[tag + "Heel"][1], vj[tag + "FootIndex"][1]
            sole = min(rp[ai, 1] + heel_off[1], rp[ai, 1] + toe_off[1])
            heel_h = rp[ai, 1] + heel_off[1] - sole      # rest height of each point above the sole
            toe_h = rp[ai, 1] + toe_off[1] - sole
            heel, toe = con[:, ch], con[:, ct]
            anyc = heel | toe
            A2 = A.copy()
            G2 = G.copy()
            runs = _runs(anyc)
            for a, b in runs:
                flat = heel[a:b] & toe[a:b]
                # how level the foot is: 1 on flat frames, easing to 0 over turn_blend_frames into toe- or heel-only phases
                w = flat.astype(np.float64)
                if turn_blend_frames > 0 and 0 < flat.sum() < flat.size:
                    idx = np.flatnonzero(flat)
                    dist = np.min(np.abs(np.arange(flat.size)[:, None] - idx[None, :]), axis=1)
                    w = _smoothstep(1.0 - dist / (turn_blend_frames + 1.0))
                if flat.any():
                    # one level rotation for the whole flat phase (the mean heading), so the planted foot cannot swivel
                    gf = Q.make_continuous(G[a:b][flat])
                    g_const = _level(Q.normalize(gf.mean(axis=0))[None], heel_off, toe_off)[0]
                    G2[a:b] = Q.slerp(G[a:b], np.broadcast_to(g_const, (b - a, 4)), w)
                if flat.any():
                    anchor = np.median(A[a:b][flat], axis=0)
                    anchor[1] = floor_y + (rp[ai, 1] - sole)
                    A2[a:b][flat] = anchor
                # toe-only / heel-only phases: pin that point (continuous with an adjacent flat phase)
                for pin_col, off, h in ((toe, toe_off, toe_h), (heel, heel_off, heel_h)):
                    other = heel if pin_col is toe else toe
                    phase = pin_col[a:b] & ~other[a:b]
                    for pa, pb in _runs(phase):
                        pa, pb = a + pa, a + pb
                        if pa > a and (heel[pa - 1] and toe[pa - 1]):
                            P = A2[pa - 1] + Q.rotate(G2[pa - 1], off)
                        elif pb < b and (heel[pb] and toe[pb]):
                            P = A2[pb] + Q.rotate(G2[pb], off)
                        else:
                            P = np.median(A[pa:pb] + Q.rotate(G[pa:pb], np.broadcast_to(off, (pb - pa, 3))), axis=0)
                        P = P.copy()
                        P[1] = floor_y + h
                        A2[pa:pb] = P - Q.rotate(G2[pa:pb], np.broadcast_to(off, (pb - pa, 3)))
            hi = rest.find(side + "足")
            r = reach * ik.leg_reach(rest, side)[1]      # the farthest the knee limits let the ankle be from 足
            hip = fk.positions[:, hi]
            if follow_reach is not None and anyc.any():
                # a pin the hip has moved away from follows it along the floor, to follow_reach of what the leg
                # reaches horizontally with the root lowered by max_drop of the reach
                gap = np.maximum(hip[:, 1] - max_drop * r - A2[:, 1], 0.0)
                allow = follow_reach * np.sqrt(np.maximum(r * r - gap * gap, 0.0))
                away = A2[:, [0, 2]] - hip[:, [0, 2]]
                dist = np.linalg.norm(away, axis=1)
                over = anyc & (dist > allow)
                A2[np.ix_(over, [0, 2])] = hip[over][:, [0, 2]] + away[over] * (allow[over] / dist[over])[:, None]
                report.followed[side] = int(over.sum())      # the last call (after any release) counts
            delta = _blend(A2 - A, anyc, blend_frames, np.zeros(3), slerp=False)
            turn = _blend(Q.multiply(G2, Q.conjugate(G)), anyc, turn_blend_frames, Q.identity(()), slerp=True)
            At = A + delta
            # a long planted phase can end far from the estimated heading: spread such turns so none pops
            # (off the planted frames: a flat planted foot keeps its pinned rotation exactly, so a turn into or out
            # of a plant is spread over the free frames beside it instead of coming back as one step at its edge)
            planted = heel & toe
            Gt, _ = smoothing.repair_rotation_flips(Q.multiply(turn, G), max_step_deg=max_turn_deg, max_len=8,
                                                    keep=planted)
            if max_turn_deg < smoothing.POP_DEG:
                # a turn too fast for max_turn_deg between two plants (a pivot): at least no step above a pop
                Gt, _ = smoothing.repair_rotation_flips(Gt, max_len=8, keep=planted)
            Gt[planted] = Q.multiply(turn, G)[planted]
            # never below the floor
            At[:, 1] += np.maximum(0.0, floor_y - _sole_low(At, Gt, heel_off, toe_off))
            ankles[side] = At
            feet_rot[side] = Gt
            toe_ik = rest.index_of(side + "つま先ＩＫ")
            ik_i = rest.find(side + "足ＩＫ")
            if toe_ik is not None:
                toes[side] = At + Q.rotate(Gt, np.broadcast_to(rp[toe_ik] - rp[ik_i], At.shape))
            report.locked_frames[side] = int(anyc.sum())
            report.runs[side] = len(runs)
            # reach: where must the hip be?
            d = At - hip
            dh_vec = d.copy()
            dh_vec[:, 1] = 0.0
            dh = np.linalg.norm(dh_vec, axis=1)
            too_far = np.linalg.norm(d, axis=1) > r
            lim = 0.97 * r
            move = np.where((dh > lim)[:, None], dh_vec * ((dh - lim) / np.maximum(dh, 1e-9))[:, None], 0.0)
            dh2 = np.minimum(dh, lim)
            dy = (At[:, 1] + np.sqrt(np.maximum(r * r - dh2 * dh2, 0.0))) - hip[:, 1]
            dy = np.where(too_far, np.minimum(dy, 0.0), 0.0)
            need[:, [0, 2]] += np.where(too_far[:, None], move[:, [0, 2]], 0.0)
            drop = np.minimum(drop, dy)
            beyond[side] = too_far & ((dh > lim) | (dy < -max_drop * r))
        return ankles, toes, feet_rot, need, drop, beyond

    ankles, toes, feet_rot, need, drop, beyond = pin(con)
    if release_unreachable:
        # A pin the hip has travelled away from (the estimated leg swept less than the body moved, or two steps
        # read as one contact) would drag the root down towards the floor: release those frames of the contact
        # instead (the foot then follows its estimate, blended) and pin again; the pins of what is left move, so
        # repeat until every pin is within reach (a few rounds).
        released = {side: 0 for side, *_ in _SIDES}
        for _ in range(6):
            cut = con.copy()
            for side, tag, ch, ct in _SIDES:
                cut[beyond[side], ch] = False
                cut[beyond[side], ct] = False
                released[side] += int((con[:, [ch, ct]].any(axis=1) & ~cut[:, [ch, ct]].any(axis=1)).sum())
            if not (cut != con).any():
                break
            con = cut
            ankles, toes, feet_rot, need, drop, beyond = pin(con)
        report.released = released
    # smooth the root correction without ever under-correcting the drop
    if T > 1 and root_window > 0:
        drop = _floor_filter(_floor_filter(drop, root_window, np.min), root_window, np.mean)
        for c in (0, 2):
            need[:, c] = _floor_filter(need[:, c], root_window, np.mean)
    # no contact and the lowest foot above the floor for longer than a jump's flight: the body is standing or
    # gliding on a foot the contacts missed (a skater, a pivot), so it comes down onto the floor, feet and root alike
    knees = np.stack([fk.positions[:, rest.find(side + "ひざ"), 1] for side in "左右"], axis=1)
    sink = _sink_floating(vj, ankles, feet_rot, con, floor_y, max_flight_frames, knees=knees)
    report.grounded_frames = int(np.count_nonzero(sink))
    report.grounded_max = float(sink.max()) if T else 0.0
    if report.grounded_frames:
        for side in ankles:
            ankles[side][:, 1] -= sink
            if side in toes:
                toes[side][:, 1] -= sink
    need[:, 1] = drop - sink
    center, groove = rest.find("センター"), rest.index_of("グルーブ")
    tr2 = tr.copy()
    tr2[:, center, 0] += need[:, 0]
    tr2[:, center, 2] += need[:, 2]
    if groove is not None:
        tr2[:, groove, 1] += need[:, 1]
    else:
        tr2[:, center, 1] += need[:, 1]
    place = ik.place_feet(rest, q, tr2, ankles, toes)
    # The toe IK only aims the toe, so the foot's roll about the ankle->toe line comes from the FK key the solver
    # starts from: give 足首 the wanted world rotation under the solved shin and solve again (the legs start from
    # their solution), so a planted heel does not swing around.
    q2 = q.copy()
    for name, v in place.rotations.items():
        q2[:, rest.find(name)] = v
    for side in ankles:
        shin = place.pose.rotations[:, rest.find(side + "ひざ")]
        q2[:, rest.find(side + "足首")] = Q.multiply(Q.conjugate(shin), feet_rot[side])
    place = ik.place_feet(rest, q2, tr2, ankles, toes)
    # The toe IK turns 足首 only as far as its loops take it: where this second solve moved the shin again, the foot
    # can miss its wanted rotation by tens of degrees (on kunkun a foot turning 190° into a plant in 0.2 s came out
    # with four steps of 40-47° instead of 24-36°). So 足首 gets the wanted world rotation under the final shin, and
    # the IK keys are set from these FK legs (core.retarget.leg_ik_from_fk): MMD, starting its CCD from them, then
    # shows them.
    for side in ankles:
        shin = place.pose.rotations[:, rest.find(side + "ひざ")]     # the solved pose's world rotations
        place.rotations[side + "足首"] = Q.multiply(Q.conjugate(shin), feet_rot[side])
    rotations = dict(motion.rotations)
    locations = dict(motion.locations)
    rotations.update(place.rotations)
    rotations.update(place.ik_rotations)
    for name, v in place.ik_locations.items():
        if name in locations or np.any(np.abs(v) > TOE_IK_ZERO):
            locations[name] = v
    locations["センター"] = tr2[:, center]
    if groove is not None and (np.any(need[:, 1] != 0) or "グルーブ" in locations):
        locations["グルーブ"] = tr2[:, groove]
    report.root_drop_max = float(max(0.0, -drop.min())) if T else 0.0    # for reach; the grounding is apart
    report.root_shift_max = float(np.max(np.linalg.norm(need[:, [0, 2]], axis=1))) if T else 0.0
    report.residual_max = {s: float(np.max(v)) if v.size else 0.0 for s, v in place.residual.items()}
    report.notes.append(
        "feet locked: " + ", ".join(f"{s} {report.locked_frames[s]} frames in {report.runs[s]} contacts" for s in "左右")
        + f"; root lowered up to {report.root_drop_max:.2f} and moved up to {report.root_shift_max:.2f} units so the "
        f"knees stay within their limits ({'グルーブ' if groove is not None else 'センター'} carries the vertical part)"
        + ("; " + ", ".join(f"{s} {n}" for s, n in report.released.items() if n) + " contact frames released (the "
           "pin was out of the leg's reach: the body moved farther than the estimated leg swept)"
           if any(report.released.values()) else "")
        + ("; " + ", ".join(f"{s} {n}" for s, n in report.followed.items() if n) + " contact frames drawn along the "
           "floor after the hip (the body travelled on past the leg's reach)" if any(report.followed.values()) else "")
        + (f"; {report.grounded_frames} frames without contact lowered onto the floor by up to "
           f"{report.grounded_max:.2f} units (the lowest foot floated longer than a jump's flight, "
           f"{max_flight_frames / MMD_FPS:.1f} s)" if report.grounded_frames else ""))
    meta = dict(motion.meta)
    meta["foot_lock"] = {"locked_frames": report.locked_frames, "root_drop_max": report.root_drop_max,
                         "root_shift_max": report.root_shift_max, "residual_max": report.residual_max,
                         "grounded_frames": report.grounded_frames, "grounded_max": report.grounded_max}
    out = BoneMotion(frames=motion.frames, rotations={n: Q.make_continuous(v) for n, v in rotations.items()},
                     locations=locations, model_name=motion.model_name, meta=meta)
    return leg_ik_from_fk(out, rest), report
