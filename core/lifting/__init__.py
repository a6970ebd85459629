"""2D -> 3D lifting that runs on numpy (imports in Blender's Python too).

``core.lifting.trained``: the project's temporal lifter (``docs/lifter.md``), with its weights and their licence in
``weights/``. The torch lifter (VideoPose3D, loading the official checkpoints) is worker side:
``core.worker.lifting``.
"""
