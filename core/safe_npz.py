"""Read untrusted ``.npz`` / ``.npy`` / ``.pkl`` files, pickled *object* arrays included, without general unpickling
and with a bounded memory cost (numpy + stdlib).

detectron2 output written by VideoPose3D's ``inference/infer_video_d2.py`` (``boxes``, ``keypoints``: one list per
frame), VideoPose3D's ``data_2d_custom_*.npz`` (``positions_2d``: a dict of lists of arrays) and detectron2 model-zoo
weights (``model_final_*.pkl``: a dict of arrays) are Python pickles. ``np.load(..., allow_pickle=True)`` or
``pickle.load`` would run whatever callable such a file names (``os.system`` included). Here the pickle stream is read
by :class:`RestrictedUnpickler`, whose ``find_class`` resolves only:

* numpy's array and scalar reconstruction: ``numpy.core.multiarray._reconstruct`` / ``scalar`` (and the
  ``numpy._core`` spelling of numpy >= 2), ``numpy.core.numeric._frombuffer``, ``numpy.ndarray``, ``numpy.dtype``;
* plain containers and values: ``builtins`` ``list``, ``dict``, ``tuple``, ``set``, ``frozenset``, ``bytes``,
  ``bytearray``, ``str``, ``int``, ``float``, ``complex``, ``bool``; ``collections.OrderedDict``;
* ``_codecs.encode`` (Python 2 pickles store byte strings through it), for text codecs only.

Anything else (``os.system``, ``builtins.eval``, ``copyreg._reconstructor`` for arbitrary classes...) raises
:class:`UnsafePickleError` naming the refused global. Persistent ids, ``NEWOBJ`` and ``BUILD`` on anything but an array
or a dtype are refused too. The ``.npy`` header is parsed with ``numpy.lib.format`` (format spec: numpy NEP 1, "A
Simple File Format for NumPy Arrays").

**Memory limits.** A 300-byte pickle can ask an allow-listed callable for 3 GiB (``bytearray(3 << 30)``), and a 3 MB
zip can inflate to 3 GiB of zeros. Every read is therefore held to ``max_bytes`` (default :data:`DEFAULT_MAX_BYTES`,
1 GiB; the environment variable ``ANIME_MMD_MAX_INPUT_BYTES`` or the ``max_bytes`` argument changes it):

* **decompressed size**: the zip members' declared sizes must sum to at most ``max_bytes`` (checked from the central
  directory before anything is inflated), only stored and deflated members are read (zipfile inflates bzip2/lzma
  without an output bound), and no member is ever read past its declared size, so a header that lies cannot make
  the reader go further; an ``.npy`` header may not declare more data than its member or file holds;
* **what the unpickler builds**: every allocation an allow-listed callable can be asked for is checked *before* the
  call and charged to a per-file budget of ``max_bytes``: arrays (``prod(shape) * itemsize``, views included, so a
  zero-stride view of 8 bytes cannot pose as 2 GiB), numpy scalars, ``bytes``/``bytearray``/``str`` (only from an
  existing bytes or str: never ``bytearray(n)``, never from an iterable), and container copies (``list(x)`` etc.,
  8 bytes per item, 64 for sets and dicts);
* **what the opcodes build**: each opcode can make at most one object of a few hundred bytes (an empty set is the
  largest, 216 bytes) or add one item to a container, so a file may hold at most ``max_bytes // 256`` opcodes; a
  memo index may not exceed the opcodes read so far (``LONG_BINPUT 2**28`` would otherwise grow the C unpickler's
  memo table to 4 GiB), and a length prefix (``BINBYTES8``, ``FRAME``, ``BYTEARRAY8``...) may not exceed the bytes
  left in the stream, so nothing is allocated for data that is not there.

So one file costs at most about ``3 * max_bytes`` (its decompressed data, what the unpickler builds, the opcodes'
objects). The default, 1 GiB, is 38 times the largest pose file the project writes (a 10-minute 60 fps video:
36,000 frames x 749 bytes = 27 MB) and 4 times a detectron2 R-101 model-zoo ``.pkl`` (about 250 MB).

Every refusal is a :class:`SafeLoadError` (a ``PipelineError("bad_input", ...)`` and a ``ValueError``) whose one-line
message names the file (and member) and, for a limit, the limit and how to raise it.
"""
from __future__ import annotations

