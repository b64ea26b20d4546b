"""MNIST from its four IDX files, each found as NAME or NAME.gz in one folder.

Loading checks shapes, counts and label range, never checksums: a user's own folder
(decompressed files, a subset) is legitimate. The fetcher (data/fetch.py) is what
checks the official files' sizes and SHA-256 against MNIST_FILES.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Dict, NamedTuple, Optional, Tuple, Union

import numpy as np

from gpubench.data.idx import DataError, read_idx

DATA_DIR_ENV = "GPUBENCH_DATA_DIR"
TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"
MNIST_NAMES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)
IMAGE_HW = (28, 28)
NUM_CLASSES = 10
HOW_TO_GET = ("run `gpubench data fetch mnist`, or pass --data-dir FOLDER holding its "
              "four IDX files")


class Expected(NamedTuple):
    size_bytes: int
    sha256: str


# The official gz files (one dict, so tests can swap in their own files' checksums).
MNIST_FILES: Dict[str, Expected] = {
    "train-images-idx3-ubyte.gz": Expected(
        9912422, "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
    "train-labels-idx1-ubyte.gz": Expected(
        28881, "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
    "t10k-images-idx3-ubyte.gz": Expected(
        1648877, "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
    "t10k-labels-idx1-ubyte.gz": Expected(
        4542, "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
}

PathLike = Union[str, Path]


def default_data_dir() -> Path:
    """$GPUBENCH_DATA_DIR, else ~/.cache/gpubench/data."""
    env = os.environ.get(DATA_DIR_ENV, "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "gpubench" / "data"


def data_root(data_dir: Optional[PathLike] = None) -> Path:
    """The data folder itself: `data_dir`, else default_data_dir()."""
    return Path(data_dir).expanduser() if data_dir else default_data_dir()


def find_file(folder: Path, name: str) -> Optional[Path]:
    """folder/NAME, else folder/NAME.gz, else None. The decompressed file first: it is
    what a user who unpacked the set has, and it reads faster."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def mnist_folder(data_dir: Optional[PathLike] = None) -> Path:
    """data_dir itself if it holds the four files, else data_dir/"mnist"; without a
    data_dir, default_data_dir()/"mnist"."""
    if data_dir:
        given = Path(data_dir).expanduser()
        if all(find_file(given, name) for name in MNIST_NAMES):
            return given
        return given / "mnist"
    return default_data_dir() / "mnist"


@dataclass(frozen=True)
class LabelledImages:
    """Arrays are read-only: the in-process cache shares them between callers (index
    or np.array() them for a writable copy)."""
    train_x: np.ndarray  # float32 [N, 1, 28, 28], pixels / 255
    train_y: np.ndarray  # int64 [N]
    test_x: np.ndarray
    test_y: np.ndarray
    source: Path  # the folder read


def load_mnist(data_dir: Optional[PathLike] = None) -> LabelledImages:
    """The train and test sets from mnist_folder(data_dir). Parsed once per folder and
    process (again if a file changes). DataError when files are missing or malformed."""
    folder = mnist_folder(data_dir)
    paths = [find_file(folder, name) for name in MNIST_NAMES]
    missing = [name for name, path in zip(MNIST_NAMES, paths) if path is None]
    if missing:
        where = (f"{Path(data_dir).expanduser()} or {folder}" if data_dir else str(folder))
        what = ("none of its four IDX files" if len(missing) == len(MNIST_NAMES)
                else "missing " + ", ".join(missing))
        raise DataError(f"MNIST not found in {where} ({what}): {HOW_TO_GET}")
    stamps = []
    for path in paths:
        st = path.stat()  # the inode too: a same-size rewrite (by rename) within a clock tick
        stamps.append((str(path), st.st_ino, st.st_mtime_ns, st.st_size))
    return _load(folder, tuple(stamps))


@lru_cache(maxsize=2)  # full MNIST is ~220 MB as float32: keep few
def _load(folder: Path, stamps: Tuple[Tuple[str, int, int, int], ...]) -> LabelledImages:
    (train_x, train_y), (test_x, test_y) = (
        _pair(Path(stamps[i][0]), Path(stamps[i + 1][0])) for i in (0, 2))
    return LabelledImages(train_x, train_y, test_x, test_y, folder)


def _pair(images_path: Path, labels_path: Path) -> Tuple[np.ndarray, np.ndarray]:
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != IMAGE_HW:
        raise DataError(f"{images_path}: images must be N x 28 x 28, this file holds "
                        f"{'x'.join(map(str, images.shape))}")
    if labels.ndim != 1:
        raise DataError(f"{labels_path}: labels must be 1-dimensional, this file holds "
                        f"{'x'.join(map(str, labels.shape))}")
    if len(images) != len(labels):
        raise DataError(f"{images_path.name} holds {len(images):,} images but "
                        f"{labels_path.name} holds {len(labels):,} labels (in {images_path.parent})")
    if labels.size and labels.max() >= NUM_CLASSES:  # uint8: never below 0
        raise DataError(f"{labels_path}: labels must be 0..9, found {int(labels.max())}")
    x = images.reshape(len(images), 1, *IMAGE_HW).astype(np.float32)
    x /= 255  # the reference's normalisation: pixels in [0, 1], no mean/std
    y = labels.astype(np.int64)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y
