"""Weight snapshots kept during training: the candidates per-task selection (:mod:`mote.select`) chooses among.

A snapshot is the encoder's weights only (no optimizer state, unlike a checkpoint), written atomically once per
chosen step to ``<run>/snapshots/step-<N>/model.safetensors`` with ``snapshot.json`` (step, fraction of the run).
A resumed run writes the snapshots it has not written yet; one that exists is never rewritten. A snapshot folder is
also a model: ``mote.load`` (and ``mote eval``, ``mote info``, ...) opens it as the run's model with the snapshot's
weights (:func:`mote.api.snapshot_source`), and ``mote select RUN --at-step N`` selects among what existed then.

Example:
    >>> trainer.add_callback(WeightSnapshots("runs/x", steps=[25, 50, 75], total_steps=100))   # doctest: +SKIP
    >>> sorted(list_snapshots("runs/x"))                                                      # doctest: +SKIP
    ['step-25', 'step-50', 'step-75']
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from transformers import TrainerCallback

from mote.api import encoder_of
from mote.atomic import atomic_dir, atomic_write_json
from mote.files import SNAPSHOT_META as META
from mote.files import SNAPSHOT_WEIGHTS as WEIGHTS
from mote.files import SNAPSHOTS


class WeightSnapshots(TrainerCallback):
    """Save the encoder's weights at the given optimiser ``steps`` (main process; step numbers of the whole run:
    ``step_offset`` is added for a later training stage)."""

    def __init__(self, output_dir: str | os.PathLike, steps: Sequence[int], total_steps: int,
                 step_offset: int = 0) -> None:
        self.dir = Path(output_dir) / SNAPSHOTS
        self.steps = {int(s) for s in steps}
        self.total_steps = int(total_steps)
        self.step_offset = int(step_offset)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        step = self.step_offset + state.global_step
        if step not in self.steps or not state.is_world_process_zero or model is None:
            return
        target = self.dir / f"step-{step}"
        if (target / WEIGHTS).is_file():
            return
        from safetensors.torch import save_model

        with atomic_dir(target, overwrite=True) as tmp:
            save_model(encoder_of(model), str(tmp / WEIGHTS))
            atomic_write_json(tmp / META, {"step": step, "fraction": step / max(1, self.total_steps)})


def list_snapshots(run_dir: str | os.PathLike) -> dict[str, Path]:
    """``{"step-N": weights file}`` of a run's complete snapshots, in step order."""
    root = Path(run_dir) / SNAPSHOTS
    found: list[tuple[int, str, Path]] = []
    if root.is_dir():
        for folder in root.iterdir():
            meta, weights = folder / META, folder / WEIGHTS
            if folder.name.startswith("step-") and meta.is_file() and weights.is_file():
                step = int(json.loads(meta.read_text(encoding="utf-8"))["step"])
                found.append((step, folder.name, weights))
    return {name: path for _, name, path in sorted(found)}

__all__ = [
    "META",
    "SNAPSHOTS",
    "WEIGHTS",
    "WeightSnapshots",
    "encoder_of",
    "list_snapshots",
]
