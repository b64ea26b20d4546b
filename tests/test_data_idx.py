"""IDX reading and the MNIST loader: on a real 5,000-image MNIST subset, and on broken
files, each of which must come out as one line and exit 2 through the real CLI."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli_here
from gpubench.data.idx import DataError, read_idx, write_idx
from gpubench.data.mnist import (DATA_DIR_ENV, MNIST_NAMES, TEST_LABELS, TRAIN_IMAGES,
                                 TRAIN_LABELS, default_data_dir, load_mnist, mnist_folder)
from mnist_subset import write_mnist_subset


def small_set(folder: Path, n_train: int = 20, n_test: int = 10, compress: bool = False,
              image_hw=(28, 28)) -> Path:
    """Four small IDX files of random pixels (for breaking them)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if compress else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}",
                  rng.integers(0, 256, (n, *image_hw), dtype=np.uint8), compress)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}",
                  rng.integers(0, 10, n, dtype=np.uint8), compress)
    return folder


def path_error(folder: Path) -> str:
    """`gpubench data path mnist --data-dir FOLDER` must fail with one line: that line."""
    done = run_cli_here("data", "path", "mnist", "--data-dir", str(folder))
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpubench: error: "), done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


# -- the real subset -----------------------------------------------------------------

def test_real_subset_loads_with_shapes_range_and_labels(mnist_subset_dir):
    sets = load_mnist(mnist_subset_dir)
    assert sets.source == mnist_subset_dir
    assert sorted(p.name for p in mnist_subset_dir.iterdir()) == sorted(
        f"{n}.gz" for n in MNIST_NAMES)
    assert sets.train_x.shape == (4000, 1, 28, 28) and sets.test_x.shape == (1000, 1, 28, 28)
    assert sets.train_y.shape == (4000,) and sets.test_y.shape == (1000,)
    assert sets.train_x.dtype == np.float32 and sets.test_x.dtype == np.float32
    assert sets.train_y.dtype == np.int64 and sets.test_y.dtype == np.int64
    for x in (sets.train_x, sets.test_x):
        assert x.min() == 0.0 and x.max() == 1.0  # real digits have full-ink pixels
        assert np.array_equal(np.rint(x * 255) / 255, x)  # pixels / 255, nothing else
        # real MNIST: mostly background, mean ink ~0.13 (random pixels would give 0.5)
        assert 0.08 < float(x.mean()) < 0.2
    assert np.array_equal(np.bincount(sets.train_y, minlength=10), [400] * 10)
    assert np.array_equal(np.bincount(sets.test_y, minlength=10), [100] * 10)
    assert set(sets.train_y[:10].tolist()) == set(range(10))  # not sorted by digit


def test_plain_files_load_the_same_as_gzipped(mnist_subset_dir, tmp_path):
    plain = write_mnist_subset(tmp_path / "plain", compress=False)
    assert sorted(p.name for p in plain.iterdir()) == sorted(MNIST_NAMES)
    assert (plain / TRAIN_IMAGES).read_bytes()[:4] == b"\x00\x00\x08\x03"
    a, b = load_mnist(plain), load_mnist(mnist_subset_dir)
    assert a.source == plain
    for name in ("train_x", "train_y", "test_x", "test_y"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name


def test_loaded_arrays_are_cached_read_only_and_reloaded_when_a_file_changes(tmp_path):
    folder = small_set(tmp_path / "m")
    first = load_mnist(folder)
    assert load_mnist(folder) is first
    assert not first.train_x.flags.writeable and not first.train_y.flags.writeable
    before = (folder / TRAIN_LABELS).stat()
    write_idx(folder / TRAIN_LABELS, np.zeros(20, dtype=np.uint8), compress=False)
    # The same size, and (on a kernel with coarse file timestamps, one tick of 1-10 ms)
    # possibly the same mtime as the file it replaced when the machine is fast: the
    # change is dated a second later, as a change made by hand would be.
    os.utime(folder / TRAIN_LABELS, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))
    again = load_mnist(folder)
    assert again is not first and not again.train_y.any()


def test_data_path_command_prints_the_folder_and_counts(mnist_subset_dir):
    done = run_cli_here("data", "path", "mnist", "--data-dir", str(mnist_subset_dir))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(mnist_subset_dir)
    assert "4,000 training and 1,000 test images" in done.stderr


# -- where data is looked for ---------------------------------------------------------

def test_folder_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "cache"))
    assert default_data_dir() == tmp_path / "cache"
    assert mnist_folder() == tmp_path / "cache" / "mnist"
    holding = small_set(tmp_path / "own", compress=True)
    assert mnist_folder(holding) == holding  # a folder holding the files is used as is
    assert mnist_folder(tmp_path) == tmp_path / "mnist"  # else its mnist/ subfolder
    small_set(tmp_path / "mnist")
    assert load_mnist(tmp_path).source == tmp_path / "mnist"
    monkeypatch.delenv(DATA_DIR_ENV)
    assert default_data_dir() == Path.home() / ".cache" / "gpubench" / "data"


