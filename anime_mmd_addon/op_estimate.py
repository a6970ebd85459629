"""Estimate, Cancel and Check worker: the operators that run the out-of-process worker from Blender.

``ANIMEMMD_OT_estimate`` (modal) validates the scene's settings, looks the result up in the detection cache
(:mod:`.cache`; a hit skips the worker), otherwise starts ``python -m core.worker`` in the worker environment
(:mod:`.worker_client`) and lets a 0.1 s window-manager timer drain its messages into the scene's ``anime_mmd``
properties (``progress``, ``progress_stage``, ``status``) while Blender stays responsive. ESC or
``ANIMEMMD_OT_cancel`` stops the worker. On ``done`` the pose file is checked (``core.pose_io.load``) and
``result_npz`` set; on an error, a crash or a cancel the message is reported and ``result_npz`` is left unchanged
(the worker writes the ``.npz`` atomically, so no partial file is ever left in the cache).

Without a window (``blender -b``, ``tools/batch.py``) the operator runs to the end synchronously;
:func:`run_blocking` does the same for scripts and tests.

``ANIMEMMD_OT_check_worker`` runs the worker's ``check`` request and writes a one-line summary into the
preferences' ``worker_status``.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import bpy

from . import cache, prefs, worker_client
from ._core import EXTENSION_ROOT, errors, pose_io, protocol


#: Seconds between two drains of the worker's messages (the modal timer).
TIMER_S = 0.1
#: Seconds the Check worker button waits (importing torch the first time can be slow).
CHECK_TIMEOUT_S = 120.0

#: The estimate in progress (one at a time), so Cancel and the poll functions can find it.
_ACTIVE: "EstimateJob | None" = None


def install_hint() -> str:
    """The sentence that tells a user how to make the worker environment: *Set Up Worker* for an extension
    installed from its zip (which has no ``tools/``), the set-up command in a source checkout."""
    if not (EXTENSION_ROOT / "tools" / "install_deps.py").is_file():
        return "Press Set Up Worker in Edit > Preferences > Add-ons > Anime MMD (or set Worker Python there)"
    return (f"Set it up with: {protocol.install_command(EXTENSION_ROOT)} (or press Set Up Worker, or set Worker "
            "Python, in the add-on preferences)")


def _props(scene) -> Any:
    return scene.anime_mmd


def _redraw() -> None:
    wm = bpy.context.window_manager
    for window in getattr(wm, "windows", ()):
        for area in window.screen.areas:
            if area.type in {"VIEW_3D", "PREFERENCES"}:
                area.tag_redraw()


def _device(context) -> str:
    p = prefs.get(context)
    return p.device if p is not None else "CPU"


def _addon_error(code: str, message: str) -> dict[str, Any]:
    return protocol.error(code, message, origin="addon")


def _check_pose_file(path: Path) -> tuple[Any, str | None]:
    """``(poses, None)`` if ``path`` is a readable pose file, else ``(None, why)``."""
    try:
        return pose_io.load(path), None
    except OSError as e:
        return None, errors.os_error_message(e)
    except ValueError as e:
        return None, str(e)


class EstimateJob:
    """One estimate run by the worker: owns the :class:`~.worker_client.WorkerProcess` and mirrors its messages
    into the scene's properties. Driven by :meth:`step` (the modal timer, or :func:`run_blocking`'s loop).

    Args:
        scene: the scene whose ``anime_mmd`` properties show the progress (looked up by name at each step, so a
            stale reference is never used).
        settings: what to detect.
        npz: the cache file to write (must not exist).
        python: the worker interpreter.
        env: the worker's environment (default :func:`.worker_client.worker_env`).
        on_message: called with every message after it was applied (the terminal one last).
    Raises:
        OSError: the interpreter cannot be started.
    """

    def __init__(self, scene, settings: cache.DetectionSettings, npz: Path, python: str, *,
                 env: dict[str, str] | None = None, on_message: Callable[[dict[str, Any]], None] | None = None):
        self.on_message = on_message
        self.scene_name = scene.name
        self.settings = settings
        self.npz = Path(npz)
        self.python = python
        self.terminal: dict[str, Any] | None = None
        self.started = time.monotonic()
        request = protocol.estimate_request(settings.options(), self.npz, overwrite=False)
        self.worker = worker_client.WorkerProcess(python, request, env=env)
        props = _props(scene)
        props.is_running = True
        props.progress = 0.0
        props.progress_stage = "starting"
        props.status = f"Starting the worker ({python})"

    def _scene_props(self):
        scene = bpy.data.scenes.get(self.scene_name)
        return _props(scene) if scene is not None else None

    def step(self, wait: float = 0.0) -> dict[str, Any] | None:
        """Apply the messages received since the last step (waiting up to ``wait`` seconds for the first one);
        returns the terminal message once (then None)."""
        if self.terminal is not None:
            return None
        first = self.worker.get(wait) if wait > 0 else None
        messages = ([first] if first is not None else []) + self.worker.poll()
        props = self._scene_props()
        for message in messages:
            kind = message["type"]
            if props is None:
                pass
            elif kind == "hello":
                v = message["versions"]
                backend = v.get(self.settings.backend) if self.settings.backend in v else None
                props.status = f"Worker ready: Python {message.get('python', '?')}" + (
                    f", {self.settings.backend} {backend}" if backend else "")
            elif kind == "progress":
                total = message["total"]
                props.progress_stage = message["stage"]
                props.progress = min(message["done"] / total, 1.0) if total else 0.0
                props.status = f"{message['stage']}: {message['done']}" + (f" / {total}" if total else "")
            if kind in protocol.TERMINAL_TYPES:
                message = self.terminal = self._finish(message, props)
            if self.on_message is not None:
                self.on_message(message)
            if self.terminal is not None:
                break
        if self.terminal is None and props is None:  # the scene is gone: nobody to report to
            self.worker.cancel()
            self.terminal = self._finish(_addon_error("cancelled", "the scene was removed"), None)
        if messages:
            _redraw()
        return self.terminal

    def _finish(self, message: dict[str, Any], props) -> dict[str, Any]:
        global _ACTIVE
        if message["type"] == "done":
            poses, why = _check_pose_file(self.npz)
            if poses is None:
                message = _addon_error("internal", f"the worker reported success but its pose file is not "
                                                   f"readable: {why}")
        if props is not None:
            props.is_running = False
            if message["type"] == "done":
                result = message["result"]
                props.result_npz = str(self.npz)
                props.progress = 1.0
                props.progress_stage = "done"
                seconds = time.monotonic() - self.started
                props.status = (f"Estimated {result.get('frames', '?')} frames "
                                f"({result.get('detected', '?')} with the dancer found) in {seconds:.0f} s")
            else:
                props.progress_stage = ""
                props.progress = 0.0
                props.status = ("Estimate cancelled" if message["code"] == "cancelled"
                                else f"Estimate failed: {message['message'].splitlines()[0]}")
        self.worker.close()
        if message["type"] != "done":  # a killed or crashed worker cannot clean up after itself
            cache.remove_partial(self.npz)
        if _ACTIVE is self:
            _ACTIVE = None
        _redraw()
        return message

    def cancel(self) -> None:
        """Stop the worker (the next :meth:`step` returns the ``cancelled`` error)."""
        self.worker.cancel()


class SetupError(Exception):
    """The estimate cannot start; ``message`` is the terminal error message to report."""

    def __init__(self, message: dict[str, Any]):
        super().__init__(message["message"])
        self.message = message


def start(context, *, python: str | None = None, env: dict[str, str] | None = None,
          on_message: Callable[[dict[str, Any]], None] | None = None
          ) -> tuple["EstimateJob | None", dict[str, Any] | None]:
    """Validate the scene's settings and either use the cache or start the worker.

    Returns:
        ``(job, None)`` when the worker was started, ``(None, done_message)`` on a cache hit (``result_npz`` set).
    Raises:
        SetupError: bad settings, no worker environment, the worker cannot be started, one already running.
    """
    global _ACTIVE
    scene = context.scene
    props = _props(scene)
    if _ACTIVE is not None and not _ACTIVE.worker.finished:
        raise SetupError(_addon_error("bad_input", "An estimate is already running; cancel it first"))
    settings = cache.DetectionSettings.from_props(props, device=_device(context), abspath=bpy.path.abspath)
    problems = settings.problems()
    if problems:
        raise SetupError(_addon_error("bad_input", "; ".join(problems)))
    try:
        cache_dir = prefs.cache_dir(context)
        npz = cache.cache_path(cache_dir, settings.key())
    except OSError as e:
        raise SetupError(_addon_error("bad_input", f"Cannot use the cache folder: {errors.os_error_message(e)}")) from e
    if npz.exists():
        poses, why = _check_pose_file(npz)
        if poses is not None:
            props.result_npz = str(npz)
            props.is_running = False
            props.progress = 1.0
            props.progress_stage = "done"
            props.status = f"Using the cached estimate ({len(poses)} frames); detection skipped"
            return None, protocol.done({"npz": str(npz), "frames": len(poses),
                                        "detected": int(poses.detected.sum()), "cached": True})
        npz.unlink(missing_ok=True)  # our own cache file, unreadable (e.g. an old format): detect again
    python = python or prefs.resolve_worker_python(context)
    if not python:
        raise SetupError(_addon_error("missing_dependency", f"No worker environment found. {install_hint()}"))
    if not Path(python).is_file():
        raise SetupError(_addon_error("missing_dependency", f"Worker Python not found: {python}. {install_hint()}"))
    cache.clean_stale(cache_dir)
    try:
        job = EstimateJob(scene, settings, npz, python, env=env, on_message=on_message)
    except OSError as e:
        raise SetupError(_addon_error("missing_dependency", f"Cannot start the worker {python}: {errors.os_error_message(e)}. "
                                                             f"{install_hint()}")) from e
    _ACTIVE = job
    return job, None


def _fail_setup(props, message: dict[str, Any]) -> dict[str, Any]:
    props.is_running = False
    props.status = f"Estimate failed: {message['message']}"
    return message


def run_blocking(context, *, python: str | None = None, timeout: float | None = None,
                 env: dict[str, str] | None = None,
                 on_message: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run the estimate for ``context.scene`` to its end without a modal operator (background mode, scripts,
    ``tools/batch.py``, tests). Same checks, cache and scene updates as the operator.

    Args:
        python: the worker interpreter (default: ``prefs.resolve_worker_python``).
        timeout: seconds before the worker is stopped (an ``error`` with ``reason: "timeout"``); None = no limit.
        env: the worker's environment (default :func:`.worker_client.worker_env`).
        on_message: called with each message once the scene properties reflect it (hello, progress, artifacts,
            and the terminal message last; only the terminal one on a cache hit or a setup error).
    Returns:
        The terminal message: ``{"type": "done", "result": {"npz": ..., "frames": ..., ...}}`` (``"cached": True``
        on a cache hit) or ``{"type": "error", "code": ..., "message": ...}``. ``scene.anime_mmd.result_npz`` is
        set only on ``done``.
    """
    props = _props(context.scene)
    try:
        job, cached = start(context, python=python, env=env, on_message=on_message)
    except SetupError as e:
        message = _fail_setup(props, e.message)
    else:
        if job is not None:
            deadline = None if timeout is None else time.monotonic() + timeout
            try:
                while True:
                    message = job.step(wait=TIMER_S)
                    if message is not None:
                        return message
                    if deadline is not None and time.monotonic() > deadline:
                        job.worker.stop_with_error(f"the worker gave no result within {timeout:g} s and was "
                                                   "stopped")
            except BaseException:  # Ctrl-C in a batch run, or an error in a callback: never leave it running
                job.cancel()
                job.step()
                raise
        message = cached
    if on_message is not None:
        on_message(message)
    return message


