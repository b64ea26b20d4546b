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
