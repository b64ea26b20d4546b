"""The serving scenarios' pure parts: early-stopping percentile bounds, the seeded
Poisson schedule (and the thread that issues it), the batcher's policy and queue, and
the --find-max-qps search."""

import math
import time

import numpy as np
import pytest
from scipy import stats

from gpubench.measure.scenarios.serving.arrivals import ArrivalThread, poisson_schedule, query_samples
from gpubench.measure.scenarios.serving.batcher import QueryQueue, dispatch_wait_s
from gpubench.measure.scenarios.serving.early_stopping import (
    bound_rank, claimed_percentiles_ms, percentile_bound, queries_needed,
)
from gpubench.measure.scenarios.serving.search import QpsSearch


# -- early stopping ----------------------------------------------------------------------
def test_a_percentile_needs_enough_queries_to_be_claimed():
    assert queries_needed(0.99) == 662 and queries_needed(0.90) == 64
    assert bound_rank(662, 0.99) == 662  # the largest latency, and only just
    assert bound_rank(661, 0.99) is None
    latencies = np.arange(1, 662)  # 661 queries: no p99, a p90
    assert math.isnan(percentile_bound(latencies, 0.99))
    claimed = claimed_percentiles_ms(np.arange(1, 1001) / 1e3)
    assert math.isnan(claimed["latency_p999_ms"])  # 1000 < 6636 queries


def test_the_bound_is_never_below_the_observed_percentile_and_falls_with_more_queries():
    rng = np.random.default_rng(1)
    for n in (700, 2000, 20000):  # p99 needs 662
        x = rng.exponential(size=n)
        for p in (0.5, 0.9, 0.99):
            assert percentile_bound(x, p) >= np.quantile(x, p, method="higher")
    # the rank's excess over p*n shrinks relative to n as n grows (sqrt(n) scaling)
    excess = [(bound_rank(n, 0.9) - 0.9 * n) / n for n in (100, 1000, 10000)]
    assert excess[0] > excess[1] > excess[2] > 0


def test_the_bound_covers_the_true_percentile_with_the_stated_confidence():
    """Simulated runs of a known distribution: the bound falls below the true p99 in
    at most 1% of them (binomial noise of 4,000 runs allowed), and as often as the
    binomial says for LoadGen's rank (P(Binomial(n, p) >= k): 0.22% at n = 1,200, its
    estimate one order statistic above the tightest bound), not in none."""
    rng = np.random.default_rng(7)
    runs, n = 4000, 1200
    true_p99 = -math.log(0.01)  # exponential, rate 1
    k = bound_rank(n, 0.99)
    bounds = np.sort(rng.exponential(size=(runs, n)), axis=1)[:, k - 1]
    misses = np.mean(bounds < true_p99)
    assert misses <= 0.01 + 3 * math.sqrt(0.01 * 0.99 / runs)
    expected = stats.binom.sf(k - 1, n, 0.99)
    assert 0 < misses and abs(misses - expected) <= 3 * math.sqrt(expected / runs)


def test_the_figures_are_loadgens():
    """MLPerf LoadGen's early stopping (loadgen/early_stopping.cc, results.cc): p90 needs
    64 queries, p99 662; a run of 700 claims its largest latency as p99, and 838 are
    the fewest that discard one (LoadGen's "Would discard 1 highest latency queries")."""
    assert [queries_needed(p) for p in (0.90, 0.99, 0.999)] == [64, 662, 6636]
    assert bound_rank(63, 0.90) is None and bound_rank(64, 0.90) == 64
    assert bound_rank(700, 0.99) == 700
    latencies = np.arange(1, 701) / 1e3  # 700 queries, 1 ms to 700 ms
    assert claimed_percentiles_ms(latencies)["latency_p99_ms"] == pytest.approx(700.0)
    assert bound_rank(837, 0.99) == 837 and bound_rank(838, 0.99) == 837


def _loadgen_rank(n, p, confidence=0.99, _h={}):
    """LoadGen's procedure, step by step, as results.cc runs it: h(t), the fewest queries
    under the threshold for which t or fewer over it have odds below 1 - c (odds: the
    regularised beta I_p(h, 1 + t)); too few queries when n < h(1) + 1; else t grows from
    2 until n < h(t) + t, and the estimate is the (t - 1)-th largest latency."""
    from scipy.special import betainc

    def h(t):
        if (p, t) not in _h:
            k = 1
            while betainc(k, 1 + t, p) >= 1 - confidence:
                k += 1
            _h[p, t] = k
        return _h[p, t]

    if n < h(1) + 1:
        return None
    t = 1
    for i in range(2, n + 1):
        if n < h(i) + i:
            t = i - 1
            break
    return n - t + 1


@pytest.mark.parametrize("p", [0.5, 0.9, 0.99])
def test_the_rank_is_loadgens_at_every_count(p):
    counts = [1, 2, 10, 11, 12, 63, 64, 65, 100, 250, 661, 662, 663, 700, 837, 838, 1000,
              1500]
    assert [bound_rank(n, p) for n in counts] == [_loadgen_rank(n, p) for n in counts]


