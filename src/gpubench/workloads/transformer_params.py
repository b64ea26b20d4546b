"""The parameters gpt and bert share (shape of the transformer), with each one's
defaults for the sequence and the vocabulary."""

from typing import Dict

from gpubench.workloads.base import ParamSpec


def transformer_params(seq_len: int, min_seq_len: int, vocab: int) -> Dict[str, ParamSpec]:
    return {
        "layers": ParamSpec(int, 12, "transformer blocks", minimum=1),
        "d_model": ParamSpec(int, 768, "model width (divisible by heads)", minimum=1),
        "heads": ParamSpec(int, 12, "attention heads", minimum=1),
        "seq_len": ParamSpec(int, seq_len, "tokens per sample (and position embeddings)",
                             minimum=min_seq_len),
        "vocab": ParamSpec(int, vocab, "vocabulary size", minimum=2),
    }


def check_heads(d_model: int, heads: int) -> None:
    if d_model % heads:
        raise ValueError(f"d_model {d_model} does not divide into {heads} heads")
