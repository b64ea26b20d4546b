"""The clock and power policy: `--lock-clocks MHz|max|base` and `--power-limit WATTS`,
set on the run's GPU through NVML before its worker starts and put back after it.

The launcher's parent process sets and restores (launch/process.py, inline.py,
torchrun.py): the worker may crash or be killed, the parent lives on and restores in a
`finally` (Ctrl-C and SIGTERM reach it as KeyboardInterrupt; the restore itself runs
with SIGINT and SIGTERM blocked). What was there before is kept in a small record
(`GPUBENCH_STATE_DIR`, default ~/.local/state/gpubench, `clock-policy/gpu-<uuid>.json`)
written before anything is set and removed after the restore: where the parent itself
is SIGKILLed the next gpubench run finds the record of a process that is gone and
restores the GPU from it (or, without the permission, says how to).

- `max` locks the SM clock at the GPU's max SM clock (nvmlDeviceGetMaxClockInfo, SM);
  `base` at its default applications clock (nvmlDeviceGetDefaultApplicationsClock,
  graphics: the clock the board is specified at); a number of MHz must lie within the
  supported graphics clocks (nvmlDeviceGetSupportedGraphicsClocks at the highest
  memory clock). The lock is nvmlDeviceSetGpuLockedClocks(MHz, MHz) and its restore
  nvmlDeviceResetGpuLockedClocks (NVML cannot read a lock back: one set by someone else
  before the run is not kept).
- The power limit is nvmlDeviceSetPowerManagementLimit(mW) within
  nvmlDeviceGetPowerManagementLimitConstraints; the restore sets the limit read before
  the run (not the board's default), and the enforced limit is read back after setting.

Bad input is a UserError (one line, exit 2) before anything on the GPU changes.
"""

from __future__ import annotations

import json
import os
import signal
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from gpubench.errors import UserError
from gpubench.telemetry.errors import NotAvailable, TelemetryError, TelemetryUnavailable

# The worker's rows name the SM clock the parent locked (NVML cannot read a lock back).
LOCKED_CLOCK_ENV = "GPUBENCH_LOCKED_SM_CLOCK_MHZ"
STATE_DIR_ENV = "GPUBENCH_STATE_DIR"
_NO_PERMISSION = 4
ROOT_NEEDED = ("needs root (sudo) or NVML's permission to change the GPU (run gpubench as "
               "root, or leave out --lock-clocks and --power-limit)")


def asked(req: Any) -> bool:
    return getattr(req, "lock_clocks", None) is not None or \
        getattr(req, "power_limit_w", None) is not None


def _flags(req: Any, verb: str = "") -> str:
    """The policy flags given, with `verb` agreeing ("need": "--power-limit needs")."""
    given = [f for f, v in (("--lock-clocks", req.lock_clocks),
                            ("--power-limit", req.power_limit_w)) if v is not None]
    tail = f" {verb}" + ("s" if verb and len(given) == 1 else "") if verb else ""
    return " and ".join(given) + tail


def state_dir(env: Mapping[str, str] = os.environ) -> Path:
    base = env.get(STATE_DIR_ENV) or os.path.join(os.path.expanduser("~"), ".local", "state",
                                                  "gpubench")
    return Path(base) / "clock-policy"


@dataclass
class Plan:
    """A policy resolved against one GPU: what is set, and what was there before."""

    nvml_index: int
    uuid: str
    lock_clocks: Optional[str] = None  # as asked
    locked_mhz: Optional[int] = None
    power_limit_w: Optional[float] = None  # as asked
    limit_before_w: Optional[float] = None
    constraints_w: Optional[List[float]] = None


def _open(req: Any, env: Mapping[str, str]) -> Any:
    """NVML and the run's GPU (its CUDA ordinal --device); UserError when there is none."""
    from gpubench.telemetry.nvml import Nvml
    from gpubench.telemetry.nvml_select import select_device
    if str(req.backend).endswith("-cpu") and req.telemetry != "nvml":
        raise UserError(f"{_flags(req, 'set')} a GPU's clocks or power: backend {req.backend} "
                        "runs on the CPU (with --telemetry nvml they apply to GPU --device)")
    try:
        nvml = Nvml()
    except TelemetryUnavailable as exc:
        raise UserError(f"{_flags(req, 'need')} NVML: {exc}") from None
    try:
        return nvml, select_device(nvml, req.device_index, None, env)
    except TelemetryError as exc:
        nvml.close()
        raise UserError(f"{_flags(req, 'need')} an NVIDIA GPU: {exc}") from None


