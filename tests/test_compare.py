"""`gpubench compare`: matching, one-sided rows, --by groups, inputs of every shape,
output formats, exit codes, and every bad input as one line with exit code 2."""

import json
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli
from gpubench.results.compare import DEFAULT_METRIC, Comparison, compare, compare_paths, outcome
from gpubench.results.compare_format import to_markdown
from gpubench.results.compare_load import read_input
from gpubench.results.schema import TRIAL_COLUMNS


def make_trials(values, *, run_id="r1", seed: Optional[int] = None, **columns) -> pd.DataFrame:
    """Trial rows of one configuration, one per throughput value (or, with `seed`,
    `values` = (n, mean): n values with 3% noise)."""
    if seed is not None:
        n, mean = values
        values = mean * (1 + 0.03 * np.random.default_rng(seed).standard_normal(n))
    rows = []
    for i, v in enumerate(values):
        row = {c: np.nan for c in TRIAL_COLUMNS}
        row.update(run_id=run_id, workload="mnist", backend="torch-cuda", mode="train",
                   precision="fp32", batch_size=64, params="hidden=128", device_index=0,
                   device_name="Test GPU", device_uuid="GPU-1", driver_version="535.1",
                   framework="torch", framework_version="2.3", gpubench_version="0.1.0",
                   schema_version=1, host="box", trial=i, iterations=100, samples=6400,
                   duration_s=6400 / v, throughput_samples_per_s=v, energy_j=6400 * 0.01,
                   sm_clock_mhz=1980, throttled=False, status="ok")
        row.update(columns)
        rows.append(row)
    return pd.DataFrame(rows, columns=list(TRIAL_COLUMNS))


def write_run(folder: Path, frame: pd.DataFrame) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / "trials.csv", index=False)
    return folder


@pytest.fixture
def cli_here(capsys):
    """The real command in this process (faster than a subprocess for many calls):
    returns (returncode, stdout, stderr) like subprocess.CompletedProcess."""
    from types import SimpleNamespace

    from gpubench.cli import main

    def call(*args):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse usage errors
            code = exc.code
        out, err = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out, stderr=err)
    return call


def one_error_line(proc, *fragments):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("gpubench: error: ") and "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def _frame_from(path: Path) -> pd.DataFrame:
    return read_input(path)


# --- the pure function ----------------------------------------------------------------

def test_matching_verdicts_and_one_sided_rows(tmp_path):
    base = pd.concat([make_trials((10, 1000.0), seed=1),
                      make_trials((10, 500.0), seed=2, workload="lenet5"),
                      make_trials((10, 200.0), seed=3, workload="resnet50")])
    new = pd.concat([make_trials((10, 800.0), seed=4, run_id="r2"),              # 20% slower
                     make_trials((10, 500.0), seed=5, run_id="r2", workload="lenet5"),
                     make_trials((10, 300.0), seed=6, run_id="r2", workload="linreg")])
    table = compare(base, new, threshold=0.05).set_index("workload")
    assert table.loc["mnist", "verdict"] == "slower"
    assert table.loc["mnist", "ratio"] == pytest.approx(0.8, abs=0.03)
    assert table.loc["mnist", "ci_high"] < 1 and table.loc["mnist", "p_value"] < 0.01
    assert table.loc["lenet5", "verdict"] in ("same", "inconclusive")
    assert table.loc["resnet50", "verdict"] == "base_only"
    assert table.loc["linreg", "verdict"] == "new_only"
    assert list(table.index) == ["mnist", "lenet5", "resnet50", "linreg"]
    assert outcome(table.reset_index(), "regression") == "regression"
    assert outcome(table.reset_index(), "never") == "ok"


def test_only_ok_trials_count_and_a_config_without_any_is_inconclusive():
    base = make_trials((6, 1000.0), seed=1)
    failed = make_trials([1.0] * 3, run_id="r2", status="failed", error="Traceback\nCUDA OOM")
    new = pd.concat([make_trials((6, 1000.0), seed=2, run_id="r2"), failed])
    row = compare(base, new).iloc[0]
    assert row["n_new"] == 6 and row["median_new"] > 900  # the failed rows' 1.0 ignored
    only_failed = compare(base, failed).iloc[0]
    assert only_failed["verdict"] == "inconclusive" and only_failed["n_new"] == 0
    assert "no ok trial" in only_failed["note"] and "CUDA OOM" in only_failed["note"]


