"""gpu-check's plan: every step it runs, in order, with its tier, the seconds it is
expected to take on an H100 (16 cores), its timeout, and the gpubench command lines it
runs. The single source of those figures: gpu_check.py runs the plan, `gpu_check.py
--plan` prints it and passes every command line through gpubench's own preflight here
(`gpubench run --dry-run`, with torch-cuda taken as available, so its declared
precisions, exec modes and capabilities are the ones checked), and a test sums it over
the real workload list.

The expected seconds are estimates (gpubench has not yet run on a GPU): summary.md
prints each step's actual seconds beside them, for the first GPU session to replace.

Two tiers: the core (expected <= CORE_BUDGET_S), then the extended tier, all within
DEADLINE_S, so that a machine's start, the check and one rerun after a fix fit in 15
minutes of GPU time. A step never starts with less time left than its timeout: a step
the deadline leaves no room for is SKIP, and a SKIP makes the check incomplete (exit 3).
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

CORE_BUDGET_S = 180.0
DEADLINE_S = 320.0
FINAL_RESERVE_S = 8.0  # kept for writing the final files

CORE, EXTENDED = "core", "extended"

# --- what runs ---------------------------------------------------------------------------
RUN_ARGS = ("--backend", "torch-cuda", "--trials", "3", "--min-trial-s", "0.3",
            "--warmup-s", "0.5", "--telemetry", "nvml")
# ResNet-50 at 224 px spends most of a short run in cuDNN autotuning; 128 px keeps it
# device-bound and fast. Transformers at a small shape (GPT-2 small would spend the budget).
SMALL_TRANSFORMER = ("--param", "layers=4", "--param", "d_model=256", "--param", "heads=4",
                     "--param", "vocab=8192")
WORKLOAD_ARGS: Dict[str, Tuple[str, ...]] = {
    "resnet50": ("--batch-size", "128", "--param", "image_size=128"),
    "gpt": SMALL_TRANSFORMER + ("--param", "seq_len=256"),
    "bert": SMALL_TRANSFORMER + ("--param", "seq_len=128"),
}
# The core matrix: the workloads that carry most of the GPU's code paths (an MLP, cuDNN
# convolutions, attention), train and infer at fp32 and bf16. ResNet-50 bf16 training is
# the steady run's (longer trials, checked alike), so not repeated here.
CORE_WORKLOADS = ("mnist", "resnet50", "gpt")
CORE_MATRIX = tuple((w, m, p) for w in CORE_WORKLOADS for m in ("train", "infer")
                    for p in ("fp32", "bf16") if (w, m, p) != ("resnet50", "train", "bf16"))
# Every other workload once in the extended tier, in the precision it is mostly run in.
EXTENDED_RUN = {"bert": ("infer", "fp16")}
COVERED_BY_GPU_TESTS = ("lenet5",)  # tests/test_gpu_torch.py trains and infers it on torch-cuda
EXTENDED_RUN_DEFAULT = ("train", "bf16")
# Expected seconds of one matrix run (interpreter, torch, CUDA context, 0.5 s warm-up,
# 3 x 0.3 s trials, the worker's teardown); the transformers and ResNet-50 a little more.
RUN_S = {"resnet50": 6.0, "gpt": 6.0, "bert": 6.0}
RUN_S_DEFAULT = 5.0

# ResNet-50 bf16 training, 3 trials of 2 s at 50 Hz: the energy counter against
# integrated power; the same command at --nproc 1 through torchrun (NCCL, DDP) must
# come within 3% of it.
STEADY_ARGS = ("--workload", "resnet50", "--mode", "train", "--precision", "bf16",
               "--batch-size", "256", "--param", "image_size=128", "--trials", "3",
               "--min-trial-s", "2", "--warmup-s", "2", "--sample-hz", "50",
               "--backend", "torch-cuda", "--telemetry", "nvml")
COLLECTIVE_ARGS = ("--workload", "allreduce", "--backend", "torch-cuda", "--nproc", "1",
                   "--param", f"max_bytes={64 << 20}", "--trials", "3", "--min-trial-s", "0.1",
                   "--warmup-s", "0.1", "--telemetry", "nvml")
# Served inference on the GPU, latencies on the device clock (CUDA events). Single-stream
# queries are one sample each (it refuses a batch); the server batches up to 64.
SERVING_ARGS = ("--workload", "mnist", "--backend", "torch-cuda", "--mode", "infer",
                "--warmup-s", "0.5", "--telemetry", "nvml")
SINGLE_STREAM = ("--scenario", "single-stream", "--min-queries", "700")
SERVER_SEARCH = ("--scenario", "server", "--find-max-qps", "--latency-bound-ms", "5",
                 "--max-batch", "64", "--min-queries", "700")
# torch.compile (a cold compile takes tens of seconds) and CUDA graphs on the small gpt,
# each checked against eager by gpubench before timing.
EXEC_RUNS = {("compile", "train"): (CORE, 40.0), ("cuda-graphs", "train"): (CORE, 8.0),
             ("cuda-graphs", "infer"): (EXTENDED, 8.0)}
# --mode generate on the small gpt: eager and CUDA-graph decode, each checked by gpubench
# (cached tokens = the uncached model's) before timing; short trials: a cold interpreter,
# torch and a CUDA context are most of each run.
GENERATE_EXECS = ("eager", "cuda-graphs")
GENERATE_ARGS = ("--batch-size", "16", "--prompt-len", "64", "--output-len", "64",
                 "--backend", "torch-cuda", "--trials", "2", "--min-trial-s", "0.3",
                 "--warmup-s", "0.3", "--telemetry", "nvml")
GENERATE_S = 12.0  # both runs
SUITE_YAML = """\
# gpu-check: two runs of one configuration, each in its own isolated worker, then
# `gpubench compare --by run_id` between them (an A/A comparison).
defaults:
  trials: 3
  warmup_s: 0.5
  min_trial_s: 0.3
  telemetry: nvml
  timeout_s: 30
  repeats: 2
