"""The TA-CL trainer: sentence-transformers' trainer with TA-CL batches, atomic checkpoints and exact resume.

What comes from sentence-transformers / transformers unchanged: the training loop (AdamW, warmup + decay,
gradient clipping and accumulation), multi-dataset training with **a loss per batch group** (``loss={group:
TaskInfoNCE(temperature=...)}``: that is how each task gets its temperature), ``router_mapping`` (which
routing-table task each column of each group is routed to), ``learning_rate_mapping`` (a separate learning rate
for expert / router parameters), HF checkpoints (model, optimizer, scheduler, RNG states, trainer state) and
resume, logging, DDP set-up through ``accelerate``.

What :class:`MoteTrainer` adds, and why:

* **TA-CL batch sampler** (:mod:`mote.data.sampler`): the stock proportional / round-robin samplers choose a
  *dataset* per batch; TA-CL chooses a *task* (proportional, temperature-scaled or round-robin), then a dataset
  within it, and classification/clustering batches mix a task's datasets. Set per epoch explicitly, so a resumed
  run replays exactly the batches of an uninterrupted one.
* **atomic checkpoints**: transformers writes ``checkpoint-N`` in place; a kill mid-write would leave a folder that
  ``--resume`` picks up and fails on. Checkpoints are written to ``.staging/``, flushed to disk, marked complete and
  renamed into place (an existing ``checkpoint-N`` is exchanged, never deleted first); ``--resume`` publishes a
  complete staged checkpoint a kill left behind and removes partial ones (:func:`recover_checkpoints`).
* **expert-aware weight decay** (:func:`expert_aware_weight_decay`): AdamW's decay would also shrink the experts
  a step did not use (they share one stacked tensor); only the used experts' slices are decayed.
* **gradient all-reduce under DDP**: a MoTE step runs the model several times (anchor column through the query
  expert, positive column through the document expert, ...), so different experts' parameters are used in
  different forward calls of one step. DDP's reducer cannot handle that (with ``find_unused_parameters`` it
  raises "Expected to mark a variable ready only once"; without it, it hangs on the experts a step did not use).
  The trainer therefore keeps DDP's wrapper (it broadcasts rank 0's parameters at the start) but runs the losses on
  the unwrapped model, so the reducer never engages, and averages the gradients itself once per optimiser step
  (one flat all-reduce per 64 MB bucket), keeping ``None`` for parameters no process used (AdamW skips them, as
  in a single process). With ``split_batches`` every process gets its share of the same single-task global batch.
* the data collator (:mod:`mote.train.collator`) reads ``router_mapping`` per row rather than per batch, and the
  model-card dataset statistics are skipped (see :meth:`MoteTrainer.add_model_card_callback`).

:func:`run_training` is the whole ``mote train``: validate, load data, build the arm, train, save.

Example:
    >>> from mote.train import load_config, run_training
    >>> result = run_training(load_config("configs/demo.yaml"), "runs/demo-train")   # doctest: +SKIP
    >>> result.model_dir                                                              # doctest: +SKIP
    PosixPath('runs/demo-train/model')
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors
from torch.nn.parallel import DistributedDataParallel
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint, rotate_checkpoints

from mote.data.sampler import MixedBatchSampler, TaskBatchSampler, task_batches
from mote.data.training import TrainingData, to_dataset_dict
from mote.io import (
    atomic_dir,
    atomic_write_json,
    atomic_write_text,
    fsync_tree,
    read_log,
    recover_dir,
    replace_dir,
)
from mote.train.arms import ArmModel, build_arm
from mote.train.callbacks import GracefulInterrupt, MetricsLogger, ProgressBar, QuickEvaluation
from mote.train.collator import TaskCollator
from mote.train.config import CONFIG_FILE, TSEMBED_ARMS, ConfigError, RunConfig, parse_config
from mote.train.losses import CachedTaskInfoNCE, TaskInfoNCE
from mote.train.snapshots import WeightSnapshots

logger = logging.getLogger(__name__)

STAGING = ".staging"
COMPLETE = ".complete"  # marker in a staged checkpoint once every file of it is on disk
CHECKPOINTS = "checkpoints"
MODEL = "model"
_BUCKET = 2**24  # gradient all-reduce bucket, in elements


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def all_reduce_gradients(params: list[torch.nn.Parameter]) -> None:
    """Average ``.grad`` over processes; a parameter without a gradient on every process keeps ``None``."""
    world = dist.get_world_size()
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
            flat = _flatten_dense_tensors(bucket)
            dist.all_reduce(flat)
            flat.div_(world)
            for dst, src in zip(bucket, _unflatten_dense_tensors(flat, bucket)):
                dst.copy_(src)
            bucket, size = [], 0


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


class OffsetTaskBatchSampler(TaskBatchSampler):
    """:class:`~mote.data.sampler.TaskBatchSampler` whose epoch ``e`` holds batches ``offset + e * L ...`` of the
    uninterrupted TA-CL stream (``L`` batches an epoch, crossing into the stream's next epoch where needed).

    With ``offset = 0`` it is the plain sampler. A second training stage uses the first stage's steps as its offset,
    so the stages together consume exactly the batches one run of their total steps would.
    """

    def __init__(self, *args, offset: int = 0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        self.offset = int(offset)

    def __iter__(self) -> Iterator[list[int]]:
        if not self.offset:
            yield from super().__iter__()
            return
        n = len(self)
        if n == 0:
            return
        stream_epoch, skip = divmod(self.offset + self.epoch * n, n)
        left = n
        while left:
            for i, batch in enumerate(task_batches(self.sizes, self.group_tasks, self.batch_size, self.seed,
                                                   stream_epoch, self.strategy, self.temperature)):
                if i < skip:
                    continue
                yield batch
                left -= 1
                if not left:
                    return
            stream_epoch, skip = stream_epoch + 1, 0


class MoteTrainer(SentenceTransformerTrainer):
    """``SentenceTransformerTrainer`` + TA-CL batches, atomic checkpoints and DDP gradient averaging (module doc).

    Args:
        group_tasks: the task of each batch group, in ``train_dataset`` order.
        sampling: ``proportional`` | ``temperature`` | ``round-robin``; ``sampling_temperature`` for the second.
        mixed: task-mixed batches instead (the ``static`` arm).
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
        self._staging_dir: str | None = None
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

    def _run_epoch(self, *args, **kwargs):
        epoch = kwargs.get("epoch", args[1] if len(args) > 1 else None)
        if self._ta_sampler is not None and epoch is not None:
            self._ta_sampler.set_epoch(int(epoch))  # also when the loader is wrapped for skipping (resume)
        return super()._run_epoch(*args, **kwargs)

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
    def _get_output_dir(self, trial):
        return self._staging_dir if self._staging_dir is not None else super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial) -> None:
        run_dir = super()._get_output_dir(trial)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        self._staging_dir = os.path.join(run_dir, STAGING)
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._staging_dir = None
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


