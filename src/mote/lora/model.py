"""Putting MoE-LoRA adapters into a Hugging Face model: find targets, wrap, save/load adapters, merge one task.

* :func:`find_target_modules` matches ``config.target_modules`` with PEFT's own ``check_target_module_exists``
  (list = exact or ``.``-suffix match, string = full regex, plus ``exclude_modules`` / ``layers_to_transform``).
  A name that matches no ``nn.Linear`` is an error that lists the model's linear layers.
* :func:`inject_adapters` replaces each target by a :class:`~mote.lora.layer.MoELoRALinear` wrapping it (wrap, do
  not monkey-patch) and freezes everything else.
* :func:`save_adapter` / :func:`load_adapter`: ``adapter_config.json`` + ``adapter_model.safetensors`` (PEFT's file
  names), written atomically, holding only the adapters and routers; the backbone is not copied. PEFT's own
  state-dict helpers are keyed on its registered method types and LoRA's ``ModuleDict`` layout, so the two files
  are written directly with safetensors.
* :func:`merge_task`: a copy of the model in which every adapted layer is the plain ``nn.Linear`` of one task
  (sequence routing only: token routing depends on the input, so no single dense weight equals it).

Example:
    >>> cfg = MoELoRAConfig(num_experts=4, r=8, target_modules=["query", "value"])
    >>> state = inject_adapters(bert, cfg, RoutingTable.default())        # doctest: +SKIP
    >>> save_adapter(bert, "my-adapter", cfg, RoutingTable.default())    # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from safetensors.torch import save
from torch import nn

from mote.atomic import SAVE_ID, atomic_dir, atomic_write_bytes, atomic_write_json
from mote.files import read_json_config, read_safetensors
from mote.lora.config import ALL_LINEAR, MoELoRAConfig
from mote.lora.layer import MoELoRALinear
from mote.lora.router import RoutingState
from mote.routing import RoutingTable

# PEFT's file names (peft.utils.constants CONFIG_NAME and SAFETENSORS_WEIGHTS_NAME; tests/test_install.py checks
# them), so that mote.lora imports without PEFT: the recipe reads mote.lora.plan whatever the method.
ADAPTER_CONFIG_NAME = "adapter_config.json"
ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors"
TSEMBED_EXTRA = "pip install 'mote[tsembed]'"
ADAPTER_TYPE = "mote-moe-lora"
ADAPTER_FORMAT_VERSION = 1
ADAPTER_PARAMETER_PATTERN = r"\.(lora_A|lora_B)$"
ROUTER_PARAMETER_PATTERN = r"\.router\.(weight|task_bias|task_logits)$"


class TargetModulesError(ValueError):
    """``target_modules`` names something that is not an ``nn.Linear`` of the model (the message lists them)."""


class NotAnAdapterError(ValueError):
    """A folder that holds no MoE-LoRA adapter."""


def require_peft():
    """PEFT's ``check_target_module_exists`` (the target matching TSEmbed builds its adapters with), or one
    ``ImportError`` naming the extra: PEFT is an optional extra of mote, needed by TSEmbed (MoE-LoRA) models only."""
    try:
        from peft.tuners.tuners_utils import check_target_module_exists
    except ModuleNotFoundError as e:
        if (e.name or "").partition(".")[0] != "peft":
            raise
        raise ImportError(f"TSEmbed (MoE-LoRA, mote.lora) models need PEFT, which is not installed: {TSEMBED_EXTRA}"
                          ) from None
    return check_target_module_exists


# ------------------------------------------------------------------------------------------------ targets
def linear_layer_names(model: nn.Module) -> list[str]:
    """Names of the model's ``nn.Linear`` layers (those inside MoE-LoRA wrappers excluded)."""
    wrapped = {f"{n}.base_layer" for n, m in model.named_modules() if isinstance(m, MoELoRALinear)}
    inside = tuple(f"{n}." for n, m in model.named_modules() if isinstance(m, MoELoRALinear))
    return [
        n
        for n, m in model.named_modules()
        if isinstance(m, nn.Linear) and n not in wrapped and not (inside and n.startswith(inside))
    ]


def _describe_linears(names: list[str], limit: int = 40) -> str:
    suffixes = sorted({re.sub(r"^.*?\.\d+\.", "", n) for n in names})
    shown = ", ".join(names[:limit]) + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")
    return f"The model's linear layers ({len(names)}): {shown}. Distinct names inside its blocks: {suffixes}."


