"""The numpy inference (core.lifting.trained) computes the torch training model (tools.lifter_training.model) on the
same weights, batch norm folded, within 1e-5; the shipped weights have the training model's layout.

The reference is the torch model evaluated in float64 (:func:`_exact`): the function itself. torch's own float32
kernels differ from it by up to 1.2e-5 on some CPUs (AMD EPYC, the shipped weights: numpy's float32 is within 6.6e-6
there), so two float32 implementations can be 1.3e-5 apart while each computes the model."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is a training-only dependency (tools/install_deps.py installs it)")

from core.lifting import trained  # noqa: E402
from tools.lifter_training.model import TemporalLifter, export_npz, freeze_batch_norm, from_npz, widen_input  # noqa: E402,E501


def _exact(model, xp: np.ndarray) -> np.ndarray:
    """``model`` (eval mode) on the padded ``(T, F)`` features, in float64 on a copy: ``(T', outputs)``."""
    import copy

    with torch.no_grad():
        return copy.deepcopy(model).double()(torch.from_numpy(xp.astype(np.float64))[None])[0].numpy()


@pytest.mark.parametrize("channels, blocks, frames, n_features", [(64, 2, 1, trained.N_FEATURES),
                                                                  (256, 3, 200, trained.N_FEATURES),
                                                                  (256, 3, 7, trained.N_FEATURES),
                                                                  (64, 2, 50, trained.N_FEATURES_WORLD)])
def test_numpy_equals_torch(tmp_path, channels, blocks, frames, n_features):
    torch.manual_seed(channels + frames)
    model = TemporalLifter(channels, blocks, n_features=n_features)
    with torch.no_grad():                     # non-trivial batch-norm statistics, as after training
        for bn in [model.expand_bn, *model.bns]:
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.3, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
    model.eval()
    path = export_npz(model, tmp_path / "w.npz", {"license": "test"})
    lifter = trained.load_lifter(path)
    assert lifter.receptive_field == model.receptive_field
    assert lifter.uses_world == (n_features == trained.N_FEATURES_WORLD)
    x = np.random.default_rng(frames).standard_normal((frames, n_features)).astype(np.float32)
    pad = model.receptive_field // 2
    xp = np.concatenate([np.repeat(x[:1], pad, 0), x, np.repeat(x[-1:], pad, 0)])
    ref = _exact(model, xp)
    got = lifter.forward(x)
    assert got.shape == (frames, trained.N_OUTPUTS)
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)


def test_shipped_weights_numpy_equals_torch():
    """The committed weights, run by numpy and by the torch training model, on real-looking features."""
    model = from_npz(trained.DEFAULT_WEIGHTS)
    lifter = trained.load_lifter()
    assert lifter.receptive_field == model.receptive_field == 81
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, model.expand.in_channels)).astype(np.float32) * 0.3
    x[:, 2:81:3] = rng.uniform(0.3, 1.0, (300, 27))                    # confidences
    pad = model.receptive_field // 2
    xp = np.concatenate([np.repeat(x[:1], pad, 0), x, np.repeat(x[-1:], pad, 0)])
    np.testing.assert_allclose(lifter.forward(x), _exact(model, xp), atol=1e-5, rtol=0)


def test_widened_model_computes_the_old_function_until_trained(tmp_path):
    """Warm start (tools/train_lifter.py --world --init): exported 2D-only weights, reloaded, widened to take the
    world landmarks and with batch norm frozen, give the old outputs whatever the new inputs hold; after one
    training step on the new inputs they no longer do, and the export still matches numpy."""
    torch.manual_seed(0)
    model = TemporalLifter(64, 2)
    model.eval()
    path = export_npz(model, tmp_path / "old.npz", {})
    wide = widen_input(from_npz(path), trained.N_FEATURES_WORLD)
    wide.train()
    freeze_batch_norm(wide)
    wide.drop.p = 0.0
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 60, trained.N_FEATURES_WORLD)).astype(np.float32)
    with torch.no_grad():
        old = model(torch.from_numpy(x[..., :trained.N_FEATURES]))
        new = wide(torch.from_numpy(x))
    np.testing.assert_allclose(new.numpy(), old.numpy(), atol=1e-5)
    opt = torch.optim.SGD(wide.parameters(), lr=0.1)
    loss = wide(torch.from_numpy(x)).square().mean()
    loss.backward()
    opt.step()
    assert float(wide.expand.weight[:, trained.N_FEATURES:].abs().sum()) > 0
    wide.eval()
    out = export_npz(wide, tmp_path / "new.npz", {})
    lifter = trained.load_lifter(out)
    assert lifter.uses_world
    pad = wide.receptive_field // 2
    xp = np.concatenate([np.repeat(x[0, :1], pad, 0), x[0], np.repeat(x[0, -1:], pad, 0)])
    np.testing.assert_allclose(lifter.forward(x[0]), _exact(wide, xp), atol=1e-5)
