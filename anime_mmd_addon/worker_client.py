"""Blender's side of the worker protocol: start ``python -m core.worker``, read its messages, stop it.

No bpy here (testable under plain Python). :class:`WorkerProcess` starts the worker in its own process group, writes
the request, and a reader thread turns each stdout line into a message dict on a :class:`queue.Queue` that the
add-on's timer drains with :meth:`WorkerProcess.poll`, so Blender never blocks on the pipe. Message format:
:mod:`core.protocol`.

Guarantees: whatever the worker does, the queue receives **exactly one terminal message** (``done`` or ``error``),
always last. The client itself synthesises an ``error`` (with ``"origin": "client"``) when

* a line is not a valid message, or the hello speaks another protocol version (``reason: "protocol"``, code
  ``internal``; the worker is stopped first: its stream can no longer be trusted),
* the worker exits without a terminal message (``reason: "crash"``, code ``internal``; the message carries the
  exit status and the tail of its stderr),
* :meth:`WorkerProcess.cancel` is called (``reason: "cancelled"``, code ``cancelled``),
* :func:`run_request` times out (``reason: "timeout"``, code ``internal``).

Stopping: SIGTERM to the whole process group, SIGKILL to what is left after ``grace`` seconds, then the worker is
reaped (no zombie) and any process it left behind in its group is killed.
"""
from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterable

from ._core import EXTENSION_ROOT, protocol


#: The extension's root directory (holds ``core/``): the worker's working directory and PYTHONPATH.
REPO_ROOT: Path = EXTENSION_ROOT

#: Bytes of the worker's stderr kept for error reports.
STDERR_LIMIT = 64 * 1024

#: Seconds between SIGTERM and SIGKILL when stopping a worker.
GRACE_S = 2.0

_POSIX = os.name == "posix"


def worker_command(python: str | os.PathLike) -> list[str]:
    """The argv that starts the worker under the interpreter ``python``."""
    return [str(python), "-m", "core.worker"]


def worker_env(base: dict[str, str] | None = None, *, root: Path = REPO_ROOT) -> dict[str, str]:
    """Environment of the worker: ``base`` (default: ours) with ``PYTHONPATH`` = the extension root only (Blender's
    own paths must not leak into the worker's interpreter), no ``PYTHONHOME``, UTF-8 and unbuffered output."""
    env = dict(os.environ if base is None else base)
    env.pop("PYTHONHOME", None)
    env["PYTHONPATH"] = str(root)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    return env


class _TailBuffer:
    """The last ``limit`` bytes written to it (thread-safe)."""

    def __init__(self, limit: int):
        self._limit = limit
        self._data = bytearray()
        self._lock = threading.Lock()

    def write(self, chunk: bytes) -> None:
        with self._lock:
            self._data += chunk
            if len(self._data) > self._limit:
                del self._data[: len(self._data) - self._limit]

    def text(self) -> str:
        with self._lock:
            return self._data.decode("utf-8", errors="replace")


