"""The serving scenarios through `gpubench run` (in this process, --no-isolate: the
worker's start-up is not what is tested): their rows and run.json on torch-cpu and
onnxruntime-cpu, the one-line refusals, schema 6 and its migration, suites, compare and
the report's latency-against-load chart; and the device clock's mapping against a
stand-in for CUDA events."""

import json

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli_here
from gpubench.results.schema import SCHEMA_VERSION

pytest.importorskip("torch")

TINY = ("-w", "mnist", "-p", "hidden=16", "--threads", "1", "--telemetry", "none",
        "--warmup-s", "0.05", "--min-trial-s", "0.05", "--no-isolate")


def _run(tmp_path, *args):
    done = run_cli_here("run", *TINY, "--out", str(tmp_path), "--format", "json", *args)
    assert done.returncode == 0, done.stderr
    folder = json.loads(done.stdout)["path"]
    trials = pd.read_csv(f"{folder}/trials.csv")
    meta = json.loads(open(f"{folder}/run.json").read())
    return trials, meta


SCENARIOS = {"single-stream": ((), 1), "multi-stream": (("--samples-per-query", "4"), 4),
             "offline": (("--max-batch", "32"), 32),
             "server": (("--target-qps", "2000", "--latency-bound-ms", "50", "--max-batch", "8"), 8)}


# every scenario on torch-cpu; onnxruntime-cpu's serve() is one call whatever the
# scenario, so two of them show it (the CI budget)
@pytest.mark.parametrize("backend, scenario", [
    *(("torch-cpu", s) for s in SCENARIOS), ("onnxruntime-cpu", "single-stream"),
    ("onnxruntime-cpu", "server")])
def test_each_scenario_writes_its_rows(tmp_path, backend, scenario):
    flags, batch = SCENARIOS[scenario]
    trials, meta = _run(tmp_path, "-b", backend, "--scenario", scenario, "--trials", "2",
                        *flags, *(() if scenario == "offline" else ("--min-queries", "662")))
    assert list(trials["scenario"]) == [scenario] * 2 and set(trials["mode"]) == {"infer"}
    assert set(trials["batch_size"]) == {batch} and set(trials["schema_version"]) == {SCHEMA_VERSION}
    assert (trials["status"] == "ok").all() and (trials["throughput_samples_per_s"] > 0).all()
    serving = meta["serving"]
    assert serving["latency_clock"] == "host_after_sync"
    assert serving["early_stopping"]["confidence"] == 0.99
    if scenario == "offline":  # one query of every sample: samples/s, no percentiles
        assert set(trials["queries"]) == {1} and trials["latency_p99_ms"].isna().all()
        assert (trials["batch_size_max"] == batch).all()
        return
    assert (trials["queries"] >= 662).all()  # enough for p99 at 99%
    assert trials["latency_p99_ms"].notna().all()
    # p99.9 needs 6,636: a stream fits as many queries as its 0.05 s hold past --min-queries
    # (on a fast machine, more than that), the server its schedule's 662
    assert (trials["latency_p999_ms"].isna() == (trials["queries"] < 6636)).all()
    if scenario == "server":
        assert set(trials["queries"]) == {662}
    assert (trials["latency_p99_ms"] >= trials["latency_p50_ms"]).all()
    for record in serving["trials"]:  # the claim is never below what was observed
        assert record["observed_ms"]["latency_p99_ms"] <= trials["latency_p99_ms"].max()
    if scenario == "server":
        assert set(trials["target_qps"]) == {2000} and set(trials["offered_qps"]) == {2000}
        assert set(trials["latency_bound_ms"]) == {50} and set(trials["batch_timeout_ms"]) == {0}
        assert trials["latency_bound_met"].isin([True, False]).all()
        assert (trials["batch_size_max"] <= batch).all()
        assert "issue_lag_ms" in serving["trials"][0]
    else:
        assert trials["target_qps"].isna().all() and trials["offered_qps"].isna().all()


