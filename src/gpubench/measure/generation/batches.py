"""Static-batch generation as a protocol step: one iteration = a batch of `batch`
prompts prefilled into the engine's slots, then output_len - 1 greedy decode steps of
them all, then the slots freed. Run through measure/protocol.py's warm-up, calibration
and trials like any step, so generation honours --warmup-s, --trials, --min-trial-s and
--target-rel-ci as throughput does; each call's device seconds (the engine's
`last_call_s`: CUDA events on a GPU, the host's clock on the CPU) are kept per
iteration for the trial's row."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional

import numpy as np

from gpubench.backends.base import HostTimer, Step, StepTimer
from gpubench.measure.generation.engine import GenerationEngine
from gpubench.measure.generation.latency import RequestTimes

PROMPT_SETS = 4  # distinct batches of prompts, cycled through (as resident batches are)


@dataclass
class Generation:
    """One iteration's device seconds: its prefill, then each decode step."""
    prefill_s: float
    decode_s: List[float]

    def request_times(self) -> RequestTimes:
        """A request of the batch on the device's clock from its arrival (the batch's
        start): its first token after the prefill, one more after each decode step."""
        return RequestTimes(0.0, list(np.cumsum([self.prefill_s] + self.decode_s)))


class GenerationBatches(Step):
    def __init__(self, step: Step, engine: GenerationEngine, batch: int, prompt_len: int,
                 output_len: int, vocab: int, seed: int) -> None:
        self.step, self.engine, self.device = step, engine, step.device
        self.batch, self.prompt_len, self.output_len = batch, prompt_len, output_len
        rng = np.random.default_rng(seed)
        self.prompt_sets = [[rng.integers(0, vocab, size=prompt_len, dtype=np.int64)
                             for _ in range(batch)] for _ in range(PROMPT_SETS)]
        self.slots = list(range(batch))
        self.generations: List[Generation] = []  # since the last take()
        self._next = 0

    def run(self, iterations: int, timer: Optional[StepTimer] = None) -> None:
        engine, slots, steps = self.engine, self.slots, self.output_len - 1
        for _ in range(iterations):
            prompts = self.prompt_sets[self._next % PROMPT_SETS]
            self._next += 1
            engine.prefill(slots, prompts)
            prefill_s = engine.last_call_s
            decode_s = [0.0] * steps
            for i in range(steps):
                engine.decode(slots)
                decode_s[i] = engine.last_call_s
            for slot in slots:
                engine.free(slot)
            self.generations.append(Generation(prefill_s, decode_s))

    def take(self) -> List[Generation]:
        """The iterations run since the last take (warm-up's, a discarded trial's, or
        the trial's own)."""
        taken, self.generations = self.generations, []
        return taken

    def make_timer(self, iterations: int) -> StepTimer:
        return HostTimer(iterations)

    def synchronize(self) -> None:
        self.step.synchronize()  # the engine's calls return with their tokens on the host

    def recompiles(self) -> Optional[int]:
        return self.step.recompiles()

    def peak_mem_bytes(self) -> Optional[int]:
        return self.step.peak_mem_bytes()

    def facts(self) -> Any:
        return self.engine.facts()
