"""core.smoothing: One Euro on real dance joints, outlier, flip, swap and root-jump repair against known truth."""
from __future__ import annotations

import numpy as np
import pytest

import mocap_poses as M
from core import filters, quat as Q, smoothing as S
from core.skeletons import CANONICAL


@pytest.fixture(scope="module")
def tr(shared_data):
    return M.truth(shared_data, "cmu_iclone/005_12.bvh")


@pytest.fixture(scope="module")
def est(tr):
    return M.estimate(tr)


def _rel(tr):
    return tr.joints - tr.joints[:, :1]


def test_one_euro_removes_noise_and_keeps_the_dance(tr, est):
    truth = _rel(tr)
    noisy = est.joints_3d.astype(np.float64)
    out = S.one_euro(noisy, tr.t, **S.one_euro_params(0.5))
    err_in = np.linalg.norm(noisy - truth, axis=-1).mean()
    err_out = np.linalg.norm(out - truth, axis=-1).mean()
    assert err_out < 0.6 * err_in
    # jitter (mean |acceleration|) comes down close to the real motion's own
    assert filters.jitter(out, tr.t) < 0.4 * filters.jitter(noisy, tr.t)
    # no lag: shifting the output by a frame either way only makes it worse
    wrist = CANONICAL.index("LWrist")
    e0 = np.abs(out[5:-5, wrist] - truth[5:-5, wrist]).mean()
    for lag in (-1, 1):
        assert np.abs(out[5 + lag:len(out) - 5 + lag, wrist] - truth[5:-5, wrist]).mean() > e0


def _reference_one_euro(x, t, **k):
    """The former implementation: two separate causal passes of the reference loop, averaged."""
    args = (k["min_cutoff"], k["beta"], k["d_cutoff"])
    return 0.5 * (S._one_euro_pass(x, t, *args) + S._one_euro_pass(x[::-1], t[::-1], *args)[::-1])


@pytest.mark.parametrize("kind", ["position", "root", "rotation"])
@pytest.mark.parametrize("strength", [0.0, 0.5, 1.0])
def test_one_euro_equals_the_former_per_pass_loop_on_real_motion(tr, est, kind, strength):
    k = S.one_euro_params(strength, kind)
    if kind == "position":
        x = est.joints_3d.astype(np.float64)
    elif kind == "root":
        x = tr.joints[:, :1].astype(np.float64)
    else:
        x = Q.make_continuous(Q.normalize(np.random.default_rng(3).normal(size=(len(tr.t), 9, 4))))
    # uneven time steps too (a decode that dropped frames)
    for t in (tr.t, tr.t + 0.004 * np.sin(np.arange(len(tr.t)))):
        out = S.one_euro(x, t, **k)
        ref = _reference_one_euro(x, t, **k)
        assert out.shape == ref.shape and np.abs(out - ref).max() <= 1e-12
        assert np.array_equal(out, ref)  # the same arithmetic, in the same order: equal to the bit
    # a (T, 1) track (core.floor smooths one height) and a short one
    z = x[:, :1, 0]
    assert np.array_equal(S.one_euro(z, tr.t, min_cutoff=0.3, beta=0.0), _reference_one_euro(z, tr.t, min_cutoff=0.3,
                                                                                             beta=0.0, d_cutoff=1.0))
    assert np.array_equal(S.one_euro(x[:3], tr.t[:3], **k), _reference_one_euro(x[:3], tr.t[:3], **k))


def test_one_euro_keeps_accents_better_than_a_fixed_window():
    # a still pose, a fast 0.1 s accent of 30 cm, still again, plus noise: the adaptive filter keeps more of the peak
    t = np.arange(90) / 30.0
    x = np.zeros((90, 1, 3))
    x[44:47, 0, 0] = [0.15, 0.3, 0.15]
    noisy = x + np.random.default_rng(1).normal(0, 0.01, x.shape)
    oe = S.one_euro(noisy, t, **S.one_euro_params(0.5))
    sg = filters.smooth(noisy, t, 0.5)
    assert oe[45, 0, 0] > sg[45, 0, 0]
    assert np.abs(oe[:30, 0]).mean() < np.abs(noisy[:30, 0]).mean()


