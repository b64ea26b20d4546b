"""A fingerprint per run and a diff per verdict (issue 30): run.json's `fingerprint`
recorded through the NVML test double (unsupported queries None with the reason),
compare's `changed` column saying what else differs between the two sides (the PCIe
link first), `gpubench env` showing the same fingerprint without importing a framework,
and older runs without one compared all the same."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from gpubench.results import compare_load
from gpubench.results.fingerprint import GPU_KEYS, KEYS, assemble, cudnn_text
from gpubench.results.fingerprint_diff import ITEMS, SHOWN_WITH_OTHERS, changed, differences
from gpubench.telemetry.nvml_fingerprint import GPU_KEYS as NVML_GPU_KEYS

from nvml_double import double_env, fake_nvml_dir, run_cli  # noqa: F401  (fixture)

FIXTURES = Path(__file__).parent / "fixtures"
LINREG = ("--workload", "linreg", "--backend", "torch-cpu", "--telemetry", "nvml",
          "--trials", "3", "--warmup-s", "0.05", "--min-trial-s", "0.05")
FRAMEWORKS = ("torch", "tensorflow", "onnxruntime", "tensorrt", "keras")

# the double's other boards
DEGRADED = dict(PCIE_WIDTH=8, POWER_LIMIT_W=600, DRIVER_VERSION="560.35.03",
                ECC_AGGREGATE_UNCORRECTED=2)
UNSUPPORTED = dict(UNSUPPORTED="vbios,pcie,ecc,mig", MEMORY_REPAIR="pages", RETIRED_DBE=3)


@pytest.fixture(scope="module")
def runs(fake_nvml_dir, tmp_path_factory):
    """Run folders of one configuration on the double: a healthy board twice, a
    degraded one (x8 link, lower power limit, another driver, ECC errors), and one
    whose queries are partly unsupported."""
    out = tmp_path_factory.mktemp("fingerprint_runs")
    folders = {}
    for name, fake in (("healthy", {}), ("again", {}), ("degraded", DEGRADED),
                       ("unsupported", UNSUPPORTED)):
        done = run_cli(fake_nvml_dir, out / name, LINREG, **fake)
        assert done.proc.returncode == 0, done.proc.stderr
        folders[name] = done.folder
    return folders


def fingerprint(folder: Path) -> dict:
    return json.loads((folder / "run.json").read_text())["fingerprint"]


def compare_json(base: Path, new: Path) -> dict:
    proc = subprocess.run([sys.executable, "-m", "gpubench", "compare", str(base), str(new),
                           "--format", "json", "--fail-on", "never"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


# --- recorded -------------------------------------------------------------------------

def test_a_run_records_its_fingerprint_in_run_json(runs):
    fp = fingerprint(runs["healthy"])
    assert fp["driver_version"] == "550.54.15" and fp["cuda_driver_version"] == "12.4"
    assert fp["framework"].startswith("torch 2.")
    assert fp["vbios_version"] == "96.00.89.00.01"
    assert (fp["pcie_gen"], fp["pcie_gen_max"], fp["pcie_width"], fp["pcie_width_max"]) == (5, 5, 16, 16)
    assert fp["power_limit_w"] == fp["default_power_limit_w"] == 700
    assert fp["ecc_mode"] is True and fp["ecc_aggregate_uncorrected"] == 0
    assert fp["remapped_rows_uncorrected"] == 0 and fp["remapped_rows_pending"] is False
    assert fp["mig_mode"] is False and fp["persistence_mode"] is True
    assert fp["max_sm_clock_mhz"] == 1980 and fp["app_sm_clock_mhz"] == 1755
    assert fp["kernel"] and fp["cpu_model"]
    assert set(KEYS) <= set(fp)
    # an H100 repairs memory by remapping rows: retired pages are not supported there
    assert fp["retired_pages_dbe"] is None
    assert "Not Supported" in fp["unavailable"]["retired_pages_dbe"]


def test_unsupported_queries_are_none_with_the_reason(runs):
    fp = fingerprint(runs["unsupported"])
    for key in ("vbios_version", "pcie_width", "pcie_gen_max", "ecc_mode",
                "ecc_aggregate_corrected", "mig_mode", "remapped_rows_corrected"):
        assert fp[key] is None, key
        assert "Not Supported" in fp["unavailable"][key], key
    assert fp["retired_pages_dbe"] == 3 and fp["retired_pages_pending"] is False
    assert fp["power_limit_w"] == 700  # the rest is read all the same


def test_the_nvml_part_and_the_declaration_agree():
    assert NVML_GPU_KEYS == GPU_KEYS
    compared = {k for k in KEYS} - set(SHOWN_WITH_OTHERS)
    probe = {k: 1 for k in KEYS}
    for key in compared:  # every fact is compared by some item
        other = dict(probe, **{key: 2})
        assert differences(probe, other), key


# --- compared ---------------------------------------------------------------------------

def test_compare_says_what_else_changed_the_link_first(runs):
    row, = compare_json(runs["healthy"], runs["degraded"])["rows"]
    assert row["changed"].split("; ") == [
        "pcie link x8 (max x16) <- x16", "power limit 600 W <- 700 W",
        "ECC uncorrected errors (aggregate) 2 <- 0 (grew)", "driver 560.35.03 <- 550.54.15"]


def test_identical_fingerprints_list_nothing(runs):
    row, = compare_json(runs["healthy"], runs["again"])["rows"]
    assert row["changed"] == ""


def test_the_terminal_table_prints_it_under_the_verdict(runs):
    proc = subprocess.run([sys.executable, "-m", "gpubench", "compare", str(runs["healthy"]),
                           str(runs["degraded"]), "--fail-on", "never"],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "120"})
    assert proc.returncode == 0, proc.stderr
    line, = [l for l in proc.stdout.splitlines() if l.startswith("changed: ")]
    assert line.startswith("changed: pcie link x8 (max x16) <- x16; power limit")
    markdown = subprocess.run([sys.executable, "-m", "gpubench", "compare", str(runs["healthy"]),
                               str(runs["degraded"]), "--format", "markdown"],
                              capture_output=True, text=True, timeout=120).stdout
    assert "### What else changed" in markdown and "pcie link x8 (max x16)" in markdown


def test_a_side_whose_runs_differ_says_so(runs, tmp_path):
    both = tmp_path / "base"
    both.mkdir()
    shutil.copytree(runs["healthy"], both / runs["healthy"].name)
    shutil.copytree(runs["degraded"], both / runs["degraded"].name)
    row, = compare_json(both, runs["again"])["rows"]
    assert "base runs differ among themselves" in row["changed"]
    assert "pcie_width 16 / 8" in row["changed"] and "driver_version" in row["changed"]
    assert "pcie link" not in row["changed"]  # not compared: the base has no one value


def test_a_suite_folder_finds_its_runs_fingerprints(runs, tmp_path):
    suite = tmp_path / "suite"
    run = runs["degraded"]
    shutil.copytree(run, suite / "runs" / run.name)
    shutil.copy(run / "trials.csv", suite / "trials.csv")
    (suite / "run.json").write_text(json.dumps({"schema_version": 7, "suite_id": "s"}))
    frame = compare_load.read_input(suite)
    run_id = str(frame["run_id"].iloc[0])
    assert compare_load.fingerprints(frame)[run_id]["pcie_width"] == 8


def test_older_runs_compare_with_no_fingerprint(runs, tmp_path):
    """A v1 run (schema <= 6: no fingerprint in its run.json) beside a new run of the
    same configuration: compared, and the row says there is nothing to diff."""
    device = pd.read_csv(runs["healthy"] / "trials.csv")["device_name"].iloc[0]
    old = tmp_path / "v1"
    shutil.copytree(FIXTURES / "v1_run", old)
    frame = pd.read_csv(old / "trials.csv", dtype=str, keep_default_na=False)
    frame["device_name"] = device
    frame.to_csv(old / "trials.csv", index=False)
    row, = compare_json(old, runs["healthy"])["rows"]
    assert row["changed"] == "base: no fingerprint (older run)"
    row, = compare_json(old, old)["rows"]
    assert row["changed"] == "no fingerprint (older run)"


# --- the diff, item by item ------------------------------------------------------------

def board(**changes):
    gpu = {key: 0 for key in GPU_KEYS}
    gpu.update(pcie_gen=5, pcie_gen_max=5, pcie_width=16, pcie_width_max=16, power_limit_w=350.0,
               default_power_limit_w=350.0, ecc_mode=True, ecc_mode_pending=True,
               mig_mode=False, mig_mode_pending=False, persistence_mode=True,
               remapped_rows_pending=False, remapped_rows_failure=False,
               retired_pages_pending=False, vbios_version="96.00.89.00.01")
    env = {"driver_version": "550.54.15", "cuda_driver_version": "12.4", "cuda_version": "12.4",
           "cudnn_version": "90100", "framework": "torch", "framework_version": "2.5.1",
           "kernel": "6.8.0", "cpu_model": "EPYC", "cpu_governor": "performance"}
    record = assemble(env, gpu)
    record.update(changes)
    return record


def test_each_item_says_new_from_base():
    assert changed([board()], [board(power_limit_w=300.0)]) == "power limit 300 W <- 350 W"
    assert changed([board()], [board(ecc_volatile_corrected=7)]) == \
        "ECC corrected errors (volatile) 7 <- 0 (grew)"
    assert changed([board()], [board(ecc_mode=False, ecc_mode_pending=False)]) == "ECC off <- on"
    assert changed([board()], [board(mig_mode_pending=True)]) == "MIG off (on after reset) <- off"
    assert changed([board()], [board(remapped_rows_uncorrected=1)]) == \
        "remapped rows (uncorrectable) 1 <- 0"
    assert changed([board()], [board(persistence_mode=False)]) == "persistence off <- on"
    assert changed([board()], [board(app_sm_clock_mhz=1410)]) == \
        "application SM clock 1410 MHz <- 0 MHz"
    assert changed([board(cpu_governor="performance")], [board(cpu_governor="powersave")]) == \
        "CPU governor powersave <- performance"
    assert changed([board()], [board()]) == ""


def test_order_is_performance_first_versions_after():
    new = board(kernel="6.9.0", driver_version="560.35.03", pcie_width=8, power_limit_w=300.0,
                cudnn_version="9.3.0")
    assert changed([board()], [new]).split("; ") == [
        "pcie link x8 (max x16) <- x16", "power limit 300 W <- 350 W",
        "driver 560.35.03 <- 550.54.15", "cuDNN 9.3.0 <- 9.1.0", "kernel 6.9.0 <- 6.8.0"]
    assert [name for name, _ in ITEMS][:3] == ["pcie", "power limit", "ecc counts"]


def test_pcie_generation_below_max_alike_is_an_idle_gpu_not_a_change():
    idle = board(pcie_gen=1)
    assert changed([idle], [idle]) == ""
    assert changed([board()], [idle]) == "pcie link gen1 x16 (max gen5 x16) <- gen5 x16"
    narrow = board(pcie_width=8)
    assert changed([narrow], [narrow]) == "pcie link x8 (max x16) on both sides"


def test_cudnn_versions_read_alike_from_torch_and_wheels():
    assert cudnn_text(90100) == cudnn_text("9.1.0.70") == "9.1.0"
    assert cudnn_text("8902") == "8.9.2"


def test_a_cpu_run_records_the_host_part_only():
    record = assemble({"framework": "torch", "framework_version": "2.5.1", "kernel": "6.8.0",
                       "cpu_model": "EPYC", "cpu_governor": None}, None)
    assert not set(GPU_KEYS) & set(record)
    assert record["kernel"] == "6.8.0" and "gpu" in record["unavailable"]
    assert "cpu_governor" in record["unavailable"]


# --- gpubench env -----------------------------------------------------------------------

def test_env_shows_the_fingerprint_without_importing_a_framework(fake_nvml_dir):
    code = ("import sys, io, json, contextlib\n"
            "from gpubench.cli import main\n"
            "out = io.StringIO()\n"
            "with contextlib.redirect_stdout(out):\n"
            "    assert main(['env', '--json']) == 0\n"
            f"print(json.dumps({{'imported': [m for m in {FRAMEWORKS!r} if m in sys.modules],\n"
            "                  'env': json.loads(out.getvalue())}))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=double_env(fake_nvml_dir, PCIE_WIDTH=8))
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found["imported"] == []
    fp, = found["env"]["fingerprint"]
    assert fp["pcie_width"] == 8 and fp["driver_version"] == "550.54.15"
    assert fp["kernel"] and "fingerprint" not in found["env"]["gpus"]["gpus"][0]
    text = subprocess.run([sys.executable, "-m", "gpubench", "env"], capture_output=True,
                          text=True, timeout=120,
                          env={**double_env(fake_nvml_dir, PCIE_WIDTH=8), "COLUMNS": "200"})
    assert text.returncode == 0, text.stderr
    assert [l for l in text.stdout.splitlines() if "gpu0.pcie_width " in l and " 8 " in l]
    assert "fingerprint.kernel" in text.stdout


def test_nccl_and_cudnn_fall_back_to_the_wheels_said_so(tmp_path, monkeypatch):
    from gpubench.results import fingerprint as fp_module

    (tmp_path / "nvidia_nccl_cu12-2.21.5.dist-info").mkdir()
    (tmp_path / "nvidia_cudnn_cu12-9.1.0.70.dist-info").mkdir()
    monkeypatch.syspath_prepend(str(tmp_path))
    fp_module._dist_infos.cache_clear()
    try:
        record = assemble({"cudnn_version": "90300"}, None)  # the backend's wins
    finally:
        fp_module._dist_infos.cache_clear()
    assert record["nccl_version"] == "2.21.5" and record["cudnn_version"] == "9.3.0"
    assert set(record["sources"]) == {"nccl_version"}


def test_cpu_governors_of_every_cpu(tmp_path):
    from gpubench.machine import cpu_governors

    assert cpu_governors(str(tmp_path)) is None
    for cpu, governor in enumerate(("powersave", "powersave", "performance")):
        folder = tmp_path / f"cpu{cpu}" / "cpufreq"
        folder.mkdir(parents=True)
        (folder / "scaling_governor").write_text(governor + "\n")
    assert cpu_governors(str(tmp_path)) == "powersave x2, performance x1"
