"""The TA-CL loss: InfoNCE against a naive formula, label masking, temperature, symmetry, GradCache."""

from __future__ import annotations

import math

import pytest
import torch

from mote.train.losses import CachedTaskInfoNCE, TaskInfoNCE, info_nce

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: threads only add overhead


def naive(a, p, n, labels, tau):
    """Per-anchor -log softmax over all candidates, skipping same-label candidates other than the positive."""
    a, p, n = (torch.nn.functional.normalize(x, dim=-1) for x in (a, p, n))
    cands = torch.cat([p, n])
    b = a.shape[0]
    total = 0.0
    for i in range(b):
        logits = []
        for j in range(cands.shape[0]):
            if j != i and labels is not None and labels[j] == labels[i]:
                continue
            logits.append(float(a[i] @ cands[j]) / tau)
        pos = float(a[i] @ cands[i]) / tau
        total += -(pos - math.log(sum(math.exp(x) for x in logits)))
    return total / b


def test_info_nce_matches_the_naive_formula_with_masking():
    g = torch.Generator().manual_seed(0)
    a, p, n = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g), torch.randn(3, 8, generator=g)
    labels = torch.tensor([0, 1, 0, 2, 3, 1, 0, 5, 2])  # pairs 0/2 and 1/5 share labels; negatives 0 and 2
    for tau in (0.03, 0.06, 1.0):
        got = info_nce(a, p, n, labels, tau).item()
        assert got == pytest.approx(naive(a, p, n, labels, tau), rel=1e-4)
    assert info_nce(a, p, n, None, 0.05).item() == pytest.approx(naive(a, p, n, None, 0.05), rel=1e-4)


def test_same_label_candidates_are_not_negatives():
    # Anchor 0 and 1 share a label, and anchor 0's positive is also (almost) anchor 1's: with masking that
    # near-duplicate costs nothing; without it, anchor 1 is pushed away from its own topic.
    a = torch.tensor([[1.0, 0.0], [1.0, 0.02], [0.0, 1.0]])
    p = torch.tensor([[1.0, 0.01], [1.0, 0.0], [0.0, 1.0]])
    masked = info_nce(a, p, None, torch.tensor([7, 7, 8]), 0.05)
    unmasked = info_nce(a, p, None, None, 0.05)
    assert masked.item() < 0.01 < unmasked.item()


def test_temperature_and_symmetry():
    g = torch.Generator().manual_seed(1)
    a, p = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    assert info_nce(a, p, None, None, 0.03).item() != pytest.approx(info_nce(a, p, None, None, 0.06).item())
    sym = info_nce(a, p, None, None, 0.05, symmetric=True)
    both = (info_nce(a, p, None, None, 0.05) + info_nce(p, a, None, None, 0.05)) / 2
    assert sym.item() == pytest.approx(both.item(), rel=1e-6)


class _Embed(torch.nn.Module):
    """A stand-in model: an embedding bag over input ids."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb = torch.nn.EmbeddingBag(50, 16, mode="mean")

    def forward(self, features):
        return {"sentence_embedding": self.emb(features["input_ids"])}


def _features(g, rows):
    return {"input_ids": torch.randint(0, 50, (rows, 5), generator=g), "attention_mask": torch.ones(rows, 5)}


def test_cached_loss_equals_plain_loss_and_gradients():
    g = torch.Generator().manual_seed(2)
    feats = [_features(g, 8), _features(g, 8), _features(g, 5)]
    labels = torch.tensor([0, 1, 2, 0, 3, 4, 5, 6, 1, 9, 9, 2, 6])
    model = _Embed()
    plain = TaskInfoNCE(model, temperature=0.05, symmetric=True)
    loss = plain(feats, labels)
    loss.backward()
    ref = model.emb.weight.grad.clone()
    model.zero_grad()
    cached = CachedTaskInfoNCE(model, mini_batch_size=3, temperature=0.05, symmetric=True)
    loss2 = cached(feats, labels)
    loss2.backward()
    assert loss2.item() == pytest.approx(loss.item(), rel=1e-6)
    assert torch.allclose(model.emb.weight.grad, ref, atol=1e-6)
