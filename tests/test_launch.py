"""Launchers: preflight runs in the Python the run will run in; the inline and process
launchers end a run the same way; refusals, crashes and timeouts become rows in one
place (launch/status_rows.py) whatever launched the run."""

import os
import stat
import sys
from pathlib import Path

import pandas as pd
import pytest

import suite_plugins  # noqa: F401 (registers the test-* backends in this process)
from gpubench.errors import Unsupported, UserError
from gpubench.launch import LaunchResult, make_launcher, run_one, settle
from gpubench.launch.process import ProcessLauncher
from gpubench.measure.protocol import ProtocolConfig
from gpubench.measure.request import RunRequest, request_identity
from gpubench.results import schema

TESTS = Path(__file__).resolve().parent
FAST = ProtocolConfig(trials=2, warmup_s=0.02, min_trial_s=0.02)


@pytest.fixture
def plugins_in_workers(monkeypatch):
    monkeypatch.setenv("GPUBENCH_PLUGINS", "suite_plugins")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def other_python(tmp_path):
    """Another interpreter path (this Python behind a wrapper that logs each start)."""
    marker = tmp_path / "started.txt"
    python = _script(tmp_path / "other-python", f'echo "$@" >> "{marker}"\nexec "{sys.executable}" "$@"\n')
    return python, marker


def _started(marker: Path) -> list:
    """The launcher's Python's starts, the fork server's control fd left out."""
    return [" ".join(line.split()[:2]) if "fork_server" in line else line
            for line in marker.read_text().splitlines()]


@pytest.mark.parametrize("isolation, starts", [
    ("fresh", ["-m gpubench.launch.worker --preflight"] * 2),
    ("fork", ["-m gpubench.launch.fork_server"])])  # one server forks both
def test_preflight_runs_in_the_launchers_python(isolation, starts, other_python,
                                                plugins_in_workers, tmp_path):
    python, marker = other_python
    launcher = ProcessLauncher(python=str(python))
    with pytest.raises(Unsupported, match="it supports nothing"):
        launcher.preflight(RunRequest("linreg", "test-unsupported", out_dir=tmp_path,
                                      isolation=isolation))
    launcher.preflight(RunRequest("linreg", "test-ok", out_dir=tmp_path, isolation=isolation))
    assert _started(marker) == starts


@pytest.mark.parametrize("isolation, starts", [
    ("fresh", ["-m gpubench.launch.worker --preflight", "-m gpubench.launch.worker"]),
    ("fork", ["-m gpubench.launch.fork_server"])])
def test_a_run_goes_to_the_launchers_python(isolation, starts, other_python,
                                            plugins_in_workers, tmp_path):
    python, marker = other_python
    outcome = run_one(RunRequest("linreg", "test-ok", protocol=FAST, telemetry="none",
                                 out_dir=tmp_path / "out", isolation=isolation),
                      ProcessLauncher(python=str(python)))
    assert outcome.status == "ok" and len(outcome.trials) == 2
    assert _started(marker) == starts


def test_a_python_that_cannot_run_gpubench_is_named(tmp_path):
    broken = _script(tmp_path / "python-without-gpubench",
                     "echo 'ModuleNotFoundError: No module named gpubench' >&2\nexit 1\n")
    with pytest.raises(UserError, match=r"python-without-gpubench: cannot run gpubench there "
                                        r"\(ModuleNotFoundError: No module named gpubench\)"):
        ProcessLauncher(python=str(broken)).preflight(RunRequest("linreg", "torch-cpu"))
    with pytest.raises(UserError, match="not an executable Python interpreter"):
        ProcessLauncher(python=str(tmp_path / "missing"))
    with pytest.raises(UserError, match="inline launcher runs in this interpreter only"):
        make_launcher("inline", python=str(broken))
    with pytest.raises(UserError, match=r"unknown launcher 'mpi' \(valid: inline, process, torchrun, torchrun-slurm\)"):
        make_launcher("mpi")


