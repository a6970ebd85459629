"""*Set up worker* and its Cancel: make the worker environment from inside Blender (:mod:`.worker_setup` does it).

``ANIMEMMD_OT_setup_worker`` builds :class:`.worker_setup.SetupOptions` from the preferences -- the environment goes
to ``prefs.worker_venv_dir()`` (the extension's user folder), the Python from ``setup_python`` or else Blender's own
``sys.executable`` or the system's, the wheels from ``wheelhouse_dir`` (offline) or else the package index, which it
uses only when ``bpy.app.online_access`` is true (the manifest's ``network`` permission says why) -- and drives a
:class:`.worker_setup.SetupRun` from a 0.1 s window-manager timer, mirroring its progress into the preferences
(``setup_progress``, ``setup_status``, ``setup_log``) while Blender stays responsive. ESC or *Cancel* stops pip.
On success it runs *Check worker* (``op_estimate.check_worker``) so ``worker_status`` shows what the new
environment has. Without a window (``blender -b``, bpy as a module) it runs to the end synchronously.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import bpy

from . import prefs, worker_setup

#: Seconds between two polls of the set-up (the modal timer).
TIMER_S = 0.1
#: Lines of pip output kept in ``setup_log``.
LOG_LINES = 12

#: The set-up in progress (one at a time).
_ACTIVE: "worker_setup.SetupRun | None" = None


def is_running() -> bool:
    """True while a set-up runs."""
    return _ACTIVE is not None and not _ACTIVE.finished


def blender_python() -> str | None:
    """Blender's bundled interpreter (``sys.executable`` is it in Blender 2.91+; with bpy as a module it is the
    Python that imported bpy), or None when it is not a file."""
    exe = sys.executable
    return exe if exe and Path(exe).is_file() else None


def setup_options(context, *, torch: bool | None = None) -> worker_setup.SetupOptions:
    """The set-up the preferences ask for.

    Raises:
        worker_setup.SetupFailed: the add-on is not installed as an extension (no user folder for the environment).
    """
    p = prefs.get(context)
    venv_dir = prefs.worker_venv_dir()
    if venv_dir is None:
        raise worker_setup.SetupFailed("Set up worker needs the add-on installed as an extension (it keeps the "
                                       "worker in the extension's user folder); in a source checkout run "
                                       "python3 tools/install_deps.py")
    python = wheelhouse = None
    want_torch, device = False, "CPU"
    if p is not None:
        if p.setup_python.strip():
            python = str(Path(bpy.path.abspath(p.setup_python.strip())).expanduser())
        if p.wheelhouse_dir.strip():
            wheelhouse = Path(bpy.path.abspath(p.wheelhouse_dir.strip())).expanduser()
        want_torch, device = p.setup_torch, p.device
    if torch is not None:
        want_torch = torch
    return worker_setup.SetupOptions(
        venv_dir=venv_dir, python=python, blender_python=blender_python(), wheelhouse=wheelhouse,
        online=bool(getattr(bpy.app, "online_access", False)), torch=want_torch, cuda=device == "CUDA",
        uv_dir=venv_dir.parent / "uv")


def _redraw() -> None:
    wm = bpy.context.window_manager
    for window in getattr(wm, "windows", ()):
        for area in window.screen.areas:
            if area.type == "PREFERENCES":
                area.tag_redraw()


class _Mirror:
    """Copies a run's events into the preferences (looked up each time: the add-on may be re-registered)."""

    def __init__(self):
        self.log: list[str] = []

    def __call__(self, event: dict[str, Any]) -> None:
        p = prefs.get(bpy.context)
        kind = event["type"]
        if kind == "log":
            self.log = (self.log + [event["line"]])[-LOG_LINES:]
            print(f"[anime_mmd setup] {event['line']}", flush=True)
        if p is None:
            return
        if kind == "log":
            p.setup_log = "\n".join(self.log)
        elif kind == "stage":
            p.setup_status = event["text"]
        elif kind == "done":
            p.setup_status = event["message"]
            p.setup_progress = 1.0
        elif kind == "error":
            p.setup_status = ("Set-up cancelled" if event.get("cancelled")
                              else f"Set-up failed: {event['message']}")


def _after(context, event: dict[str, Any]) -> None:
    """On success, run Check worker so the preferences show what the new environment has."""
    if event["type"] != "done":
        return
    from . import op_estimate

    ok, text = op_estimate.check_worker(prefs.resolve_worker_python(context))
    p = prefs.get(context)
    if p is not None:
        p.worker_status = text


