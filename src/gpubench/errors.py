"""The project's own error types. Framework and vendor errors are translated into these
where they are caught, so the CLI can turn them into one line and an exit code."""


class GpubenchError(Exception):
    """Base class of gpubench's errors."""


class UserError(GpubenchError):
    """Bad usage or bad input: the CLI prints one line and exits with code 2."""


class BackendUnavailable(UserError):
    """The backend cannot run on this machine; the message says why."""


class Unsupported(UserError):
    """The backend cannot run this configuration (mode, precision); a suite row
    records it as status=unsupported, a single run exits 2."""
