"""`gpubench store add | ls | query`: a results store (results/store/, docs/store.md):
run and suite folders gathered into Parquet files partitioned by month and machine, that
several runners may add to at once and DuckDB queries."""

from __future__ import annotations

import argparse
import sys

from gpubench.cli.argtypes import path_arg

LS_FORMATS = ("text", "json")
QUERY_FORMATS = ("text", "csv", "json")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "store", help="a results store (Parquet, queried by DuckDB): add runs, list, query",
        description="A results store gathers run and suite folders into Parquet files "
                    "(partitioned by month and machine) that DuckDB reads: many runners' "
                    "nights in one place, read fast. See docs/store.md.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True,
                               help="add (ingest folders), ls (what it holds), query (SQL)")

    add = actions.add_parser(
        "add", help="add run and suite folders to a store (made if absent)",
        description="Add the runs under RESULTS (run folders, suite folders, trials.csv "
                    "files or folders of them, searched recursively; older schema versions "
                    "migrated) to STORE, made if it does not exist. A run already in the "
                    "store (by run id) is skipped, so adding a folder twice adds nothing; "
                    "several `store add` may run at once. A folder that cannot be read is "
                    "named on stderr and the others are added; exit 2 only if none could be.")
    add.add_argument("store", type=path_arg, metavar="STORE", help="the store's folder")
    add.add_argument("results", type=path_arg, nargs="+", metavar="RESULTS",
                     help="run folders, suite folders, trials.csv files or folders of them")
    add.add_argument("--samples", action="store_true",
                     help="add the runs' telemetry samples (samples.csv) too")
    add.set_defaults(execute=execute_add)

    ls = actions.add_parser(
        "ls", help="what a store holds: runs, configurations, machines, dates, files",
        description="Runs, trial and sample rows, configurations, machines, the date range, "
                    "files and bytes, and the schema versions the runs were written with. A "
                    "corrupt file is listed as such; the figures are the other files'.")
    ls.add_argument("store", type=path_arg, metavar="STORE", help="the store's folder")
    ls.add_argument("--format", choices=LS_FORMATS, default="text", help="text (default) or json")
    ls.set_defaults(execute=execute_ls)

    query = actions.add_parser(
        "query", help="run SQL (DuckDB) over a store's trials, runs and samples",
        description="Run one SQL statement (DuckDB's dialect) over the views trials, runs "
                    "and samples (their columns: docs/store.md). A query that fails is one "
                    "line on stderr, exit 2.")
    query.add_argument("store", type=path_arg, metavar="STORE", help="the store's folder")
    query.add_argument("sql", metavar="SQL",
                       help='e.g. "SELECT workload, backend, count(*) FROM trials GROUP BY ALL"')
    query.add_argument("--format", choices=QUERY_FORMATS, default="text",
                       help="text (aligned columns, default), csv or json (records)")
    query.set_defaults(execute=execute_query)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def execute_add(args: argparse.Namespace) -> int:
    from gpubench.cli import EXIT_OK, EXIT_USAGE
    from gpubench.results.store import ingest, layout, write

    ingest.check_inputs(args.results)
    store = layout.create_store(args.store)
    runs = trials = samples = skipped = sources = unreadable = 0
    for part in ingest.gather(args.results, samples=args.samples,
                              progress=lambda n, done, total: _stderr(
                                  f"store add: {n:,} runs read ({done} of {total} folders)")):
        for message in part.unreadable:
            _stderr(f"gpubench: not added: {message}")
        unreadable += len(part.unreadable)
        sources += part.sources
        if part.sources:
            added = write.write(store, *part.frames())
            runs, trials, samples = runs + added.runs, trials + added.trials, samples + added.samples
            skipped += added.skipped
    if not sources:
        _stderr(f"gpubench: error: nothing under {', '.join(map(str, args.results))} could be "
                "read; nothing added")
        return EXIT_USAGE
    rows = _plural(trials, "trial row") + (f", {_plural(samples, 'sample row')}"
                                           if args.samples else "")
    print(f"added {_plural(runs, 'run')} ({rows}) from {_plural(sources, 'folder')}, "
          f"skipped {skipped:,} already in the store, {unreadable:,} unreadable")
    return EXIT_OK


def execute_ls(args: argparse.Namespace) -> int:
    import json

    from gpubench.results.store.inspect import describe, ls_text

    found = describe(args.store)
    sys.stdout.write(json.dumps(found, indent=2) + "\n" if args.format == "json"
                     else ls_text(found) + "\n")
    return 0


def execute_query(args: argparse.Namespace) -> int:
    from gpubench.results.store.inspect import frame_text, query

    sys.stdout.write(frame_text(query(args.store, args.sql), args.format))
    return 0
