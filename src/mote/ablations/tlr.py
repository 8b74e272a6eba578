"""Token-level routing (TLR): the MoTE paper's ablation, a learned top-1 router over the same upcycled experts.

Where MoTE routes a whole sequence by its task, a TLR layer routes every *token* with a learned router
(``nn.Linear(hidden, num_experts, bias=False)``, one per expert layer, registered as ``encoder.layer[i].router``).
The router reads the layer's pre-norm residual stream (the input of the attention-output LayerNorm, where the
expert begins), picks the top-1 expert per token, and that token then runs through that expert's four modules
(both LayerNorms and the FFN). Instruction prefixes are prepended exactly as in MoTE, but they do not choose the
expert.

Gate. Switch Transformers multiply an expert's output by its router probability ``p``; here the layer output of a
token is multiplied by ``p / p.detach()``, which is exactly 1 in the forward pass (so a fresh TLR model computes
exactly the dense model's function, like a fresh MoTE model) and gives the router the Switch gradient
``d out / d p = out / p``. A Switch-style load-balancing loss (:func:`mote.load_balancing.load_balancing_loss`)
keeps the experts used; the model stores it in ``features["router_aux_loss"]`` and the trainer adds it, weighted.

Dispatch, with no host sync: per layer the router's choices become a device-side :class:`TokenPlan` once (a
stable ``argsort`` of the tokens by expert, its inverse, and each expert's end offset by ``searchsorted``). Each
FFN projection gathers the tokens in expert order, runs one ``torch.nn.functional.grouped_mm`` over the jagged
groups (only the experts hit do work) and scatters back; each norm normalises once and applies every token's
expert affine as one gathered op. Where ``grouped_mm`` has no kernel (device, dtype, or widths that are not
16-byte multiples) the projections run one ``F.linear`` per expert hit instead, which reads the group sizes on
the host once per layer (logged once). Deterministic (argmax takes the first maximum), no Python loop over all
experts, no per-token Python. The routing of a forward lives in the model's
:class:`~mote.experts.RoutingContext`: concurrent forwards on one model never see each other's plans.

Hooks (for MoEE): the routers are plain ``nn.Linear`` modules named ``router``; a forward hook on one receives
the logits ``[batch, seq, E]`` of that layer (:func:`routers` lists them).

Example:
    >>> from mote.ablations import tlr
    >>> model = tlr.convert("all-MiniLM-L6-v2", placement="every-other")        # doctest: +SKIP
    >>> model.encode(["how do magnets work"], task="query").shape               # doctest: +SKIP
    (1, 384)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from sentence_transformers import SentenceTransformer
from torch import nn
from transformers import PreTrainedModel

from mote.api import convert as convert_mote
from mote.experts import (
    ExpertLayerNorm,
    ExpertLinear,
    RoutingContext,
    _get,
    _set,
    grouped_mm_aligned,
    grouped_mm_available,
    layer_slots,
    transformer_layers,
)
from mote.load_balancing import load_balancing_loss
from mote.model import MoTETransformer, NotAMoTEModelError, register_module_class
from mote.routing import RoutingTable
from mote.task_calls import refuse_sorted_task_list

ROUTER_NAME = "router"
ROUTING_MODE = "token"


# ------------------------------------------------------------------------------------------------ dispatch
@dataclass(frozen=True)
class TokenPlan:
    """One layer's token routing, all on the device: the tokens sorted by expert, and the gate."""

    top: torch.Tensor  # (N,) each token's expert
    order: torch.Tensor  # (N,) token indices sorted (stably) by expert
    inverse: torch.Tensor  # (N,) position of each token in ``order``
    sorted_top: torch.Tensor  # (N,) the experts in sorted order (``top[order]``)
    offsets: torch.Tensor  # (E,) int32: end of each expert's run of sorted tokens (grouped_mm's ``offs``)
    gate: torch.Tensor  # (N,) p / p.detach(): 1 in value, carries the router gradient

    @classmethod
    def of(cls, top: torch.Tensor, gate: torch.Tensor, num_experts: int) -> TokenPlan:
        flat = top.reshape(-1)
        order = torch.argsort(flat, stable=True)
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(order.numel(), device=order.device)
        sorted_top = flat.index_select(0, order)
        experts = torch.arange(num_experts, device=flat.device, dtype=flat.dtype)
        offsets = torch.searchsorted(sorted_top, experts, right=True).to(torch.int32)
        return cls(flat, order, inverse, sorted_top, offsets, gate)


