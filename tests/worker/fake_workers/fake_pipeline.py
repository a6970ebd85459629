"""Stand-ins for ``core.pipeline.detect_stage``, loaded by the real worker through its test hook
``ANIME_MMD_FAKE_PIPELINE=fake_pipeline:<function>`` (this folder on PYTHONPATH). Each takes ``(opts, progress)``.

``opts`` is a ``SimpleNamespace`` of the request's options. ``FAKE_PIPELINE_LOG`` (optional) names a file each call
appends its options to, so tests can see what the worker passed on.
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

from core import pose_io, skeletons
from core.errors import PipelineError


def _log(opts) -> None:
    path = os.environ.get("FAKE_PIPELINE_LOG")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(vars(opts)) + "\n")


def make_poses(t: int = 20, seed: int = 0) -> pose_io.PoseSequence:
    """A small, valid pose sequence: MediaPipe-33 2D px + canonical 3D metres, frame 5 undetected."""
    rng = np.random.default_rng(seed)
    detected = np.ones(t, bool)
    detected[5] = False
    kp = np.concatenate([rng.uniform(0, 640, (t, 33, 2)), rng.uniform(0, 1, (t, 33, 1))], axis=2)
    return pose_io.PoseSequence(
        keypoints_2d=kp, timestamps=np.arange(t) / 30.0, frame_indices=np.arange(t) + 3, detected=detected,
        fps=30.0, image_size=(640, 360), joint_names_2d=skeletons.MEDIAPIPE33, backend="mediapipe",
        joints_3d=rng.normal(0, 0.3, (t, len(skeletons.CANONICAL), 3)), lifter="native", source="fake.mp4",
        crop=(0, 0, 640, 360), trajectory=rng.normal(0, 1, (t, 3)), notes=["filled 1 frame"])


def ok(opts, progress):
    """Reports 20 frames of detection (throttling keeps the first and last) and returns :func:`make_poses`."""
    _log(opts)
    for i in range(21):
        progress("detect", i, 20)
    progress("lift", 1, 1)
    return make_poses()


def noisy(opts, progress):
    """Writes to ``sys.stdout``, to ``print``, and straight to file descriptor 1, as native libraries do."""
    print("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.")
    sys.stdout.write("stray write\n")
    sys.stdout.flush()
    os.write(1, b"W0000 00:00 raw fd-1 write from a C library\n")
    return ok(opts, progress)


def bad_video(opts, progress):
    progress("decode", 0, None)
    raise PipelineError("no_frames", f"{opts.video} holds no frames in the chosen range")


def boom(opts, progress):
    progress("detect", 0, 10)
    return {"a": 1}["missing key"]


def not_poses(opts, progress):
    return [1, 2, 3]


def slow(opts, progress):
    """Progress every 50 ms for a minute (something to cancel)."""
    for i in range(1200):
        progress("detect", i, 1200)
        time.sleep(0.05)
    return make_poses()
