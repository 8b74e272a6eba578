"""``ic-matched``: the dense base + task prefixes, training only the weights MoTE turns into experts (the FFN and
both norms of ``model.placement``'s layers; everything else frozen): IC with MoTE's trainable set.

This module is the worked example of adding a method: this file plus one registry line in :mod:`mote.methods`.

Example:
    >>> from mote.methods import get_method
    >>> method = get_method("ic-matched")
    >>> method.routed, method.eval_mode, method.supports_select
    (False, 'ic', True)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mote.methods.base import ArmModel, Method, dense_base, finish_arm, placement_layers

if TYPE_CHECKING:
    from mote.train.config import RunConfig


class ICMatchedMethod(Method):
    """The dense base + task prefixes; only the FFN + norms of the expert layers train."""

    name = "ic-matched"
    summary = "instruction conditioning training only MoTE's expert weights (FFN + norms of the expert layers)"
    routed = False

    def build(self, cfg: RunConfig, device: str = "cpu") -> ArmModel:
        model = dense_base(cfg, device)
        return finish_arm(cfg, self.name, model, placement_layers(cfg, model), routed=False, freeze=True)

    def recipe_row(self, cfg: RunConfig) -> tuple[str, str, str]:
        where, _, lr = super().recipe_row(cfg)
        return where, "experts", lr