class TokenRoute:
    """The token routing of one TLR forward: the current layer's :class:`TokenPlan` (set by that layer's router,
    read by the layer's expert modules) and the per-layer ``(probs [B,T,E], top [B,T])`` records."""

    def __init__(self) -> None:
        self.plan: TokenPlan | None = None
        self.records: list[tuple[torch.Tensor, torch.Tensor]] = []

    def route(self, x: torch.Tensor, router: nn.Module) -> None:
        """Top-1 routing of every token of ``x`` (B, T, H) with ``router``; installs the layer's plan."""
        logits = router(x)  # (B, T, E): a forward hook on the router sees exactly this
        probs = torch.softmax(logits.float(), dim=-1)
        top = probs.argmax(dim=-1)  # (B, T), first maximum on ties: deterministic
        p_top = probs.gather(-1, top.unsqueeze(-1)).squeeze(-1)
        gate = (p_top / p_top.detach()).reshape(-1).to(x.dtype)
        self.plan = TokenPlan.of(top, gate, probs.shape[-1])
        self.records.append((probs, top))

    def current(self) -> TokenPlan:
        if self.plan is None:
            raise RuntimeError("TLR expert module ran before its layer's router")
        return self.plan


class _TokenRouted:
    """Mixin of the TLR modules: the forward's :class:`TokenRoute` from the model's routing context."""

    def _token_route(self) -> TokenRoute:
        route = self.routing_context.get()
        if not isinstance(route, TokenRoute):
            raise RuntimeError("TLR expert layers ran outside a routed forward: call the model via its TLR module")
        return route


class RoutedLayerNorm(_TokenRouted, ExpertLayerNorm):
    """Slot 0 of a TLR layer (attention-output LayerNorm): runs the layer's router, then its experts' norms."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        route = self._token_route()
        route.route(x, self.__dict__["_router"])
        return _token_norm(self, x, route.current())


class TokenExpertLinear(_TokenRouted, ExpertLinear):
    """An FFN projection of a TLR layer: each token through its routed expert."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plan = self._token_route().current()
        b, t, _ = x.shape
        xs = x.reshape(b * t, self.in_features).index_select(0, plan.order)  # (N, in), sorted by expert
        if grouped_mm_aligned(x, self.in_features, self.out_features) and grouped_mm_available(x.device, x.dtype):
            out = F.grouped_mm(xs, self.weight.transpose(1, 2), offs=plan.offsets)  # (N, out)
            if self.bias is not None:
                out = out + self.bias.index_select(0, plan.sorted_top)
        else:  # one dense op per expert hit; the group sizes are read on the host (once per projection)
            ends = [0, *plan.offsets.tolist()]
            out = torch.cat([self._one(xs[ends[e]:ends[e + 1]], e) for e in range(self.num_experts)
                             if ends[e + 1] > ends[e]], dim=0)
        return out.index_select(0, plan.inverse).view(b, t, self.out_features)


class TokenExpertLayerNorm(_TokenRouted, ExpertLayerNorm):
    """The FFN-output LayerNorm of a TLR layer: each token through its expert, times the router gate."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plan = self._token_route().current()
        return _token_norm(self, x, plan) * plan.gate.view(*x.shape[:-1], 1)


def _token_norm(norm: ExpertLayerNorm, x: torch.Tensor, plan: TokenPlan) -> torch.Tensor:
    """Normalise every token once, then its own expert's affine (one gathered op; no sort needed)."""
    normed = F.layer_norm(x, (norm.hidden,), None, None, norm.eps)
    shape = (*x.shape[:-1], norm.hidden)
    weight = norm.weight.index_select(0, plan.top).view(shape)
    bias = norm.bias.index_select(0, plan.top).view(shape)
    return torch.addcmul(bias, normed, weight)


_TOKEN_CLASSES = (RoutedLayerNorm, TokenExpertLinear, TokenExpertLinear, TokenExpertLayerNorm)


def _token_twin(old: ExpertLinear | ExpertLayerNorm, cls: type) -> nn.Module:
    """A token-routed module sharing ``old``'s parameters."""
    if issubclass(cls, ExpertLinear):
        new = cls(old.num_experts, old.in_features, old.out_features, bias=old.bias is not None)
    else:
        new = cls(old.num_experts, old.hidden, eps=old.eps)
    new.weight = old.weight
    new.bias = old.bias
    return new


def attach_routers(
    model: nn.Module,
    expert_layers: Sequence[int],
    num_experts: int,
    init_std: float = 0.02,
    routing_context: RoutingContext | None = None,
) -> RoutingContext:
    """Turn the expert layers of an upcycled HF encoder into TLR layers, in place; returns their routing context."""
    context = routing_context if routing_context is not None else RoutingContext()
    slots = layer_slots(model)
    layers = transformer_layers(model)
    hidden = int(model.config.hidden_size)
    for i in expert_layers:
        layer = layers[i]
        ref = _get(layer, slots[0])
        router = nn.Linear(hidden, num_experts, bias=False).to(dtype=ref.weight.dtype, device=ref.weight.device)
        nn.init.normal_(router.weight, std=init_std)
        layer.add_module(ROUTER_NAME, router)
        for path, cls in zip(slots, _TOKEN_CLASSES):
            old = _get(layer, path)
            if not isinstance(old, ExpertLinear | ExpertLayerNorm):
                raise ValueError(f"Layer {i}: {path} is not an expert module; upcycle the model first")
            new = _token_twin(old, cls)
            new.routing_context = context
            _set(layer, path, new)
        _get(layer, slots[0]).__dict__["_router"] = router  # a reference, not a second registration
    return context


