"""Task experts: stacked expert weights that replace a transformer block's FFN and its two norms.

A MoTE block keeps the pretrained self-attention and swaps four modules of the layer for expert-stacked twins:

    attention-output LayerNorm  -> ExpertLayerNorm   weight [E, H]
    FFN up projection           -> ExpertLinear      weight [E, I, H]
    FFN down projection         -> ExpertLinear      weight [E, H, I]
    FFN-output LayerNorm        -> ExpertLayerNorm   weight [E, H]

Together they are the layer's Task-Experts module: expert ``e`` of a layer is slice ``e`` of all four. The modules
keep the original attribute names, so the state-dict keys stay the dense model's keys with a leading ``E``
dimension, and exporting a task is ``weight[e]`` (see :mod:`mote.export`).

Routing is per sequence. The model plans a batch's groups of rows on the host once per forward (see
:func:`plan_segments`) and installs them as the forward's :class:`SequenceRoute`; every expert module then runs one
dense matmul per contiguous group of rows: no Python loop over all experts, no per-layer host sync, and a
task-homogeneous batch costs exactly one ``F.linear`` like the dense model.

The routing of a forward is local to it: it lives in a context variable (:class:`RoutingContext`), set for the
duration of that forward, so threads (or asyncio tasks) that share one model never see each other's routing.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

# Where the four expert slots live inside one transformer layer, per Hugging Face model family.
# (attention-output norm, FFN up, FFN down, FFN-output norm)
LAYER_SLOTS: dict[str, tuple[str, str, str, str]] = {
    "bert": ("attention.output.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm"),
    "mpnet": ("attention.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm"),
}
for _alias in ("roberta", "xlm-roberta", "camembert", "electra", "ernie"):
    LAYER_SLOTS[_alias] = LAYER_SLOTS["bert"]


@dataclass(frozen=True)
class Segment:
    """Rows ``[start, stop)`` of the (expert-sorted) batch go through ``expert``."""

    expert: int
    start: int
    stop: int


# Routing of the forwards running in the current thread / asyncio task: {id(RoutingContext): route}. Immutable
# mappings, replaced (never changed) on entry to a forward and restored on exit.
_ROUTES: contextvars.ContextVar[Mapping[int, Any]] = contextvars.ContextVar(
    "mote_routes", default=MappingProxyType({})
)


class RoutingContext:
    """Where the routed layers of one model find the routing of the forward that is running.

    It holds no routing itself: :meth:`use` installs a route in a context variable for the duration of a
    ``with`` block, and :meth:`get` reads it back. A context variable is local to its thread (and asyncio task),
    so concurrent forwards on one model each see their own route. Every routed module of a model holds a
    reference to the model's ``RoutingContext`` (its key among the routes of nested forwards of other models).

    Example:
        >>> ctx = RoutingContext()
        >>> with ctx.use("route of this forward"):
        ...     ctx.get()
        'route of this forward'
        >>> ctx.get() is None
        True
    """

    @contextlib.contextmanager
    def use(self, route: Any) -> Iterator[Any]:
        token = _ROUTES.set(MappingProxyType({**_ROUTES.get(), id(self): route}))
        try:
            yield route
        finally:
            _ROUTES.reset(token)

    def get(self) -> Any:
        """The route installed by the innermost :meth:`use` of this thread / task, or ``None``."""
        return _ROUTES.get().get(id(self))

    def __deepcopy__(self, memo: dict) -> RoutingContext:
        return RoutingContext()  # a copied model is another model: its own key (shared by its modules via memo)


@dataclass(frozen=True)
class SequenceRoute:
    """The routing of one MoTE forward: the batch's ``segments`` (rows grouped by expert) and, for a batch with
    several experts, ``rows``: each row's expert as a device tensor (lets the norms run as one gathered op)."""

    segments: tuple[Segment, ...]
    rows: torch.Tensor | None = None


