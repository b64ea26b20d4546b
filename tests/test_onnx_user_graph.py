"""A user's ONNX graph (`--onnx`) must be the workload's model: a graph of another model
is refused in preflight, before anything is measured (gpubench reports the workload's
FLOPs, which would be fiction for it), and a graph that runs carries its SHA-256 in the
identity column `onnx_sha256`, so compare never matches it with the workload's export."""

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
pytest.importorskip("torch")

from conftest import FAST_RUN, REPO, run_cli_here  # noqa: E402  (the commands in this process)
from gpubench.backends import tensorrt_backend  # noqa: E402
from gpubench.backends.onnx_export import export_workload, onnx_model_for  # noqa: E402
from gpubench.errors import UserError  # noqa: E402
from gpubench.measure.preflight import preflight  # noqa: E402
from gpubench.measure.request import RunRequest, request_identity  # noqa: E402
from gpubench.results import schema  # noqa: E402
from gpubench.results.compare import compare  # noqa: E402
from gpubench.results.compare_format import config_label  # noqa: E402
from gpubench.results.reader import read_trials  # noqa: E402
from gpubench.workloads import resolve_workload  # noqa: E402

TINY = (*FAST_RUN, "--telemetry", "none", "-q")


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    """Files exported by gpubench's own exporter, copied where a user keeps them, and
    one hand-built graph: 1x28x28 in, 5 out."""
    folder = tmp_path_factory.mktemp("graphs")
    mp = pytest.MonkeyPatch()
    mp.setenv("GPUBENCH_CACHE_DIR", str(folder / "cache"))
    files = {}
    for name, seed in (("mnist", 0), ("linreg", 0), ("lenet5", 5)):
        files[name] = folder / f"my_{name}.onnx"
        shutil.copy(export_workload(resolve_workload(name), seed=seed).path, files[name])
    # The lenet5 graph with its batch dimension fixed at 8 (input and output).
    model = onnx.load(str(files["lenet5"]))
    for value in (model.graph.input[0], model.graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_value = 8
    files["lenet5_b8"] = folder / "lenet5_b8.onnx"
    onnx.save(model, str(files["lenet5_b8"]))
    files["five"] = folder / "five_classes.onnx"
    onnx.save(_five_class_graph(), str(files["five"]))
    yield files
    mp.undo()


def _five_class_graph():
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 28, 28])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])
    weights = numpy_helper.from_array(np.ones((784, 5), np.float32) / 784, "W")
    nodes = [helper.make_node("Flatten", ["x"], ["flat"]),
             helper.make_node("MatMul", ["flat", "W"], ["y"])]
    graph = helper.make_graph(nodes, "five", [x], [y], [weights])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _request(path, workload="lenet5", backend="onnxruntime-cpu", **kw):
    return RunRequest(workload=workload, backend=backend, mode="infer", onnx_path=str(path), **kw)


def _one_error_line(proc, *fragments):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpubench: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


# -- refusals -----------------------------------------------------------------------------
def test_cli_refuses_the_mnist_mlp_graph_as_lenet5(graphs, tmp_path):
    """The issue: both are 1x28x28 -> 10, so only the weights tell them apart; the old
    code ran it and reported LeNet-5's FLOPs for the MLP."""
    out = tmp_path / "res"
    proc = run_cli_here("run", "-w", "lenet5", "-b", "onnxruntime-cpu", "--mode", "infer",
                        "--onnx", str(graphs["mnist"]), "--out", str(out), *TINY)
    _one_error_line(proc, str(graphs["mnist"]), "holds 101,770 weights",
                    "workload lenet5 has 61,706")
    assert not out.exists() or list(out.iterdir()) == []


def test_cli_refuses_a_graph_with_another_output_shape(graphs, tmp_path):
    out = tmp_path / "res"
    proc = run_cli_here("run", "-w", "lenet5", "-b", "onnxruntime-cpu", "--mode", "infer",
                        "--onnx", str(graphs["five"]), "--out", str(out), *TINY)
    _one_error_line(proc, str(graphs["five"]), "output 'y' has shape ?x5",
                    "workload lenet5 gives batch x 10")
    assert not out.exists() or list(out.iterdir()) == []


def test_preflight_refuses_another_input_shape_before_any_framework(graphs):
    with pytest.raises(UserError, match=r"my_linreg.onnx: input 'input' has shape \?x2, but "
                                        r"workload lenet5 feeds batch x 1x28x28"):
        preflight(_request(graphs["linreg"]))


