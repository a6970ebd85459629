"""detectron2 Keypoint R-CNN backend: COCO-17 2D keypoints of every person in a frame (worker side).

Model: Mask R-CNN's keypoint head (He et al., ICCV 2017) as implemented by detectron2 (Wu et al., 2019), trained on
COCO person keypoints; the model-zoo configs ``COCO-Keypoints/keypoint_rcnn_{R_50_FPN_3x, R_101_FPN_3x,
X_101_32x8d_FPN_3x}.yaml`` (R101 is what VideoPose3D's ``inference/infer_video_d2.py`` uses, so keypoints from this
backend match those the official ``pretrained_h36m_detectron_coco.bin`` lifter expects).

Inference follows detectron2's ``DefaultPredictor`` but batched: each RGB frame is converted to the model's input
format (BGR for the model zoo), resized with ``ResizeShortestEdge(INPUT.MIN_SIZE_TEST, INPUT.MAX_SIZE_TEST)``, and a
list of frames goes through the model in one call; outputs are rescaled to the frame by detectron2's
postprocessing. ``ROI_HEADS.SCORE_THRESH_TEST`` is 0.7 as in ``infer_video_d2.py``.

Outputs per frame (``core.backends.base.FrameDetections``, ``core.conventions`` image px): ``boxes`` xyxy,
``scores`` the person scores, ``keypoints_2d`` ``(N, 17, 3)`` COCO-17 x, y and detectron2's keypoint score
(a spatial soft-max of the heatmap, >= 0 and not bounded by 1) clipped to [0, 1]. Several people per frame are all
returned; ``core.detect`` follows one with ``core.tracking.select_track``.

Weights are never downloaded here (detectron2 would fetch ``MODEL.WEIGHTS`` from its URL): they are looked up with
:func:`core.weights.find_weights` (``tools/install_deps.py --weights`` puts them there) or given as a path, and the
model-zoo ``.pkl`` (a pickle) is read with :func:`core.safe_npz.load_pickle`, which only builds arrays and plain
containers; ``.pth`` files go through ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ... import safe_npz, skeletons
from .. import weights as weights_registry
from ...errors import PipelineError
from .base import FrameDetections

#: Short names -> detectron2 model-zoo config names.
MODELS: dict[str, str] = {
    "R50": "COCO-Keypoints/keypoint_rcnn_R_50_FPN_3x.yaml",
    "R101": "COCO-Keypoints/keypoint_rcnn_R_101_FPN_3x.yaml",
    "X101": "COCO-Keypoints/keypoint_rcnn_X_101_32x8d_FPN_3x.yaml",
}

INSTALL_HINT = ("install it with `python tools/install_deps.py --detectron2` (needs internet, a C++ compiler and "
                "torchvision: detectron2 is built from its source repository, it is not on PyPI)")


def resolve_config(model: str) -> str:
    """``"R50"``/``"R101"``/``"X101"`` or a model-zoo config name -> the config name.

    Raises:
        PipelineError("bad_input"): another name (the message lists the choices).
    """
    if model in MODELS:
        return MODELS[model]
    name = model if model.endswith(".yaml") else model + ".yaml"
    if name in weights_registry.DETECTRON2_CONFIGS:
        return name
    raise PipelineError("bad_input", f"unknown detectron2 keypoint model {model!r}; choose one of {sorted(MODELS)} "
                                     f"or {sorted(weights_registry.DETECTRON2_CONFIGS)}")


def to_frame_detections(boxes: np.ndarray, scores: np.ndarray, keypoints: np.ndarray) -> FrameDetections:
    """detectron2 ``Instances`` fields (as numpy) -> :class:`FrameDetections`.

    Args:
        boxes: ``(N, 4)`` ``pred_boxes.tensor`` xyxy px; scores: ``(N,)``; keypoints: ``(N, 17, 3)``
            ``pred_keypoints`` (x, y, score).
    Returns:
        FrameDetections with confidences clipped to [0, 1].
    Raises:
        ValueError: shapes that disagree.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    kp = np.asarray(keypoints, dtype=np.float32)
    if kp.size == 0:
        kp = kp.reshape(0, len(skeletons.COCO17), 3)
    if kp.ndim != 3 or kp.shape[1:] != (len(skeletons.COCO17), 3) or not (len(kp) == len(boxes) == len(scores)):
        raise ValueError(f"detectron2 output disagrees: boxes {boxes.shape}, scores {scores.shape}, "
                         f"keypoints {kp.shape} (expected (N, 17, 3))")
    kp = kp.copy()
    kp[..., 2] = np.clip(kp[..., 2], 0.0, 1.0)
    return FrameDetections(keypoints_2d=kp, boxes=boxes, scores=np.clip(scores, 0.0, 1.0))


def load_weights_file(path: str | os.PathLike) -> dict:
    """Read Keypoint R-CNN weights without general unpickling.

    Args:
        path: a detectron2 model-zoo ``.pkl`` (``{"model": {name: ndarray}, "__author__": ...}``) or a ``.pth``
            (torch, read with ``weights_only=True``).
    Returns:
        ``{"model": {name: array or tensor}, "__author__": str, "matching_heuristics": bool}`` as detectron2's
        ``DetectionCheckpointer._load_file`` returns it.
    Raises:
        PipelineError("bad_input"): unreadable, unsafe (a pickle naming code), or without a ``model`` dict.
    """
    path = Path(path)
    try:
        if path.suffix == ".pkl":
            data = safe_npz.load_pickle(path)
        else:
            import torch

            data = torch.load(path, map_location="cpu", weights_only=True)
    except (ValueError, OSError, RuntimeError) as e:  # UnsafePickleError is a ValueError
        raise PipelineError("bad_input", f"{path}: cannot read Keypoint R-CNN weights ({e})") from e
    if not isinstance(data, dict):
        raise PipelineError("bad_input", f"{path}: holds a {type(data).__name__}, not a weights dict")
    if "model" in data and "__author__" in data:
        return {"model": data["model"], "__author__": data["__author__"], "matching_heuristics": False}
    state = data.get("model", data)
    if not isinstance(state, dict):
        raise PipelineError("bad_input", f"{path}: no 'model' dict of weights")
    return {"model": state, "__author__": "user", "matching_heuristics": True}


