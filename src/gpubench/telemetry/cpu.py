"""The CPU source for PollingSampler: machine CPU utilisation, this process's CPU use
and resident memory (psutil), and package energy from RAPL (/sys/class/powercap) when
it is readable. Readings go to samples.csv; the RAPL energy of each trial fills
`energy_j` (`energy_source=counter`: RAPL is an energy counter) and `power_avg_w`.

RAPL is often root-only (energy_uj has been mode 0400 since Linux 5.10) or absent (VMs,
non-x86): then energy is "not available", with the reason in run.json.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from gpubench.telemetry.errors import TelemetryError
from gpubench.telemetry.sampler import Source

POWERCAP_ROOT = Path("/sys/class/powercap")


@dataclass
class RaplDomain:
    """One package (intel-rapl:N): its counter wraps at max_energy_range_uj."""
    name: str
    path: Path
    max_range_uj: int
    last_uj: int
    total_uj: int = 0  # accumulated since the first reading, across wraps


def _read_int(path: Path) -> int:
    return int(path.read_text().strip())


def find_rapl_domains(root: Path = POWERCAP_ROOT) -> Tuple[List[RaplDomain], Optional[str]]:
    """The readable package domains under `root`, or ([], why not)."""
    if not root.is_dir():
        return [], f"no RAPL: {root} does not exist (not an x86 machine, or a VM)"
    zones = sorted(p for p in root.glob("intel-rapl:*") if p.name.count(":") == 1)
    if not zones:
        return [], f"no RAPL package domains under {root}"
    domains: List[RaplDomain] = []
    for zone in zones:
        try:
            name = (zone / "name").read_text().strip() if (zone / "name").exists() else zone.name
            domains.append(RaplDomain(name, zone / "energy_uj",
                                      _read_int(zone / "max_energy_range_uj"),
                                      _read_int(zone / "energy_uj")))
        except PermissionError:
            return [], (f"RAPL energy is not readable ({zone / 'energy_uj'}: permission denied; "
                        "it is root-only on Linux 5.10 and newer)")
        except (OSError, ValueError) as exc:
            return [], f"RAPL energy is not readable ({zone}: {exc})"
    return domains, None


class CpuSource(Source):
    name = "cpu"
    power_key = None  # RAPL's counter is read at trial edges; no power gauge to integrate
    gauges: Dict[str, str] = {}  # schema v1 has no CPU columns: the series is in samples.csv

    def __init__(self, powercap_root: Path = POWERCAP_ROOT) -> None:
        import psutil

        self._psutil = psutil
        self._process = psutil.Process(os.getpid())
        psutil.cpu_percent(None)  # the first call only sets the reference point
        self._process.cpu_percent(None)
        self._domains, self._rapl_reason = find_rapl_domains(powercap_root)

    def read(self) -> Dict[str, Any]:
        try:
            values: Dict[str, Any] = {
                "cpu_util_pct": self._psutil.cpu_percent(None),
                "proc_cpu_pct": self._process.cpu_percent(None),
                "rss_bytes": self._process.memory_info().rss,
            }
        except (OSError, self._psutil.Error) as exc:
            raise TelemetryError(f"psutil: {exc}") from None
        energy = self.energy_mj()
        if energy is not None:
            values["rapl_energy_j"] = energy / 1000.0
        return values

    def energy_mj(self) -> Optional[float]:
        """Package energy accumulated since the sampler opened, all packages, mJ."""
        if not self._domains:
            return None
        for d in self._domains:
            try:
                now = _read_int(d.path)
            except (OSError, ValueError) as exc:
                raise TelemetryError(f"RAPL {d.name}: {exc}") from None
            d.total_uj += now - d.last_uj if now >= d.last_uj else now + d.max_range_uj - d.last_uj
            d.last_uj = now
        return sum(d.total_uj for d in self._domains) / 1000.0

    def unavailable(self) -> Dict[str, str]:
        return {"energy": self._rapl_reason} if self._rapl_reason else {}

    def notes(self) -> Dict[str, Any]:
        return {"energy_counter": "RAPL package energy" if self._domains else None,
                "rapl_domains": [d.name for d in self._domains]}


def busy_seconds(times: Any) -> float:
    """CPU-seconds spent busy in psutil.cpu_times() (all CPUs): everything but idle and
    iowait. Steal (a VM's vCPU waiting for its host) counts as busy: someone else had
    the core. guest and guest_nice are already inside user and nice on Linux."""
    fields = times._asdict()
    total = sum(fields.values()) - fields.get("idle", 0.0) - fields.get("iowait", 0.0)
    return total - fields.get("guest", 0.0) - fields.get("guest_nice", 0.0)


class CpuAccount:
    """Reads what contention needs at a trial's edges: the machine's busy CPU-seconds,
    this process's own (its threads, and children it has waited for) and the number of
    logical CPUs. Two cheap psutil calls (/proc/stat, /proc/self/stat); no thread."""

    def __init__(self) -> None:
        import psutil

        self._psutil = psutil
        self._process = psutil.Process(os.getpid())
        self.cpus = psutil.cpu_count() or 1

    def read(self) -> Tuple[float, float]:
        """(machine busy CPU-seconds, this process's CPU-seconds); TelemetryError when
        psutil cannot tell."""
        try:
            machine = busy_seconds(self._psutil.cpu_times())
            own = self._process.cpu_times()
        except (OSError, self._psutil.Error) as exc:
            raise TelemetryError(f"psutil: {exc}") from None
        return machine, own.user + own.system + own.children_user + own.children_system