def test_preflight_takes_a_dynamic_batch_and_refuses_another_fixed_one(graphs):
    preflight(_request(graphs["lenet5"], batch_size=3))  # symbolic batch: any size
    preflight(_request(graphs["lenet5_b8"], batch_size=8))
    with pytest.raises(UserError, match=r"lenet5_b8.onnx: input has a fixed batch size of 8 "
                                        r"\(shape 8x1x28x28\); asked for --batch-size 4"):
        preflight(_request(graphs["lenet5_b8"], batch_size=4))
    with pytest.raises(UserError, match="fixed batch size of 8.*--batch-size 64"):
        preflight(_request(graphs["lenet5_b8"]))  # the workload's default batch size


def test_preflight_refuses_an_unreadable_file(tmp_path):
    missing = tmp_path / "absent.onnx"
    with pytest.raises(UserError, match=r"cannot read ONNX file .*absent.onnx"):
        preflight(_request(missing))
    from gpubench.backends.onnx_graph_check import file_sha256

    with pytest.raises(UserError, match="cannot read ONNX file"):
        file_sha256(missing)


def test_onnxruntime_and_tensorrt_take_the_same_check(graphs, monkeypatch):
    """Both backends' prepare() loads the file through onnx_model_for, and preflight
    checks for any backend that accepts ONNX files: tensorrt, made available here."""
    lenet5 = resolve_workload("lenet5")
    with pytest.raises(UserError, match="holds 101,770 weights"):
        onnx_model_for(lenet5, "fp32", 4, 0, str(graphs["mnist"]))
    with pytest.raises(UserError, match="fixed batch size of 8"):
        onnx_model_for(lenet5, "fp32", 4, 0, str(graphs["lenet5_b8"]))
    monkeypatch.setattr(tensorrt_backend, "_problems", lambda: [])
    with pytest.raises(UserError, match="holds 101,770 weights, but workload lenet5"):
        preflight(_request(graphs["mnist"], backend="tensorrt"))
    preflight(_request(graphs["lenet5"], backend="tensorrt", batch_size=4))


# -- identity -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_runs(graphs, tmp_path_factory):
    """lenet5 on onnxruntime-cpu: once from the user's graph, once from its own export."""
    out = tmp_path_factory.mktemp("runs")
    frames = {}
    for name, extra in (("user", ("--onnx", str(graphs["lenet5"]))), ("export", ())):
        proc = run_cli_here("run", "-w", "lenet5", "-b", "onnxruntime-cpu", "--mode", "infer",
                            "--batch-size", "4", *extra, "--out", str(out / name), *TINY,
                            env_extra={"GPUBENCH_CACHE_DIR": str(out / "cache")})
        assert proc.returncode == 0, proc.stderr
        frames[name] = Path(proc.stdout.strip())
    return frames


def test_the_matching_graph_runs_and_its_rows_carry_its_hash(graphs, two_runs):
    digest = hashlib.sha256(graphs["lenet5"].read_bytes()).hexdigest()
    user = read_trials(two_runs["user"] / "trials.csv")
    assert (user["status"] == "ok").all() and len(user) == 2
    assert list(user["onnx_sha256"]) == [digest, digest]
    assert "onnx_sha256" in schema.TRIAL_COLUMNS
    summary = (two_runs["user"] / "summary.csv").read_text()
    assert digest in summary
    meta = json.loads((two_runs["user"] / "run.json").read_text())
    assert meta["environment"]["onnx_sha256"] == digest
    export = read_trials(two_runs["export"] / "trials.csv")
    assert (export["status"] == "ok").all()
    assert export["onnx_sha256"].map(schema.key_text).eq("").all()  # the workload's own model
    assert request_identity(_request(graphs["lenet5"]))["onnx_sha256"] == digest


def test_compare_never_matches_a_user_graph_with_the_workloads_export(two_runs):
    user = read_trials(two_runs["user"] / "trials.csv")
    export = read_trials(two_runs["export"] / "trials.csv")
    table = compare(export, user)
    assert sorted(table["verdict"]) == ["base_only", "new_only"]
    assert "onnx_sha256" in table.columns
    again = compare(user, user.assign(run_id="other"))  # the same file matches itself
    assert len(again) == 1 and again["verdict"].iloc[0] not in ("base_only", "new_only")


def test_labels_show_a_short_hash(two_runs):
    user = read_trials(two_runs["user"] / "trials.csv")
    digest = user["onnx_sha256"].iloc[0]
    label = config_label(user.iloc[0])
    assert f"onnx={digest[:8]}" in label and digest not in label
    assert "onnx=" not in config_label(read_trials(two_runs["export"] / "trials.csv").iloc[0])


def test_v1_rows_read_as_the_workloads_own_model():
    rows = read_trials(REPO / "tests" / "fixtures" / "v1_run" / "trials.csv")
    assert rows["onnx_sha256"].map(schema.key_text).eq("").all()
    assert schema.CONFIGURATION_DEFAULTS["onnx_sha256"] == ""
