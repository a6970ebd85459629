"""Keep third-party native log lines (TensorFlow Lite, absl, glog from mediapipe's C++ graph) off the console.

mediapipe's C++ code writes straight to file descriptor 2 ("INFO: Created TensorFlow Lite XNNPACK delegate",
"W0000 ... inference_feedback_manager.cc ..."), whatever Python's logging says. :func:`quiet_native_logs` points
descriptor 2 at the null device and gives Python's ``sys.stderr`` a private copy of the real stderr, so the
project's own messages, progress bars and tracebacks still show while the libraries' lines do not. The CLI and the
worker call it unless ``--verbose`` (CLI) or ``ANIME_MMD_VERBOSE=1`` (worker) asks for everything.
"""
from __future__ import annotations

import io
import os
import sys

#: Environment variable that keeps the libraries' log lines (the worker's ``--verbose``).
VERBOSE_ENV = "ANIME_MMD_VERBOSE"

_ENV_DEFAULTS = {"GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "3", "ABSL_MIN_LOG_LEVEL": "2"}


def verbose_requested() -> bool:
    """Whether ``ANIME_MMD_VERBOSE`` is set to something other than empty / 0."""
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def quiet_native_logs(verbose: bool = False) -> bool:
    """Silence native log output for the rest of the process (idempotent). Returns True when it did.

    Sets the log-level variables the libraries read at start-up, then, unless ``verbose``, moves descriptor 2 to
    the null device after giving ``sys.stderr`` a duplicate of it. Does nothing when stderr has no descriptor.
    """
    for k, v in _ENV_DEFAULTS.items():
        os.environ.setdefault(k, v)
    if verbose or getattr(quiet_native_logs, "_done", False):
        return False
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        return False
    sys.stderr = io.TextIOWrapper(os.fdopen(saved, "wb", buffering=0), encoding=sys.stderr.encoding or "utf-8",
                                  errors="backslashreplace", line_buffering=True, write_through=True)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    quiet_native_logs._done = True  # type: ignore[attr-defined]
    return True
