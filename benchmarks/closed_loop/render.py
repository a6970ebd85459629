"""Headless renders of a posed PMX model (bpy 5.0.1, Workbench) with exact ground truth, for the closed loop.

    .venv/bin/python -m benchmarks.closed_loop.render MODEL.pmx MOTION.vmd OUT_DIR [--camera CAMERA.json]
        [--frames N] [--shading studio|flat] [--size 640x640]

writes ``OUT_DIR/render.mp4`` (H.264 through PyAV, 30 fps, one video frame per MMD frame) and ``OUT_DIR/gt.npz``
(:func:`ground_truth` keys, below). Python use: :func:`render_case`.

How the model is posed
----------------------
The model is built by the add-on's importer (``anime_mmd_addon.pmx_import``: armature, textured mesh, IK
constraints) and the motion is keyed by its action writer (``anime_mmd_addon.action_writer``), as the add-on does.
The ground truth is the project's own forward kinematics: ``RestSkeleton.fk`` + ``core.retarget.joints_from_pose``
(``CANONICAL`` joints, MMD units, ``mmd`` frame; ``core.conventions``). For that to be exact, the render is made
with the IK constraints muted, and every rendered frame's posed bone heads are checked against core FK
(``gt_check_units``: the largest difference, MMD units; renders over :data:`MAX_FK_ERROR` raise).

A motion whose legs are driven by leg IK (a VMD with 足ＩＫ keys but no ひざ keys, such as OpenMMD's output) is
first played with the IK constraints on; Blender's solved 足 / ひざ / 足首 rotations are read back and baked into FK
keys (:func:`bake_ik`), so the rendered pose and the ground truth are the same FK motion. A motion from
``core.retarget`` already has FK legs consistent with its 足ＩＫ keys and is rendered as it is.

Camera: :class:`benchmarks.closed_loop.camera.Camera` (MMD units), set on a Blender camera with horizontal sensor
fit; the same object projects the ground truth, so pixels agree with the render.

Blender runs with ``BLENDER_USER_RESOURCES`` pointed at a temporary folder (set before ``bpy`` is first imported, so
the machine's Blender configuration is never read or written) and one render thread.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.closed_loop.camera import Camera  # noqa: E402
from core import quat as Q  # noqa: E402
from core.formats import pmx as pmx_format  # noqa: E402
from core.motion import BoneMotion  # noqa: E402
from core.rest_skeleton import RestSkeleton  # noqa: E402
from core.retarget import joints_from_pose  # noqa: E402

__all__ = ["MAX_FK_ERROR", "bake_ik", "ground_truth", "render_case", "default_camera"]

#: Largest allowed difference between Blender's posed bone heads and core FK, MMD units (0.08 mm; float32).
MAX_FK_ERROR = 1e-3

_P = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
_BACKGROUND = (0.42, 0.45, 0.50)
_FLOOR = (0.62, 0.60, 0.56)


def _bpy():
    """Import bpy with a temporary user folder (only if bpy has not been imported yet)."""
    if "bpy" not in sys.modules and "BLENDER_USER_RESOURCES" not in os.environ:
        import atexit
        user = tempfile.mkdtemp(prefix="closed_loop_blender_user_")
        os.environ["BLENDER_USER_RESOURCES"] = user
        atexit.register(shutil.rmtree, user, True)
    import bpy
    return bpy


def _addon():
    from anime_mmd_addon import action_writer, pmx_import
    return pmx_import, action_writer


def default_camera(width: int = 640, height: int = 640) -> Camera:
    """A camera 3.2 m in front of the model, at 1.1 m, looking at 0.9 m, 50° horizontal field of view."""
    from benchmarks.closed_loop.camera import orbit_camera
    return orbit_camera((0.0, 0.0, 0.0), yaw_deg=0.0, distance=40.0, height=13.75, hfov_deg=50.0, width=width,
                        height_px=height, target_height=11.25)


# ------------------------------------------------------------------------------------------------ ground truth

def ground_truth(rest: RestSkeleton, motion: BoneMotion, camera: Camera, cuts=()) -> dict:
    """Ground-truth joints of ``motion`` on ``rest`` and their projection through ``camera``.

    Args:
        cuts: ``[(frame index, Camera), ...]`` in order: from that frame on the picture is the other camera's (a
            shot cut); empty for one camera.

    Returns:
        dict of arrays (the ``gt.npz`` content): ``frames (T,)`` int64 MMD frames; ``joints (T, 27, 3)`` float64
        ``CANONICAL`` joints, MMD units, ``mmd`` frame; ``joints_px (T, 27, 2)`` pixels (``image`` frame) through
        each frame's camera; ``depth (T, 27)`` camera depth, MMD units; ``K (3, 3)`` intrinsics (px), ``R (3, 3)``
        mmd -> camera rotation (det -1, ``Camera.rotation``), ``cam_position (3,)`` MMD units, ``heading (3, 3)``
        (``Camera.heading_rotation``): all of the first camera; ``R_frames (T, 3, 3)`` and ``cam_position_frames
        (T, 3)``: each frame's camera; ``shots (S, 2)`` the ``[start, stop)`` frames of each camera;
        ``image_size (2,)`` (W, H); ``camera_json`` the first camera as JSON text.
    """
    pos, rot = rest.fk(motion.rotations, motion.locations)
    joints = joints_from_pose(rest, pos, rot)
    T = len(joints)
    starts = [0] + [int(f) for f, _ in cuts]
    cams = [camera] + [c for _, c in cuts]
    if any(b <= a for a, b in zip(starts, starts[1:])) or (len(starts) > 1 and starts[-1] >= T):
        raise ValueError(f"ground_truth: cut frames must increase within 1..{T - 1}, got {starts[1:]}")
    uv = np.zeros(joints.shape[:2] + (2,))
    depth = np.zeros(joints.shape[:2])
    r_frames = np.zeros((T, 3, 3))
    p_frames = np.zeros((T, 3))
    bounds = starts + [T]
    for cam, a, b in zip(cams, bounds[:-1], bounds[1:]):
        if cam.width != camera.width or cam.height != camera.height:
            raise ValueError("ground_truth: every camera of a render must have the same image size")
        uv[a:b], depth[a:b] = cam.project(joints[a:b])
        r_frames[a:b] = cam.rotation
        p_frames[a:b] = np.asarray(cam.position)
    return {"frames": motion.frames.astype(np.int64), "joints": joints, "joints_px": uv, "depth": depth,
            "K": camera.intrinsics, "R": camera.rotation, "cam_position": np.asarray(camera.position),
            "R_frames": r_frames, "cam_position_frames": p_frames,
            "shots": np.array(list(zip(bounds[:-1], bounds[1:])), dtype=np.int64),
            "heading": camera.heading_rotation(), "image_size": np.array([camera.width, camera.height]),
            "camera_json": np.array(json.dumps(camera.to_dict()))}


# ------------------------------------------------------------------------------------------------ Blender side

def _world_rotations_mmd(arm, names) -> np.ndarray:
    """``(N, 4)`` world rotations (rest -> posed, MMD axes, x y z w) of the named pose bones, as core FK defines
    them (``RestSkeleton.fk``)."""
    mw = np.array(arm.matrix_world, dtype=np.float64)[:3, :3]
    out = np.empty((len(names), 4))
    for k, n in enumerate(names):
        pb = arm.pose.bones[n]
        posed = np.array(pb.matrix, dtype=np.float64)[:3, :3]
        rest = np.array(pb.bone.matrix_local, dtype=np.float64)[:3, :3]
        posed /= np.linalg.norm(posed, axis=0, keepdims=True)
        rest /= np.linalg.norm(rest, axis=0, keepdims=True)
        g = mw @ posed @ rest.T
        out[k] = Q.from_matrix(_P @ g @ _P)
    return out


def _heads_mmd(arm, names) -> np.ndarray:
    from core import conventions
    mw = np.array(arm.matrix_world, dtype=np.float64)
    heads = np.array([tuple(arm.pose.bones[n].head) for n in names], dtype=np.float64)
    return conventions.blender_to_mmd((np.c_[heads, np.ones(len(heads))] @ mw.T)[:, :3])


def _set_ik(arm, on: bool) -> None:
    for pb in arm.pose.bones:
        for c in pb.constraints:
            if c.type == "IK":
                c.mute = not on


def bake_ik(arm, rest: RestSkeleton, motion: BoneMotion, scene) -> BoneMotion:
    """Play ``motion`` on ``arm`` with its IK constraints on and bake the solved IK links into FK keys.

    Every link bone of every IK chain of ``rest`` (左足, 左ひざ, 左足首 ... for 足ＩＫ / つま先ＩＫ) gets the key
    ``q = W_parent⁻¹ · W_bone`` from Blender's evaluated world rotations (``W``, rest -> posed, MMD axes); the other
    tracks are kept. Link bones with rotation inheritance (付与) are not supported (none of the standard leg bones
    has it).

    Returns:
        a new :class:`BoneMotion` (``meta["ik_baked"]`` lists the baked bones).

    Raises:
        ValueError: an IK link bone inherits rotation.
    """
    _pmx_import, action_writer = _addon()
    links = []
    for ch in rest.ik_chains:
        for n in ch.links:
            i = rest.find(n)
            if rest.inherit_rotation is not None and rest.inherit_rotation[i] and rest.inherit_source[i] >= 0:
                raise ValueError(f"bake_ik: IK link {n!r} inherits rotation; cannot bake it into an FK key")
            if n not in links:
                links.append(n)
    if not links:
        return motion
    parents = [rest.names[int(rest.parents[rest.find(n)])] for n in links]
    bone_map = _bone_map(arm)
    want = [bone_map[n] for n in links]
    want_p = [bone_map[n] for n in parents]
    _set_ik(arm, True)
    action_writer.apply_motion(arm, motion, name="ik_source", scene=scene)
    baked = {n: np.empty((motion.n_frames, 4)) for n in links}
    for t, f in enumerate(motion.frames):
        scene.frame_set(int(f))
        w = _world_rotations_mmd(arm, want)
        wp = _world_rotations_mmd(arm, want_p)
        local = Q.multiply(Q.inverse(wp), w)
        for k, n in enumerate(links):
            baked[n][t] = local[k]
    rotations = dict(motion.rotations)
    rotations.update({n: Q.make_continuous(baked[n]) for n in links})
    meta = dict(motion.meta)
    meta["ik_baked"] = links
    return BoneMotion(frames=motion.frames, rotations=rotations, locations=dict(motion.locations),
                      model_name=motion.model_name, meta=meta)


def _bone_map(arm) -> dict:
    from anime_mmd_addon.armature_rest import bone_name_map
    return bone_name_map(arm)


def _make_floor(bpy, scene, size_m: float = 12.0):
    mesh = bpy.data.meshes.new("closed_loop_floor")
    h = size_m / 2
    mesh.from_pydata([(-h, -h, 0.0), (h, -h, 0.0), (h, h, 0.0), (-h, h, 0.0)], [], [(0, 1, 2, 3)])
    obj = bpy.data.objects.new("closed_loop_floor", mesh)
    obj.color = (*_FLOOR, 1.0)
    scene.collection.objects.link(obj)
    return obj


def _camera_object(bpy, scene, camera: Camera, name: str = "closed_loop_camera"):
    """A Blender camera object with ``camera``'s pose and field of view, linked to ``scene``."""
    cam_data = bpy.data.cameras.new(name)
    cam_data.sensor_fit = "HORIZONTAL"
    cam_data.sensor_width = 36.0
    cam_data.lens = 18.0 / np.tan(np.radians(camera.hfov_deg) / 2.0)
    cam_data.clip_start = 0.01
    cam_data.clip_end = 1000.0
    cam = bpy.data.objects.new(name, cam_data)
    scene.collection.objects.link(cam)
    import mathutils
    cam.matrix_world = mathutils.Matrix(camera.blender_matrix_world().tolist())
    return cam


