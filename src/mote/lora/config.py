"""``MoELoRAConfig``: where the LoRA experts go, how many, how big, and how tokens or tasks are routed to them.

The field names follow PEFT's ``LoraConfig`` (``r``, ``lora_alpha``, ``lora_dropout``, ``use_rslora``,
``target_modules``, ``exclude_modules``, ``layers_to_transform``, ``layers_pattern``, ``init_lora_weights``) and
mean the same thing, so a PEFT user reads this config without a manual; target matching is PEFT's own
``check_target_module_exists``. The mixture fields (``num_experts``, ``top_k``, ``routing``, ``task_init`` ...) are
what PEFT lacks. The TSEmbed paper does not publish any of these values (see ``docs/tsembed.md``): every default
below is a documented choice, not the paper's setting.

Example:
    >>> cfg = MoELoRAConfig(num_experts=4, r=8, routing="sequence")
    >>> cfg.top_k, cfg.scaling
    (1, 2.0)
    >>> MoELoRAConfig(num_experts=2, top_k=3)
    Traceback (most recent call last):
    ...
    ValueError: Invalid MoELoRAConfig: top_k (3) is larger than num_experts (2); choose 1 <= top_k <= num_experts
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from pydantic import ConfigDict

ALL_LINEAR = "all-linear"
ROUTING_LEVELS = ("token", "sequence")
BALANCE_LOSSES = ("switch", "importance")
EXPERT_COMPUTE = ("auto", "dense", "grouped")


@dataclass
class MoELoRAConfig:
    """Settings of MoE-LoRA adapters (see the module doc; ``docs/tsembed.md`` gives the reason for each default)."""

    # Validated as a section of a pydantic recipe (mote.lora.plan.TSEmbedConfig): unknown keys are errors.
    __pydantic_config__ = ConfigDict(extra="forbid")

    num_experts: int = field(default=4, metadata={"help": "E, the LoRA experts per adapted linear layer."})
    top_k: int | None = field(
        default=None,
        metadata={"help": "Experts each token (token routing) or task (sequence routing) uses. None: 2 for token "
                  "routing (Mixtral / MixLoRA convention), 1 for sequence routing (one expert per task, as MoTE)."},
    )
    routing: Literal["token", "sequence"] = field(
        default="token",
        metadata={"help": "'token': a learned router per adapted layer reads each token (plus a per-task bias). "
                  "'sequence': routing depends on the task alone (a learned task x expert table); mergeable into "
                  "one dense model per task, but every example of a task then has the same routing distribution, "
                  "so EANS cannot rank candidates with it."},
    )
    r: int = field(default=8, metadata={"help": "LoRA rank of every expert (PEFT default)."})
    lora_alpha: float = field(default=16.0, metadata={"help": "LoRA alpha; an expert's update is scaled by alpha/r."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the input of the LoRA experts."})
    use_rslora: bool = field(default=False, metadata={"help": "Scale by alpha/sqrt(r) instead of alpha/r (PEFT)."})
    target_modules: list[str] | str = field(
        default=ALL_LINEAR,
        metadata={"help": "PEFT semantics: a list of names (exact or '.'-suffix matches) or one regex (full "
                  "match). 'all-linear': every nn.Linear of the encoder except poolers and output heads, and for "
                  "vision-language models only those of the language model."},
    )
    exclude_modules: list[str] | str | None = field(default=None, metadata={"help": "PEFT semantics."})
    layers_to_transform: list[int] | int | None = field(default=None, metadata={"help": "PEFT semantics."})
    layers_pattern: list[str] | str | None = field(default=None, metadata={"help": "PEFT semantics."})
    task_init: bool = field(
        default=True,
        metadata={"help": "Start each task on its own expert (the routing table's expert of the task): a "
                  "task x expert logit of task_init_logit; sequence routing then starts exactly as MoTE."},
    )
    task_init_logit: float = field(
        default=4.0, metadata={"help": "The logit of a task's own expert at init (4.0 -> p = 0.95 with E = 4)."}
    )
    task_bias: bool = field(
        default=True, metadata={"help": "Token routing: add a learned per-task bias to the router logits."}
    )
    router_init_std: float = field(
        default=0.02, metadata={"help": "Std of the token router's weight at init (BERT's initializer_range)."}
    )
    renormalize: bool = field(
        default=True,
        metadata={"help": "Gates = top-k probabilities renormalised to sum to 1 (top-1: p / p.detach(), 1 in value "
                  "with the Switch gradient). False: the raw top-k probabilities."},
    )
    balance_loss: Literal["switch", "importance"] = field(
        default="switch",
        metadata={"help": "'switch': E * sum_e f_e * P_e (Switch / GShard). 'importance': E * sum_e P_e^2, "
                  "provably minimal (= 1) exactly when the mean routing is uniform."},
    )
    init_lora_weights: bool = field(
        default=True, metadata={"help": "B = 0 at init (PEFT): a fresh adapter is an exact no-op."}
    )
    expert_compute: Literal["auto", "dense", "grouped"] = field(
        default="auto",
        metadata={"help": "Token routing: 'dense' = one [in, E*r] matmul for all experts, non-routed gated to 0; "
                  "'grouped' = sort the token-expert pairs and run only routed experts (torch grouped_mm); "
                  "'auto' = grouped when (E - top_k) * r >= 256 (measured on CPU), else dense."},
    )

    def __post_init__(self) -> None:
        problems: list[str] = []
        if isinstance(self.target_modules, tuple):
            self.target_modules = list(self.target_modules)
        if not isinstance(self.num_experts, int) or self.num_experts < 1:
            problems.append(f"num_experts must be a positive int, got {self.num_experts!r}")
        if self.routing not in ROUTING_LEVELS:
            problems.append(f"routing must be one of {ROUTING_LEVELS}, got {self.routing!r}")
        if self.top_k is None:
            self.top_k = 1 if self.routing == "sequence" else min(2, max(int(self.num_experts or 1), 1))
        if not isinstance(self.top_k, int) or self.top_k < 1:
            problems.append(f"top_k must be a positive int, got {self.top_k!r}")
        elif isinstance(self.num_experts, int) and self.top_k > self.num_experts:
            problems.append(
                f"top_k ({self.top_k}) is larger than num_experts ({self.num_experts}); choose 1 <= top_k <= "
                "num_experts"
            )
        if not isinstance(self.r, int) or self.r < 1:
            problems.append(f"r (the LoRA rank) must be a positive int, got {self.r!r}")
        if not self.lora_alpha > 0:
            problems.append(f"lora_alpha must be > 0, got {self.lora_alpha!r}")
        if not 0 <= self.lora_dropout < 1:
            problems.append(f"lora_dropout must be in [0, 1), got {self.lora_dropout!r}")
        if self.task_init_logit < 0:
            problems.append(f"task_init_logit must be >= 0, got {self.task_init_logit!r}")
        if self.router_init_std < 0:
            problems.append(f"router_init_std must be >= 0, got {self.router_init_std!r}")
        if self.balance_loss not in BALANCE_LOSSES:
            problems.append(f"balance_loss must be one of {BALANCE_LOSSES}, got {self.balance_loss!r}")
        if self.expert_compute not in EXPERT_COMPUTE:
            problems.append(f"expert_compute must be one of {EXPERT_COMPUTE}, got {self.expert_compute!r}")
        if not self.target_modules:
            problems.append("target_modules must name at least one module (or be 'all-linear')")
        if self.routing == "token" and self.task_init and not self.task_bias:
            problems.append("task_init with token routing needs task_bias=True (the per-task bias carries the init)")
        if problems:
            raise ValueError("Invalid MoELoRAConfig: " + "; ".join(problems))

    # ------------------------------------------------------------------------------------------- derived
    @property
    def scaling(self) -> float:
        """The factor of every expert's low-rank update: ``alpha / r`` (``alpha / sqrt(r)`` with rsLoRA)."""
        return self.lora_alpha / (math.sqrt(self.r) if self.use_rslora else self.r)

    @property
    def mergeable(self) -> bool:
        """Whether one task can be merged into a plain dense model (routing depends on the task alone)."""
        return self.routing == "sequence"

    def use_grouped(self) -> bool:
        """Whether token routing runs only the routed experts (see ``expert_compute``)."""
        if self.expert_compute != "auto":
            return self.expert_compute == "grouped"
        return (self.num_experts - int(self.top_k)) * self.r >= 256

    # ------------------------------------------------------------------------------------------- (de)serialise
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MoELoRAConfig:
        """Build from a mapping; unknown keys are an error that lists the known ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Unknown MoELoRAConfig keys {unknown}; known keys: {sorted(known)}")
        return cls(**dict(data))

    @classmethod
    def help(cls) -> dict[str, str]:
        """``{field: help text}`` of every setting."""
        return {f.name: f.metadata.get("help", "") for f in fields(cls)}
