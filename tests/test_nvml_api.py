"""gpubench's NVML layer through the real pynvml against the C test double
(tests/native/fake_nvml.c), each case in a subprocess started with LD_LIBRARY_PATH
pointing at the double: error translation, static facts, device selection under
CUDA_VISIBLE_DEVICES, power/energy/GPM sources, short trials, and make_sampler."""

from __future__ import annotations

import textwrap

import pytest

from nvml_double import fake_nvml_dir, run_python  # noqa: F401  (fixture)

PEAK_BW_GBS = 5120 / 8 * 2619e6 * 2 / 1e9  # the double's default H100-like memory


def real_nvml_installed() -> bool:
    import ctypes
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


def py(lib, code: str, **fake):
    return run_python(lib, textwrap.dedent(code), **fake)


def test_facts_and_unsupported_queries_become_not_available(fake_nvml_dir):
    out = py(fake_nvml_dir, """
        import json
        from gpubench.telemetry.nvml import Nvml, gpu_inventory
        from gpubench.telemetry.errors import NotAvailable
        out = {"inventory": gpu_inventory()}
        with Nvml() as nv:
            d = nv.device(1)
            try:
                d.energy_mj()
            except NotAvailable as exc:
                out["energy"] = str(exc)
            out["power_w"], out["power_source"] = d.power_w(), d.power_source
            out["reasons"] = d.clock_event_reasons()
            out["util"] = d.utilization_pct()
            out["gpm"] = d.gpm_supported()
        print(json.dumps(out))
        """, GPUS=2, POWER_W_1=250, UNSUPPORTED_1="energy,power_field,clock_events,bus_width",
        CLOCK_REASONS_1="0x24", MEM_UTIL_PCT_1=33)
    inv = out["inventory"]
    assert inv["available"] is True
    assert inv["driver_version"] == "550.54.15" and inv["cuda_driver_version"] == "12.4"
    gpu0, gpu1 = inv["gpus"]
    assert gpu0["name"] == "NVIDIA Fake H100"
    assert gpu0["uuid"] == "GPU-fa4e0000-0000-4000-8000-000000000000"
    assert gpu0["memory_total_bytes"] == 80 * 2**30
    assert gpu0["power_limit_w"] == 700.0
    assert gpu0["max_sm_clock_mhz"] == 1980 and gpu0["max_mem_clock_mhz"] == 2619
    assert gpu0["peak_mem_bw_gbs"] == pytest.approx(PEAK_BW_GBS, abs=0.1)
    assert gpu1["mem_bus_width_bits"] is None and gpu1["peak_mem_bw_gbs"] is None
    assert "Not Supported" in gpu1["unavailable"]["mem_bus_width_bits"]
    assert "energy counter: Not Supported" in out["energy"]
    assert out["power_w"] == 250.0 and out["power_source"] == "power_usage"
    assert out["reasons"] == 0x24  # from the pre-535 throttle-reasons call
    assert out["util"] == [97, 33]
    assert out["gpm"] is False


def test_no_driver_is_explained_and_nvml_telemetry_refused(fake_nvml_dir):
    code = """
        import json
        from gpubench.errors import UserError
        from gpubench.telemetry import make_sampler
        from gpubench.telemetry.nvml import gpu_inventory
        out = {"inventory": gpu_inventory()}
        auto = make_sampler("auto", "cuda", 0, 10)
        out["auto"] = [auto.name, auto.notes()]
        try:
            make_sampler("nvml", "cpu", 0, 10)
        except UserError as exc:
            out["nvml"] = str(exc)
        print(json.dumps(out))
        """
    out = py(fake_nvml_dir, code, INIT_FAIL=1)
    assert out["inventory"] == {"available": False, "reason":
                                "NVML could not be initialised: Driver Not Loaded (NVML error 9)"}
    name, notes = out["auto"]
    assert name == "none"
    assert notes["warnings"] == ["no nvml telemetry: NVML could not be initialised: "
                                 "Driver Not Loaded (NVML error 9)"]
    assert out["nvml"].startswith("--telemetry nvml: NVML could not be initialised")
    # and with no library at all (where no real driver is installed)
    if real_nvml_installed():
        return
    out = py(fake_nvml_dir / "missing", code)
    assert "no NVIDIA driver: NVML (libnvidia-ml.so.1) could not be loaded" in out["nvml"]


