"""The 3D Viewport sidebar panel (N-panel tab "Anime MMD"): the steps in order.

1 Video (path, range, crop) · 2 Backend (backend, keypoints, lifter, checkpoint) · 3 Smoothing · 4 Target (armature,
Import PMX) · 5 Estimate (progress bar with the stage while running, Cancel) · 6 Apply (key every frame, or MMD Bézier
keys within the Key Tolerance) · Show video · Import / Export VMD.
"Check worker" is in the add-on preferences. Disabled buttons explain themselves through the operators' poll
messages.
"""
from __future__ import annotations

import bpy

from . import op_estimate, op_import_vmd, operators


class ANIMEMMD_PT_main(bpy.types.Panel):
    """Video -> MMD motion, step by step."""

    bl_label = "Anime MMD"
    bl_idname = "ANIMEMMD_PT_main"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Anime MMD"

    def draw(self, context):
        layout = self.layout
        props = context.scene.anime_mmd
        running = props.is_running

        box = layout.box()
        box.label(text="1. Video", icon="FILE_MOVIE")
        col = box.column(align=True)
        col.enabled = not running
        col.prop(props, "video_path", text="")
        row = col.row(align=True)
        row.prop(props, "start_time")
        row.prop(props, "end_time")
        col.prop(props, "rotate")
        col.prop(props, "use_crop")
        if props.use_crop:
            sub = col.column(align=True)
            r = sub.row(align=True)
            r.prop(props, "crop_x")
            r.prop(props, "crop_y")
            r = sub.row(align=True)
            r.prop(props, "crop_w")
            r.prop(props, "crop_h")

        box = layout.box()
        box.label(text="2. Backend", icon="OUTLINER_OB_ARMATURE")
        col = box.column(align=True)
        col.enabled = not running
        col.prop(props, "backend", text="")
        if props.backend == "keypoints":
            col.prop(props, "keypoints_path")
        col.prop(props, "lifter")
        if props.lifter == "videopose3d":
            col.prop(props, "checkpoint_path")
        if props.backend == "mediapipe":
            row = col.row(align=True)
            row.prop(props, "hands")
            row.prop(props, "face")
        col.prop(props, "force")

        box = layout.box()
        box.label(text="3. Smoothing", icon="MOD_SMOOTH")
        box.prop(props, "smoothing", slider=True)

        box = layout.box()
        box.label(text="4. Target", icon="ARMATURE_DATA")
        box.prop(props, "target_armature", text="")
        box.operator(operators.ANIMEMMD_OT_import_pmx.bl_idname, text="Import PMX", icon="IMPORT")

        box = layout.box()
        box.label(text="5. Estimate", icon="VIEWZOOM")
        if running:
            stage = props.progress_stage or "starting"
            box.progress(factor=float(props.progress), type="BAR",
                         text=f"{stage} {100.0 * props.progress:.0f}%")
            box.operator(op_estimate.ANIMEMMD_OT_cancel.bl_idname, text="Cancel", icon="CANCEL")
        else:
            box.operator(op_estimate.ANIMEMMD_OT_estimate.bl_idname, text="Estimate", icon="PLAY")

        box = layout.box()
        box.label(text="6. Preview and export", icon="ACTION")
        box.prop(props, "dense_keys")
        if not props.dense_keys:   # the Bézier key reduction's tolerance (core.options key_tolerance)
            row = box.row(align=True)
            row.prop(props, "key_tolerance", index=0, text="Rotation °")
            row.prop(props, "key_tolerance", index=1, text="Position mm")
        box.operator(operators.ANIMEMMD_OT_apply.bl_idname, text="Apply", icon="ANIM")
        row = box.row(align=True)
        row.operator(operators.ANIMEMMD_OT_show_video.bl_idname, text="Show Video", icon="IMAGE_PLANE")
        row.prop(props, "video_display", text="")
        row = box.row(align=True)
        row.operator(op_import_vmd.ANIMEMMD_OT_import_vmd.bl_idname, text="Import VMD", icon="IMPORT")
        row.operator(operators.ANIMEMMD_OT_export_vmd.bl_idname, text="Export VMD", icon="EXPORT")

        if props.status:
            layout.label(text=props.status, icon="INFO")


CLASSES = (ANIMEMMD_PT_main,)
