"""The prompts a generation server is sent: their lengths drawn from --prompt-dist, their
token ids random in the vocabulary, all from the run's seed (the same requests on every
run of a seed).

--prompt-dist is one of
- `fixed`: every prompt --prompt-len tokens;
- `uniform:LO-HI`: lengths uniform in LO..HI tokens (both included);
- a shipped histogram's name (gpubench/data/prompt_lengths/<name>.json: `sharegpt`,
  `alpaca`): lengths drawn from its bins, uniform within a bin. Each file says what it
  is: a log-normal with a published mean (the vLLM paper's figures for the data set), an
  assumed spread, not the data set itself. Where its longest prompt does not fit the
  model (seq_len less the output tokens), every length is scaled down by one factor, so
  the shape is kept; the run records the factor.

Parsing a spec and reading a histogram import no numpy (the option's check uses them).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Dict, List, Optional, Sequence

HISTOGRAM_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "data", "prompt_lengths")
FIXED, UNIFORM = "fixed", "uniform"
# streams of the request seed: the prompt lengths, and their token ids
LENGTH_STREAM, TOKEN_STREAM = 3, 4


@lru_cache(maxsize=None)
def histogram_names() -> List[str]:
    """The shipped histograms (their files' names)."""
    try:
        return sorted(f[:-5] for f in os.listdir(HISTOGRAM_DIR) if f.endswith(".json"))
    except FileNotFoundError:
        return []


@lru_cache(maxsize=None)
def histogram(name: str) -> Dict[str, Any]:
    """A shipped histogram's file: its `edges` (tokens, increasing; bin i holds lengths
    edges[i] .. edges[i+1] - 1), `weights` and its provenance."""
    with open(os.path.join(HISTOGRAM_DIR, f"{name}.json"), encoding="utf-8") as f:
        return json.load(f)


@dataclass(frozen=True)
class PromptDist:
    """A parsed --prompt-dist: its kind (fixed, uniform or a histogram's name) and, for
    uniform, its bounds."""

    kind: str
    low: int = 0
    high: int = 0

    @property
    def spec(self) -> str:
        return f"{UNIFORM}:{self.low}-{self.high}" if self.kind == UNIFORM else self.kind

    def longest(self, prompt_len: int) -> int:
        """The longest prompt before any scaling."""
        if self.kind == FIXED:
            return prompt_len
        if self.kind == UNIFORM:
            return self.high
        return histogram(self.kind)["edges"][-1] - 1

    def scale(self, room: int) -> float:
        """The factor a histogram's lengths are scaled by to fit `room` tokens (1: they
        fit; fixed and uniform are never scaled: a length past the room is the user's
        error, preflight's to refuse)."""
        if self.kind in (FIXED, UNIFORM):
            return 1.0
        return min(1.0, room / self.longest(0))

    def mean(self, prompt_len: int, room: int) -> float:
        """The expected prompt length (the rows' prompt_len with a distribution)."""
        if self.kind == FIXED:
            return float(prompt_len)
        if self.kind == UNIFORM:
            return (self.low + self.high) / 2
        h, s = histogram(self.kind), self.scale(room)
        edges, weights = h["edges"], h["weights"]
        total = sum(weights)
        mids = [(a + b - 1) / 2 for a, b in zip(edges[:-1], edges[1:])]
        return max(1.0, s * sum(w * m for w, m in zip(weights, mids)) / total)


def parse_prompt_dist(text: str) -> Optional[PromptDist]:
    """The distribution `text` names; None when it names none (the option's check)."""
    text = str(text).strip().lower()
    if text == FIXED or text in histogram_names():
        return PromptDist(text)
    kind, _, bounds = text.partition(":")
    low, _, high = bounds.partition("-")
    if kind != UNIFORM or not (low.isdigit() and high.isdigit()):
        return None
    lo, hi = int(low), int(high)
    return PromptDist(UNIFORM, lo, hi) if 1 <= lo <= hi else None


def prompt_lengths(dist: PromptDist, count: int, prompt_len: int, room: int,
                   seed: Sequence[int]) -> Any:
    """`count` prompt lengths (int64 numpy array) from `dist`, each at least 1 and at most
    `room` for a histogram (scaled: PromptDist.scale), drawn from `seed`."""
    import numpy as np

    rng = np.random.default_rng([*seed, LENGTH_STREAM])
    if dist.kind == FIXED:
        return np.full(count, prompt_len, dtype=np.int64)
    if dist.kind == UNIFORM:
        return rng.integers(dist.low, dist.high + 1, count, dtype=np.int64)
    h = histogram(dist.kind)
    edges = np.asarray(h["edges"], dtype=np.int64)
    weights = np.asarray(h["weights"], dtype=float)
    bins = rng.choice(len(weights), size=count, p=weights / weights.sum())
    raw = rng.integers(edges[bins], edges[bins + 1])  # uniform within each bin
    scaled = np.rint(raw * dist.scale(room)).astype(np.int64)
    return np.clip(scaled, 1, max(1, room))


def prompt_tokens(lengths: Sequence[int], vocab: int, seed: Sequence[int]) -> List[Any]:
    """Each prompt's token ids (int64), random in the vocabulary, from `seed`."""
    import numpy as np

    rng = np.random.default_rng([*seed, TOKEN_STREAM])
    return [rng.integers(0, vocab, int(n), dtype=np.int64) for n in lengths]


def describe(dist: PromptDist, prompt_len: int, room: int) -> Dict[str, Any]:
    """run.json's account of the prompt lengths: the spec, its mean, a histogram's
    scaling and provenance."""
    out: Dict[str, Any] = {"prompt_dist": dist.spec,
                           "mean_tokens": dist.mean(prompt_len, room),
                           "longest_tokens": min(room, dist.longest(prompt_len))}
    if dist.kind not in (FIXED, UNIFORM):
        h = histogram(dist.kind)
        out.update(scaled_by=dist.scale(room), source=h["source"], what_it_is=h["what_it_is"])
    return out


def prompt_dist_error(dist: PromptDist, prompt_len: Optional[int], output_len: int,
                      seq_len: int) -> Optional[str]:
    """Why prompts of `dist` and `output_len` generated tokens cannot fit the model's
    `seq_len` (None: they can)."""
    longest = dist.longest(prompt_len or 0) if dist.kind in (FIXED, UNIFORM) else 1
    if longest + output_len > seq_len:
        what = (f"--prompt-dist {dist.spec}'s longest prompt ({longest} tokens)"
                if dist.kind == UNIFORM else f"a prompt of {longest} tokens")
        return (f"{what} and --output-len {output_len} make {longest + output_len} "
                f"positions; the model holds seq_len {seq_len}")
    return None

