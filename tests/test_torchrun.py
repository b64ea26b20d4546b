"""The torchrun launcher on the CPU (gloo): `gpubench run --nproc 2` trains the MNIST
MLP data-parallel (DDP) with one row per rank and the same weights on every rank after
training; a rank that crashes or hangs makes the run one failed or timeout row, and
nothing of the run is left running."""

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pandas as pd
import psutil
import pytest

import suite_plugins  # noqa: F401 (registers the test-* backends in this process)
from conftest import PLUGIN_ENV, run_cli_here
from gpubench.errors import UserError
from gpubench.launch import make_launcher, run_one
from gpubench.launch.torchrun import first_failure, free_port
from gpubench.measure.protocol import ProtocolConfig
from gpubench.measure.request import RunRequest, scenario_for
from gpubench.results.reader import read_trials
from gpubench.results.scaling import scaling_efficiency
from gpubench.workloads.collectives import bus_factor

pytest.importorskip("torch")

FAST = ProtocolConfig(trials=2, warmup_s=0.05, min_trial_s=0.05)
RANK_WORKER = "gpubench.launch.rank_worker"


@pytest.fixture
def tagged(monkeypatch):
    """Test backends in the ranks, and a tag in every process the test starts (torchrun
    and the ranks inherit it), by which leftovers are found."""
    tag = uuid.uuid4().hex
    for name, value in PLUGIN_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("GPUBENCH_TEST_TAG", tag)
    return tag


def _left_behind(tag, deadline_s=60.0):
    """The command lines of the tagged processes still running once the deadline has
    passed (none: at once): processes killed a moment ago may still need the CPU to die."""
    import time

    until = time.monotonic() + deadline_s
    while (found := _tagged(tag)) and time.monotonic() < until:
        time.sleep(0.05)
    return found


