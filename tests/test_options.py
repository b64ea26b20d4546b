"""Run options are declared once (measure/options.py): gpubench run's flags, the suite's
keys and defaults, the RunRequest, the identity columns and the docs' options tables
all follow from the declaration, and every bad value of every option is one line and
exit 2, from the command line and from a suite alike."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import REPO, run_cli_here
from gpubench.measure.option import (
    ACCURACY, FRACTION, HOST, NONNEGATIVE_FLOAT, NONNEGATIVE_INT, PATH, PORT, POSITIVE_FLOAT,
    POSITIVE_INT, SEED,
)
from gpubench.measure.options import OPTIONS

# A new option, added to the declaration and nowhere else.
NEW_OPTION = '''    Option("layout", "the inputs' memory layout (a test's option)", default="plain",
           choices=lambda: ("plain", "packed"), identity=True, label="layout {}"),
'''

CHECKS = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    out = Path(sys.argv[1])
    import gpubench
    from gpubench.cli import build_parser
    from gpubench.measure.request import RunRequest, request_from
    from gpubench.measure.runner import execute_run
    from gpubench.results import schema
    from gpubench.results.compare import compare
    from gpubench.results.reader import read_trials
    from gpubench.suite.config import parse_suite
    found = {"package": gpubench.__file__}

    parser = build_parser()  # a run flag
    found["flag"] = parser.parse_args(["run", "-w", "linreg", "--layout", "packed"]).layout
    found["flag_default"] = parser.parse_args(["run", "-w", "linreg"]).layout
    try:
        parser.parse_args(["run", "-w", "linreg", "--layout", "sideways"])
    except SystemExit as exc:
        found["flag_bad_exit"] = exc.code

    entry = {"workloads": "linreg", "backends": "torch-cpu"}  # a suite key with its default
    plain, = parse_suite({"runs": [entry]}, Path("s.yaml"))
    packed, = parse_suite({"runs": [{**entry, "layout": "packed"}]}, Path("s.yaml"))
    found["suite"] = [plain.setting("layout"), packed.setting("layout"), packed.label()]
    try:
        parse_suite({"runs": [{**entry, "layout": "sideways"}]}, Path("s.yaml"))
    except gpubench.errors.UserError as exc:
        found["suite_bad"] = str(exc)

    found["field"] = [RunRequest("linreg", "torch-cpu").layout,  # a RunRequest field
                      request_from({"workload": "linreg", "layout": "packed"}).layout]
    found["match_columns"] = list(schema.match_columns())

    def run(layout, name):  # an identity column: rows hold it, compare matches on it
        fast = {"workload": "linreg", "backend": "torch-cpu", "telemetry": "none", "threads": 1,
                "trials": 2, "warmup_s": 0.01, "min_trial_s": 0.01, "layout": layout}
        outcome = execute_run(request_from({**fast, "out": str(out / name)}))
        return read_trials(outcome.path / "trials.csv")

    a, b, c = run("plain", "a"), run("plain", "b"), run("packed", "c")
    found["rows"] = sorted(set(a["layout"]) | set(c["layout"]))
    found["same"] = compare(a, b)["verdict"].tolist()
    found["different"] = sorted(compare(a, c)["verdict"])
    print(json.dumps(found))
""")


def test_an_option_added_to_the_declaration_alone_is_a_flag_a_suite_key_a_field_and_a_column(
        tmp_path):
    """One entry in measure/options.py, nothing else edited: a `run` flag with its
    allowed values, a suite key with its default (and in the run's label), a RunRequest
    field (default and given), and, marked identity, a trials.csv column that compare
    matches on: runs differing in it are not paired."""
    pytest.importorskip("torch")
    copy = tmp_path / "src" / "gpubench"
    shutil.copytree(REPO / "src" / "gpubench", copy,
                    ignore=shutil.ignore_patterns("__pycache__"))
    declaration = copy / "measure" / "options.py"
    text = declaration.read_text()
    anchor = "MACHINE: Tuple[Option, ...] = (\n"
    assert anchor in text
    declaration.write_text(text.replace(anchor, anchor + NEW_OPTION))
    script = tmp_path / "checks.py"
    script.write_text(CHECKS)
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "src")}
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "out")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["package"] == str(copy / "__init__.py")  # the edited copy ran
    assert (found["flag"], found["flag_default"], found["flag_bad_exit"]) == ("packed", "plain", 2)
    assert found["suite"] == ["plain", "packed",
                              "linreg torch-cpu train fp32 batch default layout packed"]
    assert found["suite_bad"] == ("s.yaml: runs[0].layout: unknown layout 'sideways' "
                                  "(valid: plain, packed)")
    assert found["field"] == ["plain", "packed"]
    assert "layout" in found["match_columns"]
    assert found["rows"] == ["packed", "plain"]
    assert len(found["same"]) == 1 and found["same"][0] not in ("base_only", "new_only")
    assert found["different"] == ["base_only", "new_only"]


