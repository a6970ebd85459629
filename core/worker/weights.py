"""Official model weights: names, URLs, checksums, verified download, lookup (numpy-free: stdlib only).

Nothing here runs at estimate time: weights are fetched once by ``tools/install_deps.py --weights``
(:func:`install_all`) or placed by hand in a folder given with ``--weights-dir``; the pipeline only calls
:func:`find_weights`.

Known files (:data:`WEIGHTS`):

* VideoPose3D (Pavllo et al., CVPR 2019; ``dl.fbaipublicfiles.com/video-pose-3d/``; weights licence CC BY-NC 4.0,
  non-commercial): ``pretrained_h36m_detectron_coco.bin`` (COCO-17 2D input, from the repository's INFERENCE.md)
  and ``pretrained_h36m_cpn.bin`` (Human3.6M-ordered 2D input from CPN, from its README; 67,889,963 bytes per the
  download log in facebookresearch/VideoPose3D issue #97).
* detectron2 COCO-Keypoints Keypoint R-CNN (model zoo, ``detectron2/model_zoo/model_zoo.py``
  ``_ModelZooUrls``; Apache-2.0): R50-FPN 3x, R101-FPN 3x (what VideoPose3D's ``infer_video_d2.py`` uses),
  X101-32x8d-FPN 3x.

**Checksums.** Neither project publishes SHA-256 (or any) checksums for these files, and none could be found in
public sources; ``WEIGHTS[name].sha256`` is therefore ``None`` for every file (the six hex digits in detectron2's
``model_final_XXXXXX.pkl`` are a commit id, not a hash). A download is never accepted unverified: :func:`download`
needs an expected SHA-256, either recorded in :data:`WEIGHTS`, passed by the caller, or written by the user in a
``SHA256SUMS`` file (``sha256sum`` format: ``<hex>  <name>``) in the destination folder. Where a size is known it is
checked too. A file is written to a temporary name in the destination folder and moved into place with
``os.replace`` only after its checksum matches; on any failure nothing is left behind.
"""
from __future__ import annotations

import hashlib
import os
import re
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from ..atomic import atomic_output
from ..errors import PipelineError

__all__ = ["WeightsFile", "WEIGHTS", "DEFAULT_NAMES", "DETECTRON2_CONFIGS", "default_weights_dir", "sha256_of",
           "read_sha256sums", "find_weights", "download", "install_all"]

Progress = Callable[[str, int, "int | None"], None]


@dataclass(frozen=True)
class WeightsFile:
    """One downloadable weights file.

    Attributes:
        name: file name in the weights folder; url: official download URL; sha256: published checksum (None: not
        published, see the module docstring); size: bytes when a public source states it; licence; description;
        aliases: other names the same file goes by (e.g. detectron2's ``model_final_997cc7.pkl``).
    """

    name: str
    url: str
    sha256: str | None
    size: int | None
    licence: str
    description: str
    aliases: tuple[str, ...] = ()


_D2 = "https://dl.fbaipublicfiles.com/detectron2/COCO-Keypoints/"

#: detectron2 model-zoo config name -> weights name in :data:`WEIGHTS`.
DETECTRON2_CONFIGS: dict[str, str] = {
    "COCO-Keypoints/keypoint_rcnn_R_50_FPN_3x.yaml": "keypoint_rcnn_R_50_FPN_3x.pkl",
    "COCO-Keypoints/keypoint_rcnn_R_101_FPN_3x.yaml": "keypoint_rcnn_R_101_FPN_3x.pkl",
    "COCO-Keypoints/keypoint_rcnn_X_101_32x8d_FPN_3x.yaml": "keypoint_rcnn_X_101_32x8d_FPN_3x.pkl",
}

