"""The parts of a training run, shared by the one-stage loop (:mod:`mote.train.trainer`) and the staged one
(:mod:`mote.train.tsembed`): data, losses, training arguments, collator, callbacks, the trainer, run files.

Example:
    >>> data = load_run_data(cfg)                                    # doctest: +SKIP
    >>> losses = make_losses(cfg, built, data.groups())                # doctest: +SKIP
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from sentence_transformers import SentenceTransformerTrainingArguments

from mote.atomic import atomic_write_json, atomic_write_text
from mote.data.training import TrainingData
from mote.files import read_log
from mote.methods import MethodModel
from mote.train.callbacks import GracefulInterrupt, MetricsLogger, ProgressBar, QuickEvaluation
from mote.train.checkpoints import CHECKPOINTS, RunIdentity
from mote.train.collator import TaskCollator
from mote.train.config import CONFIG_FILE, RunConfig
from mote.train.distributed import say, world
from mote.train.losses import CachedTaskInfoNCE, TaskInfoNCE
from mote.train.mote_trainer import MoteTrainer
from mote.train.snapshots import WeightSnapshots

logger = logging.getLogger(__name__)


@dataclass
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
    cfg: RunConfig, built: MethodModel, groups, aux_loss_weight: float | None = None
) -> dict[str, torch.nn.Module] | torch.nn.Module:
    """One loss per batch group (its task's temperature); a single global-temperature loss for a method with
    task-mixed batches (``static``).

    ``aux_loss_weight``: the weight of the routers' load-balancing loss (default: the method's,
    :meth:`~mote.methods.base.Method.aux_loss_weight`; a TSEmbed stage passes its own).
    """
    method = cfg.training_method()
    if aux_loss_weight is None:
        aux_loss_weight = method.aux_loss_weight(cfg)
    common = dict(gather_across_devices=cfg.loss.gather_across_devices, aux_loss_weight=aux_loss_weight)

    def make(temperature: float, symmetric: bool) -> torch.nn.Module:
        if cfg.loss.cached:
            return CachedTaskInfoNCE(
                built.model, mini_batch_size=cfg.loss.mini_batch_size, temperature=temperature, symmetric=symmetric,
                **common,
            )
        return TaskInfoNCE(built.model, temperature=temperature, symmetric=symmetric, **common)

    if cfg.loss.matryoshka_dims:
        plain = make

        def make(temperature: float, symmetric: bool) -> torch.nn.Module:
            from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss

            return MatryoshkaLoss(
                built.model, plain(temperature, symmetric), cfg.loss.matryoshka_dims, cfg.loss.matryoshka_weights
            )

    if method.mixed_batches:
        return make(method.mixed_batch_temperature(cfg), False)
    return {g.name: make(cfg.objective_kind(g.task).temperature, cfg.objective_kind(g.task).symmetric) for g in groups}


def training_arguments(
    cfg: RunConfig,
    output: Path,
    built: MethodModel,
    router_mapping: dict[str, dict[str, str]],
    stage: Any = None,
) -> SentenceTransformerTrainingArguments:
    """The transformers/sentence-transformers arguments of a run, or of one TSEmbed stage (``stage``: a
    :class:`mote.lora.plan.StageRun`: its steps, learning rates and warm-up; checkpoints in ``output/<stage>/``)."""
    lr_map = cfg.training_method().learning_rate_mapping(cfg, built)
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
        ddp_backend="gloo" if not cuda and world()[1] > 1 else None,
        use_cpu=not cuda,
        router_mapping=router_mapping,
        learning_rate_mapping=lr_map,
        eval_strategy="no",
    )


def logged_losses(metrics: Path) -> list[tuple[int, float]]:
    return [(int(e["step"]), float(e["loss"])) for e in read_log(metrics) if "loss" in e]


def load_run_data(cfg: RunConfig) -> TrainingData:
    """The run's training data (seeded), with one summary line per dataset on the main process."""
    data_root = cfg.data_root()
    data = TrainingData.load(
        cfg.objective_specs(data_root), data_root, cfg.seed, progress=say, holdout=cfg.data.holdout
    )
    for row in data.summary():
        say(f"  {row['task']:<16} {row['dataset']:<40} {row['pairs']:>7,} pairs  {row['hard_negatives']:>7,} hard "
             f"negatives  {row['labels']:>6,} labels")
    return data


def write_run_files(cfg: RunConfig, output: Path, data: TrainingData, staging: list[Path]) -> None:
    """Main process: the output folder, the resolved recipe and the data summary; ``staging`` folders (leftovers
    of a killed checkpoint save) are removed."""
    if world()[0] != 0:
        return
    output.mkdir(parents=True, exist_ok=True)
    for folder in staging:
        shutil.rmtree(folder, ignore_errors=True)
    atomic_write_text(output / CONFIG_FILE, cfg.to_yaml())
    atomic_write_json(output / "data_summary.json", {"tasks": data.summary(), "groups": [
        {"name": g.name, "task": g.task, "pairs": len(g)} for g in data.groups()]})


def make_collator(
    built: MethodModel, router_mapping: dict[str, dict[str, str]], task_max_seq_length: dict[str, int] | None = None
) -> TaskCollator:
    return TaskCollator(
        preprocess_fn=built.model.preprocess,
        router_mapping=router_mapping,
        prefixes=None if built.routed else built.prefixes,
        task_max_seq_length=dict(task_max_seq_length or {}),
        model=built.model,
    )


def make_callbacks(
    cfg: RunConfig,
    output: Path,
    built: MethodModel,
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
    # selection candidates (mote select)
    steps = cfg.select.snapshot_steps(cfg.train.steps) if cfg.training_method().keeps_snapshots else []
    snapshots = WeightSnapshots(output, steps, cfg.train.steps, step_offset)
    out = [
        metrics,
        snapshots,
        QuickEvaluation(
            output, cfg.eval.every, cfg.eval.at_end, cfg.eval.suite, cfg.eval.options, name=cfg.method.name,
            dense_prefixes=None if built.routed else built.prefixes, metrics=metrics, step_offset=step_offset,
        ),
        interrupt,
        *(callbacks or []),
    ]
    if cfg.log.progress:
        desc = f"train {cfg.method.name}" + (f" {stage}" if stage else "")
        out.insert(1, ProgressBar(examples_per_step, desc=desc))
    return out


def make_trainer(
    cfg: RunConfig,
    built: MethodModel,
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

    kwargs["checkpoint_extras"] = [RunIdentity(cfg), *kwargs.get("checkpoint_extras", ())]  # whose checkpoint
    trainer = MoteTrainer(
        model=built.model,
        args=args,
        train_dataset=train_dataset,
        loss=losses,
        data_collator=collator,
        callbacks=callbacks,
        group_tasks=[g.task for g in groups],
        sampling=cfg.data.sampling,
        sampling_temperature=cfg.data.sampling_temperature,
        mixed=cfg.training_method().mixed_batches,
        **kwargs,
    )
    trainer.remove_callback(PrinterCallback)
    return trainer


def check_world(cfg: RunConfig) -> None:
    processes = world()[1]
    if cfg.train.batch_size % processes:
        raise ValueError(f"train.batch_size {cfg.train.batch_size} must be divisible by the {processes} processes")
