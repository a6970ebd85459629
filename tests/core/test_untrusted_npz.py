"""Untrusted .npz / .npy / .pkl files must not make a tiny file take huge memory (issue 7, item 4).

Every malicious file is built here in ``tmp_path`` and read in a **subprocess** under ``RLIMIT_AS`` (3 GiB of address
space), so a regression fails the test instead of taking the shared machine down. The subprocess reports the
exception and the tracemalloc peak of the load; a refusal must be a ``PipelineError("bad_input")`` on one line that
names the file (and the limit, when a limit was hit), and the load must stay under 64 MiB traced / 600 MB RSS.
"""
from __future__ import annotations

import io
import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from core import keypoints_io, pose_io, safe_npz
from core.errors import PipelineError

REPO = Path(__file__).resolve().parents[2]
_POSIX_ONLY = pytest.mark.skipif(sys.platform == "win32", reason="the isolation uses resource limits (POSIX only)")
GiB = 1 << 30
MiB = 1 << 20

# ----------------------------------------------------------------------------------------------- file builders


def _npy_header(descr: str, shape: tuple, version=(1, 0)) -> bytes:
    buf = io.BytesIO()
    d = {"descr": descr, "fortran_order": False, "shape": shape}
    if version == (1, 0):
        np.lib.format.write_array_header_1_0(buf, d)
    else:
        np.lib.format.write_array_header_2_0(buf, d)
    return buf.getvalue()


def _object_npz(path: Path, payload: bytes, member: str = "boxes") -> Path:
    """An .npz whose member is an object array (shape (1,)) holding the raw pickle ``payload``, as np.save lays it out."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(member + ".npy", _npy_header("|O", (1,)) + payload)
    return path


class _Reduce:
    """Pickles as ``func(*args)``: how a hostile file asks the allow-listed callables for memory."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def _raw_deflate_zip(path: Path, member: str, head: bytes, zeros: int, declared: int | None = None) -> Path:
    """A zip whose one member is ``head`` + ``zeros`` zero bytes, deflated, written without materialising the zeros.

    Deflate blocks ended by a full flush are independent, so one compressed MiB of zeros is repeated. ``declared``
    lets the headers lie about the uncompressed size (default: the truth). Sizes stay below 4 GiB (no zip64).
    """
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = c.compress(head) + c.flush(zlib.Z_FULL_FLUSH)
    mib = bytes(MiB)
    block = c.compress(mib) + c.flush(zlib.Z_FULL_FLUSH)
    assert c.compress(mib) + c.flush(zlib.Z_FULL_FLUSH) == block  # independent blocks: repeatable
    tail = c.flush()
    assert zeros % MiB == 0
    crc = zlib.crc32(head)
    for _ in range(zeros // MiB):
        crc = zlib.crc32(mib, crc)
    data = first + block * (zeros // MiB) + tail
    usize = len(head) + zeros if declared is None else declared
    name = member.encode()
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(data), usize, len(name), 0) + name
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, crc, len(data), usize,
                          len(name), 0, 0, 0, 0, 0, 0) + name
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), len(local) + len(data), 0)
    path.write_bytes(local + data + central + end)
    return path


def _pickle_list_amplifier(n_lists: int, chars: int) -> bytes:
    """A pickle of ``[list(s)] * n_lists`` for one ``s`` of ``chars`` characters: each ``list(s)`` costs 8 bytes per
    character (a pointer), but repeating it costs the pickle 6 bytes (two memo references, TUPLE1, REDUCE)."""
    out = [b"\x80\x04", b"X" + struct.pack("<I", chars) + b"A" * chars, b"\x94",      # BINUNICODE s, MEMOIZE -> 0
           b"\x8c\x08builtins\x8c\x04list\x93\x94",                                   # STACK_GLOBAL list -> 1
           b"]("]                                                                       # EMPTY_LIST, MARK
    out += [b"h\x01h\x00\x85R"] * n_lists                                               # list(s), n_lists times
    out += [b"e."]                                                                      # APPENDS, STOP
    return b"".join(out)


def _pickle_str_of_list(refs: int, chars: int) -> bytes:
    """``str([s] * refs)``: a few bytes per reference, ``chars`` characters of output per reference."""
    out = [b"\x80\x04\x8c\x08builtins\x8c\x03str\x93",
           b"X" + struct.pack("<I", chars) + b"B" * chars, b"\x940", b"]("]   # MEMOIZE -> 0, POP
    out += [b"h\x00"] * refs
    out += [b"e\x85R."]
    return b"".join(out)