# ------------------------------------------------------------------------------------------------ run
@dataclass
class TrainResult:
    """What a training run produced."""

    output_dir: Path
    model_dir: Path | None  # None if interrupted
    steps: int
    interrupted: bool
    wall_s: float
    losses: list[tuple[int, float]] = field(default_factory=list)  # (step, loss) as logged

    @property
    def first_loss(self) -> float | None:
        return self.losses[0][1] if self.losses else None

    @property
    def last_loss(self) -> float | None:
        return self.losses[-1][1] if self.losses else None


def make_losses(
    cfg: RunConfig, arm: ArmModel, groups, aux_loss_weight: float | None = None
) -> dict[str, torch.nn.Module] | torch.nn.Module:
    """One loss per batch group (its task's temperature); a single global-temperature loss for ``static``.

    ``aux_loss_weight``: the weight of the routers' load-balancing loss (default: ``tlr.aux_loss_weight`` for the
    ``tlr`` arm, else 0; a TSEmbed stage passes its own).
    """
    if aux_loss_weight is None:
        aux_loss_weight = cfg.tlr.aux_loss_weight if cfg.arm == "tlr" else 0.0
    common = dict(gather_across_devices=cfg.loss.gather_across_devices, aux_loss_weight=aux_loss_weight)

    def make(temperature: float, symmetric: bool) -> torch.nn.Module:
        if cfg.loss.cached:
            return CachedTaskInfoNCE(
                arm.model, mini_batch_size=cfg.loss.mini_batch_size, temperature=temperature, symmetric=symmetric,
                **common,
            )
        return TaskInfoNCE(arm.model, temperature=temperature, symmetric=symmetric, **common)

    if cfg.loss.matryoshka_dims:
        plain = make

        def make(temperature: float, symmetric: bool) -> torch.nn.Module:
            from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss

            return MatryoshkaLoss(
                arm.model, plain(temperature, symmetric), cfg.loss.matryoshka_dims, cfg.loss.matryoshka_weights
            )

    if cfg.arm == "static":
        return make(cfg.loss.static_temperature, False)
    return {g.name: make(cfg.task_kind(g.task).temperature, cfg.task_kind(g.task).symmetric) for g in groups}


