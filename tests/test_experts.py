"""Architecture coverage on tiny random BERT/MPNet encoders (no downloads)."""

import numpy as np
import pytest
import torch
from conftest import SENTENCES, make_tiny_st
from sentence_transformers import SentenceTransformer

import mote
from mote.experts import (
    ExpertLayerNorm,
    ExpertLinear,
    Segment,
    expert_modules,
    plan_segments,
    resolve_placement,
)
from mote.parameter_counts import parameter_counts


def perturb_expert(model, expert: int, scale: float = 0.05, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed + expert)
    with torch.no_grad():
        for m in expert_modules(mote.mote_module(model).auto_model):
            m.weight[expert].add_(torch.randn(m.weight[expert].shape, generator=g) * scale)


@pytest.mark.parametrize("family", ["bert", "mpnet"])
@pytest.mark.parametrize("placement,layers", [("every", [0, 1, 2, 3]), ("every-other", [1, 3]), ("0,2", [0, 2])])
def test_fresh_conversion_equals_dense_with_prefix(tmp_path, minilm_tokenizer, family, placement, layers):
    path = make_tiny_st(tmp_path, minilm_tokenizer, family)
    dense = SentenceTransformer(path, device="cpu")
    model = mote.convert(path, placement=placement)
    assert mote.mote_module(model).expert_layers == layers
    for task, prefix in mote.DEFAULT_TASKS.items():
        ours = model.encode(SENTENCES, task=task)
        ref = dense.encode([prefix + s for s in SENTENCES])
        np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0)


def test_experts_are_stacked_and_each_slot_is_replaced(tiny_bert):
    model = mote.convert(tiny_bert, placement="every")
    hf = mote.mote_module(model).auto_model
    layer = hf.encoder.layer[0]
    assert isinstance(layer.attention.output.LayerNorm, ExpertLayerNorm)
    assert isinstance(layer.intermediate.dense, ExpertLinear)
    assert isinstance(layer.output.dense, ExpertLinear)
    assert isinstance(layer.output.LayerNorm, ExpertLayerNorm)
    assert layer.intermediate.dense.weight.shape == (4, 64, 32)  # [E, out, in]
    assert layer.output.LayerNorm.weight.shape == (4, 32)
    # self-attention stays shared
    assert isinstance(layer.attention.self.query, torch.nn.Linear)


def test_changing_one_expert_changes_exactly_its_tasks(tiny_bert):
    routing = mote.RoutingTable.from_spec("query@0,document@1,classification@2,clustering@2")
    model = mote.convert(tiny_bert, placement="every-other", routing=routing)
    before = {t: model.encode(SENTENCES, task=t) for t in routing.task_names}
    perturb_expert(model, 2)
    after = {t: model.encode(SENTENCES, task=t) for t in routing.task_names}
    for t in ("query", "document"):
        np.testing.assert_array_equal(after[t], before[t])
    for t in ("classification", "clustering"):
        assert np.abs(after[t] - before[t]).max() > 1e-3


def test_mixed_task_batch_equals_separate_encoding(tiny_bert):
    model = mote.convert(tiny_bert, placement="every")
    for e in range(4):
        perturb_expert(model, e)
    tasks = ["clustering", "query", "document", "query", "classification", "document"]
    mixed = mote.encode(model, SENTENCES, task=tasks, batch_size=6)
    separate = np.stack([model.encode([s], task=t)[0] for s, t in zip(SENTENCES, tasks)])
    np.testing.assert_allclose(mixed, separate, atol=1e-5, rtol=0)
    # and the tasks really differ after perturbation, so the check above is not vacuous
    assert (
        np.abs(model.encode(SENTENCES[:1], task="query") - model.encode(SENTENCES[:1], task="document")).max() > 1e-3
    )


def test_mixed_task_encode_runs_task_homogeneous_batches(tiny_bert, monkeypatch):
    """mote.encode with one task per text groups the texts by task first: every forward holds one expert."""
    import mote.model

    model = mote.convert(tiny_bert, placement="every")
    experts_per_forward = []
    original = mote.model.plan_segments

    def spy(experts):
        experts_per_forward.append(len(set(experts)))
        return original(experts)

    monkeypatch.setattr(mote.model, "plan_segments", spy)
    tasks = [list(mote.DEFAULT_TASKS)[i % 4] for i in range(len(SENTENCES) * 3)]
    out = mote.encode(model, SENTENCES * 3, task=tasks, batch_size=4)
    assert out.shape == (18, 32) and experts_per_forward and set(experts_per_forward) == {1}


@pytest.fixture
def mixed_batch(tiny_bert):
    model = mote.convert(tiny_bert, placement="every")
    for e in range(4):
        perturb_expert(model, e)
    tasks = ["clustering", "query", "document", "query", "classification", "document"]
    return model, tasks


def test_a_batch_that_really_mixes_tasks_equals_per_task_batches(mixed_batch):
    """One forward over a task-mixed batch (rows grouped by expert inside the forward) = each row alone."""
    model, tasks = mixed_batch
    module = mote.mote_module(model)
    model.eval()
    for grad in (False, True):  # the inference path writes into one buffer; the training path concatenates
        with torch.set_grad_enabled(grad):
            mixed = model(module.preprocess(SENTENCES, task=tasks))["sentence_embedding"].detach()
            alone = torch.cat([model(module.preprocess([s], task=t))["sentence_embedding"].detach()
                               for s, t in zip(SENTENCES, tasks)])
        assert torch.allclose(mixed, alone, atol=1e-5)


