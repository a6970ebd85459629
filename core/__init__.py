"""Anime MMD engine: video -> 2D joints -> 3D joints -> MMD bone motion -> VMD. No bpy anywhere in this package.

Numpy-only modules (importable in Blender's bundled Python): ``conventions``, ``skeletons``, ``formats``,
``filters``, ``trajectory``, ``quat``, ``rest_skeleton``, ``retarget``, ``motion``, ``pose_io``, ``pipeline`` (its motion stage). Worker-side stages import
torch / mediapipe / cv2 / av lazily inside their functions. Coordinate conventions: ``core.conventions``.
"""
__version__ = "0.1.0"