def _tagged(tag):
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if proc.info["cmdline"] and proc.environ().get("GPUBENCH_TEST_TAG") == tag \
                    and proc.pid != os.getpid() and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(" ".join(proc.info["cmdline"]))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def test_nproc_2_trains_mnist_with_ddp_rows_per_rank_and_equal_weights(tmp_path):
    # the real command's main(), in this process (its ranks are processes of their own)
    result = run_cli_here("run", "-w", "mnist", "-b", "torch-cpu", "--nproc", "2", "--trials",
                          "2", "--warmup-s", "0.05", "--min-trial-s", "0.05", "--telemetry",
                          "none", "--out", str(tmp_path), "--quiet")
    assert result.returncode == 0, result.stderr
    folder = Path(result.stdout.strip().splitlines()[0])
    trials = pd.read_csv(folder / "trials.csv")
    assert sorted(trials["rank"]) == [0, 0, 1, 1]
    assert set(trials["world_size"]) == {2} and set(trials["status"]) == {"ok"}
    assert set(trials["strategy"]) == {"ddp"}
    # every trial timed on rank 0's clock: both ranks' rows of a trial agree on it
    per_trial = trials.groupby("trial")
    assert (per_trial["duration_s"].nunique() == 1).all()
    assert (per_trial["iterations"].nunique() == 1).all()
    # the whole run's samples/s, on every rank's row of the trial; per GPU: its own
    whole = per_trial["samples"].sum() / per_trial["duration_s"].first()
    for trial, rows in per_trial:
        assert rows["global_throughput_samples_per_s"].tolist() == pytest.approx(
            [whole[trial]] * 2)
        assert rows["throughput_samples_per_s"].tolist() == pytest.approx(
            (rows["samples"] / rows["duration_s"]).tolist())
    assert trials["global_energy_j"].isna().all()  # --telemetry none: nothing to add up
    meta = json.loads((folder / "run.json").read_text())
    assert meta["distributed"] == {"world_size": 2, "strategy": "ddp", "applied": "ddp",
                                   "process_group_backend": "gloo"}
    ranks = meta["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1]
    digests = [r["params_sha256"] for r in ranks]
    # DDP's broadcast: the same start; a real all-reduce of different batches' gradients:
    # the same end, and not the start
    assert digests[0]["start"] == digests[1]["start"]
    assert digests[0]["end"] == digests[1]["end"] != digests[0]["start"]
    # each rank trained on its own batches: their losses differ
    assert ranks[0]["loss"]["first_step"] != ranks[1]["loss"]["first_step"]


def _ranked(tmp_path, backend, **kw):
    return RunRequest("linreg", backend, protocol=FAST, telemetry="none", world_size=2,
                      strategy="ddp", out_dir=tmp_path, **kw)


def test_a_crashing_and_a_hanging_rank_in_a_suite_are_one_failed_and_one_timeout_row(
        tmp_path, tagged):
    """Beside them, an FSDP run of a tiny gpt (its LM head tied to the token embedding):
    its rows intact, its weights equal on both ranks after training."""
    config = tmp_path / "ranks.yaml"
    config.write_text("""defaults:
  trials: 2
  warmup_s: 0.05
  min_trial_s: 0.05
  telemetry: none
  timeout_s: 600
runs:
  - workloads: gpt
    backends: torch-cpu
    params: {layers: 2, d_model: 32, heads: 4, seq_len: 16, vocab: 64}
    nprocs: 2
    strategy: fsdp
  - workloads: linreg
    backends: test-rank1-raise
    nprocs: 2
  - workloads: linreg
    backends: test-rank1-hang
    nprocs: 2
    timeout_s: 6
""")
    proc = run_cli_here("suite", str(config), "--out", str(tmp_path / "out"), "-q",
                        env_extra=PLUGIN_ENV)
    assert proc.returncode == 4, proc.stderr
    suite = Path(proc.stdout.splitlines()[0])
    trials = read_trials(suite / "trials.csv")
    by_backend = {b: g for b, g in trials.groupby("backend")}
    fsdp = by_backend["torch-cpu"]  # the other run's rows are intact
    assert list(fsdp["status"]) == ["ok"] * 4 and sorted(fsdp["rank"]) == [0, 0, 1, 1]
    assert set(fsdp["strategy"]) == {"fsdp"} and (fsdp["throughput_samples_per_s"] > 0).all()
    (run_json,) = (suite / "runs").glob(f"*-{fsdp['run_id'].iloc[0]}/run.json")
    meta = json.loads(run_json.read_text())
    assert meta["distributed"]["applied"] == "fsdp2"  # torch 2.13 has fully_shard
    digests = [r["params_sha256"] for r in meta["ranks"]]
    assert digests[0] == digests[1] and digests[0]["end"] != digests[0]["start"]
    raised = by_backend["test-rank1-raise"]
    assert list(raised["status"]) == ["failed"] and set(raised["world_size"]) == {2}
    error = raised["error"].iloc[0]
    # the first rank to fail, not rank 0, which lost its connection to it a moment later;
    # torchrun's error file keeps the rank's traceback
    assert error.splitlines()[-1].startswith(
        "rank 1 of the run failed: RuntimeError: boom: simulated failure in a trial (then "
        "rank 0: ")
    assert "in run\n" in error
    hang = by_backend["test-rank1-hang"]
    assert list(hang["status"]) == ["timeout"] and set(hang["world_size"]) == {2}
    assert "timed out after 6 s" in hang["error"].iloc[0]
    assert _left_behind(tagged) == []


def test_the_failed_row_names_the_first_failure_not_its_consequences(tmp_path):
    """torchrun's record of failed ranks (torchrun_agent.py) as the launcher reads it: a
    rank killed by a signal (no error file) is never a consequence of another's failure;
    ranks stopped by torchrun (SIGTERM) or that lost their peer raised later."""
    log = tmp_path / "worker.log"
    log.write_text("torchrun: Signal 6 (SIGABRT) received by PID 42\n")
    lost = {"local_rank": 0, "exitcode": 1, "signal": None,
            "message": "RuntimeError: Connection closed by peer", "py_callstack": "tb0"}
    abort = {"local_rank": 1, "exitcode": -6, "signal": "SIGABRT", "message": "",
             "py_callstack": ""}
    error = first_failure({0: lost, 1: abort}, [], log)
    assert error.splitlines() == ["torchrun: Signal 6 (SIGABRT) received by PID 42",
                                  "rank 1 of the run was killed by SIGABRT (exit code -6) "
                                  "(then rank 0: RuntimeError)"]
    boom = {**lost, "local_rank": 1, "message": "ValueError: boom", "py_callstack": "tb1"}
    crashed = [{"event": "crashed", "rank": 1, "t": 10.0}, {"event": "crashed", "rank": 0,
                                                            "t": 10.2}]
    assert first_failure({0: lost, 1: boom}, crashed, log).splitlines() == [
        "tb1", "rank 1 of the run failed: ValueError: boom (then rank 0: RuntimeError)"]
    stopped = {"local_rank": 0, "exitcode": -15, "signal": "SIGTERM", "message": "",
               "py_callstack": ""}
    assert first_failure({0: stopped, 1: boom}, crashed[:1], log).splitlines()[-1] == \
        "rank 1 of the run failed: ValueError: boom (then rank 0: SIGTERM)"
    # a rank that raised and then died of an abort as it exited (gloo, its peer gone):
    # the exception is the cause, from its error file or, without one, its crashed event
    raised_then_aborted = {**abort, "message": "ValueError: boom", "py_callstack": "tb1"}
    assert first_failure({0: stopped, 1: raised_then_aborted}, crashed[:1], log).splitlines() == [
        "tb1", "rank 1 of the run failed: ValueError: boom (then rank 0: SIGTERM, rank 1 "
        "itself: SIGABRT on exit)"]
    said = [{**crashed[0], "error": "ValueError: boom"}]
    assert first_failure({0: stopped, 1: abort}, said, log).splitlines() == [
        "torchrun: Signal 6 (SIGABRT) received by PID 42",
        "rank 1 of the run failed: ValueError: boom (then rank 0: SIGTERM, rank 1 itself: "
        "SIGABRT on exit)"]
    assert first_failure({}, [], log) is None


def test_allreduce_on_gloo_at_2_ranks_on_two_nodes_has_busbw_rows_for_every_size(tmp_path):
    """Two 'nodes' on this machine: two launchers on 127.0.0.1 (nnodes 2, one rank each),
    the allreduce sweep between their ranks; node 0 writes every rank's rows."""
    port = str(free_port())
    args = ["run", "-w", "allreduce", "-b", "torch-cpu", "-p", "max_bytes=16384", "--nproc",
            "1", "--nnodes", "2", "--master-addr", "127.0.0.1", "--master-port", port,
            "--trials", "2", "--warmup-s", "0.01", "--min-trial-s", "0.01", "--telemetry",
            "none", "-q"]
    node1 = subprocess.Popen([sys.executable, "-m", "gpubench", *args, "--node-rank", "1",
                              "--out", str(tmp_path / "node1")], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        node0 = run_cli_here(*args, "--node-rank", "0", "--out", str(tmp_path / "node0"))
        out1, err1 = node1.communicate(timeout=600)
    finally:
        node1.kill()
    assert node0.returncode == 0, node0.stderr
    assert node1.returncode == 0, err1
    assert not (Path(out1.strip()) / "trials.csv").exists()  # node 1's ranks: worker.log only
    folder = Path(node0.stdout.strip().splitlines()[0])
    trials = read_trials(folder / "trials.csv")
    assert set(trials["world_size"]) == {2} and set(trials["status"]) == {"ok"}
    sizes = [8 << i for i in range(12)]  # 8 B to 16 KiB, doubling
    assert sorted(set(trials["message_bytes"])) == sizes
    for (size, rank), rows in trials.groupby(["message_bytes", "rank"]):
        assert len(rows) == 2  # each size's trials, on each rank
    assert set(trials["rank"]) == {0, 1}
    # nccl-tests: algbw = bytes / time of one operation; busbw = algbw x 2(n-1)/n
    algbw = trials["message_bytes"] * trials["iterations"] / trials["duration_s"] / 1e9
    assert trials["algbw_gbs"].tolist() == pytest.approx(algbw.tolist())
    assert trials["busbw_gbs"].tolist() == pytest.approx((algbw * 2 * 1 / 2).tolist())
    assert (trials["busbw_gbs"] > 0).all()
    assert bus_factor("allreduce", 8) == 2 * 7 / 8 and bus_factor("allgather", 8) == 7 / 8
    # a summary row per size: compare and history take the sizes apart
    summary = pd.read_csv(folder / "summary.csv")
    assert sorted(summary["message_bytes"]) == sizes
    assert list(summary["n_trials"]) == [2] * len(sizes)  # each trial once, not per rank
    meta = json.loads((folder / "run.json").read_text())
    assert [(r["rank"], r["local_rank"]) for r in meta["ranks"]] == [(0, 0), (1, 0)]


def test_collective_workloads_need_ranks_and_their_scenario(tmp_path):
    with pytest.raises(UserError, match="runs between ranks: give --nproc N"):
        make_launcher("process").preflight(RunRequest("allreduce", "torch-cpu",
                                                      scenario="collective"))
    with pytest.raises(UserError, match="workload allreduce is a collective: scenario "
                                        "throughput measures models"):
        make_launcher("torchrun").preflight(RunRequest("allreduce", "torch-cpu", world_size=2,
                                                       strategy="ddp"))
    assert scenario_for("allgather", {}, None) == "collective"
    assert scenario_for("mnist", {}, None) == "throughput"


def test_weak_scaling_efficiency_is_throughput_n_over_n_times_throughput_1():
    def row(run_id, world_size, whole, device_index=None):
        return {"run_id": run_id, "workload": "mnist", "backend": "torch-cuda", "mode": "train",
                "precision": "fp32", "batch_size": 64, "params": "hidden=128",
                "scenario": "throughput", "exec": "eager", "world_size": world_size,
                "strategy": "ddp", "environment": "default", "data": "synthetic",
                "device_index": device_index, "device_name": "H100", "status": "ok",
                "throughput_samples_per_s_median": whole / (world_size or 1),
                "global_throughput_samples_per_s_median": whole}
    summary = pd.DataFrame([row("a", 1, 1000.0), row("b", 2, 1900.0, 0), row("b", 2, 1900.0, 1),
                            row("c", 4, 3200.0)]
                           + [row("d", 8, 4000.0, 0) | {"status": "failed"}]
                           + [row("e", None, 500.0)])  # no world size (an old row): left out
    scaling = scaling_efficiency(summary)
    assert scaling["world_size"].tolist() == [1, 2, 4]  # the failed run is left out
    assert scaling["efficiency"].tolist() == pytest.approx([1.0, 0.95, 0.8])
    assert scaling["per_rank_samples_per_s"].tolist() == pytest.approx([1000, 950, 800])
    assert scaling_efficiency(summary[summary["world_size"] != 1]).empty  # no baseline


def test_runs_of_ranks_are_refused_where_they_cannot_run(tmp_path):
    torchrun = make_launcher("torchrun")
    with pytest.raises(UserError, match="started by the torchrun launcher, not the process"):
        make_launcher("process").preflight(_ranked(tmp_path, "torch-cpu"))
    with pytest.raises(UserError, match="give --nproc N"):
        torchrun.preflight(RunRequest("linreg", "torch-cpu"))
    with pytest.raises(UserError, match="cannot run data-parallel"):
        torchrun.preflight(_ranked(tmp_path, "test-ok"))
    with pytest.raises(UserError, match="time-to-accuracy runs in one process"):
        torchrun.preflight(RunRequest("mnist", "torch-cpu", scenario="time-to-accuracy",
                                      target_accuracy=0.9, data="mnist", world_size=2,
                                      strategy="ddp", data_dir=str(tmp_path)))
    with pytest.raises(UserError, match="use one or the other"):
        torchrun.preflight(_ranked(tmp_path, "torch-cpu", processes=2))


def test_resume_counts_a_collective_run_that_swept_its_sizes_as_done(tmp_path):
    """A collective run's rows each carry their message size; the run the suite asked
    for has none, and --resume must still find it done (not sweep it again)."""
    from gpubench.suite.plan import plan_suite, request_for
    from gpubench.suite.config import load_suite
    from gpubench.measure.request import request_identity
    from gpubench.results.schema import trial_columns

    config = tmp_path / "sweep.yaml"
    config.write_text("runs:\n  - workloads: [allreduce, mnist]\n    backends: torch-cpu\n"
                      "    nprocs: 2\n    params: {}\n")
    out = tmp_path / "out"
    folder = out / "20260101T000000Z-host-sweep"
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"kind": "suite", "suite_name": "sweep"}))
    rows = []
    for run in load_suite(config):
        req, _ = request_for(run, folder / "runs" / "x", 0, None)
        identity = request_identity(req)
        if run.workload == "allreduce":
            for size in (8, 16, 32):
                rows += [{**identity, "run_id": "a1", "message_bytes": size, "rank": rank,
                          "trial": 0, "status": "ok", "schema_version": 5} for rank in (0, 1)]
        else:  # a failed run of the MLP is run again
            rows.append({**identity, "run_id": "m1", "rank": 0, "status": "failed",
                         "schema_version": 5})
    pd.DataFrame(rows, columns=list(trial_columns())).to_csv(folder / "trials.csv", index=False)
    plan = plan_suite(config, out, resume=True)
    assert [p.run.workload for p in plan.skipped] == ["allreduce"]
    assert [p.run.workload for p in plan.runs] == ["mnist"]


