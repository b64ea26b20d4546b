"""Result files damaged on disk (issue 12): a trials.csv cut mid-line, text where a
number belongs, a run.json that does not parse. Every reader says so in one line
naming the file (and the line), exit 2; none reads on as if the damage were data or
the file were absent, and none changes what is on disk."""

import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import run_cli_here  # the commands in this process: their output is under test
from gpubench.errors import UserError
from gpubench.results.reader import read_run, read_trials
from test_compare import make_trials, one_error_line, write_run


def _run(folder: Path, **columns) -> Path:
    return write_run(folder, make_trials((6, 1000.0), seed=1, **columns))


def _cut_last_line(path: Path, before: str) -> None:
    """Cuts trials.csv's last line in the middle of its first `before` text, as a copy
    or a disk that filled up would (no newline at the end)."""
    lines = path.read_text().splitlines(keepends=True)
    last = lines[-1]
    path.write_text("".join(lines[:-1]) + last[:last.index(before) + len(before) // 2])


@pytest.mark.parametrize("cut_in", ["1980", "6400,"])  # inside a number; after a comma
def test_a_trials_csv_cut_mid_line_is_one_error_for_compare_and_report(tmp_path, cut_in):
    good = _run(tmp_path / "good")
    cut = _run(tmp_path / "cut")
    _cut_last_line(cut / "trials.csv", cut_in)
    before = (cut / "trials.csv").read_bytes()
    # Was: report crashed (TypeError sorting statuses), compare dropped the row, exit 0.
    one_error_line(run_cli_here("compare", str(good), str(cut)), f"{cut / 'trials.csv'}: line 7",
                   "cut short", "no newline")
    one_error_line(run_cli_here("report", str(cut), "-o", str(tmp_path / "r.html")),
                   f"{cut / 'trials.csv'}: line 7", "cut short")
    assert not (tmp_path / "r.html").exists()
    assert (cut / "trials.csv").read_bytes() == before


def test_a_short_row_inside_the_file_names_its_line(tmp_path):
    folder = _run(tmp_path / "run")
    lines = (folder / "trials.csv").read_text().splitlines(keepends=True)
    lines[3] = lines[3][:lines[3].index(",ok,")] + "\n"  # the status and error are gone
    (folder / "trials.csv").write_text("".join(lines))
    with pytest.raises(UserError, match=r"trials.csv: line 4 has \d+ fields, the header \d+: a "
                                        "malformed row"):
        read_trials(folder / "trials.csv")


def test_text_in_a_numeric_column_is_refused_by_the_reader_at_its_real_line(tmp_path):
    """Every reader gets the check (not only compare), and the line number counts the
    lines of an error text quoted over several lines."""
    frame = make_trials((4, 1000.0), seed=1)
    frame["error"] = frame["error"].astype(object)
    frame.loc[0, "error"] = "Traceback (most recent call last):\n  File x\nRuntimeError: y"
    frame["throughput_samples_per_s"] = frame["throughput_samples_per_s"].astype(object)
    frame.loc[2, "throughput_samples_per_s"] = "1.5e"  # a number cut inside
    folder = write_run(tmp_path / "run", frame)
    # header line 1, row 0 on lines 2-4, row 1 on line 5, row 2 on line 6
    with pytest.raises(UserError, match=r"throughput_samples_per_s .* '1.5e' on line 6"):
        read_trials(folder / "trials.csv")
    one_error_line(run_cli_here("report", str(folder), "-o", str(tmp_path / "r.html")),
                   "throughput_samples_per_s", "'1.5e' on line 6")


def test_a_row_without_a_status_is_refused(tmp_path):
    folder = _run(tmp_path / "run")
    frame = pd.read_csv(folder / "trials.csv", dtype=str, keep_default_na=False)
    frame.loc[4, "status"] = ""
    frame.to_csv(folder / "trials.csv", index=False)
    with pytest.raises(UserError, match="line 6 has no status"):
        read_trials(folder / "trials.csv")


def _suite_out(tmp_path: Path, run_json: str, trials: bool = True) -> Path:
    out = tmp_path / "out"
    suite = out / "20261130T000000Z-vm-suite000"
    if trials:
        _run(suite)
    else:
        suite.mkdir(parents=True)
    (suite / "run.json").write_text(run_json)
    return out


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "s.yaml"
    config.write_text("runs:\n  - {workloads: [linreg], backends: [torch-cpu]}\n")
    return config


def test_resume_over_a_cut_trials_csv_is_an_error(tmp_path):
    from gpubench.suite.plan import plan_suite
    out = _suite_out(tmp_path, json.dumps({"kind": "suite", "suite_name": "s"}))
    trials = next(out.glob("*/trials.csv"))
    _cut_last_line(trials, "6400,")
    with pytest.raises(UserError, match="line 7 is cut short"):
        plan_suite(_config(tmp_path), out, resume=True)


CORRUPT = '{"kind": "suite", "suite_name": "s", "runs": [{"run_id": "r1", "st'


@pytest.mark.parametrize("text", [CORRUPT, "", "[1, 2]"])
def test_a_corrupt_run_json_is_one_error_for_compare_and_report(tmp_path, text):
    good = _run(tmp_path / "good")
    bad = _run(tmp_path / "bad")
    (bad / "run.json").write_text(text)
    # Was: both read the trials and ignored the run.json.
    one_error_line(run_cli_here("compare", str(good), str(bad)), str(bad / "run.json"), "corrupt")
    one_error_line(run_cli_here("report", str(good), str(tmp_path), "-o", str(tmp_path / "r.html")),
                   str(bad / "run.json"), "corrupt")
    assert (bad / "run.json").read_text() == text
    with pytest.raises(UserError, match="run.json: corrupt"):
        read_run(bad)


def test_resume_names_a_corrupt_run_json_instead_of_finding_nothing(tmp_path):
    out = _suite_out(tmp_path, CORRUPT, trials=False)
    proc = run_cli_here("suite", str(_config(tmp_path)), "--out", str(out), "--resume", "-q")
    # Was: "--resume: no earlier results of suite 's'" (the corrupt file skipped).
    line = one_error_line(proc, "--resume", str(next(out.glob("*/run.json"))), "corrupt")
    assert "no earlier results" not in line
    assert next(out.glob("*/run.json")).read_text() == CORRUPT
    assert [p.name for p in out.iterdir()] == ["20261130T000000Z-vm-suite000"]