def _setup_render(bpy, scene, camera: Camera, shading: str) -> None:
    scene.camera = _camera_object(bpy, scene, camera)
    world = scene.world or bpy.data.worlds.new("closed_loop_world")
    scene.world = world
    world.color = _BACKGROUND
    r = scene.render
    r.engine = "BLENDER_WORKBENCH"
    r.resolution_x, r.resolution_y, r.resolution_percentage = camera.width, camera.height, 100
    r.pixel_aspect_x = r.pixel_aspect_y = 1.0
    r.film_transparent = False
    r.threads_mode = "FIXED"
    r.threads = 1
    r.image_settings.file_format = "PNG"
    r.image_settings.color_mode = "RGB"
    sh = scene.display.shading
    sh.color_type = "TEXTURE"
    if shading == "studio":
        sh.light = "STUDIO"
    elif shading == "flat":          # anime-like: unlit texture colours with a dark outline
        sh.light = "FLAT"
        sh.show_object_outline = True
        sh.object_outline_color = (0.05, 0.05, 0.07)
    else:
        raise ValueError(f"shading must be 'studio' or 'flat', got {shading!r}")
    scene.view_settings.view_transform = "Standard"
    scene.display.render_aa = "8"


def _encode(pngs: list[Path], out: Path, fps: int) -> None:
    import av
    tmp = out.with_suffix(".part.mp4")
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "16", "preset": "veryfast"}
        for k, p in enumerate(pngs):
            with av.open(str(p)) as img:
                frame = next(img.decode(video=0))
            rgb = frame.to_ndarray(format="rgb24")
            if k == 0:
                stream.width, stream.height = rgb.shape[1], rgb.shape[0]
            vf = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            for pkt in stream.encode(vf):
                container.mux(pkt)
        for pkt in stream.encode():
            container.mux(pkt)
    os.replace(tmp, out)


