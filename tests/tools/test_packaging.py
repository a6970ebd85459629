"""Packaging: pyproject.toml is the one source of truth, the locks are generated from it and shipped, and the engine
is never installed as a top-level package called ``core``."""
from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))
import lock_requirements  # noqa: E402
import install_deps  # noqa: E402

sys.path.pop(0)

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def test_locks_match_pyproject():
    """Edit pyproject.toml, then run ``python3 tools/lock_requirements.py``: a stale lock fails here."""
    want = lock_requirements.digest(PYPROJECT)
    stale = {name: str(path.relative_to(REPO)) for name, path in lock_requirements.outputs().items()
             if lock_requirements.recorded_digest(path) != want}
    assert stale == {}, f"regenerate with python3 tools/lock_requirements.py: {stale}"


@pytest.mark.parametrize("name", ["worker", "dev", "uv"])
def test_every_locked_requirement_is_pinned_and_hashed(name):
    text = lock_requirements.outputs()[name].read_text(encoding="utf-8")
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2].strip())
    assert len(entries) >= 1
    for entry in entries:
        assert re.match(r"^[A-Za-z0-9._-]+==[^ ;\\]+", entry), entry[:80]
        assert "--hash=sha256:" in entry, entry[:80]


def test_worker_lock_has_mediapipe_numpy1_and_no_torch_or_jax():
    pins = dict(re.findall(r"^([a-z0-9._-]+)==([^ ;\\]+)", (REPO / "anime_mmd_addon" / "worker_requirements" /
                                                             "worker.txt").read_text(), re.M))
    assert pins["mediapipe"] == "0.10.21" and pins["numpy"].startswith("1.")
    assert "torch" not in pins
    never = [ln for ln in (REPO / "anime_mmd_addon" / "worker_requirements" / "worker.txt").read_text().splitlines()
             if ln.startswith(("jax==", "jaxlib=="))]
    assert never and all("sys_platform == 'never'" in ln for ln in never)


def test_requires_python_matches_the_setup_search():
    ws = install_deps.load_worker_setup()
    lo, hi = ws.PY_MIN, ws.PY_MAX
    assert PYPROJECT["project"]["requires-python"] == f">={lo[0]}.{lo[1]},<{hi[0]}.{hi[1] + 1}"
    assert PYPROJECT["build-system"]["build-backend"] == "setuptools.build_meta"
    assert "scipy" in " ".join(PYPROJECT["project"]["optional-dependencies"]["dev"])


def test_package_list_names_every_engine_package():
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = {"anime_mmd"} | {"anime_mmd." + ".".join(p.parent.relative_to(REPO).parts)
                             for p in (REPO / "core").rglob("*.py") if "__pycache__" not in p.parts}
    assert listed == found


def test_wheel_installs_the_engine_as_anime_mmd_core_with_the_command(tmp_path):
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("setuptools is not installed in this Python (needed to build the wheel without the network)")
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w",
                          str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    (wheel,) = tmp_path.glob("anime_mmd-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if n.startswith("core/")]
    assert {"anime_mmd/core/cli.py", "anime_mmd/core/worker/server.py", "anime_mmd/core/formats/vmd.py",
            "anime_mmd/core/worker/lifting/videopose3d.py"} <= set(names)
    assert not [n for n in names if n.startswith(("anime_mmd/tests/", "anime_mmd/tools/"))]
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "anime-mmd = anime_mmd.core.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()
