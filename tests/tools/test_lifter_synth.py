"""tools.lifter_training.synth and .dataset: virtual cameras frame the dancer, the noise model reproduces the
statistics it is given, body proportions vary, contact labels follow the feet of a real walk."""
from __future__ import annotations

import numpy as np
import pytest

from core.rest_skeleton import RestSkeleton
from core.retarget import rest_joints
from core.skeletons import CANONICAL

mocap = pytest.importorskip("tools.lifter_training.mocap")
synth = pytest.importorskip("tools.lifter_training.synth")
dataset = pytest.importorskip("tools.lifter_training.dataset")

J = {n: i for i, n in enumerate(CANONICAL)}


@pytest.fixture(scope="module")
def walk(shared_data):
    clip = mocap.load_clip(shared_data / "mocap" / "bandai_namco_1" / "dataset-1_walk_normal_001.bvh")
    return mocap.to_mmd(clip, RestSkeleton.standard())[1]


def test_cameras_frame_the_dancer_with_the_requested_fov(walk):
    rng = np.random.default_rng(0)
    world = np.repeat(synth.mmd_world(walk[None, :60]), 64, axis=0)
    R, C, focal, size, hfov = synth.random_cameras(rng, world)
    assert np.all((hfov >= 30) & (hfov <= 90))
    np.testing.assert_allclose(2 * np.degrees(np.arctan(0.5 * size[:, 0] / focal)), hfov)
    np.testing.assert_allclose(np.einsum("bij,bkj->bik", R, R), np.broadcast_to(np.eye(3), R.shape), atol=1e-9)
    cam, px = synth.project(world, R, C, focal, size)
    assert np.all(cam[..., 2] > 0.5)                                   # in front of the camera
    hip = px[:, :, J["Hip"]]
    inside = (hip[..., 0] > 0) & (hip[..., 0] < size[:, None, 0]) & (hip[..., 1] > 0) & \
        (hip[..., 1] < size[:, None, 1])
    assert inside.mean() > 0.95
    # Yaw all around: the dancer is seen from the front and from the back.
    left = world[0, 0, J["LHip"]] - world[0, 0, J["RHip"]]
    fwd = np.array([left[2], 0.0, -left[0]]) / np.hypot(left[0], left[2])     # MMD's up x left, in these axes
    facing = np.einsum("bij,j->bi", R, fwd)
    assert (facing[:, 2] > 0.5).any() and (facing[:, 2] < -0.5).any()
    # Pinhole: the pixel is the camera point over its depth.
    np.testing.assert_allclose(px[..., 0], focal[:, None, None] * cam[..., 0] / cam[..., 2] + size[:, None, None, 0] / 2)


def _core_only_noise():
    """The provisional noise model with only its Gaussian core (sigma 0.02 / 0.01 bbox): no tails, misses, swaps."""
    noise = synth.NoiseModel.from_dict(synth.PROVISIONAL_NOISE)
    noise.tail_fraction[:] = 0.0
    noise.miss_rate[:] = 0.0
    noise.frame_miss_rate = 0.0
    noise.swap_rate[:] = 0.0
    noise.sigma[:] = [0.02, 0.01]
    return noise


def test_noise_has_the_given_statistics():
    noise = _core_only_noise()
    rng = np.random.default_rng(1)
    px = np.zeros((200, 60, 27, 2))
    px[..., 1] = np.linspace(0, 500, 27)                     # a 500 px tall figure
    size = np.full((200, 2), 2000.0)
    kp = synth.detector_noise(rng, px + 700, size, noise, p_no_extras=0.0)
    err = (kp[..., :2] - (px + 700)) / 500.0
    np.testing.assert_allclose(err.reshape(-1, 2).std(axis=0), [0.02, 0.01], rtol=0.08)
    lag1 = np.mean(err[:, 1:, :, 0] * err[:, :-1, :, 0]) / np.mean(err[..., 0] ** 2)
    assert abs(lag1 - noise.rho) < 0.05
    # Swaps, drops and tails appear at the given rates.
    noise.swap_rate[:] = 0.05
    noise.frame_miss_rate = 0.1
    noise.tail_fraction[:] = 0.05
    kp = synth.detector_noise(rng, px + 700, size, noise, p_no_extras=0.0)
    missing = np.all(np.isnan(kp[..., 0]), axis=2)
    assert 0.06 < missing.mean() < 0.14
    swapped = np.abs(kp[..., J["LHip"], 1] - 700 - px[..., J["RHip"], 1]) < 0.3 * np.abs(
        px[..., J["LHip"], 1] - px[..., J["RHip"], 1])
    assert 0.02 < swapped[~missing].mean() < 0.09


