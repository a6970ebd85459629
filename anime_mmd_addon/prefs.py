"""Add-on preferences: the worker's Python, the device, the cache folder, the worker set-up and check.

Fixed names (the worker client codes against them): ``worker_python``, ``device``, ``cache_dir``, ``worker_status``,
and the functions :func:`get`, :func:`resolve_worker_python` and :func:`cache_dir`.

The *Set up worker* settings (``setup_python``, ``wheelhouse_dir``, ``setup_torch``) and its progress
(``setup_status``, ``setup_progress``, ``setup_log``) live here too; the operator is ``op_setup`` (its classes are
registered with this module's :data:`CLASSES`). The environment it makes is :func:`worker_venv_dir`.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import bpy

from ._core import EXTENSION_PACKAGE, EXTENSION_ROOT

#: Where ``tools/install_deps.py`` puts the worker environment by default (the repository root's ``.venv``).
DEFAULT_VENV = EXTENSION_ROOT / ".venv"


#: ``bl_idname`` of the Check worker operator (``op_estimate.ANIMEMMD_OT_check_worker``), drawn here.
CHECK_WORKER_IDNAME = "anime_mmd.check_worker"
#: ``bl_idname`` of the Set up worker operator and its Cancel (``op_setup``), drawn here.
SETUP_WORKER_IDNAME = "anime_mmd.setup_worker"
CANCEL_SETUP_IDNAME = "anime_mmd.cancel_setup"
#: Folder name of the worker environment inside the extension's user folder.
WORKER_VENV_NAME = "worker_venv"


def venv_python(venv_dir: Path) -> Path:
    """The interpreter of a virtual environment: ``bin/python`` (``Scripts/python.exe`` on Windows)."""
    return venv_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


class AnimeMMDPreferences(bpy.types.AddonPreferences):
    """Preferences of the Anime MMD extension (Edit > Preferences > Add-ons > Anime MMD)."""

    bl_idname = EXTENSION_PACKAGE

    worker_python: bpy.props.StringProperty(
        name="Worker Python",
        description=("Python interpreter of the worker environment (mediapipe, PyAV). Empty: the environment Set Up "
                     "Worker made, else the .venv that 'python tools/install_deps.py' creates in a source checkout"),
        subtype="FILE_PATH",
        default="",
    )
    device: bpy.props.EnumProperty(
        name="Device",
        description="Where the worker runs the neural networks",
        items=(("CPU", "CPU", "Run on the processor (works everywhere)"),
               ("CUDA", "CUDA", "Run on an NVIDIA GPU (needs a CUDA build of torch in the worker environment)")),
        default="CPU",
    )
    cache_dir: bpy.props.StringProperty(
        name="Cache Folder",
        description=("Where estimates (pose files) are kept so re-running with other retargeting settings does not "
                     "detect again. Empty: a folder in the extension's user directory"),
        subtype="DIR_PATH",
        default="",
    )
    worker_status: bpy.props.StringProperty(
        name="Worker Status",
        description="What the last worker check found",
        default="",
    )
    setup_python: bpy.props.StringProperty(
        name="Python for Set Up",
        description=("Python 3.9-3.12 to build the worker environment from. Empty: Blender's own Python when it is "
                     "3.9-3.12, else one found on the system, else (with online access) one fetched by uv"),
        subtype="FILE_PATH",
        default="",
    )
    wheelhouse_dir: bpy.props.StringProperty(
        name="Wheelhouse",
        description=("Folder of downloaded wheels to install from, offline (pip download -r worker.txt -d DIR on a "
                     "machine that is online). Empty: download from the package index (needs online access)"),
        subtype="DIR_PATH",
        default="",
    )
    setup_torch: bpy.props.BoolProperty(
        name="Install torch (VideoPose3D, detectron2)",
        description=("Also install torch (about 0.9 GB more for the CPU build; PyPI's build when Device is CUDA, a "
                     "CUDA build on Linux): needed only by the VideoPose3D lifter and the detectron2 backend"),
        default=False,
    )
    setup_status: bpy.props.StringProperty(name="Set-up Status", description="What the set-up is doing or did",
                                           default="")
    setup_progress: bpy.props.FloatProperty(name="Set-up Progress", min=0.0, max=1.0, default=0.0,
                                            subtype="FACTOR")
    setup_log: bpy.props.StringProperty(name="Set-up Log", description="The last lines the set-up printed",
                                        default="")

    def draw(self, context):
        from . import op_setup, worker_setup

        layout = self.layout
        status = getattr(self, "setup_status", "")
        box = layout.box()
        box.label(text="Worker environment", icon="CONSOLE")
        running = op_setup.is_running()
        row = box.row()
        row.enabled = not running
        row.operator(SETUP_WORKER_IDNAME, icon="IMPORT")
        row.operator(CHECK_WORKER_IDNAME, icon="CONSOLE")
        if running:
            box.progress(factor=getattr(self, "setup_progress", 0.0), type="BAR", text=status or "Setting up...")
            box.operator(CANCEL_SETUP_IDNAME, icon="CANCEL")
        elif status:
            for line in status.splitlines()[:12]:
                box.label(text=line)
        made = worker_venv_dir()
        if not running and made is not None and worker_setup.is_ready(made) and worker_setup.lock_changed(made):
            box.label(text="The worker was set up for an earlier version: press Set Up Worker to update it",
                      icon="ERROR")
        col = box.column()
        col.enabled = not running
        col.prop(self, "setup_torch")
        col.prop(self, "setup_python")
        col.prop(self, "wheelhouse_dir")
        if not getattr(self, "wheelhouse_dir", "").strip() and not getattr(bpy.app, "online_access", True):
            col.label(text="Online access is off (Preferences > System): set a wheelhouse folder or allow it",
                      icon="INFO")
        layout.separator()
        col = layout.column()
        col.prop(self, "worker_python")
        py = resolve_worker_python(context)
        col.label(text=f"Using: {py}" if py else "No worker found: press Set Up Worker (or set Worker Python)",
                  icon="CHECKMARK" if py and Path(py).is_file() else "ERROR")
        col.prop(self, "device")
        col.prop(self, "cache_dir")
        col.label(text=f"Cache: {cache_dir(context)}", icon="FILE_FOLDER")
        if self.worker_status:
            box = layout.box()
            for line in self.worker_status.splitlines():
                box.label(text=line)


def get(context=None):
    """This extension's preferences, or None when the add-on is not enabled as an extension (e.g. in tests that
    register the module directly)."""
    context = context or bpy.context
    addon = context.preferences.addons.get(EXTENSION_PACKAGE)
    return addon.preferences if addon is not None else None


def worker_venv_dir() -> Path | None:
    """Where *Set up worker* makes the worker environment: ``<extension user folder>/worker_venv``
    (``bpy.utils.extension_path_user``), or None when the add-on is not installed as an extension (source tree)."""
    if "." not in EXTENSION_PACKAGE:
        return None
    try:
        return Path(bpy.utils.extension_path_user(EXTENSION_PACKAGE, create=True)) / WORKER_VENV_NAME
    except (ValueError, RuntimeError, OSError):
        return None


def resolve_worker_python(context=None) -> str | None:
    """The worker interpreter to start: the preference when set (``//`` paths made absolute, ``~`` expanded),
    otherwise the environment *Set up worker* finished (:func:`worker_venv_dir`, stamped), otherwise
    ``<extension root>/.venv/bin/python`` (``Scripts/python.exe`` on Windows) when that file exists, otherwise None.
    A set path is returned even if it does not exist, so the caller can say so."""
    from . import worker_setup

    p = get(context)
    if p is not None and p.worker_python.strip():
        return str(Path(bpy.path.abspath(p.worker_python.strip())).expanduser())
    made = worker_venv_dir()
    if made is not None and worker_setup.is_ready(made):
        return str(worker_setup.venv_python(made))
    auto = venv_python(DEFAULT_VENV)
    return str(auto) if auto.is_file() else None


def default_cache_dir() -> Path:
    """``<extension user dir>/cache`` when installed as an extension, else ``<temp>/anime_mmd_cache``."""
    if "." in EXTENSION_PACKAGE:
        try:
            return Path(bpy.utils.extension_path_user(EXTENSION_PACKAGE, path="cache", create=True))
        except (ValueError, RuntimeError, OSError):
            pass
    return Path(tempfile.gettempdir()) / "anime_mmd_cache"


def cache_dir(context=None) -> Path:
    """The folder for cached estimates (created if missing): the preference when set, else :func:`default_cache_dir`.

    Raises:
        OSError: the folder cannot be created.
    """
    p = get(context)
    if p is not None and p.cache_dir.strip():
        d = Path(bpy.path.abspath(p.cache_dir.strip())).expanduser()
    else:
        d = default_cache_dir()
    d.mkdir(parents=True, exist_ok=True)
    return d


def _classes() -> tuple:
    from . import op_setup

    return (AnimeMMDPreferences,) + op_setup.CLASSES


#: The preferences and the Set up worker operators (``op_setup``), registered together.
CLASSES = _classes()
