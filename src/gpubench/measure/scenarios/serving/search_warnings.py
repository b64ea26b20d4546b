"""What the server scenario warns about once its probes ran: issue lag (any server run),
and a --find-max-qps answer that the probes themselves put in doubt: no rate passed,
failures that stood under contention, an answer far below the warm-up's capacity
estimate, or p99 near the bound at every rate probed (then noise decides which pass)."""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

from gpubench.measure.scenarios.serving.search import QpsSearch

LAG_SHARE, LAG_WARN_MS = 0.2, 1.0  # issue lag (p99) worth a warning: of the bound, or without one
FAR_BELOW = 10  # an answer below 1/FAR_BELOW of the warm-up's capacity estimate is doubted
AT_BOUND_SHARE = 0.5  # a p99 at least this share of the bound sits "at the bound"
LOW_SHARE = 0.75  # ... at every rate, when rates this share of max QPS or less were probed


def issue_lag_warnings(records: List[Dict[str, Any]], bound_s: Optional[float]) -> List[str]:
    """A warning when the arrival thread issued queries late by a visible share of the
    bound (LAG_SHARE; without a bound, LAG_WARN_MS): at such rates gpubench's own
    Python threads are part of the latency measured."""
    worst = max(records, key=lambda r: r["issue_lag_ms"]["p99"], default=None)
    if worst is None:
        return []
    lag_ms = worst["issue_lag_ms"]["p99"]
    limit_ms = LAG_SHARE * bound_s * 1e3 if bound_s else LAG_WARN_MS
    if lag_ms <= limit_ms:
        return []
    return [f"the arrival thread issued queries up to {lag_ms:.3g} ms late (p99, at "
            f"{worst['offered_qps']:,.0f} QPS): at this rate gpubench's own Python threads "
            "are a visible part of the latency measured (run.json serving.trials[].issue_lag_ms)"]


def stall_cause(records: List[Dict[str, Any]], bound_ms: float,
                threads_hint: bool) -> str:
    """Why probes stalled, from their `stall` records ("" when none did); with
    `threads_hint`, that fewer backend threads would leave a core free."""
    stalled = [r["stall"] for r in records if r.get("stall", {}).get("fired")]
    if not stalled:
        return ""
    batch_ms = max(r["longest_batch_ms"] for r in stalled)
    lag_ms = max(r["issue_lag_max_ms"] for r in stalled)
    cpus = os.cpu_count() or 1
    hint = (f"; a backend whose threads use all {cpus} CPUs waits for any other thread "
            "(gpubench's arrival thread, another process) to give a core back: "
            f"--threads {max(1, cpus - 1)} leaves one free" if threads_hint and cpus > 1
            else "")
    return (f". {len(stalled)} of {len(records)} probes stalled (a batch took up to "
            f"{batch_ms:.3g} ms, a query was issued up to {lag_ms:.3g} ms late, against a "
            f"{bound_ms:g} ms bound): this machine's scheduling failed them, not the load, "
            f"so max QPS says as much about the machine's other work as about the "
            f"model{hint}")


def search_warnings(search: QpsSearch, records: List[Dict[str, Any]], bound_s: float,
                    capacity_qps: float, threads_hint: bool) -> List[str]:
    """The search's warnings (module docstring); issue lag only where it mattered, at the
    probes that held. Why probes stalled is told once, with the first doubt it explains."""
    bound_ms = bound_s * 1e3
    found = search.max_qps
    held = [r for r, p in zip(records, search.probes) if p.passed]
    out = issue_lag_warnings(held, bound_s)
    doubts = []
    if found is None:
        doubts.append(f"no probed rate met the latency bound ({bound_ms:g} ms p99), down to "
                      f"{min(p.qps for p in search.probes):,.0f} QPS: max_qps is empty")
    elif found < capacity_qps / FAR_BELOW:
        doubts.append(f"max QPS {found:,.0f} is 1/{capacity_qps / found:.0f} of the warm-up's "
                      f"capacity estimate ({capacity_qps:,.0f} QPS, full batches back to "
                      "back): the probes above it failed on their latency tails")
    # the rates that capped the answer and failed contended or stalled at every attempt
    stood = sorted(r for r, ok in search.verdicts.items()
                   if not ok and (found is None or r > found)
                   and any(p.qps == r and (p.contended or p.stalled) and not p.overloaded
                           for p in search.probes))
    if stood:
        doubts.append(f"{len(stood)} rate(s) failed contended or stalled at every one of up "
                      f"to {search.max_attempts} attempts "
                      f"({', '.join(f'{r:,.0f}' for r in stood)} QPS): max QPS may be low "
                      "(run.json serving.search.probes)")
    if doubts:
        doubts[0] += stall_cause(records, bound_ms, threads_hint)
    out += doubts
    if search.stop_reason == "max_probes":
        out.append(f"the search stopped at its {search.max_probes} probes before both ends of "
                   f"its bracket were probed again: max QPS is unconfirmed")
    p99s = [(p.p99_ms, p.qps) for p in search.probes if p.p99_ms is not None]
    looked_low = found is not None and any(q <= LOW_SHARE * found for _, q in p99s)
    if looked_low and min(ms for ms, _ in p99s) >= AT_BOUND_SHARE * bound_ms:
        ms, qps = min(p99s)
        out.append(f"p99 was at least {AT_BOUND_SHARE:g}x the {bound_ms:g} ms bound at every "
                   f"rate probed (lowest {ms:.3g} ms, at {qps:,.0f} QPS): the bound sits at this "
                   "setup's latency floor, so noise decides which rates pass; a larger "
                   "--latency-bound-ms gives a steadier max QPS")
    return out
