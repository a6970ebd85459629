"""The inference worker: ``python -m core.worker`` speaks the JSON-lines protocol of :mod:`core.protocol`.

Blender (``anime_mmd_addon.worker_client``) starts this in the worker environment made by ``tools/install_deps.py``
(torch / mediapipe / PyAV live there, never in Blender), writes one request line on stdin and reads messages on
stdout. Run it by hand to see what the environment has::

    python -m core.worker --check          # same as: echo '{"cmd": "check"}' | python -m core.worker

Stdout belongs to the protocol: at start the real stdout is duplicated to a private descriptor and descriptor 1 is
pointed at stderr, so whatever mediapipe, TensorFlow Lite, torch or a C library prints (to ``sys.stdout`` or to
fd 1 directly) lands on stderr and cannot corrupt the message stream.

An ``estimate`` request runs the job orchestrator :func:`core.worker.job.run_job` for the pose file and the optional
overlay video (both staged and moved into place together at the end, so a cancelled or crashed run leaves
neither), reports each file as an ``artifact`` and ends with ``done``. Failures end with one ``error`` line: a :class:`~core.errors.PipelineError` keeps its code; any other
exception is ``internal`` with the traceback's last line (the full traceback goes to stderr). SIGTERM (the
client's cancel) ends with ``error`` code ``cancelled``. Exit status: 0 after ``done``, 1 after ``error``.

Test hook: the environment variable ``ANIME_MMD_FAKE_PIPELINE=module:function`` replaces ``detect_stage`` with
``function(opts, progress) -> PoseSequence`` from an importable ``module``; ``opts`` is then a
``types.SimpleNamespace`` of the request's options (plus ``overwrite``) instead of an ``EstimateOptions``, so the
protocol can be tested without the pipeline's dependencies. It is meant for tests only.
"""
from __future__ import annotations

import importlib
import os
import platform
import signal
import sys
import threading
import time
import traceback
import types
from pathlib import Path
from typing import Any, Callable, TextIO

from .. import protocol
from ..errors import PipelineError

#: Environment variable of the test hook (see the module docstring).
FAKE_PIPELINE_ENV = "ANIME_MMD_FAKE_PIPELINE"

#: Minimum seconds between two progress lines of the same stage (the first and last are always sent).
PROGRESS_INTERVAL_S = 0.1

REPO_ROOT = Path(__file__).resolve().parents[2]


class Cancelled(BaseException):
    """Raised inside the worker when it must stop now (SIGTERM, or the client closed the pipe).

    A ``BaseException`` so that ``except Exception`` blocks in the pipeline do not swallow it.
    """


class MessageWriter:
    """Writes protocol messages, one flushed line each, to the private copy of the real stdout (thread-safe).

    A broken pipe (the client went away) raises :class:`Cancelled`, so the pipeline stops instead of working for
    nobody.
    """

    def __init__(self, stream: TextIO):
        self._stream = stream
        self._lock = threading.Lock()
        self.terminal_sent = False

    def send(self, message: dict[str, Any]) -> None:
        line = protocol.encode(message)
        with self._lock:
            try:
                self._stream.write(line)
                self._stream.flush()
            except (BrokenPipeError, OSError) as e:
                raise Cancelled(f"the client closed the message pipe ({e})") from e
            if message["type"] in protocol.TERMINAL_TYPES:
                self.terminal_sent = True


class ProgressReporter:
    """The ``progress(stage, done, total)`` callback handed to the pipeline; throttled to one line per
    :data:`PROGRESS_INTERVAL_S` per stage, always sending a stage's first report and its last (``done == total``).
    """

    def __init__(self, writer: MessageWriter, interval: float = PROGRESS_INTERVAL_S):
        self._writer = writer
        self._interval = interval
        self._stage: str | None = None
        self._last = 0.0

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        now = time.monotonic()
        final = total is not None and done >= total
        if stage == self._stage and not final and now - self._last < self._interval:
            return
        self._stage, self._last = stage, now
        self._writer.send(protocol.progress(stage, max(int(done), 0), None if total is None else max(int(total), 0)))


def take_stdout() -> TextIO:
    """Keep a private duplicate of the real stdout for the protocol and point fd 1 (and ``sys.stdout``) at stderr.

    Returns:
        A line-buffered UTF-8 text stream on the duplicate descriptor.
    """
    sys.stdout.flush()
    private_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(private_fd, "w", encoding="utf-8", newline="\n", buffering=1)


