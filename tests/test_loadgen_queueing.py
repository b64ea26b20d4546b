"""The server scenario against queueing theory, on a test backend whose batch of n
samples takes a known time (2 ms + 0.1 ms per sample: tests/suite_plugins.py), served on
a virtual clock (suite_plugins.VirtualTime): a probe is then a discrete-event simulation,
so what it measures is the serving loop's queueing, whatever this machine's speed.

One query at a time (max batch 1) it is an M/D/1 queue of capacity 1/S:
- each query starts when it arrives or when the one before it completes, whichever is
  later, and takes S (Lindley's recursion): its latency, exactly;
- at 50% of capacity the queue is bounded, and the mean wait is Pollaczek-Khinchine's
  rho S / (2 (1 - rho));
- at 150% it grows without bound: a query arriving t seconds in waits (rho - 1) t, and
  the server completes 1/S queries a second.
With batches of up to 8 the capacity is 8 / S(8), and --find-max-qps finds it.

The same relations on real sleeps and threads measure this machine too (its scheduling
delays are in them): a benchmark's figure, not a test's. One probe here runs on the
real clock and threads, and asserts only what holds at any speed."""

import numpy as np
import pytest

import suite_plugins  # noqa: F401 (registers test-service-time, test-virtual-service-time)
from gpubench.measure.scenarios.serving.arrivals import poisson_schedule
from gpubench.measure.scenarios.serving.server import run_probe
from gpubench.measure.scenarios.serving.base import ServingSettings
from gpubench.telemetry import NullSampler
from suite_plugins import ServiceTimeStep, VirtualServiceStep, VirtualTime, service_s

S = service_s(1)
ONE_AT_A_TIME_QPS = 1 / S  # 476 queries/s
SEED = 7


def _probe(step, load, seconds):
    step.start_serving(np.zeros((64, 2), np.float32))
    settings = ServingSettings(batch=1, min_duration_s=seconds, min_queries=1, warmup_s=0,
                               trials=1, seed=SEED)
    rate = load * ONE_AT_A_TIME_QPS
    trial, _ = run_probe(step.serve, 64, rate, SEED, settings, NullSampler(), 0)
    return trial, poisson_schedule(rate, SEED, seconds, 1)


def _virtual_probe(monkeypatch, load, seconds):
    VirtualTime().install(monkeypatch)
    trial, schedule = _probe(VirtualServiceStep(1), load, seconds)
    assert trial.service_s == pytest.approx(np.full(len(trial.service_s), S), rel=1e-9)
    return trial, schedule


def _lindley_latencies(arrivals, service):
    """One server, first come first served: each query's latency."""
    done, free = np.empty_like(arrivals), -np.inf
    for i, arrival in enumerate(arrivals):
        free = max(arrival, free) + service
        done[i] = free
    return done - arrivals


def test_every_latency_is_lindleys_and_half_capacity_queues_as_md1_says(monkeypatch):
    trial, schedule = _virtual_probe(monkeypatch, 0.5, 20.0)
    assert trial.unfinished == 0 and trial.queries == len(schedule) > 4500
    assert trial.batch_sizes == [1] * len(schedule)
    latency = trial.latencies_s
    # from its scheduled arrival to its completion, the queueing included: exactly
    np.testing.assert_allclose(latency, _lindley_latencies(schedule, S), rtol=0, atol=1e-9)
    rate = len(schedule) / schedule[-1]  # the rate this probe's arrivals really offered
    rho = rate * S
    assert 0.45 < rho < 0.55
    assert abs(np.polyfit(schedule, latency, 1)[0]) < 0.01  # bounded: no growth
    assert np.percentile(latency, 99) < 10 * S
    # Pollaczek-Khinchine (M/D/1); the sample mean of 4,800 correlated waits is within
    # a few % of it (the seeded arrivals: the same figure on every run)
    wait = latency.mean() - S
    assert wait == pytest.approx(rho * S / (2 * (1 - rho)), rel=0.1)


def test_150_percent_of_capacity_queues_without_bound(monkeypatch):
    trial, schedule = _virtual_probe(monkeypatch, 1.5, 2.0)
    assert trial.unfinished == 0  # no latency bound: the probe drains its backlog
    np.testing.assert_allclose(trial.latencies_s, _lindley_latencies(schedule, S), rtol=0,
                               atol=1e-9)
    rho = len(schedule) / schedule[-1] * S
    assert rho > 1.4
    slope = np.polyfit(schedule, trial.latencies_s, 1)[0]
    assert slope == pytest.approx(rho - 1, abs=0.05)  # each second in adds rho - 1 of wait
    assert trial.samples / trial.duration_s == pytest.approx(1 / S, rel=0.01)
    late, early = trial.latencies_s[-50:].mean(), trial.latencies_s[:50].mean()
    assert late > 20 * early


def test_a_probe_on_the_real_clock_and_threads_accounts_for_every_query():
    """The arrival thread, the real queue and sleeps: what holds however slow or busy
    the machine is (a loaded machine may fall behind: then queries are unfinished)."""
    trial, schedule = _probe(ServiceTimeStep(1), 0.5, 0.3)
    assert trial.queries == len(schedule) and trial.samples + trial.unfinished == trial.queries
    assert len(trial.latencies_s) == trial.queries and trial.batch_sizes == [1] * trial.samples
    assert (trial.service_s >= S - 1e-6).all()  # a sleep is never shorter than asked
    finished = trial.latencies_s[:trial.samples]  # one at a time, in order
    assert (finished >= S - 1e-6).all()  # a query's latency holds its own service
    # each completes at least one service time after the one before it
    completed = schedule[:trial.samples] + finished
    assert (np.diff(completed) >= S - 1e-6).all()
    assert trial.extra["issue_lag_ms"]["p50"] >= 0  # never issued before its time


def test_find_max_qps_lands_on_the_capacity_of_batches_of_8(tmp_path, monkeypatch):
    import pandas as pd

    from conftest import PLUGIN_ENV, run_cli_here

    VirtualTime().install(monkeypatch)
    capacity = 8 / service_s(8)  # 2,857 queries/s
    done = run_cli_here("run", "-w", "linreg", "-b", "test-virtual-service-time", "--scenario",
                        "server", "--find-max-qps", "--latency-bound-ms", "30", "--max-batch", "8",
                        "--warmup-s", "0.1", "--min-trial-s", "0.5", "--telemetry", "none",
                        "--no-isolate", "--out", str(tmp_path), env_extra=PLUGIN_ENV)
    assert done.returncode == 0, done.stderr
    assert "--find-max-qps probes" in done.stdout  # every probe in a table under the summary
    rows = pd.read_csv(next(tmp_path.glob("*/trials.csv")))
    found = rows["max_qps"].dropna()
    assert len(found) == 1 and found.index[0] == rows.index[-1]  # on the last probe's row
    assert found.iloc[0] == pytest.approx(capacity, rel=0.10)
    held = rows["latency_bound_met"].astype(bool)
    assert found.iloc[0] == rows.loc[held, "offered_qps"].max()
    assert (rows.loc[~held, "offered_qps"] > found.iloc[0]).all()
    assert rows["batch_size_mean"].max() > 6  # near capacity the batcher fills its batches
    assert rows["target_qps"].isna().all() and set(rows["latency_bound_ms"]) == {30}
