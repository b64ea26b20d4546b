"""--mode generate under the `throughput` scenario: static batches back to back. Each
iteration of the protocol (measure/protocol.py: warm-up, calibration, trials, the CI
target, throttle-aware trials) generates a batch of batch_size prompts of prompt_len
tokens, then output_len greedy tokens each (measure/generation/batches.py), through the
step's generation engine, checked against the uncached model before anything is timed.

A trial's row, from its batches' device seconds (CUDA events on a GPU):
- ttft/tpot/itl percentiles over its requests (a batch's TTFT is its prefill; TPOT its
  decode time over output_len - 1; each decode step an ITL of every request);
- output_tokens_per_s: the tokens decode steps produced over their seconds (batch x
  (output_len - 1) a batch): decode's rate, the one its bandwidth bound caps;
  prefill_tokens_per_s: prompt tokens over prefill seconds;
- tokens_per_s and throughput_samples_per_s: output tokens and requests over the
  trial's wall time (host overhead between calls included);
- tflops and mfu over the device seconds (prefill and decode FLOPs of the description);
- energy_j_per_output_token: the trial's energy over every output token it made;
- the description's work (plan.py) and decode_bound_tokens_per_s: the device's peak
  memory bandwidth (peaks.py's datasheet figure, else NVML's bus width x clock) over the
  bytes a decoded token reads; empty where neither is known (a CPU).
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any, Dict, List, Optional, Tuple

from gpubench.measure.generation.batches import Generation, GenerationBatches
from gpubench.measure.generation.engine import GENERATE_CAPABILITY
from gpubench.measure.generation.latency import latency_columns
from gpubench.measure.generation.plan import GenerationWork, generation_work, resolved_lengths
from gpubench.measure.protocol import TrialResult, measure
from gpubench.measure.scenarios.base import RecompileWatch, Scenario, ScenarioContext
from gpubench.measure.thermal import throttle_warnings
from gpubench.peaks import peak_mem_bw_gbs
from gpubench.results.schema import MEASURED_COLUMNS
from gpubench.telemetry.contention import ContentionWatch

# telemetry's columns come with each trial's own (as throughput's)
GENERATE_COLUMNS = tuple(c for c in MEASURED_COLUMNS if c not in ("status", "error"))


def peak_bandwidth_gbs(ctx: ScenarioContext) -> Tuple[Optional[float], Optional[str]]:
    """The device's peak memory bandwidth and where it came from."""
    if ctx.step.device.kind != "cuda":
        return None, None
    datasheet = peak_mem_bw_gbs(ctx.step.device.name)
    if datasheet:
        return datasheet, "datasheet (peaks.py)"
    nvml = (ctx.sampler.environment().get("gpu") or {}).get("peak_mem_bw_gbs")
    return (nvml, "NVML bus width x memory clock") if nvml else (None, None)


