#!/usr/bin/env python3
"""Set up an environment from a source checkout: ``python3 tools/install_deps.py [--dev] [--torch] ...``.

The same code as the add-on's *Set up worker* (``anime_mmd_addon/worker_setup.py``, loaded here by its path):
a venv from a Python 3.9-3.12 (``--python``, else this interpreter, else one on the system, else one fetched by uv),
the hash-locked packages installed with ``pip install --require-hashes --no-deps``, a check that they import, and a
stamp, so a second run with the same options installs nothing.

Environments:
    (default)       ``.venv`` with the worker (``anime_mmd_addon/worker_requirements/worker.txt``: MediaPipe,
                    PyAV, numpy, tqdm; no torch) and the ``anime-mmd`` command (``pip install -e .``).
    --dev           ``.venv`` for development and CI: ``requirements/dev.txt`` (the worker's pins plus pytest,
                    hypothesis, scipy and bpy, Blender as a Python module, on Python 3.11) and torch (the tests use it).

Options:
    --torch         also install torch (the VideoPose3D lifter, detectron2); --cuda: its CUDA build (implies --torch).
    --detectron2    build detectron2 from its source repository (needs internet, a compiler; implies --torch).
    --wheelhouse D  install offline from a folder of wheels (pip --no-index --find-links D).
    --offline       never use the network (without --wheelhouse only an up-to-date environment passes).
    --venv DIR      the environment folder (default .venv); --python EXE the interpreter to build it from.
    --weights       download the official VideoPose3D/detectron2 weights with checksum checks (--weights-dir).

The lock files are generated from pyproject.toml by ``tools/lock_requirements.py``.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SETUP_MODULE = REPO / "anime_mmd_addon" / "worker_setup.py"
DEV_LOCK = REPO / "requirements" / "dev.txt"
DETECTRON2_SOURCE = "git+https://github.com/facebookresearch/detectron2.git"
DEFAULT_WEIGHTS_DIR = Path.home() / ".cache" / "anime_mmd" / "weights"
#: What the development environment must import besides the worker's packages.
DEV_IMPORTS = ("pytest", "hypothesis", "scipy")


def log(msg: str) -> None:
    print(f"[install_deps] {msg}", flush=True)


def load_worker_setup():
    """``anime_mmd_addon/worker_setup.py`` as a module, without importing the ``anime_mmd_addon`` package (bpy)."""
    name = "anime_mmd_worker_setup"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, SETUP_MODULE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def _print_event(event: dict) -> None:
    kind = event["type"]
    if kind == "log":
        print(event["line"], flush=True)
    elif kind == "stage":
        log(event["text"])
    elif kind == "done":
        log(event["message"])
    elif kind == "error":
        log("FAILED: " + event["message"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="examples:\n"
                                        "  python3 tools/install_deps.py                 # .venv with the worker\n"
                                        "  python3 tools/install_deps.py --dev           # development and CI\n"
                                        "  python3 tools/install_deps.py --torch         # + torch (VideoPose3D)\n"
                                        "  python3 tools/install_deps.py --wheelhouse ~/wheels   # offline\n")
    ap.add_argument("--dev", action="store_true", help="the development environment (tests, bpy, torch)")
    ap.add_argument("--torch", action="store_true", help="also install torch (VideoPose3D, detectron2)")
    ap.add_argument("--cuda", action="store_true", help="torch's CUDA build (default: the CPU build)")
    ap.add_argument("--detectron2", action="store_true", help="build detectron2 from source (needs internet)")
    ap.add_argument("--wheelhouse", type=Path, help="install offline from this folder of wheels")
    ap.add_argument("--offline", action="store_true", help="never use the network")
    ap.add_argument("--venv", type=Path, default=REPO / ".venv", help="environment folder (default .venv)")
    ap.add_argument("--python", help="interpreter to build the environment from (default: search)")
    ap.add_argument("--force", action="store_true", help="reinstall even if the environment is up to date")
    ap.add_argument("--no-command", action="store_true", help="do not install the anime-mmd command")
    ap.add_argument("--pose-models", action="store_true",
                    help="also install MediaPipe's heavy and lite landmark models (--pose-model heavy|lite) from the npm "
                         "package @mediapipe/pose, checked against the registry's integrity hash (needs npm, or "
                         "--pose-models-tarball)")
    ap.add_argument("--pose-models-tarball", type=Path, help="a local copy of that package's .tgz (offline)")
    ap.add_argument("--weights", action="store_true", help="download the official model weights (needs internet)")
    ap.add_argument("--weights-dir", type=Path, default=DEFAULT_WEIGHTS_DIR, help="where weights go / are found")
    ap.add_argument("--sha256", action="append", default=[], metavar="NAME=HEX",
                    help="expected SHA-256 of a weights file (no official checksums are published; repeatable)")
    args = ap.parse_args(argv)

    ws = load_worker_setup()
    options = ws.SetupOptions(
        venv_dir=args.venv.resolve(), python=args.python, blender_python=sys.executable,
        wheelhouse=args.wheelhouse.resolve() if args.wheelhouse else None, online=not args.offline,
        torch=args.torch or args.dev or args.detectron2 or args.cuda, cuda=args.cuda,
        lock=DEV_LOCK if args.dev else ws.WORKER_LOCK, editable=None if args.no_command else REPO,
        force=args.force, extra_imports=DEV_IMPORTS if args.dev else ())
    result = ws.run_setup(options, _print_event)
    if result["type"] != "done":
        return 1
    py = ws.venv_python(options.venv_dir)
    if args.detectron2:
        log("building detectron2 from source (needs internet, a C++ compiler and torchvision)")
        rc = subprocess.call([str(py), "-m", "pip", "install", "--no-build-isolation", DETECTRON2_SOURCE],
                             env=ws.clean_env())
        if rc != 0:
            log(f"FAILED: pip install {DETECTRON2_SOURCE} (exit status {rc})")
            return rc
    if args.pose_models or args.pose_models_tarball:
        code = ("import sys; from core.worker.backends.pose_models import install_landmark_models; "
                "install_landmark_models(('heavy', 'lite'), tarball=sys.argv[1] or None)")
        tarball = str(args.pose_models_tarball.resolve()) if args.pose_models_tarball else ""
        rc = subprocess.call([str(py), "-c", code, tarball], cwd=REPO, env=ws.clean_env())
        if rc != 0:
            log(f"FAILED: installing the heavy and lite landmark models (exit status {rc})")
            return rc
    if args.weights:
        sums = dict(s.split("=", 1) for s in args.sha256 if "=" in s)
        bad = [s for s in args.sha256 if "=" not in s]
        if bad:
            sys.exit(f"[install_deps] --sha256 wants NAME=HEX, got {bad}")
        code = ("import json, sys; from pathlib import Path; from core.worker import weights; "
                "sys.exit(weights.install_all(Path(sys.argv[1]), sha256=json.loads(sys.argv[2]) or None))")
        rc = subprocess.call([str(py), "-c", code, str(args.weights_dir), json.dumps(sums)], cwd=REPO)
        if rc != 0:
            return rc
    shown = py.relative_to(REPO) if py.is_relative_to(REPO) else py
    log(f"main job: {shown} -m core estimate VIDEO -o OUT.vmd --model MODEL.pmx   (or: anime-mmd estimate ...)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
