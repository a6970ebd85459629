"""Pose backends and their registry. Importing this package imports no heavy package (numpy + stdlib only).

``get_backend(name, **options)`` imports the backend module lazily and builds the backend:

* ``"mediapipe"`` -> :class:`core.backends.mediapipe_pose.MediaPipePoseBackend` (BlazePose 33 landmarks + 3D).
* ``"detectron2"`` -> :class:`core.backends.detectron2_backend.Detectron2Backend` (COCO-17, 2D only).
* ``"holistic"`` -> :class:`core.worker.backends.holistic.HolisticBackend` (BlazePose + hands + face mesh).

The protocol every backend follows is in :mod:`core.backends.base`.
"""
from __future__ import annotations

import importlib

from ...errors import PipelineError
from .base import FrameDetections, PoseBackend

#: Registry name -> (module relative to this package, class name); the names are ``core.options.BACKENDS``.
#: Modules are imported only by :func:`get_backend`.
BACKENDS: dict[str, tuple[str, str]] = {
    "mediapipe": (".mediapipe_pose", "MediaPipePoseBackend"),
    "detectron2": (".detectron2_backend", "Detectron2Backend"),
    # not a user choice of core.options.BACKENDS: the job takes it for "mediapipe" with --hands / --face
    "holistic": (".holistic", "HolisticBackend"),
}

__all__ = ["BACKENDS", "FrameDetections", "PoseBackend", "get_backend"]


def get_backend(name: str, **options) -> PoseBackend:
    """Build the backend registered as ``name`` with keyword ``options`` (passed to its constructor).

    Raises:
        PipelineError("bad_input"): unknown name (the message lists the known ones).
        PipelineError("missing_dependency"): the backend's module or one of its packages cannot be imported
            (the message names the package and how to install it).
    """
    if name not in BACKENDS:
        raise PipelineError("bad_input", f"unknown pose backend {name!r}; choose one of {sorted(BACKENDS)}")
    module_name, class_name = BACKENDS[name]
    try:
        module = importlib.import_module(module_name, __package__)
        # Backends import their heavy packages in __init__, so a missing package surfaces here too.
        return getattr(module, class_name)(**options)
    except ImportError as e:
        missing = getattr(e, "name", None) or str(e)
        raise PipelineError(
            "missing_dependency",
            f"the {name!r} backend needs the Python package {missing!r}, which cannot be imported ({e}); "
            "install the engine's dependencies (tools/install_deps.py) or choose another backend",
        ) from e
