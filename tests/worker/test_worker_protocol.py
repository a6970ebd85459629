"""The worker protocol end to end without Blender: message (de)serialisation, the real ``python -m core.worker`` run
as a subprocess (with a fake pipeline through its test hook), and the add-on's client against fake workers that
print garbage, crash, exit silently, speak another protocol version or hang. Also the detection cache key.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

from core import pose_io, protocol

REPO = Path(__file__).resolve().parents[2]
FAKES = REPO / "tests" / "worker" / "fake_workers"
FAKE_WORKER = FAKES / "fake_worker.py"

#: Loads the add-on's bpy-free modules without running ``anime_mmd_addon/__init__.py`` (which imports bpy): a bare
#: package object under another name points at the same folder.
_LOADER = f"""
import importlib, sys, types
pkg = types.ModuleType("_anime_mmd_addon_nobpy")
pkg.__path__ = [{str(REPO / "anime_mmd_addon")!r}]
sys.modules.setdefault(pkg.__name__, pkg)
worker_client = importlib.import_module(pkg.__name__ + ".worker_client")
cache = importlib.import_module(pkg.__name__ + ".cache")
"""
_ns: dict = {}
exec(_LOADER, _ns)
worker_client, cache = _ns["worker_client"], _ns["cache"]
WorkerProcess, run_request, summarize_check = (worker_client.WorkerProcess, worker_client.run_request,
                                                worker_client.summarize_check)


def test_client_modules_do_not_need_bpy():
    code = _LOADER + "assert 'bpy' not in sys.modules, 'bpy was imported'; print(worker_client.REPO_ROOT)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(REPO)


def fake_env(pipeline: str | None = None, **extra: str) -> dict[str, str]:
    """The worker's environment with the fake pipeline hook (``fake_pipeline:<name>``) and fakes importable."""
    env = worker_client.worker_env()
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(FAKES)])
    if pipeline:
        env["ANIME_MMD_FAKE_PIPELINE"] = f"fake_pipeline:{pipeline}"
    env.update(extra)
    return env


def run_worker(request: dict | str, *, env: dict | None = None, python: list[str] | None = None,
               timeout: float = 60) -> tuple[list[dict], int, str]:
    """Run ``python -m core.worker`` directly (no client): parsed stdout lines, exit status, stderr."""
    line = request if isinstance(request, str) else json.dumps(request)
    proc = subprocess.run((python or [sys.executable]) + ["-m", "core.worker"], input=line + "\n", text=True,
                          capture_output=True, cwd=REPO, env=env or fake_env(), timeout=timeout)
    messages = [protocol.decode(ln) for ln in proc.stdout.splitlines()]
    return messages, proc.returncode, proc.stderr


def estimate_request(tmp_path: Path, **options) -> dict:
    options.setdefault("video", str(tmp_path / "clip.mp4"))
    return protocol.estimate_request(options, tmp_path / "out" / "poses.npz")


# ------------------------------------------------------------------------------------------------ messages


def test_messages_round_trip_through_lines():
    messages = [
        protocol.hello(versions={"numpy": "1.26.4", "torch": None}, missing=["torch"], cuda=None, python="3.11.7",
                       executable="/venv/bin/python", mode="check", fix=protocol.install_command("/opt/x")),
        protocol.progress("detect", 120, 900),
        protocol.progress("decode", 0, None),
        protocol.artifact("npz", Path("/tmp/ダンス/poses.npz")),
        protocol.done({"frames": np.int64(900), "fps": np.float32(29.97), "size": np.array([640, 360]),
                       "nan": float("nan"), "path": Path("/x")}),
        protocol.error("no_detection", "no person was found in the video"),
    ]
    for message in messages:
        line = protocol.encode(message)
        assert line.endswith("\n") and line.count("\n") == 1
        assert line.isascii()  # non-ASCII paths are escaped, so any pipe encoding carries them
        back = protocol.decode(line.encode("ascii"))
        assert back["type"] == message["type"]
        assert protocol.encode(back) == line
    assert protocol.decode(protocol.encode(messages[3]))["path"] == "/tmp/ダンス/poses.npz"
    result = protocol.decode(protocol.encode(messages[4]))["result"]
    assert result == {"frames": 900, "fps": pytest.approx(29.97, abs=1e-5), "size": [640, 360], "nan": None,
                      "path": "/x"}


