"""The transformer family (gpt, bert): layer records, their analysis against the
2N + 4*n_layer*seq*d rule and torch's own parameter count, synthetic tokens, training
and inference through the real CLI, the ONNX export run by ONNX Runtime against torch,
the memory check, and `gpubench list`."""

import json

import numpy as np
import pandas as pd
import pytest

from conftest import FAST_RUN, run_cli_here
from gpubench.backends.onnx_graph_check import OnnxSignature, check_against_workload, check_graph
from gpubench.data.synthetic import make_batches
from gpubench.errors import Unsupported, UserError
from gpubench.measure.memory_check import MemoryCapacity, check_memory, estimate_for
from gpubench.models import Embedding, LMHead, SelfAttention, TakeFirst, analyze
from gpubench.workloads import resolve_workload

TINY = {"layers": "2", "d_model": "32", "heads": "4", "seq_len": "16", "vocab": "64"}
SMALL = {"layers": "3", "d_model": "48", "heads": "6", "seq_len": "24", "vocab": "100"}
CLI_TINY = ("-p", "layers=2", "-p", "d_model=64", "-p", "heads=4", "-p", "seq_len=32",
            "-p", "vocab=128")
# Published widths: GPT-2 small/medium, BERT-base/large (seq 512).
BIG = {"gpt": [{}, {"layers": "24", "d_model": "1024", "heads": "16"}],
       "bert": [{}, {"layers": "24", "d_model": "1024", "heads": "16", "seq_len": "512"}]}


def _shape(workload):
    p = dict(workload.params)
    return p["layers"], p["d_model"], p["seq_len"], p["vocab"]


def _matrix_params(workload):
    """N by hand: per block 12d^2 + 13d (QKV 3d^2+3d, output d^2+d, MLP 8d^2+5d, two
    LayerNorms 4d), the final LayerNorm 2d, and the head: the tied d x vocab matrix for
    gpt (real work, no parameters of its own), the classifier d x C + C for bert."""
    n_layer, d, _, vocab = _shape(workload)
    head = d * vocab if workload.name == "gpt" else d * workload.num_outputs + workload.num_outputs
    return n_layer * (12 * d * d + 13 * d) + 2 * d + head


# -- analysis ------------------------------------------------------------------------------
def test_gpt2_small_has_the_published_parameter_count():
    gpt = resolve_workload("gpt")
    assert gpt.stats.param_count == 124_439_808  # GPT-2 small, tied head counted once
    assert gpt.input_dtype == "int64" and gpt.tokens_per_sample == 1024 == gpt.input_shape[0]
    assert gpt.output_shape == gpt.stats.output_shape == (1024, 50257)
    assert gpt.default_batch_size == 8 and gpt.optimizer == "adamw"
    assert dict(gpt.optimizer_args) == {"lr": 3e-4, "weight_decay": 0.1}
    bert = resolve_workload("bert")
    assert (bert.tokens_per_sample, bert.num_outputs, bert.default_batch_size) == (128, 2, 32)
    assert bert.output_shape == (2,) and bert.task == "classification"
    n_layer, d, seq, vocab = _shape(bert)
    assert bert.stats.param_count == (vocab + seq) * d + _matrix_params(bert)


@pytest.mark.parametrize("name", ["gpt", "bert"])
@pytest.mark.parametrize("which", [0, 1])
def test_forward_flops_per_token_are_within_1pct_of_2n_plus_attention(name, which):
    workload = resolve_workload(name, BIG[name][which])
    n_layer, d, seq, _ = _shape(workload)
    n = _matrix_params(workload)
    embeddings = (workload.num_outputs if name == "gpt" else _shape(workload)[3]) * d + seq * d
    tied = d * workload.num_outputs if name == "gpt" else 0  # in N, and stored in the embedding
    assert workload.stats.param_count == embeddings + n - tied
    per_token = workload.stats.forward_flops_per_sample / seq
    rule = 2 * n + 4 * n_layer * seq * d
    # Above the rule only by the biases and the element-wise terms (LayerNorm, GELU, softmax).
    assert rule < per_token < 1.01 * rule, (per_token / rule)
    assert workload.stats.flops_per_sample("train") == 3 * workload.stats.forward_flops_per_sample


