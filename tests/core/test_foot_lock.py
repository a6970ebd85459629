"""core.foot_lock and core.motion_cleanup on real models (mat4, the built-in standard skeleton) and real dance mocap
seen through estimate-like noise: planted feet stay put on the floor, level, are released without pops, the root
moves where a knee would pass its limit (グルーブ vertical, センター horizontal)."""
from __future__ import annotations

import numpy as np
import pytest

import mocap_poses as M
from core import conventions, ik, motion_cleanup, smoothing
from core.conventions import METRES_PER_UNIT
from core.foot_lock import foot_points_mmd, lock_feet
from core.formats import pmx
from core.rest_skeleton import RestSkeleton
from core.retarget import retarget
from core.skeletons import CANONICAL


@pytest.fixture(scope="module")
def mat4(shared_data):
    return RestSkeleton.from_pmx(pmx.read(shared_data / "pmx" / "mat4_trace_model" / "mat4_v4_trace_model.pmx"))


class Opts:
    smoothing, key_fps, hfov, level, camera, foot_lock = 0.5, 30.0, 60.0, True, "auto", True


@pytest.fixture(scope="module")
def run(shared_data, mat4):
    tr = M.truth(shared_data, "cmu_iclone/005_11.bvh")
    est = M.estimate(tr)
    motion, rep = motion_cleanup.clean_motion(est, mat4, Opts())
    unlocked, _ = motion_cleanup.clean_motion(est, mat4, type("O", (Opts,), {"foot_lock": False})())
    keys = motion_cleanup.key_contacts(rep.contacts, tr.t, motion.frames / conventions.MMD_FPS)
    pos, rot = ik.evaluate_motion(mat4, motion)
    return tr, motion, unlocked, rep, keys, foot_points_mmd(mat4, pos, rot) * METRES_PER_UNIT


def _runs(mask):
    d = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)))


def test_planted_feet_stay_put_on_the_floor(run):
    tr, motion, unlocked, rep, keys, fp = run
    checked = 0
    for side, (h, t) in enumerate(((0, 1), (2, 3))):
        flat = keys[:, h] & keys[:, t]
        for a, b in _runs(flat):
            if b - a < 3:
                continue
            for k in (h, t):
                p = fp[a:b, k]
                assert np.abs(p[:, [0, 2]] - p[0, [0, 2]]).max() < 0.005     # no slide (5 mm)
                assert np.abs(p[:, 1]).max() < 0.01                          # on the floor within 1 cm
            checked += 1
    assert checked >= 2
    assert fp[..., 1].min() > -0.02                                          # nothing 2 cm below the floor


def test_locking_adds_no_pops_and_knees_stay_within_limits(run, mat4):
    tr, motion, unlocked, rep, keys, fp = run
    # 005_11 has pirouettes: a foot pivoting with the body turns ~44°/frame for a few frames; between two plants
    # the lock spreads that turn over the free frames (at most 45° a step), so nothing pops
    pops = {name: smoothing.rotation_pops(q) for name, q in motion.rotations.items()}
    assert sum(pops.values()) == 0, pops
    # unlocked, no leg bone pops; the 足ＩＫ keys hold the foot's world rotation (core.retarget.leg_ik_from_fk), which
    # turns as fast as the pirouetting foot does (the truth's right foot turns up to 68° in a frame there)
    assert sum(smoothing.rotation_pops(q) for n, q in unlocked.rotations.items() if "ＩＫ" not in n) == 0
    assert sum(smoothing.rotation_pops(q) for n, q in unlocked.rotations.items() if "ＩＫ" in n) <= 2
    for s in "左右":
        knee = motion.rotations[s + "ひざ"]
        assert not smoothing.hinge_violations(knee, (1, 0, 0), -180.0, -0.5, tol_deg=1.0).any()
    # released smoothly: on no frame does a foot point move much faster than in the unlocked motion or in the truth
    # (pivoting on a planted toe in the pirouettes, the heel swings 10-13 cm a frame, as the truth's does, where the
    # smoothed unlocked estimate moves it 3-8 cm)
    pos, rot = ik.evaluate_motion(mat4, unlocked)
    fp0 = foot_points_mmd(mat4, pos, rot) * METRES_PER_UNIT
    feet = [CANONICAL.index(n) for n in ("LHeel", "LFootIndex", "RHeel", "RFootIndex")]
    step = np.linalg.norm(np.diff(fp, axis=0), axis=-1)
    step0 = np.linalg.norm(np.diff(fp0, axis=0), axis=-1)
    step_true = np.linalg.norm(np.diff(tr.joints[:, feet], axis=0), axis=-1)
    assert len(step) == len(step_true)
    assert (step < np.maximum(step0, step_true) + 0.05).all()               # at most 5 cm/frame more