@pytest.mark.parametrize("line, needle", [
    ("", "empty line"),
    ("Loading weights...", "not JSON"),
    ("[1, 2]", "JSON object"),
    ('{"type": "progres", "stage": "x", "done": 1}', "unknown message type"),
    ('{"type": "progress", "stage": "x"}', "'done'"),
    ('{"type": "progress", "stage": "x", "done": true}', "'done'"),
    ('{"type": "progress", "stage": "x", "done": -1, "total": 3}', ">= 0"),
    ('{"type": "progress", "stage": "x", "done": 1, "total": 2.5}', "total"),
    ('{"type": "artifact", "kind": "png", "path": "/x"}', "artifact kind"),
    ('{"type": "error", "code": "oops", "message": "m"}', "error code"),
    ('{"type": "done", "result": {"x": NaN}}', "NaN"),
    ('{"type": "hello", "protocol": "1", "versions": {}, "missing": []}', "'protocol'"),
])
def test_decode_rejects_malformed_lines(line, needle):
    with pytest.raises(protocol.ProtocolError, match=needle):
        protocol.decode(line)


def test_decode_rejects_oversized_line():
    line = json.dumps({"type": "done", "result": {"x": "a" * protocol.MAX_LINE_BYTES}})
    with pytest.raises(protocol.ProtocolError, match="longer than"):
        protocol.decode(line.encode())


def test_requests_validate():
    assert protocol.decode_request(protocol.encode(protocol.check_request())) == {"cmd": "check"}
    req = protocol.estimate_request({"video": "/v.mp4", "crop": (1, 2, 3, 4), "start": None}, "/tmp/o.npz")
    assert protocol.decode_request(protocol.encode(req))["options"]["crop"] == [1, 2, 3, 4]
    with pytest.raises(protocol.ProtocolError, match="unknown estimate options"):
        protocol.estimate_request({"video": "/v.mp4", "smoothing": 0.5}, "/tmp/o.npz")
    with pytest.raises(protocol.ProtocolError, match="unknown estimate options"):   # motion options stay in Blender
        protocol.estimate_request({"video": "/v.mp4", "key_tolerance": [3, 3]}, "/tmp/o.npz")
    with pytest.raises(protocol.ProtocolError, match="absolute"):
        protocol.estimate_request({"video": "/v.mp4"}, "relative.npz")
    with pytest.raises(protocol.ProtocolError, match="unknown request command"):
        protocol.decode_request('{"cmd": "shutdown"}')
    with pytest.raises(protocol.ProtocolError, match="overwrite"):
        protocol.validate_request({"cmd": "estimate", "options": {}, "npz": "/x.npz", "overwrite": "yes"})


def test_estimate_fields_are_estimate_options_fields():
    from core import options

    names = {f.name for f in dataclasses.fields(options.DetectOptions)} | {"overlay"}
    assert set(protocol.ESTIMATE_FIELDS) <= names, set(protocol.ESTIMATE_FIELDS) - names


def test_requirements_follow_the_options():
    assert protocol.requirements_for(None) == protocol.FULL_REQUIREMENTS
    assert protocol.requirements_for({"video": "v"}) == ("numpy", "av", "mediapipe")
    assert protocol.requirements_for({"video": "v", "backend": "detectron2", "lifter": "videopose3d"}) == (
        "numpy", "av", "torch")
    assert protocol.requirements_for({"from_keypoints": "k.npz"}) == ("numpy",)
    assert protocol.requirements_for({"from_keypoints": "k", "lifter": "videopose3d"}) == ("numpy", "torch")


# ------------------------------------------------------------------------------------------------ the real worker


