"""``mote``: MoTE, the FFN block and both norms of ``method.placement``'s layers as one expert per task, routed by
the task instruction; TA-CL (single-task batches, a temperature per task).

Example:
    >>> from mote.methods import get_method
    >>> get_method("mote").eval_mode
    'auto'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mote.methods.base import ExpertsConfig, Method, MethodModel, finish_model, mote_base

if TYPE_CHECKING:
    from mote.train.config import RunConfig


class MoteConfig(ExpertsConfig):
    """``method: {name: mote, placement: every-other, trainable: experts}`` (the defaults: EOB, experts only)."""


class MoteMethod(Method):
    """MoTE experts at ``method.placement``; ``method.trainable: experts`` (the default) trains only them."""

    summary = "MoTE: per-task experts (FFN + norms) routed by the task instruction, TA-CL"

    def build(self, cfg: RunConfig, device: str = "cpu") -> MethodModel:
        model = mote_base(cfg, device)
        return finish_model(cfg, self.name, model, model[0].expert_layers, routed=True,
                            freeze=cfg.method.trains_experts_only())
