"""MoEE feature extraction on tiny random MoE models of several transformers families (no downloads)."""

import numpy as np
import pytest
import torch
from conftest import make_tiny_st
from tiny_moe import add_token_routers, tiny_moe, tiny_routed_bert, tiny_tokenizer

import mote
from mote.moee import MoEEConfig, MoEEEmbedder, NoRouterError
from mote.moee.loading import quantization_config

# Very different lengths, so that a mixed batch pads most rows heavily.
TEXTS = [
    "the cat sat on the mat and the dog sat on the rug , he said hi to the big red bird",
    "dog",
    'she said "hello" , is this a sentence ?',
    "a small green car ran quickly over the road",
    "hi",
]

# (family, config overrides, MoE layer indices, routed experts per MoE layer)
ARCHS = {
    "olmoe": ("olmoe", {}, [0, 1, 2], 8),
    "qwen2_moe-mlp_only": ("qwen2_moe", {"num_hidden_layers": 4, "mlp_only_layers": [1]}, [0, 2, 3], 6),
    "qwen2_moe-sparse_step": ("qwen2_moe", {"num_hidden_layers": 4, "decoder_sparse_step": 2}, [1, 3], 6),
    "mixtral": ("mixtral", {}, [0, 1, 2], 4),
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: threads only add overhead


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module", params=sorted(ARCHS))
def arch(request):
    family, overrides, moe_layers, experts = ARCHS[request.param]
    return request.param, tiny_moe(family, **overrides), moe_layers, experts


def model_outputs(model, tok, prompt):
    ids = tok([prompt], return_tensors="pt")
    with torch.no_grad():
        return model(**ids, output_hidden_states=True, output_router_logits=True), ids["input_ids"].shape[1]


def test_rw_width_is_routed_experts_over_moe_layers_only(arch, tok):
    _, model, moe_layers, experts = arch
    layers = model.model.layers
    sparse = [i for i, layer in enumerate(layers) if hasattr(layer.mlp, "gate") and hasattr(layer.mlp, "experts")]
    assert sparse == moe_layers  # the config really mixes dense and MoE layers where it says so
    emb = MoEEEmbedder(model, tok, MoEEConfig(template="prompteol"))
    f = emb.features(TEXTS)
    assert f.rw.shape == (len(TEXTS), len(moe_layers) * experts)
    assert emb.layout.widths == [experts] * len(moe_layers)
    assert f.hs.shape == (len(TEXTS), model.config.hidden_size)
    # softmax per MoE layer: each layer's block is a distribution over its experts
    blocks = f.rw.reshape(len(TEXTS), len(moe_layers), experts)
    np.testing.assert_allclose(blocks.sum(-1), 1.0, atol=1e-5)


def test_hs_and_rw_equal_the_models_own_outputs_at_the_last_token(arch, tok):
    _, model, moe_layers, _ = arch
    emb = MoEEEmbedder(model, tok, MoEEConfig(template="prompteol"))
    text = TEXTS[2]
    out, _ = model_outputs(model, tok, emb.prompts([text])[0])
    f = emb.features([text])
    np.testing.assert_allclose(f.hs[0], out.hidden_states[-1][0, -1].numpy(), atol=1e-6, rtol=0)
    assert len(out.router_logits) == len(moe_layers)
    ref = torch.cat([torch.softmax(lg[-1].float(), -1) for lg in out.router_logits]).numpy()
    np.testing.assert_allclose(f.rw[0], ref, atol=1e-6, rtol=0)


def test_embedding_does_not_depend_on_the_batch(arch, tok):
    _, model, _, _ = arch
    emb = MoEEEmbedder(model, tok, MoEEConfig(template="prompteol"))
    together = emb.features(TEXTS, batch_size=len(TEXTS))
    other = emb.features(TEXTS[::-1], batch_size=2)
    for i, text in enumerate(TEXTS):
        alone = emb.features([text])
        np.testing.assert_allclose(together.hs[i], alone.hs[0], atol=1e-5, rtol=0)
        np.testing.assert_allclose(together.rw[i], alone.rw[0], atol=1e-5, rtol=0)
    np.testing.assert_allclose(other.hs[::-1], together.hs, atol=1e-5, rtol=0)
    np.testing.assert_allclose(other.rw[::-1], together.rw, atol=1e-5, rtol=0)
    # and the texts really differ (a constant embedding would pass the checks above)
    assert np.abs(together.rw[0] - together.rw[1]).max() > 1e-3


@pytest.mark.parametrize("family", ["olmoe", "qwen2_moe"])
def test_gate_hooks_give_the_same_rw_as_output_router_logits(tok, family):
    model = tiny_moe(family, num_hidden_layers=3, **({"mlp_only_layers": [1]} if family == "qwen2_moe" else {}))
    auto = MoEEEmbedder(model, tok, MoEEConfig(template="none"))
    hooks = MoEEEmbedder(model, tok, MoEEConfig(template="none", capture="hooks"))
    assert (auto._capture, hooks._capture) == ("router_logits", "hooks")
    # Qwen2-MoE's shared_expert_gate (Linear(hidden, 1)) is not a router
    assert all(name.endswith("mlp.gate") for name, _, _ in hooks._hooks.routers)
    np.testing.assert_allclose(hooks.features(TEXTS).rw, auto.features(TEXTS).rw, atol=1e-6, rtol=0)


def test_router_pattern_selects_routers(tok):
    model = tiny_moe("olmoe")
    cfg = MoEEConfig(template="none", capture="hooks", router_pattern=r"layers\.0\.mlp\.gate$")
    emb = MoEEEmbedder(model, tok, cfg)
    assert emb.features(TEXTS[:2]).rw.shape == (2, 8)


def test_rw_scores_logits_and_sigmoid(tok):
    model = tiny_moe("olmoe")
    prompt_cfg = dict(template="prompteol")
    soft = MoEEEmbedder(model, tok, MoEEConfig(**prompt_cfg)).features(TEXTS).rw
    logits = MoEEEmbedder(model, tok, MoEEConfig(rw_scores="logits", **prompt_cfg)).features(TEXTS).rw
    sig = MoEEEmbedder(model, tok, MoEEConfig(rw_scores="sigmoid", **prompt_cfg)).features(TEXTS).rw
    assert not np.allclose(soft, logits, atol=1e-3)
    blocks = torch.from_numpy(logits.reshape(len(TEXTS), 3, 8))
    np.testing.assert_allclose(torch.softmax(blocks, -1).reshape(len(TEXTS), -1).numpy(), soft, atol=1e-6)
    np.testing.assert_allclose(torch.sigmoid(torch.from_numpy(logits)).numpy(), sig, atol=1e-6)
    # the raw logits are exactly the router's: checked against the model's own router_logits
    emb = MoEEEmbedder(model, tok, MoEEConfig(rw_scores="logits", **prompt_cfg))
    out, _ = model_outputs(model, tok, emb.prompts([TEXTS[0]])[0])
    np.testing.assert_allclose(logits[0], torch.cat([lg[-1] for lg in out.router_logits]).numpy(), atol=1e-6)


def test_mean_over_tokens_option(tok):
    model = tiny_moe("olmoe")
    emb = MoEEEmbedder(model, tok, MoEEConfig(template="none", rw_pooling="mean", hs_pooling="mean"))
    out, _ = model_outputs(model, tok, TEXTS[0])
    f = emb.features(TEXTS)
    ref_rw = torch.cat([torch.softmax(lg.float(), -1).mean(0) for lg in out.router_logits]).numpy()
    np.testing.assert_allclose(f.rw[0], ref_rw, atol=1e-6)
    np.testing.assert_allclose(f.hs[0], out.hidden_states[-1][0].mean(0).numpy(), atol=1e-5)
    alone = emb.features([TEXTS[1]])  # the mean ignores left padding
    np.testing.assert_allclose(f.rw[1], alone.rw[0], atol=1e-5)


def test_token_routed_encoder_via_hooks(tok):
    """A BERT encoder with learned top-1 token routers (the shape of a MoTE ``tlr`` model): hooks, mean pooling."""
    model = tiny_routed_bert(num_experts=4, routed_layers=(0, 2))
    emb = MoEEEmbedder(model, tok, MoEEConfig(template="none"))
    assert (emb.decoder, emb.hs_pooling, emb.rw_pooling, emb._capture) == (False, "mean", "mean", "hooks")
    f = emb.features(TEXTS)
    assert f.rw.shape == (len(TEXTS), 8)
    assert emb.layout.names == ["encoder.layer.0.intermediate.router", "encoder.layer.2.intermediate.router"]
    seen = []
    handles = [
        model.encoder.layer[i].intermediate.router.register_forward_hook(lambda m, a, o: seen.append(o))
        for i in (0, 2)
    ]
    with torch.no_grad():
        hidden = model(**tok([TEXTS[0]], return_tensors="pt")).last_hidden_state[0]
    for h in handles:
        h.remove()
    np.testing.assert_allclose(f.hs[0], hidden.mean(0).numpy(), atol=1e-5)
    ref_rw = torch.cat([torch.softmax(o[0], -1).mean(0) for o in seen]).numpy()
    np.testing.assert_allclose(f.rw[0], ref_rw, atol=1e-5)
    for i, text in enumerate(TEXTS):  # right padding: batch-independent too
        alone = emb.features([text])
        np.testing.assert_allclose(f.hs[i], alone.hs[0], atol=1e-5)
        np.testing.assert_allclose(f.rw[i], alone.rw[0], atol=1e-5)
    last = MoEEEmbedder(model, tok, MoEEConfig(template="none", rw_pooling="last"))
    assert not np.allclose(last.features(TEXTS).rw, f.rw, atol=1e-4)
    np.testing.assert_allclose(last.features(TEXTS).rw[1], last.features([TEXTS[1]]).rw[0], atol=1e-5)


def test_sentence_transformers_model_with_token_routers(tmp_path, minilm_tokenizer):
    """A sentence-transformers model whose encoder has token routers (how a tlr model plugs in); HS = its mean."""
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(make_tiny_st(tmp_path, minilm_tokenizer, "bert", layers=3), device="cpu")
    add_token_routers(st[0].auto_model, layers=(1, 2), num_experts=4)
    emb = MoEEEmbedder(st, config=MoEEConfig(template="none"))
    texts = ["A man is playing a guitar.", "hi", "Stocks fell sharply on Tuesday after the bank raised rates."]
    f = emb.features(texts)
    assert f.rw.shape == (3, 8) and emb._capture == "hooks"
    ref = st.encode(texts, convert_to_numpy=True)  # mean pooling + Normalize
    hs = f.hs / np.linalg.norm(f.hs, axis=1, keepdims=True)
    np.testing.assert_allclose(hs, ref, atol=1e-5)
    np.testing.assert_allclose(emb.features(texts[1:2]).rw[0], f.rw[1], atol=1e-5)


def test_no_reachable_router_is_a_clear_error(tmp_path, minilm_tokenizer, tok):
    from transformers import BertConfig, BertModel

    dense = BertModel(
        BertConfig(vocab_size=96, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=24)
    )
    with pytest.raises(NoRouterError, match="BertModel has no reachable router"):
        MoEEEmbedder(dense, tok)
    # A sequence-routed MoTE model routes by task, not by a learned router: no RW either.
    mote_model = mote.convert(make_tiny_st(tmp_path, minilm_tokenizer, "bert", layers=2), placement="every")
    with pytest.raises(NoRouterError, match=r"MoTETransformer\(BertModel\)"):
        MoEEEmbedder(mote_model)
    with pytest.raises(ValueError, match="does not record router_logits"):
        MoEEEmbedder(tiny_routed_bert(), tok, MoEEConfig(capture="router_logits"))
    with pytest.raises(NoRouterError):
        MoEEEmbedder(tiny_moe("olmoe"), tok, MoEEConfig(capture="hooks", router_pattern="no_such_module"))


def test_empty_text_and_bad_templates(tok):
    model = tiny_moe("olmoe")
    emb = MoEEEmbedder(model, tok, MoEEConfig(template="none"))
    f = emb.features(["", "   ", "."])
    np.testing.assert_allclose(f.hs[0], f.hs[2], atol=1e-6)  # empty -> "." as the reference code intends
    np.testing.assert_allclose(f.rw[1], f.rw[2], atol=1e-6)
    strict = MoEEEmbedder(model, tok, MoEEConfig(template="none", empty_text="error"))
    with pytest.raises(ValueError, match="Empty text"):
        strict.features(["fine", ""])
    with pytest.raises(ValueError, match=r"\{text\} slot"):
        MoEEConfig(template="This sentence means in one word:")
    with pytest.raises(TypeError):
        emb.features(["ok", 3])
    with pytest.raises(TypeError, match="list of texts"):
        emb.features("a single string")
    empty = emb.features([])
    assert empty.hs.shape == (0, 32) and empty.rw.shape == (0, 24)


def test_bf16_weights_on_cpu_and_quantization_needs_bitsandbytes(tok):
    model = tiny_moe("olmoe")
    ref = MoEEEmbedder(model, tok, MoEEConfig(template="prompteol")).features(TEXTS)
    model16 = tiny_moe("olmoe").to(torch.bfloat16)
    f16 = MoEEEmbedder(model16, tok, MoEEConfig(template="prompteol")).features(TEXTS)
    assert f16.hs.dtype == np.float32 and np.isfinite(f16.hs).all()
    cos = (f16.hs * ref.hs).sum(1) / np.linalg.norm(f16.hs, axis=1) / np.linalg.norm(ref.hs, axis=1)
    assert cos.min() > 0.98
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="bitsandbytes"):
            quantization_config("4bit")
    with pytest.raises(ValueError, match="quantization must be"):
        quantization_config("3bit")