def test_check_in_the_full_environment():
    needed = [m for m in protocol.FULL_REQUIREMENTS if importlib.util.find_spec(m) is None]
    if needed:
        pytest.skip(f"this interpreter lacks {needed}; the full-environment check needs them")
    messages, rc, stderr = run_worker({"cmd": "check"})
    assert rc == 0, stderr
    hello, done = messages
    assert hello["type"] == "hello" and hello["protocol"] == protocol.PROTOCOL_VERSION and hello["mode"] == "check"
    assert hello["missing"] == [] and done == {"type": "done", "result": {"ok": True, "missing": []}}
    import numpy
    import torch

    assert hello["versions"]["numpy"] == numpy.__version__
    assert hello["versions"]["torch"] == torch.__version__
    assert all(hello["versions"][m] for m in protocol.PACKAGES)
    assert hello["cuda"] is torch.cuda.is_available()
    assert hello["executable"] == sys.executable
    text = summarize_check(messages)
    assert f"numpy {numpy.__version__}" in text and "CUDA" in text and "Missing" not in text


def test_check_without_site_packages_reports_what_is_missing_and_the_fix():
    # -S: no site-packages, so the stdlib-only worker runs but finds none of the packages.
    messages, rc, stderr = run_worker({"cmd": "check"}, python=[sys.executable, "-S"])
    assert rc == 0, stderr
    hello, done = messages
    assert hello["missing"] == list(protocol.FULL_REQUIREMENTS)
    assert all(v is None for v in hello["versions"].values()) and hello["cuda"] is None
    assert "install_deps.py" in hello["fix"] and Path(hello["fix"].split(" ", 1)[1]).parent.parent == REPO
    assert "No module named 'torch'" in hello["errors"]["torch"]
    assert done["result"] == {"ok": False, "missing": list(protocol.FULL_REQUIREMENTS)}
    text = summarize_check(messages)
    assert text.startswith("Missing numpy, av, cv2, mediapipe (") and hello["fix"] in text


def test_check_from_the_command_line():
    proc = subprocess.run([sys.executable, "-S", "-m", "core.worker", "--check"], capture_output=True, text=True,
                          cwd=REPO, timeout=60)
    assert proc.returncode == 0
    assert [protocol.decode(ln)["type"] for ln in proc.stdout.splitlines()] == ["hello", "done"]


def test_estimate_without_dependencies_fails_early_with_the_fix(tmp_path):
    env = fake_env()  # no fake pipeline: the real requirements apply
    messages, rc, _ = run_worker(estimate_request(tmp_path), env=env, python=[sys.executable, "-S"])
    assert rc == 1
    assert [m["type"] for m in messages] == ["hello", "error"]
    assert messages[0]["missing"] == ["numpy", "av", "mediapipe"]
    err = messages[1]
    assert err["code"] == "missing_dependency" and "install_deps.py" in err["message"]


def test_estimate_with_fake_pipeline(tmp_path):
    log = tmp_path / "calls.jsonl"
    req = estimate_request(tmp_path, start=1.5, end=None, crop=[10, 20, 300, 200], backend="mediapipe")
    messages, rc, stderr = run_worker(req, env=fake_env("ok", FAKE_PIPELINE_LOG=str(log)))
    assert rc == 0, stderr
    types_ = [m["type"] for m in messages]
    assert types_[0] == "hello" and types_[-1] == "done" and types_.count("done") == 1
    assert messages[0]["mode"] == "estimate"
    progress = [m for m in messages if m["type"] == "progress"]
    detect = [(m["done"], m["total"]) for m in progress if m["stage"] == "detect"]
    assert detect[0] == (0, 20) and detect[-1] == (20, 20)  # throttled, but first and last always sent
    assert [d for d, _ in detect] == sorted(d for d, _ in detect)
    assert {m["stage"] for m in progress} == {"detect", "lift", "save"}
    npz = tmp_path / "out" / "poses.npz"
    assert [m for m in messages if m["type"] == "artifact"] == [{"type": "artifact", "kind": "npz",
                                                                 "path": str(npz)}]
    result = messages[-1]["result"]
    assert result["npz"] == str(npz) and result["frames"] == 20 and result["detected"] == 19
    assert result["image_size"] == [640, 360] and result["notes"] == ["filled 1 frame"]
    assert result["has_3d"] and result["has_trajectory"]
    # The options reached the pipeline as sent (tuples for crop), with the request's overwrite flag.
    call = json.loads(log.read_text())
    assert call["start"] == 1.5 and call["crop"] == [10, 20, 300, 200] and call["overwrite"] is False
    # The file is the pipeline's poses, and nothing else is left in the folder (atomic write).
    sys.path.insert(0, str(FAKES))
    try:
        import fake_pipeline
    finally:
        sys.path.remove(str(FAKES))
    expected, got = fake_pipeline.make_poses(), pose_io.load(npz)
    np.testing.assert_array_equal(got.keypoints_2d, expected.keypoints_2d)
    np.testing.assert_array_equal(got.joints_3d, expected.joints_3d)
    np.testing.assert_array_equal(got.detected, expected.detected)
    assert sorted(p.name for p in npz.parent.iterdir()) == ["poses.npz"]


