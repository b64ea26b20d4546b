"""The latency of generated tokens, as the serving benchmarks define it (vLLM's
benchmark_serving, MLPerf Inference's LLM rules, AIPerf):

- TTFT, time to first token: from the request's arrival (its queueing included) to its
  first output token;
- TPOT, time per output token: a request's decode time over the tokens after the
  first, (last - first) / (n - 1); one value per request;
- ITL, inter-token latency: every gap between consecutive tokens of a request, each a
  value (so a long request weighs more than in TPOT);
- goodput: requests a second that finished within both the TTFT and the TPOT bound (a
  request cut before its last token, `finished` False, is not within them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

PERCENTILES = (50, 90, 99)


@dataclass
class RequestTimes:
    """One request's clock readings (seconds on one clock)."""
    arrival_s: float
    token_s: List[float] = field(default_factory=list)  # when each output token existed
    prompt_len: int = 0
    # False: the probe's drain limit cut it before its last token (it misses its bounds)
    finished: bool = True

    @property
    def ttft_s(self) -> Optional[float]:
        return self.token_s[0] - self.arrival_s if self.token_s else None

    @property
    def tpot_s(self) -> Optional[float]:
        n = len(self.token_s)
        return (self.token_s[-1] - self.token_s[0]) / (n - 1) if n > 1 else None

    @property
    def itl_s(self) -> List[float]:
        return list(np.diff(self.token_s)) if len(self.token_s) > 1 else []

    def within(self, ttft_bound_ms: Optional[float], tpot_bound_ms: Optional[float]) -> bool:
        """Finished within both bounds; a missing bound holds."""
        ttft, tpot = self.ttft_s, self.tpot_s
        if ttft is None or not self.finished:
            return False
        if ttft_bound_ms is not None and ttft * 1e3 > ttft_bound_ms:
            return False
        return tpot_bound_ms is None or tpot is None or tpot * 1e3 <= tpot_bound_ms


def _percentiles(name: str, values_s: Sequence[float]) -> Dict[str, Optional[float]]:
    values = np.asarray(values_s, dtype=float) * 1e3
    return {f"{name}_p{q}_ms": (float(np.percentile(values, q)) if values.size else None)
            for q in PERCENTILES}


def latency_columns(requests: Sequence[RequestTimes]) -> Dict[str, Optional[float]]:
    """ttft/tpot/itl p50, p90, p99 (ms) over the requests (schema 8's columns)."""
    ttft = [r.ttft_s for r in requests if r.ttft_s is not None]
    tpot = [r.tpot_s for r in requests if r.tpot_s is not None]
    itl = [gap for r in requests for gap in r.itl_s]
    return {**_percentiles("ttft", ttft), **_percentiles("tpot", tpot), **_percentiles("itl", itl)}


def goodput_columns(requests: Sequence[RequestTimes], duration_s: float,
                    ttft_bound_ms: Optional[float],
                    tpot_bound_ms: Optional[float]) -> Dict[str, Optional[float]]:
    """requests, requests_within_bounds and goodput_rps over a measured interval."""
    good = sum(r.within(ttft_bound_ms, tpot_bound_ms) for r in requests)
    return {"requests": len(requests), "requests_within_bounds": good,
            "goodput_rps": good / duration_s if duration_s > 0 else None}


def output_tokens(requests: Sequence[RequestTimes]) -> int:
    return sum(len(r.token_s) for r in requests)
