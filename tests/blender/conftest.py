"""Fixtures for the Blender tests (headless ``bpy`` module, Blender 5.0.1 from the registry).

Every test module here starts with ``pytest.importorskip("bpy", ...)``, so the whole folder is skipped, with the
reason, when ``bpy`` (Blender as a Python module: ``pip install bpy==5.0.1`` on Python 3.11) is not importable.

Before ``bpy`` is first imported, ``BLENDER_USER_RESOURCES`` is pointed at a temporary folder, so installing the
extension, its user folder (cache) and any preferences never touch the real Blender configuration of the machine.
"""
from __future__ import annotations

import importlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BPY_MISSING_REASON = ("bpy (Blender as a Python module; pip install bpy==5.0.1 on Python 3.11) is not importable "
                      "in this Python")

_USER_RESOURCES = None
if "bpy" not in sys.modules:
    _USER_RESOURCES = tempfile.mkdtemp(prefix="anime_mmd_blender_user_")
    os.environ["BLENDER_USER_RESOURCES"] = _USER_RESOURCES

EXTENSION_ID = "anime_mmd"
REPO_MODULE = "user_default"
PACKAGE = f"bl_ext.{REPO_MODULE}.{EXTENSION_ID}"


def pytest_unconfigure(config):
    if _USER_RESOURCES and os.path.isdir(_USER_RESOURCES):
        shutil.rmtree(_USER_RESOURCES, ignore_errors=True)


class Addon:
    """The installed extension: ``addon.pmx_import`` etc. are its ``anime_mmd_addon`` modules, ``addon.core(name)``
    its ``core`` modules, ``addon.package`` its Python package name, ``addon.zip_path`` the zip it came from."""

    def __init__(self, package: str, zip_path: Path):
        self.package = package
        self.zip_path = zip_path

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return importlib.import_module(f"{self.package}.anime_mmd_addon.{name}")

    def core(self, name: str):
        return importlib.import_module(f"{self.package}.core.{name}")


@pytest.fixture(scope="session")
def built_zip(tmp_path_factory) -> Path:
    """The extension zip, built and validated by Blender's own tool (``tools/build_extension.py``)."""
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import build_extension
    finally:
        sys.path.pop(0)
    return build_extension.build(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="session")
def addon(built_zip) -> Addon:
    """The extension installed from the zip with ``bpy.ops.extensions.package_install_files`` into the temporary
    user folder, and enabled."""
    bpy = pytest.importorskip("bpy", reason=BPY_MISSING_REASON)
    user = bpy.utils.resource_path("USER")
    if not _USER_RESOURCES or not Path(user).resolve().is_relative_to(Path(_USER_RESOURCES).resolve()):
        pytest.skip(f"bpy was imported before tests/blender/conftest.py could point BLENDER_USER_RESOURCES at a "
                    f"temporary folder (user folder is {user}); run tests/blender in its own pytest process so the "
                    f"real Blender configuration is not touched")
    if PACKAGE not in {a.module for a in bpy.context.preferences.addons}:
        res = bpy.ops.extensions.package_install_files(filepath=str(built_zip), repo=REPO_MODULE,
                                                       enable_on_install=True)
        assert res == {"FINISHED"}, res
    assert PACKAGE in {a.module for a in bpy.context.preferences.addons}
    return Addon(PACKAGE, built_zip)


@pytest.fixture
def scene(addon):
    """An empty scene (objects, meshes, armatures, actions, materials, images, clips removed) with the add-on on."""
    import bpy
    if bpy.context.object is not None and bpy.context.object.mode != "OBJECT":
        bpy.ops.object.mode_set(mode="OBJECT")
    for coll in (bpy.data.objects, bpy.data.meshes, bpy.data.armatures, bpy.data.actions, bpy.data.materials,
                 bpy.data.images, bpy.data.movieclips, bpy.data.cameras):
        for idb in list(coll):
            coll.remove(idb)
    sc = bpy.context.scene
    sc.frame_start, sc.frame_end = 1, 250
    sc.frame_set(1)
    props = sc.anime_mmd
    for name in ("video_path", "result_npz", "status"):
        setattr(props, name, "")
    props.target_armature = None
    props.is_running = False
    return sc


@pytest.fixture(scope="session")
def pmx_dir(shared_data) -> Path:
    return shared_data / "pmx"


@pytest.fixture(scope="session")
def yw_pmx(pmx_dir) -> Path:
    return pmx_dir / "yw_test_model" / "yw_test_model.pmx"


class RecordingLayout:
    """A stand-in for a panel's ``UILayout`` outside a real UI: every call (``row``, ``prop``, ``label``...) is
    recorded as ``(name, args, kwargs)`` in the shared ``log`` and returns a sub-layout with the same log."""

    def __init__(self, log: list | None = None):
        self.log = [] if log is None else log
        self.enabled = True

    def __getattr__(self, name):
        def call(*a, **k):
            self.log.append((name, a, k))
            return RecordingLayout(self.log)
        return call


@pytest.fixture
def recording_layout():
    """:class:`RecordingLayout`, to draw panels and preferences headless."""
    return RecordingLayout