def test_cuda_ordinals_map_to_nvml_devices(fake_nvml_dir):
    out = py(fake_nvml_dir, """
        import json
        from gpubench.telemetry.errors import TelemetryUnavailable
        from gpubench.telemetry.nvml import Nvml
        from gpubench.telemetry.nvml_select import select_device
        uuid = "GPU-fa4e0000-0000-4000-8000-00000000000{}".format
        cases = [(None, 2, None), ("2,0", 0, None), ("2,0", 1, None),
                 (uuid(1), 0, None), ("1,7,0", 1, None), ("GPU-fa4e", 0, None),
                 (None, 0, uuid(2)), ("0", 3, None), ("MIG-4f5e", 0, None)]
        out = []
        with Nvml() as nv:
            for spec, index, want_uuid in cases:
                env = {} if spec is None else {"CUDA_VISIBLE_DEVICES": spec}
                try:
                    out.append(select_device(nv, index, want_uuid, env).index)
                except TelemetryUnavailable as exc:
                    out.append(str(exc))
        print(json.dumps(out))
        """, GPUS=3)
    assert out[:4] == [2, 2, 0, 1]
    assert out[4] == ("no GPU with index 1 with CUDA_VISIBLE_DEVICES='1,7,0' "
                      "(GPUs: 0: NVIDIA Fake H100)")
    assert out[5].startswith("no GPU with index 0")  # an ambiguous UUID prefix ends the list
    assert out[6] == 2  # the backend's UUID wins over the ordinal
    assert out[7] == "no GPU with index 3 with CUDA_VISIBLE_DEVICES='0' (GPUs: 0: NVIDIA Fake H100)"
    assert "MIG instance" in out[8]


# Trials on the real clock (the double's counter runs on it). What is asserted of them
# holds at any speed: a trial's energy at constant power lies between the power times
# the time the script slept inside it and times the time its begin_trial/end_trial calls
# spanned (`outer_s`), whatever the machine did meanwhile. `probe`: the (time, counter)
# readings the thread learnt the counter's update period from.
SAMPLER_TRIALS = """
    import json, time
    from gpubench.telemetry import make_sampler, sampler as sampler_module
    probes = []
    learn = sampler_module.counter_period_s
    sampler_module.counter_period_s = lambda seen: probes.append(list(seen)) or learn(seen)
    sampler = make_sampler({kind!r}, "cuda", {index}, {hz})
    rows = []
    with sampler:
        for trial, seconds in enumerate({seconds}):
            outer = time.monotonic()
            sampler.begin_trial(trial)
            t0 = time.monotonic()
            time.sleep(seconds)
            duration = time.monotonic() - t0
            columns = sampler.end_trial()
            rows.append({{**columns, "duration_s": duration, "outer_s": time.monotonic() - outer}})
    print(json.dumps({{"name": sampler.name, "rows": rows, "notes": sampler.notes(),
                      "env": sampler.environment(), "samples": sampler.samples(),
                      "probe": probes[0] if probes else None}}))
"""


def sampler_run(lib, kind="auto", index=0, hz=20, seconds=(0.25,), **fake):
    return py(lib, SAMPLER_TRIALS.format(kind=kind, index=index, hz=hz, seconds=list(seconds)),
              **fake)


MJ = 0.001  # the counter's unit, and its rounding: in joules


def assert_energy_at(row, watts):
    """A trial at constant `watts`: its energy (counter delta or integrated power) is
    over at least the time slept inside it and at most the time its calls spanned; its
    average power, `watts` (give or take the counter's rounding)."""
    inner, outer = row["duration_s"], row["outer_s"]
    assert watts * inner - 2 * MJ <= row["energy_j"] <= watts * outer + 2 * MJ, row
    assert watts - 2 * MJ / inner <= row["power_avg_w"] <= (watts * outer + 2 * MJ) / inner, row