def _all_linear(model: nn.Module, names: list[str]) -> list[str]:
    """``all-linear``: every linear layer but poolers, output heads and (VLMs) layers outside the language model."""
    skip: set[str] = set()
    get_out = getattr(model, "get_output_embeddings", None)
    head = get_out() if callable(get_out) else None
    if head is not None:
        skip |= {n for n, m in model.named_modules() if m is head}
    keep = [n for n in names if n not in skip and "pooler" not in n.split(".") and not n.endswith("lm_head")]
    if isinstance(getattr(model, "language_model", None), nn.Module):
        # A vision-language model: the vision tower and projector see image patches, not the batch's sequences.
        keep = [n for n in keep if n.startswith("language_model.")]
    return keep


def find_target_modules(model: nn.Module, config: MoELoRAConfig) -> list[str]:
    """The names of the linear layers ``config`` adapts; :class:`TargetModulesError` if a name matches none.

    Example:
        >>> find_target_modules(bert, MoELoRAConfig(target_modules=["query"]))   # doctest: +SKIP
        ['encoder.layer.0.attention.self.query', 'encoder.layer.1.attention.self.query']
    """
    check_target_module_exists = require_peft()
    linears = linear_layer_names(model)
    targets = config.target_modules
    matcher = SimpleNamespace(
        target_modules=targets,
        exclude_modules=config.exclude_modules,
        layers_to_transform=config.layers_to_transform,
        layers_pattern=config.layers_pattern,
        target_parameters=None,
    )
    if isinstance(targets, str) and targets.lower() == ALL_LINEAR:
        candidates = _all_linear(model, linears)
        # Leaf names (suffix matches), so that PEFT applies layers_to_transform / layers_pattern to them too.
        matcher.target_modules = sorted({n.rsplit(".", 1)[-1] for n in candidates})
    else:
        candidates = linears
        all_modules = [n for n, _ in model.named_modules() if n]
        entries = [targets] if isinstance(targets, str) else list(targets)
        for entry in entries:
            probe = SimpleNamespace(**{
                **vars(matcher),
                "target_modules": entry if isinstance(targets, str) else [entry],
                "exclude_modules": None,
                "layers_to_transform": None,
            })
            if any(check_target_module_exists(probe, n) for n in linears):
                continue
            others = [n for n in all_modules if check_target_module_exists(probe, n)]
            what = "regex" if isinstance(targets, str) else "name"
            hint = (f" It matches only non-linear modules ({', '.join(others[:5])}): MoE-LoRA adapts nn.Linear "
                    "layers.") if others else ""
            raise TargetModulesError(
                f"target_modules {what} {entry!r} matches no linear layer of {type(model).__name__}.{hint} "
                f"{_describe_linears(linears)}"
            )
    found = [n for n in candidates if check_target_module_exists(matcher, n)]  # excluded ones are falsy
    if not found:
        raise TargetModulesError(
            f"target_modules={targets!r} (exclude_modules={config.exclude_modules!r}, layers_to_transform="
            f"{config.layers_to_transform!r}) selects no linear layer of {type(model).__name__}. "
            f"{_describe_linears(linears)}"
        )
    return found


# ------------------------------------------------------------------------------------------------ injection
def _parent(root: nn.Module, name: str) -> tuple[nn.Module, str]:
    parent, _, child = name.rpartition(".")
    return (root.get_submodule(parent) if parent else root), child


def moe_lora_layers(model: nn.Module) -> dict[str, MoELoRALinear]:
    """``{name: layer}`` of every MoE-LoRA layer, in module order."""
    return {n: m for n, m in model.named_modules() if isinstance(m, MoELoRALinear)}


