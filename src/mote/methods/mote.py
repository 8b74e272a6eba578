"""``mote``: MoTE, the FFN block and both norms of ``model.placement``'s layers as one expert per task, routed by
the task instruction; TA-CL (single-task batches, a temperature per task).

Example:
    >>> from mote.methods import get_method
    >>> get_method("mote").eval_mode
    'auto'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mote.methods.base import ArmModel, Method, finish_arm, mote_base

if TYPE_CHECKING:
    from mote.train.config import RunConfig


class MoteMethod(Method):
    """MoTE experts at ``model.placement``; ``model.trainable: experts`` trains only them."""

    name = "mote"
    summary = "MoTE: per-task experts (FFN + norms) routed by the task instruction, TA-CL"

    def build(self, cfg: RunConfig, device: str = "cpu") -> ArmModel:
        model = mote_base(cfg, device)
        return finish_arm(cfg, self.name, model, model[0].expert_layers, routed=True,
                          freeze=cfg.model.trains_experts_only())
