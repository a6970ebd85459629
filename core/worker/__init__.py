"""The worker: everything that needs a heavy package (PyAV, mediapipe, torch, cv2, detectron2), run as its own
process (``python -m core.worker``, :mod:`core.worker.server`) so that Blender's Python never imports them.

* :mod:`core.worker.job` -- the one orchestrator of the main job (CLI, worker server, ``tools/batch.py``);
* :mod:`core.worker.server` -- the JSON-lines server the add-on starts (protocol: :mod:`core.protocol`);
* :mod:`core.worker.video` (PyAV decoding), :mod:`core.worker.detect` + :mod:`core.worker.backends` (pose
  detectors), :mod:`core.worker.lifting` (torch lifters), :mod:`core.worker.overlay` (cv2 drawing),
  :mod:`core.worker.weights` (verified downloads).

Importing this package imports nothing heavy; each module imports its packages inside functions.
"""