def inject_adapters(
    model: nn.Module,
    config: MoELoRAConfig,
    routing: RoutingTable,
    state: RoutingState | None = None,
    targets: list[str] | None = None,
    freeze_base: bool = True,
) -> RoutingState:
    """Wrap the target linear layers of ``model`` in place; returns the shared routing state.

    ``targets`` (resolved names, e.g. from a saved adapter) overrides ``config.target_modules``. With
    ``config.task_init`` every task starts on ``routing.expert(task)``. ``freeze_base`` freezes every parameter but
    the adapters' (``lora_A``, ``lora_B``, routers).
    """
    require_peft()  # building or loading a TSEmbed model needs the tsembed extra, whether or not targets are given
    if moe_lora_layers(model):
        raise ValueError("The model already holds MoE-LoRA adapters")
    expert_of_task = [routing.expert(t) for t in routing.task_names]
    if config.task_init and routing.num_experts > config.num_experts:
        raise ValueError(
            f"task_init starts each task on its routing-table expert (0..{routing.num_experts - 1}), but num_experts "
            f"is {config.num_experts}; raise num_experts to >= {routing.num_experts}, share experts in the routing "
            "table (task@k), or set task_init=False"
        )
    state = state if state is not None else RoutingState()
    names = find_target_modules(model, config) if targets is None else list(targets)
    linears = set(linear_layer_names(model))
    missing = [n for n in names if n not in linears]
    if missing:
        raise TargetModulesError(
            f"Not linear layers of {type(model).__name__}: {missing}. {_describe_linears(sorted(linears))}"
        )
    if freeze_base:
        model.requires_grad_(False)
    for name in names:
        parent, child = _parent(model, name)
        layer = MoELoRALinear(getattr(parent, child), config, len(routing.task_names), state, expert_of_task)
        setattr(parent, child, layer)
    return state


@contextlib.contextmanager
def adapters_detached(model: nn.Module) -> Iterator[nn.Module]:
    """Temporarily put the plain base layers back (e.g. to save the backbone exactly as it was loaded)."""
    layers = moe_lora_layers(model)
    for name, layer in layers.items():
        parent, child = _parent(model, name)
        setattr(parent, child, layer.base_layer)
    try:
        yield model
    finally:
        for name, layer in layers.items():
            parent, child = _parent(model, name)
            setattr(parent, child, layer)


def unload(model: nn.Module) -> nn.Module:
    """Remove every adapter in place (the backbone as it was before :func:`inject_adapters`)."""
    for name, layer in moe_lora_layers(model).items():
        parent, child = _parent(model, name)
        setattr(parent, child, layer.base_layer)
    return model


def merge_task(model: nn.Module, task_id: int, inplace: bool = False) -> nn.Module:
    """The model for one task: every MoE-LoRA layer replaced by its merged ``nn.Linear`` (a copy by default).

    Only sequence-level routing can be merged (the gate of a task is then a constant).
    """
    layers = moe_lora_layers(model)
    token = [n for n, m in layers.items() if m.routing != "sequence"]
    if token:
        raise ValueError(
            "merge needs routing='sequence': token-level routing picks experts per token from the input, so no "
            f"single dense weight equals it (token-routed layers: {token[:3]}...). Serve the routed model instead."
        )
    out = model if inplace else copy.deepcopy(model)
    for name, layer in moe_lora_layers(out).items():
        parent, child = _parent(out, name)
        setattr(parent, child, layer.merged(task_id))
    return out


# ------------------------------------------------------------------------------------------------ adapter I/O
def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapters' tensors only: ``<layer>.lora_A``, ``<layer>.lora_B``, ``<layer>.router.*``."""
    out = {}
    for name, layer in moe_lora_layers(model).items():
        for key, value in layer.named_parameters():
            if not key.startswith("base_layer."):
                out[f"{name}.{key}"] = value.detach()
    return out


def adapter_config_dict(config: MoELoRAConfig, routing: RoutingTable, targets: list[str],
                        base_model: str | None = None) -> dict[str, Any]:
    return {
        "adapter_type": ADAPTER_TYPE,
        "format_version": ADAPTER_FORMAT_VERSION,
        "base_model_name_or_path": base_model,
        "config": config.to_dict(),
        "routing": routing.to_dict(),
        "target_modules_resolved": list(targets),
    }


def write_adapter_files(folder: str | os.PathLike, model: nn.Module, config: MoELoRAConfig, routing: RoutingTable,
                        base_model: str | None = None, save_id: str | None = None) -> None:
    """Write the two adapter files into an existing ``folder``, each atomically (``save_id``: the id of the save
    they belong to, stored in the weights' metadata)."""
    folder = Path(folder)
    tensors = {k: v.contiguous().cpu() for k, v in adapter_state_dict(model).items()}
    if not tensors:
        raise ValueError("The model holds no MoE-LoRA adapters to save")
    metadata = {"format": "pt", **({SAVE_ID: save_id} if save_id else {})}
    atomic_write_bytes(folder / ADAPTER_WEIGHTS_NAME, save(tensors, metadata=metadata))
    atomic_write_json(folder / ADAPTER_CONFIG_NAME,
                      adapter_config_dict(config, routing, list(moe_lora_layers(model)), base_model))