def test_one_euro_rejects_nan_and_bad_parameters():
    t = np.arange(5) / 30.0
    with pytest.raises(ValueError):
        S.one_euro(np.full((5, 1, 3), np.nan), t)
    with pytest.raises(ValueError):
        S.one_euro(np.zeros((5, 1, 3)), t, min_cutoff=0.0)
    with pytest.raises(ValueError):
        S.one_euro_params(1.5)


def test_smooth_rotations_stays_on_the_sphere_and_sign_continuous():
    rng = np.random.default_rng(2)
    t = np.arange(60) / 30.0
    ang = np.linspace(0, np.pi, 60) + rng.normal(0, 0.05, 60)
    q = Q.from_axis_angle(np.tile([0.0, 1.0, 0.0], (60, 1)), ang)
    q[::7] *= -1.0                                     # sign flips are the same rotation
    out = S.smooth_rotations(q, t)
    assert np.allclose(np.linalg.norm(out, axis=-1), 1.0)
    assert np.all(np.sum(out[1:] * out[:-1], axis=-1) > 0)
    clean = Q.from_axis_angle(np.tile([0.0, 1.0, 0.0], (60, 1)), np.linspace(0, np.pi, 60))
    assert np.degrees(Q.angle_between(out, clean)).mean() < np.degrees(Q.angle_between(q, clean)).mean()


def test_hampel_finds_injected_spikes_on_real_motion(tr, est):
    x = S.one_euro(est.joints_3d.astype(np.float64), tr.t)
    spiked = x.copy()
    hits = [(40, CANONICAL.index("LWrist")), (41, CANONICAL.index("LWrist")), (150, CANONICAL.index("RKnee")),
            (260, CANONICAL.index("LFoot"))]
    for f, j in hits:
        spiked[f, j] += [0.0, 0.0, 0.5]               # a depth glitch of 50 cm
    out, rep = S.hampel(spiked, tr.t)
    for f, j in hits:
        assert f in rep.frames
        assert np.linalg.norm(out[f, j] - x[f, j]) < 0.05
    assert rep.details["points"] <= len(hits) + 4     # the smooth real motion itself is left alone


def test_repair_swaps_undoes_an_injected_leg_swap_in_2d(tr, est):
    kp = est.keypoints_canonical_2d()
    legs = [CANONICAL.index(n) for n in S.SWAP_GROUPS["legs"]]
    from core.skeletons import CANONICAL_MIRROR
    bad = kp.copy()
    bad[100:103, legs] = kp[100:103, CANONICAL_MIRROR[legs]]
    bad[100:103, CANONICAL_MIRROR[legs]] = kp[100:103, legs]
    out, rep = S.repair_swaps(bad[..., :2], confidence=bad[..., 2])
    assert set(range(100, 103)) <= set(rep.frames.tolist())
    assert np.abs(out[100:103] - kp[100:103, :, :2]).max() < 1e-9
    # a long exchange (a spin's ambiguous labels) is left alone
    long = kp.copy()
    long[150:170, legs] = kp[150:170, CANONICAL_MIRROR[legs]]
    long[150:170, CANONICAL_MIRROR[legs]] = kp[150:170, legs]
    _, rep_long = S.repair_swaps(long[..., :2], confidence=long[..., 2])
    assert not set(range(150, 170)) & set(rep_long.frames.tolist())
    # the unswapped clip (a dancer turning, limbs crossing) is not "repaired"
    _, rep0 = S.repair_swaps(kp[..., :2], confidence=kp[..., 2])
    assert rep0.count == 0
    # the 3D lifted from the swapped 2D carries the same exchange: the 2D decision undoes it
    j3 = est.joints_3d.astype(np.float64)
    bad3 = j3.copy()
    bad3[100:103, legs] = j3[100:103, CANONICAL_MIRROR[legs]]
    bad3[100:103, CANONICAL_MIRROR[legs]] = j3[100:103, legs]
    np.testing.assert_array_equal(S.apply_swaps(bad3, rep.details["masks"]), j3)


