"""The polling sampler against a scripted Source (a test implementation of the
interface), the CPU source against a fake /sys/class/powercap tree, and make_sampler's
choices and refusals. NVML itself is tested through the C double (test_nvml_*.py).

The sampler's clock is a fake one here, moved by the test: trial windows, energies and
counter periods are exact, and the tests wait (in real time) for the thread's polls
instead of sleeping and hoping it polled. Only the test of the polling rate runs on the
real clock, and asserts what holds at any speed."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from gpubench.errors import UserError
from gpubench.telemetry import MAX_SAMPLE_HZ, NullSampler, make_sampler
from gpubench.telemetry.cpu import CpuSource, find_rapl_domains
from gpubench.telemetry import sampler as sampler_module
from gpubench.telemetry.errors import TelemetryError
from gpubench.telemetry.sampler import PollingSampler, Source


class FakeClock:
    """The sampler's clock (sampler.clock, monkeypatched by the `clock` fixture) and the
    scripted sources': time moves only when the test moves it (or, while the thread
    learns the energy counter's period, a tick at each of its reads), so a trial's
    window, its energy and its samples' times are exact whatever the machine does.
    Held in whole microseconds."""

    def __init__(self):
        self.us = 0

    def __call__(self):
        return 1000.0 + self.us / 1e6

    def advance(self, seconds):
        self.us += round(seconds * 1e6)


PROBE_TICK_S = 0.01  # fake time between the thread's reads as it learns the counter's period
WAIT_S = 60.0  # real time a test waits for the sampler thread: only a hung thread takes it


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(sampler_module, "clock", fake)
    return fake


def in_sampler_thread():
    return threading.current_thread().name.startswith("gpubench-")


class ScriptedSource(Source):
    """Constant power; an energy counter that moves every `counter_period_s` (0:
    continuously) on the fake clock; `failing` makes every read fail, as a lost GPU
    would. `reads` counts read() calls: the thread's polls and the trial edges."""

    name = "scripted"
    device_index = 0
    power_key = "power_w"
    gauges = {"gpu_util_pct": "util"}

    def __init__(self, clock: FakeClock, power_w: float = 100.0, counter_period_s: float = 0.0,
                 counter: bool = True) -> None:
        self.clock, self.power_w, self.counter = clock, power_w, counter
        self.period_us = round(counter_period_s * 1e6)
        self.t0_us = clock.us
        self.failing = False
        self.broken = False
        self.reads = 0
        self.closed = False

    def read(self):
        self.reads += 1
        if self.broken:
            raise ValueError("a bug in the source")
        if self.failing:
            raise TelemetryError("GPU is lost (NVML error 15)")
        return {"power_w": self.power_w, "util": 50.0}

    def energy_mj(self):
        if not self.counter:
            return None
        if self.failing:
            raise TelemetryError("GPU is lost (NVML error 15)")
        if in_sampler_thread():  # learning the period: each read a tick after the last
            self.clock.advance(PROBE_TICK_S)
        t_us = self.clock.us - self.t0_us
        if self.period_us:
            t_us = t_us // self.period_us * self.period_us
        return t_us * self.power_w / 1000.0  # uJ -> mJ

    def unavailable(self):
        return {"temperature": "not supported here"}

    def close(self):
        self.closed = True


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"the sampler thread did not {what} in {WAIT_S:g} s"
        time.sleep(0.001)


def first_poll(source: ScriptedSource) -> None:
    """After start(): the thread has learnt the counter's period and polled once."""
    wait_for(lambda: source.reads > 0, "poll")


def polls(clock: FakeClock, source: ScriptedSource, seconds: float, n: int) -> None:
    """`seconds` pass on the fake clock in `n` steps, the thread polling after each."""
    for _ in range(n):
        clock.advance(seconds / n)
        before = source.reads
        wait_for(lambda: source.reads > before, "poll")


def run_trial(sampler: PollingSampler, clock: FakeClock, source: ScriptedSource, trial: int,
              seconds: float) -> dict:
    """A trial of `seconds` (fake), the thread polling twice inside it."""
    sampler.begin_trial(trial)
    polls(clock, source, seconds, 2)
    return sampler.end_trial()


