"""`gpubench suite --executor slurm` against a real one-node Slurm (tools/slurm/up.sh:
munged, MariaDB + slurmdbd, slurmctld, slurmd, started here by the session fixture and
reused when already up; skipped, with the reason, only where the Slurm packages are not
installed: `make slurm-install`). Two shards through Slurm match the unsharded suite; a
task cancelled mid-run (scancel) leaves readable files and --resume resubmits only it;
ranks (--nproc 2) start through srun on gloo; bad input is one line, exit 2, nothing
submitted."""

import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import PLUGIN_ENV, REPO, run_cli_here
from gpubench.results.compare_load import read_input
from gpubench.results.reader import read_trials

DAEMONS = ("munged", "slurmctld", "slurmd", "slurmdbd", "sbatch", "sacct", "mariadbd")
IDENT = ["workload", "backend", "mode", "batch_size"]


@pytest.fixture(scope="session")
def slurm():
    missing = [tool for tool in DAEMONS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"the Slurm packages are not installed here (no {', '.join(missing)}); "
                    "`make slurm-install` installs them")
    if os.geteuid() != 0:
        pytest.skip("tools/slurm/up.sh starts the Slurm daemons as root; not root here")
    up = subprocess.run([str(REPO / "tools/slurm/up.sh")], capture_output=True, text=True,
                        timeout=240)
    assert up.returncode == 0, up.stderr  # installed but not starting: a failure, not a skip
    conf = up.stdout.strip().rsplit("=", 1)[-1]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLURM_CONF", conf)
        yield conf
    if "already up" not in up.stderr:  # started here: stopped here
        subprocess.run([str(REPO / "tools/slurm/down.sh")], capture_output=True, timeout=60)


def _config(tmp_path, body, name="s.yaml"):
    path = tmp_path / name
    path.write_text(body)
    return path


def _jobs():
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "JobID", "-S", "now-1days"],
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())


def _submitted_since(start: "datetime.datetime") -> set:
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "JobID,Submit", "-S", "now-1days"],
                         capture_output=True, text=True, check=True).stdout
    return {job for job, _, submit in (line.partition("|") for line in out.split())
            if submit and datetime.datetime.fromisoformat(submit) >= start}


def _slurm_suite(*args):
    return run_cli_here("suite", *args, "--executor", "slurm", env_extra=PLUGIN_ENV)


TINY_CPU = """defaults:
  trials: 2
  warmup_s: 0.05
  min_trial_s: 0.05
  telemetry: none
  timeout_s: 300
  threads: 1
runs:
  - workloads: linreg
    backends: torch-cpu
    batch_sizes: [1, 2]
    modes: [train, infer]
"""


def test_two_shards_through_slurm_match_the_unsharded_suite(slurm, tmp_path):
    config = _config(tmp_path, TINY_CPU)
    local = run_cli_here("suite", str(config), "--out", str(tmp_path / "local"), "-q")
    assert local.returncode == 0, local.stderr
    proc = _slurm_suite(str(config), "--out", str(tmp_path / "slurm"), "--nodes", "2")
    assert proc.returncode == 0, proc.stderr
    parent = Path(proc.stdout.splitlines()[0])
    unsharded = read_trials(Path(local.stdout.splitlines()[0]) / "trials.csv")
    sharded = read_input(parent)
    assert (sharded.groupby(IDENT).size().to_dict() == unsharded.groupby(IDENT).size().to_dict())
    assert set(sharded["status"]) == {"ok"}
    assert sharded["suite_id"].nunique() == 1 and set(sharded["shard"]) == {"1/2", "2/2"}
    meta = json.loads((parent / "run.json").read_text())
    tasks = meta["submissions"][0]["tasks"]
    assert [t["shard"] for t in tasks] == ["1/2", "2/2"]
    assert {t["state"] for t in tasks} == {"COMPLETED"}
    array = {t["job_id"].split("_")[0] for t in tasks}
    ids = {t["job_id"] for t in tasks}
    assert len(array) == 1  # one job array; its tasks as Slurm's accounting has them
    _wait_for(lambda: ids <= _jobs(), 20, f"{sorted(ids)} in sacct")  # slurmdbd may lag
    assert meta["suite_id"] == sharded["suite_id"].iloc[0]


SLOW = """defaults:
  trials: 2
  warmup_s: 0.05
  min_trial_s: 0.6
  telemetry: none
  timeout_s: 120
runs:
  - workloads: linreg
    backends: test-ok
    batch_sizes: [1, 2, 4]
    modes: [train, infer]
"""