@pytest.mark.parametrize("args, message", [
    (("--scenario", "offline", "--target-qps", "100"), "--target-qps is for the server scenario"),
    (("--scenario", "server", "--mode", "train", "--target-qps", "100"),
     "scenario server serves inference: it cannot run in --mode train"),
    (("--scenario", "server",), "scenario server needs one of --target-qps"),
    (("--scenario", "server", "--find-max-qps"), "give --latency-bound-ms"),
    (("--scenario", "server", "--samples-per-query", "4", "--target-qps", "9"),
     "--samples-per-query is for scenario multi-stream, not server"),
    (("--scenario", "single-stream", "--max-batch", "4"), "--max-batch is for scenario server"),
    (("--scenario", "single-stream", "--batch-size", "4"), "single-stream issues one sample"),
    (("--scenario", "server", "--target-qps", "9", "--target-rel-ci", "0.01"),
     "--target-rel-ci adds trials to the throughput scenario"),
    (("--scenario", "server", "--find-max-qps", "--latency-bound-ms", "5", "--trials", "3"),
     "--find-max-qps probes as the search goes"),
    (("--scenario", "multi-stream", "--min-queries", "0"), "expected a positive integer"),
    (("--target-qps", "100",), "--target-qps is for the server scenario (--scenario server), "
                               "not throughput"),
    (("--scenario", "offline", "--min-queries", "10"), "--min-queries is for the scenarios"),
])
def test_user_errors_are_one_line(tmp_path, args, message):
    done = run_cli_here("run", "-w", "mnist", "-b", "torch-cpu", "--out", str(tmp_path), *args)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 or "usage:" in done.stderr
    assert not list(tmp_path.iterdir())  # refused before anything was written


def test_cuda_graphs_cannot_serve_batches_of_every_size():
    from gpubench.errors import Unsupported
    from gpubench.measure.scenarios.registry import resolve_scenario
    from gpubench.measure.request import RunRequest
    from gpubench.measure.scenarios.serving.options import check_serving_plan
    from gpubench.workloads import resolve_workload

    req = RunRequest("mnist", "torch-cuda", mode="infer", scenario="server", target_qps=9.0,
                     batch_size=16)
    with pytest.raises(Unsupported, match="cuda-graphs replays one captured batch shape; "
                                          "scenario server runs batches of every size up to 16"):
        check_serving_plan(req, resolve_scenario("server"), "cuda-graphs",
                           resolve_workload("mnist", {}))
    check_serving_plan(req, resolve_scenario("single-stream"), "cuda-graphs",
                       resolve_workload("mnist", {}))  # one shape: fine


def test_v5_rows_read_with_the_serving_columns_empty(tmp_path):
    from gpubench.results.reader import read_trials
    from gpubench.results.schema import trial_columns

    new = ["target_qps", "latency_bound_ms", "batch_timeout_ms", "queries", "offered_qps",
           "achieved_qps", "latency_mean_ms", "latency_p999_ms", "latency_bound_met",
           "queries_unfinished", "batch_size_mean", "batch_size_p50", "batch_size_max",
           "energy_j_per_query", "max_qps"]
    row = {c: None for c in trial_columns() if c not in new}
    row.update(run_id="r5", workload="mnist", backend="torch-cpu", mode="infer",
               precision="fp32", batch_size=64, params="hidden=128", scenario="throughput",
               device_index=0, device_name="cpu", schema_version=5, trial=0, duration_s=1.0,
               throughput_samples_per_s=1000.0, status="ok")
    pd.DataFrame([row]).to_csv(tmp_path / "trials.csv", index=False)
    trials = read_trials(tmp_path / "trials.csv")
    assert set(trials["schema_version"]) == {SCHEMA_VERSION} and set(new) <= set(trials.columns)
    assert trials[new].isna().all().all() and trials["scenario"].iloc[0] == "throughput"


def test_a_suite_crosses_scenarios_and_rates(tmp_path):
    from gpubench.errors import UserError
    from gpubench.suite.config import parse_suite

    runs = parse_suite({"runs": [
        {"workloads": "mnist", "backends": "torch-cpu", "scenarios": ["single-stream", "offline"]},
        {"workloads": "mnist", "backends": "torch-cpu", "scenarios": "server",
         "target_qps": [100, 200], "latency_bound_ms": 5, "batch_timeout_ms": 0.5}]},
        tmp_path / "s.yaml")
    assert [r.label() for r in runs] == [
        "mnist torch-cpu infer fp32 batch default single-stream",  # modes: infer by default
        "mnist torch-cpu infer fp32 batch default offline",
        "mnist torch-cpu infer fp32 batch default server at 100 QPS p99 <= 5 ms",
        "mnist torch-cpu infer fp32 batch default server at 200 QPS p99 <= 5 ms"]
    from gpubench.suite.plan import request_for
    req, _ = request_for(runs[3], tmp_path / "run", 0, None)
    assert (req.scenario, req.target_qps, req.latency_bound_ms, req.batch_timeout_ms) == \
        ("server", 200.0, 5.0, 0.5)
    with pytest.raises(UserError, match=r"s.yaml: runs\[0\]: --target-qps is for the server "):
        parse_suite({"runs": [{"workloads": "mnist", "backends": "torch-cpu",
                               "scenarios": "offline", "target_qps": 100}]}, tmp_path / "s.yaml")
    with pytest.raises(UserError, match=r"runs\[0\].scenarios\[0\]: unknown scenario 'soak'"):
        parse_suite({"runs": [{"workloads": "mnist", "backends": "torch-cpu",
                               "scenarios": ["soak"]}]}, tmp_path / "s.yaml")


