"""Routers of MoE-LoRA layers (token- or sequence-level), their load-balancing loss, and the routing signature.

Written here because PEFT has no mixture-of-LoRA-experts router (PEFT issues #1156 and #2330 were closed without
one; Poly routes by task only, X-LoRA needs a second forward pass).

* **token** routing: ``logits = W x + b[task]`` for every token ``x`` of the adapted layer's input (``W``:
  ``[E, in]``; ``b``: a learned ``[tasks, E]`` bias, optional). The task bias is what ``task_init`` sets: each
  task starts with its own expert preferred, then the router learns content routing.
* **sequence** routing: ``logits = table[task]`` (a learned ``[tasks, E]`` table). Routing depends on the task
  alone, so a task's model is one dense model (``merge``) and the load balance is measured over the tasks.

Both take ``softmax``, keep the top-k and gate them (renormalised; top-1 uses ``p / p.detach()``: 1 in value, the
Switch gradient in the backward pass). Every routed layer reports a :class:`RouterOutput` to the model's
:class:`RoutingState`, from which the model computes the auxiliary loss and each example's routing signature
(its routing distribution, averaged over tokens; EANS's similarity proxy).

Example:
    >>> router = MoERouter(8, num_experts=4, num_tasks=2, top_k=2, routing="token")
    >>> state = RoutingState()
    >>> with state.use(torch.tensor([0, 1]), task=None) as records:
    ...     out = router(torch.randn(2, 5, 8), state)
    >>> out.probs.shape, out.top_idx.shape, len(records)
    (torch.Size([2, 5, 4]), torch.Size([2, 5, 2]), 1)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mote.experts import RoutingContext
from mote.load_balancing import load_balancing_loss


# ------------------------------------------------------------------------------------------------ state
@dataclass
class RouterOutput:
    """One routed layer's decision for one forward.

    ``probs`` / ``top_idx`` / ``gates`` broadcast against the layer input ``x`` (..., in): token routing gives
    ``(B, T, E)`` / ``(B, T, k)``; sequence routing ``(B, 1, E)``, or ``(E,)`` / ``(k,)`` when the batch has one
    task.
    ``balance_*`` is what the load-balancing loss averages over (tokens, or the task table).
    """

    probs: Tensor
    top_idx: Tensor
    gates: Tensor
    balance_probs: Tensor  # (N, E)
    balance_top: Tensor  # (N, k)
    balance_mask: Tensor | None  # (N,) or None
    per_row: bool  # probs are per example ((B, ...) or one task's (E,)): usable for routing signatures
    kind: str = "switch"

    def aux_loss(self) -> Tensor:
        return load_balancing_loss(self.balance_probs, self.balance_top, self.balance_mask, self.kind)


@dataclass
class ForwardRouting:
    """The routing of one MoE-LoRA forward: the batch's ``task_ids`` (device ``LongTensor[B]``), its single
    ``task`` when it has one (known on the host), the attention mask, and the records the layers append to."""

    task_ids: Tensor
    task: int | None
    mask: Tensor | None
    records: list[RouterOutput] | None


class RoutingState:
    """Where the MoE-LoRA layers of one model find the routing of the forward that is running.

    The model installs, per forward, the batch's ``task_ids``, the host-known single ``task`` when the batch is
    task-homogeneous, and the attention mask (:meth:`use`); layers read them and append their
    :class:`RouterOutput`. The values live in a context variable (see :class:`mote.experts.RoutingContext`), so
    concurrent forwards on one model (threads, asyncio tasks) each see their own. Outside a :meth:`use` block the
    layers refuse to run rather than guess a task.
    """

    def __init__(self) -> None:
        self.context = RoutingContext()

    @contextlib.contextmanager
    def use(
        self, task_ids: Tensor, task: int | None, mask: Tensor | None = None, record: bool = True
    ) -> Iterator[list[RouterOutput]]:
        """Route one forward; yields the list the layers append their :class:`RouterOutput` to."""
        records: list[RouterOutput] = []
        with self.context.use(ForwardRouting(task_ids, task, mask, records if record else None)):
            yield records

    def current(self) -> ForwardRouting:
        forward = self.context.get()
        if forward is None:
            raise RuntimeError(
                "MoE-LoRA layers ran without task ids. Call the model through its TSEmbedTransformer (e.g. "
                "SentenceTransformer.encode(texts, task=...)), or wrap a direct Hugging Face forward in "
                "`with module.routed(task): ...`."
            )
        return forward

    @property
    def active(self) -> bool:
        return self.context.get() is not None

    @property
    def task(self) -> int | None:
        return self.current().task

    @property
    def mask(self) -> Tensor | None:
        return self.current().mask

    def require(self) -> Tensor:
        return self.current().task_ids

    def row_index(self, x: Tensor) -> Tensor | int:
        """Task of every row of ``x`` as ``(B, 1, ..., 1)`` ids, or the batch's single task id (an int).

        ``x`` must be shaped ``(B, ...)`` like the batch, unless the batch has one task (then any shape works,
        e.g. the flattened patches of a vision tower).
        """
        forward = self.current()
        task_ids = forward.task_ids
        if x.dim() >= 2 and x.shape[0] == task_ids.shape[0]:
            return task_ids.view(-1, *([1] * (x.dim() - 2)))
        if forward.task is not None:
            return forward.task
        raise RuntimeError(
            f"A MoE-LoRA layer got an input of shape {tuple(x.shape)} that is not shaped by the batch "
            f"({task_ids.shape[0]} rows) in a batch with several tasks: restrict target_modules to layers that see "
            "(batch, tokens, features) inputs (e.g. the language model of a vision-language model)."
        )

    def record(self, out: RouterOutput) -> None:
        records = self.current().records
        if records is not None:
            records.append(out)

    def __deepcopy__(self, memo: dict) -> RoutingState:
        return RoutingState()  # a copied model is another model (its layers share the copy through memo)


# ------------------------------------------------------------------------------------------------ router
def _gates(top_p: Tensor, renormalize: bool) -> Tensor:
    """Gate values of the top-k probabilities ``top_p`` (..., k)."""
    if not renormalize:
        return top_p
    if top_p.shape[-1] == 1:
        return top_p / top_p.detach()  # 1 in value; d gate / d p = 1 / p (the Switch gradient)
    return top_p / top_p.sum(dim=-1, keepdim=True)


class MoERouter(nn.Module):
    """A token- or sequence-level top-k router over ``num_experts`` experts (see the module doc).

    Parameters (names the trainer's regexes rely on): token routing ``weight [E, in]`` and ``task_bias
    [tasks, E]``; sequence routing ``task_logits [tasks, E]``.
    """

    def __init__(
        self,
        in_features: int,
        num_experts: int,
        num_tasks: int,
        top_k: int,
        routing: str = "token",
        task_bias: bool = True,
        renormalize: bool = True,
        init_std: float = 0.02,
        balance_loss: str = "switch",
    ) -> None:
        super().__init__()
        if not 1 <= top_k <= num_experts:
            raise ValueError(f"top_k ({top_k}) must be between 1 and num_experts ({num_experts})")
        self.in_features, self.num_experts, self.num_tasks, self.top_k = in_features, num_experts, num_tasks, top_k
        self.routing, self.renormalize, self.init_std, self.balance_loss = routing, renormalize, init_std, balance_loss
        if routing == "token":
            self.weight = nn.Parameter(torch.zeros(num_experts, in_features))
            self.task_bias = nn.Parameter(torch.zeros(num_tasks, num_experts)) if task_bias else None
        elif routing == "sequence":
            self.task_logits = nn.Parameter(torch.zeros(num_tasks, num_experts))
        else:
            raise ValueError(f"routing must be 'token' or 'sequence', got {routing!r}")
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, expert_of_task: Sequence[int] | None = None, logit: float = 0.0) -> None:
        """Random token-router weight; task logits / biases zero, or ``logit`` on each task's own expert."""
        table = self.task_logits if self.routing == "sequence" else self.task_bias
        if self.routing == "token":
            nn.init.normal_(self.weight, std=self.init_std)
        if table is None:
            return
        table.zero_()
        if expert_of_task is not None:
            if len(expert_of_task) != self.num_tasks:
                raise ValueError(f"expert_of_task names {len(expert_of_task)} tasks, the router has {self.num_tasks}")
            bad = [e for e in expert_of_task if not 0 <= e < self.num_experts]
            if bad:
                raise ValueError(
                    f"task_init: the routing table sends tasks to experts {sorted(set(expert_of_task))}, but the "
                    f"adapters have only {self.num_experts} experts; raise num_experts or share experts"
                )
            table[torch.arange(self.num_tasks), torch.tensor(list(expert_of_task))] = logit

    # ------------------------------------------------------------------------------------------- routing
    def table_routes(self) -> tuple[Tensor, Tensor, Tensor]:
        """Sequence routing: ``(probs [tasks, E], top_idx [tasks, k], gates [tasks, k])`` of every task."""
        probs = torch.softmax(self.task_logits.float(), dim=-1)
        top_p, top_idx = probs.topk(self.top_k, dim=-1)
        return probs, top_idx, _gates(top_p, self.renormalize)

    def task_gates(self, task_id: int) -> Tensor:
        """Sequence routing: the dense gate vector ``[E]`` of one task (zeros outside its top-k)."""
        if self.routing != "sequence":
            raise ValueError("Only sequence-level routing has per-task gates; token routing depends on the input")
        _, top_idx, gates = self.table_routes()
        return torch.zeros(self.num_experts, dtype=gates.dtype, device=gates.device).scatter(
            0, top_idx[task_id], gates[task_id]
        )

    def forward(self, x: Tensor, state: RoutingState) -> RouterOutput:
        forward = state.current()  # this forward's routing (raises outside a routed forward)
        if self.routing == "sequence":
            rows = forward.task if forward.task is not None else state.row_index(x)  # one task: (E,) routes
            probs, top_idx, gates = self.table_routes()  # (tasks, E), (tasks, k), (tasks, k)
            balance = (probs, top_idx, None)  # balance across tasks, not within a (task-homogeneous) batch
            # rows: the batch's one task -> (E,) routes; else (B, 1, ..., 1) ids -> (B, 1, ..., 1, E)
            out = RouterOutput(probs[rows], top_idx[rows], gates[rows], *balance, per_row=True)
        else:
            rows = state.row_index(x)
            logits = F.linear(x, self.weight.to(x.dtype)).float()  # (..., E)
            if self.task_bias is not None:
                logits = logits + self.task_bias.float()[rows]
            probs = torch.softmax(logits, dim=-1)
            top_p, top_idx = probs.topk(self.top_k, dim=-1)  # (..., k)
            gates = _gates(top_p, self.renormalize)
            mask = forward.mask
            per_row = not isinstance(rows, int)
            flat_mask = mask.reshape(-1) if mask is not None and per_row and mask.shape == x.shape[:-1] else None
            out = RouterOutput(
                probs, top_idx, gates, probs.reshape(-1, self.num_experts), top_idx.reshape(-1, self.top_k),
                flat_mask, per_row=per_row,
            )
        out.kind = self.balance_loss
        if forward.records is not None:
            forward.records.append(out)
        return out

    def extra_repr(self) -> str:
        return f"routing={self.routing}, experts={self.num_experts}, top_k={self.top_k}, tasks={self.num_tasks}"


# ------------------------------------------------------------------------------------------------ losses
def mean_aux_loss(records: Sequence[RouterOutput]) -> Tensor | None:
    """The load-balancing loss averaged over the routed layers of one forward (``None`` without records)."""
    if not records:
        return None
    return torch.stack([r.aux_loss() for r in records]).mean()


def routing_signature(records: Sequence[RouterOutput], mask: Tensor | None, batch: int) -> Tensor | None:
    """Each example's routing distribution per routed layer, averaged over its real tokens: ``(B, M, E)``.

    ``M`` counts the layers whose router saw per-example inputs; ``None`` if there is none.

    Example:
        >>> sig = routing_signature(records, features["attention_mask"], batch=2)  # doctest: +SKIP
        >>> sig.mean(1)   # EANS's default proxy: (B, E), averaged over layers too  # doctest: +SKIP
    """
    rows = []
    for r in records:
        if not r.per_row:
            continue
        p = r.probs  # (B, T, E) token routing, (B, 1, E) or (E,) sequence routing
        if p.dim() == 1:  # one task for the whole batch
            rows.append(p.expand(batch, -1))
            continue
        if p.dim() == 2:  # (B, E)
            rows.append(p)
            continue
        p = p.reshape(batch, -1, p.shape[-1])
        if p.shape[1] == 1:
            rows.append(p[:, 0])
        elif mask is not None and mask.shape == p.shape[:2]:
            m = mask.to(p.dtype).unsqueeze(-1)  # (B, T, 1)
            rows.append((p * m).sum(1) / m.sum(1).clamp_min(1.0))
        else:
            rows.append(p.mean(1))
    if not rows:
        return None
    return torch.stack(rows, dim=1)