def training_arguments(
    cfg: RunConfig,
    output: Path,
    arm: ArmModel,
    router_mapping: dict[str, dict[str, str]],
    stage: Any = None,
) -> SentenceTransformerTrainingArguments:
    """The transformers/sentence-transformers arguments of a run, or of one TSEmbed stage (``stage``: a
    :class:`mote.lora.plan.StageRun`: its steps, learning rates and warm-up; checkpoints in ``output/<stage>/``)."""
    lr_map: dict[str, float] = {}
    if cfg.train.expert_learning_rate is not None and cfg.arm != "ic":
        lr_map[arm.expert_pattern] = cfg.train.expert_learning_rate
    if cfg.arm == "tlr" and cfg.tlr.router_learning_rate is not None and arm.router_pattern:
        lr_map[arm.router_pattern] = cfg.tlr.router_learning_rate
    steps, learning_rate, warmup_ratio = cfg.train.steps, cfg.train.learning_rate, cfg.train.warmup_ratio
    checkpoints = output / CHECKPOINTS
    if stage is not None:
        steps, learning_rate, warmup_ratio = stage.steps, stage.learning_rate, stage.warmup_ratio
        lr_map = dict(stage.learning_rate_mapping)
        checkpoints = output / stage.name / CHECKPOINTS
    report_to: str | list[str] = "none"
    if cfg.log.tensorboard:
        try:
            import tensorboard  # noqa: F401

            report_to = ["tensorboard"]
        except ImportError:
            logger.warning("log.tensorboard: the tensorboard package is not installed; logging to JSONL/CSV only")
    cuda = torch.cuda.is_available()
    return SentenceTransformerTrainingArguments(
        output_dir=str(checkpoints),
        max_steps=steps,
        per_device_train_batch_size=cfg.train.batch_size,  # the global batch: split_batches shares it out
        learning_rate=learning_rate,
        weight_decay=cfg.train.weight_decay,
        lr_scheduler_type=cfg.train.scheduler,
        warmup_steps=round(warmup_ratio * steps),
        max_grad_norm=cfg.train.max_grad_norm,
        gradient_accumulation_steps=cfg.train.gradient_accumulation_steps,
        seed=cfg.seed,
        data_seed=cfg.seed,
        logging_steps=cfg.log.every,
        logging_first_step=True,
        save_strategy="steps" if cfg.checkpoint.every else "no",
        save_steps=cfg.checkpoint.every or 500,
        save_total_limit=cfg.checkpoint.keep,
        report_to=report_to,
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataloader_drop_last=True,
        accelerator_config={"split_batches": True},
        ddp_broadcast_buffers=False,
        ddp_find_unused_parameters=False,
        ddp_backend="gloo" if not cuda and _world()[1] > 1 else None,
        use_cpu=not cuda,
        router_mapping=router_mapping,
        learning_rate_mapping=lr_map,
        eval_strategy="no",
    )


def _say(msg: str) -> None:
    if _world()[0] == 0:
        print(msg, flush=True)


