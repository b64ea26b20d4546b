"""The real `gpubench` command: output, exit codes, and every bad input as one line on
stderr with exit code 2 (never a traceback). The end-to-end run, Ctrl-C, a usage error
and the import checks run in a subprocess; the other cases call the same main() in this
process (run_cli_here), which saves a Python start-up per case."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import (FAST_RUN, PLUGIN_ENV, REPO, gpu_missing_reason, interrupt_after_trials, lines_with, run_cli,
                      run_cli_here)
from gpubench.results.reader import read_run


def _one_error_line(proc, *fragments):
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("gpubench: error: ")
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_run_prints_folder_and_table(tmp_path):
    proc = run_cli("run", "--workload", "mnist", "--backend", "auto", "--out", str(tmp_path),
                   *FAST_RUN, "--telemetry", "none")
    assert proc.returncode == 0, proc.stderr
    folder = Path(proc.stdout.splitlines()[0])
    assert folder.parent == tmp_path and (folder / "trials.csv").exists()
    expected = "torch-cpu" if gpu_missing_reason() else "torch-cuda"
    assert "samples/s" in proc.stdout and expected in proc.stdout
    assert read_run(folder).trials["status"].eq("ok").all()


def test_run_json_output(linreg_infer_json_run):
    _, proc = linreg_infer_json_run  # the run (conftest), shared with a `show` test
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    assert payload["status"] == "ok" and len(payload["summary"]) == 1
    row = payload["summary"][0]
    assert row["params"] == "features=16" and row["latency_p50_ms_median"] > 0


def test_quiet_prints_only_the_folder(tmp_path):
    proc = run_cli_here("run", "-w", "linreg", "--out", str(tmp_path), "-q", *FAST_RUN)
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 1


def test_target_rel_ci_records_stop_reason(tmp_path):
    proc = run_cli_here("run", "-w", "linreg", "--out", str(tmp_path), "-q", "--trials", "2",
                        "--warmup-s", "0.05", "--min-trial-s", "0.02", "--target-rel-ci", "50%",
                        "--max-time-s", "5")
    assert proc.returncode == 0, proc.stderr
    meta = read_run(Path(proc.stdout.strip())).meta
    assert meta["stop_reason"] in ("target_ci_met", "time_cap", "trial_cap")
    assert meta["protocol"]["target_rel_ci"] == 0.5


@pytest.mark.parametrize("args, fragments", [
    (["--workload", "nope"], ["unknown workload 'nope'", "lenet5, linreg, mnist, resnet50"]),
    (["--workload", "mnist", "--backend", "jax"], ["unknown backend 'jax'", "torch-cpu"]),
    (["--workload", "mnist", "--batch-size", "0"], ["--batch-size", "positive integer"]),
    (["--workload", "mnist", "--batch-size", "-3"], ["--batch-size"]),
    (["--workload", "mnist", "--batch-size", "abc"], ["--batch-size", "'abc'"]),
    (["--workload", "mnist", "--trials", "0"], ["--trials"]),
    (["--workload", "mnist", "--warmup-s", "0"], ["--warmup-s", "positive number"]),
    (["--workload", "mnist", "--min-trial-s", "-1"], ["--min-trial-s"]),
    (["--workload", "mnist", "--min-trial-s", "nan"], ["--min-trial-s"]),
    (["--workload", "mnist", "--target-rel-ci", "2"], ["--target-rel-ci"]),
    (["--workload", "mnist", "--param", "depth=3"], ["unknown parameter 'depth'", "valid: hidden"]),
    (["--workload", "mnist", "--param", "hidden=wide"], ["parameter hidden must be int"]),
    (["--workload", "mnist", "--param", "hidden"], ["KEY=VALUE"]),
    (["--workload", "resnet50", "--param", "image_size=8"], ["image_size"]),
    (["--workload", "mnist", "--precision", "tf32"], ["tf32", "not supported on torch-cpu"]),
    (["--workload", "mnist", "--mode", "fit"], ["--mode", "invalid choice"]),
    (["--workload", "mnist", "--device", "-1"], ["--device"]),
    ([], ["--workload"]),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, fragments):
    proc = run_cli_here("run", *args, "--out", str(tmp_path), *FAST_RUN)
    _one_error_line(proc, *fragments)
    assert not any(tmp_path.iterdir())


def test_unavailable_backend_says_why(tmp_path):
    if not gpu_missing_reason():
        pytest.skip("torch-cuda is available on this machine")
    proc = run_cli_here("run", "-w", "mnist", "-b", "torch-cuda", "--out", str(tmp_path), *FAST_RUN)
    _one_error_line(proc, "torch-cuda is not available", gpu_missing_reason())


def test_unwritable_out_folder(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = run_cli_here("run", "-w", "linreg", "--out", str(blocker / "results"), *FAST_RUN)
    _one_error_line(proc, "cannot write results to", str(blocker / "results"))


def test_unknown_subcommand():
    _one_error_line(run_cli("frobnicate"), "invalid choice")


def test_ctrl_c_keeps_finished_trials(tmp_path):
    folder, code, stderr = interrupt_after_trials(
        [sys.executable, "-m", "gpubench", "run", "-w", "mnist", "--out", str(tmp_path),
         "--trials", "1000", "--warmup-s", "0.05", "--min-trial-s", "0.1", "--telemetry", "none"],
        tmp_path, 2, {**os.environ, "PYTHONUNBUFFERED": "1"})
    assert code == 130, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr
    data = read_run(folder)
    assert len(data.trials) >= 2 and data.trials["status"].eq("ok").all()
    assert data.meta["stop_reason"] == "interrupted"
    assert data.summary["n_ok"].iloc[0] == len(data.trials)


def test_list_is_fast_and_imports_no_framework():
    code = ("import sys; from gpubench.cli import main; rc = main(['list', '--json']); "
            "bad = [m for m in ('torch', 'tensorflow', 'pandas', 'pynvml', 'onnxruntime') if m in sys.modules]; "
            "assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    names = {w["name"]: w for w in data["workloads"]}
    assert names["mnist"]["param_count"] == 101_770
    assert names["resnet50"]["params"]["image_size"]["default"] == 224
    backends = {b["name"]: b for b in data["backends"]}
    assert backends["torch-cpu"]["available"] is True
    if gpu_missing_reason():
        assert backends["torch-cuda"]["available"] is False and backends["torch-cuda"]["reason"]
        assert backends["auto"]["reason"] == "runs torch-cpu"
    else:
        assert backends["auto"]["reason"] == "runs torch-cuda"


def test_import_gpubench_is_light():
    code = ("import sys, gpubench; heavy = [m for m in ('torch', 'pandas', 'numpy', 'rich') "
            "if m in sys.modules]; assert not heavy, heavy")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_list_table_and_env_json():
    listing = run_cli_here("list")
    assert listing.returncode == 0 and "resnet50" in listing.stdout
    assert not gpu_missing_reason() or gpu_missing_reason() in listing.stdout
    env = run_cli_here("env", "--json")
    assert env.returncode == 0, env.stderr
    data = json.loads(env.stdout)
    assert data["machine"]["python_version"].count(".") == 2
    assert data["frameworks"]["torch"]["framework_version"].startswith("2.")


def test_a_steps_warning_reaches_stderr_and_run_json(tmp_path):
    # Through the isolated worker, as every run goes: the step's own warning (ONNX
    # Runtime nodes left on the CPU, say) is printed once and kept in run.json. (The
    # run measured: a contention warning may come too, so only the step's lines count.)
    done = run_cli_here("run", "-w", "linreg", "-b", "test-warn", *FAST_RUN, "--telemetry", "none",
                        "--out", str(tmp_path), "--quiet", env_extra=PLUGIN_ENV)
    assert done.returncode == 0, done.stderr
    assert lines_with(done.stderr, "test-warn", "node(s)") == [
        "gpubench: warning: test-warn: 2 node(s) of this graph run on the CPU"]
    meta = json.loads((Path(done.stdout.strip()) / "run.json").read_text())
    assert meta["warnings"] == ["test-warn: 2 node(s) of this graph run on the CPU"]


def test_dry_run_checks_the_command_line_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    done = run_cli_here("run", "-w", "mnist", "-b", "torch-cpu", "--mode", "infer", "--precision",
                        "bf16", "--out", str(out), "--dry-run")
    assert done.returncode == 0, done.stderr
    said = dict(item.split("=", 1) for item in done.stdout.strip().removeprefix("ok: ").split())
    assert (said["workload"], said["backend"], said["mode"], said["precision"]) == (
        "mnist", "torch-cpu", "infer", "bf16")
    assert said["batch_size"] == "64" and said["exec"] == "eager"  # defaults resolved
    assert not out.exists()  # nothing measured, nothing written
    # a refusal is the run's own: one line, exit 2 (here single-stream's batch of 1)
    refused = run_cli_here("run", "-w", "mnist", "-b", "torch-cpu", "--scenario", "single-stream",
                           "--batch-size", "64", "--out", str(out), "--dry-run")
    assert refused.returncode == 2 and not out.exists()
    assert refused.stderr.splitlines() == [
        "gpubench: error: single-stream issues one sample a query (batch 1); queries of several "
        "samples are multi-stream's (--samples-per-query)"]