def test_compare_and_report_on_server_runs(tmp_path):
    for rate in ("1500", "1500", "3000"):
        _run(tmp_path, "-b", "torch-cpu", "--scenario", "server", "--target-qps", rate,
             "--latency-bound-ms", "50", "--trials", "3", "--min-queries", "662")
    runs = sorted(p.parent for p in tmp_path.glob("*/trials.csv"))
    same = [r for r in runs if pd.read_csv(r / "trials.csv")["target_qps"].iloc[0] == 1500]
    # server trials carry `contended` as throughput's do; on a busy machine all may be
    done = run_cli_here("compare", str(same[0]), str(same[1]), "--metric", "latency_p99_ms",
                        "--format", "json", "--include-contended")
    assert done.returncode in (0, 1, 3), done.stderr  # a verdict, not bad input
    rows = json.loads(done.stdout)["rows"]
    assert len(rows) == 1 and rows[0]["metric"] == "latency_p99_ms" and rows[0]["n_base"] == 3
    report = tmp_path / "report.html"
    done = run_cli_here("report", str(tmp_path), "-o", str(report))
    assert done.returncode == 0, done.stderr
    html = report.read_text()
    assert "Latency against load" in html and "p99 bound 50 ms" in html
    from gpubench.results.report_latency import latency_points
    from gpubench.results.compare_load import find_trial_files, read_files
    trials = read_files(find_trial_files(tmp_path)).assign(group="g")
    points = latency_points(trials, ["g"])
    assert list(points["offered_qps"]) == [1500, 3000]  # one line: the rate left out of its label


def test_tf_cpu_serves_batches_of_any_size():
    pytest.importorskip("tensorflow")
    from gpubench.backends import StepConfig, get_backend
    from gpubench.workloads import resolve_workload

    workload = resolve_workload("mnist", {"hidden": "16"})
    step = get_backend("tf-cpu").prepare(workload, StepConfig("infer", "fp32", 8))
    library = np.random.default_rng(0).standard_normal((20, 1, 28, 28)).astype(np.float32)
    assert step.start_serving(library) == {"latency_clock": "host_after_sync"}
    for n in (1, 5, 8):
        assert step.serve(np.arange(n)) is None
    assert step._serve_fn.experimental_get_tracing_count() == 1  # one graph for every size


class _FakeStream:
    def synchronize(self):
        pass


class _FakeTime:
    """The host's time.perf_counter as a stand-in: each reading is 1 ms after the last.
    The device's clock is the host's less a day (another epoch: only elapsed times
    between events mean anything)."""

    def __init__(self):
        self.now = 500.0

    def perf_counter(self):
        self.now += 0.001
        return self.now


class _FakeEvent:
    """torch.cuda.Event's timing as a stand-in: the device runs it as it is recorded."""

    time = None

    def __init__(self, enable_timing=False):
        self.at = None

    def record(self, stream=None):
        self.at = _FakeEvent.time.perf_counter() - 86400.0

    def synchronize(self):
        pass

    def elapsed_time(self, end):
        return (end.at - self.at) * 1e3


def test_the_device_clock_maps_completions_onto_the_host_clock(monkeypatch):
    import time

    import torch

    from gpubench.backends.cuda_events import DeviceClock

    fake = _FakeTime()
    monkeypatch.setattr(_FakeEvent, "time", fake)
    monkeypatch.setattr(torch.cuda, "Event", _FakeEvent)
    monkeypatch.setattr(time, "perf_counter", fake.perf_counter)
    clock = DeviceClock(_FakeStream())
    # the host read its clock (500.002), then the reference event ran (500.003), then the
    # host read its clock again (500.004): the mapping's error is within those 2 ms
    assert clock.facts() == {"latency_clock": "device_events",
                             "clock_alignment_s": pytest.approx(0.002),
                             "clock_reference_max_age_s": 0.1, "clock_anchors": 1}
    fake.now = 600.0
    stamped = clock.stamp()  # the completion ran at host time 600.001
    # the reference's host reading plus the device's elapsed time since the reference
    assert stamped == pytest.approx(600.001 - 0.001)
    assert abs(stamped - 600.001) <= clock.alignment_s
