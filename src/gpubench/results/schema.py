"""Result schema: the columns of trials.csv, summary.csv and samples.csv.

The schema version is kept apart from the package version: it changes only when the
files change, and readers migrate older versions step by step (results/reader.py).

History:
  1 (gpubench 0.1): first version. trials.csv with identity, environment and measured
    columns (units in the names); summary.csv one row per configuration; run.json.
"""

SCHEMA_VERSION = 1

IDENTITY_COLUMNS = (
    "run_id", "workload", "backend", "mode", "precision", "batch_size", "params",
    "device_index", "device_name", "device_uuid",
)
ENVIRONMENT_COLUMNS = (
    "driver_version", "cuda_version", "cudnn_version", "framework", "framework_version",
    "gpubench_version", "schema_version", "host",
)
MEASURED_COLUMNS = (
    "trial", "iterations", "samples", "duration_s", "throughput_samples_per_s",
    "latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "tflops", "mfu",
    "peak_mem_bytes", "power_avg_w", "energy_j", "energy_source", "samples_per_joule",
    "gpu_util_pct", "mem_util_pct", "sm_clock_mhz", "mem_bw_gbs", "mem_bw_source",
    "temp_c", "throttled",
    "loss",  # training loss after the trial's last step: a broken step shows as flat loss
    "status", "error",
)
TRIAL_COLUMNS = IDENTITY_COLUMNS + ENVIRONMENT_COLUMNS + MEASURED_COLUMNS

# Columns that identify a configuration within one run (summary rows group by these).
CONFIG_COLUMNS = ("run_id", "workload", "backend", "mode", "precision", "batch_size",
                  "params", "device_index", "device_name")
TEXT_COLUMNS = ("run_id", "workload", "backend", "mode", "precision", "params",
                "device_name", "device_uuid", "driver_version", "cuda_version",
                "cudnn_version", "framework", "framework_version", "gpubench_version",
                "host", "energy_source", "mem_bw_source", "status", "error")

STATUSES = ("ok", "failed", "timeout", "unsupported")

# Summary statistics: full description for these, medians for the rest.
DESCRIBED_METRICS = ("throughput_samples_per_s", "latency_p50_ms")
MEDIAN_METRICS = (
    "latency_p90_ms", "latency_p99_ms", "tflops", "mfu", "peak_mem_bytes", "power_avg_w",
    "energy_j", "samples_per_joule", "gpu_util_pct", "mem_util_pct", "sm_clock_mhz",
    "mem_bw_gbs", "temp_c", "loss",
)
STAT_NAMES = ("median", "iqr", "mean", "std", "cv", "ci_low", "ci_high")

RUN_FILES = ("trials.csv", "summary.csv", "run.json")