def _logged_losses(metrics: Path) -> list[tuple[int, float]]:
    return [(int(e["step"]), float(e["loss"])) for e in read_log(metrics) if "loss" in e]


def recover_checkpoints(ckpts: Path) -> None:
    """Repair what a checkpoint save killed half-way left in ``ckpts`` (main process, before choosing the checkpoint
    to resume from): a complete staged checkpoint (``.staging/checkpoint-N/`` with its ``.complete`` marker) whose
    ``checkpoint-N`` is missing is published; a ``checkpoint-N`` renamed aside is put back
    (:func:`mote.io.recover_dir`); partial staged checkpoints are removed."""
    if _world()[0] != 0 or not ckpts.is_dir():
        return
    for old in ckpts.glob(f".{PREFIX_CHECKPOINT_DIR}-*.old-*"):
        recover_dir(ckpts / old.name[1:].split(".old-")[0])
    staging = ckpts / STAGING
    if staging.is_dir():
        for staged in sorted(staging.iterdir()):
            target = ckpts / staged.name
            if (staged / COMPLETE).is_file() and not target.exists():
                logger.warning("publishing %s: its save was killed after it was complete", target)
                replace_dir(staged, target)
        shutil.rmtree(staging, ignore_errors=True)


def _check_output(cfg: RunConfig, output: Path, resume: bool) -> str | None:
    """The checkpoint to resume from (``None`` for a fresh run); errors for a clash with an earlier run."""
    ckpts = output / CHECKPOINTS
    recover_checkpoints(ckpts)
    last = get_last_checkpoint(str(ckpts)) if ckpts.is_dir() else None
    if not resume:
        if last is not None or (output / MODEL).exists():
            raise FileExistsError(
                f"{output} already holds a training run; pass --resume to continue it, or choose another --output"
            )
        return None
    if last is None:
        raise FileNotFoundError(f"--resume: {ckpts} holds no checkpoint to resume from")
    check_resumed_config(cfg, output)
    return last


def check_resumed_config(cfg: RunConfig, output: Path) -> None:
    """:class:`ConfigError` if ``cfg`` differs from the recipe saved by the run in ``output`` (exact resume)."""
    saved = output / CONFIG_FILE
    if saved.is_file():
        import yaml

        before = parse_config(yaml.safe_load(saved.read_text()), str(saved), check_files=False).model_dump()
        now = cfg.model_dump()
        diff = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
        if "tasks" not in diff and list(before["tasks"]) != list(now["tasks"]):
            diff.append("tasks")  # the task order fixes the batch groups' order, hence the batches
        if diff:
            raise ConfigError(
                [f"section {k!r} differs from the run being resumed ({saved}); exact resume needs the same config"
                 for k in diff]
            )


@dataclass
class PreparedRun:
    """Everything :func:`run_training` builds before it starts the loop (tests inspect it)."""

    cfg: RunConfig
    output: Path
    trainer: MoteTrainer
    arm: ArmModel
    data: TrainingData
    interrupt: GracefulInterrupt
    resume_from: str | None


def load_run_data(cfg: RunConfig) -> TrainingData:
    """The run's training data (seeded), with one summary line per dataset on the main process."""
    data_root = cfg.data_root()
    data = TrainingData.load(
        cfg.task_specs(data_root), data_root, cfg.seed, progress=_say, holdout=cfg.data.holdout
    )
    for row in data.summary():
        _say(f"  {row['task']:<16} {row['dataset']:<40} {row['pairs']:>7,} pairs  {row['hard_negatives']:>7,} hard "
             f"negatives  {row['labels']:>6,} labels")
    return data


def write_run_files(cfg: RunConfig, output: Path, data: TrainingData, staging: list[Path]) -> None:
    """Main process: the output folder, the resolved recipe and the data summary; ``staging`` folders (leftovers
    of a killed checkpoint save) are removed."""
    if _world()[0] != 0:
        return
    output.mkdir(parents=True, exist_ok=True)
    for folder in staging:
        shutil.rmtree(folder, ignore_errors=True)
    atomic_write_text(output / CONFIG_FILE, cfg.to_yaml())
    atomic_write_json(output / "data_summary.json", {"tasks": data.summary(), "groups": [
        {"name": g.name, "task": g.task, "pairs": len(g)} for g in data.groups()]})