def test_cleanup_exchanges_the_3d_only_where_the_lifter_carries_the_2d_swap(tr, est):
    """A 2D leg swap on frames 100-102 of real dance: MediaPipe's world landmarks come from the same detection and
    carry it (the cleanup exchanges them back); the trained temporal lifter has undone it (its 3D is kept as it is,
    where exchanging it would swap it)."""
    import dataclasses

    from core import motion_cleanup
    from core.skeletons import CANONICAL_MIRROR
    legs = np.array([CANONICAL.index(n) for n in S.SWAP_GROUPS["legs"]])
    swap = np.concatenate([legs, CANONICAL_MIRROR[legs]]), np.concatenate([CANONICAL_MIRROR[legs], legs])

    def exchanged(x):
        out = np.array(x, dtype=np.float64)
        out[100:103, swap[0]] = np.asarray(x, dtype=np.float64)[100:103, swap[1]]
        return out

    clean, *_ = motion_cleanup.prepare_world(dataclasses.replace(est, lifter="mediapipe"))
    bad_2d = exchanged(est.keypoints_2d).astype(np.float32)
    for lifter, j3 in (("mediapipe", exchanged(est.joints_3d)), ("trained", est.joints_3d)):
        poses = dataclasses.replace(est, keypoints_2d=bad_2d, joints_3d=np.asarray(j3, dtype=np.float32),
                                    lifter=lifter)
        world, kp, _, repairs = motion_cleanup.prepare_world(poses)
        assert {100, 101, 102} <= set(repairs[1].frames.tolist())                  # the 2D swap was found
        np.testing.assert_allclose(kp[100:103, :, :2], est.keypoints_2d[100:103, :, :2], atol=1e-4)
        # the legs as without the swap (exchanged, the knees and feet would be 10-40 cm off; the outlier filter,
        # which runs first, moves the swapped MediaPipe 3D by a few mm)
        assert np.linalg.norm(world[100:103] - clean[100:103], axis=-1).max() < 0.01, lifter


def test_flip_repair_fixes_out_and_back_and_spreads_a_persistent_step():
    T = 40
    axis = np.tile([1.0, 0.0, 0.0], (T, 1))
    ang = np.linspace(0, 0.5, T)
    q = Q.from_axis_angle(axis, ang)
    q[10] = Q.from_axis_angle([0.0, 0.0, 1.0], np.pi * 0.9)       # one-frame flip
    q[20:22] = Q.from_axis_angle([0.0, 1.0, 0.0], np.pi * 0.8)    # two-frame flip
    out, rep = S.repair_rotation_flips(q)
    assert {10, 20, 21} <= set(rep.frames.tolist())
    clean = Q.from_axis_angle(axis, ang)
    assert np.degrees(Q.angle_between(out, clean)).max() < 2.0
    assert S.rotation_pops(out) == 0
    # a step that stays: spread so no frame turns more than 45°
    q2 = Q.from_axis_angle(axis, np.where(np.arange(T) < 20, 0.0, np.radians(120)))
    out2, rep2 = S.repair_rotation_flips(q2)
    assert S.rotation_pops(q2) == 1 and S.rotation_pops(out2) == 0
    assert np.degrees(Q.angle_between(out2[-1], q2[-1])) < 1e-6      # it still gets there
    # a steady fast turn (30°/frame) is real motion: untouched
    q3 = Q.from_axis_angle(axis, np.radians(30) * np.arange(T))
    out3, rep3 = S.repair_rotation_flips(q3)
    assert rep3.count == 0 and np.allclose(np.abs(np.sum(out3 * q3, -1)), 1.0)