class GenerateThroughputScenario(Scenario):
    name = "throughput"
    needs = frozenset({GENERATE_CAPABILITY})
    columns = GENERATE_COLUMNS

    def run(self, ctx: ScenarioContext) -> Tuple[str, Dict[str, Any]]:
        req = ctx.request
        prompt_len, output_len = resolved_lengths(req, ctx.workload)
        batch = ctx.batch_size
        engine = ctx.step.generation_engine(batch, prompt_len + output_len)  # checked here
        loop = GenerationBatches(ctx.step, engine, batch, prompt_len, output_len,
                                 int(ctx.workload.num_outputs), req.seed)
        work = generation_work(ctx.workload, req.precision, batch, prompt_len, output_len)
        bandwidth, bandwidth_source = peak_bandwidth_gbs(ctx)
        watch = ContentionWatch(ctx.sampler, on_gpu=ctx.step.device.kind == "cuda")

        graphs = RecompileWatch(ctx.step)

        def progress(event: str, **fields: Any) -> None:
            if event == "trial":
                watch.expect(fields.get("seconds_per_iteration"))
                loop.take()  # warm-up's or a discarded trial's batches
                graphs.before_trial()
            ctx.progress(event, **fields)

        def on_trial(result: TrialResult) -> None:
            graphs.after_trial(result.trial)
            row = self.trial_row(ctx, result, loop.take(), work, engine, bandwidth,
                                 prompt_len, output_len)
            row["contended"] = watch.trial_verdict(result.trial, result.iterations,
                                                   result.duration_s)
            ctx.emit(row)

        protocol = replace(req.protocol, record_latency=False)
        calibration, stop = measure(loop, protocol, on_trial, watch, progress, ctx.ranks)
        compiled = graphs.record()
        return stop, {"calibration": asdict(calibration), "contention": watch.record(),
                      "generation": {**engine.facts(), "prompt_len": prompt_len,
                                     "output_len": output_len, "batch": batch,
                                     "peak_mem_bw_gbs": bandwidth,
                                     "peak_mem_bw_source": bandwidth_source,
                                     "timing": "device seconds of each call (CUDA events on a "
                                               "GPU, the host clock on the CPU)"},
                      **compiled,
                      "warnings": watch.warnings() + throttle_warnings(calibration.throttle)
                      + compiled.get("warnings", [])}

    @staticmethod
    def trial_row(ctx: ScenarioContext, result: TrialResult, generations: List[Generation],
                  work: GenerationWork, engine: Any, bandwidth: Optional[float],
                  prompt_len: int, output_len: int) -> Dict[str, Any]:
        batch = ctx.batch_size
        # every request of a batch has its times (one object each batch: read only)
        requests = [t for g in generations for t in [g.request_times()] * batch]
        prefill_s = sum(g.prefill_s for g in generations)
        decode_s = sum(sum(g.decode_s) for g in generations)
        decode_tokens = batch * sum(len(g.decode_s) for g in generations)
        output_tokens = batch * output_len * len(generations)
        flops = (work.prefill_flops * len(generations)
                 + work.decode_flops_per_token * decode_tokens)
        device_s = prefill_s + decode_s
        tflops = flops / device_s / 1e12 if device_s > 0 else None
        output_rate = decode_tokens / decode_s if decode_s > 0 else None
        row: Dict[str, Any] = {
            "trial": result.trial, "iterations": result.iterations,
            "samples": len(requests), "requests": len(requests),
            "duration_s": result.duration_s,
            "throughput_samples_per_s": len(requests) / result.duration_s,
            "tokens_per_s": output_tokens / result.duration_s,
            "tflops": tflops,
            "mfu": tflops / ctx.peak_tflops if tflops is not None and ctx.peak_tflops else None,
            "peak_mem_bytes": ctx.step.peak_mem_bytes(), "compile_s": engine.compile_s,
            # the tokens matched the uncached model's before timing (else no trial ran)
            "accuracy_ok": True if getattr(engine, "check", None) else None,
            "output_tokens_per_s": output_rate,
            "prefill_tokens_per_s": (batch * prompt_len * len(generations) / prefill_s
                                     if prefill_s > 0 else None),
            "kv_cache_bytes": engine.kv_cache_bytes, "prefill_flops": work.prefill_flops,
            "decode_flops_per_token": work.decode_flops_per_token,
            "decode_bytes_per_token": work.decode_bytes_per_token,
            "decode_bound_tokens_per_s": work.bound_tokens_per_s(bandwidth),
            **latency_columns(requests),
        }
        row.update(result.telemetry)
        row.update(result.thermal)
        if row.get("mem_bw_gbs") is None and output_rate is not None:
            # no measured bandwidth: the bytes decode reads, over decode's seconds
            row.update(mem_bw_gbs=work.decode_bytes_per_token * output_rate / 1e9,
                       mem_bw_source="analytic")
        energy = row.get("energy_j")
        if energy:
            row["samples_per_joule"] = len(requests) / energy
            row["energy_j_per_output_token"] = energy / output_tokens
        return row
