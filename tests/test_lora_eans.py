"""EANS (pool search, miner, loss, refresh) and the two-stage TSEmbed plan."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from pydantic import ValidationError
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.modules import Normalize, Transformer
from sentence_transformers.sentence_transformer.modules import Pooling
from transformers import BertConfig, BertModel

from mote.lora import (
    CandidatePool,
    EANSConfig,
    EANSLoss,
    EANSMiner,
    EANSRefreshCallback,
    MoELoRAConfig,
    TSEmbedConfig,
    apply_stage,
    convert,
    routing_similarity,
    select_hard_negatives,
    stage_runs,
)
from mote.lora.eans import signature
from mote.lora.plan import build_miner, wrap_losses

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: threads only add overhead


def random_distributions(n: int, e: int = 6, m: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(n, m, e, generator=g) * 2, dim=-1)  # (n, M, E)


def reference_top(query, pool, k, metric, banned):
    """Python reference: score every (query, candidate) pair, drop banned ones, sort."""
    out = []
    for b in range(query.shape[0]):
        scored = []
        for j in range(pool.shape[0]):
            if banned[b][j]:
                continue
            if metric == "cosine":
                s = torch.nn.functional.cosine_similarity(query[b].flatten(), pool[j].flatten(), dim=0).item()
            else:
                js = 0.0
                for layer in range(query.shape[1]):
                    p, q = query[b, layer].double(), pool[j, layer].double()
                    mid = (p + q) / 2
                    js += (0.5 * (p * (p / mid).log()).sum() + 0.5 * (q * (q / mid).log()).sum()).item()
                s = -js / query.shape[1]
            scored.append((s, j))
        out.append([j for _, j in sorted(scored, reverse=True)[:k]])
    return out


# ------------------------------------------------------------------------------------------------ pool search
@pytest.mark.parametrize("metric", ["cosine", "js"])
def test_eans_picks_exactly_the_closest_candidates_and_never_a_positive_or_same_label(metric):
    query, pool = random_distributions(5, seed=1), random_distributions(40, seed=2)
    # Plant, for every query, a near-copy of its routing in the pool, but make it the query's positive (item b)
    # or give it the query's label (item 10 + b): the two closest candidates must both be skipped.
    pool[:5] = query * 0.999 + 0.001 / query.shape[-1]
    pool[10:15] = query * 0.998 + 0.002 / query.shape[-1]
    q_labels = torch.arange(100, 105)
    p_labels = torch.arange(40)
    p_labels[10:15] = q_labels
    positives = torch.tensor([[0, -1], [1, -1], [2, -1], [3, 20], [4, -1]])
    idx, valid = select_hard_negatives(query, pool, k=4, metric=metric, query_labels=q_labels,
                                       pool_labels=p_labels, positives=positives)
    assert valid.all()
    banned = torch.zeros(5, 40, dtype=torch.bool)
    banned[torch.arange(5), torch.arange(5)] = True
    banned[torch.arange(5), torch.arange(10, 15)] = True
    banned[3, 20] = True
    assert idx.tolist() == reference_top(query, pool, 4, metric, banned)
    for b in range(5):
        assert b not in idx[b] and 10 + b not in idx[b]
    # Without the exclusions the planted copies are the nearest: the test really tests the exclusion.
    plain, _ = select_hard_negatives(query, pool, k=2, metric=metric)
    assert sorted(plain[0].tolist()) == [0, 10]


def test_eans_reports_when_too_few_candidates_are_admissible():
    query, pool = random_distributions(2), random_distributions(3, seed=3)
    idx, valid = select_hard_negatives(query, pool, k=5, query_labels=torch.tensor([7, 8]),
                                       pool_labels=torch.tensor([7, 7, 9]))
    assert idx.shape == (2, 3)  # k is capped at the pool size
    assert valid.tolist() == [[True, False, False], [True, True, True]]
    assert idx[0, 0].item() == 2
    unlabelled, _ = select_hard_negatives(query, pool, k=1, query_labels=torch.tensor([-1, -1]),
                                          pool_labels=torch.tensor([-1, -1, -1]))
    assert unlabelled.shape == (2, 1)  # -1 = unlabelled: never excluded by label


def test_js_similarity_is_chunked_without_changing_the_result():
    query, pool = random_distributions(9), random_distributions(30, seed=5)
    full = routing_similarity(query, pool, "js")
    chunked = routing_similarity(query, pool, "js", chunk_elements=pool.numel() * 2)
    assert torch.allclose(full, chunked) and full.shape == (9, 30)
    assert torch.allclose(routing_similarity(query, query, "js").diagonal(), torch.zeros(9), atol=1e-6)
    assert signature(query, "mean").shape == (9, 1, 6) and signature(query, "concat").shape == (9, 3, 6)


def test_miner_maps_picks_back_to_items_and_labels():
    pairs = [SimpleNamespace(positive=f"p{i}", negative=f"n{i}" if i % 2 else None, label=i, negative_label=50 + i)
             for i in range(6)]
    pool = CandidatePool.from_pairs(pairs, task="document")
    assert pool.items == ["p0", "p1", "n1", "p2", "p3", "n3", "p4", "p5", "n5"] and pool.labels.tolist()[:3] == [
        0, 1, 51]
    miner = EANSMiner({"g": pool}, EANSConfig(num_negatives=2, pool_size=None))
    with pytest.raises(RuntimeError, match="refresh"):
        miner.mine("g", random_distributions(1), torch.tensor([0]))
    dist = torch.zeros(9, 1, 2)
    dist[:, 0, 0] = torch.linspace(0.1, 0.9, 9)
    dist[:, 0, 1] = 1 - dist[:, 0, 0]
    pool.distributions, pool.sample = dist, torch.arange(9)
    query = torch.tensor([[[0.9, 0.1]], [[0.12, 0.88]]])  # closest to the last / the first items
    mined = miner.mine("g", query, torch.tensor([5, 0]))  # label 5 = item "p5" (index 7) excluded for query 0
    got = [[mined.items[j] for j in row] for row in mined.per_query.tolist()]
    assert got == [["n5", "p4"], ["p1", "n1"]]  # query 1: "p0" (label 0) is its positive
    assert mined.labels.tolist() == [int(pool.labels[pool.items.index(x)]) for x in mined.items]
    with pytest.raises(KeyError, match="no candidate pool"):
        miner.mine("other", query)


# ------------------------------------------------------------------------------------------------ training glue
@pytest.fixture(scope="module")
def tiny_tsembed(tmp_path_factory, minilm_tokenizer):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("tiny-eans")
    config = BertConfig(vocab_size=minilm_tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(root / "hf")
    minilm_tokenizer.save_pretrained(root / "hf")
    st = SentenceTransformer(
        modules=[Transformer(str(root / "hf"), max_seq_length=32), Pooling(32, "mean"), Normalize()], device="cpu"
    )
    return convert(st, MoELoRAConfig(num_experts=4, r=4, lora_dropout=0.0))


def test_eans_loss_mixes_mined_negatives_into_the_batch(tiny_tsembed):
    from mote.train.losses import TaskInfoNCE

    model = tiny_tsembed
    pairs = [SimpleNamespace(anchor=f"what is item {i}", positive=f"item {i} is a thing number {i}",
                             negative=f"not item {i}" if i % 3 == 0 else None, label=i, negative_label=100 + i)
             for i in range(12)]
    group = SimpleNamespace(name="retrieval:toy", task="retrieval", pairs=pairs)
    router_mapping = {"retrieval:toy": {"anchor": "query", "positive": "document", "negative": "document"}}
    tsembed = TSEmbedConfig.model_validate({"eans": {"num_negatives": 2, "pool_size": 8, "refresh_every": 2}})
    miner = build_miner(tsembed, [group], router_mapping)
    callback = EANSRefreshCallback(miner, model)
    callback.on_train_begin(None, SimpleNamespace(global_step=0), None)
    for step in (1, 2, 3, 4):
        callback.on_step_end(None, SimpleNamespace(global_step=step), None)
    assert miner.refreshes == 3 and miner.pools["retrieval:toy"].distributions.shape == (8, 1, 4)
    losses = wrap_losses({"retrieval:toy": TaskInfoNCE(model, temperature=0.05, aux_loss_weight=0.01)}, miner,
                         router_mapping)
    loss = losses["retrieval:toy"]
    assert isinstance(loss, EANSLoss) and loss.negative_task == "document"
    model.train()
    batch = pairs[:4]
    features = [model.preprocess([p.anchor for p in batch], task="query"),
                model.preprocess([p.positive for p in batch], task="document")]
    labels = torch.tensor([p.label for p in batch])
    out = loss(features, labels)
    assert set(out) == {"info_nce", "load_balance"} and torch.isfinite(out["info_nce"])
    sum(out.values()).backward()
    grads = [n for n, p in model.named_parameters() if p.grad is not None]
    assert grads and all(".lora_" in n or ".router." in n for n in grads)
    model.zero_grad()
    with pytest.raises(ValueError, match="labels"):
        loss(features, None)


# ------------------------------------------------------------------------------------------------ two-stage plan
def test_two_stage_plan_and_its_ablation():
    cfg = TSEmbedConfig.model_validate({"stage1": {"steps": 30, "learning_rate": 3e-4},
                                        "stage2": {"steps": 10, "learning_rate": 1e-4}})
    runs = stage_runs(cfg)
    assert [(r.name, r.steps, r.learning_rate, r.eans) for r in runs] == [
        ("stage1", 30, 3e-4, False), ("stage2", 10, 1e-4, True)]
    assert runs[0].aux_loss_weight == 0.01 and runs[1].aux_loss_weight == 0.0  # stage 2 freezes the routers
    ablation = stage_runs(cfg.without_eans())
    assert [(r.name, r.steps, r.eans) for r in ablation] == [("stage1", 40, False)]
    split = TSEmbedConfig.split(200)
    assert (split.stage1.steps, split.stage2.steps) == (100, 100)


def test_plan_validation_errors():
    with pytest.raises(ValidationError, match="EANS needs lora.routing: token"):
        TSEmbedConfig.model_validate({"lora": {"routing": "sequence"}})
    with pytest.raises(ValidationError, match="top_k"):
        TSEmbedConfig.model_validate({"lora": {"num_experts": 2, "top_k": 4}})
    with pytest.raises(ValidationError, match="Unexpected keyword|Extra inputs"):
        TSEmbedConfig.model_validate({"lora": {"experts": 4}})
    with pytest.raises(ValidationError, match="stage1.eans"):
        TSEmbedConfig.model_validate({"stage1": {"steps": 5, "learning_rate": 1e-4, "eans": True}})
    ok = TSEmbedConfig.model_validate({"lora": {"routing": "sequence"}, "stage2": None})
    assert ok.total_steps == 100


def test_apply_stage_sets_the_trainable_parameters(tiny_tsembed):
    runs = stage_runs(TSEmbedConfig())
    counts1 = apply_stage(tiny_tsembed, runs[0])
    routers = [p for n, p in tiny_tsembed.named_parameters() if ".router." in n]
    assert all(p.requires_grad for p in routers)
    counts2 = apply_stage(tiny_tsembed, runs[1])
    assert not any(p.requires_grad for p in routers)
    assert counts1["trainable"] - counts2["trainable"] == sum(p.numel() for p in routers)
    assert not any(p.requires_grad for n, p in tiny_tsembed.named_parameters() if ".base_layer." in n)
