"""The seam between Blender and the worker: what Blender imports must not need torch, mediapipe, cv2 or PyAV.

Each numpy-only module is imported in a fresh interpreter in which importing a heavy package raises, and bpy is absent
from core entirely (checked on the source text too).
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "mediapipe", "cv2", "av", "detectron2", "scipy", "tqdm")
BLENDER = ("bpy", "mathutils", "bmesh", "bpy_extras")



def _modules_outside_worker() -> list[str]:
    """Every module of ``core`` outside ``core/worker/``, read off the folders: all of them must import in Blender's
    Python (numpy and the standard library only)."""
    out = []
    for path in sorted((REPO / "core").rglob("*.py")):
        rel = path.relative_to(REPO).with_suffix("")
        parts = rel.parts
        if "worker" in parts[1:2] or "__pycache__" in parts:
            continue
        if parts[-1] == "__main__":
            continue
        out.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return out


NUMPY_ONLY = _modules_outside_worker()

BLOCKER = """
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {heavy!r}:
            raise ImportError('seam violation: ' + name + ' imported')
sys.meta_path.insert(0, Block())
import importlib
importlib.import_module({mod!r})
"""


def test_the_module_list_comes_from_the_folders():
    """The list is not empty and holds the engine's numpy-only modules, and nothing of the worker package."""
    assert {"core", "core.options", "core.motion_stage", "core.formats.vmd", "core.retarget"} <= set(NUMPY_ONLY)
    assert not [m for m in NUMPY_ONLY if m.startswith("core.worker")]


@pytest.mark.parametrize("module", NUMPY_ONLY)
def test_numpy_only_module_imports_without_heavy_packages(module):
    code = BLOCKER.format(heavy=set(HEAVY + BLENDER), mod=module)
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"{module} pulls in a heavy or Blender package at import time:\n{r.stderr[-2000:]}"


def test_blocker_detects_a_violation(tmp_path):
    """The check above can fail: a module importing cv2 at top level is caught."""
    (tmp_path / "bad_mod.py").write_text("import cv2\n")
    code = BLOCKER.format(heavy=set(HEAVY), mod="bad_mod")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "seam violation: cv2" in r.stderr


def test_core_never_imports_blender():
    offenders = []
    for path in (REPO / "core").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.relative_to(REPO)}:{node.lineno} {n}" for n in names if n.split(".")[0] in BLENDER]
    assert not offenders, offenders
