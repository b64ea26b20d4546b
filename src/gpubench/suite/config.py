"""Suite files: YAML loaded safely (no object construction from tags), validated with
messages that name the file and the key, and expanded into the cross product of the
matrix keys (workloads x backends x modes x ... x params).

    environments:        # optional: Python environments by name (a venv folder or an
      torch: .venv       # interpreter; relative to the current folder). gpubench is
      tf: .venv-tf       # installed into one that lacks it (launch/environments.py)
    defaults:            # optional; any entry key below may also stand here
      trials: 5
      timeout_s: 600
    runs:
      - workloads: [mnist, lenet5]   # matrix keys: a value or a list, crossed
        backends: [torch-cpu]
        modes: [train, infer]
        batch_sizes: [64, 1024]      # null = the workload's default
        params: {hidden: [64, 128]}  # each key's values are crossed too
        repeats: 4                   # runs per configuration, interleaved
        environments: [torch, tf]    # names of the file's environments

Every other key is a `gpubench run` option under its own name (measure/options.py
declares them, with the matrix keys' plural names; docs/suites.md's suite keys table is made
from it): a setting outside its scenario, or one its scenario cannot take, is refused
with the request's own check (measure/preflight.py validate_request), as on the command
line.
"""

from __future__ import annotations

import fnmatch
import itertools
import math
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from gpubench.errors import UserError
from gpubench.measure.option import PARAM, TYPE_NAMES
from gpubench.measure.options import (
    BY_NAME, OPTIONS, check_value, label_parts, suite_default, suite_options,
)

# The file's keys, each an option's (measure/options.py): matrix keys take a value or a
# list of values, crossed; settings one value, as `gpubench run` takes it.
MATRIX = suite_options("matrix")
BY_KEY = {o.key: o for o in suite_options()}
ENTRY_KEYS = set(BY_KEY) | {"params"}
TOP_KEYS = {"environments", "defaults", "runs"}
CLASSIC = ("workload", "backend", "mode", "precision", "batch_size")  # a SuiteRun's own fields
FILTER_KEYS = ("workload", "backend", "mode", "precision", "batch_size", "params", "environment")


@dataclass(frozen=True)
class SuiteRun:
    """One configuration of the matrix: its classic axes, its parameters, and every other
    option's value by name (`settings`: the entry's settings and its other matrix picks).
    Any option reads by its name: `run.exec`, `run.target_qps` (its default if unset)."""

    workload: str
    backend: str
    mode: str
    precision: str
    batch_size: Optional[int]
    params: Tuple[Tuple[str, str], ...]
    settings: Tuple[Tuple[str, Any], ...] = field(default=())

    def __getattr__(self, name: str) -> Any:  # only names that are not fields: options
        if name not in BY_NAME:
            raise AttributeError(f"SuiteRun has no option or field {name!r}")
        return self.setting(name)

    @property
    def params_text(self) -> str:
        return ";".join(f"{k}={v}" for k, v in self.params)

    def setting(self, name: str) -> Any:
        """An option's value for this run (its suite default when the run has none)."""
        settings = dict(self.settings)
        return settings[name] if name in settings else suite_default(BY_NAME[name])

    def values(self) -> Dict[str, Any]:
        """Every option's value by name, what request_from takes."""
        return {**dict(self.settings), **{k: getattr(self, k) for k in CLASSIC},
                "params": dict(self.params)}

    def measured_scenario(self) -> str:
        """The scenario the run measures: the one named, or what its workload or target
        implies (request.scenario_for)."""
        return _scenario_for(self.workload, self.params, self.setting("target_accuracy"),
                             self.setting("scenario"))

    def with_values(self, **values: Any) -> "SuiteRun":
        return replace(self, settings=tuple(sorted({**dict(self.settings), **values}.items())))

    def key(self) -> Tuple[str, ...]:
        """What identifies the configuration in the file (its first six for --filter):
        the matrix, and the identity options (empty where the scenario takes none)."""
        from gpubench.results.schema import key_text
        scenario = self.measured_scenario()
        return (self.workload, self.backend, self.mode, self.precision,
                "" if self.batch_size is None else str(self.batch_size), self.params_text,
                *(key_text(self.setting(o.name) if o.applies(scenario)
                           and o.applies_to_mode(self.mode) else None)
                  for o in OPTIONS if (o.identity or o.suite == "matrix")
                  and o.name not in CLASSIC and o.kind is not PARAM))

    def label(self) -> str:
        batch = "default" if self.batch_size is None else self.batch_size
        params = f" [{self.params_text}]" if self.params else ""
        extra = "".join(" " + part for part in label_parts({**dict(self.settings), "mode": self.mode},
                                                            self.measured_scenario()))
        return (f"{self.workload}{params} {self.backend} {self.mode} {self.precision} "
                f"batch {batch}{extra}")


