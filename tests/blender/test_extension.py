"""The extension as a user gets it: built and validated with Blender's tool, installed from the zip, registered,
unregistered and registered again; preferences resolve the worker and the cache folder."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import BPY_MISSING_REASON, PACKAGE, REPO

bpy = pytest.importorskip("bpy", reason=BPY_MISSING_REASON)


def test_zip_has_addon_and_engine_but_no_dev_files(built_zip):
    names = set(zipfile.ZipFile(built_zip).namelist())
    assert {"blender_manifest.toml", "__init__.py", "anime_mmd_addon/__init__.py", "anime_mmd_addon/pmx_import.py",
            "core/__init__.py", "core/formats/pmx.py", "core/formats/vmd.py", "core/worker/__main__.py", "core/worker/server.py",
            "core/worker/job.py"} <= names
    banned = [n for n in names if n.startswith(("tests/", "tools/", "benchmarks/", "docs/", ".", "requirements/"))
              or "__pycache__" in n or n.endswith((".vmd", ".mp4", ".blend1"))
              or (n.endswith(".npz") and not n.startswith("core/lifting/weights/"))]
    assert banned == []
    # the trained lifter's weights and their licence ship, so --lifter trained works from the zip alone
    assert {"core/lifting/weights/mocap_tcn.npz", "core/lifting/weights/mocap_tcn_world.npz",
            "core/lifting/weights/LICENSE.md"} <= names


def test_validate_rejects_a_broken_manifest(tmp_path):
    """The validation step is real: Blender's tool fails on a manifest without a required field."""
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import build_extension
    finally:
        sys.path.pop(0)
    src = tmp_path / "src"
    src.mkdir()
    (src / "__init__.py").write_text("def register():\n    pass\n\ndef unregister():\n    pass\n")
    text = (REPO / "blender_manifest.toml").read_text(encoding="utf-8")
    (src / "blender_manifest.toml").write_text(text.replace('blender_version_min = "4.2.0"', ""), encoding="utf-8")
    with pytest.raises(subprocess.CalledProcessError):
        build_extension.build(tmp_path / "out", source_dir=src)


def _op_registered(name: str) -> bool:
    try:
        getattr(bpy.ops.anime_mmd, name).get_rna_type()
    except KeyError:
        return False
    return True


def _registered() -> dict:
    state = {"panel": hasattr(bpy.types, "ANIMEMMD_PT_main"), "scene_props": hasattr(bpy.types.Scene, "anime_mmd"),
             "prefs": PACKAGE in bpy.context.preferences.addons}
    for op in ("import_pmx", "apply", "export_vmd", "show_video", "estimate", "cancel", "check_worker"):
        state[op] = _op_registered(op)
    return state


def test_installed_and_registered(addon):
    mod = sys.modules[PACKAGE]
    assert Path(mod.__file__).parent.name == "anime_mmd"
    assert Path(mod.__file__).resolve().is_relative_to(Path(bpy.utils.resource_path("USER")).resolve())
    assert all(_registered().values()), _registered()
    # The File > Import menu carries the importer.
    drawn = [getattr(f, "__name__", "") for f in bpy.types.TOPBAR_MT_file_import._dyn_ui_initialize()]
    assert "menu_import" in drawn


def test_unregister_and_register_twice(addon):
    import addon_utils
    for _ in range(2):
        addon_utils.disable(PACKAGE, default_set=True)
        state = _registered()
        assert not any(state.values()), state
        addon_utils.enable(PACKAGE, default_set=True)
        state = _registered()
        assert all(state.values()), state
    bpy.context.scene.anime_mmd.smoothing = 0.25  # the scene settings work again after re-registering
    assert bpy.context.scene.anime_mmd.smoothing == pytest.approx(0.25)


def test_preferences_defaults_and_cache(addon, tmp_path):
    prefs = addon.prefs
    p = prefs.get(bpy.context)
    assert p is not None and p.device == "CPU" and p.worker_python == ""
    cache = prefs.cache_dir(bpy.context)
    assert cache.is_dir()
    # Default cache lives in the extension's user folder (inside the temporary user resources).
    assert cache.resolve().is_relative_to(Path(bpy.utils.resource_path("USER")).resolve())
    assert "anime_mmd" in cache.parts
    # An installed extension has no .venv next to it: auto-detection finds nothing rather than guessing.
    assert prefs.resolve_worker_python(bpy.context) is None
    p.worker_python = str(tmp_path / "py")
    p.cache_dir = str(tmp_path / "c")
    try:
        assert prefs.resolve_worker_python(bpy.context) == str(tmp_path / "py")
        assert prefs.cache_dir(bpy.context) == tmp_path / "c" and (tmp_path / "c").is_dir()
    finally:
        p.worker_python = ""
        p.cache_dir = ""


def test_panel_draws_in_every_state(addon, scene, recording_layout):
    """Drawing the panel must not raise, idle or running (the draw code runs outside a real UI here)."""
    import types

    Layout = recording_layout

    panel_cls = bpy.types.ANIMEMMD_PT_main
    for running in (False, True):
        scene.anime_mmd.is_running = running
        scene.anime_mmd.progress = 0.4
        scene.anime_mmd.progress_stage = "detect"
        log: list = []
        fake = types.SimpleNamespace(layout=Layout(log))
        panel_cls.draw(fake, bpy.context)
        ops = [a[0] for n, a, k in log if n == "operator"]
        if running:
            bars = [k for n, a, k in log if n == "progress"]
            assert len(bars) == 1 and bars[0]["factor"] == pytest.approx(0.4) and "detect" in bars[0]["text"]
            assert "anime_mmd.cancel" in ops and "anime_mmd.estimate" not in ops
        else:
            assert "anime_mmd.estimate" in ops and "anime_mmd.cancel" not in ops
        for op in ("anime_mmd.import_pmx", "anime_mmd.apply", "anime_mmd.show_video", "anime_mmd.export_vmd"):
            assert op in ops
    scene.anime_mmd.is_running = False


def test_preferences_draw_the_worker_check(addon, recording_layout):
    import types

    log: list = []
    prefs_cls = type(addon.prefs.get(bpy.context))
    prefs_cls.draw(types.SimpleNamespace(layout=recording_layout(log), worker_status="numpy 1.26\nmissing: torch"), bpy.context)
    assert ("operator", ("anime_mmd.check_worker",), {"icon": "CONSOLE"}) in log
    labels = [k.get("text") for n, a, k in log if n == "label"]
    assert "numpy 1.26" in labels and "missing: torch" in labels
    assert any(t and t.startswith("No worker found") for t in labels)  # no .venv beside the installed extension


def test_disabled_buttons_say_why(addon, scene):
    assert not bpy.ops.anime_mmd.apply.poll()
    assert not bpy.ops.anime_mmd.export_vmd.poll()
    assert not bpy.ops.anime_mmd.show_video.poll()
    with pytest.raises(RuntimeError, match="Run Estimate first"):
        bpy.ops.anime_mmd.apply()
    with pytest.raises(RuntimeError, match="Choose a video first"):
        bpy.ops.anime_mmd.show_video()
