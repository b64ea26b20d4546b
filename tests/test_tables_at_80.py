"""Every table of every subcommand at 80 columns, piped (COLUMNS=80), as a newcomer's
terminal shows it (issue 28): no line past 80, no number or verdict cut (no `…`, each
number the JSON output holds found whole on a line), the columns each scenario is read
by never left out, and what a row is (interrupted, contended, epochs, real data, a
collective) said in the table itself."""

import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from conftest import FAST_RUN, run_cli_here
from gpubench.results.compare_format import ci_text, signed_pct, value_text
from test_compare import make_trials, write_run
from test_history import step_history, write_history

WIDTH = 80


def at80(*args):
    proc = run_cli_here(*args, columns=WIDTH)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    return proc


def assert_fits(text, whole=()):
    """No line past 80 columns, nothing cut (`…`), and each string of `whole` (a number
    or a verdict as its cell holds it) on one line, uncut."""
    lines = text.splitlines()
    assert lines, text
    assert max(len(line) for line in lines) <= WIDTH, text
    assert "…" not in text, text
    for cell in whole:
        assert cell and any(cell in line for line in lines), (cell, text)


# --- finding 1: run, show, compare, history, list at 80 columns ---------------------

@pytest.fixture(scope="module")
def run_at_80(tmp_path_factory):
    out = tmp_path_factory.mktemp("results80")
    proc = at80("run", "-w", "mnist", "-b", "torch-cpu", "--out", str(out), *FAST_RUN)
    return Path(proc.stdout.splitlines()[0]), proc.stdout


def test_run_and_show_fit_80_columns(run_at_80):
    folder, stdout = run_at_80
    summary = json.loads(run_cli_here("show", str(folder), "--format", "json").stdout)["summary"][0]
    from gpubench.cli.table_cells import num
    numbers = [num(summary["throughput_samples_per_s_median"]), f"{summary['n_ok']}/{summary['n_trials']}"]
    assert_fits(stdout.split("\n", 1)[1], numbers)  # the folder's path, then the table
    shown = at80("show", str(folder)).stdout
    assert_fits(shown.split("\n", 1)[1], numbers)


def two_configs(tmp_path, seed=0):
    """BASE and NEW folders, each with two configurations of 6 trials."""
    rng = np.random.default_rng(seed)
    sides = []
    for side, level in (("base", 1000.0), ("new", 930.0)):
        frames = [make_trials(level * (1 + 0.01 * rng.standard_normal(6)), run_id=f"{side}-{b}",
                              batch_size=b) for b in (64, 128)]
        sides.append(write_run(tmp_path / side, pd.concat(frames, ignore_index=True)))
    return sides


def test_compare_fits_80_columns_piped_and_cuts_no_number_or_verdict(tmp_path):
    base, new = two_configs(tmp_path)
    rows = json.loads(run_cli_here("compare", str(base), str(new), "--format", "json").stdout)["rows"]
    whole = []
    for r in rows:
        whole += [value_text(r["median_base"]), value_text(r["median_new"]),
                  signed_pct(r["change_pct"]), ci_text(pd.Series(r)), r["verdict"]]
    proc = at80("compare", str(base), str(new))
    assert_fits(proc.stdout, whole)
    assert "torch-cuda" in proc.stdout and "batch 128" in proc.stdout  # configurations named


def test_history_fits_80_columns_piped(tmp_path):
    write_history(tmp_path / "nightly", step_history(seed=4), merged=True)
    data = json.loads(run_cli_here("history", str(tmp_path / "nightly"), "--format", "json").stdout)
    change = data["configurations"][0]["changes"][0]
    proc = at80("history", str(tmp_path / "nightly"))
    assert_fits(proc.stdout, [value_text(change["median_before"]), value_text(change["median_after"]),
                              signed_pct(change["change_pct"]), change["verdict"]])
    assert "regression" in proc.stdout


def test_list_fits_80_columns_and_splits_no_parameter():
    proc = at80("list")
    assert_fits(proc.stdout, ["max_bytes=1073741824", "torch-cpu"])


# --- finding 4: the columns each scenario is read by stay at 80 columns -------------

def summary_row(**overrides):
    """A summary.csv row with every metric measured: the widest table a run makes."""
    row = {"run_id": "r1", "workload": "mnist", "backend": "torch-cpu", "mode": "infer",
           "precision": "fp32", "batch_size": 64, "params": "hidden=128", "scenario": "throughput",
           "exec": "eager", "world_size": 1, "environment": "default", "device_index": 0,
           "data": "synthetic", "n_trials": 6, "n_ok": 6, "status": "ok", "stop_reason": "fixed_trials",
           "throughput_samples_per_s_median": 43210.987, "throughput_samples_per_s_cv": 0.0123,
           "throughput_samples_per_s_ci_low": 43000.0, "throughput_samples_per_s_ci_high": 43500.0,
           "latency_p50_ms_median": 1.234, "latency_p90_ms_median": 2.4567,
           "latency_p99_ms_median": 12.345, "latency_p999_ms_median": 23.45,
           "tflops_median": 6.4891e-05, "mfu_median": 0.000123, "power_avg_w_median": 61.234,
           "samples_per_joule_median": 4321.0, "mem_bw_gbs_median": 12.3456,
           "sm_clock_mhz_median": 1410.0, "achieved_qps_median": 675.2}
    row.update(overrides)
    return row


