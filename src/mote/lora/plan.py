"""The TSEmbed recipe: MoE-LoRA settings, EANS settings and the two training stages, as one validated config.

Stage 1, **expert specialisation**: experts and routers train with the load-balancing loss and plain negatives
(in-batch + the data's hard negatives). Stage 2, **EANS**: the routing is frozen by default (so the routing
signatures that choose negatives stay comparable between refreshes, and stage 1's specialisation holds) and the
experts train with EANS negatives mixed into the candidates. Each stage has its own steps and learning rate.

The paper gives neither the split nor the schedules (``docs/tsembed.md``); the defaults are documented choices.
This module describes the plan; the TA-CL trainer runs it as the ``tsembed`` / ``tsembed-noeans`` methods
(:mod:`mote.train.tsembed`; ``docs/tsembed.md``, "Training"). In a training recipe the stages share ``train.steps``
(``stage1_fraction`` splits it when the stage steps are left out).

Example:
    >>> cfg = TSEmbedConfig.model_validate({"stage1": {"steps": 300}, "stage2": {"steps": 100}})
    >>> [(s.name, s.steps, s.eans) for s in stage_runs(cfg)]
    [('stage1', 300, False), ('stage2', 100, True)]
    >>> [(s.name, s.steps, s.eans) for s in stage_runs(cfg.without_eans())]   # the ablation, same total steps
    [('stage1', 400, False)]
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from torch import nn

from mote.lora.config import MoELoRAConfig
from mote.lora.eans import EANSConfig
from mote.lora.model import ADAPTER_PARAMETER_PATTERN, ROUTER_PARAMETER_PATTERN


class StageConfig(BaseModel):
    """One training stage. Inside :class:`TSEmbedConfig`, omitted fields take that stage's defaults:
    stage 1 ``steps 100, learning_rate 2e-4, aux_loss_weight 0.01, train_router true, eans false``; stage 2
    ``steps 100, learning_rate 1e-4, aux_loss_weight 0, train_router false, eans true``."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(gt=0, description="Optimizer steps of this stage.")
    learning_rate: float = Field(gt=0, description="Peak learning rate of the adapters in this stage.")
    router_learning_rate: float | None = Field(default=None, gt=0, description="None: the stage's learning rate.")
    warmup_ratio: float = Field(default=0.1, ge=0, lt=1, description="Linear warm-up, fraction of the stage.")
    aux_loss_weight: float = Field(default=0.01, ge=0, description="Weight of the load-balancing loss.")
    train_router: bool = Field(default=True, description="Routers trainable in this stage.")
    eans: bool = Field(default=False, description="Mine EANS negatives in this stage.")


def _stage1() -> StageConfig:
    return StageConfig(steps=100, learning_rate=2e-4, aux_loss_weight=0.01, train_router=True, eans=False)


def _stage2() -> StageConfig:
    return StageConfig(steps=100, learning_rate=1e-4, aux_loss_weight=0.0, train_router=False, eans=True)


