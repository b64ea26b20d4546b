"""Scenarios own their loop and their columns; preflight refuses a scenario whose step
capabilities a backend lacks, an exec mode it cannot run, or more than one process
without a launcher for them: no scenario names a backend."""

import json
import time

import pytest

from gpubench.backends import get_backend
from gpubench.errors import Unsupported, UserError
from gpubench.measure.scenarios import registry as scenarios
from gpubench.measure.preflight import preflight
from gpubench.measure.request import RunRequest, request_identity
from gpubench.measure.scenarios.base import Scenario


class FixedSteps(Scenario):
    """A scenario of its own: three trials of 5 steps, timed on the host."""

    name = "fixed-steps"
    columns = ("trial", "iterations", "samples", "duration_s", "throughput_samples_per_s")

    def run(self, ctx):
        for trial in range(3):
            t0 = time.perf_counter()
            ctx.step.run(5)
            ctx.step.synchronize()
            seconds = time.perf_counter() - t0
            ctx.emit({"trial": trial, "iterations": 5, "samples": 5 * ctx.batch_size,
                      "duration_s": seconds,
                      "throughput_samples_per_s": 5 * ctx.batch_size / seconds})
        return "fixed_steps_done", {"fixed_steps": 5}


class Overreaching(FixedSteps):
    name = "overreaching"
    columns = ("trial",)  # but it fills more


class Epochs(FixedSteps):
    name = "epochs"
    needs = frozenset({"run", "train_epoch"})


@pytest.fixture
def registered(monkeypatch):
    for cls in (FixedSteps, Overreaching, Epochs):
        monkeypatch.setitem(scenarios._SCENARIOS, cls.name, cls)


def _run(tmp_path, name, **kw):
    pytest.importorskip("torch")
    from gpubench.measure.runner import execute_run
    return execute_run(RunRequest("linreg", "torch-cpu", scenario=name, telemetry="none",
                                  threads=1, out_dir=tmp_path, **kw))


def test_a_new_scenario_is_a_class_and_its_rows_say_so(registered, tmp_path):
    outcome = _run(tmp_path, "fixed-steps")
    assert outcome.status == "ok" and outcome.stop_reason == "fixed_steps_done"
    trials = outcome.trials
    assert list(trials["iterations"]) == [5, 5, 5] and set(trials["scenario"]) == {"fixed-steps"}
    assert trials["tflops"].isna().all()  # what it did not declare stays empty
    meta = json.loads((outcome.path / "run.json").read_text())
    assert meta["scenario"] == "fixed-steps" and meta["fixed_steps"] == 5


def test_a_scenario_filling_columns_it_did_not_declare_fails_its_run(registered, tmp_path):
    outcome = _run(tmp_path, "overreaching")
    assert outcome.status == "failed"
    assert "overreaching fills columns it did not declare" in outcome.error
    assert "duration_s" in outcome.error


def test_a_scenario_needing_what_the_steps_cannot_do_is_refused(registered):
    with pytest.raises(Unsupported, match="scenario epochs needs steps that can train_epoch; "
                                          "torch-cpu infer steps cannot"):
        preflight(RunRequest("linreg", "torch-cpu", mode="infer", scenario="epochs"))


def test_unknown_scenario_lists_the_valid_ones():
    with pytest.raises(UserError, match=r"unknown scenario 'soak' \(valid: collective, multi-stream, offline, server, "
                                          r"single-stream, throughput, time-to-accuracy\)"):
        preflight(RunRequest("linreg", "torch-cpu", scenario="soak"))


def test_exec_mode_is_the_backends_to_accept():
    with pytest.raises(Unsupported, match=r"exec mode 'xla' is unsupported on torch-cpu "
                                          r"\(it runs: eager, compile, "):
        preflight(RunRequest("linreg", "torch-cpu", exec="xla"))
    # the tf-*-xla names stay, and map onto the exec mode (no TensorFlow imported)
    assert get_backend("tf-cpu-xla").exec_modes == ("xla",)
    assert get_backend("tf-cpu").exec_modes == ("eager",)
    assert request_identity(RunRequest("mnist", "tf-cpu-xla"))["exec"] == "xla"
    assert request_identity(RunRequest("mnist", "tf-cpu"))["exec"] == "eager"


def test_more_than_one_process_needs_a_launcher_for_ranks():
    with pytest.raises(UserError, match="world size 2: runs of more than one process"):
        preflight(RunRequest("linreg", "torch-cpu", world_size=2))