def _version_of(name: str, module: types.ModuleType | None = None) -> str:
    if module is not None:
        version = getattr(module, "__version__", None)
        if version:
            return str(version)
    from importlib import metadata

    for dist in protocol.PACKAGES[name]:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def probe(*, full: bool, need: tuple[str, ...], want_cuda: bool, mode: str) -> dict[str, Any]:
    """The hello message: what the environment has (see :mod:`core.protocol` for the two probing depths).

    Args:
        full: import every package (true versions, catches broken installs, probes CUDA); otherwise look the
            packages up without importing them (fast).
        need: import names this request needs; those not found are listed in ``missing``.
        want_cuda: probe CUDA even when ``full`` is False (the request asked for ``device="cuda"``).
    """
    import importlib.util

    versions: dict[str, str | None] = {}
    errors: dict[str, str] = {}
    modules: dict[str, types.ModuleType] = {}
    for name in protocol.PACKAGES:
        if full or (want_cuda and name == "torch"):
            try:
                modules[name] = importlib.import_module(name)
                versions[name] = _version_of(name, modules[name])
            except Exception as e:  # a broken install (ABI mismatch, missing DLL) counts as missing
                versions[name] = None
                errors[name] = f"{type(e).__name__}: {e}".splitlines()[0]
        else:
            try:
                found = importlib.util.find_spec(name) is not None
            except (ImportError, ValueError) as e:
                found, errors[name] = False, f"{type(e).__name__}: {e}"
            versions[name] = _version_of(name) if found else None
    cuda: bool | None = None
    if "torch" in modules:
        try:
            cuda = bool(modules["torch"].cuda.is_available())
        except Exception as e:
            cuda, errors["cuda"] = False, f"{type(e).__name__}: {e}".splitlines()[0]
    missing = [name for name in need if versions.get(name) is None]
    return protocol.hello(versions=versions, missing=missing, cuda=cuda, python=platform.python_version(),
                          executable=sys.executable, mode=mode, fix=protocol.install_command(REPO_ROOT),
                          errors=errors)


def load_hook(spec: str) -> Callable[..., Any]:
    """The ``module:function`` named by the test hook variable.

    Raises:
        ValueError: malformed spec; ImportError / AttributeError: nothing there.
    """
    module_name, sep, func_name = spec.partition(":")
    if not sep or not module_name or not func_name:
        raise ValueError(f"{FAKE_PIPELINE_ENV} must be 'module:function', got {spec!r}")
    return getattr(importlib.import_module(module_name), func_name)


def _options(raw: dict[str, Any], npz: str, overwrite: bool, fake: bool) -> Any:
    """The request's options as :class:`core.options.EstimateOptions` writing only the pose file ``npz`` (every
    value checked against its declaration in ``core.options``), or a plain namespace for the test hook."""
    if fake:
        values = dict(raw)
        for name in ("crop", "image_size"):
            if values.get(name) is not None:
                values[name] = tuple(values[name])
        return types.SimpleNamespace(**values, overwrite=overwrite, npz=npz)
    from ..options import REQUEST_FIELDS, EstimateOptions, from_mapping

    opts = from_mapping(EstimateOptions, raw, allowed=REQUEST_FIELDS)
    opts.npz, opts.overwrite = npz, overwrite
    return opts


def estimate(request: dict[str, Any], writer: MessageWriter) -> dict[str, Any]:
    """Run the detection half of the job for an ``estimate`` request (``core.worker.job.run_job`` writing the pose
    file and the optional overlay, nothing else); returns the ``done`` result.

    Raises:
        PipelineError: the job cannot be done (bad input, missing dependency, output exists...).
        Cancelled: SIGTERM or the client went away.
    """
    from .job import run_job

    t0 = time.perf_counter()
    npz = str(request["npz"])
    overwrite = bool(request.get("overwrite", False))
    try:  # the pose file goes into the client's cache folder, which the worker may create
        Path(npz).parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PipelineError("bad_input", f"cannot create the folder of {npz}: {e.strerror or e}") from e
    hook = os.environ.get(FAKE_PIPELINE_ENV)
    opts = _options(request["options"], npz, overwrite, fake=bool(hook))
    progress = ProgressReporter(writer)
    if hook:
        job = _run_fake(opts, load_hook(hook), progress)
    else:
        job = run_job(opts, progress)
    poses = job.poses
    writer.send(protocol.artifact("npz", npz))
    result: dict[str, Any] = {
        "npz": npz, "frames": len(poses), "detected": int(poses.detected.sum()), "fps": poses.fps,
        "image_size": list(poses.image_size), "backend": poses.backend, "lifter": poses.lifter,
        "has_3d": poses.joints_3d is not None, "has_trajectory": poses.trajectory is not None,
        "notes": list(poses.notes),
    }
    if job.overlay_path is not None:
        writer.send(protocol.artifact("overlay", str(job.overlay_path)))
        result["overlay"] = str(job.overlay_path)
    result["seconds"] = round(time.perf_counter() - t0, 3)
    return result


