"""Suite files: YAML loaded safely (no object construction from tags), validated with
messages that name the file and the key, and expanded into the cross product of
workloads x backends x modes x precisions x batch sizes x params.

    environments:        # optional: Python environments by name (a venv folder or an
      torch: .venv       # interpreter; relative to the current folder). gpubench is
      tf: .venv-tf       # installed into one that lacks it (launch/environments.py)
    defaults:            # optional; any entry key below may also stand here
      trials: 5
      timeout_s: 600
    runs:
      - workloads: [mnist, lenet5]
        backends: [torch-cpu]
        modes: [train, infer]
        precisions: [fp32]
        batch_sizes: [64, 1024]     # null = the workload's default
        execs: [eager, compile]      # execution modes, crossed too (null = the backend's)
        params: {hidden: [64, 128]}  # each key's values are crossed too
        repeats: 4                   # runs per configuration, interleaved: compare then
                                     # tests per-run medians (run-to-run noise included)
        require_idle_gpu: true       # refuse a run when other processes use its GPU
        processes: 5                 # worker processes per run (trials: 2 each unless
                                     # given), interleaved with the other runs' processes
      - workloads: mnist             # time-to-accuracy (gpubench run --target-accuracy)
        backends: [torch-cpu, tf-cpu]
        data: mnist                  # synthetic (default) | mnist; data_dir: FOLDER
        target_accuracy: 0.97        # train until the test accuracy reaches it
        max_epochs: 10
        repeats: 5                   # scored as MLPerf does (drop fastest and slowest)
      - workloads: mnist             # inference, outputs checked against fp32 torch first
        backends: [onnxruntime-cpu]
        modes: infer
        check_accuracy: true         # rows say accuracy_ok (measure/accuracy_gate.py)
      - workloads: mnist             # data-parallel (gpubench run --nproc N): ranks
        backends: [torch-cuda]       # through torchrun, crossed too (null: a plain run)
        nprocs: [1, 2, 4, 8]
        strategy: ddp                # ddp (default)
      - workloads: mnist             # in each named environment (crossed too; left out:
        backends: [torch-cpu]        # the first environment that can run the backend)
        environments: [torch, tf]
      - workloads: [mnist, lenet5]   # served inference (gpubench run --scenario ...);
        backends: [torch-cpu, onnxruntime-cpu]  # modes default to infer for these
        scenarios: [single-stream, multi-stream, offline]  # crossed (null: throughput)
        batch_sizes: [8]             # multi-stream's S; server's and offline's largest batch
      - workloads: mnist
        backends: onnxruntime-cpu
        scenarios: server
        target_qps: [1000, 2000, 4000]  # Poisson rates, crossed: a latency-against-load curve
        latency_bound_ms: 5          # rows say whether p99 held it
        batch_timeout_ms: 0.5        # the dynamic batcher's wait for more (default 0)
      - workloads: mnist
        backends: onnxruntime-cpu
        scenarios: server
        find_max_qps: true           # the highest rate whose p99 meets latency_bound_ms
        latency_bound_ms: 5
        min_queries: 1000            # per trial or probe (default: enough to claim p99)
"""

from __future__ import annotations

import fnmatch
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from gpubench.errors import UserError
from gpubench.measure.scenarios.serving import SERVING_SCENARIOS

# Matrix keys: a scalar or a list of scalars each.
MATRIX_KEYS = {"workloads": str, "backends": str, "modes": str, "precisions": str,
               "batch_sizes": int, "execs": str, "nprocs": int, "environments": str,
               "scenarios": str, "target_qps": float}
# Settings: one scalar each, as `gpubench run` takes them.
SETTING_KEYS = {"trials": int, "warmup_s": float, "min_trial_s": float,
                "target_rel_ci": float, "max_time_s": float, "telemetry": str,
                "sample_hz": float, "timeout_s": float, "seed": int, "threads": int,
                "device": int, "repeats": int, "require_idle_gpu": bool, "processes": int,
                "data": str, "data_dir": str, "target_accuracy": float, "max_epochs": int,
                "check_accuracy": bool, "strategy": str, "latency_bound_ms": float,
                "batch_timeout_ms": float, "find_max_qps": bool, "min_queries": int}
