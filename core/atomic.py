"""Write a file so that it appears whole or not at all (standard library only).

Every output of the project (VMD, pose ``.npz``, overlay video, downloaded weights) goes through
:func:`atomic_output`: the content is written to a temporary file in the destination folder and moved over the
destination with ``os.replace`` (atomic on POSIX and Windows) only when the writer finished without error.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_output(path: str | os.PathLike, *, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on normal exit move it onto ``path``, on error delete it.

    The temporary name starts with a dot and ends with ``suffix`` (give the real extension when a writer infers the
    format from it, e.g. ``".tmp.mp4"``). The file gets the usual permissions (``0o666`` less the umask), not the
    private ``0o600`` of :func:`tempfile.mkstemp`. The caller decides beforehand whether ``path`` may be replaced.

    Raises:
        OSError: the folder is missing or not writable (raised before anything is written).
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
