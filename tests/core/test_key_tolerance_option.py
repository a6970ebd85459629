"""The ``key_tolerance`` option (``core.options.MotionOptions``): declared once, parsed and checked the same way by
the command line, ``tools/batch.py`` and a mapping (a worker request's style), and passed to the key reduction."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core import keyreduce, options
from core.errors import PipelineError

REPO = Path(__file__).resolve().parents[2]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})


def test_default_is_issue_11s_tolerance_and_the_reducers_own():
    assert options.default(options.MotionOptions, "key_tolerance") == (0.5, 1.0)
    assert (keyreduce.DEFAULT_ROT_TOL_DEG, keyreduce.DEFAULT_POS_TOL_MM) == options.DEFAULT_KEY_TOLERANCE
    meta = options.declaration(options.MotionOptions, "key_tolerance")
    assert meta["flag"] == "--key-tolerance" and meta["kind"] == "tolerance" and meta["min"] == 0.0
    assert "key_tolerance" in options.MOTION_FIELDS and "key_tolerance" not in options.REQUEST_FIELDS


@pytest.mark.parametrize("value, want", [((3, 3), (3.0, 3.0)), ([0.5, 1], (0.5, 1.0)), ((0, 0), (0.0, 0.0))])
def test_good_values_are_normalised(value, want):
    got = options.check(options.MotionOptions, "key_tolerance", value)
    assert got == want and all(isinstance(v, float) for v in got)
    assert options.from_mapping(options.MotionOptions, {"key_tolerance": list(value)}).key_tolerance == want


@pytest.mark.parametrize("value, words", [
    ((-1, 2), "at least 0, got -1,2"), ((1, -0.5), "at least 0"), ((3,), "two numbers DEG,MM"),
    ((1, 2, 3), "two numbers DEG,MM"), (("a", 1.0), "two numbers DEG,MM"), ((True, 1), "two numbers"),
    ("3,3", "two numbers"), ((float("nan"), 1), "finite"), ((1, float("inf")), "finite"), (None, "must be given")])
def test_bad_values_are_one_line_naming_the_flag(value, words):
    with pytest.raises(PipelineError, match=words) as e:
        options.check(options.MotionOptions, "key_tolerance", value)
    assert e.value.code == "bad_input" and "--key-tolerance" in e.value.message and "\n" not in e.value.message


def test_command_line_parses_deg_mm():
    from core.cli import build_parser

    args = build_parser().parse_args(["estimate", "v.mp4", "-o", "o.vmd", "--key-tolerance", "3, 2.5"])
    assert args.key_tolerance == (3.0, 2.5)
    assert build_parser().parse_args(["estimate", "v.mp4", "-o", "o.vmd"]).key_tolerance == (0.5, 1.0)


@pytest.mark.parametrize("text, words", [
    ("-1,2", "--key-tolerance: degrees and millimetres must be at least 0, got -1,2"),
    ("abc,1", "--key-tolerance must be two numbers DEG,MM"), ("3", "--key-tolerance must be two numbers DEG,MM"),
    ("1,2,3", "--key-tolerance must be two numbers DEG,MM"), ("nan,1", "--key-tolerance must be finite")])
def test_command_line_refuses_bad_values_in_one_line_before_any_work(tmp_path, shared_data, text, words):
    src = shared_data / "keypoints" / "lia_kim_dance" / "videopose3d_export.npy"
    r = _cli("estimate", "--from-keypoints", str(src), "-o", "x.vmd", f"--key-tolerance={text}", cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {words}"), r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_command_line_tolerance_reaches_the_vmd(tmp_path, shared_data):
    """A larger --key-tolerance writes fewer keys (the job passes it, with the model, to reduce_motion)."""
    from core.formats import vmd

    src = shared_data / "keypoints" / "lia_kim_dance" / "videopose3d_export.npy"
    model = shared_data / "pmx" / "mat4_trace_model" / "mat4_v4_trace_model.pmx"
    counts = {}
    for tol in ("0.5,1", "3,3", None):
        out = tmp_path / f"{tol}.vmd"
        r = _cli("estimate", "--from-keypoints", str(src), "-o", str(out), "--model", str(model), "-q",
                 *(["--key-tolerance", tol] if tol else []), cwd=tmp_path)
        assert r.returncode == 0, r.stderr[-2000:]
        counts[tol] = len(vmd.read(out).bone_keys)
    assert counts[None] == counts["0.5,1"]           # the default
    assert counts["3,3"] < 0.8 * counts["0.5,1"], counts


def test_batch_takes_the_option_from_its_declaration_and_checks_it():
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import batch
    finally:
        sys.path.pop(0)
    base = ["v.mp4", "--model", "m.pmx", "--out", "o.vmd"]
    args = batch.build_parser().parse_args(base + ["--key-tolerance", "2,4"])
    assert batch._motion_options(args).key_tolerance == (2.0, 4.0)
    assert batch._motion_options(batch.build_parser().parse_args(base)).key_tolerance == (0.5, 1.0)
    with pytest.raises(batch.BatchError, match="--key-tolerance: degrees and millimetres must be at least 0"):
        batch._motion_options(batch.build_parser().parse_args(base + ["--key-tolerance=1,-2"]))