def test_limb_correlation_ties_a_limbs_errors_and_keeps_their_size():
    noise = _core_only_noise()
    px = np.zeros((100, 60, 27, 2))
    px[..., 1] = np.linspace(0, 500, 27)
    size = np.full((100, 2), 2000.0)

    def errors(corr):
        noise.limb_corr = corr
        kp = synth.detector_noise(np.random.default_rng(2), px + 700, size, noise, p_no_extras=0.0)
        return (kp[..., :2] - (px + 700)) / 500.0

    def r(err, a, b):
        return np.corrcoef(err[..., J[a], 0].ravel(), err[..., J[b], 0].ravel())[0, 1]

    free, tied = errors({}), errors({"arm": 0.66, "leg": 0.77})
    assert abs(r(free, "LElbow", "LWrist")) < 0.05 and abs(r(free, "RKnee", "RFoot")) < 0.05
    assert abs(r(tied, "LElbow", "LWrist") - 0.66) < 0.05 and abs(r(tied, "RKnee", "RHeel") - 0.77) < 0.05
    assert abs(r(tied, "LWrist", "RWrist")) < 0.05 and abs(r(tied, "LWrist", "LFoot")) < 0.05   # limbs apart
    np.testing.assert_allclose(tied.reshape(-1, 2).std(axis=0), [0.02, 0.01], rtol=0.08)


def test_measured_noise_file_is_used_when_present(tmp_path):
    d = {"joints": {n: {"core_sigma_bbox": [0.03, 0.04], "offset_body_leglen": [0.1, 0.0, 0.0], "tail_fraction": 0.01}
                    for n in CANONICAL}, "frame_miss_rate": 0.02, "swap_rate": {"LKnee/RKnee": 0.01},
         "residual_autocorrelation": {"1": 0.8}}
    p = tmp_path / "noise.json"
    import json
    p.write_text(json.dumps(d))
    n = synth.load_noise(p)
    assert n.source == "noise.json" and n.rho == 0.8 and n.frame_miss_rate == 0.02
    np.testing.assert_allclose(n.sigma[J["LWrist"]], [0.03, 0.04])
    assert n.swap_rate[synth.SWAP_PAIRS.index(("LKnee", "RKnee"))] == 0.01
    assert synth.load_noise(tmp_path / "absent.json").source == "PROVISIONAL"


def test_body_offsets_move_hips_outward_in_the_body_frame(walk):
    noise = synth.NoiseModel.from_dict(synth.PROVISIONAL_NOISE)
    noise.offset_body[:] = 0.0
    noise.offset_body[J["LHip"]] = [0.1, 0.0, 0.0]
    noise.offset_body[J["RHip"]] = [-0.1, 0.0, 0.0]
    moved = synth.body_offsets(walk, noise)
    w0 = np.linalg.norm(walk[:, J["LHip"]] - walk[:, J["RHip"]], axis=1)
    w1 = np.linalg.norm(moved[:, J["LHip"]] - moved[:, J["RHip"]], axis=1)
    leg = np.linalg.norm(walk[:, J["LKnee"]] - walk[:, J["LHip"]], axis=1) + \
        np.linalg.norm(walk[:, J["LFoot"]] - walk[:, J["LKnee"]], axis=1)
    np.testing.assert_allclose(w1 - w0, 0.2 * leg, rtol=0.05)
    np.testing.assert_array_equal(moved[:, J["LKnee"]], walk[:, J["LKnee"]])


def test_scaled_rest_changes_proportions_not_names():
    rest = RestSkeleton.standard()
    rj = rest_joints(rest)
    rng = np.random.default_rng(3)
    ratios = []
    for _ in range(20):
        s = dataset.scaled_rest(rest, rng)
        assert s.names == rest.names
        sj = rest_joints(s)
        thigh = np.linalg.norm(sj[J["LKnee"]] - sj[J["LHip"]]) / np.linalg.norm(rj[J["LKnee"]] - rj[J["LHip"]])
        arm = np.linalg.norm(sj[J["LElbow"]] - sj[J["LShoulder"]]) / \
            np.linalg.norm(rj[J["LElbow"]] - rj[J["LShoulder"]])
        ratios.append((thigh, arm))
    r = np.array(ratios)
    assert np.all((r > 0.84) & (r < 1.16)) and r.std(axis=0).min() > 0.03
    assert np.corrcoef(r.T)[0, 1] < 0.8                                   # legs and arms vary independently


