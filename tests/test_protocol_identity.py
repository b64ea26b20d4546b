"""What changes the work measured is part of a configuration's identity (issue 13):
`threads` and the data source `data` are configuration columns, so compare never
matches or pools a `--threads 1` run with a default-threads one, and a suite resumed
with other threads runs again. (`seed` is not: other values, the same work.)"""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from conftest import FAST_RUN, run_cli_here  # the commands in this process; runs keep their worker
from gpubench.results import schema
from gpubench.results.reader import read_trials
from gpubench.results.summary import summarize

V1_RUN = Path(__file__).parent / "fixtures" / "v1_run"


def test_threads_and_data_are_declared_and_seed_is_not():
    assert {"threads", "data"} <= set(schema.CONFIGURATION_COLUMNS)
    assert "seed" not in schema.CONFIGURATION_COLUMNS
    assert schema.CONFIGURATION_DEFAULTS["data"] == "synthetic"
    assert schema.CONFIGURATION_DEFAULTS["threads"] is None  # the framework's own default
    assert {"threads", "data"} <= set(schema.match_columns())
    assert {"threads", "data"} <= set(schema.dedup_columns()) & set(schema.group_columns())
    assert {"threads", "data"} <= set(schema.trial_columns())


def test_v1_rows_read_as_synthetic_data_with_threads_unknown():
    trials = read_trials(V1_RUN / "trials.csv")
    assert set(trials["data"]) == {"synthetic"}
    assert trials["threads"].isna().all()  # v1 never recorded it: empty, never a guess


def test_labels_show_threads_only_when_asked():
    row = {"workload": "mnist", "backend": "torch-cpu", "threads": 1.0, "data": "synthetic"}
    assert ("threads", "1") in schema.non_default_configuration(row)
    assert schema.non_default_configuration({**row, "threads": None}) == ()


def test_summary_never_pools_runs_of_other_threads():
    frame = read_trials(V1_RUN / "trials.csv")
    rows = pd.concat([frame.assign(threads=1.0), frame.assign(threads=None)], ignore_index=True)
    summary = summarize(rows)
    assert len(summary) == 2
    assert list(summary["n_ok"]) == [len(frame), len(frame)]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """linreg on torch-cpu run twice by the real command: `--threads 1`, then the
    framework's default threads (their folders)."""
    pytest.importorskip("torch")
    root = tmp_path_factory.mktemp("threads")
    folders = {}
    for name, extra in (("one", ("--threads", "1")), ("default", ())):
        proc = run_cli_here("run", "-w", "linreg", "-b", "torch-cpu", *FAST_RUN, *extra,
                            "--telemetry", "none", "--out", str(root / name), "-q")
        assert proc.returncode == 0, proc.stderr
        folders[name] = next((root / name).glob("*/trials.csv")).parent
    return folders


def test_a_run_records_its_threads_and_data(two_runs):
    one = pd.read_csv(two_runs["one"] / "trials.csv")
    default = pd.read_csv(two_runs["default"] / "trials.csv")
    assert set(one["threads"]) == {1} and default["threads"].isna().all()
    assert set(one["data"]) == set(default["data"]) == {"synthetic"}


def test_compare_lists_a_threads_1_run_apart_from_default_threads(two_runs, tmp_path):
    # new holds both runs: the default-threads one matches base, the --threads 1 one
    # is new_only (before: both pooled into one configuration, 4 trials against 2).
    new = tmp_path / "new"
    for name, folder in two_runs.items():
        shutil.copytree(folder, new / folder.name)
    # --include-contended: a trial this busy machine slowed down stays counted (by
    # default compare leaves it out, and the counts below would be the machine's)
    proc = run_cli_here("compare", str(two_runs["default"]), str(new), "--format", "json",
                        "--include-contended")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["rows"]
    by_threads = {schema.key_text(r["threads"]): r for r in rows}
    assert sorted(by_threads) == ["", "1"], rows
    assert by_threads["1"]["verdict"] == "new_only"
    assert by_threads[""]["verdict"] not in ("base_only", "new_only")
    assert (by_threads[""]["n_base"], by_threads[""]["n_new"]) == (2, 2)


def test_compare_of_threads_1_against_default_threads_alone_matches_nothing(two_runs):
    # Before: matched, and a verdict ("slower -16%") on what is other work.
    proc = run_cli_here("compare", str(two_runs["default"]), str(two_runs["one"]))
    assert proc.returncode == 2, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpubench: error: nothing matches")
    assert "threads" in lines[0]


def _resume_dry_run(case, done, threads_line):
    """`suite --resume --dry-run` (in the new folder `case`) over a suite folder holding
    the rows of run `done`, the suite file setting `threads_line` in its defaults:
    (runs to do, runs skipped)."""
    out = case / "out"
    folder = out / "20261130T000000Z-vm-suite000"
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"kind": "suite", "suite_name": "s"}))
    shutil.copy(done / "trials.csv", folder / "trials.csv")
    config = case / "s.yaml"
    defaults = f"defaults: {{{threads_line}}}\n" if threads_line else ""
    config.write_text(defaults + "runs:\n  - {workloads: [linreg], backends: [torch-cpu]}\n")
    proc = run_cli_here("suite", str(config), "--out", str(out), "--resume", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    skipped = "1 already ok (skipped by --resume)" in last
    return int(last.split()[0]), int(skipped)


def test_a_suite_resumes_only_runs_of_its_threads(two_runs, tmp_path):
    assert _resume_dry_run(tmp_path / "a", two_runs["one"], "threads: 1") == (0, 1)
    assert _resume_dry_run(tmp_path / "b", two_runs["one"], "threads: 2") == (1, 0)
    assert _resume_dry_run(tmp_path / "c", two_runs["one"], "") == (1, 0)
    assert _resume_dry_run(tmp_path / "d", two_runs["default"], "") == (0, 1)