def test_attention_and_head_flops_by_hand():
    seq, d, heads = 4, 8, 2
    stats = analyze([SelfAttention(heads, causal=True)], (seq, d))
    assert stats.output_shape == (seq, d) and stats.param_count == 4 * d * d + 4 * d
    projections = seq * (2 * d * 3 * d + 3 * d) + seq * (2 * d * d + d)
    assert stats.forward_flops_per_sample == projections + 4 * seq * seq * d + 5 * heads * seq * seq
    head = analyze([Embedding(10, d, seq), LMHead(10)], (seq,))
    assert head.output_shape == (seq, 10)
    assert head.param_count == (10 + seq) * d  # tied: nothing of its own
    assert head.forward_flops_per_sample == seq * d + seq * 2 * d * 10
    assert analyze([LMHead(10, tied=False)], (seq, d)).param_count == d * 10
    assert analyze([TakeFirst()], (seq, d)).output_shape == (d,)
    with pytest.raises(ValueError, match="does not divide"):
        analyze([SelfAttention(3, causal=False)], (seq, d))
    with pytest.raises(ValueError, match="longer than"):
        analyze([Embedding(10, d, 2)], (seq,))
    with pytest.raises(ValueError, match="cannot reuse"):
        analyze([Embedding(10, d, seq), LMHead(11)], (seq,))
    with pytest.raises(UserError, match="does not divide into 5 heads"):
        resolve_workload("gpt", {**TINY, "heads": "5"})


# -- torch ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["gpt", "bert"])
@pytest.mark.parametrize("params", [TINY, SMALL], ids=["tiny", "small"])
def test_param_count_equals_torch_at_two_shapes(name, params):
    torch = pytest.importorskip("torch")
    from gpubench.backends.torch_model import build_module

    workload = resolve_workload(name, params)
    module = build_module(workload.layers, workload.input_shape)
    assert workload.stats.param_count == sum(p.numel() for p in module.parameters())
    with torch.no_grad():
        out = module(torch.zeros((2,) + workload.input_shape, dtype=torch.int64))
    assert tuple(out.shape) == (2,) + workload.output_shape


def test_gpt_head_is_tied_to_the_token_embedding():
    torch = pytest.importorskip("torch")
    from gpubench.backends.torch_model import build_module

    workload = resolve_workload("gpt", TINY)
    module = build_module(workload.layers, workload.input_shape).eval()
    token = module[0].token.weight
    assert list(module[-1].parameters()) == []  # no matrix of its own
    assert sum(p is token for p in module.parameters()) == 1
    x = torch.from_numpy(make_batches(workload, 2, 1, 0)[0][0])
    with torch.no_grad():
        before = module(x)
        token.mul_(2)  # the head's logits move with the embedding's matrix
        after = module(x)
    assert not torch.allclose(before, after)
    # Untied, the head's own matrix: d x vocab more parameters.
    untied = tuple(LMHead(64, tied=False) if isinstance(r, LMHead) else r for r in workload.layers)
    assert analyze(untied, workload.input_shape).param_count == workload.stats.param_count + 32 * 64
    assert sum(p.numel() for p in build_module(untied, workload.input_shape).parameters()) \
        == workload.stats.param_count + 32 * 64


def test_gpt_attends_to_the_past_only_and_bert_to_the_whole_sequence():
    torch = pytest.importorskip("torch")
    from gpubench.backends.torch_model import build_module

    for name, causal in (("gpt", True), ("bert", False)):
        workload = resolve_workload(name, TINY)
        torch.manual_seed(0)
        module = build_module(workload.layers, workload.input_shape).eval()
        x = torch.from_numpy(make_batches(workload, 2, 1, 0)[0][0])
        changed = x.clone()
        changed[:, -1] = (changed[:, -1] + 1) % 64  # only the last token
        hidden = module[:-1] if name == "gpt" else module[:-2]  # before the head: [B, seq, d]
        with torch.no_grad():
            a, b = hidden(x), hidden(changed)
        assert torch.allclose(a[:, :-1], b[:, :-1], rtol=0, atol=1e-5) == causal, name
        assert not torch.allclose(a[:, -1], b[:, -1], rtol=0, atol=1e-5)


