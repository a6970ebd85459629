"""Set up the worker environment: find a Python that mediapipe supports, make a venv, install the locked packages.

Standard library only -- no bpy, no numpy -- so that both the add-on's *Set up worker* operator (``op_setup``) and
``tools/install_deps.py`` run the same code (the tool loads this file by its path, since importing the
``anime_mmd_addon`` package would import bpy).

What a set-up does, in order (each subprocess's output is streamed line by line; see :class:`SetupRun`):

1. **Find a Python** 3.9-3.12 (mediapipe 0.10.21 publishes wheels for CPython 3.9-3.12 only) that has ``venv`` and
   ``ensurepip`` (:func:`find_python`): the one the user chose, else Blender's own (``sys.executable`` inside Blender
   4.2-5.0 is its bundled 3.11), else one on the system (``PATH``, the Windows ``py`` launcher), else -- only when
   going online is allowed -- a **managed Python fetched by uv**: uv (pinned, hash-checked: ``uv.txt``) is installed
   into a small bootstrap venv and runs ``uv python install``.
2. **Create the venv** (``python -m venv``).
3. **Install the lock** ``worker_requirements/worker.txt`` (generated from pyproject.toml by
   ``tools/lock_requirements.py``) with ``pip install --require-hashes --no-deps --only-binary :all:``: every file's
   SHA-256 is checked, nothing is built, nothing outside the lock is installed. Offline, from a wheelhouse folder:
   ``--no-index --find-links DIR``.
4. Optionally **torch** (``torch.txt``: the VideoPose3D lifter and detectron2): the CPU build from PyTorch's CPU
   index, or PyPI's build for CUDA; from the wheelhouse when one is given.
5. **Verify** that the environment imports what the worker needs, then write a stamp (:data:`STAMP_NAME`) that
   records what was installed; :func:`is_ready` reads it, and a second set-up with the same options does nothing.

Network: nothing here goes online unless ``SetupOptions.online`` is true; the Blender operator sets it from
``bpy.app.online_access``. With a wheelhouse, pip never contacts an index.

On failure or cancel the run reports exactly which step failed and the lines pip printed about it (its ``ERROR:``
lines first); a venv this run created is removed again, so nothing half-made is picked up as a worker.
"""
from __future__ import annotations

import hashlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

#: The CPython versions mediapipe 0.10.21 has wheels for (pyproject.toml's requires-python).
PY_MIN = (3, 9)
PY_MAX = (3, 12)
#: The Python a managed install asks uv for.
MANAGED_PYTHON = "3.11"
#: The lock files, shipped in the extension zip (``tools/lock_requirements.py`` writes them).
REQUIREMENTS_DIR = Path(__file__).resolve().parent / "worker_requirements"
WORKER_LOCK = REQUIREMENTS_DIR / "worker.txt"
TORCH_PIN = REQUIREMENTS_DIR / "torch.txt"
UV_LOCK = REQUIREMENTS_DIR / "uv.txt"
#: PyTorch's index of CPU-only builds (PyPI's Linux wheels are CUDA builds, several GB).
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
#: File in the venv that marks a finished set-up (JSON: lock digest, options, Python, versions).
STAMP_NAME = ".anime_mmd_worker.json"
#: Import names the default worker needs (torch is optional).
WORKER_IMPORTS = ("numpy", "mediapipe", "av", "cv2", "tqdm")
#: pip lines not passed on as log events (kept in the step's output for error reports): one per lock entry for
#: another platform or Python version.
QUIET_PREFIXES = ("Ignoring ",)
#: Seconds a probe of a candidate interpreter may take.
PROBE_TIMEOUT_S = 30.0


# ------------------------------------------------------------------------------------------------ interpreters


@dataclass(frozen=True)
class PythonCandidate:
    """An interpreter that can host the worker: its path, version, and where it was found (``"preference"``,
    ``"blender"``, ``"system"``, ``"uv"``)."""

    executable: str
    version: tuple[int, int, int]
    source: str

    def describe(self) -> str:
        return f"Python {'.'.join(map(str, self.version))} ({self.source}: {self.executable})"


