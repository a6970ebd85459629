"""The contact read-out refit (tools/lifter_training/contact_head.py): its linear model is exactly the job's contact
probabilities (60° assumed, test-time flip, smoothing), the fit lowers the cross-entropy it minimises and stays at the
shipped read-out when pulled hard towards it, and the written weights change the contacts and nothing else."""
from __future__ import annotations

import numpy as np
import pytest

from core.lifting import trained

head = pytest.importorskip("tools.lifter_training.contact_head")
rendered = pytest.importorskip("tools.lifter_training.rendered")
pytest.importorskip("scipy")


@pytest.fixture(scope="module")
def case(case_dir):
    return rendered.load_case(case_dir[0])


@pytest.fixture(scope="module")
def lifter():
    return trained.load_lifter(trained.WEIGHTS_WORLD)


def _shipped(lifter):
    w, b = lifter._layers[-1]
    return w[0][:, trained.CONTACTS].astype(np.float64), b[trained.CONTACTS].astype(np.float64)


def _job_contacts(lifter, c):
    r = c.raw
    return lifter.lift(r["keypoints"], r["size"], None, world_3d=r["world"], world_present=r["present"],
                       flip=True).contacts


def test_linear_model_is_the_jobs_contact_path(case, lifter):
    ad, am, y = head.design(lifter, [case])
    w0, b0 = _shipped(lifter)
    t = len(case.d)
    z = head._logits(w0, b0, ad, am)
    assert z.shape == (2 * t, 4) and y.shape == (2 * t, 4)
    # the direct orientation: what Lifter.lift gives the job (float32 network, so not bit for bit)
    assert np.allclose(1.0 / (1.0 + np.exp(-z[:t])), _job_contacts(lifter, case), atol=2e-4)
    # the mirrored orientation is the same clip seen in a mirror: its contacts are the direct ones exchanged
    assert np.allclose(z[t:], z[:t][:, [2, 3, 0, 1]], atol=1e-4)
    assert np.array_equal(y[t:], y[:t][:, [2, 3, 0, 1]])


def test_fit_lowers_the_loss_and_a_strong_pull_keeps_the_shipped_readout(case, lifter):
    d = head.design(lifter, [case])
    w0, b0 = _shipped(lifter)
    before = head.readout_loss(w0, b0, *d)
    w, b = head.fit_readout(w0, b0, *d, l2=1e-4)
    after = head.readout_loss(w, b, *d)
    assert after["bce"] < 0.8 * before["bce"], (before, after)
    assert after["acc"] >= before["acc"]
    # the fit keeps the read-out left/right symmetric (each case enters in both orientations)
    z = head._logits(w, b, *d[:2])
    t = len(case.d)
    assert np.allclose(z[t:], z[:t][:, [2, 3, 0, 1]], atol=1e-6)
    w_s, b_s = head.fit_readout(w0, b0, *d, l2=1e3)
    assert np.abs(w_s - w0).max() < 1e-3 and np.abs(b_s - b0).max() < 1e-3


def test_written_weights_change_only_the_contacts(case, lifter, tmp_path):
    d = head.design(lifter, [case])
    w0, b0 = _shipped(lifter)
    w, b = head.fit_readout(w0, b0, *d, l2=1e-4)
    out = tmp_path / "refit.npz"
    head.write_weights(trained.WEIGHTS_WORLD, out, w, b, {"note": "test"})
    new = trained.load_lifter(out)                      # loads without pickles, same layout
    assert "contact_head" in new.meta
    r = case.raw
    a = lifter.lift(r["keypoints"], r["size"], None, world_3d=r["world"], world_present=r["present"], flip=True)
    n = new.lift(r["keypoints"], r["size"], None, world_3d=r["world"], world_present=r["present"], flip=True)
    assert np.array_equal(a.joints_3d, n.joints_3d) and np.array_equal(a.root, n.root)
    assert np.array_equal(a.up, n.up)
    assert not np.allclose(a.contacts, n.contacts, atol=1e-3)
    z = head._logits(w, b, *d[:2])[:len(case.d)]
    assert np.allclose(n.contacts, 1.0 / (1.0 + np.exp(-z)), atol=2e-4)
