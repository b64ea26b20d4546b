"""What the commands show people: result tables that never cut a number at any width
(80 and 120 columns, piped), bandwidth labelled with its source, help text for every
option, progress without "None" and with an ETA, suite labels that keep their
parameters, and `gpubench show` / `suite --format json`."""

import argparse
import io
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from conftest import FAST_RUN, run_cli_here

NUMBER = re.compile(r"^±?-?[0-9][0-9,]*(\.[0-9]+)?%?$")
FRACTION = re.compile(r"^[0-9]+/[0-9]+$")


def cli_at(columns, *args):
    """The real command with COLUMNS set (or unset: None), stdout piped as in CI. In this
    process (the layout, not the process, is under test here): run_cli_here renders to a
    pipe, not a terminal, exactly as a subprocess's captured stdout is."""
    return run_cli_here(*args, columns=columns)


def table_cells(text):
    """The data cells of every rich table in `text`: (header words, cells of each row
    line). Rows are the lines between the header rule (┡) and the bottom (└)."""
    rows, inside = [], False
    for line in text.splitlines():
        if line.startswith("┡"):
            inside = True
        elif line.startswith("└"):
            inside = False
        elif inside and line.startswith("│"):
            rows.append([c.strip() for c in line.strip().strip("│").split("│")])
    return rows


def assert_numbers_whole(text, allowed_words, width=None):
    assert "…" not in text, text
    assert "e-0" not in text and "e+0" not in text, text
    if width is not None:
        assert max(len(line) for line in text.splitlines()) <= width, text
    rows = table_cells(text)
    assert rows, text
    numbers = 0
    for row in rows:
        for cell in row:
            if not cell:
                continue
            parts = cell.removesuffix(" (rose)").split(" → ")  # loss: first step → last trial
            if all(NUMBER.match(part) for part in parts):
                for part in parts:
                    float(part.lstrip("±").rstrip("%").replace(",", ""))  # parses
                numbers += 1
            else:
                words = set(cell.split())
                assert FRACTION.match(cell) or words <= allowed_words, (cell, text)
    assert numbers >= 2, text


IDENTITY_WORDS = {"mnist", "[hidden=128]", "torch-cpu", "train", "fp32", "64", "ok",
                  "linreg", "[features=16]", "infer",
                  "n<6"}  # the 95% CI of FAST_RUN's 2 trials: too few for an interval


@pytest.fixture(scope="module")
def run80(tmp_path_factory):
    """One real run, its table printed at 80 columns; later tests show its folder."""
    out = tmp_path_factory.mktemp("results")
    proc = cli_at(80, "run", "-w", "mnist", "-b", "torch-cpu", "--out", str(out), *FAST_RUN)
    assert proc.returncode == 0, proc.stderr
    return out, Path(proc.stdout.splitlines()[0]), proc.stdout


# --- finding 5: never cut a number --------------------------------------------------

def test_run_table_at_80_columns_cuts_no_number(run80):
    _, _, stdout = run80
    table = stdout.split("\n", 1)[1]
    assert_numbers_whole(table, IDENTITY_WORDS, width=80)
    # "95% CI" may wrap at its space: its cells ("n<6" for 2 trials) are narrower than it
    assert "samples/s" in table and ("95% CI" in table or "95% ┃" in table and " CI ┃" in table)
    # The settings every row shares moved to the title, whole.
    assert "mnist [hidden=128], torch-cpu, train, fp32, batch 64" in table


@pytest.mark.parametrize("columns", [120, None])
def test_show_at_120_columns_and_piped_cuts_nothing(run80, columns):
    _, folder, _ = run80
    proc = cli_at(columns, "show", str(folder))
    assert proc.returncode == 0, proc.stderr
    assert_numbers_whole(proc.stdout, IDENTITY_WORDS, width=columns)
    if columns is None:  # piped: every column, params whole, one line per row
        assert "mnist [hidden=128]" in proc.stdout and "not shown" not in proc.stdout
        assert len(table_cells(proc.stdout)) == 1


