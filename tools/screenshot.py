#!/usr/bin/env python3
"""Make the README screenshot headless: the model posed mid-dance beside the video frame it was estimated from.

    python tools/screenshot.py [--video V] [--model PMX] [--start 2 --end 8] [--at 3.0] [--out docs/screenshot.png]
                               [--engine BLENDER_EEVEE|BLENDER_WORKBENCH|CYCLES] [--npz POSES.npz]

Runs the same steps as ``tools/batch.py`` (estimate in this process, import the PMX, apply, show the video on a
plane beside the model), then adds a camera and lights and renders one frame (``--at`` seconds after ``--start``).
Needs the bpy module and, unless ``--npz`` is given, the worker packages (mediapipe, PyAV) in this Python.
Defaults: the shared kunkun clip and mat4 model (``../shared/data``), EEVEE, 1280x640.
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))
DATA = REPO.parent / "shared" / "data"


def _npz_start(path: Path) -> float:
    """Where a pose file's first frame is in its video, seconds (its frame index over the frame rate), so that the
    video shown beside the model is the frame the pose came from."""
    from core import pose_io

    poses = pose_io.load(path)
    return float(poses.frame_indices[0]) / float(poses.fps) if len(poses) and poses.fps > 0 else 0.0


def _npz_video(path: Path) -> Path:
    """The video a pose file was estimated from (its ``source``), so that the frame shown beside the model is that
    clip's and not another one's.

    Raises:
        SystemExit: the pose file names no video, or that video is not there (pass ``--video``).
    """
    from core import pose_io

    src = str(pose_io.load(path).source or "")
    video = Path(src)
    if not src or not video.is_file():
        raise SystemExit(f"screenshot: {path} was estimated from {src or 'no named video'!r}, which is not here: "
                         "pass --video VIDEO")
    return video


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--video", type=Path, default=None,
                    help="the dance video (default: the --npz pose file's own source video, else the shared kunkun "
                         "clip)")
    ap.add_argument("--model", type=Path, default=DATA / "pmx" / "mat4_trace_model" / "mat4_v4_trace_model.pmx")
    ap.add_argument("--start", type=float, default=None,
                    help="seconds into the video (default 2, or where the --npz pose file starts)")
    ap.add_argument("--end", type=float, default=8.0)
    ap.add_argument("--at", type=float, default=3.0, help="seconds after --start to show")
    ap.add_argument("--npz", type=Path, help="reuse a pose file instead of estimating (its window: pass --start / "
                    "--end only to show part of it)")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "screenshot.png")
    ap.add_argument("--engine", default="BLENDER_EEVEE", choices=("BLENDER_EEVEE", "BLENDER_WORKBENCH", "CYCLES"))
    ap.add_argument("--size", default="1280x640")
    ap.add_argument("--yaw", type=float, default=25.0, help="camera angle from the front, degrees")
    args = ap.parse_args(argv)
    if args.video is None:
        args.video = _npz_video(args.npz) if args.npz else DATA / "videos" / "kunkun_dance_864x480_25fps.mp4"
    if args.start is None:
        args.start = _npz_start(args.npz) if args.npz else 2.0

    import batch
    import bpy
    import numpy as np

    with tempfile.TemporaryDirectory(prefix="anime_mmd_shot_") as tmp:
        bargs = batch.build_parser().parse_args(
            [str(args.video), "--model", str(args.model), "--out", str(Path(tmp) / "m.vmd"), "--start",
             str(args.start), "--end", str(args.end), "--in-process", "-q"]
            + (["--from-npz", str(args.npz)] if args.npz else []))
        npz = args.npz or Path(tmp) / "poses.npz"
        if not args.npz:
            batch.estimate(bargs, npz)
        batch.build_scene(bargs, npz)
        from core import pose_io
        turn = pose_io.load(npz).rotate        # as the estimate turned a sideways video

    from anime_mmd_addon import video_reference

    ctx = bpy.context
    scene = ctx.scene
    arm = next(o for o in scene.objects if o.type == "ARMATURE")
    plane = video_reference.show_video(ctx, str(args.video), mode="PLANE", start_time=args.start, armature=arm,
                                       turn=turn)
    arm.show_in_front = False
    arm.hide_render = True
    frame = int(round(args.at * 30))
    scene.frame_set(frame)

    # The posed model (its root travels with the dancer), then the plane just beside it at that frame, all framed
    # from the front (the model faces -Y).
    mesh = next(o for o in scene.objects if o.type == "MESH" and o.parent == arm)
    deps = ctx.evaluated_depsgraph_get()
    ev = mesh.evaluated_get(deps)
    co = np.empty(3 * len(ev.data.vertices))
    ev.data.vertices.foreach_get("co", co)
    co = co.reshape(-1, 3) @ np.array(mesh.matrix_world)[:3, :3].T + np.array(mesh.matrix_world)[:3, 3]
    model_h = co[:, 2].max() - co[:, 2].min()
    plane.scale = (model_h * plane.scale[0] / plane.scale[2], 1.0, model_h)
    plane.location = (co[:, 0].min() - 0.25 - plane.scale[0] / 2, 0.0, co[:, 2].min())
    ctx.view_layer.update()
    pts = [plane.matrix_world @ v.co for v in plane.data.vertices]
    allp = np.vstack([np.array([tuple(p) for p in pts]), co])
    lo, hi = allp.min(axis=0), allp.max(axis=0)
    centre = (lo + hi) / 2
    w, h = (int(v) for v in args.size.split("x"))
    # A three-quarter view (yaw --yaw degrees from the front, slightly above) shows the pose in depth; the video
    # plane turns to face the camera.
    yaw = math.radians(args.yaw)
    cam_data = bpy.data.cameras.new("Screenshot")
    cam_data.lens = 50
    cam = bpy.data.objects.new("Screenshot", cam_data)
    scene.collection.objects.link(cam)
    scene.camera = cam
    plane.rotation_euler = (0.0, 0.0, yaw)
    width = hi[0] - lo[0]
    dist = 1.3 * max(width, (hi[2] - lo[2]) * w / h) * cam_data.lens / 36.0
    target = np.array([centre[0], 0.0, centre[2]])
    pitch = math.radians(5)
    offset = np.array([math.sin(yaw) * math.cos(pitch), -math.cos(yaw) * math.cos(pitch), math.sin(pitch)]) * dist
    cam.location = (target + offset).tolist()
    cam.rotation_euler = (math.pi / 2 - pitch, 0.0, yaw)
    sun = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
    sun.data.energy = 3.0
    sun.rotation_euler = (math.radians(50), math.radians(-20), math.radians(-30))
    scene.collection.objects.link(sun)
    world = scene.world or bpy.data.worlds.new("World")
    scene.world = world
    world.color = (0.35, 0.37, 0.42)
    if world.node_tree is not None:
        bg = next((n for n in world.node_tree.nodes if n.type == "BACKGROUND"), None)
        if bg is not None:
            bg.inputs["Color"].default_value = (0.35, 0.37, 0.42, 1.0)
            bg.inputs["Strength"].default_value = 0.8
    scene.render.engine = args.engine
    if args.engine == "BLENDER_WORKBENCH":
        scene.display.shading.color_type = "TEXTURE"
        scene.display.shading.light = "STUDIO"
    if args.engine == "CYCLES":
        scene.cycles.samples = 32
    scene.view_settings.view_transform = "Standard"
    scene.render.resolution_x, scene.render.resolution_y = w, h
    scene.render.resolution_percentage = 100
    scene.render.film_transparent = False
    args.out.parent.mkdir(parents=True, exist_ok=True)
    scene.render.filepath = str(args.out.resolve())
    scene.render.image_settings.file_format = "PNG"
    bpy.ops.render.render(write_still=True)
    print(f"screenshot: {args.out} (frame {frame}, {args.engine})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