def test_mmd_plays_the_legs_that_were_locked_and_repaired(run, mat4):
    """What MMD shows (IK on: CCD from the FK legs onto 足ＩＫ / つま先ＩＫ) is the FK pose the cleanup locked and
    repaired, on every frame: the pirouettes of 005_11 need late flip repairs and unreachable pins, where IK keys set
    before those edits had left MMD's feet up to 7 cm from FK on a real clip."""
    _, motion, unlocked, _, _, _ = run
    for m in (motion, unlocked):
        with_ik, _ = ik.evaluate_motion(mat4, m)
        fk, _ = mat4.fk(m.rotations, m.locations)
        assert np.linalg.norm(with_ik - fk, axis=-1).max() < 1e-3            # units: 0.08 mm


def test_vertical_root_goes_to_groove_horizontal_to_center(run, mat4):
    tr, motion, unlocked, rep, keys, fp = run
    assert "グルーブ" in motion.locations
    np.testing.assert_allclose(motion.locations["センター"][:, 1], unlocked.locations["センター"][:, 1])
    assert rep.lock.root_drop_max >= 0.0
    # on a model without グルーブ (the built-in standard skeleton) the vertical part goes on センター
    std = RestSkeleton.standard()
    base = retarget(conventions.camera_to_mmd(_grounded(tr)), std, ground=False)
    far = np.zeros((base.n_frames, 4), dtype=bool)
    far[:, :2] = True                                                        # pin the left foot for the whole clip
    locked, lrep = lock_feet(base, std, far)
    assert "グルーブ" not in locked.locations
    if lrep.root_drop_max > 0:
        assert (locked.locations["センター"][:, 1] <= base.locations["センター"][:, 1] + 1e-9).all()


def _grounded(tr):
    """The truth's joints levelled with the floor at y = 0 (camera frame, metres)."""
    R = np.eye(3)
    up = tr.up
    v = np.cross(up, [0.0, -1.0, 0.0])
    s, c = np.linalg.norm(v), up @ np.array([0.0, -1.0, 0.0])
    if s > 1e-12:
        k = v / s
        K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
        R = np.eye(3) + s * K + (1 - c) * K @ K
    j = (tr.joints - tr.floor_point) @ R.T
    return j


def test_lock_on_the_true_motion_pins_true_contacts(shared_data, mat4):
    tr = M.truth(shared_data, "cmu_iclone/005_03.bvh")
    base = retarget(conventions.camera_to_mmd(_grounded(tr)), mat4, ground=False)
    keys = motion_cleanup.key_contacts(tr.contacts, tr.t, base.frames / conventions.MMD_FPS)
    locked, rep = lock_feet(base, mat4, keys)
    pos, rot = ik.evaluate_motion(mat4, locked)
    fp = foot_points_mmd(mat4, pos, rot) * METRES_PER_UNIT
    pos0, rot0 = ik.evaluate_motion(mat4, base)
    fp0 = foot_points_mmd(mat4, pos0, rot0) * METRES_PER_UNIT
    both = keys[1:] & keys[:-1]
    v = np.linalg.norm(np.diff(fp[..., [0, 2]], axis=0), axis=-1)
    v0 = np.linalg.norm(np.diff(fp0[..., [0, 2]], axis=0), axis=-1)
    assert v[both].mean() < 0.5 * v0[both].mean()                         # less sliding than the plain retarget
    # every contact run is held one frame longer on each side (pad_frames=1); without padding, exactly the contacts
    wide = keys.copy()
    wide[1:] |= keys[:-1]
    wide[:-1] |= keys[1:]
    assert sum(rep.locked_frames.values()) == int(wide[:, :2].any(1).sum() + wide[:, 2:].any(1).sum())
    _, exact = lock_feet(base, mat4, keys, pad_frames=0)
    assert sum(exact.locked_frames.values()) == int(keys[:, :2].any(1).sum() + keys[:, 2:].any(1).sum())
    with pytest.raises(ValueError):
        lock_feet(base, mat4, keys[:-1])


