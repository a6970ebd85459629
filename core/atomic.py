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


#: Marker in the names of :class:`OutputSet`'s temporary files (a stale one, left by a killed process, can be
#: recognised and removed: :func:`remove_stale`).
STAGED_MARK = ".anime-mmd-partial-"


class OutputSet:
    """Several output files that appear together, or none of them does.

    Each output is first written to a temporary file beside its destination (:meth:`stage`); :meth:`commit` moves
    them all into place at the end, after every writer has succeeded. Leaving the ``with`` block without
    :meth:`commit` (an error, a cancel) deletes every temporary file, so a failed run leaves nothing behind.
    The temporary names start with a dot, carry :data:`STAGED_MARK` and keep the destination's extension (writers
    that infer the format from it keep working).

    Raises (from :meth:`commit`):
        FileExistsError: a destination appeared meanwhile and ``overwrite`` is off.
        OSError: a move failed (the outputs already moved stay; the others are removed).
    """

    def __init__(self, *, overwrite: bool = False):
        self.overwrite = overwrite
        self._staged: list[tuple[Path, Path]] = []

    def stage(self, path: str | os.PathLike) -> Path:
        """A new temporary path for the final ``path`` (created empty, in the same folder)."""
        path = Path(path)
        fd, name = tempfile.mkstemp(prefix=f".{path.stem}{STAGED_MARK}", suffix=path.suffix or ".tmp",
                                    dir=path.parent)
        os.close(fd)
        tmp = Path(name)
        self._staged.append((tmp, path))
        return tmp

    def commit(self) -> list[Path]:
        """Move every staged file onto its destination; returns the destinations in staging order."""
        if not self.overwrite:
            for _, final in self._staged:
                if final.exists():
                    raise FileExistsError(f"{final} appeared while the job ran; nothing was written")
        done = []
        mode = _default_mode()
        for tmp, final in self._staged:
            os.chmod(tmp, mode)
            os.replace(tmp, final)
            done.append(final)
        self._staged = []
        return done

    def discard(self) -> None:
        """Delete every staged temporary file (idempotent)."""
        for tmp, _ in self._staged:
            tmp.unlink(missing_ok=True)
        self._staged = []

    def __enter__(self) -> "OutputSet":
        return self

    def __exit__(self, *exc) -> None:
        self.discard()


def remove_stale(folder: str | os.PathLike, older_than_s: float = 3600.0, *,
                 patterns: tuple[str, ...] = (f".*{STAGED_MARK}*",)) -> list[Path]:
    """Delete temporary files in ``folder`` older than ``older_than_s`` (left by a killed run): by default
    :class:`OutputSet`'s; ``patterns`` (glob) names others. Returns the removed paths; files that cannot be
    removed are skipped."""
    import time

    out = []
    now = time.time()
    try:
        entries = [p for pattern in patterns for p in Path(folder).glob(pattern)]
    except OSError:
        return out
    for p in entries:
        try:
            if p.is_file() and now - p.stat().st_mtime > older_than_s:
                p.unlink()
                out.append(p)
        except OSError:
            pass
    return out
