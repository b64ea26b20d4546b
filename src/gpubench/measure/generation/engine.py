"""What a backend gives a generation scenario: an engine over one model's weights with a
static (preallocated) KV cache of `max_batch` slots of `max_len` positions each. A slot
holds one request from its prefill until it is freed, so requests can join and leave
the running batch at every decode step (continuous batching) without reallocating.

Every call returns once its tokens are in host memory (a synchronisation), so the
host's clock after it is when those tokens exist; a scenario stamps token times with it.
Greedy decoding: each token is the argmax of the last position's logits.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Dict, List, Sequence

import numpy as np

# The Step capability (backends/base.py STEP_CAPABILITIES) of steps that generate.
GENERATE_CAPABILITY = "generate"


class GenerationEngine(ABC):
    max_batch: int  # KV-cache slots: requests decoded together at most
    max_len: int  # positions a slot holds: prompt + output tokens at most
    # The device seconds of the last prefill() or decode() call (its work on the device's
    # clock: CUDA events on a GPU, the host's clock on the CPU), read after the call.
    last_call_s: float = 0.0

    @abstractmethod
    def prefill(self, slots: Sequence[int], prompts: Sequence[np.ndarray]) -> List[int]:
        """Runs each prompt (int64 token ids) into its free slot's cache and returns
        each one's first generated token."""

    @abstractmethod
    def decode(self, slots: Sequence[int]) -> List[int]:
        """One decode step for these occupied slots, each at its own position: appends
        each slot's last token to its cache and returns each one's next token."""

    @abstractmethod
    def free(self, slot: int) -> None:
        """Ends the slot's request; the slot can take a new prompt."""

    def facts(self) -> Dict[str, Any]:
        """What run.json keeps of the engine (its cache bytes, how decode is run)."""
        return {}
