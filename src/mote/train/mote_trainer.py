"""The sentence-transformers trainer with TA-CL batches, atomic checkpoints, expert-aware weight decay and the DDP
gradient average of MoTE steps (the reasons: :mod:`mote.train.trainer`).

Example:
    >>> trainer = MoteTrainer(model=model, args=args, train_dataset=data, loss=losses,       # doctest: +SKIP
    ...                       group_tasks=["query", "query", "classification"])
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import torch
from sentence_transformers import SentenceTransformerTrainer
from torch.nn.parallel import DistributedDataParallel
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

from mote.adapters.transformers import TrainerHooks
from mote.atomic import fsync_tree, replace_dir
from mote.data.sampler import MixedBatchSampler, OffsetTaskBatchSampler
from mote.train.checkpoints import COMPLETE, STAGING
from mote.train.distributed import all_reduce_gradients


def expert_aware_weight_decay(optimizer: torch.optim.Optimizer, expert_params: set[int]) -> int:
    """Decay each stacked expert weight only in the experts a step used; returns how many tensors it moved.

    AdamW's decoupled decay ``p *= 1 - lr * wd`` would shrink the whole ``[E, out, in]`` tensor every step,
    including experts that saw no data (whose Adam update is exactly 0), so a task routed to an untrained expert
    would drift from the base model. The stacked weights move to groups without decay, and a step pre-hook decays
    the slices whose gradient is non-zero: what separate per-expert parameters (``grad is None`` when unused)
    would get.
    """
    moved = []
    for group in optimizer.param_groups:
        wd = group.get("weight_decay", 0.0)
        experts = [p for p in group["params"] if id(p) in expert_params] if wd else []
        if experts:
            group["params"] = [p for p in group["params"] if id(p) not in expert_params]
            moved.append({**{k: v for k, v in group.items() if k != "params"}, "params": experts,
                          "weight_decay": 0.0, "expert_weight_decay": wd})
    for group in moved:
        optimizer.add_param_group(group)
    if moved:
        optimizer.register_step_pre_hook(_decay_used_experts)
    return sum(len(g["params"]) for g in moved)


def _decay_used_experts(optimizer, args, kwargs) -> None:
    with torch.no_grad():
        for group in optimizer.param_groups:
            wd = group.get("expert_weight_decay")
            if not wd:
                continue
            for p in group["params"]:
                if p.grad is None:
                    continue
                used = p.grad.reshape(p.shape[0], -1).ne(0).any(dim=1)  # (E,)
                scale = torch.where(used, 1.0 - group["lr"] * wd, 1.0).to(p.dtype)
                p.mul_(scale.view(-1, *([1] * (p.dim() - 1))))


class MoteTrainer(TrainerHooks, SentenceTransformerTrainer):
    """``SentenceTransformerTrainer`` + TA-CL batches, atomic checkpoints and DDP gradient averaging (module doc).

    Args:
        group_tasks: the task of each batch group, in ``train_dataset`` order.
        sampling: ``proportional`` | ``temperature`` | ``round-robin``; ``sampling_temperature`` for the second.
        mixed: task-mixed batches instead (the ``static`` method).
        batch_offset: start the TA-CL batch stream this many batches in (a later training stage continues the
            stream of the stages before it, so a staged run sees exactly the batches of a one-stage run).
        checkpoint_extras: objects with ``save_checkpoint(folder)``, called for every checkpoint before it is
            renamed into place (e.g. the EANS pools), so their state is as atomic as the checkpoint's.
    """

    def __init__(
        self,
        *args,
        group_tasks: list[str],
        sampling: str = "proportional",
        sampling_temperature: float = 1.0,
        mixed: bool = False,
        batch_offset: int = 0,
        checkpoint_extras: list | tuple = (),
        **kwargs,
    ) -> None:
        self.group_tasks = list(group_tasks)
        self.sampling, self.sampling_temperature, self.mixed = sampling, sampling_temperature, mixed
        if batch_offset and mixed:
            raise ValueError("batch_offset applies to TA-CL (single-task) batches only")
        self.batch_offset = int(batch_offset)
        self.checkpoint_extras = list(checkpoint_extras)
        self._ta_sampler = None
        super().__init__(*args, **kwargs)

    def add_model_card_callback(self, default_args_dict: dict[str, Any]) -> None:
        """No model-card dataset statistics: they tokenize every column of every group at start-up (slow for
        dozens of groups) and assume no missing values (our optional ``negative`` column has some)."""

    def create_optimizer(self, model=None):
        optimizer = super().create_optimizer(model)
        if not getattr(optimizer, "_mote_expert_decay", False):
            from mote.experts import expert_modules
            from mote.lora.model import moe_lora_layers

            stacked = {id(p) for m in expert_modules(self.model) for p in m.parameters(recurse=False)}
            # MoE-LoRA experts are stacked too ([E, r, in] / [E, out, r]): decay only the experts a step used
            stacked |= {id(p) for m in moe_lora_layers(self.model).values() for p in (m.lora_A, m.lora_B)}
            expert_aware_weight_decay(optimizer, stacked)
            optimizer._mote_expert_decay = True
        return optimizer

    # ------------------------------------------------------------------------------------------- batches
    def get_multi_dataset_batch_sampler(self, dataset, batch_samplers, generator=None, seed=0):
        if self.mixed:
            sampler = MixedBatchSampler(dataset, batch_samplers, generator=generator, seed=seed)
        else:
            sampler = OffsetTaskBatchSampler(
                dataset,
                batch_samplers,
                generator=generator,
                seed=seed,
                group_tasks=self.group_tasks,
                strategy=self.sampling,
                temperature=self.sampling_temperature,
                offset=self.batch_offset,
            )
        self._ta_sampler = sampler
        return sampler

    def epoch_needed(self, epoch: int) -> bool:
        """No epoch once ``max_steps`` are done: a run resumed from its final checkpoint (killed before its model
        was saved) takes no step beyond them, and saves no checkpoint past them."""
        if self.state.max_steps > 0 and self.state.global_step >= self.state.max_steps:
            self.control.should_training_stop = True
            return False
        return True

    def epoch_starting(self, epoch: int) -> None:
        if self._ta_sampler is not None:
            self._ta_sampler.set_epoch(epoch)  # also when the loader is wrapped for skipping (resume)

    # ------------------------------------------------------------------------------------------- DDP
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # Run the losses on the unwrapped model: DDP's forward (and with it its reducer) never runs, the
        # gradients are averaged by `training_step` instead (see the module doc).
        if isinstance(model, DistributedDataParallel):
            model = model.module
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if isinstance(model, DistributedDataParallel) and self.accelerator.sync_gradients:
            all_reduce_gradients(list(self.model.parameters()))
        return loss

    # ------------------------------------------------------------------------------------------- checkpoints
    def save_checkpoint(self, model, trial) -> None:
        """The stock checkpoint, written to ``.staging/``, flushed, marked complete and renamed into place."""
        run_dir = self.run_output_dir(trial)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        self.write_checkpoint_to(os.path.join(run_dir, STAGING), model, trial)
        staged = Path(run_dir) / STAGING / name
        if self.args.should_save:
            for extra in self.checkpoint_extras:
                extra.save_checkpoint(str(staged))
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            fsync_tree(staged)
            (staged / COMPLETE).touch()  # from here on the staged copy is whole: resume publishes, never deletes it
            replace_dir(staged, Path(run_dir) / name)  # an existing checkpoint-N is replaced, never deleted first
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(run_dir, STAGING))
            rotate_checkpoints(run_dir, save_total_limit=self.args.save_total_limit)
        self.accelerator.wait_for_everyone()
