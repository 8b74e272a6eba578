"""``static``: the MoTE model and routing, trained on task-mixed batches with one temperature
(``method.temperature``): TA-CL's batching ablation.

Example:
    >>> from mote.methods import get_method
    >>> get_method("static").mixed_batches
    True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from mote.methods.mote import MoteConfig, MoteMethod

if TYPE_CHECKING:
    from mote.train.config import RunConfig


class StaticConfig(MoteConfig):
    """MoTE's settings and the one temperature of the task-mixed loss."""

    temperature: float = Field(default=0.05, gt=0)


class StaticMethod(MoteMethod):
    """MoTE, task-mixed batches, one loss at ``method.temperature``."""

    summary = "MoTE with task-mixed batches and one temperature (the TA-CL ablation)"
    mixed_batches = True

    def mixed_batch_temperature(self, cfg: RunConfig) -> float:
        return cfg.method.temperature
