"""One call's tasks, carried to the forward: the host-side plan of which row goes to which task.

A task-routed model (MoTE, TLR, TSEmbed) learns each row's task in ``preprocess`` and must route the rows in its
``forward`` without reading a device tensor. This module holds that plumbing, shared by the three module classes:
the texts check, the per-row task plan recorded on the host (:class:`TaskPlan`), ``SentenceTransformer.encode``
with a per-text task list (:class:`TaskListEncode`, which groups the texts by task so every batch is single-task),
and the refusal of a per-text task list that reached ``forward`` unsorted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sentence_transformers import SentenceTransformer

from mote.routing import RoutingTable

TASK_PLAN = "task_plan"


def check_texts(inputs: Any) -> list[str]:
    """Inputs as a list of strings, or a ``TypeError`` that names the first bad item."""
    if isinstance(inputs, str):
        return [inputs]
    try:
        items = list(inputs)
    except TypeError:
        raise TypeError(f"Expected a list of strings, got {type(inputs).__name__}") from None
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise TypeError(
                f"MoTE encodes text only: item {i} is a {type(item).__name__} ({item!r:.60}). Convert it to str first."
            )
    return items


TASK_PLAN = "task_plan"


@dataclass(frozen=True)
class TaskPlan:
    """Each row's task id, known on the host: ``preprocess`` stamps it next to ``task_ids`` (which
    sentence-transformers moves to the model's device), so that ``forward`` plans the routing without reading a
    device tensor."""

    task_ids: tuple[int, ...]


PER_TEXT_TASKS_FIX = (
    "use mote.encode(model, texts, task=[...]) (it groups the texts by task), or one encode call per task"
)


def refuse_sorted_task_list(task: Any) -> None:
    """``ValueError`` if a per-text task list reached a module's ``forward``: only ``SentenceTransformer.encode``
    passes its ``task`` on to ``forward``, after sorting the texts by length without reordering the list, so the
    rows' tasks would be each other's. A model built by sentence-transformers carries such lists with their texts
    (:class:`TaskListEncode`); a model assembled by hand (``model.append``) lacks that, and is refused here."""
    if task is not None and not isinstance(task, str):
        raise ValueError(
            "SentenceTransformer.encode sorts the texts by length and cannot carry a per-text task list with them "
            f"on this model; {PER_TEXT_TASKS_FIX}"
        )


class TaskListEncode:
    """``SentenceTransformer.encode`` of a task-routed model, with a per-text ``task`` list carried with its texts.

    sentence-transformers sorts a call's inputs by length and passes the same ``task`` to every batch, so a list of
    one task per text would not follow its texts. This callable replaces the model's ``encode`` (installed through
    sentence-transformers' public ``Module.on_model_ready`` hook, :func:`carry_task_lists`): a per-text list is cut
    into one ``encode`` call per task (each of them single-task, so sorted freely) and the results are put back in
    input order. One task, or none, goes to the stock ``encode`` unchanged. ``encode_query`` / ``encode_document``
    call ``self.encode`` and go through it too. Stateless, so threads may share it.
    """

    def __init__(self, model: SentenceTransformer) -> None:
        self.model = model

    def __call__(self, inputs, *args, task: str | Sequence[str] | None = None, **kwargs):
        encode = type(self.model).encode
        if task is None or isinstance(task, str):
            return encode(self.model, inputs, *args, task=task, **kwargs)
        import inspect

        bound = inspect.signature(encode).bind(self.model, inputs, *args, **kwargs)
        options = {k: v for k, v in bound.arguments.items() if k not in ("self", "inputs", "kwargs")}
        options.update(bound.arguments.get("kwargs", {}))
        single = self.model.is_singular_input(inputs)
        items = [inputs] if single else (inputs.tolist() if isinstance(inputs, np.ndarray) else list(inputs))
        tasks = list(task)
        if len(tasks) != len(items):
            raise ValueError(f"Got {len(tasks)} tasks for {len(items)} texts: pass one task, or one task per text")
        if single or len(set(tasks)) <= 1:
            return encode(self.model, inputs if single else items, task=tasks[0] if tasks else None, **options)
        precision = options.pop("precision", "float32")
        groups: dict[str, list[int]] = {}
        for i, t in enumerate(tasks):
            groups.setdefault(t, []).append(i)
        parts = {t: encode(self.model, [items[i] for i in idx], task=t, **options) for t, idx in groups.items()}
        first = next(iter(parts.values()))
        if isinstance(first, np.ndarray | torch.Tensor):
            full = (np.empty((len(items), *first.shape[1:]), dtype=first.dtype) if isinstance(first, np.ndarray)
                    else first.new_empty((len(items), *first.shape[1:])))
            for t, idx in groups.items():
                full[torch.as_tensor(idx) if isinstance(full, torch.Tensor) else idx] = parts[t]
        else:
            full = [None] * len(items)
            for t, idx in groups.items():
                for i, row in zip(idx, parts[t]):
                    full[i] = row
        if precision not in (None, "float32"):  # quantisation ranges are computed over the whole call
            from sentence_transformers.util import quantize_embeddings

            full = quantize_embeddings(full, precision=precision)
        return full


def carry_task_lists(model: SentenceTransformer) -> None:
    """Make ``model.encode`` carry a per-text task list with its texts (:class:`TaskListEncode`); idempotent."""
    if not isinstance(vars(model).get("encode"), TaskListEncode):
        model.encode = TaskListEncode(model)


def host_task_ids(features: dict[str, Any], batch: int, routing: RoutingTable, task: str | None = None) -> list[int]:
    """The task id of each of the ``batch`` rows of ``features``, read on the host.

    From the ``task_plan`` that ``preprocess`` stamped, when it describes this batch; else from ``task_ids`` (one
    host read per forward: features built by hand, or a batch that was split or merged after preprocessing); else
    (no task ids at all) every row gets ``task``, or the table's default task.
    """
    plan = features.get(TASK_PLAN)
    if isinstance(plan, TaskPlan) and len(plan.task_ids) == batch:
        return list(plan.task_ids)
    task_ids = features.get("task_ids")
    if task_ids is None:  # features built by hand: route them all by the explicit task (or the default)
        return [routing.task_id(routing.resolve(task)[0])] * batch
    return task_ids.tolist()


__all__ = [
    "PER_TEXT_TASKS_FIX",
    "TASK_PLAN",
    "TaskListEncode",
    "TaskPlan",
    "carry_task_lists",
    "check_texts",
    "host_task_ids",
    "refuse_sorted_task_list",
]