def _summary(**overrides):
    row = {"run_id": "r1", "workload": "mnist", "backend": "torch-cpu", "mode": "train",
           "precision": "fp32", "batch_size": 64, "params": "hidden=128", "scenario": "throughput",
           "exec": "eager", "world_size": 1, "environment": "default", "device_index": 0,
           "n_trials": 5, "n_ok": 5, "status": "ok",
           "throughput_samples_per_s_median": 43210.987, "throughput_samples_per_s_cv": 0.0123,
           "throughput_samples_per_s_ci_low": 43000.0, "throughput_samples_per_s_ci_high": 43500.0,
           "latency_p50_ms_median": 0.01234, "latency_p90_ms_median": 1.4567,
           "latency_p99_ms_median": 123.45, "tflops_median": 6.4891e-05, "mfu_median": 0.000123,
           "power_avg_w_median": 61.234, "samples_per_joule_median": 4321.0,
           "mem_bw_gbs_median": 12.3456, "sm_clock_mhz_median": 1410.0, "loss_median": 2.3026}
    row.update(overrides)
    return row


def _render(rows, width=None, trials=None, title=None, losses=None):
    from rich.console import Console

    from gpubench.cli.result_table import summary_table

    buffer = io.StringIO()
    console = Console(file=buffer, width=width or 10_000, color_system=None)
    table, note = summary_table(pd.DataFrame(rows), title, trials, width, losses)
    console.print(table)
    if note:
        console.print(note)
    return buffer.getvalue()


def test_numbers_have_three_or_four_significant_digits_and_no_exponent():
    from gpubench.cli.result_table import sig

    assert [sig(v) for v in (43210.987, 6.4891, 0.012345, 123.45, 12.345, 0.0, -0.5, 999.7)] == [
        "43,211", "6.49", "0.0123", "123", "12.3", "0", "-0.500", "1,000"]
    text = _render([_summary()], losses={"r1": {"first_step": 2.3026, "last_trial": 1.34e-4,
                                                "fell": True}})
    # 6.49e-05 TFLOP/s is 64.9 MFLOP/s; 1/4321 J is 231 µJ per sample
    assert "MFLOP/s" in text and " 64.9 " in text
    assert "µJ/sample" in text and " 231 " in text
    for cell in ("43,211", "±0.669%", "1.23%", "0.0123", "1.46", "123", "0.0123%", "61.2",
                 "1,410", "2.30 → 0.000134"):
        assert f" {cell} " in text, (cell, text)
    assert "e-0" not in text


def test_a_narrow_terminal_leaves_columns_out_and_says_which():
    rows = [_summary(), _summary(run_id="r2", workload="lenet5", params="", backend="tf-cpu",
                                 mode="infer", precision="bf16", status="failed")]
    text = _render(rows, width=80)
    assert_numbers_whole(text, {"mnist", "[hidden=128]", "lenet5", "torch-cpu", "tf-cpu", "train",
                                "infer", "fp32", "bf16", "64", "ok", "failed"}, width=80)
    assert "not shown at 80 columns:" in text and "SM MHz" in text.split("not shown")[1]
    assert "samples/s" in text


# --- finding 6: bandwidth says where it came from -----------------------------------

@pytest.mark.parametrize("source, header", [
    ("analytic", "GB/s (model)"), ("gpm", "GB/s (GPM)"), ("util_estimate", "GB/s (est.)")])
def test_bandwidth_header_names_its_source(source, header):
    trials = pd.DataFrame({"run_id": ["r1", "r1"], "status": ["ok", "ok"],
                           "mem_bw_source": [source, source]})
    text = _render([_summary()], trials=trials)
    assert header in text


def test_two_bandwidth_sources_get_two_columns():
    trials = pd.DataFrame({"run_id": ["r1", "r2"], "status": ["ok", "ok"],
                           "mem_bw_source": ["analytic", "gpm"]})
    text = _render([_summary(), _summary(run_id="r2", backend="torch-cuda")], trials=trials)
    assert "GB/s (model)" in text and "GB/s (GPM)" in text


def test_the_run_table_labels_cpu_bandwidth_as_a_model(run80):
    _, folder, _ = run80
    proc = cli_at(None, "show", str(folder))
    assert "GB/s (model)" in proc.stdout


