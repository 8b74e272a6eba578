"""The files of an experiment's output folder, by name: what the runner writes and the report reads.

Example:
    >>> similarity_dir(plan, "minilm", "mote@seed1")       # doctest: +SKIP
    PosixPath('runs/reproduce/minilm/similarity/mote@seed1')
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mote_lab.plan import Plan

DONE = "reproduce_done.json"
EVAL_MARKER = "reproduce.json"
TIMINGS = "timings.jsonl"
MEASUREMENTS = "measurements.json"
TRAIN_CONFIG = "train_config.yaml"  # what mote.train writes next to a run (mote.train.config.CONFIG_FILE)


def similarity_dir(plan: Plan, model: str, name: str) -> Path:
    return plan.root / model / "similarity" / name
