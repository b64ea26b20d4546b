"""TTFT, TPOT, ITL and goodput from requests' token times on a made-up clock."""

import pytest

from gpubench.measure.generation.latency import (
    RequestTimes, goodput_columns, latency_columns, output_tokens,
)


def test_ttft_counts_queueing_tpot_is_per_request_itl_per_gap():
    # arrives at 1.0, waits 0.5 s in the queue, first token at 1.6, then gaps 0.1, 0.3
    a = RequestTimes(arrival_s=1.0, token_s=[1.6, 1.7, 2.0])
    b = RequestTimes(arrival_s=0.0, token_s=[0.2, 0.4])
    assert a.ttft_s == pytest.approx(0.6) and a.tpot_s == pytest.approx(0.2)
    assert a.itl_s == pytest.approx([0.1, 0.3])
    cols = latency_columns([a, b])
    assert cols["ttft_p50_ms"] == pytest.approx(400.0)  # of 600 and 200
    assert cols["tpot_p50_ms"] == pytest.approx(200.0)  # of 200 and 200
    # ITL weighs every gap: 100, 300, 200 -> median 200, where TPOT has one per request
    assert cols["itl_p50_ms"] == pytest.approx(200.0)
    assert cols["itl_p99_ms"] == pytest.approx(298.0)
    assert output_tokens([a, b]) == 5


def test_one_token_has_no_tpot_and_no_tokens_has_no_ttft():
    one, none = RequestTimes(0.0, [0.5]), RequestTimes(0.0, [])
    assert one.tpot_s is None and one.itl_s == [] and none.ttft_s is None
    cols = latency_columns([none])
    assert cols["ttft_p99_ms"] is None and cols["itl_p50_ms"] is None


def test_goodput_counts_only_requests_within_both_bounds():
    fast = RequestTimes(0.0, [0.05, 0.06, 0.07])  # ttft 50 ms, tpot 10 ms
    slow_first = RequestTimes(0.0, [0.5, 0.51])  # ttft 500 ms
    slow_decode = RequestTimes(0.0, [0.05, 0.15])  # tpot 100 ms
    unfinished = RequestTimes(0.0, [])
    cols = goodput_columns([fast, slow_first, slow_decode, unfinished], duration_s=2.0,
                           ttft_bound_ms=100.0, tpot_bound_ms=20.0)
    assert cols == {"requests": 4, "requests_within_bounds": 1, "goodput_rps": 0.5}
    # without a TPOT bound the slow decoder is good too
    assert goodput_columns([fast, slow_decode], 1.0, 100.0, None)["requests_within_bounds"] == 2
