"""The server scenario against queueing theory, on a test backend whose batch of n
samples takes a known time (2 ms + 0.1 ms per sample, a sleep: tests/suite_plugins.py).

One query at a time (max batch 1) it is an M/D/1 queue of capacity 1/S:
- at 50% of capacity the queue is bounded, and the mean wait is Pollaczek-Khinchine's
  rho S / (2 (1 - rho));
- at 150% it grows without bound: a query arriving t seconds in waits (rho - 1) t, and
  the server completes 1/S queries a second.
With batches of up to 8 the capacity is 8 / S(8), and --find-max-qps finds it.

The service times the formulas take are the ones the probe measured: a sleep overshoots
by a scheduling delay, and a loaded machine stretches it; the relations must hold
whatever the machine does."""

import numpy as np
import pytest

import suite_plugins  # noqa: F401 (registers test-service-time)
from gpubench.measure.arrivals import poisson_schedule
from gpubench.measure.server import run_probe
from gpubench.measure.serving import ServingSettings
from gpubench.telemetry import NullSampler
from suite_plugins import ServiceTimeStep, service_s

ONE_AT_A_TIME_QPS = 1 / service_s(1)  # 476 queries/s
SEED = 7


def _probe(load, seconds):
    step = ServiceTimeStep(1)
    step.start_serving(np.zeros((64, 2), np.float32))
    settings = ServingSettings(batch=1, min_duration_s=seconds, min_queries=1, warmup_s=0,
                               trials=1, seed=SEED)
    rate = load * ONE_AT_A_TIME_QPS
    trial, _ = run_probe(step.serve, 64, rate, SEED, settings, NullSampler(), 0)
    schedule = poisson_schedule(rate, SEED, seconds, 1)
    return trial, schedule, trial.service_s  # each batch's measured service time


def test_half_capacity_queues_as_md1_says():
    trial, schedule, service = _probe(0.5, 2.0)
    rate = len(schedule) / schedule[-1]  # the rate this probe really offered
    rho = rate * service.mean()
    assert trial.unfinished == 0 and 0.35 < rho < 0.7
    latency = trial.latencies_s
    slope = np.polyfit(schedule, latency, 1)[0]
    assert abs(slope) < 0.05  # bounded: latency does not grow over the probe
    assert np.percentile(latency, 99) < 10 * service.mean()
    # Pollaczek-Khinchine's mean wait, M/G/1 (the sleeps are near-deterministic: M/D/1,
    # but a loaded machine stretches some of them; the formula takes what they were)
    expected = rate * np.mean(service ** 2) / (2 * (1 - rho))
    # A query finding the server idle (one at a time, in order: it arrived after the last
    # one completed) waits for nothing in theory; what it waited is the harness's own
    # hand-off (the arrival thread's and the serving loop's wake-ups, longer on a busy
    # machine), which every query of the busy period it starts waits too.
    idle = np.concatenate([[True], schedule[1:] > (schedule + latency)[:-1]])
    hand_off = latency[idle].mean() - service.mean()
    wait = latency.mean() - service.mean()
    assert wait == pytest.approx(expected + hand_off, rel=0.35)


def test_150_percent_of_capacity_queues_without_bound():
    trial, schedule, service = _probe(1.5, 1.0)
    rho = len(schedule) / schedule[-1] * service.mean()
    assert rho > 1.3
    slope = np.polyfit(schedule, trial.latencies_s, 1)[0]
    assert slope == pytest.approx(rho - 1, abs=0.15)  # each second in adds rho - 1 of wait
    assert trial.samples / trial.duration_s == pytest.approx(1 / service.mean(), rel=0.1)
    late, early = trial.latencies_s[-50:].mean(), trial.latencies_s[:50].mean()
    assert late > 20 * early


def test_find_max_qps_lands_on_the_capacity_of_batches_of_8(tmp_path):
    import pandas as pd

    from conftest import PLUGIN_ENV, run_cli_here

    capacity = 8 / service_s(8)  # 2,857 queries/s
    done = run_cli_here("run", "-w", "linreg", "-b", "test-service-time", "--scenario", "server",
                        "--find-max-qps", "--latency-bound-ms", "30", "--max-batch", "8",
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
