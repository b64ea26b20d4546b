"""The generate server on torch-cuda (skipped, with the reason, where there is no GPU):
eager and CUDA-graph decode serve Poisson arrivals with continuous and static batching,
every request finishes at a rate well under capacity, with the token columns and
goodput filled."""

import pytest

from gpubench.measure.protocol import ProtocolConfig
from gpubench.measure.runner import RunRequest, execute_run

pytestmark = pytest.mark.gpu

FAST = ProtocolConfig(trials=1, warmup_s=0.2, min_trial_s=0.5)
SMALL = {"layers": "2", "d_model": "128", "heads": "4", "seq_len": "128", "vocab": "512"}


def serve(tmp_path, exec_mode, batching):
    outcome = execute_run(RunRequest(
        workload="gpt", backend="torch-cuda", mode="generate", scenario="server",
        exec=exec_mode, params=SMALL, batch_size=8, output_len=32, prompt_dist="uniform:8-64",
        batching=batching, target_qps=50.0, min_queries=40, ttft_bound_ms=1000.0,
        tpot_bound_ms=100.0, protocol=FAST, out_dir=tmp_path / batching))
    assert outcome.status == "ok", outcome.error
    return outcome.trials


@pytest.mark.parametrize("exec_mode", ["eager", "cuda-graphs"])
def test_the_generate_server_serves_on_cuda(tmp_path, exec_mode):
    cont = serve(tmp_path, exec_mode, "continuous")
    stat = serve(tmp_path, exec_mode, "static")
    for t in (cont, stat):
        assert (t["queries_unfinished"] == 0).all() and (t["requests"] >= 40).all()
        assert (t["tpot_p50_ms"] > 0).all() and (t["goodput_rps"] > 0).all()
        assert (t["kv_cache_bytes"] > 0).all()
    assert set(cont["batching"]) == {"continuous"} and set(stat["batching"]) == {"static"}
