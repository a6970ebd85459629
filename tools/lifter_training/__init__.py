"""Training the temporal 2D -> 3D lifter of issue 8 from motion capture (docs/lifter.md).

Modules: :mod:`.mocap` (BVH -> CANONICAL joints, retargeting onto MMD rest skeletons, the held-out split),
:mod:`.synth` (virtual cameras and detector noise), :mod:`.model` (the torch model), :mod:`.train` (losses and the
training loop). Training needs torch; the shipped inference is numpy-only (``core.lifting.trained``).
"""