def test_trials_are_bracketed_and_energy_matches_power_times_time(clock):
    source = ScriptedSource(clock, power_w=150.0)
    sampler = PollingSampler(source, sample_hz=50)
    with sampler:
        first_poll(source)
        cols0 = run_trial(sampler, clock, source, 0, 0.25)
        polls(clock, source, 0.05, 1)
        cols1 = run_trial(sampler, clock, source, 1, 0.15)
    for cols, seconds in ((cols0, 0.25), (cols1, 0.15)):
        assert cols["energy_source"] == "counter"
        assert cols["energy_j"] == pytest.approx(150.0 * seconds, rel=1e-9)
        assert cols["power_avg_w"] == pytest.approx(150.0, rel=1e-9)
        assert cols["gpu_util_pct"] == pytest.approx(50.0)
    samples = sampler.samples()
    by_trial = {t: [s for s in samples if s["trial"] == t] for t in (0, 1, None)}
    for t in (0, 1):
        kinds = [s["sample_kind"] for s in by_trial[t]]
        assert kinds[0] == "trial_begin" and kinds[-1] == "trial_end"
        assert kinds.count("poll") >= 2  # the thread sampled inside the trial
    assert by_trial[None], "samples between trials belong to no trial"
    assert [s["t_s"] for s in samples] == sorted(s["t_s"] for s in samples)
    windows = sampler.notes()["trial_windows"]
    assert [w["t_end_s"] - w["t_begin_s"] for w in windows] == [pytest.approx(0.25),
                                                                pytest.approx(0.15)]
    assert source.closed
    assert not any(t.name.startswith("gpubench-scripted") for t in threading.enumerate())
    notes = sampler.notes()
    assert notes["sampler"] == "scripted" and notes["sample_hz"] == 50
    assert notes["unavailable"] == {"temperature": "not supported here"}
    assert notes["gaps"] == [] and notes["warnings"] == []
    sampler.stop()  # twice is fine


def test_a_discarded_trial_leaves_its_number_to_the_rerun(clock):
    # The protocol runs a far-too-short trial again under the same number: the rerun's
    # columns must come from its own samples only, and samples.csv must not give the
    # discarded attempt's samples to any trial.
    source = ScriptedSource(clock, power_w=100.0)
    sampler = PollingSampler(source, sample_hz=50)
    with sampler:
        first_poll(source)
        run_trial(sampler, clock, source, 0, 0.1)
        sampler.discard_trial(0)
        source.power_w = 200.0
        cols = run_trial(sampler, clock, source, 0, 0.15)
    assert cols["power_avg_w"] == pytest.approx(200.0, rel=1e-9)
    kept = [s for s in sampler.samples() if s["trial"] == 0]
    assert len(kept) >= 4 and all(s["power_w"] == 200.0 for s in kept)
    windows = sampler.notes()["trial_windows"]
    assert [w.get("discarded", False) for w in windows] == [True, False]


def test_without_a_counter_power_is_integrated(clock):
    source = ScriptedSource(clock, power_w=80.0, counter=False)
    sampler = PollingSampler(source, sample_hz=20)
    with sampler:
        first_poll(source)
        cols = run_trial(sampler, clock, source, 0, 0.2)
    assert cols["energy_source"] == "integrated"
    assert cols["energy_j"] == pytest.approx(80.0 * 0.2, rel=1e-9)


def test_driver_errors_mid_run_are_gaps_not_exceptions(clock):
    source = ScriptedSource(clock, power_w=100.0)
    sampler = PollingSampler(source, sample_hz=50)
    with sampler:
        first_poll(source)
        ok = run_trial(sampler, clock, source, 0, 0.1)
        source.failing = True
        lost = run_trial(sampler, clock, source, 1, 0.1)
        source.failing = False
        back = run_trial(sampler, clock, source, 2, 0.1)
    assert ok["energy_source"] == "counter" and back["energy_source"] == "counter"
    assert lost == {}  # nothing measured: empty columns, never 0
    notes = sampler.notes()
    assert len(notes["gaps"]) == 1
    gap = notes["gaps"][0]
    # the trial's two edges and the thread's two polls inside it
    assert "GPU is lost" in gap["error"] and gap["failed_reads"] >= 4
    assert not [s for s in sampler.samples() if s["trial"] == 1]
    assert any("gap" in w for w in notes["warnings"])
    assert notes["errors"]  # the counter failed at the lost trial's edges