WEIGHTS: dict[str, WeightsFile] = {w.name: w for w in (
    WeightsFile("pretrained_h36m_detectron_coco.bin",
                "https://dl.fbaipublicfiles.com/video-pose-3d/pretrained_h36m_detectron_coco.bin", None, None,
                "CC BY-NC 4.0", "VideoPose3D 3,3,3,3,3 (243 frames), COCO-17 2D in, H36M-17 3D out"),
    WeightsFile("pretrained_h36m_cpn.bin", "https://dl.fbaipublicfiles.com/video-pose-3d/pretrained_h36m_cpn.bin",
                None, 67_889_963, "CC BY-NC 4.0",
                "VideoPose3D 3,3,3,3,3 (243 frames), Human3.6M-ordered 2D (CPN) in, H36M-17 3D out"),
    WeightsFile("keypoint_rcnn_R_50_FPN_3x.pkl", _D2 + "keypoint_rcnn_R_50_FPN_3x/137849621/model_final_a6e10b.pkl",
                None, None, "Apache-2.0", "detectron2 Keypoint R-CNN R50-FPN 3x (COCO keypoints)",
                ("model_final_a6e10b.pkl",)),
    WeightsFile("keypoint_rcnn_R_101_FPN_3x.pkl",
                _D2 + "keypoint_rcnn_R_101_FPN_3x/138363331/model_final_997cc7.pkl", None, None, "Apache-2.0",
                "detectron2 Keypoint R-CNN R101-FPN 3x (COCO keypoints; VideoPose3D's infer_video_d2.py)",
                ("model_final_997cc7.pkl",)),
    WeightsFile("keypoint_rcnn_X_101_32x8d_FPN_3x.pkl",
                _D2 + "keypoint_rcnn_X_101_32x8d_FPN_3x/139686956/model_final_5ad38f.pkl", None, None, "Apache-2.0",
                "detectron2 Keypoint R-CNN X101-32x8d-FPN 3x (COCO keypoints)", ("model_final_5ad38f.pkl",)),
)}

#: What ``install_all`` fetches by default: the seed pipeline (detectron2 R101 + VideoPose3D COCO model).
DEFAULT_NAMES: tuple[str, ...] = ("pretrained_h36m_detectron_coco.bin", "keypoint_rcnn_R_101_FPN_3x.pkl")

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def default_weights_dir() -> Path:
    """``$ANIME_MMD_WEIGHTS_DIR`` if set, else ``~/.cache/anime_mmd/weights`` (what tools/install_deps.py uses)."""
    env = os.environ.get("ANIME_MMD_WEIGHTS_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "anime_mmd" / "weights"


def _entry(name: str) -> WeightsFile:
    try:
        return WEIGHTS[name]
    except KeyError:
        raise PipelineError("bad_input", f"unknown weights {name!r}; known: {sorted(WEIGHTS)}") from None


def _check_hex(sha256: str, what: str) -> str:
    h = sha256.strip().lower()
    if not _HEX64.match(h):
        raise PipelineError("bad_input", f"{what}: {sha256!r} is not a SHA-256 (64 hex digits)")
    return h


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in ``chunk``-byte pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def read_sha256sums(folder: str | os.PathLike) -> dict[str, str]:
    """Checksums the user recorded in ``folder/SHA256SUMS`` (``sha256sum`` output: ``<hex>  [*]<name>``).

    Returns:
        ``{name: hex}`` (empty when there is no such file).
    Raises:
        PipelineError("bad_input"): a line that is not ``<64 hex> <name>`` (the message names the line).
    """
    path = Path(folder) / "SHA256SUMS"
    if not path.is_file():
        return {}
    out: dict[str, str] = {}
    for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 1)
        if len(parts) != 2:
            raise PipelineError("bad_input", f"{path}:{no}: expected '<sha256>  <file name>', got {line!r}")
        out[parts[1].lstrip("*").strip()] = _check_hex(parts[0], f"{path}:{no}")
    return out


def find_weights(name: str, weights_dir: str | os.PathLike | None = None) -> Path | None:
    """Where a weights file is, without downloading anything.

    Looks for ``name`` (and its aliases) in ``weights_dir`` when given, then in :func:`default_weights_dir`.

    Args:
        name: a key of :data:`WEIGHTS` or any file name.
        weights_dir: a folder the user chose (``--weights-dir``).
    Returns:
        The path of the first existing file, or None.
    """
    names = (name,) + (WEIGHTS[name].aliases if name in WEIGHTS else ())
    folders = ([Path(weights_dir).expanduser()] if weights_dir is not None else []) + [default_weights_dir()]
    for folder in folders:
        for n in names:
            p = folder / n
            if p.is_file():
                return p
    return None


