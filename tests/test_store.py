"""`gpubench store add | ls | query` (results/store/): run and suite folders of every
schema version ingested and read back (through DuckDB) equal to the folder reader's
rows; adding twice adds nothing; two `store add` at once add every run once; a killed
or failed add leaves the store as it was; corrupt files, a folder that is not a store,
and failing SQL are one line and exit 2."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from conftest import REPO, run_cli_here
from gpubench.results import compare_load, schema
from gpubench.results.store import inspect, layout
from gpubench.results.store.write import DELAY_HOOK, PAUSE_HOOK

V1_RUN = Path(__file__).parent / "fixtures" / "v1_run"
# The trial columns each schema version added (results/schema.py's history): a version-v
# file is today's columns less those added after v.
ADDED = {
    2: ("scenario", "exec", "world_size", "environment", "onnx_sha256", "threads", "data",
        "rank", "started_utc", "git_commit", "contended"),
    3: ("process",),
    4: ("target_accuracy", "epoch", "train_loss", "test_accuracy", "epoch_s", "eval_s",
        "elapsed_s", "time_to_accuracy_s", "energy_to_accuracy_j", "epochs_to_accuracy",
        "reached", "top1_agreement", "max_abs_diff", "accuracy_ok", "compile_s", "tokens_per_s"),
    5: ("strategy", "global_throughput_samples_per_s", "global_energy_j", "message_bytes",
        "algbw_gbs", "busbw_gbs"),
    6: ("target_qps", "latency_bound_ms", "batch_timeout_ms", "queries", "offered_qps",
        "achieved_qps", "latency_mean_ms", "latency_p999_ms", "latency_bound_met",
        "queries_unfinished", "batch_size_mean", "batch_size_p50", "batch_size_max",
        "energy_j_per_query", "max_qps"),
    7: ("suite_id", "round", "power_limit_w", "lock_clocks", "enforced_power_limit_w",
        "locked_sm_clock_mhz", "throttle_reasons", "excluded", "start_temp_c", "cooldown_s"),
}


def columns_of(version: int):
    later = {c for v, added in ADDED.items() if v > version for c in added}
    return [c for c in schema.TRIAL_COLUMNS if c not in later]


def trial_rows(run_id: str, version: int = 7, started: str = "2025-01-05T02:00:00Z",
               host: str = "box", trials: int = 3, seed: int = 0, **columns) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for trial in range(trials):
        value = 1000.0 * (1 + 0.01 * rng.standard_normal())
        row = {c: None for c in schema.TRIAL_COLUMNS}
        row.update(run_id=run_id, workload="mnist", backend="torch-cpu", mode="train",
                   precision="fp32", batch_size=64, params="", scenario="throughput",
                   exec="eager", world_size=1, environment="default", device_index=0,
                   device_name="cpu", device_uuid="", rank=0, process=0, started_utc=started,
                   driver_version="550.54.15", framework="torch", framework_version="2.3",
                   gpubench_version="0.1.0", schema_version=version, host=host, trial=trial,
                   iterations=100, samples=6400, duration_s=6400 / value,
                   throughput_samples_per_s=value, latency_p50_ms=64_000 / value,
                   throttled=bool(trial % 2), contended=False, status="ok")
        if version >= 4:
            row.update(accuracy_ok=True if trial == 0 else None, compile_s=0.5)
        row.update(columns)
        rows.append(row)
    return pd.DataFrame(rows, columns=columns_of(version))


def stamp(started: str) -> str:
    return pd.Timestamp(started).strftime("%Y%m%dT%H%M%SZ")


def run_folder(root: Path, run_id: str, version: int = 7, started: str = "2025-01-05T02:00:00Z",
               host: str = "box", samples: bool = False, **columns) -> Path:
    """A run folder as `gpubench run` writes it (trials.csv, run.json, samples.csv)."""
    folder = root / f"{stamp(started)}-{host}-{run_id}"
    folder.mkdir(parents=True)
    trial_rows(run_id, version, started, host, **columns).to_csv(folder / "trials.csv", index=False)
    meta = {"run_id": run_id, "schema_version": version, "environment": {"host": host},
            "config": {"workload": "mnist", "backend": "torch-cpu"}}
    if version >= 2:
        meta["started_utc"] = started
    if version >= 7:
        meta["fingerprint"] = {"driver_version": "550.54.15", "torch": "2.3"}
    (folder / "run.json").write_text(json.dumps(meta))
    if samples:
        pd.DataFrame({"t_s": [0.0, 0.1, 0.2], "device_index": [0, 0, 0], "trial": [0, 0, 1],
                      "cpu_util_pct": [50.0, 60.0, 55.0]}).to_csv(folder / "samples.csv",
                                                                  index=False)
    return folder


def suite_folder(root: Path, suite_id: str, run_ids, started="2025-01-06T02:00:00Z",
                 host="box") -> Path:
    """A suite folder: merged trials.csv, the suite's run.json, runs/<run folder>/."""
    folder = root / f"{stamp(started)}-{host}-{suite_id}"
    frames = []
    for i, run_id in enumerate(run_ids):
        run_folder(folder / "runs", run_id, started=started, host=host, suite_id=suite_id, seed=i)
        frames.append(trial_rows(run_id, started=started, host=host, suite_id=suite_id, seed=i))
    pd.concat(frames).to_csv(folder / "trials.csv", index=False)
    (folder / "run.json").write_text(json.dumps({"kind": "suite", "suite_id": suite_id,
                                                 "schema_version": 7, "started_utc": started}))
    return folder


