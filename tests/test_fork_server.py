"""Warm workers (issue 29): the fork server imports the framework once and never
initialises CUDA or starts threads; a forked worker sets its own thread count; a server
that cannot start or dies leaves its runs to fresh interpreters, with a warning; none
outlives its parent. (Crashes, hangs, SIGTERM and Ctrl-C of forked runs: test_signals.py
and test_suite.py, over both isolations.)"""

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

import suite_plugins  # noqa: F401 (registers the test-* backends in this process)
from conftest import PLUGIN_ENV, REPO, wait_for_trials
from gpubench.launch import forked, process, run_one
from gpubench.launch.forked import FAMILY_MODULES, ForkServer
from gpubench.launch.process import ProcessLauncher
from gpubench.measure.protocol import ProtocolConfig
from gpubench.measure.request import RunRequest

FAST = ProtocolConfig(trials=2, warmup_s=0.02, min_trial_s=0.02)
DEADLINE_S = 300  # only a hung run reaches it


@pytest.fixture
def plugins_in_workers(monkeypatch):
    for name, value in PLUGIN_ENV.items():
        monkeypatch.setenv(name, value)


def _request(tmp_path, backend="test-ok", **fields):
    return RunRequest("linreg", backend, protocol=FAST, telemetry="none",
                      out_dir=tmp_path / "out", **fields)


def _isolation(outcome) -> str:
    return json.loads((outcome.path / "run.json").read_text())["config"]["isolation"]


def test_the_torch_server_imports_torch_without_cuda_or_threads():
    pytest.importorskip("torch")
    server = ForkServer(sys.executable, FAMILY_MODULES["torch"], dict(os.environ))
    try:
        status = server.query()
    finally:
        server.close()
    assert {"torch", "torch._dynamo"} <= set(status["preloaded"])
    assert status["cuda_initialized"] is False  # torch.cuda.is_initialized(), in the server
    assert status["python_threads"] == 1  # forking a threaded process is not safe
    # no pool beyond what importing the same modules starts (OpenBLAS's, say): torch's
    # intra-op pool starts at its first use, which would show here
    imports = "; ".join(f"import {name}" for name in status["preloaded"])
    assert status["os_threads"] == int(subprocess.run(
        [sys.executable, "-c", f"import os; {imports}; print(len(os.listdir('/proc/self/task')))"],
        capture_output=True, text=True, check=True).stdout)
    assert not psutil.pid_exists(status["pid"]) or \
        psutil.Process(status["pid"]).status() == psutil.STATUS_ZOMBIE


def test_the_tensorflow_server_imports_only_and_its_children_run(tmp_path):
    """TensorFlow imported as its backend imports it, nothing started by the server;
    a tf-cpu run forked from it measures."""
    pytest.importorskip("tensorflow")
    launcher = ProcessLauncher()
    outcome = run_one(_request(tmp_path, "tf-cpu", threads=1), launcher)
    assert outcome.status == "ok" and _isolation(outcome) == "fork"
    (server,) = launcher.fork_servers.servers.values()
    status = server.query()
    launcher.close()
    assert "gpubench.backends.tensorflow_backend:import_tensorflow" in status["preloaded"]
    assert status["python_threads"] == 1


def test_a_forked_worker_takes_its_own_thread_count(tmp_path):
    """--threads in a child of the server (which imported torch), and without it the
    count a fresh interpreter starts with."""
    pytest.importorskip("torch")
    fresh_default = int(subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
        capture_output=True, text=True, check=True).stdout)
    launcher = ProcessLauncher()
    threads = {}
    for asked in (1, None, 3):
        outcome = run_one(_request(tmp_path, "torch-cpu", threads=asked), launcher)
        assert outcome.status == "ok" and _isolation(outcome) == "fork"
        meta = json.loads((outcome.path / "run.json").read_text())
        threads[asked] = meta["environment"]["torch_threads"]
    assert threads == {1: 1, None: fresh_default, 3: 3}


def _wrapper(path: Path, body: str) -> str:
    """This Python behind a shell script that does `body` first."""
    path.write_text(f'#!/bin/sh\n{body}\nexec "{sys.executable}" "$@"\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_a_server_that_cannot_start_leaves_runs_to_fresh_interpreters(tmp_path,
                                                                      plugins_in_workers):
    starts = tmp_path / "starts.txt"
    python = _wrapper(tmp_path / "python", f'echo "$2" >> "{starts}"\ncase "$2" in '
                      '*fork_server*) echo "no fork server here" >&2; exit 1;; esac')
    launcher = ProcessLauncher(python=python)
    first = run_one(_request(tmp_path), launcher)
    second = run_one(_request(tmp_path), launcher)
    assert first.status == second.status == "ok"
    assert _isolation(first) == _isolation(second) == "fresh"  # run.json says what ran
    assert first.warnings == ["fork server unavailable (no fork server here): workers start "
                              "in fresh interpreters"]
    assert second.warnings == []  # said once
    # one try at the server; the preflight and the runs in fresh workers
    assert starts.read_text().splitlines().count("gpubench.launch.fork_server") == 1