def test_flip_repair_of_many_tracks_equals_each_track_on_its_own(tr):
    """repair_rotation_flips works stage by stage over all tracks at once: the same bits as one track at a time."""
    rng = np.random.default_rng(7)
    T, N = len(tr.t), 6
    # real-motion-like tracks: the mocap's bone directions turned into rotations, then flips, steps and bad runs
    d = tr.joints[:, 1:N + 1] - tr.joints[:, :1]
    q = Q.from_two_vectors(np.broadcast_to([0.0, -1.0, 0.0], d.shape), d)
    for n in range(N):
        for i in rng.choice(np.arange(5, T - 10), size=4, replace=False):
            q[i:i + rng.integers(1, 4), n] = Q.from_axis_angle(rng.normal(size=3), np.pi * rng.uniform(0.5, 0.95))
        i = rng.integers(20, T - 20)
        q[i:, n] = Q.multiply(Q.from_axis_angle([0.0, 0.0, 1.0], np.radians(100.0)), q[i:, n])  # a step that stays
    invalid = np.zeros((T, N), dtype=bool)
    invalid[30:33, 1] = invalid[60:75, 4] = True
    keep = np.zeros(T, dtype=bool)
    keep[100:110] = True
    for kwargs in ({}, {"invalid": invalid, "keep": keep}, {"spread": False, "max_len": 8}):
        out, rep = S.repair_rotation_flips(q, **kwargs)
        assert rep.count > 0
        events, spread = 0, 0
        for n in range(N):
            k = dict(kwargs)
            if "invalid" in k:
                k["invalid"] = k["invalid"][:, n]
            one, r1 = S.repair_rotation_flips(q[:, n], **k)
            assert np.array_equal(Q.make_continuous(out[:, n]), Q.make_continuous(one))
            events, spread = events + r1.count, spread + r1.details["spread"]
        assert (rep.count, rep.details["spread"]) == (events, spread)


def test_hinge_violations_and_angle_clamp():
    knee = Q.from_axis_angle(np.tile([1.0, 0.0, 0.0], (3, 1)), np.radians([-60.0, 20.0, -1.0]))
    assert S.hinge_violations(knee, (1, 0, 0), -180, -0.5).tolist() == [False, True, False]
    q = Q.from_axis_angle(np.tile([0.0, 0.0, 1.0], (2, 1)), np.radians([150.0, 30.0]))
    c, n = S.clamp_rotation_angle(q, 90.0)
    assert n == 1
    assert np.allclose(np.degrees(Q.angle(c)), [90.0, 30.0])


def test_root_jumps_are_not_taken_from_a_noisy_depth_and_a_real_jump_still_is(tr):
    """A monocular depth as noisy as the closed-loop walks' (10 cm per frame) steps faster than 6 m/s back and forth:
    those steps are noise, not jumps (holding them walked the root 27 cm away from the truth on average); a 2 m jump
    in the same noisy track is still held."""
    root = tr.joints[:, 0]
    for seed in range(3):
        raw = M.estimate(tr, seed=seed, root_noise=(0.02, 0.02, 0.1)).trajectory.astype(np.float64)
        assert (np.linalg.norm(np.diff(raw, axis=0), axis=1) / np.diff(tr.t)).max() > 6.0
        out, rep = S.repair_root_jumps(raw, tr.t)
        err_raw = np.linalg.norm(raw - root, axis=1).mean()
        assert rep.details["jumps"] == 0
        assert np.linalg.norm(out - root, axis=1).mean() <= 1.05 * err_raw          # no drift added
        bad = raw.copy()
        bad[200:] += [2.0, 0.0, 0.0]
        held, rep2 = S.repair_root_jumps(bad, tr.t)
        assert rep2.details["jumps"] >= 1
        assert np.linalg.norm(held[200:] - root[200:], axis=1).mean() < 0.3           # 2 m -> under 0.3 m