def test_a_run_of_ranks_on_several_devices_holds_them_all(tmp_path, monkeypatch):
    """`suite --devices 0,1`: plain runs go one per GPU side by side; a run of 2 ranks
    (on GPUs 0 and 1) waits for both and runs alone; ranks that would land outside the
    list are refused before anything runs."""
    import threading
    import time

    from gpubench.launch.base import LaunchResult, Launcher
    from gpubench.suite import executor, plan as suite_plan

    spans, lock = [], threading.Lock()

    class Recording(Launcher):
        name, isolated = "recording", False

        def preflight(self, req):
            pass

        def launch(self, req, timeout_s=None, progress=None, on_start=lambda i: None):
            os.makedirs(req.folder, exist_ok=True)
            start = time.monotonic()
            time.sleep(0.3)
            with lock:
                spans.append((req.world_size, req.device_index, start, time.monotonic()))
            return LaunchResult("refused", "recorded", "unsupported")

    monkeypatch.setattr(executor, "make_launcher", lambda *a, **k: Recording())
    config = tmp_path / "devs.yaml"
    config.write_text("runs:\n  - workloads: linreg\n    backends: torch-cpu\n"
                      "    batch_sizes: [8, 16, 32, 64]\n"
                      "  - workloads: linreg\n    backends: torch-cpu\n    nprocs: 2\n")
    plan = suite_plan.plan_suite(config, tmp_path / "out")
    suite_plan.check_rank_devices(plan, [0, 1])
    suite = executor.open_suite_folder(plan, tmp_path / "out", {})
    executor.execute_suite(plan, suite, [0, 1])
    ranked = [s for s in spans if s[0] == 2]
    plain = [s for s in spans if s[0] == 1]
    assert len(ranked) == 1 and len(plain) == 4 and ranked[0][1] == 0
    assert {s[1] for s in plain} == {0, 1}  # side by side
    _, _, start, end = ranked[0]
    assert all(e <= start or s >= end for _, _, s, e in plain)  # nothing beside the ranks
    with pytest.raises(UserError, match=r"its 2 ranks run on GPUs 0-1, and --devices 0,2 "
                                        r"leaves out 1"):
        suite_plan.check_rank_devices(plan, [0, 2])


