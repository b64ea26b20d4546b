"""Python environments: a suite runs across two interpreters (rows and run.json say
which ran each), `gpubench envs add` installs this checkout into a second venv,
`run --python`, `env --all-environments`, the choice of environment for a backend,
`compare --by framework_version` across environments, and every bad environment as
one line naming the suite file and key, exit 2.

The second environment is a venv made once for the module (no network): system
site-packages, and this interpreter's own site-packages through a .pth line, so it has
the same packages but not gpubench, which the module's `envs add` installs."""

import json
import os
import stat
import subprocess
import sys
import sysconfig
from pathlib import Path

import pandas as pd
import pytest

from conftest import PLUGIN_ENV, run_cli_here
from gpubench.launch.interpreter import package_folder
from gpubench.results import schema
from gpubench.cli.run import checked_python
from gpubench.launch.environments import name_for, pick
from test_compare import make_trials

SRC = str(Path(package_folder()).parent)
FAST = {"trials": 2, "warmup_s": 0.02, "min_trial_s": 0.02, "telemetry": "none"}


def _cli_in_fresh_process(args, env):
    """gpubench ARGS in a fresh interpreter that imports this checkout's gpubench but
    gives its children no PYTHONPATH to find it by."""
    code = (f"import sys; sys.path.insert(0, {SRC!r}); from gpubench.cli import main; "
            f"sys.exit(main({list(map(str, args))!r}))")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=300)


