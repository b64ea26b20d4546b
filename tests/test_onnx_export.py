"""ONNX export: one self-contained file with a dynamic batch dimension, cached by a
content hash; an unwritable cache or a full disk still gives a model (kept in memory)
and says why it was not cached; `gpubench export` through the real CLI."""

import errno
from pathlib import Path

import pytest

pytest.importorskip("onnx")
pytest.importorskip("torch")

import onnx  # noqa: E402

from conftest import run_cli_here  # noqa: E402  (the command in this process)
from gpubench.backends import artifact_cache  # noqa: E402
from gpubench.backends.artifact_cache import ArtifactCache, sha256_file  # noqa: E402
from gpubench.backends.onnx_export import (  # noqa: E402
    BATCH_DIM, INPUT_NAME, OUTPUT_NAME, export_workload, read_signature,
)
from gpubench.workloads import resolve_workload  # noqa: E402


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("GPUBENCH_CACHE_DIR", str(folder))
    return folder


def _entries(folder: Path):
    return sorted(p.name for p in (folder / "onnx").glob("*.onnx")) if (folder / "onnx").exists() else []


def test_export_is_self_contained_with_dynamic_batch(cache_dir):
    model = export_workload(resolve_workload("lenet5"))
    assert model.cache == "stored" and model.path is not None and model.path.parent == cache_dir / "onnx"
    proto = onnx.load(str(model.path))  # loads without any external data file
    onnx.checker.check_model(proto)
    assert not [t for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    assert len(proto.graph.initializer) >= 8  # the weights are inside
    (inp,) = proto.graph.input
    dims = inp.type.tensor_type.shape.dim
    assert inp.name == INPUT_NAME and dims[0].dim_param == BATCH_DIM
    assert [d.dim_value for d in dims[1:]] == [1, 28, 28]
    assert proto.graph.output[0].name == OUTPUT_NAME
    assert proto.graph.output[0].type.tensor_type.shape.dim[0].dim_param == BATCH_DIM
    assert model.sha256 == sha256_file(model.path)


def test_second_export_is_a_cache_hit_and_keys_follow_the_inputs(cache_dir):
    mnist = resolve_workload("mnist")
    first = export_workload(mnist, seed=0)
    again = export_workload(mnist, seed=0)
    assert (first.cache, again.cache) == ("stored", "hit")
    assert again.key == first.key and again.sha256 == first.sha256 and again.export_s is None
    other_param = export_workload(resolve_workload("mnist", {"hidden": "64"}), seed=0)
    other_seed = export_workload(mnist, seed=1)
    fp16 = export_workload(mnist, seed=0, dtype="float16")
    keys = {first.key, other_param.key, other_seed.key, fp16.key}
    assert len(keys) == 4 and all(m.cache == "stored" for m in (other_param, other_seed, fp16))
    assert len(_entries(cache_dir)) == 4
    assert read_signature(fp16.read_bytes(), "fp16").input_dtype == "float16"


def test_damaged_cache_entry_is_a_miss_and_is_rewritten(cache_dir):
    linreg = resolve_workload("linreg")
    first = export_workload(linreg)
    first.path.write_bytes(b"truncated")
    again = export_workload(linreg)
    assert again.cache == "stored" and again.sha256 == first.sha256
    assert sha256_file(again.path) == first.sha256


def test_unwritable_cache_folder_still_exports_in_memory(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("GPUBENCH_CACHE_DIR", str(blocker))
    model = export_workload(resolve_workload("linreg"))
    assert model.cache.startswith("not cached: cannot write") and model.path is None
    assert read_signature(model.read_bytes(), "mem").input_name == INPUT_NAME
    assert model.facts()["onnx_cache"] == model.cache


def test_full_disk_leaves_no_partial_entry(cache_dir, monkeypatch):
    real_write = artifact_cache.write_bytes_atomic
    calls = []

    def meta_write_fails(path, data):  # the artifact lands, then the disk is full
        calls.append(path)
        if path.suffix == ".json":
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(artifact_cache, "write_bytes_atomic", meta_write_fails)
    model = export_workload(resolve_workload("linreg"))
    assert "No space left on device" in model.cache and model.data is not None
    assert len(calls) == 2 and _entries(cache_dir) == []  # no artifact without its metadata
    monkeypatch.setattr(artifact_cache, "write_bytes_atomic", real_write)
    assert export_workload(resolve_workload("linreg")).cache == "stored"


def test_cache_store_cleans_its_temp_file_on_failure(tmp_path, monkeypatch):
    cache = ArtifactCache("things", ".bin", root=tmp_path)

    def no_space(fd, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(artifact_cache.os, "fsync", no_space)
    path, note = cache.store("k", b"data", {})
    assert path is None and "No space left" in note
    assert list((tmp_path / "things").iterdir()) == []


def test_export_cli_writes_the_file_then_hits_the_cache(tmp_path):
    env = {"GPUBENCH_CACHE_DIR": str(tmp_path / "cache")}
    out = tmp_path / "model.onnx"
    first = run_cli_here("export", "--workload", "mnist", "--param", "hidden=32", "--out", str(out),
                         env_extra=env)
    assert first.returncode == 0, first.stderr
    assert "exported in" in first.stdout and out.exists()
    proto = onnx.load(str(out))
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == BATCH_DIM
    out.unlink()
    second = run_cli_here("export", "-w", "mnist", "-p", "hidden=32", "--out", str(out), env_extra=env)
    assert second.returncode == 0 and "from the cache" in second.stdout and out.exists()
    bad = run_cli_here("export", "-w", "mnist", "--out", str(tmp_path / "missing" / "m.onnx"),
                       env_extra=env)
    assert bad.returncode == 2 and bad.stderr.startswith("gpubench: error: cannot write")
    assert len(bad.stderr.strip().splitlines()) == 1