def routers(model: nn.Module) -> dict[int, nn.Linear]:
    """``{layer index: router}`` of a TLR encoder (a ``SentenceTransformer``, TLR module or HF model)."""
    if isinstance(model, SentenceTransformer):
        model = model[0]
    if isinstance(model, MoTETransformer):
        model = model.auto_model
    return {
        i: layer.get_submodule(ROUTER_NAME)
        for i, layer in enumerate(transformer_layers(model))
        if isinstance(getattr(layer, ROUTER_NAME, None), nn.Linear)
    }


# ------------------------------------------------------------------------------------------------ loss
def mean_load_balancing_loss(
    records: Sequence[tuple[torch.Tensor, torch.Tensor]], mask: torch.Tensor | None = None
) -> torch.Tensor:
    """The Switch load-balancing loss (:func:`mote.load_balancing.load_balancing_loss`) of each layer's
    ``(probs [B,T,E], top [B,T])`` record, averaged over the layers of one forward."""
    return torch.stack([load_balancing_loss(p, t, mask) for p, t in records]).mean()


# ------------------------------------------------------------------------------------------------ module
class TLRTransformer(MoTETransformer):
    """A MoTE module whose expert layers route tokens with learned routers (see the module doc).

    Preprocessing is MoTE's (task prefixes prepended, ``task_ids`` stamped); routing ignores the task.
    """

    routing_mode: ClassVar[str] = ROUTING_MODE

    def get_config_dict(self) -> dict[str, Any]:
        return {**super().get_config_dict(), "routing_mode": ROUTING_MODE}

    def forward(self, features: dict[str, Any], task: str | None = None, **kwargs) -> dict[str, Any]:
        refuse_sorted_task_list(task)  # the task sets each text's prefix: a list must follow its texts
        inputs = {k: features[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in features}
        with self.routing_context.use(TokenRoute()) as route:
            hidden = self.auto_model(**inputs, return_dict=True).last_hidden_state  # (B, T, H)
        features["token_embeddings"] = hidden
        if torch.is_grad_enabled() and route.records:
            features["router_aux_loss"] = mean_load_balancing_loss(route.records, features.get("attention_mask"))
        return features

    @contextlib.contextmanager
    def routed(self, task: str | None = None) -> Iterator[None]:
        """Route direct ``self.auto_model(...)`` calls in this block token by token (``task`` is ignored)."""
        with self.routing_context.use(TokenRoute()):
            yield

    @classmethod
    def from_mote(cls, module: MoTETransformer) -> TLRTransformer:
        """Attach routers to an (upcycled) MoTE module's encoder, in place, and wrap it as a TLR module."""
        if isinstance(module, TLRTransformer):
            return module
        context = attach_routers(module.auto_model, module.expert_layers, module.num_experts)
        return cls(
            module.auto_model, module.tokenizer, module.routing, module.max_seq_length, module.do_lower_case, context
        )

    @classmethod
    def _checked_config(cls, config: dict | None, name: str) -> dict:
        if not config or config.get("routing_mode") != ROUTING_MODE:
            raise NotAMoTEModelError(f"{name!r} is not a token-routed (TLR) MoTE model")
        return super()._checked_config(config, name)

    @classmethod
    def _add_experts(cls, model: PreTrainedModel, config: dict) -> RoutingContext:
        super()._add_experts(model, config)  # the stacked experts; their routers come next
        return attach_routers(model, config["expert_layers"], int(config["num_experts"]))

    def __repr__(self) -> str:
        return super().__repr__().replace("MoTETransformer(", "TLRTransformer(routing=token, ", 1)


def to_token_routing(model: SentenceTransformer) -> SentenceTransformer:
    """Turn a fresh MoTE ``SentenceTransformer`` into a TLR one, in place (its first module is replaced)."""
    first = model[0]
    if not isinstance(first, MoTETransformer):
        raise NotAMoTEModelError(f"Expected a MoTE model, got a {type(first).__name__} first module")
    name = next(name for name, _ in model.named_children())
    setattr(model, name, TLRTransformer.from_mote(first))  # nn.Module replaces the registered child
    return model


def convert(
    base: str | os.PathLike | SentenceTransformer,
    placement: str | Sequence[int] = "every-other",
    routing: RoutingTable | None = None,
    device: str | None = "cpu",
) -> SentenceTransformer:
    """Upcycle a dense encoder into a TLR model: :func:`mote.convert` plus one router per expert layer."""
    return to_token_routing(convert_mote(base, placement, routing, device))


register_module_class(TLRTransformer)  # SentenceTransformer(path) loads TLR folders (import mote registers it lazily)

__all__ = [
    "ROUTER_NAME",
    "RoutedLayerNorm",
    "TLRTransformer",
    "TokenExpertLayerNorm",
    "TokenExpertLinear",
    "TokenPlan",
    "TokenRoute",
    "attach_routers",
    "convert",
    "load_balancing_loss",
    "mean_load_balancing_loss",
    "routers",
    "to_token_routing",
]
