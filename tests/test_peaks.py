"""MFU: the datasheet peak looked up by CUDA device name, and the mfu column."""

import pytest

from gpubench.backends import DeviceInfo
from gpubench.backends.torch_backend import TorchBackend
from gpubench.measure.protocol import ProtocolConfig
from gpubench.measure.runner import RunRequest, execute_run
from gpubench.peaks import peak_tflops


@pytest.mark.parametrize("name, precision, peak", [
    ("NVIDIA A100-SXM4-80GB", "bf16", 312.0),
    ("NVIDIA A100 80GB PCIe", "fp32", 19.5),
    ("NVIDIA H100 80GB HBM3", "fp16", 989.4),
    ("NVIDIA H100 PCIe", "tf32", 378.0),
    ("NVIDIA H200", "bf16", 989.4),
    ("Tesla V100-SXM2-16GB", "fp16", 125.0),
    ("Tesla V100-PCIE-32GB", "fp32", 14.0),
    ("NVIDIA A10", "fp32", 31.2),
    ("NVIDIA L4", "fp16", 121.0),
    ("NVIDIA L40S", "bf16", 362.05),
])
def test_known_gpus(name, precision, peak):
    assert peak_tflops(name, precision) == peak


@pytest.mark.parametrize("name, precision", [
    ("NVIDIA A10G", "fp32"),          # not the A10: other figures, not in the table
    ("NVIDIA GH200 480GB", "bf16"),   # not an H200
    ("NVIDIA H100 NVL", "bf16"),      # another H100 variant
    ("NVIDIA H200 NVL", "bf16"),      # the NVL board: lower peaks than the H200 SXM
    ("NVIDIA H200 NVL", "fp32"),
    ("Tesla V100-SXM3-32GB", "fp16"),  # other clocks than the SXM2
    ("Tesla V100-SXM2-16GB", "bf16"),  # Volta has no bf16
    ("NVIDIA GeForce RTX 4090", "fp32"),
    (None, "fp32"),
])
def test_unknown_means_no_mfu_not_a_guess(name, precision):
    assert peak_tflops(name, precision) is None


class _PretendA100(TorchBackend):
    """torch on the CPU whose device says A100: exercises the MFU arithmetic."""

    def __init__(self):
        super().__init__("cpu")
        self.name = "pretend-a100"

    def prepare(self, workload, config):
        step = super().prepare(workload, config)
        step.device = DeviceInfo("cuda", 0, "NVIDIA A100-SXM4-40GB")
        return step


def test_mfu_is_tflops_over_the_peak(tmp_path, register):
    register("pretend-a100", _PretendA100)
    outcome = execute_run(RunRequest(workload="mnist", backend="pretend-a100", telemetry="none",
                                     protocol=ProtocolConfig(trials=2, warmup_s=0.05, min_trial_s=0.05),
                                     out_dir=tmp_path))
    t = outcome.trials
    assert (t["mfu"] == t["tflops"] / 19.5).all() and (t["mfu"] > 0).all()


def test_cpu_runs_have_no_mfu(tmp_path):
    outcome = execute_run(RunRequest(workload="linreg", backend="torch-cpu", telemetry="none",
                                     protocol=ProtocolConfig(trials=1, warmup_s=0.05, min_trial_s=0.05),
                                     out_dir=tmp_path))
    assert outcome.trials["mfu"].isna().all()
