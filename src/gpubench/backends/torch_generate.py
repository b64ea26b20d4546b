"""The torch GenerationEngine (measure/generation/engine.py): a static KV cache of
max_batch slots x max_len positions, prefill and greedy decode over it
(backends/torch_kv_model.py), each call timed on the device's clock.

Decode runs one of two ways, chosen by the exec mode:
- `dynamic` (eager): only the slots asked for, reading each layer's cache up to the
  longest of them (a view where the slots are contiguous, no mask where they are all at
  one position: a static batch's every step);
- `static` (compile, cuda-graphs): every slot, the whole cache, a mask hiding each slot's
  positions past its own: fixed shapes that torch.compile builds once and a CUDA graph
  replays. Slots not asked for are decoded too and their answers dropped (their cache
  entry at their next position is written with the value their own next step writes).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from gpubench.backends.exec_modes import compile_mode
from gpubench.backends.torch_kv_model import CachedDecoder, decode, prefill, visible_mask
from gpubench.measure.generation.engine import GenerationEngine


class CallClock:
    """Seconds of one engine call's device work: CUDA events on the step's stream on a
    GPU, the host's clock on the CPU (whose work is done when the call returns)."""

    def __init__(self, stream: Optional[Any]) -> None:
        self.stream = stream
        if stream is not None:
            self._start = torch.cuda.Event(enable_timing=True)
            self._end = torch.cuda.Event(enable_timing=True)
            for event in (self._start, self._end):  # created on their first record
                event.record(stream)
            stream.synchronize()
        self._t0 = 0.0

    def start(self) -> None:
        if self.stream is None:
            self._t0 = time.perf_counter()
        else:
            self._start.record(self.stream)

    def stop(self) -> None:
        if self.stream is not None:
            self._end.record(self.stream)
        else:
            self._t0 = time.perf_counter() - self._t0

    def seconds(self) -> float:
        """After the call's results reached the host (a synchronisation)."""
        return self._t0 if self.stream is None else self._start.elapsed_time(self._end) / 1e3