# Settings that may be null (null: gpubench run's default).
NULLABLE_SETTINGS = ("target_rel_ci", "threads", "data_dir", "target_accuracy", "max_epochs",
                     "latency_bound_ms", "batch_timeout_ms", "min_queries")
ENTRY_KEYS = set(MATRIX_KEYS) | set(SETTING_KEYS) | {"params"}
TOP_KEYS = {"environments", "defaults", "runs"}
# trials and processes None: gpubench run's defaults (measure/protocol.py)
DEFAULT_SETTINGS: Dict[str, Any] = {"trials": None, "warmup_s": 1.0, "min_trial_s": 1.0,
                                    "target_rel_ci": None, "max_time_s": 120.0,
                                    "telemetry": "auto", "sample_hz": 10.0,
                                    "timeout_s": 600.0, "seed": 0, "threads": None,
                                    "device": 0, "repeats": 1, "require_idle_gpu": False,
                                    "processes": None, "data": "synthetic", "data_dir": None,
                                    "target_accuracy": None, "max_epochs": None,
                                    "check_accuracy": False, "strategy": "ddp",
                                    "latency_bound_ms": None, "batch_timeout_ms": None,
                                    "find_max_qps": False, "min_queries": None}
# modes default to train, but to infer for the serving scenarios (parse_suite)
DEFAULT_MATRIX: Dict[str, List[Any]] = {"modes": ["train"], "precisions": ["fp32"],
                                        "batch_sizes": [None], "execs": [None],
                                        "nprocs": [None], "environments": [None],
                                        "scenarios": [None], "target_qps": [None]}
# matrix keys whose null means the default (null: gpubench run's choice)
NULLABLE_MATRIX = ("batch_sizes", "execs", "nprocs", "scenarios", "target_qps")
FILTER_KEYS = ("workload", "backend", "mode", "precision", "batch_size", "params", "environment")


@dataclass(frozen=True)
class SuiteRun:
    """One configuration of the matrix with its settings."""

    workload: str
    backend: str
    mode: str
    precision: str
    batch_size: Optional[int]
    params: Tuple[Tuple[str, str], ...]
    settings: Tuple[Tuple[str, Any], ...] = field(default=())
    exec: Optional[str] = None  # execution mode (--exec); None: the backend's default
    nproc: Optional[int] = None  # ranks through torchrun (--nproc); None: a plain run
    environment: Optional[str] = None  # the Python environment; None: chosen when planned
    scenario: Optional[str] = None  # --scenario; None: the workload's (throughput, ...)
    target_qps: Optional[float] = None  # server's Poisson rate (--target-qps)

    @property
    def params_text(self) -> str:
        return ";".join(f"{k}={v}" for k, v in self.params)

    def key(self) -> Tuple[str, ...]:
        """What identifies the configuration in the file (its first six for --filter):
        the matrix, and the settings that change what is measured."""
        settings = dict(self.settings)
        target = settings.get("target_accuracy")
        return (self.workload, self.backend, self.mode, self.precision,
                "" if self.batch_size is None else str(self.batch_size), self.params_text,
                str(settings.get("data", "synthetic")), "" if target is None else f"{target:g}",
                self.exec or "", "" if self.nproc is None else str(self.nproc),
                "" if self.nproc is None else str(settings.get("strategy", "ddp")),
                self.environment or "",
                self.scenario or "", "" if self.target_qps is None else f"{self.target_qps:g}",
                *self._serving_key(settings))

    def _serving_key(self, settings: Dict[str, Any]) -> Tuple[str, ...]:
        """The serving settings that change what is measured (server runs)."""
        if self.scenario != "server":
            return ()
        return tuple("" if settings.get(k) is None else f"{settings[k]:g}"
                     for k in ("latency_bound_ms", "batch_timeout_ms")) + (
            "find" if settings.get("find_max_qps") else "",)

    def label(self) -> str:
        batch = "default" if self.batch_size is None else self.batch_size
        params = f" [{self.params_text}]" if self.params else ""
        settings = dict(self.settings)
        extra = "" if settings.get("data", "synthetic") == "synthetic" else f" data {settings['data']}"
        if settings.get("target_accuracy") is not None:
            extra += f" to accuracy {settings['target_accuracy']:g}"
        if self.exec is not None:
            extra += f" exec {self.exec}"
        if self.nproc is not None:
            strategy = settings.get("strategy", "ddp")
            extra += f" nproc {self.nproc}" + ("" if strategy == "ddp" else f" {strategy}")
        if self.environment not in (None, "default"):
            extra += f" env {self.environment}"
        if self.scenario is not None:
            extra += f" {self.scenario}"
        if self.target_qps is not None:
            extra += f" at {self.target_qps:g} QPS"
        if self.scenario == "server" and settings.get("find_max_qps"):
            extra += " max QPS"
        if self.scenario == "server" and settings.get("latency_bound_ms") is not None:
            extra += f" p99 <= {settings['latency_bound_ms']:g} ms"
        return (f"{self.workload}{params} {self.backend} {self.mode} {self.precision} "
                f"batch {batch}{extra}")

    def setting(self, name: str) -> Any:
        return dict(self.settings)[name]


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
        expected = {int: "an integer", float: "a number", str: "a string",
                    bool: "true or false"}[kind]
        raise UserError(f"{_where(source, path)}: expected {expected}, got {value!r}")
    return float(value) if kind is float else value


