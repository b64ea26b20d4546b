"""A GPT-2-style decoder: token and learned position embeddings, pre-norm blocks of
causal self-attention and a GELU MLP, a final LayerNorm and an LM head tied to the token
embedding; next-token cross-entropy at every position, AdamW. GPT-2 small by default
(124,439,808 parameters, as the published model)."""

from gpubench.models import Embedding, LMHead
from gpubench.models.transformer import pre_norm_stack
from gpubench.workloads.base import Workload, WorkloadSpec
from gpubench.workloads.transformer_params import check_heads, transformer_params


def build(layers: int, d_model: int, heads: int, seq_len: int, vocab: int) -> Workload:
    check_heads(d_model, heads)
    return Workload(
        name="gpt", task="language_model", input_shape=(seq_len,), num_outputs=vocab,
        loss="cross_entropy", optimizer="adamw",
        # GPT-3's small-model settings (Brown et al. 2020: lr 6e-4 at 125M, wd 0.1),
        # at the lr nanoGPT-style GPT-2 reproductions use without warm-up.
        optimizer_args=(("lr", 3e-4), ("weight_decay", 0.1)),
        default_batch_size=8,
        layers=(Embedding(vocab, d_model, seq_len),)
        + pre_norm_stack(layers, d_model, heads, causal=True)
        + (LMHead(vocab, tied=True),),
        params=(("d_model", d_model), ("heads", heads), ("layers", layers),
                ("seq_len", seq_len), ("vocab", vocab)),
        input_dtype="int64", tokens_per_sample=seq_len,
    )


SPEC = WorkloadSpec(
    name="gpt",
    description="GPT-2-style decoder (causal, tied LM head), next-token cross-entropy, AdamW",
    build=build,
    params=transformer_params(1024, 2, 50257),
)