def test_a_launchers_runs_share_one_fork_server(tmp_path, plugins_in_workers):
    """Every run forks from the one server of its family: nothing a launch adds to the
    worker's environment (its launch time) starts another."""
    starts = tmp_path / "starts.txt"
    launcher = ProcessLauncher(python=_wrapper(tmp_path / "python", f'echo "$2" >> "{starts}"'))
    try:
        outcomes = [run_one(_request(tmp_path), launcher) for _ in range(3)]
    finally:
        launcher.close()
    assert [o.status for o in outcomes] == ["ok"] * 3
    assert {_isolation(o) for o in outcomes} == {"fork"}
    assert starts.read_text().splitlines().count("gpubench.launch.fork_server") == 1


def test_a_platform_without_fork_runs_fresh(tmp_path, plugins_in_workers, monkeypatch):
    monkeypatch.setattr(process, "fork_supported", lambda: False)
    outcome = run_one(_request(tmp_path), ProcessLauncher())
    assert outcome.status == "ok" and _isolation(outcome) == "fresh"
    assert len(outcome.warnings) == 1 and "cannot fork" in outcome.warnings[0]


def _server_pids(launcher):
    return [server.proc.pid for server in launcher.fork_servers.servers.values()]


def test_a_server_killed_mid_run_fails_that_run_and_the_next_runs_fresh(tmp_path,
                                                                        plugins_in_workers):
    launcher = ProcessLauncher()
    req = _request(tmp_path, "test-hang", folder=tmp_path / "hang")
    started, results = threading.Event(), []
    thread = threading.Thread(target=lambda: results.append(
        launcher.launch(req, DEADLINE_S, on_start=lambda interrupt: started.set())))
    thread.start()
    assert started.wait(DEADLINE_S)
    (pid,) = _server_pids(launcher)
    os.kill(pid, signal.SIGKILL)
    thread.join(DEADLINE_S)
    assert results and results[0].outcome == "failed", results
    assert "killed by SIGKILL" in results[0].message  # its worker died with the server
    after = run_one(_request(tmp_path), launcher)
    assert after.status == "ok" and _isolation(after) == "fresh"
    assert after.warnings == ["fork server unavailable (the fork server died): workers start "
                              "in fresh interpreters"]
    assert _server_pids(launcher) == []  # not started again


def test_nothing_outlives_a_parent_killed_mid_run(tmp_path):
    parent = subprocess.Popen(
        [sys.executable, "-m", "gpubench", "run", "-w", "linreg", "-b", "test-ok", "--trials",
         "1000", "--warmup-s", "0.05", "--min-trial-s", "0.1", "--telemetry", "none",
         "--out", str(tmp_path)], cwd=REPO, env={**os.environ, **PLUGIN_ENV},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_trials(tmp_path, at_least=1, timeout_s=DEADLINE_S)
        (server,) = [p for p in psutil.Process(parent.pid).children()
                     if "fork_server" in " ".join(p.cmdline())]
        (worker,) = server.children()
        parent.kill()
        parent.wait()
        until = time.monotonic() + 60
        while any(_running(p) for p in (server, worker)) and time.monotonic() < until:
            time.sleep(0.05)
        assert not _running(server) and not _running(worker)
    finally:
        for p in psutil.Process(os.getpid()).children(recursive=True):
            if p.pid == parent.pid:
                p.kill()


def _running(p) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_the_family_follows_the_backend():
    assert forked.family_of("torch-cuda") == forked.family_of("auto") == "torch"
    assert forked.family_of("tf-cpu-xla") == "tensorflow"
    assert forked.family_of("test-ok") == "none"


def test_a_suite_says_the_fallback_and_ends_its_fork_servers(tmp_path, plugins_in_workers):
    """One warning for the suite's runs that went fresh; and a suite run in this
    process (the API) leaves no server behind when it returns."""
    from gpubench.suite import executor, plan as suite_plan

    config = tmp_path / "suite.yaml"
    config.write_text("defaults: {trials: 2, warmup_s: 0.02, min_trial_s: 0.02, "
                      "telemetry: none}\nruns:\n  - {workloads: linreg, backends: test-ok, "
                      "batch_sizes: [1, 2]}\n")
    broken = _wrapper(tmp_path / "python", 'case "$2" in *fork_server*) exit 1;; esac')
    outcomes = {}
    for name, launcher in (("fork", ProcessLauncher()),
                           ("fallback", ProcessLauncher(python=broken))):
        plan = suite_plan.plan_suite(config, tmp_path / name)
        suite = executor.open_suite_folder(plan, tmp_path / name, {})
        pids = []
        launcher_run = launcher.launch_process

        def launch_process(*args, **kwargs):  # the servers running while a run runs
            pids.extend(_server_pids(launcher))
            return launcher_run(*args, **kwargs)

        launcher.launch_process = launch_process
        outcomes[name] = executor.execute_suite(plan, suite, [0], launcher=launcher)
        assert outcomes[name].statuses == {"ok": 2}
        assert bool(pids) == (name == "fork")  # the second run found the first's server
        assert _server_pids(launcher) == [] and not any(_running(psutil.Process(pid))
                                                        for pid in pids
                                                        if psutil.pid_exists(pid))
    assert outcomes["fork"].warnings == []
    assert outcomes["fallback"].warnings == [
        "fork server unavailable (it did not start): workers start in fresh interpreters"]
