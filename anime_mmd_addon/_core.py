"""The add-on's one door to the engine ``core``: every ``core`` module the add-on uses is imported here, statically.

The extension's source directory is the repository root, so ``core`` is a *sibling* of this package:

* installed as an extension, both live under Blender's package, e.g. ``bl_ext.user_default.anime_mmd.core``, and
  the relative import ``from ..core import ...`` finds it;
* in the source tree (tests, ``tools/batch.py``) the repository root is on ``sys.path`` and ``anime_mmd_addon`` and
  ``core`` are top-level packages, so the same names are imported from ``core``.

Other add-on modules write ``from ._core import pose_io, retarget``: what Blender uses of the engine can be read off
this file (and ``tests/blender/test_core_seam.py`` checks that every name here is a numpy-only module outside
``core/worker/``). Never import torch / mediapipe / cv2 / av here: those run in the worker process.
"""
from __future__ import annotations

from pathlib import Path

try:  # installed extension: core is the sibling package
    from .. import core
    from ..core import (atomic, conventions, errors, keyreduce, motion, motion_stage, options, pose_io, protocol,
                        quat, rest_skeleton, retarget)
    from ..core.formats import errors as format_errors
    from ..core.formats import pmx, vmd
except ImportError as _e:  # source tree: anime_mmd_addon and core are top-level packages
    if "beyond top-level package" not in str(_e) and "no known parent package" not in str(_e):
        raise
    import core
    from core import (atomic, conventions, errors, keyreduce, motion, motion_stage, options, pose_io, protocol,
                      quat, rest_skeleton, retarget)
    from core.formats import errors as format_errors
    from core.formats import pmx, vmd

#: This package's dotted name, e.g. ``bl_ext.user_default.anime_mmd.anime_mmd_addon`` or ``anime_mmd_addon``.
ADDON_PACKAGE = __package__ or "anime_mmd_addon"
#: The extension's package (the add-on module Blender enables; ``bl_idname`` of the preferences), or this package
#: itself when it is imported top-level from the source tree.
EXTENSION_PACKAGE = ADDON_PACKAGE.rpartition(".")[0] or ADDON_PACKAGE
#: Dotted name of the engine package next to this one.
CORE_PACKAGE = core.__name__
#: The extension's root folder (the repository root in a checkout): holds ``core/`` and, in a checkout, ``.venv``.
EXTENSION_ROOT = Path(__file__).resolve().parents[1]
