"""The pre-run GPU check (telemetry/gpu_state.py) through the real pynvml against the
NVML test double: other processes (this one left out), persistence mode, application
clocks, unsupported queries; the warning `gpubench run` prints, --require-idle-gpu (and
the suite key) refusing through the isolated worker, and CUDA_DEVICE_ORDER."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import lines_with
from gpubench.results.reader import read_trials

from nvml_double import (  # noqa: F401  (fixture)
    FAST, call_log, double_env, fake_nvml_dir, run_cli, run_python,
)

LINREG = ("--workload", "linreg", "--backend", "torch-cpu", "--telemetry", "nvml")
MIB = 2**20

STATE = """
    import json, os
    from gpubench.telemetry.nvml import Nvml
    from gpubench.telemetry.gpu_state import read_gpu_state
    with Nvml() as nv:
        state = read_gpu_state(nv.device({index}))
    print(json.dumps({{"pid": os.getpid(), **state.to_json()}}))
"""


def state(lib, index=0, **fake):
    return run_python(lib, textwrap.dedent(STATE.format(index=index)), **fake)


@pytest.fixture
def other_process():
    """A real process for NVML to list: psutil can name it (for as long as the test
    takes, however slow the machine: the fixture ends it)."""
    proc = subprocess.Popen(["sleep", "3600"])
    yield proc.pid
    proc.kill()
    proc.wait()


def test_busy_gpu_lists_the_other_processes_but_not_this_one(fake_nvml_dir, other_process):
    out = state(fake_nvml_dir, index=1, GPUS=2,
                PROCESSES_1=f"self:{64 * MIB},{other_process}:{512 * MIB},999999:-",
                GRAPHICS_PROCESSES_1=f"{other_process}:{512 * MIB}")
    assert out["gpu"] == "GPU 1"
    assert out["other_processes"] == [
        {"pid": other_process, "name": "sleep", "used_memory_bytes": 512 * MIB,
         "kinds": ["compute", "graphics"]},
        {"pid": 999999, "name": None, "used_memory_bytes": None, "kinds": ["compute"]},
    ]
    assert out["warnings"] == [
        f"GPU 1 is busy: 2 other processes (pid {other_process} sleep using 512 MiB, "
        f"pid 999999); they share it with the run and skew its results"]


def test_idle_gpu_in_persistence_mode_at_default_clocks_has_no_warning(fake_nvml_dir):
    out = state(fake_nvml_dir, PROCESSES="self:1048576")  # only this process
    assert out["other_processes"] == []
    assert out["persistence_mode"] is True
    clocks = out["clocks"]
    assert clocks["graphics_app_clock_mhz"] == clocks["graphics_default_app_clock_mhz"] == 1755
    assert clocks["mem_app_clock_mhz"] == clocks["mem_default_app_clock_mhz"] == 2619
    assert clocks["app_clocks_at_default"] is True
    assert clocks["locked_clocks"] is None and "-lgc" in out["unavailable"]["locked clocks"]
    assert out["warnings"] == []


def test_persistence_off_and_moved_application_clocks_warn(fake_nvml_dir):
    out = state(fake_nvml_dir, PERSISTENCE=0, APP_CLOCK_MHZ=1200)
    assert out["persistence_mode"] is False
    assert out["clocks"]["app_clocks_at_default"] is False
    persistence, clocks = out["warnings"]
    assert persistence.startswith("persistence mode is off on GPU 0: ")
    assert clocks.startswith("application clocks of GPU 0 are not at their defaults "
                             "(graphics 1200 MHz, default 1755): ")
    assert "memory" not in clocks  # only the domain that moved


def test_unsupported_queries_are_none_not_errors(fake_nvml_dir):
    out = state(fake_nvml_dir, UNSUPPORTED="processes,persistence,app_clocks")
    assert out["other_processes"] is None and out["persistence_mode"] is None
    assert out["clocks"]["graphics_app_clock_mhz"] is None
    assert out["clocks"]["app_clocks_at_default"] is None
    for key in ("compute processes", "graphics processes", "persistence mode",
                "graphics application clock", "mem default application clock"):
        assert "Not Supported" in out["unavailable"][key], key
    assert out["warnings"] == []


def test_graphics_list_unsupported_still_lists_compute_processes(fake_nvml_dir):
    out = state(fake_nvml_dir, PROCESSES="4321:1048576", UNSUPPORTED="graphics_processes")
    assert [p["pid"] for p in out["other_processes"]] == [4321]
    assert "Not Supported" in out["unavailable"]["graphics processes"]


def test_a_driver_without_the_v3_lists_is_asked_for_v2(fake_nvml_dir, tmp_path):
    log = tmp_path / "calls.log"
    out = state(fake_nvml_dir, PROCESSES="4321:1048576", GRAPHICS_PROCESSES="4322:1",
                UNSUPPORTED="processes_v3", CALL_LOG=log)
    assert [p["pid"] for p in out["other_processes"]] == [4321, 4322]
    called = {fn for fn, _ in call_log(log)}
    assert {"nvmlDeviceGetComputeRunningProcesses_v2",
            "nvmlDeviceGetGraphicsRunningProcesses_v2"} <= called


REQUIRE_IDLE = """
    import json
    from gpubench.errors import UserError
    from gpubench.telemetry import make_sampler, pre_run_gpu_state
    out = {}
    for kind, device in (("auto", "cuda"), ("cpu", "cuda")):
        sampler = make_sampler(kind, device, 0, 10)
        try:
            state = pre_run_gpu_state(sampler, require_idle=True)
            out[kind] = None if state is None else state.to_json()
        except UserError as exc:
            out[kind] = str(exc)
        sampler.stop()
    print(json.dumps(out))
