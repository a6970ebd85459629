"""Anime MMD Blender add-on: all bpy code (the engine is ``core``, next to this package; see ``_core``).

``register()`` / ``unregister()`` register every class of the add-on, including the worker client's operators
from ``op_estimate`` (Estimate, Cancel, Check worker), the scene settings ``Scene.anime_mmd`` and the
File > Import menu entries (PMX model, VMD motion). Both can be called repeatedly (register, unregister, register...).
"""
from __future__ import annotations

import bpy

from . import op_estimate, op_import_vmd, operators, panel, prefs, props


def _classes() -> tuple:
    est = (op_estimate.ANIMEMMD_OT_estimate, op_estimate.ANIMEMMD_OT_cancel, op_estimate.ANIMEMMD_OT_check_worker)
    return prefs.CLASSES + props.CLASSES + operators.CLASSES + op_import_vmd.CLASSES + est + panel.CLASSES


def register() -> None:
    for cls in _classes():
        bpy.utils.register_class(cls)
    props.register_props()
    bpy.types.TOPBAR_MT_file_import.append(operators.menu_import)
    bpy.types.TOPBAR_MT_file_import.append(op_import_vmd.menu_import)


def unregister() -> None:
    bpy.types.TOPBAR_MT_file_import.remove(op_import_vmd.menu_import)
    bpy.types.TOPBAR_MT_file_import.remove(operators.menu_import)
    props.unregister_props()
    for cls in reversed(_classes()):
        if getattr(cls, "is_registered", False):
            bpy.utils.unregister_class(cls)