def _build(case: str, tmp: Path) -> tuple[str, Path, dict]:
    """(loader, path, extra environment) for one malicious case."""
    if case == "bytearray_3gib":   # the 556-byte file of the issue
        return "load_npz", _object_npz(tmp / "ba.npz", pickle.dumps(_Reduce(bytearray, (3 * GiB,)), protocol=2)), {}
    if case == "bytes_3gib":
        return "load_npz", _object_npz(tmp / "b.npz", pickle.dumps(_Reduce(bytes, (3 * GiB,)), protocol=2)), {}
    if case == "reconstruct_2gib":
        from numpy.core.multiarray import _reconstruct
        p = pickle.dumps(_Reduce(_reconstruct, (np.ndarray, (2 * GiB,), b"b")), protocol=2)
        return "load_npz", _object_npz(tmp / "rc.npz", p), {}
    if case == "ndarray_2gib":
        p = pickle.dumps(_Reduce(np.ndarray, ((GiB // 4,), np.dtype("f8"))), protocol=2)
        return "load_npz", _object_npz(tmp / "nd.npz", p), {}
    if case == "zero_stride_view":  # 8 bytes viewed as 2**28 float64s: a 2 GiB array that copies on first use
        p = pickle.dumps(_Reduce(np.ndarray, ((GiB // 4,), np.dtype("f8"), b"\0" * 8, 0, (0,))), protocol=2)
        return "load_npz", _object_npz(tmp / "zs.npz", p), {}
    if case == "binbytes8_declares_3gib":
        p = b"\x80\x04\x8e" + struct.pack("<Q", 3 * GiB) + b"x" * 16 + b"."
        return "load_npz", _object_npz(tmp / "bb.npz", p), {}
    if case == "frame_declares_3gib":
        path = tmp / "frame.pkl"
        path.write_bytes(b"\x80\x04\x95" + struct.pack("<Q", 3 * GiB) + b"N.")
        return "load_pickle", path, {}
    if case == "memo_index_2e28":
        path = tmp / "memo.pkl"
        path.write_bytes(b"\x80\x02Nr" + struct.pack("<I", 1 << 28) + b".")
        return "load_pickle", path, {}
    if case == "list_amplifier":
        # 3,000 x list(1 M chars) = 24 GB asked for by a 1 MB pickle; the limit is lowered so the refusal comes early
        return ("load_npz", _object_npz(tmp / "amp.npz", _pickle_list_amplifier(3000, MiB)),
                {"ANIME_MMD_MAX_INPUT_BYTES": str(64 * MiB)})
    if case == "str_of_list":
        return "load_npz", _object_npz(tmp / "str.npz", _pickle_str_of_list(20000, 100_000)), {}
    if case == "zip_bomb_3gib":   # 3 MB on disk, 3 GiB of zeros declared honestly in the zip headers
        return "load_npz", _raw_deflate_zip(tmp / "bomb.npz", "a.npy", _npy_header("|u1", (3 * GiB,)), 3 * GiB), {}
    if case == "zip_bomb_lying_header":   # the headers say 1,000 bytes, the data inflates to 256 MiB
        return ("load_npz", _raw_deflate_zip(tmp / "liar.npz", "a.npy", _npy_header("|u1", (256 * MiB,)), 256 * MiB,
                                             declared=1000), {})
    if case == "npy_header_shape_16gib":   # a 100-byte .npy whose header asks for 16 GiB
        path = tmp / "huge.npy"
        path.write_bytes(_npy_header("<f8", (2 * GiB,)) + b"\0" * 16)
        return "load_npy", path, {}
    if case == "npy_header_length_4gib":   # a version-2 header that says it is 4 GiB long
        path = tmp / "hdr.npy"
        path.write_bytes(b"\x93NUMPY\x02\x00" + struct.pack("<I", 0xFFFFFFF0) + b"{" * 64)
        return "load_npy", path, {}
    if case == "pose_zip_bomb":   # the same bomb under a pose file's member name, read by --from-npz
        path = _raw_deflate_zip(tmp / "pose.npz", "keypoints_2d.npy", _npy_header("<f4", (GiB // 4, 1, 3)), 3 * GiB)
        return "pose_load", path, {}
    if case == "keypoints_bytearray":   # the 556-byte file through --from-keypoints
        return ("load_keypoints",
                _object_npz(tmp / "kp.npz", pickle.dumps(_Reduce(bytearray, (3 * GiB,)), protocol=2)), {})
    raise AssertionError(case)


_RUNNER = r"""
import json, resource, sys, tracemalloc
from core import keypoints_io, pose_io, safe_npz
fn = {"load_npz": safe_npz.load_npz, "load_npy": safe_npz.load_npy, "load_pickle": safe_npz.load_pickle,
      "pose_load": pose_io.load, "load_keypoints": keypoints_io.load_keypoints}[sys.argv[1]]
tracemalloc.start()
try:
    fn(sys.argv[2])
    out = {"type": None}
except BaseException as e:
    out = {"type": type(e).__name__, "mro": [c.__name__ for c in type(e).__mro__], "message": str(e),
           "code": getattr(e, "code", None)}
out["peak"] = tracemalloc.get_traced_memory()[1]
# peak RSS of this process since exec: /proc's VmHWM where there is one (ru_maxrss keeps the peak of the forked
# parent across exec, so a test run whose pytest process has grown, e.g. by the in-process Blender tests, would
# be charged for it), else ru_maxrss
try:
    hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")]
    out["rss_kb"] = int(hwm[0].split()[1]) if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
except OSError:
    out["rss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps(out))
"""

RLIMIT_AS = 3 * GiB


def _limit_memory():  # runs in the child before exec
    import resource
    try:
        resource.setrlimit(resource.RLIMIT_AS, (RLIMIT_AS, RLIMIT_AS))
    except (ValueError, OSError):  # a platform without RLIMIT_AS (macOS refuses it): the tracemalloc bound still holds
        pass


def _run_isolated(loader: str, path: Path, env_extra: dict) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=str(REPO))
    env.pop("ANIME_MMD_MAX_INPUT_BYTES", None)
    env.update(env_extra)
    proc = subprocess.run([sys.executable, "-c", _RUNNER, loader, str(path)], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=120, preexec_fn=_limit_memory)
    assert proc.returncode == 0, f"the loader crashed (rc {proc.returncode}): {proc.stderr[-2000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


CASES = ["bytearray_3gib", "bytes_3gib", "reconstruct_2gib", "ndarray_2gib", "zero_stride_view",
         "binbytes8_declares_3gib", "frame_declares_3gib", "memo_index_2e28", "list_amplifier", "str_of_list",
         "zip_bomb_3gib", "zip_bomb_lying_header", "npy_header_shape_16gib", "npy_header_length_4gib",
         "pose_zip_bomb", "keypoints_bytearray"]
#: Cases refused because a size limit was reached (the message must name the limit and how to raise it). The others
#: are refused whatever the limit: bytes(n)/bytearray(n)/str(list), a length prefix or header declaring more data than
#: the file holds, an impossible memo index.
LIMIT_CASES = {"reconstruct_2gib", "ndarray_2gib", "zero_stride_view", "list_amplifier",
               "zip_bomb_3gib", "pose_zip_bomb"}


@_POSIX_ONLY
@pytest.mark.parametrize("case", CASES)
def test_malicious_file_is_refused_with_bounded_memory(case, tmp_path):
    loader, path, env = _build(case, tmp_path)
    assert path.stat().st_size < 4 * MiB  # every one of them is a small file
    out = _run_isolated(loader, path, env)
    assert out["type"] is not None, f"{case}: the file was accepted"
    assert "PipelineError" in out["mro"] and out["code"] == "bad_input", out
    msg = out["message"]
    assert path.name in msg and "\n" not in msg, msg
    if case in LIMIT_CASES:
        assert "limit" in msg and "ANIME_MMD_MAX_INPUT_BYTES" in msg, msg
    assert out["peak"] < 64 * MiB, f"{case}: traced peak {out['peak'] / MiB:.0f} MiB ({msg})"
    assert out["rss_kb"] < 600_000, f"{case}: max RSS {out['rss_kb'] / 1024:.0f} MB ({msg})"


# ----------------------------------------------------------------------------------------- real files still load


def test_real_keypoint_files_load_under_the_default_limit(shared_data):
    d2 = shared_data / "keypoints" / "lia_kim_dance" / "detectron2_raw.npz"
    d = safe_npz.load_npz(d2)
    assert d["boxes"].shape == (303, 2) and d["metadata"].item() == {"w": 1920, "h": 1080}
    e = safe_npz.load_npy(shared_data / "keypoints" / "lia_kim_dance" / "videopose3d_export.npy")
    assert e.shape == (303, 17, 3) and e.dtype == np.float32
    assert np.array_equal(e, np.load(shared_data / "keypoints" / "lia_kim_dance" / "videopose3d_export.npy"))


def test_a_ten_minute_60fps_pose_file_round_trips_under_the_default_limit(tmp_path):
    """The largest pose file the project writes for a 10-minute 60 fps video (36,000 frames, MediaPipe 33 joints, 3D
    and trajectory): about 27 MB of arrays, far under the default limit."""
    from core import skeletons
    t = 36_000
    rng = np.random.default_rng(0)
    poses = pose_io.PoseSequence(
        keypoints_2d=rng.random((t, 33, 3), dtype=np.float32), timestamps=np.arange(t) / 60.0,
        frame_indices=np.arange(t), detected=rng.random(t) > 0.1, fps=60.0, image_size=(1920, 1080),
        joint_names_2d=skeletons.MEDIAPIPE33, backend="mediapipe",
        joints_3d=rng.random((t, len(skeletons.CANONICAL), 3), dtype=np.float32), lifter="mediapipe",
        trajectory=rng.random((t, 3), dtype=np.float32), notes=["synthetic"])
    path = pose_io.save(tmp_path / "ten_minutes.npz", poses)
    raw = sum(i.file_size for i in zipfile.ZipFile(path).infolist())
    assert 20 * MiB < raw < safe_npz.DEFAULT_MAX_BYTES / 16
    back = pose_io.load(path)
    assert np.array_equal(back.keypoints_2d, poses.keypoints_2d) and np.array_equal(back.detected, poses.detected)
    assert np.array_equal(back.joints_3d, poses.joints_3d) and back.notes == ["synthetic"]


def test_the_limit_is_configurable_and_named_in_the_refusal(shared_data, monkeypatch):
    d2 = shared_data / "keypoints" / "lia_kim_dance" / "detectron2_raw.npz"
    with pytest.raises(safe_npz.LimitExceededError, match=r"detectron2_raw\.npz.*limit of 1,000 bytes") as e:
        safe_npz.load_npz(d2, max_bytes=1000)
    assert isinstance(e.value, PipelineError) and e.value.code == "bad_input" and isinstance(e.value, ValueError)
    monkeypatch.setenv("ANIME_MMD_MAX_INPUT_BYTES", "2000")
    assert safe_npz.default_max_bytes() == 2000
    with pytest.raises(safe_npz.LimitExceededError, match="limit of 2,000 bytes"):
        keypoints_io.load_keypoints(d2)
    monkeypatch.setenv("ANIME_MMD_MAX_INPUT_BYTES", "lots")
    with pytest.raises(PipelineError, match="ANIME_MMD_MAX_INPUT_BYTES"):
        safe_npz.default_max_bytes()


def test_pose_files_never_unpickle(tmp_path):
    """pose_io.load reads through safe_npz with pickles refused: an object array in a pose file is an error."""
    p = tmp_path / "objects.npz"
    np.savez(p, format_version=np.array(1), keypoints_2d=np.array([{"a": 1}], dtype=object))
    with pytest.raises(PipelineError, match=r"objects\.npz.*object array"):
        pose_io.load(p)


def test_only_stored_and_deflated_members_are_read(tmp_path):
    """bzip2 / lzma members inflate without an output bound inside zipfile, so they are refused (numpy writes
    neither)."""
    p = tmp_path / "bz.npz"
    buf = io.BytesIO()
    np.save(buf, np.arange(10))
    with zipfile.ZipFile(p, "w", compression=zipfile.ZIP_BZIP2) as zf:
        zf.writestr("a.npy", buf.getvalue())
    with pytest.raises(safe_npz.SafeLoadError, match=r"bz\.npz.*a\.npy.*compression"):
        safe_npz.load_npz(p)