class Detectron2Backend:
    """detectron2 COCO Keypoint R-CNN; build once, then call :meth:`process_batch` on consecutive RGB frames.

    Args:
        model: ``"R50"``, ``"R101"`` (default, as VideoPose3D) or ``"X101"``, or a model-zoo config name.
        device: ``"cpu"`` or ``"cuda"``/``"cuda:N"`` (CPU with a note when CUDA is unavailable).
        weights: path of the weights file; default: :func:`core.weights.find_weights` in ``weights_dir``.
        weights_dir: folder with the weights (``--weights-dir``).
        score_threshold: person score threshold (``ROI_HEADS.SCORE_THRESH_TEST``), in [0, 1].

    Raises:
        PipelineError: ``bad_input`` (unknown model, threshold out of range, unreadable weights),
            ``missing_dependency`` (detectron2 not installed, weights not found).
    """

    name = "detectron2"
    joint_names_2d = skeletons.COCO17
    provides_3d = False

    def __init__(self, model: str = "R101", *, device: str = "cpu", weights: str | os.PathLike | None = None,
                 weights_dir: str | os.PathLike | None = None, score_threshold: float = 0.7):
        self.config_name = resolve_config(model)
        if not 0.0 <= float(score_threshold) <= 1.0:
            raise PipelineError("bad_input", f"score_threshold must be in [0, 1], got {score_threshold}")
        try:
            import torch
            from detectron2 import model_zoo
            from detectron2.checkpoint import DetectionCheckpointer
            from detectron2.config import get_cfg
            from detectron2.data import transforms as T
            from detectron2.modeling import build_model
        except ImportError as e:
            raise PipelineError("missing_dependency",
                                f"the detectron2 backend needs detectron2, which cannot be imported ({e}); "
                                f"{INSTALL_HINT}; or use --backend mediapipe") from e
        wname = weights_registry.DETECTRON2_CONFIGS[self.config_name]
        path = Path(weights) if weights is not None else weights_registry.find_weights(wname, weights_dir)
        if path is None or not path.is_file():
            where = weights if weights is not None else (weights_dir or weights_registry.default_weights_dir())
            raise PipelineError(
                "missing_dependency",
                f"Keypoint R-CNN weights {wname} not found in {where}; download them with "
                f"`python tools/install_deps.py --weights` (needs internet) or put the model-zoo file "
                f"({weights_registry.WEIGHTS[wname].url}) there and pass --weights-dir")
        self.notes: list[str] = []
        dev = str(device)
        if dev.startswith("cuda") and not torch.cuda.is_available():
            self.notes.append(f"device {dev!r} requested but CUDA is not available: running on the CPU")
            dev = "cpu"
        cfg = get_cfg()
        cfg.merge_from_file(model_zoo.get_config_file(self.config_name))
        cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = float(score_threshold)
        cfg.MODEL.DEVICE = dev
        cfg.MODEL.WEIGHTS = ""
        cfg.freeze()
        self._torch = torch
        self.cfg = cfg
        self.device = dev
        net = build_model(cfg)
        incompatible = DetectionCheckpointer(net)._load_model(load_weights_file(path))
        missing = [k for k in getattr(incompatible, "missing_keys", []) if k not in ("pixel_mean", "pixel_std")]
        if missing:
            raise PipelineError("bad_input", f"{path}: not {self.config_name} weights; missing {missing[:8]}")
        self.model = net.eval()
        self.weights_path = path
        self._resize = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MIN_SIZE_TEST],
                                            cfg.INPUT.MAX_SIZE_TEST)
        self._bgr = cfg.INPUT.FORMAT == "BGR"

    def _inputs(self, image: np.ndarray) -> dict[str, Any]:
        img = np.asarray(image)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"frames must be RGB uint8 (H, W, 3), got {img.shape} {img.dtype}")
        h, w = img.shape[:2]
        if self._bgr:
            img = img[:, :, ::-1]
        resized = self._resize.get_transform(img).apply_image(img)
        tensor = self._torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1)).astype("float32"))
        return {"image": tensor, "height": h, "width": w}

    def process_batch(self, images: Sequence[np.ndarray]) -> list[FrameDetections]:
        """Detect people in a batch of RGB uint8 ``(H, W, 3)`` frames -> one FrameDetections per frame."""
        if self.model is None:
            raise RuntimeError("this detectron2 backend was closed")
        if len(images) == 0:
            return []
        inputs = [self._inputs(im) for im in images]
        with self._torch.inference_mode():
            outputs = self.model(inputs)
        result = []
        for out in outputs:
            inst = out["instances"].to("cpu")
            if len(inst) == 0 or not inst.has("pred_keypoints"):
                result.append(FrameDetections.empty(len(skeletons.COCO17)))
                continue
            result.append(to_frame_detections(inst.pred_boxes.tensor.numpy(), inst.scores.numpy(),
                                              inst.pred_keypoints.numpy()))
        return result

    def close(self) -> None:
        """Release the model (idempotent)."""
        if getattr(self, "model", None) is not None:
            self.model = None
            if self.device.startswith("cuda"):
                self._torch.cuda.empty_cache()
