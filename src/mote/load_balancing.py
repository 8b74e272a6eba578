"""The router load-balancing loss (Switch Transformer, generalised to top-k), shared by every learned router.

``switch``: ``E * sum_e f_e * P_e`` (Fedus et al. 2021, eq. 4), with ``f_e`` the fraction of (token, slot)
assignments routed to expert ``e`` and ``P_e`` the mean router probability of ``e``, both over the unmasked tokens.
It is 1 at uniform routing and ``E`` when every token goes to one expert with certainty. ``importance``:
``E * sum_e P_e^2``, which is >= 1 with equality exactly when ``P`` is uniform. The token-routing ablation
(:mod:`mote.ablations.tlr`) and TSEmbed's MoE-LoRA routers (:mod:`mote.lora.router`) both use this function.

Example:
    >>> import torch
    >>> p = torch.full((4, 2), 0.5); load_balancing_loss(p, torch.tensor([[0], [1], [0], [1]])).item()
    1.0
"""

from __future__ import annotations

import torch
from torch import Tensor


def load_balancing_loss(
    probs: Tensor, top_idx: Tensor, mask: Tensor | None = None, kind: str = "switch"
) -> Tensor:
    """Load-balancing loss of one router: 1 at uniform routing, ``E`` when everything goes to one expert.

    Args:
        probs: (..., E) router probabilities. top_idx: the chosen experts, (..., k), or (...) for top-1.
        mask: (...) 1 for real tokens, 0 for padding (``None``: every token counts). kind: ``switch`` or
            ``importance`` (see the module doc).

    Returns:
        A float32 scalar.
    """
    e = probs.shape[-1]
    p = probs.reshape(-1, e).float()  # (N, E)
    idx = top_idx.reshape(p.shape[0], -1)  # (N, k)
    m = torch.ones(p.shape[0], device=p.device) if mask is None else mask.reshape(-1).to(p.dtype)
    denom = m.sum().clamp_min(1.0)
    mean_p = (p * m.unsqueeze(-1)).sum(0) / denom  # (E,)
    if kind == "importance":
        return e * (mean_p * mean_p).sum()
    if kind != "switch":
        raise ValueError(f"Unknown balance loss {kind!r}: use 'switch' or 'importance'")
    slots = idx.shape[1]
    counts = torch.zeros(e, device=p.device).index_add_(0, idx.reshape(-1), m.repeat_interleave(slots))
    f = counts / (denom * slots)  # (E,) sums to 1
    return e * (f * mean_p).sum()


__all__ = ["load_balancing_loss"]
