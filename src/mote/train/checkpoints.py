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

from mote.atomic import atomic_write_json, recover_dir, replace_dir
from mote.files import RUN_MODEL, RUN_TRAINED
from mote.train.config import CONFIG_FILE, ConfigError, RunConfig, parse_config
from mote.train.distributed import world

logger = logging.getLogger(__name__)

STAGING = ".staging"
COMPLETE = ".complete"  # marker in a staged checkpoint once every file of it is on disk
CHECKPOINTS = "checkpoints"
MODEL = RUN_MODEL  # the model to use: the selection when the run selects, else the trained weights
TRAINED = RUN_TRAINED  # the raw final weights of a run that selects (what `mote select` chooses from)


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
    set_aside_damaged(ckpts)


def damage(checkpoint: Path) -> str | None:
    """What is wrong with the files of a published checkpoint, or ``None``: its ``.pt`` / ``.pth`` archives are
    read through (every member's CRC: a truncated ``optimizer.pt`` fails here, not inside the trainer's
    ``torch.load``), its safetensors headers and JSON files parse. Nothing is unpickled."""
    import json
    import zipfile

    from mote.files import ModelFolderError, safetensors_header

    for f in sorted(checkpoint.rglob("*")):
        if not f.is_file():
            continue
        try:
            if f.suffix in (".pt", ".pth", ".bin"):
                with zipfile.ZipFile(f) as z:
                    bad = z.testzip()
                if bad is not None:
                    return f"{f.name}: member {bad} is damaged"
            elif f.suffix == ".safetensors":
                safetensors_header(f)
            elif f.suffix == ".json":
                json.loads(f.read_text(encoding="utf-8"))
        except (zipfile.BadZipFile, ModelFolderError, OSError, ValueError, EOFError) as e:
            return f"{f.name}: {e}"
    return None


def set_aside_damaged(ckpts: Path) -> None:
    """Rename the newest checkpoints of ``ckpts`` whose files are damaged (:func:`damage`) to
    ``.damaged-checkpoint-N``, newest first until an intact one, so that ``--resume`` falls back to the previous
    checkpoint; nothing is deleted, each one is named in a warning."""
    import re

    numbered = sorted(
        (int(m.group(1)), p) for p in ckpts.iterdir() if (m := re.fullmatch(rf"{PREFIX_CHECKPOINT_DIR}-(\d+)", p.name))
    )
    for _, checkpoint in reversed(numbered):
        problem = damage(checkpoint)
        if problem is None:
            return
        aside = ckpts / f".damaged-{checkpoint.name}"
        shutil.rmtree(aside, ignore_errors=True)
        checkpoint.rename(aside)
        logger.warning("%s is damaged (%s): set aside as %s; resuming from the checkpoint before it", checkpoint,
                       problem, aside.name)


RUN_FILE = "mote_run.json"  # in every checkpoint: the run it belongs to


def run_record(cfg: RunConfig) -> dict[str, object]:
    """What identifies a run: the SHA-256 of its resolved recipe (every section: data, learning rates, steps),
    its seed and its method."""
    import hashlib

    return {"recipe_sha256": hashlib.sha256(cfg.to_yaml().encode("utf-8")).hexdigest(), "seed": cfg.seed,
            "method": cfg.method.name}


class RunIdentity:
    """A checkpoint extra (:class:`~mote.train.mote_trainer.MoteTrainer`'s ``checkpoint_extras``): writes
    :func:`run_record` into every checkpoint before it is published, so that ``--resume`` can tell its own run's
    checkpoints from another run's (:func:`check_resumed_run`)."""

    def __init__(self, cfg: RunConfig) -> None:
        self.record = run_record(cfg)

    def save_checkpoint(self, folder: str) -> None:
        atomic_write_json(Path(folder) / RUN_FILE, self.record)


def check_resumed_run(cfg: RunConfig, output: Path) -> None:
    """:class:`ConfigError` unless every checkpoint under ``output`` was written by this run (:func:`run_record`):
    a checkpoint of another run (another seed, learning rate, data, ...), or one without a record, is refused,
    naming both runs. Holds whether or not ``output/train_config.yaml`` exists."""
    import json

    want = run_record(cfg)
    problems = []
    for checkpoint in sorted(output.glob(f"**/{CHECKPOINTS}/{PREFIX_CHECKPOINT_DIR}-*")):
        file = checkpoint / RUN_FILE
        try:
            got = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            problems.append(f"{checkpoint} has no readable {RUN_FILE}: it was not written by this run's trainer (an "
                            "older mote, or another program), so it cannot be resumed as this run")
            continue
        if got != want:
            shown = {k: (got.get(k) if isinstance(got, dict) else None, want[k]) for k in want}
            diff = ", ".join(f"{k} {a!r} (checkpoint) vs {b!r} (this recipe)" for k, (a, b) in shown.items() if a != b)
            problems.append(f"{checkpoint} belongs to another run: {diff}")
    if problems:
        fix = "resume a run with the recipe it started with, or start a fresh run in another --output"
        raise ConfigError([*problems, fix], str(output))


def check_resumed_config(cfg: RunConfig, output: Path) -> None:
    """:class:`ConfigError` if ``cfg`` differs from the recipe saved by the run in ``output`` (exact resume), or a
    checkpoint there belongs to another run (:func:`check_resumed_run`); ``FileExistsError`` if the run is finished
    (its final weights are saved: there is nothing to resume, and resuming would save them again)."""
    done = [output / name for name in (TRAINED, MODEL) if (output / name).is_dir()]
    if done:
        raise FileExistsError(
            f"--resume: {output} holds a finished run (its final weights are in {done[0]}): there is nothing to "
            f"resume. Use that model (`mote select {output}` if its selection did not finish), or train again into "
            "another --output"
        )
    saved = output / CONFIG_FILE
    if saved.is_file():
        import yaml

        before = parse_config(yaml.safe_load(saved.read_text()), str(saved), check_files=False).model_dump()
        now = cfg.model_dump()
        diff = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
        if "objectives" not in diff and list(before["objectives"]) != list(now["objectives"]):
            diff.append("objectives")  # their order fixes the batch groups' order, hence the batches
        if diff:
            raise ConfigError(
                [f"section {k!r} differs from the run being resumed ({saved}); exact resume needs the same config"
                 for k in diff]
            )
    check_resumed_run(cfg, output)  # also without train_config.yaml: each checkpoint names its run
