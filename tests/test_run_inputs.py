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