class TSEmbedConfig(BaseModel):
    """The ``tsembed`` section of a training recipe (YAML)::

        tsembed:
          lora: {num_experts: 4, r: 8, routing: token}
          eans: {metric: cosine, num_negatives: 1, refresh_every: 100}
          stage1: {steps: 300, learning_rate: 2.0e-4}
          stage2: {steps: 100, learning_rate: 1.0e-4}
    """

    model_config = ConfigDict(extra="forbid")

    lora: MoELoRAConfig = Field(default_factory=MoELoRAConfig)
    eans: EANSConfig = Field(default_factory=EANSConfig)
    stage1_fraction: float = Field(
        default=0.5, gt=0, lt=1,
        description="In a training recipe: the share of train.steps that stage 1 gets when the stage steps are left "
        "out (fill_stage_steps); the paper gives no split.",
    )
    stage1: StageConfig = Field(default_factory=_stage1)
    stage2: StageConfig | None = Field(default_factory=_stage2)

    @field_validator("stage1", mode="before")
    @classmethod
    def _stage1_defaults(cls, value: Any) -> Any:
        """A partial ``stage1`` mapping fills in stage 1's defaults (not StageConfig's)."""
        return {**_stage1().model_dump(), **value} if isinstance(value, Mapping) else value

    @field_validator("stage2", mode="before")
    @classmethod
    def _stage2_defaults(cls, value: Any) -> Any:
        """A partial ``stage2`` mapping fills in stage 2's defaults (EANS on, routers frozen)."""
        return {**_stage2().model_dump(), **value} if isinstance(value, Mapping) else value

    @model_validator(mode="after")
    def _check(self) -> TSEmbedConfig:
        if self.stage1.eans:
            raise ValueError("stage1.eans: stage 1 specialises the experts with plain negatives; EANS is stage 2")
        uses_eans = self.stage2 is not None and self.stage2.eans
        if uses_eans and self.lora.routing == "sequence":
            raise ValueError(
                "EANS needs lora.routing: token. With sequence routing every example of a task has the same "
                "routing distribution, so the routing cannot rank candidates (set stage2.eans: false, or use "
                "token routing)"
            )
        return self

    @property
    def total_steps(self) -> int:
        return self.stage1.steps + (self.stage2.steps if self.stage2 is not None else 0)

    def without_eans(self) -> TSEmbedConfig:
        """The ablation: stage 1 only, for the same total number of steps."""
        stage1 = self.stage1.model_copy(update={"steps": self.total_steps})
        return self.model_copy(update={"stage1": stage1, "stage2": None})

    @classmethod
    def split(cls, total_steps: int, stage1_fraction: float = 0.5, **sections) -> TSEmbedConfig:
        """A plan of ``total_steps`` with ``stage1_fraction`` of them in stage 1 (default: half).

        Example:
            >>> TSEmbedConfig.split(200, stage1_fraction=0.75).stage2.steps
            50
        """
        if not 0 < stage1_fraction < 1:
            raise ValueError(f"stage1_fraction must be in (0, 1), got {stage1_fraction}")
        s1 = max(1, min(total_steps - 1, round(total_steps * stage1_fraction)))
        cfg = cls.model_validate(sections)
        return cfg.model_copy(update={
            "stage1": cfg.stage1.model_copy(update={"steps": s1}),
            "stage2": (cfg.stage2 or _stage2()).model_copy(update={"steps": total_steps - s1}),
        })


@dataclass(frozen=True)
class StageRun:
    """What the trainer needs to run one stage (see :func:`stage_runs`)."""

    name: str
    steps: int
    learning_rate: float
    warmup_ratio: float
    aux_loss_weight: float
    eans: bool
    trainable_patterns: tuple[str, ...]  # regexes (re.search) of the trainable parameter names
    learning_rate_mapping: dict[str, float]  # regex -> learning rate (sentence-transformers' learning_rate_mapping)


def stage_runs(cfg: TSEmbedConfig) -> list[StageRun]:
    """The stages in order, each with its trainable parameters and learning rates."""
    runs: list[StageRun] = []
    for name, stage in (("stage1", cfg.stage1), ("stage2", cfg.stage2)):
        if stage is None:
            continue
        patterns = (ADAPTER_PARAMETER_PATTERN,) + ((ROUTER_PARAMETER_PATTERN,) if stage.train_router else ())
        lr_map = {}
        if stage.train_router and stage.router_learning_rate is not None:
            lr_map[ROUTER_PARAMETER_PATTERN] = stage.router_learning_rate
        runs.append(StageRun(name, stage.steps, stage.learning_rate, stage.warmup_ratio,
                             stage.aux_loss_weight if stage.train_router else 0.0, stage.eans, patterns, lr_map))
    return runs


def apply_stage(model: nn.Module, run: StageRun) -> dict[str, int]:
    """Set ``requires_grad`` for one stage: only parameters matching ``run.trainable_patterns``.

    Returns ``{"trainable": n, "frozen": m}`` (parameter counts).
    """
    compiled = [re.compile(p) for p in run.trainable_patterns]
    counts = {"trainable": 0, "frozen": 0}
    for name, param in model.named_parameters():
        on = any(c.search(name) for c in compiled)
        param.requires_grad_(on)
        counts["trainable" if on else "frozen"] += param.numel()
    return counts


# ------------------------------------------------------------------------------------------------ trainer glue
def build_model(cfg: TSEmbedConfig, base, routing=None, max_seq_length: int | None = None, device: str = "cpu"):
    """The ``tsembed`` method's model: ``base`` with MoE-LoRA adapters (``cfg.lora``), sized, stage-1 trainable set.

    Example:
        >>> model = build_model(TSEmbedConfig(), "all-MiniLM-L6-v2", max_seq_length=128)   # doctest: +SKIP
    """
    from mote.lora.st import convert

    model = convert(base, cfg.lora, routing, device=device)
    if max_seq_length is not None:
        model.max_seq_length = max_seq_length
    apply_stage(model, stage_runs(cfg)[0])
    return model


