"""The options of --mode generate (gathered with every run option in measure/options.py):
the prompt's and the output's tokens. Both are identity (a row's prompt_len and
output_len, empty in other modes) and mean something only with --mode generate. Not
given, they are what `generation_lengths` (plan.py) resolves for the workload: 128 each,
halved to fit a shorter seq_len."""

from __future__ import annotations

from typing import Tuple

from gpubench.measure.option import POSITIVE_INT, Option

GENERATE = ("generate",)
DEFAULT_PROMPT_LEN = 128
DEFAULT_OUTPUT_LEN = 128

GENERATION_OPTIONS: Tuple[Option, ...] = (
    Option("prompt_len", f"--mode generate: tokens a prompt (default {DEFAULT_PROMPT_LEN}, "
                         "at most half the model's seq_len when --output-len is not given); "
                         "prompt + output must fit seq_len", POSITIVE_INT, metavar="N",
           shown_default=f"{DEFAULT_PROMPT_LEN} (fitted to seq_len)", identity=True,
           modes=GENERATE, label="prompt {}",
           needs=("mode", "generate", "--prompt-len is for --mode generate")),
    Option("output_len", f"--mode generate: tokens decoded a request, the first (from the "
                         f"prefill) included (default {DEFAULT_OUTPUT_LEN}, fitted to "
                         "seq_len)", POSITIVE_INT, metavar="N",
           shown_default=f"{DEFAULT_OUTPUT_LEN} (fitted to seq_len)", identity=True,
           modes=GENERATE, label="output {}",
           needs=("mode", "generate", "--output-len is for --mode generate")),
)
