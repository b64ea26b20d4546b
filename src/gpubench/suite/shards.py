"""A suite cut into N parts (`gpubench suite FILE --shard i/N`), for N machines: CI
runners or the nodes of a Slurm job array (suite/slurm.py).

The parts are a pure function of the planned runs and their settings: every repeat of
a configuration stays in one part (its repeats are compared with each other, so they
run on one machine), configurations are weighed by run_cost (their settings alone, not
this machine's refusals: a CPU-only submit host must cut a GPU suite as the GPU nodes
do), and dealt longest first to the lightest part so far, ties to the lower part and
in plan order. The same file and filter give the same parts on every machine.

Every shard of one suite run shares one `suite_id`, derived from the suite file's text,
the filter and a batch id (--batch-id, else the Slurm array's job id), so compare,
history and report read the shards' folders as one suite."""

from __future__ import annotations

import argparse
import hashlib
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

from gpubench.errors import UserError

if TYPE_CHECKING:
    from gpubench.suite.plan import PlannedRun

_SHARD_TEXT = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based, as the user writes it
    count: int

    def __str__(self) -> str:  # the rows' `shard` column and run.json's
        return f"{self.index}/{self.count}"

    @property
    def slug(self) -> str:  # in folder names
        return f"shard{self.index}of{self.count}"


def parse_shard(text: str) -> Shard:
    """`i/N` with 1 <= i <= N (argparse type: a bad value is one line, exit 2)."""
    found = _SHARD_TEXT.match(text)
    if not found:
        raise argparse.ArgumentTypeError(f"expected i/N such as 1/4 (part i of N); got {text!r}")
    index, count = int(found.group(1)), int(found.group(2))
    if count < 1 or not 1 <= index <= count:
        raise argparse.ArgumentTypeError(f"{text!r}: the part must be 1 to N and N at least 1 "
                                         f"(e.g. 1/{max(count, 1)})")
    return Shard(index, count)


def partition(weights_s: Sequence[float], count: int) -> List[List[int]]:
    """Longest processing time first: indices of `weights_s` dealt, heaviest first (ties
    in index order), each to the part with the least total so far (ties: the lower part).
    Each part's indices in ascending order."""
    parts: List[List[int]] = [[] for _ in range(count)]
    totals = [0.0] * count
    for i in sorted(range(len(weights_s)), key=lambda i: (-weights_s[i], i)):
        lightest = min(range(count), key=lambda p: (totals[p], p))
        parts[lightest].append(i)
        totals[lightest] += weights_s[i]
    return [sorted(p) for p in parts]


def configuration_weights(planned: Sequence["PlannedRun"],
                          timeout_override: Optional[float] = None
                          ) -> Tuple[List[Tuple[str, ...]], List[float]]:
    """The configurations in plan order and each one's estimated seconds: all its
    repeats (a plan's run per repeat, or one standing for them all) and processes."""
    from gpubench.suite.run_cost import run_cost  # the protocol's module: not for the parser

    weights: Dict[Tuple[str, ...], float] = {}
    for p in planned:
        if p.key not in weights:
            weights[p.key] = (p.run.setting("repeats")
                              * run_cost(p.run, timeout_override).seconds)
    return list(weights), list(weights.values())


def select_shard(planned: Sequence["PlannedRun"], shard: Shard) -> List["PlannedRun"]:
    """The runs of part `shard` (plan order kept). A part may be empty when the suite
    has fewer configurations than parts."""
    keys, weights_s = configuration_weights(planned)
    mine = {keys[i] for i in partition(weights_s, shard.count)[shard.index - 1]}
    return [p for p in planned if p.key in mine]


def shard_weights_s(planned: Sequence["PlannedRun"], count: int) -> List[float]:
    """Each part's estimated seconds (for --dry-run and the balance test)."""
    _, weights_s = configuration_weights(planned)
    return [sum(weights_s[i] for i in part) for part in partition(weights_s, count)]


def batch_id_of(given: Optional[str]) -> str:
    """The batch the shards belong to: --batch-id, else the Slurm job array's id (every
    task of an array shares it). A shard run outside both has no batch to join."""
    batch = given or os.environ.get("SLURM_ARRAY_JOB_ID")
    if not batch:
        raise UserError("--shard needs --batch-id ID (the same on every shard of this suite "
                        "run, e.g. the CI run's id), so the shards' rows share one suite_id")
    return batch


def sharded_suite_id(config_text: str, filter_expr: Optional[str], batch_id: str) -> str:
    """The suite_id every shard of one batch derives alike: a hash of the suite file's
    text, the filter and the batch id (8 hex digits, as new_run_id's)."""
    text = "\0".join([config_text, filter_expr or "", batch_id])
    return hashlib.sha256(text.encode()).hexdigest()[:8]