def plan_segments(experts: Sequence[int]) -> tuple[list[int] | None, list[Segment]]:
    """Group a batch by expert on the host: ``(order or None if already grouped, segments)``.

    ``experts[i]`` is row ``i``'s expert. ``order`` is a stable permutation that makes rows of one expert
    contiguous; it is ``None`` when the batch is already grouped (the common, task-homogeneous case).

    Example:
        >>> plan_segments([2, 0, 2])
        ([1, 0, 2], [Segment(expert=0, start=0, stop=1), Segment(expert=2, start=1, stop=3)])
    """
    n = len(experts)
    if n == 0:
        return None, []
    grouped = all(experts[i] <= experts[i + 1] for i in range(n - 1))
    order = None if grouped else sorted(range(n), key=experts.__getitem__)
    ordered = experts if order is None else [experts[i] for i in order]
    segments: list[Segment] = []
    start = 0
    for i in range(1, n + 1):
        if i == n or ordered[i] != ordered[start]:
            segments.append(Segment(ordered[start], start, i))
            start = i
    return order, segments


_NO_TASK = (
    "MoTE expert layers ran without a task. Call the model through MoTETransformer (e.g. "
    "SentenceTransformer.encode(texts, task=...)), or wrap a direct Hugging Face forward in "
    "`with module.routed(task): ...`."
)


class _ExpertModule(nn.Module):
    routing_context: RoutingContext

    def _route(self) -> SequenceRoute:
        route = self.routing_context.get()
        if route is None:
            raise RuntimeError(_NO_TASK)
        return route

    def _apply_grouped(self, x: torch.Tensor, fn, segments: Sequence[Segment]) -> torch.Tensor:
        if len(segments) == 1:  # task-homogeneous batch: exactly the dense cost
            return fn(x, segments[0].expert)
        # x: (B, T, D) sorted by expert; one dense op per contiguous group, concatenated back in order
        return torch.cat([fn(x[s.start : s.stop], s.expert) for s in segments], dim=0)


