"""The shipped lifter on a held-out mocap clip (CMU subject 5 dance, never trained on), retargeted onto a real MMD
model and seen by a camera it was not trained with: the 3D comes back close to the truth, better than a trivial
guess, and the root depth and contacts carry information."""
from __future__ import annotations

import math

import numpy as np
import pytest

from core.formats import pmx
from core.lifting import trained
from core.rest_skeleton import RestSkeleton
from core.skeletons import CANONICAL

mocap = pytest.importorskip("tools.lifter_training.mocap")
synth = pytest.importorskip("tools.lifter_training.synth")
dataset = pytest.importorskip("tools.lifter_training.dataset")
train = pytest.importorskip("tools.lifter_training.train", reason="torch is needed to import the training module")

J = {n: i for i, n in enumerate(CANONICAL)}


@pytest.fixture(scope="module")
def case(shared_data):
    path = shared_data / "mocap" / "cmu_iclone" / "005_10.bvh"
    assert path in mocap.split()["test"]
    rest = RestSkeleton.from_pmx(pmx.read(shared_data / "pmx" / "mat4_trace_model" / "mat4_v4_trace_model.pmx"))
    _, joints = mocap.to_mmd(mocap.load_clip(path), rest)
    world = synth.mmd_world(joints)[None]
    # A fixed camera: 1280x720, 50° field of view, 3.5 m in front-left of the dancer at 1.4 m, tilted down.
    size = np.array([[1280.0, 720.0]])
    focal = np.array([0.5 * 1280 / math.tan(math.radians(25))])
    target = world[0, :, J["Hip"]].mean(axis=0)
    c = target + np.array([2.0, 0.0, -2.9])
    c[1] = -1.4
    z = (target - c) / np.linalg.norm(target - c)
    y = np.array([0.0, 1.0, 0.0]) - z[1] * z
    y /= np.linalg.norm(y)
    R = np.stack([np.cross(y, z), y, z])[None]
    cam, px = synth.project(world, R, c[None], focal, size)
    return {"cam": cam[0], "px": px[0], "size": size[0], "hfov": 50.0, "joints": joints, "R": R[0]}


def _mpjpe(a, b):
    return 1000 * float(np.mean(np.linalg.norm(a - b, axis=-1)))


def test_heldout_dance_is_lifted_close_to_the_truth(case):
    lifter = trained.load_lifter(trained.WEIGHTS_2D)
    kp = np.concatenate([case["px"], np.full(case["px"].shape[:2] + (1,), 0.95)], axis=-1)
    out = lifter.lift(kp, case["size"], hfov_deg=case["hfov"])
    truth = case["cam"] - case["cam"][:, :1]
    err = _mpjpe(out.joints_3d, truth)
    pa = 1000 * float(train.pa_mpjpe(out.joints_3d, truth).mean())
    # A trivial guess: the clip's mean pose in the camera frame (it knows the true mean orientation).
    trivial = _mpjpe(np.broadcast_to(truth.mean(axis=0), truth.shape), truth)
    assert err < 0.65 * trivial, (err, trivial)          # first weights: 113 mm against 206 mm
    assert err < 150.0 and pa < 100.0, (err, pa)
    # Root depth within 15 % (median) with the true field of view.
    rel = np.abs(out.root_depth / case["cam"][:, J["Hip"], 2] - 1.0)
    assert np.median(rel) < 0.15
    # COCO-17-like input (no extras) still lifts: the model was trained with such sequences.
    kp17 = kp.copy()
    kp17[:, 17:] = np.nan
    out17 = lifter.lift(kp17, case["size"], hfov_deg=case["hfov"])
    assert _mpjpe(out17.joints_3d[:, :17], truth[:, :17]) < 1.3 * _mpjpe(out.joints_3d[:, :17], truth[:, :17]) + 20


@pytest.mark.parametrize("weights", ["WEIGHTS_2D", "WEIGHTS_WORLD"])
def test_contacts_agree_with_the_feet(case, weights):
    lifter = trained.load_lifter(getattr(trained, weights))
    kp = np.concatenate([case["px"], np.full(case["px"].shape[:2] + (1,), 0.95)], axis=-1)
    out = lifter.lift(kp, case["size"], hfov_deg=case["hfov"])
    truth = dataset.contact_labels(case["joints"]).astype(bool)
    pred = out.contacts > 0.5
    acc = (pred == truth).mean()
    base = max(truth.mean(), 1 - truth.mean())                 # always answering the majority class
    assert acc > base, (acc, base)


def test_world_landmarks_and_the_up_direction(case):
    """The shipped weights take MediaPipe's world landmarks too: given a simulated noisy copy of the truth (the
    measured error model, tools/lifter_training/world3d.py), the held-out dance comes out closer to the truth than
    from the 2D alone and than the world landmarks themselves; and the world's up is estimated within a few degrees
    (the camera of this case looks down on the dancer)."""
    import json

    world3d = pytest.importorskip("tools.lifter_training.world3d")
    lifter = trained.load_lifter(trained.WEIGHTS_WORLD)
    assert lifter.uses_world and lifter.has_up
    wn = world3d.World3DNoise.from_dict(json.loads(synth.NOISE_FILE.read_text())["world_3d"])
    kp = np.concatenate([case["px"], np.full(case["px"].shape[:2] + (1,), 0.95)], axis=-1)
    truth = case["cam"] - case["cam"][:, :1]
    R = case["R"]
    up_true = R @ np.array([0.0, -1.0, 0.0])
    sim = world3d.simulate(np.random.default_rng(7), truth[None], up_true[None], wn)[0]
    both = lifter.lift(kp, case["size"], hfov_deg=case["hfov"], world_3d=sim)
    only2d = lifter.lift(kp, case["size"], hfov_deg=case["hfov"])
    e_both, e_2d, e_world = _mpjpe(both.joints_3d, truth), _mpjpe(only2d.joints_3d, truth), _mpjpe(sim, truth)
    assert e_both < e_2d and e_both < e_world, (e_both, e_2d, e_world)
    ang = np.degrees(np.arccos(np.clip(np.median(both.up, axis=0) @ up_true / np.linalg.norm(np.median(both.up, axis=0)),
                                       -1, 1)))
    assert ang < 8.0, ang
