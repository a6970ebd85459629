"""Checks a run makes before any decoding: output paths, inputs and the target model (stdlib + numpy only).

Each failure is one :class:`core.errors.PipelineError` whose message says what to do; all of them are cheap (no
video is decoded, the model is parsed once), so a mistake is reported within a second or two instead of after the
whole detection.

What is checked (``check_paths``):

* every output has the suffix of its kind (``.vmd``, ``.npz``, an overlay video ``.mp4``/``.m4v``/``.mov``/``.mkv``);
* outputs are distinct from each other and from every input (video, pose file, keypoints, model, checkpoint), compared
  after resolving symlinks, so a run can never write over what it reads;
* each output's folder exists and is writable, and the output is not itself a folder;
* an existing output is refused unless ``overwrite`` is set (code ``exists``).

``check_model`` reads the PMX and checks it has the bones retargeting needs (code ``bad_model``).
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import PipelineError

#: Output kind -> accepted suffixes (lower case).
SUFFIXES: dict[str, tuple[str, ...]] = {
    "vmd": (".vmd",),
    "npz": (".npz",),
    "overlay": (".mp4", ".m4v", ".mov", ".mkv"),
}

_FLAGS = {"vmd": "-o/--output", "npz": "--npz", "overlay": "--overlay"}


def _resolved(path: str | os.PathLike) -> Path:
    return Path(path).expanduser().resolve()


def check_paths(outputs: dict[str, str | os.PathLike | None], inputs: list[str | os.PathLike | None], *,
                overwrite: bool) -> None:
    """Check the outputs of a run against each other, the inputs and the file system.

    Args:
        outputs: kind (a key of :data:`SUFFIXES`) -> path, or None when that output is not written.
        inputs: paths the run reads (None entries are ignored).
        overwrite: whether existing output files may be replaced.
    Raises:
        PipelineError: ``bad_input`` (suffix, collision, folder missing / not writable, output is a folder) or
        ``exists`` (an output exists and ``overwrite`` is off).
    """
    seen: dict[Path, str] = {}
    ins = {_resolved(p): str(p) for p in inputs if p}
    for kind, path in outputs.items():
        if not path:
            continue
        flag, p = _FLAGS[kind], Path(path)
        if p.suffix.lower() not in SUFFIXES[kind]:
            raise PipelineError("bad_input", f"{flag} {p}: this file must end in {' or '.join(SUFFIXES[kind])}; "
                                             "change the file name")
        r = _resolved(p)
        if r in ins:
            raise PipelineError("bad_input", f"{flag} {p} is the input {ins[r]}; writing it would destroy the input: "
                                             "choose another output name")
        if r in seen:
            raise PipelineError("bad_input", f"{flag} {p} is the same file as {seen[r]}; give each output its own name")
        seen[r] = f"{flag} {p}"
        if r.is_dir():
            raise PipelineError("bad_input", f"{flag} {p} is a folder; give a file name inside it, e.g. "
                                             f"{p / ('motion' + SUFFIXES[kind][0])}")
        folder = r.parent
        if not folder.is_dir():
            raise PipelineError("bad_input", f"{flag} {p}: the folder {folder} does not exist; create it first")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PipelineError("bad_input", f"{flag} {p}: the folder {folder} is not writable; choose another folder")
        if r.exists() and not overwrite:
            raise PipelineError("exists", f"{p} already exists; choose another name or pass --overwrite")


def check_model(path: str | os.PathLike | None):
    """Read the target model and check that retargeting can use it.

    Args:
        path: a ``.pmx``, or None for the built-in standard skeleton.
    Returns:
        ``(rest_skeleton, model_name)``, see ``core.motion_stage.load_rest``.
    Raises:
        PipelineError: ``bad_model`` (not a readable PMX, or a PMX without the bones retargeting needs).
    """
    from .motion_stage import load_rest
    from .retarget import check_model as check_bones

    from .errors import ModelError

    rest, name = load_rest(path)
    try:
        check_bones(rest)
    except ModelError as e:
        raise ModelError(f"{path}: {e.message}" if path else e.message) from None
    return rest, name