def test_missing_folder_says_where_it_looked_and_how_to_fetch(tmp_path):
    line = path_error(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere" / "mnist") in line
    assert "gpubench data fetch mnist" in line and "--data-dir" in line


def test_missing_one_file_is_named(tmp_path):
    folder = small_set(tmp_path / "mnist")
    (folder / TEST_LABELS).unlink()
    line = path_error(tmp_path)
    assert f"missing {TEST_LABELS}" in line and TRAIN_IMAGES not in line


def test_default_folder_comes_from_the_env_var(tmp_path):
    done = run_cli_here("data", "path", "mnist", env_extra={DATA_DIR_ENV: str(tmp_path)})
    assert done.returncode == 2
    assert done.stdout.strip() == str(tmp_path / "mnist")
    assert str(tmp_path / "mnist") in done.stderr


# -- broken files: one line each, naming the file and the fault -----------------------

def test_truncated_idx(tmp_path):
    folder = small_set(tmp_path / "m")
    path = folder / TRAIN_IMAGES
    path.write_bytes(path.read_bytes()[:-100])
    line = path_error(folder)
    assert str(path) in line and "truncated" in line
    assert f"{20 * 784 - 100:,} bytes of data" in line and "20x28x28" in line


def test_extra_bytes(tmp_path):
    folder = small_set(tmp_path / "m")
    path = folder / TRAIN_LABELS
    path.write_bytes(path.read_bytes() + b"\x01\x02\x03")
    line = path_error(folder)
    assert str(path) in line and "3 extra bytes" in line


def test_wrong_magic_number(tmp_path):
    folder = small_set(tmp_path / "m")
    path = folder / TRAIN_IMAGES
    path.write_bytes(b"\x00\x01" + path.read_bytes()[2:])
    line = path_error(folder)
    assert str(path) in line and "wrong magic number 0x00010803" in line


def test_unsupported_type(tmp_path):
    folder = small_set(tmp_path / "m")
    path = folder / TRAIN_IMAGES
    raw = bytearray(path.read_bytes())
    raw[2] = 0x0D
    path.write_bytes(bytes(raw))
    line = path_error(folder)
    assert str(path) in line and "0x0d (float32) is not supported" in line


def test_mismatched_image_and_label_counts(tmp_path):
    folder = small_set(tmp_path / "m")
    write_idx(folder / TRAIN_LABELS, np.zeros(19, dtype=np.uint8), compress=False)
    line = path_error(folder)
    assert "20 images" in line and f"{TRAIN_LABELS} holds 19 labels" in line


def test_images_not_28x28(tmp_path):
    folder = small_set(tmp_path / "m", image_hw=(32, 32))
    line = path_error(folder)
    assert TRAIN_IMAGES in line and "N x 28 x 28" in line and "20x32x32" in line


def test_labels_not_1d_or_out_of_range(tmp_path):
    folder = small_set(tmp_path / "m")
    write_idx(folder / TRAIN_LABELS, np.zeros((20, 2), dtype=np.uint8), compress=False)
    assert "1-dimensional" in path_error(folder) and "20x2" in path_error(folder)
    write_idx(folder / TRAIN_LABELS, np.full(20, 12, dtype=np.uint8), compress=False)
    line = path_error(folder)
    assert str(folder / TRAIN_LABELS) in line and "0..9, found 12" in line


def test_corrupt_gzip_in_the_real_subset(mnist_subset_dir, tmp_path):
    folder = Path(shutil.copytree(mnist_subset_dir, tmp_path / "m"))
    path = folder / f"{TRAIN_IMAGES}.gz"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2: len(raw) // 2 + 64] = bytes(64)  # zeros over the deflate stream
    path.write_bytes(bytes(raw))
    line = path_error(folder)
    assert str(path) in line and "corrupt gzip stream" in line


def test_truncated_gzip(mnist_subset_dir, tmp_path):
    folder = Path(shutil.copytree(mnist_subset_dir, tmp_path / "m"))
    path = folder / f"{TRAIN_LABELS}.gz"
    path.write_bytes(path.read_bytes()[:-50])
    line = path_error(folder)
    assert str(path) in line and "corrupt gzip stream" in line and "truncated" in line


def test_unknown_dataset_lists_the_valid_ones(tmp_path):
    done = run_cli_here("data", "path", "cifar10", "--data-dir", str(tmp_path))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == "gpubench: error: unknown dataset 'cifar10' (valid: mnist)"


# -- read_idx / write_idx -------------------------------------------------------------

@pytest.mark.parametrize("compress", [False, True])
def test_write_read_round_trip_and_gzip_told_by_content_not_name(tmp_path, compress):
    array = np.arange(60, dtype=np.uint8).reshape(3, 4, 5)
    path = tmp_path / ("data.idx" if compress else "data.gz")  # names that lie
    write_idx(path, array, compress=compress)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") is compress
    if compress:
        assert gzip.decompress(path.read_bytes())[:4] == b"\x00\x00\x08\x03"
    back = read_idx(path)
    assert back.dtype == np.uint8 and back.shape == (3, 4, 5)
    assert np.array_equal(back, array) and back.flags.writeable
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left


def test_short_and_unreadable_files(tmp_path):
    (tmp_path / "short").write_bytes(b"\x00\x00")
    with pytest.raises(DataError, match="2 bytes, shorter than the 4-byte magic"):
        read_idx(tmp_path / "short")
    (tmp_path / "header").write_bytes(b"\x00\x00\x08\x03\x00\x00\x00\x01")
    with pytest.raises(DataError, match="truncated: 8 bytes, shorter than its 16-byte header"):
        read_idx(tmp_path / "header")
    with pytest.raises(DataError, match="cannot read"):
        read_idx(tmp_path / "absent")


def test_write_idx_refuses_other_dtypes(tmp_path):
    with pytest.raises(ValueError, match="uint8 only"):
        write_idx(tmp_path / "f", np.zeros(3, dtype=np.float32), compress=False)
    assert not any(tmp_path.iterdir())
