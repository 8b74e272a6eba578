"""Token-level routing: exact at init, routers hookable, deterministic, save/load (the loss: test_load_balancing)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import run_in_threads
from sentence_transformers import SentenceTransformer
from tiny_train import write_tiny_model

import mote
from mote.ablations import tlr

TEXTS = ["what is a rocket", "the cheese and the bread in the oven", "goal", "a stock market price today"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: threads only add overhead


def perturb_tlr(model, seed: int = 0) -> None:
    """As if trained: experts that differ and routers that send tokens to several experts."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, tlr.TokenExpertLinear | tlr.TokenExpertLayerNorm | tlr.RoutedLayerNorm):
                m.weight.add_(torch.randn(m.weight.shape, generator=g) * 0.2)
        for r in tlr.routers(model).values():
            r.weight.copy_(torch.randn(r.weight.shape, generator=g))


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp("tlr") / "bert", layers=2)


def test_fresh_tlr_model_computes_the_dense_function(base):
    dense = SentenceTransformer(base, device="cpu")
    model = tlr.convert(base, placement="every")
    assert isinstance(model[0], tlr.TLRTransformer)
    ref = dense.encode(["search_query: " + t for t in TEXTS])
    assert np.abs(model.encode(TEXTS, task="query") - ref).max() < 1e-5  # experts are copies, the gate is 1


def test_routers_are_hookable_linears_and_routing_is_deterministic(base):
    model = tlr.convert(base, placement="every")
    routers = tlr.routers(model)
    assert sorted(routers) == [0, 1] and all(isinstance(r, torch.nn.Linear) for r in routers.values())
    assert all(name.endswith(".router") for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)
               and m.out_features == 4)
    captured = []
    hooks = [r.register_forward_hook(lambda m, i, o: captured.append(o.detach())) for r in routers.values()]
    features = model.preprocess(TEXTS, task="document")
    with torch.no_grad():
        model.eval()
        model(dict(features))
    for h in hooks:
        h.remove()
    b, t = features["input_ids"].shape
    assert [c.shape for c in captured] == [(b, t, 4)] * 2
    # route differently by making one expert different: outputs differ from the dense model, reproducibly
    fresh = model.encode(TEXTS, task="query")
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, tlr.TokenExpertLinear):
                m.weight[2].mul_(1.5)
        routers[0].weight.zero_()
        routers[0].weight[2, 0] = 10.0  # a strong preference, token-dependent through the hidden state
    a, b2 = model.encode(TEXTS, task="query"), model.encode(TEXTS, task="query")
    assert np.array_equal(a, b2)
    assert np.abs(a - fresh).max() > 1e-3  # some tokens really went to expert 2


def test_aux_loss_reaches_the_router_and_save_load_roundtrip(base, tmp_path):
    model = tlr.convert(base, placement="1")
    model.train()
    out = model(dict(model.preprocess(TEXTS, task="query")))
    assert out["router_aux_loss"].requires_grad
    out["router_aux_loss"].backward()
    assert all(r.weight.grad is not None and r.weight.grad.abs().sum() > 0 for r in tlr.routers(model).values())
    model.eval()
    model.save(str(tmp_path / "tlr"))
    loaded = mote.load(tmp_path / "tlr")
    assert isinstance(loaded[0], tlr.TLRTransformer) and loaded[0].expert_layers == [1]
    assert np.array_equal(loaded.encode(TEXTS, task="query"), model.encode(TEXTS, task="query"))
    # the loaded routers are the saved ones, not fresh random routers
    for i, router in tlr.routers(model).items():
        assert torch.equal(tlr.routers(loaded)[i].weight, router.weight)


