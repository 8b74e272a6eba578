"""The TSEmbed methods in the TA-CL trainer: MoE-LoRA experts trained in two stages, the second with EANS negatives.

``tsembed``: stage 1 (expert specialisation: adapters and routers, load-balancing loss, plain negatives: in-batch
and the data's hard negatives), then stage 2 (routers frozen by default, EANS negatives mixed into every batch's
candidates). ``tsembed-noeans``: stage 1 only, for the same total number of steps (the ablation). The plan, its
defaults and what each stage trains come from :mod:`mote.lora.plan` (``cfg.method``); this module runs it.

Each stage is one :class:`~mote.train.mote_trainer.MoteTrainer` (its own optimizer, warm-up and decay, learning rates
and trainable set) on the same model object, the same data, collator and seed as every other method. The stages
continue one TA-CL batch stream (stage 2 starts at batch ``stage1.steps``, see
:class:`~mote.data.sampler.OffsetTaskBatchSampler`): a ``tsembed`` run of ``train.steps`` steps sees exactly the
batches of a ``mote`` run of ``train.steps`` steps.

Layout of ``output``::

    train_config.yaml, data_summary.json, parameters.json      the resolved recipe, data, parameter counts
    metrics.jsonl / metrics.csv                                 one log; run step numbers; JSONL entries tagged
                                                                with their stage
    stage1/checkpoints/checkpoint-N/                            resumable (stage 2's also hold the EANS pools)
    stage1/model/                                               the model after stage 1 (not for the last stage)
    stage2/checkpoints/checkpoint-N/
    model/                                                      the final TSEmbed model (+ train_config.yaml);
                                                                model/moe_lora/ is a stand-alone adapter folder

Resume (``--resume``): the first stage without a finished model resumes from its last checkpoint, or, without one,
starts from the previous stage's model. EANS pools are saved in each checkpoint, so a resumed run mines exactly
the negatives of an uninterrupted one (bitwise-identical weights on CPU, ``tests/test_train_tsembed.py``).

DDP: as for the other methods (the trainer averages gradients itself). Each process mines EANS negatives for its
own share of the batch from identical pools, and the mined negatives are gathered with the other candidates; a
negative mined on two processes then appears twice among the candidates (one process de-duplicates within its
share only), so EANS under DDP is close to, not bitwise, the single-process loss.

Example:
    >>> from mote.train import load_config, run_training
    >>> run_training(load_config("configs/tsembed-minilm.yaml"), "runs/train/tsembed")   # doctest: +SKIP
"""

from __future__ import annotations

import gc
import os
import time
from dataclasses import dataclass
from pathlib import Path

from transformers.trainer_utils import get_last_checkpoint

from mote.atomic import atomic_dir, atomic_write_json, atomic_write_text
from mote.train.callbacks import GracefulInterrupt
from mote.train.checkpoints import CHECKPOINTS, MODEL, STAGING, check_resumed_config, recover_checkpoints
from mote.train.config import CONFIG_FILE, RunConfig
from mote.train.distributed import barrier, is_main, say
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

PARAMETERS_FILE = "parameters.json"


@dataclass(frozen=True)
class StageStatus:
    """Where one stage of a run in ``output`` stands."""

    index: int
    name: str
    steps: int
    last_checkpoint: str | None  # its newest checkpoint folder
    done: bool  # its model is saved (the last stage: the run's final model/)


def stage_status(cfg: RunConfig, output: str | os.PathLike) -> list[StageStatus]:
    """The stages of ``cfg``'s plan and how far the run in ``output`` got in each."""
    from mote.lora.plan import stage_runs

    output = Path(output)
    runs = stage_runs(cfg.training_method().plan(cfg))
    out = []
    for i, run in enumerate(runs):
        ckpts = output / run.name / CHECKPOINTS
        last = get_last_checkpoint(str(ckpts)) if ckpts.is_dir() else None
        done = (output / MODEL).is_dir() if i == len(runs) - 1 else (output / run.name / MODEL).is_dir()
        out.append(StageStatus(i, run.name, run.steps, last, done))
    return out


def _start(cfg: RunConfig, output: Path, resume: bool) -> tuple[int, str | None]:
    """``(first stage to run, checkpoint to resume it from)``; errors for a clash with an earlier run."""
    from mote.lora.plan import stage_runs

    for run in stage_runs(cfg.training_method().plan(cfg)):
        recover_checkpoints(output / run.name / CHECKPOINTS)  # what a killed checkpoint save left behind
    status = stage_status(cfg, output)
    started = any(s.last_checkpoint or s.done for s in status) or (output / MODEL).exists()
    if not resume:
        if started or (output / CHECKPOINTS).is_dir():  # the latter: a one-stage method's run
            raise FileExistsError(
                f"{output} already holds a training run; pass --resume to continue it, or choose another --output"
            )
        return 0, None
    if not started:
        raise FileNotFoundError(f"--resume: {output} holds no checkpoint (or finished stage) to resume from")
    check_resumed_config(cfg, output)
    for s in status:
        if not s.done:
            return s.index, s.last_checkpoint
    return len(status), None


