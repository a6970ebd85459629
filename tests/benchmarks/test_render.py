"""The closed-loop renderer: camera projection vs Blender's, a tiny real render whose ground truth lands on the
model's pixels, leg IK baked from the real OpenMMD VMD, and the VMD densification.

The render tests need ``bpy`` (Blender as a Python module) and are skipped with the reason without it. Run this
file in its own pytest process (``bpy`` must be imported after ``conftest.py`` redirects Blender's user folder).
"""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks.closed_loop.camera import Camera, framing_camera, orbit_camera
from benchmarks.closed_loop.motion_source import dense_from_vmd
from core import conventions
from core import quat as Q
from core.formats import pmx, vmd
from core.motion import BoneMotion
from core.rest_skeleton import RestSkeleton
from core.retarget import joints_from_pose, rest_joints
from core.skeletons import CANONICAL

J = {n: i for i, n in enumerate(CANONICAL)}


@pytest.fixture(scope="module")
def yw(shared_data):
    path = shared_data / "pmx" / "yw_test_model" / "yw_test_model.pmx"
    return path, RestSkeleton.from_pmx(pmx.read(path))


@pytest.fixture(scope="module")
def dance(shared_data):
    return shared_data / "vmd" / "openmmd_output_sample.vmd"


def test_yaw0_camera_maps_axes_like_core_conventions():
    cam = Camera(position=(0.0, 10.0, -30.0), target=(0.0, 10.0, 0.0), hfov_deg=60.0, width=640, height=480)
    p = np.array([[1.0, 12.0, 5.0], [-2.0, 3.0, 1.0]])
    got = cam.to_camera(p)
    want = conventions.mmd_to_camera(p - np.array(cam.position), units_per_metre=1.0)
    assert np.allclose(got, want)
    uv, z = cam.project(np.array(cam.target))
    assert np.allclose(uv, [320.0, 240.0]) and z == pytest.approx(30.0)
    # the model's left (+X) appears at image right, up (+Y) at image top
    uv2, _ = cam.project(np.array([[1.0, 10.0, 0.0], [0.0, 11.0, 0.0]]))
    assert uv2[0, 0] > 320 and uv2[1, 1] < 240
    assert np.linalg.det(cam.rotation) == pytest.approx(-1.0)


def test_heading_rotation_turns_the_view_direction_onto_plus_z():
    for yaw in (0.0, 37.0, 90.0, -120.0, 180.0):
        cam = orbit_camera((1.0, 0.0, 2.0), yaw_deg=yaw, distance=30.0, height=12.0, hfov_deg=50.0, width=64,
                           height_px=64, target_height=10.0)
        f = np.subtract(cam.target, cam.position)
        f[1] = 0.0
        g = cam.heading_rotation() @ (f / np.linalg.norm(f))
        assert np.allclose(g, [0.0, 0.0, 1.0], atol=1e-12)
        assert np.linalg.det(cam.heading_rotation()) == pytest.approx(1.0)


def test_framing_camera_keeps_the_motion_in_the_picture(yw, dance):
    path, rest = yw
    m = dense_from_vmd(dance, first=0)
    pos, rot = rest.fk(m.rotations, m.locations)
    j = joints_from_pose(rest, pos, rot)
    for yaw, hfov in ((0.0, 30.0), (135.0, 90.0)):
        cam = framing_camera(j, yaw_deg=yaw, hfov_deg=hfov, height_m=1.5, width=480, height_px=640)
        uv, z = cam.project(j)
        inside = (z > 0) & (uv[..., 0] > 0) & (uv[..., 0] < 480) & (uv[..., 1] > 0) & (uv[..., 1] < 640)
        assert inside.mean() >= 0.995