runs:
  - workloads: mnist
    backends: torch-cuda
    modes: train
    precisions: bf16
"""


@dataclass(frozen=True)
class PlannedStep:
    name: str
    tier: str
    expected_s: float  # on an H100, 16 cores: an estimate until a GPU session measures it
    timeout_s: float  # the step never starts with less time left than this
    action: str  # the Checker method that runs it
    args: Tuple = ()
    commands: Tuple[Tuple[str, ...], ...] = ()  # gpubench command lines, for --plan


def _timeout(expected_s: float) -> float:
    """Twice the estimate and at least 10 s more: room for a slow start, never a hang."""
    return max(2 * expected_s, expected_s + 10.0)


def _step(name: str, tier: str, expected_s: float, action: str, args: Tuple = (),
          commands: Sequence[Sequence[str]] = ()) -> PlannedStep:
    return PlannedStep(name, tier, expected_s, _timeout(expected_s), action, tuple(args),
                       tuple(tuple(c) for c in commands))


def run_command(workload: str, mode: str, precision: str) -> Tuple[str, ...]:
    return ("run", "--workload", workload, "--mode", mode, "--precision", precision,
            *RUN_ARGS, *WORKLOAD_ARGS.get(workload, ()))


def exec_command(exec_mode: str, mode: str) -> Tuple[str, ...]:
    precision = "bf16" if mode == "train" else "fp16"
    return ("run", "--workload", "gpt", "--mode", mode, "--precision", precision,
            "--exec", exec_mode, *RUN_ARGS, *WORKLOAD_ARGS["gpt"])


def _matrix_step(tier: str, workload: str, mode: str, precision: str) -> PlannedStep:
    return _step(f"run {workload} {mode} {precision}", tier,
                 RUN_S.get(workload, RUN_S_DEFAULT), "step_run",
                 (f"run {workload} {mode} {precision}", run_command(workload, mode, precision)),
                 [run_command(workload, mode, precision)])


def _exec_step(exec_mode: str, mode: str) -> PlannedStep:
    tier, expected = EXEC_RUNS[(exec_mode, mode)]
    label = f"exec {exec_mode} gpt {mode}"
    return _step(label, tier, expected, "step_exec", (label, exec_command(exec_mode, mode)),
                 [exec_command(exec_mode, mode)])


def generate_command(exec_mode: str) -> Tuple[str, ...]:
    return ("run", "--workload", "gpt", "--mode", "generate", "--precision", "bf16",
            "--exec", exec_mode, *GENERATE_ARGS, *SMALL_TRANSFORMER, "--param", "seq_len=256")


def build_plan(workloads: Iterable[str]) -> List[PlannedStep]:
    """Every step, in the order it runs. `workloads`: the non-collective workloads
    `gpubench list` names (the extended tier runs each one the core does not)."""
    serving = {name: ("run", *SERVING_ARGS, *extra)
               for name, extra in (("single-stream", SINGLE_STREAM), ("server", SERVER_SEARCH))}
    steady = ("run", *STEADY_ARGS)
    ranked = (*steady, "--nproc", "1")
    plan = [
        _step("gpubench env", CORE, 6.0, "step_env", commands=[("env", "--json")]),
        _step("gpubench list", CORE, 4.0, "step_list", commands=[("list", "--json")]),
        _step("reference kernels", CORE, 10.0, "step_kernels"),
        *(_matrix_step(CORE, w, m, p) for w, m, p in CORE_MATRIX),
        _step("steady run: energy counter vs integrated power", CORE, 15.0, "step_steady",
              (steady,), [steady]),
        _step("ranks: --nproc 1 (torchrun, NCCL) vs the steady run", CORE, 15.0,
              "step_ranks", (ranked,), [ranked]),
        _step("serving single-stream", CORE, 8.0, "step_serving",
              ("serving mnist single-stream", serving["single-stream"]), [serving["single-stream"]]),
        *(_exec_step(e, m) for (e, m), (tier, _) in EXEC_RUNS.items() if tier == CORE),
        # the extended tier, most telling first
        _step("pytest -m gpu", EXTENDED, 50.0, "step_pytest"),
        _step("serving server --find-max-qps", EXTENDED, 20.0, "step_serving",
              ("serving mnist server --find-max-qps", serving["server"]), [serving["server"]]),
        *(_exec_step(e, m) for (e, m), (tier, _) in EXEC_RUNS.items() if tier == EXTENDED),
        _step("generate gpt eager and cuda-graphs", EXTENDED, GENERATE_S, "step_generate",
              tuple(generate_command(e) for e in GENERATE_EXECS),
              [generate_command(e) for e in GENERATE_EXECS]),
        _step("suite + compare", EXTENDED, 15.0, "step_suite",
              commands=[("suite", "{suite.yaml}", "--devices", "0")]),
        _step("allreduce --nproc 1 to 64 MiB", EXTENDED, 8.0, "step_collective",
              (("run", *COLLECTIVE_ARGS),), [("run", *COLLECTIVE_ARGS)]),
    ]
    for workload in workloads:
        if workload not in (*CORE_WORKLOADS, *COVERED_BY_GPU_TESTS):
            plan.append(_matrix_step(EXTENDED, workload,
                                     *EXTENDED_RUN.get(workload, EXTENDED_RUN_DEFAULT)))
    return plan


# ==========================================================================================
# --plan: the table, and every command line through gpubench's preflight here
# ==========================================================================================
def fits(plan: Sequence[PlannedStep]) -> List[str]:
    """What keeps the plan from fitting, empty when it fits: the core tier's expected
    seconds within CORE_BUDGET_S, and at the expected pace every step starting with its
    timeout left before the deadline (else it would be skipped: exit 3)."""
    problems = []
    core = sum(s.expected_s for s in plan if s.tier == CORE)
    if core > CORE_BUDGET_S:
        problems.append(f"the core tier is expected to take {core:.0f} s (at most "
                        f"{CORE_BUDGET_S:.0f} s)")
    at = 0.0
    for s in plan:
        if at + s.timeout_s > DEADLINE_S - FINAL_RESERVE_S:
            problems.append(f"{s.name!r} would start at {at:.0f} s with less than its "
                            f"{s.timeout_s:.0f} s timeout left of {DEADLINE_S:.0f} s")
        at += s.expected_s
    return problems


@contextlib.contextmanager
def cuda_taken_as_available():
    """torch-cuda's availability as on a GPU machine (its other declarations are its own):
    the preflight of a torch-cuda command line then checks what it would check there."""
    from unittest import mock

    from gpubench.backends.torch_backend import TorchBackend

    real = TorchBackend.is_available

    def available(self):
        return (True, "") if self.device_kind == "cuda" else real(self)

    with mock.patch.object(TorchBackend, "is_available", available):
        yield


def check_command(argv: Sequence[str], suite_file: Optional[str] = None) -> Tuple[bool, str]:
    """(valid, what gpubench said) for one command line, checked here without running
    it: `run` through --dry-run; `suite` through its --dry-run; others parsed only."""
    from gpubench.cli import main

    argv = [suite_file if a == "{suite.yaml}" and suite_file else a for a in argv]
    if argv[0] in ("run", "suite"):
        argv = [*argv, "--dry-run"]
    elif argv[0] in ("env", "list"):
        return True, "no run options"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse
            code = exc.code
    refused = [line.strip() for line in out.getvalue().splitlines()  # a suite's runs
               if "unsupported:" in line or "refused:" in line]
    said = refused or (err.getvalue().strip() or out.getvalue().strip()).splitlines()
    return code in (0, None) and not refused, (said[-1] if said else f"exit {code}")


def render_plan(plan: Sequence[PlannedStep], verdicts: Dict[int, List[Tuple[bool, str]]]) -> str:
    lines = [f"{'step':<62} {'tier':<8} {'expect s':>8} {'total s':>8} {'timeout s':>9}  command lines"]
    total = 0.0
    for i, s in enumerate(plan):
        total += s.expected_s
        checked = verdicts.get(i, [])
        said = ("; ".join(("ok" if ok else "REFUSED: " + why) for ok, why in checked)
                if checked else "-")
        lines.append(f"{s.name:<62} {s.tier:<8} {s.expected_s:>8.0f} {total:>8.0f} "
                     f"{s.timeout_s:>9.0f}  {said}")
    core = sum(s.expected_s for s in plan if s.tier == CORE)
    lines.append(f"core tier {core:.0f} s expected (at most {CORE_BUDGET_S:.0f}); all "
                 f"{total:.0f} s expected, deadline {DEADLINE_S:.0f} s (estimates for an H100 "
                 "until a GPU session measures them)")
    return "\n".join(lines)


def check_plan(plan: Sequence[PlannedStep], suite_file: str,
               check: Callable[[Sequence[str], Optional[str]], Tuple[bool, str]] = check_command
               ) -> Tuple[str, List[str]]:
    """The --plan table and the problems found (empty: every command line valid and the
    plan fits)."""
    verdicts: Dict[int, List[Tuple[bool, str]]] = {}
    problems = []
    with cuda_taken_as_available():
        for i, s in enumerate(plan):
            for argv in s.commands:
                ok, said = check(argv, suite_file)
                verdicts.setdefault(i, []).append((ok, said))
                if not ok:
                    problems.append(f"{s.name}: gpubench {' '.join(argv)}: {said}")
    problems += fits(plan)
    return render_plan(plan, verdicts), problems