def save_adapter(
    model: nn.Module,
    path: str | os.PathLike,
    config: MoELoRAConfig,
    routing: RoutingTable,
    base_model: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Save only the adapters to the folder ``path`` (replaced in one rename: never half-written).

    Example:
        >>> save_adapter(model[0].auto_model, "adapter", cfg, routing)     # doctest: +SKIP
    """
    path = Path(path)
    with atomic_dir(path, overwrite=overwrite) as tmp:
        write_adapter_files(tmp, model, config, routing, base_model)
    return path


def read_adapter_config(path: str | os.PathLike) -> tuple[MoELoRAConfig, RoutingTable, list[str], dict[str, Any]]:
    """``(config, routing, resolved targets, raw dict)`` of a saved adapter folder."""
    file = Path(path) / ADAPTER_CONFIG_NAME
    if not file.is_file():
        raise NotAnAdapterError(f"{str(path)!r} has no {ADAPTER_CONFIG_NAME}: it is not a MoE-LoRA adapter folder")
    raw = read_json_config(file, NotAnAdapterError)
    if raw.get("adapter_type") != ADAPTER_TYPE:
        raise NotAnAdapterError(
            f"{file} is not a mote MoE-LoRA adapter (adapter_type {raw.get('adapter_type')!r}; a PEFT adapter "
            "loads with peft.PeftModel.from_pretrained)"
        )
    if raw.get("format_version", 1) > ADAPTER_FORMAT_VERSION:
        raise NotAnAdapterError(f"{file} uses adapter format {raw['format_version']}; upgrade mote to load it")
    try:
        return (MoELoRAConfig.from_dict(raw["config"]), RoutingTable.from_dict(raw["routing"]),
                list(raw["target_modules_resolved"]), raw)
    except (KeyError, TypeError, ValueError) as e:
        raise NotAnAdapterError(f"{file} is damaged ({type(e).__name__}: {e}); save (or copy) the adapter again") \
            from None


def load_adapter_weights(model: nn.Module, path: str | os.PathLike, save_id: str | None = None,
                         config: str | os.PathLike | None = None) -> None:
    """Load ``adapter_model.safetensors`` into the (already injected) adapters; every tensor must match (and,
    with ``save_id``, the file must come from the save that wrote ``config``)."""
    state = read_safetensors(Path(path) / ADAPTER_WEIGHTS_NAME, NotAnAdapterError, config, save_id)
    own = adapter_state_dict(model)
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    bad = [k for k in set(own) & set(state) if own[k].shape != state[k].shape]
    if missing or unexpected or bad:
        raise NotAnAdapterError(
            f"Adapter weights in {path} do not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}, "
            f"wrong shape {bad[:5]}"
        )
    params = dict(model.named_parameters())
    with torch.no_grad():
        for key, value in state.items():
            params[key].copy_(value)


def load_adapter(model: nn.Module, path: str | os.PathLike) -> tuple[MoELoRAConfig, RoutingTable, RoutingState]:
    """Inject the saved adapter of ``path`` into a plain ``model`` (in place) and load its weights.

    Example:
        >>> cfg, routing, state = load_adapter(AutoModel.from_pretrained(base), "adapter")   # doctest: +SKIP
    """
    config, routing, targets, _ = read_adapter_config(path)
    state = inject_adapters(model, config, routing, targets=targets)
    load_adapter_weights(model, path)
    return config, routing, state


# ------------------------------------------------------------------------------------------------ accounting
def parameter_report(model: nn.Module) -> dict[str, int]:
    """Parameter counts: total, backbone, adapters (experts + routers), trainable, and active per token.

    ``active`` = backbone + routers + the top-k of E experts of every adapted layer (what one token uses).
    """
    layers = moe_lora_layers(model)
    total = sum(p.numel() for p in model.parameters())
    experts = sum(m.lora_A.numel() + m.lora_B.numel() for m in layers.values())
    routers = sum(p.numel() for m in layers.values() for p in m.router.parameters())
    active_experts = sum((m.lora_A.numel() + m.lora_B.numel()) * m.top_k // m.num_experts for m in layers.values())
    return {
        "total": total,
        "backbone": total - experts - routers,
        "experts": experts,
        "routers": routers,
        "adapters": experts + routers,
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "active": total - experts + active_experts,
        "adapted_layers": len(layers),
    }
