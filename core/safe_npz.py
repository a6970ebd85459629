"""Read ``.npz`` / ``.npy`` / ``.pkl`` files that hold pickled *object* arrays without general unpickling (numpy + stdlib).

detectron2 output written by VideoPose3D's ``inference/infer_video_d2.py`` (``boxes``, ``keypoints``: one list per
frame), VideoPose3D's ``data_2d_custom_*.npz`` (``positions_2d``: a dict of lists of arrays) and detectron2 model-zoo
weights (``model_final_*.pkl``: a dict of arrays) are Python pickles. ``np.load(..., allow_pickle=True)`` or
``pickle.load`` would run whatever callable such a file names (``os.system`` included). Here the pickle stream is read
by :class:`RestrictedUnpickler`, whose ``find_class`` resolves only:

* numpy's array and scalar reconstruction: ``numpy.core.multiarray._reconstruct`` / ``scalar`` (and the
  ``numpy._core`` spelling of numpy >= 2), ``numpy.core.numeric._frombuffer``, ``numpy.ndarray``, ``numpy.dtype``;
* plain containers and values: ``builtins`` ``list``, ``dict``, ``tuple``, ``set``, ``frozenset``, ``bytes``,
  ``bytearray``, ``str``, ``int``, ``float``, ``complex``, ``bool``; ``collections.OrderedDict``;
* ``_codecs.encode`` (Python 2 pickles store byte strings through it).

Anything else (``os.system``, ``builtins.eval``, ``copyreg._reconstructor`` for arbitrary classes...) raises
:class:`UnsafePickleError` naming the refused global. Persistent ids are refused too. The ``.npy`` header is parsed
with ``numpy.lib.format`` (format spec: numpy NEP 1, "A Simple File Format for NumPy Arrays").
"""
from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

__all__ = ["UnsafePickleError", "RestrictedUnpickler", "restricted_loads", "load_npz", "load_npy", "load_pickle"]


class UnsafePickleError(ValueError):
    """A pickle names a global (function or class) outside the allow-list, or is not a valid pickle."""


_NUMPY_ALLOWED: dict[tuple[str, str], tuple[str, str]] = {}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _NUMPY_ALLOWED[(_mod, "_reconstruct")] = ("multiarray", "_reconstruct")
    _NUMPY_ALLOWED[(_mod, "scalar")] = ("multiarray", "scalar")
for _mod in ("numpy.core.numeric", "numpy._core.numeric"):
    _NUMPY_ALLOWED[(_mod, "_frombuffer")] = ("numeric", "_frombuffer")
_NUMPY_ALLOWED[("numpy", "ndarray")] = ("numpy", "ndarray")
_NUMPY_ALLOWED[("numpy", "dtype")] = ("numpy", "dtype")

_BUILTINS_ALLOWED = frozenset(
    ("list", "dict", "tuple", "set", "frozenset", "bytes", "bytearray", "str", "int", "float", "complex", "bool")
)


def _numpy_core_module(kind: str):
    """numpy's ``multiarray`` / ``numeric`` module under whichever name this numpy uses (``_core`` from 2.0)."""
    import importlib

    for base in ("numpy._core", "numpy.core"):
        try:
            return importlib.import_module(f"{base}.{kind}")
        except ImportError:
            continue
    raise UnsafePickleError(f"this numpy has no {kind} module")  # pragma: no cover - every numpy has one