def test_synthetic_tokens_are_learnable_and_seeded():
    gpt = resolve_workload("gpt", TINY)
    (x, y), = make_batches(gpt, 6, 1, seed=4)
    assert x.dtype == y.dtype == np.int64 and x.shape == y.shape == (6, 16)
    assert x.min() >= 0 and x.max() < 64
    assert np.array_equal(y[:, :-1], x[:, 1:])  # the target is the next token
    stride = (x[:, 1] - x[:, 0]) % 64
    assert np.array_equal((x[:, :1] + stride[:, None] * np.arange(17))[:, 1:] % 64, y)
    assert 1 <= stride.min() and stride.max() <= 4  # small strides
    assert np.array_equal(make_batches(gpt, 6, 1, seed=4)[0][0], x)
    assert not np.array_equal(make_batches(gpt, 6, 1, seed=5)[0][0], x)
    bert = resolve_workload("bert", TINY)
    (x, y), = make_batches(bert, 64, 1, seed=4)
    assert x.dtype == y.dtype == np.int64 and x.shape == (64, 16) and y.shape == (64,)
    stride = (x[:, 1] - x[:, 0]) % 64
    assert np.array_equal(y, (stride % 2 == 0).astype(np.int64))  # two classes: even stride
    assert 0 < y.mean() < 1


def test_adamw_and_the_language_model_loss():
    torch = pytest.importorskip("torch")
    from gpubench.backends.torch_step import _loss_fn, _optimizer

    gpt = resolve_workload("gpt", TINY)
    opt = _optimizer(gpt, [torch.nn.Parameter(torch.zeros(2))])
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.defaults["lr"] == 3e-4 and opt.defaults["weight_decay"] == 0.1
    gen = torch.Generator().manual_seed(0)  # not torch's global state, which other tests move
    logits = torch.randn(3, 5, 7, generator=gen)
    targets = torch.randint(0, 7, (3, 5), generator=gen)
    want = sum(torch.nn.functional.cross_entropy(logits[:, t], targets[:, t]) for t in range(5)) / 5
    assert torch.allclose(_loss_fn(gpt)(logits, targets), want)


def test_gpt_tiny_trains_through_the_cli(tmp_path):
    pytest.importorskip("torch")
    done = run_cli_here("run", "-w", "gpt", "-b", "torch-cpu", *CLI_TINY, "--no-isolate",
                        *FAST_RUN, "--telemetry", "none", "--out", tmp_path)
    assert done.returncode == 0, done.stderr
    meta = json.loads(next(tmp_path.glob("*/run.json")).read_text())
    loss = meta["loss"]
    assert loss["fell"] is True and loss["last_trial"] < loss["first_step"], loss
    assert meta["workload"]["name"] == "gpt" and meta["workload"]["optimizer"] == "adamw"


def test_bert_tiny_infer_runs_and_gives_throughput(tmp_path):
    pytest.importorskip("torch")
    done = run_cli_here("run", "-w", "bert", "-b", "torch-cpu", "--mode", "infer", *CLI_TINY,
                        "--no-isolate", *FAST_RUN, "--telemetry", "none", "--out", tmp_path)
    assert done.returncode == 0, done.stderr
    trials = pd.read_csv(next(tmp_path.glob("*/trials.csv")))
    assert (trials["status"] == "ok").all() and len(trials) == 2
    assert (trials["throughput_samples_per_s"] > 0).all() and (trials["tflops"] > 0).all()


# -- ONNX export and ONNX Runtime -----------------------------------------------------------
@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("GPUBENCH_CACHE_DIR", str(tmp_path_factory.mktemp("onnx-cache")))
    yield
    mp.undo()


@pytest.mark.parametrize("name", ["gpt", "bert"])
def test_onnxruntime_matches_torch_on_token_inputs(onnx_cache, name):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from gpubench.backends import StepConfig, get_backend
    from gpubench.backends.onnx_export import export_workload, load_onnx_file
    from gpubench.backends.torch_step import TorchStep

    workload = resolve_workload(name, TINY)
    backend = get_backend("onnxruntime-cpu")
    for batch_size in (1, 3):
        config = StepConfig("infer", "fp32", batch_size, seed=3)
        step = backend.prepare(workload, config)
        reference = TorchStep(workload, config, torch.device("cpu"))
        reference.model.eval()
        x = step.input_batch(0)
        assert x.dtype == np.int64 and np.array_equal(x, reference.inputs[0].numpy())
        with torch.no_grad():
            want = reference.model(reference.inputs[0]).numpy()
        got = step.outputs(0)
        assert got.shape == (batch_size,) + workload.output_shape
        err, scale = float(np.abs(got - want).max()), float(np.abs(want).max())
        assert err <= 1e-4 and err <= 1e-5 * scale, (err, scale)
        step.close()
    # The export, given back as a user's --onnx file, passes the checks a foreign file fails:
    # int64 ids in, static output dims, and the tied matrix stored once (weights ~ params).
    model = export_workload(workload, seed=3)
    assert model.signature.input_dtype == "int64"
    checked = load_onnx_file(model.path, workload, "fp32", 3).signature
    assert checked.input_dtype == "int64" and checked.output_dims == (None,) + workload.output_shape
    assert abs(checked.weight_count - workload.stats.param_count) < 0.01 * workload.stats.param_count


