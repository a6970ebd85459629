"""MediaPipe's lite and heavy BlazePose landmark models, installed at set-up (never at run time).

mediapipe 0.10.21's wheel bundles only ``pose_landmark_full.tflite`` (``model_complexity=1``); for 0 (lite) and 2
(heavy) it would download from the internet on first use. The npm package ``@mediapipe/pose`` carries all three
landmark models; :func:`install_landmark_models` fetches that package's tarball with the npm client (``npm pack``),
checks it against the integrity hash the registry publishes for it (``npm view ... dist.integrity``, a
Subresource-Integrity ``sha512-<base64>``) *and* against the hash pinned here for :data:`NPM_VERSION`, and copies
the named ``.tflite`` files into mediapipe's ``modules/pose_landmark/`` folder, where mediapipe loads them offline.
Licence of the models: Apache-2.0 (the package's ``package.json``).

Set-up call (for ``tools/install_deps.py``)::

    from core.worker.backends.pose_models import install_landmark_models
    install_landmark_models(("heavy", "lite"))          # or tarball=PATH for a .tgz copied in by hand

Measured on the closed-loop renders (``benchmarks/bench_landmark_models.py``): see that script's docstring; the
bundled full model stays the default.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from ...errors import PipelineError

__all__ = ["NPM_PACKAGE", "NPM_VERSION", "NPM_INTEGRITY", "MODEL_FILES", "install_landmark_models",
           "landmark_model_dir", "check_integrity", "installed"]

NPM_PACKAGE = "@mediapipe/pose"
#: The package version used: its ``pose_landmark_full.tflite`` is byte-identical to the one mediapipe 0.10.21's
#: wheel bundles, so its lite and heavy models are the same release's.
NPM_VERSION = "0.5.1675469404"
#: ``dist.integrity`` the registry publishes for :data:`NPM_VERSION` (pinned: a changed tarball is refused).
NPM_INTEGRITY = "sha512-DFZsNWTsSphRIZppnUCuunzBiHP2FdJXR9ehc7mMi4KG+oPaOH0Em3d6kr7Py+TSyTXC1doH88KcF28k2sBxsQ=="
#: Model name -> file inside the tarball (``package/``) and in mediapipe's ``modules/pose_landmark/``.
MODEL_FILES = {"lite": "pose_landmark_lite.tflite", "full": "pose_landmark_full.tflite",
               "heavy": "pose_landmark_heavy.tflite"}


def landmark_model_dir() -> Path:
    """mediapipe's ``modules/pose_landmark`` folder (where ``mp.solutions.pose`` looks for the models).

    Raises:
        ImportError: mediapipe is not installed.
    """
    from .mp_import import import_mediapipe

    mp = import_mediapipe()  # without matplotlib and sounddevice (unused here)

    return Path(mp.__file__).parent / "modules" / "pose_landmark"


def installed(which: str, target_dir: str | os.PathLike | None = None) -> bool:
    """Whether the ``which`` (``"lite"``, ``"full"``, ``"heavy"``) landmark model is in place."""
    return (Path(target_dir) if target_dir else landmark_model_dir()).joinpath(MODEL_FILES[which]).is_file()


def check_integrity(data: bytes, integrity: str) -> None:
    """Check ``data`` against a Subresource-Integrity string (``sha512-<base64>``; sha256/sha384 also read).

    Raises:
        PipelineError("bad_input"): a malformed string or a mismatch (the message gives both digests).
    """
    algo, _, b64 = integrity.partition("-")
    if algo not in ("sha256", "sha384", "sha512") or not b64:
        raise PipelineError("bad_input", f"unusable integrity string {integrity!r} (want sha512-<base64>)")
    got = base64.b64encode(hashlib.new(algo, data).digest()).decode("ascii")
    if got != b64:
        raise PipelineError("bad_input", f"the {NPM_PACKAGE} tarball does not match its integrity hash "
                                         f"({algo}-{got} != {integrity}); nothing was installed")


def _npm(*args: str, cwd: str | None = None) -> str:
    npm = shutil.which("npm")
    if npm is None:
        raise PipelineError("missing_dependency", "the npm client is needed to fetch MediaPipe's lite/heavy pose "
                                                  f"models ({NPM_PACKAGE}); install Node.js/npm, or pass the "
                                                  "package's .tgz with tarball=PATH")
    try:
        out = subprocess.run([npm, *args], cwd=cwd, check=True, capture_output=True, text=True, timeout=600)
    except subprocess.CalledProcessError as e:
        raise PipelineError("missing_dependency", f"npm {' '.join(args)} failed: {(e.stderr or '').strip()[-400:]}") from e
    except subprocess.TimeoutExpired as e:
        raise PipelineError("missing_dependency", f"npm {' '.join(args)} took over 10 minutes") from e
    return out.stdout


def install_landmark_models(which=("heavy", "lite"), *, target_dir: str | os.PathLike | None = None,
                            tarball: str | os.PathLike | None = None, overwrite: bool = False) -> list[Path]:
    """Install MediaPipe's landmark models from the ``@mediapipe/pose`` npm package (see the module docstring).

    Args:
        which: model names of :data:`MODEL_FILES` to install.
        target_dir: where to put them (default :func:`landmark_model_dir`).
        tarball: a local copy of the package's ``.tgz`` (offline set-up); it is checked against
            :data:`NPM_INTEGRITY` only.
        overwrite: replace models already there (by default they are kept; the bundled full model is never
            replaced unless asked).
    Returns:
        the paths installed (or already present).
    Raises:
        PipelineError: ``missing_dependency`` (no npm, npm failed), ``bad_input`` (an unknown model name, an
        integrity mismatch, a tarball without the model).
    """
    unknown = [w for w in which if w not in MODEL_FILES]
    if unknown:
        raise PipelineError("bad_input", f"unknown landmark model(s) {unknown}; choose from {sorted(MODEL_FILES)}")
    target = Path(target_dir) if target_dir else landmark_model_dir()
    want = [w for w in which if overwrite or not installed(w, target)]
    paths = [target / MODEL_FILES[w] for w in which]
    if not want:
        return paths
    if tarball is not None:
        data = Path(tarball).read_bytes()
    else:
        spec = f"{NPM_PACKAGE}@{NPM_VERSION}"
        published = json.loads(_npm("view", spec, "dist.integrity", "--json")).strip()
        if published != NPM_INTEGRITY:
            raise PipelineError("bad_input", f"the registry's integrity hash for {spec} ({published}) differs from "
                                             f"the one pinned in this program ({NPM_INTEGRITY}); nothing installed")
        with tempfile.TemporaryDirectory(prefix="anime-mmd-npm-") as tmp:
            name = json.loads(_npm("pack", spec, "--json", cwd=tmp))[0]["filename"]
            data = (Path(tmp) / name).read_bytes()
    check_integrity(data, NPM_INTEGRITY)
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for w in want:
            member = f"package/{MODEL_FILES[w]}"
            try:
                info = tar.getmember(member)
            except KeyError:
                raise PipelineError("bad_input", f"the {NPM_PACKAGE} tarball holds no {member}") from None
            if not info.isfile():
                raise PipelineError("bad_input", f"{member} in the {NPM_PACKAGE} tarball is not a regular file")
            blob = tar.extractfile(info).read()
            dest = target / MODEL_FILES[w]
            fd, tmp_name = tempfile.mkstemp(dir=target, prefix=dest.name, suffix=".part")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(blob)
                os.chmod(tmp_name, 0o644)
                os.replace(tmp_name, dest)
            except BaseException:
                Path(tmp_name).unlink(missing_ok=True)
                raise
    return paths