def _wait_for(predicate, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_task_cancelled_mid_run_keeps_its_runs_and_resume_completes_only_it(slurm, tmp_path):
    config = _config(tmp_path, SLOW)
    out = tmp_path / "out"
    env = {**os.environ, **PLUGIN_ENV}
    proc = subprocess.Popen([sys.executable, "-m", "gpubench", "suite", str(config), "--out",
                             str(out), "--executor", "slurm", "--nodes", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        def first_shard_ran_one():
            metas = list(out.glob("*/shards/*shard1of2*/run.json"))
            return metas and len(json.loads(metas[0].read_text()).get("runs", [])) >= 1
        _wait_for(first_shard_ran_one, 90, "shard 1's first run")
        parent = next(out.glob("*/run.json")).parent
        task = _wait_for(lambda: json.loads((parent / "run.json").read_text())["submissions"],
                         10, "the submission")[0]["tasks"][0]
        assert task["shard"] == "1/2"
        subprocess.run(["scancel", task["job_id"]], check=True)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 4, stderr  # the runs it cut off are failed rows
    rows = read_input(parent)  # every file readable
    one = rows[rows["shard"] == "1/2"]
    assert set(rows.loc[rows["shard"] == "2/2", "status"]) == {"ok"}
    assert "ok" in set(one["status"]) and "failed" in set(one["status"])
    assert one.loc[one["status"] == "failed", "error"].str.contains("CANCELLED").all()
    assert one.groupby(IDENT).ngroups == 3  # every run of the shard has rows
    states = [t["state"] for t in json.loads((parent / "run.json").read_text())["submissions"][0]["tasks"]]
    assert states[0].startswith("CANCELLED") and states[1] == "COMPLETED"

    again = _slurm_suite(str(config), "--out", str(out), "--resume")
    assert again.returncode == 0, again.stderr
    meta = json.loads((parent / "run.json").read_text())
    assert [t["shard"] for t in meta["submissions"][1]["tasks"]] == ["1/2"]  # only what was missing
    rows = read_input(parent)
    ok = rows[rows["status"] == "ok"]
    assert ok.groupby(IDENT).ngroups == 6 and ok["suite_id"].nunique() == 1
    done = _slurm_suite(str(config), "--out", str(out), "--resume")  # nothing left to submit
    assert done.returncode == 0 and len(json.loads((parent / "run.json").read_text())["submissions"]) == 2



def test_ctrl_c_cancels_the_job_array(slurm, tmp_path):
    config = _config(tmp_path, SLOW)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "gpubench", "suite", str(config), "--out",
                             str(out), "--executor", "slurm", "--nodes", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **PLUGIN_ENV})
    try:
        def submitted():
            metas = list(out.glob("*/run.json"))
            return metas and json.loads(metas[0].read_text())["submissions"]
        tasks = _wait_for(submitted, 30, "the submission")[0]["tasks"]
        _wait_for(lambda: len(list(out.glob("*/shards/*/run.json"))) == 2, 60, "both tasks running")
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "the Slurm jobs were cancelled" in stderr, stderr
    assert "--executor slurm --resume" in stderr
    meta = json.loads(next(out.glob("*/run.json")).read_text())
    assert "cancelled_utc" in meta["submissions"][0]

    def all_cancelled():
        listed = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j",
                                 tasks[0]["job_id"].split("_")[0]],
                                capture_output=True, text=True).stdout.splitlines()
        states = [line.split("|")[1] for line in listed]
        return len(states) == 2 and all(s.startswith("CANCELLED") for s in states)
    _wait_for(all_cancelled, 30, "both tasks cancelled in Slurm's accounting")