def test_contacts_follow_a_real_walk(walk):
    c = dataset.contact_labels(walk)
    assert c.shape == (len(walk), 4)
    # Walking: each heel and toe is down part of the time, never all four in the air for long.
    assert np.all((c.mean(axis=0) > 0.2) & (c.mean(axis=0) < 0.8))
    air = ~c.any(axis=1)
    assert air.mean() < 0.2


def test_tighter_framing_drops_the_legs_below_a_fixed_line(walk):
    """truncate_legs: on the picked sequences every joint below one image line is absent, the upper body is kept,
    and the dancer moving up and down crosses the line (some frames lose more joints than others); p = 0 keeps all."""
    rng = np.random.default_rng(5)
    world = synth.mmd_world(walk)[None].repeat(8, axis=0)
    R, C, focal, size, _ = synth.random_cameras(rng, world)
    _, px = synth.project(world, R, C, focal, size)
    kp = np.concatenate([px, np.ones(px.shape[:-1] + (1,))], axis=-1)
    out = synth.truncate_legs(rng, kp, px, 1.0)
    gone = np.isnan(out[..., 0])
    assert gone[..., [J["LFoot"], J["RFoot"]]].mean() > 0.5         # the feet go first
    assert gone[..., [J["Head"], J["Thorax"]]].mean() < 0.05          # the upper body stays (a walk towards the
    #                                                                  camera can grow into the line, rarely)
    for b in range(len(out)):                                         # one line: in every frame, everything that
        for t in range(out.shape[1]):                                 # went is lower in the image than what stayed
            if gone[b, t].any() and (~gone[b, t]).any():
                assert kp[b, t][gone[b, t], 1].min() > kp[b, t][~gone[b, t], 1].max()
    assert len({int(n) for n in gone.sum(axis=2).ravel()}) > 2         # the dancer crosses the line
    np.testing.assert_array_equal(synth.truncate_legs(rng, kp, px, 0.0), kp)


def test_frames_read_back_to_front_keep_the_image_and_mirror_the_body(walk):
    """mirror_detections: BlazePose's front/back mistake. The 2D points stay where they are with left and right
    exchanged, so they project the same image; the world landmarks become the body reflected in the image plane
    (depth about the root negated), a valid body -- its bones keep their lengths -- facing the other way."""
    from core.skeletons import CANONICAL_MIRROR

    rng = np.random.default_rng(7)
    world = synth.mmd_world(walk)[None].repeat(4, axis=0)
    R, C, focal, size, _ = synth.random_cameras(rng, world)
    cam, px = synth.project(world, R, C, focal, size)
    rel = cam - cam[:, :, [J["Hip"]]]
    kp = np.concatenate([px, np.ones(px.shape[:-1] + (1,))], axis=-1)
    frames = synth.mirror_runs(rng, kp.shape[:2], 1.0, 0.3)
    assert 0.1 < frames.mean() < 0.5
    k2, w2 = synth.mirror_detections(kp, rel, frames)
    np.testing.assert_array_equal(k2[~frames], kp[~frames])
    np.testing.assert_array_equal(k2[frames], kp[frames][:, CANONICAL_MIRROR])
    assert sorted(map(tuple, k2[frames][0, :, :2].round(6))) == sorted(map(tuple, kp[frames][0, :, :2].round(6)))
    m = CANONICAL_MIRROR
    for a, b in (("LKnee", "LFoot"), ("LShoulder", "RHip")):    # each bone keeps its length, on the other side
        np.testing.assert_allclose(np.linalg.norm(w2[frames][:, J[a]] - w2[frames][:, J[b]], axis=-1),
                                   np.linalg.norm(rel[frames][:, m[J[a]]] - rel[frames][:, m[J[b]]], axis=-1),
                                   atol=1e-12)
    # the left knee of the reading is the true right knee, seen at the same place but at the mirrored depth
    np.testing.assert_allclose(w2[frames][:, J["LKnee"], :2], rel[frames][:, J["RKnee"], :2])
    np.testing.assert_allclose(w2[frames][:, J["LKnee"], 2], -rel[frames][:, J["RKnee"], 2])
    assert not synth.mirror_runs(rng, kp.shape[:2], 0.0, 0.3).any()
