"""VideoPose3D temporal lifter: official checkpoint layout, receptive field, padding, flip augmentation, refusals.

No official weights are reachable offline: checkpoints are written here with random weights in the official layout
(``torch.save({'epoch', 'lr', 'random_state', 'optimizer', 'model_pos', 'model_traj', ...})`` as the reference's
``run.py`` does, legacy serialisation as in 2019). The state_dict layout is spelled out below from the reference's
documented module structure, independently of core.lifting.
"""
from __future__ import annotations

import os
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the VideoPose3D lifter needs torch (worker environment)")

from core import keypoints_io, pose_io, skeletons  # noqa: E402
from core.worker.lifting import videopose3d as vp  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
W, H = 1920, 1080


def official_state_dict(widths=(3, 3, 3, 3, 3), channels=1024, joints_in=17, features=2, joints_out=17, seed=0,
                        num_batches_tracked=True) -> "OrderedDict[str, torch.Tensor]":
    """Random weights under the reference's keys: expand_conv, expand_bn, layers_conv.{k}, layers_bn.{k}, shrink."""
    g = torch.Generator().manual_seed(seed)
    sd: OrderedDict = OrderedDict()
    sd["expand_conv.weight"] = torch.randn(channels, joints_in * features, widths[0], generator=g) / np.sqrt(
        joints_in * features * widths[0])

    def bn(prefix):
        sd[f"{prefix}.weight"] = 1 + 0.1 * torch.randn(channels, generator=g)
        sd[f"{prefix}.bias"] = 0.1 * torch.randn(channels, generator=g)
        sd[f"{prefix}.running_mean"] = 0.1 * torch.randn(channels, generator=g)
        sd[f"{prefix}.running_var"] = 0.5 + torch.rand(channels, generator=g)
        if num_batches_tracked:
            sd[f"{prefix}.num_batches_tracked"] = torch.tensor(12345)

    bn("expand_bn")
    for i, w in enumerate(widths[1:]):
        sd[f"layers_conv.{2 * i}.weight"] = torch.randn(channels, channels, w, generator=g) / np.sqrt(channels * w)
        sd[f"layers_conv.{2 * i + 1}.weight"] = torch.randn(channels, channels, 1, generator=g) / np.sqrt(channels)
        bn(f"layers_bn.{2 * i}")
        bn(f"layers_bn.{2 * i + 1}")
    sd["shrink.weight"] = torch.randn(joints_out * 3, channels, 1, generator=g) / np.sqrt(channels)
    sd["shrink.bias"] = 0.1 * torch.randn(joints_out * 3, generator=g)
    return sd


def save_official(path, model_pos, model_traj=None, legacy=True, **extra):
    """A checkpoint as run.py writes it (optimizer state and the generator's numpy RandomState included)."""
    p = torch.nn.Parameter(torch.zeros(4))
    opt = torch.optim.Adam([p], lr=1e-3)
    p.grad = torch.ones(4)
    opt.step()
    ckpt = {"epoch": 80, "lr": 0.00035, "random_state": np.random.RandomState(1234), "optimizer": opt.state_dict(),
            "model_pos": model_pos, "model_traj": model_traj, "random_state_semi": None, **extra}
    torch.save(ckpt, path, _use_new_zipfile_serialization=not legacy)
    return path


@pytest.fixture(scope="module")
def small_ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("vp3d")
    return save_official(d / "small_243.bin", official_state_dict(channels=32, seed=1),
                         official_state_dict(channels=32, joints_out=1, seed=2))


@pytest.fixture(scope="module")
def lifter27(tmp_path_factory):
    d = tmp_path_factory.mktemp("vp3d27")
    path = save_official(d / "c27.bin", official_state_dict((3, 3, 3), channels=48, seed=3), legacy=False)
    return vp.VideoPose3DLifter.from_checkpoint(path)


