"""The downloader against a local HTTP server: small IDX .gz files stand in for MNIST
(their sizes and SHA-256 patched into MNIST_FILES), and each mirror path can answer
well, 404, with corrupt bytes, or cut the body short. Every failure must be one line,
exit 2, and leave the cache exactly as it was."""

from __future__ import annotations

import hashlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

from conftest import run_cli_here
from gpubench.data import mnist
from gpubench.data.fetch import MIRRORS_ENV
from gpubench.data.idx import write_idx
from gpubench.data.mnist import MNIST_FILES, Expected, load_mnist

NAMES = list(MNIST_FILES)  # the four .gz names, in the order they are fetched
IMAGES = "train-images-idx3-ubyte.gz"


def make_files(folder: Path) -> Dict[str, bytes]:
    """Small, valid MNIST-shaped gz files: name -> bytes."""
    rng = np.random.default_rng(1)
    folder.mkdir()
    for prefix, n in (("train", 12), ("t10k", 6)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz",
                  rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), compress=True)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz",
                  rng.integers(0, 10, n, dtype=np.uint8), compress=True)
    return {name: (folder / name).read_bytes() for name in NAMES}


class Mirrors:
    """One server; `behave[(mirror, name)]` is "ok" (the default), "404", "corrupt"
    (same size, one byte changed) or "cut" (full Content-Length, half the body)."""

    def __init__(self) -> None:
        self.files: Dict[str, bytes] = {}
        self.behave: Dict[tuple, str] = {}
        self.requests: List[str] = []
        mirrors = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                mirrors.requests.append(self.path)
                _, mirror, name = self.path.split("/", 2)
                how = mirrors.behave.get((mirror, name), "ok")
                body = mirrors.files.get(name)
                if body is None or how == "404":
                    self.send_error(404)
                    return
                if how == "corrupt":
                    body = body[:-9] + bytes([body[-9] ^ 0xFF]) + body[-8:]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if how == "cut" else body)
                self.close_connection = True

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def url(self, mirror: str) -> str:
        return f"{self.base}/{mirror}/"


@pytest.fixture(scope="module")
def server():
    mirrors = Mirrors()
    thread = threading.Thread(target=mirrors.server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield mirrors
    mirrors.server.shutdown()
    mirrors.server.server_close()


@pytest.fixture
def mirrors(server, tmp_path, monkeypatch):
    """The server, reset, serving fresh test files whose checksums MNIST_FILES now holds."""
    server.files = make_files(tmp_path / "served")
    server.behave, server.requests = {}, []
    for name, body in server.files.items():
        monkeypatch.setitem(MNIST_FILES, name, Expected(len(body), hashlib.sha256(body).hexdigest()))
    for var in (MIRRORS_ENV, mnist.DATA_DIR_ENV):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1")  # a user's http_proxy must not catch these
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    return server


def fetch(cache: Path, *mirror_urls: str, env_extra=None):
    args = ["data", "fetch", "mnist", "--data-dir", str(cache)]
    for url in mirror_urls:
        args += ["--mirror", url]
    return run_cli_here(*args, env_extra=env_extra)


def error_line(done) -> str:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stdout == ""
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("gpubench: error: ")]
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


