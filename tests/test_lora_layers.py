"""MoE-LoRA building blocks on toy tensors: config validation, the layer's dispatch paths, router and its balance."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mote.lora.config import MoELoRAConfig
from mote.lora.layer import MoELoRALinear
from mote.lora.router import MoERouter, RoutingState, routing_signature


def make_layer(seed: int = 0, trained: bool = True, **cfg) -> tuple[MoELoRALinear, RoutingState]:
    torch.manual_seed(seed)
    state = RoutingState()
    config = MoELoRAConfig(**{"num_experts": 4, "r": 4, "lora_dropout": 0.0, **cfg})
    layer = MoELoRALinear(nn.Linear(16, 24), config, num_tasks=3, state=state, expert_of_task=[0, 1, 2])
    if trained:  # as if trained: non-zero B, non-trivial routers
        with torch.no_grad():
            layer.lora_B.normal_(0, 0.5)
            for p in layer.router.parameters():
                p.normal_(0, 1.0)
    return layer, state



pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: threads only add overhead

# ------------------------------------------------------------------------------------------------ config
def test_top_k_larger_than_num_experts_is_an_error():
    with pytest.raises(ValueError, match=r"top_k \(5\) is larger than num_experts \(4\)"):
        MoELoRAConfig(num_experts=4, top_k=5)
    with pytest.raises(ValueError, match="top_k"):
        MoERouter(8, num_experts=2, num_tasks=1, top_k=3)


def test_config_reports_every_problem_and_resolves_defaults():
    with pytest.raises(ValueError) as err:
        MoELoRAConfig(r=0, lora_dropout=1.5, routing="layer")
    msg = str(err.value)
    assert "r (the LoRA rank)" in msg and "lora_dropout" in msg and "routing" in msg
    assert MoELoRAConfig(routing="token").top_k == 2 and MoELoRAConfig(routing="sequence").top_k == 1
    assert MoELoRAConfig(r=4, lora_alpha=8, use_rslora=True).scaling == pytest.approx(4.0)
    cfg = MoELoRAConfig(num_experts=3, r=2, target_modules=["query"])
    assert MoELoRAConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="Unknown MoELoRAConfig keys"):
        MoELoRAConfig.from_dict({"experts": 3})


# ------------------------------------------------------------------------------------------------ layer
@pytest.mark.parametrize("routing", ["token", "sequence"])
def test_fresh_layer_is_exactly_the_base_layer(routing):
    layer, state = make_layer(trained=False, routing=routing, lora_dropout=0.1)
    layer.train()  # dropout on: B = 0 still makes the update vanish
    x = torch.randn(3, 5, 16)
    with state.use(torch.tensor([0, 1, 2]), None):
        assert torch.equal(layer(x), layer.base_layer(x))


def test_layer_refuses_to_run_without_task_ids():
    layer, _ = make_layer()
    with pytest.raises(RuntimeError, match="without task ids"):
        layer(torch.randn(2, 3, 16))


def reference_forward(layer: MoELoRALinear, x: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
    """Per-token loop over the routed experts: the definition the vectorised paths must match."""
    base = layer.base_layer(x)
    out = base.clone()
    r = layer.router
    for b in range(x.shape[0]):
        for t in range(x.shape[1]):
            if r.routing == "token":
                logits = r.weight @ x[b, t] + (r.task_bias[task_ids[b]] if r.task_bias is not None else 0)
            else:
                logits = r.task_logits[task_ids[b]]
            p = torch.softmax(logits, -1)
            top_p, top_i = p.topk(layer.top_k)
            g = top_p / top_p.sum() if layer.top_k > 1 else torch.ones(1)
            for w, e in zip(g, top_i):
                out[b, t] += layer.scaling * w * (layer.lora_B[e] @ (layer.lora_A[e] @ x[b, t]))
    return out


@pytest.mark.parametrize(
    "cfg",
    [
        {"routing": "token", "top_k": 2, "expert_compute": "dense"},
        {"routing": "token", "top_k": 1, "expert_compute": "dense"},
        {"routing": "token", "top_k": 2, "expert_compute": "grouped"},
        {"routing": "sequence", "top_k": 2},
        {"routing": "sequence", "top_k": 1},
    ],
)
def test_vectorised_dispatch_matches_the_per_token_definition(cfg):
    layer, state = make_layer(**cfg)
    x = torch.randn(3, 5, 16)
    for tids in ([0, 2, 1], [1, 1, 1]):  # mixed tasks, then one task (the sequence fast path)
        task_ids = torch.tensor(tids)
        single = tids[0] if len(set(tids)) == 1 else None
        with torch.no_grad(), state.use(task_ids, single):
            got = layer(x)
        assert torch.allclose(got, reference_forward(layer, x, task_ids), atol=1e-5)


def test_grouped_dispatch_equals_dense_forward_and_gradients(monkeypatch):
    layer, state = make_layer(routing="token", top_k=2)
    x = torch.randn(3, 7, 16, requires_grad=True)
    grad_out = torch.randn(3, 7, 24)
    ran = []
    for name in ("_grouped", "_dense"):  # record which dispatch really ran
        original = getattr(layer, name)
        monkeypatch.setattr(layer, name, lambda *a, _f=original, _n=name: ran.append(_n) or _f(*a))
    results = []
    for grouped in (True, False):
        layer.grouped = grouped
        layer.zero_grad()
        x.grad = None
        with state.use(torch.tensor([0, 1, 2]), None):
            y = layer(x)
        (y * grad_out).sum().backward()
        results.append([y.detach(), x.grad, layer.lora_A.grad, layer.lora_B.grad, layer.router.weight.grad])
    assert ran == ["_grouped", "_dense"]
    for a, b in zip(*results):
        assert torch.allclose(a, b, atol=1e-5)


def test_merged_linear_equals_the_sequence_routed_layer():
    layer, state = make_layer(routing="sequence", top_k=2)
    layer.eval()
    x = torch.randn(2, 5, 16)
    for task in range(3):
        with torch.no_grad(), state.use(torch.tensor([task, task]), task):
            routed = layer(x)
        merged = layer.merged(task)
        assert type(merged) is nn.Linear
        assert torch.allclose(merged(x), routed, atol=1e-5)


def test_only_adapter_parameters_train_and_the_router_gets_gradients():
    layer, state = make_layer(routing="token", top_k=1)  # top-1: the gate is p / p.detach()
    with state.use(torch.tensor([0, 1]), None):
        layer(torch.randn(2, 4, 16)).sum().backward()
    assert layer.base_layer.weight.grad is None and not layer.base_layer.weight.requires_grad
    assert layer.router.weight.grad is not None and layer.router.weight.grad.abs().sum() > 0
    assert layer.lora_A.grad is not None and layer.lora_B.grad is not None


# ------------------------------------------------------------------------------------------------ router
def test_task_init_sends_each_task_to_its_own_expert():
    for routing in ("token", "sequence"):
        router = MoERouter(16, num_experts=4, num_tasks=3, top_k=1, routing=routing, init_std=0.0)
        router.reset_parameters(expert_of_task=[2, 0, 3], logit=4.0)
        state = RoutingState()
        with state.use(torch.tensor([0, 1, 2]), None):
            out = router(torch.randn(3, 5, 16), state)
        assert out.top_idx[..., 0].amax(dim=-1).tolist() == [2, 0, 3]
        assert out.top_idx[..., 0].amin(dim=-1).tolist() == [2, 0, 3]
    with pytest.raises(ValueError, match="only 2 experts"):
        MoERouter(16, num_experts=2, num_tasks=2, top_k=1).reset_parameters([0, 3], 4.0)


def test_sequence_balance_is_measured_over_tasks_not_the_batch():
    """A task-homogeneous batch must not push a task to spread over all experts: the balance is over tasks."""
    router = MoERouter(8, num_experts=3, num_tasks=3, top_k=1, routing="sequence")
    router.reset_parameters(expert_of_task=[0, 1, 2], logit=4.0)
    state = RoutingState()
    with state.use(torch.tensor([1, 1]), 1) as records:
        router(torch.randn(2, 4, 8), state)
    assert records[0].aux_loss().item() == pytest.approx(1.0)  # tasks spread over experts: balanced


def test_routing_signature_averages_real_tokens():
    state = RoutingState()
    router = MoERouter(8, num_experts=3, num_tasks=1, top_k=1)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    x = torch.randn(2, 3, 8)
    with state.use(torch.tensor([0, 0]), None, mask=mask) as records:
        out = router(x, state)
        router(x, state)
    sig = routing_signature(records, mask, batch=2)
    assert sig.shape == (2, 2, 3)
    assert torch.allclose(sig[0, 0], out.probs[0, :2].mean(0)) and torch.allclose(sig[1, 0], out.probs[1, 0])
    assert torch.allclose(sig.sum(-1), torch.ones(2, 2))