def _scalar_list(value: Any, kind: type, source: Path, path: str,
                 allow_null: bool = False) -> List[Any]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise UserError(f"{_where(source, path)}: expected at least one value, got an empty list")
    out = []
    for i, item in enumerate(items):
        if item is None and allow_null:
            out.append(None)
            continue
        out.append(_scalar(item, kind, source, f"{path}[{i}]" if isinstance(value, list) else path))
    return out


def _positive(name: str, value: Any, source: Path, path: str) -> None:
    if name == "data":
        from gpubench.data.sources import DATA_SOURCES
        if value not in DATA_SOURCES:
            raise UserError(f"{_where(source, path)}: expected one of "
                            f"{', '.join(DATA_SOURCES)}, got {value!r}")
        return
    if name == "data_dir":
        return
    if name == "strategy":
        from gpubench.ranks import STRATEGIES
        if value not in STRATEGIES:
            raise UserError(f"{_where(source, path)}: expected one of "
                            f"{', '.join(STRATEGIES)}, got {value!r}")
        return
    if name == "target_accuracy" and value is not None and not 0 < value <= 1:
        raise UserError(f"{_where(source, path)}: expected an accuracy in (0, 1], got {value!r}")
    if name == "telemetry":
        from gpubench.telemetry import TELEMETRY_KINDS
        if value not in TELEMETRY_KINDS:
            raise UserError(f"{_where(source, path)}: expected one of "
                            f"{', '.join(TELEMETRY_KINDS)}, got {value!r}")
        return
    if value is None or isinstance(value, bool):
        return
    lower_ok = value >= 0 if name in ("seed", "device") else value > 0
    if not lower_ok or (name == "target_rel_ci" and value >= 1):
        expected = ("a fraction in (0, 1)" if name == "target_rel_ci"
                    else "a number >= 0" if name in ("seed", "device") else "a positive number")
        raise UserError(f"{_where(source, path)}: expected {expected}, got {value!r}")


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
    """Merges an entry over `base` (defaults), validating each key."""
    merged = dict(base)
    for key, value in raw.items():
        where = f"{path}.{key}"
        if key in MATRIX_KEYS:
            merged[key] = _scalar_list(value, MATRIX_KEYS[key], source, where,
                                       allow_null=key in NULLABLE_MATRIX)
            if key in ("batch_sizes", "nprocs", "target_qps"):
                for b in merged[key]:
                    if b is not None and not b > 0:
                        raise UserError(f"{_where(source, where)}: expected positive numbers, got {b!r}")
            if key == "scenarios":
                from gpubench.measure.scenarios.registry import scenario_names
                for i, name in enumerate(merged[key]):
                    if name is not None and name not in scenario_names():
                        at = f"{where}[{i}]" if isinstance(value, list) else where
                        raise UserError(f"{_where(source, at)}: unknown scenario {name!r} "
                                        f"(valid: {', '.join(scenario_names())})")
        elif key in SETTING_KEYS:
            merged[key] = None if value is None and key in NULLABLE_SETTINGS else \
                _scalar(value, SETTING_KEYS[key], source, where)
            _positive(key, merged[key], source, where)
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