def test_stray_output_of_libraries_never_reaches_the_protocol_and_native_lines_are_silenced(tmp_path):
    """Python-level prints go to stderr; what native code writes straight to a descriptor (TFLite, glog) is dropped
    unless ANIME_MMD_VERBOSE=1 asks for it; the protocol stream stays clean either way."""
    messages, rc, stderr = run_worker(estimate_request(tmp_path), env=fake_env("noisy"))
    assert rc == 0 and messages[-1]["type"] == "done"
    for text in ("XNNPACK delegate", "stray write"):
        assert text in stderr
    assert "raw fd-1 write from a C library" not in stderr
    messages, rc, stderr = run_worker(estimate_request(tmp_path / "v"), env=fake_env("noisy", ANIME_MMD_VERBOSE="1"))
    assert rc == 0 and messages[-1]["type"] == "done"
    assert "raw fd-1 write from a C library" in stderr


@pytest.mark.parametrize("pipeline, code, needle", [
    ("bad_video", "no_frames", "holds no frames"),
    ("boom", "internal", "KeyError: 'missing key'"),
    ("not_poses", "internal", "TypeError: detect_stage returned list"),
])
def test_estimate_errors_keep_their_code(tmp_path, pipeline, code, needle):
    messages, rc, stderr = run_worker(estimate_request(tmp_path), env=fake_env(pipeline))
    assert rc == 1
    assert messages[0]["type"] == "hello" and messages[-1]["type"] == "error"
    assert [m["type"] for m in messages].count("error") == 1
    assert messages[-1]["code"] == code and needle in messages[-1]["message"]
    if code == "internal":
        assert "Traceback (most recent call last)" in stderr and needle in stderr
    assert not (tmp_path / "out" / "poses.npz").exists()


def test_estimate_refuses_to_overwrite(tmp_path):
    npz = tmp_path / "out" / "poses.npz"
    npz.parent.mkdir()
    npz.write_bytes(b"user data")
    messages, rc, _ = run_worker(estimate_request(tmp_path), env=fake_env("ok"))
    assert rc == 1 and messages[-1]["code"] == "exists"
    assert not any(m["type"] == "progress" for m in messages)  # refused before any work
    assert npz.read_bytes() == b"user data"
    req = protocol.estimate_request({"video": "/v.mp4"}, npz, overwrite=True)
    messages, rc, _ = run_worker(req, env=fake_env("ok"))
    assert rc == 0 and len(pose_io.load(npz)) == 20


def test_real_pipeline_reports_bad_input(tmp_path):
    _real_pipeline_or_skip()
    messages, rc, _ = run_worker(estimate_request(tmp_path), env=worker_client.worker_env())
    assert rc == 1
    assert messages[-1]["code"] == "bad_input" and "clip.mp4" in messages[-1]["message"]


def test_invalid_request_line():
    messages, rc, _ = run_worker("Hello worker!")
    assert rc == 1 and [m["type"] for m in messages] == ["hello", "error"]
    assert messages[1]["code"] == "bad_input" and "not JSON" in messages[1]["message"]


# ------------------------------------------------------------------------------------------------ the client


def fake_worker(mode: str, request: dict | None = None, **env: str) -> WorkerProcess:
    return WorkerProcess(sys.executable, request or protocol.check_request(),
                         command=[sys.executable, str(FAKE_WORKER), mode], env=fake_env(**env))