def test_fp16_export_of_gpt_runs_and_matches_torch_within_half_precision(onnx_cache):
    """The fp16 graph onnxruntime-cuda and tensorrt run, checked on the CPU: one type
    throughout (the tracer's own attention would leave float32 inside it)."""
    torch = pytest.importorskip("torch")
    ort = pytest.importorskip("onnxruntime")
    from gpubench.backends import StepConfig
    from gpubench.backends.onnx_export import export_workload
    from gpubench.backends.torch_step import TorchStep

    workload = resolve_workload("gpt", TINY)
    model = export_workload(workload, seed=0, dtype="float16")
    assert model.signature.input_dtype == "int64" and model.signature.output_dtype == "float16"
    session = ort.InferenceSession(model.ort_source(), providers=["CPUExecutionProvider"])
    reference = TorchStep(workload, StepConfig("infer", "fp32", 3), torch.device("cpu"))
    x = reference.inputs[0]
    with torch.no_grad():
        want = reference.model.eval()(x).numpy()
    (got,) = session.run(None, {"input": x.numpy()})
    assert got.dtype == np.float16
    assert float(np.abs(got.astype(np.float64) - want).max()) <= 2e-2 * float(np.abs(want).max())


def test_onnx_checks_refuse_the_wrong_kind_of_input_or_graph_type():
    gpt = resolve_workload("gpt", TINY)
    out = (None, 16, 64)
    floats = OnnxSignature("input", "float32", (None, 16), ("output",), out)
    with pytest.raises(UserError, match="feeds int64 token ids"):
        check_against_workload(floats, gpt, "f.onnx")
    ids = OnnxSignature("input", "int64", (None, 16), ("output",), out, output_dtype="float16")
    check_graph(ids, gpt, "fp16", 4, "f.onnx")  # an fp16 graph on token ids
    with pytest.raises(UserError, match="is a float16 model; --precision fp32"):
        check_graph(ids, gpt, "fp32", 4, "f.onnx")
    mnist = resolve_workload("mnist")
    with pytest.raises(UserError, match="feeds float inputs"):
        check_against_workload(OnnxSignature("input", "int64", (None, 1, 28, 28), ("o",)), mnist, "f")


# -- planning and listing -------------------------------------------------------------------
class _Capacity(MemoryCapacity):
    def __init__(self, host_bytes):
        super().__init__()
        self._host = host_bytes


@pytest.mark.parametrize("name", ["gpt", "bert"])
def test_memory_check_accepts_the_defaults_and_refuses_a_huge_batch(name):
    from gpubench.backends import get_backend

    workload = resolve_workload(name)
    backend = get_backend("torch-cpu")
    est = estimate_for(workload, "train", "fp32", workload.default_batch_size, "cpu")
    assert est.optimizer_bytes == 2 * est.params_bytes  # AdamW: two moments
    assert est.data_bytes > 0 and est.activations_bytes > est.params_bytes
    check_memory(workload, backend, "train", "fp32", workload.default_batch_size,
                 capacity=_Capacity(64 * 2**30))
    with pytest.raises(Unsupported, match="lower the batch size"):
        check_memory(workload, backend, "train", "fp32", 10_000, capacity=_Capacity(64 * 2**30))


def test_list_shows_gpt_and_bert():
    listing = run_cli_here("list", "--json")
    assert listing.returncode == 0, listing.stderr
    rows = {w["name"]: w for w in json.loads(listing.stdout)["workloads"]}
    assert rows["gpt"]["param_count"] == 124_439_808 and rows["gpt"]["tokens_per_sample"] == 1024
    assert rows["bert"]["input_dtype"] == "int64" and rows["bert"]["params"]["num_classes"]["default"] == 2
    assert rows["mnist"]["tokens_per_sample"] is None and rows["mnist"]["input_dtype"] == "float32"
    table = run_cli_here("list", columns=250)
    assert table.returncode == 0 and "1024 tokens" in table.stdout and "bert" in table.stdout