def test_cleanup_report_and_real_video_figures(run):
    tr, motion, unlocked, rep, keys, fp = run
    assert rep.contacts.shape == (len(tr.t), 4) and rep.contacts.dtype == bool
    assert rep.camera.used == "feet" and rep.lock is not None
    assert any(n.startswith("floor") for n in rep.notes) and motion.meta["cleanup"] == rep.notes
    low = fp[..., 1].min(axis=1)
    assert np.mean((low > -0.02) & (low < 0.04)) > 0.85                     # issue 9's real-video target
    centre = motion.locations["センター"] + motion.locations.get("グルーブ", np.zeros_like(motion.locations["センター"]))
    speed = np.linalg.norm(np.diff(centre, axis=0), axis=1) * METRES_PER_UNIT * conventions.MMD_FPS
    assert np.percentile(speed, 99) < 4.0


def test_motion_stage_default_is_the_cleanup_and_none_is_the_former_stage(shared_data, mat4):
    from core import motion_stage, options

    tr = M.truth(shared_data, "cmu_iclone/005_03.bvh")
    est = M.estimate(tr)
    default = motion_stage.motion_stage(est, mat4, options.MotionOptions())
    cleaned, _ = motion_cleanup.clean_motion(est, mat4, options.MotionOptions())
    for name, q in cleaned.rotations.items():
        np.testing.assert_allclose(default.rotations[name], q)
    assert default.meta["cleanup"] and default.meta["foot_contacts"].shape == (len(tr.t), 4)
    former = motion_stage.motion_stage(est, mat4, options.MotionOptions(cleanup="none"))
    assert "cleanup" not in former.meta and "ground_shift" in former.meta
    with pytest.raises(Exception):
        options.check_fields(options.MotionOptions(cleanup="sideways"))


def test_legs_only_fk_equals_the_whole_body_fk_on_the_legs(run, mat4):
    """lock_feet reads the FK legs only (ik.evaluate(bones=...)): the same bits as the whole body's FK there."""
    _, _, unlocked, _, _, _ = run
    q, tr = ik.motion_arrays(mat4, unlocked)
    solvers = ik.ik_solvers(mat4)
    off = {mat4.names[s.bone]: False for s in solvers}
    full = ik.evaluate(mat4, q, tr, ik_enabled=off, solvers=solvers)
    legs = ik.evaluate(mat4, q, tr, ik_enabled=off, solvers=solvers,
                       bones=[side + b for side in "左右" for b in ("足", "足首")])
    for side in "左右":
        for b in ("足", "足首"):
            i = mat4.find(side + b)
            assert np.array_equal(legs.positions[:, i], full.positions[:, i])
            assert np.array_equal(legs.rotations[:, i], full.rotations[:, i])
    assert np.isnan(legs.positions[:, mat4.find("頭")]).all()  # the rest of the body was not evaluated


def test_a_pin_out_of_the_legs_reach_is_released_not_dragging_the_root_down(shared_data, mat4):
    """Contacts that hold a foot for a whole travelling clip (two steps read as one, or a body that moved farther
    than its estimated leg swept): pinning all of it would pull the root down towards the floor; the frames out of
    the leg's reach are released instead (``follow_reach=None``; by default they follow the hip, below), and the rest
    stays pinned."""
    tr = M.truth(shared_data, "cmu_iclone/005_03.bvh")
    base = retarget(conventions.camera_to_mmd(_grounded(tr)), mat4, ground=False)
    keys = np.zeros((base.n_frames, 4), dtype=bool)
    keys[:, :2] = True                                                       # the left foot "planted" throughout
    held, rep_held = lock_feet(base, mat4, keys, release_unreachable=False, follow_reach=None)
    freed, rep = lock_feet(base, mat4, keys, follow_reach=None)
    leg = ik.leg_reach(mat4, "左")[1]
    assert rep_held.root_drop_max > 0.3 * leg                                # held: the root sinks by a third of a leg
    assert rep.root_drop_max <= 0.2 * leg + 1e-6                             # released: no more than max_drop
    assert 0 < rep.released["左"] < base.n_frames and rep.released.get("右", 0) == 0
    assert rep.locked_frames["左"] == base.n_frames - rep.released["左"]
    assert "released" in rep.notes[0]


