#!/usr/bin/env python3
"""Set up the worker environment: ``python3 tools/install_deps.py [--dev] [--cuda] [--weights] [--detectron2]``.

Creates ``.venv`` in the repository root (or ``--venv DIR``) with everything the worker needs on CPU
(``requirements/worker.txt`` + torch 2.13.0), and with ``--dev`` the test tools (``requirements/dev.txt``).
Idempotent: a second run with the same options checks a stamp and installs nothing. Nothing is downloaded beyond
packages unless ``--weights`` is given.

Options:
    --cuda          a CUDA build of torch (the default is the CPU build).
    --weights       download the official VideoPose3D (and detectron2 Keypoint R-CNN) weights with checksum checks
                    into ``--weights-dir`` (default: ~/.cache/anime_mmd/weights).
    --detectron2    install detectron2 from its source repository (needs internet and a compiler).
    --python EXE    the interpreter to build the venv from (default: this one; Python 3.10-3.12 for mediapipe).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TORCH = "torch==2.13.0"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
DETECTRON2_SOURCE = "git+https://github.com/facebookresearch/detectron2.git"
DEFAULT_WEIGHTS_DIR = Path.home() / ".cache" / "anime_mmd" / "weights"


def log(msg: str) -> None:
    print(f"[install_deps] {msg}", flush=True)


def venv_python(venv_dir: Path) -> Path:
    return venv_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def pip(py: Path, *args: str, check: bool = True) -> int:
    cmd = [str(py), "-m", "pip", "install", "--disable-pip-version-check", *args]
    log(" ".join(cmd[3:]))
    rc = subprocess.call(cmd)
    if check and rc != 0:
        sys.exit(f"[install_deps] pip failed ({rc}): {' '.join(args)}")
    return rc


def requirement_files(dev: bool) -> list[Path]:
    files = [REPO / "requirements" / "worker.txt"]
    if dev:
        files.append(REPO / "requirements" / "dev.txt")
    return files


def stamp_of(args: argparse.Namespace) -> str:
    h = hashlib.sha256()
    for f in requirement_files(args.dev):
        h.update(f.read_bytes())
    h.update(f"{TORCH} cuda={args.cuda} detectron2={args.detectron2}".encode())
    return h.hexdigest()


def install_torch(py: Path, cuda: bool) -> None:
    if cuda:
        # PyPI's Linux wheels of torch are CUDA builds.
        pip(py, TORCH)
        return
    # A CPU build: a local wheel where pip's configuration provides one (find-links), installed alone and then
    # completed with its dependencies from the usual index (the installed 2.13.0 satisfies the pin, so pip keeps it);
    # else PyTorch's CPU index, which serves torch and its dependencies.
    if pip(py, "--no-index", "--no-deps", TORCH, check=False) == 0:
        pip(py, TORCH)
        return
    pip(py, TORCH, "--index-url", TORCH_CPU_INDEX)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dev", action="store_true", help="also install the test tools (pytest, hypothesis, bpy)")
    ap.add_argument("--cuda", action="store_true", help="install a CUDA build of torch")
    ap.add_argument("--weights", action="store_true", help="download the official model weights (needs internet)")
    ap.add_argument("--weights-dir", type=Path, default=DEFAULT_WEIGHTS_DIR, help="where weights go / are found")
    ap.add_argument("--sha256", action="append", default=[], metavar="NAME=HEX",
                    help="expected SHA-256 of a weights file (no official checksums are published; repeatable)")
    ap.add_argument("--detectron2", action="store_true", help="install detectron2 from source (needs internet)")
    ap.add_argument("--venv", type=Path, default=REPO / ".venv", help="virtual environment folder (default .venv)")
    ap.add_argument("--python", default=sys.executable, help="interpreter to create the venv with")
    args = ap.parse_args(argv)

    if not ((3, 10) <= sys.version_info[:2] <= (3, 12)) and args.python == sys.executable:
        log(f"warning: Python {sys.version_info.major}.{sys.version_info.minor}: mediapipe 0.10.21 needs 3.10-3.12")
    venv_dir: Path = args.venv
    py = venv_python(venv_dir)
    if not py.exists():
        log(f"creating {venv_dir}")
        if args.python == sys.executable:
            venv.EnvBuilder(with_pip=True).create(venv_dir)
        else:
            subprocess.check_call([args.python, "-m", "venv", str(venv_dir)])
    stamp_file = venv_dir / ".anime_mmd_deps"
    stamp = stamp_of(args)
    if stamp_file.exists() and stamp_file.read_text().strip() == stamp:
        log(f"{venv_dir} is up to date")
    else:
        install_torch(py, args.cuda)
        reqs = [a for f in requirement_files(args.dev) for a in ("-r", str(f))]
        pip(py, *reqs)
        if args.detectron2:
            log("installing detectron2 from source (needs internet, a C++ compiler and torchvision)")
            pip(py, "--no-build-isolation", DETECTRON2_SOURCE)
        # The worker is started as `python -m core.worker` with the repository root on sys.path.
        check = subprocess.run([str(py), "-c", "import numpy, mediapipe, av, torch, tqdm; print(torch.__version__)"],
                               capture_output=True, text=True)
        if check.returncode != 0:
            sys.exit(f"[install_deps] the environment does not import: {check.stderr.strip().splitlines()[-1:]}")
        stamp_file.write_text(stamp + "\n")
        log(f"ready: {py} (torch {check.stdout.strip()})")
    if args.weights:
        sums = dict(s.split("=", 1) for s in args.sha256 if "=" in s)
        bad = [s for s in args.sha256 if "=" not in s]
        if bad:
            sys.exit(f"[install_deps] --sha256 wants NAME=HEX, got {bad}")
        code = ("import json, sys; from pathlib import Path; from core import weights; "
                "sys.exit(weights.install_all(Path(sys.argv[1]), sha256=json.loads(sys.argv[2]) or None))")
        rc = subprocess.call([str(py), "-c", code, str(args.weights_dir), json.dumps(sums)], cwd=REPO)
        if rc != 0:
            return rc
    log(f"main job: {py.relative_to(REPO) if py.is_relative_to(REPO) else py} -m core estimate VIDEO -o OUT.vmd "
        "--model MODEL.pmx")
    return 0


if __name__ == "__main__":
    sys.exit(main())
