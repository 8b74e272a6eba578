"""Hierarchical training data: task -> dataset -> pairs, and its batch groups for the trainer.

:meth:`TrainingData.load` reads every source of every task, builds pairs (:mod:`mote.data.pairs`) and keeps them
per task and dataset. :meth:`TrainingData.groups` cuts them into *batch groups*, the unit a batch is drawn from
(:mod:`mote.data.sampler`): one group per dataset for homogeneous tasks (retrieval), one group per task for
heterogeneous ones (classification, clustering). :func:`to_dataset_dict` hands the groups to the
sentence-transformers trainer as a ``DatasetDict`` with the columns ``anchor, positive, negative, label,
negative_label, dataset`` (``negative`` is ``None`` where a row has no hard negative).

Example:
    >>> specs = [TaskSpec("retrieval", TASK_KINDS["retrieval"], (DatasetSpec(Source("squad", "train-SQuADDev")),))]
    >>> data = TrainingData.load(specs, data_root="/data", seed=0)       # doctest: +SKIP
    >>> [g.name for g in data.groups()]                                    # doctest: +SKIP
    ['retrieval:squad']
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from mote.data.holdout import split_rows
from mote.data.pairs import NO_LABEL, LabelSpace, Pair, build_pairs, stable_seed
from mote.data.sources import Source, load_records
from mote.data.tasks import TaskKind


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of a task: its source and how to turn it into pairs."""

    source: Source
    max_examples: int | None = None  # keep at most this many pairs (a seeded sample)
    split_by: str | None = None  # build pairs per value of this row field (e.g. SentEval's "source")
    hard_negatives: bool = True

    @property
    def name(self) -> str:
        return self.source.name


@dataclass(frozen=True)
class TaskSpec:
    """A training task: its name, kind (with any per-task overrides applied) and datasets."""

    name: str
    kind: TaskKind
    datasets: tuple[DatasetSpec, ...]


@dataclass
class BatchGroup:
    """Rows that may share a batch: one dataset (homogeneous tasks) or all datasets of a task (heterogeneous)."""

    name: str
    task: str
    pairs: list[Pair]
    datasets: list[str] = field(default_factory=list)  # the dataset of each pair

    def __len__(self) -> int:
        return len(self.pairs)


def group_name(task: str, dataset: str | None = None) -> str:
    """A group's name; usable as a module name (no dots), since the trainer keys its losses by it."""
    name = task if dataset is None else f"{task}:{dataset}"
    return name.replace(".", "_")


class TrainingData:
    """Pairs organised as ``task -> dataset -> pairs`` (see the module doc)."""

    def __init__(self, specs: Sequence[TaskSpec], pairs: dict[str, dict[str, list[Pair]]]) -> None:
        self.specs = {s.name: s for s in specs}
        self.tasks = pairs

    @classmethod
    def load(
        cls,
        specs: Sequence[TaskSpec],
        data_root: str | os.PathLike | None,
        seed: int = 0,
        progress: Callable[[str], None] | None = None,
        holdout: float = 0.0,
    ) -> TrainingData:
        """Read and pair every dataset of every task (deterministic for a given ``seed``).

        ``holdout``: the fraction of every dataset's rows left out for validation (:mod:`mote.data.holdout`).
        """
        labels = LabelSpace()
        out: dict[str, dict[str, list[Pair]]] = {}
        for spec in specs:
            out[spec.name] = {}
            for ds in spec.datasets:
                if progress:
                    progress(f"loading {spec.name} / {ds.source.describe()}")
                rows = load_records(ds.source, data_root)
                if holdout:
                    rows, _ = split_rows(rows, holdout)
                pairs = build_pairs(
                    rows, spec.kind.pair_kind, ds.name, labels, seed, ds.hard_negatives, split_by=ds.split_by
                )
                if ds.max_examples is not None and len(pairs) > ds.max_examples:
                    rng = np.random.default_rng(stable_seed(seed, spec.name, ds.name, "subsample"))
                    keep = np.sort(rng.choice(len(pairs), size=ds.max_examples, replace=False))
                    pairs = [pairs[i] for i in keep]
                if not pairs:
                    raise ValueError(
                        f"Task {spec.name!r}, dataset {ds.source.describe()}: no training pairs could be built "
                        f"(a {spec.kind.pair_kind} task needs "
                        + ("query/positive rows" if spec.kind.pair_kind == "pairs" else "labels with 2+ texts")
                        + ")"
                    )
                out[spec.name][ds.name] = pairs
        return cls(specs, out)

    def groups(self) -> list[BatchGroup]:
        """Batch groups in a fixed order: tasks as configured, datasets as listed."""
        groups = []
        for task, datasets in self.tasks.items():
            if self.specs[task].kind.batching == "homogeneous":
                for name, pairs in datasets.items():
                    groups.append(BatchGroup(group_name(task, name), task, list(pairs), [name] * len(pairs)))
            else:
                pairs = [p for ps in datasets.values() for p in ps]
                names = [n for n, ps in datasets.items() for _ in ps]
                groups.append(BatchGroup(group_name(task), task, pairs, names))
        return groups

    def summary(self) -> list[dict[str, object]]:
        """One row per (task, dataset): pairs, hard negatives, distinct labels."""
        rows = []
        for task, datasets in self.tasks.items():
            for name, pairs in datasets.items():
                rows.append(
                    {
                        "task": task,
                        "dataset": name,
                        "pairs": len(pairs),
                        "hard_negatives": sum(p.negative is not None for p in pairs),
                        "labels": len({p.label for p in pairs}),
                    }
                )
        return rows


def to_dataset_dict(groups: Sequence[BatchGroup]):
    """The groups as a ``datasets.DatasetDict`` (one entry per group, in order) for the trainer."""
    from datasets import Dataset, DatasetDict, Features, Value

    features = Features(
        {
            "anchor": Value("string"),
            "positive": Value("string"),
            "negative": Value("string"),
            "label": Value("int64"),
            "negative_label": Value("int64"),
            "dataset": Value("string"),
        }
    )
    out = {}
    for g in groups:
        out[g.name] = Dataset.from_dict(
            {
                "anchor": [p.anchor for p in g.pairs],
                "positive": [p.positive for p in g.pairs],
                "negative": [p.negative for p in g.pairs],
                "label": [p.label for p in g.pairs],
                "negative_label": [p.negative_label if p.negative is not None else NO_LABEL for p in g.pairs],
                "dataset": list(g.datasets),
            },
            features=features,
        )
    return DatasetDict(out)
