"""Checkpoint folders of a training run: their names, the repair of a save killed half-way, and the check that a
resumed run has the recipe it started with.

A checkpoint is written to ``checkpoints/.staging/checkpoint-N/``, flushed, marked complete (``.complete``) and
renamed into place by :class:`~mote.train.mote_trainer.MoteTrainer`; :func:`recover_checkpoints` finishes or
removes what a kill left behind.

Example:
    >>> recover_checkpoints(Path("runs/train/mote/checkpoints"))   # doctest: +SKIP
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from mote.atomic import recover_dir, replace_dir
from mote.train.config import CONFIG_FILE, ConfigError, RunConfig, parse_config
from mote.train.distributed import world

logger = logging.getLogger(__name__)

STAGING = ".staging"
COMPLETE = ".complete"  # marker in a staged checkpoint once every file of it is on disk
CHECKPOINTS = "checkpoints"
MODEL = "model"  # the model to use: the selection when the run selects, else the trained weights
TRAINED = "trained"  # the raw final weights of a run that selects (what `mote select` chooses from)


def recover_checkpoints(ckpts: Path) -> None:
    """Repair what a checkpoint save killed half-way left in ``ckpts`` (main process, before choosing the checkpoint
    to resume from): a complete staged checkpoint (``.staging/checkpoint-N/`` with its ``.complete`` marker) whose
    ``checkpoint-N`` is missing is published; a ``checkpoint-N`` renamed aside is put back
    (:func:`mote.atomic.recover_dir`); partial staged checkpoints are removed."""
    if world()[0] != 0 or not ckpts.is_dir():
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