def random_keypoints(n, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.uniform([700, 200], [1200, 900], (17, 2))
    walk = np.cumsum(rng.normal(0, 4, (n, 17, 2)), axis=0)
    conf = rng.uniform(0.3, 1, (n, 17, 1))
    return np.concatenate([base + walk, conf], axis=-1)


# ------------------------------------------------------------------------------------------------ layout / loading
def test_importing_the_lifter_module_does_not_import_torch():
    code = "import sys, core.worker.lifting.videopose3d, core.lifting; print('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr


@pytest.mark.parametrize("widths,rf", [((3, 3, 3, 3, 3), 243), ((3, 3, 3), 27), ((3, 3, 3, 3), 81), ((1,), 1),
                                       ((3, 5, 3), 45)])
def test_state_dict_keys_and_shapes_match_the_official_layout(widths, rf):
    arch = vp.Architecture(widths, 16)
    assert arch.receptive_field == rf and 1 + 2 * sum(arch.pads) == rf
    model = vp.TemporalModel(arch)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    ref = {k: tuple(v.shape) for k, v in official_state_dict(widths, 16).items()}
    assert ours == ref
    model.load_state_dict(official_state_dict(widths, 16), strict=True)


def test_official_checkpoint_loads_with_random_state_and_optimizer(small_ckpt):
    lifter = vp.VideoPose3DLifter.from_checkpoint(small_ckpt)
    assert lifter.receptive_field == 243 and lifter.has_trajectory
    assert lifter.architecture == vp.Architecture((3, 3, 3, 3, 3), 32, 17, 2, 17, False)
    ck = vp.load_checkpoint(small_ckpt)
    assert ck["epoch"] == 80 and ck["causal"] is None
    sd = official_state_dict(channels=32, seed=1)
    assert all(torch.equal(lifter.model_pos.state_dict()[k], sd[k]) for k in sd)


def test_full_size_1024_channel_checkpoint(tmp_path):
    path = save_official(tmp_path / "pretrained_like.bin", official_state_dict(channels=1024, seed=5))
    assert path.stat().st_size > 60e6  # ~68 MB like pretrained_h36m_*.bin (67,889,963 bytes for the CPN one)
    lifter = vp.VideoPose3DLifter.from_checkpoint(path)
    assert lifter.architecture.channels == 1024 and lifter.receptive_field == 243 and not lifter.has_trajectory
    n_params = sum(p.numel() for p in lifter.model_pos.parameters())
    assert n_params == 16_952_371  # run.py prints "Trainable parameter count" for 3,3,3,3,3 / 1024 / COCO->H36M
    out = lifter(random_keypoints(40), (W, H))
    assert out.shape == (40, 17, 3) and out.dtype == np.float32 and np.isfinite(out).all()


def test_old_checkpoint_without_num_batches_tracked(tmp_path):
    path = save_official(tmp_path / "old.bin", official_state_dict((3, 3, 3), 16, num_batches_tracked=False))
    assert vp.VideoPose3DLifter.from_checkpoint(path).receptive_field == 27


def test_bare_state_dict_is_accepted(tmp_path):
    path = tmp_path / "bare.pt"
    torch.save(official_state_dict((3, 3), 8), path)
    assert vp.VideoPose3DLifter.from_checkpoint(path).receptive_field == 9


# ------------------------------------------------------------------------------------------------ refusals
def test_checkpoint_of_another_architecture_is_refused_listing_keys(tmp_path):
    path = save_official(tmp_path / "c27.bin", official_state_dict((3, 3, 3), 16))
    with pytest.raises(vp.CheckpointError) as e:
        vp.VideoPose3DLifter.from_checkpoint(path, filter_widths=(3, 3, 3, 3, 3))
    msg = str(e.value)
    assert "missing keys" in msg and "layers_conv.4.weight" in msg and "layers_bn.7.running_var" in msg
    assert "own filter widths are (3, 3, 3)" in msg and e.value.code == "bad_input"


def test_inconsistent_state_dict_lists_every_mismatch(tmp_path):
    sd = official_state_dict((3, 3, 3), 16)
    sd["layers_conv.1.weight"] = torch.zeros(16, 8, 1)        # wrong shape
    del sd["layers_bn.2.running_mean"]                        # missing
    sd["extra_head.weight"] = torch.zeros(3)                  # unexpected
    path = save_official(tmp_path / "broken.bin", sd)
    with pytest.raises(vp.CheckpointError) as e:
        vp.VideoPose3DLifter.from_checkpoint(path)
    msg = str(e.value)
    assert "layers_conv.1.weight: (16, 8, 1) (expected (16, 16, 1))" in msg
    assert "missing keys ['layers_bn.2.running_mean']" in msg and "unexpected keys ['extra_head.weight']" in msg


@pytest.mark.parametrize("kwargs,match", [
    ({"joints_in": 15, "joints_out": 15}, "input channels"),   # HumanEva-15 checkpoint
    ({"joints_out": 15}, "outputs 15 joints"),
    ({"widths": (3, 4)}, "even widths"),
])
def test_wrong_joint_sets_and_widths_are_refused(tmp_path, kwargs, match):
    widths = kwargs.pop("widths", (3, 3))
    path = save_official(tmp_path / "x.bin", official_state_dict(widths, 8, **kwargs))
    with pytest.raises(vp.CheckpointError, match=match):
        vp.VideoPose3DLifter.from_checkpoint(path)


def test_not_a_checkpoint_and_trajectory_mismatch(tmp_path):
    other = tmp_path / "other.bin"
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, other)
    with pytest.raises(vp.CheckpointError, match="no 'model_pos'"):
        vp.VideoPose3DLifter.from_checkpoint(other)
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\x00" * 100)
    with pytest.raises(vp.CheckpointError, match="not a loadable"):
        vp.VideoPose3DLifter.from_checkpoint(garbage)
    pair = save_official(tmp_path / "pair.bin", official_state_dict((3, 3, 3), 8),
                         official_state_dict((3, 3), 8, joints_out=1))
    with pytest.raises(vp.CheckpointError, match="does not pair"):
        vp.VideoPose3DLifter.from_checkpoint(pair)
    with pytest.raises(FileNotFoundError):
        vp.VideoPose3DLifter.from_checkpoint(tmp_path / "missing.bin")


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_with_arbitrary_pickle_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.bin"
    torch.save({"model_pos": official_state_dict((3,), 4), "payload": _Evil(marker)}, path)
    with pytest.raises(vp.CheckpointError, match="weights-only"):
        vp.VideoPose3DLifter.from_checkpoint(path)
    assert not marker.exists()


