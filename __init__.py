"""Anime MMD: dance video -> MikuMikuDance motion. Blender extension entry point (thin: see ``anime_mmd_addon``)."""
from . import anime_mmd_addon


def register():
    anime_mmd_addon.register()


def unregister():
    anime_mmd_addon.unregister()
