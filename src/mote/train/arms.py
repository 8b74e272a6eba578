"""The arms of the comparison, built by their methods (:mod:`mote.methods`): one recipe, every arm trained by the
same trainer on the same batches.

============ ======================================================= ============= ==========================
arm          model                                                   batches       temperature
============ ======================================================= ============= ==========================
mote         MoTE (experts at ``model.placement``), task routing      one task      per task (TA-CL)
ic           the dense base, same task prefixes (instruction-cond.)  one task      per task
static       MoTE, task routing                                      task-mixed    one (``loss.static_...``)
tlr          MoTE experts + learned top-1 token routers (+ LB loss)  one task      per task
ic-matched   the dense base + prefixes, training only the FFN and    one task      per task
             both norms of the expert layers (everything else frozen)
tsembed      frozen base + MoE-LoRA experts and routers              one task      per task
             (``tsembed.lora``); stage 1 + EANS stage 2
tsembed-     the same, stage 1 only for the same total steps         one task      per task
noeans       (the ablation without EANS)
============ ======================================================= ============= ==========================

The TSEmbed arms (:mod:`mote.methods.tsembed`, trained by :mod:`mote.train.tsembed`) always train only the
adapters (``model.placement`` and ``model.trainable`` do not apply); their learning rates and the trainable set of
each stage come from ``tsembed.stage1`` / ``tsembed.stage2``.

``model.trainable: experts`` trains only the expert parameters of the MoTE arms (plus the routers for ``tlr``):
the weights ``ic-matched`` trains in the dense model. With it, a task whose expert sees no training data keeps
the base model's embeddings exactly.

Example:
    >>> arm = build_arm(parse_config({"tasks": {...}}))   # doctest: +SKIP
    >>> arm.model[0]                                      # doctest: +SKIP
    MoTETransformer(model=BertModel, experts=4, ...)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mote.methods import ArmModel, get_method
from mote.methods.base import ROUTER_PATTERN, expert_parameter_pattern, freeze_all_but, hf_model

if TYPE_CHECKING:
    from mote.train.config import RunConfig


def build_arm(cfg: RunConfig, device: str = "cpu") -> ArmModel:
    """The model of ``cfg.arm``, converted, sized (``max_seq_length``) and with its trainable set chosen."""
    return get_method(cfg.arm).build(cfg, device)


__all__ = ["ROUTER_PATTERN", "ArmModel", "build_arm", "expert_parameter_pattern", "freeze_all_but", "hf_model"]
