"""`gpubench data fetch|path DATASET`: download a real dataset (MNIST) into the data
folder, or say where it is looked for and whether it is there. The folder goes to
stdout (for scripts), everything else to stderr."""

from __future__ import annotations

import argparse
import sys

from gpubench.cli.argtypes import path_text, positive_float


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "data", help="download real datasets (MNIST) or show where they are",
        description="Real datasets for `gpubench run --data`. Files live in "
                    "$GPUBENCH_DATA_DIR (default ~/.cache/gpubench/data), one folder per "
                    "dataset, or in a folder given with --data-dir.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True,
                               help="fetch (download) or path (where it is)")
    data_dir_help = ("folder holding the dataset's files, or a data folder with a "
                     "DATASET subfolder (default: $GPUBENCH_DATA_DIR, else ~/.cache/gpubench/data)")

    fetch = actions.add_parser(
        "fetch", help="download a dataset (SHA-256 checked, all or nothing)",
        description="Download a dataset's files, trying each mirror in turn; files already "
                    "there with the right SHA-256 are kept. Nothing is changed unless every "
                    "file is verified. Prints the dataset folder.")
    fetch.add_argument("dataset", metavar="DATASET", help="mnist")
    fetch.add_argument("--data-dir", type=path_text, metavar="DIR", help=data_dir_help)
    fetch.add_argument("--mirror", metavar="URL", action="append",
                       help="base URL to download from, tried in the order given "
                            "(repeatable; default: $GPUBENCH_MNIST_MIRRORS, comma-separated, "
                            "else the public mirrors)")
    fetch.add_argument("--timeout-s", type=positive_float, default=30.0, metavar="S",
                       help="give up on a mirror that sends nothing for this long (default 30)")
    fetch.set_defaults(execute=execute_fetch)

    path = actions.add_parser(
        "path", help="where a dataset is looked for, and whether it is there",
        description="Print the folder a dataset is read from; exit 0 if its files are there "
                    "and load, 2 (with what is wrong) if not.")
    path.add_argument("dataset", metavar="DATASET", help="mnist")
    path.add_argument("--data-dir", type=path_text, metavar="DIR", help=data_dir_help)
    path.set_defaults(execute=execute_path)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def execute_fetch(args: argparse.Namespace) -> int:
    from gpubench.data.fetch import fetch_dataset

    folder = fetch_dataset(args.dataset, data_dir=args.data_dir, mirrors=args.mirror,
                           progress=_stderr, timeout_s=args.timeout_s)
    print(folder)
    return 0


def execute_path(args: argparse.Namespace) -> int:
    from gpubench.data.fetch import check_dataset
    from gpubench.data.mnist import load_mnist, mnist_folder

    check_dataset(args.dataset)
    print(mnist_folder(args.data_dir), flush=True)
    sets = load_mnist(args.data_dir)  # DataError: one line on stderr, exit 2
    _stderr(f"{args.dataset}: present: {len(sets.train_y):,} training and "
            f"{len(sets.test_y):,} test images")
    return 0