def test_ranks_through_srun_on_gloo(slurm, tmp_path):
    config = _config(tmp_path, TINY_CPU.replace("batch_sizes: [1, 2]\n    modes: [train, infer]",
                                                "nprocs: 2"))
    proc = _slurm_suite(str(config), "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    parent = Path(proc.stdout.splitlines()[0])
    rows = read_input(parent)
    assert set(rows["status"]) == {"ok"} and set(rows["rank"]) == {0, 1}
    job = json.loads((parent / "run.json").read_text())["submissions"][0]["tasks"][0]["job_id"]
    steps = subprocess.run(["sacct", "-j", job, "-n", "-P", "-o", "JobID,JobName"],
                           capture_output=True, text=True, check=True).stdout.split()
    # step 0: submitit's srun of the task; step 1: the srun that started the torchrun agent
    assert any(s.startswith(f"{job}.1|") for s in steps), steps


@pytest.mark.parametrize("args, fragment", [
    (["--partition", "nope"], "--partition nope: no such partition"),
    (["--gpus-per-node", "1"], "Slurm refused the job array"),  # no GPUs (gres) here
])
def test_refused_submissions_are_one_line_and_submit_nothing(slurm, tmp_path, args, fragment):
    config = _config(tmp_path, SLOW)
    time.sleep(1.0)  # Slurm's submit times are whole seconds: the last test's are before
    start = datetime.datetime.now().replace(microsecond=0)
    proc = _slurm_suite(str(config), "--out", str(tmp_path / "out"), *args)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert fragment in proc.stderr and "nothing submitted" in proc.stderr
    # no job submitted since (sacct: by submit time; accounting may still be adding an
    # earlier test's jobs, so a plain before/after set of ids can grow without us)
    assert _submitted_since(start) == set() and not list((tmp_path / "out").glob("*"))


def test_no_sbatch_and_bad_combinations_are_one_line(tmp_path, monkeypatch):
    config = _config(tmp_path, SLOW)
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    proc = _slurm_suite(str(config), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and "sbatch is not on PATH" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
    for args, fragment in ((["--shard", "1/2"], "the Slurm executor cuts the suite itself"),
                           (["--devices", "0"], "each task uses its node's GPUs")):
        proc = _slurm_suite(str(config), *args)
        assert proc.returncode == 2 and fragment in proc.stderr, proc.stderr
    local = run_cli_here("suite", str(config), "--partition", "p")
    assert local.returncode == 2 and "--partition only with --executor slurm" in local.stderr


def test_a_task_that_never_ran_its_shard_leaves_a_row_per_run(tmp_path, monkeypatch):
    """A task Slurm ended before its shard's suite started (a time limit while it waited
    for a node, a node failure): every run of the shard gets a row, `timeout` for
    Slurm's TIMEOUT, in the shard's own folder with the batch's suite_id."""
    from gpubench.suite.shards import Shard, sharded_suite_id
    from gpubench.suite.slurm import _rows_for_unfinished, _why

    monkeypatch.setenv("GPUBENCH_PLUGINS", PLUGIN_ENV["GPUBENCH_PLUGINS"])
    config = _config(tmp_path, SLOW)
    parent = tmp_path / "out" / "suite"
    (parent / "shards").mkdir(parents=True)
    (parent / "run.json").write_text(json.dumps({"batch_id": "b1"}))
    task = {"shard": "2/2", "job_id": "7_1", "state": "TIMEOUT"}
    _rows_for_unfinished(config, parent / "shards", Shard(2, 2), None, task, None,
                         _why(None, task), "b1")  # Slurm's end state says why: no job to ask
    rows = read_input(parent)
    assert len(rows) == 3 and set(rows["status"]) == {"timeout"} and set(rows["shard"]) == {"2/2"}
    assert rows["error"].str.contains("Slurm ended task 7_1 (TIMEOUT)", regex=False).all()
    assert set(rows["suite_id"]) == {sharded_suite_id(config.read_text(), None, "b1")}


def test_run_of_ranks_inside_an_allocation_takes_its_nodes_from_slurm(slurm, tmp_path):
    """`gpubench run --nproc N --nnodes M` inside an allocation, without --master-addr,
    starts its agents through srun: M is held to the allocation's nodes (one here)."""
    proc = subprocess.run(["srun", "-N1", "-n1", sys.executable, "-m", "gpubench", "run", "-w",
                           "linreg", "-b", "torch-cpu", "--nproc", "1", "--nnodes", "2",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "--nnodes 2: the Slurm allocation has 1 node" in proc.stderr


def test_importing_submitit_leaves_the_process_logging_alone(tmp_path):
    """submitit's import runs logging.config.dictConfig, which closes every handler the
    process has; absl's (TensorFlow's logger) closes its stream, sys.stderr, with it (seen
    here: pytest's captured stderr closed mid-suite). The executor imports it without."""
    script = tmp_path / "probe.py"
    script.write_text(
        "import io, logging\n"
        "class Owning(logging.StreamHandler):  # as absl's: closing it closes its stream\n"
        "    def close(self):\n"
        "        self.stream.close(); super().close()\n"
        "stream = io.StringIO()\n"
        "logging.getLogger('host').addHandler(Owning(stream))\n"
        "from gpubench.suite.slurm import _submitit\n"
        "_submitit()\n"
        "assert not stream.closed, 'importing submitit closed the host handler stream'\n"
        "assert logging.getLogger('host').handlers, 'importing submitit removed the handler'\n")
    env = {k: v for k, v in os.environ.items() if k != "SUBMITIT_LOG_LEVEL"}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
