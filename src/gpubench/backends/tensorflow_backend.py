"""TensorFlow (Keras 3) on the CPU or an NVIDIA GPU, optionally compiled with XLA: one
class, the device and XLA parameters, so the CPU path that CI tests is the GPU path.

XLA is an execution mode (StepConfig.exec_mode `xla`, the `exec` identity column), not
a workload parameter: it is a compiler choice of the framework, not a property of the
model. The backend names `tf-gpu-xla` and `tf-cpu-xla` stay (their only mode is
`xla`), so suites and result files that name them keep working, and `compare` never
pairs an XLA row with a non-XLA one.

TensorFlow is imported only in prepare() and environment() (it takes ~3 s).
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import importlib.util
import os
import re
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, FrozenSet, Iterator, Optional, Tuple

from gpubench.backends.base import (
    SERVING_CAPABILITIES, TRAINING_CAPABILITIES, Backend, DeviceInfo, Step, StepConfig,
)
from gpubench.backends.torch_backend import nvidia_driver_problem  # framework-free
from gpubench.errors import BackendUnavailable, Unsupported, UserError
from gpubench.workloads import Workload

INSTALL_HINT = "pip install 'gpubench[tf]'"
# TensorFlow's CUDA 12 wheels would overwrite torch's CUDA 13 ones: its own environment.
GPU_INSTALL_HINT = "make install-tf: tensorflow[and-cuda] in its own environment, .venv-tf"
AMPERE = (8, 0)  # tf32 and fast bf16 start with compute capability 8.0
DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tf-nightly", "tf-nightly-cpu")

# Logging only, set before TensorFlow is imported (users' own values win): hides the
# C++ INFO and WARNING lines. No performance setting (oneDNN, threads) is touched.
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2"}
# Lines TensorFlow's C++ code writes at load time, before its log level applies.
_LOAD_NOISE = re.compile(r"^(I\d{4} |WARNING: All log messages before absl::InitializeLog)")


def tf_build_facts() -> Optional[Dict[str, Any]]:
    """The installed TensorFlow's distribution, version and CUDA build, read from
    package metadata and tensorflow/python/platform/build_info.py without importing
    it. None when TensorFlow is not installed."""
    spec = importlib.util.find_spec("tensorflow")
    if spec is None or not spec.origin:
        return None
    facts: Dict[str, Any] = {"distribution": None, "version": None, "cuda_build": None,
                             "cuda_version": None}
    for dist in DISTRIBUTIONS:
        try:
            facts["version"] = importlib.metadata.version(dist)
            facts["distribution"] = dist
            break
        except importlib.metadata.PackageNotFoundError:
            continue
    try:
        text = (Path(spec.origin).parent / "python" / "platform" / "build_info.py").read_text()
    except OSError:
        return facts
    cuda = re.search(r"'is_cuda_build',\s*(True|False)", text)
    facts["cuda_build"] = None if cuda is None else cuda.group(1) == "True"
    version = re.search(r"'cuda_version',\s*'([^']*)'", text)
    facts["cuda_version"] = version.group(1) if version else None
    return facts


@contextmanager
def _filtered_stderr() -> Iterator[None]:
    """Catches file descriptor 2 and passes on all but the load-time INFO lines."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            lines = caught.read().decode(errors="replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not _LOAD_NOISE.match(line))
            if kept:
                os.write(2, kept.encode())


def import_tensorflow() -> Any:
    """Imports TensorFlow and Keras (on its TensorFlow backend) without start-up noise."""
    if "tensorflow" in sys.modules:
        tf = sys.modules["tensorflow"]
    else:
        for key, value in QUIET_ENV.items():
            os.environ.setdefault(key, value)
        if "keras" not in sys.modules:
            os.environ["KERAS_BACKEND"] = "tensorflow"  # this process's Keras runs on TF
        with _filtered_stderr():
            import tensorflow as tf
    import keras

    if keras.backend.backend() != "tensorflow":
        raise BackendUnavailable(
            f"Keras was already loaded on the {keras.backend.backend()} backend in this "
            "process; the tf backends need KERAS_BACKEND=tensorflow")
    return tf