# ------------------------------------------------------------------------------------------------ inference
def test_shapes_padding_and_short_sequences(lifter27):
    for n in (1, 5, 27, 100):
        out = lifter27(random_keypoints(n), (W, H))
        assert out.shape == (n, 17, 3) and np.isfinite(out).all()
        assert np.all(out[:, 0] == 0)  # root-relative
    # Edge replication: prepending copies of the first frame leaves the original frames' output unchanged.
    kp = random_keypoints(60, seed=4)
    pre = np.concatenate([np.repeat(kp[:1], 20, axis=0), kp])
    assert np.allclose(lifter27(pre, (W, H))[20:], lifter27(kp, (W, H)), atol=1e-5)
    # ... and equals running the bare model on the explicitly edge-padded normalised input.
    lifter27.flip_augment = False
    try:
        raw = lifter27.lift(kp, (W, H), root_relative=False).joints
    finally:
        lifter27.flip_augment = True
    x = vp.normalize_screen_coordinates(kp[..., :2], W, H)
    padded = np.pad(x, ((13, 13), (0, 0), (0, 0)), mode="edge")
    with torch.no_grad():
        direct = lifter27.model_pos(torch.from_numpy(padded[None].astype(np.float32)))[0].numpy()
    assert np.allclose(raw, direct, atol=1e-5)


def test_chunking_gives_the_same_result(small_ckpt):
    kp = random_keypoints(300, seed=2)
    whole = vp.VideoPose3DLifter.from_checkpoint(small_ckpt).lift(kp, (W, H))
    chunked = vp.VideoPose3DLifter.from_checkpoint(small_ckpt, chunk_frames=37).lift(kp, (W, H))
    assert np.allclose(whole.joints, chunked.joints, atol=1e-5)
    assert np.allclose(whole.trajectory, chunked.trajectory, atol=1e-5) and whole.trajectory.shape == (300, 3)


def test_flip_augmentation_is_mirror_equivariant(small_ckpt):
    lifter = vp.VideoPose3DLifter.from_checkpoint(small_ckpt)
    kp = random_keypoints(120, seed=3)
    mirrored = kp[:, skeletons.COCO17_MIRROR].copy()
    mirrored[..., 0] = W - mirrored[..., 0]
    a, b = lifter.lift(kp, (W, H)), lifter.lift(mirrored, (W, H))
    expect = a.joints[:, skeletons.H36M17_MIRROR].copy()
    expect[..., 0] *= -1
    assert np.allclose(b.joints, expect, atol=1e-5)
    assert np.allclose(b.trajectory, a.trajectory * [-1, 1, 1], atol=1e-5)
    # Without the augmentation a random model is not equivariant: the test above checks the averaging.
    lifter.flip_augment = False
    c, d = lifter(kp, (W, H)), lifter(mirrored, (W, H))
    mirrored_c = c[:, skeletons.H36M17_MIRROR] * [-1, 1, 1]
    assert not np.allclose(d, mirrored_c, atol=1e-3)