def test_throttling_shows_beside_a_slowdown():
    base = make_trials((8, 1000.0), seed=1, sm_clock_mhz=1980, energy_j=64.0)
    new = make_trials((8, 700.0), seed=2, run_id="r2", sm_clock_mhz=1400, energy_j=80.0,
                      throttled=True)
    row = compare(base, new).iloc[0]
    assert row["verdict"] == "slower"
    assert row["sm_clock_change_pct"] == pytest.approx((1400 / 1980 - 1) * 100)
    assert row["j_per_sample_change_pct"] == pytest.approx(25.0)
    assert row["throttled_base_frac"] == 0 and row["throttled_new_frac"] == 1
    text = to_markdown(Comparison(compare(base, new), DEFAULT_METRIC, 0.05, ["b", "n"]))
    assert "-29.3% (throttled 0% → 100%)" in text and "+25.0%" in text


def test_latency_metric_lower_is_better():
    base = make_trials((8, 1000.0), seed=1, latency_p50_ms=2.0)
    new = make_trials((8, 1000.0), seed=2, run_id="r2", latency_p50_ms=3.0)
    base["latency_p50_ms"] *= 1 + 0.01 * np.arange(8)
    new["latency_p50_ms"] *= 1 + 0.01 * np.arange(8)
    row = compare(base, new, metric="latency_p50_ms").iloc[0]
    assert row["better"] == "lower" and row["verdict"] == "slower"
    assert compare(new, base, metric="latency_p50_ms").iloc[0]["verdict"] == "faster"


def test_environment_mixed_within_a_side_is_noted():
    base = pd.concat([make_trials((4, 1000.0), seed=1), make_trials((4, 1000.0), seed=2, driver_version="550.2")])
    new = make_trials((8, 1000.0), seed=3, run_id="r2")
    assert "base mixes driver_version 535.1, 550.2" in compare(base, new).iloc[0]["note"]


# --- inputs ---------------------------------------------------------------------------

def test_suite_folder_is_not_double_counted_and_folders_recurse(tmp_path):
    run_a = make_trials((5, 1000.0), seed=1, run_id="aaaa")
    run_b = make_trials((5, 1000.0), seed=2, run_id="bbbb", workload="lenet5")
    suite = tmp_path / "nightly" / "20250101T000000Z-box-s1"
    write_run(suite, pd.concat([run_a, run_b]))  # the suite level holds both runs
    write_run(suite / "runs" / "20250101T000001Z-box-aaaa", run_a)
    write_run(suite / "runs" / "20250101T000002Z-box-bbbb", run_b)
    write_run(tmp_path / "nightly" / "20250102T000000Z-box-cccc", make_trials((5, 900.0), seed=3, run_id="cccc"))
    assert len(read_input(suite)) == 10
    everything = read_input(tmp_path / "nightly")
    assert len(everything) == 15 and set(everything["run_id"]) == {"aaaa", "bbbb", "cccc"}
    # A run folder copied out of the suite beside it: its rows count once.
    write_run(tmp_path / "nightly" / "copy-aaaa", run_a)
    assert len(read_input(tmp_path / "nightly")) == 15
    assert len(read_input(suite / "trials.csv")) == 10


def test_by_driver_version_gives_comparisons_against_the_first(tmp_path, cli_here):
    combined = pd.concat([
        make_trials((8, 1000.0), seed=1, run_id="a", driver_version="535.104"),
        make_trials((8, 1000.0), seed=2, run_id="b", driver_version="550.54"),
        make_trials((8, 850.0), seed=3, run_id="c", driver_version="560.28"),
    ])
    combined.to_csv(tmp_path / "all.csv", index=False)
    proc = cli_here("compare", str(tmp_path / "all.csv"), "--by", "driver_version", "--format", "json")
    assert proc.returncode == 1, proc.stderr  # 560.28 is 15% slower
    payload = json.loads(proc.stdout)
    rows = payload["rows"]
    assert [(r["base"], r["new"]) for r in rows] == [("535.104", "550.54"), ("535.104", "560.28")]
    assert rows[0]["verdict"] in ("same", "inconclusive") and rows[1]["verdict"] == "slower"
    assert payload["groups"] == ["535.104", "550.54", "560.28"] and payload["exit_code"] == 1
    # --baseline picks another group; the other two are compared against it.
    c = compare_paths(tmp_path / "all.csv", None, by="driver_version", baseline="560.28")
    assert list(zip(c.table["base"], c.table["new"])) == [("560.28", "535.104"), ("560.28", "550.54")]
    assert set(c.table["verdict"]) == {"faster"}


