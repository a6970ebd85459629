"""MediaPipe's world landmarks as the lifter's second input: the measured error model (tools/lifter_training/
world3d.py) is in the committed noise file, the measurement recovers a known error model from simulated detections
of a real mocap clip, and the synthetic batches carry the input the way inference builds it."""
from __future__ import annotations

import json

import numpy as np
import pytest

from core.conventions import METRES_PER_UNIT
from core.formats import pmx
from core.lifting import trained
from core.rest_skeleton import RestSkeleton
from core.skeletons import CANONICAL

mocap = pytest.importorskip("tools.lifter_training.mocap")
synth = pytest.importorskip("tools.lifter_training.synth")
world3d = pytest.importorskip("tools.lifter_training.world3d")


@pytest.fixture(scope="module")
def committed():
    return json.loads(synth.NOISE_FILE.read_text())["world_3d"]


@pytest.fixture(scope="module")
def clip(shared_data):
    """A held-out CMU dance clip on a real MMD model: MMD-unit joints (T, 27, 3)."""
    rest = RestSkeleton.from_pmx(pmx.read(shared_data / "pmx" / "mat4_trace_model" / "mat4_v4_trace_model.pmx"))
    _, joints = mocap.to_mmd(mocap.load_clip(shared_data / "mocap" / "cmu_iclone" / "005_10.bvh"), rest)
    return joints[:400]


def _camera(yaw_deg: float, height_units: float, joints):
    """World (MMD units) -> camera: a camera ``40`` units from the dancer's mean hip, looking at it."""
    target = joints[:, 0].mean(axis=0)
    a = np.radians(yaw_deg)
    pos = target + np.array([40 * np.sin(a), 0.0, -40 * np.cos(a)])
    pos[1] = height_units
    z = (target - pos) / np.linalg.norm(target - pos)
    down = np.array([0.0, -1.0, 0.0])
    y = down - (down @ z) * z
    y /= np.linalg.norm(y)
    return np.stack([np.cross(y, z), y, z]), pos


def test_committed_noise_file_has_the_measured_world_statistics(committed):
    assert committed["frames"] >= 1000 and committed["cases"] >= 20
    assert list(committed["joints"]) == list(CANONICAL)
    # MediaPipe's 3D is a real but rough estimate: 10-30 cm mean joint error on the renders
    assert 100 < committed["mpjpe_mm_raw"] < 300
    sig = np.array([j["core_sigma_leglen"] for j in committed["joints"].values()])
    assert np.all(sig >= 0) and sig.max() < 0.5
    assert 0.0 < committed["residual_autocorrelation_lag1"] < 1.0


def test_measurement_recovers_a_known_error_model(clip, committed):
    """Simulate 'detections' of a real clip from several views with the committed model, measure them: the scale,
    the rotation's mean and the per-joint spreads come back."""
    noise = world3d.World3DNoise.from_dict(committed)
    rng = np.random.default_rng(0)
    cases = []
    for k, yaw in enumerate(range(0, 360, 30)):
        R, pos = _camera(yaw, 12.0 + k % 3 * 4, clip)
        g = (clip - pos) @ R.T * METRES_PER_UNIT
        g = g - g[:, :1]
        up = R @ np.array([0.0, 1.0, 0.0])
        sim = world3d.simulate(rng, g[None], up[None], noise)[0]
        cases.append({"gt": {"joints": clip, "R": R, "cam_position": pos}, "world": sim,
                      "detected": np.ones(len(clip), dtype=bool)})
    got = world3d.measure(cases)
    # the re-fitted similarity absorbs part of the per-joint offsets into its scale again (about +6 %)
    assert abs(got["log_scale"]["mean"] - committed["log_scale"]["mean"]) < 0.07
    np.testing.assert_allclose(got["rotvec"]["mean"], committed["rotvec"]["mean"], atol=0.08)
    ref = np.array([committed["joints"][n]["core_sigma_leglen"] for n in committed["joints"]])[1:]
    mea = np.array([got["joints"][n]["core_sigma_leglen"] for n in got["joints"]])[1:]
    ok = ref > 0.01
    ratio = mea[ok] / ref[ok]
    assert 0.6 < np.median(ratio) < 1.4, np.median(ratio)
    # and the simulated input is about as wrong as the real one was
    assert 0.6 * committed["mpjpe_mm_raw"] < got["mpjpe_mm_raw"] < 1.6 * committed["mpjpe_mm_raw"]


def test_synthetic_batches_carry_the_world_input_as_inference_builds_it(clip, committed):
    noise = synth.load_noise()
    wn = world3d.World3DNoise.from_dict(committed)
    rng = np.random.default_rng(3)
    batch = np.stack([clip[:120], clip[-120:]])
    r = synth.make_inputs(rng, batch, noise, world_noise=wn, p_world=1.0)
    f = r["features"]
    assert f.shape == (2, 120, trained.N_FEATURES_WORLD)
    flag = f[..., -1]
    missed = np.all(np.isnan(r["keypoints"][..., 0]), axis=-1)
    np.testing.assert_array_equal(flag == 1.0, ~missed)              # absent exactly where the detector missed
    w = f[..., trained.N_FEATURES:-1].reshape(2, 120, 27, 3)
    np.testing.assert_array_equal(w[..., 0, :], 0.0)                  # Hip-relative
    # it is a noisy copy of the target: tens of cm, not metres, off
    err = np.linalg.norm(w[~missed] - r["target"][~missed], axis=-1).mean()
    assert 0.03 < err < 0.4
    r0 = synth.make_inputs(rng, batch, noise, world_noise=wn, p_world=0.0)
    np.testing.assert_array_equal(r0["features"][..., trained.N_FEATURES:], 0.0)
    # without the world model the features are the 2D-only layout
    assert synth.make_inputs(rng, batch, noise)["features"].shape[-1] == trained.N_FEATURES
