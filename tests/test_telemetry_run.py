"""Telemetry in real runs through the Python API (torch-cpu, in process): `auto` on a
CPU backend samples the CPU, bandwidth falls back to the workload's analytic bytes,
and a bad sample rate is refused before anything is written."""

from __future__ import annotations

import pandas as pd
import pytest

from gpubench.errors import UserError
from gpubench.measure.protocol import ProtocolConfig
from gpubench.measure.runner import RunRequest, execute_run
from gpubench.workloads import resolve_workload

pytest.importorskip("torch")

FAST = ProtocolConfig(trials=2, warmup_s=0.05, min_trial_s=0.1)


def test_auto_on_the_cpu_samples_the_cpu(tmp_path):
    outcome = execute_run(RunRequest(workload="linreg", backend="torch-cpu", protocol=FAST,
                                     telemetry="auto", sample_hz=50, out_dir=tmp_path))
    assert outcome.status == "ok"
    notes = outcome.telemetry
    assert notes["sampler"] == "cpu" and notes["sample_hz"] == 50
    assert notes["energy_counter"] == "RAPL package energy" or "energy" in notes["unavailable"]
    samples = pd.read_csv(outcome.path / "samples.csv")
    assert {"t_s", "device_index", "trial", "sample_kind", "cpu_util_pct", "proc_cpu_pct",
            "rss_bytes"} <= set(samples.columns)
    assert set(samples["trial"].dropna().astype(int)) == {0, 1}
    assert (samples["rss_bytes"] > 0).all()
    trials = outcome.trials
    assert trials["driver_version"].isna().all()  # CPU sampling never touches NVML
    assert trials["gpu_util_pct"].isna().all()


def test_bandwidth_without_telemetry_is_the_workloads_analytic_bytes(tmp_path):
    outcome = execute_run(RunRequest(workload="mnist", backend="torch-cpu", protocol=FAST,
                                     telemetry="none", out_dir=tmp_path))
    trials = outcome.trials
    per_step = resolve_workload("mnist").stats.bytes_per_step(64, "train", 4)
    expected = per_step * trials["iterations"] / trials["duration_s"] / 1e9
    assert (trials["mem_bw_source"] == "analytic").all()
    assert trials["mem_bw_gbs"].to_numpy() == pytest.approx(expected.to_numpy())
    assert outcome.telemetry == {"sampler": "none"}


@pytest.mark.parametrize("hz", [0, 1e6])
def test_sample_rate_out_of_range_is_refused_before_anything_is_written(tmp_path, hz):
    with pytest.raises(UserError, match="sample rate must be above 0 and at most 1000 Hz"):
        execute_run(RunRequest(workload="linreg", backend="torch-cpu", protocol=FAST,
                               sample_hz=hz, out_dir=tmp_path / "out"))
    assert not (tmp_path / "out").exists()
