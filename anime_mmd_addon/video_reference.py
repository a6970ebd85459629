"""Show the source video next to the model, in sync with the motion, so the user can compare.

Two ways:

* ``PLANE`` (default): a plane beside the model, as tall as the model, with the video as a movie texture on an
  emission material (visible in the viewport and in renders).
* ``CAMERA``: the video as the scene camera's background movie clip (visible when looking through the camera; a
  camera in front of the model is added if the scene has none).

Sync: motion frame ``f`` (MMD, 30 fps, frame 0 = ``start_time`` seconds into the video; ``core.conventions``)
shows video frame ``round((start_time + f / 30) · fps_video)`` (0-based). The video's own rate (25 fps for the
shared clips) differs from the scene's 30 fps, so a driver with a simple expression (no Python needed) sets the
image user's / clip's ``frame_offset`` at every scene frame.
"""
from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np

from ._core import conventions

PLANE_NAME = "AnimeMMD Video"


def _offset_expression(video_fps: float, start_time: float) -> str:
    """Driver expression for ``frame_offset`` with ``frame_start = 1``: shown 1-based frame = frame + offset."""
    return (f"round({video_fps * start_time:.6f} + frame * {video_fps / conventions.MMD_FPS:.9f}) + 1 - frame")


def _add_offset_driver(id_block, data_path: str, expression: str) -> None:
    try:
        id_block.driver_remove(data_path)
    except TypeError:
        pass
    fc = id_block.driver_add(data_path)
    fc.driver.type = "SCRIPTED"
    fc.driver.expression = expression


def _load_clip(path: Path):
    for c in bpy.data.movieclips:
        if Path(bpy.path.abspath(c.filepath)).resolve() == path.resolve():
            return c
    clip = bpy.data.movieclips.load(str(path))
    if clip.frame_duration <= 0 or clip.size[0] <= 0:
        bpy.data.movieclips.remove(clip)
        raise ValueError(f"{path.name}: Blender cannot read this video")
    return clip


def _model_box(armature) -> tuple:
    """(centre x, min z, height, half width) of the armature's bones in world space, or a 1.6 m default."""
    if armature is None or not armature.data.bones:
        return 0.0, 0.0, 1.6, 0.4
    mw = np.array(armature.matrix_world)
    pts = []
    for b in armature.data.bones:
        pts.append(tuple(b.head_local))
        pts.append(tuple(b.tail_local))
    p = np.c_[np.array(pts), np.ones(len(pts))] @ mw.T
    lo, hi = p[:, :3].min(axis=0), p[:, :3].max(axis=0)
    return float((lo[0] + hi[0]) / 2), float(lo[2]), float(max(hi[2] - lo[2], 0.5)), float((hi[0] - lo[0]) / 2)


def show_video(context, video_path, *, mode: str = "PLANE", start_time: float = 0.0, armature=None, turn: int = 0):
    """Show ``video_path`` next to ``armature`` (see the module doc).

    Args:
        context: Blender context.
        video_path: the source video.
        mode: ``"PLANE"`` or ``"CAMERA"``.
        start_time: seconds into the video where the motion's frame 0 is.
        armature: the model to stand beside (None: the origin).
        turn: degrees (0, 90, 180, 270) counter-clockwise the estimate turned the frames (``--rotate``: a video
            filmed sideways, ``core.upright``); the plane shows them turned the same way (``CAMERA`` mode shows
            the file as it is: Blender turns a camera background only in orthographic views).

    Returns:
        The plane object (``PLANE``) or the camera object (``CAMERA``).

    Raises:
        ValueError: the file is missing or Blender cannot read it, or an unknown mode.
    """
    path = Path(video_path)
    if not path.is_file():
        raise ValueError(f"{path}: no such video")
    if mode not in ("PLANE", "CAMERA"):
        raise ValueError(f"unknown mode {mode!r}")
    if turn not in (0, 90, 180, 270):
        raise ValueError(f"turn must be 0, 90, 180 or 270 degrees, got {turn!r}")
    clip = _load_clip(path)
    expr = _offset_expression(float(clip.fps), float(start_time))
    if mode == "CAMERA":
        return _show_camera(context, clip, expr, armature)
    return _show_plane(context, path, clip, expr, armature, turn)


