"""Schema v2: v1 files (a fixture written by the last v1 writer) read, migrated and
compared against v2 runs; and the configuration identity declared once, so that one
edit of the declaration changes compare's matching, the suite's resume key and the
de-duplication of rows together."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from conftest import run_cli
from gpubench.results import schema
from gpubench.results.compare import compare
from gpubench.results.compare_load import read_files
from gpubench.results.reader import read_run, read_trials

V1_RUN = Path(__file__).parent / "fixtures" / "v1_run"


def _v1_copy(tmp_path, name="v1", **columns):
    """The v1 fixture folder copied, with `columns` overwritten in its trials.csv as
    text (the fixture stays as the v1 writer left it)."""
    folder = tmp_path / name
    shutil.copytree(V1_RUN, folder)
    if columns:
        frame = pd.read_csv(folder / "trials.csv", dtype=str, keep_default_na=False)
        for column, value in columns.items():
            frame[column] = value
        frame.to_csv(folder / "trials.csv", index=False)
    return folder


def test_the_fixture_is_a_v1_file():
    raw = pd.read_csv(V1_RUN / "trials.csv")
    assert set(raw["schema_version"]) == {1}
    assert not {"scenario", "exec", "world_size", "environment", "rank"} & set(raw.columns)


def test_v1_rows_read_as_single_process_throughput_runs():
    trials = read_run(V1_RUN).trials
    assert list(trials.columns[:len(schema.TRIAL_COLUMNS)]) == list(schema.TRIAL_COLUMNS)
    assert set(trials["schema_version"]) == {schema.SCHEMA_VERSION}
    assert set(trials["scenario"]) == {"throughput"} and set(trials["exec"]) == {"eager"}
    assert set(trials["world_size"]) == {1} and set(trials["environment"]) == {"default"}
    assert set(trials["rank"]) == {0}
    assert trials["started_utc"].isna().all() and trials["git_commit"].isna().all()
    # the measurements themselves are untouched
    raw = pd.read_csv(V1_RUN / "trials.csv")
    pd.testing.assert_series_equal(trials["throughput_samples_per_s"],
                                   raw["throughput_samples_per_s"])


def test_v1_xla_backends_name_their_exec_mode(tmp_path):
    folder = _v1_copy(tmp_path, backend="tf-cpu-xla")
    trials = read_trials(folder / "trials.csv")
    assert set(trials["exec"]) == {"xla"} and set(trials["backend"]) == {"tf-cpu-xla"}


def test_rows_of_two_versions_each_migrate_from_their_own(tmp_path):
    v1 = pd.read_csv(V1_RUN / "trials.csv", dtype=str, keep_default_na=False)
    v2 = read_trials(V1_RUN / "trials.csv").astype(object)
    v2["exec"], v2["environment"], v2["run_id"] = "compile", "torch-next", "newrun00"
    mixed = pd.concat([v1, v2[list(schema.TRIAL_COLUMNS)]], ignore_index=True)
    mixed.to_csv(tmp_path / "trials.csv", index=False)
    trials = read_trials(tmp_path / "trials.csv")
    assert list(trials["exec"]) == ["eager"] * len(v1) + ["compile"] * len(v2)
    assert list(trials["environment"]) == ["default"] * len(v1) + ["torch-next"] * len(v2)
    assert list(trials["run_id"]) == list(v1["run_id"]) + ["newrun00"] * len(v2)


def test_a_v1_file_compares_against_a_v2_run(tmp_path):
    pytest.importorskip("torch")
    new = tmp_path / "new"
    # Default threads: a v1 row's thread count is unknown and reads as the default
    # (a --threads 1 run is another configuration: tests/test_protocol_identity.py).
    proc = run_cli("run", "-w", "linreg", "-b", "torch-cpu", "--trials", "4",
                   "--min-trial-s", "0.05", "--warmup-s", "0.05", "--telemetry", "none",
                   "--out", str(new), "-q")
    assert proc.returncode == 0, proc.stderr
    v2_trials = read_trials(next(new.glob("*/trials.csv")))
    assert set(v2_trials["schema_version"]) == {schema.SCHEMA_VERSION}
    # The fixture was written on another machine's CPU: give it this one's name, so that
    # the only differences left are the schema version and the measurements.
    base = _v1_copy(tmp_path, device_name=v2_trials["device_name"].iloc[0])
    # Every trial counts (n is asserted): a trial of a run on a busy machine may be marked
    # contended, and compare leaves those out unless --include-contended. The verdict
    # itself is what the two machines' speeds make it: only its agreement with the exit
    # code is asserted.
    proc = run_cli("compare", str(base), str(new), "--format", "json", "--include-contended")
    rows = json.loads(proc.stdout)["rows"]
    assert len(rows) == 1
    row = rows[0]
    assert row["verdict"] in ("slower", "faster", "same", "inconclusive")
    assert proc.returncode == (1 if row["verdict"] == "slower" else 0), proc.stderr
    assert (row["n_base"], row["n_new"]) == (4, 4)
    assert (row["scenario"], row["exec"], row["environment"]) == ("throughput", "eager", "default")


# -- the identity declared once ------------------------------------------------------

def _rows(seed, run_id="5dbac95d"):
    frame = read_trials(V1_RUN / "trials.csv")
    return frame.assign(seed=seed, run_id=run_id)


def _resume_plan(tmp_path, seed_done, seed_asked):
    """A suite folder whose one ok run had `seed_done`, resumed by a suite asking
    for `seed_asked`: (runs to do, runs skipped)."""
    from gpubench.suite.plan import plan_suite
    out = tmp_path / f"out-{seed_done}-{seed_asked}"
    done = out / "20261130T000000Z-vm-suite000"
    done.mkdir(parents=True)
    (done / "run.json").write_text(json.dumps({"kind": "suite", "suite_name": "s"}))
    _rows(seed_done).to_csv(done / "trials.csv", index=False)
    config = tmp_path / "s.yaml"
    config.write_text(f"defaults: {{seed: {seed_asked}}}\n"
                      "runs:\n  - {workloads: [linreg], backends: [torch-cpu]}\n")
    plan = plan_suite(config, out, resume=True)
    return len(plan.runs), len(plan.skipped)


def _behaviours(tmp_path):
    tmp_path.mkdir()
    table = compare(_rows(1), _rows(2, run_id="otherrun"))
    matched = not table["verdict"].isin(["base_only", "new_only"]).any()
    # the same run's rows read twice (a copy beside the original), seed differing
    (tmp_path / "a.csv").write_text(_rows(1).to_csv(index=False))
    (tmp_path / "b.csv").write_text(_rows(2).to_csv(index=False))
    deduplicated = len(read_files([tmp_path / "a.csv", tmp_path / "b.csv"])) == len(_rows(1))
    resumed = _resume_plan(tmp_path, 1, 2) == (0, 1)
    return matched, resumed, deduplicated


def test_one_edit_of_the_identity_changes_matching_resume_and_dedup(tmp_path, monkeypatch):
    # seed is not part of the configuration (other values, the same work): rows
    # differing in it are the same configuration for compare, --resume and
    # de-duplication alike.
    assert _behaviours(tmp_path / "before") == (True, True, True)
    monkeypatch.setattr(schema, "CONFIGURATION_COLUMNS",
                        schema.CONFIGURATION_COLUMNS + ("seed",))
    # One edit: now all three tell them apart...
    assert _behaviours(tmp_path / "after") == (False, False, False)
    # ...and a run writes the new column, from the request field of its name.
    pytest.importorskip("torch")
    from gpubench.measure.protocol import ProtocolConfig
    from gpubench.measure.runner import RunRequest, execute_run
    outcome = execute_run(RunRequest("linreg", "torch-cpu", seed=3, telemetry="none",
                                     out_dir=tmp_path / "run",
                                     protocol=ProtocolConfig(trials=1, warmup_s=0.01,
                                                             min_trial_s=0.01)))
    assert list(outcome.trials["seed"]) == [3]
    assert "seed" in pd.read_csv(outcome.path / "trials.csv").columns


def test_labels_show_identity_beyond_the_defaults():
    from gpubench.results.compare_format import config_label
    row = pd.Series({"workload": "mnist", "backend": "tf-cpu-xla", "mode": "train",
                     "precision": "fp32", "batch_size": 64, "params": "", "scenario": "throughput",
                     "exec": "xla", "world_size": 1.0, "environment": "default"})
    assert config_label(row) == "mnist tf-cpu-xla train fp32 batch 64 exec=xla"
    assert config_label(row.drop(["scenario", "exec", "world_size", "environment"])) == \
        "mnist tf-cpu-xla train fp32 batch 64"


@pytest.mark.parametrize("value, text", [(64, "64"), (64.0, "64"), ("64", "64"), ("64.0", "64"),
                                         (None, ""), (float("nan"), ""), (" a ", "a"),
                                         ("features=2", "features=2")])
def test_key_text_makes_equal_values_equal(value, text):
    assert schema.key_text(value) == text