def build_miner(cfg: TSEmbedConfig, groups, router_mapping: dict[str, dict[str, str]]):
    """The EANS miner of a run: one candidate pool per batch group, routed as the group's ``positive`` column.

    ``groups``: the trainer's ``BatchGroup`` s; ``router_mapping``: ``{group: {column: task}}`` (the collator's).
    """
    from mote.lora.eans import EANSMiner

    routes = {g.name: router_mapping[g.name].get("positive", router_mapping[g.name].get("anchor")) for g in groups}
    return EANSMiner.from_groups(groups, routes, cfg.eans)


def wrap_losses(losses: dict, miner, router_mapping: dict[str, dict[str, str]]) -> dict:
    """Stage 2: each group's TA-CL loss wrapped in :class:`~mote.lora.eans.EANSLoss` (mined negatives routed as
    the group's ``negative`` column, else its ``positive`` column)."""
    from mote.lora.eans import EANSLoss

    out = {}
    for group, loss in losses.items():
        routes = router_mapping[group]
        out[group] = EANSLoss(loss, miner, group, routes.get("negative", routes.get("positive")))
    return out


# ------------------------------------------------------------------------------------------------ TSEmbed steps
def _split(total: int, fraction: float) -> int:
    return max(1, min(total - 1, round(total * fraction)))


def fill_stage_steps(tsembed: Mapping[str, Any], total: int) -> dict[str, Any]:
    """The TSEmbed settings (a recipe's ``method:`` section) with omitted stage steps filled from the run's step
    budget ``total``.

    The stages share ``train.steps`` (the data budget of every method): with both stage steps omitted, stage 1 gets
    ``round(stage1_fraction * total)`` (default half) and stage 2 the rest; with one given, the other gets the
    rest; a single stage (``stage2: null``) gets all of it. Explicit values are kept as they are (the recipe check
    then requires them to add up to ``train.steps``). Malformed input is left to the validation.

    Example:
        >>> fill_stage_steps({"stage1_fraction": 0.75}, 120)["stage2"]
        {'steps': 30}
    """
    out = dict(tsembed)
    s1, s2 = out.get("stage1", {}), out.get("stage2", {})
    fraction = out.get("stage1_fraction", TSEmbedConfig.model_fields["stage1_fraction"].default)
    if not (isinstance(s1, Mapping) and (s2 is None or isinstance(s2, Mapping))) or total < 1:
        return out
    if not isinstance(fraction, int | float) or not 0 < fraction < 1:
        return out
    s1, s2 = dict(s1 or {}), (dict(s2) if s2 is not None else None)
    if s2 is None:
        s1.setdefault("steps", total)
    elif total >= 2:
        if "steps" not in s1 and "steps" not in s2:
            s1["steps"] = _split(total, fraction)
        if "steps" not in s1 and isinstance(s2["steps"], int) and 0 < s2["steps"] < total:
            s1["steps"] = total - s2["steps"]
        if "steps" not in s2 and isinstance(s1["steps"], int) and 0 < s1["steps"] < total:
            s2["steps"] = total - s1["steps"]
    out["stage1"], out["stage2"] = s1, s2
    return out


def rescale_stage_steps(tsembed: Mapping[str, Any], total: int) -> dict[str, Any]:
    """Dumped TSEmbed settings (a recipe's ``method:`` section) for a new step budget (``mote train --steps``): the
    stage split is kept proportional (each stage at least one step). A budget too small for the stages (one step,
    two stages) leaves the settings as they are: the recipe check then names the mismatch."""
    out = dict(tsembed)
    s1, s2 = dict(out.get("stage1") or {}), out.get("stage2")
    if s2 is not None and total < 2:
        return out
    if s2 is None:
        s1["steps"] = total
    else:
        s2 = dict(s2)
        old1, old2 = int(s1.get("steps", 1)), int(s2.get("steps", 1))
        s1["steps"] = _split(total, old1 / max(1, old1 + old2)) if total >= 2 else total
        s2["steps"] = total - s1["steps"]
    out["stage1"], out["stage2"] = s1, s2
    return out


