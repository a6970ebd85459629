"""Anime MMD: dance video -> MikuMikuDance motion. Blender extension entry point (thin: see ``anime_mmd_addon``).

The add-on package is imported inside ``register`` so that importing this folder as a package outside Blender
(pytest collects from the repository root) does not need ``bpy``.
"""


def register():
    from . import anime_mmd_addon

    anime_mmd_addon.register()


def unregister():
    from . import anime_mmd_addon

    anime_mmd_addon.unregister()
