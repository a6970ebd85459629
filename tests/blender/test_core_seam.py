"""The add-on reaches the engine through one module, ``anime_mmd_addon/_core.py``, by static imports only.

Read off the source (no bpy needed): every name ``_core`` imports is a numpy-only ``core`` module (outside
``core/worker/``), its two branches (installed extension / source tree) import the same names, and no other add-on
module imports ``core`` or builds a module name as a string.
"""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ADDON = REPO / "anime_mmd_addon"


def _imports_of_core(tree: ast.AST) -> list[tuple[str, str]]:
    """(module, name) pairs of every ``from [..]core[...] import name`` in the tree."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "core":
            out += [(node.module, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 2:
            mod = node.module or ""
            if mod.split(".")[0] == "core" or (not mod and any(a.name == "core" for a in node.names)):
                out += [(mod, a.name) for a in node.names]
    return out


def test_core_is_imported_statically_through_one_module():
    tree = ast.parse((ADDON / "_core.py").read_text(encoding="utf-8"))
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level == 2 or (node.module or "").startswith("core")):
            base = node.module or ""
            key = "rel" if node.level == 2 else "abs"
            for a in node.names:
                names.setdefault(key, set()).add((base, a.name))
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "core":
                    names.setdefault("abs", set()).add(("", a.name))
    assert names["rel"] and names["rel"] == names["abs"], (names.get("rel"), names.get("abs"))
    for base, name in names["rel"]:
        dotted = ".".join(p for p in ("core", base.partition("core")[2].strip("."), name if name != "core" else "")
                          if p)
        path = REPO / dotted.replace(".", "/")
        assert path.with_suffix(".py").is_file() or (path / "__init__.py").is_file(), dotted
        assert not dotted.startswith("core.worker"), f"the add-on must not import the worker side: {dotted}"


def test_no_other_addon_module_reaches_core_directly():
    offenders = []
    for path in sorted(ADDON.glob("*.py")):
        if path.name == "_core.py":
            continue
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text)
        if _imports_of_core(tree):
            offenders.append(f"{path.name}: imports core directly")
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                    "import_module", "__import__"):
                offenders.append(f"{path.name}:{node.lineno}: imports a module by a string")
    assert not offenders, offenders
