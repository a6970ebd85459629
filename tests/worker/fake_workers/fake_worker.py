"""A stand-in for ``python -m core.worker`` that misbehaves on purpose, to test the add-on's client without torch.

Usage: ``python fake_worker.py MODE [ignored args...]`` (extra args such as ``-m core.worker`` are ignored, so a
wrapper script can stand in for the worker's interpreter). Reads the request line on stdin like the real worker.
Lines are written by hand with ``json.dumps`` (not ``core.protocol``), so the client is checked against an
independent writer. Modes:

* ``canned``: hello, three progress lines, writes a small real pose ``.npz`` (``core.pose_io``) to the request's
  ``npz`` path, artifact, done, exit 0.
* ``garbage``: hello, then a line that is not JSON, then sleeps 30 s (the client must stop it).
* ``crash``: hello, one progress line, a traceback on stderr, exit status 3.
* ``silent``: exits 0 without writing anything.
* ``oldproto``: a hello that speaks protocol 99, then sleeps 30 s.
* ``hang``: hello, one progress line, starts a child process that sleeps (its pid is written to the file named by
  ``FAKE_CHILD_PID_FILE``), ignores SIGTERM and sleeps forever.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time


def send(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def hello(protocol: int = 1) -> None:
    send({"type": "hello", "protocol": protocol, "python": "3.x", "versions": {"numpy": "fake"}, "cuda": False,
          "missing": [], "fix": "python tools/install_deps.py"})


def write_npz(path: str) -> int:
    import numpy as np

    from core import pose_io, skeletons

    t = 12
    rng = np.random.default_rng(7)
    poses = pose_io.PoseSequence(
        keypoints_2d=np.concatenate([rng.uniform(0, 640, (t, 33, 2)), np.ones((t, 33, 1))], axis=2),
        timestamps=np.arange(t) / 30.0, frame_indices=np.arange(t), detected=np.ones(t, bool), fps=30.0,
        image_size=(640, 480), joint_names_2d=skeletons.MEDIAPIPE33, backend="fake",
        joints_3d=rng.normal(0, 0.3, (t, len(skeletons.CANONICAL), 3)), lifter="fake", source="fake video")
    pose_io.save(path, poses)
    return t


def main() -> int:
    mode = sys.argv[1]
    request = json.loads(sys.stdin.readline() or "{}")
    if mode == "silent":
        return 0
    if mode == "oldproto":
        hello(99)
        time.sleep(30)
        return 0
    hello()
    if mode == "canned":
        for done in range(3):
            send({"type": "progress", "stage": "detect", "done": done * 5, "total": 10})
        frames = write_npz(request["npz"])
        send({"type": "artifact", "kind": "npz", "path": request["npz"]})
        send({"type": "done", "result": {"npz": request["npz"], "frames": frames, "notes": ["canned"]}})
        return 0
    if mode == "garbage":
        sys.stdout.write("Loading model weights... this is not JSON\n")
        sys.stdout.flush()
        time.sleep(30)
        return 0
    if mode == "crash":
        send({"type": "progress", "stage": "detect", "done": 1, "total": 10})
        sys.stderr.write("Traceback (most recent call last):\n  File \"x.py\", line 1\nRuntimeError: fake crash boom\n")
        sys.stderr.flush()
        os._exit(3)
    if mode == "hang":
        send({"type": "progress", "stage": "detect", "done": 1, "total": None})
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        with open(os.environ["FAKE_CHILD_PID_FILE"], "w") as f:
            f.write(str(child.pid))
        while True:
            time.sleep(1)
    raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    sys.exit(main())