# --- finding 8: help ----------------------------------------------------------------

def _subparsers():
    from gpubench.cli import build_parser

    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser, action.choices


def test_every_option_of_every_subcommand_has_help():
    _, commands = _subparsers()
    missing = [f"{name} {a.option_strings or a.dest}" for name, p in commands.items()
               for a in p._actions
               if not isinstance(a, argparse._HelpAction) and (not a.help or a.help == argparse.SUPPRESS)]
    assert missing == []


def _description(help_text):
    """The paragraph between the usage and the first argument section."""
    body = help_text.split("\n\n", 1)[1]
    return " ".join(body.split("\n\n", 1)[0].split())


@pytest.mark.parametrize("command", [[], ["run"], ["suite"], ["show"], ["export"], ["compare"],
                                     ["report"], ["list"], ["env"], ["history"]])
def test_help_reads_as_sentences_without_doubled_percent(command):
    proc = run_cli_here(*command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "%%" not in proc.stdout
    description = _description(proc.stdout)
    assert description[0].isupper() and description.endswith("."), description
    assert "UserError" not in description and "turned" not in description


# --- finding 10: progress -----------------------------------------------------------

def _fake_console(width=150):
    from rich.console import Console
    return Console(file=io.StringIO(), force_terminal=True, width=width, color_system=None)


def test_run_progress_shows_no_none_and_an_eta_once_trials_are_calibrated():
    from gpubench.cli.progress import run_progress

    console = _fake_console()
    with run_progress(True, console=console, clock=lambda: 1000.0) as progress:
        progress("prepare", workload="mnist", backend="torch-cpu")
        progress("warmup", seconds=1.0)
        progress("trial", trial=0, trials=10, iterations=1000, seconds_per_iteration=0.06,
                 target_rel_ci=None)
        progress("trial", trial=10, trials=10, iterations=1000, seconds_per_iteration=0.06,
                 target_rel_ci=0.01)
    out = console.file.getvalue()
    assert "None" not in out
    assert "building mnist on torch-cpu" in out
    assert "trial 1/10 (1,000 iterations)" in out and "ETA 0:10:00" in out  # 10 x 1000 x 60 ms
    assert "trial 11 (1,000 iterations, until the 95% CI is within 1%)" in out


def test_trial_events_carry_what_the_eta_needs(monkeypatch):
    from gpubench.cli.progress import trials_left_s
    from gpubench.measure.protocol import ProtocolConfig, measure
    from test_protocol import ClockStep

    step = ClockStep(monkeypatch, lambda n: 0.001)
    events = []
    measure(step, ProtocolConfig(trials=3, warmup_s=0.05, min_trial_s=0.05), lambda r: None,
            progress=lambda event, **fields: events.append(fields) if event == "trial" else None)
    assert [e["seconds_per_iteration"] for e in events] == pytest.approx([0.001] * 3)
    assert [trials_left_s(e) for e in events] == pytest.approx([0.15, 0.10, 0.05])


LABEL = "mnist [hidden=64] torch-cpu train fp32 batch default (run 2/3)"


def test_suite_progress_keeps_params_and_repeat_in_labels():
    from gpubench.cli.progress import suite_progress

    console = _fake_console(200)
    with suite_progress(True, 4, console=console) as progress:
        progress("run_start", index=0, label=LABEL, device=0)
        progress("run_done", index=0, label=LABEL, status="failed")
    out = console.file.getvalue()
    assert f"running {LABEL}" in out and f"failed: {LABEL}" in out
    assert "mnist  torch-cpu" not in out


def test_suite_labels_name_params_and_repeat_without_double_spaces():
    from gpubench.suite.config import SuiteRun
    from gpubench.suite.plan import PlannedRun

    settings = (("repeats", 3),)
    run = SuiteRun("mnist", "torch-cpu", "train", "fp32", None, (("hidden", "64"),), settings)
    assert run.label() == "mnist [hidden=64] torch-cpu train fp32 batch default"
    assert PlannedRun(run, (), repeat=1).label() == LABEL
    plain = SuiteRun("linreg", "torch-cpu", "infer", "fp32", 8, (), (("repeats", 1),))
    assert PlannedRun(plain, ()).label() == "linreg torch-cpu infer fp32 batch 8"
    for label in (run.label(), PlannedRun(run, (), repeat=1).label(), PlannedRun(plain, ()).label()):
        assert "  " not in label


# --- finding 12: show, suite --format json ------------------------------------------

def test_show_prints_the_newest_folder_as_run_did(linreg_infer_json_run):
    tmp_path, done = linreg_infer_json_run  # the run (conftest), alone in its folder
    assert done.returncode == 0, done.stderr
    shown = run_cli_here("show", "--out", str(tmp_path), "--format", "json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == json.loads(done.stdout)
    table = run_cli_here("show", "--out", str(tmp_path))
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0] == json.loads(done.stdout)["path"]
    assert "linreg [features=16]" in table.stdout and "samples/s" in table.stdout


def test_suite_format_json_and_show_of_a_suite_folder(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text("defaults: {trials: 2, warmup_s: 0.05, min_trial_s: 0.05, threads: 1}\n"
                      "runs:\n  - workloads: linreg\n    backends: torch-cpu\n    modes: infer\n"
                      "    params: {features: [16]}\n    repeats: 2\n")
    out = tmp_path / "results"
    done = run_cli_here("suite", str(config), "--out", str(out), "--format", "json")
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)  # nothing else on stdout
    assert payload["kind"] == "suite" and payload["statuses"] == {"ok": 2}
    assert len(payload["summary"]) == 2
    shown = run_cli_here("show", payload["path"], "--format", "json")
    assert shown.returncode == 0, shown.stderr
    again = json.loads(shown.stdout)
    assert again["path"] == payload["path"] and again["statuses"] == {"ok": 2}
    assert [r["run_id"] for r in again["summary"]] == [r["run_id"] for r in payload["summary"]]
    table = run_cli_here("show", "--out", str(out))  # the newest folder: the suite's
    assert table.returncode == 0, table.stderr
    assert "Suite tiny.yaml" in table.stdout and "runs: 2 ok" in table.stdout
    runs = [row for row in table_cells(table.stdout)]
    assert [row[table_header(table.stdout).index("run")] for row in runs] == ["1/2", "2/2"]


def table_header(text):
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("┏"))
    end = next(i for i, line in enumerate(lines) if line.startswith("┡"))
    columns = None
    for line in lines[start + 1:end]:
        cells = [c.strip() for c in line.strip().strip("┃").split("┃")]
        columns = cells if columns is None else [f"{a} {b}".strip() for a, b in zip(columns, cells)]
    return columns


