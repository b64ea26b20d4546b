#!/usr/bin/env python3
"""gpu-check: does gpubench tell the truth on this NVIDIA GPU? One prepared command.

    make gpu-check                                      # or, where there is no make:
    PYTHONPATH=src python3 benchmarks/gpu_check.py [--out DIR] [--deadline-s S]

Runs on the machine's own python3 (torch with CUDA, numpy, pandas, scipy, pyyaml, rich,
psutil, nvidia-ml-py, pytest), installs nothing and needs no network. It drives gpubench
through its public CLI only (`python3 -m gpubench ...` subprocesses) and reads the result
CSVs with pandas; plain torch is used only for the reference GEMM and copy figures.

Steps, each under a global deadline (default 420 s) and its own timeout; a step that
raises or times out is a FAIL line and the next step runs; a step the deadline leaves no
room for is "skipped (time)". Expected times on an H100/H200 (16 cores) in brackets:
  env        `gpubench env --json`: driver, GPUs, power limit, peak bandwidth        [~6 s]
  list       `gpubench list --json`: the workloads, torch-cuda available            [~4 s]
  kernels    bf16 8192^3 GEMM TFLOP/s and 1 GiB device copy GB/s beside the peaks    [~10 s]
  pytest     `pytest -m gpu` and the CPU tests of the GPU code paths, in parallel    [~90 s]
  runs       torch-cuda x every workload x train/infer x fp32/tf32/bf16/fp16 (gpt and
             bert small: bf16 train, fp16 infer), NVML
             telemetry, 3 trials of >= 0.3 s; ResNet-50 at image_size=128, batch
             128 (not 224: time); every row checked                                  [32 x ~5 s]
  steady     ResNet-50 bf16 training, 3 trials of 2 s at 50 Hz: energy counter
             against integrated power                                                [~15 s]
  suite      two runs of one configuration in isolated workers (--devices 0), then
             `gpubench compare --by run_id` on them                                  [~20 s]
  ranks      ResNet-50 (128 px) bf16 training, plain and through the torchrun launcher
             at --nproc 1 (NCCL, DDP): within 3%; allreduce on NCCL to 64 MiB       [~40 s]
  serving    MNIST MLP on torch-cuda, single-stream and a --find-max-qps search under
             a 5 ms p99: latencies on the device clock (CUDA events)                [~25 s]
  exec       small gpt under torch.compile (train) and CUDA graphs (train, infer):
             ran, matched eager, compile_s recorded, no recompile in a trial; last,
             in the time left (a cold compile takes tens of seconds)                [~60 s]
Total ~6 min (deadline 7 min), so that a rerun fits in a 15-minute slot.

Writes at most 8 files to $OUT (or ./gpu-check-out): summary.md (every check as
PASS/FAIL/SKIP, with the figures; rewritten atomically after every step, so a kill keeps
what was done), log.txt (every command and its output), trials.csv and samples.csv (all
runs' rows), suite.yaml, env.json and results.json. The result folders themselves live
in a temporary folder (removed at the end unless --keep-results).

Exit codes: 0 every check passed, 1 a check failed, 2 no NVIDIA GPU here (one line on
stderr, nothing written), 130 interrupted (summary.md still written).
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
from gpu_check_summary import Report, Step, render_summary  # noqa: E402
DEFAULT_OUT = "gpu-check-out"
OUT_FILES = ("summary.md", "log.txt", "trials.csv", "samples.csv", "suite.yaml", "env.json",
             "results.json")  # never more than 8: only that many come back from a device run

# --- budget (seconds) ------------------------------------------------------------------
DEADLINE_S = 420.0  # hard: every step ends before it; ~6 min expected (run it with 480 s)
FINAL_RESERVE_S = 8.0  # kept for writing the final files
# step: (timeout cap, least time worth starting it with)
LIMITS = {"env": (60.0, 5.0), "list": (45.0, 3.0), "kernels": (90.0, 8.0),
          "pytest": (150.0, 30.0), "run": (60.0, 6.0), "steady": (75.0, 15.0),
          "suite": (100.0, 25.0), "compare": (30.0, 3.0), "ranks": (60.0, 30.0)}
KILL_GRACE_S = 10.0  # SIGINT first (gpubench then stops its worker), SIGKILL after this

# --- what runs ---------------------------------------------------------------------------
WORKLOADS_FALLBACK = ("linreg", "mnist", "lenet5", "resnet50")
MODES = ("train", "infer")
PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
RUN_ARGS = ("--backend", "torch-cuda", "--trials", "3", "--min-trial-s", "0.3",
            "--warmup-s", "0.5", "--telemetry", "nvml")
# ResNet-50 at 224 px spends most of a short run in cuDNN autotuning; 128 px keeps it
# device-bound and fast.
WORKLOAD_ARGS = {"resnet50": ("--batch-size", "128", "--param", "image_size=128")}
# Transformers at a small shape (GPT-2 small would spend the budget), in the precisions
# they are run in: bf16 training, fp16 inference.
SMALL_TRANSFORMER = ("--param", "layers=4", "--param", "d_model=256", "--param", "heads=4",
                     "--param", "vocab=8192")
WORKLOAD_ARGS.update(gpt=SMALL_TRANSFORMER + ("--param", "seq_len=256"),
                     bert=SMALL_TRANSFORMER + ("--param", "seq_len=128"))
WORKLOAD_MATRIX = {"gpt": (("train", "bf16"), ("infer", "fp16")),
                   "bert": (("train", "bf16"), ("infer", "fp16"))}
# Last, in what time is left: torch.compile (cold: tens of seconds) and CUDA graphs on
# the small gpt, each checked against eager by gpubench before timing.
# Runs of ranks: one GPU here, so --nproc 1 (NCCL, DDP) against the plain run, and the
# all-reduce sweep to 64 MiB (with one rank busbw is 0 by nccl-tests' factor; algbw shows).
RANKED_ARGS = ("--workload", "resnet50", "--mode", "train", "--precision", "bf16",
               "--batch-size", "128", "--param", "image_size=128", "--backend", "torch-cuda",
               "--trials", "5", "--min-trial-s", "0.5", "--warmup-s", "1", "--telemetry", "nvml")
COLLECTIVE_ARGS = ("--workload", "allreduce", "--backend", "torch-cuda", "--nproc", "1",
                   "--param", f"max_bytes={64 << 20}", "--trials", "3", "--min-trial-s", "0.1",
                   "--warmup-s", "0.1", "--telemetry", "nvml")
# Served inference on the GPU: the CUDA-event clock and the batcher, kept short.
SERVING_RUNS = (("single-stream", ("--min-queries", "500")),
                ("server", ("--find-max-qps", "--latency-bound-ms", "5", "--min-queries", "500")))
SERVING_ARGS = ("--workload", "mnist", "--backend", "torch-cuda", "--mode", "infer",
                "--batch-size", "64", "--warmup-s", "0.5", "--telemetry", "nvml")
EXEC_RUNS = (("compile", "train"), ("cuda-graphs", "train"), ("cuda-graphs", "infer"))
STEADY_ARGS = ("--workload", "resnet50", "--mode", "train", "--precision", "bf16",
               "--batch-size", "256", "--param", "image_size=128", "--trials", "3",
               "--min-trial-s", "2", "--warmup-s", "2", "--sample-hz", "50")
SUITE_YAML = """\
# gpu-check: two runs of one configuration, each in its own isolated worker, then
# `gpubench compare --by run_id` between them (an A/A comparison).
defaults:
  trials: 5
  warmup_s: 0.5
  min_trial_s: 0.3
  telemetry: nvml
  timeout_s: 60
  repeats: 2
