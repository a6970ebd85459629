#!/usr/bin/env python3
"""Build (and validate) the Blender extension zip with Blender's own tool.

    python tools/build_extension.py [--output-dir dist] [--blender /path/to/blender] [--no-validate]

Without ``--blender`` it runs ``blender_ext.py`` -- the script behind ``blender --command extension build`` -- that
ships inside the ``bpy`` wheel (``bpy/<version>/scripts/addons_core/bl_pkg/cli/blender_ext.py``), with this Python.
With ``--blender`` it runs ``blender --command extension build`` / ``validate`` instead. The repository root is the
extension's source directory (``blender_manifest.toml``); what goes into the zip is set by the manifest's
``[build] paths_exclude_pattern``. Prints the zip's path on the last line; exits non-zero when building or validating
fails.
"""
from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def find_blender_ext() -> Path:
    """``blender_ext.py`` inside the installed ``bpy`` wheel.

    Raises:
        FileNotFoundError: bpy is not installed in this Python, or the script is not where Blender keeps it.
    """
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the bpy module is not installed in this Python (pip install bpy==5.0.1), "
                                "or pass --blender /path/to/blender")
    hits = []
    for loc in spec.submodule_search_locations:
        hits += sorted(Path(loc).glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not hits:
        raise FileNotFoundError(f"blender_ext.py not found under {list(spec.submodule_search_locations)}")
    return hits[-1]


def zip_name(source_dir: Path = REPO) -> str:
    """``{id}-{version}.zip`` from the manifest, the name Blender's build gives the package."""
    with open(source_dir / "blender_manifest.toml", "rb") as fh:
        manifest = tomllib.load(fh)
    return f"{manifest['id']}-{manifest['version']}.zip"


def build(output_dir: Path, *, blender: str | None = None, validate: bool = True, source_dir: Path = REPO) -> Path:
    """Build the zip into ``output_dir`` (created if missing), validate it, and return its path.

    Raises:
        subprocess.CalledProcessError: Blender's tool reported an error (its output is printed).
        FileNotFoundError: no tool to build with.
    """
    output_dir = Path(output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    out = output_dir / zip_name(source_dir)
    if blender:
        base = [blender, "--factory-startup", "--command", "extension"]
    else:
        base = [sys.executable, str(find_blender_ext())]
    if out.exists():
        out.unlink()  # Blender's build refuses to replace nothing silently; a stale zip must not survive a failure
    subprocess.run(base + ["build", "--source-dir", str(source_dir), "--output-filepath", str(out)], check=True)
    if validate:
        subprocess.run(base + ["validate", str(out)], check=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--output-dir", type=Path, default=REPO / "dist", help="where to put the zip (default dist/)")
    ap.add_argument("--blender", help="use this Blender executable instead of the bpy wheel's blender_ext.py")
    ap.add_argument("--no-validate", dest="validate", action="store_false", help="skip 'validate'")
    args = ap.parse_args(argv)
    try:
        path = build(args.output_dir, blender=args.blender, validate=args.validate)
    except FileNotFoundError as e:
        print(f"build_extension: {e}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as e:
        print(f"build_extension: Blender's tool failed ({e.returncode})", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
