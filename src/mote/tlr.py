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
``d out / d p = out / p``. A Switch-style load-balancing loss (:func:`load_balancing_loss`) keeps the experts
used; the model stores it in ``features["router_aux_loss"]`` and the trainer adds it, weighted.

Dispatch: per layer the tokens are sorted by expert once (one stable ``argsort`` + ``bincount``), every expert
module runs one dense op per contiguous run of tokens (at most ``E``, only the experts hit) and scatters back.
Deterministic (argmax takes the first maximum), no Python loop over all experts, no per-token Python.

Hooks (for MoEE): the routers are plain ``nn.Linear`` modules named ``router``; a forward hook on one receives
the logits ``[batch, seq, E]`` of that layer (:func:`routers` lists them).

Example:
    >>> import mote, mote.tlr
    >>> model = mote.tlr.convert("all-MiniLM-L6-v2", placement="every-other")   # doctest: +SKIP
    >>> model.encode(["how do magnets work"], task="query").shape               # doctest: +SKIP
    (1, 384)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from sentence_transformers import SentenceTransformer
from torch import nn
from transformers import PreTrainedModel

from mote.experts import (
    Dispatch,
    ExpertLayerNorm,
    ExpertLinear,
    Segment,
    _get,
    _set,
    layer_slots,
    transformer_layers,
)
from mote.model import MoTETransformer, NotAMoTEModelError, register_module_class
from mote.model import convert as convert_mote
from mote.routing import RoutingTable

ROUTER_NAME = "router"
ROUTING_MODE = "token"


# ------------------------------------------------------------------------------------------------ dispatch
@dataclass(frozen=True)
class TokenPlan:
    """One layer's token routing: a stable sort of the flattened tokens by expert, its inverse, and the gate."""

    order: torch.Tensor | None  # (N,) token indices sorted by expert, None if already sorted
    inverse: torch.Tensor | None  # (N,)
    segments: tuple[Segment, ...]  # runs of the sorted tokens, one per expert hit
    gate: torch.Tensor  # (N,) p / p.detach(): 1 in value, carries the router gradient


class TokenDispatch(Dispatch):
    """Routing state of a TLR model: the current layer's :class:`TokenPlan`, set by that layer's router."""

    def __init__(self, num_experts: int) -> None:
        super().__init__()
        self.num_experts = num_experts
        self.plan: TokenPlan | None = None
        self.records: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    @contextlib.contextmanager
    def tokens(self) -> Iterator[list[tuple[torch.Tensor, torch.Tensor]]]:
        """Route tokens for one forward; yields the per-layer ``(probs [B,T,E], top [B,T])`` records."""
        previous = (self.plan, self.records)
        self.records = []
        try:
            yield self.records
        finally:
            self.plan, self.records = previous

    def route(self, x: torch.Tensor, router: nn.Module) -> None:
        """Top-1 routing of every token of ``x`` (B, T, H) with ``router``; installs the layer's plan."""
        if self.records is None:
            raise RuntimeError("TLR expert layers ran outside a routed forward: call the model via its TLR module")
        logits = router(x)  # (B, T, E): a forward hook on the router sees exactly this
        probs = torch.softmax(logits.float(), dim=-1)
        top = probs.argmax(dim=-1)  # (B, T), first maximum on ties: deterministic
        p_top = probs.gather(-1, top.unsqueeze(-1)).squeeze(-1)
        gate = (p_top / p_top.detach()).reshape(-1).to(x.dtype)
        flat = top.reshape(-1)
        counts = torch.bincount(flat, minlength=self.num_experts).tolist()  # one host read per layer
        grouped = bool((flat[1:] >= flat[:-1]).all()) if flat.numel() > 1 else True
        order = None if grouped else torch.argsort(flat, stable=True)
        inverse = None
        if order is not None:
            inverse = torch.empty_like(order)
            inverse[order] = torch.arange(order.numel(), device=order.device)
        segments, start = [], 0
        for e, n in enumerate(counts):
            if n:
                segments.append(Segment(e, start, start + n))
                start += n
        self.plan = TokenPlan(order, inverse, tuple(segments), gate)
        self.records.append((probs, top))

    def apply(self, x: torch.Tensor, fn, gate: bool = False) -> torch.Tensor:
        """``fn(tokens, expert)`` over each expert's tokens of ``x`` (B, T, D), back in token order."""
        plan = self.plan
        if plan is None:
            raise RuntimeError("TLR expert module ran before its layer's router")
        b, t, d = x.shape
        flat = x.reshape(b * t, d)
        xs = flat if plan.order is None else flat.index_select(0, plan.order)
        if len(plan.segments) == 1:
            out = fn(xs, plan.segments[0].expert)
        else:
            out = torch.cat([fn(xs[s.start : s.stop], s.expert) for s in plan.segments], dim=0)
        if plan.inverse is not None:
            out = out.index_select(0, plan.inverse)
        if gate:
            out = out * plan.gate.unsqueeze(-1)
        return out.reshape(b, t, -1)


class RoutedLayerNorm(ExpertLayerNorm):
    """Slot 0 of a TLR layer (attention-output LayerNorm): runs the layer's router, then its experts' norms."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.dispatch.route(x, self.__dict__["_router"])
        return self.dispatch.apply(x, self._one)


class TokenExpertLinear(ExpertLinear):
    """An FFN projection of a TLR layer: each token through its routed expert."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dispatch.apply(x, self._one)


