"""Rendered lifter training pairs (tools/lifter_training/rendered.py): a case folder as the renderer and the CLI write
it, built here without Blender from a real mocap clip on a real PMX model seen by a perfect detector, gives targets in
the frame the shipped lifter outputs (it lifts them to a small error), consistent mirror images and depth terms,
windows of the training layout, and cases drawn from TRAIN clips only."""
from __future__ import annotations

import numpy as np
import pytest

from core import pose_io
from core.lifting import trained
from core.skeletons import CANONICAL, CANONICAL_MIRROR

mocap = pytest.importorskip("tools.lifter_training.mocap")
rendered = pytest.importorskip("tools.lifter_training.rendered")

T = 120   # frames of the shared ``case_dir`` fixture (tests/tools/conftest.py)


def test_pairs_are_in_the_lifters_frame(case_dir):
    d, gt, world = case_dir
    c = rendered.load_case(d)
    rel = world - world[:, :1]
    assert np.allclose(c.target[False], rel, atol=1e-5)
    assert np.allclose(c.features[(False, False)][:, trained.N_FEATURES:-1].reshape(T, -1, 3), rel, atol=1e-5)
    # d = log(root depth x 2D scale): the root depth comes back through the true-focal normalisation
    _, _, scale, _ = trained.normalise_keypoints(np.concatenate([gt["joints_px"], np.full((T, 27, 1), 0.9)], -1),
                                                 (640, 480), focal=gt["K"][0, 0])
    assert np.allclose(np.exp(c.d) / scale, world[:, 0, 2], rtol=1e-5)
    assert np.allclose(c.up[False], gt["R"] @ [0.0, 1.0, 0.0])
    # the mirror image: camera x negated, left and right exchanged (targets, up, contacts)
    assert np.allclose(c.target[True], (rel * [-1.0, 1.0, 1.0])[:, CANONICAL_MIRROR], atol=1e-5)
    assert np.allclose(c.up[True], c.up[False] * [-1.0, 1.0, 1.0])
    assert np.array_equal(c.contacts[True], c.contacts[False][:, [2, 3, 0, 1]])
    assert c.contacts[False].any()
    # the assumed field of view changes the 2D features, not the world part
    a, b = c.features[(True, False)], c.features[(False, False)]
    assert not np.allclose(a[:, :trained.N_FEATURES], b[:, :trained.N_FEATURES])
    assert np.array_equal(a[:, trained.N_FEATURES:], b[:, trained.N_FEATURES:])
    # the shipped lifter, given perfect input in this frame, lifts it about as well as it lifts this held-out dance
    # from true 2D (docs/benchmark.md: 86-110 mm on CMU subject 5) and finds the up direction; a frame convention
    # wrong anywhere (axes, mirror, up) would cost hundreds of millimetres and tens of degrees
    lifter = trained.load_lifter(trained.WEIGHTS_WORLD)
    fig = rendered.evaluate_rendered(lifter, [c])["all"]
    assert fig["mpjpe_mm"] < 110.0 and fig["pa_mpjpe_mm"] < 75.0 and fig["up_err_deg"] < 6.0, fig
    wrong = rendered.RenderedCase(**{**c.__dict__, "target": {False: c.target[False] * [1.0, -1.0, 1.0]}})
    assert rendered.evaluate_rendered(lifter, [wrong])["all"]["mpjpe_mm"] > 3 * fig["mpjpe_mm"]


def test_windows_have_the_training_layout(case_dir):
    c = rendered.load_case(case_dir[0])
    rng = np.random.default_rng(0)
    w = rendered.sample_windows(rng, [c], 6, 64, 81)
    assert w["features"].shape == (6, 144, trained.N_FEATURES_WORLD) and w["target"].shape == (6, 144, 27, 3)
    assert w["d"].shape == (6, 144) and w["up"].shape == (6, 3) and w["contacts"].shape == (6, 64, 4)
    assert w["mask"].shape == (6, 64) and w["mask"].all()           # a 120-frame case holds 64 output frames
    ups = {tuple(np.round(u, 6)) for u in w["up"]}
    assert ups <= {tuple(np.round(c.up[False], 6)), tuple(np.round(c.up[True], 6))}


def test_cases_come_from_train_clips_only(shared_data):
    split = mocap.split()
    held = {p.stem for p in split["test"]}
    cases = rendered.make_cases(4, 30, seed=3)
    assert len(cases) == 4 and {c["model"] for c in cases} == {"mat4", "yw"}
    for c in cases:
        assert c["clip"].split("/")[-1] not in held
        assert c["motion"].n_frames == 30 and c["shading"] in ("studio", "flat")
    assert [c["source"] for c in cases] == [c["source"] for c in rendered.make_cases(4, 30, seed=3)]


def test_validation_split_is_by_whole_clip():
    names = [f"bandai_namco_1/dataset-1_clip_{i:03d}" for i in range(700)]
    val = [n for n in names if rendered.is_validation(n)]
    assert 60 < len(val) < 140
    assert val == [n for n in names if rendered.is_validation(n)]


def test_limb_correlation_reads_the_detections_errors(case_dir, tmp_path):
    """A detector whose forearm points share one error and whose legs' errors are independent."""
    d, gt, world = case_dir
    case = tmp_path / "noisy"
    case.mkdir()
    for name in ("gt.npz", "rendered.json"):
        (case / name).write_bytes((d / name).read_bytes())
    rng = np.random.default_rng(4)
    err = rng.normal(0.0, 4.0, (T, len(CANONICAL), 2))
    j = {n: i for i, n in enumerate(CANONICAL)}
    for side in "LR":
        err[:, j[side + "Wrist"]] = err[:, j[side + "Elbow"]]
    poses = pose_io.load(d / "est.npz")
    kp = poses.keypoints_2d.copy()
    kp[..., :2] += err
    pose_io.save(case / "est.npz", pose_io.PoseSequence(**{**poses.__dict__, "keypoints_2d": kp}))
    got = rendered.limb_correlation(tmp_path)
    assert got["arm"] > 0.95 and abs(got["leg"]) < 0.15, got
    with pytest.raises(ValueError, match="no finished rendered case"):
        rendered.limb_correlation(tmp_path / "empty")
