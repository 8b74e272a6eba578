"""The one router load-balancing loss (mote.load_balancing), used by the TLR ablation and TSEmbed's routers."""

from __future__ import annotations

import pytest
import torch

from mote.ablations import tlr
from mote.load_balancing import load_balancing_loss
from mote.lora import router

# Hand-computed reference (Switch Transformer: E * sum_i f_i * P_i). E = 3 experts, 4 tokens.
PROBS = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.5, 0.3, 0.2], [0.2, 0.2, 0.6]])
# P = mean probability per expert = (1.5, 1.3, 1.2) / 4 = (0.375, 0.325, 0.3)


def test_switch_loss_equals_the_hand_computed_formula():
    top1 = torch.tensor([0, 1, 0, 2])  # f = (2, 1, 1) / 4
    # 3 * (0.5 * 0.375 + 0.25 * 0.325 + 0.25 * 0.3) = 3 * 0.34375
    assert load_balancing_loss(PROBS, top1).item() == pytest.approx(1.03125, abs=1e-6)
    # the same tokens as a (B=2, T=2) batch with (B, T) or (B, T, 1) choices
    assert load_balancing_loss(PROBS.view(2, 2, 3), top1.view(2, 2)).item() == pytest.approx(1.03125, abs=1e-6)
    assert load_balancing_loss(PROBS.view(2, 2, 3), top1.view(2, 2, 1)).item() == pytest.approx(1.03125, abs=1e-6)
    # padding: the last token masked -> f = (2, 1, 0) / 3, P = (1.3, 1.1, 0.6) / 3: 3 * 3.7 / 9
    mask = torch.tensor([1, 1, 1, 0])
    assert load_balancing_loss(PROBS, top1, mask).item() == pytest.approx(3.7 / 3, abs=1e-6)
    # top-2: 8 (token, slot) assignments, f = (3, 3, 2) / 8: 3 * (0.375^2 + 0.375 * 0.325 + 0.25 * 0.3)
    top2 = torch.tensor([[0, 1], [1, 2], [0, 1], [2, 0]])
    assert load_balancing_loss(PROBS, top2).item() == pytest.approx(3 * 0.3375, abs=1e-6)
    # importance: E * sum_i P_i^2 = 3 * (0.375^2 + 0.325^2 + 0.3^2)
    assert load_balancing_loss(PROBS, top1, kind="importance").item() == pytest.approx(3 * 0.33625, abs=1e-6)
    with pytest.raises(ValueError, match="'switch' or 'importance'"):
        load_balancing_loss(PROBS, top1, kind="z-loss")


def test_one_implementation_behind_every_router():
    assert tlr.load_balancing_loss is router.load_balancing_loss is load_balancing_loss
    records = [(PROBS.view(1, 4, 3), torch.tensor([[0, 1, 0, 2]])), (torch.full((1, 4, 3), 1 / 3),
                                                                       torch.tensor([[0, 1, 2, 0]]))]
    # layer 2: f = (2, 1, 1) / 4, P uniform -> 3 * (1/3) = 1
    assert tlr.mean_load_balancing_loss(records).item() == pytest.approx((1.03125 + 1.0) / 2, abs=1e-6)


def test_token_routed_shapes_uniform_collapsed_confident_and_masked():
    e, n = 4, 64
    uniform = torch.full((1, n, e), 1.0 / e)
    balanced_top = torch.arange(n).remainder(e).unsqueeze(0)
    assert load_balancing_loss(uniform, balanced_top).item() == pytest.approx(1.0)
    collapsed = torch.zeros(1, n, e)
    collapsed[..., 0] = 1.0
    assert load_balancing_loss(collapsed, torch.zeros(1, n, dtype=torch.long)).item() == pytest.approx(e)
    # confident routing (probability follows the choice): E * sum f^2, 1 only when every expert gets 1/E
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        top = torch.randint(0, e, (1, n), generator=g)
        probs = torch.nn.functional.one_hot(top, e).float()
        value = load_balancing_loss(probs, top).item()
        assert value >= 1.0 - 1e-6
        assert value == pytest.approx(e * ((torch.bincount(top[0], minlength=e) / n) ** 2).sum().item(), rel=1e-5)
    # masked (padding) tokens do not count
    mask = torch.zeros(1, n)
    mask[0, :e] = 1
    assert load_balancing_loss(collapsed * 0 + uniform, balanced_top, mask).item() == pytest.approx(1.0)


def test_minimising_the_balancing_loss_spreads_the_tokens():
    torch.manual_seed(0)
    x = torch.randn(256, 16) + 1.0
    router = torch.nn.Linear(16, 4, bias=False)
    with torch.no_grad():
        router.weight[0] += 0.15  # start (almost) collapsed on expert 0
    opt = torch.optim.SGD(router.parameters(), lr=0.5)

    def step():
        probs = torch.softmax(router(x), -1).unsqueeze(0)
        return load_balancing_loss(probs, probs.argmax(-1)), probs

    start, probs = step()
    assert (probs.argmax(-1) == 0).float().mean() > 0.9
    for _ in range(200):
        loss, _ = step()
        opt.zero_grad()
        loss.backward()
        opt.step()
    end, probs = step()
    share = torch.bincount(probs.argmax(-1)[0], minlength=4).float() / 256
    assert end < start and share.max() < 0.3  # close to 1/4 each


def test_top_k_and_importance_are_minimal_at_uniform_routing():
    e, n = 4, 64
    uniform = torch.full((n, e), 1 / e)
    balanced_top = (torch.arange(n) % e).unsqueeze(-1)  # every expert gets n / E tokens
    for kind in ("switch", "importance"):
        assert load_balancing_loss(uniform, balanced_top, kind=kind).item() == pytest.approx(1.0)
    # Collapse: every token on expert 0 with certainty -> the maximum, E.
    collapsed = torch.zeros(n, e)
    collapsed[:, 0] = 1
    assert load_balancing_loss(collapsed, torch.zeros(n, 1, dtype=torch.long)).item() == pytest.approx(e)
    # Skewed routings (top-k = argmax, as the router does) are above the uniform minimum.
    g = torch.Generator().manual_seed(0)
    for temp in (0.5, 1.0, 3.0):
        probs = torch.softmax(torch.randn(n, e, generator=g) * temp + torch.tensor([2.0, 0, 0, 0]), -1)
        for k in (1, 2):
            top = probs.topk(k, -1).indices
            assert load_balancing_loss(probs, top).item() > 1.0
            assert load_balancing_loss(probs, top, kind="importance").item() > 1.0
    # The importance loss is >= 1 for any routing (Cauchy-Schwarz); equality only at a uniform mean.
    for _ in range(20):
        probs = torch.softmax(torch.randn(n, e, generator=g) * 2, -1)
        assert load_balancing_loss(probs, probs.topk(1, -1).indices, kind="importance").item() >= 1.0 - 1e-6


def test_load_balancing_loss_ignores_padding():
    probs = torch.tensor([[[0.5, 0.5], [0.5, 0.5], [1.0, 0.0]]])  # the last token is padding
    top = torch.tensor([[[0], [1], [0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert load_balancing_loss(probs, top, mask).item() == pytest.approx(1.0)
    assert load_balancing_loss(probs, top).item() > 1.0