"""


def test_require_idle_refuses_a_busy_gpu_or_one_it_cannot_see(fake_nvml_dir):
    busy = run_python(fake_nvml_dir, textwrap.dedent(REQUIRE_IDLE), PROCESSES="self:1,777777:2")
    assert busy["auto"] == ("--require-idle-gpu: GPU 0 is in use by 1 other process: "
                            "pid 777777 using 0 MiB")
    assert busy["cpu"].startswith("--require-idle-gpu: cannot tell whether the GPU is idle: "
                                  "this run's telemetry (cpu) does not watch a GPU")
    idle = run_python(fake_nvml_dir, textwrap.dedent(REQUIRE_IDLE), PROCESSES="self:1")
    assert idle["auto"]["other_processes"] == []
    no_list = run_python(fake_nvml_dir, textwrap.dedent(REQUIRE_IDLE), UNSUPPORTED="processes")
    assert no_list["auto"].startswith("--require-idle-gpu: cannot tell whether GPU 0 is idle: "
                                      "compute processes: Not Supported")
    no_nvml = run_python(fake_nvml_dir, textwrap.dedent(REQUIRE_IDLE), INIT_FAIL=1)
    assert no_nvml["auto"] == ("--require-idle-gpu: cannot tell whether the GPU is idle: no "
                               "nvml telemetry: NVML could not be initialised: Driver Not "
                               "Loaded (NVML error 9)")


# --- through `gpubench run` ----------------------------------------------------------


def test_run_warns_of_other_processes_and_records_the_state(fake_nvml_dir, tmp_path,
                                                            other_process, monkeypatch):
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    # "self" is the isolated worker that runs the step: it is not "another" process.
    result = run_cli(fake_nvml_dir, tmp_path, [*LINREG, *FAST],
                     PROCESSES=f"self:{100 * MIB},{other_process}:{256 * MIB}", PERSISTENCE=0)
    assert result.proc.returncode == 0, result.proc.stderr
    stderr = result.proc.stderr
    # the process stays on the GPU through every trial: the trials are contended too
    # (NVML lists it at every trial's edges, whatever the machine's speed)
    assert lines_with(stderr, "ran under contention"), stderr
    assert lines_with(stderr, "other process on the GPU"), stderr
    # the pre-run state's warnings, in this order (other warnings may come between)
    warnings = lines_with(stderr, "is busy", "persistence mode", "application clocks")
    assert len(warnings) == 2, stderr
    assert warnings[0] == (f"gpubench: warning: GPU 0 is busy: 1 other process (pid "
                           f"{other_process} sleep using 256 MiB); they share it with the run "
                           f"and skew its results")
    assert warnings[1].startswith("gpubench: warning: persistence mode is off on GPU 0")
    meta = result.run_json
    recorded = meta["telemetry"]["gpu_state"]
    assert [p["pid"] for p in recorded["other_processes"]] == [other_process]
    assert recorded["persistence_mode"] is False
    assert meta["environment"]["cuda_device_order"] == "PCI_BUS_ID"  # forced in the worker
    assert meta["config"]["require_idle_gpu"] is False


def test_require_idle_gpu_refuses_through_the_worker(fake_nvml_dir, tmp_path):
    out = tmp_path / "out"
    result = run_cli(fake_nvml_dir, out, [*LINREG, *FAST, "--require-idle-gpu"],
                     PROCESSES="self:1048576,4321:2097152")
    assert result.proc.returncode == 2, result.proc.stderr
    assert result.proc.stderr.splitlines() == [
        "gpubench: error: --require-idle-gpu: GPU 0 is in use by 1 other process: "
        "pid 4321 using 2 MiB"]
    assert result.proc.stdout == ""
    assert not out.exists() or not any(out.iterdir())  # no run folder is left behind


def test_require_idle_gpu_without_nvml_is_refused(fake_nvml_dir, tmp_path):
    out = tmp_path / "out"
    result = run_cli(fake_nvml_dir, out, ["--workload", "linreg", "--backend", "fake-cuda",
                                          *FAST, "--require-idle-gpu"],
                     fake_cuda=True, INIT_FAIL=1)
    assert result.proc.returncode == 2, result.proc.stderr
    assert result.proc.stderr.splitlines() == [
        "gpubench: error: --require-idle-gpu: cannot tell whether the GPU is idle: no nvml "
        "telemetry: NVML could not be initialised: Driver Not Loaded (NVML error 9)"]
    assert not out.exists() or not any(out.iterdir())


def test_require_idle_gpu_runs_on_an_idle_gpu_and_a_users_device_order_stands(
        fake_nvml_dir, tmp_path):
    result = run_cli(fake_nvml_dir, tmp_path, [*LINREG, *FAST, "--require-idle-gpu"],
                     PROCESSES="self:1048576", CUDA_DEVICE_ORDER="FASTEST_FIRST")
    assert result.proc.returncode == 0, result.proc.stderr
    # an idle GPU: no word of other processes, its state or the idle check (a contention
    # warning, which any run that measured may give, is not this test's subject)
    assert lines_with(result.proc.stderr, "GPU", "idle", "persistence mode",
                      "application clocks", "telemetry", "error", "Traceback") == []
    meta = result.run_json
    assert meta["telemetry"]["gpu_state"]["other_processes"] == []
    assert meta["environment"]["cuda_device_order"] == "FASTEST_FIRST"


def test_suite_key_require_idle_gpu_refuses_the_run(fake_nvml_dir, tmp_path):
    config = tmp_path / "suite.yaml"
    config.write_text(textwrap.dedent("""\
        defaults: {trials: 2, warmup_s: 0.05, min_trial_s: 0.05, telemetry: nvml,
                   require_idle_gpu: true}
        runs:
          - {workloads: linreg, backends: torch-cpu}
        """))
    proc = subprocess.run([sys.executable, "-m", "gpubench", "suite", str(config), "--out",
                           str(tmp_path / "out"), "-q"],
                          env=double_env(fake_nvml_dir, PROCESSES="self:1,4321:1048576"),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 4, proc.stderr
    trials = read_trials(Path(proc.stdout.splitlines()[0]) / "trials.csv")
    assert list(trials["status"]) == ["failed"]
    assert "GPU 0 is in use by 1 other process: pid 4321" in trials["error"].iloc[0]


def test_suite_key_require_idle_gpu_must_be_a_boolean(tmp_path):
    from gpubench.errors import UserError
    from gpubench.suite.config import parse_suite

    runs = parse_suite({"defaults": {"require_idle_gpu": True},
                        "runs": [{"workloads": "linreg", "backends": "torch-cpu"},
                                 {"workloads": "mnist", "backends": "torch-cpu",
                                  "require_idle_gpu": False}]}, tmp_path / "s.yaml")
    assert [r.setting("require_idle_gpu") for r in runs] == [True, False]
    with pytest.raises(UserError, match=r"runs\[0\].require_idle_gpu: expected true or false, "
                                        r"got 'yes'"):
        parse_suite({"runs": [{"workloads": "linreg", "backends": "torch-cpu",
                               "require_idle_gpu": "yes"}]}, tmp_path / "s.yaml")
