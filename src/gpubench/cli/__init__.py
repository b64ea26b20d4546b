"""The command line. One module per subcommand; UserError is caught once here and turned
into one line on stderr and exit code 2. Subcommand modules import heavy things
(pandas, frameworks) only inside their `execute`, so `gpubench list` stays fast.

Exit codes (shared by every command): 0 ok, 1 regression found, 2 bad usage or input,
3 inconclusive (with --fail-on inconclusive), 4 a run failed, 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, NoReturn, Optional

from gpubench import __version__
from gpubench.errors import UserError

EXIT_OK, EXIT_REGRESSION, EXIT_USAGE, EXIT_INCONCLUSIVE, EXIT_RUN_FAILED = 0, 1, 2, 3, 4
EXIT_INTERRUPTED = 130

SUBCOMMANDS = ("run", "suite", "export", "compare", "report", "list", "env")


def error_line(message: str) -> None:
    print(f"gpubench: error: {message}", file=sys.stderr)


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (not usage + error)."""

    def error(self, message: str) -> NoReturn:
        error_line(f"{message} (see '{self.prog} --help')")
        raise SystemExit(EXIT_USAGE)


def build_parser() -> ArgumentParser:
    import importlib

    parser = ArgumentParser(prog="gpubench", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"gpubench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"gpubench.cli.{name}").add_parser(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.execute(args) or 0)
    except UserError as exc:
        error_line(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        error_line("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `gpubench list | head`
        return EXIT_OK