def test_the_depth_filter_smooths_a_real_walk_hard_and_keeps_its_ends(shared_data):
    """A real walk straight towards the camera (CMU 002_02, about 1.9 m/s) with 10 cm of depth noise per frame: the
    "depth" filter (no speed term, padded ends) stays within 3 cm of it up to the clip's ends (without the padding
    the ends are 15 cm off) and leaves a third of the acceleration the root's own filter, which the noise opens,
    lets through."""
    walk = M.truth(shared_data, "cmu_iclone/002_02.bvh")
    z = walk.joints[:, 0, 2:] + 3.0                       # (T, 1) metres: 6.4 m -> 1.9 m from the camera
    acc = lambda x: np.abs(np.diff(x[:, 0], 2)).mean() / np.median(np.diff(walk.t)) ** 2  # noqa: E731
    p = S.one_euro_params(0.5, "depth")
    assert p["beta"] == 0.0 and p["pad_s"] > 0
    ends = np.r_[0:8, len(z) - 8:len(z)]
    for seed in range(3):
        noisy = z + np.random.default_rng(seed).normal(0, 0.1, z.shape)
        padded = S.one_euro(noisy[:, None], walk.t, **p)[:, 0]
        plain = S.one_euro(noisy[:, None], walk.t, **dict(p, pad_s=0.0))[:, 0]
        rooted = S.one_euro(noisy[:, None], walk.t, **S.one_euro_params(0.5, "root"))[:, 0]
        assert np.abs(padded - z).mean() < 0.04
        assert np.abs(padded - z)[ends].mean() < 0.06 < 0.1 < np.abs(plain - z)[ends].mean()
        assert acc(padded) < 0.5 * acc(rooted) and acc(padded) < 5 * acc(z)
    with pytest.raises(ValueError):
        S.one_euro(z[:, None], walk.t, pad_s=-1.0)


def test_the_motion_stage_root_keeps_its_depth_and_its_image_point_under_depth_noise(shared_data):
    """The root through ``prepare_world`` (repairs, smoothing, no levelling) with 10 cm of depth noise per frame, on
    a dance (CMU 005_12) and a walk towards the camera (002_02): within 10 cm of the true depth, its acceleration
    under 6x the truth's (the noisy input's is 40-80x), and still on the image point of the true hip (within 5 px
    on average: the depth is changed along the camera ray)."""
    import types

    from core import motion_cleanup
    for clip, dz in (("cmu_iclone/005_12.bvh", 0.0), ("cmu_iclone/002_02.bvh", 3.0)):
        truth = M.truth(shared_data, clip)
        truth.joints[..., 2] += dz
        est = M.estimate(truth, root_noise=(0.02, 0.02, 0.1))
        world, *_ = motion_cleanup.prepare_world(est, types.SimpleNamespace(level=False))
        hip, true_hip = world[:, 0], truth.joints[:, 0]
        acc = lambda x: np.linalg.norm(np.diff(x, 2, axis=0), axis=-1).mean()
        assert np.abs(hip[:, 2] - true_hip[:, 2]).mean() < 0.1, clip
        assert acc(hip) < 6 * acc(true_hip) and acc(est.trajectory) > 40 * acc(true_hip), clip
        px = np.linalg.norm(M.project(hip[:, None])[:, 0] - M.project(true_hip[:, None])[:, 0], axis=-1)
        assert px.mean() < 5.0, clip


def test_root_jumps_are_interpolated_or_held(tr):
    root = tr.joints[:, 0].copy()
    bad = root.copy()
    bad[50] += [0.0, 0.0, 3.0]                  # a 3 m depth spike for one frame
    bad[200:] += [2.0, 0.0, 0.0]                # a 2 m jump that stays
    out, rep = S.repair_root_jumps(bad, tr.t)
    assert np.linalg.norm(out[50] - root[50]) < 0.05
    speed = np.linalg.norm(np.diff(out, axis=0), axis=1) / np.diff(tr.t)
    assert speed.max() <= 6.0 + 1e-6
    assert rep.details["jumps"] >= 1 and rep.details["spikes"] >= 1
    assert "repaired" in rep.describe(tr.t)
    # the real root is plausible: nothing to repair
    _, rep0 = S.repair_root_jumps(root, tr.t)
    assert rep0.count == 0
