"""core.worker.backends.pose_models: the lite/heavy landmark models come from a tarball whose integrity hash is
checked before anything is installed; the backend refuses a model that is not installed (no run-time download)."""
from __future__ import annotations

import base64
import hashlib
import io
import tarfile

import pytest

from core.errors import PipelineError
from core.worker.backends import pose_models


def _tgz(files: dict) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _sri(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def test_integrity_strings():
    pose_models.check_integrity(b"abc", _sri(b"abc"))
    with pytest.raises(PipelineError, match="does not match"):
        pose_models.check_integrity(b"abd", _sri(b"abc"))
    with pytest.raises(PipelineError, match="unusable integrity"):
        pose_models.check_integrity(b"abc", "md5-xyz")


def test_a_tarball_that_is_not_the_pinned_one_installs_nothing(tmp_path):
    tgz = tmp_path / "pose.tgz"
    tgz.write_bytes(_tgz({"package/pose_landmark_lite.tflite": b"not the real model"}))
    with pytest.raises(PipelineError, match="integrity"):
        pose_models.install_landmark_models(("lite",), target_dir=tmp_path / "models", tarball=tgz)
    assert not (tmp_path / "models" / "pose_landmark_lite.tflite").exists()


def test_the_named_models_are_installed_from_a_matching_tarball(tmp_path, monkeypatch):
    data = _tgz({"package/pose_landmark_lite.tflite": b"lite", "package/pose_landmark_heavy.tflite": b"heavy",
                 "package/../evil.tflite": b"x"})
    tgz = tmp_path / "pose.tgz"
    tgz.write_bytes(data)
    monkeypatch.setattr(pose_models, "NPM_INTEGRITY", _sri(data))
    out = pose_models.install_landmark_models(("heavy", "lite"), target_dir=tmp_path / "m", tarball=tgz)
    assert [p.read_bytes() for p in out] == [b"heavy", b"lite"]
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["pose_landmark_heavy.tflite",
                                                                 "pose_landmark_lite.tflite"]
    with pytest.raises(PipelineError, match="holds no package/pose_landmark_full.tflite"):
        pose_models.install_landmark_models(("full",), target_dir=tmp_path / "m", tarball=tgz)
    with pytest.raises(PipelineError, match="unknown landmark model"):
        pose_models.install_landmark_models(("huge",), target_dir=tmp_path / "m", tarball=tgz)


def test_the_backend_refuses_a_landmark_model_that_is_not_installed(monkeypatch):
    pytest.importorskip("mediapipe")
    from core.worker.backends import get_backend, mediapipe_pose

    monkeypatch.setitem(mediapipe_pose._LANDMARK_MODELS, 0, "pose_landmark_not_installed.tflite")
    with pytest.raises(PipelineError, match="install_landmark_models") as e:
        get_backend("mediapipe", model_complexity=0)
    assert e.value.code == "missing_dependency"
