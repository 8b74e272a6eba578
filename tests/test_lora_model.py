"""TSEmbed models on a tiny random BERT: no-op start, targets, save/load, one-task merge, routing, training outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import run_in_threads
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.modules import Normalize, Transformer
from sentence_transformers.sentence_transformer.modules import Pooling
from transformers import AutoModel, BertConfig, BertModel

from mote.lora import (
    MoELoRAConfig,
    TargetModulesError,
    convert,
    export_task,
    find_target_modules,
    from_adapter,
    load,
    load_adapter,
    routing_distributions,
    save_adapter,
)
from mote.lora.model import moe_lora_layers
from mote.routing import RoutingTable

TEXTS = ["how do magnets work", "The new movie is awesome and I loved every minute of it.", "hi", "a b c d e f g"]



pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: threads only add overhead

@pytest.fixture(scope="module")
def tiny(tmp_path_factory, minilm_tokenizer) -> SentenceTransformer:
    """A tiny random BERT sentence-transformer (hidden 32, 2 layers) with the real MiniLM tokenizer."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("tiny-lora")
    config = BertConfig(vocab_size=minilm_tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(root / "hf")
    minilm_tokenizer.save_pretrained(root / "hf")
    return SentenceTransformer(
        modules=[Transformer(str(root / "hf"), max_seq_length=32), Pooling(32, "mean"), Normalize()], device="cpu"
    )


def trained(model: SentenceTransformer, seed: int = 0) -> SentenceTransformer:
    """Pretend training happened: non-zero experts and non-trivial routers."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in moe_lora_layers(model[0].auto_model).values():
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g) * 0.3)
            for p in layer.router.parameters():
                p.add_(torch.randn(p.shape, generator=g))
    return model.eval()


def base_encode(tiny: SentenceTransformer, task: str) -> np.ndarray:
    return tiny.encode(TEXTS, prompt=RoutingTable.default().prefix(task))


# ------------------------------------------------------------------------------------------------ no-op start
@pytest.mark.parametrize("routing", ["token", "sequence"])
def test_fresh_adapters_leave_the_backbone_embeddings_unchanged(tiny, routing):
    before = {k: v.clone() for k, v in tiny.state_dict().items()}
    model = convert(tiny, MoELoRAConfig(num_experts=4, r=4, routing=routing))
    for task in ("query", "clustering"):
        np.testing.assert_allclose(model.encode(TEXTS, task=task), base_encode(tiny, task), atol=1e-6)
    assert all(torch.equal(v, tiny.state_dict()[k]) for k, v in before.items())  # the input was copied
    report = model[0].parameter_report()
    assert report["trainable"] == report["adapters"] > 0
    assert report["backbone"] == sum(p.numel() for p in tiny.parameters())
    assert report["active"] < report["total"]  # top-k of E experts per token


# ------------------------------------------------------------------------------------------------ targets
def test_target_module_that_matches_nothing_lists_the_linear_layers(tiny):
    hf = tiny[0].auto_model
    with pytest.raises(TargetModulesError) as err:
        find_target_modules(hf, MoELoRAConfig(target_modules=["query", "q_proj"]))
    msg = str(err.value)
    assert "'q_proj'" in msg and "encoder.layer.0.attention.self.query" in msg and "intermediate.dense" in msg
    with pytest.raises(TargetModulesError, match="only non-linear modules"):
        find_target_modules(hf, MoELoRAConfig(target_modules=["attention"]))
    with pytest.raises(TargetModulesError, match="regex"):
        find_target_modules(hf, MoELoRAConfig(target_modules=r".*\.mlp\.up_proj"))
    with pytest.raises(TargetModulesError):
        convert(tiny, MoELoRAConfig(target_modules=["nothing_here"]))


def test_targets_follow_peft_semantics(tiny):
    hf = tiny[0].auto_model
    all_linear = find_target_modules(hf, MoELoRAConfig())
    assert len(all_linear) == 12 and not any("pooler" in n for n in all_linear)
    layer1 = find_target_modules(hf, MoELoRAConfig(layers_to_transform=[1]))
    assert layer1 == [n for n in all_linear if n.startswith("encoder.layer.1.")] and len(layer1) == 6
    assert find_target_modules(hf, MoELoRAConfig(target_modules=["query", "value"], layers_to_transform=[1])) == [
        "encoder.layer.1.attention.self.query", "encoder.layer.1.attention.self.value"]
    ffn = find_target_modules(hf, MoELoRAConfig(target_modules=r".*\.(intermediate|output)\.dense",
                                                exclude_modules=["attention.output.dense"]))
    assert ffn == [f"encoder.layer.{i}.{s}" for i in (0, 1) for s in ("intermediate.dense", "output.dense")]


# ------------------------------------------------------------------------------------------------ save / load
def test_adapter_save_load_round_trip(tiny, tmp_path):
    routing = RoutingTable.default()
    cfg = MoELoRAConfig(num_experts=4, r=4, target_modules=["query", "value", "output.dense"])
    model = trained(convert(tiny, cfg, routing))
    expected = model.encode(TEXTS, task="document")
    hf = model[0].auto_model
    save_adapter(hf, tmp_path / "adapter", cfg, routing)
    assert sorted(p.name for p in (tmp_path / "adapter").iterdir()) == ["adapter_config.json",
                                                                        "adapter_model.safetensors"]
    with pytest.raises(FileExistsError):
        save_adapter(hf, tmp_path / "adapter", cfg, routing)
    # Onto the plain backbone again (sentence-transformers level): same outputs.
    restored = from_adapter(tiny, tmp_path / "adapter")
    np.testing.assert_allclose(restored.encode(TEXTS, task="document"), expected, atol=1e-6)
    assert restored[0].lora_config == cfg and restored[0].routing == routing
    # Onto a plain Hugging Face model.
    plain = AutoModel.from_pretrained(tiny[0].model.name_or_path)
    loaded_cfg, loaded_routing, _ = load_adapter(plain, tmp_path / "adapter")
    assert loaded_cfg == cfg and loaded_routing == routing
    assert sorted(moe_lora_layers(plain)) == sorted(moe_lora_layers(hf))
    with pytest.raises(ValueError, match="already holds"):
        load_adapter(plain, tmp_path / "adapter")
    # Adapters that do not fit the backbone: a clear error.
    other = AutoModel.from_pretrained(tiny[0].model.name_or_path)
    inject = MoELoRAConfig(num_experts=4, r=2, target_modules=["query", "value", "output.dense"])
    from mote.lora import inject_adapters
    from mote.lora.model import load_adapter_weights

    inject_adapters(other, inject, routing)
    with pytest.raises(ValueError, match="wrong shape"):
        load_adapter_weights(other, tmp_path / "adapter")


@pytest.mark.parametrize("routing", ["token", "sequence"])
def test_model_save_load_round_trip(tiny, tmp_path, routing):
    model = trained(convert(tiny, MoELoRAConfig(num_experts=5, r=4, routing=routing)))
    expected = {t: model.encode(TEXTS, task=t) for t in ("query", "document")}
    model.save(str(tmp_path / "m"))
    # The root is a plain backbone folder (the adapters sit in moe_lora/, out of transformers' PEFT detection).
    assert not (tmp_path / "m" / "adapter_config.json").exists()
    assert (tmp_path / "m" / "moe_lora" / "adapter_model.safetensors").is_file()
    plain = AutoModel.from_pretrained(tmp_path / "m")
    assert torch.equal(plain.encoder.layer[0].attention.self.query.weight,
                       tiny[0].auto_model.encoder.layer[0].attention.self.query.weight)
    reloaded = load(tmp_path / "m")
    for task, emb in expected.items():
        np.testing.assert_allclose(reloaded.encode(TEXTS, task=task), emb, atol=1e-6)
    assert reloaded.encode(TEXTS[:1], prompt_name="query").shape == (1, 32)


# ------------------------------------------------------------------------------------------------ merge / export
def test_merge_for_one_task_equals_the_routed_model(tiny, tmp_path):
    model = trained(convert(tiny, MoELoRAConfig(num_experts=4, r=4, routing="sequence", top_k=2)))
    routed = model.encode(TEXTS, task="classification")
    assert not np.allclose(routed, base_encode(tiny, "classification"), atol=1e-3)  # the experts matter
    out = export_task(model, "classification", tmp_path / "cls")
    modules = json.loads((out / "modules.json").read_text())
    assert all(m["type"].startswith("sentence_transformers.") for m in modules)  # stock modules only
    dense = SentenceTransformer(str(out), device="cpu")
    assert type(dense[0]) is Transformer
    np.testing.assert_allclose(dense.encode(TEXTS), routed, atol=1e-5)  # the task prefix is its default prompt


def test_token_routing_cannot_be_merged(tiny, tmp_path):
    model = convert(tiny, MoELoRAConfig(num_experts=4, r=2, routing="token"))
    with pytest.raises(ValueError, match="routing='sequence'"):
        export_task(model, "query", tmp_path / "q")
    assert not (tmp_path / "q").exists()


# ------------------------------------------------------------------------------------------------ routing
@pytest.mark.parametrize("routing", ["token", "sequence"])
def test_mixed_task_batches_equal_single_task_batches(tiny, routing):
    model = trained(convert(tiny, MoELoRAConfig(num_experts=4, r=4, routing=routing)))
    tasks = ["query", "document", "query", "clustering"]
    module = model[0]
    with torch.no_grad():
        mixed = model(module.preprocess(TEXTS, task=tasks))["sentence_embedding"]
        for i, (text, task) in enumerate(zip(TEXTS, tasks)):
            one = model(module.preprocess([text], task=task))["sentence_embedding"]
            assert torch.allclose(mixed[i], one[0], atol=1e-5)


def test_training_forward_reports_aux_loss_and_routing_and_trains_only_adapters(tiny):
    model = convert(tiny, MoELoRAConfig(num_experts=4, r=4, lora_dropout=0.0))
    model.train()
    out = model(model[0].preprocess(TEXTS, task="query"))
    assert out["routing_probs"].shape == (4, 12, 4)  # (B, adapted layers, E)
    assert torch.allclose(out["routing_probs"].sum(-1), torch.ones(4, 12))
    assert out["router_aux_loss"].requires_grad and out["router_aux_loss"].item() >= 1.0 - 1e-6
    (out["sentence_embedding"].sum() + out["router_aux_loss"]).backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    assert with_grad and all(".lora_" in n or ".router." in n for n in with_grad)


def test_routing_distributions_do_not_depend_on_the_batch(tiny):
    model = trained(convert(tiny, MoELoRAConfig(num_experts=4, r=4)))
    together = routing_distributions(model, TEXTS, task="document", batch_size=3)
    alone = torch.cat([routing_distributions(model, [t], task="document") for t in TEXTS])
    assert together.shape == (4, 12, 4)
    assert torch.allclose(together, alone, atol=1e-5)
    model.train()
    routing_distributions(model, TEXTS[:1])
    assert model[0].training  # the training mode is restored


def test_routed_context_for_direct_hugging_face_calls(tiny):
    model = trained(convert(tiny, MoELoRAConfig(num_experts=4, r=4, routing="sequence")))
    module = model[0]
    features = module.preprocess(TEXTS[:2], task="query")
    with torch.no_grad():
        expected = module(dict(features))["token_embeddings"]
        inputs = {k: features[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
        with pytest.raises(RuntimeError, match="without task ids"):
            module.auto_model(**inputs)
        with module.routed("query"):
            direct = module.auto_model(**inputs).last_hidden_state
    assert torch.allclose(direct, expected, atol=1e-6)


@pytest.mark.parametrize("routing", ["token", "sequence"])
def test_concurrent_encodes_of_different_tasks_each_get_their_own_routing(tiny, routing):
    model = trained(convert(tiny, MoELoRAConfig(num_experts=4, r=4, routing=routing)))
    texts = TEXTS * 6
    tasks = RoutingTable.default().task_names
    expected = {t: model.encode(texts, task=t, batch_size=4) for t in tasks}
    assert min(np.abs(expected[a] - expected[b]).max() for a in tasks for b in tasks if a != b) > 1e-3
    got = run_in_threads({t: (lambda t=t: model.encode(texts, task=t, batch_size=4)) for t in tasks}, repeats=5)
    for t in tasks:
        for emb in got[t]:
            assert np.abs(emb - expected[t]).max() <= 1e-6, t
