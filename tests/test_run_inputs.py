"""What `gpubench run` (and suites) make of the values given (issue 28): a parameter
given twice is refused, not silently the last; a backend that runs inference only
takes infer when no --mode is given."""

from pathlib import Path

import pytest

from conftest import PLUGIN_ENV, lines_with, run_cli_here


def _one_error(result, text):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = lines_with(result.stderr, "error")
    assert len(lines) == 1 and text in lines[0], result.stderr


def test_a_param_given_twice_is_refused():
    """Finding 16: -p hidden=64 -p hidden=128 kept the last one silently."""
    _one_error(run_cli_here("run", "-w", "linreg", "-b", "test-ok", "-p", "features=3",
                            "-p", "features=4", "--dry-run", env_extra=PLUGIN_ENV),
               "--param features given twice (features=3 and features=4)")


def test_an_inference_only_backend_infers_without_mode():
    """Finding 16: onnxruntime-cpu without --mode was refused for training."""
    result = run_cli_here("run", "-w", "linreg", "-b", "test-infer-only", "--dry-run",
                          env_extra=PLUGIN_ENV)
    assert result.returncode == 0, result.stderr
    assert " mode=infer " in result.stdout  # the resolved configuration says so
    _one_error(run_cli_here("run", "-w", "linreg", "-b", "test-infer-only", "--mode", "train",
                            "--dry-run", env_extra=PLUGIN_ENV), "runs inference only")


def test_a_suite_entry_on_an_inference_only_backend_infers(tmp_path):
    from gpubench.suite.config import parse_suite

    runs = parse_suite({"runs": [{"workloads": "linreg",
                                  "backends": ["torch-cpu", "onnxruntime-cpu"]}]},
                       tmp_path / "s.yaml")
    assert [(r.backend, r.mode) for r in runs] == [("torch-cpu", "train"),
                                                  ("onnxruntime-cpu", "infer")]


@pytest.mark.parametrize("name", ["onnxruntime-cpu", "onnxruntime-cuda", "tensorrt"])
def test_the_inference_only_backends_say_so(name):
    from gpubench.measure.request import infers_only

    assert infers_only(name) and not infers_only("torch-cpu")


def _git(*args, cwd):
    import subprocess

    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_git_commit_is_the_code_that_ran_not_the_current_folders(tmp_path, monkeypatch):
    """Finding 7: git_commit came from the current folder's repository: empty from a
    scratch folder, another project's HEAD inside another repository."""
    from gpubench.machine import gpubench_checkout, machine_environment

    checkout = gpubench_checkout()
    if checkout is None or not (Path(checkout) / ".git").exists():
        pytest.skip("gpubench runs from an installed copy here, not a git checkout")
    ours = _git("rev-parse", "HEAD", cwd=checkout)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    other = tmp_path / "other-project"
    other.mkdir()
    _git("init", "-q", cwd=other)
    (other / "f").write_text("x")
    _git("add", "f", cwd=other)
    _git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "other", cwd=other)
    theirs = _git("rev-parse", "HEAD", cwd=other)
    for folder, caller in ((scratch, None), (other, theirs)):
        monkeypatch.chdir(folder)
        env = machine_environment()
        assert env["git_commit"].split("-")[0] == ours
        assert env["caller_git_commit"] == caller


RUN = ("run", "-w", "linreg", "-b", "test-ok", "--dry-run")
RANKS = ("--nproc", "1", "--nnodes", "2")
# Finding 17: every argument naming a URL, a host, a port, a path or a number, given a
# value of the wrong kind: (arguments, what the one error line says). Each was a
# traceback, a run that started (ranks, a worker) before failing, or silently taken.
WRONG_KIND = [
    (RUN + RANKS + ("--master-addr", "127.0.0.1", "--master-port", "70000"),
     "--master-port: expected a port number in 1..65535"),
    (RUN + RANKS + ("--master-addr", "127.0.0.1", "--master-port", "abc"), "--master-port"),
    (RUN + RANKS + ("--master-port", "29500", "--master-addr", "a b"),
     "--master-addr: expected a host name or an IP address"),
    (RUN + RANKS + ("--master-port", "29500", "--master-addr", "http://node0"), "--master-addr"),
    (RUN + RANKS + ("--master-port", "29500", "--master-addr", "300.1.1.1"), "--master-addr"),
    (RUN + ("--out", ""), "--out: expected a path"),
    (RUN + ("--python", ""), "--python: expected a path"),
    (RUN + ("--data", "mnist", "--data-dir", ""), "--data-dir: expected a path"),
    (("run", "-w", "linreg", "-b", "onnxruntime-cpu", "--onnx", "", "--dry-run"),
     "--onnx: expected a path"),
    (RUN + ("--seed", str(2**32)), "--seed: expected an integer in 0..4294967295"),
    (RUN + ("--threads", str(2**31)), "--threads: expected a positive integer (at most"),
    (RUN + ("--device", "1" + "0" * 22), "--device: expected an integer in 0.."),
    (RUN + ("--trials", "1" + "0" * 22), "--trials"),
    (RUN + ("--timeout", "nan"), "--timeout"),
    (("suite", "configs/does-not-matter.yaml", "--out", ""), "--out: expected a path"),
    (("compare", "", "results"), "BASE: expected a path"),
    (("history", "results", "--output", ""), "--output/-o: expected a path"),
    (("report", "results", "--output", ""), "--output/-o: expected a path"),
    (("show", ""), "FOLDER: expected a path"),
    (("export", "-w", "linreg", "--out", ""), "--out: expected a path"),
    (("data", "fetch", "mnist", "--mirror", "not a url"), "--mirror 'not a url'"),
    (("data", "fetch", "mnist", "--mirror", ""), "--mirror ''"),
    (("data", "fetch", "mnist", "--mirror", "ftp://host/mnist"),
     "expected an http://, https:// or file:// URL"),
    (("data", "fetch", "mnist", "--mirror", "https://"), "expected a host"),
    (("data", "fetch", "mnist", "--timeout-s", "-1"), "--timeout-s: expected a positive number"),
    (("data", "fetch", "mnist", "--timeout-s", "nan"), "--timeout-s"),
    (("data", "path", "mnist", "--data-dir", ""), "--data-dir: expected a path"),
    (("env", "--all-environments", "--timeout", "nan"), "--timeout: expected a positive number"),
    (("env", "--all-environments", "--timeout", "inf"), "--timeout"),
    (("env", "--all-environments", "--timeout", "0"), "--timeout"),
]


@pytest.mark.parametrize("args, says", WRONG_KIND, ids=[" ".join(a[:1] + a[-2:]) or "''"
                                                           for a, _ in WRONG_KIND])
def test_a_value_of_the_wrong_kind_is_refused_at_the_door(tmp_path, monkeypatch, args, says):
    """One line, exit 2, nothing started or written (the data folder stays empty)."""
    monkeypatch.setenv("GPUBENCH_DATA_DIR", str(tmp_path / "data"))
    result = run_cli_here(*args, env_extra=PLUGIN_ENV, cwd=tmp_path)
    _one_error(result, says)
    assert not (tmp_path / "data").exists() and not (tmp_path / "results").exists()


def test_a_bad_mirror_in_the_environment_is_refused_too(tmp_path):
    result = run_cli_here("data", "fetch", "mnist", "--data-dir", str(tmp_path / "d"),
                          env_extra={"GPUBENCH_MNIST_MIRRORS": "not a url"})
    _one_error(result, "$GPUBENCH_MNIST_MIRRORS 'not a url'")
