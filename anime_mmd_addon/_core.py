"""Access to the engine package ``core`` from the add-on, wherever the add-on is loaded from.

The extension's source directory is the repository root, so ``core`` is a *sibling* of this package:

* installed as an extension, both live under Blender's package, e.g. ``bl_ext.user_default.anime_mmd.core``;
* in the source tree (tests, ``tools/batch.py``) the repository root is on ``sys.path`` and ``anime_mmd_addon`` and
  ``core`` are top-level packages.

:func:`core_module` imports a ``core`` submodule by its dotted name relative to ``core`` in both cases, so no module
of the add-on hard-codes an absolute import of ``core``. Only numpy-only ``core`` modules may be imported inside
Blender (no torch / mediapipe / cv2 / av: those run in the worker process).
"""
from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

#: This package's dotted name, e.g. ``bl_ext.user_default.anime_mmd.anime_mmd_addon`` or ``anime_mmd_addon``.
ADDON_PACKAGE = __package__ or "anime_mmd_addon"
#: The extension's package (the add-on module Blender enables; ``bl_idname`` of the preferences), or this package
#: itself when it is imported top-level from the source tree.
EXTENSION_PACKAGE = ADDON_PACKAGE.rpartition(".")[0] or ADDON_PACKAGE
#: Dotted name of the engine package next to this one.
CORE_PACKAGE = f"{ADDON_PACKAGE.rpartition('.')[0]}.core" if "." in ADDON_PACKAGE else "core"
#: The extension's root folder (the repository root in a checkout): holds ``core/`` and, in a checkout, ``.venv``.
EXTENSION_ROOT = Path(__file__).resolve().parents[1]


def core_module(name: str = "") -> ModuleType:
    """Import and return ``core.<name>`` (``core`` itself for an empty name), e.g. ``core_module("formats.pmx")``.

    Raises:
        ImportError: the module is missing (a broken install) or needs a dependency Blender lacks.
    """
    return importlib.import_module(f"{CORE_PACKAGE}.{name}" if name else CORE_PACKAGE)
