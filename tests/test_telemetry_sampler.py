"""The polling sampler against a scripted Source (a test implementation of the
interface), the CPU source against a fake /sys/class/powercap tree, and make_sampler's
choices and refusals. NVML itself is tested through the C double (test_nvml_*.py)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gpubench.errors import UserError
from gpubench.telemetry import MAX_SAMPLE_HZ, NullSampler, make_sampler
from gpubench.telemetry.cpu import CpuSource, find_rapl_domains
from gpubench.telemetry.errors import TelemetryError
from gpubench.telemetry.sampler import PollingSampler, Source


class ScriptedSource(Source):
    """Constant power; an energy counter that moves every `counter_period_s` (0:
    continuously); `failing` makes every read fail, as a lost GPU would."""

    name = "scripted"
    device_index = 0
    power_key = "power_w"
    gauges = {"gpu_util_pct": "util"}

    def __init__(self, power_w: float = 100.0, counter_period_s: float = 0.0,
                 counter: bool = True) -> None:
        self.power_w, self.period, self.counter = power_w, counter_period_s, counter
        self.t0 = time.monotonic()
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
        t = time.monotonic() - self.t0
        if self.period:
            t = (t // self.period) * self.period
        return t * self.power_w * 1000.0

    def unavailable(self):
        return {"temperature": "not supported here"}

    def close(self):
        self.closed = True


def run_trial(sampler: PollingSampler, trial: int, seconds: float) -> dict:
    sampler.begin_trial(trial)
    t0 = time.monotonic()
    time.sleep(seconds)
    duration = time.monotonic() - t0
    columns = sampler.end_trial()
    columns["_duration_s"] = duration
    return columns


def test_trials_are_bracketed_and_energy_matches_power_times_time():
    source = ScriptedSource(power_w=150.0)
    sampler = PollingSampler(source, sample_hz=50)
    with sampler:
        time.sleep(0.05)
        cols0 = run_trial(sampler, 0, 0.25)
        time.sleep(0.05)
        cols1 = run_trial(sampler, 1, 0.15)
    for cols in (cols0, cols1):
        assert cols["energy_source"] == "counter"
        assert cols["energy_j"] == pytest.approx(150.0 * cols["_duration_s"], rel=0.02)
        assert cols["power_avg_w"] == pytest.approx(150.0, rel=0.02)
        assert cols["gpu_util_pct"] == pytest.approx(50.0)
    samples = sampler.samples()
    by_trial = {t: [s for s in samples if s["trial"] == t] for t in (0, 1, None)}
    for t in (0, 1):
        kinds = [s["sample_kind"] for s in by_trial[t]]
        assert kinds[0] == "trial_begin" and kinds[-1] == "trial_end"
        assert kinds.count("poll") >= 2  # the thread sampled inside the trial
    assert by_trial[None], "samples between trials belong to no trial"
    assert [s["t_s"] for s in samples] == sorted(s["t_s"] for s in samples)
    assert source.closed
    assert not any(t.name.startswith("gpubench-scripted") for t in threading.enumerate())
    notes = sampler.notes()
    assert notes["sampler"] == "scripted" and notes["sample_hz"] == 50
    assert notes["unavailable"] == {"temperature": "not supported here"}
    assert notes["gaps"] == [] and notes["warnings"] == []
    sampler.stop()  # twice is fine


def test_a_discarded_trial_leaves_its_number_to_the_rerun():
    # The protocol runs a far-too-short trial again under the same number: the rerun's
    # columns must come from its own samples only, and samples.csv must not give the
    # discarded attempt's samples to any trial.
    source = ScriptedSource(power_w=100.0)
    sampler = PollingSampler(source, sample_hz=50)
    with sampler:
        run_trial(sampler, 0, 0.1)
        sampler.discard_trial(0)
        source.power_w = 200.0
        cols = run_trial(sampler, 0, 0.15)
    assert cols["power_avg_w"] == pytest.approx(200.0, rel=0.02)
    kept = [s for s in sampler.samples() if s["trial"] == 0]
    assert kept and all(s["power_w"] == 200.0 for s in kept)
    windows = sampler.notes()["trial_windows"]
    assert [w.get("discarded", False) for w in windows] == [True, False]


def test_without_a_counter_power_is_integrated():
    sampler = PollingSampler(ScriptedSource(power_w=80.0, counter=False), sample_hz=20)
    with sampler:
        cols = run_trial(sampler, 0, 0.2)
    assert cols["energy_source"] == "integrated"
    assert cols["energy_j"] == pytest.approx(80.0 * cols["_duration_s"], rel=0.02)


def test_driver_errors_mid_run_are_gaps_not_exceptions():
    source = ScriptedSource(power_w=100.0)
    sampler = PollingSampler(source, sample_hz=50)
    with sampler:
        ok = run_trial(sampler, 0, 0.1)
        source.failing = True
        lost = run_trial(sampler, 1, 0.1)
        source.failing = False
        back = run_trial(sampler, 2, 0.1)
    assert ok["energy_source"] == "counter" and back["energy_source"] == "counter"
    assert set(lost) == {"_duration_s"}  # nothing measured: empty columns, never 0
    notes = sampler.notes()
    assert len(notes["gaps"]) == 1
    gap = notes["gaps"][0]
    assert "GPU is lost" in gap["error"] and gap["failed_reads"] >= 3
    assert not [s for s in sampler.samples() if s["trial"] == 1]
    assert any("gap" in w for w in notes["warnings"])
    assert notes["errors"]  # the counter failed at the lost trial's edges


def test_a_bug_in_the_sampler_thread_is_raised_at_stop():
    source = ScriptedSource()
    sampler = PollingSampler(source, sample_hz=100)
    sampler.start()
    source.broken = True
    time.sleep(0.1)
    with pytest.raises(RuntimeError, match="sampler thread failed") as info:
        sampler.stop()
    assert isinstance(info.value.__cause__, ValueError)


def test_trial_shorter_than_the_counter_update_period_is_flagged():
    source = ScriptedSource(power_w=100.0, counter_period_s=0.1)
    sampler = PollingSampler(source, sample_hz=50)
    with sampler:
        short = run_trial(sampler, 0, 0.03)
        long = run_trial(sampler, 1, 0.5)
    notes = sampler.notes()
    assert notes["energy_counter_period_s"] == pytest.approx(0.1, abs=0.02)
    assert short["energy_source"] == "integrated"
    assert short["energy_j"] == pytest.approx(100.0 * short["_duration_s"], rel=0.05)
    assert long["energy_source"] == "counter"
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


def test_cpu_sampler_fills_rapl_energy_per_trial(tmp_path):
    write_rapl(tmp_path, {0: (0, 10**12)})
    sampler = PollingSampler(CpuSource(powercap_root=tmp_path), sample_hz=20)
    with sampler:
        for uj in range(1, 6):  # the counter moves every 20 ms while the sampler learns its period
            time.sleep(0.02)
            write_rapl(tmp_path, {0: (uj, 10**12)})
        sampler.begin_trial(0)
        write_rapl(tmp_path, {0: (25_000_005, 10**12)})  # 25 J during the trial
        time.sleep(0.05)
        cols = sampler.end_trial()
    assert cols["energy_source"] == "counter"
    assert cols["energy_j"] == pytest.approx(25.0)
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


def test_the_sampler_never_polls_faster_than_asked():
    sampler = PollingSampler(ScriptedSource(), sample_hz=40)
    with sampler:
        time.sleep(0.5)
    achieved = sampler.notes()["achieved_hz"]
    assert 0 < achieved <= 40 * 1.05  # a late tick is skipped, never made up in a burst
