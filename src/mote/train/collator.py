"""The TA-CL data collator: sentence-transformers' collator, routed per row instead of per batch.

It reads the same ``router_mapping`` (``{group: {column: task}}``) the stock
:class:`~sentence_transformers.base.data_collator.BaseDataCollator` reads, and differs in three ways, each needed
by a method the stock collator cannot express:

* **per-row routing**: each row is routed by its own group (``dataset_name``), so a task-mixed batch (the
  ``static`` method) sends every row through its own task's expert. A single-task batch passes one task string, so
  TA-CL batches take the one-``F.linear`` fast path.
* **optional hard negatives**: rows without a negative are simply absent from the ``negative`` column (``K <= B``
  rows); the stock collator needs every row to fill every column.
* **labels**: ``label`` is ``LongTensor[B + K]``: the pair labels, then the labels of the ``K`` negatives, which the
  loss uses to mask same-label candidates.

MoTE-family models get ``task=`` (their ``preprocess`` prepends the task's prefix and stamps ``task_ids``); dense
models (the ``ic`` methods) get the task's prefix as ``prompt``, exactly as ``encode(prompt=...)`` does.

Example:
    >>> collate = TaskCollator(model.preprocess, router_mapping={"retrieval:squad": {"anchor": "query",
    ...     "positive": "document", "negative": "document"}})        # doctest: +SKIP
    >>> batch = collate(rows)                                           # doctest: +SKIP
    >>> batch["anchor_task_ids"], batch["label"].shape                  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from sentence_transformers.sentence_transformer.data_collator import SentenceTransformerDataCollator

from mote.data.tasks import COLUMNS


@dataclass
class TaskCollator(SentenceTransformerDataCollator):
    """See the module doc. ``prefixes`` (``{task: prefix}``) is set for dense models, ``None`` for MoTE models."""

    prefixes: dict[str, str] | None = field(default=None, repr=False)
    # {task: tokens}: the texts of these routed tasks are truncated at their own length instead of the model's
    # max_seq_length (train each side at the length it is encoded at); needs ``model``
    task_max_seq_length: dict[str, int] = field(default_factory=dict, repr=False)
    model: Any = field(default=None, repr=False)

    def _route(self, group: str | None, column: str) -> str:
        mapping = self.router_mapping or {}
        routes = mapping.get(group, mapping) if group is not None else mapping
        if column not in routes:
            raise KeyError(f"router_mapping has no task for column {column!r} of group {group!r}")
        return routes[column]

    def _preprocess(self, texts: list[str], tasks: list[str]) -> dict[str, Any]:
        lengths = {self.task_max_seq_length[t] for t in set(tasks) if t in self.task_max_seq_length}
        if not lengths:
            return self._tokenize(texts, tasks)
        if self.model is None:
            raise ValueError("TaskCollator: task_max_seq_length needs the model (model=...)")
        default = self.model.max_seq_length
        self.model.max_seq_length = max(lengths | ({default} if set(tasks) - set(self.task_max_seq_length) else set()))
        try:
            return self._tokenize(texts, tasks)
        finally:
            self.model.max_seq_length = default

    def _tokenize(self, texts: list[str], tasks: list[str]) -> dict[str, Any]:
        uniform = all(t == tasks[0] for t in tasks)
        if self.prefixes is None:  # MoTE family: the module resolves prefix and expert from the task
            return self.preprocess_fn(texts, task=tasks[0] if uniform else tasks)
        if uniform:
            return self.preprocess_fn(texts, prompt=self.prefixes[tasks[0]] or None)
        return self.preprocess_fn([self.prefixes[t] + x for t, x in zip(tasks, texts)])

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        if not features:
            return {}
        groups = [row.get("dataset_name") for row in features]
        batch: dict[str, Any] = {}
        if all(g == groups[0] for g in groups) and groups[0] is not None:
            batch["dataset_name"] = groups[0]  # the trainer picks this group's loss
        negatives: list[int] = []
        for column in COLUMNS:
            rows = [i for i, row in enumerate(features) if row.get(column) is not None]
            if column != "negative" and len(rows) != len(features):
                raise ValueError(f"every training row needs a {column!r} text")
            if not rows:
                continue
            if column == "negative":
                negatives = rows
            texts = [features[i][column] for i in rows]
            tasks = [self._route(groups[i], column) for i in rows]
            for key, value in self._preprocess(texts, tasks).items():
                batch[f"{column}_{key}"] = value
        labels = [int(row["label"]) for row in features] + [int(features[i]["negative_label"]) for i in negatives]
        batch["label"] = torch.tensor(labels, dtype=torch.long)
        return batch
