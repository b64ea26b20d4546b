"""A BERT-style encoder classifier: token and learned position embeddings, pre-norm
blocks of bidirectional self-attention and a GELU MLP, a final LayerNorm, the first
token's vector ([CLS]) into a Linear over the classes; cross-entropy, AdamW.

BERT-base widths (12 layers, d 768, 12 heads, vocab 30522). seq_len defaults to 128, the
usual fine-tuning length (and the length of 90% of BERT's own pre-training steps);
BERT-base's 512 is a parameter away. Departures from the original, to keep one block
for the family: pre-norm (BERT is post-norm), no token-type embeddings, no pooler dense
layer, and a position table of seq_len rows (BERT-base has 512)."""

from gpubench.models import Embedding, Linear, TakeFirst
from gpubench.models.transformer import pre_norm_stack
from gpubench.workloads.base import ParamSpec, Workload, WorkloadSpec
from gpubench.workloads.transformer_params import check_heads, transformer_params


def build(layers: int, d_model: int, heads: int, seq_len: int, vocab: int,
          num_classes: int) -> Workload:
    check_heads(d_model, heads)
    return Workload(
        name="bert", task="classification", input_shape=(seq_len,), num_outputs=num_classes,
        loss="cross_entropy", optimizer="adamw",
        # BERT's own pre-training settings (Devlin et al. 2019: lr 1e-4, weight decay
        # 0.01): these weights start random, as in pre-training, not from a checkpoint.
        optimizer_args=(("lr", 1e-4), ("weight_decay", 0.01)),
        default_batch_size=32,
        layers=(Embedding(vocab, d_model, seq_len),)
        + pre_norm_stack(layers, d_model, heads, causal=False)
        + (TakeFirst(), Linear(num_classes)),
        params=(("d_model", d_model), ("heads", heads), ("layers", layers),
                ("num_classes", num_classes), ("seq_len", seq_len), ("vocab", vocab)),
        input_dtype="int64", tokens_per_sample=seq_len,
    )


SPEC = WorkloadSpec(
    name="bert",
    description="BERT-style encoder classifier ([CLS] -> classes), cross-entropy, AdamW",
    build=build,
    params={**transformer_params(128, 1, 30522),
            "num_classes": ParamSpec(int, 2, "number of classes", minimum=2)},
)
