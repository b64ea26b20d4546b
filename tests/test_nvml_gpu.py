"""NVML telemetry against a real NVIDIA driver and GPU. Marked `gpu`: skipped (with the
reason) where there is none; run on GPU machines and the nightly GPU runners."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gpubench.measure.protocol import ProtocolConfig
from gpubench.measure.runner import RunRequest, execute_run

pytestmark = pytest.mark.gpu


def test_real_driver_inventory():
    from gpubench.telemetry.nvml import gpu_inventory

    inventory = gpu_inventory()
    assert inventory["available"], inventory.get("reason")
    assert inventory["driver_version"] and inventory["gpus"]
    gpu = inventory["gpus"][0]
    assert gpu["name"] and gpu["uuid"].startswith("GPU-")
    assert gpu["memory_total_bytes"] > 2**30
    if gpu["peak_mem_bw_gbs"] is not None:
        assert 100 < gpu["peak_mem_bw_gbs"] < 20_000


def test_nvml_finds_the_gpu_torch_uses():
    import torch

    from gpubench.telemetry.nvml import Nvml
    from gpubench.telemetry.nvml_select import select_device

    props = torch.cuda.get_device_properties(0)
    uuid = f"GPU-{props.uuid}"
    with Nvml() as nvml:
        assert select_device(nvml, 0, uuid).uuid() == uuid
        assert select_device(nvml, 0, None).uuid() == uuid or torch.cuda.device_count() > 1


def test_cuda_run_fills_the_gpu_columns(tmp_path):
    outcome = execute_run(RunRequest(
        workload="mnist", backend="torch-cuda", telemetry="auto", sample_hz=20,
        protocol=ProtocolConfig(trials=3, warmup_s=0.5, min_trial_s=1.0), out_dir=tmp_path))
    assert outcome.status == "ok", outcome.error
    trials = outcome.trials
    assert outcome.telemetry["sampler"] == "nvml"
    assert trials["driver_version"].notna().all()
    assert (trials["power_avg_w"] > 1).all()
    assert trials["energy_source"].isin(["counter", "integrated"]).all()
    assert trials["energy_j"].to_numpy() == pytest.approx(
        (trials["power_avg_w"] * trials["duration_s"]).to_numpy(), rel=0.05)
    assert (trials["sm_clock_mhz"] > 0).all()
    assert trials["mem_bw_source"].isin(["gpm", "util_estimate", "analytic"]).all()
    assert trials["throttled"].notna().all()


def test_cli_env_lists_the_gpu():
    done = subprocess.run([sys.executable, "-m", "gpubench", "env", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert '"available": true' in done.stdout and '"peak_mem_bw_gbs"' in done.stdout
