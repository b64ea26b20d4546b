"""gpu-check's generation checks (benchmarks/gpu_check_generate.py) on small tables: a
good run passes, and each thing it guards fails it."""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
import gpu_check_generate as gcg  # noqa: E402
import gpu_check_plan as gcp  # noqa: E402


def _run(rate=50_000.0, bound=1_000_000.0, decode="static", compared=40):
    rows = [{"status": "ok", "output_tokens_per_s": rate, "decode_bound_tokens_per_s": bound,
             "tpot_p50_ms": 0.3, "ttft_p50_ms": 2.0}] * 2
    run_json = {"generation": {"decode": decode, "peak_mem_bw_gbs": 3350.0,
                               "peak_mem_bw_source": "datasheet",
                               "check": {"tokens_compared": compared, "ties": 0}}}
    return rows, run_json


def test_a_good_graphs_run_passes_with_its_ratio_to_the_bound():
    check, rate = gcg.check_generate_run("g", "cuda-graphs", *_run())
    assert check.verdict == "PASS" and rate == 50_000.0
    assert "0.05 of the bound" in check.detail


def test_faster_than_the_bound_fails():
    check, _ = gcg.check_generate_run("g", "cuda-graphs", *_run(rate=2e6))
    assert check.verdict == "FAIL" and "its memory-bandwidth bound" in check.detail


def test_no_uncached_check_or_the_wrong_decode_path_fails():
    assert "no cached-vs-uncached" in gcg.check_generate_run("g", "eager",
                                                             *_run(decode="dynamic", compared=0))[0].detail
    assert "expected static" in gcg.check_generate_run("g", "cuda-graphs",
                                                       *_run(decode="dynamic"))[0].detail


def test_a_failed_run_fails_with_its_error():
    rows = [{"status": "failed", "error": "Traceback\nGenerationMismatch: cached decoding differs"}]
    check, _ = gcg.check_generate_run("g", "eager", rows, {})
    assert check.verdict == "FAIL" and "cached decoding differs" in check.detail


def test_graphs_against_eager_reports_the_ratio():
    assert gcg.graphs_against_eager({"eager": 100.0, "cuda-graphs": 250.0}).detail.startswith("2.50x")
    assert gcg.graphs_against_eager({"eager": None, "cuda-graphs": 250.0}) is None


def test_the_plan_runs_generate_eager_and_graphs_in_the_extended_tier():
    step = next(s for s in gcp.build_plan(["gpt"]) if s.action == "step_generate")
    assert step.tier == gcp.EXTENDED
    assert [c[c.index("--exec") + 1] for c in step.commands] == ["eager", "cuda-graphs"]
    assert all("generate" in c for c in step.commands)
