"""The generate server's options (scenarios/serving/options.py): what they refuse
together (one line, exit 2, before anything is built), and the identity its rows hold."""

import subprocess
import sys

import pytest

from gpubench.errors import UserError
from gpubench.measure.request import RunRequest, identity
from gpubench.measure.scenarios.serving.options import (
    check_prompt_dist, validate_serving_request,
)
from gpubench.workloads import resolve_workload


def generate(**values):
    return RunRequest("gpt", "torch-cpu", mode="generate", scenario="server", **values)


@pytest.mark.parametrize("values, words", [
    (dict(find_max_qps=True, ttft_bound_ms=100.0), "--tpot-bound-ms"),
    (dict(find_max_qps=True, tpot_bound_ms=10.0), "--ttft-bound-ms"),
    (dict(), "--target-qps"),
    (dict(target_qps=1.0, find_max_qps=True, ttft_bound_ms=1.0, tpot_bound_ms=1.0),
     "one of"),
    (dict(target_qps=1.0, latency_bound_ms=5.0), "--latency-bound-ms"),
    (dict(target_qps=1.0, batch_timeout_ms=5.0), "--batch-timeout-ms"),
    (dict(target_qps=1.0, prompt_len=16, prompt_dist="uniform:4-8"), "draws the lengths"),
])
def test_a_generate_server_refuses_what_does_not_go_together(values, words):
    with pytest.raises(UserError, match=words):
        validate_serving_request(generate(**values))


def test_a_generate_server_with_a_rate_or_a_bounded_search_passes():
    validate_serving_request(generate(target_qps=2.0, batching="static"))
    validate_serving_request(generate(find_max_qps=True, ttft_bound_ms=100.0,
                                      tpot_bound_ms=10.0))


@pytest.mark.parametrize("values, words", [
    (dict(scenario="throughput", mode="generate", ttft_bound_ms=100.0), "server scenario"),
    (dict(scenario="server", mode="infer", target_qps=1.0, tpot_bound_ms=1.0),
     "--mode generate"),
    (dict(scenario="server", mode="infer", target_qps=1.0, batching="static"),
     "--mode generate"),
    (dict(scenario="offline", mode="generate"), "cannot run in --mode generate"),
])
def test_token_options_outside_the_generate_server_are_refused(values, words):
    with pytest.raises(UserError, match=words):
        validate_serving_request(RunRequest("gpt", "torch-cpu", **values))


def test_the_identity_holds_batching_and_prompts_only_for_a_generate_server():
    resolved = {"workload": "gpt", "backend": "torch-cpu", "batch_size": 4}
    gen = identity(generate(target_qps=2.0, ttft_bound_ms=50.0), resolved)
    assert gen["batching"] == "continuous" and gen["prompt_dist"] == "fixed"
    assert gen["ttft_bound_ms"] == 50.0 and gen["tpot_bound_ms"] is None
    served = identity(RunRequest("gpt", "torch-cpu", mode="infer", scenario="server",
                                 target_qps=2.0), resolved)
    assert served["batching"] is None and served["prompt_dist"] is None


def test_prompts_that_cannot_fit_the_model_are_refused():
    tiny = resolve_workload("gpt", {"layers": "2", "d_model": "32", "heads": "2",
                                    "seq_len": "64", "vocab": "64"})
    with pytest.raises(UserError, match="seq_len 64"):
        check_prompt_dist(generate(target_qps=1.0, prompt_dist="uniform:8-80"), tiny)
    check_prompt_dist(generate(target_qps=1.0, prompt_dist="sharegpt"), tiny)  # scaled


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "gpubench", "run", "-w", "gpt", "-b",
                           "torch-cpu", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args, words", [
    (["--ttft-bound-ms", "100"], "--ttft-bound-ms is for the server scenario"),
    (["--scenario", "server", "--target-qps", "1", "--tpot-bound-ms", "5"],
     "--tpot-bound-ms is for --mode generate"),
    (["--scenario", "server", "--target-qps", "1", "--prompt-dist", "uniform:9-3"],
     "--prompt-dist"),
])
def test_bounds_without_the_generate_server_are_one_line_and_exit_2(tmp_path, args, words):
    done = run_cli(*args, "--out", str(tmp_path))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in done.stderr
    assert not any(tmp_path.iterdir())  # nothing written
