#!/usr/bin/env python3
"""gpu-check: does gpubench tell the truth on this NVIDIA GPU? One prepared command.

    make gpu-check                                      # or, where there is no make:
    PYTHONPATH=src python3 benchmarks/gpu_check.py [--out DIR] [--deadline-s S]
    PYTHONPATH=src python3 benchmarks/gpu_check.py --plan    # anywhere: the plan, checked

Runs on the machine's own python3 (torch with CUDA, numpy, pandas, scipy, pyyaml, rich,
psutil, nvidia-ml-py, pytest), installs nothing and needs no network. It drives gpubench
through its public CLI only (`python3 -m gpubench ...` subprocesses) and reads the result
CSVs with pandas; plain torch is used only for the reference GEMM and copy figures.

What runs, in what order, with its expected seconds and timeout, is gpu_check_plan.py's
plan: a core tier (env, GEMM and copy peaks, torch-cuda train/infer of mnist, resnet50
and a small gpt at fp32/bf16 with NVML, the energy counter against integrated power, a
run of ranks at --nproc 1 on NCCL, single-stream serving, compile and CUDA graphs on the
small gpt) expected in <= 180 s on an H100, then an extended tier (pytest -m gpu, a
max-QPS search, a suite and compare, the all-reduce sweep, every other workload) within
a 320 s deadline. A step never starts with less time left than its timeout; one that
raises or times out is a FAIL line and the next step runs. `--plan` prints the plan and
passes every gpubench command line in it through gpubench's own preflight (torch-cuda
taken as available): exit 0 when every one is valid and the plan fits, 1 otherwise.

Writes at most 8 files to $OUT (or ./gpu-check-out): summary.md (every check as
PASS/FAIL/SKIP, with the figures, and every step's seconds beside its estimate; rewritten
atomically after every step, so a kill keeps what was done), log.txt (every command and
its output), trials.csv and samples.csv (all runs' rows), suite.yaml, env.json and
results.json. The result folders themselves live in a temporary folder (removed at the
end unless --keep-results).

Exit codes: 0 every step ran and every check passed, 1 a check failed, 2 no NVIDIA GPU
here (one line on stderr, nothing written), 3 incomplete (no check failed, but a step was
skipped for time: summary.md names it), 130 interrupted (summary.md still written).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "src"
if str(SRC) not in sys.path:  # gpubench itself, without an install (make gpu-check sets it too)
    sys.path.insert(0, str(SRC))

from gpubench.atomic_io import write_text_atomic as write_atomic  # noqa: E402
from gpubench.peaks import peak_tflops  # noqa: E402 (no framework: the datasheet table)

# The script's own modules beside it (benchmarks/ is on sys.path when it runs as a script).
from gpu_check_kernels import measure_kernels  # noqa: E402
from gpu_check_rows import (  # noqa: E402
    FAIL, PASS, SKIP, Check, _fmt, _num, check_collective_run, check_energy_integrated,
    check_exec_run, check_kernel, check_pytest, check_ranked_run, check_serving_run,
    check_run, energy_vs_integrated, gpm_expected_for, gpu_state_of, gpu_state_text,
    parse_junit, parse_pytest_tail, run_table_row,
)
from gpu_check_plan import (  # noqa: E402
    CORE_WORKLOADS, DEADLINE_S, FINAL_RESERVE_S, SUITE_YAML, PlannedStep, build_plan, check_plan,
)
from gpu_check_summary import Report, Step, render_summary  # noqa: E402

DEFAULT_OUT = "gpu-check-out"
OUT_FILES = ("summary.md", "log.txt", "trials.csv", "samples.csv", "suite.yaml", "env.json",
             "results.json")  # never more than 8: only that many come back from a device run

KILL_GRACE_S = 10.0  # SIGINT first (gpubench then stops its worker), SIGKILL after this
COMPARE_TIMEOUT_S = 30.0
WORKLOADS_FALLBACK = (*CORE_WORKLOADS, "linreg", "lenet5")  # when `gpubench list` fails
GPU_TEST_ROOT = "tests"


class GpuCheckError(Exception):
    """A step's own failure, reported as one FAIL line."""