def test_gradients_of_a_mixed_task_batch_equal_those_of_per_task_batches(mixed_batch):
    """The static arm's path: the gradient of a loss over one task-mixed batch = the sum of the gradients of the
    same loss over each task's rows alone (every expert gets exactly its own rows' gradient)."""
    model, tasks = mixed_batch
    module = mote.mote_module(model)
    model.eval()  # no dropout
    weights = torch.randn(len(SENTENCES), 32, generator=torch.Generator().manual_seed(0))

    def grads(batches):
        model.zero_grad()
        for rows in batches:
            emb = model(module.preprocess([SENTENCES[i] for i in rows], task=[tasks[i] for i in rows]))
            (emb["sentence_embedding"] * weights[rows]).sum().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    mixed = grads([list(range(len(SENTENCES)))])
    per_task = grads([[i for i, t in enumerate(tasks) if t == task] for task in dict.fromkeys(tasks)])
    assert mixed.keys() == per_task.keys()
    for name in mixed:
        assert torch.allclose(mixed[name], per_task[name], atol=1e-5), name
    up = "encoder.layer.0.intermediate.dense.weight"
    stacked = next(g for n, g in mixed.items() if n.endswith(up))
    assert all(stacked[e].abs().sum() > 0 for e in range(4))  # every expert got its rows' gradient


def test_plan_segments_groups_without_reordering_grouped_batches():
    assert plan_segments([1, 1, 3]) == (None, [Segment(1, 0, 2), Segment(3, 2, 3)])
    order, segs = plan_segments([3, 0, 3, 1])
    assert order == [1, 3, 0, 2]
    assert segs == [Segment(0, 0, 1), Segment(1, 1, 2), Segment(3, 2, 4)]
    assert plan_segments([]) == (None, [])


def test_experts_refuse_to_run_without_a_task(tiny_bert):
    model = mote.convert(tiny_bert, placement="every")
    module = mote.mote_module(model)
    feats = module.tokenizer(["hello"], return_tensors="pt")
    with pytest.raises(RuntimeError, match="without a task"):
        module.auto_model(**feats)
    with module.routed("query"):
        out = module.auto_model(**feats).last_hidden_state
    assert out.shape[-1] == 32


def test_placement_errors():
    assert resolve_placement("eb", 3) == [0, 1, 2]
    with pytest.raises(ValueError, match="every-other"):
        resolve_placement("sometimes", 6)
    with pytest.raises(ValueError, match="0..5"):
        resolve_placement([7], 6)


def test_parameter_counts_active_equals_dense(tiny_bert):
    dense = SentenceTransformer(tiny_bert, device="cpu")
    model = mote.convert(tiny_bert, placement="every-other")
    counts = parameter_counts(model)
    n_dense = sum(p.numel() for p in dense.parameters())
    assert counts["active"] == n_dense
    per_layer = 64 * 32 + 64 + 32 * 64 + 32 + 4 * 32  # up, down, two LayerNorms
    assert counts["total"] == n_dense + 3 * 2 * per_layer  # 3 extra experts in 2 layers


def test_unsupported_architecture_error_names_supported_families():
    from mote.experts import layer_slots

    class Fake(torch.nn.Module):
        class config:
            model_type = "gpt2"

    with pytest.raises(ValueError, match="supported families"):
        layer_slots(Fake())


def test_prompt_excluded_pooling_and_lower_casing_match_the_dense_model(tmp_path, minilm_tokenizer):
    """A base whose Pooling leaves the prompt out (include_prompt=False) and whose Transformer lower-cases: the
    fresh MoTE model pools exactly the tokens the dense model pools for every task, also in mixed calls."""
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    raw = SentenceTransformer(make_tiny_st(tmp_path, minilm_tokenizer, "bert"), device="cpu")
    hf_dir = tmp_path / "hf-lower"
    raw[0].model.save_pretrained(hf_dir)
    minilm_tokenizer.save_pretrained(hf_dir)
    dense = SentenceTransformer(modules=[Transformer(str(hf_dir), max_seq_length=64, do_lower_case=True),
                                         Pooling(32, "mean", include_prompt=False), Normalize()], device="cpu")
    model = mote.convert(dense, placement="every")
    module = mote.mote_module(model)
    assert module.do_lower_case and not model[1].include_prompt
    texts = [s.upper() for s in SENTENCES]
    for task, prefix in mote.DEFAULT_TASKS.items():
        ours = model.encode(texts, task=task)
        np.testing.assert_allclose(ours, dense.encode(texts, prompt=prefix), atol=1e-5, rtol=0)
        # the prefix really is left out: pooling it in gives other embeddings
        assert np.abs(ours - dense.encode([prefix + t for t in texts])).max() > 1e-3
    np.testing.assert_allclose(model.encode(texts, task="query"), model.encode(SENTENCES, task="query"), atol=1e-6)
    tasks = [list(mote.DEFAULT_TASKS)[i % 4] for i in range(len(texts))]
    mixed = mote.encode(model, texts, task=tasks)
    np.testing.assert_allclose(mixed, np.stack([dense.encode([t], prompt=mote.DEFAULT_TASKS[k])[0]
                                                for t, k in zip(texts, tasks)]), atol=1e-5, rtol=0)
    model.save(str(tmp_path / "saved"))
    loaded = SentenceTransformer(str(tmp_path / "saved"), device="cpu")
    assert loaded[0].do_lower_case
    np.testing.assert_allclose(loaded.encode(texts, task="query"), model.encode(texts, task="query"), atol=1e-6)