def make_collator(
    arm: ArmModel, router_mapping: dict[str, dict[str, str]], task_max_seq_length: dict[str, int] | None = None
) -> TaskCollator:
    return TaskCollator(
        preprocess_fn=arm.model.preprocess,
        router_mapping=router_mapping,
        prefixes=None if arm.routed else arm.prefixes,
        task_max_seq_length=dict(task_max_seq_length or {}),
        model=arm.model,
    )


def make_callbacks(
    cfg: RunConfig,
    output: Path,
    arm: ArmModel,
    interrupt: GracefulInterrupt,
    callbacks: list | None = None,
    step_offset: int = 0,
    stage: str | None = None,
) -> list:
    """Metrics log, progress bar, periodic evaluation, Ctrl-C handling, then ``callbacks``. A later training stage
    passes the steps before it (``step_offset``) so that logs and evaluations count the run's steps."""
    examples_per_step = cfg.train.batch_size * cfg.train.gradient_accumulation_steps
    tags = {"stage": stage} if stage else None
    metrics = MetricsLogger(output, examples_per_step, step_offset=step_offset, tags=tags)
    steps = [] if cfg.arm in TSEMBED_ARMS else cfg.select.snapshot_steps(cfg.train.steps)  # selection candidates
    snapshots = WeightSnapshots(output, steps, cfg.train.steps, step_offset)
    out = [
        metrics,
        snapshots,
        QuickEvaluation(
            output, cfg.eval.every, cfg.eval.at_end, cfg.eval.suite, cfg.eval.options, name=cfg.arm,
            dense_prefixes=None if arm.routed else arm.prefixes, metrics=metrics, step_offset=step_offset,
        ),
        interrupt,
        *(callbacks or []),
    ]
    if cfg.log.progress:
        desc = f"train {cfg.arm}" + (f" {stage}" if stage else "")
        out.insert(1, ProgressBar(examples_per_step, desc=desc))
    return out


def make_trainer(
    cfg: RunConfig,
    arm: ArmModel,
    args: SentenceTransformerTrainingArguments,
    train_dataset,
    losses,
    collator: TaskCollator,
    callbacks: list,
    groups,
    **kwargs,
) -> MoteTrainer:
    """The :class:`MoteTrainer` of a run (or stage); ``kwargs`` go to it (``batch_offset``, ...)."""
    from transformers import PrinterCallback

    trainer = MoteTrainer(
        model=arm.model,
        args=args,
        train_dataset=train_dataset,
        loss=losses,
        data_collator=collator,
        callbacks=callbacks,
        group_tasks=[g.task for g in groups],
        sampling=cfg.data.sampling,
        sampling_temperature=cfg.data.sampling_temperature,
        mixed=cfg.arm == "static",
        **kwargs,
    )
    trainer.remove_callback(PrinterCallback)
    return trainer


def check_world(cfg: RunConfig) -> None:
    world = _world()[1]
    if cfg.train.batch_size % world:
        raise ValueError(f"train.batch_size {cfg.train.batch_size} must be divisible by the {world} processes")


