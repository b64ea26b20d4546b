"""`gpubench run --mode generate --scenario server` end to end on a tiny gpt on torch-cpu
(in this process, --no-isolate): rows of requests with TTFT/TPOT/ITL percentiles,
goodput and the batching; a bounded --find-max-qps search on both token bounds; and the
one-line refusals of bounds outside the generate server."""

import json

import pandas as pd
import pytest

from conftest import run_cli_here

pytest.importorskip("torch")

TINY_GPT = ("-w", "gpt", "-p", "layers=2", "-p", "d_model=32", "-p", "heads=2", "-p",
            "seq_len=64", "-p", "vocab=64", "-b", "torch-cpu", "--threads", "1",
            "--telemetry", "none", "--mode", "generate", "--output-len", "8", "--warmup-s",
            "0.1", "--no-isolate")
SERVER = ("--scenario", "server", "--max-batch", "4")


def _run(tmp_path, *args):
    done = run_cli_here("run", *TINY_GPT, *SERVER, "--out", str(tmp_path), "--format", "json",
                        *args)
    assert done.returncode == 0, done.stderr
    folder = json.loads(done.stdout)["path"]
    return (pd.read_csv(f"{folder}/trials.csv"), pd.read_csv(f"{folder}/summary.csv"),
            json.loads(open(f"{folder}/run.json").read()))


@pytest.mark.parametrize("batching", ["continuous", "static"])
def test_a_fixed_rate_run_writes_rows_of_requests_and_goodput(tmp_path, batching):
    trials, _, meta = _run(tmp_path, "--target-qps", "40", "--trials", "2", "--min-trial-s",
                           "0.3", "--min-queries", "12", "--batching", batching,
                           "--prompt-dist", "uniform:4-20", "--ttft-bound-ms", "500",
                           "--tpot-bound-ms", "100")
    assert len(trials) == 2 and (trials["status"] == "ok").all()
    assert set(trials["mode"]) == {"generate"} and set(trials["batching"]) == {batching}
    assert set(trials["prompt_dist"]) == {"uniform:4-20"}
    assert set(trials["prompt_len"]) == {12.0} and set(trials["output_len"]) == {8}
    assert (trials["requests"] >= 12).all() and (trials["queries_unfinished"] == 0).all()
    for column in ("ttft_p50_ms", "ttft_p99_ms", "tpot_p50_ms", "tpot_p99_ms", "itl_p99_ms",
                   "output_tokens_per_s", "prefill_tokens_per_s", "tokens_per_s",
                   "throughput_samples_per_s", "goodput_rps", "kv_cache_bytes"):
        assert (trials[column] > 0).all(), column
    assert (trials["ttft_p50_ms"] <= trials["ttft_p99_ms"]).all()
    # loose bounds on a tiny model: every request within them
    assert (trials["requests_within_bounds"] == trials["requests"]).all()
    assert trials["latency_bound_met"].all()
    serving = meta["serving"]
    assert serving["batching"] == batching and serving["engine"]["check"]["tokens_compared"]
    assert serving["prompts"]["mean_tokens"] == 12.0


def test_find_max_qps_on_goodput_lands_on_the_last_row(tmp_path):
    trials, summary, meta = _run(tmp_path, "--find-max-qps", "--ttft-bound-ms", "30",
                                 "--tpot-bound-ms", "5", "--min-trial-s", "0.1",
                                 "--min-queries", "10")
    assert trials["target_qps"].isna().all() and len(trials) >= 2
    assert trials["max_goodput_qps"].iloc[:-1].isna().all()
    found = trials["max_goodput_qps"].iloc[-1]
    search = meta["serving"]["search"]
    assert found == pytest.approx(search["max_qps"])
    assert summary["max_goodput_qps_last"].iloc[0] == pytest.approx(found)
    assert trials["goodput_rps"].notna().all() and set(trials["ttft_bound_ms"]) == {30.0}
    assert meta["stop_reason"] == "max_goodput_qps_found"


@pytest.mark.parametrize("args, words", [
    (["--ttft-bound-ms", "100"], "--ttft-bound-ms is for the server scenario"),
    (["--tpot-bound-ms", "10", "--batching", "static"], "is for the server scenario"),
    ([*SERVER, "--find-max-qps", "--ttft-bound-ms", "100"],
     "give --ttft-bound-ms and --tpot-bound-ms"),
    ([*SERVER, "--target-qps", "5", "--prompt-dist", "uniform:4-60"], "seq_len 64"),
])
def test_generate_bounds_refused_in_one_line(tmp_path, args, words):
    done = run_cli_here("run", *TINY_GPT, "--out", str(tmp_path), *args)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and words in lines[0], done.stderr
    assert not any(tmp_path.iterdir())