@pytest.mark.parametrize("backend, status", [("test-ok", "ok"), ("test-raise", "failed")])
def test_inline_and_process_end_a_run_the_same_way(backend, status, plugins_in_workers, tmp_path):
    outcomes = {name: run_one(RunRequest("linreg", backend, protocol=FAST, telemetry="none",
                                         out_dir=tmp_path / name), make_launcher(name))
                for name in ("inline", "process")}
    inline, process = outcomes["inline"], outcomes["process"]
    assert inline.status == process.status == ("ok" if status == "ok" else "failed")
    assert list(inline.trials["status"]) == list(process.trials["status"])
    assert list(inline.trials.columns) == list(process.trials.columns)
    identity = list(schema.CONFIGURATION_COLUMNS)
    assert (inline.trials[identity].astype(str).values.tolist()
            == process.trials[identity].astype(str).values.tolist())
    assert list((tmp_path / "process").glob("*/worker.log")) and not list((tmp_path / "inline").glob("*/worker.log"))


def test_a_refusal_reads_the_same_from_either_launcher(plugins_in_workers, tmp_path):
    messages = []
    for name in ("inline", "process"):
        with pytest.raises(Unsupported) as caught:
            run_one(RunRequest("linreg", "test-unsupported", out_dir=tmp_path / name),
                    make_launcher(name))
        messages.append(str(caught.value))
        assert not list((tmp_path / name).glob("*"))  # nothing left behind
    assert messages[0] == messages[1]


@pytest.mark.parametrize("result, status", [
    (LaunchResult("timeout", "timed out after 5 s"), "timeout"),
    (LaunchResult("failed", "worker killed by SIGSEGV"), "failed"),
    (LaunchResult("refused", "precision fp16 ...", "unsupported"), "unsupported"),
    (LaunchResult("refused", "batch size must be ...", "usage"), "failed"),
])
def test_every_ending_becomes_a_row_with_the_requests_identity(result, status, tmp_path):
    folder = tmp_path / "20261130T000000Z-vm-abcdef12"
    folder.mkdir()
    req = RunRequest("mnist", "torch-cpu", mode="infer", batch_size=32, folder=folder)
    rows = settle(req, result)
    assert len(rows) == 1 and rows["status"].iloc[0] == status
    assert result.message in rows["error"].iloc[0]
    row = rows.iloc[0]
    assert schema.configuration_key(row) == schema.configuration_key(request_identity(req))
    assert (row["run_id"], row["scenario"], row["exec"], row["environment"]) == \
        ("abcdef12", "throughput", "eager", "default")
    assert (folder / "summary.csv").exists() and (folder / "run.json").exists()


def test_a_suite_run_refused_here_starts_no_worker(plugins_in_workers, tmp_path):
    from conftest import run_cli_here  # in this process: the workers are what is counted
    config = tmp_path / "s.yaml"
    config.write_text("defaults: {trials: 2, warmup_s: 0.05, min_trial_s: 0.05, telemetry: none}\n"
                      "runs:\n  - {workloads: [linreg], backends: [test-unsupported, test-ok]}\n")
    proc = run_cli_here("suite", str(config), "--out", str(tmp_path / "out"), "-q")
    assert proc.returncode == 0, proc.stderr
    runs = sorted((tmp_path / "out").glob("*/runs/*"))
    statuses = {}
    for run in runs:
        rows = pd.read_csv(run / "trials.csv")
        statuses[rows["backend"].iloc[0]] = (rows["status"].iloc[-1], (run / "worker.log").exists())
    # the refusal is a row, known without a worker; the other run had its worker
    assert statuses == {"test-unsupported": ("unsupported", False), "test-ok": ("ok", True)}


def test_refusal_is_known_only_where_preflight_is_local(other_python, plugins_in_workers, tmp_path):
    req = RunRequest("linreg", "test-unsupported", folder=tmp_path / "run")
    refused = make_launcher("process").refusal(req)
    assert refused.outcome == "refused" and refused.refused_kind == "unsupported"
    assert make_launcher("process").refusal(RunRequest("linreg", "test-ok", folder=tmp_path / "r2")) is None
    python, marker = other_python  # another Python: only its own preflight can tell
    assert ProcessLauncher(python=str(python)).refusal(req) is None and not marker.exists()
