"""The settings of the TSEmbed methods: TSEmbed's plan (:class:`mote.lora.plan.TSEmbedConfig`) as a method config.

A module of its own because it imports :mod:`mote.lora` (PEFT): the registry names it as
``"mote.methods.tsembed_config:TSEmbedMethodConfig"`` and imports it on first use, so that the registry itself
loads without PEFT.
"""

from __future__ import annotations

from typing import Any

from mote.lora.plan import TSEmbedConfig, fill_stage_steps, rescale_stage_steps
from mote.methods.base import MethodConfig


class TSEmbedMethodConfig(MethodConfig, TSEmbedConfig):
    """TSEmbed's plan (LoRA experts, EANS, the two stages) as the ``method:`` settings of ``tsembed`` and
    ``tsembed-noeans``. The stages share ``train.steps``: stage steps left out are filled from it."""

    @classmethod
    def for_steps(cls, settings: dict[str, Any], steps: int) -> dict[str, Any]:
        return fill_stage_steps(settings, steps)

    @classmethod
    def rescaled(cls, settings: dict[str, Any], steps: int) -> dict[str, Any]:
        return rescale_stage_steps(settings, steps)


__all__ = ["TSEmbedMethodConfig"]
