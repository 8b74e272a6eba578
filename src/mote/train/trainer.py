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

:func:`run_training` is the whole ``mote train``: validate, load data, build the method's model (its method,
:mod:`mote.methods`), train, save. Where things live: :mod:`mote.train.mote_trainer` (the trainer subclass),
:mod:`mote.train.parts` (losses, arguments, collator, callbacks: shared with the staged loop of
:mod:`mote.train.tsembed`), :mod:`mote.train.checkpoints`, :mod:`mote.train.distributed`, and the TA-CL samplers
in :mod:`mote.data.sampler`.

Example:
    >>> from mote.train import load_config, run_training
    >>> result = run_training(load_config("configs/demo.yaml"), "runs/demo-train")   # doctest: +SKIP
    >>> result.model_dir                                                              # doctest: +SKIP
    PosixPath('runs/demo-train/model')
"""

from __future__ import annotations

import importlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers.trainer_utils import get_last_checkpoint

from mote.atomic import atomic_dir, atomic_write_text
from mote.data.sampler import OffsetTaskBatchSampler
from mote.data.training import TrainingData, to_dataset_dict
from mote.methods import MethodModel
from mote.train.callbacks import GracefulInterrupt
from mote.train.checkpoints import CHECKPOINTS, MODEL, STAGING, TRAINED, check_resumed_config, recover_checkpoints
from mote.train.config import CONFIG_FILE, RunConfig
from mote.train.distributed import all_reduce_gradients, say
from mote.train.mote_trainer import MoteTrainer, expert_aware_weight_decay
from mote.train.parts import (
    TrainResult,
    check_world,
    load_run_data,
    logged_losses,
    make_callbacks,
    make_collator,
    make_losses,
    make_trainer,
    training_arguments,
    write_run_files,
)

__all__ = [  # the trainer's API (the parts are re-exported for code that imported them from here)
    "MoteTrainer",
    "OffsetTaskBatchSampler",
    "PreparedRun",
    "TrainResult",
    "all_reduce_gradients",
    "describe_result",
    "expert_aware_weight_decay",
    "prepare_run",
    "recover_checkpoints",
    "run_training",
]


def _check_output(cfg: RunConfig, output: Path, resume: bool) -> str | None:
    """The checkpoint to resume from (``None`` for a fresh run); errors for a clash with an earlier run."""
    ckpts = output / CHECKPOINTS
    recover_checkpoints(ckpts)
    last = get_last_checkpoint(str(ckpts)) if ckpts.is_dir() else None
    if not resume:
        if last is not None or (output / MODEL).exists() or (output / TRAINED).exists():
            raise FileExistsError(
                f"{output} already holds a training run; pass --resume to continue it, or choose another --output"
            )
        return None
    if last is None:
        raise FileNotFoundError(f"--resume: {ckpts} holds no checkpoint to resume from")
    check_resumed_config(cfg, output)
    return last


@dataclass
class PreparedRun:
    """Everything :func:`run_training` builds before it starts the loop (tests inspect it)."""

    cfg: RunConfig
    output: Path
    trainer: MoteTrainer
    built: MethodModel
    data: TrainingData
    interrupt: GracefulInterrupt
    resume_from: str | None


def prepare_run(
    cfg: RunConfig, output: str | os.PathLike, resume: bool = False, callbacks: list | None = None
) -> PreparedRun:
    """Check the output folder, load the data, build the method's model, its losses, collator and trainer (see
    :func:`run_training`). A method with a training loop of its own (the TSEmbed methods train in stages, one
    trainer each: :mod:`mote.train.tsembed`) is refused: use :func:`run_training`."""
    from transformers import set_seed

    if cfg.training_method().training_loop is not None:
        raise ValueError(f"the {cfg.method.name} method trains with a loop of its own (e.g. in stages): "
                         "use run_training")
    output = Path(output)
    check_world(cfg)
    last = _check_output(cfg, output, resume)

    set_seed(cfg.seed)
    data = load_run_data(cfg)
    groups = data.groups()
    built = cfg.training_method().build(cfg)
    counts = built.parameter_counts()
    say(f"method {cfg.method.name}: {type(built.model[0]).__name__}, {counts['trainable']:,} of "
        f"{counts['total']:,} parameters trainable")
    router_mapping = {g.name: dict(cfg.objective_kind(g.task).routes) for g in groups}
    collator = make_collator(built, router_mapping, cfg.model.task_max_seq_length)
    write_run_files(cfg, output, data, [output / CHECKPOINTS / STAGING])
    interrupt = GracefulInterrupt()
    trainer = make_trainer(
        cfg, built, training_arguments(cfg, output, built, router_mapping), to_dataset_dict(groups),
        make_losses(cfg, built, groups), collator, make_callbacks(cfg, output, built, interrupt, callbacks), groups,
    )
    return PreparedRun(cfg, output, trainer, built, data, interrupt, last)


def run_training(
    cfg: RunConfig, output: str | os.PathLike, resume: bool = False, callbacks: list | None = None
) -> TrainResult:
    """Train ``cfg.method`` on ``cfg``'s data into ``output`` (checkpoints, metrics, the final weights); see the
    module doc.

    Layout of ``output``: ``train_config.yaml`` (the resolved recipe), ``data_summary.json``, ``metrics.jsonl`` /
    ``metrics.csv``, ``checkpoints/checkpoint-N/`` (resumable), ``snapshots/``, ``eval/`` (quick evaluations) and
    the final weights (a MoTE folder for ``mote``/``static``/``tlr``, a plain sentence-transformers folder with the
    task prompts for ``ic``/``ic-matched``; ``train_config.yaml`` is copied next to them): in ``trained/`` when the
    run selects (:meth:`RunConfig.selects`; :func:`mote.select.run.train_and_select` then writes ``model/``), else
    in ``model/``. This function trains only; ``mote train`` is :func:`mote.select.run.train_and_select`.
    ``callbacks`` are extra ``TrainerCallback`` s. A method may bring its own loop
    (:meth:`~mote.methods.base.Method.training_loop`): the TSEmbed methods train in stages, ``stage1/``, ``stage2/``
    replacing ``checkpoints/`` (see :func:`mote.train.tsembed.run_tsembed`).
    """
    loop = training_loop(cfg)
    if loop is not None:
        return loop(cfg, output, resume, callbacks)
    t0 = time.perf_counter()
    run = prepare_run(cfg, output, resume, callbacks)
    trainer, output = run.trainer, run.output
    trainer.train(resume_from_checkpoint=run.resume_from)

    model_dir = None
    if not run.interrupt.interrupted:
        model_dir = output / final_folder(cfg)
        if run.built.base_max_seq_length is not None:  # inference keeps the base model's limit
            run.built.model.max_seq_length = run.built.base_max_seq_length
        if cfg.loss.matryoshka_dims:
            record_matryoshka_dims(run.built.model, cfg.loss.matryoshka_dims)
        if trainer.is_world_process_zero():
            with atomic_dir(model_dir, overwrite=True) as tmp:
                run.built.model.save(str(tmp))
                atomic_write_text(tmp / CONFIG_FILE, cfg.to_yaml())
        trainer.accelerator.wait_for_everyone()
        say(f"saved the trained {cfg.method.name} model to {model_dir}")
    else:
        say(f"interrupted at step {trainer.state.global_step}: checkpoint saved; continue with --resume")
    return TrainResult(
        output, model_dir, trainer.state.global_step, run.interrupt.interrupted, time.perf_counter() - t0,
        logged_losses(output / "metrics.jsonl"),
    )


def final_folder(cfg: RunConfig) -> str:
    """Where a finished run's final weights go: ``trained/`` when selection follows (it writes ``model/``), else
    ``model/`` (the model to use)."""
    return TRAINED if cfg.selects() else MODEL


def training_loop(cfg: RunConfig):
    """The training loop of ``cfg``'s method when it brings its own (``"module:function"``, imported here), else
    ``None`` (the one-stage loop of :func:`prepare_run`)."""
    spec = cfg.training_method().training_loop
    if spec is None:
        return None
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


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