def store_cli(*args, **kw):
    return run_cli_here("store", *args, **kw)


def sql(store: Path, text: str) -> pd.DataFrame:
    return inspect.query(store, text)


def raw(store: Path, table: str) -> pd.DataFrame:
    """Every row of a table's files, as written (no view, no de-duplication)."""
    import pyarrow.parquet as pq

    files = layout.table_files(store, table)
    return pd.concat([pq.read_table(f).to_pandas() for f in files]) if files else pd.DataFrame()


def one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, (result.returncode, result.stderr)
    return lines[0]


def test_adding_twice_adds_nothing(tmp_path):
    runs = [run_folder(tmp_path / "nights", f"r{i}", started=f"2025-01-0{i + 1}T02:00:00Z")
            for i in range(3)]
    store = tmp_path / "store"
    first = store_cli("add", str(store), str(tmp_path / "nights"))
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == ("added 3 runs (9 trial rows) from 3 folders, skipped 0 "
                                    "already in the store, 0 unreadable")
    again = store_cli("add", str(store), str(tmp_path / "nights"), str(runs[0]))
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("added 0 runs (0 trial rows) from 3 folders, skipped 3 ")
    assert len(raw(store, "trials")) == 9 and len(raw(store, "runs")) == 3
    assert sorted(sql(store, "SELECT run_id FROM runs")["run_id"]) == ["r0", "r1", "r2"]


def test_a_run_read_from_its_suite_and_its_own_folder_is_added_once(tmp_path):
    suite = suite_folder(tmp_path / "r", "s1", ["a", "b"])
    store = tmp_path / "store"
    result = store_cli("add", str(store), str(suite), str(next((suite / "runs").iterdir())))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("added 2 runs (6 trial rows) from 2 folders, skipped 0")
    runs = sql(store, "SELECT * FROM runs ORDER BY run_id")
    assert list(runs["run_id"]) == ["a", "b"] and set(runs["suite_id"]) == {"s1"}
    assert set(runs["source"]) == {str((suite / "trials.csv").resolve())}
    assert json.loads(runs["fingerprint_json"][0]) == {"driver_version": "550.54.15", "torch": "2.3"}
    assert json.loads(runs["run_json"][1])["run_id"] == "b"
    assert json.loads(runs["config_json"][0])["workload"] == "mnist"
    assert set(runs["month"]) == {"2025-01"} and set(runs["statuses"]) == {"ok:3"}