def test_fsdp2_shards_whole_layers_and_leaves_tied_parameters_to_the_whole():
    """A layer's forward gathers its parameters; a tied head uses the embedding's matrix
    without holding it, so neither may be sharded alone (the ranks would then mix a
    sharded and a whole tensor)."""
    from gpubench.backends.torch_model import TiedLMHead, TokenEmbedding, build_module
    from gpubench.backends.torch_parallel import shardable_layers
    from gpubench.workloads import resolve_workload

    tiny = {"layers": "2", "d_model": "32", "heads": "4", "seq_len": "16", "vocab": "64"}
    for name in ("gpt", "bert", "mnist"):
        workload = resolve_workload(name, tiny if name != "mnist" else {})
        model = build_module(workload.layers, workload.input_shape)
        layers = list(model.children())
        sharded = shardable_layers(model)
        kinds = {type(m) for m in sharded}
        if name == "gpt":  # tied: embedding and head stay with the whole model
            assert TokenEmbedding not in kinds and TiedLMHead in {type(m) for m in layers}
        if name == "bert":  # untied: the embedding is a layer like the others
            assert TokenEmbedding in kinds
        holding = [m for m in layers if any(True for _ in m.parameters())]
        shared = 2 if name == "gpt" else 0  # the embedding and the head that borrows it
        assert len(sharded) == len(holding) - (1 if shared else 0) > 1
