"""Operators of the panel's steps (except Estimate / Cancel / Check worker, which live in ``op_estimate``).

* ``ANIMEMMD_OT_import_pmx`` -- File > Import > "MMD model (.pmx) [Anime MMD]" and the panel's Import PMX button.
* ``ANIMEMMD_OT_apply`` -- the last estimate's pose file -> retargeted motion -> a NEW action on the target armature
  (a key on every frame with "Key Every Frame", else MMD Bézier keys from ``core.keyreduce``), and the motion's morphs
  on the shape keys of those names (``op_import_vmd.write_morphs``; the morphs no mesh has are reported).
* ``ANIMEMMD_OT_export_vmd`` -- the armature's action -> .vmd (never overwrites unless "Overwrite" is ticked).
* ``ANIMEMMD_OT_show_video`` -- the source video next to the model (image plane or camera background).

Domain errors are reported with ``self.report({'ERROR'}, message)`` and the operator returns ``{'CANCELLED'}``;
disabled buttons say why through ``poll_message_set``.
"""
from __future__ import annotations

import re
from pathlib import Path

import bpy
from bpy.props import BoolProperty, StringProperty
from bpy_extras.io_utils import ExportHelper, ImportHelper

from . import action_writer, armature_rest, pmx_import, video_reference, vmd_export
from ._core import errors, format_errors, motion_stage, options, pose_io


def target_armature(context):
    """The armature the panel works on: the scene's target, else the active object when it is an armature."""
    props = getattr(context.scene, "anime_mmd", None)
    if props is not None and props.target_armature is not None and props.target_armature.type == "ARMATURE":
        return props.target_armature
    obj = context.active_object
    return obj if obj is not None and obj.type == "ARMATURE" else None


def _report_warnings(op, warnings, limit=5) -> None:
    for w in warnings[:limit]:
        op.report({"WARNING"}, w)
    if len(warnings) > limit:
        op.report({"WARNING"}, f"... and {len(warnings) - limit} more warnings (see the console)")
        for w in warnings[limit:]:
            print("Anime MMD:", w)


class ANIMEMMD_OT_import_pmx(bpy.types.Operator, ImportHelper):
    """Import an MMD model (.pmx): armature with the Japanese bone names and IK, mesh, materials and textures"""

    bl_idname = "anime_mmd.import_pmx"
    bl_label = "Import MMD Model (.pmx)"
    bl_options = {"REGISTER", "UNDO"}

    filename_ext = ".pmx"
    filter_glob: StringProperty(default="*.pmx", options={"HIDDEN"})
    set_as_target: BoolProperty(name="Use as Target", default=True,
                                description="Make the imported armature the panel's target armature")

    def execute(self, context):
        path = Path(bpy.path.abspath(self.filepath))
        if not path.is_file():
            self.report({"ERROR"}, f"{path}: no such file")
            return {"CANCELLED"}
        try:
            result = pmx_import.import_pmx(path, context)
        except format_errors.FormatError as e:
            self.report({"ERROR"}, f"Not a readable PMX model: {e}")
            return {"CANCELLED"}
        except OSError as e:
            self.report({"ERROR"}, f"Cannot read the model: {user_message(e)}")
            return {"CANCELLED"}
        _report_warnings(self, result.warnings)
        props = getattr(context.scene, "anime_mmd", None)
        if self.set_as_target and props is not None:
            props.target_armature = result.armature
        nv = len(result.mesh.data.vertices) if result.mesh is not None else 0
        self.report({"INFO"}, f"Imported {result.armature.name}: {len(result.bone_names)} bones, {nv} vertices, "
                              f"{len(result.materials)} materials")
        return {"FINISHED"}


class ANIMEMMD_OT_apply(bpy.types.Operator):
    """Retarget the last estimate onto the target armature as a new action (the existing actions are kept)"""

    bl_idname = "anime_mmd.apply"
    bl_label = "Apply Motion"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        props = getattr(context.scene, "anime_mmd", None)
        if props is None:
            return False
        if props.is_running:
            cls.poll_message_set("Wait for the estimate to finish")
            return False
        if not props.result_npz:
            cls.poll_message_set("Run Estimate first (no pose file yet)")
            return False
        if not Path(bpy.path.abspath(props.result_npz)).is_file():
            cls.poll_message_set("The pose file of the last estimate is gone; run Estimate again")
            return False
        if target_armature(context) is None:
            cls.poll_message_set("Choose a target armature (or import a PMX model)")
            return False
        return True

    def execute(self, context):
        props = context.scene.anime_mmd
        obj = target_armature(context)
        try:
            motion, name = _motion_for(props, obj)
            if props.dense_keys:
                action = action_writer.apply_motion(obj, motion, name=name, scene=context.scene)
            else:  # MMD Bézier keys (core.keyreduce), as the command line writes them
                from .op_import_vmd import apply_reduced

                deg, mm = options.check(options.MotionOptions, "key_tolerance", tuple(props.key_tolerance))
                action = apply_reduced(obj, motion, name=name, scene=context.scene, rot_tol_deg=deg, pos_tol_mm=mm)
        except _user_errors() as e:
            msg = user_message(e)
            self.report({"ERROR"}, f"Apply failed: {msg}")
            props.status = f"Apply failed: {msg}"
            return {"CANCELLED"}
        from .op_import_vmd import MISSING_MORPHS_PROP, missing_morphs_warning

        missing = list(action.get(MISSING_MORPHS_PROP, []))
        if missing:
            self.report({"WARNING"}, missing_morphs_warning(missing, obj.name))
        n_morphs = len(getattr(motion, "morphs", {})) - len(missing)
        counts = list(action.get("mmd_key_counts", []))   # (kept, a key on every frame), from the key reduction
        keys = (f", {int(counts[0]):,} bone keys with MMD's Bézier curves ({counts[0] / counts[1]:.2f}x a key on "
                f"every frame)" if len(counts) == 2 and counts[1] else "")
        props.status = (f"Applied {len(motion.frames)} frames as action '{action.name}'" + keys
                        + (f", {n_morphs} morphs keyed" if n_morphs else ""))
        self.report({"INFO"}, props.status)
        return {"FINISHED"}