class TokenExpertLayerNorm(ExpertLayerNorm):
    """The FFN-output LayerNorm of a TLR layer: each token through its expert, times the router gate."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dispatch.apply(x, self._one, gate=True)


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


def attach_routers(model: nn.Module, expert_layers: Sequence[int], num_experts: int, init_std: float = 0.02):
    """Turn the expert layers of an upcycled HF encoder into TLR layers, in place; returns the dispatch."""
    dispatch = TokenDispatch(num_experts)
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
            new.dispatch = dispatch
            _set(layer, path, new)
        _get(layer, slots[0]).__dict__["_router"] = router  # a reference, not a second registration
    return dispatch


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
def load_balancing_loss(
    probs: torch.Tensor, top: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Switch Transformer load-balancing loss ``E * sum_e f_e * P_e`` of one layer (1 at perfect balance).

    ``f_e``: fraction of (unmasked) tokens routed to expert ``e``; ``P_e``: mean router probability of ``e``.

    Args:
        probs: (B, T, E) router probabilities. top: (B, T) chosen experts. mask: (B, T) attention mask.

    Example:
        >>> p = torch.full((1, 4, 2), 0.5); load_balancing_loss(p, torch.tensor([[0, 1, 0, 1]])).item()
        1.0
    """
    e = probs.shape[-1]
    p = probs.reshape(-1, e)
    m = torch.ones(p.shape[0], dtype=p.dtype, device=p.device) if mask is None else mask.reshape(-1).to(p.dtype)
    denom = m.sum().clamp_min(1.0)
    f = torch.zeros(e, dtype=p.dtype, device=p.device).index_add_(0, top.reshape(-1), m) / denom
    mean_p = (p * m.unsqueeze(-1)).sum(0) / denom
    return e * (f * mean_p).sum()


def mean_load_balancing_loss(records, mask: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`load_balancing_loss` averaged over the layers of one forward."""
    return torch.stack([load_balancing_loss(p, t, mask) for p, t in records]).mean()


# ------------------------------------------------------------------------------------------------ module
class TLRTransformer(MoTETransformer):
    """A MoTE module whose expert layers route tokens with learned routers (see the module doc).

    Preprocessing is MoTE's (task prefixes prepended, ``task_ids`` stamped); routing ignores the task.
    """

    def get_config_dict(self) -> dict[str, Any]:
        return {**super().get_config_dict(), "routing_mode": ROUTING_MODE}

    def forward(self, features: dict[str, Any], task: str | None = None, **kwargs) -> dict[str, Any]:
        inputs = {k: features[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in features}
        with self.dispatch.tokens() as records:
            hidden = self.auto_model(**inputs, return_dict=True).last_hidden_state  # (B, T, H)
        features["token_embeddings"] = hidden
        if torch.is_grad_enabled() and records:
            features["router_aux_loss"] = mean_load_balancing_loss(records, features.get("attention_mask"))
        return features

    @contextlib.contextmanager
    def routed(self, task: str | None = None) -> Iterator[None]:
        """Route direct ``self.auto_model(...)`` calls token by token (``task`` is ignored)."""
        with self.dispatch.tokens():
            yield

    @classmethod
    def from_mote(cls, module: MoTETransformer) -> TLRTransformer:
        """Attach routers to an (upcycled) MoTE module's encoder, in place, and wrap it as a TLR module."""
        if isinstance(module, TLRTransformer):
            return module
        dispatch = attach_routers(module.auto_model, module.expert_layers, module.num_experts)
        return cls(
            module.auto_model, module.tokenizer, module.routing, module.max_seq_length, module.do_lower_case, dispatch
        )

    @classmethod
    def _checked_config(cls, config: dict | None, name: str) -> dict:
        if not config or config.get("routing_mode") != ROUTING_MODE:
            raise NotAMoTEModelError(f"{name!r} is not a token-routed (TLR) MoTE model")
        return super()._checked_config(config, name)

    @classmethod
    def _add_experts(cls, model: PreTrainedModel, config: dict) -> Dispatch:
        super()._add_experts(model, config)  # the stacked experts; their routers come next
        return attach_routers(model, config["expert_layers"], int(config["num_experts"]))

    def __repr__(self) -> str:
        return super().__repr__().replace("MoTETransformer(", "TLRTransformer(routing=token, ", 1)


def to_token_routing(model: SentenceTransformer) -> SentenceTransformer:
    """Turn a fresh MoTE ``SentenceTransformer`` into a TLR one, in place (its first module is replaced)."""
    first = model[0]
    if not isinstance(first, MoTETransformer):
        raise NotAMoTEModelError(f"Expected a MoTE model, got a {type(first).__name__} first module")
    name = next(iter(model._modules))
    model._modules[name] = TLRTransformer.from_mote(first)
    return model


def convert(
    base: str | os.PathLike | SentenceTransformer,
    placement: str | Sequence[int] = "every-other",
    routing: RoutingTable | None = None,
    device: str | None = "cpu",
) -> SentenceTransformer:
    """Upcycle a dense encoder into a TLR model: :func:`mote.convert` plus one router per expert layer."""
    return to_token_routing(convert_mote(base, placement, routing, device))


register_module_class(TLRTransformer)  # SentenceTransformer(path) loads TLR folders once mote.tlr is imported

__all__ = [
    "ROUTER_NAME",
    "RoutedLayerNorm",
    "TLRTransformer",
    "TokenDispatch",
    "TokenExpertLayerNorm",
    "TokenExpertLinear",
    "attach_routers",
    "convert",
    "load_balancing_loss",
    "mean_load_balancing_loss",
    "routers",
    "to_token_routing",
]
