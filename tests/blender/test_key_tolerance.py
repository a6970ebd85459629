"""The panel's Key Tolerance (``scene.anime_mmd.key_tolerance``, from ``core.options`` ``key_tolerance``): shown
under Key Every Frame only while that is off, and the reduced Apply keys the motion within it on the armature's own
rest skeleton."""
from __future__ import annotations

import types

import numpy as np
import pytest

from conftest import BPY_MISSING_REASON

bpy = pytest.importorskip("bpy", reason=BPY_MISSING_REASON)


@pytest.fixture
def lia_on_yw(addon, scene, yw_pmx, shared_data):
    res = addon.pmx_import.import_pmx(yw_pmx, bpy.context)
    arm = res.armature
    poses = addon.core("keypoints_io").load_keypoints(
        shared_data / "keypoints" / "lia_kim_dance" / "videopose3d_export.npy")
    return arm, addon.core("motion_stage").motion_stage(poses, addon.armature_rest.rest_skeleton(arm))


def test_property_follows_the_declaration(addon, scene):
    options = addon.core("options")
    prop = type(scene.anime_mmd).bl_rna.properties["key_tolerance"]
    assert tuple(prop.default_array) == pytest.approx(options.default(options.MotionOptions, "key_tolerance"))
    assert prop.array_length == 2 and prop.hard_min == 0.0
    assert prop.description == options.declaration(options.MotionOptions, "key_tolerance")["help"]
    assert tuple(scene.anime_mmd.key_tolerance) == pytest.approx((0.5, 1.0))


def test_panel_shows_the_tolerance_only_without_key_every_frame(addon, scene, recording_layout):
    Layout = recording_layout
    drawn = {}
    for dense in (False, True):
        scene.anime_mmd.dense_keys = dense
        log: list = []
        bpy.types.ANIMEMMD_PT_main.draw(types.SimpleNamespace(layout=Layout(log)), bpy.context)
        props = [a[1] for n, a, k in log if n == "prop"]
        drawn[dense] = [k.get("index") for n, a, k in log if n == "prop" and a[1] == "key_tolerance"]
        assert props.index("dense_keys") < (props.index("key_tolerance") if not dense else len(props))
    assert drawn == {False: [0, 1], True: []}
    scene.anime_mmd.dense_keys = False


def test_apply_operator_reduces_within_the_panels_tolerance(addon, scene, lia_on_yw, tmp_path, monkeypatch):
    keyreduce = addon.core("keyreduce")
    arm, motion = lia_on_yw
    props = scene.anime_mmd
    props.target_armature = arm
    (tmp_path / "lia.npz").write_bytes(b"stand-in: _motion_for is replaced")
    props.result_npz = str(tmp_path / "lia.npz")
    monkeypatch.setattr(addon.operators, "_motion_for", lambda props, obj: (motion, "lia"))
    props.dense_keys = False
    counts = {}
    for tol in ((0.5, 1.0), (3.0, 3.0)):
        props.key_tolerance = tol
        assert bpy.ops.anime_mmd.apply() == {"FINISHED"}
        action = arm.animation_data.action
        assert list(action["mmd_key_tolerance"]) == pytest.approx(tol)
        counts[tol] = list(action["mmd_key_counts"])
        # the armature's own rest skeleton gives the levers, as the command line's --model does
        want = keyreduce.reduce_motion(motion, addon.armature_rest.rest_skeleton(arm), rot_tol_deg=tol[0],
                                       pos_tol_mm=tol[1])
        assert counts[tol] == [want.key_count, want.dense_key_count]
    assert counts[(3.0, 3.0)][0] < 0.8 * counts[(0.5, 1.0)][0], counts
    props.key_tolerance = (0.5, 1.0)


def test_apply_reduced_defaults_to_the_armatures_rest_skeleton(addon, scene, lia_on_yw, monkeypatch):
    keyreduce = addon.core("keyreduce")
    arm, motion = lia_on_yw
    short = addon.core("motion").BoneMotion(frames=motion.frames[:90],
                                            rotations={n: v[:90] for n, v in motion.rotations.items()},
                                            locations={n: v[:90] for n, v in motion.locations.items()})
    seen = []
    real = keyreduce.reduce_motion
    monkeypatch.setattr(keyreduce, "reduce_motion",
                        lambda m, rest=None, **kw: seen.append((rest, kw)) or real(m, rest, **kw))
    action = addon.op_import_vmd.apply_reduced(arm, short, name="short", scene=scene, rot_tol_deg=2.0, pos_tol_mm=2.0)
    (rest, kw), = seen
    assert rest is not None and rest.model_name == addon.armature_rest.rest_skeleton(arm).model_name
    np.testing.assert_allclose(rest.positions, addon.armature_rest.rest_skeleton(arm).positions)
    assert kw == {"rot_tol_deg": 2.0, "pos_tol_mm": 2.0}
    want = real(short, rest, rot_tol_deg=2.0, pos_tol_mm=2.0)
    assert list(action["mmd_key_counts"]) == [want.key_count, want.dense_key_count]
    assert list(action["mmd_key_tolerance"]) == [2.0, 2.0]