class WorkerProcess:
    """One running worker session.

    Args:
        python: the worker environment's interpreter (``prefs.resolve_worker_python``).
        request: a request dict (:func:`core.protocol.check_request` / :func:`core.protocol.estimate_request`).
        cwd: working directory (default: the extension root, so ``core`` imports).
        env: environment (default: :func:`worker_env`); pass a full environment, it is used as is.
        command: override the argv (default :func:`worker_command`); tests point it at fake workers.
        stderr_limit: bytes of stderr kept for :meth:`stderr_tail`.

    Raises:
        OSError: the interpreter cannot be started (not found, not executable); nothing is left running.
        core.protocol.ProtocolError: ``request`` is not a valid request.
    """

    def __init__(self, python: str | os.PathLike, request: dict[str, Any], *, cwd: str | os.PathLike | None = None,
                 env: dict[str, str] | None = None, command: list[str] | None = None,
                 stderr_limit: int = STDERR_LIMIT):
        line = protocol.encode(request).encode("ascii")
        self.request = request
        self.queue: queue.Queue[dict[str, Any]] = queue.Queue()
        self.hello: dict[str, Any] | None = None
        self.artifacts: list[dict[str, Any]] = []
        self.terminal: dict[str, Any] | None = None
        self.started_at = time.monotonic()
        self.last_message_at = self.started_at
        self._stderr = _TailBuffer(stderr_limit)
        self._lock = threading.Lock()
        self._reap_lock = threading.Lock()
        self._stopping = False
        kwargs: dict[str, Any] = {}
        if _POSIX:
            kwargs["start_new_session"] = True  # own session and process group: killpg reaches its children
        else:
            kwargs["creationflags"] = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0) | getattr(
                subprocess, "CREATE_NO_WINDOW", 0)
        self.proc = subprocess.Popen(
            command or worker_command(python), cwd=str(cwd or REPO_ROOT),
            env=worker_env() if env is None else env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, **kwargs)
        self.pid = self.proc.pid
        self._stderr_thread = threading.Thread(target=self._read_stderr, name=f"worker-{self.pid}-stderr",
                                               daemon=True)
        self._stderr_thread.start()
        try:
            self.proc.stdin.write(line)
            self.proc.stdin.close()
        except OSError:
            pass  # it died before reading: the reader reports the crash with its stderr
        self._reader = threading.Thread(target=self._read_stdout, name=f"worker-{self.pid}-stdout", daemon=True)
        self._reader.start()

    # ----------------------------------------------------------------------------------------------- reading

    def _read_stderr(self) -> None:
        stream = self.proc.stderr
        try:
            while True:
                chunk = stream.read1(4096) if hasattr(stream, "read1") else stream.read(4096)
                if not chunk:
                    break
                self._stderr.write(chunk)
        except (OSError, ValueError):
            pass

    def _read_stdout(self) -> None:
        stream = self.proc.stdout
        try:
            while True:
                raw = stream.readline(protocol.MAX_LINE_BYTES + 1)
                if not raw:
                    break
                if not raw.strip():
                    continue
                try:
                    message = protocol.decode(raw)
                    if message["type"] == "hello" and message["protocol"] != protocol.PROTOCOL_VERSION:
                        raise protocol.ProtocolError(
                            f"the worker speaks protocol {message['protocol']}, this add-on "
                            f"{protocol.PROTOCOL_VERSION}; update the worker environment or the add-on")
                except protocol.ProtocolError as e:
                    self._stop(GRACE_S)  # first, so the process is gone when the error is seen
                    self._emit(protocol.error(
                        "internal", f"the worker sent an invalid line ({e}); is the worker Python the one made by "
                        f"{protocol.install_command(REPO_ROOT)}?", origin="client", reason="protocol"))
                    break
                self._emit(message)
        except (OSError, ValueError):
            pass
        self._reap()
        if self.terminal is None:
            self._stderr_thread.join(timeout=1.0)  # its last words are usually the reason
            self._emit(protocol.error("internal", self._crash_text(), origin="client", reason="crash",
                                      returncode=self.proc.returncode))

    def _crash_text(self) -> str:
        code = self.proc.returncode
        if code is not None and code < 0:
            try:
                how = f"was killed by signal {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
            if -code == getattr(signal, "SIGKILL", 9):
                how += " (out of memory?)"
        else:
            how = f"exited with status {code}"
        tail = self.stderr_tail(12)
        return f"the worker stopped unexpectedly: it {how} without a result" + (f"; its last output:\n{tail}"
                                                                              if tail else "")

    def _emit(self, message: dict[str, Any]) -> None:
        with self._lock:
            if self.terminal is not None:
                return  # exactly one terminal message, always the last
            self.last_message_at = time.monotonic()
            if message["type"] == "hello" and self.hello is None:
                self.hello = message
            elif message["type"] == "artifact":
                self.artifacts.append(message)
            elif message["type"] in protocol.TERMINAL_TYPES:
                self.terminal = message
            self.queue.put(message)

    # ----------------------------------------------------------------------------------------------- public

    def poll(self) -> list[dict[str, Any]]:
        """All messages received since the last call (never blocks)."""
        out = []
        while True:
            try:
                out.append(self.queue.get_nowait())
            except queue.Empty:
                return out

    def get(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next message, waiting up to ``timeout`` seconds (None: no limit); None on timeout."""
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def messages(self, timeout: float | None = None) -> Iterable[dict[str, Any]]:
        """Yield messages until the terminal one (included). If ``timeout`` seconds pass in total first, the worker
        is stopped and a ``timeout`` error ends the sequence."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            message = self.get(left)
            if message is None:
                self.stop_with_error(f"the worker gave no result within {timeout:g} s and was stopped")
                message = self.get(0)
            if message is None:  # pragma: no cover - the terminal message is queued above
                return
            yield message
            if message["type"] in protocol.TERMINAL_TYPES:
                return

    @property
    def finished(self) -> bool:
        """True once the terminal message has been queued (it may not have been polled yet)."""
        return self.terminal is not None

    @property
    def running(self) -> bool:
        """True while the worker process has not exited."""
        return self.proc.returncode is None and not self._wait_exit_unreaped(0)

    def stderr_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of the worker's stderr (from a buffer of the last :data:`STDERR_LIMIT` bytes)."""
        text = self._stderr.text().rstrip()
        return "\n".join(text.splitlines()[-lines:]) if text else ""

    def cancel(self, grace: float = GRACE_S) -> None:
        """Stop the worker: queue a ``cancelled`` error (unless it already finished), SIGTERM its process group,
        SIGKILL after ``grace`` seconds, reap it. Returns once it is gone."""
        self.stop_with_error("the estimation was cancelled", code="cancelled", reason="cancelled", grace=grace)

    def stop_with_error(self, message: str, *, code: str = "internal", reason: str = "timeout",
                        grace: float = GRACE_S) -> None:
        """Queue ``error(code, message)`` as the terminal message (unless one is already queued), then stop the
        worker like :meth:`cancel`."""
        self._emit(protocol.error(code, message, origin="client", reason=reason))
        self._stop(grace)

    def close(self) -> None:
        """Cancel if still running, and wait for the reader threads."""
        if not self.finished:
            self.cancel()
        self._reader.join(timeout=GRACE_S)
        if self._reader.is_alive():  # it sent its result but lingers (or a child holds the pipe): stop it
            self._stop(GRACE_S)
            self._reader.join(timeout=GRACE_S)
        self._stderr_thread.join(timeout=1)
        for stream in (self.proc.stdout, self.proc.stderr):
            try:
                stream.close()
            except (OSError, ValueError):
                pass

    def __enter__(self) -> "WorkerProcess":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ----------------------------------------------------------------------------------------------- stopping

    def _signal_group(self, sig: int) -> None:
        if _POSIX:
            try:
                os.killpg(self.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        elif sig == getattr(signal, "SIGKILL", None) or sig == signal.SIGTERM:
            subprocess.run(["taskkill", "/F", "/T", "/PID", str(self.pid)], capture_output=True, check=False)

    def _wait_exit_unreaped(self, timeout: float | None) -> bool:
        """Wait until the leader exits **without reaping it** (its zombie keeps the group id from being reused
        while we kill what is left of the group). True if it exited."""
        if self.proc.returncode is not None:
            return True
        if not _POSIX or not hasattr(os, "waitid"):
            try:
                self.proc.wait(timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.005
        while True:
            try:
                if os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                    return True
            except ChildProcessError:
                return True  # already reaped
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _reap(self) -> None:
        """After the leader exited: kill what is left of its group, then reap it."""
        while True:  # the lock is released between short waits, so cancel() is never blocked behind this
            with self._reap_lock:
                if self.proc.returncode is not None:
                    return
                if self._wait_exit_unreaped(0.05):
                    self._signal_group(getattr(signal, "SIGKILL", signal.SIGTERM))
                    self.proc.wait()
                    return

    def _stop(self, grace: float) -> None:
        with self._reap_lock:
            if self.proc.returncode is None:
                if not self._wait_exit_unreaped(0):
                    self._signal_group(signal.SIGTERM)
                    if not self._wait_exit_unreaped(grace):
                        self._signal_group(getattr(signal, "SIGKILL", signal.SIGTERM))
                # The leader has exited (zombie, group id still reserved): clear its group, then reap.
                self._signal_group(getattr(signal, "SIGKILL", signal.SIGTERM))
                self.proc.wait()


def run_request(python: str | os.PathLike, request: dict[str, Any], *, timeout: float = 60.0,
                **kwargs: Any) -> list[dict[str, Any]]:
    """Run one request to its end, synchronously (e.g. ``check``): all messages, the terminal one last.

    Args:
        timeout: seconds before the worker is stopped and a ``timeout`` error ends the list.
        kwargs: passed to :class:`WorkerProcess`.
    Raises:
        OSError: the interpreter cannot be started.
    """
    with WorkerProcess(python, request, **kwargs) as worker:
        return list(worker.messages(timeout))


def summarize_check(messages: list[dict[str, Any]]) -> str:
    """One line for the preferences from a ``check`` session: versions and CUDA, or what is missing + the fix."""
    hello = next((m for m in messages if m.get("type") == "hello"), None)
    terminal = messages[-1] if messages else None
    if hello is None:
        if terminal is not None and terminal.get("type") == "error":
            return f"Worker failed: {terminal['message'].splitlines()[0]}"
        return "Worker failed: no answer"
    v = hello["versions"]
    have = ", ".join(f"{name} {v[name]}" for name in protocol.PACKAGES if v.get(name))
    cuda = {True: "CUDA yes", False: "CUDA no", None: "CUDA unknown"}[hello.get("cuda")]
    text = f"Python {hello.get('python', '?')}: {have}; {cuda}"
    if hello["missing"]:
        text = f"Missing {', '.join(hello['missing'])} (have {have or 'nothing'}). Fix: {hello['fix']}"
    if terminal is not None and terminal.get("type") == "error":
        text += f" -- error: {terminal['message'].splitlines()[0]}"
    return text


def _self_check(argv: list[str]) -> int:  # pragma: no cover - manual use: python -m anime_mmd_addon.worker_client PY
    python = argv[0] if argv else sys.executable
    messages = run_request(python, protocol.check_request())
    print(summarize_check(messages))
    return 0 if messages and messages[-1]["type"] == "done" else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_self_check(sys.argv[1:]))