# -- arrivals ----------------------------------------------------------------------------
def test_the_seeded_schedule_is_the_same_twice_and_poisson():
    a = poisson_schedule(500.0, 3, 2.0, 100)
    b = poisson_schedule(500.0, 3, 2.0, 100)
    assert np.array_equal(a, b)
    assert not np.array_equal(a[:50], poisson_schedule(500.0, 4, 2.0, 100)[:50])
    assert a[-1] >= 2.0 and a[-2] < 2.0 and len(a) >= 100  # stops at the first past both
    assert abs(len(a) / a[-1] - 500) < 4 * math.sqrt(500 / 2.0)  # the rate (4 sigma)
    gaps = np.diff(np.concatenate([[0.0], a]))
    assert stats.kstest(gaps * 500, "expon").pvalue > 1e-3  # exponential gaps
    # one seed at two rates: the same arrivals, compressed (the search's common numbers)
    fast = poisson_schedule(1000.0, 3, 1.0, 100)
    assert np.allclose(fast, a[:len(fast)] / 2)
    assert len(poisson_schedule(10.0, 3, 0.1, 300)) == 300  # the query count can rule
    assert np.array_equal(query_samples((3, 1), 50, 7), query_samples((3, 1), 50, 7))


def _issued(schedule, start):
    """The arrival thread alone (no serving loop taking batches) issuing a schedule."""
    queue = QueryQueue(max_batch=len(schedule), timeout_s=0.0, due_s=start + schedule)
    thread = ArrivalThread(queue.issue_due)
    thread.start()
    thread.join(timeout=60)  # the schedule lasts 0.15 s
    assert not thread.is_alive() and thread.error is None
    return queue


def test_two_runs_issue_the_same_arrival_times():
    """The thread issues every query, never before its scheduled time, and runs of one
    seed issue the same times (relative to their start)."""
    runs = []
    for _ in range(2):
        schedule = poisson_schedule(2000.0, 11, 0.15, 50)
        start = time.perf_counter() + 0.005
        queue = _issued(schedule, start)
        assert queue.drain() == list(range(len(schedule))) and queue.all_issued
        assert (queue.issued_s >= queue.due_s).all()  # never early
        runs.append(queue.due_s - start)
    assert np.allclose(runs[0], runs[1], rtol=0, atol=1e-9)


# -- the batcher -------------------------------------------------------------------------
def test_dispatch_policy():
    assert dispatch_wait_s(0, None, 5.0, 8, 0.01) is None  # nothing waits
    assert dispatch_wait_s(8, 4.0, 4.0, 8, 0.01) == 0.0  # a full batch goes at once
    assert dispatch_wait_s(3, 4.0, 4.004, 8, 0.01) == pytest.approx(0.006)  # until the timeout
    assert dispatch_wait_s(3, 4.0, 4.02, 8, 0.01) == 0.0  # the oldest waited long enough
    assert dispatch_wait_s(1, 4.0, 4.0, 8, 0.0) == 0.0  # greedy


def test_the_queue_takes_full_batches_waits_out_the_timeout_and_drains():
    # on a virtual clock (tests/suite_plugins.py): a wait moves it on to the next
    # arrival or by the time waited, so when each batch goes is exact, at any speed
    from suite_plugins import VirtualTime

    clock = VirtualTime(start_s=10.0)
    now = clock.now
    due = np.array([now] * 6 + [now + 0.2] * 2 + [now + 0.4])
    q = clock.queue(max_batch=4, timeout_s=0.05, due_s=due)
    assert q.next_batch(now + 5) == [0, 1, 2, 3]  # due, issued by the loop itself; full
    assert clock.now == now  # a full batch goes at once
    assert q.next_batch(now + 5) == [4, 5]  # two wait out the timeout...
    assert clock.now == pytest.approx(now + 0.05, abs=1e-12)  # ...not the next arrival (0.2 s)
    clock.now = now + 0.2
    assert q.next_batch(now + 0.21) == []  # the deadline came first
    assert clock.now == pytest.approx(now + 0.21, abs=1e-12)
    assert q.drain() == [6, 7]
    np.testing.assert_array_equal(q.issued_s[:8], [now] * 6 + [now + 0.2] * 2)
    assert q.issue_due() == due[8]  # the next one's time
    clock.now = now + 0.4
    assert q.next_batch(now + 5) == [8]  # the last: no reason to wait
    assert clock.now == now + 0.4
    assert q.all_issued and q.next_batch(now + 5) == []


# -- the search --------------------------------------------------------------------------
@pytest.mark.parametrize("start", [3000.0, 1000.0, 150.0])
def test_the_search_finds_the_highest_passing_rate(start):
    search = QpsSearch(start, rel_tol=0.02)
    while not search.done:
        search.record(search.rate <= 1000.0)
    assert 980.0 <= search.max_qps <= 1000.0
    assert len(search.probes) <= 12 + 2  # and the final bracket's two re-probes
    lows = [p.qps for p in search.probes if p.passed]
    assert search.max_qps == max(lows)


def test_a_search_where_nothing_passes_gives_no_rate():
    search = QpsSearch(1000.0, max_probes=5)
    while not search.done:
        search.record(False)
    assert search.max_qps is None and len(search.probes) == 5
    assert search.probes[-1].qps == pytest.approx(1000.0 / 16)
