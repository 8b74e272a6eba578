"""Parameter accounting: total parameters vs parameters active for one task."""

from __future__ import annotations

from torch import nn

from mote.experts import expert_modules


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """``{"total", "active", "dense"}``: all parameters; those one task's forward uses; the dense equivalent.

    With sequence-level routing every task runs through exactly one expert per layer, so ``active`` is the same
    for every task and equals the dense base model's count (MoTE's zero-extra-inference-cost claim).
    """
    total = sum(p.numel() for p in model.parameters())
    from mote.lora.model import moe_lora_layers, parameter_report

    if moe_lora_layers(model):  # MoE-LoRA (TSEmbed): backbone + routers + the top-k of E LoRA experts per token
        report = parameter_report(model)
        return {"total": report["total"], "active": report["active"], "dense": report["backbone"]}
    inactive = 0
    for m in expert_modules(model):
        per_expert = sum(p[0].numel() for p in m.parameters(recurse=False))
        inactive += per_expert * (m.num_experts - 1)
    active = total - inactive
    return {"total": total, "active": active, "dense": active}

__all__ = [
    "parameter_counts",
]
