"""``tsembed`` / ``tsembed-noeans``: TSEmbed's MoE-LoRA experts and routers on a frozen base (``method.lora``),
trained in two stages, the second with expert-aware negatives (EANS); ``tsembed-noeans`` is stage 1 only for the
same total steps (the ablation). The stages run in their own loop (:mod:`mote.train.tsembed`); their learning
rates and trainable sets come from ``method.stage1`` / ``method.stage2`` (:mod:`mote.lora.plan`). Both methods'
settings are :class:`mote.methods.tsembed_config.TSEmbedMethodConfig` (the plan,
:class:`mote.lora.plan.TSEmbedConfig`, as a method config)::

    method:
      name: tsembed
      lora: {num_experts: 4, r: 8, routing: token}
      eans: {metric: cosine, num_negatives: 1, refresh_every: 100}
      stage1: {learning_rate: 2.0e-4}       # stage steps left out: train.steps split by stage1_fraction

Example:
    >>> from mote.methods import get_method
    >>> get_method("tsembed-noeans").eans
    False
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from mote.methods.base import Method, MethodModel, finish_model

if TYPE_CHECKING:
    from mote.lora.plan import TSEmbedConfig
    from mote.train.config import RunConfig


class TSEmbedMethod(Method):
    """MoE-LoRA on a frozen base, stage 1 then the EANS stage 2."""

    summary = "TSEmbed: MoE-LoRA experts + routers on a frozen base, stage 1 then EANS stage 2"
    router_aux_loss = True
    keeps_snapshots = False
    supports_select = False  # its experts are chosen per token
    training_loop = "mote.train.tsembed:run_tsembed"  # one trainer per stage
    eans: ClassVar[bool] = True  # False: stage 1 only, for the same total steps

    def plan(self, cfg: RunConfig) -> TSEmbedConfig:
        """The run's TSEmbed plan: ``cfg.method`` as given, or its stage-1-only ablation."""
        return cfg.method if self.eans else cfg.method.without_eans()

    def build(self, cfg: RunConfig, device: str = "cpu") -> MethodModel:
        """The base with MoE-LoRA adapters, stage 1's trainable set."""
        from mote.lora.model import ADAPTER_PARAMETER_PATTERN, ROUTER_PARAMETER_PATTERN
        from mote.lora.plan import build_model

        model = build_model(self.plan(cfg), cfg.model.base, cfg.model.routing(), device=device)
        return finish_model(cfg, self.name, model, [], routed=True, freeze=False,
                            router_pattern=ROUTER_PARAMETER_PATTERN, expert_pattern=ADAPTER_PARAMETER_PATTERN)

    def problems(self, cfg: RunConfig) -> list[str]:
        """What the TSEmbed methods cannot run with (the plan itself is validated by ``TSEmbedConfig``)."""
        problems = []
        ts = cfg.method
        if ts.total_steps != cfg.train.steps:
            stages = f"method.stage1.steps ({ts.stage1.steps})" + (
                f" + method.stage2.steps ({ts.stage2.steps})" if ts.stage2 is not None else "")
            problems.append(
                f"{stages} = {ts.total_steps}, but train.steps is {cfg.train.steps}: the stages share the run's "
                "step budget (the same as every method's). Make them add up, or leave the stage steps out to split "
                "train.steps by method.stage1_fraction"
            )
        if cfg.loss.cached:
            problems.append(
                f"loss.cached: the {self.name} method needs the plain loss (EANS mines negatives from each query's "
                "own forward pass, and the cached loss drops the routers' load-balancing loss); set loss.cached: false"
            )
        if cfg.train.expert_learning_rate is not None:
            problems.append(
                f"train.expert_learning_rate: the {self.name} method takes its learning rates from method.stage1 / "
                "method.stage2 (learning_rate, router_learning_rate)"
            )
        return problems

    def recipe_row(self, cfg: RunConfig) -> tuple[str, str, str]:
        ts = self.plan(cfg)
        lora = ts.lora
        stages = [s for s in (ts.stage1, ts.stage2) if s is not None]
        lr = " / ".join(f"{s.learning_rate:g}" for s in stages) + (" (stages)" if len(stages) > 1 else "")
        return f"LoRA {lora.num_experts}x r{lora.r}, top-{lora.top_k}", "LoRA experts + routers", lr


class TSEmbedNoEANSMethod(TSEmbedMethod):
    """The ablation: stage 1 only, for the same total steps (no EANS)."""

    summary = "TSEmbed stage 1 only, for the same total steps (the ablation without EANS)"
    eans = False