def prepare_run(
    cfg: RunConfig, output: str | os.PathLike, resume: bool = False, callbacks: list | None = None
) -> PreparedRun:
    """Check the output folder, load the data, build the arm, its losses, collator and trainer (see
    :func:`run_training`). The TSEmbed arms train in stages, one trainer each (:mod:`mote.train.tsembed`)."""
    from transformers import set_seed

    if cfg.arm in TSEMBED_ARMS:
        raise ValueError(f"the {cfg.arm} arm trains in stages (one trainer each): use run_training")
    output = Path(output)
    check_world(cfg)
    last = _check_output(cfg, output, resume)

    set_seed(cfg.seed)
    data = load_run_data(cfg)
    groups = data.groups()
    arm = build_arm(cfg)
    counts = arm.parameter_counts()
    _say(f"arm {cfg.arm}: {type(arm.model[0]).__name__}, {counts['trainable']:,} of {counts['total']:,} parameters "
         "trainable")
    router_mapping = {g.name: dict(cfg.task_kind(g.task).routes) for g in groups}
    collator = make_collator(arm, router_mapping, cfg.model.task_max_seq_length)
    write_run_files(cfg, output, data, [output / CHECKPOINTS / STAGING])
    interrupt = GracefulInterrupt()
    trainer = make_trainer(
        cfg, arm, training_arguments(cfg, output, arm, router_mapping), to_dataset_dict(groups),
        make_losses(cfg, arm, groups), collator, make_callbacks(cfg, output, arm, interrupt, callbacks), groups,
    )
    return PreparedRun(cfg, output, trainer, arm, data, interrupt, last)


def run_training(
    cfg: RunConfig, output: str | os.PathLike, resume: bool = False, callbacks: list | None = None
) -> TrainResult:
    """Train ``cfg.arm`` on ``cfg``'s data into ``output`` (checkpoints, metrics, ``model/``); see module doc.

    Layout of ``output``: ``train_config.yaml`` (the resolved recipe), ``data_summary.json``, ``metrics.jsonl`` /
    ``metrics.csv``, ``checkpoints/checkpoint-N/`` (resumable), ``eval/`` (quick evaluations) and ``model/`` (the
    final model: a MoTE folder for ``mote``/``static``/``tlr``, a plain sentence-transformers folder with the task
    prompts for ``ic``/``ic-matched``; ``train_config.yaml`` is copied next to its weights). ``callbacks`` are extra
    ``TrainerCallback`` s. The TSEmbed arms train in stages: ``stage1/``, ``stage2/`` replace ``checkpoints/``
    (see :func:`mote.train.tsembed.run_tsembed`).
    """
    if cfg.arm in TSEMBED_ARMS:
        from mote.train.tsembed import run_tsembed

        return run_tsembed(cfg, output, resume, callbacks)
    t0 = time.perf_counter()
    run = prepare_run(cfg, output, resume, callbacks)
    trainer, output = run.trainer, run.output
    trainer.train(resume_from_checkpoint=run.resume_from)

    model_dir = None
    if not run.interrupt.interrupted:
        model_dir = output / MODEL
        if run.arm.base_max_seq_length is not None:  # inference keeps the base model's limit
            run.arm.model.max_seq_length = run.arm.base_max_seq_length
        if cfg.loss.matryoshka_dims:
            record_matryoshka_dims(run.arm.model, cfg.loss.matryoshka_dims)
        if trainer.is_world_process_zero():
            with atomic_dir(model_dir, overwrite=True) as tmp:
                run.arm.model.save(str(tmp))
                atomic_write_text(tmp / CONFIG_FILE, cfg.to_yaml())
        trainer.accelerator.wait_for_everyone()
        _say(f"saved the trained {cfg.arm} model to {model_dir}")
    else:
        _say(f"interrupted at step {trainer.state.global_step}: checkpoint saved; continue with --resume")
    return TrainResult(
        output, model_dir, trainer.state.global_step, run.interrupt.interrupted, time.perf_counter() - t0,
        _logged_losses(output / "metrics.jsonl"),
    )


def record_matryoshka_dims(model, dims: list[int]) -> None:
    """Note the trained nested dimensions in the model: a MoTE-family folder keeps them in ``mote_config.json``."""
    first = model[0]
    if hasattr(first, "matryoshka_dims"):
        first.matryoshka_dims = sorted({int(d) for d in dims}, reverse=True)


def describe_result(result: TrainResult) -> dict[str, Any]:
    return {
        "output_dir": str(result.output_dir),
        "model_dir": str(result.model_dir) if result.model_dir else None,
        "steps": result.steps,
        "interrupted": result.interrupted,
        "wall_s": round(result.wall_s, 1),
        "first_loss": result.first_loss,
        "last_loss": result.last_loss,
    }