class TorchGenerationEngine(GenerationEngine):
    def __init__(self, model: torch.nn.Module, max_batch: int, max_len: int,
                 device: torch.device, exec_mode: str = "eager",
                 static: Optional[bool] = None) -> None:
        """`static`: decode every slot over the whole cache (default: in the exec modes
        that need fixed shapes; True in eager runs that path uncompiled, as tests do)."""
        self.decoder = CachedDecoder(model)
        if max_len > self.decoder.max_positions:
            raise ValueError(f"max_len {max_len} is over the model's "
                             f"{self.decoder.max_positions} positions")
        self.max_batch, self.max_len, self.device = max_batch, max_len, device
        self.exec_mode = exec_mode
        d = self.decoder
        dtype = d.embedding.token.weight.dtype
        shape = (d.layers, max_batch, d.heads, max_len, d.head_dim)
        with torch.no_grad():
            self.k_cache = torch.zeros(shape, dtype=dtype, device=device)
            self.v_cache = torch.zeros(shape, dtype=dtype, device=device)
        self.kv_cache_bytes = 2 * self.k_cache.numel() * self.k_cache.element_size()
        self.lengths = [0] * max_batch  # positions filled per slot; 0 = free
        self.tokens = np.zeros(max_batch, dtype=np.int64)  # each slot's last token
        self.static = exec_mode != "eager" if static is None else static
        self.clock = CallClock(torch.cuda.current_stream(device) if device.type == "cuda" else None)
        self.last_call_s = 0.0  # the device seconds of the last prefill or decode
        self.compile_s: Optional[float] = None
        self.check: Optional[Dict[str, Any]] = None  # the check against the uncached model
        self._static_step: Optional[Callable] = None
        if self.static:
            self._build_static()

    # -- the interface ---------------------------------------------------------------
    def prefill(self, slots: Sequence[int], prompts: Sequence[np.ndarray]) -> List[int]:
        if len(slots) != len(prompts):
            raise ValueError("one prompt a slot")
        by_length: Dict[int, List[int]] = {}
        for i, (slot, prompt) in enumerate(zip(slots, prompts)):
            if self.lengths[slot]:
                raise ValueError(f"slot {slot} is occupied")
            if not 0 < len(prompt) < self.max_len:
                raise ValueError(f"a prompt of {len(prompt)} tokens does not fit "
                                 f"{self.max_len} positions")
            by_length.setdefault(len(prompt), []).append(i)
        first = [0] * len(slots)
        picked = []
        # equal lengths prefill together; their inputs reach the device before the clock
        groups = [(members, torch.from_numpy(np.stack([np.asarray(prompts[i], dtype=np.int64)
                                                       for i in members])).to(self.device),
                   self._rows([slots[i] for i in members]))
                  for members in by_length.values()]
        self.clock.start()
        with torch.no_grad():
            for members, ids, rows in groups:
                logits = prefill(self.decoder, self.k_cache, self.v_cache, ids, rows)
                picked.append((members, logits.argmax(-1)))
        self.clock.stop()
        for members, tokens in picked:  # to the host: waits for the device's work
            for i, token in zip(members, tokens.tolist()):
                first[i] = token
        self.last_call_s = self.clock.seconds()
        for i, slot in enumerate(slots):
            self.lengths[slot] = len(prompts[i])
            self.tokens[slot] = first[i]
        return first

    def decode(self, slots: Sequence[int]) -> List[int]:
        lengths, max_len = self.lengths, self.max_len
        for slot in slots:
            if not 0 < lengths[slot] < max_len:
                raise ValueError(f"slot {slot} holds no request" if not lengths[slot]
                                 else f"slot {slot} is full ({max_len} positions)")
        out = self._decode_static(slots) if self.static else self._decode_dynamic(slots)
        tokens = self.tokens
        for slot, token in zip(slots, out):
            lengths[slot] += 1
            tokens[slot] = token
        return out

    def free(self, slot: int) -> None:
        self.lengths[slot] = 0

    def facts(self) -> Dict[str, Any]:
        return {"kv_cache_bytes": self.kv_cache_bytes,
                "kv_cache_shape": [self.decoder.layers, self.max_batch, self.decoder.heads,
                                   self.max_len, self.decoder.head_dim],
                "kv_cache_dtype": str(self.k_cache.dtype).replace("torch.", ""),
                "decode": "static" if self.static else "dynamic",
                "exec": self.exec_mode, "compile_s": self.compile_s, "check": self.check}

    # -- decode, both ways -----------------------------------------------------------
    def _rows(self, slots: Sequence[int]) -> Any:
        """The slots as a slice where they are contiguous and ascending (a view of the
        cache), else an index tensor."""
        first = slots[0]
        if list(slots) == list(range(first, first + len(slots))):
            return slice(first, first + len(slots))
        return torch.tensor(list(slots), device=self.device)

    def _decode_dynamic(self, slots: Sequence[int]) -> List[int]:
        positions = [self.lengths[s] for s in slots]
        first, n, device = slots[0], len(slots), self.device
        span = max(positions) + 1
        rows = self._rows(slots)
        if isinstance(rows, slice) and min(positions) == span - 1:
            # a static batch's step: one position, contiguous slots; views, no mask
            ids = torch.from_numpy(self.tokens[first:first + n]).to(device)
            pos: Any = span - 1
            index: Any = rows
            mask = None
        else:
            ids = torch.from_numpy(self.tokens[list(slots)]).to(device)
            pos = torch.tensor(positions, device=device)
            index = rows if not isinstance(rows, slice) else torch.tensor(list(slots), device=device)
            mask = visible_mask(pos, span)
        self.clock.start()
        with torch.no_grad():
            logits = decode(self.decoder, self.k_cache, self.v_cache, ids, pos, index,
                            rows, span, mask)
            next_tokens = logits.argmax(-1)
        self.clock.stop()
        out = next_tokens.tolist()
        self.last_call_s = self.clock.seconds()
        return out

    def _build_static(self) -> None:
        decoder, k_cache, v_cache, max_len = self.decoder, self.k_cache, self.v_cache, self.max_len
        every = torch.arange(self.max_batch, device=self.device)

        def step_all(ids: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                logits = decode(decoder, k_cache, v_cache, ids, pos, every, slice(None),
                                max_len, visible_mask(pos, max_len))
                return logits.argmax(-1)

        # the step's inputs: tokens and positions, one row each, copied in from the host
        self._host_in = torch.zeros((2, self.max_batch), dtype=torch.int64)
        if self.device.type == "cuda":
            self._host_in = self._host_in.pin_memory()
        self._dev_in = torch.zeros((2, self.max_batch), dtype=torch.int64, device=self.device)
        ids, pos = self._dev_in[0], self._dev_in[1]  # as every call passes them (compile's guards)
        t0 = time.perf_counter()
        if self.exec_mode == "cuda-graphs":
            from gpubench.backends.torch_exec import GraphedStep
            self._static_step = GraphedStep(step_all, (ids, pos), self.device)
        elif compile_mode(self.exec_mode):
            self._static_step = torch.compile(step_all, mode=compile_mode(self.exec_mode))
            self._static_step(ids, pos)  # compiles now, not in the first timed step
        else:  # eager: the function itself
            self._static_step = step_all
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.compile_s = time.perf_counter() - t0
        with torch.no_grad():  # the warm-up steps wrote position 0 of every slot
            self.k_cache.zero_()
            self.v_cache.zero_()

    def _decode_static(self, slots: Sequence[int]) -> List[int]:
        host = self._host_in.numpy()
        host[0] = self.tokens
        # a free slot decodes at position 0 (harmless: its prefill rewrites it)
        host[1] = np.minimum(self.lengths, self.max_len - 1)
        self._dev_in.copy_(self._host_in, non_blocking=True)
        self.clock.start()
        next_tokens = self._static_step(self._dev_in[0], self._dev_in[1])
        self.clock.stop()
        every = next_tokens.tolist()
        self.last_call_s = self.clock.seconds()
        return [every[s] for s in slots]
