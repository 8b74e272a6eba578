"""mote.lora: TSEmbed's MoE-LoRA task experts, Expert-Aware Negative Sampling (EANS) and two-stage training plan.

A frozen backbone gets, on chosen linear layers, ``E`` low-rank experts and a token- or sequence-level top-k
router (:mod:`mote.lora.layer`, :mod:`mote.lora.router`); the adapters save and load apart from the backbone
and, with sequence routing, one task merges into a plain dense model (:mod:`mote.lora.model`,
:func:`export_task`). :mod:`mote.lora.eans` mines hard negatives whose routing resembles the query's;
:mod:`mote.lora.plan` describes the two training stages. See ``docs/tsembed.md``.

Building, training or loading a TSEmbed model needs PEFT (its target-module matching), an optional extra:
``pip install 'mote[tsembed]'``; without it those fail with one ``ImportError`` that says so. The package itself
imports without PEFT (the recipe and the method registry read :mod:`mote.lora.plan` whatever the method).

Example:
    >>> from mote.lora import MoELoRAConfig, convert
    >>> model = convert("all-MiniLM-L6-v2", MoELoRAConfig(num_experts=4, r=8, routing="token"))   # doctest: +SKIP
    >>> model.encode(["how do magnets work"], task="query").shape                                 # doctest: +SKIP
    (1, 384)
"""

from mote.lora.config import MoELoRAConfig
from mote.lora.eans import (
    CandidatePool,
    EANSConfig,
    EANSLoss,
    EANSMiner,
    EANSRefreshCallback,
    routing_similarity,
    select_hard_negatives,
)
from mote.lora.layer import MoELoRALinear
from mote.lora.model import (
    TargetModulesError,
    find_target_modules,
    inject_adapters,
    linear_layer_names,
    load_adapter,
    merge_task,
    parameter_report,
    save_adapter,
    unload,
)
from mote.lora.plan import StageConfig, StageRun, TSEmbedConfig, apply_stage, stage_runs
from mote.lora.router import MoERouter, RoutingState, load_balancing_loss
from mote.lora.st import (
    NotATSEmbedModelError,
    TSEmbedTransformer,
    convert,
    export_task,
    from_adapter,
    load,
    routing_distributions,
    tsembed_module,
)

__all__ = [
    "CandidatePool",
    "EANSConfig",
    "EANSLoss",
    "EANSMiner",
    "EANSRefreshCallback",
    "MoELoRAConfig",
    "MoELoRALinear",
    "MoERouter",
    "NotATSEmbedModelError",
    "RoutingState",
    "StageConfig",
    "StageRun",
    "TSEmbedConfig",
    "TSEmbedTransformer",
    "TargetModulesError",
    "apply_stage",
    "convert",
    "export_task",
    "find_target_modules",
    "from_adapter",
    "inject_adapters",
    "linear_layer_names",
    "load",
    "load_adapter",
    "load_balancing_loss",
    "merge_task",
    "parameter_report",
    "routing_distributions",
    "routing_similarity",
    "save_adapter",
    "select_hard_negatives",
    "stage_runs",
    "tsembed_module",
    "unload",
]