def _user_errors() -> tuple:
    return (errors.PipelineError, ValueError, OSError, KeyError)


def user_message(e: BaseException) -> str:
    """One line for an error the user can act on (``PipelineError.message``; OS errors as file + reason)."""
    if isinstance(e, OSError) and not isinstance(e, errors.PipelineError):
        return errors.os_error_message(e)
    return getattr(e, "message", None) or str(e)


def _motion_for(props, obj):
    """Load ``props.result_npz``, retarget onto ``obj``'s rest skeleton with the panel's smoothing.

    Returns ``(BoneMotion, action base name)``; raises PipelineError / ValueError / FileNotFoundError.
    """
    poses = pose_io.load(bpy.path.abspath(props.result_npz))
    rest = armature_rest.rest_skeleton(obj)
    opts = options.MotionOptions(smoothing=float(props.smoothing))
    motion = motion_stage.motion_stage(poses, rest, opts)
    src = props.video_path or poses.source or props.result_npz
    return motion, Path(bpy.path.abspath(src)).stem or "motion"


class ANIMEMMD_OT_export_vmd(bpy.types.Operator, ExportHelper):
    """Export the armature's action as an MMD motion (.vmd) with the Japanese bone names and leg IK positions"""

    bl_idname = "anime_mmd.export_vmd"
    bl_label = "Export VMD"
    bl_options = {"REGISTER"}

    filename_ext = ".vmd"
    filter_glob: StringProperty(default="*.vmd", options={"HIDDEN"})
    overwrite: BoolProperty(name="Overwrite", default=False,
                            description="Replace the file if it exists (otherwise an existing file is never touched)")

    @classmethod
    def poll(cls, context):
        obj = target_armature(context)
        if obj is None:
            cls.poll_message_set("Choose a target armature")
            return False
        if obj.animation_data is None or obj.animation_data.action is None:
            cls.poll_message_set("The armature has no action: Apply a motion first")
            return False
        return True

    def invoke(self, context, event):
        obj = target_armature(context)
        if not self.filepath and obj is not None and obj.animation_data and obj.animation_data.action:
            name = re.sub(r'[\\/:*?"<>|]', "_", obj.animation_data.action.name).strip() or "motion"
            self.filepath = name + self.filename_ext  # keeps Japanese names (bpy.path.clean_name would not)
        return ExportHelper.invoke(self, context, event)

    def execute(self, context):
        obj = target_armature(context)
        path = Path(bpy.path.abspath(self.filepath))
        if path.suffix.lower() != ".vmd":
            path = path.with_suffix(".vmd")
        try:
            result = vmd_export.export_vmd(obj, path, overwrite=self.overwrite)
        except FileExistsError:
            self.report({"ERROR"}, f"{path.name} already exists: tick 'Overwrite' in the file browser to replace it")
            return {"CANCELLED"}
        except (ValueError, OSError) as e:
            self.report({"ERROR"}, f"Export failed: {user_message(e)}")
            return {"CANCELLED"}
        _report_warnings(self, result.warnings)
        self.report({"INFO"}, f"Wrote {path.name}: {result.bone_count} bones, {result.key_count} keys, "
                              f"frames {result.frame_range[0]}-{result.frame_range[1]}")
        return {"FINISHED"}


def _estimate_turn(props) -> int:
    """How the last estimate of this video turned its frames (``--rotate``; its pose file's ``rotate``), else 0."""
    npz = Path(bpy.path.abspath(props.result_npz)) if props.result_npz else None
    if npz is None or not npz.is_file():
        return 0
    try:
        poses = pose_io.load(npz)
    except (OSError, ValueError):
        return 0
    same = Path(poses.source).resolve() == Path(bpy.path.abspath(props.video_path)).resolve() if poses.source else False
    return int(poses.rotate) if same else 0


class ANIMEMMD_OT_show_video(bpy.types.Operator):
    """Show the source video next to the model (image plane or camera background), in sync at 30 fps"""

    bl_idname = "anime_mmd.show_video"
    bl_label = "Show Video"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        props = getattr(context.scene, "anime_mmd", None)
        if props is None:
            return False
        if not props.video_path:
            cls.poll_message_set("Choose a video first")
            return False
        if not Path(bpy.path.abspath(props.video_path)).is_file():
            cls.poll_message_set("The video file does not exist")
            return False
        return True

    def execute(self, context):
        props = context.scene.anime_mmd
        try:
            obj = video_reference.show_video(context, bpy.path.abspath(props.video_path), mode=props.video_display,
                                             start_time=float(props.start_time), armature=target_armature(context),
                                             turn=_estimate_turn(props))
        except (ValueError, RuntimeError, OSError) as e:
            self.report({"ERROR"}, f"Cannot show the video: {user_message(e)}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Showing {Path(props.video_path).name} ({'plane ' + obj.name if obj else 'camera'})")
        return {"FINISHED"}


def menu_import(self, context):
    self.layout.operator(ANIMEMMD_OT_import_pmx.bl_idname, text="MMD model (.pmx) [Anime MMD]")


CLASSES = (ANIMEMMD_OT_import_pmx, ANIMEMMD_OT_apply, ANIMEMMD_OT_export_vmd, ANIMEMMD_OT_show_video)
