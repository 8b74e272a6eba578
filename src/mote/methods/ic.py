"""``ic``: instruction conditioning, the dense base model trained with the same task prefixes as prompts (the
baseline MoTE is compared against); every parameter trains. It has no settings of its own (``method: ic``).

Example:
    >>> from mote.methods import get_method
    >>> get_method("ic").eval_mode
    'ic'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mote.methods.base import Method, MethodConfig, MethodModel, dense_base, finish_model

if TYPE_CHECKING:
    from mote.train.config import RunConfig


class ICConfig(MethodConfig):
    """``method: ic``: no settings (every weight trains; ``ic-matched`` trains MoTE's expert weights only)."""


class ICMethod(Method):
    """The dense base + task prefixes, all parameters trained."""

    summary = "instruction conditioning: the dense base with the task prefixes"
    routed = False

    def build(self, cfg: RunConfig, device: str = "cpu") -> MethodModel:
        model = dense_base(cfg, device)
        return finish_model(cfg, self.name, model, [], routed=False, freeze=False)

    def problems(self, cfg: RunConfig) -> list[str]:
        if cfg.train.expert_learning_rate is not None:
            return [f"train.expert_learning_rate: the {self.name} method has no expert parameters (use ic-matched)"]
        return []

    def learning_rate_mapping(self, cfg: RunConfig, built: MethodModel) -> dict[str, float]:
        return {}
