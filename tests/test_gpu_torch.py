"""torch-cuda against a real GPU: skipped (with the reason) where there is none."""

import pytest

from gpubench.measure.protocol import ProtocolConfig
from gpubench.measure.runner import RunRequest, execute_run

pytestmark = pytest.mark.gpu

FAST = ProtocolConfig(trials=2, warmup_s=0.1, min_trial_s=0.1)


@pytest.mark.parametrize("precision", ["fp32", "tf32", "fp16", "bf16"])
@pytest.mark.parametrize("mode", ["train", "infer"])
def test_torch_cuda_runs_every_precision(tmp_path, mode, precision):
    outcome = execute_run(RunRequest(workload="lenet5", backend="torch-cuda", mode=mode,
                                     precision=precision, protocol=FAST, out_dir=tmp_path))
    assert outcome.status == "ok", outcome.error
    t = outcome.trials
    assert (t["throughput_samples_per_s"] > 0).all()
    assert (t["peak_mem_bytes"] > 0).all()
    assert t["device_name"].iloc[0] and t["cuda_version"].iloc[0]
    if mode == "infer":  # CUDA-event latencies
        assert (t["latency_p50_ms"] > 0).all()
        assert (t["latency_p50_ms"] <= t["latency_p99_ms"]).all()


def test_auto_picks_the_gpu(tmp_path):
    outcome = execute_run(RunRequest(workload="mnist", backend="auto", protocol=FAST,
                                     out_dir=tmp_path))
    assert outcome.trials["backend"].iloc[0] == "torch-cuda"


def test_missing_gpu_index_lists_gpus(tmp_path):
    from gpubench.errors import UserError

    with pytest.raises(UserError, match="no GPU with index 99"):
        execute_run(RunRequest(workload="mnist", backend="torch-cuda", device_index=99,
                               protocol=FAST, out_dir=tmp_path))


def test_resnet50_trains_on_gpu(tmp_path):
    outcome = execute_run(RunRequest(workload="resnet50", backend="torch-cuda", batch_size=32,
                                     params={"image_size": "64"}, precision="bf16",
                                     protocol=FAST, out_dir=tmp_path))
    assert outcome.status == "ok", outcome.error


def test_infer_latency_is_timed_on_the_runs_gpu(tmp_path):
    # Events recorded on another GPU's (idle) stream read near zero: on the last GPU,
    # the per-step device time must account for a real share of the trial.
    import torch

    index = torch.cuda.device_count() - 1
    outcome = execute_run(RunRequest(workload="lenet5", backend="torch-cuda", mode="infer",
                                     batch_size=1024, device_index=index, protocol=FAST,
                                     out_dir=tmp_path, telemetry="none"))
    assert outcome.status == "ok", outcome.error
    t = outcome.trials
    assert (t["device_index"] == index).all()
    busy = t["latency_p50_ms"] * t["iterations"] / (t["duration_s"] * 1e3)
    assert (busy > 0.3).all(), busy.tolist()