def tree(folder: Path) -> List[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_fetch_lands_verified_files_and_a_second_fetch_downloads_nothing(mirrors, tmp_path):
    cache = tmp_path / "cache"
    done = fetch(cache, mirrors.url("a"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(cache / "mnist")
    assert tree(cache) == ["mnist"] + sorted(f"mnist/{n}" for n in NAMES)  # no staging left
    for name in NAMES:
        assert (cache / "mnist" / name).read_bytes() == mirrors.files[name]
    assert sorted(mirrors.requests) == sorted(f"/a/{n}" for n in NAMES)
    assert "verified (SHA-256)" in done.stderr
    sets = load_mnist(cache)
    assert sets.train_x.shape == (12, 1, 28, 28) and sets.test_y.shape == (6,)

    again = fetch(cache, mirrors.url("a"))
    assert again.returncode == 0 and again.stdout.strip() == str(cache / "mnist")
    assert len(mirrors.requests) == 4  # nothing downloaded again
    assert again.stderr.count("SHA-256 OK") == 4


def test_checksum_mismatch_fails_and_leaves_nothing(mirrors, tmp_path):
    cache = tmp_path / "cache"  # does not exist yet: must not exist afterwards
    mirrors.behave[("a", "t10k-images-idx3-ubyte.gz")] = "corrupt"
    line = error_line(fetch(cache, mirrors.url("a")))
    expected = MNIST_FILES["t10k-images-idx3-ubyte.gz"].sha256
    assert line.startswith("gpubench: error: t10k-images-idx3-ubyte.gz: "
                           f"{mirrors.url('a')}t10k-images-idx3-ubyte.gz: SHA-256 mismatch (got ")
    assert f"expected {expected[:12]}…)" in line
    assert not cache.exists()


def test_cut_download_fails_and_leaves_an_existing_cache_as_it_was(mirrors, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "other.txt").write_text("kept")
    mirrors.behave[("a", IMAGES)] = "cut"
    line = error_line(fetch(cache, mirrors.url("a")))
    size = MNIST_FILES[IMAGES].size_bytes
    assert f"{IMAGES}: {mirrors.url('a')}{IMAGES}: cut short after {size // 2:,} of {size:,} bytes" \
        in line
    assert tree(cache) == ["other.txt"]  # no mnist/, no staging folder, no partial file


def test_404_on_the_first_mirror_then_the_second_serves(mirrors, tmp_path):
    cache = tmp_path / "cache"
    mirrors.behave[("a", IMAGES)] = "404"
    done = fetch(cache, mirrors.url("a"), mirrors.url("b"))
    assert done.returncode == 0, done.stderr
    assert (cache / "mnist" / IMAGES).read_bytes() == mirrors.files[IMAGES]
    assert mirrors.requests[:2] == [f"/a/{IMAGES}", f"/b/{IMAGES}"]
    assert sorted(mirrors.requests[2:]) == sorted(f"/a/{n}" for n in NAMES[1:])
    assert f"{mirrors.url('a')}{IMAGES}: HTTP 404" in done.stderr  # a progress line


def test_every_mirror_failing_is_one_line_naming_each(mirrors, tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/mnist/"
    mirrors.behave[("a", IMAGES)] = "404"
    mirrors.behave[("b", IMAGES)] = "corrupt"
    cache = tmp_path / "cache"
    # mirrors from the environment variable, as a user behind a proxy sets them
    done = run_cli_here("data", "fetch", "mnist", "--data-dir", str(cache), env_extra={
        MIRRORS_ENV: f"{mirrors.url('a')}, {mirrors.url('b')},{dead}"})
    line = error_line(done)
    a, b = line.index(f"{mirrors.url('a')}{IMAGES}: HTTP 404"), \
        line.index(f"{mirrors.url('b')}{IMAGES}: SHA-256 mismatch")
    c = line.index(f"{dead}{IMAGES}: cannot connect (")
    assert a < b < c and line.count(IMAGES) == 4
    assert not cache.exists()


def test_good_files_already_there_are_kept_when_another_fails(mirrors, tmp_path):
    target = tmp_path / "cache" / "mnist"
    target.mkdir(parents=True)
    keep = ["train-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    for name in keep:
        (target / name).write_bytes(mirrors.files[name])
    stat_before = {name: (target / name).stat() for name in keep}
    mirrors.behave[("a", "t10k-images-idx3-ubyte.gz")] = "404"
    line = error_line(fetch(tmp_path / "cache", mirrors.url("a")))
    assert "t10k-images-idx3-ubyte.gz" in line and "HTTP 404" in line
    assert tree(tmp_path / "cache") == ["mnist"] + sorted(f"mnist/{n}" for n in keep)
    for name in keep:
        st = (target / name).stat()
        assert (st.st_ino, st.st_mtime_ns) == (stat_before[name].st_ino, stat_before[name].st_mtime_ns)
    assert not any(r.endswith(tuple(keep)) for r in mirrors.requests)  # not downloaded again


def test_a_bad_file_already_there_is_replaced(mirrors, tmp_path):
    target = tmp_path / "cache" / "mnist"
    target.mkdir(parents=True)
    (target / IMAGES).write_bytes(b"not mnist")
    done = fetch(tmp_path / "cache", mirrors.url("a"))
    assert done.returncode == 0, done.stderr
    assert (target / IMAGES).read_bytes() == mirrors.files[IMAGES]
    assert f"/a/{IMAGES}" in mirrors.requests


def test_a_content_length_other_than_the_known_size_fails(mirrors, tmp_path, monkeypatch):
    size = MNIST_FILES[IMAGES].size_bytes
    monkeypatch.setitem(MNIST_FILES, IMAGES, MNIST_FILES[IMAGES]._replace(size_bytes=size + 1))
    line = error_line(fetch(tmp_path / "cache", mirrors.url("a")))
    assert f"{IMAGES}: size {size:,} bytes, expected {size + 1:,}" in line


def test_unknown_dataset_lists_the_valid_ones(mirrors, tmp_path):
    line = error_line(run_cli_here("data", "fetch", "cifar10", "--data-dir", str(tmp_path / "c")))
    assert line == "gpubench: error: unknown dataset 'cifar10' (valid: mnist)"
    assert mirrors.requests == [] and not (tmp_path / "c").exists()