@lru_cache(maxsize=None)
def _scenario_for(workload: str, params: Tuple[Tuple[str, str], ...],
                  target_accuracy: Optional[float], asked: Optional[str]) -> str:
    from gpubench.measure.request import scenario_for
    return scenario_for(workload, dict(params), target_accuracy, asked)


def _where(source: Path, path: str) -> str:
    return f"{source}: {path}"


def _scalar(value: Any, kind: type, source: Path, path: str) -> Any:
    """A value of `kind` (int accepts integral numbers, float accepts ints; only bool
    takes true/false)."""
    ok = (isinstance(value, kind) and (kind is bool or not isinstance(value, bool))) or (
        kind is float and isinstance(value, int) and not isinstance(value, bool))
    if kind is float and ok and not math.isfinite(value):
        ok = False
    if not ok:
        raise UserError(f"{_where(source, path)}: expected {TYPE_NAMES[kind]}, got {value!r}")
    return float(value) if kind is float else value


def _value_list(o: Any, value: Any, source: Path, path: str) -> List[Any]:
    """A matrix key's values (one, or a list; null: the option's default)."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise UserError(f"{_where(source, path)}: expected at least one value, got an empty list")
    return [None if item is None and o.nullable else
            _value(o, item, source, f"{path}[{i}]" if isinstance(value, list) else path)
            for i, item in enumerate(items)]


def _value(o: Any, value: Any, source: Path, path: str) -> Any:
    """A value of option `o`: its type, then its range or its allowed names."""
    if o.kind.type is str and o.kind.from_text is not None and isinstance(value, int) \
            and not isinstance(value, bool):  # lock_clocks: 1500 (MHz) as its text
        value = str(value)
    value = _scalar(value, o.kind.type, source, path)
    wrong = check_value(o, value)
    if wrong:
        raise UserError(f"{_where(source, path)}: {wrong}")
    return value


def parse_environments(data: Any, source: Path) -> Dict[str, str]:
    """The suite's `environments:` mapping, name -> path as written (checked further,
    and resolved, by launch/environments.py)."""
    raw = data.get("environments") if isinstance(data, dict) else None
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not raw:
        raise UserError(f"{_where(source, 'environments')}: expected a mapping of names to "
                        "venv folders or Python interpreters")
    from gpubench.launch.environments import check_name
    out = {}
    for name, path in raw.items():
        where = _where(source, f"environments.{name}")
        check_name(name, where)
        if not isinstance(path, str) or not path.strip():
            raise UserError(f"{where}: expected a venv folder or a Python interpreter, got {path!r}")
        out[name] = path
    return out


def _check_mapping(value: Any, allowed: set, source: Path, path: str) -> Dict[str, Any]:
    if not isinstance(value, dict):
        raise UserError(f"{_where(source, path)}: expected a mapping, got {type(value).__name__}")
    unknown = sorted(str(k) for k in value if k not in allowed)
    if unknown:
        raise UserError(f"{_where(source, path + '.' + unknown[0] if path else unknown[0])}: "
                        f"unknown key (valid: {', '.join(sorted(allowed))})")
    return value


def _entry(raw: Dict[str, Any], base: Dict[str, Any], source: Path, path: str) -> Dict[str, Any]:
    """Merges an entry over `base` (defaults), validating each key; option values by
    the option's name."""
    merged = dict(base)
    for key, value in raw.items():
        where = f"{path}.{key}"
        o = BY_KEY.get(key)
        if o is not None and o.suite == "matrix":
            merged[o.name] = _value_list(o, value, source, where)
        elif o is not None:
            merged[o.name] = None if value is None and o.nullable else \
                _value(o, value, source, where)
        elif key == "params":
            if not isinstance(value, dict):
                raise UserError(f"{_where(source, where)}: expected a mapping of parameter "
                                f"names to values, got {type(value).__name__}")
            params = {}
            for name, values in value.items():
                items = values if isinstance(values, list) else [values]
                if not items or any(isinstance(v, (dict, list)) or v is None for v in items):
                    raise UserError(f"{_where(source, f'{where}.{name}')}: expected a value "
                                    f"or a list of values")
                params[str(name)] = [str(v).lower() if isinstance(v, bool) else str(v) for v in items]
            merged["params"] = params
    return merged


def _defaults() -> Dict[str, Any]:
    """Every key's value where neither the entry nor `defaults:` gives one."""
    out = {o.name: suite_default(o) for o in suite_options("setting")}
    out.update({o.name: [suite_default(o)] for o in MATRIX})
    return {**out, "params": {}}


def _resolve_protocol_defaults(entry: Dict[str, Any]) -> None:
    """Processes and trials the entry leaves out: gpubench run's defaults (trials
    depend on the processes)."""
    from gpubench.measure.protocol_config import DEFAULT_PROCESSES, default_trials
    entry["processes"] = entry["processes"] or DEFAULT_PROCESSES
    entry["trials"] = entry["trials"] or default_trials(entry["processes"])


