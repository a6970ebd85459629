"""core.worker.weights: verified download to a temporary name, lookup, install entry point (local server, no internet)."""
from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from core.worker import weights
from core.errors import PipelineError

NAME = "pretrained_h36m_detectron_coco.bin"
PAYLOAD = bytes(range(256)) * 5000  # 1.28 MB, several read blocks
SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture()
def server(tmp_path):
    """A tiny HTTP server on 127.0.0.1 serving tmp_path/srv."""
    root = tmp_path / "srv"
    root.mkdir()
    (root / NAME).write_bytes(PAYLOAD)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_registry_names_urls_and_checksum_policy():
    assert weights.WEIGHTS[NAME].url == "https://dl.fbaipublicfiles.com/video-pose-3d/pretrained_h36m_detectron_coco.bin"
    assert weights.WEIGHTS["pretrained_h36m_cpn.bin"].size == 67_889_963
    r101 = weights.WEIGHTS["keypoint_rcnn_R_101_FPN_3x.pkl"]
    assert r101.url.endswith("/COCO-Keypoints/keypoint_rcnn_R_101_FPN_3x/138363331/model_final_997cc7.pkl")
    assert set(weights.DETECTRON2_CONFIGS.values()) <= set(weights.WEIGHTS)
    # No checksum is published for any of them: none is invented.
    assert all(w.sha256 is None for w in weights.WEIGHTS.values())
    assert weights.WEIGHTS[NAME].licence == "CC BY-NC 4.0"


def test_download_over_http_verifies_and_reports_progress(server, tmp_path):
    dest = tmp_path / "weights"
    calls = []
    path = weights.download(NAME, dest, sha256=SHA, url=f"{server}/{NAME}", progress=lambda *a: calls.append(a))
    assert path == dest / NAME and path.read_bytes() == PAYLOAD
    assert _leftovers(dest) == [NAME]
    assert calls[0] == (f"download {NAME}", 0, len(PAYLOAD)) and calls[-1] == (f"download {NAME}", len(PAYLOAD),
                                                                                 len(PAYLOAD))
    # Present and verified: nothing fetched again (an unreachable URL would fail otherwise).
    assert weights.download(NAME, dest, sha256=SHA, url="http://127.0.0.1:9/nothing") == path


def test_checksum_mismatch_leaves_nothing_behind(server, tmp_path):
    dest = tmp_path / "weights"
    with pytest.raises(PipelineError, match="does not match") as e:
        weights.download(NAME, dest, sha256="0" * 64, url=f"{server}/{NAME}")
    assert e.value.code == "bad_input" and _leftovers(dest) == []


def test_no_checksum_means_no_download(tmp_path):
    with pytest.raises(PipelineError, match="no SHA-256 is published") as e:
        weights.download(NAME, tmp_path / "w", url="http://127.0.0.1:9/never-contacted")
    assert "--sha256" in e.value.message and "SHA256SUMS" in e.value.message
    with pytest.raises(PipelineError, match="not a SHA-256"):
        weights.download(NAME, tmp_path / "w", sha256="abc")


def test_recorded_sha256sums_file_and_file_url(tmp_path):
    src = tmp_path / "mirror" / NAME
    src.parent.mkdir()
    src.write_bytes(PAYLOAD)
    dest = tmp_path / "weights"
    dest.mkdir()
    (dest / "SHA256SUMS").write_text(f"# recorded by the user\n{SHA.upper()}  *{NAME}\n")
    assert weights.read_sha256sums(dest) == {NAME: SHA}
    path = weights.download(NAME, dest, url=src.as_uri())
    assert path.read_bytes() == PAYLOAD
    (dest / "SHA256SUMS").write_text("nonsense\n")
    with pytest.raises(PipelineError, match="SHA256SUMS:1"):
        weights.read_sha256sums(dest)


def test_existing_different_file_is_not_overwritten(server, tmp_path):
    dest = tmp_path / "weights"
    dest.mkdir()
    (dest / NAME).write_bytes(b"the user's own file")
    with pytest.raises(PipelineError, match="exists") as e:
        weights.download(NAME, dest, sha256=SHA, url=f"{server}/{NAME}")
    assert e.value.code == "exists" and (dest / NAME).read_bytes() == b"the user's own file"
    weights.download(NAME, dest, sha256=SHA, url=f"{server}/{NAME}", overwrite=True)
    assert (dest / NAME).read_bytes() == PAYLOAD and _leftovers(dest) == [NAME]


def test_size_mismatch_and_unreachable_server(server, tmp_path):
    dest = tmp_path / "weights"
    cpn = "pretrained_h36m_cpn.bin"  # recorded size 67,889,963 bytes: the small payload is refused
    with pytest.raises(PipelineError, match="expected 67889963"):
        weights.download(cpn, dest, sha256=SHA, url=f"{server}/{NAME}")
    with pytest.raises(PipelineError, match="could not download") as e:
        weights.download(NAME, dest, sha256=SHA, url=f"{server}/missing.bin")
    assert e.value.code == "missing_dependency" and _leftovers(dest) == []
    with pytest.raises(PipelineError, match="unknown weights"):
        weights.download("nope.bin", dest, sha256=SHA)


def test_find_weights_folders_env_and_aliases(tmp_path, monkeypatch):
    monkeypatch.setenv("ANIME_MMD_WEIGHTS_DIR", str(tmp_path / "cache"))
    assert weights.default_weights_dir() == tmp_path / "cache"
    assert weights.find_weights(NAME) is None
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / NAME).write_bytes(b"x")
    assert weights.find_weights(NAME) == tmp_path / "cache" / NAME
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / NAME).write_bytes(b"y")
    assert weights.find_weights(NAME, mine) == mine / NAME  # the user's folder first
    (mine / "model_final_997cc7.pkl").write_bytes(b"z")     # detectron2's own file name
    assert weights.find_weights("keypoint_rcnn_R_101_FPN_3x.pkl", mine) == mine / "model_final_997cc7.pkl"


def test_install_all_entry_point(server, tmp_path, monkeypatch):
    logs = []
    dest = tmp_path / "weights"
    # Without checksums nothing is fetched and the exit code says so.
    rc = weights.install_all(dest, names=[NAME], log=logs.append)
    assert rc == 1 and "no SHA-256" in logs[0] and _leftovers(dest) == []
    # With the official URL swapped for the local server and a user-supplied checksum it installs.
    monkeypatch.setitem(weights.WEIGHTS, NAME, weights.WeightsFile(
        NAME, f"{server}/{NAME}", None, None, "CC BY-NC 4.0", "test"))
    logs.clear()
    assert weights.install_all(dest, names=[NAME], sha256={NAME: SHA}, log=logs.append) == 0
    assert (dest / NAME).read_bytes() == PAYLOAD and "ok" in logs[0]