# ==========================================================================================
# Is there a GPU? (stdlib only: nothing heavy is imported before this says yes)
# ==========================================================================================
def gpu_presence(library: str = "libnvidia-ml.so.1") -> Tuple[bool, str]:
    """(True, what) when NVML loads, initialises and counts at least one GPU, else
    (False, why). ctypes only: no torch import, no pynvml needed."""
    import ctypes

    try:
        nvml = ctypes.CDLL(library)
    except OSError:
        return False, f"NVML ({library}) could not be loaded: no NVIDIA driver"
    init = getattr(nvml, "nvmlInit_v2", None) or getattr(nvml, "nvmlInit", None)
    if init is None:
        return False, f"{library} has no nvmlInit"
    code = init()
    if code != 0:
        return False, f"NVML could not be initialised (NVML error {code})"
    try:
        count = ctypes.c_uint(0)
        get_count = getattr(nvml, "nvmlDeviceGetCount_v2", None) or nvml.nvmlDeviceGetCount
        code = get_count(ctypes.byref(count))
    finally:
        nvml.nvmlShutdown()
    if code != 0:
        return False, f"NVML could not count GPUs (NVML error {code})"
    if count.value == 0:
        return False, "NVML sees no GPU"
    return True, f"NVML sees {count.value} GPU(s)"