@pytest.mark.parametrize("make, fragment", [
    (lambda p: p / "missing", "no such results folder"),
    (lambda p: p, "holds no run or suite folder"),
])
def test_show_without_results_is_one_error_line(tmp_path, make, fragment):
    proc = run_cli_here("show", "--out", str(make(tmp_path)))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("gpubench: error: ") and fragment in proc.stderr


def test_show_of_a_folder_that_is_not_a_result(tmp_path):
    proc = run_cli_here("show", str(tmp_path))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "not a run or suite folder" in proc.stderr


# --- finding 5, env and list piped --------------------------------------------------

def test_env_and_list_piped_cut_nothing():
    env = cli_at(None, "env")
    data = json.loads(cli_at(None, "env", "--json").stdout)
    assert env.returncode == 0 and "…" not in env.stdout
    for key, value in data["machine"].items():  # text (numbers such as free RAM change)
        if isinstance(value, str) and value:
            assert value in env.stdout, (key, value)
    listing = cli_at(None, "list")
    backends = json.loads(cli_at(None, "list", "--json").stdout)["backends"]
    assert listing.returncode == 0 and "…" not in listing.stdout
    for backend in backends:  # every reason whole, on its row's line
        if backend["reason"]:
            assert backend["reason"] in listing.stdout, backend
    assert " 5 " in listing.stdout and "e-09" not in listing.stdout  # linreg: 5 FLOPs/sample