def test_by_across_two_inputs(tmp_path):
    write_run(tmp_path / "before", make_trials((6, 1000.0), seed=1, driver_version="535.1"))
    write_run(tmp_path / "after", make_trials((6, 1000.0), seed=2, run_id="r2", driver_version="550.2"))
    c = compare_paths(tmp_path / "before", tmp_path / "after", by="driver_version")
    assert len(c.table) == 1 and (c.table.iloc[0]["base"], c.table.iloc[0]["new"]) == ("535.1", "550.2")


# --- the command ----------------------------------------------------------------------

@pytest.fixture
def two_runs(tmp_path):
    base = write_run(tmp_path / "base", make_trials((8, 1000.0), seed=1))
    new = write_run(tmp_path / "new", make_trials((8, 1000.0), seed=2, run_id="r2"))
    slow = write_run(tmp_path / "slow", make_trials((8, 800.0), seed=3, run_id="r3"))
    return base, new, slow


def test_exit_codes(two_runs, tmp_path, cli_here):
    base, new, slow = two_runs
    same = run_cli("compare", str(base), str(new))
    assert same.returncode == 0, same.stderr
    headline = same.stdout.splitlines()[0]
    assert "mnist" in same.stdout and "slower" not in headline and "1 " in headline
    regression = run_cli("compare", str(base), str(slow))
    assert regression.returncode == 1 and "1 slower" in regression.stdout.splitlines()[0]
    assert cli_here("compare", str(base), str(slow), "--fail-on", "never").returncode == 0
    # Three trials a side cannot decide a 3%-noise change of 2%: inconclusive.
    write_run(tmp_path / "few", make_trials([1000.0, 1030.0, 970.0]))
    write_run(tmp_path / "few2", make_trials([980.0, 1010.0, 950.0], run_id="r9"))
    args = ("compare", str(tmp_path / "few"), str(tmp_path / "few2"))
    assert cli_here(*args).returncode == 0
    strict = cli_here(*args, "--fail-on", "inconclusive")
    assert strict.returncode == 3 and "inconclusive" in strict.stdout


def test_markdown_and_output_file(two_runs, tmp_path, cli_here):
    base, _, slow = two_runs
    out = tmp_path / "summary.md"
    proc = cli_here("compare", str(base), str(slow), "--format", "markdown", "--output", str(out))
    assert proc.returncode == 1 and "written to" in proc.stdout
    text = out.read_text()
    assert text.startswith("## gpubench compare") and "**regression**" in text
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert len(table) == 3 and table[2].startswith("| **slower** (pooled trials) |")
    assert len({line.count("|") for line in table}) == 1  # well-formed: same cell count
    assert not list(tmp_path.glob(".summary.md.*"))  # no temp file left


def test_markdown_escapes_result_text(tmp_path, cli_here):
    evil = "<img src=x onerror=alert(1)>|x"
    write_run(tmp_path / "a", make_trials((5, 1000.0), seed=1, workload=evil))
    write_run(tmp_path / "b", make_trials((5, 1000.0), seed=2, run_id="r2", workload=evil))
    proc = cli_here("compare", str(tmp_path / "a"), str(tmp_path / "b"), "--format", "markdown")
    assert proc.returncode == 0, proc.stderr
    assert "<img" not in proc.stdout and r"&lt;img src=x onerror=alert(1)&gt;\|x" in proc.stdout