# ==========================================================================================
# Running commands and steps
# ==========================================================================================
class Budget:
    """The global deadline. `clock` is injectable for tests."""

    def __init__(self, total_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.total_s, self.clock = total_s, clock
        self.t0 = clock()

    def elapsed(self) -> float:
        return self.clock() - self.t0

    def remaining(self) -> float:
        return self.total_s - FINAL_RESERVE_S - self.elapsed()

    def allows(self, least_s: float) -> bool:
        return self.remaining() >= least_s


@dataclass
class CommandResult:
    label: str
    argv: List[str]
    rc: Optional[int]
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool


def _stop(proc: subprocess.Popen) -> None:
    """SIGINT to the command's process group (gpubench then stops its worker and keeps
    what finished), SIGKILL after KILL_GRACE_S."""
    for sig, wait_s in ((signal.SIGINT, KILL_GRACE_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


class Shell:
    """Runs commands (each in its own process group, output to files: no pipe can fill
    and block) and appends every command with its output to the log."""

    LOG_TAIL = 30_000

    def __init__(self, log: Optional[Path], env: Dict[str, str], cwd: Path, scratch: Path) -> None:
        self.log, self.env, self.cwd, self.scratch = log, env, cwd, scratch
        self._n = 0

    def run(self, label: str, argv: Sequence[str], timeout_s: float) -> CommandResult:
        return self.run_many([(label, argv)], timeout_s)[0]

    def run_many(self, commands: Sequence[Tuple[str, Sequence[str]]], timeout_s: float) -> List[CommandResult]:
        """Starts every command, waits for all until `timeout_s`, stops the rest."""
        started = []
        for label, argv in commands:
            self._n += 1
            out = self.scratch / f"cmd{self._n}.out"
            err = self.scratch / f"cmd{self._n}.err"
            with open(out, "wb") as fo, open(err, "wb") as fe:
                proc = subprocess.Popen(list(argv), stdout=fo, stderr=fe, stdin=subprocess.DEVNULL,
                                        env=self.env, cwd=self.cwd, start_new_session=True)
            started.append((label, list(argv), proc, out, err, time.monotonic()))
        deadline = time.monotonic() + timeout_s
        results = []
        for label, argv, proc, out, err, t0 in started:
            timed_out = False
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                timed_out = True
                _stop(proc)
            except KeyboardInterrupt:  # their own sessions: they did not see the signal
                for other in started:
                    if other[2].poll() is None:
                        _stop(other[2])
                raise
            result = CommandResult(label, argv, None if timed_out else proc.returncode,
                                   out.read_text(errors="replace"), err.read_text(errors="replace"),
                                   time.monotonic() - t0, timed_out)
            results.append(result)
            self._log(result)
        return results

    def _log(self, r: CommandResult) -> None:
        if self.log is None:
            return
        status = "TIMED OUT" if r.timed_out else f"rc={r.rc}"
        text = [f"\n=== {r.label}", "$ " + " ".join(_quote(a) for a in r.argv),
                f"[{status}, {r.seconds:.1f} s]"]
        for name, body in (("stdout", r.stdout), ("stderr", r.stderr)):
            if body.strip():
                cut = body[-self.LOG_TAIL:]
                text.append(f"--- {name}{' (tail)' if len(body) > len(cut) else ''} ---")
                text.append(cut.rstrip())
        with open(self.log, "a") as f:
            f.write("\n".join(text) + "\n")

    def note(self, text: str) -> None:
        if self.log is not None:
            with open(self.log, "a") as f:
                f.write(text.rstrip() + "\n")


def _quote(arg: str) -> str:
    return arg if re.fullmatch(r"[\w./=:,+@%-]+", arg) else "'" + arg.replace("'", "'\\''") + "'"


class Checker:
    """One gpu-check session: the report, the budget, the shell, the collected rows."""

    def __init__(self, out: Path, budget: Budget, shell: Shell, work: Path,
                 python: str = sys.executable) -> None:
        self.out, self.budget, self.shell, self.work, self.python = out, budget, shell, work, python
        self.report = Report(started_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                             host=socket.gethostname(), deadline_s=budget.total_s)
        self.trials: List[Any] = []  # pandas frames, with gpu_check columns
        self.samples: List[Any] = []
        self.env_json: Optional[Dict[str, Any]] = None
        self.workloads: List[str] = list(WORKLOADS_FALLBACK)
        self.capability: Optional[List[int]] = None
        self.torch_cuda: Tuple[bool, str] = (True, "")  # (available, why not), from gpubench list
        self.extra: Dict[str, Any] = {}
        self.step_end: Optional[float] = None  # the running step's own deadline (budget clock)
        self.steady_rows: Optional[List[Dict[str, Any]]] = None  # the ranks step's reference

    # --- writing ---------------------------------------------------------------------------
    def write(self) -> None:
        self.report.elapsed_s = self.budget.elapsed()
        write_atomic(self.out / "summary.md", render_summary(self.report))
        payload = {**asdict(self.report), "exit_code": self.report.exit_code(), **self.extra}
        write_atomic(self.out / "results.json", json.dumps(payload, indent=2, default=str) + "\n")
        if self.trials:
            import pandas as pd
            write_atomic(self.out / "trials.csv", pd.concat(self.trials, ignore_index=True).to_csv(index=False))
        if self.samples:
            import pandas as pd
            write_atomic(self.out / "samples.csv", pd.concat(self.samples, ignore_index=True).to_csv(index=False))

    # --- steps -------------------------------------------------------------------------------
    def step(self, name: str, timeout_s: float, fn: Callable[..., Any], *args: Any,
             expected_s: Optional[float] = None) -> Any:
        """Runs fn unless less than `timeout_s` is left before the deadline (then SKIP: the
        check is incomplete); its commands end by `timeout_s` from its start. An exception
        or a timeout is this step's FAIL line, and the session goes on."""
        if not self.budget.allows(timeout_s):
            why = (f"skipped (time): {max(0.0, self.budget.remaining()):.0f} s left, its "
                   f"timeout is {timeout_s:.0f} s")
            self.report.steps.append(Step(name, SKIP, 0.0, why, expected_s))
            self.report.add([Check(name, "ran", SKIP, why)])
            self.write()
            return None
        t0 = time.monotonic()
        self.step_end = self.budget.clock() + timeout_s
        first_check = len(self.report.checks)
        result, verdict, detail = None, PASS, ""
        try:
            result = fn(*args)
        except KeyboardInterrupt:
            self.report.steps.append(Step(name, FAIL, time.monotonic() - t0, "interrupted", expected_s))
            raise
        except Exception as exc:  # noqa: BLE001 - one step's failure must not stop the others
            verdict, detail = FAIL, f"{type(exc).__name__}: {exc}"
            self.shell.note(f"\n=== step {name} raised\n{traceback.format_exc()}")
        finally:
            self.step_end = None
        mine = self.report.checks[first_check:]
        if verdict == PASS and any(c.verdict == FAIL for c in mine):
            verdict, detail = FAIL, f"{sum(c.verdict == FAIL for c in mine)} check(s) failed"
        elif verdict == PASS and mine and all(c.verdict == SKIP for c in mine):
            verdict = SKIP
        self.report.steps.append(Step(name, verdict, time.monotonic() - t0, detail, expected_s))
        self.write()
        return result

    def planned(self, s: PlannedStep) -> Any:
        return self.step(s.name, s.timeout_s, getattr(self, s.action), *s.args,
                         expected_s=s.expected_s)

    def command_timeout(self) -> float:
        """What the running step has left of its own timeout (and of the deadline)."""
        left = self.budget.remaining()
        if self.step_end is not None:
            left = min(left, self.step_end - self.budget.clock())
        return max(1.0, left)

    def gpubench(self, label: str, args: Sequence[str], timeout_s: Optional[float] = None) -> CommandResult:
        return self.shell.run(label, [self.python, "-m", "gpubench", *args],
                              min(timeout_s or float("inf"), self.command_timeout()))

    def step_env(self) -> None:
        r = self.gpubench("gpubench env --json", ["env", "--json"])
        if r.timed_out or r.rc != 0:
            raise GpuCheckError(f"gpubench env failed ({'timed out' if r.timed_out else f'exit {r.rc}'}): "
                                f"{_last_line(r.stderr)}")
        env = json.loads(r.stdout)
        self.env_json = env
        write_atomic(self.out / "env.json", json.dumps(env, indent=2) + "\n")
        gpus = env.get("gpus") or {}
        devices = gpus.get("gpus") or []
        first = devices[0] if devices else {}
        torch_env = (env.get("frameworks") or {}).get("torch") or {}
        self.report.machine.update({
            "gpu_name": first.get("name"), "gpus": len(devices),
            "driver_version": gpus.get("driver_version"), "cuda_driver_version": gpus.get("cuda_driver_version"),
            "power_limit_w": first.get("power_limit_w"), "max_sm_clock_mhz": first.get("max_sm_clock_mhz"),
            "peak_mem_bw_gbs (bus width x max memory clock x 2)": first.get("peak_mem_bw_gbs"),
            "torch": f"{torch_env.get('framework_version')} (CUDA {torch_env.get('cuda_version')}, "
                     f"cuDNN {torch_env.get('cudnn_version')})",
            "python": sys.version.split()[0],
        })
        ok = bool(gpus.get("available")) and bool(devices) and bool(first.get("name"))
        self.report.add([Check("gpubench env", "NVML inventory", PASS if ok else FAIL,
                               f"{len(devices)} GPU(s): {first.get('name')}, driver {gpus.get('driver_version')}"
                               if ok else f"no GPU in gpubench env: {gpus.get('reason')}")])
        missing = [k for k in ("power_limit_w", "peak_mem_bw_gbs") if first.get(k) is None]
        self.report.add([Check("gpubench env", "power limit and peak bandwidth", FAIL if missing else PASS,
                               f"missing: {', '.join(missing)}" if missing else
                               f"{first.get('power_limit_w')} W, {first.get('peak_mem_bw_gbs')} GB/s")])

    def step_list(self) -> None:
        r = self.gpubench("gpubench list --json", ["list", "--json"])
        if r.timed_out or r.rc != 0:
            raise GpuCheckError(f"gpubench list failed: {_last_line(r.stderr)}")
        data = json.loads(r.stdout)
        # collectives (allreduce, ...) need ranks: the ranks step runs them, not the matrix
        names = [w["name"] for w in data.get("workloads", []) if w.get("task") != "collective"]
        if names:
            self.workloads = names
        backends = {b["name"]: b for b in data.get("backends", [])}
        cuda = backends.get("torch-cuda") or {}
        self.report.machine["backends available"] = ", ".join(
            n for n, b in backends.items() if b.get("available") and n != "auto")
        if cuda:
            self.torch_cuda = (bool(cuda.get("available")), cuda.get("reason") or "")
        self.report.add([Check("gpubench list", "torch-cuda available", PASS if cuda.get("available") else FAIL,
                               cuda.get("reason") or f"workloads: {', '.join(self.workloads)}")])

    def step_kernels(self) -> None:
        r = self.shell.run("reference kernels (plain torch)",
                           [self.python, str(Path(__file__).resolve()), "--measure-kernels"],
                           self.command_timeout())
        if r.timed_out or r.rc != 0:
            raise GpuCheckError(f"kernel measurement failed ({'timed out' if r.timed_out else f'exit {r.rc}'}): "
                                f"{_last_line(r.stderr)}")
        k = json.loads(r.stdout.strip().splitlines()[-1])
        self.capability = k.get("capability")
        peak_bf16 = peak_tflops(k.get("device_name"), "bf16")
        gpus = ((self.env_json or {}).get("gpus") or {}).get("gpus") or [{}]
        peak_bw = _num(gpus[0].get("peak_mem_bw_gbs"))
        self.report.kernels = {**k, "peak_bf16_tflops": peak_bf16, "peak_mem_bw_gbs": peak_bw}
        self.report.machine["compute capability"] = ".".join(map(str, k.get("capability") or []))
        self.report.machine["peak bf16 TFLOP/s (datasheet, dense)"] = peak_bf16
        self.report.add([check_kernel("bf16 GEMM TFLOP/s", _num(k.get("gemm_tflops")), peak_bf16, "TFLOP/s"),
                         check_kernel("device copy GB/s", _num(k.get("copy_gbs")), peak_bw, "GB/s")])

    def step_pytest(self) -> None:
        """`pytest -m gpu`: the GPU tests (the CPU tests run in CI on every change)."""
        junit = self.work / "junit-gpu.xml"
        r = self.shell.run("pytest -m gpu", [self.python, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                             "-p", "no:randomly", "-m", "gpu", GPU_TEST_ROOT,
                                             f"--junitxml={junit}"], self.command_timeout())
        counts = parse_junit(junit.read_text()) if junit.exists() and not r.timed_out else None
        if counts is None:
            counts = parse_pytest_tail(r.stdout)
        check = check_pytest("pytest -m gpu", counts, r.timed_out, True)
        if counts is None and not r.timed_out:
            check.detail += f" (pytest exit {r.rc}: {_last_line(r.stderr or r.stdout)})"
        self.report.add([check])
        self.report.tests["pytest -m gpu"] = check.detail

    def _run_once(self, label: str, argv: Sequence[str], kind: str) -> Tuple[list, list, dict]:
        """One planned `gpubench run` (argv from `run`); returns its rows, samples and
        run.json (or raises)."""
        timeout = self.command_timeout()
        # gpubench's own timeout first: it stops its worker and writes a timeout row
        r = self.gpubench(label, [*argv, "--out", str(self.work / "runs"), "-q",
                                  "--timeout", f"{max(timeout - 15, timeout * 0.7):.1f}"], timeout)
        folder = Path(r.stdout.strip().splitlines()[-1]) if r.stdout.strip() else None
        if r.timed_out:
            raise GpuCheckError(f"timed out after {timeout:.0f} s")
        if folder is None or not (folder / "trials.csv").exists():
            raise GpuCheckError(f"exit {r.rc}, no run folder: {_last_line(r.stderr)}")
        import pandas as pd

        trials = pd.read_csv(folder / "trials.csv")
        samples = pd.read_csv(folder / "samples.csv") if (folder / "samples.csv").exists() else None
        run_json = json.loads((folder / "run.json").read_text()) if (folder / "run.json").exists() else {}
        self.trials.append(trials.assign(gpu_check_step=kind, gpu_check_run=label))
        if samples is not None:
            run_id = trials["run_id"].iloc[0] if len(trials) else ""
            self.samples.append(samples.assign(run_id=run_id, gpu_check_step=kind, gpu_check_run=label))
        rows = trials.to_dict("records")
        sample_rows = samples.to_dict("records") if samples is not None else None
        return rows, sample_rows, run_json

    def _gpm_expected(self, rows: List[Dict[str, Any]]) -> Optional[bool]:
        name = rows[0].get("device_name") if rows else None
        if not isinstance(name, str) or not name.strip():
            name = self.report.machine.get("gpu_name")
        return gpm_expected_for(self.capability, name)

    def step_run(self, label: str, argv: Sequence[str]) -> None:
        t0 = time.monotonic()
        mode = argv[argv.index("--mode") + 1]
        rows, samples, run_json = self._run_once(label, argv, "matrix")
        self.report.add(check_run(label, mode, rows, samples, run_json, self._gpm_expected(rows)))
        self.report.runs.append(run_table_row(label, rows, samples, run_json, time.monotonic() - t0))
        state = gpu_state_text(gpu_state_of(run_json))
        if state and "gpu state before the first run" not in self.report.machine:
            self.report.machine["gpu state before the first run"] = state

    def step_exec(self, label: str, argv: Sequence[str]) -> None:
        """A non-eager exec mode: it runs, its outputs matched eager's (gpubench's own
        check before timing), compile_s is recorded, no trial recompiled."""
        rows, _, run_json = self._run_once(label, argv, "exec")
        self.report.add([check_exec_run(label, rows, run_json)])

    def step_generate(self, *runs: Sequence[str]) -> None:
        """--mode generate, eager and CUDA-graph decode (gpu_check_generate.py)."""
        from gpu_check_generate import check_generate_run, graphs_against_eager

        rates = {}
        for argv in runs:
            exec_mode = argv[argv.index("--exec") + 1]
            label = f"generate gpt {exec_mode}"
            rows, _, run_json = self._run_once(label, argv, "generate")
            check, rates[exec_mode] = check_generate_run(label, exec_mode, rows, run_json)
            self.report.add([check])
        compared = graphs_against_eager(rates)
        if compared is not None:
            self.report.add([compared])

    def step_ranks(self, argv: Sequence[str]) -> None:
        """The torchrun launcher on NCCL: the steady run's command at --nproc 1, within
        3% of it."""
        if not self.steady_rows:
            raise GpuCheckError("no steady run to compare with (it did not run or had no rows)")
        label = "--nproc 1 resnet50 train bf16"
        ranked, _, run_json = self._run_once(label, argv, "ranks")
        self.report.add([check_ranked_run(label, self.steady_rows, ranked, run_json)])

    def step_collective(self, argv: Sequence[str]) -> None:
        label = "allreduce --nproc 1 to 64 MiB"
        rows, _, run_json = self._run_once(label, argv, "ranks")
        self.report.add([check_collective_run(label, rows, run_json)])

    def step_serving(self, label: str, argv: Sequence[str]) -> None:
        rows, _, run_json = self._run_once(label, argv, "serving")
        self.report.add([check_serving_run(label, rows, run_json)])

    def step_steady(self, argv: Sequence[str]) -> None:
        label = "steady resnet50 train bf16"
        t0 = time.monotonic()
        rows, samples, run_json = self._run_once(label, argv, "steady")
        self.steady_rows = rows
        self.report.add(check_run(label, "train", rows, samples, run_json, self._gpm_expected(rows)))
        self.report.runs.append(run_table_row(label, rows, samples, run_json, time.monotonic() - t0))
        windows = (run_json.get("telemetry") or {}).get("trial_windows") or []
        self.report.energy = energy_vs_integrated(rows, samples or [], windows)
        check = check_energy_integrated(self.report.energy)
        check.group = label
        power_source = (run_json.get("telemetry") or {}).get("power_source")
        period = (run_json.get("telemetry") or {}).get("energy_counter_period_s")
        check.detail += f"; power source {power_source}, counter period {_fmt(period)} s"
        self.report.add([check])

    def step_suite(self) -> None:
        config = self.out / "suite.yaml"
        write_atomic(config, SUITE_YAML)
        timeout = self.command_timeout() - COMPARE_TIMEOUT_S / 3  # room for compare after it
        r = self.gpubench("gpubench suite (2 runs, isolated)",
                          ["suite", str(config), "--out", str(self.work / "suite"), "--devices", "0", "-q",
                           "--timeout", f"{max(timeout / 2 - 5, timeout * 0.35):.1f}"], timeout)
        folder = Path(r.stdout.strip().splitlines()[0]) if r.stdout.strip() else None
        if r.timed_out or folder is None or not (folder / "trials.csv").exists():
            raise GpuCheckError(f"suite {'timed out' if r.timed_out else f'exit {r.rc}'}: {_last_line(r.stderr)}")
        import pandas as pd

        trials = pd.read_csv(folder / "trials.csv")
        self.trials.append(trials.assign(gpu_check_step="suite", gpu_check_run="suite"))
        runs = trials["run_id"].nunique()
        ok = int((trials["status"] == "ok").sum())
        self.report.suite.update({"suite exit": r.rc, "runs": runs, "trials ok": f"{ok}/{len(trials)}"})
        good = r.rc == 0 and runs == 2 and ok == len(trials) and len(trials) > 0
        self.report.add([Check("suite", "two isolated runs, all trials ok", PASS if good else FAIL,
                               f"exit {r.rc}, {runs} runs, {ok}/{len(trials)} trials ok")])
        c = self.gpubench("gpubench compare --by run_id", ["compare", str(folder), "--by", "run_id",
                                                           "--format", "json"], COMPARE_TIMEOUT_S)
        try:
            payload = json.loads(c.stdout) if c.stdout.strip() else None
        except json.JSONDecodeError:
            payload = None
        rows = (payload or {}).get("rows") or []
        ran = c.rc in (0, 1) and bool(rows)
        self.report.add([Check("suite", "gpubench compare --by run_id", PASS if ran else FAIL,
                               f"exit {c.rc}, {len(rows)} row(s)" + ("" if ran else f": {_last_line(c.stderr)}"))])
        if ran:
            row = rows[0]
            figure = (f"verdict {row.get('verdict')}, change {_fmt(row.get('change_pct'), '+.2f')}%, "
                      f"p {_fmt(row.get('p_value'), '.2g')}, {row.get('n_base')}/{row.get('n_new')} trials")
            self.report.suite["A/A comparison"] = figure
            self.report.add([Check("suite", "A/A: no regression between two runs of one configuration",
                                   PASS if c.rc == 0 else FAIL, figure)])

    # --- the whole session ---------------------------------------------------------------
    def run_all(self) -> int:
        self.write()
        plan = build_plan(self.workloads)
        first = [s for s in plan if s.action in ("step_env", "step_list")]
        for s in first:
            self.planned(s)
        # the rest, over the workloads this machine's gpubench lists
        for s in build_plan(self.workloads)[len(first):]:
            if not self.torch_cuda[0] and s.commands:  # every run would be refused
                self.report.add([Check(s.name, "ran", FAIL,
                                       f"not run: torch-cuda is not available: {self.torch_cuda[1]}")])
                continue
            self.planned(s)
        self.report.state = "finished"
        self.write()
        return self.report.exit_code()


def _last_line(text: str) -> str:
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""



# ==========================================================================================
# main
# ==========================================================================================
def print_plan() -> int:
    """--plan: the plan over this checkout's workloads, every command line through
    gpubench's preflight here (torch-cuda taken as available)."""
    from gpubench.cli.list import collect

    workloads = [w["name"] for w in collect()["workloads"] if w.get("task") != "collective"]
    with tempfile.TemporaryDirectory(prefix="gpu-check-plan-") as tmp:
        suite = Path(tmp) / "suite.yaml"
        suite.write_text(SUITE_YAML)
        table, problems = check_plan(build_plan(workloads), str(suite))
    print(table)
    for problem in problems:
        print(f"gpu-check --plan: {problem}", file=sys.stderr)
    return 1 if problems else 0


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="gpu_check.py", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="output folder (default: $OUT, else ./gpu-check-out)")
    parser.add_argument("--deadline-s", type=float, default=DEADLINE_S,
                        help=f"global deadline in seconds (default {DEADLINE_S:g})")
    parser.add_argument("--keep-results", action="store_true",
                        help="keep the temporary folder with every run folder (its path is in log.txt)")
    parser.add_argument("--plan", action="store_true",
                        help="print the plan (steps, tiers, expected seconds) and check every "
                             "gpubench command line in it here; exit 0 when all are valid and "
                             "the plan fits, 1 otherwise (needs no GPU)")
    parser.add_argument("--measure-kernels", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure_kernels:
        print(json.dumps(measure_kernels()))
        return 0
    if args.plan:
        return print_plan()
    present, why = gpu_presence()
    if not present:
        print(f"gpu-check: error: no NVIDIA GPU here: {why}", file=sys.stderr)
        return 2
    out = args.out or Path(os.environ.get("OUT") or DEFAULT_OUT)
    out.mkdir(parents=True, exist_ok=True)
    for name in OUT_FILES:  # nothing stale from an earlier check
        (out / name).unlink(missing_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["GPUBENCH_CACHE_DIR"] = str(work / "cache")
    (out / "log.txt").write_text(f"gpu-check {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}: "
                                 f"{why}; python {sys.executable}; work folder {work}\n")
    scratch = work / "cmd"
    scratch.mkdir()
    checker = Checker(out, Budget(args.deadline_s), Shell(out / "log.txt", env, REPO, scratch), work)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        code = checker.run_all()
    except KeyboardInterrupt:
        checker.report.state = "interrupted"
        checker.write()
        code = 130
    finally:
        if not args.keep_results:
            shutil.rmtree(work, ignore_errors=True)
    c = checker.report.counts()
    print(f"gpu-check: {c[PASS]} PASS, {c[FAIL]} FAIL, {c[SKIP]} SKIP in {checker.budget.elapsed():.0f} s; "
          f"see {out / 'summary.md'}")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