def download(name: str, dest_dir: str | os.PathLike, *, sha256: str | None = None,
             progress: Progress | None = None, url: str | None = None, overwrite: bool = False,
             timeout: float = 60.0) -> Path:
    """Download one weights file and verify it before it appears under its name.

    Args:
        name: a key of :data:`WEIGHTS`.
        dest_dir: folder (created if needed).
        sha256: expected hex SHA-256; default: the recorded one (``WEIGHTS[name].sha256``, then ``SHA256SUMS`` in
            ``dest_dir``). Required: without any, nothing is downloaded.
        progress: ``progress("download <name>", bytes_done, bytes_total or None)``.
        url: another source (mirror, ``file://`` path) for the same file; default the official URL.
        overwrite: replace an existing ``dest_dir/name`` whose checksum differs (never done silently).
        timeout: seconds for the connection.
    Returns:
        ``dest_dir/name``. An existing file with the expected checksum is kept and nothing is fetched.
    Raises:
        PipelineError: ``bad_input`` (unknown name, no checksum, malformed checksum, checksum or size mismatch:
            the temporary file is removed), ``exists`` (a different file already has the name), ``missing_dependency``
            (the download itself failed: offline, HTTP error).
    """
    entry = _entry(name)
    dest_dir = Path(dest_dir).expanduser()
    expected = sha256 or entry.sha256 or read_sha256sums(dest_dir).get(name)
    if expected is None:
        raise PipelineError(
            "bad_input",
            f"no SHA-256 is published for {name}, so it cannot be verified. Get the checksum from a source you trust "
            f"and pass it (tools/install_deps.py --weights --sha256 {name}=HEX), or add a line '<sha256>  {name}' to "
            f"{dest_dir / 'SHA256SUMS'}; or download {entry.url} yourself into a folder and pass --weights-dir")
    expected = _check_hex(expected, name)
    target = dest_dir / name
    if target.exists():
        if target.is_file() and sha256_of(target) == expected:
            return target
        if not overwrite:
            raise PipelineError("exists", f"{target} exists and its SHA-256 differs from {expected}; move it away "
                                          "or allow overwriting")
    dest_dir.mkdir(parents=True, exist_ok=True)
    stage = f"download {name}"
    with atomic_output(target, suffix=".part") as tmp:
        h = hashlib.sha256()
        done = 0
        try:
            with open(tmp, "wb") as out, urllib.request.urlopen(url or entry.url, timeout=timeout) as resp:
                length = resp.headers.get("Content-Length") if hasattr(resp, "headers") else None
                total = int(length) if length and length.isdigit() else entry.size
                if progress:
                    progress(stage, 0, total)
                for block in iter(lambda: resp.read(1 << 20), b""):
                    out.write(block)
                    h.update(block)
                    done += len(block)
                    if progress:
                        progress(stage, done, total)
        except OSError as e:  # URLError, HTTPError, socket errors are OSErrors
            raise PipelineError("missing_dependency", f"could not download {name} from {url or entry.url} ({e}); "
                                "if this machine is offline, fetch it elsewhere and pass --weights-dir") from e
        if entry.size is not None and done != entry.size:
            raise PipelineError("bad_input", f"{name}: downloaded {done} bytes, expected {entry.size}; not kept")
        got = h.hexdigest()
        if got != expected:
            raise PipelineError("bad_input", f"{name}: SHA-256 {got} does not match the expected {expected}; "
                                             "the download was discarded")
    return target


def install_all(dest: str | os.PathLike | None = None, *, names: Iterable[str] | None = None,
                sha256: dict[str, str] | None = None, progress: Progress | None = None,
                log: Callable[[str], None] | None = None) -> int:
    """Fetch and verify the default weights (entry point of ``tools/install_deps.py --weights``).

    Args:
        dest: weights folder (default :func:`default_weights_dir`).
        names: which files (default :data:`DEFAULT_NAMES`).
        sha256: ``{name: hex}`` checksums supplied by the user (command line), over those recorded.
        progress: as :func:`download`; log: one-line messages (default: print to stderr).
    Returns:
        0 when every file is present and verified, 1 otherwise (each failure is logged with what to do).
    """
    say = log or (lambda m: print(f"[weights] {m}", file=sys.stderr, flush=True))
    dest_dir = Path(dest).expanduser() if dest is not None else default_weights_dir()
    failures = 0
    for name in (tuple(names) if names is not None else DEFAULT_NAMES):
        try:
            entry = _entry(name)
            path = download(name, dest_dir, sha256=(sha256 or {}).get(name), progress=progress)
            say(f"{name}: ok ({path}; licence {entry.licence})")
        except PipelineError as e:
            failures += 1
            say(f"{name}: {e.message}")
    return 1 if failures else 0
