"""``tlr``: MoTE's experts with learned top-1 token routers (:mod:`mote.ablations.tlr`) and their Switch
load-balancing loss (``tlr.aux_loss_weight``; ``tlr.router_learning_rate`` for the routers): the paper's routing
ablation.

Example:
    >>> from mote.methods import get_method
    >>> get_method("tlr").router_aux_loss, get_method("tlr").supports_select
    (True, False)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mote.methods.base import ROUTER_PATTERN, ArmModel, Method, finish_arm, mote_base

if TYPE_CHECKING:
    from mote.train.config import RunConfig


class TLRMethod(Method):
    """MoTE experts + learned token routers; the experts of a token are not chosen by its task."""

    name = "tlr"
    summary = "MoTE experts with learned top-1 token routers and a load-balancing loss"
    router_aux_loss = True
    supports_select = False  # its experts are chosen per token

    def build(self, cfg: RunConfig, device: str = "cpu") -> ArmModel:
        from mote.ablations.tlr import to_token_routing

        model = to_token_routing(mote_base(cfg, device))
        return finish_arm(cfg, self.name, model, model[0].expert_layers, routed=True,
                          freeze=cfg.model.trains_experts_only(), router_pattern=ROUTER_PATTERN)

    def problems(self, cfg: RunConfig) -> list[str]:
        if cfg.loss.cached:
            return ["loss.cached: the tlr arm's load-balancing loss is not supported with the cached loss"]
        return []

    def aux_loss_weight(self, cfg: RunConfig) -> float:
        return cfg.tlr.aux_loss_weight

    def learning_rate_mapping(self, cfg: RunConfig, arm: ArmModel) -> dict[str, float]:
        out = super().learning_rate_mapping(cfg, arm)
        if cfg.tlr.router_learning_rate is not None and arm.router_pattern:
            out[arm.router_pattern] = cfg.tlr.router_learning_rate
        return out
