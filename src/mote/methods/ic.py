"""``ic``: instruction conditioning, the dense base model trained with the same task prefixes as prompts (the
baseline MoTE is compared against); every parameter trains.

Example:
    >>> from mote.methods import get_method
    >>> get_method("ic").eval_mode
    'ic'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mote.methods.base import ArmModel, Method, dense_base, finish_arm, placement_layers

if TYPE_CHECKING:
    from mote.train.config import RunConfig


class ICMethod(Method):
    """The dense base + task prefixes, all parameters trained."""

    name = "ic"
    summary = "instruction conditioning: the dense base with the task prefixes"
    routed = False
    uses_placement = False

    def build(self, cfg: RunConfig, device: str = "cpu") -> ArmModel:
        if cfg.model.trainable == "experts":
            raise ValueError("model.trainable: experts does not apply to the ic arm (use the ic-matched arm)")
        model = dense_base(cfg, device)
        return finish_arm(cfg, self.name, model, placement_layers(cfg, model), routed=False, freeze=False)

    def problems(self, cfg: RunConfig) -> list[str]:
        if cfg.train.expert_learning_rate is not None:
            return ["train.expert_learning_rate: the ic arm has no expert parameters (use ic-matched)"]
        return []

    def learning_rate_mapping(self, cfg: RunConfig, arm: ArmModel) -> dict[str, float]:
        return {}

    def recipe_row(self, cfg: RunConfig) -> tuple[str, str, str]:
        _, trained, lr = super().recipe_row(cfg)
        return "–", trained, lr
