"""``MoELoRALinear``: a frozen ``nn.Linear`` plus ``E`` routed low-rank experts (the MoE-LoRA layer).

    y = base(x) + scaling * sum_{e in top-k(x)} g_e(x) * B_e A_e dropout(x)

The frozen projection ``base(x)`` is computed once for all tokens; only the low-rank updates are routed
(MixLoRA's trick). The experts are stacked, ``lora_A [E, r, in]`` and ``lora_B [E, out, r]`` (``B = 0`` at init, so
a fresh adapter is an exact no-op), so every dispatch is a few tensor ops, never a Python loop over experts:

* **sequence routing, one task in the batch** (the TA-CL and ``encode(task=...)`` case): gather the task's top-k
  experts once, ``[k*r, in]``, and run one low-rank matmul pair: exactly the routed experts' cost.
* **dense** (mixed-task batches, or token routing with small ``E*r``): one ``[in, E*r]`` matmul for all experts,
  non-routed experts gated to exactly 0, one ``[E*r, out]`` matmul. With ``E*r`` in the tens this is cheaper than
  any gather.
* **grouped** (token routing, ``expert_compute="grouped"``): sort the (token, slot) pairs by expert and run only
  the routed experts with ``torch.nn.functional.grouped_mm`` (one kernel per projection, jagged groups), then
  ``index_add_`` back. Falls back to *dense* where ``grouped_mm`` is unavailable for the device/dtype.

Why not PEFT's ``lora.Linear``: it keeps one ``nn.Linear`` pair per named adapter in ``ModuleDict`` s and its
mixed-batch path loops over adapters; a mixture needs the stacked tensors and a router. The wrapper follows PEFT's
conventions (``base_layer``, ``lora_A``/``lora_B``, ``scaling``, Kaiming-uniform ``A``, zero ``B``).

Example:
    >>> from mote.lora.config import MoELoRAConfig
    >>> from mote.lora.router import RoutingState
    >>> state = RoutingState()
    >>> layer = MoELoRALinear(nn.Linear(8, 6), MoELoRAConfig(num_experts=4, r=2), num_tasks=2, state=state)
    >>> x = torch.randn(3, 5, 8)
    >>> with state.use(torch.tensor([0, 1, 1]), task=None):
    ...     torch.equal(layer(x), layer.base_layer(x))   # B = 0: a no-op until trained
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mote.experts import grouped_mm_aligned, grouped_mm_available
from mote.lora.config import MoELoRAConfig
from mote.lora.router import MoERouter, RoutingState


class MoELoRALinear(nn.Module):
    """A frozen ``base_layer`` with ``E`` routed LoRA experts (see the module doc).

    Args:
        base_layer: the ``nn.Linear`` to adapt (frozen in place).
        config: the adapter settings.
        num_tasks: rows of the task tables (the routing table's tasks).
        state: the model's shared :class:`~mote.lora.router.RoutingState`.
        expert_of_task: each task's own expert, for ``config.task_init``.
    """

    def __init__(
        self,
        base_layer: nn.Linear,
        config: MoELoRAConfig,
        num_tasks: int,
        state: RoutingState,
        expert_of_task: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(base_layer, nn.Linear):
            raise TypeError(f"MoELoRALinear adapts nn.Linear layers, got {type(base_layer).__name__}")
        self.base_layer = base_layer
        base_layer.requires_grad_(False)
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features
        self.num_experts, self.r, self.top_k = config.num_experts, config.r, int(config.top_k)
        self.routing = config.routing
        self.scaling = config.scaling
        self.grouped = config.routing == "token" and config.use_grouped()
        w = base_layer.weight
        self.lora_A = nn.Parameter(
            torch.empty(self.num_experts, self.r, self.in_features, dtype=w.dtype, device=w.device)
        )
        self.lora_B = nn.Parameter(
            torch.zeros(self.num_experts, self.out_features, self.r, dtype=w.dtype, device=w.device)
        )
        self.router = MoERouter(
            self.in_features,
            self.num_experts,
            num_tasks,
            self.top_k,
            routing=config.routing,
            task_bias=config.task_bias,
            renormalize=config.renormalize,
            init_std=config.router_init_std,
            balance_loss=config.balance_loss,
        ).to(device=w.device)
        self.lora_dropout = nn.Dropout(config.lora_dropout) if config.lora_dropout > 0 else nn.Identity()
        self.__dict__["state"] = state  # shared, not a submodule
        self.disable_adapters = False
        self.reset_lora_parameters(config.init_lora_weights, expert_of_task if config.task_init else None,
                                   config.task_init_logit)

    @torch.no_grad()
    def reset_lora_parameters(
        self, init_lora_weights: bool = True, expert_of_task: Sequence[int] | None = None, logit: float = 0.0
    ) -> None:
        """PEFT's init per expert: ``A ~ kaiming_uniform(a=sqrt(5))`` (bound ``1/sqrt(in)``), ``B = 0``."""
        bound = 1.0 / math.sqrt(self.in_features)
        self.lora_A.uniform_(-bound, bound)
        if init_lora_weights:
            self.lora_B.zero_()
        else:
            self.lora_B.uniform_(-1.0 / math.sqrt(self.r), 1.0 / math.sqrt(self.r))
        self.router.reset_parameters(expert_of_task, logit)

    @property
    def state(self) -> RoutingState:
        return self.__dict__["state"]

    # ------------------------------------------------------------------------------------------- forward
    def forward(self, x: Tensor) -> Tensor:
        result = self.base_layer(x)  # the frozen projection, once for every token
        if self.disable_adapters:
            return result
        route = self.router(x, self.state)
        xd = self.lora_dropout(x)
        if route.probs.dim() == 1:  # sequence routing, one task in the batch: only its top-k experts
            return self._selected(result, xd, route.top_idx, route.gates)
        if self.grouped and self.top_k < self.num_experts and self._grouped_ok(x):
            return self._grouped(result, xd, route.top_idx, route.gates)
        return self._dense(result, xd, route.top_idx, route.gates)

    @staticmethod
    def _add_low_rank(result: Tensor, h: Tensor, b: Tensor) -> Tensor:
        """``result + h @ b.T`` as one fused GEMM: result (..., out), h (..., k*r), b (out, k*r)."""
        flat = torch.addmm(result.reshape(-1, result.shape[-1]), h.reshape(-1, h.shape[-1]).to(result.dtype),
                           b.T.to(result.dtype))
        return flat.view(result.shape)

    def _selected(self, result: Tensor, x: Tensor, top_idx: Tensor, gates: Tensor) -> Tensor:
        """One task's experts: ``top_idx`` / ``gates`` (k,); x (..., in) -> (..., out)."""
        k, r = top_idx.shape[0], self.r
        a = self.lora_A.index_select(0, top_idx).reshape(k * r, self.in_features)  # (k*r, in)
        b = self.lora_B.index_select(0, top_idx).permute(1, 0, 2).reshape(self.out_features, k * r)  # (out, k*r)
        h = F.linear(x, a)  # (..., k*r)
        h = h * (gates * self.scaling).to(h.dtype).repeat_interleave(r)
        return self._add_low_rank(result, h, b)

    def _dense(self, result: Tensor, x: Tensor, top_idx: Tensor, gates: Tensor) -> Tensor:
        """All experts in one matmul pair, non-routed gated to 0; top_idx / gates (..., k) broadcast against x."""
        e, r = self.num_experts, self.r
        g = torch.zeros(*gates.shape[:-1], e, dtype=gates.dtype, device=gates.device).scatter(-1, top_idx, gates)
        h = F.linear(x, self.lora_A.reshape(e * r, self.in_features))  # (..., E*r)
        g = (g * self.scaling).to(h.dtype).unsqueeze(-1)  # (..., E, 1), 0 off the top-k
        h = (h.unflatten(-1, (e, r)) * g).flatten(-2)  # (..., E*r)
        return self._add_low_rank(result, h, self.lora_B.permute(1, 0, 2).reshape(self.out_features, e * r))

    def _grouped(self, result: Tensor, x: Tensor, top_idx: Tensor, gates: Tensor) -> Tensor:
        """Only the routed experts: (token, slot) pairs sorted by expert, two grouped matmuls, ``index_add``."""
        k = top_idx.shape[-1]
        xf = x.reshape(-1, self.in_features)  # (N, in)
        expert = top_idx.reshape(-1)  # (N*k,)
        order = torch.argsort(expert, stable=True)  # (N*k,)
        token = order // k  # token of each sorted assignment
        experts = torch.arange(self.num_experts, device=expert.device, dtype=expert.dtype)
        # (E,) end of each expert's run of sorted assignments (searchsorted: no host sync, unlike bincount)
        offs = torch.searchsorted(expert.index_select(0, order), experts, right=True).to(torch.int32)
        xs = xf.index_select(0, token)  # (M, in), M = N*k
        h = F.grouped_mm(xs, self.lora_A.transpose(1, 2), offs=offs)  # (M, r)
        h = h * (gates.reshape(-1).index_select(0, order) * self.scaling).unsqueeze(-1).to(h.dtype)
        d = F.grouped_mm(h, self.lora_B.transpose(1, 2), offs=offs)  # (M, out)
        flat = result.reshape(-1, self.out_features).index_add(0, token, d.to(result.dtype))
        return flat.view(result.shape)

    def _grouped_ok(self, x: Tensor) -> bool:
        """Whether ``grouped_mm`` can run here: 16-byte aligned strides, and a kernel for the device/dtype (probed
        once per device type and dtype, then cached)."""
        return grouped_mm_aligned(x, self.in_features, self.out_features, self.r) and grouped_mm_available(
            x.device, x.dtype
        )

    # ------------------------------------------------------------------------------------------- merge
    def delta_weight(self, gates: Tensor) -> Tensor:
        """``scaling * sum_e gates[e] * B_e @ A_e``: the ``[out, in]`` update of a fixed gate vector ``[E]``."""
        return self.scaling * torch.einsum("e,eor,eri->oi", gates.to(self.lora_A.dtype), self.lora_B, self.lora_A)

    @torch.no_grad()
    def merged(self, task_id: int) -> nn.Linear:
        """A plain ``nn.Linear`` equal to this layer for task ``task_id`` (sequence routing, eval mode)."""
        base = self.base_layer
        dense = nn.Linear(self.in_features, self.out_features, bias=base.bias is not None)
        dense = dense.to(device=base.weight.device, dtype=base.weight.dtype)
        dense.weight.copy_(base.weight + self.delta_weight(self.router.task_gates(task_id)).to(base.weight.dtype))
        if base.bias is not None:
            dense.bias.copy_(base.bias)
        return dense

    def extra_repr(self) -> str:
        dispatch = "grouped" if self.grouped else "dense"
        return (
            f"in={self.in_features}, out={self.out_features}, experts={self.num_experts}, r={self.r}, "
            f"top_k={self.top_k}, routing={self.routing}, scaling={self.scaling:g}, dispatch={dispatch}"
        )
