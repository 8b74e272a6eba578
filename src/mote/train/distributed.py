"""Processes of a training run: rank and world size, main-process output, barriers, and the DDP gradient
average of MoTE steps (see :mod:`mote.train.trainer` for why the trainer averages gradients itself).

Example:
    >>> world()
    (0, 1)
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

_BUCKET = 2**24  # gradient all-reduce bucket, in elements


def world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def is_main() -> bool:
    """Whether this is the main process (rank 0)."""
    return world()[0] == 0


def say(msg: str) -> None:
    """Print ``msg`` on the main process only."""
    if world()[0] == 0:
        print(msg, flush=True)


def barrier() -> None:
    """Wait for every process (no-op without an initialised process group)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_gradients(params: list[torch.nn.Parameter]) -> None:
    """Average ``.grad`` over processes; a parameter without a gradient on every process keeps ``None``."""
    size_world = dist.get_world_size()
    params = [p for p in params if p.requires_grad]
    device = params[0].device if params else torch.device("cpu")
    used = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=device)
    dist.all_reduce(used)
    grads = []
    for p, u in zip(params, used.tolist()):
        if u > 0:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            grads.append(p.grad)
    bucket: list[torch.Tensor] = []
    size = 0
    for g in [*grads, None]:
        if g is not None:
            bucket.append(g)
            size += g.numel()
        if bucket and (g is None or size >= _BUCKET):
            flat = torch.cat([g.reshape(-1) for g in bucket])  # one all-reduce per bucket
            dist.all_reduce(flat)
            flat.div_(size_world)
            for dst, src in zip(bucket, flat.split([g.numel() for g in bucket])):
                dst.copy_(src.view_as(dst))
            bucket, size = [], 0
