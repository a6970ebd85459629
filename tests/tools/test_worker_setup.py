"""The set-up code shared by *Set up worker* and tools/install_deps.py, under a plain Python (no bpy): finding an
interpreter, refusing to go online when not allowed, reporting pip's own error, cancelling, cleaning up."""
from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))
import install_deps  # noqa: E402

sys.path.pop(0)
ws = install_deps.load_worker_setup()


def test_this_python_is_a_candidate_and_a_program_that_is_not_python_is_refused():
    cand, why = ws.probe_python(sys.executable, "blender")
    if not (ws.PY_MIN <= sys.version_info[:2] <= ws.PY_MAX):
        assert cand is None and "mediapipe 0.10.21 needs 3.9-3.12" in why
        return
    assert why == "" and cand.version == tuple(sys.version_info[:3]) and cand.source == "blender"
    false = shutil.which("false")
    if false:
        cand, why = ws.probe_python(false, "system")
        assert cand is None and "exits with status 1" in why


def test_a_python_too_new_for_mediapipe_is_refused_with_the_reason():
    exe = shutil.which("python3.13")
    cand, why = ws.probe_python(exe, "system") if exe else (None, "")
    if not exe or "exits with status" in why:  # pyenv shims exist but do not run unless selected
        pytest.skip("no runnable python3.13 on PATH")
    assert cand is None and "Python 3.13" in why and "needs 3.9-3.12" in why


def test_the_users_choice_is_never_silently_replaced(tmp_path):
    cand, tried = ws.find_python(str(tmp_path / "no_such_python"), sys.executable)
    assert cand is None and len(tried) == 1 and "cannot run" in tried[0]


def test_offline_without_a_wheelhouse_refuses_before_making_anything(tmp_path):
    events = []
    result = ws.run_setup(ws.SetupOptions(venv_dir=tmp_path / "venv", online=False), events.append)
    assert result["type"] == "error" and "no wheelhouse folder is set" in result["message"]
    assert not (tmp_path / "venv").exists() and events[-1] is result


def test_pip_failure_is_reported_with_pips_error_and_the_venv_is_removed(tmp_path):
    if ws.probe_python(sys.executable, "x")[0] is None:
        pytest.skip("this Python cannot host the worker")
    empty = tmp_path / "wheels"
    empty.mkdir()
    run = ws.SetupRun(ws.SetupOptions(venv_dir=tmp_path / "venv", blender_python=sys.executable,
                                      search_system=False, wheelhouse=empty))
    result = run.run()
    assert result["type"] == "error"
    msg = result["message"]
    assert msg.startswith("Installing the worker packages failed (exit status 1)") and "--no-index" in msg
    assert "ERROR:" in msg and "was removed" in msg
    assert not (tmp_path / "venv").exists()


def test_cancel_stops_the_running_step_and_removes_what_it_made(tmp_path):
    if ws.probe_python(sys.executable, "x")[0] is None:
        pytest.skip("this Python cannot host the worker")
    empty = tmp_path / "wheels"
    empty.mkdir()
    run = ws.SetupRun(ws.SetupOptions(venv_dir=tmp_path / "venv", blender_python=sys.executable,
                                      search_system=False, wheelhouse=empty))
    deadline = time.monotonic() + 60
    while run.stage != "Creating the environment" and time.monotonic() < deadline and not run.finished:
        run.poll()
        time.sleep(0.01)
    assert run.stage == "Creating the environment"
    started = time.monotonic()
    run.cancel()
    while not run.finished:
        run.poll()
        time.sleep(0.01)
    assert run.result == {"type": "error", "cancelled": True,
                          "message": f"set-up cancelled\n(the unfinished environment {tmp_path / 'venv'} was removed)"}
    assert time.monotonic() - started < 10 and not (tmp_path / "venv").exists()


def test_count_packages_counts_each_name_once_and_skips_the_excluded():
    n = ws.count_packages(ws.WORKER_LOCK)
    text = ws.WORKER_LOCK.read_text()
    assert 15 <= n < text.count("==")
    assert "jax==" in text


def test_a_stamp_from_another_lock_is_noticed(tmp_path):
    venv = tmp_path / "venv"
    venv.mkdir()
    opts = ws.SetupOptions(venv_dir=venv)
    (venv / ws.STAMP_NAME).write_text(json.dumps(opts.stamp()))
    assert ws.read_stamp(venv)["lock"] == "worker.txt" and not ws.lock_changed(venv)
    (venv / ws.STAMP_NAME).write_text(json.dumps(dict(opts.stamp(), lock_sha256="0" * 64)))
    assert ws.lock_changed(venv)
