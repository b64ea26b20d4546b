"""A gpubench plugin for the NVML tests (loaded through GPUBENCH_PLUGINS, so isolated
worker processes see it too): backend `fake-cuda`, torch on the CPU whose step says it
runs on CUDA GPU --device. It lets `--telemetry auto` take the GPU path (NVML) on a
machine without a GPU. Not a test double of torch: only the device it reports differs."""

from gpubench.backends import DeviceInfo, register_backend
from gpubench.backends.torch_backend import TorchBackend


class FakeCuda(TorchBackend):
    def __init__(self) -> None:
        super().__init__("cpu")
        self.name = "fake-cuda"

    def prepare(self, workload, config):
        step = super().prepare(workload, config)
        step.device = DeviceInfo("cuda", config.device_index, "fake GPU", None)
        return step


register_backend("fake-cuda", FakeCuda)