def _resolve_protocol_defaults(entry: Dict[str, Any]) -> None:
    """Processes and trials the entry leaves out: gpubench run's defaults (trials
    depend on the processes)."""
    from gpubench.measure.protocol import DEFAULT_PROCESSES, default_trials
    entry["processes"] = entry["processes"] or DEFAULT_PROCESSES
    entry["trials"] = entry["trials"] or default_trials(entry["processes"])


def parse_suite(data: Any, source: Path) -> List[SuiteRun]:
    """Validates the loaded YAML and expands it into runs (in file order)."""
    if data is None:
        raise UserError(f"{source}: the file is empty")
    top = _check_mapping(data, TOP_KEYS, source, "")
    defaults_raw = _check_mapping(top.get("defaults") or {}, ENTRY_KEYS, source, "defaults")
    base = _entry(defaults_raw, {**DEFAULT_SETTINGS, **DEFAULT_MATRIX, "params": {}}, source, "defaults")
    entries = top.get("runs")
    if not isinstance(entries, list) or not entries:
        raise UserError(f"{_where(source, 'runs')}: expected a non-empty list of run entries")
    environments = set(parse_environments(top, source)) | {"default"}
    runs: List[SuiteRun] = []
    for i, raw in enumerate(entries):
        path = f"runs[{i}]"
        entry = _entry(_check_mapping(raw, ENTRY_KEYS, source, path), base, source, path)
        for key in ("workloads", "backends"):
            if key not in entry:
                raise UserError(f"{_where(source, f'{path}.{key}')}: missing (neither the entry "
                                f"nor defaults name any)")
        _resolve_protocol_defaults(entry)
        for j, name in enumerate(entry["environments"]):
            if name is not None and name not in environments:
                where = f"{path}.environments" if "environments" in raw else "defaults.environments"
                raise UserError(f"{_where(source, f'{where}[{j}]')}: unknown environment "
                                f"{name!r} (the suite's environments: "
                                f"{', '.join(sorted(environments))})")
        settings = tuple((k, entry[k]) for k in sorted(SETTING_KEYS))
        param_names = sorted(entry["params"])
        modes_given = "modes" in raw or "modes" in defaults_raw
        for w, b, m, p, bs, ex, n, env, sc, q, *values in itertools.product(
                entry["workloads"], entry["backends"], entry["modes"], entry["precisions"],
                entry["batch_sizes"], entry["execs"], entry["nprocs"], entry["environments"],
                entry["scenarios"], entry["target_qps"],
                *(entry["params"][n] for n in param_names)):
            if sc in SERVING_SCENARIOS and not modes_given:
                m = "infer"  # served inference: as gpubench run --scenario does
            run = SuiteRun(w, b, m, p, bs, tuple(zip(param_names, values)), settings, ex, n,
                           environment=env, scenario=sc, target_qps=q)
            _check_serving(run, source, path)
            runs.append(run)
    seen = set()
    unique = [r for r in runs if not (r.key() in seen or seen.add(r.key()))]
    return unique


@dataclass(frozen=True)
class SuiteFile:
    runs: List[SuiteRun]
    environments: Dict[str, str]  # name -> venv folder or interpreter, as written


def _check_serving(run: SuiteRun, source: Path, path: str) -> None:
    """A serving setting outside its scenario (or a server run with neither a rate nor a
    search) is an error naming the file and the entry, before anything runs."""
    from types import SimpleNamespace

    from gpubench.measure.protocol import ProtocolConfig
    from gpubench.measure.scenarios.serving.options import validate_serving_request

    s = dict(run.settings)
    request = SimpleNamespace(
        scenario=run.scenario or "throughput", mode=run.mode, batch_size=run.batch_size,
        target_qps=run.target_qps, processes=s["processes"],
        protocol=ProtocolConfig(target_rel_ci=s["target_rel_ci"]),
        **{k: s[k] for k in ("latency_bound_ms", "batch_timeout_ms", "find_max_qps",
                             "min_queries")})
    try:
        validate_serving_request(request)
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
