"""core.worker.backends.mp_import: mediapipe imported without matplotlib/sounddevice, which still work on first use.

Each case runs in a fresh interpreter (the point is what ``sys.modules`` holds after the import)."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

if importlib.util.find_spec("mediapipe") is None:
    pytest.skip("mediapipe is not installed", allow_module_level=True)

REPO = Path(__file__).resolve().parents[2]


def _run(code: str) -> str:
    r = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(REPO)!r})\n" + code],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def test_mediapipe_without_plotting_and_audio_then_both_on_demand():
    out = _run("""
from core.worker.backends.mp_import import import_mediapipe, _Deferred
mp = import_mediapipe()
print('pose', mp.solutions.pose.Pose.__name__)
print('loaded', 'matplotlib' in sys.modules, 'matplotlib.pyplot' in sys.modules, 'sounddevice' in sys.modules)
print('standins left', any(isinstance(m, _Deferred) for m in sys.modules.values()))
du = sys.modules['mediapipe.python.solutions.drawing_utils']
fig = du.plt.figure          # the stand-in imports the real pyplot now
import matplotlib.pyplot as real
print('same', fig is real.figure, type(sys.modules['matplotlib']).__name__)
print('again', import_mediapipe() is mp)
""")
    assert "pose Pose" in out
    assert "loaded False False False" in out
    assert "standins left False" in out
    assert "same True module" in out
    assert "again True" in out


def test_no_stand_in_for_a_module_already_imported():
    out = _run("""
import matplotlib.pyplot as plt
from core.worker.backends.mp_import import import_mediapipe
mp = import_mediapipe()
print('real', sys.modules['mediapipe.python.solutions.drawing_utils'].plt is plt)
""")
    assert "real True" in out


def test_backend_builds_and_detects_after_the_deferred_import(shared_data):
    out = _run(f"""
from core.worker import video
from core.worker.backends import get_backend
frames = [f.image for f in video.iter_frames({str(shared_data / 'videos' / 'kunkun_dance_864x480_25fps.mp4')!r}, end=0.2)]
b = get_backend('mediapipe')
d = b.process_batch(frames[:2])
b.close()
print('people', [len(x) for x in d], 'matplotlib' in sys.modules)
""")
    assert "people [1, 1] False" in out


def test_two_threads_importing_at_once():
    """core.worker.parallel builds a detector per part on threads: first imports at once all get mediapipe and
    leave no stand-in behind (the import is serialized: one closed-loop job on parts once failed with "cannot
    import name 'pyplot' from 'matplotlib' (unknown location)"; this test did not reproduce that race)."""
    out = _run("""
import threading
from core.worker.backends.mp_import import import_mediapipe, _Deferred
got, errors = [], []
def one():
    try:
        got.append(import_mediapipe().solutions.pose.Pose.__name__)
    except BaseException as e:
        errors.append(repr(e))
ts = [threading.Thread(target=one) for _ in range(4)]
[t.start() for t in ts]; [t.join() for t in ts]
print('got', got, 'errors', errors)
print('standins left', any(isinstance(m, _Deferred) for m in sys.modules.values()))
""")
    assert "got ['Pose', 'Pose', 'Pose', 'Pose'] errors []" in out
    assert "standins left False" in out