_PROBE = ("import json, sys\n"
          "missing = []\n"
          "for name in ('venv', 'ensurepip'):\n"
          "    try:\n"
          "        __import__(name)\n"
          "    except Exception:\n"
          "        missing.append(name)\n"
          "print(json.dumps({'version': list(sys.version_info[:3]), 'executable': sys.executable,"
          " 'implementation': sys.implementation.name, 'missing': missing}))\n")


def clean_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for every subprocess of the set-up: ours without ``PYTHONPATH``/``PYTHONHOME`` (Blender's
    paths must not leak into another interpreter), with user site-packages off, unbuffered UTF-8 output, and pip
    non-interactive without progress bars (its output is read line by line)."""
    env = dict(os.environ if base is None else base)
    for name in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "__PYVENV_LAUNCHER__"):
        env.pop(name, None)
    env.update({"PYTHONNOUSERSITE": "1", "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8",
                "PIP_NO_INPUT": "1", "PIP_PROGRESS_BAR": "off", "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    return env


def probe_python(executable: str | os.PathLike, source: str) -> tuple[PythonCandidate | None, str]:
    """Run ``executable`` and say whether it can host the worker.

    Returns:
        ``(candidate, "")`` when it is CPython 3.9-3.12 with ``venv`` and ``ensurepip``, else ``(None, why)``.
    """
    exe = str(executable)
    try:
        out = subprocess.run([exe, "-I", "-c", _PROBE], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S,
                             env=clean_env())
    except (OSError, subprocess.SubprocessError) as e:
        return None, f"{exe}: cannot run ({e})"
    if out.returncode != 0:
        tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return None, f"{exe}: exits with status {out.returncode} ({tail})"
    try:
        info = json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None, f"{exe}: unexpected output {out.stdout[:80]!r}"
    version = tuple(info["version"])
    text = ".".join(map(str, version))
    if info["implementation"] != "cpython":
        return None, f"{exe}: {info['implementation']} {text}, not CPython"
    if not (PY_MIN <= version[:2] <= PY_MAX):
        return None, (f"{exe}: Python {text}; mediapipe 0.10.21 needs {PY_MIN[0]}.{PY_MIN[1]}-"
                      f"{PY_MAX[0]}.{PY_MAX[1]}")
    if info["missing"]:
        return None, (f"{exe}: Python {text} lacks {' and '.join(info['missing'])} (on Debian/Ubuntu: "
                      f"apt install python3-venv)")
    return PythonCandidate(exe, version, source), ""  # type: ignore[arg-type]


def system_pythons() -> list[str]:
    """Interpreters on this system worth probing, newest first: ``python3.12`` ... ``python3.9`` and ``python3`` on
    ``PATH``; on Windows also what the ``py`` launcher knows (``py -3.12`` ...)."""
    found: list[str] = []
    names = [f"python{PY_MAX[0]}.{m}" for m in range(PY_MAX[1], PY_MIN[1] - 1, -1)] + ["python3", "python"]
    for name in names:
        exe = shutil.which(name)
        if exe and exe not in found:
            found.append(exe)
    if os.name == "nt" and shutil.which("py"):
        for m in range(PY_MAX[1], PY_MIN[1] - 1, -1):
            try:
                out = subprocess.run(["py", f"-3.{m}", "-c", "import sys; print(sys.executable)"],
                                     capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
            except (OSError, subprocess.SubprocessError):
                continue
            exe = out.stdout.strip()
            if out.returncode == 0 and exe and exe not in found:
                found.append(exe)
    return found


def find_python(preferred: str | None = None, blender_python: str | None = None, *,
                search_system: bool = True) -> tuple[PythonCandidate | None, list[str]]:
    """The first interpreter that can host the worker: ``preferred`` (the user's choice), then ``blender_python``
    (Blender's bundled Python, or the interpreter running the tool), then the system's (:func:`system_pythons`).

    A Python the user names comes first: it is what they asked for (and if it is unsuitable, the reason is reported
    rather than silently using another one -- see ``tried``).

    Returns:
        ``(candidate or None, tried)``: ``tried`` says, for each interpreter rejected, why.
    """
    tried: list[str] = []
    if preferred:
        cand, why = probe_python(preferred, "preference")
        if cand is not None:
            return cand, tried
        tried.append(why)
        return None, tried  # the user's explicit choice is not silently replaced
    seen: set[str] = set()
    sources = [(blender_python, "blender")] if blender_python else []
    if search_system:
        sources += [(exe, "system") for exe in system_pythons()]
    for exe, source in sources:
        key = os.path.realpath(exe)
        if key in seen:
            continue
        seen.add(key)
        cand, why = probe_python(exe, source)
        if cand is not None:
            return cand, tried
        tried.append(why)
    return None, tried


def venv_python(venv_dir: str | os.PathLike) -> Path:
    """The interpreter of a virtual environment: ``bin/python`` (``Scripts/python.exe`` on Windows)."""
    return Path(venv_dir) / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


# ------------------------------------------------------------------------------------------------------ options


@dataclass
class SetupOptions:
    """What to set up.

    Attributes:
        venv_dir: the environment to create or update.
        python: the interpreter the user chose (None: search, see :func:`find_python`).
        blender_python: Blender's bundled interpreter (or the tool's own), tried after ``python``.
        wheelhouse: a folder of wheels to install from, offline (``pip --no-index --find-links``).
        online: whether the set-up may use the network (package index, uv's managed Python). Ignored for pip when
            ``wheelhouse`` is set (pip then never contacts an index).
        torch: also install torch (``torch.txt``), for VideoPose3D and detectron2.
        cuda: torch from PyPI (a CUDA build on Linux) instead of the CPU build from PyTorch's CPU index.
        lock: the hash lock to install (default :data:`WORKER_LOCK`; ``tools/install_deps.py --dev`` passes
            ``requirements/dev.txt``).
        editable: a source folder to ``pip install --no-deps -e`` afterwards (the ``anime-mmd`` command), or None.
        uv_dir: where the managed-Python fallback keeps uv and its Python (default: next to ``venv_dir``).
        search_system: also look for a Python on the system.
        force: reinstall even if the stamp says the environment is up to date.
        extra_imports: more import names the verification step must find (e.g. ``("pytest", "bpy")``).
    """

    venv_dir: Path
    python: str | None = None
    blender_python: str | None = None
    wheelhouse: Path | None = None
    online: bool = False
    torch: bool = False
    cuda: bool = False
    lock: Path = WORKER_LOCK
    editable: Path | None = None
    uv_dir: Path | None = None
    search_system: bool = True
    force: bool = False
    extra_imports: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.venv_dir = Path(self.venv_dir)
        self.lock = Path(self.lock)
        if self.wheelhouse is not None:
            self.wheelhouse = Path(self.wheelhouse)
        if self.uv_dir is None:
            self.uv_dir = self.venv_dir.parent / (self.venv_dir.name + "-uv")

    def imports(self) -> tuple[str, ...]:
        return WORKER_IMPORTS + (("torch",) if self.torch else ()) + tuple(self.extra_imports)

    def stamp(self) -> dict[str, Any]:
        """What the stamp records (a set-up whose stamp equals this is up to date)."""
        h = hashlib.sha256(self.lock.read_bytes())
        if self.torch:
            h.update(TORCH_PIN.read_bytes())
        return {"lock": self.lock.name, "lock_sha256": h.hexdigest(), "torch": self.torch,
                "cuda": self.cuda and self.torch, "editable": str(self.editable) if self.editable else None,
                "imports": list(self.imports())}


def read_stamp(venv_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The stamp of a finished set-up in ``venv_dir``, or None (no set-up finished there)."""
    try:
        data = json.loads((Path(venv_dir) / STAMP_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_ready(venv_dir: str | os.PathLike) -> bool:
    """True when a set-up finished in ``venv_dir`` (stamp written) and its interpreter exists."""
    return read_stamp(venv_dir) is not None and venv_python(venv_dir).is_file()


def lock_changed(venv_dir: str | os.PathLike) -> bool:
    """True when a finished set-up in ``venv_dir`` was made from another lock than the one shipped now (the extension
    was updated: set up again). False when there is no stamp, or its lock is not one of ours."""
    stamp = read_stamp(venv_dir)
    if stamp is None or not isinstance(stamp.get("lock"), str):
        return False
    lock = REQUIREMENTS_DIR / Path(stamp["lock"]).name
    if not lock.is_file():
        return False
    h = hashlib.sha256(lock.read_bytes())
    if stamp.get("torch"):
        h.update(TORCH_PIN.read_bytes())
    return stamp.get("lock_sha256") != h.hexdigest()


def up_to_date(options: SetupOptions) -> bool:
    """True when ``options.venv_dir`` was set up with these options and the same lock."""
    stamp = read_stamp(options.venv_dir)
    if stamp is None or not venv_python(options.venv_dir).is_file():
        return False
    want = options.stamp()
    return all(stamp.get(k) == v for k, v in want.items())


def torch_requirement() -> str:
    """The torch pin from ``torch.txt`` (e.g. ``torch==2.13.0``)."""
    lines = [ln.split("#", 1)[0].strip() for ln in TORCH_PIN.read_text(encoding="utf-8").splitlines()]
    return next(ln for ln in lines if ln)


def count_packages(lock: Path) -> int:
    """How many distinct packages a lock names (a rough total for the progress bar: forks for other Python
    versions count once, ``sys_platform == 'never'`` exclusions not at all)."""
    names = set()
    for line in lock.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", line)
        if m and "sys_platform == 'never'" not in line:
            names.add(m.group(1).lower())
    return len(names)


# -------------------------------------------------------------------------------------------------------- steps


class SetupFailed(Exception):
    """A step of the set-up failed; the message says which, and what to do."""


@dataclass
class Step:
    """One subprocess of the set-up.

    ``argv`` is run with :func:`clean_env` (plus ``env``); ``weight`` is its share of the progress bar;
    ``packages`` > 0 makes the progress follow pip's ``Collecting`` lines; ``may_fail`` lets a failure pass (the
    plan reads :attr:`returncode` and decides); ``output`` collects its lines.
    """

    title: str
    argv: list[str]
    weight: float = 1.0
    packages: int = 0
    may_fail: bool = False
    env: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None
    returncode: int | None = None
    output: list[str] = field(default_factory=list)

    def failure(self) -> str:
        """What went wrong, from the step's output: pip's ``ERROR:`` lines (else the last lines)."""
        first = next((i for i, ln in enumerate(self.output) if ln.startswith(("ERROR", "error:"))), None)
        if first is None:
            lines = self.output[-8:]
        else:  # the first error and what follows it (pip's hints, uv's "caused by" chain), at most 10 lines
            lines = self.output[first:first + 10]
        body = "\n".join(lines) if lines else "(no output)"
        return f"{self.title} failed (exit status {self.returncode}): {' '.join(self.argv)}\n{body}"


def _pip(py: str | os.PathLike, *args: str) -> list[str]:
    return [str(py), "-m", "pip", "install", "--disable-pip-version-check", "--no-input", *args]


class SetupRun:
    """One set-up, driven by :meth:`poll` (the operator's timer) or :meth:`run` (blocking).

    Events (``poll`` returns them, and ``on_event`` receives them): ``{"type": "log", "line": str}`` for every output
    line, ``{"type": "stage", "text": str}`` when a step starts, ``{"type": "done", "python": str, "message": str}``
    or ``{"type": "error", "message": str}`` (exactly one, last; ``"cancelled": True`` after :meth:`cancel`).
    :attr:`fraction` is the progress (0-1), :attr:`stage` the current step's title.

    Raises (constructor): nothing; problems found before the first step (no Python, offline without a wheelhouse)
    arrive as the ``error`` event.
    """

    def __init__(self, options: SetupOptions, on_event: Callable[[dict[str, Any]], None] | None = None):
        self.options = options
        self.on_event = on_event
        self.fraction = 0.0
        self.stage = "starting"
        self.result: dict[str, Any] | None = None
        self.python: str | None = None
        self._created_venv = False
        self._cancelled = False
        self._proc: subprocess.Popen | None = None
        self._lines: queue.Queue = queue.Queue()
        self._reader: threading.Thread | None = None
        self._step: Step | None = None
        self._step_started = 0.0
        self._collected = 0
        self._base = 0.0  # progress before the current step
        self._plan: Iterator[Step] = self._make_plan()
        self._pending: list[dict[str, Any]] = []

    # -- public

    @property
    def finished(self) -> bool:
        return self.result is not None

    def cancel(self) -> None:
        """Stop the set-up (the running subprocess and its children are ended); the next :meth:`poll` reports it."""
        self._cancelled = True
        self._kill()

    def poll(self) -> list[dict[str, Any]]:
        """Advance: read the running step's output, start the next step when it ends. Never blocks long."""
        if self.result is None:
            try:
                self._advance()
            except SetupFailed as e:
                self._finish({"type": "error", "message": str(e)})
            except Exception as e:  # a bug or an OS error: reported, never left running
                self._kill()
                self._finish({"type": "error", "message": f"set-up stopped by an unexpected error: {e!r}"})
        out, self._pending = self._pending, []
        return out

    def run(self, poll_s: float = 0.1) -> dict[str, Any]:
        """Run to the end (background mode, the tool); returns the terminal event."""
        try:
            while self.result is None:
                self.poll()
                if self.result is None:
                    time.sleep(poll_s)
        except BaseException:  # Ctrl-C: never leave pip running
            self.cancel()
            self.poll()
            raise
        return self.result

    # -- internals

    def _emit(self, event: dict[str, Any]) -> None:
        self._pending.append(event)
        if self.on_event is not None:
            self.on_event(event)

    def _finish(self, event: dict[str, Any]) -> None:
        if self._cancelled and event["type"] == "error":
            event = {"type": "error", "cancelled": True, "message": "set-up cancelled"}
        if event["type"] == "error" and self._created_venv:
            shutil.rmtree(self.options.venv_dir, ignore_errors=True)
            event["message"] += f"\n(the unfinished environment {self.options.venv_dir} was removed)"
        if event["type"] == "done":
            self.fraction = 1.0
        self.result = event
        self._emit(event)

    def _kill(self) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        try:
            if os.name == "posix":
                os.killpg(proc.pid, signal.SIGTERM)
            else:
                proc.terminate()
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                if os.name == "posix":
                    os.killpg(proc.pid, signal.SIGKILL)
                else:
                    proc.kill()
                proc.wait(timeout=5)
        except (ProcessLookupError, PermissionError, OSError):
            pass

    def _start(self, step: Step) -> None:
        self._step = step
        self._step_started = time.monotonic()
        self._collected = 0
        self.stage = step.title
        self._emit({"type": "stage", "text": step.title})
        self._emit({"type": "log", "line": "$ " + " ".join(step.argv)})
        kwargs: dict[str, Any] = {}
        if os.name == "posix":
            kwargs["start_new_session"] = True  # its own process group: cancel reaches pip's children too
        else:
            kwargs["creationflags"] = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0) | getattr(
                subprocess, "CREATE_NO_WINDOW", 0)
        env = clean_env()
        env.update(step.env)
        try:
            self._proc = subprocess.Popen(step.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, env=env, **kwargs)
        except OSError as e:
            raise SetupFailed(f"{step.title}: cannot start {step.argv[0]}: {e}") from e
        lines = self._lines

        def read(stream=self._proc.stdout):
            for raw in iter(stream.readline, b""):
                lines.put(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
            stream.close()
            lines.put(None)

        self._reader = threading.Thread(target=read, name="anime_mmd-setup-reader", daemon=True)
        self._reader.start()

    def _progress_line(self, line: str) -> None:
        step = self._step
        if step is None or step.packages <= 0:
            return
        if line.startswith(("Collecting ", "Processing ", "Requirement already satisfied", "Obtaining ")):
            self._collected += 1
            self.stage = f"{step.title}: {line.split(' (from', 1)[0]}"
        elif line.startswith("Installing collected packages"):
            self._collected = step.packages
            self.stage = f"{step.title}: installing"
        done = min(self._collected / step.packages, 1.0) * 0.85  # the last 15 %: unpacking the wheels
        self.fraction = self._base + step.weight * done

    def _advance(self) -> None:
        if self._cancelled:
            self._kill()
            raise SetupFailed("set-up cancelled")
        if self._step is None:
            self._next()
            return
        ended = False
        for _ in range(2000):  # bounded, so a chatty pip cannot starve Blender's UI
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                break
            if line is None:
                ended = True
                break
            self._step.output.append(line)
            self._progress_line(line)
            if not line.startswith(QUIET_PREFIXES):
                self._emit({"type": "log", "line": line})
        step = self._step
        if step.timeout is not None and time.monotonic() - self._step_started > step.timeout:
            self._kill()
            raise SetupFailed(f"{step.title} gave no result within {step.timeout:g} s and was stopped")
        if not ended:
            return
        step.returncode = self._proc.wait()
        self._proc = None
        if self._cancelled:
            raise SetupFailed("set-up cancelled")
        if step.returncode != 0 and not step.may_fail:
            raise SetupFailed(step.failure())
        self._base += step.weight
        self.fraction = self._base
        self._next()

    def _next(self) -> None:
        try:
            step = next(self._plan)
        except StopIteration:
            return  # the plan finished the run itself
        self._start(step)

    # -- the plan

    def _index_args(self, *, torch_cpu: bool = False) -> list[str]:
        o = self.options
        if o.wheelhouse is not None:
            return ["--no-index", "--find-links", str(o.wheelhouse)]
        if torch_cpu:
            return ["--index-url", TORCH_CPU_INDEX]
        return []

    def _make_plan(self) -> Iterator[Step]:
        """The steps, decided one after the other (a later step can depend on what an earlier one found)."""
        o = self.options
        total = 0.05 + 0.75 + (0.15 if o.torch else 0.0) + (0.03 if o.editable else 0.0) + 0.05
        scale = 1.0 / total
        if not o.force and up_to_date(o):
            py = str(venv_python(o.venv_dir))
            self.python = py
            self._finish({"type": "done", "python": py, "message": f"{o.venv_dir} is already set up (nothing to do)"})
            return
        if o.wheelhouse is None and not o.online:
            raise SetupFailed("Going online is not allowed (in Blender: Preferences > System > Network > Allow Online "
                              "Access) and no wheelhouse folder is set: allow online access, or give a folder of "
                              "wheels (pip download -r worker.txt -d DIR on a machine that is online)")
        if o.wheelhouse is not None and not o.wheelhouse.is_dir():
            raise SetupFailed(f"The wheelhouse folder {o.wheelhouse} does not exist")
        if not o.lock.is_file():
            raise SetupFailed(f"The lock file {o.lock} is missing (reinstall the extension)")
        py = venv_python(o.venv_dir)
        if not py.is_file():
            self.stage = "looking for a Python"
            cand, tried = find_python(o.python, o.blender_python, search_system=o.search_system)
            for why in tried:
                self._emit({"type": "log", "line": f"not usable: {why}"})
            if cand is None and o.python:
                raise SetupFailed(f"The chosen Python cannot host the worker: {tried[-1]}. Clear the choice to search "
                                  f"automatically, or choose Python {PY_MIN[0]}.{PY_MIN[1]}-{PY_MAX[0]}.{PY_MAX[1]}")
            if cand is None:
                if not o.online:
                    raise SetupFailed("No Python 3.9-3.12 with venv was found (" + "; ".join(tried or ["none found"])
                                      + "), and fetching one needs online access: install Python 3.11 from "
                                      "python.org, choose it in the preferences, or allow online access")
                cand = yield from self._managed_python(scale)
            self._emit({"type": "log", "line": f"using {cand.describe()}"})
            if o.venv_dir.exists() and any(o.venv_dir.iterdir()):
                raise SetupFailed(f"{o.venv_dir} exists but holds no Python environment: remove that folder, then "
                                  "set up again")
            self._created_venv = True
            yield Step("Creating the environment", [cand.executable, "-m", "venv", str(o.venv_dir)],
                       weight=0.05 * scale, timeout=600)
        else:
            self._base += 0.05 * scale
        (o.venv_dir / STAMP_NAME).unlink(missing_ok=True)
        pip_args = ["--require-hashes", "--no-deps", "--only-binary", ":all:", *self._index_args(), "-r", str(o.lock)]
        what = "the worker packages" if o.lock == WORKER_LOCK else f"the packages of {o.lock.name}"
        yield Step(f"Installing {what}", _pip(py, *pip_args), weight=0.75 * scale, packages=count_packages(o.lock))
        if o.torch:
            yield from self._torch_steps(py, 0.15 * scale)
        if o.editable is not None:
            if o.wheelhouse is not None and not any(o.wheelhouse.glob("setuptools-*.whl")):
                self._emit({"type": "log", "line": "the anime-mmd command is not installed: building it offline "
                                                   "needs a setuptools wheel in the wheelhouse"})
            else:
                yield Step("Installing the anime-mmd command",
                           _pip(py, "--no-deps", *self._index_args(), "-e", str(o.editable)), weight=0.03 * scale)
        code = ("import importlib, json, sys\n"
                "v = {}\n"
                "for name in sys.argv[1:]:\n"
                "    m = importlib.import_module(name)\n"
                "    v[name] = getattr(m, '__version__', '?')\n"
                "print('VERSIONS ' + json.dumps(v))\n")
        verify = Step("Checking the environment", [str(py), "-c", code, *o.imports()], weight=0.05 * scale,
                      timeout=600)
        yield verify
        versions = {}
        for line in verify.output:
            if line.startswith("VERSIONS "):
                versions = json.loads(line[len("VERSIONS "):])
        stamp = dict(o.stamp(), versions=versions, created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        (o.venv_dir / STAMP_NAME).write_text(json.dumps(stamp, indent=1) + "\n", encoding="utf-8")
        self.python = str(py)
        have = ", ".join(f"{k} {v}" for k, v in versions.items())
        self._finish({"type": "done", "python": str(py), "message": f"Worker ready: {py} ({have})"})

    def _torch_steps(self, py: Path, weight: float) -> Iterator[Step]:
        o = self.options
        req = torch_requirement()
        if o.wheelhouse is not None or o.cuda:
            # The wheelhouse holds whichever build was downloaded into it; PyPI's Linux wheels are CUDA builds (its
            # Windows and macOS wheels are CPU builds).
            yield Step(f"Installing {req}", _pip(py, *self._index_args(), req), weight=weight, packages=12)
            return
        # A CPU build: a local wheel where pip's own configuration offers one (find-links), installed alone and then
        # completed with its dependencies from the usual index (the installed build satisfies the pin); otherwise
        # PyTorch's CPU index, which serves torch and its dependencies.
        local = Step(f"Looking for a local {req} wheel", _pip(py, "--no-index", "--no-deps", req), weight=0.0,
                     may_fail=True)
        yield local
        if local.returncode == 0:
            yield Step(f"Installing the dependencies of {req}", _pip(py, req), weight=weight, packages=12)
        else:
            yield Step(f"Installing {req} (CPU build)", _pip(py, req, *self._index_args(torch_cpu=True)),
                       weight=weight, packages=12)

    def _managed_python(self, scale: float) -> Iterator[Step]:
        """Fetch a Python with uv (online only): a bootstrap venv with the hash-locked uv, then ``uv python install``.
        Returns the candidate (a generator's return value, via ``yield from``)."""
        o = self.options
        uv_dir = Path(o.uv_dir)
        boot = uv_dir / "bootstrap"
        base = o.blender_python or sys.executable
        self._emit({"type": "log", "line": f"no suitable Python found: fetching Python {MANAGED_PYTHON} with uv"})
        if not venv_python(boot).is_file():
            yield Step("Preparing uv", [base, "-m", "venv", str(boot)], weight=0.0, timeout=600)
        yield Step("Installing uv", _pip(venv_python(boot), "--require-hashes", "--no-deps", "--only-binary", ":all:",
                                         "-r", str(UV_LOCK)), weight=0.0)
        env = {"UV_PYTHON_INSTALL_DIR": str(uv_dir / "python"), "UV_CACHE_DIR": str(uv_dir / "cache"),
               "UV_NO_PROGRESS": "1"}
        uv = [str(venv_python(boot)), "-m", "uv"]
        yield Step(f"Fetching Python {MANAGED_PYTHON} (uv)", [*uv, "python", "install", MANAGED_PYTHON], weight=0.0,
                   env=env, timeout=1800)
        find = Step("Locating the fetched Python", [*uv, "python", "find", "--managed-python", MANAGED_PYTHON],
                    weight=0.0, env=env, timeout=120)
        yield find
        exe = next((ln.strip() for ln in reversed(find.output) if ln.strip() and not ln.startswith("$")), "")
        cand, why = probe_python(exe, "uv") if exe else (None, "uv printed no path")
        if cand is None:
            raise SetupFailed(f"the Python uv fetched cannot host the worker: {why}")
        return cand


def run_setup(options: SetupOptions, on_event: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run a set-up to its end; returns the terminal event (``done`` or ``error``)."""
    return SetupRun(options, on_event).run()