# --------------------------------------------------------------------------------------------------- operators


class ANIMEMMD_OT_estimate(bpy.types.Operator):
    """Estimate the dancer's motion from the video in the worker process (cached per video and detection
    settings; ESC cancels)"""

    bl_idname = "anime_mmd.estimate"
    bl_label = "Estimate Motion"
    bl_options = {"REGISTER"}

    _job: EstimateJob | None = None
    _timer = None

    @classmethod
    def poll(cls, context):
        props = getattr(context.scene, "anime_mmd", None)
        if props is None:
            return False
        if _ACTIVE is not None and not _ACTIVE.worker.finished:
            cls.poll_message_set("An estimate is running (ESC or Cancel stops it)")
            return False
        if props.backend == "keypoints":
            if not props.keypoints_path:
                cls.poll_message_set("Choose a keypoints file first")
                return False
        elif not props.video_path:
            cls.poll_message_set("Choose a video file first")
            return False
        return True

    def invoke(self, context, event):
        return self.execute(context)

    def execute(self, context):
        props = _props(context.scene)
        if context.window is None or bpy.app.background:  # no event loop: run to the end here
            message = run_blocking(context)
            return self._report(message)
        try:
            job, cached = start(context)
        except SetupError as e:
            return self._report(_fail_setup(props, e.message))
        if job is None:
            return self._report(cached)
        self._job = job
        wm = context.window_manager
        self._timer = wm.event_timer_add(TIMER_S, window=context.window)
        wm.modal_handler_add(self)
        _redraw()
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        job = self._job
        if job is None:
            return {"CANCELLED"}
        if event.type == "ESC" and event.value == "PRESS":
            job.cancel()
        if event.type == "TIMER" or job.worker.finished:
            message = job.step()
            if message is not None:
                self._stop_timer(context)
                return self._report(message)
        return {"PASS_THROUGH"}

    def cancel(self, context):
        """Blender ends the modal operator (file loaded, window closed): stop the worker too."""
        if self._job is not None:
            self._job.cancel()
            self._job.step()
        self._stop_timer(context)

    def _stop_timer(self, context):
        if self._timer is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None

    def _report(self, message: dict[str, Any]) -> set[str]:
        if message["type"] == "done":
            result = message["result"]
            how = "from the cache" if result.get("cached") else "estimated"
            self.report({"INFO"}, f"{result.get('frames', '?')} frames {how}: {result.get('npz')}")
            for note in result.get("notes", ()):  # the run's quality report (core.quality), as the CLI prints it
                if str(note).startswith("quality:"):
                    self.report({"INFO"}, str(note))
            return {"FINISHED"}
        if message["code"] == "cancelled":
            self.report({"WARNING"}, "Estimate cancelled")
        else:
            self.report({"ERROR"}, f"Estimate failed ({message['code']}): {message['message']}")
        return {"CANCELLED"}


