"""detectron2 Keypoint R-CNN backend: config names, output conversion, safe weights reading, missing dependency.

The parts that need detectron2 itself skip with the reason when it is not importable (it is not on PyPI:
``tools/install_deps.py --detectron2`` builds it from source, online).
"""
from __future__ import annotations

import importlib.util
import os
import pickle

import numpy as np
import pytest

from core import skeletons
from core.worker import weights
from core.worker.backends import FrameDetections, get_backend
from core.worker.backends import detectron2_backend as d2b
from core.errors import PipelineError

HAS_D2 = importlib.util.find_spec("detectron2") is not None


def test_model_names_resolve_to_model_zoo_configs():
    assert d2b.resolve_config("R101") == "COCO-Keypoints/keypoint_rcnn_R_101_FPN_3x.yaml"
    assert d2b.resolve_config("R50") == "COCO-Keypoints/keypoint_rcnn_R_50_FPN_3x.yaml"
    assert d2b.resolve_config("COCO-Keypoints/keypoint_rcnn_X_101_32x8d_FPN_3x") == \
        "COCO-Keypoints/keypoint_rcnn_X_101_32x8d_FPN_3x.yaml"
    assert set(d2b.MODELS.values()) == set(weights.DETECTRON2_CONFIGS)
    with pytest.raises(PipelineError, match="unknown detectron2 keypoint model 'R18'") as e:
        d2b.resolve_config("R18")
    assert e.value.code == "bad_input"


def test_bad_options_are_refused_before_anything_is_imported():
    with pytest.raises(PipelineError, match="unknown detectron2"):
        get_backend("detectron2", model="mask_rcnn")
    with pytest.raises(PipelineError, match="score_threshold"):
        get_backend("detectron2", score_threshold=1.5)


def test_instances_to_frame_detections():
    kp = np.zeros((2, 17, 3), np.float32)
    kp[..., 0], kp[..., 1] = 100, 200
    kp[0, :, 2], kp[1, :, 2] = 1.7, 0.2  # detectron2's keypoint score is not bounded by 1
    det = d2b.to_frame_detections(np.array([[0, 0, 10, 20], [5, 5, 9, 9]]), np.array([0.99, 0.75]), kp)
    assert isinstance(det, FrameDetections) and len(det) == 2
    assert det.keypoints_2d.shape == (2, 17, 3) and det.keypoints_2d.dtype == np.float32
    assert np.all(det.keypoints_2d[0, :, 2] == 1.0) and np.allclose(det.keypoints_2d[1, :, 2], 0.2)
    assert det.joints_3d is None and np.allclose(det.scores, [0.99, 0.75])
    empty = d2b.to_frame_detections(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 17, 3)))
    assert len(empty) == 0 and empty.keypoints_2d.shape == (0, len(skeletons.COCO17), 3)
    with pytest.raises(ValueError, match="disagrees"):
        d2b.to_frame_detections(np.zeros((1, 4)), np.zeros(1), np.zeros((1, 18, 3)))


def test_model_zoo_pickle_is_read_without_general_unpickling(tmp_path):
    good = tmp_path / "model_final_997cc7.pkl"
    good.write_bytes(pickle.dumps({"model": {"backbone.bottom_up.stem.conv1.weight": np.ones((64, 3, 7, 7),
                                                                                           np.float32)},
                                   "__author__": "Detectron2 Model Zoo"}, protocol=2))
    data = d2b.load_weights_file(good)
    assert data["__author__"] == "Detectron2 Model Zoo" and not data["matching_heuristics"]
    assert data["model"]["backbone.bottom_up.stem.conv1.weight"].shape == (64, 3, 7, 7)

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    bad = tmp_path / "evil.pkl"
    bad.write_bytes(pickle.dumps({"model": {}, "__author__": Evil()}))
    with pytest.raises(PipelineError, match="refusing to unpickle") as e:
        d2b.load_weights_file(bad)
    assert e.value.code == "bad_input" and not (tmp_path / "pwned").exists()


@pytest.mark.skipif(HAS_D2, reason="detectron2 is installed: the missing-dependency path cannot be exercised")
def test_missing_detectron2_says_how_to_install():
    with pytest.raises(PipelineError) as e:
        get_backend("detectron2", model="R101")
    assert e.value.code == "missing_dependency"
    assert "python tools/install_deps.py --detectron2" in e.value.message and "needs internet" in e.value.message


@pytest.mark.skipif(not HAS_D2, reason="detectron2 is not importable (install: python tools/install_deps.py "
                                       "--detectron2, needs internet)")
def test_missing_weights_are_reported_not_downloaded(tmp_path, monkeypatch):
    monkeypatch.setenv("ANIME_MMD_WEIGHTS_DIR", str(tmp_path / "empty"))
    with pytest.raises(PipelineError, match="install_deps.py --weights") as e:
        get_backend("detectron2", weights_dir=tmp_path / "none")
    assert e.value.code == "missing_dependency"


@pytest.mark.skipif(not HAS_D2, reason="detectron2 is not importable (install: python tools/install_deps.py "
                                       "--detectron2, needs internet)")
def test_random_weights_model_runs_on_real_frames(tmp_path, shared_data):
    """Build the R50 model, save its random weights in the model-zoo .pkl layout, load them back and run a batch."""
    from detectron2 import model_zoo
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    cfg = get_cfg()
    cfg.merge_from_file(model_zoo.get_config_file(d2b.MODELS["R50"]))
    cfg.MODEL.DEVICE = "cpu"
    net = build_model(cfg)
    pkl = tmp_path / "keypoint_rcnn_R_50_FPN_3x.pkl"
    pkl.write_bytes(pickle.dumps({"model": {k: v.numpy() for k, v in net.state_dict().items()},
                                  "__author__": "test"}, protocol=2))
    backend = get_backend("detectron2", model="R50", weights_dir=tmp_path, score_threshold=0.0)
    import av

    with av.open(str(shared_data / "videos" / "kunkun_dance_864x480_25fps.mp4")) as c:
        frames = [f.to_ndarray(format="rgb24") for _, f in zip(range(2), c.decode(video=0))]
    out = backend.process_batch(frames)
    assert len(out) == 2 and all(isinstance(d, FrameDetections) for d in out)
    for d in out:
        assert d.keypoints_2d.shape[1:] == (17, 3) and d.boxes.shape == (len(d), 4)
        assert np.all((d.keypoints_2d[..., 2] >= 0) & (d.keypoints_2d[..., 2] <= 1))
    backend.close()
    backend.close()
