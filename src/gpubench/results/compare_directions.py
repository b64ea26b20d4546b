"""Which way is better, per comparable metric (no imports: the CLI parser reads it
without loading pandas). energy_j_per_sample is derived (energy_j / samples) when
results are read; energy_j is per trial, so it is only fair between runs of the same
calibrated trial length."""

HIGHER, LOWER = "higher", "lower"
DIRECTIONS = {
    "throughput_samples_per_s": HIGHER,
    "tokens_per_s": HIGHER,
    "tflops": HIGHER,
    "mfu": HIGHER,
    "samples_per_joule": HIGHER,
    "mem_bw_gbs": HIGHER,
    "latency_p50_ms": LOWER,
    "latency_p90_ms": LOWER,
    "latency_p99_ms": LOWER,
    "energy_j": LOWER,
    "energy_j_per_sample": LOWER,
    "peak_mem_bytes": LOWER,
    # time-to-accuracy runs: one value a run, on its last epoch row
    "time_to_accuracy_s": LOWER,
    "energy_to_accuracy_j": LOWER,
    # runs of ranks (--nproc): the whole run's trial; collectives: per message size
    "global_throughput_samples_per_s": HIGHER,
    "global_energy_j": LOWER,
    "busbw_gbs": HIGHER,
    "algbw_gbs": HIGHER,
    # the serving scenarios: latency with queueing (early-stopping bounds), the rate
    # served, a --find-max-qps search's result (one value a run), energy per query
    "latency_p999_ms": LOWER,
    "latency_mean_ms": LOWER,
    "achieved_qps": HIGHER,
    "max_qps": HIGHER,
    "energy_j_per_query": LOWER,
    # --mode generate's server: requests a second within both token bounds, and a
    # --find-max-qps search's result on them (one value a run)
    "goodput_rps": HIGHER,
    "max_goodput_qps": HIGHER,
    # --mode generate: token latencies, decode's and prefill's rates, energy a token
    "ttft_p50_ms": LOWER,
    "ttft_p99_ms": LOWER,
    "tpot_p50_ms": LOWER,
    "tpot_p99_ms": LOWER,
    "itl_p50_ms": LOWER,
    "itl_p99_ms": LOWER,
    "output_tokens_per_s": HIGHER,
    "prefill_tokens_per_s": HIGHER,
    "energy_j_per_output_token": LOWER,
}
METRICS = tuple(DIRECTIONS)  # the first is the default