def test_concurrent_encodes_each_get_their_own_token_routing(base):
    model = tlr.convert(base, placement="every")
    perturb_tlr(model)
    jobs = {t: [f"{t} {x} {i}" * (i % 3 + 1) for i, x in enumerate(TEXTS * 3)] for t in mote.DEFAULT_TASKS}
    expected = {t: model.encode(texts, task=t, batch_size=4) for t, texts in jobs.items()}
    got = run_in_threads({t: (lambda t=t: model.encode(jobs[t], task=t, batch_size=4)) for t in jobs}, repeats=5)
    for t in jobs:
        for emb in got[t]:
            assert np.abs(emb - expected[t]).max() <= 1e-6, t


def test_token_dispatch_equals_a_per_token_reference(base):
    """Every token of every TLR layer goes through exactly its argmax expert's norm, FFN and norm."""
    model = tlr.convert(base, placement="every")
    perturb_tlr(model)
    module = model[0]
    hf = module.auto_model
    captured = {}
    hooks = []
    for i, layer in enumerate(hf.encoder.layer):
        hooks.append(layer.attention.output.LayerNorm.register_forward_pre_hook(
            lambda m, args, i=i: captured.__setitem__(("in", i), args[0].detach())))
        hooks.append(layer.register_forward_hook(
            lambda m, args, out, i=i: captured.__setitem__(("out", i), (out[0] if isinstance(out, tuple) else out)
                                                           .detach())))
    features = module.preprocess(TEXTS * 2, task="document")
    model.eval()
    with torch.no_grad():
        module(dict(features))
    for h in hooks:
        h.remove()
    used = set()
    for i, layer in enumerate(hf.encoder.layer):
        x = captured[("in", i)]  # (B, T, H): the pre-norm residual stream the router reads
        router = tlr.routers(model)[i]
        ref = torch.empty_like(captured[("out", i)])
        for b in range(x.shape[0]):
            for t in range(x.shape[1]):
                e = int(torch.softmax(router(x[b, t]), -1).argmax())
                used.add((i, e))
                norm0 = layer.attention.output.LayerNorm.expert_module(e)
                up, down = layer.intermediate.dense.expert_module(e), layer.output.dense.expert_module(e)
                norm1 = layer.output.LayerNorm.expert_module(e)
                with torch.no_grad():
                    y = norm0(x[b, t])
                    ref[b, t] = norm1(down(layer.intermediate.intermediate_act_fn(up(y))) + y)
        assert torch.allclose(captured[("out", i)], ref, atol=1e-5), i
    assert len({e for _, e in used}) > 1  # the batches really mixed experts


def test_cpu_float32_takes_the_grouped_path():
    """The pinned torch runs grouped_mm on CPU in fp32, so TLR's CPU path reads nothing on the host (the
    fallback, which reads the group sizes, is for devices / dtypes without the kernel)."""
    from mote.experts import grouped_mm_available

    assert grouped_mm_available(torch.device("cpu"), torch.float32)


def test_mixed_task_encode_batches_tlr_texts_by_length_not_by_task(base):
    """TLR routes tokens, not tasks: a mixed-task call is cut into batches by length alone (grouping by task would
    cut 12 texts of 4 tasks into 4 forwards), and each text gets the embedding it gets alone."""
    model = tlr.convert(base, placement="every")
    perturb_tlr(model)
    texts = [f"{x} {i}" for i, x in enumerate(TEXTS * 3)]
    names = list(mote.DEFAULT_TASKS)
    tasks = [names[i % len(names)] for i in range(len(texts))]
    calls = []
    hook = model[0].auto_model.register_forward_pre_hook(
        lambda m, args, kwargs: calls.append(kwargs["input_ids"].shape[0]), with_kwargs=True)
    try:
        mixed = mote.encode(model, texts, task=tasks, batch_size=32)
    finally:
        hook.remove()
    assert sum(calls) == len(texts) and len(calls) < len(names)  # so some forward held several tasks
    alone = np.stack([mote.encode(model, [x], task=t)[0] for x, t in zip(texts, tasks)])
    assert np.abs(mixed - alone).max() <= 1e-5