def test_mirror_permutations_match_the_reference_symmetry():
    # data/data_utils.py coco_metadata and h36m skeleton joints_left/right of the reference.
    kps_left, kps_right = [1, 3, 5, 7, 9, 11, 13, 15], [2, 4, 6, 8, 10, 12, 14, 16]
    joints_left, joints_right = [4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]
    ref_c = np.arange(17)
    ref_c[kps_left + kps_right] = ref_c[kps_right + kps_left]
    ref_h = np.arange(17)
    ref_h[joints_left + joints_right] = ref_h[joints_right + joints_left]
    assert np.array_equal(skeletons.COCO17_MIRROR, ref_c) and np.array_equal(skeletons.H36M17_MIRROR, ref_h)


def test_normalisation_matches_the_reference_formula():
    xy = np.array([[0.0, 0.0], [1920, 1080], [960, 540]])
    assert np.allclose(vp.normalize_screen_coordinates(xy, 1920, 1080), [[-1, -0.5625], [1, 0.5625], [0, 0]])


def test_causal_model_pads_only_the_past(tmp_path):
    path = save_official(tmp_path / "causal.bin", official_state_dict((3, 3, 3), 16), causal=True)
    lifter = vp.VideoPose3DLifter.from_checkpoint(path)
    assert lifter.architecture.causal and lifter.architecture.causal_shifts == (1, 3, 9)
    kp = random_keypoints(50, seed=5)
    changed = kp.copy()
    changed[30:, :, :2] += 50.0  # the future from frame 30 on
    a, b = lifter(kp, (W, H)), lifter(changed, (W, H))
    assert np.allclose(a[:30], b[:30], atol=1e-6) and not np.allclose(a[30:], b[30:], atol=1e-3)
    assert not vp.VideoPose3DLifter.from_checkpoint(path, causal=False).architecture.causal


def test_nan_gaps_are_interpolated_and_unseen_joints_refused(lifter27):
    kp = random_keypoints(40, seed=6)
    holey = kp.copy()
    holey[10:15] = np.nan
    res = lifter27.lift(holey, (W, H))
    assert np.isfinite(res.joints).all() and res.filled[10:15].all() and not res.filled[:10].any()
    filled, _ = vp.fill_gaps(holey[..., :2])
    assert np.allclose(filled[12], kp[9, :, :2] + (kp[15, :, :2] - kp[9, :, :2]) * 3 / 6)
    holey[:, 3] = np.nan
    with pytest.raises(ValueError, match="left_ear"):
        lifter27(holey, (W, H))
    with pytest.raises(ValueError, match=r"\(T, 17, 2 or 3\)"):
        lifter27(np.zeros((5, 16, 2)), (W, H))
    with pytest.raises(ValueError, match="image_size"):
        lifter27(kp, (0, 100))


def test_cuda_request_without_cuda_falls_back_with_a_note(small_ckpt):
    lifter = vp.VideoPose3DLifter.from_checkpoint(small_ckpt, device="cuda")
    if torch.cuda.is_available():
        assert lifter.device.type == "cuda" and not lifter.notes
    else:
        assert lifter.device.type == "cpu" and "CUDA is not available" in lifter.notes[0]
    assert lifter(random_keypoints(10), (W, H)).shape == (10, 17, 3)


# ------------------------------------------------------------------------------------------------ whole path
def test_detectron2_file_to_3d_pose_sequence(shared_data, small_ckpt, tmp_path):
    poses = keypoints_io.load_keypoints(shared_data / "keypoints" / "lia_kim_dance" / "detectron2_raw.npz")
    lifter = vp.VideoPose3DLifter.from_checkpoint(small_ckpt)
    calls = []
    lifted = vp.lift_pose_sequence(poses, lifter, progress=lambda *a: calls.append(a))
    assert lifted.joints_3d.shape == (303, 27, 3) and lifted.lifter == "videopose3d"
    assert np.isfinite(lifted.joints_3d[:, :17]).all() and np.isnan(lifted.joints_3d[:, 17:]).all()
    assert lifted.trajectory.shape == (303, 3)
    assert calls == [("lift", 0, 303), ("lift", 303, 303)]
    back = pose_io.load(pose_io.save(tmp_path / "lifted.npz", lifted))
    assert np.allclose(back.joints_3d, lifted.joints_3d, equal_nan=True)
    with pytest.raises(ValueError, match="no 2D keypoints"):
        vp.lift_pose_sequence(keypoints_io.load_keypoints(
            shared_data / "keypoints" / "lia_kim_dance" / "videopose3d_export.npy"), lifter)


