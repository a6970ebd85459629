"""Every check of the Blender version or of an API that moved between versions, in one place (4.2 .. 5.x).

* Actions: 4.4 added slots, 5.0 made layered actions (slot + layer + keyframe strip + channelbag) the only kind;
  4.2/4.3 keep F-curves on the action itself.
* Materials: 4.2's EEVEE Next replaced ``blend_method`` by ``surface_render_method``.
"""
from __future__ import annotations

import bpy

#: The first Blender with action slots (and channelbags): 4.4.
SLOTTED_ACTIONS_VERSION = (4, 4, 0)


def has_slotted_actions(action) -> bool:
    """Whether ``action`` keeps its F-curves in slots' channelbags (Blender 4.4 and later)."""
    return hasattr(action, "slots") and bpy.app.version >= SLOTTED_ACTIONS_VERSION


def channelbag_for_slot(action, slot, *, ensure: bool):
    """The channelbag of ``slot`` in ``action`` (created when ``ensure``), or None: 5.x has ``bpy_extras`` helpers
    for it, 4.4/4.5 reach it through the first layer's keyframe strip."""
    from bpy_extras import anim_utils

    if ensure:
        make = getattr(anim_utils, "action_ensure_channelbag_for_slot", None)
        if make is not None:
            return make(action, slot)
        layer = action.layers[0] if len(action.layers) else action.layers.new("Layer")
        strip = layer.strips[0] if len(layer.strips) else layer.strips.new(type="KEYFRAME")
        return strip.channelbag(slot, ensure=True)
    get = getattr(anim_utils, "action_get_channelbag_for_slot", None)
    if get is not None:
        return get(action, slot)
    for layer in action.layers:
        for strip in layer.strips:
            bag = strip.channelbag(slot)
            if bag is not None:
                return bag
    return None


def set_dithered_transparency(material) -> None:
    """Let alpha-textured materials show through in EEVEE (``surface_render_method`` on 4.2+)."""
    if hasattr(material, "surface_render_method"):
        material.surface_render_method = "DITHERED"
