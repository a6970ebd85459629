"""The worker protocol: one JSON object per line, shared by ``core.worker`` and the add-on's client (stdlib only).

Blender never imports torch / mediapipe / cv2 itself: it starts ``python -m core.worker`` in the worker environment,
writes **one request line** on the worker's stdin, closes it, and reads **message lines** from the worker's stdout.
Arrays never travel through the pipe: they are written to ``.npz`` files whose paths are reported as artifacts.

Requests (client -> worker, one line on stdin)::

    {"cmd": "check"}
    {"cmd": "estimate", "options": {<EstimateOptions fields>}, "npz": "/abs/out.npz", "overwrite": false}

Messages (worker -> client, one per stdout line, UTF-8, ASCII-escaped JSON, flushed after each)::

    {"type": "hello", "protocol": 1, "python": "3.11.7", "executable": "/path/python", "mode": "check"|"estimate",
     "versions": {"numpy": "1.26.4", "torch": "2.3.0"|null, "mediapipe": ...|null, "av": ...|null, "cv2": ...|null},
     "cuda": true|false|null, "missing": ["mediapipe", ...], "fix": "python .../tools/install_deps.py",
     "errors": {"torch": "ImportError: ..."}}
    {"type": "progress", "stage": "detect", "done": 120, "total": 900|null}
    {"type": "artifact", "kind": "npz"|"overlay"|"vmd", "path": "/abs/out.npz"}
    {"type": "done", "result": {...}}
    {"type": "error", "code": <one of core.errors.CODES>, "message": "..."}

``hello`` is always the first message. Exactly one terminal message (``done`` or ``error``) ends a session; the
worker then exits with status 0 (done) or 1 (error). In a ``check`` hello the versions come from real imports and
``cuda`` from ``torch.cuda.is_available()`` (``null`` without torch); in an ``estimate`` hello the versions come from
package metadata (no import, so the start stays fast) and ``cuda`` is only probed when the request asks for
``device="cuda"`` (``null`` otherwise). ``missing`` lists the packages the request needs that cannot be found.

Errors the *client* synthesises (malformed line, crash, cancel, hang) are ordinary ``error`` messages with an
extra ``"origin": "client"`` and a ``"reason"`` (``"protocol"``, ``"crash"``, ``"cancelled"``, ``"timeout"``).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from .errors import CODES
from .options import REQUEST_FIELDS
from .options import requirements_for as _requirements_for

PROTOCOL_VERSION = 1

#: Message types and the fields each must carry (name -> accepted Python types after ``json.loads``).
MESSAGE_FIELDS: dict[str, dict[str, tuple[type, ...]]] = {
    "hello": {"protocol": (int,), "versions": (dict,), "missing": (list,)},
    "progress": {"stage": (str,), "done": (int,)},
    "artifact": {"kind": (str,), "path": (str,)},
    "done": {"result": (dict,)},
    "error": {"code": (str,), "message": (str,)},
}
MESSAGE_TYPES = tuple(MESSAGE_FIELDS)
TERMINAL_TYPES = ("done", "error")
ARTIFACT_KINDS = ("npz", "overlay", "vmd")
REQUEST_COMMANDS = ("check", "estimate")

#: Packages the worker reports on: import name -> distribution names to read a version from (first found wins).
PACKAGES: dict[str, tuple[str, ...]] = {
    "numpy": ("numpy",),
    "torch": ("torch",),
    "mediapipe": ("mediapipe",),
    "av": ("av",),
    "cv2": ("opencv-contrib-python", "opencv-python", "opencv-python-headless", "opencv-contrib-python-headless"),
}

#: What the default worker environment (Set Up Worker, ``tools/install_deps.py``) has. torch is optional (the
#: VideoPose3D lifter and detectron2 declare it in ``core.options``): ``check`` reports its version, or null.
FULL_REQUIREMENTS = ("numpy", "av", "cv2", "mediapipe")

#: Fields of ``core.options.EstimateOptions`` an estimate request may carry: the detection half of the job and the
#: overlay it renders (``core.options.REQUEST_FIELDS``). Motion settings (smoothing, model, key rate) are applied
#: later, in Blender, from the saved ``.npz``; the output path is the request's own (``npz``), and ``overwrite`` is
#: the request's flag.
ESTIMATE_FIELDS = REQUEST_FIELDS

#: Largest line a client accepts (a line longer than this is a protocol error: arrays must go through files).
MAX_LINE_BYTES = 1 << 20


class ProtocolError(ValueError):
    """A line that is not a valid protocol message or request (the message says what is wrong)."""


def install_command(repo_root: str | Path | None = None, *, cuda: bool = False) -> str:
    """The command that makes a complete worker environment (shown to users when something is missing).

    ``repo_root`` is the directory that may hold ``tools/install_deps.py`` (default: the parent of this package).
    When the script is there (a source checkout) the command names it by its absolute path; otherwise (an
    installed extension, which does not ship ``tools/``) it is the command to run in the Anime MMD source folder.
    ``cuda`` adds ``--cuda`` (a CUDA build of torch).
    """
    root = Path(repo_root) if repo_root is not None else Path(__file__).resolve().parents[1]
    script = root / "tools" / "install_deps.py"
    python = "python" if os.name == "nt" else "python3"
    text = "tools/install_deps.py"
    if script.is_file():
        text = str(script)
        if any(c in text for c in " \t'\"$`\\"):
            text = '"' + text.replace('"', '\\"') + '"'
    return f"{python} {text}" + (" --cuda" if cuda else "")


def requirements_for(options: dict[str, Any] | None) -> tuple[str, ...]:
    """Import names an estimate with these ``options`` needs (``None``: :data:`FULL_REQUIREMENTS`, for ``check``).

    Derived from what each choice of ``core.options`` declares it needs (``core.options.requirements_for``).
    """
    return _requirements_for(options, FULL_REQUIREMENTS)


# ---------------------------------------------------------------------------------------------------------------
# Messages


def encode(message: dict[str, Any]) -> str:
    """One message or request as one line of JSON **with** the trailing newline.

    ASCII-escaped (non-ASCII paths survive any pipe encoding), NaN/inf refused (not JSON).

    Raises:
        ProtocolError: not a valid message/request (see :func:`validate_message`, :func:`validate_request`),
            or a value JSON cannot carry.
    """
    if "cmd" in message:
        validate_request(message)
    else:
        validate_message(message)
    try:
        text = json.dumps(message, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as e:
        raise ProtocolError(f"cannot encode {message.get('type', message.get('cmd'))!r} message: {e}") from e
    return text + "\n"


def _loads(line: str | bytes) -> Any:
    if isinstance(line, bytes):
        if len(line) > MAX_LINE_BYTES:
            raise ProtocolError(f"line of {len(line)} bytes is longer than {MAX_LINE_BYTES}")
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ProtocolError(f"line is not UTF-8 ({e})") from e
    elif len(line) > MAX_LINE_BYTES:
        raise ProtocolError(f"line of {len(line)} characters is longer than {MAX_LINE_BYTES}")
    text = line.strip()
    if not text:
        raise ProtocolError("empty line")

    def _no_constants(name: str) -> Any:
        raise ProtocolError(f"{name} is not valid JSON")

    try:
        return json.loads(text, parse_constant=_no_constants)
    except json.JSONDecodeError as e:
        raise ProtocolError(f"not JSON ({e.msg} at column {e.colno}): {_preview(text)}") from e
    except RecursionError:
        raise ProtocolError("JSON nested too deeply") from None


def _preview(text: str, limit: int = 120) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def decode(line: str | bytes) -> dict[str, Any]:
    """Parse one worker output line into a validated message dict.

    Raises:
        ProtocolError: not JSON, not an object, unknown ``type``, missing/mistyped fields.
    """
    message = _loads(line)
    validate_message(message)
    return message


def validate_message(message: Any) -> None:
    """Check a message dict's type and fields (see the module docstring).

    Raises:
        ProtocolError: what is wrong with it.
    """
    if not isinstance(message, dict):
        raise ProtocolError(f"a message must be a JSON object, got {type(message).__name__}")
    kind = message.get("type")
    if kind not in MESSAGE_FIELDS:
        raise ProtocolError(f"unknown message type {kind!r}; expected one of {MESSAGE_TYPES}")
    for name, types in MESSAGE_FIELDS[kind].items():
        value = message.get(name)
        if not isinstance(value, types) or isinstance(value, bool) and bool not in types:
            raise ProtocolError(f"{kind} message needs {name!r} of type {types[0].__name__}, got {value!r}")
    if kind == "progress":
        total = message.get("total")
        if total is not None and (not isinstance(total, int) or isinstance(total, bool) or total < 0):
            raise ProtocolError(f"progress total must be a non-negative int or null, got {total!r}")
        if message["done"] < 0:
            raise ProtocolError(f"progress done must be >= 0, got {message['done']}")
    elif kind == "artifact" and message["kind"] not in ARTIFACT_KINDS:
        raise ProtocolError(f"artifact kind must be one of {ARTIFACT_KINDS}, got {message['kind']!r}")
    elif kind == "error" and message["code"] not in CODES:
        raise ProtocolError(f"error code must be one of {CODES}, got {message['code']!r}")


def hello(*, versions: dict[str, str | None], missing: list[str], cuda: bool | None, python: str,
          executable: str, mode: str, fix: str, errors: dict[str, str] | None = None) -> dict[str, Any]:
    """The first message of every session: the worker environment's versions and what it lacks."""
    return {"type": "hello", "protocol": PROTOCOL_VERSION, "python": python, "executable": executable,
            "mode": mode, "versions": dict(versions), "cuda": cuda, "missing": list(missing), "fix": fix,
            "errors": dict(errors or {})}