class ExpertLinear(_ExpertModule):
    """``E`` stacked copies of a ``nn.Linear``: weight ``[E, out, in]``, bias ``[E, out]``."""

    def __init__(self, num_experts: int, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.num_experts, self.in_features, self.out_features = num_experts, in_features, out_features
        self.weight = nn.Parameter(torch.empty(num_experts, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(num_experts, out_features)) if bias else None

    @classmethod
    def upcycle(cls, dense: nn.Linear, num_experts: int) -> ExpertLinear:
        """Every expert an exact copy of ``dense``."""
        new = cls(num_experts, dense.in_features, dense.out_features, bias=dense.bias is not None)
        with torch.no_grad():
            new.weight.copy_(dense.weight.detach().unsqueeze(0).expand_as(new.weight))
            if dense.bias is not None:
                new.bias.copy_(dense.bias.detach().unsqueeze(0).expand_as(new.bias))
        return new.to(dtype=dense.weight.dtype, device=dense.weight.device)

    def expert_module(self, expert: int) -> nn.Linear:
        """Expert ``expert`` as a plain ``nn.Linear`` (a copy)."""
        dense = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
        with torch.no_grad():
            dense.weight.copy_(self.weight[expert])
            if self.bias is not None:
                dense.bias.copy_(self.bias[expert])
        return dense.to(dtype=self.weight.dtype, device=self.weight.device)

    def _one(self, x: torch.Tensor, e: int) -> torch.Tensor:
        return F.linear(x, self.weight[e], None if self.bias is None else self.bias[e])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        segments = self._route().segments
        if len(segments) == 1 or torch.is_grad_enabled():
            return self._apply_grouped(x, self._one, segments)
        # Inference on a mixed batch: each group's matmul writes straight into its rows of one output buffer
        # (no concatenation copy). x: (B, T, in) sorted by expert -> out: (B, T, out)
        out = x.new_empty(*x.shape[:-1], self.out_features)
        flat_out = out.view(x.shape[0], -1, self.out_features)
        for s in segments:
            xs = x[s.start : s.stop].reshape(-1, self.in_features)  # (rows * T, in)
            dst = flat_out[s.start : s.stop].view(-1, self.out_features)
            if self.bias is None:
                torch.mm(xs, self.weight[s.expert].t(), out=dst)
            else:
                torch.addmm(self.bias[s.expert], xs, self.weight[s.expert].t(), out=dst)
        return out

    def extra_repr(self) -> str:
        return f"experts={self.num_experts}, in={self.in_features}, out={self.out_features}"


class ExpertLayerNorm(_ExpertModule):
    """``E`` stacked copies of a ``nn.LayerNorm``: weight and bias ``[E, H]``."""

    def __init__(self, num_experts: int, hidden: int, eps: float = 1e-12) -> None:
        super().__init__()
        self.num_experts, self.hidden, self.eps = num_experts, hidden, eps
        self.weight = nn.Parameter(torch.ones(num_experts, hidden))
        self.bias = nn.Parameter(torch.zeros(num_experts, hidden))

    @classmethod
    def upcycle(cls, dense: nn.LayerNorm, num_experts: int) -> ExpertLayerNorm:
        if len(dense.normalized_shape) != 1 or dense.weight is None or dense.bias is None:
            raise ValueError(f"Only affine 1-D LayerNorms can become experts, got {dense}")
        new = cls(num_experts, dense.normalized_shape[0], eps=dense.eps)
        with torch.no_grad():
            new.weight.copy_(dense.weight.detach().unsqueeze(0).expand_as(new.weight))
            new.bias.copy_(dense.bias.detach().unsqueeze(0).expand_as(new.bias))
        return new.to(dtype=dense.weight.dtype, device=dense.weight.device)

    def expert_module(self, expert: int) -> nn.LayerNorm:
        dense = nn.LayerNorm(self.hidden, eps=self.eps)
        with torch.no_grad():
            dense.weight.copy_(self.weight[expert])
            dense.bias.copy_(self.bias[expert])
        return dense.to(dtype=self.weight.dtype, device=self.weight.device)

    def _one(self, x: torch.Tensor, e: int) -> torch.Tensor:
        return F.layer_norm(x, (self.hidden,), self.weight[e], self.bias[e], self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        route = self._route()
        rows = route.rows
        if rows is None or len(route.segments) == 1:
            return self._apply_grouped(x, self._one, route.segments)
        # Mixed batch: normalise once, then one fused affine with each row's expert weights gathered.
        # x: (B, T, H); rows: (B,) expert of each row
        shape = (x.shape[0],) + (1,) * (x.dim() - 2) + (self.hidden,)
        normed = F.layer_norm(x, (self.hidden,), None, None, self.eps)
        weight = self.weight.index_select(0, rows).view(shape)
        bias = self.bias.index_select(0, rows).view(shape)
        return torch.addcmul(bias, normed, weight)

    def extra_repr(self) -> str:
        return f"experts={self.num_experts}, hidden={self.hidden}, eps={self.eps}"


_GROUPED_MM_OK: dict[tuple[str, torch.dtype], bool] = {}  # (device type, dtype) -> grouped_mm runs there


def grouped_mm_available(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether ``torch.nn.functional.grouped_mm`` runs for ``device`` / ``dtype`` (probed once, then cached).

    Example:
        >>> grouped_mm_available(torch.device("cpu"), torch.float32) in (True, False)
        True
    """
    key = (device.type, dtype)
    if key not in _GROUPED_MM_OK:
        try:
            m = max(1, 16 // torch.empty((), dtype=dtype).element_size())
            F.grouped_mm(
                torch.zeros(2, m, device=device, dtype=dtype),
                torch.zeros(2, m, m, device=device, dtype=dtype),
                offs=torch.tensor([1, 2], device=device, dtype=torch.int32),
            )
            _GROUPED_MM_OK[key] = True
        except (AttributeError, RuntimeError, NotImplementedError, TypeError) as e:
            logger.warning("grouped_mm is unavailable for %s %s (%s): token-routed expert layers use their "
                           "fallback dispatch (MoE-LoRA: dense; TLR: one matmul per expert hit)", *key, e)
            _GROUPED_MM_OK[key] = False
    return _GROUPED_MM_OK[key]


def grouped_mm_aligned(x: torch.Tensor, *widths: int) -> bool:
    """Whether rows of these widths of ``x``'s dtype are 16-byte aligned, as ``grouped_mm`` needs."""
    return all(w * x.element_size() % 16 == 0 for w in widths)


# ------------------------------------------------------------------------------------------------ model surgery
def _get(root: nn.Module, path: str) -> nn.Module:
    mod = root
    for part in path.split("."):
        mod = getattr(mod, part)
    return mod


def _set(root: nn.Module, path: str, value: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(_get(root, parent) if parent else root, name, value)


def transformer_layers(model: nn.Module) -> nn.ModuleList:
    """The list of transformer blocks of a BERT-family Hugging Face model."""
    encoder = getattr(model, "encoder", None)
    layers = getattr(encoder, "layer", None)
    if not isinstance(layers, nn.ModuleList):
        raise ValueError(
            f"{type(model).__name__} has no `encoder.layer` list: MoTE converts BERT-family encoders "
            f"({', '.join(sorted(LAYER_SLOTS))})."
        )
    return layers


def layer_slots(model: nn.Module) -> tuple[str, str, str, str]:
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in LAYER_SLOTS:
        raise ValueError(
            f"Cannot convert model_type {model_type!r} ({type(model).__name__}) to MoTE: supported families are "
            f"{sorted(LAYER_SLOTS)}. Add its layer's (attention norm, FFN up, FFN down, FFN norm) paths to "
            "mote.experts.LAYER_SLOTS."
        )
    return LAYER_SLOTS[model_type]


def resolve_placement(placement: str | Sequence[int], num_layers: int) -> list[int]:
    """Expert layer indices for a placement: ``"every"`` (EB), ``"every-other"`` (EOB: 1, 3, 5, ...) or a list.

    Example:
        >>> resolve_placement("every-other", 6), resolve_placement("0,2", 6)
        ([1, 3, 5], [0, 2])
    """
    if isinstance(placement, str):
        key = placement.strip().lower()
        if key in ("every", "eb", "all"):
            return list(range(num_layers))
        if key in ("every-other", "eob", "every_other"):
            return list(range(1, num_layers, 2))
        try:
            placement = [int(p) for p in key.split(",") if p.strip()]
        except ValueError:
            raise ValueError(
                f"Unknown placement {placement!r}: use 'every', 'every-other' or layer indices like '0,2,4'."
            ) from None
    layers = sorted(set(int(p) for p in placement))
    bad = [p for p in layers if not 0 <= p < num_layers]
    if not layers or bad:
        raise ValueError(f"Expert layers must be a non-empty subset of 0..{num_layers - 1}, got {list(placement)}")
    return layers


def upcycle(
    model: nn.Module, expert_layers: Sequence[int], num_experts: int, routing_context: RoutingContext
) -> None:
    """Replace, in place, the FFN and both norms of ``expert_layers`` by ``num_experts`` exact copies that read
    their routing from ``routing_context``."""
    slots = layer_slots(model)
    layers = transformer_layers(model)
    for i in expert_layers:
        for path in slots:
            dense = _get(layers[i], path)
            if isinstance(dense, _ExpertModule):
                raise ValueError(f"Layer {i} is already a MoTE layer")
            if isinstance(dense, nn.Linear):
                expert: _ExpertModule = ExpertLinear.upcycle(dense, num_experts)
            elif isinstance(dense, nn.LayerNorm):
                expert = ExpertLayerNorm.upcycle(dense, num_experts)
            else:
                raise ValueError(f"Layer {i}: {path} is a {type(dense).__name__}, expected Linear or LayerNorm")
            expert.routing_context = routing_context
            _set(layers[i], path, expert)


def densify(model: nn.Module, expert: int) -> None:
    """Replace, in place, every expert module by a plain copy of one expert (the inverse of :func:`upcycle`)."""
    for layer in transformer_layers(model):
        for path in layer_slots(model):
            mod = _get(layer, path)
            if isinstance(mod, ExpertLinear | ExpertLayerNorm):
                _set(layer, path, mod.expert_module(expert))


def expert_modules(model: nn.Module) -> list[_ExpertModule]:
    return [m for m in model.modules() if isinstance(m, _ExpertModule)]


@torch.no_grad()
def keep_experts(model: nn.Module, keep: Sequence[int]) -> None:
    """Keep only experts ``keep`` (in that order) in every expert module, in place: expert ``keep[i]`` becomes
    expert ``i`` (expert consolidation drops the experts whose tasks now share another one)."""
    keep = [int(e) for e in keep]
    for m in expert_modules(model):
        if not keep or len(set(keep)) < len(keep) or not all(0 <= e < m.num_experts for e in keep):
            raise ValueError(f"keep must list distinct experts of 0..{m.num_experts - 1}, got {keep}")
        index = torch.tensor(keep, device=m.weight.device)
        for name in ("weight", "bias"):
            p = getattr(m, name, None)
            if p is not None:
                setattr(m, name, nn.Parameter(p.index_select(0, index).clone(), requires_grad=p.requires_grad))
        m.num_experts = len(keep)


def expert_layer_indices(model: nn.Module) -> list[int]:
    """Indices of the layers that hold experts."""
    slots = layer_slots(model)
    return [i for i, layer in enumerate(transformer_layers(model)) if isinstance(_get(layer, slots[1]), _ExpertModule)]