def _bad(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def _csv(frame):
    return frame.to_csv(index=False)


def test_bad_input_in_a_subprocess(two_runs, tmp_path):
    base, _, _ = two_runs
    one_error_line(run_cli("compare", str(base), str(_bad(tmp_path, "empty.csv", ""))), "empty.csv")


def test_bad_inputs_are_one_line_with_exit_2(two_runs, tmp_path, cli_here):
    base, new, _ = two_runs
    good = make_trials((5, 1000.0), seed=9)
    cases = []
    cases.append((_bad(tmp_path, "empty.csv", ""), ["empty.csv", "empty"]))
    cases.append((_bad(tmp_path, "header.csv", ",".join(TRIAL_COLUMNS) + "\n"), ["header.csv", "no trial rows"]))
    cases.append((_bad(tmp_path, "nocols.csv", _csv(good.drop(columns=["throughput_samples_per_s", "status"]))),
                  ["nocols.csv", "missing required column", "throughput_samples_per_s"]))
    newer = good.copy()
    newer["schema_version"] = 99
    cases.append((_bad(tmp_path, "newer.csv", _csv(newer)), ["newer.csv", "schema version 99"]))
    units = good.rename(columns={"latency_p50_ms": "latency_p50_us"})
    cases.append((_bad(tmp_path, "units.csv", _csv(units)), ["units.csv", "latency_p50_us", "mixes units"]))
    per_min = good.copy()
    per_min["throughput_samples_per_min"] = per_min["throughput_samples_per_s"] * 60
    cases.append((_bad(tmp_path, "permin.csv", _csv(per_min)), ["permin.csv", "throughput_samples_per_min"]))
    text = good.astype(object)
    text.loc[2, "throughput_samples_per_s"] = "fast"
    cases.append((_bad(tmp_path, "text.csv", _csv(text)), ["text.csv", "throughput_samples_per_s", "'fast'", "line 4"]))
    zero = good.copy()
    zero.loc[1, "throughput_samples_per_s"] = 0
    cases.append((_bad(tmp_path, "zero.csv", _csv(zero)), ["zero.csv", "positive"]))
    failed = make_trials([1.0, 1.0], status="failed")
    cases.append((_bad(tmp_path, "failed.csv", _csv(failed)), ["failed.csv", "no trial with status ok", "2 failed"]))
    cases.append((tmp_path / "missing", ["missing", "no such file or folder"]))
    (tmp_path / "emptydir").mkdir()
    cases.append((tmp_path / "emptydir", ["emptydir", "no trials.csv"]))
    cases.append((_bad(tmp_path, "garbage.csv", 'a,b\n"1,2\n3'), ["garbage.csv"]))
    for path, fragments in cases:
        one_error_line(cli_here("compare", str(base), str(path)), *fragments)

    other = write_run(tmp_path / "other", make_trials((5, 1000.0), seed=3, workload="resnet50"))
    one_error_line(cli_here("compare", str(base), str(other)), "nothing matches", "mnist", "resnet50")
    one_error_line(cli_here("compare", str(base)), "needs NEW")
    one_error_line(cli_here("compare", str(base), str(new), "--baseline", "x"), "--baseline needs --by")
    one_error_line(cli_here("compare", str(base), "--by", "driver_version"), "single value", "535.1")
    one_error_line(cli_here("compare", str(base), "--by", "throughput_samples_per_s"), "not an identity")
    one_error_line(cli_here("compare", str(base), str(new), "--metric", "energy_j_per_sampl"), "--metric")
    one_error_line(cli_here("compare", str(base), str(new), "--metric", "latency_p50_ms"), "not measured")
    one_error_line(cli_here("compare", str(base), str(new), "--threshold", "abc"), "--threshold")
    one_error_line(cli_here("compare", str(base), str(new), "--output", str(tmp_path / "no" / "x.md")),
                   "--output", "cannot write")


def test_a_modelled_bandwidth_is_labelled_in_compare():
    base = make_trials([10.0] * 5, mem_bw_gbs=10.0, mem_bw_source="analytic")
    new = make_trials([10.0] * 5, run_id="r2", mem_bw_gbs=11.0, mem_bw_source="gpm")
    note = compare(base, new, metric="mem_bw_gbs")["note"].iloc[0]
    assert "base GB/s: the model (bytes the workload moves / time), not measured" in note
    assert "new GB/s: measured (GPM DRAM bandwidth)" in note
    assert "GB/s" not in compare(base, new)["note"].iloc[0]  # only where bandwidth is compared