def run_blocking(context, *, torch: bool | None = None, on_event=None) -> dict[str, Any]:
    """Run the set-up the preferences ask for to its end (background mode, scripts, tests); returns the terminal
    event (``{"type": "done", "python": ...}`` or ``{"type": "error", "message": ...}``)."""
    global _ACTIVE
    if is_running():
        return {"type": "error", "message": "a set-up is already running"}
    try:
        options = setup_options(context, torch=torch)
    except worker_setup.SetupFailed as e:
        return {"type": "error", "message": str(e)}
    mirror = _Mirror()

    def both(event):
        mirror(event)
        if on_event is not None:
            on_event(event)

    run = worker_setup.SetupRun(options, both)
    _ACTIVE = run
    try:
        result = run.run()
    finally:
        _ACTIVE = None
    _after(context, result)
    return result


class ANIMEMMD_OT_setup_worker(bpy.types.Operator):
    """Make the worker environment in the extension's user folder: a Python 3.9-3.12 venv with the pinned,
    hash-checked worker packages (downloads them only with online access, or installs them from a wheelhouse)"""

    bl_idname = prefs.SETUP_WORKER_IDNAME
    bl_label = "Set Up Worker"
    bl_options = {"REGISTER"}

    _run: "worker_setup.SetupRun | None" = None
    _timer = None

    @classmethod
    def poll(cls, context):
        if is_running():
            cls.poll_message_set("A set-up is running (ESC or Cancel stops it)")
            return False
        return True

    def execute(self, context):
        global _ACTIVE
        if context.window is None or bpy.app.background:  # no event loop: run to the end here
            return self._report(run_blocking(context))
        try:
            options = setup_options(context)
        except worker_setup.SetupFailed as e:
            return self._report({"type": "error", "message": str(e)})
        p = prefs.get(context)
        if p is not None:
            p.setup_progress = 0.0
            p.setup_status = "Starting the set-up"
            p.setup_log = ""
        self._run = _ACTIVE = worker_setup.SetupRun(options, _Mirror())
        wm = context.window_manager
        self._timer = wm.event_timer_add(TIMER_S, window=context.window)
        wm.modal_handler_add(self)
        _redraw()
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        run = self._run
        if run is None:
            return {"CANCELLED"}
        if event.type == "ESC" and event.value == "PRESS":
            run.cancel()
        if event.type == "TIMER":
            events = run.poll()
            p = prefs.get(context)
            if p is not None:
                p.setup_progress = run.fraction
            if events:
                _redraw()
            if run.finished:
                return self._end(context)
        return {"PASS_THROUGH"}

    def cancel(self, context):
        """Blender ends the modal operator (file loaded, window closed): stop pip too."""
        if self._run is not None:
            self._run.cancel()
            self._run.poll()
        self._end(context)

    def _end(self, context) -> set[str]:
        global _ACTIVE
        if self._timer is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None
        run, self._run = self._run, None
        if _ACTIVE is run:
            _ACTIVE = None
        if run is None or run.result is None:
            return {"CANCELLED"}
        _after(context, run.result)
        _redraw()
        return self._report(run.result)

    def _report(self, event: dict[str, Any]) -> set[str]:
        if event["type"] == "done":
            self.report({"INFO"}, event["message"])
            return {"FINISHED"}
        if event.get("cancelled"):
            self.report({"WARNING"}, "Set-up cancelled")
        else:
            self.report({"ERROR"}, f"Set-up failed: {event['message']}")
        p = prefs.get(bpy.context)
        if p is not None and not event.get("cancelled"):
            p.setup_status = f"Set-up failed: {event['message']}"
        return {"CANCELLED"}


class ANIMEMMD_OT_cancel_setup(bpy.types.Operator):
    """Stop the running worker set-up (pip is ended; an environment this set-up created is removed)"""

    bl_idname = prefs.CANCEL_SETUP_IDNAME
    bl_label = "Cancel Set-up"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        if not is_running():
            cls.poll_message_set("No set-up is running")
            return False
        return True

    def execute(self, context):
        if _ACTIVE is not None:
            _ACTIVE.cancel()  # the modal operator reports it on its next timer tick
        return {"FINISHED"}


CLASSES = (ANIMEMMD_OT_setup_worker, ANIMEMMD_OT_cancel_setup)