def test_a_bug_in_the_sampler_thread_is_raised_at_stop(clock):
    source = ScriptedSource(clock)
    source.broken = True
    sampler = PollingSampler(source, sample_hz=100)
    sampler.start()
    first_poll(source)  # the thread's first poll met the bug
    with pytest.raises(RuntimeError, match="sampler thread failed") as info:
        sampler.stop()
    assert isinstance(info.value.__cause__, ValueError)


def test_trial_shorter_than_the_counter_update_period_is_flagged(clock):
    source = ScriptedSource(clock, power_w=100.0, counter_period_s=0.1)
    sampler = PollingSampler(source, sample_hz=50)
    with sampler:
        first_poll(source)
        short = run_trial(sampler, clock, source, 0, 0.03)
        long = run_trial(sampler, clock, source, 1, 0.5)
    notes = sampler.notes()
    # the thread read the counter every 10 ms (fake): it saw each update when it came
    assert notes["energy_counter_period_s"] == pytest.approx(0.1, abs=1e-6)
    assert notes["energy_counter_period_is_lower_bound"] is False
    assert short["energy_source"] == "integrated"
    assert short["energy_j"] == pytest.approx(100.0 * 0.03, rel=1e-9)
    assert long["energy_source"] == "counter"
    assert long["energy_j"] == pytest.approx(100.0 * 0.5, abs=10.0)  # whole updates only
    assert any("trial 0" in w and "update period" in w for w in notes["warnings"])
    assert not any("trial 1" in w for w in notes["warnings"])


def write_rapl(root: Path, packages: dict) -> None:
    for i, (energy_uj, max_uj) in packages.items():
        zone = root / f"intel-rapl:{i}"
        zone.mkdir(parents=True, exist_ok=True)
        (zone / "name").write_text(f"package-{i}\n")
        (zone / "energy_uj").write_text(f"{energy_uj}\n")
        (zone / "max_energy_range_uj").write_text(f"{max_uj}\n")
        sub = root / f"intel-rapl:{i}:0"  # a sub-domain (core): not counted twice
        sub.mkdir(exist_ok=True)
        (sub / "energy_uj").write_text("0\n")


def test_rapl_energy_sums_packages_and_survives_wraparound(tmp_path):
    write_rapl(tmp_path, {0: (1_000_000, 10_000_000), 1: (5_000_000, 10_000_000)})
    source = CpuSource(powercap_root=tmp_path)
    assert source.energy_mj() == 0.0
    write_rapl(tmp_path, {0: (3_000_000, 10_000_000), 1: (500_000, 10_000_000)})  # pkg 1 wrapped
    assert source.energy_mj() == pytest.approx((2_000_000 + 5_500_000) / 1000.0)
    values = source.read()
    assert {"cpu_util_pct", "proc_cpu_pct", "rss_bytes", "rapl_energy_j"} <= set(values)
    assert values["rss_bytes"] > 0
    assert source.unavailable() == {}
    assert source.notes()["rapl_domains"] == ["package-0", "package-1"]


def test_rapl_not_readable_is_not_available_with_the_reason(tmp_path):
    domains, why = find_rapl_domains(tmp_path / "absent")
    assert domains == [] and "does not exist" in why
    (tmp_path / "intel-rapl:0" / "energy_uj").mkdir(parents=True)  # unreadable as a file
    (tmp_path / "intel-rapl:0" / "max_energy_range_uj").write_text("10\n")
    source = CpuSource(powercap_root=tmp_path)
    assert source.energy_mj() is None
    assert "not readable" in source.unavailable()["energy"]


