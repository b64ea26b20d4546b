"""`gpubench history`: change points over many nightly runs, on seeded simulated
histories written as run folders (one per night, started_utc one day apart, a few
trials each): a step is found at its night, noise and one wild night are not changes,
exit codes, --by ordering, v1 rows timed from their folders, bad input as one line."""

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli
from gpubench.results.history import history, history_paths, noise_floor
from gpubench.results.schema import TRIAL_COLUMNS

START = pd.Timestamp("2025-01-01T02:00:00Z")


def night_rows(night: int, level: float, rng, trials: int = 3, within: float = 0.005,
               v1: bool = False, **columns) -> pd.DataFrame:
    """One night's run of the MNIST training configuration: `trials` trials around
    `level` samples/s (`within` relative noise)."""
    started = START + pd.Timedelta(days=night)
    rows = []
    for trial, value in enumerate(level * (1 + within * rng.standard_normal(trials))):
        row = {c: np.nan for c in TRIAL_COLUMNS}
        row.update(run_id=f"run{night:03d}", workload="mnist", backend="torch-cuda", mode="train",
                   precision="fp32", batch_size=64, params="", scenario="throughput",
                   exec="eager", world_size=1, environment="default", device_index=0,
                   device_name="Test GPU", device_uuid="GPU-1", rank=0,
                   started_utc=f"{started:%Y-%m-%dT%H:%M:%SZ}", driver_version="535.1",
                   framework="torch", framework_version="2.3", gpubench_version="0.1.0",
                   schema_version=2, host="box", trial=trial, iterations=100, samples=6400,
                   duration_s=6400 / value, throughput_samples_per_s=value,
                   latency_p50_ms=64_000 / value, status="ok")
        if v1:  # schema 1 had no started_utc (nor the other v2 columns)
            row.update(schema_version=1, started_utc=np.nan)
        row.update(columns)
        rows.append(row)
    return pd.DataFrame(rows, columns=list(TRIAL_COLUMNS))


def levels(n: int, rng, base: float = 1000.0, noise: float = 0.03) -> np.ndarray:
    """`n` nights' levels: `base` with `noise` relative run-to-run noise."""
    return base * (1 + noise * rng.standard_normal(n))


def write_history(root: Path, nightly: Sequence[float], seed: int = 0, v1: bool = False,
                  folder_name=None, merged: bool = False, **columns) -> Path:
    """One run folder per night under `root` (named as gpubench names them), or with
    `merged` every night's rows in one trials.csv (as a suite folder holds its runs:
    one file is read much faster than 60)."""
    rng = np.random.default_rng(seed)
    if merged:
        root.mkdir(parents=True)
        pd.concat([night_rows(night, level, rng, v1=v1, **columns)
                   for night, level in enumerate(nightly)]).to_csv(root / "trials.csv", index=False)
        return root
    for night, level in enumerate(nightly):
        frame = night_rows(night, level, rng, v1=v1, **columns)
        started = START + pd.Timedelta(days=night)
        name = folder_name(night) if folder_name else f"{started:%Y%m%dT%H%M%SZ}-box-run{night:03d}"
        (root / name).mkdir(parents=True)
        frame.to_csv(root / name / "trials.csv", index=False)
    return root


def step_history(seed: int, before: int = 30, after: int = 10, step: float = -0.10) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([levels(before, rng), levels(after, rng, base=1000.0 * (1 + step))])


def frame_of(nightly: Sequence[float], seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.concat([night_rows(i, v, rng) for i, v in enumerate(nightly)], ignore_index=True)
    frame["source"] = "simulated"
    return frame


@pytest.fixture
def cli_here(capsys):
    """The real command in this process (a subprocess pays ~2 s importing ruptures and
    scipy each time): returns (returncode, stdout, stderr) like CompletedProcess."""
    from types import SimpleNamespace

    from gpubench.cli import main

    def call(*args):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse usage errors
            code = exc.code
        out, err = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out, stderr=err)
    return call