def test_with_follow_reach_a_pin_out_of_reach_slides_after_the_hip_on_the_floor(shared_data, mat4):
    """The same travelling clip with the left foot "planted" throughout: with ``follow_reach`` the frames that would
    be released keep their contact, their pin drawn along the floor after the hip (the default, 0.85), so the foot
    never leaves the floor, moves no faster than the hip, and the root still drops no more than ``max_drop``."""
    tr = M.truth(shared_data, "cmu_iclone/005_03.bvh")
    base = retarget(conventions.camera_to_mmd(_grounded(tr)), mat4, ground=False)
    keys = np.zeros((base.n_frames, 4), dtype=bool)
    keys[:, :2] = True
    leg = ik.leg_reach(mat4, "左")[1]
    _, freed = lock_feet(base, mat4, keys, follow_reach=None)
    out, rep = lock_feet(base, mat4, keys)
    assert freed.released["左"] > 20                                         # without it: released (and lifted)
    assert rep.released["左"] == 0 and 0 < rep.followed["左"] < base.n_frames
    assert rep.root_drop_max <= 0.2 * leg + 1e-6
    assert "drawn along the floor" in rep.notes[0]
    pos, rot = ik.evaluate_motion(mat4, out)
    left = foot_points_mmd(mat4, pos, rot)[:, :2] * METRES_PER_UNIT          # left heel, toe (m)
    assert np.abs(left[..., 1]).max() < 0.01                                 # on the floor within 1 cm throughout
    step = np.linalg.norm(np.diff(left[..., [0, 2]], axis=0), axis=-1).max(axis=1)
    hip = pos[:, mat4.find("左足")] * METRES_PER_UNIT
    hip_step = np.linalg.norm(np.diff(hip[:, [0, 2]], axis=0), axis=-1)
    assert step.max() <= hip_step.max() + 1e-3                               # it slides, never jumps
    assert np.median(step) < 0.001                                           # and stays put most of the time


def test_a_float_longer_than_a_jump_comes_down_to_the_floor_and_a_hop_stays_up(shared_data, mat4):
    """No contact and the lowest foot above the floor: for 1.5 s (a skater gliding, a pivot the contacts missed) the
    whole body is lowered onto the floor; for 0.4 s (a hop's flight) it is left in the air."""
    tr = M.truth(shared_data, "cmu_iclone/005_03.bvh")
    base = retarget(conventions.camera_to_mmd(_grounded(tr)), mat4, ground=False)
    T = base.n_frames
    assert T > 100
    lifted = base.locations["センター"].copy()
    lifted[10:55, 1] += 0.10 / METRES_PER_UNIT                               # 1.5 s, 10 cm up
    tau = (np.arange(80, 93) - 80) / 12.0
    lifted[80:93, 1] += 0.08 * 4 * tau * (1 - tau) / METRES_PER_UNIT        # a 0.4 s hop, 8 cm at its top
    moved = type(base)(frames=base.frames, rotations=dict(base.rotations),
                       locations={**base.locations, "センター": lifted}, model_name=base.model_name)
    keys = np.ones((T, 4), dtype=bool)
    keys[10:55] = False
    keys[80:92] = False
    out, rep = lock_feet(moved, mat4, keys)
    pos, rot = ik.evaluate_motion(mat4, out)
    low = foot_points_mmd(mat4, pos, rot)[..., 1].min(axis=1) * METRES_PER_UNIT
    assert np.abs(low[12:53]).max() < 0.01                                   # down on the floor within 1 cm
    assert rep.grounded_frames >= 35 and rep.grounded_max * METRES_PER_UNIT > 0.05
    assert "lowered onto the floor" in rep.notes[0]
    kept, rep0 = lock_feet(moved, mat4, keys, max_flight_frames=0)           # the same without the grounding
    assert rep0.grounded_frames == 0
    pos0, rot0 = ik.evaluate_motion(mat4, kept)
    low0 = foot_points_mmd(mat4, pos0, rot0)[..., 1].min(axis=1) * METRES_PER_UNIT
    assert low0[20:45].min() > 0.03                                          # it did float there
    assert np.allclose(low[80:92], low0[80:92], atol=1e-6)                   # the hop keeps its height
    assert low[84:89].min() > 0.03


