"""Shared fixtures: tiny random BERT-family encoders (no downloads) and the real all-MiniLM-L6-v2 (offline)."""

from __future__ import annotations

import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.modules import Normalize, Transformer
from sentence_transformers.sentence_transformer.modules import Pooling
from transformers import AutoTokenizer, BertConfig, BertModel, MPNetConfig, MPNetModel

import mote

MINILM = mote.resolve_model_path("all-MiniLM-L6-v2")

SENTENCES = [
    "A man is playing a guitar.",
    "how do magnets work",
    "The new movie is awesome and I loved every minute of it, especially the ending.",
    "Stocks fell sharply on Tuesday after the central bank raised interest rates again.",
    "hi",
    "What is the capital of France? Paris is the capital and most populous city of France.",
]


@pytest.fixture(scope="session")
def minilm_tokenizer():
    return AutoTokenizer.from_pretrained(MINILM)


def make_tiny_st(tmp_path, tokenizer, family: str = "bert", layers: int = 4, seed: int = 0) -> str:
    """Save a tiny random BERT/MPNet sentence-transformers model (Transformer, mean Pooling, Normalize)."""
    torch.manual_seed(seed)
    kw = dict(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    hf = BertModel(BertConfig(**kw)) if family == "bert" else MPNetModel(MPNetConfig(**kw))
    # Random LayerNorm affine parameters, so that an expert's norms matter in every test.
    with torch.no_grad():
        for m in hf.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.normal_(1.0, 0.2)
                m.bias.normal_(0.0, 0.2)
    raw = tmp_path / f"hf-{family}-{seed}"
    hf.save_pretrained(raw)
    tokenizer.save_pretrained(raw)
    transformer = Transformer(str(raw), max_seq_length=64)
    st = SentenceTransformer(modules=[transformer, Pooling(32, "mean"), Normalize()], device="cpu")
    out = tmp_path / f"st-{family}-{seed}"
    st.save(str(out))
    return str(out)


@pytest.fixture
def tiny_bert(tmp_path, minilm_tokenizer) -> str:
    return make_tiny_st(tmp_path, minilm_tokenizer, "bert")


@pytest.fixture(scope="session")
def minilm() -> SentenceTransformer:
    return SentenceTransformer(MINILM, device="cpu")


@pytest.fixture(scope="session")
def perturbed_mote(tmp_path_factory, minilm_tokenizer):
    """``(model, root)``: a tiny MoTE model (experts in layers 0 and 2) whose experts are perturbed so that every
    task's embedding differs, saved to ``root/"mote"``. Shared by test_onnx_multitask.py and test_serve.py, which
    only read it (built once per session: the ONNX export below is the expensive part)."""
    from mote.experts import expert_modules

    root = tmp_path_factory.mktemp("perturbed-mote")
    model = mote.convert(make_tiny_st(root, minilm_tokenizer), placement="0,2")
    torch.manual_seed(3)
    with torch.no_grad():
        for m in expert_modules(model[0].auto_model):
            m.weight.add_(torch.randn_like(m.weight) * 0.3)
    model.save(str(root / "mote"))
    return model, root


@pytest.fixture(scope="session")
def perturbed_mote_onnx(perturbed_mote):
    """`mote export MODEL --onnx --all-tasks OUT` (the CLI verb) of :func:`perturbed_mote`, once per session; the
    multi-task ONNX tests read it and the serve tests serve it (nothing writes to it)."""
    from mote.cli import main

    _, root = perturbed_mote
    out = root / "onnx-all"
    assert main(["export", str(root / "mote"), "--onnx", "--all-tasks", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a test module (tiny models: more threads only add overhead on a 2-core machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def run_in_threads(jobs: dict, repeats: int = 3) -> dict:
    """Run every ``jobs[name]()`` in its own thread, all released together by a barrier, ``repeats`` times each;
    returns ``{name: [result, ...]}``. An exception in any thread is re-raised here."""
    import threading

    barrier = threading.Barrier(len(jobs))
    results: dict = {name: [] for name in jobs}
    errors: list[BaseException] = []

    def work(name):
        try:
            barrier.wait()
            for _ in range(repeats):
                results[name].append(jobs[name]())
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(name,)) for name in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def perturbed_routed_models(root):
    """A TLR and a TSEmbed model over a tiny base, weights perturbed (fresh ones compute the dense model's
    function), saved to ``root/tlr`` and ``root/tsembed``; returns ``(tlr, tsembed)``."""
    import torch
    from tiny_train import write_tiny_model

    import mote.lora as tl
    from mote.ablations import tlr

    base = write_tiny_model(root / "bert", layers=2)
    token = tlr.convert(base, placement="1")
    lora = tl.convert(base, tl.MoELoRAConfig(num_experts=4, r=2))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in [*token.parameters(), *lora.parameters()]:
            p.add_(torch.randn(p.shape, generator=g) * 0.1)
    token.save(str(root / "tlr"))
    lora.save(str(root / "tsembed"))
    return token, lora
