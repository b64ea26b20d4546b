"""An on-disk cache for built artifacts (ONNX exports, TensorRT engines), keyed by a
content hash of everything that determines them, so a suite builds each one once.

Location: $GPUBENCH_CACHE_DIR, else $XDG_CACHE_HOME/gpubench, else ~/.cache/gpubench.
Each entry is `<kind>/<key><suffix>` plus `<key>.json` (what it was built from and the
artifact's sha256). Both are written atomically (temp file + rename), the data first, so
an entry is visible only when complete; a hit is re-hashed, so a damaged file is a miss.
A cache that cannot be written (read-only, full disk) is not an error: the caller keeps
the artifact in memory and records the returned reason."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

from gpubench.atomic_io import write_bytes_atomic

ENV_VAR = "GPUBENCH_CACHE_DIR"
_CHUNK_BYTES = 1 << 20


def cache_root() -> Path:
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "gpubench"


def content_key(facts: Mapping[str, Any]) -> str:
    """sha256 of the facts as canonical JSON (sorted keys): equal facts, equal key."""
    text = json.dumps(dict(facts), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ArtifactCache:
    def __init__(self, kind: str, suffix: str, root: Optional[Path] = None) -> None:
        self.folder = (root or cache_root()) / kind
        self.suffix = suffix

    def data_path(self, key: str) -> Path:
        return self.folder / f"{key}{self.suffix}"

    def meta_path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def lookup(self, key: str) -> Optional[Tuple[Path, Dict[str, Any]]]:
        """(artifact path, metadata) when a complete, undamaged entry exists."""
        path, meta_path = self.data_path(key), self.meta_path(key)
        try:
            meta = json.loads(meta_path.read_text())
            if not isinstance(meta, dict) or sha256_file(path) != meta.get("sha256"):
                return None
        except (OSError, ValueError):
            return None
        return path, meta

    def store(self, key: str, data: bytes, meta: Mapping[str, Any]) -> Tuple[Optional[Path], str]:
        """Writes an entry. Returns (path, "stored") or (None, why it was not cached)."""
        path = self.data_path(key)
        record = {**meta, "sha256": sha256_bytes(data), "bytes": len(data)}
        wrote_data = False
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(path, data)
            wrote_data = True
            write_bytes_atomic(self.meta_path(key),
                               (json.dumps(record, indent=2, sort_keys=True, default=str) + "\n").encode())
        except OSError as exc:
            if wrote_data:  # an artifact without its metadata is never a hit: don't keep it
                try:
                    path.unlink()
                except OSError:
                    pass
            return None, f"not cached: cannot write {self.folder}: {exc.strerror or exc}"
        return path, "stored"
