"""Scene settings of the Anime MMD panel: ``context.scene.anime_mmd`` (:class:`AnimeMMDSceneProps`).

Fixed names (the worker client and the estimate operator code against them): video_path, start_time, end_time,
use_crop, crop_x, crop_y, crop_w, crop_h, backend, keypoints_path, lifter, checkpoint_path, smoothing,
dense_keys, key_tolerance (degrees, mm; used when dense_keys is off), target_armature, result_npz, is_running,
progress, progress_stage, status.
"""
from __future__ import annotations

import bpy

from ._core import options

#: Choices drawn from the engine's one declaration of the options (``core.options``), plus the add-on's own
#: "read a keypoint file" backend.
_BACKEND_ITEMS = tuple((c.value, c.label, c.description) for c in options.BACKENDS) + (
    ("keypoints", "Keypoints File", "Use keypoints made by another tool (detectron2 .npz, OpenPose JSON folder, "
                                    "VideoPose3D export)"),)
_LIFTER_ITEMS = tuple((c.value, c.label, c.description) for c in options.LIFTERS)
_ROTATE_ITEMS = tuple((c.value, c.label, c.description) for c in options.ROTATIONS)
_SMOOTHING = options.declaration(options.MotionOptions, "smoothing")
_DENSE = options.declaration(options.MotionOptions, "dense")
_KEY_TOLERANCE = options.declaration(options.MotionOptions, "key_tolerance")


def _is_armature(self, obj) -> bool:
    return obj is not None and obj.type == "ARMATURE"


class AnimeMMDSceneProps(bpy.types.PropertyGroup):
    """Per-scene settings and state of the video -> motion job."""

    # 1. Video
    video_path: bpy.props.StringProperty(name="Video", description="Dance video to estimate the motion from",
                                         subtype="FILE_PATH")
    start_time: bpy.props.FloatProperty(name="Start", description="Start time in the video, seconds",
                                        min=0.0, default=0.0, precision=2, unit="NONE")
    end_time: bpy.props.FloatProperty(name="End", description="End time in the video, seconds (0 = to the end)",
                                      min=0.0, default=0.0, precision=2)
    use_crop: bpy.props.BoolProperty(name="Crop", description="Analyse only a box of the frame (e.g. one half of "
                                                              "a side-by-side video)", default=False)
    rotate: bpy.props.EnumProperty(
        name="Turn", description=options.declaration(options.DetectOptions, "rotate")["help"].capitalize(),
        items=_ROTATE_ITEMS, default=options.default(options.DetectOptions, "rotate"))
    crop_x: bpy.props.IntProperty(name="X", description="Left edge of the crop box, pixels", min=0, default=0)
    crop_y: bpy.props.IntProperty(name="Y", description="Top edge of the crop box, pixels", min=0, default=0)
    crop_w: bpy.props.IntProperty(name="Width", description="Width of the crop box, pixels", min=0, default=0)
    crop_h: bpy.props.IntProperty(name="Height", description="Height of the crop box, pixels", min=0, default=0)

    # 2. Backend
    backend: bpy.props.EnumProperty(
        name="Backend", description="What finds the dancer's joints in the video", items=_BACKEND_ITEMS,
        default=options.default(options.DetectOptions, "backend"))
    keypoints_path: bpy.props.StringProperty(name="Keypoints", description="Keypoints file or OpenPose JSON folder",
                                             subtype="FILE_PATH")
    lifter: bpy.props.EnumProperty(
        name="3D Lifter", description="What turns 2D joints into 3D", items=_LIFTER_ITEMS,
        default=options.default(options.DetectOptions, "lifter"))
    checkpoint_path: bpy.props.StringProperty(name="Checkpoint", description="VideoPose3D checkpoint (.bin)",
                                              subtype="FILE_PATH")

    force: bpy.props.BoolProperty(
        name="Use Poor Detection", default=False,
        description=options.declaration(options.DetectOptions, "force")["help"].capitalize()
        + " (the estimate otherwise stops with the quality report and what to try)")

    hands: bpy.props.BoolProperty(
        name="Fingers", default=False,
        description="Key the fingers from MediaPipe Holistic's hand model (about 2.2x slower detection; hands it "
                    "cannot see get a relaxed pose)")
    face: bpy.props.BoolProperty(
        name="Face", default=False,
        description="Take the head from the face mesh and key まばたき, ウィンク, ウィンク右, あ, い, う (MediaPipe Holistic, "
                    "the same slower model)")

    # 3. Smoothing (a retargeting setting: changing it does not detect again)
    smoothing: bpy.props.FloatProperty(name="Smoothing", description=_SMOOTHING["help"], min=_SMOOTHING["min"],
                                       max=_SMOOTHING["max"],
                                       default=options.default(options.MotionOptions, "smoothing"), subtype="FACTOR")
    dense_keys: bpy.props.BoolProperty(name="Key Every Frame", description=_DENSE["help"],
                                       default=options.default(options.MotionOptions, "dense"))
    key_tolerance: bpy.props.FloatVectorProperty(
        name="Key Tolerance", description=_KEY_TOLERANCE["help"], size=2,
        min=_KEY_TOLERANCE["min"], soft_max=10.0, precision=2,
        default=options.default(options.MotionOptions, "key_tolerance"))

    # 4. Target
    target_armature: bpy.props.PointerProperty(name="Armature", description="The MMD model's armature to animate",
                                               type=bpy.types.Object, poll=_is_armature)

    # 5. Estimate state
    result_npz: bpy.props.StringProperty(name="Pose File", description="Pose file (.npz) of the last estimate",
                                         subtype="FILE_PATH")
    is_running: bpy.props.BoolProperty(name="Running", default=False)
    progress: bpy.props.FloatProperty(name="Progress", min=0.0, max=1.0, default=0.0, subtype="FACTOR")
    progress_stage: bpy.props.StringProperty(name="Stage", default="")
    status: bpy.props.StringProperty(name="Status", description="Last message", default="")

    # 6. Video reference
    video_display: bpy.props.EnumProperty(
        name="Show As", description="How to show the source video next to the model",
        items=(("PLANE", "Image Plane", "A plane with the video as a movie texture beside the model"),
               ("CAMERA", "Camera Background", "The video as the active camera's background movie clip")),
        default="PLANE")


CLASSES = (AnimeMMDSceneProps,)


def register_props() -> None:
    bpy.types.Scene.anime_mmd = bpy.props.PointerProperty(type=AnimeMMDSceneProps)


def unregister_props() -> None:
    if hasattr(bpy.types.Scene, "anime_mmd"):
        del bpy.types.Scene.anime_mmd