def _resolve_allowed(module: str, name: str) -> Any:
    """The object for an allow-listed global, or ``None`` when it is not allow-listed."""
    if module in ("builtins", "__builtin__") and name in _BUILTINS_ALLOWED:
        import builtins

        return getattr(builtins, name)
    if (module, name) == ("collections", "OrderedDict"):
        import collections

        return collections.OrderedDict
    if (module, name) == ("_codecs", "encode"):
        import codecs

        return codecs.encode
    target = _NUMPY_ALLOWED.get((module, name))
    if target is None:
        return None
    where, attr = target
    if where == "numpy":
        return getattr(np, attr)
    return getattr(_numpy_core_module(where), attr)


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that builds only numpy arrays, numpy scalars and plain containers (see module docstring).

    Raises:
        UnsafePickleError: from ``load()`` when the stream names a global outside the allow-list or uses persistent
            ids.
    """

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102 - documented on the class
        obj = _resolve_allowed(module, name)
        if obj is None:
            raise UnsafePickleError(
                f"refusing to unpickle global {module}.{name}: only numpy arrays and plain containers "
                "(list, dict, tuple, numbers, strings) may appear in this file"
            )
        return obj

    def persistent_load(self, pid: Any) -> Any:  # noqa: D102
        raise UnsafePickleError(f"refusing to unpickle persistent id {pid!r}")


def _restricted_load(fp: BinaryIO, what: str) -> Any:
    try:
        return RestrictedUnpickler(fp, encoding="latin1").load()
    except UnsafePickleError as e:
        raise UnsafePickleError(f"{what}: {e}") from None
    except (pickle.UnpicklingError, EOFError, TypeError, ValueError, AttributeError, IndexError, KeyError,
            OverflowError, MemoryError, UnicodeDecodeError) as e:
        raise UnsafePickleError(f"{what}: not a valid pickle of arrays/containers ({type(e).__name__}: {e})") from e


def restricted_loads(data: bytes, what: str = "pickle") -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler` (``encoding='latin1'`` for Python 2 pickles).

    Raises:
        UnsafePickleError: a refused global, or a malformed stream (``what`` prefixes the message).
    """
    return _restricted_load(io.BytesIO(data), what)


def _read_npy_stream(fp: BinaryIO, what: str) -> np.ndarray:
    """Read one ``.npy`` stream: header via ``numpy.lib.format``, object payloads via the restricted unpickler."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(fp)
        else:
            # Version 3.0 (utf-8 field names) has no public header reader; numpy's private one is stable.
            shape, fortran, dtype = fmt._read_array_header(fp, version)  # type: ignore[attr-defined]
    except ValueError as e:
        raise ValueError(f"{what}: not a .npy array ({e})") from e
    if not dtype.hasobject:
        count = int(np.prod(shape, dtype=np.int64))
        data = fp.read(count * dtype.itemsize)
        if len(data) != count * dtype.itemsize:
            raise ValueError(f"{what}: truncated array data ({len(data)} of {count * dtype.itemsize} bytes)")
        arr = np.frombuffer(data, dtype=dtype, count=count).copy()
        if fortran:
            return arr.reshape(shape[::-1]).transpose()
        return arr.reshape(shape)
    arr = _restricted_load(fp, what)
    if not isinstance(arr, np.ndarray):
        raise UnsafePickleError(f"{what}: the pickle holds a {type(arr).__name__}, not an array")
    if arr.shape != tuple(shape):
        raise ValueError(f"{what}: header says shape {tuple(shape)} but the pickle holds {arr.shape}")
    return arr


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read every array of a ``.npz`` file, object arrays included, without general unpickling.

    Args:
        path: an ``.npz`` (zip of ``.npy`` members, compressed or not).
    Returns:
        ``{name: array}`` with the ``.npy`` suffix removed from member names; object arrays hold only what
        :class:`RestrictedUnpickler` allows.
    Raises:
        FileNotFoundError: no such file.
        ValueError: not a zip of ``.npy`` members (message names the file and member).
        UnsafePickleError (a ValueError): a member's pickle names a refused global.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    out: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for member in zf.namelist():
                key = member[:-4] if member.endswith(".npy") else member
                with zf.open(member) as fp:
                    out[key] = _read_npy_stream(fp, f"{path}[{member}]")
    except zipfile.BadZipFile as e:
        raise ValueError(f"{path}: not an .npz (zip) file ({e})") from e
    return out


def load_npy(path: str | os.PathLike) -> np.ndarray:
    """Read one ``.npy`` file (object arrays through the restricted unpickler). Errors as :func:`load_npz`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, "rb") as fp:
        return _read_npy_stream(fp, str(path))


def load_pickle(path: str | os.PathLike) -> Any:
    """Unpickle a whole file with :class:`RestrictedUnpickler` (e.g. a detectron2 ``model_final_*.pkl``:
    ``{"model": {name: ndarray}, "__author__": str}``).

    Raises:
        FileNotFoundError, UnsafePickleError.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, "rb") as fp:
        return _restricted_load(fp, str(path))
