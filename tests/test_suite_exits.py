"""`gpubench suite` exit codes a nightly job relies on: a suite where nothing could run
here (every run unsupported) fails with the reason, and --devices naming GPUs the machine
does not have is refused before anything runs (checked against the NVML test double)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PLUGIN_ENV, REPO, TESTS, lines_with, run_cli_here  # in this process (the double needs its own)
from gpubench.results.reader import read_trials
from nvml_double import double_env, fake_nvml_dir  # noqa: F401 (fixture)
from test_suite import FAST  # the suites' fast defaults


def _config(tmp_path, backends):
    path = tmp_path / "suite.yaml"
    path.write_text(FAST + f"runs:\n  - {{workloads: linreg, backends: [{backends}], batch_sizes: [1, 2]}}\n")
    return path


def _one_error_line(proc, code, *fragments):
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpubench: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def test_a_suite_where_every_run_is_unsupported_fails_with_the_reason(tmp_path):
    proc = run_cli_here("suite", str(_config(tmp_path, "test-unsupported")), "--out", str(tmp_path / "out"),
                        env_extra=PLUGIN_ENV)
    _one_error_line(proc, 4, "every run of the suite was unsupported here",
                    "precision fp32 is not supported on test-unsupported: it supports nothing")
    folder = Path(proc.stdout.splitlines()[0])  # the rows are still written
    trials = read_trials(folder / "trials.csv")
    assert list(trials["status"]) == ["unsupported", "unsupported"]


def test_ok_beside_unsupported_still_exits_0(tmp_path):
    proc = run_cli_here("suite", str(_config(tmp_path, "test-ok, test-unsupported")), "--out",
                        str(tmp_path / "out"), "-q", env_extra=PLUGIN_ENV)
    assert proc.returncode == 0, proc.stderr
    # no error, and no word of the unsupported run's refusal as a failure (a contention
    # warning may come from the run that measured: not this test's subject)
    assert lines_with(proc.stderr, "error", "unsupported", "Traceback") == []


def _suite_with_double(lib_dir, tmp_path, devices, **fake):
    """`gpubench suite --devices DEVICES` with the NVML double as libnvidia-ml.so.1."""
    env = double_env(lib_dir, **fake)
    env["GPUBENCH_PLUGINS"] = PLUGIN_ENV["GPUBENCH_PLUGINS"]
    env["PYTHONPATH"] = os.pathsep.join((str(TESTS), env["PYTHONPATH"]))
    return subprocess.run([sys.executable, "-m", "gpubench", "suite", str(_config(tmp_path, "test-ok")),
                           "--out", str(tmp_path / "out"), "-q", "--devices", devices],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_devices_beyond_the_gpus_here_are_refused(fake_nvml_dir, tmp_path):
    proc = _suite_with_double(fake_nvml_dir, tmp_path, "0,1", GPUS=1)
    _one_error_line(proc, 2, "--devices 0,1", "no GPU 1 here", "1 GPU")
    assert not (tmp_path / "out").exists()  # refused before any folder or run
    proc = _suite_with_double(fake_nvml_dir, tmp_path, "0", GPUS=1)
    assert proc.returncode == 0, proc.stderr
    proc = _suite_with_double(fake_nvml_dir, tmp_path, "1,0", GPUS=2)
    assert proc.returncode == 0, proc.stderr


def test_devices_count_what_cuda_visible_devices_leaves(fake_nvml_dir, tmp_path):
    proc = _suite_with_double(fake_nvml_dir, tmp_path, "0,1", GPUS=2, CUDA_VISIBLE_DEVICES="1")
    _one_error_line(proc, 2, "no GPU 1 here", "CUDA_VISIBLE_DEVICES='1'")


@pytest.mark.parametrize("fail_code, reason", [(12, "no NVIDIA driver"), (1, "NVML could not be initialised")])
def test_devices_without_a_driver_only_the_default(fake_nvml_dir, tmp_path, fail_code, reason):
    proc = _suite_with_double(fake_nvml_dir, tmp_path, "0,1,2,3", INIT_FAIL=fail_code)
    _one_error_line(proc, 2, "--devices 0,1,2,3", reason, "only device 0")
    # CPU-only suites run on device 0, the default: naming it is fine.
    proc = _suite_with_double(fake_nvml_dir, tmp_path, "0", INIT_FAIL=fail_code)
    assert proc.returncode == 0, proc.stderr