def one_line_error(proc, *needles: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpubench: error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_a_10pct_step_after_30_nights_is_found_at_its_night_and_fails(tmp_path, cli_here):
    # 30 nights at 1000 samples/s with 3% run-to-run noise, then 10 nights 10% slower.
    write_history(tmp_path / "nightly", step_history(seed=1), seed=1)
    proc = cli_here("history", str(tmp_path / "nightly"), "--format", "json")
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["outcome"] == "regression" and doc["exit_code"] == 1
    (config,) = doc["configurations"]
    assert config["status"] == "regression" and config["n_runs"] == 40
    (change,) = config["changes"]
    # The new segment starts at night 30 exactly (the simulations: 93-98% exact, the
    # rest one night off, so the bound allowed is ±1 night).
    assert abs(change["index"] - 30) <= 1, change
    assert change["started"].startswith(f"{START + pd.Timedelta(days=change['index']):%Y-%m-%d}")
    assert change["verdict"] == "slower" and -14 < change["change_pct"] < -6
    assert change["ci_high"] < 1 and change["p_value"] < 0.05
    assert 0.015 < config["noise_floor"] < 0.05  # the 3% noise, learned
    assert [s["runs"] for s in config["segments"]] == [change["index"], 40 - change["index"]]
    assert len(config["runs"]) == 40 and config["runs"][0]["started_utc"] == "2025-01-01T02:00:00Z"


def test_pure_noise_with_one_wild_night_is_no_change(tmp_path, cli_here):
    rng = np.random.default_rng(2)
    nightly = levels(60, rng)
    nightly[41] *= 0.75  # one night 25% slow (a neighbour on the machine, say)
    write_history(tmp_path / "nightly", nightly, seed=2, merged=True)
    proc = cli_here("history", str(tmp_path / "nightly"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no change" in proc.stdout and "60" in proc.stdout
    assert "0 with changes, 0 regression(s)" in proc.stdout


def test_wild_night_alone_would_move_a_mean():
    # The guard above is not vacuous: the raw candidates (PELT) or the pruning must act.
    rng = np.random.default_rng(2)
    nightly = levels(60, rng)
    nightly[41] *= 0.75
    assert not history(frame_of(nightly)).configs[0].changes
    nightly[41:] *= 0.75  # from that night on it stays slow: a change
    changes = history(frame_of(nightly)).configs[0].changes
    assert [c.index for c in changes] == [41] and changes[0].verdict == "slower"


def test_a_speedup_is_reported_but_exits_0(tmp_path, cli_here):
    write_history(tmp_path / "n", step_history(seed=3, step=+0.10), seed=3, merged=True)
    proc = cli_here("history", str(tmp_path / "n"), "--format", "markdown")
    assert proc.returncode == 0, proc.stderr
    assert "| faster |" in proc.stdout and "no regression" in proc.stdout


def test_old_regression_then_recovery_exits_0_and_since_drops_it(tmp_path):
    rng = np.random.default_rng(4)
    nightly = np.concatenate([levels(15, rng), levels(15, rng, base=850.0), levels(15, rng)])
    found = history(frame_of(nightly))
    assert [c.verdict for c in found.configs[0].changes] == ["slower", "faster"]
    assert found.regressions == 0
    still_slow = history(frame_of(nightly[:30]))
    assert still_slow.regressions == 1
    since = history(frame_of(nightly[:30]), since="2025-01-16")  # only the slow nights
    assert since.regressions == 0 and len(since.configs[0].runs) == 15


def test_a_change_within_the_threshold_is_a_shift_and_not_a_regression():
    nightly = step_history(seed=5, before=30, after=30, step=-0.08)
    (change,) = history(frame_of(nightly), threshold=0.12).configs[0].changes
    assert change.verdict == "shift" and change.index == 30
    found = history(frame_of(nightly), threshold=0.12)
    assert found.regressions == 0 and found.configs[0].status == "ok"
    assert history(frame_of(nightly), threshold=0.05).regressions == 1


def test_by_driver_version_orders_runs_by_driver(tmp_path, cli_here):
    # Two machines every night, one on driver 550 (1000 samples/s), one on 560 (10%
    # slower). In time order the values alternate: no step. By driver: 550's runs
    # (seen first), then 560's: a step where 560 starts.
    rng = np.random.default_rng(6)
    frames = []
    for night in range(12):
        for driver, level, host in (("550.54", 1000.0, "a"), ("560.28", 900.0, "b")):
            frame = night_rows(night, level * (1 + 0.02 * rng.standard_normal()), rng,
                               driver_version=driver, host=host,
                               run_id=f"{host}{night:03d}")
            frames.append(frame)
    path = tmp_path / "all.csv"
    pd.concat(frames, ignore_index=True).to_csv(path, index=False)
    by_time = cli_here("history", path, "--format", "json")
    assert by_time.returncode == 0, by_time.stderr
    assert json.loads(by_time.stdout)["configurations"][0]["changes"] == []
    proc = cli_here("history", path, "--by", "driver_version", "--format", "json")
    assert proc.returncode == 1, proc.stderr
    (change,) = json.loads(proc.stdout)["configurations"][0]["changes"]
    assert change["index"] == 12 and change["by_value"] == "560.28"
    assert change["verdict"] == "slower"
    table = cli_here("history", path, "--by", "driver_version", "--format", "markdown")
    assert "driver\\_version=560.28 2025-01-01 run b000" in table.stdout and table.returncode == 1


def test_v1_runs_are_timed_from_their_folder(tmp_path):
    # v1 rows carry no started_utc: the folder's timestamp orders them. The folders are
    # read in reverse time order here (under 99/, 98/, ...), so reading order alone
    # would put the step at the wrong end.
    nightly = step_history(seed=7, before=12, after=12)
    write_history(tmp_path / "v1", nightly, seed=7, v1=True,
                  folder_name=lambda n: f"{99 - n:02d}/{START + pd.Timedelta(days=n):%Y%m%dT%H%M%SZ}"
                                        f"-box-run{n:03d}")
    found = history_paths([tmp_path / "v1"])
    (change,) = found.configs[0].changes
    assert change.index == 12 and change.verdict == "slower"
    # run.json's started_utc when the folder name has no timestamp
    other = tmp_path / "v1-plain"
    write_history(other, nightly, seed=7, v1=True, folder_name=lambda n: f"night-{99 - n:02d}")
    for n in range(len(nightly)):
        started = START + pd.Timedelta(days=n)
        (other / f"night-{99 - n:02d}" / "run.json").write_text(
            json.dumps({"schema_version": 1, "started_utc": f"{started:%Y-%m-%dT%H:%M:%SZ}"}))
    (change,) = history_paths([other]).configs[0].changes
    assert change.index == 12 and change.verdict == "slower"


def test_too_few_runs_is_said_not_failed(tmp_path, cli_here):
    write_history(tmp_path / "n", step_history(seed=8, before=5, after=4, step=-0.15), seed=8)
    proc = cli_here("history", tmp_path / "n", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    config = json.loads(proc.stdout)["configurations"][0]
    assert config["status"] == "too_few_runs" and "needs 5 (--min-segment)" in config["notes"][0]
    assert cli_here("history", tmp_path / "n", "--min-segment", "3").returncode == 1


def test_latency_lower_is_better():
    nightly = step_history(seed=9)  # throughput 10% down = latency ~11% up
    found = history(frame_of(nightly), metric="latency_p50_ms")
    (change,) = found.configs[0].changes
    assert change.verdict == "slower" and change.change_pct > 6 and found.regressions == 1


def test_a_metric_without_noise_reports_real_steps_only():
    frame = frame_of(levels(30, np.random.default_rng(11)))
    night = frame["run_id"].str[3:].astype(int)
    frame["peak_mem_bytes"] = np.where(night >= 12, 2.001e9, 2e9)  # 1 MB more: 0.05%
    assert history(frame, metric="peak_mem_bytes").configs[0].changes == []  # under 1%
    frame["peak_mem_bytes"] = np.where(night >= 20, 2.4e9, 2e9) + night % 3
    found = history(frame, metric="peak_mem_bytes")
    (change,) = found.configs[0].changes
    assert change.index == 20 and change.verdict == "slower" and found.regressions == 1


def test_noise_floor_is_the_within_segment_spread():
    rng = np.random.default_rng(10)
    noisy = levels(200, rng, noise=0.03)
    assert 0.025 < noise_floor(noisy) < 0.035
    stepped = np.concatenate([noisy[:100], noisy[100:] * 0.5])
    assert noise_floor(stepped) > 0.1  # one segment across a 50% step: not noise
    assert 0.025 < noise_floor(stepped, breaks=[100]) < 0.035
    assert np.isnan(noise_floor([1.0, 2.0]))


def test_bad_input_is_one_line_exit_2(tmp_path, cli_here):
    (tmp_path / "empty").mkdir()
    one_line_error(run_cli("history", str(tmp_path / "empty")), "no trials.csv")  # no runs
    write_history(tmp_path / "n", levels(3, np.random.default_rng(0)))
    one_line_error(run_cli("history", str(tmp_path / "n"), "--metric", "speed"), "--metric")
    one_line_error(cli_here("history", tmp_path / "n", "--by", "colour"), "--by colour")
    one_line_error(cli_here("history", tmp_path / "n", "--min-segment", "1"), "--min-segment")
    one_line_error(cli_here("history", tmp_path / "n", "--since", "someday"), "--since")
    one_line_error(cli_here("history", tmp_path / "nothing-here"), "no such file")
    failed = night_rows(0, 1000.0, np.random.default_rng(0), status="failed")
    failed.to_csv(tmp_path / "failed.csv", index=False)
    one_line_error(cli_here("history", tmp_path / "failed.csv"), "no trial with status ok")


def test_without_ruptures_one_line_exit_2(tmp_path):
    blocker = tmp_path / "block" / "ruptures"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('blocked for the test')\n")
    write_history(tmp_path / "n", step_history(seed=1, before=10, after=10), seed=1, merged=True)
    path = os.pathsep.join(filter(None, [str(blocker.parent), os.environ.get("PYTHONPATH")]))
    proc = run_cli("history", str(tmp_path / "n"), env_extra={"PYTHONPATH": path})
    one_line_error(proc, "ruptures")


def test_help_describes_the_command(cli_here):
    proc = cli_here("history", "--help")
    assert proc.returncode == 0 and "%%" not in proc.stdout
    for option in ("--metric", "--by", "--threshold", "--min-segment", "--since", "--format"):
        assert option in proc.stdout
    assert "1: a configuration's newest segment is slower" in " ".join(proc.stdout.split())


def test_the_cli_parser_does_not_import_ruptures():
    import subprocess
    import sys

    code = ("import sys; from gpubench.cli import build_parser; build_parser(); "
            "print(sorted(m for m in sys.modules if m.startswith('ruptures') "
            "or m == 'gpubench.results.history'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("fmt", ["table", "markdown", "json"])
def test_every_format_shows_the_change(tmp_path, fmt):
    write_history(tmp_path / "n", step_history(seed=1), seed=1, merged=True)
    found = history_paths([tmp_path / "n"])
    from gpubench.results.history_format import to_json, to_markdown
    from gpubench.cli.history import table_text

    text = {"table": lambda: table_text(found, 200), "markdown": lambda: to_markdown(found),
            "json": lambda: to_json(found, "regression", 1)}[fmt]()
    assert "slower" in text and "mnist" in text
    if fmt == "json":
        assert json.loads(text)["configurations"][0]["noise_floor"] > 0


def test_report_gains_a_trend_chart_with_the_change_marked(tmp_path, cli_here):
    write_history(tmp_path / "n", step_history(seed=1), seed=1, merged=True)
    (change,) = history_paths([tmp_path / "n"]).configs[0].changes
    out = tmp_path / "report.html"
    proc = cli_here("report", tmp_path / "n", "-o", out)
    assert proc.returncode == 0, proc.stderr
    html = out.read_text()
    day = START + pd.Timedelta(days=change.index)
    assert "Trend over runs" in html
    assert f"change at run {change.index + 1} ({day:%Y-%m-%d} run {change.run_id})" in html
    assert "regression" in html
    few = tmp_path / "few.html"
    write_history(tmp_path / "two", levels(2, np.random.default_rng(0)), merged=True)
    assert cli_here("report", tmp_path / "two", "-o", few).returncode == 0
    assert "Trend over runs" not in few.read_text()


def simulate(histories: int = 100) -> None:
    """The figures in docs/history.md: `python tests/test_history.py` (about a
    minute). Run values directly (each night: the median of 3 trials, 0.5% apart),
    nights with 3% run-to-run noise; the same detection as `gpubench history`."""
    from gpubench.results.history import _verdict, candidate_breaks, confirmed_changes

    def detect(values):
        breaks, stats, _ = confirmed_changes(values, candidate_breaks(values, 5), "higher", 0.05)
        return breaks, bool(breaks) and _verdict(stats[-1]) == "slower"

    def run_values(nightly, rng):
        return np.median(nightly[:, None] * (1 + 0.005 * rng.standard_normal((len(nightly), 3))), axis=1)

    def noise(seed, nights=60, outlier=False):
        rng = np.random.default_rng(1000 + seed)
        nightly = 1000 * (1 + 0.03 * rng.standard_normal(nights))
        if outlier:
            nightly[rng.integers(0, nights)] *= 0.75
        return run_values(nightly, rng)

    def step(seed, change, after):
        rng = np.random.default_rng(2000 + seed)
        nightly = np.concatenate([1000 * (1 + 0.03 * rng.standard_normal(30)),
                                  1000 * (1 + change) * (1 + 0.03 * rng.standard_normal(after))])
        return run_values(nightly, rng)

    for name, make in (("60 nights of noise", lambda s: noise(2 * s)),
                       ("60 nights of noise, one night 25% slow", lambda s: noise(2 * s + 1, outlier=True)),
                       ("120 nights of noise", lambda s: noise(s, nights=120))):
        found = [detect(make(s)) for s in range(histories)]
        print(f"{name}: a change in {sum(bool(b) for b, _ in found)}/{histories}, "
              f"a regression (exit 1) in {sum(r for _, r in found)}/{histories}")
    for change, after in ((-0.10, 10), (-0.10, 5), (+0.10, 10), (-0.05, 10), (-0.03, 30)):
        found = [detect(step(s, change, after)) for s in range(histories)]
        print(f"{change:+.0%} after 30 nights, {after} nights after: exit 1 in "
              f"{sum(r for _, r in found)}/{histories}, change at night 30 exactly "
              f"{sum(30 in b for b, _ in found)}, within ±1 {sum(any(abs(i - 30) <= 1 for i in b) for b, _ in found)}, "
              f"other changes {sum(sum(abs(i - 30) > 1 for i in b) for b, _ in found)}")


if __name__ == "__main__":
    simulate()
