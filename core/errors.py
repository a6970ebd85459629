"""Errors the pipeline reports to users (CLI exit message, worker ``error`` line, Blender report)."""
from __future__ import annotations

#: Error codes, stable across the CLI, the worker protocol and the add-on.
CODES = ("bad_input", "no_frames", "no_detection", "missing_dependency", "bad_model", "exists", "cancelled", "internal")


class PipelineError(RuntimeError):
    """A failure a user can act on: ``code`` is one of :data:`CODES`, ``message`` says what to do."""

    def __init__(self, code: str, message: str):
        if code not in CODES:
            raise ValueError(f"unknown error code {code!r}")
        self.code = code
        self.message = message
        super().__init__(message)  # str() is the message alone: wrappers never print the code twice

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r})"


class ModelError(PipelineError, ValueError):
    """The target model cannot take the motion (a required bone is missing, a broken hierarchy): code
    ``bad_model``. Also a ``ValueError``, for callers that treat any invalid argument alike."""

    def __init__(self, message: str):
        super().__init__("bad_model", message)


def os_error_message(e: OSError) -> str:
    """One line for an operating-system error (the CLI, the worker and the add-on all report them so): the file
    and the system's reason, e.g. ``/data/out: Permission denied``."""
    what = e.strerror or str(e) or type(e).__name__
    return f"{e.filename}: {what}" if e.filename is not None else what
