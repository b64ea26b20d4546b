"""`gpubench run --mode generate` end to end on a tiny gpt (torch-cpu, one thread): the
rows it writes and the relations between their columns, a suite's generate runs, and the
bad inputs refused in one line with exit 2 before anything is built."""

import json

import pandas as pd
import pytest

from conftest import lines_with, run_cli_here

pytest.importorskip("torch")

TINY = ["-p", "layers=2", "-p", "d_model=32", "-p", "heads=2", "-p", "seq_len=32",
        "-p", "vocab=64"]
QUICK = ["--threads", "1", "--trials", "2", "--warmup-s", "0.1", "--min-trial-s", "0.1",
         "--no-isolate"]


def _run_folder(result):
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    from pathlib import Path
    return Path(lines[0].strip())


def test_generate_rows_hold_the_generation_columns(tmp_path):
    result = run_cli_here("run", "-w", "gpt", "-b", "torch-cpu", "--mode", "generate",
                          "--batch-size", "3", "--prompt-len", "10", "--output-len", "6",
                          *TINY, *QUICK, "--out", tmp_path, "-q")
    folder = _run_folder(result)
    rows = pd.read_csv(folder / "trials.csv")
    assert list(rows["status"]) == ["ok", "ok"]
    assert set(rows["mode"]) == {"generate"} and set(rows["scenario"]) == {"throughput"}
    assert set(rows["prompt_len"]) == {10} and set(rows["output_len"]) == {6}
    assert rows["accuracy_ok"].all()  # the engine's check against the uncached model passed
    for column in ("ttft_p50_ms", "ttft_p99_ms", "tpot_p50_ms", "tpot_p90_ms", "itl_p50_ms",
                   "itl_p99_ms", "output_tokens_per_s", "prefill_tokens_per_s",
                   "kv_cache_bytes", "prefill_flops", "decode_flops_per_token",
                   "decode_bytes_per_token", "tflops"):
        assert rows[column].notna().all() and (rows[column] > 0).all(), column
    # no GPU: no peak bandwidth known, so no bound (empty, not 0)
    assert rows["decode_bound_tokens_per_s"].isna().all()
    for _, r in rows.iterrows():
        assert r["requests"] == r["samples"] == 3 * r["iterations"]
        assert r["ttft_p50_ms"] <= r["ttft_p99_ms"] and r["tpot_p50_ms"] <= r["tpot_p99_ms"]
        # a batch's decode steps are its tokens' gaps: TPOT is their mean, ITL each one
        assert r["itl_p50_ms"] <= r["itl_p99_ms"]
        # the decode rate is the batch's tokens over a step's mean time, and a mean of
        # positive TPOTs is at least half their median; decode's seconds are inside the trial
        per_step_s = 3 / r["output_tokens_per_s"]
        assert per_step_s * 1e3 >= 0.5 * r["tpot_p50_ms"]
        assert r["requests"] * 5 / r["output_tokens_per_s"] <= r["duration_s"]
        # K and V: 2 layers x 3 slots x (10 + 6) positions x d_model 32, float32
        assert r["kv_cache_bytes"] == 2 * 2 * 3 * 16 * 32 * 4
        # every output token over the wall time: at most the device-time decode rate
        # scaled by output tokens over decode tokens (host overhead only slows it)
        assert r["tokens_per_s"] <= r["output_tokens_per_s"] * 6 / 5 * 1.05 + 1e-9
    run = json.loads((folder / "run.json").read_text())
    gen = run["generation"]
    assert gen["check"]["tokens_compared"] > 0 and gen["decode"] == "dynamic"
    assert gen["prompt_len"] == 10 and gen["kv_cache_bytes"] == rows["kv_cache_bytes"][0]


def test_default_lengths_fit_a_short_seq_len(tmp_path):
    result = run_cli_here("run", "-w", "gpt", "-b", "torch-cpu", "--mode", "generate",
                          "--batch-size", "2", *TINY, *QUICK, "--trials", "1",
                          "--out", tmp_path, "-q")
    rows = pd.read_csv(_run_folder(result) / "trials.csv")
    assert (rows["prompt_len"] == 16).all() and (rows["output_len"] == 16).all()