def test_dense_from_vmd_hits_the_keys_and_interpolates_between(dance):
    raw = vmd.read(dance)
    m = dense_from_vmd(raw)
    keys = vmd.sort_keys(raw.bone_keys)
    names = vmd.decode_names(keys["name"])
    rots = Q.normalize(vmd.rotations_xyzw(keys))
    assert m.n_frames == 161 and len(m.bone_names) == 15
    sel = np.flatnonzero(names == "センター")
    f = keys["frame"][sel].astype(int)
    assert np.allclose(m.locations["センター"][f - m.frames[0]], keys["location"][sel], atol=1e-6)
    sel = np.flatnonzero(names == "左腕")
    f = keys["frame"][sel].astype(int)
    d = np.abs(np.sum(m.rotations["左腕"][f - m.frames[0]] * rots[sel], axis=1))
    assert np.all(d > 1 - 1e-6)
    a, b = int(f[0]), int(f[1])
    if b - a > 1:                                  # between two keys: the angle to both is below their distance
        mid = m.rotations["左腕"][(a + b) // 2 - m.frames[0]]
        ab = Q.angle_between(rots[sel[0]], rots[sel[1]])
        assert Q.angle_between(mid, rots[sel[0]]) < ab and Q.angle_between(mid, rots[sel[1]]) < ab


bpy = None


def _bpy():
    return pytest.importorskip("bpy", reason="bpy (Blender as a Python module, pip install bpy==5.0.1) is not "
                                             "importable in this Python")


def test_projection_matches_blenders_world_to_camera_view():
    bpy = _bpy()
    import mathutils
    from bpy_extras.object_utils import world_to_camera_view

    from benchmarks.closed_loop import render

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    cam = Camera(position=(8.0, 14.0, -35.0), target=(1.0, 9.0, 2.0), hfov_deg=47.0, width=640, height=480,
                 roll_deg=5.0)
    render._setup_render(bpy, scene, cam, "studio")
    pts = np.random.default_rng(0).uniform(-8, 16, size=(20, 3)) + np.array([0, 6, 0])
    uv, _ = cam.project(pts)
    for p, (u, v) in zip(pts, uv):
        w = world_to_camera_view(scene, scene.camera, mathutils.Vector(conventions.mmd_to_blender(p).tolist()))
        # Blender: (0, 0) bottom-left, normalised
        assert u == pytest.approx(w.x * 640, abs=1e-3) and v == pytest.approx((1 - w.y) * 480, abs=1e-3)


def test_tiny_render_ground_truth_lies_on_the_model(yw, dance, tmp_path):
    _bpy()
    import av

    from benchmarks.closed_loop.render import MAX_FK_ERROR, render_case

    path, rest = yw
    m = dense_from_vmd(dance, first=0)
    m = BoneMotion(frames=np.arange(4), rotations={k: v[40:44] for k, v in m.rotations.items()},
                   locations={k: v[40:44] for k, v in m.locations.items()})
    cam = framing_camera(joints_from_pose(rest, *rest.fk(m.rotations, m.locations)), yaw_deg=30.0, hfov_deg=50.0,
                         height_m=1.2, width=160, height_px=160, fill=0.8)
    gt = render_case(path, m, cam, tmp_path, floor=False, progress=False)
    assert float(gt["gt_check_units"]) < MAX_FK_ERROR
    assert gt["joints"].shape == (4, 27, 3) and gt["joints_px"].shape == (4, 27, 2)
    with av.open(str(tmp_path / "render.mp4")) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 4 and frames[0].shape == (160, 160, 3)
    bg = np.median(frames[0][:5, :5].reshape(-1, 3), axis=0)
    for t, img in enumerate(frames):
        for name in ("Hip", "Spine", "LKnee", "RKnee"):   # points inside the body: model pixels, not background
            u, v = np.rint(gt["joints_px"][t, J[name]]).astype(int)
            assert np.abs(img[v, u].astype(float) - bg).max() > 30, (t, name)
    # the baked VMD keeps the rendered motion: it reads back to the same joints
    back = BoneMotion.from_vmd(vmd.read(tmp_path / "gt_motion.vmd"))
    jb = joints_from_pose(rest, *rest.fk(back.rotations, back.locations))
    assert np.abs(jb - gt["joints"]).max() < 1e-3


def test_tiny_render_with_a_cut_sees_each_frame_through_its_own_camera(yw, dance, tmp_path):
    """A cut (``cuts``): frames from the cut on are rendered, and their ground truth projected, through the second
    camera; the heading stays the first camera's."""
    _bpy()
    import av

    from benchmarks.closed_loop.render import render_case

    path, rest = yw
    m = dense_from_vmd(dance, first=0)
    m = BoneMotion(frames=np.arange(4), rotations={k: v[40:44] for k, v in m.rotations.items()},
                   locations={k: v[40:44] for k, v in m.locations.items()})
    j = joints_from_pose(rest, *rest.fk(m.rotations, m.locations))
    first = framing_camera(j, yaw_deg=30.0, hfov_deg=50.0, height_m=1.2, width=160, height_px=160, fill=0.8)
    second = framing_camera(j, yaw_deg=-70.0, hfov_deg=35.0, height_m=0.8, width=160, height_px=160, fill=0.8)
    gt = render_case(path, m, first, tmp_path, floor=False, progress=False, cuts=[(2, second)])
    jg = gt["joints"]                          # the rendered (IK-baked) motion's joints
    np.testing.assert_allclose(gt["joints_px"][:2], first.project(jg[:2])[0])
    np.testing.assert_allclose(gt["joints_px"][2:], second.project(jg[2:])[0])
    assert gt["shots"].tolist() == [[0, 2], [2, 4]]
    np.testing.assert_allclose(gt["heading"], first.heading_rotation())
    np.testing.assert_allclose(gt["R_frames"][3], second.rotation)
    with av.open(str(tmp_path / "render.mp4")) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    bg = np.median(frames[0][:5, :5].reshape(-1, 3), axis=0)
    for t in (1, 2, 3):
        hits = []
        for name in ("Hip", "Spine", "LKnee", "RKnee"):
            u, v = np.rint(gt["joints_px"][t, J[name]]).astype(int)
            hits.append(np.abs(frames[t][v, u].astype(float) - bg).max() > 30)
        assert all(hits), t
    # the first camera's projection misses the body on the second shot's frames: the cut is in the picture
    wrong = first.project(jg[3])[0]
    misses = [np.abs(frames[3][int(round(v)), int(round(u))].astype(float) - bg).max() <= 30
              for u, v in wrong[[J["Hip"], J["Spine"], J["LKnee"], J["RKnee"]]] if 0 <= u < 160 and 0 <= v < 160]
    assert any(misses)


def test_bake_ik_puts_the_fk_ankles_on_the_leg_ik_targets(yw, dance):
    bpy = _bpy()
    from anime_mmd_addon import pmx_import

    from benchmarks.closed_loop.render import bake_ik

    path, rest = yw
    m = dense_from_vmd(dance, first=0)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    arm = pmx_import.import_pmx(path, bpy.context).armature
    baked = bake_ik(arm, rest, m, bpy.context.scene)
    assert {"左足", "左ひざ", "右足", "右ひざ"} <= set(baked.meta["ik_baked"])
    pos, _ = rest.fk(baked.rotations, baked.locations)
    for s in "左右":
        ankle = pos[:, rest.find(s + "足首")]
        target = pos[:, rest.find(s + "足ＩＫ")]
        reach = np.linalg.norm(target - pos[:, rest.find(s + "足")], axis=1)
        leg = np.linalg.norm(rest.positions[rest.find(s + "ひざ")] - rest.positions[rest.find(s + "足")]) + \
            np.linalg.norm(rest.positions[rest.find(s + "足首")] - rest.positions[rest.find(s + "ひざ")])
        ok = reach < 0.99 * leg                                       # reachable targets
        assert ok.sum() > 20
        assert np.linalg.norm(ankle - target, axis=1)[ok].max() < 0.02   # units (1.6 mm): IK solved, baked as FK
    # and the knees really bend (the unbaked FK legs are straight: ひざ is not keyed in the VMD)
    assert Q.angle(baked.rotations["左ひざ"]).max() > np.radians(10)