def drain(worker: WorkerProcess, timeout: float = 20) -> list[dict]:
    return list(worker.messages(timeout))


def test_client_runs_the_real_worker(tmp_path):
    req = estimate_request(tmp_path)
    with WorkerProcess(sys.executable, req, env=fake_env("ok")) as worker:
        messages = drain(worker)
        assert worker.hello is messages[0] and worker.artifacts[0]["path"] == req["npz"]
        assert worker.terminal is messages[-1] and messages[-1]["type"] == "done"
    assert worker.proc.returncode == 0 and worker.poll() == []
    assert len(pose_io.load(req["npz"])) == 20


def test_client_poll_never_blocks(tmp_path):
    with WorkerProcess(sys.executable, estimate_request(tmp_path), env=fake_env("ok")) as worker:
        seen: list[dict] = []
        t0 = time.monotonic()
        while not (seen and seen[-1]["type"] in protocol.TERMINAL_TYPES):
            before = time.monotonic()
            seen += worker.poll()
            assert time.monotonic() - before < 0.05
            assert time.monotonic() - t0 < 30
            time.sleep(0.01)
    assert seen[0]["type"] == "hello" and seen[-1]["type"] == "done"


def test_client_with_canned_fake_worker(tmp_path):
    npz = tmp_path / "canned.npz"
    with fake_worker("canned", protocol.estimate_request({"video": "/v.mp4"}, npz)) as worker:
        messages = drain(worker)
    assert [m["type"] for m in messages] == ["hello", "progress", "progress", "progress", "artifact", "done"]
    assert messages[-1]["result"]["frames"] == 12 and len(pose_io.load(npz)) == 12


def test_client_reports_garbage_and_stops_the_worker():
    t0 = time.monotonic()
    with fake_worker("garbage") as worker:
        messages = drain(worker)
        assert worker.proc.returncode is not None  # stopped, not left sleeping 30 s
    assert time.monotonic() - t0 < 10
    err = messages[-1]
    assert messages[0]["type"] == "hello"
    assert err["type"] == "error" and err["code"] == "internal" and err["reason"] == "protocol"
    assert err["origin"] == "client" and "this is not JSON" in err["message"] and "install_deps.py" in err["message"]


def test_client_rejects_another_protocol_version():
    with fake_worker("oldproto") as worker:
        messages = drain(worker)
    assert len(messages) == 1 and messages[0]["reason"] == "protocol" and "protocol 99" in messages[0]["message"]


def test_client_reports_a_crash_with_the_stderr_tail():
    with fake_worker("crash") as worker:
        messages = drain(worker)
    assert [m["type"] for m in messages] == ["hello", "progress", "error"]
    err = messages[-1]
    assert err["code"] == "internal" and err["reason"] == "crash" and err["returncode"] == 3
    assert "exited with status 3" in err["message"] and "RuntimeError: fake crash boom" in err["message"]
    assert worker.proc.returncode == 3


def test_client_reports_a_silent_exit():
    with fake_worker("silent") as worker:
        messages = drain(worker)
    assert len(messages) == 1 and messages[0]["reason"] == "crash"
    assert "exited with status 0 without a result" in messages[0]["message"]


