"""benchmarks/gpu_check.py (`make gpu-check`): without a GPU it exits 2 with one line and
writes nothing; its pure parts (the row checks, the summary, the step runner, the
command runner's timeouts) are tested here on small tables."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pandas as pd
import pytest

from nvml_double import fake_nvml_dir  # noqa: F401  (fixture: the NVML test double, built with gcc)

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "gpu_check.py"


sys.path.insert(0, str(REPO / "benchmarks"))  # the script's modules, as when it runs
import gpu_check as gc  # noqa: E402
import gpu_check_rows as gcr  # noqa: E402
import gpu_check_summary as gcs  # noqa: E402

HAS_GPU, GPU_WHY = gc.gpu_presence()
no_gpu_only = pytest.mark.skipif(HAS_GPU, reason=f"an NVIDIA GPU is here ({GPU_WHY}): "
                                                 "the check would run for minutes")


def _env(**extra: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OUT", "MAKEFLAGS")}
    env.update(extra)
    return env


# -- without a GPU: one line, exit 2, nothing written ----------------------------------------
@no_gpu_only
@pytest.mark.parametrize("python", sorted({sys.executable, shutil.which("python3") or sys.executable}))
def test_no_gpu_is_one_line_and_exit_2(tmp_path, python):
    # the machine's python3 may lack pandas: nothing heavy may be imported before the check
    for env in (_env(PYTHONPATH=str(REPO / "src")), _env(OUT=str(tmp_path / "out"))):
        proc = subprocess.run([python, str(SCRIPT)], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("gpu-check: error: no NVIDIA GPU here: "), lines
        assert "Traceback" not in proc.stderr and proc.stdout == ""
        assert list(tmp_path.iterdir()) == []  # neither ./gpu-check-out nor $OUT


@no_gpu_only
@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_gpu_check_without_gpu(tmp_path):
    default_out = REPO / "gpu-check-out"
    existed = default_out.exists()
    proc = subprocess.run(["make", "gpu-check"], cwd=REPO, env=_env(OUT=str(tmp_path / "out")),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr  # make's own code for a failed recipe
    # make adds its own "make: *** [...] Error 2" line; the check says one line
    ours = [ln for ln in proc.stderr.splitlines() if not ln.startswith(("make:", "make["))]
    assert len(ours) == 1 and ours[0].startswith("gpu-check: error: no NVIDIA GPU here: "), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists() and default_out.exists() == existed


def test_presence_without_the_library():
    ok, why = gc.gpu_presence("libnvidia-ml-that-does-not-exist.so.1")
    assert not ok and "could not be loaded" in why


def test_presence_through_the_nvml_double(fake_nvml_dir):
    code = (f"import sys; sys.path.insert(0, {str(SCRIPT.parent)!r}); import gpu_check; "
            "print(gpu_check.gpu_presence())")
    seen = {}
    for gpus in ("1", "0"):
        env = _env(LD_LIBRARY_PATH=str(fake_nvml_dir), FAKE_NVML_GPUS=gpus)
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        seen[gpus] = proc.stdout.strip()
    assert seen["1"] == "(True, 'NVML sees 1 GPU(s)')"
    assert seen["0"] == "(False, 'NVML sees no GPU')"


# -- the row checks ---------------------------------------------------------------------------
def _roundtrip(frame: pd.DataFrame, tmp_path: Path) -> List[Dict[str, Any]]:
    """Rows as the script sees them: written to CSV and read back with pandas."""
    path = tmp_path / f"t{len(list(tmp_path.iterdir()))}.csv"
    frame.to_csv(path, index=False)
    return pd.read_csv(path).to_dict("records")


def _trials(n: int = 3, **overrides: Any) -> pd.DataFrame:
    base = {"run_id": "r1", "workload": "resnet50", "mode": "infer", "precision": "bf16",
            "batch_size": 128, "device_name": "NVIDIA H200", "driver_version": "580.65.06",
            "cuda_version": "13.0", "iterations": 1000, "duration_s": 0.5,
            "throughput_samples_per_s": 256000.0, "latency_p50_ms": 0.49, "latency_p90_ms": 0.52,
            "latency_p99_ms": 0.6, "mfu": 0.31, "power_avg_w": 400.0, "energy_j": 200.0,
            "energy_source": "counter", "mem_bw_gbs": 1900.0, "mem_bw_source": "gpm",
            "throttled": False, "status": "ok", "error": None}
    rows = [{**base, "trial": t} for t in range(n)]
    frame = pd.DataFrame(rows)
    for key, value in overrides.items():
        frame[key] = value
    return frame


def _samples(trials=range(3), reasons=0x1, power_w=400.0, per_trial: int = 5,
             span_s: float = 0.5) -> pd.DataFrame:
    rows = []
    for t in trials:
        for i in range(per_trial):
            kind = "trial_begin" if i == 0 else "trial_end" if i == per_trial - 1 else "poll"
            rows.append({"t_s": t * 10 + i * span_s / (per_trial - 1), "device_index": 0, "trial": t,
                         "sample_kind": kind, "power_w": power_w, "clock_event_reasons": reasons})
    rows.append({"t_s": -1.0, "device_index": 0, "trial": None, "sample_kind": "poll",
                 "power_w": 90.0, "clock_event_reasons": 0x4})  # warm-up: no trial
    return pd.DataFrame(rows)


RUN_JSON = {"environment": {"gpu": {"power_limit_w": 700.0, "peak_mem_bw_gbs": 4800.0}},
            "telemetry": {"peak_mem_bw_gbs": 4800.0}}


def _verdicts(checks) -> Dict[str, str]:
    return {c.name: c.verdict for c in checks}


def test_good_rows_pass_every_check(tmp_path):
    checks = gcr.check_run("run resnet50 infer bf16", "infer", _roundtrip(_trials(), tmp_path),
                          _roundtrip(_samples(), tmp_path), RUN_JSON, gpm_expected=True)
    assert _verdicts(checks) == {
        "status ok": "PASS", "identity": "PASS", "throughput > 0": "PASS", "latency": "PASS",
        "MFU <= 1": "PASS", "power <= limit": "PASS", "energy": "PASS",
        "clock-event reasons": "PASS", "GPM bandwidth": "PASS"}
    assert all(c.group == "run resnet50 infer bf16" for c in checks)
    latency = next(c for c in checks if c.name == "latency")
    assert "= 0.98" in latency.detail


def test_training_rows_have_no_latency_check(tmp_path):
    rows = _roundtrip(_trials(mode="train", latency_p50_ms=None, latency_p99_ms=None), tmp_path)
    checks = gcr.check_run("run", "train", rows, _roundtrip(_samples(), tmp_path), RUN_JSON, True)
    assert "latency" not in _verdicts(checks) and set(_verdicts(checks).values()) == {"PASS"}


def test_a_failed_run_is_one_fail_line(tmp_path):
    rows = _roundtrip(_trials(status="failed", error="Traceback ...\nRuntimeError: CUDA out of memory",
                              throughput_samples_per_s=None), tmp_path)
    checks = gcr.check_run("run", "infer", rows, None, RUN_JSON, True)
    assert [(c.name, c.verdict) for c in checks] == [("status ok", "FAIL")]
    assert "0/3 trials ok" in checks[0].detail and "CUDA out of memory" in checks[0].detail


def test_bad_throughput_and_identity(tmp_path):
    assert gcr.check_throughput(_roundtrip(_trials(throughput_samples_per_s=0.0), tmp_path)).verdict == "FAIL"
    check = gcr.check_identity(_roundtrip(_trials(driver_version=None), tmp_path))
    assert check.verdict == "FAIL" and "driver_version" in check.detail


def test_latency_percentiles_and_ratio(tmp_path):
    verdict = lambda **kw: gcr.check_latency(_roundtrip(_trials(**kw), tmp_path), "infer").verdict  # noqa: E731
    assert verdict(latency_p50_ms=0.7, latency_p99_ms=0.6) == "FAIL"  # p50 above p99
    assert verdict(latency_p50_ms=0.25) == "FAIL"  # ratio 0.5 with 0.5 ms steps
    assert verdict(latency_p50_ms=0.45) == "PASS"  # ratio 0.9
    # 20 us steps: the host loop between the events dominates, only the upper bound holds
    short = dict(iterations=25000, duration_s=0.5)
    check = gcr.check_latency(_roundtrip(_trials(latency_p50_ms=0.01, latency_p99_ms=0.02, **short),
                                        tmp_path), "infer")
    assert check.verdict == "PASS" and "lower bound not applied" in check.detail and "= 0.5" in check.detail
    assert verdict(latency_p50_ms=0.03, latency_p99_ms=0.04, **short) == "FAIL"  # ratio 1.5: impossible
    assert verdict(latency_p50_ms=None) == "FAIL"  # inference without latencies
    assert gcr.latency_ratio({"latency_p50_ms": 2.0, "iterations": 100, "duration_s": 0.25}) == pytest.approx(0.8)


def test_mfu_power_energy(tmp_path):
    assert gcr.check_mfu(_roundtrip(_trials(mfu=1.2), tmp_path)).verdict == "FAIL"
    assert gcr.check_mfu(_roundtrip(_trials(mfu=None), tmp_path)).verdict == "SKIP"
    assert gcr.check_power(_roundtrip(_trials(power_avg_w=720.0), tmp_path), 700.0).verdict == "FAIL"
    assert gcr.check_power(_roundtrip(_trials(power_avg_w=705.0), tmp_path), 700.0).verdict == "PASS"  # 1%
    assert gcr.check_power(_roundtrip(_trials(power_avg_w=None), tmp_path), 700.0).verdict == "FAIL"
    assert gcr.check_power(_roundtrip(_trials(), tmp_path), None).verdict == "SKIP"
    assert gcr.check_energy(_roundtrip(_trials(energy_j=None), tmp_path)).verdict == "FAIL"
    assert gcr.check_energy(_roundtrip(_trials(energy_source="guess"), tmp_path)).verdict == "FAIL"


def test_clock_event_reasons_decoded_and_consistent(tmp_path):
    assert gcr.decode_reasons(0x5) == ["gpu_idle", "sw_power_cap"]
    assert gcr.decode_reasons(0) == [] and gcr.decode_reasons(0x1000) == ["0x1000"]
    capped = gcr.check_clock_reasons(_roundtrip(_trials(throttled=True), tmp_path),
                                    _roundtrip(_samples(reasons=0x4), tmp_path))
    assert capped.verdict == "PASS" and "sw_power_cap" in capped.detail and "throttled 3/3" in capped.detail
    wrong = gcr.check_clock_reasons(_roundtrip(_trials(throttled=True), tmp_path),
                                   _roundtrip(_samples(reasons=0x1), tmp_path))
    assert wrong.verdict == "FAIL" and "samples say False" in wrong.detail
    assert gcr.check_clock_reasons(_roundtrip(_trials(), tmp_path), None).verdict == "FAIL"


def test_gpm_bandwidth(tmp_path):
    rows = _roundtrip(_trials(mem_bw_source="util_estimate"), tmp_path)
    check = gcr.check_gpm(rows, True, 4800.0, "GPM: no permission")
    assert check.verdict == "FAIL" and "no permission" in check.detail
    assert gcr.check_gpm(rows, False, 4800.0).verdict == "SKIP"
    assert gcr.check_gpm(_roundtrip(_trials(mem_bw_gbs=6000.0), tmp_path), True, 4800.0).verdict == "FAIL"
    assert gcr.gpm_expected_for([9, 0], None) is True and gcr.gpm_expected_for([8, 0], "NVIDIA H100") is False
    assert gcr.gpm_expected_for(None, "NVIDIA H200") is True
    assert gcr.gpm_expected_for(None, "Tesla V100-SXM2-16GB") is None
    assert gcr.gpm_expected_for(None, float("nan")) is None


def test_energy_counter_against_integrated_power(tmp_path):
    windows = [{"trial": t, "t_begin_s": t * 10.0, "t_end_s": t * 10.0 + 2.0} for t in range(3)]
    samples = _roundtrip(_samples(power_w=300.0, per_trial=21, span_s=2.0), tmp_path)
    good = gcr.energy_vs_integrated(_roundtrip(_trials(energy_j=600.0), tmp_path), samples, windows)
    assert [round(f["rel_diff"], 6) for f in good] == [0.0, 0.0, 0.0]
    assert gcr.check_energy_integrated(good).verdict == "PASS"
    off = gcr.energy_vs_integrated(_roundtrip(_trials(energy_j=630.0), tmp_path), samples, windows)
    check = gcr.check_energy_integrated(off)  # 5% above the integral
    assert check.verdict == "FAIL" and "+5.00%" in check.detail
    integrated = _roundtrip(_trials(energy_source="integrated"), tmp_path)
    assert gcr.energy_vs_integrated(integrated, samples, windows) == []
    sparse = gcr.energy_vs_integrated(_roundtrip(_trials(energy_j=600.0), tmp_path),
                                     _roundtrip(_samples(power_w=300.0, per_trial=3, span_s=2.0), tmp_path),
                                     windows)
    assert gcr.check_energy_integrated(sparse).verdict == "SKIP"  # too few samples to integrate


def test_kernel_and_pytest_checks():
    assert gcr.check_kernel("gemm", 700.0, 989.4, "TFLOP/s").verdict == "PASS"
    assert gcr.check_kernel("gemm", 1200.0, 989.4, "TFLOP/s").verdict == "FAIL"
    assert gcr.check_kernel("gemm", 100.0, 989.4, "TFLOP/s").verdict == "FAIL"
    assert gcr.check_kernel("gemm", 700.0, None, "TFLOP/s").verdict == "SKIP"
    xml = """<testsuites><testsuite name="pytest">
      <testcase classname="tests.test_a" name="test_ok"/>
      <testcase classname="tests.test_a" name="test_bad"><failure message="x"/></testcase>
      <testcase classname="tests.test_b" name="test_skip"><skipped message="no"/></testcase>
    </testsuite></testsuites>"""
    counts = gcr.parse_junit(xml)
    assert (counts["passed"], counts["failed"], counts["skipped"]) == (1, 1, 1)
    assert counts["failures"] == ["tests.test_a::test_bad"]
    assert gcr.check_pytest("gpu", counts, False, True).verdict == "FAIL"
    assert gcr.check_pytest("gpu", {**counts, "failed": 0, "failures": []}, False, True).verdict == "PASS"
    nothing = {"passed": 0, "failed": 0, "skipped": 12, "failures": []}
    assert gcr.check_pytest("gpu", nothing, False, True).verdict == "FAIL"  # every gpu test skipped
    assert gcr.check_pytest("gpu", None, True, True).verdict == "FAIL"
    assert gcr.parse_pytest_tail("...\n3 passed, 1 failed, 2 skipped in 4.20s\n")["failed"] == 1


def test_exec_runs_pass_only_when_they_matched_eager_compiled_and_did_not_recompile():
    good = [{"status": "ok", "accuracy_ok": True, "throughput_samples_per_s": 100.0}] * 2
    meta = {"compile_s": 12.5, "exec_check": {"top1_agreement": 1.0, "max_abs_diff": 1e-3},
            "recompiled_trials": []}
    passed = gcr.check_exec_run("exec compile gpt train", good, meta)
    assert passed.verdict == "PASS" and "compile_s 12.5" in passed.detail
    off = [{**r, "accuracy_ok": False} for r in good]
    assert "outputs off eager's" in gcr.check_exec_run("x", off, meta).detail
    assert gcr.check_exec_run("x", good, {**meta, "recompiled_trials": [1]}).verdict == "FAIL"
    assert gcr.check_exec_run("x", good, {**meta, "compile_s": None}).verdict == "FAIL"
    failed = gcr.check_exec_run("x", [{"status": "failed", "error": "Traceback\nboom"}], {})
    assert failed.verdict == "FAIL" and "boom" in failed.detail


def test_a_run_of_one_rank_passes_within_3_percent_of_the_plain_run_on_nccl():
    plain = [{"status": "ok", "throughput_samples_per_s": v} for v in (1000.0, 1010.0, 990.0)]
    meta = {"distributed": {"process_group_backend": "nccl", "applied": "ddp"}}
    close = [{"status": "ok", "throughput_samples_per_s": v} for v in (985.0, 980.0, 990.0)]
    passed = gcr.check_ranked_run("r", plain, close, meta)
    assert passed.verdict == "PASS" and "ratio 0.9850" in passed.detail
    slow = [{**r, "throughput_samples_per_s": 960.0} for r in close]
    assert "-4.0% against the plain run" in gcr.check_ranked_run("r", plain, slow, meta).detail
    gloo = {"distributed": {"process_group_backend": "gloo", "applied": "ddp"}}
    assert gcr.check_ranked_run("r", plain, close, gloo).verdict == "FAIL"
    failed = gcr.check_ranked_run("r", plain, [{"status": "failed", "error": "x\nNCCL error"}], meta)
    assert failed.verdict == "FAIL" and "NCCL error" in failed.detail


def test_a_collective_run_passes_with_an_algbw_row_for_every_size():
    meta = {"distributed": {"process_group_backend": "nccl"},
            "collective": {"sizes": [{"message_bytes": 8}, {"message_bytes": 16}]}}
    rows = [{"status": "ok", "message_bytes": b, "algbw_gbs": g} for b, g in ((8, 0.01), (16, 0.02))]
    passed = gcr.check_collective_run("c", rows, meta)
    assert passed.verdict == "PASS" and "2 sizes" in passed.detail and "0.02 GB/s" in passed.detail
    assert gcr.check_collective_run("c", rows[:1], meta).verdict == "FAIL"


def test_a_serving_run_passes_on_the_device_clock_with_a_max_qps():
    rows = [{"status": "ok", "latency_p99_ms": 1.5}]
    meta = {"serving": {"latency_clock": "device_events", "search": {"max_qps": 12000.0}}}
    passed = gcr.check_serving_run("s", rows, meta)
    assert passed.verdict == "PASS" and "max QPS 12,000" in passed.detail
    host = {"serving": {"latency_clock": "host_after_sync"}}
    assert "expected device_events" in gcr.check_serving_run("s", rows, host).detail
    none = {"serving": {"latency_clock": "device_events", "search": {"max_qps": None}}}
    assert gcr.check_serving_run("s", rows, none).verdict == "FAIL"


# -- the summary ------------------------------------------------------------------------------
def _report():
    report = gcs.Report(started_utc="2026-01-01T00:00:00Z", host="box", deadline_s=390.0,
                       machine={"gpu_name": "NVIDIA H200", "power_limit_w": 700.0})
    report.checks += [gcr.Check("run mnist infer fp32", "latency", "FAIL", "ratio 0.5"),
                      gcr.Check("kernels", "bf16 GEMM TFLOP/s", "PASS", "700 TFLOP/s"),
                      gcr.Check("pytest", "TensorRT GPU tests", "SKIP", "not installed")]
    report.steps += [gcs.Step("gpubench env", "PASS", 5.0, "", 6.0),
                     gcs.Step("suite + compare", "SKIP", 0.0, "skipped (time)", 15.0)]
    report.runs.append({"run": "run mnist infer fp32", "batch": 64, "trials_ok": "3/3",
                        "throughput": 1.2e6, "mfu": 0.001, "power_w": 120.0, "power_limit_w": 700.0,
                        "energy_source": "counter", "mem_bw_source": "gpm", "mem_bw_gbs": 50.0,
                        "latency_ratio": 0.5, "reasons": "gpu_idle", "seconds": 5.2})
    return report


def test_summary_lists_every_check_and_the_figures():
    report = _report()
    text = gcs.render_summary(report)
    assert "**1 PASS, 1 FAIL, 1 SKIP**" in text and "IN PROGRESS" in text
    assert "| FAIL | run mnist infer fp32 | latency | ratio 0.5 |" in text
    assert text.index("| FAIL |") < text.index("| SKIP |") < text.index("| PASS | kernels")
    assert "| run mnist infer fp32 | 64 | 3/3 | 1.2e+06 | 0.001 | 120 | 700 | counter | gpm | 50 | 0.500 |" in text
    assert "| gpubench env | PASS | 5.0 | 6 |  |" in text  # measured beside the estimate
    assert "| suite + compare | SKIP | 0.0 | 15 | skipped (time) |" in text
    assert report.exit_code() == 1
    report.checks = [c for c in report.checks if c.verdict != "FAIL"]
    report.state = "finished"
    # a step skipped for time is not a pass: incomplete, and the summary names it
    assert report.exit_code() == 3
    assert "exit code 3 (incomplete: not run for time: suite + compare)" in gcs.render_summary(report)
    report.steps = [s for s in report.steps if s.verdict != "SKIP"]
    # a check that does not apply to this GPU (a SKIP inside a step that ran) is no gap
    assert report.exit_code() == 0 and "exit code 0" in gcs.render_summary(report)
    report.steps.append(gcs.Step("pytest", "FAIL", 150.0, "timed out"))
    assert report.exit_code() == 1  # a failed step fails the check
    assert len(gc.OUT_FILES) <= 8


def test_gpu_state_is_reported_when_run_json_has_it():
    state = {"other_processes": [{"pid": 7, "name": "python"}], "persistence_mode": True,
             "clocks": {"app_clocks_at_default": False}}
    assert gcr.gpu_state_of({"telemetry": {"gpu_state": state}}) == state
    assert gcr.gpu_state_of({"telemetry": {}}) is None
    assert gcr.gpu_state_text(state) == ("other processes: 1; persistence mode: True; "
                                        "application clocks at default: False")


# -- steps and commands: never a hang, never a lost summary ------------------------------------
class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def _checker(tmp_path, total_s=100.0):
    clock = FakeClock()
    out = tmp_path / "out"
    out.mkdir()
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    shell = gc.Shell(out / "log.txt", dict(os.environ), tmp_path, scratch)
    return gc.Checker(out, gc.Budget(total_s, clock), shell, tmp_path), clock


def test_a_raising_step_is_a_fail_line_and_the_next_step_runs(tmp_path):
    checker, clock = _checker(tmp_path)

    def boom():
        raise RuntimeError("the driver went away")

    ran = []
    checker.step("first", 1.0, boom)
    checker.step("second", 1.0, lambda: ran.append(1))
    assert [(s.name, s.verdict) for s in checker.report.steps] == [("first", "FAIL"), ("second", "PASS")]
    assert ran == [1] and "RuntimeError: the driver went away" in checker.report.steps[0].detail
    summary = (checker.out / "summary.md").read_text()
    assert "| first | FAIL |" in summary and "| second | PASS |" in summary
    assert "Traceback" in (checker.out / "log.txt").read_text()
    assert not list(checker.out.glob(".*.tmp"))  # atomic writes leave nothing behind


def test_a_step_never_starts_with_less_time_than_its_timeout(tmp_path):
    checker, clock = _checker(tmp_path, total_s=100.0)
    clock.t = 80.0  # 100 - 8 (reserve) - 80 = 12 s left
    called, timeouts = [], []
    checker.step("long step", 30.0, lambda: called.append(1))
    checker.step("short step", 5.0, lambda: (called.append(2), timeouts.append(checker.command_timeout())))
    checker.step("exact step", 12.0, lambda: timeouts.append(checker.command_timeout()))
    assert called == [2]
    assert [(s.name, s.verdict, s.detail) for s in checker.report.steps][0] == (
        "long step", "SKIP", "skipped (time): 12 s left, its timeout is 30 s")
    # a step's commands end by its own timeout, and never past the deadline
    assert timeouts == [pytest.approx(5.0), pytest.approx(12.0)]
    assert "skipped (time)" in (checker.out / "summary.md").read_text()
    checker.report.state = "finished"
    assert checker.report.exit_code() == 3


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_command_past_its_timeout_is_stopped(tmp_path, monkeypatch):
    monkeypatch.setattr(gc, "KILL_GRACE_S", 0.5)
    checker, _ = _checker(tmp_path)
    # Each would print "done" after a minute: stopped, it never does, and it is gone
    # when run() returns (reaped), however fast or slow the machine.
    sleepy = checker.shell.run("sleeps", [sys.executable, "-c",
                               "import time; time.sleep(60); print('done')"], 0.5)
    # A shell that ignores SIGINT from its start (inherited: no start-up race with the
    # timeout), says so at once, and would outlive the grace: only SIGKILL ends it.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        stubborn = checker.shell.run("ignores SIGINT", ["sh", "-c", "echo up $$; sleep 60; echo done"],
                                     2.0)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert sleepy.timed_out and stubborn.timed_out and stubborn.rc is None
    assert "done" not in sleepy.stdout and "done" not in stubborn.stdout
    assert stubborn.stdout.startswith("up ")  # what it printed before the stop is kept
    assert not _running(int(stubborn.stdout.split()[1]))  # SIGKILL after the grace
    log = (checker.out / "log.txt").read_text()
    assert log.count("TIMED OUT") == 2
    fine = checker.shell.run("prints", [sys.executable, "-c", "print('hello')"], 30.0)
    assert fine.rc == 0 and fine.stdout.strip() == "hello" and not fine.timed_out


# -- the plan: every command line valid, and it fits ------------------------------------------
import gpu_check_plan as gcp  # noqa: E402


def _workloads() -> List[str]:
    from gpubench.cli.list import collect

    return [w["name"] for w in collect()["workloads"] if w.get("task") != "collective"]


def test_the_plan_over_the_real_workloads_fits_its_tiers():
    plan = gcp.build_plan(_workloads())
    core = [s for s in plan if s.tier == gcp.CORE]
    assert sum(s.expected_s for s in core) <= gcp.CORE_BUDGET_S
    assert plan.index(core[-1]) == len(core) - 1  # the core tier runs first
    assert gcp.fits(plan) == []
    names = [s.name for s in plan]
    assert len(names) == len(set(names))
    # what the issue asked of the core: peaks, the matrix at fp32/bf16, energy, ranks,
    # single-stream serving, compile and CUDA graphs
    for wanted in ("reference kernels", "run mnist infer bf16", "run gpt train fp32",
                   "steady run: energy counter vs integrated power", "serving single-stream",
                   "exec compile gpt train", "exec cuda-graphs gpt train"):
        assert wanted in [s.name for s in core], wanted
    assert any("--nproc" in c for s in core for c in s.commands)
    # every workload gpubench lists is run, in the core, the extended tier or pytest -m gpu
    ran = {c[c.index("--workload") + 1] for s in plan for c in s.commands if "--workload" in c}
    assert set(_workloads()) - ran <= set(gcp.COVERED_BY_GPU_TESTS)


def test_a_plan_that_does_not_fit_says_which_step_and_why():
    plan = gcp.build_plan(_workloads())
    slow = [gcp.PlannedStep(s.name, s.tier, s.expected_s * 2, s.timeout_s, s.action, s.args,
                            s.commands) for s in plan]
    problems = gcp.fits(slow)
    assert problems[0].startswith("the core tier is expected to take")
    assert any("would start at" in p for p in problems)


def test_plan_mode_checks_every_command_line_through_preflight_and_exits_0(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--plan"], capture_output=True, text=True,
                          env=_env(PYTHONPATH=str(REPO / "src")), cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    plan = gcp.build_plan(_workloads())
    assert len(lines) == len(plan) + 2  # a header, a row per step, the totals
    checked = [line for line in lines[1:-1] if line.rstrip().endswith("ok")]
    assert len(checked) == sum(1 for s in plan if s.commands)
    assert "REFUSED" not in done.stdout
    total = sum(s.expected_s for s in plan)
    assert f"all {total:.0f} s expected" in lines[-1]


def test_a_refused_command_line_fails_the_plan(monkeypatch):
    # the command line gpu-check shipped with: single-stream at --batch-size 64 (exit 2
    # on every GPU); --plan must refuse it before any GPU time is spent
    bad = ("run", "--workload", "mnist", "--backend", "torch-cuda", "--mode", "infer",
           "--batch-size", "64", "--scenario", "single-stream", "--telemetry", "nvml")
    plan = [gcp._step("serving single-stream", gcp.CORE, 8.0, "step_serving", ("s", bad), [bad])]
    table, problems = gcp.check_plan(plan, "unused.yaml")
    assert len(problems) == 1 and "single-stream issues one sample a query" in problems[0]
    assert "REFUSED" in table
    # torch-cuda is taken as available: its own declarations are what is checked
    ok = ("run", "--workload", "gpt", "--backend", "torch-cuda", "--exec", "cuda-graphs",
          "--precision", "tf32", "--mode", "infer", "--telemetry", "nvml")
    with gcp.cuda_taken_as_available():
        assert gcp.check_command(ok)[0]
    assert not gcp.check_command(ok)[0]  # outside it, torch-cuda is unavailable here


def test_the_checker_runs_the_plan_it_printed(tmp_path, monkeypatch):
    # every planned step's action is a Checker method taking the step's own args
    import inspect

    plan = gcp.build_plan(_workloads())
    for s in plan:
        method = getattr(gc.Checker, s.action)
        inspect.signature(method).bind(None, *s.args)
        for argv in s.commands:  # what the step runs is in the args --plan checked
            if argv[0] == "run":
                assert argv in s.args, s.name