def run_tsembed(
    cfg: RunConfig, output: str | os.PathLike, resume: bool = False, callbacks: list | None = None
) -> TrainResult:
    """Train the ``tsembed`` / ``tsembed-noeans`` method of ``cfg`` into ``output`` (module doc: layout, resume).

    ``callbacks`` (extra ``TrainerCallback`` s) join every stage's trainer and see that stage's own step numbers
    (``args.output_dir`` ends in ``<stage>/checkpoints``).
    """
    from transformers import set_seed

    from mote.data.training import to_dataset_dict
    from mote.lora.eans import EANSRefreshCallback
    from mote.lora.model import load_adapter_weights
    from mote.lora.plan import apply_stage, build_miner, stage_runs, wrap_losses
    from mote.lora.st import ADAPTER_SUBFOLDER

    t0 = time.perf_counter()
    output = Path(output)
    check_world(cfg)
    start, resume_from = _start(cfg, output, resume)
    plan = cfg.training_method().plan(cfg)
    runs = stage_runs(plan)

    set_seed(cfg.seed)
    data = load_run_data(cfg)
    groups = data.groups()
    built = cfg.training_method().build(cfg)
    model = built.model
    report = model[0].parameter_report()
    say(f"method {cfg.method.name}: {model[0]!r}")
    say(f"  parameters: {report['total']:,} total, {report['adapters']:,} adapters ({report['experts']:,} experts + "
         f"{report['routers']:,} routers) trained, {report['active']:,} active per token; stages: "
         + ", ".join(f"{r.name} {r.steps} steps lr {r.learning_rate:g}{' + EANS' if r.eans else ''}" for r in runs))
    router_mapping = {g.name: dict(cfg.objective_kind(g.task).routes) for g in groups}
    collator = make_collator(built, router_mapping)
    write_run_files(cfg, output, data, [output / r.name / CHECKPOINTS / STAGING for r in runs])
    if is_main():
        atomic_write_json(output / PARAMETERS_FILE, {
            "method": cfg.method.name, **report,
            "stages": [{"name": r.name, "steps": r.steps, "learning_rate": r.learning_rate, "eans": r.eans,
                        **apply_stage(model, r)} for r in runs],
        })
    if 0 < start < len(runs):  # continue from the previous stage's model (the backbone is frozen throughout)
        previous = output / runs[start - 1].name / MODEL
        load_adapter_weights(model[0].auto_model, previous / ADAPTER_SUBFOLDER)
        say(f"resuming at {runs[start].name} from {resume_from or previous}")
    elif start == len(runs):
        say(f"{output / MODEL} is already trained: nothing to resume")

    train_dataset = to_dataset_dict(groups)
    interrupt = GracefulInterrupt()
    offset = sum(r.steps for r in runs[:start])
    steps = offset
    for i in range(start, len(runs)):
        run = runs[i]
        apply_stage(model, run)
        losses = make_losses(cfg, built, groups, aux_loss_weight=run.aux_loss_weight)
        extras = []
        if run.eans:
            miner = build_miner(plan, groups, router_mapping)
            losses = wrap_losses(losses, miner, router_mapping)
            extras.append(EANSRefreshCallback(miner, model, resume_from=resume_from if i == start else None))
        trainer = make_trainer(
            cfg, built, training_arguments(cfg, output, built, router_mapping, stage=run), train_dataset, losses,
            collator, [*extras, *make_callbacks(cfg, output, built, interrupt, callbacks, offset, run.name)], groups,
            batch_offset=offset, checkpoint_extras=extras,
        )
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        say(f"{run.name}: {run.steps} steps from run step {offset}, lr {run.learning_rate:g}, {trainable:,} "
             f"parameters trainable{', EANS negatives' if run.eans else ''}")
        trainer.train(resume_from_checkpoint=resume_from if i == start else None)
        steps = offset + trainer.state.global_step
        if interrupt.interrupted:
            break
        if i < len(runs) - 1:
            if trainer.is_world_process_zero():
                with atomic_dir(output / run.name / MODEL, overwrite=True) as tmp:
                    _save(built, tmp, cfg)
            trainer.accelerator.wait_for_everyone()
            say(f"{run.name} done: saved to {output / run.name / MODEL}")
        offset += run.steps
        del trainer
        gc.collect()

    model_dir = None
    if not interrupt.interrupted:
        model_dir = output / MODEL
        if start < len(runs) or not model_dir.is_dir():
            if is_main():
                with atomic_dir(model_dir, overwrite=True) as tmp:
                    _save(built, tmp, cfg)
            barrier()
        say(f"saved the trained {cfg.method.name} model to {model_dir}")
    else:
        say(f"interrupted at step {steps}: checkpoint saved; continue with --resume")
    return TrainResult(output, model_dir, steps, interrupt.interrupted, time.perf_counter() - t0,
                       logged_losses(output / "metrics.jsonl"))


def _save(built, folder: Path, cfg: RunConfig) -> None:
    """Save the model with the base model's own ``max_seq_length`` (training truncates), then restore it."""
    model = built.model
    training_length = model.max_seq_length
    if built.base_max_seq_length is not None:
        model.max_seq_length = built.base_max_seq_length
    try:
        model.save(str(folder))
    finally:
        model.max_seq_length = training_length
    atomic_write_text(folder / CONFIG_FILE, cfg.to_yaml())