import codecs
import collections
import io
import math
import operator
import os
import pickle
import struct
import zipfile
from pathlib import Path
from zlib import error as zlib_error
from typing import Any, BinaryIO

import numpy as np

from .errors import PipelineError

__all__ = ["SafeLoadError", "UnsafePickleError", "LimitExceededError", "RestrictedUnpickler", "restricted_loads",
           "load_npz", "load_npy", "load_pickle", "DEFAULT_MAX_BYTES", "MAX_BYTES_ENV", "default_max_bytes"]

#: Default cap (bytes) on the decompressed size of a file and on what its pickles may build: 1 GiB.
DEFAULT_MAX_BYTES = 1 << 30
#: Environment variable that overrides :data:`DEFAULT_MAX_BYTES` (a whole number of bytes).
MAX_BYTES_ENV = "ANIME_MMD_MAX_INPUT_BYTES"
#: Budget charged per pickle opcode (an upper estimate of the object one opcode can make).
_OP_COST = 256
_CHUNK = 8 << 20


class SafeLoadError(PipelineError, ValueError):
    """A file this module refuses or cannot read: ``code`` is ``"bad_input"``, the message names the file."""

    def __init__(self, message: str):
        super().__init__("bad_input", message)


class UnsafePickleError(SafeLoadError):
    """A pickle names a global (function or class) outside the allow-list, uses a refused opcode, or is malformed."""


class LimitExceededError(SafeLoadError):
    """A file asks for more memory than the limit allows (see the module docstring, "Memory limits")."""


def _fmt(n: int) -> str:
    return f"{n:,} bytes"