def render_case(pmx_path, motion: BoneMotion, camera: Camera, out_dir, *, shading: str = "studio",
                bake: bool | None = None, floor: bool = True, progress: bool = True, cuts=()) -> dict:
    """Render ``motion`` on the PMX model through ``camera``; write ``render.mp4`` and ``gt.npz`` in ``out_dir``.

    Args:
        pmx_path: the model (textures resolved beside it).
        motion: dense :class:`BoneMotion` (every bone keyed on every frame; frames 0..T-1 become video frames).
        camera: the render camera (MMD units).
        out_dir: output folder (created).
        shading: ``"studio"`` (Workbench studio light, textured) or ``"flat"`` (unlit texture colours with an
            outline: an anime-like look).
        bake: bake leg IK into FK keys (:func:`bake_ik`); default: when the motion has no ひざ rotation track.
        floor: draw a floor plane at MMD y = 0.
        progress: print a line every 30 frames.
        cuts: ``[(frame index, Camera), ...]``: from that frame on, render through the other camera (a shot cut;
            :func:`ground_truth`).

    Returns:
        the ground-truth dict (:func:`ground_truth`) plus ``gt_check_units`` (largest head difference Blender vs
        core FK over all rendered frames and FK bones, MMD units) and ``render_s`` (seconds per frame).

    Raises:
        RuntimeError: Blender's posed bones differ from core FK by more than :data:`MAX_FK_ERROR`.
        ValueError: frames that are not 0..T-1 consecutive.
    """
    bpy = _bpy()
    pmx_import, action_writer = _addon()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not np.array_equal(motion.frames, np.arange(motion.n_frames)):
        raise ValueError("render_case: the motion's frames must be 0..T-1 (one video frame per MMD frame)")
    model = pmx_format.read(pmx_path)
    rest = RestSkeleton.from_pmx(model)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    built = pmx_import.build_model(model, bpy.context)
    arm = built.armature
    if bake is None:
        bake = not any(n in motion.rotations for n in ("左ひざ", "右ひざ"))
    if bake:
        motion = bake_ik(arm, rest, motion, scene)
    _set_ik(arm, False)
    action_writer.apply_motion(arm, motion, name="closed_loop", scene=scene)
    if floor:
        _make_floor(bpy, scene)
    _setup_render(bpy, scene, camera, shading)
    gt = ground_truth(rest, motion, camera, cuts)
    switch = {int(f): _camera_object(bpy, scene, c, f"closed_loop_camera_{k + 2}") for k, (f, c) in enumerate(cuts)}
    fk_pos, _ = rest.fk(motion.rotations, motion.locations)
    bone_map = _bone_map(arm)
    check = [n for n in rest.names if "ＩＫ" not in n and n in bone_map]
    idx = [rest.find(n) for n in check]
    blender_names = [bone_map[n] for n in check]
    worst = 0.0
    tmp = Path(tempfile.mkdtemp(prefix="closed_loop_frames_"))
    t0 = time.perf_counter()
    try:
        pngs = []
        for t, f in enumerate(motion.frames):
            if t in switch:
                scene.camera = switch[t]
            scene.frame_set(int(f))
            worst = max(worst, float(np.linalg.norm(_heads_mmd(arm, blender_names) - fk_pos[t, idx], axis=1).max()))
            scene.render.filepath = str(tmp / f"{t:05d}.png")
            bpy.ops.render.render(write_still=True)
            pngs.append(tmp / f"{t:05d}.png")
            if progress and (t + 1) % 30 == 0:
                print(f"[render] {out_dir.name}: {t + 1}/{motion.n_frames} frames", file=sys.stderr, flush=True)
        render_s = (time.perf_counter() - t0) / max(motion.n_frames, 1)
        if worst > MAX_FK_ERROR:
            raise RuntimeError(f"render_case: Blender's posed bones differ from core FK by {worst:.2e} units "
                               f"(limit {MAX_FK_ERROR}); the ground truth would not match the render")
        _encode(pngs, out_dir / "render.mp4", 30)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    gt["gt_check_units"] = np.array(worst)
    gt["render_s"] = np.array(render_s)
    gt["model"] = np.array(str(Path(pmx_path).resolve()))
    gt["shading"] = np.array(shading)
    np.savez_compressed(out_dir / "gt.npz", **gt)
    from core.formats import vmd as vmd_format
    vmd_format.write(out_dir / "gt_motion.vmd", motion.to_vmd(), overwrite=True)
    return gt


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("motion", type=Path, help="a VMD (sparse keys are densified: motion_source.dense_from_vmd)")
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--camera", type=Path, help="camera JSON (Camera fields); default: default_camera()")
    ap.add_argument("--frames", type=int, help="render only the first N frames")
    ap.add_argument("--shading", default="studio", choices=("studio", "flat"))
    ap.add_argument("--size", default="640x640")
    args = ap.parse_args(argv)
    from benchmarks.closed_loop.motion_source import dense_from_vmd
    w, h = (int(v) for v in args.size.split("x"))
    cam = Camera(**json.loads(args.camera.read_text())) if args.camera else default_camera(w, h)
    m = dense_from_vmd(args.motion, first=0)
    if args.frames:
        m = BoneMotion(frames=m.frames[:args.frames], rotations={k: v[:args.frames] for k, v in m.rotations.items()},
                       locations={k: v[:args.frames] for k, v in m.locations.items()}, model_name=m.model_name)
    gt = render_case(args.model, m, cam, args.out_dir, shading=args.shading)
    print(f"rendered {len(gt['frames'])} frames to {args.out_dir} ({float(gt['render_s']):.2f} s/frame, "
          f"GT check {float(gt['gt_check_units']):.1e} units)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
