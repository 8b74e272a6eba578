"""``tlr``: MoTE's experts with learned top-1 token routers (:mod:`mote.ablations.tlr`) and their Switch
load-balancing loss (``method.aux_loss_weight``; ``method.router_learning_rate`` for the routers): the paper's
routing ablation.

Example:
    >>> from mote.methods import get_method
    >>> get_method("tlr").router_aux_loss, get_method("tlr").supports_select
    (True, False)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from mote.methods.base import ROUTER_PATTERN, ExpertsConfig, Method, MethodModel, finish_model, mote_base

if TYPE_CHECKING:
    from mote.train.config import RunConfig


class TLRConfig(ExpertsConfig):
    """MoTE's settings and the routers': their load-balancing loss weight and learning rate (default: the run's)."""

    aux_loss_weight: float = Field(default=0.01, ge=0)
    router_learning_rate: float | None = Field(default=None, gt=0)


class TLRMethod(Method):
    """MoTE experts + learned token routers; the experts of a token are not chosen by its task."""

    summary = "MoTE experts with learned top-1 token routers and a load-balancing loss"
    router_aux_loss = True
    supports_select = False  # its experts are chosen per token

    def build(self, cfg: RunConfig, device: str = "cpu") -> MethodModel:
        from mote.ablations.tlr import to_token_routing

        model = to_token_routing(mote_base(cfg, device))
        return finish_model(cfg, self.name, model, model[0].expert_layers, routed=True,
                            freeze=cfg.method.trains_experts_only(), router_pattern=ROUTER_PATTERN)

    def problems(self, cfg: RunConfig) -> list[str]:
        if cfg.loss.cached:
            return [f"loss.cached: the {self.name} method's load-balancing loss is not supported with the cached loss"]
        return []

    def aux_loss_weight(self, cfg: RunConfig) -> float:
        return cfg.method.aux_loss_weight

    def learning_rate_mapping(self, cfg: RunConfig, built: MethodModel) -> dict[str, float]:
        out = super().learning_rate_mapping(cfg, built)
        if cfg.method.router_learning_rate is not None and built.router_pattern:
            out[built.router_pattern] = cfg.method.router_learning_rate
        return out