def test_identity_options_are_columns_of_the_schema_version():
    """A built-in identity option is a column the schema version declares (with its
    history and migration), not only one the declaration adds for the process."""
    from gpubench.results import schema

    identity = {o.name for o in OPTIONS if o.identity}
    assert identity <= set(schema.VERSIONED_CONFIGURATION_COLUMNS)
    assert schema.CONFIGURATION_COLUMNS == schema.VERSIONED_CONFIGURATION_COLUMNS


def test_the_docs_options_tables_are_the_declarations():
    from gpubench.cli.docs_gen import TABLES, section
    from gpubench.cli.options_doc import run_table, suite_table

    for name, make in (("gpubench run options", run_table), ("suite keys", suite_table)):
        page = REPO / "docs" / TABLES[name][0]
        assert section(page.read_text(), name) == make(), (
            f"{page.name}'s {name} table is not the declaration's: run "
            "`python -m gpubench.cli.docs_gen`")


# A bad value of each kind: (command-line text, suite value).
BAD = {POSITIVE_INT: ("0", 0), NONNEGATIVE_INT: ("-1", -1), POSITIVE_FLOAT: ("0", 0),
       NONNEGATIVE_FLOAT: ("-1", -1), FRACTION: ("1.5", 1.5), ACCURACY: ("0", 0),
       SEED: ("4294967296", 4294967296), PORT: ("70000", 70000), HOST: ("a b", "a b"),
       PATH: ("", "")}
# Options whose values are checked beyond their kind (a name, a file, a range of its own).
BAD_BY_NAME = {"workload": ("nope", "nope"), "backend": ("nope", "nope"),
               "onnx": ("/no/such/model.onnx", None), "environment": ("/no/such/python", "nope"),
               "sample_hz": ("2000", 2000)}


def _bad_values():
    for o in OPTIONS:
        if o.name in BAD_BY_NAME:
            yield o, *BAD_BY_NAME[o.name]
        elif o.kind in BAD:
            yield o, *BAD[o.kind]
        elif o.choices is not None:
            yield o, "bogus", "bogus"


BAD_VALUES = list(_bad_values())


def _one_error_line(done):
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpubench: error: "), done.stderr
    return lines[0]


@pytest.mark.parametrize("o,text,_", [v for v in BAD_VALUES if v[0].cli],
                         ids=lambda v: getattr(v, "name", None))
def test_every_bad_value_is_one_line_and_exit_2_on_the_command_line(tmp_path, o, text, _):
    backend = "onnxruntime-cpu" if o.name == "onnx" else "torch-cpu"  # one that takes a file
    args = {"workload": "linreg", "backend": backend, o.name: text}
    line = ["run", "--dry-run", "--out", str(tmp_path / "out")]
    for name, value in args.items():
        line += [next(opt for opt in OPTIONS if opt.name == name).cli_flags[0], value]
    _one_error_line(run_cli_here(*line))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("o,_,value", [v for v in BAD_VALUES if v[0].key and v[2] is not None],
                         ids=lambda v: getattr(v, "name", None))
def test_every_bad_value_is_one_line_and_exit_2_in_a_suite(tmp_path, o, _, value):
    entry = {"workloads": "linreg", "backends": "torch-cpu", o.key: value}
    config = tmp_path / "suite.yaml"
    config.write_text(json.dumps({"runs": [entry]}))  # JSON is YAML
    line = _one_error_line(run_cli_here("suite", str(config), "--dry-run"))
    assert str(config) in line