def parse_suite(data: Any, source: Path) -> List[SuiteRun]:
    """Validates the loaded YAML and expands it into runs (in file order)."""
    from gpubench.measure.request import default_mode

    if data is None:
        raise UserError(f"{source}: the file is empty")
    top = _check_mapping(data, TOP_KEYS, source, "")
    defaults_raw = _check_mapping(top.get("defaults") or {}, ENTRY_KEYS, source, "defaults")
    base = _entry(defaults_raw, _defaults(), source, "defaults")
    entries = top.get("runs")
    if not isinstance(entries, list) or not entries:
        raise UserError(f"{_where(source, 'runs')}: expected a non-empty list of run entries")
    environments = set(parse_environments(top, source)) | {"default"}
    runs: List[SuiteRun] = []
    for i, raw in enumerate(entries):
        path = f"runs[{i}]"
        entry = _entry(_check_mapping(raw, ENTRY_KEYS, source, path), base, source, path)
        for o in MATRIX:  # workloads, backends: a suite names them
            if (o.required or o.suite_required) and o.key not in raw and o.key not in defaults_raw:
                raise UserError(f"{_where(source, f'{path}.{o.key}')}: missing (neither the "
                                f"entry nor defaults name any)")
        _resolve_protocol_defaults(entry)
        for j, name in enumerate(entry["environment"]):
            if name is not None and name not in environments:
                where = f"{path}.environments" if "environments" in raw else "defaults.environments"
                raise UserError(f"{_where(source, f'{where}[{j}]')}: unknown environment "
                                f"{name!r} (the suite's environments: "
                                f"{', '.join(sorted(environments))})")
        settings = {o.name: entry[o.name] for o in suite_options("setting")}
        param_names = sorted(entry["params"])
        for picks in itertools.product(*(entry[o.name] for o in MATRIX),
                                       *(entry["params"][n] for n in param_names)):
            values = {**settings, **{o.name: v for o, v in zip(MATRIX, picks)}}
            values["mode"] = values["mode"] or default_mode(values["scenario"], values["backend"])
            run = SuiteRun(*(values.pop(k) for k in CLASSIC),
                           tuple(zip(param_names, picks[len(MATRIX):])),
                           tuple(sorted(values.items())))
            _check_request(run, source, path)
            runs.append(run)
    seen = set()
    unique = [r for r in runs if not (r.key() in seen or seen.add(r.key()))]
    return unique


@dataclass(frozen=True)
class SuiteFile:
    runs: List[SuiteRun]
    environments: Dict[str, str]  # name -> venv folder or interpreter, as written


def _check_request(run: SuiteRun, source: Path, path: str) -> None:
    """What its options need of each other (a serving option outside its scenario, a
    server run with neither a rate nor a search, time-to-accuracy on synthetic data):
    the request's own checks, as `gpubench run` makes them, naming the file and the
    entry, before anything runs (each value was checked as it was read)."""
    from gpubench.measure.preflight import validate_together
    from gpubench.measure.request import request_from

    try:
        validate_together(request_from({**run.values(), "scenario": run.measured_scenario()}))
    except UserError as exc:
        raise UserError(f"{_where(source, path)}: {exc}") from None


def load_suite(path: Path) -> List[SuiteRun]:
    return load_suite_file(path).runs


def load_suite_file(path: Path) -> SuiteFile:
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read ({exc})") from None
    try:
        data = yaml.load(text, Loader=_unique_keys_loader())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{path}: invalid YAML{where}: {problem}") from None
    return SuiteFile(parse_suite(data, path), parse_environments(data, path))


def _unique_keys_loader() -> type:
    """yaml.SafeLoader refusing a key written twice in one mapping (safe_load keeps the
    last silently: an environment named twice would lose one of its paths)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> Dict[Any, Any]:
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} is used twice in one mapping", key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep)

    return UniqueKeyLoader


def parse_filter(expr: str) -> List[Tuple[str, str]]:
    """`workload=mnist,backend=torch-*` -> [(key, glob)]; every condition must match."""
    conditions = []
    for part in expr.split(","):
        key, sep, pattern = part.partition("=")
        key = key.strip()
        if not sep or key not in FILTER_KEYS or not pattern.strip():
            raise UserError(f"--filter takes KEY=GLOB[,KEY=GLOB...] with KEY one of "
                            f"{', '.join(FILTER_KEYS)}; got {part!r}")
        conditions.append((key, pattern.strip()))
    return conditions


def matches(run: SuiteRun, conditions: List[Tuple[str, str]]) -> bool:
    key = run.key()
    values = {**dict(zip(FILTER_KEYS[:6], key)), "environment": run.environment or "default"}
    return all(fnmatch.fnmatchcase(values[k], pattern) for k, pattern in conditions)