runs:
  - workloads: resnet50
    backends: torch-cuda
    modes: train
    precisions: bf16
    batch_sizes: 128
    params: {image_size: 128}
"""
GPU_TEST_ROOT = "tests"
# CPU tests of the GPU code paths (NVML telemetry, peaks, the TensorRT/TensorFlow GPU
# backends' guards); the NVML test double needs gcc.
CPU_TEST_FILES = ("tests/test_telemetry_sampler.py", "tests/test_telemetry_aggregate.py",
                  "tests/test_telemetry_run.py", "tests/test_peaks.py", "tests/test_tensorrt.py",
                  "tests/test_tensorflow_backend.py")
NVML_DOUBLE_TEST_FILES = ("tests/test_nvml_api.py", "tests/test_nvml_cli.py")


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

    def timeout(self, cap_s: float) -> float:
        return max(1.0, min(cap_s, self.remaining()))


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
    def step(self, name: str, least_s: float, fn: Callable[..., Any], *args: Any) -> Any:
        """Runs fn unless the deadline leaves less than `least_s`; an exception or a
        timeout is this step's FAIL line, and the session goes on."""
        if not self.budget.allows(least_s):
            self.report.steps.append(Step(name, SKIP, 0.0, "skipped (time)"))
            self.report.add([Check(name, "ran", SKIP, "skipped (time)")])
            self.write()
            return None
        t0 = time.monotonic()
        first_check = len(self.report.checks)
        result, verdict, detail = None, PASS, ""
        try:
            result = fn(*args)
        except KeyboardInterrupt:
            self.report.steps.append(Step(name, FAIL, time.monotonic() - t0, "interrupted"))
            raise
        except Exception as exc:  # noqa: BLE001 - one step's failure must not stop the others
            verdict, detail = FAIL, f"{type(exc).__name__}: {exc}"
            self.shell.note(f"\n=== step {name} raised\n{traceback.format_exc()}")
        mine = self.report.checks[first_check:]
        if verdict == PASS and any(c.verdict == FAIL for c in mine):
            verdict, detail = FAIL, f"{sum(c.verdict == FAIL for c in mine)} check(s) failed"
        elif verdict == PASS and mine and all(c.verdict == SKIP for c in mine):
            verdict = SKIP
        self.report.steps.append(Step(name, verdict, time.monotonic() - t0, detail))
        self.write()
        return result

    def gpubench(self, label: str, args: Sequence[str], cap_s: float) -> CommandResult:
        return self.shell.run(label, [self.python, "-m", "gpubench", *args], self.budget.timeout(cap_s))

    def step_env(self) -> None:
        r = self.gpubench("gpubench env --json", ["env", "--json"], LIMITS["env"][0])
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
        r = self.gpubench("gpubench list --json", ["list", "--json"], LIMITS["list"][0])
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
                           self.budget.timeout(LIMITS["kernels"][0]))
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
        py = [self.python, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        gpu = [*py, "-m", "gpu", GPU_TEST_ROOT, f"--junitxml={self.work / 'junit-gpu.xml'}"]
        files = list(CPU_TEST_FILES)
        if shutil.which("gcc") or shutil.which("cc"):
            files += NVML_DOUBLE_TEST_FILES
        else:
            self.report.add([Check("pytest", "NVML test double", SKIP,
                                   f"no gcc here: {', '.join(NVML_DOUBLE_TEST_FILES)} not run")])
        files = [f for f in files if (REPO / f).exists()]
        cpu = [*py, "-m", "not gpu", *files, f"--junitxml={self.work / 'junit-cpu.xml'}"]
        gpu_r, cpu_r = self.shell.run_many([("pytest -m gpu", gpu), ("pytest, CPU tests of the GPU code paths", cpu)],
                                           self.budget.timeout(LIMITS["pytest"][0]))
        for name, r, junit, expect in (("pytest -m gpu", gpu_r, "junit-gpu.xml", True),
                                       ("CPU tests of the GPU code paths", cpu_r, "junit-cpu.xml", False)):
            counts = None
            path = self.work / junit
            if path.exists() and not r.timed_out:
                counts = parse_junit(path.read_text())
            if counts is None:
                counts = parse_pytest_tail(r.stdout)
            check = check_pytest(name, counts, r.timed_out, expect)
            if counts is None and not r.timed_out:
                check.detail += f" (pytest exit {r.rc}: {_last_line(r.stderr or r.stdout)})"
            self.report.add([check])
            self.report.tests[name] = check.detail

    def _run_once(self, label: str, args: Sequence[str], mode: str, kind: str) -> Tuple[list, list, dict]:
        """One `gpubench run`; returns its rows, samples and run.json (or raises)."""
        cap = LIMITS["steady" if kind == "steady" else "run"][0]
        timeout = self.budget.timeout(cap)
        # gpubench's own timeout first: it stops its worker and writes a timeout row
        r = self.gpubench(label, ["run", *args, "--out", str(self.work / "runs"), "-q",
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

    def step_run(self, workload: str, mode: str, precision: str) -> None:
        label = f"run {workload} {mode} {precision}"
        t0 = time.monotonic()
        args = ["--workload", workload, "--mode", mode, "--precision", precision, *RUN_ARGS,
                *WORKLOAD_ARGS.get(workload, ())]
        rows, samples, run_json = self._run_once(label, args, mode, "matrix")
        self.report.add(check_run(label, mode, rows, samples, run_json, self._gpm_expected(rows)))
        self.report.runs.append(run_table_row(label, rows, samples, run_json, time.monotonic() - t0))
        state = gpu_state_text(gpu_state_of(run_json))
        if state and "gpu state before the first run" not in self.report.machine:
            self.report.machine["gpu state before the first run"] = state

    def step_exec(self, exec_mode: str, mode: str) -> None:
        """A non-eager exec mode: it runs, its outputs matched eager's (gpubench's own
        check before timing), compile_s is recorded, no trial recompiled."""
        label = f"exec {exec_mode} gpt {mode}"
        precision = "bf16" if mode == "train" else "fp16"
        args = ["--workload", "gpt", "--mode", mode, "--precision", precision, "--exec", exec_mode,
                *RUN_ARGS, *WORKLOAD_ARGS["gpt"]]
        rows, _, run_json = self._run_once(label, args, mode, "exec")
        self.report.add([check_exec_run(label, rows, run_json)])

    def step_ranks(self) -> None:
        """The torchrun launcher on NCCL: one rank against the plain run, then the
        all-reduce sweep."""
        plain, _, _ = self._run_once("plain resnet50 train bf16", RANKED_ARGS, "train", "ranks")
        label = "--nproc 1 resnet50 train bf16"
        ranked, _, run_json = self._run_once(label, [*RANKED_ARGS, "--nproc", "1"], "train",
                                             "ranks")
        self.report.add([check_ranked_run(label, plain, ranked, run_json)])
        if not self.budget.allows(LIMITS["run"][1]):
            self.report.add([Check("allreduce --nproc 1", "ran", SKIP, "skipped (time)")])
            return
        label = "allreduce --nproc 1 to 64 MiB"
        rows, _, run_json = self._run_once(label, COLLECTIVE_ARGS, "train", "ranks")
        self.report.add([check_collective_run(label, rows, run_json)])

    def step_serving(self, scenario: str, extra: Sequence[str]) -> None:
        label = f"serving mnist {scenario}"
        rows, _, run_json = self._run_once(label, [*SERVING_ARGS, "--scenario", scenario, *extra],
                                           "infer", "serving")
        self.report.add([check_serving_run(label, rows, run_json)])

    def step_steady(self) -> None:
        label = "steady resnet50 train bf16"
        t0 = time.monotonic()
        rows, samples, run_json = self._run_once(label, [*STEADY_ARGS, *RUN_ARGS[:2], "--telemetry", "nvml"],
                                                 "train", "steady")
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
        timeout = self.budget.timeout(LIMITS["suite"][0])
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
        if not self.budget.allows(LIMITS["compare"][1]):
            self.report.add([Check("suite", "gpubench compare --by run_id", SKIP, "skipped (time)")])
            return
        c = self.gpubench("gpubench compare --by run_id", ["compare", str(folder), "--by", "run_id",
                                                           "--format", "json"], LIMITS["compare"][0])
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
        self.step("gpubench env", LIMITS["env"][1], self.step_env)
        self.step("gpubench list", LIMITS["list"][1], self.step_list)
        self.step("reference kernels", LIMITS["kernels"][1], self.step_kernels)
        self.step("pytest", LIMITS["pytest"][1], self.step_pytest)
        if not self.torch_cuda[0]:  # every run would be refused: say so once, save the time
            self.report.add([Check("runs", "torch-cuda runs, steady run, suite", FAIL,
                                   f"not run: torch-cuda is not available: {self.torch_cuda[1]}")])
        else:
            for workload in self.workloads:
                matrix = WORKLOAD_MATRIX.get(workload) or [(m, p) for m in MODES for p in PRECISIONS]
                for mode, precision in matrix:
                    self.step(f"run {workload} {mode} {precision}", LIMITS["run"][1],
                              self.step_run, workload, mode, precision)
            self.step("steady run: energy counter vs integrated power", LIMITS["steady"][1], self.step_steady)
            self.step("suite + compare", LIMITS["suite"][1], self.step_suite)
            self.step("runs of ranks (torchrun, NCCL)", LIMITS["ranks"][1], self.step_ranks)
            for scenario, extra in SERVING_RUNS:
                self.step(f"serving {scenario}", LIMITS["run"][1], self.step_serving,
                          scenario, extra)
            for exec_mode, mode in EXEC_RUNS:
                self.step(f"exec {exec_mode} gpt {mode}", LIMITS["run"][1], self.step_exec,
                          exec_mode, mode)
        self.report.state = "finished"
        self.write()
        return self.report.exit_code()


def _last_line(text: str) -> str:
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""



# ==========================================================================================
# main
# ==========================================================================================
def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="gpu_check.py", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="output folder (default: $OUT, else ./gpu-check-out)")
    parser.add_argument("--deadline-s", type=float, default=DEADLINE_S,
                        help=f"global deadline in seconds (default {DEADLINE_S:g})")
    parser.add_argument("--keep-results", action="store_true",
                        help="keep the temporary folder with every run folder (its path is in log.txt)")
    parser.add_argument("--measure-kernels", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure_kernels:
        print(json.dumps(measure_kernels()))
        return 0
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