def _run_fake(opts: Any, detect: Callable[..., Any], progress: ProgressReporter) -> Any:
    """The test hook's run: ``detect(opts, progress)`` then the pose file, through the same all-or-nothing writer."""
    from .. import pose_io
    from ..atomic import OutputSet
    from .job import JobResult

    npz = Path(opts.npz)
    if npz.exists() and not opts.overwrite:
        raise PipelineError("exists", f"{npz} already exists; choose another name or allow overwriting")
    poses = detect(opts, progress)
    if not isinstance(poses, pose_io.PoseSequence):
        raise TypeError(f"detect_stage returned {type(poses).__name__}, not a PoseSequence")
    progress("save", 0, 1)
    with OutputSet(overwrite=opts.overwrite) as outputs:
        pose_io.save(outputs.stage(npz), poses, overwrite=True)
        outputs.commit()
    progress("save", 1, 1)
    return JobResult(vmd_path=None, npz_path=npz, overlay_path=None, frames_in=len(poses), frames_out=0,
                     gaps=int((~poses.detected).sum()), notes=list(poses.notes), poses=poses)


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Cancelled("stopped on request (SIGTERM)")


def serve(request_line: bytes, writer: MessageWriter) -> int:
    """Answer one request: hello, then (for ``estimate``) progress/artifacts, then done or error. Returns the exit
    status (0 done, 1 error)."""
    try:
        request = protocol.decode_request(request_line)
    except protocol.ProtocolError as e:
        writer.send(probe(full=False, need=(), want_cuda=False, mode="invalid"))
        writer.send(protocol.error("bad_input", f"invalid request: {e}"))
        return 1
    if request["cmd"] == "check":
        hello = probe(full=True, need=protocol.requirements_for(None), want_cuda=True, mode="check")
        writer.send(hello)
        writer.send(protocol.done({"ok": not hello["missing"], "missing": hello["missing"]}))
        return 0
    options = request["options"]
    need = protocol.requirements_for(options)
    hello = probe(full=False, need=need, want_cuda=str(options.get("device", "cpu")).lower() == "cuda",
                  mode="estimate")
    writer.send(hello)
    if hello["missing"] and not os.environ.get(FAKE_PIPELINE_ENV):
        writer.send(protocol.error(
            "missing_dependency",
            f"the worker environment ({sys.executable}) lacks {', '.join(hello['missing'])}; "
            f"set it up with: {hello['fix']}"))
        return 1
    if str(options.get("device", "cpu")).lower() == "cuda" and hello["cuda"] is False:
        writer.send(protocol.error("missing_dependency",
                                   "device CUDA was chosen but torch in the worker environment sees no CUDA GPU; "
                                   "choose CPU, or install a CUDA build of torch with: "
                                   f"{protocol.install_command(REPO_ROOT, cuda=True)}"))
        return 1
    try:
        result = estimate(request, writer)
    except PipelineError as e:
        writer.send(protocol.error(e.code, e.message))
        return 1
    except OSError as e:  # a file the job reads or writes: one line, not a traceback
        from ..errors import os_error_message

        writer.send(protocol.error("bad_input", os_error_message(e)))
        return 1
    except Exception as e:
        traceback.print_exc(file=sys.stderr)
        last = traceback.format_exception_only(type(e), e)[-1].strip()
        writer.send(protocol.error("internal", last))
        return 1
    writer.send(protocol.done(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m core.worker [--check]``; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    from .native_logs import quiet_native_logs, verbose_requested

    quiet_native_logs(verbose_requested())  # first: fd 1 below then follows fd 2 to the null device too
    writer = MessageWriter(take_stdout())
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        if argv == ["--check"]:
            line = protocol.encode(protocol.check_request()).encode()
        elif argv:
            print("usage: python -m core.worker [--check]   (otherwise one JSON request line on stdin)",
                  file=sys.stderr)
            return 2
        else:
            line = sys.stdin.buffer.readline(protocol.MAX_LINE_BYTES + 1)
        return serve(line, writer)
    except (Cancelled, KeyboardInterrupt) as e:
        print(f"worker: {e or 'interrupted'}", file=sys.stderr)
        if not writer.terminal_sent:
            try:
                writer.send(protocol.error("cancelled", "the estimation was stopped"))
            except Cancelled:
                pass
        return 1


if __name__ == "__main__":
    sys.exit(main())
