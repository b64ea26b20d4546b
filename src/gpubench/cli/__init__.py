"""The command line. One module per subcommand; UserError is caught once here and turned
into one line on stderr and exit code 2. Subcommand modules import heavy things
(pandas, frameworks) only inside their `execute`, so `gpubench list` stays fast.

Exit codes (shared by every command): 0 ok, 1 regression found, 2 bad usage or input,
3 inconclusive (with --fail-on inconclusive), 4 a run failed, 130 interrupted (Ctrl-C),
143 terminated (SIGTERM, what a CI cancel sends). An interruption and a SIGTERM take the
same path (KeyboardInterrupt): what finished is written before the command exits.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any, Dict, List, NoReturn, Optional

from gpubench import __version__
from gpubench.errors import UserError

EXIT_OK, EXIT_REGRESSION, EXIT_USAGE, EXIT_INCONCLUSIVE, EXIT_RUN_FAILED = 0, 1, 2, 3, 4
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT)
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143: SIGTERM, e.g. a cancelled CI job

SUBCOMMANDS = ("run", "suite", "show", "export", "compare", "history", "report", "list", "env",
               "envs", "data",
               "store", "dashboard")


DESCRIPTION = ("Benchmark deep-learning training and inference on GPUs (and CPUs): run "
               "workloads through PyTorch, TensorFlow, ONNX Runtime or TensorRT, record "
               "throughput, latency, power and energy per trial, and compare results across "
               "drivers, frameworks and machines.")
EPILOG = ("Exit codes: 0 ok, 1 regression found, 2 bad usage or input, 3 inconclusive "
          "(with --fail-on inconclusive), 4 a run failed, 130 interrupted (Ctrl-C), "
          "143 terminated (SIGTERM). "
          "'gpubench COMMAND --help' describes each command.")


def error_line(message: str) -> None:
    print(f"gpubench: error: {message}", file=sys.stderr)


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (not usage + error)."""

    def error(self, message: str) -> NoReturn:
        error_line(f"{message} (see '{self.prog} --help')")
        raise SystemExit(EXIT_USAGE)


def build_parser(lazy: bool = False) -> ArgumentParser:
    """Every command's parser. A command whose arguments cost imports to make (`run`'s
    come from the option declaration) leaves them to its `add_arguments`; with `lazy`
    (main) they are added when that command parses, so `gpubench list` makes none."""
    import importlib

    parser = ArgumentParser(prog="gpubench", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"gpubench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"gpubench.cli.{name}").add_parser(sub)
    for command in sub.choices.values():
        add_arguments = getattr(command, "add_arguments", None)
        if add_arguments is not None:
            (_when_parsing if lazy else add_arguments)(command)
    return parser


def _when_parsing(command: argparse.ArgumentParser) -> None:
    """Adds the command's arguments when it first parses (its own line, or its --help)."""
    parse = command.parse_known_args

    def parse_known_args(*args: Any, **kwargs: Any) -> Any:
        command.parse_known_args = parse  # once
        command.add_arguments(command)
        return parse(*args, **kwargs)
    command.parse_known_args = parse_known_args


class StopSignals:
    """SIGINT and SIGTERM both raise KeyboardInterrupt, so a cancelled CI job (SIGTERM)
    writes what finished exactly as Ctrl-C does. The first signal wins; later ones are
    ignored, so that they cannot cut that writing short (a CI cancel sends SIGINT, then
    SIGTERM seconds later). Remembers which came, for the exit code and the message."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self._saved: Dict[int, Any] = {}

    def __enter__(self) -> "StopSignals":
        from gpubench.measure import interrupt  # light; imported here, not in the handler

        self._interrupt = interrupt
        interrupt.clear()
        if threading.current_thread() is threading.main_thread():  # else signal() refuses
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._saved[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is None:
            self.signum = signum
            # a run in this process (--no-isolate) checks it: a finalizer may swallow
            # the raise below
            self._interrupt.request()
            raise KeyboardInterrupt

    def __exit__(self, *exc: object) -> None:
        self._interrupt.clear()
        for signum, handler in self._saved.items():
            if handler is not None:
                signal.signal(signum, handler)

    def ending(self, detail: str) -> int:
        """Says how the command was stopped (and `detail`: what was kept) in one line;
        returns the exit code."""
        terminated = self.signum == signal.SIGTERM
        word = "terminated (SIGTERM)" if terminated else "interrupted"
        error_line(f"{word}: {detail}" if detail else word)
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser(lazy=True)
    args = parser.parse_args(argv)
    with StopSignals() as stop:
        try:
            return int(args.execute(args) or 0)
        except UserError as exc:
            error_line(str(exc))
            return EXIT_USAGE
        except KeyboardInterrupt as exc:  # the message, if any, says what was kept
            return stop.ending(str(exc))
        except BrokenPipeError:  # `gpubench list | head`
            return EXIT_OK
