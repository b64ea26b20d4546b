"""Judging work before doing it: the memory lower bound of a step (models/memory.py)
against what torch really holds, preflight refusing a batch that cannot fit, and
`gpubench suite --dry-run`'s wall-time estimate, size warning and known refusals
(suite/estimate.py)."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import REPO, run_cli, run_cli_here  # run_cli_here: in this process
from nvml_double import fake_nvml_dir, run_python  # noqa: F401  (fixture)
from gpubench.measure.memory_check import DATA_BATCHES, estimate_for
from gpubench.models.memory import activation_footprint, format_bytes
from gpubench.suite.config import parse_suite
from gpubench.suite.estimate import FIXED_COST_S, REFUSAL_S, SERVER_START_S, run_cost

FORK_S = FIXED_COST_S["fork"]  # a run's fixed cost with the default isolation
from gpubench.workloads import all_workloads, resolve_workload
from gpubench.workloads.collectives import OPS as COLLECTIVES

MODEL_WORKLOADS = sorted(set(all_workloads()) - set(COLLECTIVES))  # collectives have no model

TESTS = Path(__file__).resolve().parent
TINY_TRANSFORMER = {"layers": "2", "d_model": "32", "heads": "4", "seq_len": "16", "vocab": "64"}
SMALL = {"resnet50": {"image_size": "32", "num_classes": "10"},  # cheap on a CPU
         "gpt": TINY_TRANSFORMER, "bert": TINY_TRANSFORMER}


def _plugin_env(tmp_path):
    """suite_plugins (test-ok, test-unsupported) plus a backend that is never available."""
    (tmp_path / "gone_plugin.py").write_text(textwrap.dedent("""
        from gpubench.backends import register_backend
        import suite_plugins

        class Gone(suite_plugins.BehaviourBackend):
            name = "test-gone"

            def __init__(self):
                pass

            def is_available(self):
                return False, "its framework is not installed here"

        register_backend("test-gone", Gone)
    """))
    path = os.pathsep.join(filter(None, [str(tmp_path), str(TESTS), os.environ.get("PYTHONPATH")]))
    return {"GPUBENCH_PLUGINS": "suite_plugins,gone_plugin", "PYTHONPATH": path}


def _torch_saved_bytes(workload, batch):
    """Bytes of the distinct tensors torch's autograd saves for the backward pass of one
    training step, leaving out the parameters and the batch itself (data)."""
    import torch
    import torch.nn.functional as F
    from gpubench.backends.torch_model import build_module

    torch.manual_seed(0)
    module = build_module(workload.layers, workload.input_shape).train()
    if workload.input_dtype == "int64":  # token ids
        x = torch.randint(0, 64, (batch, *workload.input_shape))
    else:
        x = torch.randn(batch, *workload.input_shape)
    if workload.task == "language_model":
        y = torch.randint(0, workload.num_outputs, (batch, *workload.input_shape))
        loss_fn = lambda out, y: F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))  # noqa: E731
    elif workload.task == "classification":
        y = torch.randint(0, workload.num_outputs, (batch,))
        loss_fn = F.cross_entropy
    else:
        y = torch.randn(batch, workload.num_outputs)
        loss_fn = F.mse_loss
    skip = {p.untyped_storage().data_ptr() for p in module.parameters()}
    skip |= {x.untyped_storage().data_ptr(), y.untyped_storage().data_ptr()}
    saved = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in skip:
            saved[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = loss_fn(module(x), y)
    loss.backward()
    return sum(saved.values())


def test_mnist_estimate_matches_torch_parameters_and_saved_activations():
    pytest.importorskip("torch")
    from gpubench.backends.torch_model import build_module

    workload = resolve_workload("mnist")
    batch = 32
    est = estimate_for(workload, "train", "fp32", batch, "cpu")
    module = build_module(workload.layers, workload.input_shape)
    param_bytes = sum(p.numel() * p.element_size() for p in module.parameters())
    assert est.params_bytes == param_bytes == (784 * 128 + 128 + 128 * 10 + 10) * 4
    assert est.gradients_bytes == param_bytes
    assert est.optimizer_bytes == 2 * param_bytes  # Adam: two moments
    # torch saves the ReLU output (128) and the log-softmax (10) per sample: exactly the
    # estimate; the few bytes more are nll_loss's scalar total weight.
    actual = _torch_saved_bytes(workload, batch)
    assert est.activations_bytes == batch * (128 + 10) * 4
    assert 0 <= actual - est.activations_bytes <= 64, (actual, est.activations_bytes)
    # Data: the resident batches, float32 inputs and int64 targets.
    assert est.data_bytes == DATA_BATCHES * batch * (784 * 4 + 8)


@pytest.mark.parametrize("name", MODEL_WORKLOADS)
def test_training_estimate_is_a_lower_bound_of_what_torch_saves(name):
    pytest.importorskip("torch")
    workload = resolve_workload(name, SMALL.get(name))
    batch = 4
    est = estimate_for(workload, "train", "fp32", batch, "cpu")
    actual = _torch_saved_bytes(workload, batch)
    assert 0 < est.activations_bytes <= actual
    assert est.activations_bytes >= actual / 3  # a bound that still says something


def test_estimate_terms_follow_mode_precision_and_optimizer():
    mnist = resolve_workload("mnist")
    infer = estimate_for(mnist, "infer", "fp32", 100, "cpu")
    assert infer.gradients_bytes == infer.optimizer_bytes == 0
    assert infer.activations_bytes == 100 * 128 * 4  # the largest layer output
    half = estimate_for(mnist, "infer", "bf16", 100, "cpu")
    assert half.activations_bytes == infer.activations_bytes // 2
    assert half.data_bytes == infer.data_bytes  # float32 inputs on the host
    assert estimate_for(mnist, "infer", "fp16", 100, "cuda").data_bytes == infer.data_bytes // 2
    resnet = resolve_workload("resnet50", SMALL["resnet50"])  # SGD with momentum: one buffer
    train = estimate_for(resnet, "train", "fp32", 2, "cpu")
    assert train.optimizer_bytes == train.params_bytes
    linreg = resolve_workload("linreg")  # plain SGD: none
    assert estimate_for(linreg, "train", "fp32", 2, "cpu").optimizer_bytes == 0
    assert activation_footprint(linreg.layers, linreg.input_shape).saved_elems_per_sample == 1
    assert format_bytes(392 * 2**30) == "392.0 GiB" and format_bytes(512) == "512 B"


# `gpubench ARGS` (the same main() as `python -m gpubench`) in a fresh interpreter that
# then prints, as its last line of stdout, what the command left in the process: the
# frameworks it imported, its peak memory, and the memory of any child it started.
WHAT_IT_DID = textwrap.dedent("""
    import json, resource, sys
    from gpubench.cli import main
    code = main(sys.argv[1:])
    print(json.dumps({
        "imported": [m for m in ("torch", "tensorflow", "onnxruntime") if m in sys.modules],
        # this program's own high-water mark: ru_maxrss keeps the parent's across
        # fork and exec (a pytest process holding TensorFlow: 2.4 GB), VmHWM is the
        # memory map's that exec made
        "peak_rss_kib": int(next(line.split()[1] for line in open("/proc/self/status")
                                 if line.startswith("VmHWM:"))),
        "children_peak_rss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
    sys.exit(code)
""")


def test_run_refuses_a_batch_that_cannot_fit_quickly():
    psutil = pytest.importorskip("psutil")
    # The inputs alone (DATA_BATCHES float32 batches of 784) take twice the machine's RAM
    # and swap: more than is available anywhere, and (before the check) an allocation
    # the kernel refuses at once rather than a machine driven into paging.
    ram = psutil.virtual_memory().total + psutil.swap_memory().total
    batch = 2 * ram // (DATA_BATCHES * 784 * 4) + 1
    proc = subprocess.run([sys.executable, "-c", WHAT_IT_DID, "run", "-w", "mnist", "-b",
                           "torch-cpu", "--batch-size", str(batch), "--out",
                           "/nonexistent-never-written"],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpubench: error: "), proc.stderr
    assert f"batch {batch} of mnist (train fp32) needs at least" in lines[0]
    assert "params 397.5 KiB" in lines[0] and "activations" in lines[0]
    assert "of RAM available: lower the batch size" in lines[0]
    # "Quickly": refused in preflight, whatever this machine's speed: no framework was
    # imported, no worker started, nothing of the batch allocated (it is > the RAM).
    (did,) = [__import__("json").loads(line) for line in proc.stdout.splitlines()]
    assert did["imported"] == []
    assert did["children_peak_rss_kib"] == 0  # no child process ran
    assert did["peak_rss_kib"] < 2**20  # KiB: under 1 GiB, far below even one batch


def test_suite_row_of_a_batch_that_cannot_fit_is_unsupported(tmp_path):
    psutil = pytest.importorskip("psutil")
    ram = psutil.virtual_memory().total + psutil.swap_memory().total
    batch = 2 * ram // (DATA_BATCHES * 784 * 4) + 1
    config = tmp_path / "huge.yaml"
    config.write_text(textwrap.dedent(f"""\
        defaults: {{trials: 2, warmup_s: 0.05, min_trial_s: 0.05, telemetry: none}}
        runs:
          - {{workloads: mnist, backends: torch-cpu, batch_sizes: [{batch}]}}
          - {{workloads: linreg, backends: test-ok}}
        """))
    proc = run_cli("suite", str(config), "--out", str(tmp_path / "out"), "-q", timeout=300,
                   env_extra=_plugin_env(tmp_path))
    assert proc.returncode == 0, (proc.stdout, proc.stderr)  # unsupported is not a failure
    import pandas as pd

    trials = pd.read_csv(Path(proc.stdout.strip().splitlines()[-1]) / "trials.csv")
    huge = trials[trials["workload"] == "mnist"]
    assert list(huge["status"]) == ["unsupported"]
    assert f"batch {batch} of mnist (train fp32) needs at least" in huge["error"].iloc[0]
    assert set(trials.loc[trials["workload"] == "linreg", "status"]) == {"ok"}


def _runs(text):
    return parse_suite(__import__("yaml").safe_load(text), Path("t.yaml"))


def test_run_cost_counts_start_warmup_trials_and_the_target_cap():
    (fixed,) = _runs("runs:\n  - {workloads: mnist, backends: torch-cpu, trials: 5, "
                     "warmup_s: 1, min_trial_s: 2}\n")
    assert run_cost(fixed).seconds == run_cost(fixed).max_seconds == FORK_S + 1 + 10
    fresh = fixed.with_values(isolation="fresh")  # each worker a fresh interpreter
    assert run_cost(fresh).seconds == FIXED_COST_S["fresh"] + 1 + 10
    target, trial_capped = _runs(textwrap.dedent("""\
        defaults: {trials: 5, warmup_s: 1, min_trial_s: 1, target_rel_ci: 0.01}
        runs:
          - {workloads: mnist, backends: torch-cpu, max_time_s: 60}
          - {workloads: lenet5, backends: torch-cpu, max_time_s: 600}
        """))
    cost = run_cost(target)
    assert cost.seconds == FORK_S + 1 + 5
    assert cost.max_seconds == FORK_S + 1 + 61  # the last trial may end past the cap
    assert run_cost(trial_capped).max_seconds == FORK_S + 1 + 100  # max_trials x 1 s
    assert run_cost(target, timeout_override=30).max_seconds == 30  # never past the timeout


# The largest batch a suite accepts (the integer kinds stop at 2**31 - 1): memory refuses it.
BIG_BATCH = 2**31 - 1


def test_dry_run_flags_known_refusals_and_estimates_wall_time(tmp_path):
    config = tmp_path / "plan.yaml"
    config.write_text(textwrap.dedent("""\
        defaults: {trials: 3, warmup_s: 2, min_trial_s: 1}
        runs:
          - workloads: mnist
            backends: [test-ok, test-unsupported, test-gone]
          - workloads: mnist
            backends: test-ok
            batch_sizes: [BIG]
          - workloads: mnist
            backends: onnxruntime-cpu
            modes: train
          - workloads: mnist
            backends: torch-cpu
            precisions: fp16
        """).replace("BIG", str(BIG_BATCH)))
    proc = run_cli("suite", str(config), "--dry-run", "--devices", "0,1",
                   env_extra=_plugin_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.strip().splitlines()
    assert out[0] == "mnist test-ok train fp32 batch default"  # nothing known against it
    assert out[1].startswith("mnist test-unsupported train fp32 batch default  unsupported: "
                             "precision fp32 is not supported on test-unsupported")
    assert out[2] == ("mnist test-gone train fp32 batch default  unsupported: backend test-gone "
                      "is not available: its framework is not installed here")
    assert out[3].startswith(f"mnist test-ok train fp32 batch {BIG_BATCH}  unsupported: batch {BIG_BATCH} "
                             "of mnist (train fp32) needs at least")
    assert "onnxruntime-cpu runs inference only" in out[4]
    assert "precision fp16 is not supported on torch-cpu" in out[5]
    assert out[-1] == f"6 runs from {config}, 5 of them unsupported here"
    # One run measured (its fork server's start, its fixed cost, 2 s warm-up, 3 trials x
    # 1 s), five refused (2 s each).
    total = SERVER_START_S + FORK_S + 2 + 3 + 5 * REFUSAL_S
    err = proc.stderr.splitlines()
    assert err[0] == f"estimated wall time: {total:.0f} s; over 2 devices: {total / 2:.0f} s"
    assert "warning" not in proc.stderr


def test_dry_run_judges_without_importing_a_framework(tmp_path):
    config = tmp_path / "plan.yaml"
    config.write_text("runs:\n  - {workloads: [mnist, lenet5], backends: [torch-cpu, "
                      "onnxruntime-cpu, tf-cpu, torch-cuda], modes: [train, infer], "
                      "precisions: [fp32, fp16]}\n")
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from gpubench.suite.plan import plan_suite
        from gpubench.suite.estimate import estimate_suite
        est = estimate_suite(plan_suite(Path({str(config)!r}), Path("unused")))
        loaded = [m for m in ("torch", "tensorflow", "onnxruntime", "tensorrt") if m in sys.modules]
        print(est.refused_runs, loaded)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    refused, loaded = proc.stdout.strip().split(" ", 1)
    assert loaded == "[]"
    assert int(refused) >= 4 + 4  # onnxruntime-cpu train (4) and torch-cpu fp16 (4) at least


def test_dry_run_warns_about_a_large_suite(tmp_path):
    many = tmp_path / "many.yaml"
    many.write_text("runs:\n  - {workloads: linreg, backends: torch-cpu, batch_sizes: [%s]}\n"
                    % ", ".join(str(b) for b in range(1, 502)))
    proc = run_cli_here("suite", str(many), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == f"501 runs from {many}"
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("gpubench: warning: ")]
    assert len(warnings) == 1 and "a large suite: 501 runs" in warnings[0]
    long = tmp_path / "long.yaml"  # two runs, but each asks for 10 x 1 h of trials
    long.write_text("runs:\n  - {workloads: linreg, backends: torch-cpu, batch_sizes: [1, 2], "
                    "trials: 10, min_trial_s: 3600, timeout_s: 100000}\n")
    proc = run_cli_here("suite", str(long), "--dry-run")
    assert "gpubench: warning: a large suite: 2 runs, about 20.0 h on one device" in proc.stderr
    assert "estimated wall time: 20.0 h" in proc.stderr
    small = run_cli_here("suite", str(long), "--dry-run", "--devices", "0,1")
    assert "warning" not in small.stderr and "over 2 devices: 10.0 h" in small.stderr


def test_cuda_backends_are_checked_against_the_gpu_total_from_nvml(fake_nvml_dir):
    # batch 300000 of the MNIST MLP needs ~3.7 GiB: it fits GPU 0 (80 GiB), not GPU 1.
    code = textwrap.dedent("""
        import json
        from types import SimpleNamespace
        from gpubench.errors import Unsupported
        from gpubench.measure.memory_check import check_memory
        from gpubench.workloads import resolve_workload
        mnist, cuda = resolve_workload("mnist"), SimpleNamespace(device_kind="cuda")
        out = []
        for device in (0, 1):
            try:
                check_memory(mnist, cuda, "train", "fp32", 300000, device)
                out.append("fits")
            except Unsupported as exc:
                out.append(str(exc))
        print(json.dumps(out))
    """)
    fits, refused = run_python(fake_nvml_dir, code, GPUS=2, MEM_TOTAL_BYTES_1=2**30)
    assert fits == "fits"
    assert refused.startswith("batch 300000 of mnist (train fp32) needs at least 3.")
    assert refused.endswith("but GPU 1 (NVIDIA Fake H100) has 1.0 GiB in all: lower the batch size")
    # Where NVML cannot tell, the check is left to the framework's own allocation.
    unknown = run_python(fake_nvml_dir, code, GPUS=2, MEM_TOTAL_BYTES_1=2**30, UNSUPPORTED_1="memory")
    assert unknown == ["fits", "fits"]


def test_dry_run_json_carries_the_estimate(tmp_path):
    config = tmp_path / "plan.yaml"
    config.write_text("defaults: {trials: 2, warmup_s: 1, min_trial_s: 1}\nruns:\n"
                      "  - {workloads: mnist, backends: [torch-cpu, onnxruntime-cpu], modes: train}\n")
    proc = run_cli_here("suite", str(config), "--dry-run", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    import json

    estimate = json.loads(proc.stdout)["estimate"]
    assert estimate["runs"] == 2 and estimate["refused_runs"] == 1
    assert estimate["seconds"] == SERVER_START_S + FORK_S + 1 + 2 + REFUSAL_S
    (refused,) = estimate["refused"]
    assert refused["run"] == "mnist onnxruntime-cpu train fp32 batch default"
    assert refused["status"] == "unsupported" and "inference only" in refused["reason"]