def test_mote_tlr_model_saved_and_loaded(tmp_path, minilm_tokenizer):
    """This project's token-routed MoTE models (mote.ablations.tlr): routers found by name, task passed through."""
    from mote.ablations import tlr
    model = tlr.convert(make_tiny_st(tmp_path, minilm_tokenizer, "bert", layers=4), placement="every-other")
    with torch.no_grad():
        for router in tlr.routers(model).values():
            router.weight.normal_(0.0, 0.5)
    folder = tmp_path / "tlr"
    model.save(str(folder))
    emb = MoEEEmbedder.from_pretrained(folder, MoEEConfig(template="none"), device="cpu")
    assert emb._capture == "hooks" and emb.passes_task
    assert emb.layout is None and emb.ensure_layout().names == ["encoder.layer.1.router", "encoder.layer.3.router"]
    texts = ["A man is playing a guitar.", "hi", "how do magnets work"]
    f = emb.features(texts, task="query")
    assert f.rw.shape == (3, 2 * mote.mote_module(model).num_experts)
    np.testing.assert_allclose(emb.features(texts[1:2], task="query").rw[0], f.rw[1], atol=1e-5)
    # the task's prefix reaches the model: another task, other features
    assert not np.allclose(emb.features(texts, task="clustering").rw, f.rw, atol=1e-4)
