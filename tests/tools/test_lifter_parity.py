"""The numpy inference (core.lifting.trained) computes the torch training model (tools.lifter_training.model) on the
same weights, batch norm folded, within 1e-5; the shipped weights have the training model's layout."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is a training-only dependency (tools/install_deps.py installs it)")

from core.lifting import trained  # noqa: E402
from tools.lifter_training.model import TemporalLifter, export_npz, from_npz  # noqa: E402


@pytest.mark.parametrize("channels, blocks, frames", [(64, 2, 1), (256, 3, 200), (256, 3, 7)])
def test_numpy_equals_torch(tmp_path, channels, blocks, frames):
    torch.manual_seed(channels + frames)
    model = TemporalLifter(channels, blocks)
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
    x = np.random.default_rng(frames).standard_normal((frames, trained.N_FEATURES)).astype(np.float32)
    pad = model.receptive_field // 2
    xp = np.concatenate([np.repeat(x[:1], pad, 0), x, np.repeat(x[-1:], pad, 0)])
    with torch.no_grad():
        ref = model(torch.from_numpy(xp)[None])[0].numpy()
    got = lifter.forward(x)
    assert got.shape == (frames, trained.N_OUTPUTS)
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)


def test_shipped_weights_numpy_equals_torch():
    """The committed weights, run by numpy and by the torch training model, on real-looking features."""
    model = from_npz(trained.DEFAULT_WEIGHTS)
    lifter = trained.load_lifter()
    assert lifter.receptive_field == model.receptive_field == 81
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, trained.N_FEATURES)).astype(np.float32) * 0.3
    x[:, 2:81:3] = rng.uniform(0.3, 1.0, (300, 27))                    # confidences
    pad = model.receptive_field // 2
    xp = np.concatenate([np.repeat(x[:1], pad, 0), x, np.repeat(x[-1:], pad, 0)])
    with torch.no_grad():
        ref = model(torch.from_numpy(xp)[None])[0].numpy()
    np.testing.assert_allclose(lifter.forward(x), ref, atol=1e-5, rtol=0)