def test_auto_on_a_gpu_samples_nvml_with_gpm_bandwidth(fake_nvml_dir):
    out = sampler_run(fake_nvml_dir, POWER_W=220, GPM_DRAM_BW_PCT=25, TEMP_C=61)
    assert out["name"] == "nvml"
    (row,) = out["rows"]
    # the counter moves continuously: the period learnt is the thread's reading interval
    # (ms), and only a trial shorter than that (a stall while it learnt) integrates power
    window = out["notes"]["trial_windows"][0]
    shorter = window["t_end_s"] - window["t_begin_s"] < out["notes"]["energy_counter_period_s"]
    assert row["energy_source"] == ("integrated" if shorter else "counter")
    assert_energy_at(row, 220)
    assert row["mem_bw_source"] == "gpm"
    assert row["mem_bw_gbs"] == pytest.approx(0.25 * PEAK_BW_GBS, rel=0.01)
    assert row["temp_c"] == 61 and row["sm_clock_mhz"] == 1980 and row["gpu_util_pct"] == 97
    assert row["throttled"] is False
    assert out["notes"]["power_source"] == "field:power_instant"
    assert out["env"]["driver_version"] == "550.54.15"
    assert out["env"]["gpu"]["uuid"].startswith("GPU-fa4e")


def test_without_gpm_bandwidth_is_a_labelled_utilisation_estimate(fake_nvml_dir):
    out = sampler_run(fake_nvml_dir, MEM_UTIL_PCT=40, UNSUPPORTED="temperature")
    (row,) = out["rows"]
    assert row["mem_bw_source"] == "util_estimate"
    assert row["mem_bw_gbs"] == pytest.approx(0.40 * PEAK_BW_GBS, rel=0.01)
    assert "temp_c" not in row  # not available: an empty cell, not 0
    unavailable = out["notes"]["unavailable"]
    assert "Not Supported" in unavailable["temperature"]
    assert "GPM" in unavailable
    assert all("temp_c" not in s for s in out["samples"])


def test_trials_shorter_than_the_counter_period_integrate_power(fake_nvml_dir):
    from gpubench.telemetry.aggregate import counter_period_s

    out = sampler_run(fake_nvml_dir, kind="nvml", hz=50, seconds=(0.02, 1.2),
                      POWER_W=100, ENERGY_PERIOD_MS=400)
    notes, probe = out["notes"], out["probe"]
    period = notes["energy_counter_period_s"]
    # The thread learnt the period from its readings of the double's counter: updates of
    # 40 J (100 W for 0.4 s), at least two of them in the probe's 1 s.
    assert (period, False) == counter_period_s([tuple(o) for o in probe])
    assert notes["energy_counter_period_is_lower_bound"] is False
    changes = [i for i in range(1, len(probe)) if probe[i][1] != probe[i - 1][1]]
    assert len(changes) >= 2
    for i in changes:
        updates = (probe[i][1] - probe[i - 1][1]) / 40_000
        assert updates == pytest.approx(round(updates), abs=1e-4) and round(updates) >= 1
    # The thread reads the counter, then the clock: an update seen at reading x came
    # after the clock read of reading x - 2, so the time between two observed updates
    # is whole periods, give or take those brackets' widths (however late the reads).
    for a, b in zip(changes, changes[1:]):
        if a < 2:
            continue  # the first reading's bracket has no start
        whole = 0.4 * (probe[b][1] - probe[a][1]) / 40_000
        slack = max(probe[x][0] - probe[x - 2][0] for x in (a, b))
        assert abs((probe[b][0] - probe[a][0]) - whole) <= slack, (a, b, probe)
    # A trial shorter than the period integrates power and says so; one longer uses the
    # counter: whole 40 J updates. (Which is which is decided on the windows as they
    # were: a stall of the machine could stretch the 0.02 s one past the period.)
    windows = notes["trial_windows"]
    for trial, row in enumerate(out["rows"]):
        shorter = windows[trial]["t_end_s"] - windows[trial]["t_begin_s"] < period
        assert row["energy_source"] == ("integrated" if shorter else "counter")
        assert bool([w for w in notes["warnings"]
                     if "update period" in w and f"trial {trial} " in w]) == shorter
        if shorter:
            assert_energy_at(row, 100)
        else:
            updates = row["energy_j"] / 40
            assert updates == pytest.approx(round(updates), abs=1e-4)
            assert row["duration_s"] - 0.4 <= 0.4 * round(updates) <= row["outer_s"] + 0.4


def test_power_usage_when_the_instant_field_is_missing(fake_nvml_dir):
    out = sampler_run(fake_nvml_dir, POWER_W=90, UNSUPPORTED="power_field", NO_ENERGY=1)
    (row,) = out["rows"]
    assert out["notes"]["power_source"] == "power_usage"
    assert row["energy_source"] == "integrated"
    assert_energy_at(row, 90)
    assert row["power_avg_w"] == pytest.approx(90, rel=1e-9)  # constant power, integrated
    assert "energy counter" in out["notes"]["unavailable"]
