"""Training loss in throughput runs: on resident synthetic batches it soon reaches ~0
(memorised), so a run reports where it started and ended and whether it fell, and
warns when it did not, rather than a median that looks like a result."""

import json

import numpy as np
import pytest

from gpubench.backends import Backend, DeviceInfo, Step, StepTimer
from gpubench.measure.protocol import ProtocolConfig
from gpubench.measure.runner import RunRequest, execute_run
from gpubench.measure.scenarios.throughput import loss_check

FAST = ProtocolConfig(trials=2, warmup_s=0.02, min_trial_s=0.02)


pytestmark = pytest.mark.usefixtures("torch_threads_put_back")  # inline runs set threads


class _Timer(StepTimer):
    def latencies_s(self):
        return np.zeros(0)


class RisingLossStep(Step):
    """A step whose loss grows with every step: a step that does not train."""

    device = DeviceInfo("cpu", None, "test cpu")

    def __init__(self):
        self.steps = 0

    def run(self, iterations, timer=None):
        self.steps += iterations
        np.ones((32, 32)) @ np.ones((32, 32))

    def make_timer(self, iterations):
        return _Timer()

    def synchronize(self):
        pass

    def loss(self):
        return 1.0 + 0.01 * self.steps


class RisingLossBackend(Backend):
    name, framework, device_kind = "test-rising-loss", "numpy", "cpu"

    def is_available(self):
        return True, ""

    def prepare(self, workload, config):
        return RisingLossStep()

    def environment(self):
        return {"framework": "numpy"}


def test_loss_check():
    assert loss_check(2.3, 0.1) == {"first_step": 2.3, "last_trial": 0.1, "fell": True}
    assert loss_check(2.3, 9.1)["fell"] is False
    assert loss_check(None, 0.1)["fell"] is None and loss_check(2.3, float("nan"))["fell"] is None


def test_a_training_run_says_where_its_loss_started_and_ended(tmp_path):
    pytest.importorskip("torch")
    outcome = execute_run(RunRequest("mnist", "torch-cpu", threads=1, telemetry="none",
                                     protocol=FAST, out_dir=tmp_path))
    meta = json.loads((outcome.path / "run.json").read_text())
    assert meta["loss"] == outcome.loss
    assert outcome.loss["fell"] is True
    assert outcome.loss["first_step"] > 1.0  # cross-entropy of 10 classes starts near ln 10
    assert outcome.loss["last_trial"] == pytest.approx(outcome.trials["loss"].iloc[-1])
    assert not any("did not fall" in w for w in outcome.warnings)


def test_infer_runs_have_no_loss_check(tmp_path):
    pytest.importorskip("torch")
    outcome = execute_run(RunRequest("mnist", "torch-cpu", mode="infer", threads=1,
                                     telemetry="none", protocol=FAST, out_dir=tmp_path))
    assert outcome.loss == {} and "loss" not in json.loads((outcome.path / "run.json").read_text())


def test_a_loss_that_does_not_fall_is_a_warning(tmp_path, register):
    register("test-rising-loss", RisingLossBackend)
    outcome = execute_run(RunRequest("linreg", "test-rising-loss", telemetry="none",
                                     protocol=FAST, out_dir=tmp_path))
    assert outcome.status == "ok" and outcome.loss["fell"] is False
    assert [w for w in outcome.warnings if "the training loss did not fall (1.01 at the first step" in w]
    meta = json.loads((outcome.path / "run.json").read_text())
    assert any("did not fall" in w for w in meta["warnings"])


def test_resnet50_loss_falls_from_its_first_steps():
    """ImageNet's lr 0.1 belongs to batch 256; at the default batch 32 it made the loss
    jump up within two steps (7.6 -> 4.4 -> 8.5 at image_size 32)."""
    torch = pytest.importorskip("torch")
    from gpubench.backends import StepConfig, get_backend
    from gpubench.workloads import resolve_workload
    torch.manual_seed(0)
    step = get_backend("torch-cpu").prepare(resolve_workload("resnet50", {"image_size": "32"}),
                                            StepConfig("train", "fp32", 32, threads=1))
    losses = []
    for _ in range(5):
        step.run(1)
        losses.append(step.loss())
    step.close()
    assert max(losses[1:]) < losses[0], losses


def test_the_run_table_shows_the_loss_from_first_step_to_last_trial(tmp_path):
    pytest.importorskip("torch")
    from conftest import run_cli_here  # in this process: the table is under test
    proc = run_cli_here("run", "-w", "mnist", "-b", "torch-cpu", "--threads", "1", "--trials", "2",
                        "--warmup-s", "0.05", "--min-trial-s", "0.05", "--telemetry", "none",
                        "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    meta = json.loads(next(tmp_path.glob("*/run.json")).read_text())
    from gpubench.cli.result_table import loss_text
    assert "loss first → last" in proc.stdout and loss_text(meta["loss"]) in proc.stdout
    assert loss_text({"first_step": 1.0, "last_trial": 2.0, "fell": False}) == "1.00 → 2.00 (rose)"
