"""Node placement from ONNX Runtime's own profiler: a node the CUDA provider cannot run
lands on the CPU without a word; gpubench names it in run.json and warns."""

import pytest

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytest.importorskip("torch")

from gpubench.backends import StepConfig  # noqa: E402
from gpubench.backends.onnx_export import export_workload  # noqa: E402
from gpubench.backends.onnxruntime_placement import (  # noqa: E402
    cpu_nodes, placement_from_profile, profile_placement,
)
from gpubench.workloads import resolve_workload  # noqa: E402


@pytest.fixture
def lenet5(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUBENCH_CACHE_DIR", str(tmp_path / "cache"))
    workload = resolve_workload("lenet5")
    return workload, export_workload(workload)


def test_a_real_profile_places_every_node(lenet5, tmp_path):
    import numpy as np

    workload, model = lenet5
    x = np.zeros((4,) + tuple(workload.input_shape), np.float32)
    placement = profile_placement(
        lambda options: ort.InferenceSession(model.ort_source(), options,
                                             providers=["CPUExecutionProvider"]),
        ort.SessionOptions(), {_input_name(model): x})
    ops = {n["op"] for n in placement["nodes"]}
    assert {"MaxPool", "Flatten"} <= ops and any("Conv" in op for op in ops)
    assert placement["providers"] == {"CPUExecutionProvider": len(placement["nodes"])}
    assert len(cpu_nodes(placement)) == len(placement["nodes"]) >= 5


def _input_name(model):
    return ort.InferenceSession(model.ort_source(), providers=["CPUExecutionProvider"]).get_inputs()[0].name


PROFILE = [
    {"cat": "Session", "name": "model_run", "args": {}},
    {"cat": "Node", "name": "/0/Gemm_fence_before", "args": {"op_name": "Gemm"}},
    {"cat": "Node", "name": "/0/Gemm_kernel_time",
     "args": {"op_name": "Gemm", "provider": "CUDAExecutionProvider"}},
    {"cat": "Node", "name": "/1/Erf_kernel_time",
     "args": {"op_name": "Erf", "provider": "CPUExecutionProvider"}},
    {"cat": "Node", "name": "/2/Gemm_kernel_time",
     "args": {"op_name": "Gemm", "provider": "CUDAExecutionProvider"}},
    {"cat": "Node", "name": "/2/Gemm_kernel_time",  # a second run: the same node once
     "args": {"op_name": "Gemm", "provider": "CUDAExecutionProvider"}},
]


def test_a_node_left_on_the_cpu_is_named():
    placement = placement_from_profile(PROFILE)
    assert placement["providers"] == {"CUDAExecutionProvider": 2, "CPUExecutionProvider": 1}
    assert cpu_nodes(placement) == ["Erf /1/Erf"]


class _ProfiledSession:
    """Writes PROFILE where ORT's profiler would, under the options' prefix."""

    def __init__(self, options):
        assert options.enable_profiling
        self.path = options.profile_file_prefix + "_run.json"

    def run(self, outputs, feed):
        pass

    def end_profiling(self):
        import json

        with open(self.path, "w") as f:
            json.dump(PROFILE, f)
        return self.path


def test_a_cuda_step_with_cpu_nodes_says_so(lenet5):
    # The CPU step's session stands in for the CUDA one; the placement check is the
    # code the CUDA step runs after building its session.
    from gpubench.backends.onnxruntime_step import OrtStep

    workload, model = lenet5
    step = OrtStep(workload, StepConfig("infer", "fp32", 2), model, "cpu")
    assert step.warnings == []
    step._check_placement(_ProfiledSession, StepConfig("infer", "fp32", 2))
    assert step.session_facts["onnxruntime_cpu_nodes"] == ["Erf /1/Erf"]
    assert step.session_facts["onnxruntime_nodes_per_provider"]["CPUExecutionProvider"] == 1
    [warning] = step.warnings
    assert "1 node(s)" in warning and "Erf /1/Erf" in warning
