"""What a workload is: data only. A name, the task, the input shape, the loss, the
optimizer, a default batch size and a model description. No framework appears here."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

from gpubench.errors import UserError
from gpubench.models import Layer, ModelStats, analyze

# language_model: a prediction per position, targets int64 [B, seq] (the next token).
# collective: no model; a message the ranks of a run exchange (workloads/collectives.py).
TASKS = ("regression", "classification", "language_model", "collective")
LOSSES = ("mse", "cross_entropy")
OPTIMIZERS = ("sgd", "adam", "adamw")
INPUT_DTYPES = {"float32": 4, "int64": 8}  # the input's dtype -> bytes per element


@dataclass(frozen=True)
class Workload:
    name: str
    task: str
    input_shape: Tuple[int, ...]  # per sample: (features,) or logical (C, H, W)
    num_outputs: int  # classes, or regression targets
    loss: str
    optimizer: str
    optimizer_args: Tuple[Tuple[str, float], ...]
    default_batch_size: int
    layers: Tuple[Layer, ...]
    params: Tuple[Tuple[str, Any], ...] = ()  # the resolved --param values
    # Token models: int64 token ids in, and the tokens one sample holds (its sequence
    # length: tokens/s = samples/s x tokens_per_sample); None for the others.
    input_dtype: str = "float32"
    tokens_per_sample: Optional[int] = None
    # Collectives: the operation (allreduce, allgather) and the message sizes swept, in
    # bytes (the whole message, as nccl-tests counts it); None and () for the others.
    collective: Optional[str] = None
    message_sizes: Tuple[int, ...] = ()

    def __post_init__(self) -> None:
        assert self.task in TASKS and self.loss in LOSSES and self.optimizer in OPTIMIZERS
        assert self.input_dtype in INPUT_DTYPES
        assert self.task != "language_model" or self.tokens_per_sample, self.name
        assert (self.task == "collective") == bool(self.collective and self.message_sizes)

    @property
    def output_shape(self) -> Tuple[int, ...]:
        """Per sample: (num_outputs,), or (seq, vocab) logits for a language model."""
        if self.task == "language_model":
            return (int(self.tokens_per_sample), self.num_outputs)  # type: ignore[arg-type]
        return (self.num_outputs,)

    @property
    def input_itemsize(self) -> int:
        """Bytes per input element as the data is made on the host (data/synthetic.py)."""
        return INPUT_DTYPES[self.input_dtype]

    @cached_property
    def stats(self) -> ModelStats:
        stats = analyze(self.layers, self.input_shape)
        assert stats.output_shape == self.output_shape, (self.name, stats.output_shape)
        return stats

    @property
    def params_str(self) -> str:
        """Canonical text of the parameters, as in the `params` result column."""
        return format_params(dict(self.params))


@dataclass(frozen=True)
class ParamSpec:
    type: type
    default: Any
    help: str
    minimum: Optional[float] = None
    maximum: Optional[float] = None

    def parse(self, name: str, text: str) -> Any:
        bound = ""
        if self.minimum is not None and self.maximum is not None:
            bound = f" in [{self.minimum}, {self.maximum}]"
        elif self.minimum is not None:
            bound = f" >= {self.minimum}"
        expected = f"{self.type.__name__}{bound}"
        try:
            if self.type is bool:
                lowered = text.strip().lower()
                if lowered not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(text)
                value: Any = lowered in ("true", "1", "yes")
            else:
                value = self.type(text)
        except ValueError:
            raise UserError(f"parameter {name} must be {expected}, got {text!r}") from None
        if (self.minimum is not None and value < self.minimum) or (
                self.maximum is not None and value > self.maximum):
            raise UserError(f"parameter {name} must be {expected}, got {text!r}")
        return value


@dataclass(frozen=True)
class WorkloadSpec:
    """A registered workload: its parameters and how to build it from their values."""

    name: str
    description: str
    build: Callable[..., Workload]
    params: Mapping[str, ParamSpec] = field(default_factory=dict)

    def resolve(self, raw: Mapping[str, str] | None = None) -> Workload:
        """Builds the workload from `--param` texts; unknown keys and bad values are
        user errors that name the valid keys."""
        raw = dict(raw or {})
        unknown = sorted(set(raw) - set(self.params))
        if unknown:
            valid = ", ".join(sorted(self.params)) or "none"
            raise UserError(
                f"unknown parameter {unknown[0]!r} for workload {self.name} (valid: {valid})")
        values = {k: spec.default for k, spec in self.params.items()}
        for key, text in raw.items():
            values[key] = self.params[key].parse(key, text)
        try:
            return self.build(**values)
        except ValueError as exc:  # a shape the model cannot take, say
            raise UserError(f"workload {self.name} with {format_params(values)}: {exc}") from None


def format_params(values: Mapping[str, Any]) -> str:
    return ";".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}"
                    for k, v in sorted(values.items()))


def parse_param_args(items: Sequence[str]) -> Dict[str, str]:
    """`["features=4096", "lr=0.1"]` -> {"features": "4096", "lr": "0.1"}."""
    out: Dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise UserError(f"--param takes KEY=VALUE, got {item!r}")
        if key.strip() in out:  # as a suite's duplicate key: not the last one silently
            raise UserError(f"--param {key.strip()} given twice ({key.strip()}="
                            f"{out[key.strip()]} and {item.strip()}): give it once")
        out[key.strip()] = value.strip()
    return out