def _mhz(device: Any, ask: str) -> int:
    from gpubench.telemetry.nvml import CLOCK_GRAPHICS
    nv = device._nv
    try:
        top = device.max_sm_clock_mhz()
        if ask == "max":
            return top
        if ask == "base":
            return device.default_applications_clock_mhz(CLOCK_GRAPHICS)
        mems = device._call("supported memory clocks", nv.nvmlDeviceGetSupportedMemoryClocks)
        clocks = device._call("supported graphics clocks",
                              nv.nvmlDeviceGetSupportedGraphicsClocks, max(mems)) if mems else []
    except TelemetryError as exc:
        raise UserError(f"--lock-clocks {ask}: GPU {device.index} cannot say its clocks "
                        f"({exc})") from None
    low, high = (min(clocks), max(clocks)) if clocks else (1, top)
    if not low <= int(ask) <= high:
        raise UserError(f"--lock-clocks {ask}: GPU {device.index} supports SM clocks "
                        f"{low}-{high} MHz (or give max or base)")
    return int(ask)


def _resolve(req: Any, device: Any) -> Plan:
    nv = device._nv
    plan = Plan(device.index, device.uuid(), req.lock_clocks, None, req.power_limit_w)
    if req.lock_clocks is not None:
        plan.locked_mhz = _mhz(device, req.lock_clocks)
    if req.power_limit_w is not None:
        try:
            low, high = device._call("power limit constraints",
                                     nv.nvmlDeviceGetPowerManagementLimitConstraints)
            plan.limit_before_w = device._call(
                "power limit", nv.nvmlDeviceGetPowerManagementLimit) / 1000.0
        except TelemetryError as exc:
            raise UserError(f"--power-limit: GPU {device.index} cannot report its power "
                            f"limit ({exc})") from None
        plan.constraints_w = [low / 1000.0, high / 1000.0]
        if not low <= req.power_limit_w * 1000 <= high:
            raise UserError(f"--power-limit {req.power_limit_w:g} W is outside GPU "
                            f"{device.index}'s range {low / 1000:g}-{high / 1000:g} W")
    return plan


def check(req: Any, env: Mapping[str, str] = os.environ) -> None:
    """The policy's bad input (no GPU, NVML absent, a limit or clock out of range) as a
    UserError, changing nothing; a run without a policy passes untouched."""
    if not asked(req):
        return
    nvml, device = _open(req, env)
    with nvml:
        _resolve(req, device)


def _set(device: Any, what: str, fn: Any, *args: Any) -> None:
    try:
        device._call(what, fn, *args)
    except NotAvailable as exc:
        if f"NVML error {_NO_PERMISSION})" in str(exc):
            raise UserError(f"{what} on GPU {device.index} {ROOT_NEEDED}") from None
        raise UserError(f"{what} on GPU {device.index}: {exc}") from None
    except TelemetryError as exc:
        raise UserError(f"{what} on GPU {device.index}: {exc}") from None


def _restore(device: Any, record: Mapping[str, Any]) -> Dict[str, Any]:
    """Puts back what `record` says was there; what was restored (errors named)."""
    nv, done, errors = device._nv, {}, []
    if record.get("locked"):
        try:
            device._call("unlock clocks", nv.nvmlDeviceResetGpuLockedClocks)
            done["clocks"] = "unlocked"
        except TelemetryError as exc:
            errors.append(f"clocks still locked ({exc}): nvidia-smi -i {device.index} -rgc")
    if record.get("limit_before_w") is not None and record.get("limit_set"):
        before = record["limit_before_w"]
        try:
            device._call("power limit", nv.nvmlDeviceSetPowerManagementLimit,
                         int(round(before * 1000)))
            done["power_limit_w"] = device._call(
                "power limit", nv.nvmlDeviceGetEnforcedPowerLimit) / 1000.0
        except TelemetryError as exc:
            errors.append(f"power limit not restored to {before:g} W ({exc}): "
                          f"nvidia-smi -i {device.index} -pl {before:g}")
    if errors:
        done["errors"] = errors
    return done


def _record_path(plan_or_uuid: Any, env: Mapping[str, str]) -> Path:
    uuid = getattr(plan_or_uuid, "uuid", plan_or_uuid)
    return state_dir(env) / f"gpu-{uuid}.json"