def render(rows, trials=None):
    from gpubench.cli.result_table import summary_table

    table, note = summary_table(pd.DataFrame(rows), None, trials, WIDTH)
    buffer = io.StringIO()
    console = Console(file=buffer, width=WIDTH, color_system=None)
    console.print(table)
    if note:
        console.print(note)
    return buffer.getvalue()


def headers(text):
    """The header words of the table (the lines between ┏ and ┡), joined per column."""
    lines = text[text.index("┏"):text.index("┡")].splitlines()[1:]
    columns = [[] for _ in lines[0].strip("┃").split("┃")]
    for line in lines:
        for i, cell in enumerate(line.strip().strip("┃").split("┃")):
            columns[i].append(cell.strip())
    return [" ".join(w for w in col if w) for col in columns]


@pytest.mark.parametrize("scenario, overrides, kept", [
    ("server", {"target_qps": 700.0, "latency_bound_ms": 15.0, "latency_bound_met_all": False},
     ["target QPS", "p99 bound ms", "p99 ms", "held"]),
    ("single-stream", {"batch_size": 1}, ["p90 ms"]),
    ("multi-stream", {"batch_size": 8}, ["p99 ms"]),
    ("throughput", {}, ["samples/s", "95% CI"]),
])
def test_a_scenarios_own_columns_are_never_left_out(scenario, overrides, kept):
    text = render([summary_row(scenario=scenario, **overrides)])
    assert_fits(text)
    for header in kept:
        assert header in headers(text), (header, text)


def test_every_scenario_names_the_columns_it_keeps():
    from gpubench.cli.scenario_cells import KEPT_COLUMNS
    from gpubench.measure.scenarios.registry import scenario_names

    assert set(scenario_names()) <= set(KEPT_COLUMNS)


def test_exec_compile_is_in_the_title_with_its_compile_time_and_output_check():
    text = render([summary_row(exec="compile", compile_s_median=25.04, accuracy_ok_last=True)])
    assert_fits(text)
    assert "exec compile" in text.split("┏")[0]  # the title: not the eager run's
    assert {"compile s", "outputs ok"} <= set(headers(text)), text


def test_threads_is_shown_as_identity():
    text = render([summary_row(threads=1)])
    assert "threads 1" in text.split("┏")[0], text


# --- finding 9: an interrupted run is not `ok` -------------------------------------

def test_an_interrupted_run_reads_interrupted():
    text = render([summary_row(stop_reason="interrupted", n_trials=3, n_ok=3)])
    assert "status interrupted" in text and "status ok" not in text, text


# --- finding 13: history on small sets, and max-QPS searches ------------------------