class MovingRaplSource(CpuSource):
    """The CPU source on a fake powercap tree whose package counter moves 1 uJ every
    20 ms (fake) while the sampler thread learns its period: each of the thread's reads
    finds it moved once."""

    def __init__(self, root: Path, clock: FakeClock) -> None:
        super().__init__(powercap_root=root)
        self.root, self.clock, self.uj = root, clock, 0

    def energy_mj(self):
        if in_sampler_thread():
            self.clock.advance(0.02)
            self.uj += 1
            write_rapl(self.root, {0: (self.uj, 10**12)})
        return super().energy_mj()


def test_cpu_sampler_fills_rapl_energy_per_trial(tmp_path, clock):
    write_rapl(tmp_path, {0: (0, 10**12)})
    source = MovingRaplSource(tmp_path, clock)
    sampler = PollingSampler(source, sample_hz=20)
    with sampler:
        wait_for(lambda: sampler.samples(), "poll")
        sampler.begin_trial(0)
        write_rapl(tmp_path, {0: (source.uj + 25_000_000, 10**12)})  # 25 J during the trial
        clock.advance(0.05)
        cols = sampler.end_trial()
    assert sampler.notes()["energy_counter_period_s"] == pytest.approx(0.02, abs=1e-6)
    assert cols["energy_source"] == "counter"
    assert cols["energy_j"] == pytest.approx(25.0)
    assert cols["power_avg_w"] == pytest.approx(25.0 / 0.05)
    assert sampler.notes()["sampler"] == "cpu"


def test_make_sampler_choices_and_refusals():
    assert isinstance(make_sampler("none", "cuda", 0, 10), NullSampler)
    cpu = make_sampler("auto", "cpu", None, 10)
    assert isinstance(cpu, PollingSampler) and cpu.name == "cpu"
    assert make_sampler("cpu", "cuda", 0, 10).name == "cpu"
    for bad_hz in (0, -1, MAX_SAMPLE_HZ * 2):
        with pytest.raises(UserError, match="sample rate"):
            make_sampler("auto", "cpu", None, bad_hz)
    with pytest.raises(UserError, match="unknown telemetry 'gpu'.*auto, nvml, cpu, none"):
        make_sampler("gpu", "cpu", None, 10)


def test_importing_gpubench_and_listing_loads_no_pynvml_or_torch():
    code = ("import sys, io, contextlib; import gpubench, gpubench.telemetry, "
            "gpubench.measure.runner; from gpubench.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()): main(['list'])\n"
            "print(sorted(m for m in ('pynvml', 'torch', 'psutil') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


class OneSlowRead(Source):
    """No energy counter; its `slow_read`-th read takes `slow_s` (a driver call that
    hung for a moment), on the real clock."""

    name = "slow-once"
    device_index = 0

    def __init__(self, slow_read: int, slow_s: float) -> None:
        self.slow_read, self.slow_s, self.reads = slow_read, slow_s, 0

    def read(self):
        self.reads += 1
        if self.reads == self.slow_read:
            time.sleep(self.slow_s)
        return {"power_w": 1.0}


def test_the_sampler_never_polls_faster_than_asked():
    """On the real clock: a poll that comes late (here a slow read, or a busy machine)
    is skipped, never made up in a burst. What holds at any speed: polls j and m (in
    order) are at least m - j - 1 periods apart (one period is lost to a late poll);
    lateness only spaces them further."""
    hz, period = 100, 0.01
    source = OneSlowRead(slow_read=5, slow_s=5 * period)
    sampler = PollingSampler(source, sample_hz=hz)
    with sampler:
        wait_for(lambda: source.reads >= 40, "poll 40 times")
    t = np.array([s["t_s"] for s in sampler.samples() if s["sample_kind"] == "poll"])
    n = len(t)
    apart = t[None, :] - t[:, None]  # apart[j, m] = t[m] - t[j]
    j, m = np.triu_indices(n, 1)
    assert (apart[j, m] >= (m - j - 1) * period - 1e-4).all()
    achieved = sampler.notes()["achieved_hz"]
    assert 0 < achieved <= hz * (n - 1) / (n - 2) + 0.01