def _write_record(path: Path, record: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover(env: Mapping[str, str] = os.environ) -> List[str]:
    """Restores GPUs from the records of gpubench processes that died before restoring
    (SIGKILL); one warning line per GPU. Cheap when there is none (one listdir)."""
    folder = state_dir(env)
    try:
        names = sorted(p for p in folder.iterdir() if p.suffix == ".json")
    except OSError:
        return []
    stale = []
    for path in names:
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not _alive(int(record.get("pid", 0))):
            stale.append((path, record))
    if not stale:
        return []
    from gpubench.telemetry.nvml import Nvml
    lines = []
    try:
        nvml = Nvml()
    except TelemetryUnavailable as exc:
        return [f"a gpubench run (pid {r.get('pid')}) died before restoring GPU {r.get('uuid')}'s "
                f"clock policy, and NVML cannot restore it now ({exc}); record: {p}"
                for p, r in stale]
    with nvml:
        by_uuid = {d.uuid(): d for d in nvml.devices()}
        for path, record in stale:
            device = by_uuid.get(record.get("uuid"))
            if device is None:
                continue
            done = _restore(device, record)
            what = ", ".join(f"{k} {v}" for k, v in done.items() if k != "errors")
            line = (f"GPU {device.index}: gpubench process {record.get('pid')} was killed "
                    f"before restoring its clock policy; restored from {path.name}: "
                    f"{what or 'nothing to do'}")
            if done.get("errors"):
                line += "; NOT restored: " + "; ".join(done["errors"])
            else:
                path.unlink(missing_ok=True)
            lines.append(line)
    return lines


@dataclass
class Applied:
    """A policy in force on one GPU until `restore()` (safe to call twice)."""

    plan: Plan
    record_path: Path
    nvml: Any
    device: Any
    record: Dict[str, Any]
    set_values: Dict[str, Any] = field(default_factory=dict)
    recovered: List[str] = field(default_factory=list)
    restored: Optional[Dict[str, Any]] = None

    def restore(self) -> Dict[str, Any]:
        if self.restored is not None:
            return self.restored
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            self.restored = _restore(self.device, self.record)
            if not self.restored.get("errors"):
                self.record_path.unlink(missing_ok=True)
            self.nvml.close()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        os.environ.pop(LOCKED_CLOCK_ENV, None)
        return self.restored

    def summary(self) -> Dict[str, Any]:
        """run.json's `clock_policy`: asked, set (read back) and restored."""
        return {"gpu": {"nvml_index": self.plan.nvml_index, "uuid": self.plan.uuid},
                "asked": {"lock_clocks": self.plan.lock_clocks,
                          "power_limit_w": self.plan.power_limit_w},
                "before": {"power_limit_w": self.plan.limit_before_w},
                "constraints_w": self.plan.constraints_w,
                "set": self.set_values, "restored": self.restored,
                **({"recovered": self.recovered} if self.recovered else {})}


def apply(req: Any, env: Mapping[str, str] = os.environ) -> Optional[Applied]:
    """Sets the policy `req` asks for (None: it asks none). UserError, with the GPU as it
    was, when it cannot (no permission: 'needs root (sudo) ...')."""
    if not asked(req):
        return None
    recovered = recover(env)  # a killed run's policy first: "before" is then the board's
    nvml, device = _open(req, env)
    try:
        plan = _resolve(req, device)
    except BaseException:
        nvml.close()
        raise
    record = {"pid": os.getpid(), "uuid": plan.uuid, "nvml_index": plan.nvml_index,
              "limit_before_w": plan.limit_before_w, "limit_set": False, "locked": False}
    path = _record_path(plan, env)
    applied = Applied(plan, path, nvml, device, record, recovered=recovered)
    nv = device._nv
    try:
        _write_record(path, record)
        if plan.power_limit_w is not None:
            record["limit_set"] = True
            _write_record(path, record)
            try:
                _set(device, "setting the power limit", nv.nvmlDeviceSetPowerManagementLimit,
                     int(round(plan.power_limit_w * 1000)))
            except UserError:
                record["limit_set"] = False  # refused: nothing changed
                raise
            applied.set_values["power_limit_w"] = device._call(
                "power limit", nv.nvmlDeviceGetEnforcedPowerLimit) / 1000.0
        if plan.locked_mhz is not None:
            record["locked"] = True
            _write_record(path, record)
            try:
                _set(device, "locking the clocks", nv.nvmlDeviceSetGpuLockedClocks,
                     plan.locked_mhz, plan.locked_mhz)
            except UserError:
                record["locked"] = False
                raise
            applied.set_values["locked_sm_clock_mhz"] = plan.locked_mhz
            os.environ[LOCKED_CLOCK_ENV] = str(plan.locked_mhz)
    except BaseException:
        applied.restore()  # a set refused (no permission): put back what did change
        raise
    return applied


def row_columns(gpu_facts: Mapping[str, Any],
                env: Mapping[str, str] = os.environ) -> Dict[str, Any]:
    """The worker's rows: the enforced power limit NVML reported at the run's start
    (with or without a policy) and the SM clock the launcher locked (empty: none)."""
    locked = env.get(LOCKED_CLOCK_ENV)
    return {"enforced_power_limit_w": (gpu_facts or {}).get("power_limit_w"),
            "locked_sm_clock_mhz": int(locked) if locked else None}


def as_json(plan: Plan) -> Dict[str, Any]:
    return asdict(plan)
