"""gpu-check's report: the steps and checks of one session, and summary.md rendered
from them (rewritten after every step, so a kill keeps what was done)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional

from gpu_check_kernels import GEMM_N
from gpu_check_rows import FAIL, LATENCY_STRICT_STEP_S, LATENCY_TOL, PASS, SKIP, Check, _fmt

@dataclass
class Step:
    name: str
    verdict: str
    seconds: float
    detail: str = ""
    expected_s: Optional[float] = None  # the plan's estimate (gpu_check_plan.py)


@dataclass
class Report:
    started_utc: str
    host: str
    deadline_s: float
    machine: Dict[str, Any] = field(default_factory=dict)
    steps: List[Step] = field(default_factory=list)
    checks: List[Check] = field(default_factory=list)
    runs: List[Dict[str, Any]] = field(default_factory=list)  # one table row per run
    kernels: Dict[str, Any] = field(default_factory=dict)
    energy: List[Dict[str, Any]] = field(default_factory=list)
    suite: Dict[str, Any] = field(default_factory=dict)
    tests: Dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0
    state: str = "running"  # running, finished, interrupted

    def add(self, checks: Iterable[Check]) -> None:
        self.checks.extend(checks)

    def counts(self) -> Dict[str, int]:
        counts = {PASS: 0, FAIL: 0, SKIP: 0}
        for c in self.checks:
            counts[c.verdict] = counts.get(c.verdict, 0) + 1
        counts["failed_steps"] = sum(s.verdict == FAIL for s in self.steps)
        return counts

    def skipped_steps(self) -> List[str]:
        """Steps that did not run (the deadline left no room): the check is incomplete."""
        return [s.name for s in self.steps if s.verdict == SKIP]

    def exit_code(self) -> int:
        """1 a check or step failed; 3 nothing failed but a step did not run (a SKIP is
        not a pass); 0 every step ran and passed."""
        counts = self.counts()
        if counts[FAIL] or counts["failed_steps"]:
            return 1
        return 3 if self.skipped_steps() else 0


# ==========================================================================================
# summary.md
# ==========================================================================================
def _md(text: Any) -> str:
    return str("" if text is None else text).replace("|", "\\|").replace("\n", " ")


def render_summary(report: Report) -> str:
    c = report.counts()
    skipped = report.skipped_steps()
    finished = f"exit code {report.exit_code()}" + (
        f" (incomplete: not run for time: {', '.join(skipped)})"
        if report.exit_code() == 3 else "")
    state = {"running": "IN PROGRESS (this file is rewritten after every step)",
             "finished": finished,
             "interrupted": "INTERRUPTED (what finished is below)"}[report.state]
    lines = [f"# gpubench gpu-check: {_md(report.machine.get('gpu_name') or 'GPU')} on {_md(report.host)}",
             "",
             f"Started {report.started_utc}; {report.elapsed_s:.0f} s of a {report.deadline_s:.0f} s "
             f"deadline; {state}.",
             "",
             f"**{c[PASS]} PASS, {c[FAIL]} FAIL, {c[SKIP]} SKIP** "
             f"({c['failed_steps']} step(s) failed)", ""]
    if report.machine:
        lines += ["## Machine", ""]
        lines += [f"- {_md(k)}: {_md(v)}" for k, v in report.machine.items()]
        lines.append("")
    if report.kernels:
        k = report.kernels
        lines += ["## Reference kernels (plain torch, CUDA events, after warm-up)", "",
                  "| kernel | achieved | datasheet / theoretical peak | share |", "| --- | --- | --- | --- |"]
        for name, achieved, peak, unit in (
                (f"bf16 GEMM {GEMM_N}^3 (median of 5x20)", k.get("gemm_tflops"), k.get("peak_bf16_tflops"), "TFLOP/s"),
                ("device copy 1 GiB, read+write bytes (median of 5x20)", k.get("copy_gbs"),
                 k.get("peak_mem_bw_gbs"), "GB/s")):
            share = f"{achieved / peak * 100:.1f}%" if achieved and peak else ""
            lines.append(f"| {name} | {_fmt(achieved, '.1f')} {unit} | {_fmt(peak, '.1f')} {unit} | {share} |")
        lines.append("")
    if report.runs:
        lines += ["## Workload runs (torch-cuda, NVML telemetry; medians over trials)", "",
                  "| run | batch | trials ok | samples/s | MFU | W avg | W limit | energy source | "
                  "mem_bw_source | mem GB/s | latency ratio | clock-event reasons | s |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in report.runs:
            lines.append(
                f"| {_md(r['run'])} | {_md(r.get('batch'))} | {r['trials_ok']} | {_fmt(r['throughput'], '.4g')} "
                f"| {_fmt(r['mfu'], '.3g')} | {_fmt(r['power_w'], '.0f')} | {_fmt(r['power_limit_w'], '.0f')} "
                f"| {_md(r['energy_source'])} | {_md(r['mem_bw_source'])} | {_fmt(r['mem_bw_gbs'], '.4g')} "
                f"| {_fmt(r['latency_ratio'], '.3f')} | {_md(r['reasons'])} | {_fmt(r['seconds'], '.1f')} |")
        lines += ["", f"Latency ratio: p50 step latency (CUDA events) x iterations / trial duration "
                      f"(inference only); checked within {LATENCY_TOL:.0%} where a step takes "
                      f"{LATENCY_STRICT_STEP_S * 1e3:g} ms or more, at most {1 + LATENCY_TOL:g} everywhere.", ""]
    if report.energy:
        lines += ["## Energy: counter against integrated power (steady run)", "",
                  "| trial | window s | counter W | integrated W | diff | samples |",
                  "| --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {f['trial']} | {f['window_s']:.2f} | {f['counter_w']:.1f} | {f['integrated_w']:.1f} "
                  f"| {f['rel_diff'] * 100:+.2f}% | {f['samples']} |" for f in report.energy]
        lines.append("")
    if report.suite:
        lines += ["## Suite and compare", ""]
        lines += [f"- {_md(k)}: {_md(v)}" for k, v in report.suite.items()]
        lines.append("")
    if report.tests:
        lines += ["## Tests", ""]
        lines += [f"- {_md(k)}: {_md(v)}" for k, v in report.tests.items()]
        lines.append("")
    lines += ["## Checks", "", "| verdict | what | check | detail |", "| --- | --- | --- | --- |"]
    order = {FAIL: 0, SKIP: 1, PASS: 2}
    for ch in sorted(report.checks, key=lambda x: order.get(x.verdict, 3)):
        lines.append(f"| {ch.verdict} | {_md(ch.group)} | {_md(ch.name)} | {_md(ch.detail)} |")
    lines += ["", "## Steps", "", "Expected: the plan's estimate for an H100 (gpu_check_plan.py): "
              "replace it with what this table measured.", "",
              "| step | verdict | seconds | expected s | note |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {_md(s.name)} | {s.verdict} | {s.seconds:.1f} | {_fmt(s.expected_s, '.0f')} "
              f"| {_md(s.detail)} |" for s in report.steps]
    lines.append("")
    return "\n".join(lines)
