"""``ic-matched``: the dense base + task prefixes, training only the weights MoTE turns into experts (the FFN and
both norms of ``method.placement``'s layers; everything else frozen): IC with MoTE's trainable set.

This module is the worked example of adding a method: a config class holding its settings, a method class, and
one registry line in :mod:`mote.methods` (``register_method("ic-matched", ICMatchedConfig, ICMatchedMethod)``).

Example:
    >>> from mote.methods import get_method
    >>> method = get_method("ic-matched")
    >>> method.routed, method.eval_mode, method.supports_select
    (False, 'ic', True)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mote.methods.base import Method, MethodModel, PlacementConfig, dense_base, finish_model, placement_layers

if TYPE_CHECKING:
    from mote.train.config import RunConfig


class ICMatchedConfig(PlacementConfig):
    """``method: {name: ic-matched, placement: every-other}``: the layers whose FFN + norms train."""


class ICMatchedMethod(Method):
    """The dense base + task prefixes; only the FFN + norms of the expert layers train."""

    summary = "instruction conditioning training only MoTE's expert weights (FFN + norms of the expert layers)"
    routed = False

    def build(self, cfg: RunConfig, device: str = "cpu") -> MethodModel:
        model = dense_base(cfg, device)
        return finish_model(cfg, self.name, model, placement_layers(cfg, model), routed=False, freeze=True)

    def recipe_row(self, cfg: RunConfig) -> tuple[str, str, str]:
        where, _, lr = super().recipe_row(cfg)
        return where, "experts", lr
