"""tools/train_lifter.py hands its options to the training: the noise-level range (default the shipped 0.7-1.5,
else the one given) and the limb correlation, parsed from the command line."""
from __future__ import annotations

import importlib.util

import pytest

pytest.importorskip("torch")


def _cli(repo_root):
    spec = importlib.util.spec_from_file_location("train_lifter_cli", repo_root / "tools" / "train_lifter.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_noise_range_and_limb_correlation_reach_the_training(repo_root, monkeypatch, tmp_path):
    from tools.lifter_training import train

    seen = []

    def fake_train(**kw):
        seen.append(kw)
        return {"steps": 0, "seconds": 0.0, "best": {}}

    monkeypatch.setattr(train, "train", fake_train)
    cli = _cli(repo_root)
    assert cli.main(["--out", str(tmp_path / "a.npz")]) == 0
    assert cli.main(["--out", str(tmp_path / "b.npz"), "--noise-range", "1.0,2.2", "--limb-corr", "0.6,0.7"]) == 0
    assert seen[0]["noise_range"] == train.NOISE_SCALE == (0.7, 1.5) and seen[0]["limb_corr"] is None
    assert seen[1]["noise_range"] == (1.0, 2.2) and seen[1]["limb_corr"] == {"arm": 0.6, "leg": 0.7}