def test_undetected_lead_in_is_held_at_the_first_detection(shared_data, lifter27):
    """Frames 0-83 have no detection: filled with frame 84's keypoints (as prepare_data_2d_custom's np.interp
    does), so with a 27-frame receptive field frames 0..84-13 see a constant window and give one pose."""
    poses = keypoints_io.load_keypoints(shared_data / "keypoints" / "lia_kim_dance" / "detectron2_raw.npz")
    assert not poses.detected[:84].any() and poses.detected[84]
    j = lifter27(poses.keypoints_coco17(), poses.image_size)
    assert np.allclose(j[:72], j[0], atol=1e-5) and not np.allclose(j[72], j[0], atol=1e-4)


def _real_checkpoint() -> Path | None:
    env = os.environ.get("ANIME_MMD_VP3D_CHECKPOINT")
    if env and Path(env).is_file():
        return Path(env)
    from core.worker import weights

    return weights.find_weights("pretrained_h36m_detectron_coco.bin")


def test_real_checkpoint_reproduces_the_reference_export(shared_data):
    """With the official weights, lifting the shared detectron2 file reproduces the shared VideoPose3D export."""
    ckpt = _real_checkpoint()
    if ckpt is None:
        pytest.skip("official pretrained_h36m_detectron_coco.bin not found (set ANIME_MMD_VP3D_CHECKPOINT or run "
                    "tools/install_deps.py --weights); random-weight checkpoints cover the rest")
    poses = keypoints_io.load_keypoints(shared_data / "keypoints" / "lia_kim_dance" / "detectron2_raw.npz")
    ref = np.load(shared_data / "keypoints" / "lia_kim_dance" / "videopose3d_export.npy")
    out = vp.VideoPose3DLifter.from_checkpoint(ckpt).lift(poses.keypoints_coco17(), poses.image_size,
                                                          root_relative=False).joints
    assert np.abs(out - ref).max() < 1e-3


def test_cpn_checkpoint_takes_h36m_ordered_input(tmp_path):
    sd = official_state_dict((3, 3, 3), 16, seed=9)
    cpn = save_official(tmp_path / "pretrained_h36m_cpn.bin", sd)
    coco = save_official(tmp_path / "pretrained_h36m_detectron_coco.bin", sd)
    a = vp.VideoPose3DLifter.from_checkpoint(cpn)
    b = vp.VideoPose3DLifter.from_checkpoint(coco)
    assert a.input_joints == "h36m17" and "CPN" in a.notes[0] and b.input_joints == "coco17" and not b.notes
    assert vp.VideoPose3DLifter.from_checkpoint(cpn, input_joints="coco17").input_joints == "coco17"
    kp = random_keypoints(30, seed=8)
    a.flip_augment = b.flip_augment = False
    converted = skeletons.coco17_to_h36m17(kp)  # what the CPN model sees, fed raw to the same weights
    assert np.allclose(a(kp, (W, H)), b(converted, (W, H)), atol=1e-5)
    a.flip_augment = True  # flip averaging with the H36M mirror keeps the equivariance
    mirrored = kp[:, skeletons.COCO17_MIRROR].copy()
    mirrored[..., 0] = W - mirrored[..., 0]
    expect = a(kp, (W, H))[:, skeletons.H36M17_MIRROR] * [-1, 1, 1]
    assert np.allclose(a(mirrored, (W, H)), expect, atol=1e-5)
    with pytest.raises(ValueError, match="input_joints"):
        vp.VideoPose3DLifter.from_checkpoint(cpn, input_joints="body25")


def test_mediapipe_keypoints_feed_the_temporal_model(lifter27):
    """BlazePose-33 2D keypoints (the default detector) go through their COCO-17 subset into the lifter."""
    n = 30
    mp = np.full((n, 33, 3), np.nan, np.float32)
    coco = random_keypoints(n, seed=11)
    mp[:, [skeletons.MEDIAPIPE33.index(j) for j in skeletons.COCO17]] = coco
    poses = pose_io.PoseSequence(keypoints_2d=mp, timestamps=np.arange(n) / 30, frame_indices=np.arange(n),
                                 detected=np.ones(n, bool), fps=30, image_size=(W, H),
                                 joint_names_2d=skeletons.MEDIAPIPE33, backend="mediapipe")
    lifted = vp.lift_pose_sequence(poses, lifter27)
    assert np.allclose(lifted.joints_3d[:, :17], lifter27(coco.astype(np.float32), (W, H)), atol=1e-6)
    assert lifted.backend == "mediapipe" and lifted.lifter == "videopose3d" and lifted.trajectory is None
