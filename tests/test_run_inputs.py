"""What `gpubench run` (and suites) make of the values given (issue 28): a parameter
given twice is refused, not silently the last; a backend that runs inference only
takes infer when no --mode is given."""

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
