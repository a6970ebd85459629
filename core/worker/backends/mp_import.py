"""Import mediapipe without the plotting and audio packages it imports at start-up but never uses here.

``import mediapipe`` runs ``mediapipe.python.solutions.drawing_utils``, which imports ``matplotlib.pyplot`` (for its
``plot_landmarks`` helper), and ``mediapipe.tasks.python.audio``, which imports ``sounddevice`` (PortAudio, for
microphone capture). The pose and holistic solutions this project runs need neither, and the two imports cost about
0.4 CPU seconds of every run (0.35 s for pyplot alone, on the shared 2-core machine: about 5 % of the detector's own
time on a 14 s clip). :func:`import_mediapipe` imports mediapipe with stand-ins for those modules: a stand-in imports
the real module the first time one of its attributes is read (so ``drawing_utils.plot_landmarks`` still works), and
the stand-ins are taken out of ``sys.modules`` again once mediapipe is in, so any later ``import matplotlib`` is the
ordinary one. A module that is already imported, or not installed, gets no stand-in.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types

#: Modules mediapipe imports at start-up that the pose/holistic solutions never use (parents before children).
DEFERRED = ("matplotlib", "matplotlib.pyplot", "sounddevice")

_lock = threading.Lock()
#: Held for the whole of :func:`import_mediapipe`: two threads importing at once (``core.worker.parallel`` builds a
#: detector per part) would each place stand-ins and take the other's out mid-import.
_import_lock = threading.Lock()


class _Deferred(types.ModuleType):
    """A stand-in for a module: the first attribute read imports the real one and forwards to it."""

    def __init__(self, name: str):
        super().__init__(name)
        self.__dict__["_deferred_real"] = None

    def __getattr__(self, attr: str):  # only called for attributes the stand-in does not have
        real = self.__dict__["_deferred_real"]
        if real is None:
            with _lock:
                for name, mod in list(sys.modules.items()):  # a lookup during the window: drop every stand-in
                    if isinstance(mod, _Deferred) and name.split(".")[0] == self.__name__.split(".")[0]:
                        del sys.modules[name]
                real = importlib.import_module(self.__name__)
            self.__dict__["_deferred_real"] = real
        return getattr(real, attr)


def _installed(name: str) -> bool:
    top = name.split(".")[0]
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False


def import_mediapipe():
    """``import mediapipe`` with :data:`DEFERRED` stood in for during the import; returns the module.

    Raises:
        ImportError: mediapipe is not installed.
    """
    with _import_lock:
        return _import()


def _import():
    if "mediapipe" in sys.modules:  # already in (or marked missing with None: then this raises ImportError)
        import mediapipe

        return mediapipe
    placed: dict[str, _Deferred] = {}
    wanted = [n for n in DEFERRED if n.split(".")[0] not in sys.modules and _installed(n)]  # before any stand-in
    with _lock:
        for name in wanted:
            placed[name] = sys.modules[name] = _Deferred(name)
            parent, _, child = name.rpartition(".")
            if parent in placed:
                placed[parent].__dict__[child] = placed[name]
    try:
        import mediapipe
    finally:
        with _lock:
            for name, mod in placed.items():
                if sys.modules.get(name) is mod:
                    del sys.modules[name]
    return mediapipe