def progress(stage: str, done: int, total: int | None) -> dict[str, Any]:
    """A progress message: ``done`` of ``total`` units (frames, usually) of ``stage``; ``total`` None = unknown."""
    return {"type": "progress", "stage": str(stage), "done": int(done),
            "total": None if total is None else int(total)}


def artifact(kind: str, path: str | Path) -> dict[str, Any]:
    """A file the worker wrote (``kind`` in :data:`ARTIFACT_KINDS`)."""
    return {"type": "artifact", "kind": kind, "path": str(path)}


def done(result: dict[str, Any]) -> dict[str, Any]:
    """The terminal success message; ``result`` is a JSON-able summary (frame counts, paths, notes)."""
    return {"type": "done", "result": _jsonable(result)}


def error(code: str, message: str, **extra: Any) -> dict[str, Any]:
    """The terminal failure message; ``code`` is one of ``core.errors.CODES``."""
    msg = {"type": "error", "code": code, "message": str(message)}
    msg.update(extra)
    return msg


def _jsonable(value: Any) -> Any:
    """Plain JSON types from numpy scalars, paths, tuples; non-finite floats become None."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if getattr(value, "ndim", 0) > 0 and hasattr(value, "tolist"):  # small numpy array
        return _jsonable(value.tolist())
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return _jsonable(value.item())
    return str(value)


# ---------------------------------------------------------------------------------------------------------------
# Requests


def check_request() -> dict[str, Any]:
    """The request that asks only for the hello (environment report)."""
    return {"cmd": "check"}


def estimate_request(options: dict[str, Any], npz: str | Path, *, overwrite: bool = False) -> dict[str, Any]:
    """The request that runs detection: ``options`` (subset of :data:`ESTIMATE_FIELDS`), result written to ``npz``.

    Raises:
        ProtocolError: unknown option names or a relative ``npz`` path.
    """
    request = {"cmd": "estimate", "options": _jsonable(dict(options)), "npz": str(npz), "overwrite": bool(overwrite)}
    validate_request(request)
    return request


def validate_request(request: Any) -> None:
    """Check a request dict (see the module docstring).

    Raises:
        ProtocolError: what is wrong with it.
    """
    if not isinstance(request, dict):
        raise ProtocolError(f"a request must be a JSON object, got {type(request).__name__}")
    cmd = request.get("cmd")
    if cmd not in REQUEST_COMMANDS:
        raise ProtocolError(f"unknown request command {cmd!r}; expected one of {REQUEST_COMMANDS}")
    if cmd == "estimate":
        options = request.get("options")
        if not isinstance(options, dict):
            raise ProtocolError("estimate request needs an 'options' object")
        unknown = sorted(set(options) - set(ESTIMATE_FIELDS))
        if unknown:
            raise ProtocolError(f"unknown estimate options {unknown}; known: {ESTIMATE_FIELDS}")
        from .errors import PipelineError
        from .options import EstimateOptions, from_mapping

        try:  # every value against its declaration in core.options (type, range, choices)
            from_mapping(EstimateOptions, options, allowed=ESTIMATE_FIELDS)
        except PipelineError as e:
            raise ProtocolError(e.message) from None
        npz = request.get("npz")
        if not isinstance(npz, str) or not npz or not Path(npz).is_absolute():
            raise ProtocolError(f"estimate request needs an absolute 'npz' output path, got {npz!r}")
        if not isinstance(request.get("overwrite", False), bool):
            raise ProtocolError("'overwrite' must be true or false")


def decode_request(line: str | bytes) -> dict[str, Any]:
    """Parse the request line a worker reads on stdin.

    Raises:
        ProtocolError: not a valid request.
    """
    request = _loads(line)
    validate_request(request)
    return request