def test_grounding_never_puts_a_knee_through_the_floor(mat4):
    """A dancer kneeling with her feet raised behind her floats her feet for seconds but rests on her knees: the
    body comes down no further than puts the knees on the floor (their centres KNEE_CLEARANCE above it)."""
    from core import quat as Q
    from core.foot_lock import KNEE_CLEARANCE, _sink_floating
    from core.retarget import virtual_joints
    vj = virtual_joints(mat4)
    T = 60
    u = 1.0 / METRES_PER_UNIT                                                # units per metre
    ankles = {s: np.tile([0.1 * u if s == "左" else -0.1 * u, 0.20 * u, 0.0], (T, 1)) for s in "左右"}
    rot = {s: np.tile(Q.identity(()), (T, 1)) for s in "左右"}
    con = np.zeros((T, 4), dtype=bool)
    free = _sink_floating(vj, ankles, rot, con, 0.0, 21)
    assert free.min() > 0.1 * u                                              # standing on air for 2 s: all the way down
    knees = np.full((T, 2), 0.08 * u)                                        # knees 8 cm up
    capped = _sink_floating(vj, ankles, rot, con, 0.0, 21, knees=knees)
    assert np.allclose(capped, 0.08 * u - KNEE_CLEARANCE)                   # 3 cm: the knees reach the floor
    short = _sink_floating(vj, {s: a[:20] for s, a in ankles.items()}, {s: r[:20] for s, r in rot.items()},
                           con[:20], 0.0, 21)
    assert not short.any()                                                   # 0.67 s: could be a jump


def test_planted_feet_stand_as_in_the_models_rest_pose(shared_data, mat4):
    """The floor is where the model's rest pose stands (core.conventions "Floor"): on yw, whose heel and toe points
    rest 2.3 cm up, planted flat feet keep that height and a vertical 足ＩＫ offset of 0 (as hand-keyed motions plant
    them), instead of sinking the sole 2.3 cm into the floor; on mat4 (points at y = 0) nothing moves."""
    from core.foot_lock import standing_height

    yw = RestSkeleton.from_pmx(pmx.read(shared_data / "pmx" / "yw_test_model" / "yw_test_model.pmx"))
    assert standing_height(mat4) == pytest.approx(0.0, abs=1e-6)
    assert standing_height(yw) == pytest.approx(0.0232 / METRES_PER_UNIT, abs=0.01)
    tr = M.truth(shared_data, "cmu_iclone/005_11.bvh")
    motion, rep = motion_cleanup.clean_motion(M.estimate(tr), yw, Opts())
    keys = motion_cleanup.key_contacts(rep.contacts, tr.t, motion.frames / conventions.MMD_FPS)
    pos, rot = ik.evaluate_motion(yw, motion)
    fp = foot_points_mmd(yw, pos, rot) * METRES_PER_UNIT
    checked = 0
    for side, (h, t) in zip("左右", ((0, 1), (2, 3))):
        flat = keys[:, h] & keys[:, t]
        for a, b in _runs(flat):
            if b - a < 3:
                continue
            assert np.abs(fp[a:b, [h, t], 1] - 0.0232).max() < 0.01              # at the rest height, within 1 cm
            assert np.abs(motion.locations[side + "足ＩＫ"][a:b, 1]).max() * METRES_PER_UNIT < 0.01
            checked += 1
    assert checked >= 2
    assert fp[..., 1].min() > 0.0232 - 0.02                                    # never 2 cm below where it stands