def _turned_uv(turn: int) -> list:
    """UVs of the plane's corners (bottom-left, bottom-right, top-right, top-left) that show the image turned
    ``turn`` degrees counter-clockwise: each quarter turn takes a shown point (u, v) from the image's (v, 1 - u)."""
    out = []
    for u, v in ((0, 0), (1, 0), (1, 1), (0, 1)):
        for _ in range(turn // 90):
            u, v = v, 1 - u
        out += [u, v]
    return out


def _show_plane(context, path, clip, expr, armature, turn: int = 0):
    img = bpy.data.images.load(str(path), check_existing=True)
    w_px, h_px = clip.size
    if turn % 180:
        w_px, h_px = h_px, w_px
    cx, z0, height, half = _model_box(armature)
    width = height * w_px / h_px
    name = f"{PLANE_NAME} {path.stem}"
    obj = bpy.data.objects.get(name)
    if obj is None or obj.type != "MESH":
        me = bpy.data.meshes.new(name)
        me.from_pydata([(-0.5, 0, 0), (0.5, 0, 0), (0.5, 0, 1), (-0.5, 0, 1)], [], [(0, 1, 2, 3)])
        me.uv_layers.new(name="UVMap")
        obj = bpy.data.objects.new(name, me)
        context.scene.collection.objects.link(obj)
    obj.data.uv_layers[0].data.foreach_set("uv", _turned_uv(turn))
    # Stand beside the model, facing the viewer (the model faces -Y), on the viewer's left of the model.
    obj.location = (cx - half - 0.3 - width / 2, 0.0, z0)
    obj.scale = (width, 1.0, height)
    mat = bpy.data.materials.get(name) or bpy.data.materials.new(name)
    if mat.node_tree is None:
        mat.use_nodes = True
    nt = mat.node_tree
    nt.nodes.clear()
    tex = nt.nodes.new("ShaderNodeTexImage")
    tex.image = img
    tex.interpolation = "Linear"
    iu = tex.image_user
    iu.frame_duration = max(int(clip.frame_duration), 1)
    iu.frame_start = 1
    iu.use_auto_refresh = True
    iu.use_cyclic = False
    emit = nt.nodes.new("ShaderNodeEmission")
    out = nt.nodes.new("ShaderNodeOutputMaterial")
    nt.links.new(tex.outputs["Color"], emit.inputs["Color"])
    nt.links.new(emit.outputs["Emission"], out.inputs["Surface"])
    tex.location, emit.location, out.location = (-400, 0), (-100, 0), (150, 0)
    _add_offset_driver(nt, f'nodes["{tex.name}"].image_user.frame_offset', expr)
    obj.data.materials.clear()
    obj.data.materials.append(mat)
    obj["anime_mmd_video"] = str(path)
    return obj


def _show_camera(context, clip, expr, armature):
    scene = context.scene
    cam = scene.camera
    if cam is None:
        cx, z0, height, _ = _model_box(armature)
        data = bpy.data.cameras.new("AnimeMMD Camera")
        cam = bpy.data.objects.new("AnimeMMD Camera", data)
        scene.collection.objects.link(cam)
        cam.location = (cx, -4.0 * height / 1.6, z0 + height * 0.55)
        cam.rotation_euler = (np.pi / 2, 0.0, 0.0)
        scene.camera = cam
    cam.data.show_background_images = True
    bg = next((b for b in cam.data.background_images if b.source == "MOVIE_CLIP" and b.clip == clip), None)
    if bg is None:
        bg = cam.data.background_images.new()
        bg.source = "MOVIE_CLIP"
        bg.clip = clip
    bg.alpha = 0.6
    bg.display_depth = "BACK"
    clip.frame_start = 1
    _add_offset_driver(clip, "frame_offset", expr)
    return cam
