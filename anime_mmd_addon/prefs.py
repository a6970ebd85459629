"""Add-on preferences: the worker's Python, the device, the cache folder and the worker check's result.

Fixed names (the worker client codes against them): ``worker_python``, ``device``, ``cache_dir``, ``worker_status``,
and the functions :func:`get`, :func:`resolve_worker_python` and :func:`cache_dir`.
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


def venv_python(venv_dir: Path) -> Path:
    """The interpreter of a virtual environment: ``bin/python`` (``Scripts/python.exe`` on Windows)."""
    return venv_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


class AnimeMMDPreferences(bpy.types.AddonPreferences):
    """Preferences of the Anime MMD extension (Edit > Preferences > Add-ons > Anime MMD)."""

    bl_idname = EXTENSION_PACKAGE

    worker_python: bpy.props.StringProperty(
        name="Worker Python",
        description=("Python interpreter of the worker environment (torch, mediapipe, PyAV). Empty: use the .venv "
                     "that 'python tools/install_deps.py' creates next to the add-on, when present"),
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

    def draw(self, context):
        layout = self.layout
        col = layout.column()
        col.prop(self, "worker_python")
        py = resolve_worker_python(context)
        col.label(text=f"Using: {py}" if py else "No worker found: run 'python tools/install_deps.py' or set the path",
                  icon="CHECKMARK" if py and Path(py).is_file() else "ERROR")
        col.prop(self, "device")
        col.prop(self, "cache_dir")
        col.label(text=f"Cache: {cache_dir(context)}", icon="FILE_FOLDER")
        layout.operator(CHECK_WORKER_IDNAME, icon="CONSOLE")
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


def resolve_worker_python(context=None) -> str | None:
    """The worker interpreter to start: the preference when set (``//`` paths made absolute, ``~`` expanded),
    otherwise ``<extension root>/.venv/bin/python`` (``Scripts/python.exe`` on Windows) when that file exists,
    otherwise None. A set path is returned even if it does not exist, so the caller can say so."""
    p = get(context)
    if p is not None and p.worker_python.strip():
        return str(Path(bpy.path.abspath(p.worker_python.strip())).expanduser())
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


CLASSES = (AnimeMMDPreferences,)
