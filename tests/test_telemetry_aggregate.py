"""Per-trial aggregation: energy from the counter or integrated power, gauges, throttle
flags, and the energy counter's update period (pure functions, no devices)."""

from __future__ import annotations

import pytest

from gpubench.telemetry.aggregate import (
    KIND_BEGIN, KIND_END, KIND_POLL, Window, counter_period_s, energy_columns, gauge_means,
    throttled, trapezoid_j,
)


def sample(t, kind=KIND_POLL, **values):
    return {"t_s": t, "sample_kind": kind, **values}


def test_trapezoid_integrates_piecewise_linear_power_exactly():
    # 100 W for 1 s, then a ramp to 300 W over 1 s: 100 + 200 J
    assert trapezoid_j([(0.0, 100.0), (1.0, 100.0), (2.0, 300.0)]) == pytest.approx(300.0)
    assert trapezoid_j([(0.0, 100.0)]) is None
    assert trapezoid_j([(1.0, 100.0), (1.0, 120.0)]) is None


def test_counter_delta_is_used_and_gives_average_power():
    window = Window(trial=0, t_begin_s=10.0, energy_begin_mj=5_000.0, t_end_s=12.0,
                    energy_end_mj=305_000.0)
    cols, set_aside = energy_columns(window, [sample(10.0, power_w=1.0), sample(12.0, power_w=1.0)],
                                     "power_w", counter_period_s=0.1)
    assert cols == {"energy_j": pytest.approx(300.0), "energy_source": "counter",
                    "power_avg_w": pytest.approx(150.0)}
    assert set_aside is None


def test_no_counter_integrates_power_over_the_trial_samples():
    window = Window(0, 0.0, None, 1.0, None)
    samples = [sample(0.0, KIND_BEGIN, power_w=100.0), sample(0.5, power_w=100.0),
               sample(1.0, KIND_END, power_w=200.0)]
    cols, set_aside = energy_columns(window, samples, "power_w", None)
    assert cols["energy_source"] == "integrated"
    assert cols["energy_j"] == pytest.approx(50.0 + 75.0)
    assert cols["power_avg_w"] == pytest.approx(125.0)
    assert set_aside is None


def test_trial_shorter_than_counter_period_falls_back_to_integration_and_says_so():
    window = Window(3, 0.0, 1_000.0, 0.05, 101_000.0)  # a whole 100 J update inside 50 ms
    samples = [sample(0.0, KIND_BEGIN, power_w=100.0), sample(0.05, KIND_END, power_w=100.0)]
    cols, set_aside = energy_columns(window, samples, "power_w", counter_period_s=0.1)
    assert cols["energy_source"] == "integrated"
    assert cols["energy_j"] == pytest.approx(5.0)
    assert "trial 3" in set_aside and "update period" in set_aside


def test_counter_that_did_not_advance_is_not_a_zero():
    window = Window(1, 0.0, 7.0, 1.0, 7.0)
    cols, set_aside = energy_columns(window, [], "power_w", counter_period_s=None)
    assert cols == {}  # nothing to integrate: empty, never 0
    assert "did not advance" in set_aside


def test_gauges_leave_out_the_reading_taken_before_the_trial():
    samples = [sample(0.0, KIND_BEGIN, gpu_util_pct=0), sample(0.1, gpu_util_pct=90),
               sample(0.2, KIND_END, gpu_util_pct=100, temp_c=60)]
    means = gauge_means(samples, {"gpu_util_pct": "gpu_util_pct", "temp_c": "temp_c",
                                  "sm_clock_mhz": "sm_clock_mhz"})
    assert means == {"gpu_util_pct": pytest.approx(95.0), "temp_c": pytest.approx(60.0)}


@pytest.mark.parametrize("reasons, expected", [
    ([], None),
    ([0, 0], False),
    ([0x1, 0x2, 0x100, 0x3], False),  # idle, application clocks, display clock setting
    ([0x10, 0x11], False),  # sync boost: clocks matched to another GPU's, not throttling
    ([0x1, 0x4], True),  # software power cap
    ([0x40], True),  # hardware thermal slowdown
    ([0x8 | 0x1], True),  # hardware slowdown while idle-flagged
])
def test_throttled_ignores_idle_and_clock_settings(reasons, expected):
    assert throttled(reasons) is expected


def test_counter_period_from_observed_changes():
    # updates every 0.1 s, read every 0.01 s
    obs = [(i * 0.01, float((i // 10) * 7)) for i in range(45)]
    period, lower_bound = counter_period_s(obs)
    assert period == pytest.approx(0.1, abs=0.011)
    assert lower_bound is False


def test_counter_period_lower_bound_when_too_few_changes():
    obs = [(i * 0.01, 5.0 if i < 20 else 9.0) for i in range(50)]  # one change at 0.2 s
    period, lower_bound = counter_period_s(obs)
    assert lower_bound is True
    assert period == pytest.approx(0.3, abs=0.011)
    assert counter_period_s([(0.0, 1.0), (0.5, 1.0)]) == (0.5, True)
    assert counter_period_s([(0.0, 1.0)]) == (None, False)


def test_samples_with_a_gap_give_average_power_but_no_energy():
    window = Window(2, 0.0, None, 1.0, None)
    samples = [sample(0.0, KIND_BEGIN, power_w=100.0), sample(0.3, power_w=100.0)]  # lost after
    cols, _ = energy_columns(window, samples, "power_w", None, covered=False)
    assert cols == {"power_avg_w": pytest.approx(100.0)}
