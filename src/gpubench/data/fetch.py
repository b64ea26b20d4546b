"""Downloading a dataset into the data folder, checked and all-or-nothing.

Each file is tried on each mirror in turn, streamed in chunks and hashed as it comes.
Downloads land in a staging folder inside the data folder and are moved into place
only once every file is verified, so a failure (a 404, a cut connection, a checksum
mismatch, Ctrl-C) never leaves a partial file, a staging folder or a new empty folder.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Union

from gpubench.data import mnist
from gpubench.data.idx import DataError

MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "https://storage.googleapis.com/cvdf-datasets/mnist/")
MIRRORS_ENV = "GPUBENCH_MNIST_MIRRORS"  # comma-separated; for proxies and tests
DATASETS = ("mnist",)
CHUNK_BYTES = 1 << 16

Progress = Optional[Callable[[str], None]]


class _MirrorFailed(Exception):
    """One mirror could not deliver one file; the message says how, in a few words."""


def check_dataset(name: str) -> None:
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r} (valid: {', '.join(DATASETS)})")


def url_problem(url: str) -> Optional[str]:
    """What is wrong with a mirror's base URL (None: nothing): an http(s) URL with a
    host, or a file: URL with a path, without spaces or control characters."""
    from urllib.parse import urlsplit

    if not url or any(c.isspace() or ord(c) < 32 for c in url):
        return "expected a URL without spaces"
    parts = urlsplit(url)
    if parts.scheme in ("http", "https"):
        return None if parts.hostname else "expected a host after the scheme"
    if parts.scheme == "file":
        return None if parts.path else "expected a path after file://"
    return "expected an http://, https:// or file:// URL"


def mirrors_to_use(mirrors: Optional[Sequence[str]] = None) -> List[str]:
    """`mirrors`, else $GPUBENCH_MNIST_MIRRORS, else MNIST_MIRRORS; DataError naming the
    first that is not a URL, before anything is fetched."""
    where = "--mirror"
    if not mirrors:
        env = os.environ.get(MIRRORS_ENV, "")
        mirrors = [m.strip() for m in env.split(",") if m.strip()] or MNIST_MIRRORS
        where = f"${MIRRORS_ENV}"
    for url in mirrors:
        problem = url_problem(url)
        if problem:
            raise DataError(f"{where} {url!r}: {problem}")
    return [m if m.endswith("/") else m + "/" for m in mirrors]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _is_good(path: Path, expected: mnist.Expected) -> bool:
    try:
        return (path.is_file() and path.stat().st_size == expected.size_bytes
                and sha256_of(path) == expected.sha256)
    except OSError:
        return False


def _short(text: object) -> str:
    return " ".join(str(text).split())


def _download(url: str, dest: Path, expected: mnist.Expected, timeout_s: float) -> None:
    """Streams `url` into `dest`; _MirrorFailed unless it delivers exactly the expected
    bytes."""
    import http.client
    import urllib.error
    import urllib.request

    digest, got_bytes = hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp, open(dest, "wb") as f:
            length = resp.headers.get("Content-Length")
            if length is not None and length.strip().isdigit() \
                    and int(length) != expected.size_bytes:
                raise _MirrorFailed(f"size {int(length):,} bytes, expected "
                                    f"{expected.size_bytes:,}")
            while True:
                chunk = resp.read(CHUNK_BYTES)
                if not chunk:
                    break
                got_bytes += len(chunk)
                if got_bytes > expected.size_bytes:
                    raise _MirrorFailed(f"more than the expected {expected.size_bytes:,} bytes")
                digest.update(chunk)
                f.write(chunk)
    except urllib.error.HTTPError as exc:
        raise _MirrorFailed(f"HTTP {exc.code} {_short(exc.reason)}".rstrip()) from None
    except urllib.error.URLError as exc:  # DNS, refused, TLS: before any response
        raise _MirrorFailed(f"cannot connect ({_short(exc.reason)})") from None
    except http.client.IncompleteRead as exc:
        got_bytes += len(exc.partial)
        raise _MirrorFailed(f"cut short after {got_bytes:,} of {expected.size_bytes:,} "
                            f"bytes") from None
    except TimeoutError:
        raise _MirrorFailed(f"no data for {timeout_s:g} s (timed out)") from None
    except (OSError, http.client.HTTPException) as exc:
        raise _MirrorFailed(f"{type(exc).__name__}: {_short(exc)}") from None
    if got_bytes != expected.size_bytes:
        raise _MirrorFailed(f"cut short after {got_bytes:,} of {expected.size_bytes:,} bytes")
    got = digest.hexdigest()
    if got != expected.sha256:
        raise _MirrorFailed(f"SHA-256 mismatch (got {got[:12]}…, expected "
                            f"{expected.sha256[:12]}…)")


def _new_dirs(folder: Path) -> List[Path]:
    """The folders (innermost first) that making `folder` would create."""
    return [p for p in (folder, *folder.parents) if not p.exists()]


def _remove_empty(folders: List[Path]) -> None:
    for folder in folders:  # innermost first; stops at one that is not empty
        try:
            folder.rmdir()
        except OSError:
            return


def fetch_dataset(name: str, data_dir: Optional[Union[str, Path]] = None,
                  mirrors: Optional[Sequence[str]] = None,
                  progress: Progress = None, timeout_s: float = 30.0) -> Path:
    """Downloads dataset `name` ("mnist") into mnist_folder(data_dir), keeping files
    already there with the right SHA-256; returns that folder. DataError (one line:
    the file and what each mirror did) when a file cannot be had; then nothing in the
    data folder has changed."""
    check_dataset(name)
    urls_base = mirrors_to_use(mirrors)
    root, target = mnist.data_root(data_dir), mnist.mnist_folder(data_dir)
    say = progress or (lambda line: None)
    created = _new_dirs(root)  # removed again (if still empty) when fetching fails
    try:
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".fetch-{name}-", dir=root))
    except OSError as exc:
        _remove_empty(created)
        raise DataError(f"cannot write to {root}: {_short(exc.strerror or exc)}") from None
    try:
        staged = []
        for file_name, expected in mnist.MNIST_FILES.items():
            if _is_good(target / file_name, expected):
                say(f"{file_name}: already in {target}, SHA-256 OK")
                continue
            failures = []
            for base in urls_base:
                url = base + file_name
                say(f"{file_name}: downloading {url} ({expected.size_bytes:,} bytes)")
                try:
                    _download(url, staging / file_name, expected, timeout_s)
                except _MirrorFailed as exc:
                    failures.append(f"{url}: {exc}")
                    say(f"{file_name}: {url}: {exc}")
                    continue
                staged.append(file_name)
                break
            else:
                raise DataError(f"{file_name}: " + "; ".join(failures)
                                + f" (nothing changed in {root})")
        new_target = _new_dirs(target)
        try:
            target.mkdir(parents=True, exist_ok=True)
            for file_name in staged:
                os.replace(staging / file_name, target / file_name)
        except OSError as exc:
            for file_name in staged:  # those moved already are verified: keep them
                (staging / file_name).unlink(missing_ok=True)
            _remove_empty(new_target)
            raise DataError(f"cannot write to {target}: {_short(exc.strerror or exc)}") from None
        if staged:
            say(f"{len(staged)} file(s) verified (SHA-256) and moved into {target}")
        return target
    except BaseException:  # Ctrl-C too: staging goes (finally), then new empty folders
        shutil.rmtree(staging, ignore_errors=True)
        _remove_empty(created)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # on success, only the empty folder
