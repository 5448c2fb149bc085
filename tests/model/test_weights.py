"""Finding, verifying and downloading the model file, against a real HTTP server on 127.0.0.1.

Never downloads the real model: every test passes its own URL and expected checksums.
"""
from __future__ import annotations

import hashlib
import http.server
import os
import socket
import threading

import pytest

from ssd_resnet34.model import weights
from ssd_resnet34._files import cache_dir
from ssd_resnet34.model.weights import (
    MODEL_ENV_VAR,
    OFFICIAL_FILENAME,
    OFFICIAL_URL,
    ChecksumError,
    DownloadError,
    download_file,
    resolve_model_path,
    verify_file,
)

PAYLOAD = os.urandom(300_000)  # several chunks of 64 KiB
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
TIMEOUT = 5


class _Handler(http.server.BaseHTTPRequestHandler):
    release: threading.Event

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        if self.path == "/model.onnx":
            self._send(PAYLOAD, len(PAYLOAD))
        elif self.path == "/no-length.onnx":
            self._send(PAYLOAD, None)
        elif self.path == "/short-no-length.onnx":  # connection closed early, no Content-Length
            self._send(PAYLOAD[:1000], None)
        elif self.path == "/lying.onnx":  # Content-Length says more than is sent, then closes
            self._send(PAYLOAD[: len(PAYLOAD) // 2], len(PAYLOAD))
        elif self.path == "/slow.onnx":  # headers, then silence until the test ends
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.flush()
            self.release.wait(30)
        else:
            self.send_error(404, "Not Found")

    def _send(self, body: bytes, length: int | None):
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        self.close_connection = True


@pytest.fixture(scope="module")
def server():
    """Base URL of a threaded HTTP server on 127.0.0.1 (port chosen by the OS)."""
    release = threading.Event()
    handler = type("Handler", (_Handler,), {"release": release})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    release.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    """An empty cache folder and no $SSD_RESNET34_MODEL."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("SSD_RESNET34_CACHE_DIR", str(folder))
    monkeypatch.delenv(MODEL_ENV_VAR, raising=False)
    return folder


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/resnet34-ssd1200.onnx"  # nothing listens there now


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


def test_cache_dir_env_and_default(tmp_path, monkeypatch):
    monkeypatch.setenv("SSD_RESNET34_CACHE_DIR", str(tmp_path / "a" / "b"))
    assert cache_dir() == tmp_path / "a" / "b" and cache_dir().is_dir()
    monkeypatch.setenv("SSD_RESNET34_CACHE_DIR", "")
    assert cache_dir().name == "ssd-resnet34"


def test_download_success(server, tmp_path):
    dest = tmp_path / "sub" / "model.onnx"
    got = download_file(f"{server}/model.onnx", dest, expected_size=len(PAYLOAD), expected_sha256=PAYLOAD_SHA,
                        progress=False, timeout=TIMEOUT, chunk_size=1 << 16)
    assert got == dest and dest.read_bytes() == PAYLOAD
    assert _leftovers(dest.parent) == []
    # no Content-Length and no expectations: still streamed completely
    other = download_file(f"{server}/no-length.onnx", tmp_path / "x.onnx", progress=True, timeout=TIMEOUT)
    assert other.read_bytes() == PAYLOAD


def test_download_wrong_hash_leaves_nothing(server, tmp_path):
    dest = tmp_path / "model.onnx"
    with pytest.raises(ChecksumError, match=f"sha256 {PAYLOAD_SHA}, expected {'0' * 64}"):
        download_file(f"{server}/model.onnx", dest, expected_sha256="0" * 64, progress=False, timeout=TIMEOUT)
    assert not dest.exists() and _leftovers(tmp_path) == []


def test_download_wrong_size(server, tmp_path):
    with pytest.raises(ChecksumError, match="announces 300,000 bytes, expected 12"):
        download_file(f"{server}/model.onnx", tmp_path / "m.onnx", expected_size=12, progress=False, timeout=TIMEOUT)
    with pytest.raises(ChecksumError, match="size 1,000 bytes, expected 300,000"):
        download_file(f"{server}/short-no-length.onnx", tmp_path / "m.onnx", expected_size=len(PAYLOAD),
                      progress=False, timeout=TIMEOUT)
    assert list(tmp_path.iterdir()) == []


def test_truncated_transfer_keeps_the_old_file(server, tmp_path):
    dest = tmp_path / "model.onnx"
    dest.write_bytes(b"old")
    with pytest.raises(DownloadError, match="truncated transfer: got 150,000 of 300,000 bytes") as info:
        download_file(f"{server}/lying.onnx", dest, expected_size=len(PAYLOAD), expected_sha256=PAYLOAD_SHA,
                      progress=False, timeout=TIMEOUT)
    assert isinstance(info.value, OSError)
    assert dest.read_bytes() == b"old" and _leftovers(tmp_path) == []


def test_http_404(server, tmp_path):
    with pytest.raises(DownloadError, match=r"could not download .*/missing.onnx: HTTP error 404") as info:
        download_file(f"{server}/missing.onnx", tmp_path / "m.onnx", progress=False, timeout=TIMEOUT)
    assert OFFICIAL_URL in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_no_network_message_says_where_to_put_the_file(tmp_path):
    dest = tmp_path / OFFICIAL_FILENAME
    with pytest.raises(DownloadError) as info:
        download_file(_closed_port_url(), dest, progress=False, timeout=TIMEOUT)
    text = str(info.value)
    assert "no network connection" in text and "refused" in text.lower()
    assert OFFICIAL_URL in text and str(dest) in text and MODEL_ENV_VAR in text
    assert list(tmp_path.iterdir()) == []


def test_stalled_server_times_out(server, tmp_path):
    with pytest.raises(DownloadError, match=r"timed out after 0.5 s"):
        download_file(f"{server}/slow.onnx", tmp_path / "m.onnx", progress=False, timeout=0.5)
    assert list(tmp_path.iterdir()) == []


def _fake(path, data=b"fake model bytes"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


FAKE_SHA = hashlib.sha256(b"fake model bytes").hexdigest()
FAKE = {"expected_size": len(b"fake model bytes"), "expected_sha256": FAKE_SHA}


def test_resolution_order(tmp_path, cache, monkeypatch):
    arg, env = _fake(tmp_path / "arg.onnx"), _fake(tmp_path / "env.onnx")
    cached = _fake(cache / OFFICIAL_FILENAME)
    monkeypatch.setenv(MODEL_ENV_VAR, str(env))
    assert resolve_model_path(arg, download=False, **FAKE) == arg
    assert resolve_model_path(str(arg), download=False, **FAKE) == arg
    assert resolve_model_path(download=False, **FAKE) == env
    monkeypatch.setenv(MODEL_ENV_VAR, "")
    assert resolve_model_path(download=False, **FAKE) == cached
    monkeypatch.delenv(MODEL_ENV_VAR)
    assert resolve_model_path(download=False, **FAKE) == cached


def test_missing_files_are_named(tmp_path, cache, monkeypatch):
    _fake(cache / OFFICIAL_FILENAME)
    monkeypatch.setenv(MODEL_ENV_VAR, str(tmp_path / "env.onnx"))
    with pytest.raises(FileNotFoundError, match=r"not found: .*nope.onnx \(the model_path argument\)"):
        resolve_model_path(tmp_path / "nope.onnx", **FAKE)  # no fallback to env or cache
    with pytest.raises(FileNotFoundError, match=r"not found: .*env.onnx \(\$SSD_RESNET34_MODEL\)"):
        resolve_model_path(**FAKE)


def test_no_cached_copy_and_no_download(cache):
    with pytest.raises(FileNotFoundError) as info:
        resolve_model_path(download=False, **FAKE)
    text = str(info.value)
    assert str(cache / OFFICIAL_FILENAME) in text and MODEL_ENV_VAR in text and OFFICIAL_URL in text


def test_checksums_of_found_files(tmp_path, cache):
    path = _fake(tmp_path / "m.onnx")
    with pytest.raises(ChecksumError, match=f"sha256 {FAKE_SHA}, expected {'a' * 64}.*verify=False"):
        resolve_model_path(path, expected_size=FAKE["expected_size"], expected_sha256="a" * 64)
    with pytest.raises(ChecksumError, match="size 16 bytes, expected 17"):
        resolve_model_path(path, expected_size=17, expected_sha256=FAKE_SHA)
    assert resolve_model_path(path, verify=False) == path  # any model, unchecked
    # the real constants are what an unverified call would compare against
    with pytest.raises(ChecksumError, match="expected 80,363,696"):
        resolve_model_path(path)


def test_verified_file_is_not_rehashed_until_its_identity_changes(tmp_path, cache):
    path = _fake(tmp_path / "m.onnx")
    verify_file(path, **FAKE)
    stamps = list((cache / "verified").glob("*.json"))
    assert len(stamps) == 1 and FAKE_SHA in stamps[0].read_text()
    recorded = stamps[0].read_text()
    assert verify_file(path, **FAKE) == path and stamps[0].read_text() == recorded  # trusted, not rehashed
    # Issue 15, item 5: rewritten in place, same size, mtime restored: the ctime moved, so the
    # file is hashed again and the change is caught.
    st = path.stat()
    with open(path, "r+b") as f:
        f.write(b"FAKE MODEL BYTES"[: st.st_size])
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
    with pytest.raises(ChecksumError, match="sha256"):
        verify_file(path, **FAKE)


def test_resolve_downloads_into_the_cache_once(server, cache):
    expect = {"expected_size": len(PAYLOAD), "expected_sha256": PAYLOAD_SHA}
    path = resolve_model_path(url=f"{server}/model.onnx", progress=False, timeout=TIMEOUT, **expect)
    assert path == cache / OFFICIAL_FILENAME == weights.cached_model_path()
    assert path.read_bytes() == PAYLOAD
    assert len(list((cache / "verified").glob("*.json"))) == 1  # stamped without a second hash
    # found in the cache now: the (unreachable) URL is not used
    assert resolve_model_path(url=_closed_port_url(), timeout=TIMEOUT, **expect) == path


def test_resolve_without_network(cache):
    with pytest.raises(DownloadError) as info:
        resolve_model_path(url=_closed_port_url(), progress=False, timeout=TIMEOUT, **FAKE)
    text = str(info.value)
    assert str(cache / OFFICIAL_FILENAME) in text and MODEL_ENV_VAR in text and OFFICIAL_URL in text
    assert not (cache / OFFICIAL_FILENAME).exists()