@pytest.fixture(scope="module")
def second(tmp_path_factory):
    """(venv folder, its python, the config home naming it `other`, envs add's output)."""
    root = tmp_path_factory.mktemp("envs")
    venv = root / "venv-other"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages",
                    str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    if sys.prefix != sys.base_prefix:  # this interpreter is a venv: share its packages
        Path(purelib, "shared-packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    config = root / "config"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["XDG_CONFIG_HOME"] = str(config)
    added = _cli_in_fresh_process(["envs", "add", "other", venv], env)
    return venv, str(python), config, added


def _env(config: Path) -> dict:
    return {**PLUGIN_ENV, "XDG_CONFIG_HOME": str(config)}


def test_envs_add_installs_this_checkout_and_names_it(second):
    venv, python, config, added = second
    assert added.returncode == 0, added.stderr
    assert f"other: {python} (Python " in added.stdout and "gpubench: installed" in added.stdout
    # without any PYTHONPATH, the venv now imports this checkout's gpubench
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run([python, "-c", "import gpubench, os; print(os.path.dirname(gpubench.__file__))"],
                           capture_output=True, text=True, env=env, timeout=60)
    assert os.path.realpath(where.stdout.strip()) == os.path.realpath(package_folder())
    registry = json.loads((config / "gpubench" / "environments.json").read_text())
    assert registry == {"environments": {"other": python}}


def test_one_suite_runs_in_both_environments(second, tmp_path):
    venv, python, config, _ = second
    suite = tmp_path / "two.yaml"
    suite.write_text(json.dumps({
        "environments": {"here": sys.executable, "other": str(venv)},
        "defaults": FAST,
        "runs": [{"workloads": "linreg", "backends": "test-ok", "environments": ["here", "other"]}]}))
    out = tmp_path / "out"
    proc = run_cli_here("suite", suite, "--out", out, env_extra=_env(config))
    assert proc.returncode == 0, proc.stderr
    folder = next(out.iterdir())
    trials = pd.read_csv(folder / "trials.csv")
    assert sorted(trials["environment"].unique()) == ["here", "other"]
    assert (trials.groupby("environment")["status"].apply(list) == pd.Series(
        {"here": ["ok", "ok"], "other": ["ok", "ok"]})).all()
    meta = json.loads((folder / "run.json").read_text())
    assert {r["environment"]: r["python"] for r in meta["runs"]} == {
        "here": sys.executable, "other": python}
    for run in meta["runs"]:  # each run's own run.json: the interpreter its worker ran in
        run_meta = json.loads((folder / run["folder"] / "run.json").read_text())
        assert run_meta["environment"]["python_executable"] == run["python"]
        assert run_meta["config"]["environment"] == run["environment"]
    # compare by environment: the two are matched as one configuration (every trial
    # counted: one a busy machine marked contended would leave its side short)
    proc = run_cli_here("compare", folder, "--by", "environment", "--format", "json",
                        "--include-contended")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["rows"]
    assert [(r["base"], r["new"], r["verdict"]) for r in rows] == [
        ("here", "other", "inconclusive")]  # 2 trials a side: too few to call


def test_without_yaml_a_backend_runs_where_its_framework_is(second, tmp_path, monkeypatch):
    """test-elsewhere is available only in the registered environment `other` (as
    TensorFlow only in .venv-tf): `run` and a suite that names no environment take it
    there; what this interpreter can run stays here."""
    venv, python, config, _ = second
    env = {**_env(config), "GPUBENCH_TEST_PREFIX": str(venv)}
    proc = run_cli_here("run", "-w", "linreg", "-b", "test-elsewhere", "--trials", "2",
                        "--warmup-s", "0.02", "--min-trial-s", "0.02", "--telemetry", "none",
                        "--out", tmp_path, "--format", "json", env_extra=env)
    assert proc.returncode == 0, proc.stderr
    assert f"test-elsewhere is not available here; it runs in environment other ({python})" \
        in proc.stderr
    folder = Path(json.loads(proc.stdout)["path"])
    assert set(pd.read_csv(folder / "trials.csv")["environment"]) == {"other"}
    assert json.loads((folder / "run.json").read_text())["environment"]["python_executable"] == python
    suite = tmp_path / "plain.yaml"
    suite.write_text(json.dumps({"runs": [{"workloads": "linreg",
                                           "backends": ["test-ok", "test-elsewhere"]}]}))
    proc = run_cli_here("suite", suite, "--dry-run", env_extra=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[:2] == ["linreg test-ok train fp32 batch default",
                                            "linreg test-elsewhere train fp32 batch default env other"]
    # --python VENV: checked, and its rows would name it by its registered name
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    assert checked_python(str(venv)) == python and name_for(python) == "other"


def test_all_environments_lists_each_with_its_backends(second):
    _, python, config, _ = second
    proc = run_cli_here("env", "--all-environments", "--json", env_extra=_env(config))
    assert proc.returncode == 0, proc.stderr
    envs = {e["name"]: e for e in json.loads(proc.stdout)["environments"]}
    assert envs["default"]["python"] == sys.executable and envs["other"]["python"] == python
    for name in ("default", "other"):
        assert envs[name]["this_gpubench"] and "error" not in envs[name]
        assert envs[name]["backends"]["test-ok"]["available"]
        assert envs[name]["backends"]["test-ok"]["framework"] == "numpy"


def _inventory(available=(), frameworks=()):
    backends = {"torch-cpu": "torch", "tf-cpu": "tensorflow", "tf-gpu": "tensorflow"}
    return {"backends": {b: {"available": b in available, "framework": f} for b, f in backends.items()},
            "frameworks": {f: {"framework_version": "1.0"} for f in frameworks}}


def test_a_backend_goes_to_the_first_environment_that_can_run_it():
    torch_env = _inventory(["torch-cpu"], ["torch"])
    tf_env = _inventory(["tf-cpu"], ["tensorflow"])
    tf_cpu_only = _inventory([], ["tensorflow"])  # tf-gpu without a GPU
    candidates = [("torch", torch_env), ("cpu-tf", tf_cpu_only), ("tf", tf_env)]
    assert pick("torch-cpu", candidates) == "torch"
    assert pick("tf-cpu", candidates) == "tf"  # the first that can run it, not the first listed
    assert pick("tf-gpu", candidates) == "cpu-tf"  # none can: the first with TensorFlow says why
    assert pick("tf-cpu", [("torch", torch_env)]) is None


def test_compare_by_framework_version_pairs_rows_across_environments(tmp_path):
    """torch 2.13 in one environment against 2.14 in another: one configuration."""
    rows = pd.concat([
        make_trials((8, 1000.0), seed=1, environment="torch", framework_version="2.13"),
        make_trials((8, 800.0), seed=2, run_id="r2", environment="torch-next",
                    framework_version="2.14")])
    rows.to_csv(tmp_path / "all.csv", index=False)
    proc = run_cli_here("compare", tmp_path / "all.csv", "--by", "framework_version",
                        "--format", "json")
    assert proc.returncode == 1, proc.stderr  # 2.14 is 20% slower
    assert [(r["base"], r["new"], r["verdict"]) for r in json.loads(proc.stdout)["rows"]] == [
        ("2.13", "2.14", "slower")]
    assert "environment" in schema.match_columns("driver_version")  # only what an env decides


def _suite(tmp_path, text):
    path = tmp_path / "envs.yaml"
    path.write_text(text)
    return path


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _one_error(proc, *fragments):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


RUNS = "runs:\n  - {workloads: linreg, backends: test-ok, environments: [x]}\n"


def test_bad_environments_are_one_line_naming_file_and_key(tmp_path):
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not a program\n")
    talker = _script(tmp_path / "talker", "echo hello\n")
    # answers the probe as a Python 3.8 would (the probe's mark is its third argument)
    old = _script(tmp_path / "python3.8", 'echo "$3 {\\"version\\": [3, 8, 18]}"\n')
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=300)
    env = {**PLUGIN_ENV, "XDG_CONFIG_HOME": str(tmp_path / "config")}
    cases = [
        (f"environments: {{x: {text_file}}}\n" + RUNS, "environments.x", "not an executable Python"),
        (f"environments: {{x: {tmp_path / 'missing'}}}\n" + RUNS, "environments.x", "no such file"),
        (f"environments: {{x: {talker}}}\n" + RUNS, "environments.x", "not a Python interpreter"),
        (f"environments: {{x: {old}}}\n" + RUNS, "environments.x",
         "Python 3.8.18 cannot run gpubench (it needs Python >= 3.10)"),
        (f"environments: {{x: {bare}}}\n" + RUNS, "environments.x",
         "lacks gpubench's dependencies (numpy, pandas"),
        (f"environments:\n  x: {sys.executable}\n  x: {bare}\n" + RUNS, "line 3",
         "key 'x' is used twice"),
        (f"environments: {{x: {sys.executable}, y: {sys.executable}}}\n" + RUNS,
         "environments.y", "the same environment as x"),
        (f"environments: {{default: {sys.executable}}}\n" + RUNS, "environments.default",
         "is the interpreter gpubench runs in"),
        (f"environments: {{y: {sys.executable}}}\n" + RUNS, "runs[0].environments[0]",
         "unknown environment 'x'"),
    ]
    for text, key, message in cases:
        suite = _suite(tmp_path, text)
        _one_error(run_cli_here("suite", suite, "--dry-run", env_extra=env), str(suite), key, message)
    _one_error(run_cli_here("run", "-w", "linreg", "-b", "test-ok", "--python", talker, env_extra=env),
               "--python", "not a Python interpreter")
    _one_error(run_cli_here("envs", "add", "y", bare, env_extra=env), "envs add y",
               "lacks gpubench's dependencies")
    assert not list(bare.rglob("gpubench-checkout.pth"))  # refused before anything was written


def test_without_pip_the_checkout_goes_in_through_a_pth_file(tmp_path):
    from gpubench.launch.interpreter import Probe
    from gpubench.launch.env_install import PTH_NAME, install_checkout

    site = tmp_path / "site-packages"
    how = install_checkout(Probe(sys.executable, (3, 11, 7), purelib=str(site), tools={}))
    assert (site / PTH_NAME).read_text() == SRC + "\n"
    assert how == f"{site / PTH_NAME} names {SRC} (no pip there)"
    # pip without a setuptools that builds editable wheels: the same, and says why
    old = Probe(sys.executable, (3, 11, 7), purelib=str(tmp_path / "b"),
                tools={"pip": "23.2", "setuptools": "65.5.0"})
    assert install_checkout(old).endswith("(setuptools 65.5.0 there builds wheels only with "
                                          "the wheel package, which is missing)")


def test_envs_add_refuses_a_name_or_an_environment_used_twice(second):
    venv, python, config, _ = second
    env = _env(config)
    _one_error(run_cli_here("envs", "add", "other", sys.executable, env_extra=env),
               "the name other is already used by", python)
    _one_error(run_cli_here("envs", "add", "again", venv, env_extra=env),
               f"{python} is already named other")


def test_run_python_takes_a_registered_name(second, tmp_path):
    """Issue 28, finding 12: `--python NAME` refused a name `gpubench envs add` had
    just registered ("not an executable Python interpreter")."""
    venv, python, config, _ = second
    proc = run_cli_here("run", "-w", "linreg", "-b", "test-ok", "--python", "other",
                        "--dry-run", env_extra=_env(config), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "environment=other" in proc.stdout
    unknown = run_cli_here("run", "-w", "linreg", "-b", "test-ok", "--python", "nosuch",
                           "--dry-run", env_extra=_env(config), cwd=tmp_path)
    assert unknown.returncode == 2 and unknown.stderr.count("\n") == 1, unknown.stderr
    assert "--python nosuch: no such environment (known: default, other" in unknown.stderr
