"""2D -> 3D lifting models (worker side).

``core.lifting.videopose3d``: the VideoPose3D temporal convolutional model (Pavllo et al., CVPR 2019) that loads the
official checkpoints. Importing this package or that module does not import torch: torch is imported inside the
functions that build or run a model, so Blender-side code can import the package safely (it has no use for it).
"""