def default_max_bytes() -> int:
    """The limit in force: ``$ANIME_MMD_MAX_INPUT_BYTES`` when set, else :data:`DEFAULT_MAX_BYTES`.

    Raises:
        SafeLoadError: the variable is not a positive whole number.
    """
    raw = os.environ.get(MAX_BYTES_ENV)
    if raw is None or raw.strip() == "":
        return DEFAULT_MAX_BYTES
    try:
        value = int(raw.strip().replace("_", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise SafeLoadError(f"{MAX_BYTES_ENV}={raw!r}: give the limit as a positive whole number of bytes "
                            f"(e.g. {DEFAULT_MAX_BYTES} for 1 GiB)")
    return value


class _Budget:
    """What one file may cost: decompressed bytes, bytes built by the unpickler, opcodes (module docstring)."""

    def __init__(self, what: str, max_bytes: int | None):
        self.what = what
        self.max = default_max_bytes() if max_bytes is None else int(max_bytes)
        if self.max <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.built = 0
        self.ops = 0
        self.max_ops = max(self.max // _OP_COST, 1)

    def refuse(self, what: str, why: str):
        raise LimitExceededError(
            f"{what}: refusing to read it: {why}, over the limit of {_fmt(self.max)} for one file (a safeguard "
            f"against files built to exhaust memory); if you trust the file, raise the limit with the environment "
            f"variable {MAX_BYTES_ENV}=<bytes>")

    def charge(self, nbytes: int, what: str, for_what: str) -> None:
        self.built += int(nbytes)
        if self.built > self.max:
            self.refuse(what, f"its pickle asks for {for_what} ({_fmt(int(nbytes))}; {_fmt(self.built)} in all)")


# ------------------------------------------------------------------------------------------- bounded streams
class _Bounded:
    """A read-only view of ``size`` bytes of ``fp`` that refuses any read past them before allocating anything."""

    def __init__(self, fp: BinaryIO, size: int, what: str):
        self._fp = fp
        self.left = int(size)
        self.size = int(size)
        self.what = what

    @property
    def pos(self) -> int:
        return self.size - self.left

    def _need(self, n: int) -> None:
        if n > self.left:
            raise SafeLoadError(f"{self.what}: asks for {_fmt(n)} at byte {self.pos} but only {_fmt(self.left)} "
                                f"follow (truncated or corrupt)")

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self.left
        self._need(n)
        out = self._fp.read(n)
        if len(out) > n:  # pragma: no cover - no reader returns more than asked
            raise SafeLoadError(f"{self.what}: the stream returned more than was asked for")
        self.left -= len(out)
        return out

    def readinto(self, b) -> int:
        view = memoryview(b).cast("B")
        data = self.read(len(view))
        view[:len(data)] = data
        return len(data)

    def readline(self, limit: int = -1) -> bytes:
        n = self.left if limit is None or limit < 0 else min(limit, self.left)
        out = self._fp.readline(n)
        self.left -= len(out)
        return out


# ------------------------------------------------------------------------------------------- allow-list
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
_TEXT_CODECS = frozenset(("latin1", "latin-1", "iso-8859-1", "iso8859-1", "l1", "utf-8", "utf8", "ascii"))


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
        return collections.OrderedDict
    if (module, name) == ("_codecs", "encode"):
        return codecs.encode
    target = _NUMPY_ALLOWED.get((module, name))
    if target is None:
        return None
    where, attr = target
    if where == "numpy":
        return getattr(np, attr)
    return getattr(_numpy_core_module(where), attr)


def _shape_of(shape) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)) or len(shape) > 64:
        raise UnsafePickleError(f"array shape {type(shape).__name__} is not a tuple of at most 64 sizes")
    try:
        dims = tuple(operator.index(d) for d in shape)
    except TypeError:
        raise UnsafePickleError("array shape holds a value that is not a whole number") from None
    if any(d < 0 for d in dims):
        raise UnsafePickleError(f"negative array size in shape {dims}")
    return dims


def _array_cost(shape, dtype) -> tuple[tuple[int, ...], int]:
    """(shape, bytes) of an array; every element costs at least one byte, so zero-size dtypes are bounded too."""
    dims = _shape_of(shape)
    try:
        itemsize = np.dtype(dtype).itemsize
    except (TypeError, ValueError) as e:
        raise UnsafePickleError(f"not a valid dtype ({e})") from None
    return dims, math.prod(dims) * max(itemsize, 1)


_RECONSTRUCT = _resolve_allowed("numpy.core.multiarray", "_reconstruct")
_SCALAR = _resolve_allowed("numpy.core.multiarray", "scalar")
_FROMBUFFER = _resolve_allowed("numpy.core.numeric", "_frombuffer")
_TEXT_TYPES = (bytes, bytearray, str)
_CONTAINER_TYPES = (list, tuple, set, frozenset, dict, collections.OrderedDict)
_NUMBER_TYPES = (int, float, complex, bool)


def _one_of(obj, candidates) -> bool:
    """Identity membership (``in`` would call ``==``, which an array answers elementwise)."""
    return any(obj is c for c in candidates)


def _sized_container(x) -> int:
    if isinstance(x, (list, tuple, set, frozenset, dict, str, bytes, bytearray, collections.OrderedDict)):
        return len(x)
    raise UnsafePickleError(f"refusing to build a container from a {type(x).__name__} (only from a list, tuple, "
                            "set, dict, str or bytes)")


class RestrictedUnpickler(pickle._Unpickler):
    """Unpickler that builds only numpy arrays, numpy scalars and plain containers, within a memory budget.

    It is the pure-Python ``pickle._Unpickler`` with its allocating opcodes and calls checked first (see the module
    docstring). Use :func:`restricted_loads` / :func:`load_pickle` rather than this class directly.

    Args:
        file: a binary stream (read through a bounded view: nothing is read past ``size``).
        what: the file (and member) named in messages.
        budget: the per-file :class:`_Budget`; a new one with ``max_bytes`` when None.
        size: the bytes the pickle may occupy (default: all that is left in ``file``, when it can tell).

    Raises:
        UnsafePickleError / LimitExceededError: from ``load()``.
    """

    def __init__(self, file: BinaryIO, what: str = "pickle", *, budget: "_Budget | None" = None,
                 max_bytes: int | None = None, size: int | None = None, encoding: str = "latin1"):
        if not isinstance(file, _Bounded):
            if size is None:
                size = _remaining(file)
            file = _Bounded(file, size, what)
        self._what = what
        self._budget = budget if budget is not None else _Budget(what, max_bytes)
        super().__init__(file, encoding=encoding)

    # ---------------------------------------------------------------- globals and calls
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

    def _charge(self, nbytes: int, for_what: str) -> None:
        self._budget.charge(nbytes, self._what, for_what)

    def _call(self, func, args) -> Any:
        """``func(*args)`` for an allow-listed ``func``, after checking what it would allocate."""
        if not isinstance(args, tuple):
            raise UnsafePickleError(f"call arguments are a {type(args).__name__}, not a tuple")
        name = getattr(func, "__name__", type(func).__name__)
        if func is np.ndarray:
            if not args:
                raise UnsafePickleError("numpy.ndarray() needs a shape")
            dims, cost = _array_cost(args[0], args[1] if len(args) > 1 else float)
            self._charge(cost, f"a {dims} array")
        elif func is _RECONSTRUCT:
            if len(args) != 3 or args[0] is not np.ndarray:
                raise UnsafePickleError("numpy _reconstruct may only build a plain numpy.ndarray")
            dims, cost = _array_cost(args[1], args[2])
            self._charge(cost, f"a {dims} array")
        elif func is _SCALAR:
            if not args or not isinstance(args[0], np.dtype):
                raise UnsafePickleError("numpy scalar() needs a dtype")
            self._charge(max(args[0].itemsize, 1), f"a {args[0]} scalar")
        elif func is _FROMBUFFER:
            if len(args) != 4:
                raise UnsafePickleError("numpy _frombuffer() takes (buffer, dtype, shape, order)")
            dims, cost = _array_cost(args[2], args[1])
            self._charge(cost, f"a {dims} array")
        elif func is np.dtype:
            pass  # a dtype allocates nothing; arrays of it are charged by their itemsize
        elif _one_of(func, _TEXT_TYPES):
            n = self._text_cost(func, args)
            self._charge(n, f"a {name} of {n:,} bytes")
        elif func is codecs.encode:
            if not args or not isinstance(args[0], str) or len(args) > 3:
                raise UnsafePickleError("_codecs.encode() may only encode a str")
            enc = args[1] if len(args) > 1 else "utf-8"
            if not isinstance(enc, str) or enc.lower().replace("_", "-") not in _TEXT_CODECS:
                raise UnsafePickleError(f"_codecs.encode() with codec {enc!r}: only text codecs are allowed")
            self._charge(4 * len(args[0]), f"an encoded string of {len(args[0]):,} characters")
        elif _one_of(func, _CONTAINER_TYPES):
            if len(args) > 1:
                raise UnsafePickleError(f"{name}() takes at most one argument here")
            n = _sized_container(args[0]) if args else 0
            per = 8 if _one_of(func, (list, tuple)) else 64
            self._charge(per * n, f"a {name} of {n:,} items")
        elif _one_of(func, _NUMBER_TYPES):
            if len(args) > 2 or not all(isinstance(a, (int, float, str, bytes, bool)) and not
                                        (isinstance(a, (str, bytes)) and len(a) > 10_000) for a in args):
                raise UnsafePickleError(f"{name}() with arguments other than numbers or short strings")
        else:
            raise UnsafePickleError(f"refusing to call {type(func).__name__} {name!r}")
        return func(*args)

    @staticmethod
    def _text_cost(func, args) -> int:
        name = func.__name__
        if not args:
            return 0
        if len(args) > 3:
            raise UnsafePickleError(f"{name}() takes at most 3 arguments")
        src = args[0]
        if isinstance(src, (bytes, bytearray)):
            return len(src) * (4 if func is str else 1)
        if isinstance(src, str) and (len(args) > 1 or func is str):
            return len(src) * 4
        raise UnsafePickleError(f"refusing {name}({type(src).__name__}): a pickle may only copy an existing bytes "
                                f"or str this way, never ask for {name}(n) or {name}(iterable)")

    # ---------------------------------------------------------------- opcodes
    def _op(self) -> None:
        b = self._budget
        b.ops += 1
        if b.ops > b.max_ops:
            b.refuse(self._what, f"its pickles hold more than {b.max_ops:,} opcodes (each can make an object of "
                                 f"up to {_OP_COST} bytes)")

    def _memo_index(self, i: int) -> None:
        if i > self._budget.ops:
            raise UnsafePickleError(f"memo index {i:,} is beyond the {self._budget.ops:,} opcodes read so far "
                                    "(no pickler writes that; a hostile file would grow the memo table)")

    def load_put(self):
        i = int(self.readline()[:-1])
        if i < 0:
            raise UnsafePickleError("negative PUT argument")
        self._memo_index(i)
        self.memo[i] = self.stack[-1]

    def load_binput(self):
        i = self.read(1)[0]
        self._memo_index(i)
        self.memo[i] = self.stack[-1]

    def load_long_binput(self):
        (i,) = struct.unpack("<I", self.read(4))
        self._memo_index(i)
        self.memo[i] = self.stack[-1]

    def load_bytearray8(self):
        (n,) = struct.unpack("<Q", self.read(8))
        self._charge(n, f"a bytearray of {n:,} bytes")
        self.append(bytearray(self.read(n)))  # read() refuses first when fewer than n bytes follow

    def load_reduce(self):
        stack = self.stack
        args = stack.pop()
        stack[-1] = self._call(stack[-1], args)

    def _instantiate(self, klass, args):
        self.append(self._call(klass, tuple(args)))

    def load_newobj(self):
        raise UnsafePickleError("refusing NEWOBJ (object construction without a reduce call)")

    def load_build(self):
        stack = self.stack
        state = stack.pop()
        inst = stack[-1]
        if isinstance(inst, np.ndarray):
            self._check_array_state(inst, state)
        elif not isinstance(inst, np.dtype):
            raise UnsafePickleError(f"refusing to set the state of a {type(inst).__name__} (only arrays and dtypes)")
        inst.__setstate__(state)

    def _check_array_state(self, inst: np.ndarray, state) -> None:
        """ndarray.__setstate__((version, shape, dtype, is_fortran, data)): data must fit the shape exactly."""
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise UnsafePickleError("array state is not a (version, shape, dtype, fortran, data) tuple")
        shape, dtype, data = state[-4], state[-3], state[-1]
        if not isinstance(dtype, np.dtype):
            raise UnsafePickleError(f"array state dtype is a {type(dtype).__name__}")
        dims, cost = _array_cost(shape, dtype)
        n = math.prod(dims)
        if dtype.hasobject:
            if not isinstance(data, list) or len(data) != n:
                raise UnsafePickleError(f"object array state for shape {dims} holds "
                                        f"{len(data) if isinstance(data, list) else type(data).__name__} items")
        elif not isinstance(data, (bytes, bytearray, str)) or len(data) != n * dtype.itemsize:
            size = len(data) if isinstance(data, (bytes, bytearray, str)) else type(data).__name__
            raise UnsafePickleError(f"array state for shape {dims} {dtype} holds {size} bytes, not "
                                    f"{n * dtype.itemsize:,}")
        self._charge(cost, f"a {dims} array")

    dispatch = {}
    for _code, _f in pickle._Unpickler.dispatch.items():
        _f = {pickle.PUT[0]: load_put, pickle.BINPUT[0]: load_binput, pickle.LONG_BINPUT[0]: load_long_binput,
              pickle.BYTEARRAY8[0]: load_bytearray8, pickle.REDUCE[0]: load_reduce, pickle.NEWOBJ[0]: load_newobj,
              pickle.NEWOBJ_EX[0]: load_newobj, pickle.BUILD[0]: load_build}.get(_code, _f)

        def _counted(self, _f=_f):
            self._op()
            _f(self)

        dispatch[_code] = _counted
    del _code, _f, _counted


def _remaining(fp) -> int:
    """Bytes left in a seekable stream (or a huge number when it cannot tell: reads stay bounded by the data)."""
    try:
        here = fp.tell()
        end = fp.seek(0, io.SEEK_END)
        fp.seek(here)
        return end - here
    except (AttributeError, OSError, ValueError):
        return 1 << 62


_PICKLE_ERRORS = (pickle.UnpicklingError, EOFError, TypeError, ValueError, AttributeError, IndexError, KeyError,
                  OverflowError, MemoryError, UnicodeDecodeError, struct.error, RecursionError)


def _restricted_load(fp, what: str, budget: _Budget, size: int | None = None) -> Any:
    try:
        return RestrictedUnpickler(fp, what, budget=budget, size=size).load()
    except SafeLoadError as e:
        msg = e.message if e.message.startswith(what) else f"{what}: {e.message}"
        raise type(e)(msg) from None
    except _PICKLE_ERRORS as e:
        raise UnsafePickleError(f"{what}: not a valid pickle of arrays/containers ({type(e).__name__}: {e})") from e


def restricted_loads(data: bytes, what: str = "pickle", *, max_bytes: int | None = None) -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler` (``encoding='latin1'`` for Python 2 pickles).

    Raises:
        UnsafePickleError: a refused global or opcode, or a malformed stream (``what`` prefixes the message).
        LimitExceededError: the pickle asks for more than ``max_bytes`` (default :func:`default_max_bytes`).
    """
    return _restricted_load(io.BytesIO(data), what, _Budget(what, max_bytes), size=len(data))


# ------------------------------------------------------------------------------------------- .npy streams
def _read_npy_stream(fp: _Bounded, what: str, budget: _Budget, allow_pickle: bool) -> np.ndarray:
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
    except SafeLoadError as e:
        raise SafeLoadError(f"{e.message} (in the .npy header)") from None
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError, struct.error) as e:
        raise SafeLoadError(f"{what}: not a .npy array ({type(e).__name__}: {e})") from None
    if dtype.subdtype is not None:  # a header may name a subarray dtype: np.load expands it into the shape
        dtype, sub = dtype.subdtype
        shape = tuple(shape) + tuple(sub)
    dims, cost = _array_cost(shape, dtype)
    if dtype.hasobject:
        if not allow_pickle:
            raise SafeLoadError(f"{what}: an object array (a pickle), which this kind of file never holds; it was "
                                "not written by this program")
        budget.charge(8 * math.prod(dims), what, f"an object array of shape {dims}")
        arr = _restricted_load(fp, what, budget)
        if not isinstance(arr, np.ndarray):
            raise UnsafePickleError(f"{what}: the pickle holds a {type(arr).__name__}, not an array")
        if arr.shape != dims:
            raise SafeLoadError(f"{what}: header says shape {dims} but the pickle holds {arr.shape}")
        return arr
    nbytes = math.prod(dims) * dtype.itemsize
    if cost > fp.left:
        raise SafeLoadError(f"{what}: header declares a {dims} {dtype} array ({_fmt(nbytes)}) but only "
                            f"{_fmt(fp.left)} of data follow (truncated or corrupt)")
    arr = (np.empty if dtype.itemsize else np.zeros)(math.prod(dims), dtype=dtype)
    if nbytes:
        flat = arr.view(np.uint8)
        done = 0
        while done < nbytes:
            chunk = fp.read(min(_CHUNK, nbytes - done))
            if not chunk:
                raise SafeLoadError(f"{what}: truncated array data ({done} of {nbytes} bytes)")
            flat[done:done + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
            done += len(chunk)
    if fortran:
        return arr.reshape(dims[::-1]).transpose()
    return arr.reshape(dims)


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as e:
        raise SafeLoadError(f"{path}: not an .npz (zip) file ({e})") from e


def load_npz(path: str | os.PathLike, *, max_bytes: int | None = None,
             allow_pickle: bool = True) -> dict[str, np.ndarray]:
    """Read every array of a ``.npz`` file, object arrays included, without general unpickling, within limits.

    Args:
        path: an ``.npz`` (zip of ``.npy`` members, stored or deflated).
        max_bytes: the limit of the module docstring ("Memory limits"); default :func:`default_max_bytes`.
        allow_pickle: False refuses object (pickled) arrays outright (pose files never hold any).

    Returns:
        ``{name: array}`` with the ``.npy`` suffix removed from member names; object arrays hold only what
        :class:`RestrictedUnpickler` allows.

    Raises:
        FileNotFoundError: no such file.
        SafeLoadError (a PipelineError "bad_input" and a ValueError): not a zip of ``.npy`` members, a truncated or
            corrupt member (message names the file and member); its subclasses UnsafePickleError (a refused global
            or opcode) and LimitExceededError (the file asks for more than ``max_bytes``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    budget = _Budget(str(path), max_bytes)
    out: dict[str, np.ndarray] = {}
    with _open_zip(path) as zf:
        infos = zf.infolist()
        total = sum(i.file_size for i in infos)
        if total > budget.max:
            budget.refuse(str(path), f"its {len(infos)} members inflate to {_fmt(total)}")
        for info in infos:
            what = f"{path}[{info.filename}]"
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise SafeLoadError(f"{what}: compression method {info.compress_type} (only stored and deflated "
                                    "members are read, as numpy writes them)")
            if info.flag_bits & 0x1:
                raise SafeLoadError(f"{what}: encrypted member")
            key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            try:
                with zf.open(info) as raw:
                    out[key] = _read_npy_stream(_Bounded(raw, info.file_size, what), what, budget, allow_pickle)
            except (zipfile.BadZipFile, EOFError, OSError, zlib_error) as e:
                raise SafeLoadError(f"{what}: corrupt zip member ({type(e).__name__}: {e})") from e
    return out


def load_npy(path: str | os.PathLike, *, max_bytes: int | None = None, allow_pickle: bool = True) -> np.ndarray:
    """Read one ``.npy`` file (object arrays through the restricted unpickler). Errors as :func:`load_npz`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    budget = _Budget(str(path), max_bytes)
    size = path.stat().st_size
    if size > budget.max:
        budget.refuse(str(path), f"it is {_fmt(size)}")
    with open(path, "rb") as fp:
        return _read_npy_stream(_Bounded(fp, size, str(path)), str(path), budget, allow_pickle)


def load_pickle(path: str | os.PathLike, *, max_bytes: int | None = None) -> Any:
    """Unpickle a whole file with :class:`RestrictedUnpickler` (e.g. a detectron2 ``model_final_*.pkl``:
    ``{"model": {name: ndarray}, "__author__": str}``).

    Raises:
        FileNotFoundError; UnsafePickleError; LimitExceededError (the file is larger than ``max_bytes`` or its pickle
        asks for more).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    budget = _Budget(str(path), max_bytes)
    size = path.stat().st_size
    if size > budget.max:
        budget.refuse(str(path), f"it is {_fmt(size)}")
    with open(path, "rb") as fp:
        return _restricted_load(fp, str(path), budget, size=size)
