"""The arms of the MoTE comparison: one recipe, five models, trained by the same trainer on the same batches.

============ ======================================================= ============= ==========================
arm          model                                                   batches       temperature
============ ======================================================= ============= ==========================
mote         MoTE (experts at ``model.placement``), task routing      one task      per task (TA-CL)
ic           the dense base, same task prefixes (instruction-cond.)  one task      per task
static       MoTE, task routing                                      task-mixed    one (``loss.static_...``)
tlr          MoTE experts + learned top-1 token routers (+ LB loss)  one task      per task
ic-matched   the dense base + prefixes, training only the FFN and    one task      per task
             both norms of the expert layers (everything else frozen)
tsembed      frozen base + MoE-LoRA experts and routers              one task      per task
             (``tsembed.lora``); stage 1 + EANS stage 2
tsembed-     the same, stage 1 only for the same total steps         one task      per task
noeans       (the ablation without EANS)
============ ======================================================= ============= ==========================

The TSEmbed arms (:mod:`mote.train.tsembed`) always train only the adapters (``model.placement`` and
``model.trainable`` do not apply); their learning rates and the trainable set of each stage come from
``tsembed.stage1`` / ``tsembed.stage2``.

``model.trainable: experts`` trains only the expert parameters of the MoTE arms (plus the routers for ``tlr``):
the weights ``ic-matched`` trains in the dense model. With it, a task whose expert sees no training data keeps
the base model's embeddings exactly.

Example:
    >>> arm = build_arm(parse_config({"tasks": {...}}))   # doctest: +SKIP
    >>> arm.model[0]                                      # doctest: +SKIP
    MoTETransformer(model=BertModel, experts=4, ...)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sentence_transformers import SentenceTransformer
from torch import nn

from mote.experts import layer_slots, resolve_placement, transformer_layers
from mote.routing import RoutingTable
from mote.train.config import MOTE_ARMS, TSEMBED_ARMS, RunConfig
from mote.weights import resolve_model_path


@dataclass
class ArmModel:
    """A model ready for training, and how the trainer must feed and optimise it."""

    arm: str
    model: SentenceTransformer
    routing: RoutingTable
    routed: bool  # MoTE family: the task goes to preprocess(task=...); dense arms get the prefix as prompt
    expert_pattern: str  # regex (re.search) of the expert parameters' names
    router_pattern: str | None = None
    base_max_seq_length: int | None = None  # the base model's limit, restored before the final save

    @property
    def prefixes(self) -> dict[str, str]:
        return self.routing.prompts()

    def parameter_counts(self) -> dict[str, int]:
        params = list(self.model.parameters())
        return {
            "total": sum(p.numel() for p in params),
            "trainable": sum(p.numel() for p in params if p.requires_grad),
        }


def hf_model(model: SentenceTransformer) -> nn.Module:
    """The Hugging Face encoder inside a sentence-transformers model (MoTE or dense)."""
    first = model[0]
    return getattr(first, "auto_model", None) or first.model


def expert_parameter_pattern(hf: nn.Module, layers: list[int]) -> str:
    """Regex matching the FFN + both norms of ``layers`` (the weights MoTE turns into experts).

    Example:
        >>> bool(re.search(expert_parameter_pattern(bert, [1]), "0.auto_model.encoder.layer.1.output.dense.weight"))
        ... # doctest: +SKIP
        True
    """
    slots = "|".join(re.escape(s) for s in layer_slots(hf))
    return rf"encoder\.layer\.({'|'.join(map(str, layers))})\.({slots})\.(weight|bias)$"


ROUTER_PATTERN = r"encoder\.layer\.\d+\.router\.weight$"


def freeze_all_but(model: nn.Module, patterns: list[str]) -> None:
    """``requires_grad`` only for parameters whose name matches one of ``patterns``."""
    compiled = [re.compile(p) for p in patterns]
    for name, param in model.named_parameters():
        param.requires_grad_(any(c.search(name) for c in compiled))


def build_arm(cfg: RunConfig, device: str = "cpu") -> ArmModel:
    """The model of ``cfg.arm``, converted, sized (``max_seq_length``) and with its trainable set chosen."""
    import mote

    routing = cfg.model.routing()
    arm = cfg.arm
    if arm in TSEMBED_ARMS:
        return build_tsembed_arm(cfg, routing, device)
    if arm in MOTE_ARMS:
        model = mote.convert(cfg.model.base, placement=cfg.model.placement, routing=routing, device=device)
        router_pattern = None
        if arm == "tlr":
            from mote.tlr import to_token_routing

            model = to_token_routing(model)
            router_pattern = ROUTER_PATTERN
        layers = model[0].expert_layers
        routed = True
    else:
        model = SentenceTransformer(resolve_model_path(cfg.model.base), device=device, prompts=routing.saved_prompts())
        layers = resolve_placement(cfg.model.placement, len(transformer_layers(hf_model(model))))
        router_pattern = None
        routed = False
    base_max_seq_length = model.max_seq_length
    if cfg.model.max_seq_length is not None:  # a training-time truncation; the saved model keeps the base's
        model.max_seq_length = cfg.model.max_seq_length
    pattern = expert_parameter_pattern(hf_model(model), layers)
    if arm == "ic-matched" or (cfg.model.trainable == "experts" and arm != "ic"):
        freeze_all_but(model, [pattern] + ([router_pattern] if router_pattern else []))
    elif cfg.model.trainable == "experts" and arm == "ic":
        raise ValueError("model.trainable: experts does not apply to the ic arm (use the ic-matched arm)")
    return ArmModel(arm, model, routing, routed, pattern, router_pattern, base_max_seq_length)


def build_tsembed_arm(cfg: RunConfig, routing: RoutingTable, device: str = "cpu") -> ArmModel:
    """The ``tsembed`` / ``tsembed-noeans`` model: the base with MoE-LoRA adapters, stage 1's trainable set."""
    from mote.lora.model import ADAPTER_PARAMETER_PATTERN, ROUTER_PARAMETER_PATTERN
    from mote.lora.plan import build_model

    model = build_model(cfg.tsembed_plan(), cfg.model.base, routing, device=device)
    base_max_seq_length = model.max_seq_length
    if cfg.model.max_seq_length is not None:
        model.max_seq_length = cfg.model.max_seq_length
    return ArmModel(cfg.arm, model, routing, True, ADAPTER_PARAMETER_PATTERN, ROUTER_PARAMETER_PATTERN,
                    base_max_seq_length)
