"""gpu-check's generation checks (`--mode generate` on torch-cuda, eager and CUDA-graph
decode): the run's cached tokens matched the uncached model's (gpubench's own check
before timing: run.json generation.check), TTFT/TPOT/ITL on the device's clock, and the
decode rate within its memory-bandwidth bound (output_tokens_per_s can never exceed the
device's peak bandwidth over the bytes a decoded token reads); the ratio is reported."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from gpu_check_rows import PASS, Check, _fmt, _median, _num, verdict

# decode's static path (every slot, the whole cache, a mask) is what a CUDA graph replays
EXPECTED_DECODE = {"eager": "dynamic", "cuda-graphs": "static"}


def check_generate_run(label: str, exec_mode: str, rows: List[Dict[str, Any]],
                       run_json: Dict[str, Any]) -> Tuple[Check, Optional[float]]:
    """One generate run: ok rows with the token latencies, the engine's check against
    the uncached model, its decode path, and the decode rate at most its bound.
    Returns the check and the median decode rate (tokens/s)."""
    gen = run_json.get("generation") or {}
    check = gen.get("check") or {}
    ok = [r for r in rows if r.get("status") == "ok"]
    problems = []
    if not ok:
        errors = [str(r.get("error")).strip().splitlines()[-1] for r in rows if r.get("error")]
        problems.append(f"no ok row ({errors[-1] if errors else f'{len(rows)} rows'})")
    if ok and not (check.get("tokens_compared") or 0) > 0:
        problems.append("no cached-vs-uncached check in run.json")
    if ok and gen.get("decode") != EXPECTED_DECODE.get(exec_mode):
        problems.append(f"decode {gen.get('decode')} (expected {EXPECTED_DECODE.get(exec_mode)})")
    rate = _median([_num(r.get("output_tokens_per_s")) for r in ok])
    bound = _median([_num(r.get("decode_bound_tokens_per_s")) for r in ok])
    tpot = _median([_num(r.get("tpot_p50_ms")) for r in ok])
    ttft = _median([_num(r.get("ttft_p50_ms")) for r in ok])
    if ok and (tpot is None or ttft is None or rate is None):
        problems.append("TTFT, TPOT or output tokens/s missing")
    ratio = rate / bound if rate and bound else None
    if ok and bound is None:
        problems.append("no decode bandwidth bound (peak memory bandwidth unknown)")
    elif ratio is not None and ratio > 1.0:
        problems.append(f"decode ran at {ratio:.2f}x its memory-bandwidth bound: the bytes "
                        "a token reads, or the peak, are wrong")
    figures = (f"{check.get('tokens_compared')} tokens = uncached ({check.get('ties')} ties), "
               f"TTFT p50 {_fmt(ttft)} ms, TPOT p50 {_fmt(tpot)} ms, "
               f"{_fmt(rate, ',.0f')} tokens/s = {_fmt(ratio)} of the bound "
               f"{_fmt(bound, ',.0f')} tokens/s (peak {_fmt(gen.get('peak_mem_bw_gbs'))} GB/s, "
               f"{gen.get('peak_mem_bw_source')})")
    return verdict(label, "generate: cached = uncached, decode within its bound", problems,
                   figures), rate


def graphs_against_eager(rates: Dict[str, Optional[float]]) -> Optional[Check]:
    """Reported, not judged: CUDA-graph decode's tokens/s over eager's."""
    eager, graphs = rates.get("eager"), rates.get("cuda-graphs")
    if not eager or not graphs:
        return None
    return Check("generate gpt", "cuda-graphs decode against eager", PASS,
                 f"{graphs / eager:.2f}x eager's tokens/s ({_fmt(graphs, ',.0f')} vs "
                 f"{_fmt(eager, ',.0f')})")