def test_every_schema_version_reads_back_as_the_folder_reader_reads_it(tmp_path):
    """v1 (the fixture a v1 writer wrote) to v7 folders: the store's rows, through
    DuckDB, are the folder reader's (migrated), cell for cell."""
    root = tmp_path / "results"
    shutil.copytree(V1_RUN, root / V1_RUN.name)
    for version in range(2, 8):
        run_folder(root, f"v{version}", version=version,
                   started=f"2025-0{version}-01T02:00:00Z", host=f"host-{version % 2}")
    for i, status in enumerate(("ok", "failed", "timeout")):  # one header: read together
        run_folder(root / "night", f"n{i}", started="2025-09-01T02:00:00Z", status=status,
                   error=None if status == "ok" else f'Traceback, "quoted"\nline {i}')
    (root / "bare").mkdir()  # a trials.csv without its run.json, of two runs
    pd.concat([trial_rows("bare-a", 4, started="2025-08-01T02:00:00Z"),
               trial_rows("bare-b", 4, started="2025-08-02T02:00:00Z", trials=2)]).to_csv(
        root / "bare" / "trials.csv", index=False)
    assert {c for added in ADDED.values() for c in added} <= set(schema.TRIAL_COLUMNS)
    store = tmp_path / "store"
    result = store_cli("add", str(store), str(root))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("added 12 runs (36 trial rows) from 11 folders")

    expected = compare_load.read_input(root).drop(columns=[compare_load.DERIVED])
    expected["source"] = [str(Path(s).resolve()) for s in expected["source"]]
    stored = sql(store, "SELECT * FROM trials")
    assert set(expected.columns) <= set(stored.columns)
    assert set(stored.columns) - set(expected.columns) == {"month", "machine"}
    order = ["run_id", "trial"]
    expected = expected.sort_values(order).reset_index(drop=True)
    stored = stored.sort_values(order).reset_index(drop=True)[list(expected.columns)]
    for column in expected.columns:
        want = [schema.key_text(v) for v in expected[column]]
        got = [schema.key_text(v) for v in stored[column]]
        assert got == want, column
    assert set(stored["schema_version"]) == {schema.SCHEMA_VERSION}
    assert stored.set_index(["run_id", "trial"]).loc[("n1", 0), "error"] == \
        'Traceback, "quoted"\nline 1'

    versions = sql(store, "SELECT run_id, schema_version, month, machine FROM runs ORDER BY run_id")
    assert dict(zip(versions["run_id"], versions["schema_version"])) == {
        "5dbac95d": 1, **{f"v{v}": v for v in range(2, 8)}, "bare-a": 4, "bare-b": 4,
        "n0": 7, "n1": 7, "n2": 7}
    # the v1 run's month from its run.json; v1 rows have no started_utc
    assert versions.set_index("run_id").loc["5dbac95d", "month"] == "2026-11"
    assert set(versions["machine"]) == {"vm", "host-0", "host-1", "box"}
    assert versions.set_index("run_id").loc["bare-b", "month"] == "2025-08"


