"""Reaching the routers: router-logit capture, pooling and the one forward pass that yields HS and RW.

Two ways to read router logits, tried in this order (``capture="auto"``):

1. ``output_router_logits=True``: transformers v5 records them for every MoE family that lists ``router_logits``
   in ``_can_record_outputs`` (OLMoE, Qwen2/3-MoE, Mixtral, DeepSeek-V2/V3, ...): one ``[B*T, E]`` tensor per MoE
   layer, in layer order, dense layers skipped.
2. Forward hooks on router modules, for everything else (remote-code models, this project's token-routed MoTE
   ``tlr`` models): modules whose name matches ``router_pattern`` (default: named ``gate`` or ``router``) and that are
   a ``nn.Linear`` with ``out_features`` = number of experts, or hold a ``[num_experts, hidden]`` weight. A router
   whose output is not its logits (e.g. a gate returning only top-k indices and weights) has them recomputed from
   its input and weight.

Example:
    >>> layout = router_layout(model)                        # doctest: +SKIP
    >>> layout.method, layout.widths                         # doctest: +SKIP
    ('router_logits', [64, 64, ...])
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_ROUTER_NAMES: tuple[str, ...] = ("gate", "router")
_EXPERT_COUNT_KEYS: tuple[str, ...] = ("num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts")


class NoRouterError(ValueError):
    """The model exposes no router logits that MoEE can read."""


@dataclass
class RouterLayout:
    """Where the RW features come from: capture method, router names (layer order) and their widths."""

    method: str
    names: list[str]
    widths: list[int] = field(default_factory=list)

    @property
    def rw_dim(self) -> int:
        return sum(self.widths)

    def describe(self) -> str:
        rows = ", ".join(f"{n} ({w})" for n, w in zip(self.names, self.widths))
        return f"{len(self.widths)} MoE layers via {self.method}, RW dim {self.rw_dim}: {rows}"


# ------------------------------------------------------------------------------------------------ model facts
def model_class_name(model: nn.Module) -> str:
    """``"SentenceTransformer[MoTETransformer(BertModel)]"``-style name of a model, for error messages."""
    first = _first_module(model)
    if first is not None:
        inner = getattr(first, "auto_model", None)
        inner_name = f"({type(inner).__name__})" if inner is not None else ""
        return f"{type(model).__name__}[{type(first).__name__}{inner_name}]"
    return type(model).__name__


def _first_module(model: nn.Module) -> nn.Module | None:
    """The input module of a sentence-transformers model, else ``None``."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:  # pragma: no cover
        return None
    if isinstance(model, SentenceTransformer):
        return model[0] if len(model) else None
    return None


def hf_model_of(model: nn.Module) -> nn.Module:
    """The Hugging Face model inside a sentence-transformers model (its ``auto_model``), else ``model``."""
    first = _first_module(model)
    return getattr(first, "auto_model", model) if first is not None else model


def base_model_of(model: nn.Module) -> nn.Module:
    """The backbone of a ``*ForCausalLM`` (no LM head: its ``[B, T, vocab]`` logits are never needed)."""
    prefix = getattr(model, "base_model_prefix", None)
    inner = getattr(model, prefix, None) if prefix else None
    return inner if isinstance(inner, nn.Module) and inner is not model else model


def is_decoder(model: nn.Module) -> bool:
    """True if any attention module of ``model`` is causal (decoder LMs); False for bidirectional encoders."""
    return any(getattr(m, "is_causal", False) is True for m in model.modules())


def expected_num_experts(model: nn.Module) -> int | None:
    """The routed-expert count from the model config (``num_experts``, ``num_local_experts``, ...), if any."""
    config = getattr(model, "config", None)
    for key in _EXPERT_COUNT_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 1:
            return value
    return None


def records_router_logits(model: nn.Module) -> bool:
    """Whether transformers records ``router_logits`` for this model (``output_router_logits=True`` works)."""
    return "router_logits" in (getattr(model, "_can_record_outputs", None) or {})


def _router_width(module: nn.Module) -> int | None:
    if isinstance(module, nn.Linear):
        return module.out_features
    weight = getattr(module, "weight", None)
    if isinstance(weight, torch.Tensor) and weight.dim() == 2:
        return int(weight.shape[0])
    return None


def find_router_modules(
    model: nn.Module, pattern: str | None = None, num_experts: int | None = None
) -> list[tuple[str, nn.Module, int]]:
    """``(name, module, width)`` of the router modules of ``model``, in module (= layer) order.

    A module qualifies if its qualified name matches ``pattern`` (``re.search``; default: the last name component
    is ``gate`` or ``router``) and it is a ``nn.Linear`` or holds a 2-D weight whose first dimension (number of
    experts) is ``num_experts`` (default: from the model config; any width >= 2 if the config has none).
    """
    num_experts = num_experts or expected_num_experts(model)
    regex = re.compile(pattern) if pattern else None
    found = []
    for name, module in model.named_modules():
        if regex is not None:
            if not regex.search(name):
                continue
        elif name.rsplit(".", 1)[-1] not in DEFAULT_ROUTER_NAMES:
            continue
        width = _router_width(module)
        if width is None or width < 2 or (num_experts is not None and width != num_experts):
            continue
        found.append((name, module, width))
    return found