def _gone(pid: int) -> bool:
    """True if ``pid`` no longer runs (absent, or a zombie awaiting a reaper that is not us)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return any(line.startswith("State:") and "Z" in line.split()[1] for line in f)
    except FileNotFoundError:
        return True


@pytest.mark.skipif(os.name != "posix", reason="process groups and /proc are POSIX")
def test_cancel_kills_a_hung_worker_and_its_children(tmp_path):
    pid_file = tmp_path / "child.pid"
    with fake_worker("hang", FAKE_CHILD_PID_FILE=str(pid_file)) as worker:
        first = [worker.get(20), worker.get(20)]
        assert [m["type"] for m in first] == ["hello", "progress"]
        deadline = time.monotonic() + 20
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        child = int(pid_file.read_text())
        assert not _gone(child)
        t0 = time.monotonic()
        worker.cancel(grace=0.5)  # it ignores SIGTERM: SIGKILL after the grace period
        elapsed = time.monotonic() - t0
        assert elapsed < 2.5
        assert worker.proc.returncode == -9  # killed and reaped by us: no zombie
        with pytest.raises(ChildProcessError):
            os.waitpid(worker.pid, os.WNOHANG)
        assert worker.poll() == [{"type": "error", "code": "cancelled", "message": "the estimation was cancelled",
                                  "origin": "client", "reason": "cancelled"}]
    deadline = time.monotonic() + 5
    while not _gone(child):
        assert time.monotonic() < deadline, "the worker's child survived the cancel"
        time.sleep(0.02)


def test_cancel_stops_the_real_worker_promptly_without_partial_files(tmp_path):
    req = estimate_request(tmp_path)
    with WorkerProcess(sys.executable, req, env=fake_env("slow")) as worker:
        while True:
            m = worker.get(30)
            assert m is not None and m["type"] != "error"
            if m["type"] == "progress":
                break
        t0 = time.monotonic()
        worker.cancel()
        assert time.monotonic() - t0 < 2.0
        assert worker.proc.returncode == 1  # it handled SIGTERM itself (error line, exit 1), no SIGKILL needed
        assert worker.poll()[-1]["code"] == "cancelled"
    assert "stopped on request" in worker.stderr_tail()
    out = tmp_path / "out"
    assert not out.exists() or list(out.iterdir()) == []


def test_run_request_times_out_on_a_hang(tmp_path):
    t0 = time.monotonic()
    messages = run_request(sys.executable, protocol.check_request(), timeout=1.0,
                           command=[sys.executable, str(FAKE_WORKER), "hang"],
                           env=fake_env(FAKE_CHILD_PID_FILE=str(tmp_path / "pid")))
    assert time.monotonic() - t0 < 6
    assert messages[-1]["reason"] == "timeout" and "within 1 s" in messages[-1]["message"]
    assert summarize_check(messages).startswith("Python 3.x: numpy fake; CUDA no -- error: the worker gave no")


def test_client_cannot_start_a_missing_interpreter(tmp_path):
    with pytest.raises(FileNotFoundError):
        WorkerProcess(tmp_path / "no-python", protocol.check_request())


def test_worker_env_isolates_python_paths():
    env = worker_client.worker_env({"PYTHONPATH": "/blender/scripts", "PYTHONHOME": "/blender/python", "X": "1"})
    assert env["PYTHONPATH"] == str(REPO) and "PYTHONHOME" not in env and env["X"] == "1"


# ------------------------------------------------------------------------------------------------ cache key


def _props(video: Path, **over) -> types.SimpleNamespace:
    p = dict(video_path=str(video), start_time=0.0, end_time=0.0, use_crop=False, crop_x=0, crop_y=0, crop_w=0,
             crop_h=0, backend="mediapipe", keypoints_path="", lifter="native", checkpoint_path="", smoothing=0.5,
             target_armature="Miku")
    p.update(over)
    return types.SimpleNamespace(**p)


def test_cache_key_follows_detection_settings_only(tmp_path):
    video = tmp_path / "dance.mp4"
    video.write_bytes(b"\0" * 100)
    ckpt = tmp_path / "vp3d.bin"
    ckpt.write_bytes(b"w")
    base = cache.DetectionSettings.from_props(_props(video)).key()
    assert len(base) == 64 and base == cache.DetectionSettings.from_props(_props(video)).key()
    # Retargeting settings and the device do not change what detection produces.
    for over in ({"smoothing": 0.9}, {"key_tolerance": (3.0, 3.0)}, {"target_armature": "Teto"}):
        assert cache.DetectionSettings.from_props(_props(video, **over)).key() == base
    assert cache.DetectionSettings.from_props(_props(video), device="CUDA").key() == base
    # Crop fields are ignored while the crop is off.
    assert cache.DetectionSettings.from_props(_props(video, crop_w=50)).key() == base
    changed = [
        {"start_time": 1.0}, {"end_time": 5.0}, {"backend": "detectron2"},
        {"use_crop": True, "crop_w": 100, "crop_h": 100},
        {"lifter": "videopose3d", "checkpoint_path": str(ckpt)},
    ]
    keys = {cache.DetectionSettings.from_props(_props(video, **over)).key() for over in changed}
    assert len(keys) == len(changed) and base not in keys
    crop_a = cache.DetectionSettings.from_props(_props(video, use_crop=True, crop_w=100, crop_h=100)).key()
    crop_b = cache.DetectionSettings.from_props(_props(video, use_crop=True, crop_w=100, crop_h=101)).key()
    assert crop_a != crop_b
    # The same path with new content (size or mtime) is another video.
    video.write_bytes(b"\0" * 101)
    assert cache.DetectionSettings.from_props(_props(video)).key() != base
    os.utime(video, ns=(1, 1))
    k1 = cache.DetectionSettings.from_props(_props(video)).key()
    os.utime(video, ns=(2_000_000_000, 2_000_000_000))
    assert cache.DetectionSettings.from_props(_props(video)).key() != k1
    # A retrained checkpoint invalidates VideoPose3D results.
    vp = _props(video, lifter="videopose3d", checkpoint_path=str(ckpt))
    k2 = cache.DetectionSettings.from_props(vp).key()
    ckpt.write_bytes(b"w2")
    assert cache.DetectionSettings.from_props(vp).key() != k2


def test_keypoints_backend_keys_on_the_keypoint_file(tmp_path):
    kp = tmp_path / "kp.npz"
    kp.write_bytes(b"1")
    s = cache.DetectionSettings.from_props(_props(tmp_path / "absent.mp4", backend="keypoints",
                                                  keypoints_path=str(kp)))
    assert s.problems() == [] and s.source() == str(kp)
    assert s.options() == {"start": None, "end": None, "crop": None, "lifter": "native", "device": "cpu",
                           "from_keypoints": str(kp)}
    k = s.key()
    kp.write_bytes(b"22")
    assert s.key() != k


def test_settings_problems_and_options(tmp_path):
    video = tmp_path / "dance.mp4"
    assert cache.DetectionSettings.from_props(_props(video)).problems() == [f"Video not found: {video}"]
    assert cache.DetectionSettings.from_props(_props("")).problems() == ["Choose a video file"]
    video.write_bytes(b"v")
    s = cache.DetectionSettings.from_props(_props(video, lifter="videopose3d", start_time=3.0, end_time=2.0,
                                                  use_crop=True, crop_w=0, crop_h=10))
    problems = s.problems()
    assert len(problems) == 3 and "checkpoint" in problems[0] and "End time" in problems[1]
    s = cache.DetectionSettings.from_props(_props(video, start_time=1.25, use_crop=True, crop_w=64, crop_h=32),
                                           device="CUDA")
    opts = s.options()
    assert opts == {"start": 1.25, "end": None, "crop": (0, 0, 64, 32), "lifter": "native", "device": "cuda",
                    "video": str(video), "backend": "mediapipe"}
    protocol.estimate_request(opts, tmp_path / "x.npz")  # the options are valid request options


def test_use_poor_detection_reaches_the_worker_but_not_the_cache_key(tmp_path, shared_data):
    video = str(shared_data / "videos" / "kunkun_dance_864x480_25fps.mp4")
    base = dict(video=video, start=None, end=None, crop=None, backend="mediapipe", keypoints="", lifter="native",
                checkpoint="")
    plain, forced = cache.DetectionSettings(**base), cache.DetectionSettings(**base, force=True)
    assert "force" not in plain.options() and forced.options()["force"] is True
    assert plain.key() == forced.key()  # the same detection either way
    protocol.estimate_request(forced.options(), tmp_path / "x.npz")  # a valid request
    fingers = cache.DetectionSettings(**base, hands=True)
    assert fingers.options()["hands"] is True and fingers.options()["face"] is False
    assert fingers.key() != plain.key()  # a different detector: its own cache entry
    protocol.estimate_request(fingers.options(), tmp_path / "y.npz")
    turned = cache.DetectionSettings(**base, rotate="90")
    assert "rotate" not in plain.options() and turned.options()["rotate"] == "90"   # auto: the engine's default
    assert turned.key() != plain.key() and not turned.problems()
    protocol.estimate_request(turned.options(), tmp_path / "z.npz")
    assert cache.DetectionSettings(**base, rotate="45").problems() == ["Unknown turn '45'"]


def test_clean_stale_removes_only_old_temporaries(tmp_path):
    old_tmp = tmp_path / "abc.npz.x1.tmp.npz"
    new_tmp = tmp_path / "def.npz.x2.tmp.npz"
    done = tmp_path / "abc.npz"
    for p in (old_tmp, new_tmp, done):
        p.write_bytes(b"x")
    os.utime(old_tmp, (time.time() - 7200, time.time() - 7200))
    os.utime(done, (time.time() - 7200, time.time() - 7200))
    assert cache.clean_stale(tmp_path) == [old_tmp]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["abc.npz", "def.npz.x2.tmp.npz"]
    assert cache.cache_path(tmp_path, "k") == tmp_path / "k.npz"


def test_install_command_names_the_script(tmp_path):
    py = "python" if os.name == "nt" else "python3"
    assert protocol.install_command(tmp_path) == f"{py} tools/install_deps.py"  # not shipped: run in the source
    assert protocol.install_command(tmp_path, cuda=True) == f"{py} tools/install_deps.py --cuda"
    root = tmp_path / "my tools"
    (root / "tools").mkdir(parents=True)
    (root / "tools" / "install_deps.py").write_text("")
    assert protocol.install_command(root) == f'{py} "{root / "tools" / "install_deps.py"}"'
    assert protocol.install_command(REPO) == f"{py} {REPO / 'tools' / 'install_deps.py'}"


def test_cuda_requested_without_a_cuda_torch(tmp_path):
    try:
        import torch
    except ImportError:
        pytest.skip("needs torch in this interpreter")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the refusal cannot be shown")
    messages, rc, _ = run_worker(estimate_request(tmp_path, device="cuda"), env=fake_env("ok"))
    assert rc == 1 and messages[0]["cuda"] is False and messages[0]["versions"]["torch"] == torch.__version__
    err = messages[-1]
    assert err["code"] == "missing_dependency" and "no CUDA GPU" in err["message"]
    assert err["message"].endswith("install_deps.py --cuda")
    assert not (tmp_path / "out").exists()


def _real_pipeline_or_skip() -> None:
    pytest.importorskip("core.worker.job")
    missing = [m for m in protocol.requirements_for({"video": "v"}) if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"the real pipeline needs {missing} in this interpreter")


def test_client_runs_the_real_pipeline_on_a_real_clip(tmp_path, shared_data):
    """One second of a real dance video through the real worker (PyAV + MediaPipe): the libraries' chatter stays
    on stderr and the pose file arrives."""
    _real_pipeline_or_skip()
    video = shared_data / "videos" / "kunkun_dance_864x480_25fps.mp4"
    req = protocol.estimate_request({"video": str(video), "start": 0.0, "end": 1.0}, tmp_path / "kunkun.npz")
    with WorkerProcess(sys.executable, req) as worker:
        messages = drain(worker, timeout=120)
    assert messages[-1]["type"] == "done", messages[-1]
    result = messages[-1]["result"]
    poses = pose_io.load(tmp_path / "kunkun.npz")
    assert result["frames"] == len(poses) and 20 <= len(poses) <= 30  # 25 fps, one second
    assert result["image_size"] == [864, 480] and result["backend"] == "mediapipe" and result["has_3d"]
    assert poses.detected.mean() > 0.8  # a single dancer, whole body visible
    detect = [m for m in messages if m["type"] == "progress" and m["stage"] == "detect"]
    assert detect and detect[-1]["done"] == detect[-1]["total"] == len(poses)
    assert worker.proc.returncode == 0


def test_real_pipeline_rejects_a_file_that_is_not_a_video(tmp_path):
    _real_pipeline_or_skip()
    fake = tmp_path / "notes.mp4"
    fake.write_text("these are not video frames\n" * 100)
    messages, rc, _ = run_worker(protocol.estimate_request({"video": str(fake)}, tmp_path / "o.npz"),
                                 env=worker_client.worker_env())
    assert rc == 1 and messages[-1]["code"] == "bad_input" and "notes.mp4" in messages[-1]["message"]
    assert not (tmp_path / "o.npz").exists()
