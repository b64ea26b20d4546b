"""How a run that stops says where it was (issue 28): a timeout names the phase the
run was in, from the phase events its worker reports as each begins."""

import pytest

from conftest import FAST_RUN, PLUGIN_ENV, lines_with, run_cli_here
from gpubench.measure.phases import PHASES, where


@pytest.mark.parametrize("backend, phase", [
    ("test-hang-in-prepare", PHASES["prepare"]),
    ("test-hang", "warm-up (the first step compiles or autotunes)"),
])
def test_a_timeout_names_the_phase_the_run_was_in(tmp_path, backend, phase):
    """Finding 11: "timed out ... last output:" and nothing else said nothing."""
    result = run_cli_here("run", "-w", "linreg", "-b", backend, *FAST_RUN, "--telemetry",
                          "none", "--timeout", "3", "--out", str(tmp_path), env_extra=PLUGIN_ENV)
    assert result.returncode == 4, result.stderr
    lines = lines_with(result.stdout + result.stderr, "timed out after 3 s")
    assert len(lines) == 1 and f"while {phase}; it printed nothing" in lines[0], lines


def test_where_reads_the_last_event():
    assert where([]) == ""
    assert where([{"event": "phase", "phase": "checks"}]) == PHASES["checks"]
    assert where([{"event": "phase", "phase": "scenario"},
                  {"event": "trial", "trial": 1, "trials": 5}]) == "trial 2 of 5"


def test_a_slow_cpu_step_is_said_before_the_run_starts(monkeypatch):
    """Finding 11: a default-size gpt on a CPU started without a word and timed out.
    The CPU's rate is fixed here (1,000 GFLOP/s): the figures do not depend on this
    machine."""
    from gpubench.measure import cpu_estimate

    monkeypatch.setattr(cpu_estimate, "cpu_gflops", lambda: 1000.0)
    result = run_cli_here("run", "-w", "gpt", "-b", "test-ok", "--timeout", "30", "--dry-run",
                          env_extra=PLUGIN_ENV)
    assert result.returncode == 0, result.stderr  # a warning, not a refusal
    assert lines_with(result.stderr, "warning: gpt") == [
        "gpubench: warning: gpt (batch 8, train) on test-ok: a step takes 7 s or more here "
        "(7,028 GFLOP a step, this CPU multiplies matrices at 1,000 GFLOP/s); warm-up and 6 "
        "trials take at least 17 steps, 119 s, past --timeout 30 s. A smaller model or batch "
        "runs faster: --batch-size, -p (gpubench list shows each workload's parameters)"]
    small = run_cli_here("run", "-w", "gpt", "-b", "test-ok", "-p", "layers=1", "-p",
                         "d_model=96", "-p", "seq_len=64", "--dry-run", env_extra=PLUGIN_ENV)
    assert small.returncode == 0 and not lines_with(small.stderr, "warning: gpt"), small.stderr


def test_no_estimate_for_a_gpu_step_or_a_small_one():
    from types import SimpleNamespace

    from gpubench.measure.cpu_estimate import slow_step_warning
    from gpubench.measure.preflight import preflight
    from gpubench.measure.request import request_from

    req = request_from({"workload": "gpt", "backend": "torch-cpu"})
    plan = preflight(req)
    assert slow_step_warning(req, plan, rate_gflops=1e6) is None  # 7 ms a step
    assert "a step takes" in slow_step_warning(req, plan, rate_gflops=100.0)
    gpu = SimpleNamespace(backend=SimpleNamespace(device_kind="cuda"))
    assert slow_step_warning(req, gpu, rate_gflops=1.0) is None
    tiny = request_from({"workload": "linreg", "backend": "torch-cpu"})
    assert slow_step_warning(tiny, preflight(tiny), rate_gflops=1e-3) is None
