"""Telemetry's own error types. Vendor errors (pynvml's NVMLError, OSError from sysfs)
are translated into these where they are caught (telemetry/nvml.py, telemetry/cpu.py),
so the sampler and make_sampler handle one family of errors."""

from gpubench.errors import GpubenchError


class TelemetryError(GpubenchError):
    """A query failed now; it may work later (a driver hiccup, a lost GPU): the sampler
    records a gap and goes on."""


class NotAvailable(TelemetryError):
    """The device, driver or permissions do not provide this quantity at all: it is
    "not available" for the whole run, recorded once with this reason."""


class TelemetryUnavailable(TelemetryError):
    """The telemetry backend cannot be used at all (no driver, NVML init failed, no
    such GPU); the message says why."""
