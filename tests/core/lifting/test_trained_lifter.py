"""core.lifting.trained: the shipped lifter runs with numpy alone, normalises camera-independently, checks its
inputs, and gives a plausible human on real detector output (a real dance clip's detectron2 keypoints)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from core import skeletons
from core.keypoints_io import load_detectron2_raw
from core.lifting import trained
from core.skeletons import CANONICAL

J = {n: i for i, n in enumerate(CANONICAL)}


@pytest.fixture(scope="module")
def lifter():
    """The 2D-only weights: what the job lifts other detectors' keypoints (here detectron2's) with."""
    return trained.load_lifter(trained.WEIGHTS_2D)


@pytest.fixture(scope="module")
def dance(shared_data):
    poses = load_detectron2_raw(shared_data / "keypoints" / "lia_kim_dance" / "detectron2_raw.npz")
    kp = skeletons.to_canonical(poses.keypoints_2d, skeletons.COCO17, has_confidence=True)
    # Keypoint R-CNN's scores here are ~0.1 for good points; the lifter's confidences are on BlazePose's
    # visibility scale (Lifter.lift), so a kept detectron2 point gets 0.9.
    kp[..., 2] = np.where(np.isfinite(kp[..., 0]), 0.9, 0.0)
    return kp, poses.image_size


def test_imports_and_runs_without_torch(repo_root):
    code = ("import sys; sys.modules['torch'] = None\n"
            "import numpy as np\n"
            "from core.lifting.trained import load_lifter\n"
            "kp = np.zeros((5, 27, 3)); kp[..., 2] = 1\n"
            "kp[..., 0] = np.arange(27) * 3 + 100; kp[..., 1] = np.arange(27) * 7\n"
            "o = load_lifter().lift(kp, (640, 480))\n"
            "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
            "print(o.joints_3d.shape)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "(5, 27, 3)" in r.stdout


@pytest.mark.parametrize("w", [trained.WEIGHTS_WORLD, trained.WEIGHTS_2D], ids=["world", "2d"])
def test_weights_are_small_and_have_a_licence(repo_root, w):
    assert w.stat().st_size < 20 * 2 ** 20
    with np.load(w, allow_pickle=False) as z:           # no pickles
        assert "meta_license" in z.files
        assert "CC BY-NC 4.0" in str(z["meta_license"])
    assert (w.parent / "LICENSE.md").is_file()
    assert "CC BY-NC 4.0" in (w.parent / "LICENSE.md").read_text()
    assert w.name in (w.parent / "README.md").read_text()
    lifter = trained.load_lifter(w)
    assert lifter.uses_world == lifter.has_up == (w == trained.WEIGHTS_WORLD)


def test_real_dance_gives_a_plausible_body(lifter, dance):
    kp, size = dance
    out = lifter.lift(kp, size, hfov_deg=None)
    t = len(kp)
    assert out.joints_3d.shape == (t, 27, 3) and out.root.shape == (t, 3) and out.contacts.shape == (t, 4)
    assert np.all(np.isfinite(out.joints_3d)) and np.all(np.isfinite(out.root))
    np.testing.assert_array_equal(out.joints_3d[:, 0], 0.0)
    assert np.all((out.contacts >= 0) & (out.contacts <= 1))
    ok = out.valid                 # the clip's first ~80 frames have no detection: those are filled, not valid
    np.testing.assert_array_equal(ok, (np.isfinite(kp[..., 0]) & (kp[..., 2] > 0)).sum(axis=1) >= 4)
    assert ok.sum() > 150
    j = out.joints_3d[ok]
    # Human-sized limbs in metres. Not checked here: left = right. With COCO-17 input (this clip) the model's limb
    # lengths are uneven (thighs 0.17 / 0.22 m against 0.42 m shins, forearms 0.22 / 0.14 m): Keypoint R-CNN's
    # points differ from the BlazePose points the model was trained on (docs/lifter.md §5); a known limit.
    for a, b in (("Hip", "Knee"), ("Knee", "Foot"), ("Shoulder", "Elbow"), ("Elbow", "Wrist")):
        for s in "LR":
            n = np.median(np.linalg.norm(j[:, J[s + a]] - j[:, J[s + b]], axis=1))
            assert 0.1 < n < 0.7, (s + a, s + b, n)
    torso = np.median(np.linalg.norm(j[:, J["Thorax"]] - j[:, J["Hip"]], axis=1))
    assert 0.35 < torso < 0.7
    # Camera frame: y down, so the head is above (smaller y than) the hip and the ankles below, on most frames.
    assert np.mean(j[:, J["Head"], 1] < -0.3) > 0.9 and np.mean(j[:, J["LFoot"], 1] > 0.0) > 0.9
    assert np.all(out.root_depth[ok] > 0.5)
    # The 3D projects back near the 2D: x/z of hip-relative joints follows the image (same side as detected).
    d2 = kp[ok][:, J["LWrist"], 0] - kp[ok][:, J["RWrist"], 0]
    d3 = j[:, J["LWrist"], 0] - j[:, J["RWrist"], 0]
    sure = np.abs(d2) > 0.1 * (np.nanmax(kp[ok][..., 1], axis=1) - np.nanmin(kp[ok][..., 1], axis=1))
    assert np.mean(np.sign(d2[sure]) == np.sign(d3[sure])) > 0.9


def test_normalisation_is_camera_independent():
    rng = np.random.default_rng(0)
    kp = np.concatenate([rng.uniform(200, 400, (30, 27, 2)), rng.uniform(0.5, 1, (30, 27, 1))], axis=-1)
    f1, *_ = trained.normalise_keypoints(kp, (640, 480), 60.0)
    big = kp.copy()
    big[..., :2] *= 3.0
    f3, *_ = trained.normalise_keypoints(big, (1920, 1440), 60.0)       # the same view at 3x the resolution
    np.testing.assert_allclose(f1, f3, atol=1e-5)
    # Missing joints: NaN or confidence 0 give zero features, and a frame without joints borrows its neighbour's
    # centre and scale.
    kp2 = kp.copy()
    kp2[3, 5, :2] = np.nan
    kp2[4, 6, 2] = 0.0
    kp2[10] = np.nan
    f, c, s, valid = trained.normalise_keypoints(kp2, (640, 480), 60.0)
    np.testing.assert_array_equal(f[3, 15:18], 0.0)
    np.testing.assert_array_equal(f[4, 18:21], 0.0)
    assert not valid[10] and valid.sum() == 29
    assert s[10] in (s[9], s[11]) and np.all(f[10, :81] == 0)


@pytest.mark.parametrize("bad, size, match", [(np.zeros((10, 17, 3)), (640, 480), "27"),
                                              (np.zeros((10, 27, 2)), (640, 480), "27, 3"),
                                              (np.zeros((0, 27, 3)), (640, 480), "shape"),
                                              (np.ones((10, 27, 3)), (640, -1), "image_size"),
                                              (np.full((10, 27, 3), np.nan), (640, 480), "no frame")])
def test_bad_input_is_a_clear_value_error(lifter, bad, size, match):
    with pytest.raises(ValueError, match=match):
        lifter.lift(bad, size)


def test_bad_weights_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_lifter"):
        trained.load_lifter(tmp_path / "none.npz")
    np.savez(tmp_path / "x.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="not a lifter"):
        trained.load_lifter(tmp_path / "x.npz")


def test_a_60_fps_clip_is_lifted_at_the_rate_the_network_learnt(lifter, dance):
    """lift_timed: the real dance (30 fps) with a frame inserted between every two (its 60 fps version, each new
    frame halfway) is lifted at 30 fps: on the original frames the result is the 30 fps lifting's, and in between
    it is interpolated; lifted directly at 60 fps the network gives something else. Within 24-37.5 fps the frames are
    lifted as they are."""
    kp, size = dance
    kp = kp[:240]
    t30 = np.arange(len(kp)) / 30.0
    ref = lifter.lift(kp, size)
    same = trained.lift_timed(lifter, kp, size, t30)
    assert np.array_equal(same.joints_3d, ref.joints_3d)
    t60 = np.arange(2 * len(kp) - 1) / 60.0
    kp60 = np.empty((len(t60),) + kp.shape[1:])
    kp60[0::2] = kp
    mid = 0.5 * (kp[:-1] + kp[1:])
    mid[..., 2] = np.minimum(kp[:-1, :, 2], kp[1:, :, 2])
    kp60[1::2] = mid
    out = trained.lift_timed(lifter, kp60, size, t60)
    assert out.joints_3d.shape == (len(t60), 27, 3) and out.contacts.shape == (len(t60), 4)
    assert np.allclose(out.joints_3d[0::2], ref.joints_3d, atol=1e-6)
    assert np.allclose(out.joints_3d[1::2], 0.5 * (ref.joints_3d[:-1] + ref.joints_3d[1:]), atol=1e-6)
    assert np.allclose(out.root[0::2], ref.root, atol=1e-6) and np.array_equal(out.valid[0::2], ref.valid)
    direct = lifter.lift(kp60, size)
    assert np.abs(direct.joints_3d[0::2] - ref.joints_3d).max() > 0.01      # the network is not rate-blind
    with pytest.raises(ValueError, match="strictly increasing"):
        trained.lift_timed(lifter, kp, size, t30[::-1])
