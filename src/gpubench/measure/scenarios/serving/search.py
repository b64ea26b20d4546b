"""The --find-max-qps search (server.py runs its probes): which rate to probe next,
and when a probe's verdict stands.

A single probe's pass or fail is noisy on a busy machine: one scheduler hiccup delays
every query queued behind it, and a probe of the fewest queries (662) claims its
largest latency as p99. So the search

- probes at least SEARCH_MIN_QUERIES queries (p99 is then the 5th largest latency, not
  the largest: early_stopping.py);
- runs a failed probe again, up to MAX_ATTEMPTS times, when it was contended (another
  process held the CPUs or GPU, or the probe stalled: a batch or an issue held far past
  its time, server.py `stall`) and was not overloaded (server.py `overloaded`: an
  overloaded probe fails on its load, contended or not); the last attempt's verdict
  stands;
- keeps the highest passing rate and the lowest failure above it (a failure below a
  pass is noise the pass overruled), grows by GROWTH while nothing failed above,
  halves while nothing passed, and bisects between them until they are within
  `rel_tol`;
- re-probes both ends of that final bracket once: a pass that now fails, or a failure
  that now passes, reopens the search from the new bracket;
- stops after `max_probes` probes (repeats and re-probes included), or when nothing
  passed down to MIN_RATE_SHARE of the start or to the rate whose SEARCH_MIN_QUERIES
  take MAX_PROBE_S: the search's time is bounded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Set

SEARCH_REL_TOL = 0.02  # the search stops when the highest pass and lowest fail are this close
MAX_PROBES = 32  # every probe of a search, repeats and re-probes included
TYPICAL_PROBES = 10  # to a bracket and its re-probes (a suite's time estimate)
MAX_ATTEMPTS = 3  # a contended or stalled failure runs again until this many attempts
GROWTH = 1.5  # the step up while probes pass (the start is near capacity already)
SEARCH_MIN_QUERIES = 1307  # the fewest whose p99 claim is the 5th largest (early_stopping.py)
# no rate is probed below this share of the start, nor so low that its queries take longer
MIN_RATE_SHARE, MAX_PROBE_S = 1 / 1024, 60.0


@dataclass
class Probe:
    """One probe of the search, as run.json's serving.search.probes records it."""

    qps: float
    passed: bool
    contended: Optional[bool]  # others held the CPUs or GPU (None: no test could be made)
    stalled: bool  # a batch or an issue was held far past its time (server.py `stall`)
    repeated: bool  # a run again of the probe before it (which failed contended or stalled)
    confirming: bool  # a re-probe of an end of the final bracket
    overloaded: bool = False  # its median query missed the bound too
    queries: Optional[int] = None
    p99_ms: Optional[float] = None  # the early-stopping claim (None: too few queries)


class QpsSearch:
    """The rate to probe next (`rate`), from the verdicts so far (module docstring).
    `max_qps` is the highest rate whose standing verdict is a pass (None: none)."""

    def __init__(self, start_qps: float, rel_tol: float = SEARCH_REL_TOL,
                 max_probes: int = MAX_PROBES, max_attempts: int = MAX_ATTEMPTS,
                 min_queries: int = SEARCH_MIN_QUERIES) -> None:
        self.start_qps = self.rate = float(start_qps)
        # the lowest rate: `min_queries` (a probe's fewest) within MAX_PROBE_S
        self.min_rate_qps = max(MIN_RATE_SHARE * start_qps, min_queries / MAX_PROBE_S)
        self.rel_tol, self.max_probes, self.max_attempts = rel_tol, max_probes, max_attempts
        self.probes: List[Probe] = []
        self.verdicts: Dict[float, bool] = {}  # each rate's standing verdict (its latest)
        self.reprobed: Set[float] = set()
        self.attempts = 0  # probes at `rate` in this step
        self.confirming = False
        self.done = False
        self.stop_reason = ""

    @property
    def max_qps(self) -> Optional[float]:
        passed = [r for r, ok in self.verdicts.items() if ok]
        return max(passed) if passed else None

    @property
    def lowest_fail(self) -> Optional[float]:
        """The lowest failure above the highest pass (below it: noise the pass overruled)."""
        lo = self.max_qps
        fails = [r for r, ok in self.verdicts.items() if not ok and (lo is None or r > lo)]
        return min(fails) if fails else None

    @property
    def repeating(self) -> bool:
        """The coming probe runs the one before it again."""
        return self.attempts > 0

    def record(self, passed: bool, contended: Optional[bool] = None, stalled: bool = False,
               overloaded: bool = False, queries: Optional[int] = None,
               p99_ms: Optional[float] = None) -> None:
        """The probe at `rate` passed or failed (contended or stalled or neither,
        overloaded or only its tail): moves `rate` to the next probe, or sets `done`."""
        self.probes.append(Probe(self.rate, bool(passed), contended, bool(stalled),
                                 self.repeating, self.confirming, bool(overloaded), queries,
                                 p99_ms))
        self.attempts += 1
        out_of_probes = len(self.probes) >= self.max_probes
        again = not passed and (contended or stalled) and not overloaded
        if again and self.attempts < self.max_attempts and not out_of_probes:
            return  # the same rate again: the contention may have failed it
        self.verdicts[self.rate] = bool(passed)
        self.attempts, self.confirming = 0, False
        if out_of_probes:
            self._stop("max_probes")
        else:
            self._next()

    def _stop(self, reason: str) -> None:
        self.done, self.stop_reason = True, reason

    def _next(self) -> None:
        lo, hi = self.max_qps, self.lowest_fail
        if lo is None:
            if hi / 2 < self.min_rate_qps:
                self._stop("no_rate_passed")
            else:
                self.rate = hi / 2
        elif hi is None:
            self.rate = GROWTH * lo
        elif hi - lo > self.rel_tol * hi:
            self.rate = (lo + hi) / 2
        else:  # the bracket closed: each end probed once more before it stands
            end = next((r for r in (lo, hi) if r not in self.reprobed), None)
            if end is None:
                self._stop("bracket_confirmed")
                return
            self.reprobed.add(end)
            self.rate, self.confirming = end, True

    def record_json(self) -> Dict[str, Any]:
        """run.json's serving.search (beside the start and the rules)."""
        return {"rel_tol": self.rel_tol, "max_probes": self.max_probes,
                "max_attempts": self.max_attempts, "min_queries": SEARCH_MIN_QUERIES,
                "max_qps": self.max_qps, "lowest_fail_qps": self.lowest_fail,
                "stop_reason": self.stop_reason,
                "probes": [asdict(p) for p in self.probes]}
