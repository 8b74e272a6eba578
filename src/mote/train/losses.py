"""TA-CL losses: InfoNCE with in-batch and hard negatives, label masking, a per-task temperature.

For anchors ``a_i`` (B rows), their positives ``p_i`` and hard negatives ``n_k`` (K <= B rows), with cosine
similarity ``s`` and temperature ``tau``::

    loss = mean_i  -log  exp(s(a_i, p_i) / tau) / sum_{c in P u N, c not masked} exp(s(a_i, c) / tau)

Candidates ``c`` with the anchor's label (other than its own positive) are masked: same-class texts in a
classification batch, duplicate positives in a retrieval batch (see :mod:`mote.data.pairs`) are not negatives.
``symmetric`` adds the positive -> anchor direction (candidates: all anchors) and averages the two.

Under DDP (``gather``), positives, negatives and labels are gathered from every process with gradient, so each
process scores its anchors against the *global* batch; with the gradient all-reduce of the trainer this is
exactly the single-process loss of the global batch.

:class:`TaskInfoNCE` is the plain loss, :class:`CachedTaskInfoNCE` its GradCache twin (sentence-transformers'
:class:`~sentence_transformers.base.losses.gradcache.CachedLossMixin`: embed in mini-batches without a graph,
backpropagate the loss to the embeddings, re-embed each mini-batch with the cached gradients), for large batches
in small memory. Both give the same loss and gradients (``tests/test_train_losses.py``).

Example:
    >>> loss = TaskInfoNCE(model, temperature=0.03)          # doctest: +SKIP
    >>> loss([anchor_features, positive_features], labels)   # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from sentence_transformers.base.losses.gradcache import CachedLossMixin
from torch import Tensor, nn


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_rows(x: Tensor, with_grad: bool = True) -> tuple[Tensor, int]:
    """Concatenate ``x`` (n_r, ...) of every process (``n_r`` may differ); returns ``(gathered, local offset)``.

    Gradients flow back to every process's rows when ``with_grad``. Without a process group: ``(x, 0)``.
    """
    if not _distributed():
        return x, 0
    world, rank = dist.get_world_size(), dist.get_rank()
    n = torch.tensor([x.shape[0]], device=x.device, dtype=torch.long)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    sizes = [int(s.item()) for s in sizes]
    width = max(sizes)
    if width == 0:
        return x, 0
    padded = F.pad(x, [0, 0] * (x.dim() - 1) + [0, width - x.shape[0]]) if x.shape[0] < width else x
    if with_grad:
        with warnings.catch_warnings():  # its replacement has no autograd on every backend yet
            warnings.simplefilter("ignore", FutureWarning)
            parts = list(torch.distributed.nn.functional.all_gather(padded))
    else:
        parts = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(parts, padded)
        parts[rank] = padded
    gathered = torch.cat([p[:s] for p, s in zip(parts, sizes)], dim=0)
    return gathered, sum(sizes[:rank])


def info_nce(
    anchor: Tensor,
    positive: Tensor,
    negative: Tensor | None,
    labels: Tensor | None,
    temperature: float,
    symmetric: bool = False,
    gather: bool = True,
) -> Tensor:
    """The TA-CL InfoNCE loss (see the module doc).

    Args:
        anchor, positive: (B, D) embeddings of this process's pairs.
        negative: (K, D) hard negatives or ``None``.
        labels: (B + K,) pair labels then negative labels, or ``None`` (no masking).
        temperature: softmax temperature ``tau``.
        symmetric: average with the positive -> anchor loss.
        gather: score against the candidates of every DDP process.
    """
    b = anchor.shape[0]
    if negative is None:
        # An empty slice of the anchors, not a fresh tensor: under DDP every process must take part in the
        # gradient of the negatives' all-gather, and only tensors in the graph do.
        negative = anchor[:0]
    a, p, n = F.normalize(anchor, dim=-1), F.normalize(positive, dim=-1), F.normalize(negative, dim=-1)
    pair_labels = neg_labels = None
    if labels is not None:
        pair_labels, neg_labels = labels[:b], labels[b:]
    all_pair_labels, offset = pair_labels, 0
    if gather and _distributed():
        p, offset = gather_rows(p)
        n, _ = gather_rows(n)
        if labels is not None:
            all_pair_labels, _ = gather_rows(pair_labels, with_grad=False)
            neg_labels, _ = gather_rows(neg_labels, with_grad=False)
    target = torch.arange(b, device=anchor.device) + offset
    candidates = torch.cat([p, n], dim=0)  # (C, D)
    scores = a @ candidates.T / temperature  # (B, C)
    if labels is not None:
        cand_labels = torch.cat([all_pair_labels, neg_labels])
        mask = pair_labels.unsqueeze(1) == cand_labels.unsqueeze(0)  # (B, C) same label: not a negative
        mask[torch.arange(b, device=mask.device), target] = False
        scores = scores.masked_fill(mask, float("-inf"))
    loss = F.cross_entropy(scores, target)
    if not symmetric:
        return loss
    local_p = F.normalize(positive, dim=-1)
    all_a, _ = gather_rows(a) if gather and _distributed() else (a, 0)
    back = local_p @ all_a.T / temperature  # (B, B_global)
    if labels is not None:
        mask = pair_labels.unsqueeze(1) == all_pair_labels.unsqueeze(0)
        mask[torch.arange(b, device=mask.device), target] = False
        back = back.masked_fill(mask, float("-inf"))
    return (loss + F.cross_entropy(back, target)) / 2


class TaskInfoNCE(nn.Module):
    """InfoNCE of one batch group (one task): its temperature, symmetry and, for TLR, the router aux loss.

    Args:
        model: the ``SentenceTransformer`` being trained.
        temperature: the task's softmax temperature (TA-CL: 0.03 retrieval/classification, 0.06 clustering).
        symmetric: also score positive -> anchor.
        gather_across_devices: in-batch negatives from every DDP process.
        aux_loss_weight: weight of ``router_aux_loss`` (the TLR load-balancing loss) when the model reports one.
    """

    def __init__(
        self,
        model: nn.Module,
        temperature: float = 0.03,
        symmetric: bool = False,
        gather_across_devices: bool = True,
        aux_loss_weight: float = 0.0,
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.model = model
        self.temperature = float(temperature)
        self.symmetric = symmetric
        self.gather_across_devices = gather_across_devices
        self.aux_loss_weight = float(aux_loss_weight)

    def compute(self, embeddings: list[Tensor], labels: Tensor | None) -> Tensor:
        anchor, positive, *rest = embeddings
        negative = rest[0] if rest else None
        return info_nce(
            anchor, positive, negative, labels, self.temperature, self.symmetric, self.gather_across_devices
        )

    def forward(self, features: list[dict[str, Any]], labels: Tensor | None = None) -> Tensor | dict[str, Tensor]:
        outputs = [self.model(f) for f in features]
        loss = self.compute([o["sentence_embedding"] for o in outputs], labels)
        aux = [o["router_aux_loss"] for o in outputs if "router_aux_loss" in o]
        if aux and self.aux_loss_weight > 0:
            return {"info_nce": loss, "load_balance": self.aux_loss_weight * torch.stack(aux).mean()}
        return loss

    def get_config_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "symmetric": self.symmetric}


class CachedTaskInfoNCE(CachedLossMixin, TaskInfoNCE):
    """:class:`TaskInfoNCE` with a gradient cache: memory bounded by ``mini_batch_size`` rows, same gradients."""

    def __init__(self, model: nn.Module, mini_batch_size: int = 16, **kwargs) -> None:
        TaskInfoNCE.__init__(self, model, **kwargs)
        self.mini_batch_size = int(mini_batch_size)

    def calculate_loss(
        self, reps: list[list[Tensor]], labels: Tensor | None = None, *, with_backward: bool = False
    ) -> Tensor:
        loss = self.compute([torch.cat(r, dim=0) for r in reps], labels)
        if with_backward:
            loss.backward()
            loss = loss.detach()
        return loss

    def forward(self, features: list[dict[str, Any]], labels: Tensor | None = None) -> Tensor:
        return self.forward_cached(features, labels)