def test_two_adds_at_once_add_every_run_once(tmp_path):
    """Two real `store add` processes of overlapping folders, started together; each
    waits a second between reading the store's run ids and writing, so without the lock
    both would write the shared runs."""
    nights = [run_folder(tmp_path / f"n{i}", f"r{i}", started=f"2025-02-0{i + 1}T02:00:00Z")
              for i in range(4)]
    store = tmp_path / "store"
    layout.create_store(store)
    env = {**os.environ, DELAY_HOOK: "1"}
    command = [sys.executable, "-m", "gpubench", "store", "add", str(store)]
    procs = [subprocess.Popen(command + [str(p) for p in nights[:3]], env=env, cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
             subprocess.Popen(command + [str(p) for p in nights[1:]], env=env, cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    runs = raw(store, "runs")
    assert sorted(runs["run_id"]) == ["r0", "r1", "r2", "r3"]  # each once
    trials = raw(store, "trials")
    assert len(trials) == 12 and not trials.duplicated(["run_id", "trial"]).any()
    added = sorted(int(out.split()[1]) for out, _ in outs)
    assert sum(added) == 4 and added[0] >= 1  # one added what the other had not


def test_a_killed_add_leaves_the_store_as_it_was(tmp_path):
    store = tmp_path / "store"
    assert store_cli("add", str(store), str(run_folder(tmp_path / "a", "old"))).returncode == 0
    before = sorted(p.relative_to(store) for p in store.rglob("*.parquet"))
    new = [run_folder(tmp_path / "b", f"new{i}", started="2025-03-01T02:00:00Z") for i in range(2)]
    ready = tmp_path / "written"
    proc = subprocess.Popen([sys.executable, "-m", "gpubench", "store", "add", str(store),
                             *map(str, new)], env={**os.environ, PAUSE_HOOK: str(ready)},
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ready.exists(), proc.communicate()
    os.kill(proc.pid, signal.SIGKILL)  # its files are written, not yet renamed
    proc.communicate()
    assert layout.leftovers(store)  # what it wrote: temporary files only
    assert sorted(p.relative_to(store) for p in store.rglob("*.parquet")) == before
    assert list(sql(store, "SELECT run_id FROM runs")["run_id"]) == ["old"]
    assert len(sql(store, "SELECT * FROM trials")) == 3
    again = store_cli("add", str(store), *map(str, new))  # the lock went with the process
    assert again.returncode == 0 and again.stdout.startswith("added 2 runs (6 trial rows)")
    assert not layout.leftovers(store)
    assert len(raw(store, "trials")) == 9


def test_a_failed_add_loses_nothing_already_there(tmp_path):
    store = tmp_path / "store"
    assert store_cli("add", str(store), str(run_folder(tmp_path / "a", "old"))).returncode == 0
    before = {p: p.read_bytes() for p in store.rglob("*.parquet")}
    # the runs partition of the new run cannot be made: its trials file is written first
    (store / "runs").mkdir(exist_ok=True)
    (store / "runs" / "month=2025-04").write_text("in the way")
    new = run_folder(tmp_path / "b", "new", started="2025-04-01T02:00:00Z")
    line = one_error_line(store_cli("add", str(store), str(new)))
    assert line.startswith("gpubench: error: cannot write to the store") and "month=2025-04" in line
    assert {p: p.read_bytes() for p in store.rglob("*.parquet")} == before
    assert not layout.leftovers(store) and not list(store.rglob(".*.tmp"))
    assert list(sql(store, "SELECT run_id FROM runs")["run_id"]) == ["old"]
    (store / "runs" / "month=2025-04").unlink()
    assert store_cli("add", str(store), str(new)).stdout.startswith("added 1 run (3 trial rows)")


def test_an_unreadable_folder_is_named_and_the_others_are_added(tmp_path):
    good = run_folder(tmp_path / "r", "good")
    bad = run_folder(tmp_path / "r", "bad", started="2025-01-07T02:00:00Z")
    text = (bad / "trials.csv").read_text()
    (bad / "trials.csv").write_text(text[:-40])  # cut mid-line
    store = tmp_path / "store"
    result = store_cli("add", str(store), str(tmp_path / "r"))
    assert result.returncode == 0
    assert result.stdout.strip().endswith("skipped 0 already in the store, 1 unreadable")
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("gpubench: not added: ") and str(bad / "trials.csv") in line
    assert list(sql(store, "SELECT run_id FROM runs")["run_id"]) == ["good"]
    only_bad = store_cli("add", str(store), str(bad))
    assert only_bad.returncode == 2 and "nothing under" in only_bad.stderr
    assert good.exists()


def test_results_that_do_not_exist_are_refused_before_anything(tmp_path):
    store = tmp_path / "store"
    line = one_error_line(store_cli("add", str(store), str(tmp_path / "nope")))
    assert line == f"gpubench: error: {tmp_path / 'nope'}: no such file or folder"
    assert not store.exists()


def test_a_folder_that_is_not_a_store(tmp_path):
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    for args in (("ls", str(folder)), ("query", str(folder), "SELECT 1")):
        assert one_error_line(store_cli(*args)) == (
            f"gpubench: error: {folder} is not a gpubench store (no store.json)")
    line = one_error_line(store_cli("add", str(folder), str(run_folder(tmp_path / "r", "x"))))
    assert "not a gpubench store" in line and "not empty" in line
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


def test_a_failing_or_empty_query_is_one_line(tmp_path):
    store = tmp_path / "store"
    store_cli("add", str(store), str(run_folder(tmp_path / "r", "x")))
    line = one_error_line(store_cli("query", str(store), "SELECT no_such_column FROM trials"))
    assert line.startswith("gpubench: error: store query failed: ") and "no_such_column" in line
    assert "store query failed" in one_error_line(store_cli("query", str(store), "SELEC 1"))
    assert "empty query" in one_error_line(store_cli("query", str(store), "  "))


def test_query_formats(tmp_path):
    store = tmp_path / "store"
    store_cli("add", str(store), str(run_folder(tmp_path / "r", "x")))
    text = "SELECT run_id, count(*) AS n FROM trials GROUP BY run_id"
    as_csv = store_cli("query", str(store), text, "--format", "csv")
    assert as_csv.returncode == 0 and as_csv.stdout == "run_id,n\nx,3\n"
    as_json = store_cli("query", str(store), text, "--format", "json")
    assert json.loads(as_json.stdout) == [{"run_id": "x", "n": 3}]
    empty = store_cli("query", str(store), "SELECT * FROM samples")
    assert empty.returncode == 0 and empty.stdout == "(no rows)\n"


def test_a_corrupt_parquet_file(tmp_path):
    store = tmp_path / "store"
    store_cli("add", str(store), str(run_folder(tmp_path / "r", "x")))
    bad = store / "trials" / "month=2025-01" / "machine=box" / "zz-corrupt.parquet"
    bad.write_bytes(b"PAR1 this is not a parquet file")
    line = one_error_line(store_cli("query", str(store), "SELECT count(*) FROM trials"))
    assert str(bad) in line and "corrupt Parquet file" in line
    listed = store_cli("ls", str(store), "--format", "json")
    assert listed.returncode == 0, listed.stderr
    found = json.loads(listed.stdout)
    assert [c["file"] for c in found["corrupt"]] == [str(bad)]
    assert found["runs"] == 1 and found["trial_rows"] == 3  # the rest still reads
    assert "corrupt" in store_cli("ls", str(store)).stdout
    # adding reads the runs files only: a corrupt trials file does not stop it ...
    assert store_cli("add", str(store), str(run_folder(tmp_path / "s", "y"))).returncode == 0
    # ... a corrupt runs file does (which runs the store holds cannot be known)
    bad_runs = store / "runs" / "month=2025-01" / "machine=box" / "zz-corrupt.parquet"
    bad_runs.write_bytes(b"garbage")
    line = one_error_line(store_cli("add", str(store), str(run_folder(tmp_path / "t", "z"))))
    assert str(bad_runs) in line and "corrupt Parquet file" in line


def test_ls_says_what_the_store_holds(tmp_path):
    run_folder(tmp_path / "r", "a", started="2025-01-05T02:00:00Z", host="box-1")
    run_folder(tmp_path / "r", "b", started="2025-03-05T02:00:00Z", host="box-2",
               workload="lenet5")
    shutil.copytree(V1_RUN, tmp_path / "r" / V1_RUN.name)
    store = tmp_path / "store"
    store_cli("add", str(store), str(tmp_path / "r"))
    found = json.loads(store_cli("ls", str(store), "--format", "json").stdout)
    assert (found["runs"], found["trial_rows"], found["configurations"]) == (3, 10, 3)
    assert [m["machine"] for m in found["machines"]] == ["box-1", "box-2", "vm"]
    assert (found["first_started_utc"], found["last_started_utc"]) == (
        "2025-01-05T02:00:00Z", "2026-11-30T01:22:40Z")
    assert found["schema_versions"] == {"1": 1, "7": 2}
    assert found["files"]["trials"]["files"] == 3 and found["files"]["trials"]["rows"] == 10
    text = store_cli("ls", str(store)).stdout
    assert "runs            3" in text and "schema versions 1 (1 run), 7 (2 runs)" in text


def test_samples_are_added_when_asked(tmp_path):
    run_folder(tmp_path / "r", "a", samples=True)
    c = run_folder(tmp_path / "r", "c", samples=True)  # one header with a's: read together
    samples_c = pd.read_csv(c / "samples.csv")
    samples_c.assign(cpu_util_pct=samples_c["cpu_util_pct"] + 1).to_csv(c / "samples.csv",
                                                                      index=False)
    suite = suite_folder(tmp_path / "s", "s1", ["b"])
    pd.DataFrame({"run_id": ["b", "b"], "t_s": [0.0, 0.1], "device_index": [0, 0],
                  "trial": [0, 0], "power_w": [100.0, 110.0]}).to_csv(suite / "samples.csv",
                                                                      index=False)
    store = tmp_path / "store"
    without = store_cli("add", str(store), str(tmp_path / "r"))
    assert "sample" not in without.stdout and not layout.table_files(store, "samples")
    with_samples = store_cli("add", str(tmp_path / "store2"), str(tmp_path / "r"), str(suite),
                             "--samples")
    assert with_samples.stdout.startswith("added 3 runs (9 trial rows, 8 sample rows)")
    rows = sql(tmp_path / "store2", "SELECT run_id, t_s, power_w, cpu_util_pct, month "
                                    "FROM samples ORDER BY run_id, t_s")
    assert list(rows["run_id"]) == ["a"] * 3 + ["b"] * 2 + ["c"] * 3
    assert list(rows["cpu_util_pct"].dropna()) == [50.0, 60.0, 55.0, 51.0, 61.0, 56.0]
    assert rows["power_w"].notna().sum() == 2 and set(rows["month"]) == {"2025-01"}


def test_rows_a_killed_writer_left_twice_read_once(tmp_path):
    """A writer killed between renaming its trials file and its runs file leaves trial
    rows of runs the store does not hold; the next add writes them again. Readers see
    each row once."""
    store = tmp_path / "store"
    store_cli("add", str(store), str(run_folder(tmp_path / "r", "x")))
    (trials,) = layout.table_files(store, "trials")
    shutil.copy(trials, trials.with_name("20990101T000000-other-1-00000000.parquet"))
    assert len(raw(store, "trials")) == 6
    assert len(sql(store, "SELECT * FROM trials")) == 3
    assert len(sql(store, "SELECT * FROM trials WHERE run_id = 'x' AND trial = 0")) == 1
    found = json.loads(store_cli("ls", str(store), "--format", "json").stdout)
    assert (found["runs"], found["trial_rows"]) == (1, 3)


def test_a_long_add_says_how_far_it_got(tmp_path, monkeypatch):
    from gpubench.results.store import ingest

    monkeypatch.setattr(ingest, "PROGRESS_EVERY", 2)
    monkeypatch.setattr(ingest, "CHUNK", 2)
    for i in range(5):
        run_folder(tmp_path / "r", f"r{i}", started=f"2025-01-0{i + 1}T02:00:00Z")
    result = store_cli("add", str(tmp_path / "store"), str(tmp_path / "r"))
    assert result.returncode == 0 and len(result.stdout.splitlines()) == 1
    assert result.stderr.splitlines() == ["store add: 2 runs read (2 of 5 folders)",
                                          "store add: 4 runs read (4 of 5 folders)"]


def test_two_adds_making_one_store_at_once(tmp_path):
    """Two runners starting on a new store: each may see the other's marker on its way
    (a dot file) and must not take the folder for someone else's."""
    store = tmp_path / "store"
    store.mkdir()
    (store / ".store.json.abc.tmp").write_text("")  # the other writer's, not yet renamed
    (store / layout.LOCK).write_text("")
    result = store_cli("add", str(store), str(run_folder(tmp_path / "r", "x")))
    assert result.returncode == 0, result.stderr
    assert layout.is_store(store)


def test_a_backlog_is_written_a_part_at_a_time(tmp_path, monkeypatch):
    """Many runs at once are gathered and written in parts (memory stays bounded); the
    store holds every run once, and a second add skips them all."""
    from gpubench.results.store import ingest

    monkeypatch.setattr(ingest, "PART_RUNS", 2)
    monkeypatch.setattr(ingest, "CHUNK", 2)
    for i in range(5):
        run_folder(tmp_path / "r", f"r{i}", started=f"2025-01-0{i + 1}T02:00:00Z")
    store = tmp_path / "store"
    result = store_cli("add", str(store), str(tmp_path / "r"))
    assert result.stdout.startswith("added 5 runs (15 trial rows) from 5 folders, skipped 0")
    assert len(layout.table_files(store, "runs")) == 3  # parts of 2, 2 and 1 runs
    assert sorted(raw(store, "runs")["run_id"]) == [f"r{i}" for i in range(5)]
    assert store_cli("add", str(store), str(tmp_path / "r")).stdout.startswith(
        "added 0 runs (0 trial rows) from 5 folders, skipped 5")


def test_a_night_of_run_folders_is_read_as_one_csv(tmp_path, monkeypatch):
    """The reader's cost is per file: run folders of one header go through it together
    (one read for the night), and a bad one among them is still named alone."""
    from gpubench.results.store import ingest

    calls = []
    read_checked = compare_load.read_checked
    monkeypatch.setattr(ingest.compare_load, "read_checked",
                        lambda file: calls.append(file) or read_checked(file))
    for i in range(6):
        run_folder(tmp_path / "r", f"r{i}", started=f"2025-01-0{i + 1}T02:00:00Z")
    (part,) = ingest.gather([tmp_path / "r"])
    assert len(calls) == 1 and part.sources == 6 and not part.unreadable
    assert sorted(part.frames()[1]["run_id"]) == [f"r{i}" for i in range(6)]
    bad = next((tmp_path / "r").glob("*-r3")) / "trials.csv"
    bad.write_text(bad.read_text().replace(",ok,", ",,"))  # rows without a status
    calls.clear()
    (part,) = ingest.gather([tmp_path / "r"])
    assert part.sources == 5 and len(part.unreadable) == 1 and str(bad) in part.unreadable[0]
    assert len(calls) < 12  # halves, not every file alone twice
