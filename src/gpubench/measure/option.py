"""What a run option is (measure/options.py declares them all): its name, flag, suite
key, kind of value, default, help, allowed values, whether it is part of a run's
identity, and which scenarios take it. `gpubench run`'s flags, the suite's keys and
defaults, the RunRequest and its per-scenario records, the suite's labels and the
docs' options tables are all made from these. Nothing here imports a framework, and
allowed values that come from a registry are asked for only when a value is checked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, make_dataclass
from typing import Any, Callable, Optional, Sequence, Tuple

# What a suite's YAML type is called in "expected an integer, got 'many'".
TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


@dataclass(frozen=True)
class Kind:
    """A kind of value: its Python type (a suite's YAML value), which values are good,
    and how the command line's text becomes one. `read` raises ValueError with the one
    line the CLI shows; `check` returns what a bad typed value was expected to be."""

    type: type
    expected: str = ""  # "a positive integer": what a bad value should have been
    ok: Callable[[Any], bool] = lambda value: True
    from_text: Optional[Callable[[str], Any]] = None  # default: the type itself
    cli_expected: Optional[str] = None  # the command line's wording, when it says more

    def read(self, text: str) -> Any:
        try:
            value = (self.from_text or self.type)(text)
        except ValueError:
            value = math.nan if self.type is float else None
        if value is None or not self.ok(value):
            raise ValueError(f"expected {self.cli_expected or self.expected}, got {text!r}")
        return value

    def check(self, value: Any) -> Optional[str]:
        """None when `value` (already of the type) is good, else what was expected."""
        return None if self.ok(value) else self.expected


def _finite(test: Callable[[float], bool]) -> Callable[[Any], bool]:
    return lambda v: math.isfinite(v) and test(v)


def _share(text: str) -> float:
    """'0.02' or '2%' as 0.02; NaN when it is not a number (the kinds reject NaN)."""
    raw = text.strip()
    try:
        return float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        return math.nan


def _host(text: str) -> bool:
    """A host name (RFC 1123 labels) or an IPv4 or IPv6 address."""
    import ipaddress
    import re

    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        pass
    labels = text.split(".")
    return (0 < len(text) <= 253 and not labels[-1].isdigit()  # 300.1.1.1: not an address
            and all(re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?", label)
                    for label in labels))


# Whole numbers a framework or the OS takes as a C int (a thread count, a device index):
# a larger one would pass here and fail in the run, after its worker started.
INT_MAX = 2**31 - 1

TEXT = Kind(str)
SWITCH = Kind(bool)  # a flag without a value; true or false in a suite
POSITIVE_INT = Kind(int, f"a positive integer (at most {INT_MAX})", lambda v: 1 <= v <= INT_MAX)
NONNEGATIVE_INT = Kind(int, f"an integer in 0..{INT_MAX}", lambda v: 0 <= v <= INT_MAX)
SEED = Kind(int, "an integer in 0..4294967295 (a 32-bit seed)", lambda v: 0 <= v < 2**32)
PORT = Kind(int, "a port number in 1..65535", lambda v: 1 <= v <= 65535)
HOST = Kind(str, "a host name or an IP address", _host)
PATH = Kind(str, "a path", lambda v: bool(str(v).strip()))  # made absolute in the request
POSITIVE_FLOAT = Kind(float, "a positive number", _finite(lambda v: v > 0))
NONNEGATIVE_FLOAT = Kind(float, "a number >= 0", _finite(lambda v: v >= 0))
FRACTION = Kind(float, "a fraction in (0, 1)", lambda v: 0 < v < 1, _share,
                "a fraction in (0, 1) or a percentage")
ACCURACY = Kind(float, "an accuracy in (0, 1]", lambda v: 0 < v <= 1, _share,
                "an accuracy in (0, 1] (e.g. 0.97 or 97%)")
PARAM = Kind(str)  # KEY=VALUE, repeatable (workloads/base.py parse_param_args)


@dataclass(frozen=True)
class Option:
    """One run option. `default` is the value when it is not given (None: not given; the
    run then decides, and `means` or `shown_default` says what that is)."""

    name: str  # its key among the options, argparse's dest, and by default the rest
    help: str  # --help and docs/usage.md's options table (write % as %%, argparse's rule)
    kind: Kind = TEXT
    default: Any = None
    required: bool = False
    # What not given means where the option applies (the server's batcher timeout 0,
    # the strategy of ranks ddp); identity columns and labels read it.
    means: Any = None
    shown_default: Optional[str] = None  # the docs' default column, when not `default`
    flags: Tuple[str, ...] = ()  # default ("--name-with-dashes",); cli=False: none
    metavar: Optional[str] = None
    choices: Optional[Callable[[], Sequence[str]]] = None  # allowed values, asked when needed
    noun: Optional[str] = None  # "unknown exec mode 'x'": default the name, spaced
    cli_choices: bool = True  # False: the request says what is valid (workload, backend)
    cli: bool = True  # a `gpubench run` flag
    # The suite: "setting" (one value), "matrix" (a list, crossed), or None (no key).
    suite: Optional[str] = "setting"
    suite_key: Optional[str] = None  # default: the name
    suite_default: Any = None  # a suite's default, when not `default` (timeout_s: 600)
    suite_required: bool = False  # a suite entry (or its defaults) must give it
    # The RunRequest: `in_request` names its field there ("": the name; None: not in the
    # request, the CLI or the suite uses it before); `group` names the record of the
    # scenario(s) owning it (RunRequest.serving, .accuracy; "protocol": its ProtocolConfig).
    in_request: Optional[str] = ""
    group: Optional[str] = None
    identity: bool = False  # a configuration column (results/schema.py)
    scenarios: Tuple[str, ...] = ()  # the scenarios that take it (empty: every one)
    modes: Tuple[str, ...] = ()  # the modes (--mode) that take it (empty: every one)
    # Meaningful only with another option (given, or equal to a value): (that option,
    # the value or None, the line when it is not). Checked on the command line, where
    # both come together; a suite's defaults may hold it for entries it does not fit.
    needs: Optional[Tuple[str, Any, str]] = None
    alias_of: Optional[str] = None  # another name for that option's value (--max-batch)
    label: Optional[str] = None  # a suite run's label, when set: "at {} QPS"

    @property
    def flag(self) -> str:
        """The flag messages name (--target-qps), also for an option with no flag."""
        return self.flags[0] if self.flags else "--" + self.name.replace("_", "-")

    @property
    def cli_flags(self) -> Tuple[str, ...]:
        return (self.flags or (self.flag,)) if self.cli else ()

    @property
    def key(self) -> Optional[str]:
        """Its key in a suite file, None when a suite has none."""
        return None if self.suite is None else self.suite_key or self.name

    @property
    def request_field(self) -> Optional[str]:
        return None if self.in_request is None else self.in_request or self.name

    @property
    def nullable(self) -> bool:
        """A suite may write null for it (null: not given)."""
        return self.default is None

    def allowed(self) -> Optional[Sequence[str]]:
        return None if self.choices is None else tuple(self.choices())

    def applies(self, scenario: Optional[str]) -> bool:
        """Whether a run of `scenario` (None: throughput) takes it."""
        return not self.scenarios or (scenario or "throughput") in self.scenarios

    def applies_to_mode(self, mode: Optional[str]) -> bool:
        """Whether a run in `mode` takes it (its identity column is empty otherwise)."""
        return not self.modes or mode in self.modes

    def in_effect(self, value: Any) -> Any:
        """The value as it holds: `means` when it is not given."""
        return self.means if value is None else value

    def unknown(self, value: Any) -> Optional[str]:
        """'unknown exec mode 'x' (valid: ...)' for a value outside the allowed ones."""
        allowed = self.allowed()
        if allowed is None or value in allowed:
            return None
        return (f"unknown {self.noun or self.name.replace('_', ' ')} {value!r} "
                f"(valid: {', '.join(allowed)})")


def record_fields(options: Sequence[Option], defaults: Optional[dict] = None) -> list:
    """make_dataclass's fields for these options' request fields, in order, each with
    its default, or `defaults`' by field (a required option's field has none; a
    repeatable one starts empty)."""
    out = []
    for o in options:
        name = o.request_field
        if name is None:
            continue
        if o.required:
            out.append((name, Any))
        elif o.kind is PARAM:
            out.append((name, Any, field(default_factory=dict)))
        else:
            out.append((name, Any, field(default=(defaults or {}).get(name, o.default))))
    return out


def record_class(name: str, options: Sequence[Option], module: str, doc: str) -> type:
    """A frozen dataclass of these options' request fields: a scenario group's record
    (RunRequest.serving), made from its declaration."""
    cls = make_dataclass(name, record_fields(options), frozen=True, namespace={"__doc__": doc})
    cls.__module__ = module
    return cls
