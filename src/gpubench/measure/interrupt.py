"""An interrupt that cannot be lost. A signal handler that raises KeyboardInterrupt can
land inside a finalizer or a callback (torch.compile's, say), where Python prints
"Exception ignored in: ..." and goes on: the run would finish every trial after
gpubench was told to stop. So the handler also records the request here, and the run
checks it at every phase boundary and before every trial (`interruptible`)."""

from __future__ import annotations

from typing import Any, Callable, List

_requested: List[bool] = []


def request() -> None:
    """Called by the signal handler (before it raises KeyboardInterrupt)."""
    _requested.append(True)


def clear() -> None:
    """A command run in-process (tests, --no-isolate) starts with no request."""
    _requested.clear()


def requested() -> bool:
    return bool(_requested)


def check() -> None:
    """KeyboardInterrupt when an interrupt was requested, even one swallowed since."""
    if _requested:
        raise KeyboardInterrupt


def interruptible(progress: Callable[..., None]) -> Callable[..., None]:
    """`progress` that first checks for an interrupt: the runner reports every phase
    through it and every scenario every trial (epoch, probe, message size)."""
    def checked(event: str, **fields: Any) -> None:
        check()
        progress(event, **fields)
    return checked
