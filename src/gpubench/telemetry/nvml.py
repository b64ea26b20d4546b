"""NVML through pynvml (package nvidia-ml-py): a session object and per-GPU queries.

This is the one place where NVML's errors become gpubench's (telemetry/errors.py):
- NOT_SUPPORTED, FUNCTION_NOT_FOUND (an older driver), NO_PERMISSION -> NotAvailable:
  the quantity is "not available" on this GPU, for the whole run;
- LIBRARY_NOT_FOUND, DRIVER_NOT_LOADED, a failed nvmlInit -> TelemetryUnavailable;
- anything else (GPU_IS_LOST, TIMEOUT, UNKNOWN, ...) -> TelemetryError, a transient
  failure the sampler records as a gap.

No module-level state: an `Nvml` object is one nvmlInit ... nvmlShutdown (NVML counts
them), and devices are objects holding their handle. pynvml is imported only here, and
only when a session is opened.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

from gpubench.telemetry.errors import NotAvailable, TelemetryError, TelemetryUnavailable

# Codes from nvml.h (also pynvml.NVML_ERROR_*); kept here so that classifying an
# error needs no pynvml import.
_NOT_SUPPORTED, _NO_PERMISSION, _FUNCTION_NOT_FOUND = 3, 4, 13
_DRIVER_NOT_LOADED, _LIBRARY_NOT_FOUND, _LIB_RM_VERSION_MISMATCH = 9, 12, 18
NOT_AVAILABLE_CODES = frozenset({_NOT_SUPPORTED, _NO_PERMISSION, _FUNCTION_NOT_FOUND})
UNAVAILABLE_CODES = frozenset({_DRIVER_NOT_LOADED, _LIBRARY_NOT_FOUND, _LIB_RM_VERSION_MISMATCH})

FI_POWER_INSTANT = 186  # NVML_FI_DEV_POWER_INSTANT: instantaneous board power, mW
GPM_DRAM_BW_UTIL = 10  # NVML_GPM_METRIC_DRAM_BW_UTIL: % of the theoretical peak
CLOCK_GRAPHICS, CLOCK_SM, CLOCK_MEM = 0, 1, 2
TEMPERATURE_GPU = 0


def translate(exc: Exception, what: str) -> TelemetryError:
    """The gpubench error for an NVMLError raised by the query `what`."""
    code = getattr(exc, "value", None)
    message = f"{what}: {exc} (NVML error {code})"
    if code in NOT_AVAILABLE_CODES:
        return NotAvailable(message)
    if code in UNAVAILABLE_CODES:
        return TelemetryUnavailable(message)
    return TelemetryError(message)


def _import_pynvml() -> Any:
    try:
        import pynvml
    except ImportError:
        raise TelemetryUnavailable(
            "NVML bindings are not installed (pip install nvidia-ml-py)") from None
    return pynvml


def peak_mem_bw_gbs(bus_width_bits: int, max_mem_clock_mhz: int) -> float:
    """Theoretical DRAM bandwidth: bus width x memory clock x 2 transfers per clock, the
    convention under which NVML's reported memory clocks give the datasheet figure for
    HBM and GDDR alike (A100: 5120 bit x 1215 MHz -> 1555 GB/s; RTX 3090: 384 bit x
    9751 MHz -> 936 GB/s)."""
    return bus_width_bits / 8 * max_mem_clock_mhz * 1e6 * 2 / 1e9


class Nvml:
    """One NVML session: nvmlInit on construction, nvmlShutdown on close()."""

    def __init__(self) -> None:
        self._nv = _import_pynvml()
        try:
            self._nv.nvmlInit()
        except self._nv.NVMLError as exc:
            code = getattr(exc, "value", None)
            if code == _LIBRARY_NOT_FOUND:
                raise TelemetryUnavailable(
                    "no NVIDIA driver: NVML (libnvidia-ml.so.1) could not be loaded") from None
            raise TelemetryUnavailable(
                f"NVML could not be initialised: {exc} (NVML error {code})") from None
        self._open = True

    @property
    def pynvml(self) -> Any:
        return self._nv

    def call(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        """fn(*args) with NVMLError translated; `what` names the query in messages."""
        try:
            return fn(*args)
        except self._nv.NVMLError as exc:
            raise translate(exc, what) from None

    def close(self) -> None:
        if self._open:
            self._open = False
            try:
                self._nv.nvmlShutdown()
            except self._nv.NVMLError:
                pass  # shutting down a session that the driver already dropped

    def __enter__(self) -> "Nvml":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def driver_version(self) -> str:
        return _text(self.call("driver version", self._nv.nvmlSystemGetDriverVersion))

    def cuda_driver_version(self) -> str:
        """The CUDA version the driver supports, as "12.4"."""
        v = int(self.call("CUDA driver version", self._nv.nvmlSystemGetCudaDriverVersion))
        return f"{v // 1000}.{v % 1000 // 10}"

    def device_count(self) -> int:
        return int(self.call("device count", self._nv.nvmlDeviceGetCount))

    def device(self, index: int) -> "NvmlDevice":
        return NvmlDevice(self, index)

    def devices(self) -> List["NvmlDevice"]:
        return [self.device(i) for i in range(self.device_count())]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NvmlDevice:
    """One GPU by its NVML index (PCI bus order, which CUDA_VISIBLE_DEVICES does not
    change; see nvml_select.py for the mapping from CUDA ordinals)."""

    def __init__(self, nvml: Nvml, index: int) -> None:
        self.nvml, self.index = nvml, index
        nv = nvml.pynvml
        self._nv = nv
        self.handle = nvml.call(f"GPU {index}", nv.nvmlDeviceGetHandleByIndex, index)
        self._power_via_field: Optional[bool] = None  # decided on the first power read
        self._reasons_fn: Optional[Callable[[Any], int]] = None

    def _call(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        return self.nvml.call(what, fn, self.handle, *args)

    # --- static facts ------------------------------------------------------------
    def name(self) -> str:
        return _text(self._call("name", self._nv.nvmlDeviceGetName))

    def uuid(self) -> str:
        return _text(self._call("UUID", self._nv.nvmlDeviceGetUUID))

    def memory_total_bytes(self) -> int:
        return int(self._call("memory info", self._nv.nvmlDeviceGetMemoryInfo).total)

    def power_limit_w(self) -> float:
        return self._call("power limit", self._nv.nvmlDeviceGetEnforcedPowerLimit) / 1000.0

    def max_sm_clock_mhz(self) -> int:
        return int(self._call("max SM clock", self._nv.nvmlDeviceGetMaxClockInfo, CLOCK_SM))

    def max_mem_clock_mhz(self) -> int:
        return int(self._call("max memory clock", self._nv.nvmlDeviceGetMaxClockInfo, CLOCK_MEM))

    def mem_bus_width_bits(self) -> int:
        return int(self._call("memory bus width", self._nv.nvmlDeviceGetMemoryBusWidth))

    def peak_mem_bw_gbs(self) -> float:
        return peak_mem_bw_gbs(self.mem_bus_width_bits(), self.max_mem_clock_mhz())

    # --- time-varying quantities ---------------------------------------------------
    def power_w(self) -> float:
        """Board power: the instantaneous field where the driver has it (nvmlDeviceGet-
        PowerUsage is a ~1 s average on Ampere and newer), else nvmlDeviceGetPowerUsage."""
        if self._power_via_field is not False:
            try:
                value = self._field_mw(FI_POWER_INSTANT)
            except TelemetryError:
                if self._power_via_field:  # it worked before: a real failure
                    raise
                self._power_via_field = False  # older drivers reject the field id
            else:
                self._power_via_field = True
                return value / 1000.0
        return self._call("power", self._nv.nvmlDeviceGetPowerUsage) / 1000.0

    @property
    def power_source(self) -> Optional[str]:
        sources = {True: "field:power_instant", False: "power_usage", None: None}
        return sources[self._power_via_field]

    def _field_mw(self, field_id: int) -> float:
        values = self._call("power field", self._nv.nvmlDeviceGetFieldValues, [field_id])
        v = values[0]
        if v.nvmlReturn != 0:
            raise translate(self._nv.NVMLError(v.nvmlReturn), "power field")
        return float(v.value.uiVal)

    def energy_mj(self) -> int:
        """The total-energy counter (Volta and newer), millijoules since driver load."""
        return int(self._call("energy counter", self._nv.nvmlDeviceGetTotalEnergyConsumption))

    def utilization_pct(self) -> Tuple[int, int]:
        u = self._call("utilization", self._nv.nvmlDeviceGetUtilizationRates)
        return int(u.gpu), int(u.memory)

    def memory_used_bytes(self) -> int:
        return int(self._call("memory info", self._nv.nvmlDeviceGetMemoryInfo).used)

    def sm_clock_mhz(self) -> int:
        return int(self._call("SM clock", self._nv.nvmlDeviceGetClockInfo, CLOCK_SM))

    def mem_clock_mhz(self) -> int:
        return int(self._call("memory clock", self._nv.nvmlDeviceGetClockInfo, CLOCK_MEM))

    def temp_c(self) -> int:
        return int(self._call("temperature", self._nv.nvmlDeviceGetTemperature, TEMPERATURE_GPU))

    def clock_event_reasons(self) -> int:
        """Why clocks are below maximum (bitmask, nvmlClocksEventReason*); drivers before
        535 call it throttle reasons."""
        if self._reasons_fn is None:
            try:
                value = self._call("clock event reasons",
                                   self._nv.nvmlDeviceGetCurrentClocksEventReasons)
                self._reasons_fn = self._nv.nvmlDeviceGetCurrentClocksEventReasons
                return int(value)
            except NotAvailable:
                self._reasons_fn = self._nv.nvmlDeviceGetCurrentClocksThrottleReasons
        return int(self._call("clock event reasons", self._reasons_fn))

    # --- state before a run (gpu_state.py) -------------------------------------------
    def compute_processes(self) -> List[Tuple[int, Optional[int]]]:
        """(pid, used GPU memory in bytes or None where the driver does not say) of each
        process with a compute (CUDA) context on this GPU."""
        return self._processes("compute processes", "nvmlDeviceGetComputeRunningProcesses")

    def graphics_processes(self) -> List[Tuple[int, Optional[int]]]:
        """The same for graphics (OpenGL, Vulkan, X) contexts."""
        return self._processes("graphics processes", "nvmlDeviceGetGraphicsRunningProcesses")

    def _processes(self, what: str, function: str) -> List[Tuple[int, Optional[int]]]:
        # The versioned calls: pynvml's unversioned wrappers call _v3 and turn a missing
        # symbol (an older driver) into a non-NVML error; _v2 takes the same struct
        # (nvmlProcessInfo_v2_t) and is what older drivers export.
        try:
            infos = self._call(what, getattr(self._nv, function + "_v3"))
        except NotAvailable:
            infos = self._call(what, getattr(self._nv, function + "_v2"))
        return [(int(p.pid), None if p.usedGpuMemory is None else int(p.usedGpuMemory))
                for p in infos]

    def persistence_mode(self) -> bool:
        """Whether the driver keeps the GPU initialised with no process using it (Linux;
        not supported on Windows)."""
        return int(self._call("persistence mode", self._nv.nvmlDeviceGetPersistenceMode)) == 1

    def applications_clock_mhz(self, clock: int) -> int:
        """The application clock (`nvidia-smi -ac`) of CLOCK_GRAPHICS or CLOCK_MEM. NVML
        marks the call deprecated: when a driver drops it, it is "not available"."""
        return int(self._call("application clocks",
                              self._nv.nvmlDeviceGetApplicationsClock, clock))

    def default_applications_clock_mhz(self, clock: int) -> int:
        return int(self._call("default application clocks",
                              self._nv.nvmlDeviceGetDefaultApplicationsClock, clock))

    # --- GPM (Hopper and newer) ----------------------------------------------------
    def gpm_supported(self) -> bool:
        support = self._call("GPM support", self._nv.nvmlGpmQueryDeviceSupport)
        return bool(support.isSupportedDevice)

    def gpm_window(self) -> "GpmWindow":
        return GpmWindow(self)


class GpmWindow:
    """DRAM bandwidth utilisation between two GPM samples (begin() and end())."""

    def __init__(self, device: NvmlDevice) -> None:
        self.device = device
        nv, call = device._nv, device.nvml.call
        self._samples = [call("GPM sample", nv.nvmlGpmSampleAlloc) for _ in range(2)]
        self._begun = False

    def begin(self) -> None:
        nv = self.device._nv
        self.device._call("GPM sample", nv.nvmlGpmSampleGet, self._samples[0])
        self._begun = True

    def end_dram_bw_pct(self) -> float:
        """DRAM bandwidth used since begin(), in % of the theoretical peak."""
        if not self._begun:
            raise TelemetryError("GPM window ended before it began")
        self._begun = False
        nv = self.device._nv
        self.device._call("GPM sample", nv.nvmlGpmSampleGet, self._samples[1])
        request = nv.c_nvmlGpmMetricsGet_t()
        request.version = nv.NVML_GPM_METRICS_GET_VERSION
        request.numMetrics = 1
        request.sample1, request.sample2 = self._samples
        request.metrics[0].metricId = GPM_DRAM_BW_UTIL
        self.device.nvml.call("GPM metrics", nv.nvmlGpmMetricsGet, request)
        metric = request.metrics[0]
        if metric.nvmlReturn != 0:
            raise translate(nv.NVMLError(metric.nvmlReturn), "GPM DRAM bandwidth")
        return float(metric.value)

    def close(self) -> None:
        nv = self.device._nv
        for sample in self._samples:
            try:
                nv.nvmlGpmSampleFree(sample)
            except nv.NVMLError:
                pass  # freeing after the driver went away
        self._samples = []


def static_facts(device: NvmlDevice) -> Dict[str, Any]:
    """What `gpubench env` and run.json say about one GPU; a fact the GPU does not
    report is None, with the reason under `unavailable`."""
    facts: Dict[str, Any] = {"nvml_index": device.index}
    unavailable: Dict[str, str] = {}
    queries = (
        ("name", device.name), ("uuid", device.uuid),
        ("memory_total_bytes", device.memory_total_bytes),
        ("power_limit_w", device.power_limit_w),
        ("max_sm_clock_mhz", device.max_sm_clock_mhz),
        ("max_mem_clock_mhz", device.max_mem_clock_mhz),
        ("mem_bus_width_bits", device.mem_bus_width_bits),
    )
    for key, query in queries:
        try:
            facts[key] = query()
        except TelemetryError as exc:
            facts[key] = None
            unavailable[key] = str(exc)
    if facts["mem_bus_width_bits"] and facts["max_mem_clock_mhz"]:
        facts["peak_mem_bw_gbs"] = round(
            peak_mem_bw_gbs(facts["mem_bus_width_bits"], facts["max_mem_clock_mhz"]), 1)
    else:
        facts["peak_mem_bw_gbs"] = None
        unavailable["peak_mem_bw_gbs"] = "needs the memory bus width and max memory clock"
    if unavailable:
        facts["unavailable"] = unavailable
    return facts


def driver_facts(nvml: Nvml) -> Dict[str, Any]:
    """Driver and CUDA driver versions (None with a reason when not reported)."""
    facts: Dict[str, Any] = {}
    for key, query in (("driver_version", nvml.driver_version),
                       ("cuda_driver_version", nvml.cuda_driver_version)):
        try:
            facts[key] = query()
        except TelemetryError as exc:
            facts[key] = None
            facts.setdefault("unavailable", {})[key] = str(exc)
    return facts


def gpu_inventory(fingerprint: Optional[Callable[["NvmlDevice"], Dict[str, Any]]] = None
                  ) -> Dict[str, Any]:
    """`gpubench env`'s GPU section: driver, CUDA driver and every GPU's static facts
    (with `fingerprint`, its result per GPU under that key, in the same NVML session);
    {"available": False, "reason": ...} without a usable driver."""
    try:
        nvml = Nvml()
    except TelemetryUnavailable as exc:
        return {"available": False, "reason": str(exc)}
    with nvml:
        inventory: Dict[str, Any] = {"available": True, **driver_facts(nvml)}
        try:  # `fingerprint`: each GPU's part of it beside its facts (cli/env.py's)
            inventory["gpus"] = [{**static_facts(d), **({"fingerprint": fingerprint(d)}
                                                        if fingerprint else {})}
                                 for d in nvml.devices()]
        except TelemetryError as exc:
            inventory["gpus"] = []
            inventory["reason"] = str(exc)
    return inventory