class ANIMEMMD_OT_cancel(bpy.types.Operator):
    """Stop the running estimate (the worker process is ended; nothing is applied)"""

    bl_idname = "anime_mmd.cancel"
    bl_label = "Cancel Estimate"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        props = getattr(context.scene, "anime_mmd", None)
        if props is None or not (props.is_running or _ACTIVE is not None):
            cls.poll_message_set("No estimate is running")
            return False
        return True

    def execute(self, context):
        job = _ACTIVE
        if job is not None:
            job.cancel()  # the modal operator (or run_blocking) reports it on its next step
        else:  # a stale flag (e.g. a file saved while an estimate ran): nothing is running
            props = _props(context.scene)
            props.is_running = False
            props.progress_stage = ""
            props.status = "No estimate was running"
        _redraw()
        return {"FINISHED"}


def check_worker(python: str | None, timeout: float = CHECK_TIMEOUT_S) -> tuple[bool, str]:
    """Run the worker's ``check``: ``(ok, one-line summary)`` (versions and CUDA, or what is missing + the fix)."""
    if not python:
        return False, f"No worker environment found. {install_hint()}"
    if not Path(python).is_file():
        return False, f"Worker Python not found: {python}. {install_hint()}"
    try:
        messages = worker_client.run_request(python, protocol.check_request(), timeout=timeout)
    except OSError as e:
        return False, f"Cannot start {python}: {errors.os_error_message(e)}. {install_hint()}"
    ok = messages[-1]["type"] == "done" and messages[-1]["result"].get("ok", False)
    return ok, worker_client.summarize_check(messages)


class ANIMEMMD_OT_check_worker(bpy.types.Operator):
    """Start the worker environment's Python and report its packages, CUDA, and what is missing"""

    bl_idname = prefs.CHECK_WORKER_IDNAME
    bl_label = "Check Worker"
    bl_options = {"REGISTER"}

    def execute(self, context):
        ok, text = check_worker(prefs.resolve_worker_python(context))
        p = prefs.get(context)
        if p is not None:
            p.worker_status = text
        self.report({"INFO"} if ok else {"WARNING"}, text)
        _redraw()
        return {"FINISHED"}


CLASSES = (ANIMEMMD_OT_estimate, ANIMEMMD_OT_cancel, ANIMEMMD_OT_check_worker)
