"""A results store as an input (results/store/read.py, medians.py, filters.py): history,
compare, report and --noise-from read a store wherever they read folders and give the
same verdicts; --since/--until/--machine/--where select the same runs from a store and
from folders; a folder that is not a store, an unknown --where column and a corrupt
Parquet file are each one line and exit 2.

The fleet: two machines, twelve nights from 2025-01-30 (two months). gpu-a (device
"Test GPU A", driver 550.54.15) runs mnist at batch 64 and 128 at 02:00; gpu-b (device
"Test GPU B") runs batch 64 at 03:00, on driver 550.54.15 for six nights and then on
560.35.03, 10% slower."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("duckdb")
pytest.importorskip("pyarrow")

from test_history import cli_here, night_rows, one_line_error  # noqa: E402,F401

from gpubench.results.compare_load import read_input  # noqa: E402
from gpubench.results.store.filters import Filters, apply  # noqa: E402
from gpubench.results.store import layout  # noqa: E402
from gpubench.results.store.read import read_store  # noqa: E402

START = pd.Timestamp("2025-01-30T00:00:00Z")
NIGHTS = 12
OLD, NEW = "550.54.15", "560.35.03"


def fleet_runs():
    """(host, night, batch, run_id, driver, level, started) of every run of the fleet."""
    rng = np.random.default_rng(31)
    runs = []
    for night in range(NIGHTS):
        for host, batch, hour in (("gpu-a", 64, 2), ("gpu-a", 128, 2), ("gpu-b", 64, 3)):
            driver = NEW if host == "gpu-b" and night >= 6 else OLD
            level = 1000.0 * (0.9 if driver == NEW else 1.0) * (1 + 0.01 * rng.standard_normal())
            started = START + pd.Timedelta(days=night, hours=hour)
            runs.append((host, night, batch, f"{host[-1]}{night:02d}b{batch}", driver, level, started))
    return runs


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """(folders, store): one run folder per run, and a store of the same runs."""
    root = tmp_path_factory.mktemp("fleet")
    folders = root / "results"
    rng = np.random.default_rng(7)
    for host, night, batch, run_id, driver, level, started in fleet_runs():
        frame = night_rows(night, level, rng, trials=5, run_id=run_id, host=host,
                           batch_size=batch, driver_version=driver, schema_version=7,
                           device_name=f"Test GPU {host[-1].upper()}",
                           started_utc=f"{started:%Y-%m-%dT%H:%M:%SZ}")
        folder = folders / f"{started:%Y%m%dT%H%M%SZ}-{host}-{run_id}"
        folder.mkdir(parents=True)
        frame.to_csv(folder / "trials.csv", index=False)
    return folders, write_store(root / "store", folders)


def write_store(store, folders):
    """The store as users make it: `gpubench store add STORE FOLDERS`."""
    from gpubench.cli import main

    assert main(["store", "add", str(store), str(folders)]) == 0
    return store


def run_ids(frame: pd.DataFrame) -> set:
    return set(frame["run_id"].astype(str))


def expected(pick) -> set:
    return {r[3] for r in fleet_runs() if pick(*r)}


# --- history and compare: the same verdicts from a store as from the folders ----------

def _history_json(cli_here, *args):
    proc = cli_here("history", *args, "--format", "json")
    assert proc.returncode in (0, 1), proc.stderr
    payload = json.loads(proc.stdout)
    configs = [(c["configuration"], c["status"], c["n_runs"], round(c["noise_floor"], 9),
                [(ch["index"], ch["run_id"], ch["verdict"], round(ch["ratio"], 9)) for ch in c["changes"]],
                [(r["run_id"], r["started_utc"], r["by_value"], round(r["value"], 6)) for r in c["runs"]])
               for c in payload["configurations"]]
    return proc.returncode, sorted(configs)


@pytest.mark.parametrize("extra", [(), ("--by", "driver_version"), ("--min-segment", "4"),
                                   ("--since", "2025-01-31", "--machine", "gpu-b")])
def test_history_from_a_store_gives_the_folders_verdicts(fleet, cli_here, extra):
    folders, store = fleet
    code, configs = _history_json(cli_here, store, *extra)
    assert (code, configs) == _history_json(cli_here, folders, *extra)
    by_name = {c[0]: c for c in configs}
    slow = next(c for name, c in by_name.items() if "Test GPU B" in name)
    assert code == 1 and slow[1] == "regression" and slow[4][0][2] == "slower"
    assert slow[4][0][1] == "b06b64"  # where the new driver starts


def test_history_of_a_store_takes_its_run_medians_from_sql(fleet, monkeypatch):
    # The store's rows never come into pandas as trial rows: history's pandas path
    # (run_values, read_store) is not used, and the result is the folders'.
    from gpubench.results import history as history_module
    from gpubench.results.store import read

    folders, store = fleet
    want = history_module.history_paths([folders])

    def refuse(*_a, **_k):
        raise AssertionError("trial rows loaded into pandas")
    monkeypatch.setattr(history_module, "run_values", refuse)
    monkeypatch.setattr(read, "read_store", refuse)
    got = history_module.history_paths([store])
    assert [(c.status, len(c.runs), [(x.index, x.verdict) for x in c.changes]) for c in got.configs] == \
        [(c.status, len(c.runs), [(x.index, x.verdict) for x in c.changes]) for c in want.configs]


def _compare_json(cli_here, *args):
    proc = cli_here("compare", *args, "--format", "json")
    assert proc.returncode in (0, 1), proc.stderr
    rows = json.loads(proc.stdout)["rows"]
    return proc.returncode, sorted((r["device_name"], r["batch_size"], r["verdict"], r["n_base"],
                                    r["n_new"], round(r["ratio"], 9), round(r["p_value"], 9))
                                   for r in rows)


NIGHTS_AB = ("--where-base", "date=2025-02-04", "--where-new", "date=2025-02-05")


@pytest.mark.parametrize("args", [
    # six runs a side: per-run medians
    ("--where-base", f"driver_version={OLD}", "--where-new", f"driver_version={NEW}",
     "--machine", "gpu-b"),
    # two nights, one run a side: the history's run-to-run noise sets the floor
    NIGHTS_AB + ("--noise-from", "INPUT"),
    NIGHTS_AB + ("--noise-from", "INPUT", "--since", "2025-02-01", "--metric", "latency_p50_ms"),
])
def test_compare_from_a_store_gives_the_folders_verdicts(fleet, cli_here, args):
    folders, store = fleet
    code, rows = _compare_json(cli_here, store, *(store if a == "INPUT" else a for a in args))
    assert (code, rows) == _compare_json(cli_here, folders, *(folders if a == "INPUT" else a
                                                               for a in args))
    assert code == 1 and [r[2] for r in rows if r[0] == "Test GPU B"] == ["slower"]
    assert {r[2] for r in rows if r[0] == "Test GPU A"} <= {"same", "inconclusive"}


def test_compare_two_stores_and_noise_from_a_store(fleet, tmp_path, cli_here):
    from gpubench.results.compare_units import history_noise

    folders, store = fleet
    assert history_noise([store], "throughput_samples_per_s", None) == \
        history_noise([folders], "throughput_samples_per_s", None)
    empty = tmp_path / "empty-store"
    layout.create_store(empty)
    assert history_noise([empty], "throughput_samples_per_s", None) == {}  # the first night
    # BASE from the store, NEW from the folders, and the other way round
    mixed = _compare_json(cli_here, store, folders, *NIGHTS_AB, "--noise-from", store)
    assert mixed == _compare_json(cli_here, folders, store, *NIGHTS_AB, "--noise-from", folders)
    assert mixed[0] == 1


# --- filters ----------------------------------------------------------------------------

FILTERS = [
    (dict(since="2025-02-01"), lambda h, n, *_: n >= 2),
    (dict(until="2025-02-01"), lambda h, n, *_: n <= 2),  # a date alone: the whole day
    (dict(until="2025-02-01T02:30:00Z"), lambda h, n, *_: n <= 1 or (n == 2 and h == "gpu-a")),
    (dict(since="2025-02-03", until="2025-02-04"), lambda h, n, *_: n in (4, 5)),
    (dict(machines=["gpu-b"]), lambda h, *_: h == "gpu-b"),
    (dict(where=[f"driver_version={NEW}"]), lambda h, n, b, r, d, *_: d == NEW),
    (dict(where=["batch_size=128"]), lambda h, n, b, *_: b == 128),
    (dict(where=["batch_size=128.0", "device_name=Test GPU A"]), lambda h, n, b, *_: b == 128),
    (dict(where=["date=2025-01-30", "date=2025-02-05"]), lambda h, n, *_: n in (0, 6)),
    (dict(where=["month=2025-01"]), lambda h, n, *_: n <= 1),
    (dict(machines=["gpu-a"], where=["batch_size=64"]), lambda h, n, b, *_: h == "gpu-a" and b == 64),
    (dict(machines=["gpu-a", "gpu-b"], where=["run_id=a03b64", "run_id=b11b64"]),
     lambda h, n, b, r, *_: r in ("a03b64", "b11b64")),
]


@pytest.mark.parametrize("options,pick", FILTERS)
def test_filters_select_the_same_runs_from_a_store_and_folders(fleet, options, pick):
    folders, store = fleet
    want = expected(pick)
    assert want and want != expected(lambda *_: True)
    assert run_ids(read_store(store, **options)) == want
    filters = Filters.parse(options.get("since"), options.get("until"),
                            options.get("machines", ()), options.get("where", ()))
    assert run_ids(apply(read_input(folders), filters)) == want
    assert run_ids(read_input(store, filters)) == want


def test_store_rows_are_the_folders_rows(fleet):
    folders, store = fleet
    a = read_input(folders).sort_values(["run_id", "trial"]).reset_index(drop=True)
    b = read_input(store).sort_values(["run_id", "trial"]).reset_index(drop=True)
    assert list(a.columns) == list(b.columns)
    for column in a.columns:
        if column == "source":
            continue
        left, right = a[column], b[column]
        if pd.api.types.is_numeric_dtype(left) and pd.api.types.is_numeric_dtype(right):
            assert np.allclose(left.astype(float), right.astype(float), equal_nan=True), column
        else:
            text = [lambda s: s.astype(object).where(s.notna(), "").astype(str)]
            assert (text[0](left) == text[0](right)).all(), column


def test_report_reads_a_store_with_filters(fleet, tmp_path, cli_here):
    from gpubench.results.report import load_report

    folders, store = fleet
    data = load_report([store], filters=Filters.parse(machines=["gpu-b"]))
    assert run_ids(data.trials) == expected(lambda h, *_: h == "gpu-b")
    proc = cli_here("report", store, "--where", "date=2025-02-05", "-o", tmp_path / "r.html")
    assert proc.returncode == 0, proc.stderr
    assert "Test GPU B" in (tmp_path / "r.html").read_text()


# --- bad input: one line, exit 2 ----------------------------------------------------------

@pytest.mark.parametrize("command", [("history",), ("compare", "--where-new", "date=2025-02-05"),
                                     ("report", "-o", "/dev/null")])
def test_unknown_where_column_is_one_line_naming_close_ones(fleet, cli_here, command):
    folders, store = fleet
    proc = cli_here(command[0], store, *command[1:], "--where", "drivr_version=550")
    line = one_line_error(proc, "--where drivr_version", "driver_version")
    assert "no such column" in line


def test_where_base_needs_a_real_column_and_a_number_where_numbers_are(fleet, cli_here):
    folders, store = fleet
    one_line_error(cli_here("compare", store, "--where-base", "nonsense=1"), "--where-base nonsense")
    one_line_error(cli_here("history", store, "--where", "batch_size=big"), "batch_size holds numbers")
    one_line_error(cli_here("history", store, "--where", "batch_size"), "COLUMN=VALUE")
    one_line_error(cli_here("history", store, "--since", "yesterday-ish"), "--since", "not a date")
    one_line_error(cli_here("history", store, "--where", "driver_version=999"), "no trial row matches")


def test_a_folder_that_is_not_a_store_is_one_line(fleet, tmp_path, cli_here):
    folders, store = fleet
    other = tmp_path / "other"
    other.mkdir()
    (other / "store.json").write_text(json.dumps({"kind": "something-else"}))
    one_line_error(cli_here("history", other), "is not a gpubench store", "something-else")
    bare = tmp_path / "bare"  # a store's files without its marker
    (bare / "trials" / "month=2025-01" / "machine=x").mkdir(parents=True)
    one_line_error(cli_here("compare", bare, folders), "is not a gpubench store", "store.json")
    newer = tmp_path / "newer"
    newer.mkdir()
    (newer / "store.json").write_text(json.dumps({"kind": "gpubench-store", "layout": 99}))
    one_line_error(cli_here("report", newer, "-o", tmp_path / "r.html"), "layout 99", "upgrade")
    one_line_error(cli_here("history", tmp_path / "nowhere"), "no such file or folder")


def test_a_corrupt_parquet_file_is_one_line_and_the_rest_reads(fleet, tmp_path, cli_here):
    import shutil

    folders, store = fleet
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    bad = sorted((copy / "trials" / "month=2025-02" / "machine=gpu-b").glob("*.parquet"))[0]
    bad.write_bytes(b"PAR1 this is not a parquet file at all")
    line = one_line_error(cli_here("history", copy), str(bad), "corrupt Parquet file")
    assert "Traceback" not in line
    one_line_error(cli_here("compare", copy, "--where-base", "date=2025-02-04",
                            "--where-new", "date=2025-02-05"), str(bad))
    # The files a filter prunes are never opened: the rest of the store still reads.
    proc = cli_here("history", copy, "--machine", "gpu-a", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    proc = cli_here("history", copy, "--until", "2025-01-31", "--min-segment", "2")
    assert proc.returncode == 0, proc.stderr


def test_rows_repeated_across_files_count_once(fleet, tmp_path, cli_here):
    # A writer killed between renaming its trials and runs files leaves its trial rows
    # in the store; the next `store add` writes them again: the readers keep one of each.
    import shutil

    folders, store = fleet
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    for original in sorted((copy / "trials" / "month=2025-02" / "machine=gpu-b").glob("*.parquet"))[:3]:
        shutil.copy(original, original.with_name("20991231T000000-again-1-00000000" + original.name[-12:]))
    assert len(read_store(copy)) == len(read_store(store))
    assert _history_json(cli_here, copy) == _history_json(cli_here, store)