def test_a_suite_runs_generate_beside_infer(tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "defaults: {threads: 1, trials: 1, warmup_s: 0.1, min_trial_s: 0.1, prompt_len: 8,"
        " output_len: 4, batch_sizes: [2]}\n"
        "runs:\n  - workloads: gpt\n    backends: torch-cpu\n    modes: [infer, generate]\n"
        "    params: {layers: [2], d_model: [32], heads: [2], seq_len: [32], vocab: [64]}\n")
    result = run_cli_here("suite", suite, "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr + result.stdout
    rows = pd.concat(pd.read_csv(f) for f in (tmp_path / "out").rglob("trials.csv"))
    by_mode = {m: g for m, g in rows.groupby("mode")}
    assert set(by_mode) == {"infer", "generate"}
    assert by_mode["generate"]["prompt_len"].eq(8).all()
    assert by_mode["infer"]["prompt_len"].isna().all()  # not the mode's: empty
    assert by_mode["generate"]["output_tokens_per_s"].notna().all()


@pytest.mark.parametrize("args, text", [
    (["-w", "bert", "-b", "torch-cpu", "--mode", "generate"],
     "workload bert is not one (gpt is)"),
    (["-w", "mnist", "-b", "torch-cpu", "--mode", "generate"], "workload mnist is not one"),
    (["-w", "gpt", "-b", "onnxruntime-cpu", "--mode", "generate", *TINY],
     "backend onnxruntime-cpu has no decode step"),
    (["-w", "gpt", "-b", "tf-cpu", "--mode", "generate", *TINY],
     "backend tf-cpu has no decode step"),
    (["-w", "gpt", "-b", "torch-cpu", "--mode", "generate", "--prompt-len", "30",
      "--output-len", "4", *TINY], "do not fit gpt's seq_len 32"),
    (["-w", "gpt", "-b", "torch-cpu", "--mode", "generate", "--output-len", "40", *TINY],
     "do not fit gpt's seq_len 32"),
    (["-w", "gpt", "-b", "torch-cpu", "--prompt-len", "8", *TINY],
     "--prompt-len is for --mode generate"),
    (["-w", "gpt", "-b", "torch-cpu", "--mode", "infer", "--output-len", "8", *TINY],
     "--output-len is for --mode generate"),
    (["-w", "gpt", "-b", "torch-cpu", "--mode", "generate", "--exec", "cuda-graphs", *TINY],
     "CUDA graphs replay work captured on a CUDA device"),
    (["-w", "gpt", "-b", "torch-cpu", "--mode", "generate", "--scenario", "collective", *TINY],
     "scenario collective does not run --mode generate"),
])
def test_bad_generate_input_is_one_line_exit_2(tmp_path, args, text):
    out = tmp_path / "out"
    result = run_cli_here("run", *args, "--out", out)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = lines_with(result.stderr, "error")
    assert len(errors) == 1 and text in errors[0], result.stderr
    assert not out.exists() or not any(out.iterdir())  # nothing was written


def test_the_results_table_shows_the_token_figures(tmp_path):
    result = run_cli_here("run", "-w", "gpt", "-b", "torch-cpu", "--mode", "generate",
                          "--batch-size", "2", *TINY, *QUICK, "--trials", "1",
                          "--out", tmp_path, columns=80)
    assert result.returncode == 0, result.stderr
    # kept at 80 columns whatever else goes: the token figures a generate row is read by
    for header in ("TTFT", "TPOT", "out"):
        assert header in result.stdout, result.stdout
    assert "prompt 16" in result.stdout and "output 16" in result.stdout  # identity, in the title


def test_a_cache_that_breaks_the_tokens_is_a_failed_row_with_the_reason(tmp_path, monkeypatch):
    import torch

    from gpubench.backends.torch_generate import TorchGenerationEngine

    prefill = TorchGenerationEngine.prefill

    def shifted(self, slots, prompts):  # K written one position off
        out = prefill(self, slots, prompts)
        with torch.no_grad():
            self.k_cache.copy_(self.k_cache.roll(1, dims=3))
        return out

    monkeypatch.setattr(TorchGenerationEngine, "prefill", shifted)
    result = run_cli_here("run", "-w", "gpt", "-b", "torch-cpu", "--mode", "generate",
                          "--batch-size", "2", *TINY, *QUICK, "--out", tmp_path, "-q")
    assert result.returncode == 4, result.stderr  # a run failed
    rows = pd.read_csv(_run_folder_any(result) / "trials.csv")
    assert list(rows["status"]) == ["failed"]
    assert "cached decoding differs from the uncached model" in rows["error"][0]


def _run_folder_any(result):
    from pathlib import Path
    return Path([line for line in result.stdout.splitlines() if line.strip()][0].strip())