def no_router_error(model: nn.Module, pattern: str | None, num_experts: int | None) -> NoRouterError:
    what = f"modules matching {pattern!r}" if pattern else f"modules named {' / '.join(DEFAULT_ROUTER_NAMES)}"
    width = f"{num_experts} (the number of experts)" if num_experts else ">= 2"
    return NoRouterError(
        f"{model_class_name(model)} has no reachable router: transformers does not record router_logits for it "
        f"(no 'router_logits' in _can_record_outputs) and it has no {what} that are nn.Linear (or hold a 2-D weight) "
        f"with {width} outputs. MoEE needs a mixture-of-experts model with learned routers; pass "
        "router_pattern='<regex on module names>' (and num_experts=...) to name its router modules."
    )


# ------------------------------------------------------------------------------------------------ capture
class HookCapture:
    """Forward hooks that record each router's logits during one forward pass (module order = layer order)."""

    def __init__(self, routers: list[tuple[str, nn.Module, int]]) -> None:
        self.routers = routers
        self.outputs: list[list[torch.Tensor]] = [[] for _ in routers]

    @contextlib.contextmanager
    def active(self) -> Iterator[HookCapture]:
        self.outputs = [[] for _ in self.routers]
        handles = [
            module.register_forward_hook(self._hook(i, module, width))
            for i, (_, module, width) in enumerate(self.routers)
        ]
        try:
            yield self
        finally:
            for h in handles:
                h.remove()

    def _hook(self, i: int, module: nn.Module, width: int):
        def hook(mod, inputs, output):
            self.outputs[i].append(router_logits_of(module, inputs, output, width))

        return hook

    def logits(self) -> list[torch.Tensor]:
        bad = [(self.routers[i][0], len(o)) for i, o in enumerate(self.outputs) if len(o) != 1]
        if bad:
            raise RuntimeError(
                f"Each router must run exactly once per forward pass; got calls {bad}. Restrict router_pattern to "
                "the per-layer routers."
            )
        return [o[0] for o in self.outputs]


def router_logits_of(module: nn.Module, inputs: tuple, output, width: int) -> torch.Tensor:
    """A router's logits from its forward: its output (or output[0]) if that is a float ``[..., width]`` tensor,
    else recomputed as ``F.linear(input, weight, bias)`` (gates that return only top-k choices)."""
    out = output[0] if isinstance(output, tuple | list) and output else output
    if isinstance(out, torch.Tensor) and out.is_floating_point() and out.shape[-1] == width:
        return out
    x = inputs[0]
    weight = module.weight
    bias = getattr(module, "bias", None)
    return F.linear(x.to(weight.dtype), weight, bias if isinstance(bias, torch.Tensor) else None)


# ------------------------------------------------------------------------------------------------ pooling
def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last real token of each row (works for left and right padding). ``mask``: ``[B, T]``."""
    t = mask.shape[1]
    return (t - 1) - mask.flip(-1).to(torch.long).argmax(-1)


def pool(x: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """``[B, T, D] -> [B, D]``: the last real token (``last``) or the mean over real tokens (``mean``)."""
    if how == "last":
        return x[torch.arange(x.shape[0], device=x.device), last_token_index(mask)]
    if how == "mean":
        m = mask.to(x.dtype).unsqueeze(-1)
        return (x * m).sum(1) / m.sum(1).clamp(min=1)
    raise ValueError(f"pooling must be 'last' or 'mean', got {how!r}")


def router_scores(logits: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-token router scores from logits: ``softmax`` / ``logits`` / ``sigmoid`` (float32)."""
    logits = logits.float()
    if kind == "softmax":
        return torch.softmax(logits, dim=-1)
    if kind == "sigmoid":
        return torch.sigmoid(logits)
    if kind == "logits":
        return logits
    raise ValueError(f"rw_scores must be softmax, logits or sigmoid, got {kind!r}")


def as_btE(logits: torch.Tensor, batch: int, length: int, name: str) -> torch.Tensor:
    """Reshape one router's ``[B*T, E]`` (or ``[B, T, E]``) logits to ``[B, T, E]``."""
    width = logits.shape[-1]
    if logits.numel() != batch * length * width:
        raise RuntimeError(
            f"Router {name} produced logits of shape {tuple(logits.shape)}; expected one row per token "
            f"({batch}x{length} tokens). Routers that see only some tokens (e.g. unpadded/packed inputs) are not "
            "supported."
        )
    return logits.reshape(batch, length, width)


__all__ = [
    "DEFAULT_ROUTER_NAMES",
    "HookCapture",
    "NoRouterError",
    "RouterLayout",
    "as_btE",
    "base_model_of",
    "expected_num_experts",
    "find_router_modules",
    "hf_model_of",
    "is_decoder",
    "last_token_index",
    "model_class_name",
    "no_router_error",
    "pool",
    "records_router_logits",
    "router_logits_of",
    "router_scores",
]