class TFBackend(Backend):
    framework = "tensorflow"

    def __init__(self, device_kind: str, xla: bool = False) -> None:
        assert device_kind in ("cpu", "cuda")
        self.device_kind = device_kind
        self.xla = xla
        self.name = ("tf-gpu" if device_kind == "cuda" else "tf-cpu") + ("-xla" if xla else "")
        self.exec_modes = ("xla",) if xla else ("eager",)

    def is_available(self) -> Tuple[bool, str]:
        facts = tf_build_facts()
        if facts is None:
            return False, f"tensorflow is not installed ({INSTALL_HINT})"
        if self.device_kind == "cuda":
            if facts["cuda_build"] is False:
                package = facts["distribution"] or "tensorflow"
                return False, (f"{package} {facts['version'] or ''} is a CPU-only build "
                               f"({GPU_INSTALL_HINT})").replace("  ", " ")
            problem = nvidia_driver_problem()
            if problem:
                return False, problem
        return True, ""

    def capabilities(self, mode: str) -> FrozenSet[str]:
        # Training steps walk real data epoch by epoch; inference steps predict and serve.
        return TRAINING_CAPABILITIES if mode == "train" else SERVING_CAPABILITIES

    def check_config(self, mode: str, precision: str) -> None:
        if self.device_kind != "cpu":
            return  # the GPU's compute capability is checked in prepare()
        if precision == "tf32":
            raise Unsupported(f"precision tf32 is unsupported on {self.name} because TF32 is "
                              "a tensor-core mode of NVIDIA GPUs (Ampere and newer)")
        if precision == "fp16":
            raise Unsupported(
                f"precision fp16 is unsupported on {self.name} because TensorFlow has no fast "
                "float16 CPU kernels (Keras' mixed_float16 is meant for GPUs); use bf16")

    def prepare(self, workload: Workload, config: StepConfig) -> Step:
        self.check_config(config.mode, config.precision)
        tf = import_tensorflow()
        _set_threads(tf, config.threads)
        if self.device_kind == "cuda":
            tf_device, info = self._gpu(tf, config)
        else:
            _hide_gpus(tf)
            from gpubench.machine import cpu_model
            tf_device, info = "/CPU:0", DeviceInfo("cpu", None, cpu_model())
        # TF turns TF32 on by default on Ampere+: fp32 must mean full fp32 matmuls.
        tf.config.experimental.enable_tensor_float_32_execution(config.precision == "tf32")
        from gpubench.backends.tf_step import TFStep
        exec_mode = config.exec_mode or self.exec_modes[0]
        return TFStep(workload, config, tf_device, info, xla=exec_mode == "xla")

    def _gpu(self, tf: Any, config: StepConfig) -> Tuple[str, DeviceInfo]:
        gpus = tf.config.list_physical_devices("GPU")
        if not gpus:
            facts = tf_build_facts() or {}
            raise BackendUnavailable(
                f"{self.name} is not available: TensorFlow {tf.__version__} (CUDA build "
                f"{facts.get('cuda_version') or 'none'}) sees no GPU; its CUDA libraries may "
                f"be missing ({GPU_INSTALL_HINT})")
        if not 0 <= config.device_index < len(gpus):
            raise UserError(f"no GPU with index {config.device_index} "
                            f"(TensorFlow sees {len(gpus)})")
        gpu = gpus[config.device_index]
        details = tf.config.experimental.get_device_details(gpu)
        capability = tuple(details.get("compute_capability") or (0, 0))
        if config.precision in ("tf32", "bf16") and capability < AMPERE:
            raise Unsupported(
                f"precision {config.precision} is unsupported on GPU {config.device_index} "
                f"because it needs compute capability 8.0 or newer and the GPU has "
                f"{capability[0]}.{capability[1]}")
        try:  # only this GPU, grown on demand rather than all of its memory at start-up
            tf.config.set_visible_devices([gpu], "GPU")
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # the runtime was initialised earlier in this process
            pass
        visible = tf.config.get_visible_devices("GPU")
        if gpu not in visible:
            raise UserError("TensorFlow was initialised without this GPU earlier in this "
                            "process; run each GPU configuration in its own process")
        name = details.get("device_name") or gpu.name
        return f"/GPU:{visible.index(gpu)}", DeviceInfo(
            "cuda", config.device_index, name, cuda_device_uuid(config.device_index))

    def build_facts(self) -> Dict[str, Any]:
        facts = tf_build_facts() or {}
        return {"framework": "tensorflow", "framework_version": facts.get("version"),
                "cuda_version": facts.get("cuda_version") or None,
                "tf_package": facts.get("distribution")}

    def environment(self) -> Dict[str, Any]:
        facts = tf_build_facts()
        if facts is None:
            return {"framework": "tensorflow", "framework_version": None}
        tf = import_tensorflow()
        import keras

        build = tf.sysconfig.get_build_info()
        return {
            "framework": "tensorflow",
            "framework_version": tf.__version__,
            "cuda_version": build.get("cuda_version"),
            "cudnn_version": build.get("cudnn_version"),
            "keras_version": keras.__version__,
            "tf_package": facts["distribution"],
            "tf_xla": self.xla,
            # 0 = TensorFlow's default (as many as cores), recorded as empty
            "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads() or None,
            "tf_inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads() or None,
        }


def cuda_device_uuid(ordinal: int) -> Optional[str]:
    """The NVML-style UUID (GPU-xxxxxxxx-...) of CUDA device `ordinal`, from the driver
    API, which numbers devices as TensorFlow does (CUDA_VISIBLE_DEVICES and
    CUDA_DEVICE_ORDER applied); TensorFlow itself does not expose it. None when the
    driver cannot say: the telemetry then falls back to the index."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    get_uuid = getattr(cuda, "cuDeviceGetUuid_v2", None) or getattr(cuda, "cuDeviceGetUuid", None)
    device, raw = ctypes.c_int(), ctypes.create_string_buffer(16)
    if (get_uuid is None or cuda.cuInit(0) != 0
            or cuda.cuDeviceGet(ctypes.byref(device), ordinal) != 0
            or get_uuid(raw, device) != 0):
        return None
    h = raw.raw.hex()
    return f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _hide_gpus(tf: Any) -> None:
    """tf-cpu on a GPU machine: keep TensorFlow off the GPUs (and their memory)."""
    if tf.config.list_physical_devices("GPU"):
        try:
            tf.config.set_visible_devices([], "GPU")
        except RuntimeError:  # already initialised: TFStep still pins work to /CPU:0
            pass


def _set_threads(tf: Any, threads: Optional[int]) -> None:
    """`--threads N` as in torch: each op parallel over N threads, ops one at a time
    (inter-op 1), so at most N cores work. TF's default runs independent ops
    concurrently on a second pool as large as the machine."""
    if threads is None:
        return
    threading = tf.config.threading
    try:
        threading.set_intra_op_parallelism_threads(threads)
        threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # settable only before TensorFlow's runtime starts
        if (threading.get_intra_op_parallelism_threads(),
                threading.get_inter_op_parallelism_threads()) != (threads, 1):
            raise UserError("TensorFlow's thread counts can be set only once per process; "
                            "run each --threads value in its own process") from None