def test_history_of_few_runs_says_so_once(tmp_path):
    for batch in (16, 32, 64, 128):  # four configurations of three nights each
        write_history(tmp_path / f"b{batch}", [1000.0, 1010.0, 990.0], batch_size=batch)
    proc = at80("history", str(tmp_path))
    assert_fits(proc.stdout)
    notes = [line for line in proc.stdout.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "4 configuration(s) have too few runs (3)" in notes[0], proc.stdout
    assert "no change" not in proc.stdout
    assert len(re.findall(r"│ +(?:99\d|1,0\d\d) │", proc.stdout)) == 4, proc.stdout  # each median


def test_history_follows_a_searchs_max_qps_not_a_median_over_probes():
    from gpubench.results.history import history
    from test_history import frame_of

    frame = frame_of([1000.0] * 3)
    frame["scenario"], frame["target_qps"] = "server", np.nan
    frame["max_qps"] = frame["run_id"].map({"run000": 500.0, "run001": 510.0, "run002": 490.0})
    found = history(frame, min_segment=2)
    config, = found.configs
    assert list(config.runs["value"]) == [500.0, 510.0, 490.0]
    assert any("max QPS is followed" in note for note in config.notes)


# --- finding 15: epochs, real data, collectives -------------------------------------

def test_time_to_accuracy_trials_are_epochs_on_named_data():
    text = render([summary_row(scenario="time-to-accuracy", mode="train", data="mnist", n_trials=4,
                               n_ok=4, target_accuracy=0.97, reached_last=True,
                               time_to_accuracy_s_last=12.3, test_accuracy_last=0.9712)])
    assert_fits(text)
    assert "4 epochs" in text and "4/4" not in text
    assert "CV" not in headers(text) and "95% CI" not in headers(text)
    assert "mnist data" in text.split("┏")[0]


def test_a_collective_has_no_mode_precision_or_batch_and_a_bandwidth_unit_that_fits():
    rows = [summary_row(workload="allreduce", params="", scenario="collective", mode="train",
                        batch_size=1, strategy="ddp", world_size=2, message_bytes=8.0 * 2 ** i,
                        algbw_gbs_median=8.63e-6 * 2 ** i, busbw_gbs_median=8.63e-6 * 2 ** i,
                        tflops_median=np.nan, mfu_median=np.nan, mem_bw_gbs_median=np.nan)
            for i in range(3)]
    text = render(rows)
    assert_fits(text)
    assert "train" not in text and "fp32" not in text and "batch" not in text, text
    assert "ops/s" in headers(text) and "samples/s" not in headers(text)
    assert "busbw kB/s" in headers(text) and " 8.63 " in text and "0.0000" not in text


# --- the --find-max-qps probes table (issue 28, finding 1 and the search's repeats) --

def test_the_probes_table_fits_80_columns_and_says_which_probes_ran_again():
    from gpubench.cli.serving_table import probes_table

    rates = [865_052.0, 432_526.0, 378_460.0, 378_460.0, 364_944.0, 364_944.0]
    trials = pd.DataFrame({
        "scenario": "server", "target_qps": np.nan, "status": "ok", "latency_bound_ms": 5.0,
        "trial": range(len(rates)), "offered_qps": rates,
        "achieved_qps": [r * 0.99 for r in rates], "latency_p50_ms": 0.342,
        "latency_p99_ms": [189.0, 32.1, 7.31, 6.24, 4.93, 4.13], "latency_p999_ms": 10.9,
        "latency_bound_met": [False, False, False, False, True, True],
        "batch_size_mean": 36.0, "queries_unfinished": [154_267, 5_842, 0, 0, 0, 0]})
    flags = dict(repeated=False, confirming=False, contended=False, stalled=False,
                 overloaded=False)
    probes = [dict(flags, overloaded=True), dict(flags, overloaded=True),
              dict(flags, stalled=True), dict(flags, repeated=True, stalled=True),
              dict(flags), dict(flags, confirming=True)]
    fitted = probes_table(trials, {"probes": probes}, WIDTH)
    console = Console(file=io.StringIO(), width=WIDTH)
    console.print(fitted.table)
    text = console.file.getvalue()
    assert_fits(text, ["865,052", "154,267", "189", "4.13"])
    lines = text.splitlines()
    assert any("378,460" in line and "again" in line for line in lines), text  # its note wraps
    assert any("364,944" in line and "re-probe" in line for line in lines), text
    assert sum("overloaded" in line for line in lines) == 2, text


# --- the tables under a suite's and a comparison's (weak scaling, MLPerf scores) ------

def _printed(draw):
    console = Console(file=io.StringIO(), width=WIDTH)
    draw(console)
    return console.file.getvalue()


def test_the_tables_under_a_suite_fit_80_columns(tmp_path):
    from test_rank_rows import ranked
    from gpubench.cli.render import print_accuracy_scores, print_scaling
    from gpubench.results.reader import in_schema_order
    from gpubench.results.summary import summarize

    trials = in_schema_order(pd.concat([
        ranked([1000.0, 1010.0, 990.0], world_size=1, run_id="one"),
        ranked([1_234_567.0] * 3, world_size=4, run_id="four")], ignore_index=True))
    text = _printed(lambda c: print_scaling(c, summarize(trials)))
    assert_fits(text, ["Weak scaling", "4,938,268", "1,234,567", "123456.7%"])

    def epochs(run_id, seconds):
        return [{"run_id": run_id, "workload": "mnist", "backend": "torch-cpu", "mode": "train",
                 "precision": "fp32", "batch_size": 64, "scenario": "time-to-accuracy",
                 "target_accuracy": 0.9635, "status": "ok", "epoch": 1, "reached": True,
                 "time_to_accuracy_s": seconds, "energy_to_accuracy_j": None}]
    scored = pd.DataFrame(epochs("1", 1234.5) + epochs("2", 1300.0) + epochs("3", 1250.0))
    text = _printed(lambda c: print_accuracy_scores(c, scored))
    assert_fits(text, ["scored as MLPerf does", "0.9635", "1,250"])


def test_compares_weak_scaling_table_fits_80_columns(tmp_path):
    from test_rank_rows import _scaling_side

    base, new = _scaling_side(tmp_path, "base", 0.9), _scaling_side(tmp_path, "new", 0.6)
    out = at80("compare", str(base), str(new), "--metric", "global_throughput_samples_per_s").stdout
    assert_fits(out, ["Weak scaling", "90.0%", "60.0%", "-30.0 points"])
