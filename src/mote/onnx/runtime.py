"""``MultiTaskOnnxEncoder``: one onnxruntime session serving every task of a MoTE model (torch-free).

A multi-task export (``mote export MODEL --onnx --all-tasks OUT``, :func:`mote.onnx.export_multitask`) is one graph
with inputs ``input_ids``, ``attention_mask`` (``token_type_ids`` where the model has them) and ``task_id`` (int64,
one per row) that holds every expert; ``mote_onnx.json`` holds the task table (name, prefix, task id). This encoder
applies the table exactly as the torch model does: the row's task prefix is prepended (lower-cased with the text if
the model lower-cases), the text tokenised with the saved tokenizer, and the row's ``task_id`` fed with it, so one
batch may mix all tasks. Imports: numpy, onnxruntime, tokenizers and the standard library only.

Other runtimes call the same graph the same way (see the README): tokenise ``prefix + text``, feed the three token
arrays and ``task_id = tasks.index(task)`` per row, read ``sentence_embedding`` (already pooled and normalised).

Example:
    >>> enc = MultiTaskOnnxEncoder("minilm-mote-onnx")                                   # doctest: +SKIP
    >>> enc.encode(["how do magnets work", "Magnets attract iron."], task=["query", "document"]).shape
    ... # doctest: +SKIP
    (2, 384)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mote.matryoshka import check_dim, truncate
from mote.onnx.files import CONFIG_FILE, MODEL_FILE, TASK_INPUT
from mote.onnx.session import make_session
from mote.onnx.tokens import check_texts, feeds, length_order, load_tokenizer, read_json


class UnknownTaskIdError(ValueError):
    """A task name or task id the multi-task graph does not serve."""


class MultiTaskOnnxEncoder:
    """Encode texts of any task (one task per call, or one per text) with a multi-task ONNX export.

    Args:
        path: the folder written by :func:`mote.onnx.export_multitask`.
        threads: onnxruntime intra-op threads (default: onnxruntime's choice).
        providers: onnxruntime execution providers (default ``["CPUExecutionProvider"]``).
        truncate_dim: keep the first ``truncate_dim`` dimensions and renormalise (Matryoshka models).

    Example:
        >>> MultiTaskOnnxEncoder("out").encode(["a b c"], task="clustering").dtype   # doctest: +SKIP
        dtype('float32')
    """

    def __init__(
        self,
        path: str | os.PathLike,
        threads: int | None = None,
        providers: Sequence[str] | None = None,
        truncate_dim: int | None = None,
    ) -> None:
        path = Path(path)
        if not (path / CONFIG_FILE).is_file() or not (path / MODEL_FILE).is_file():
            raise FileNotFoundError(
                f"No multi-task ONNX export in {str(path)!r}: run `mote export MODEL --onnx --all-tasks {path}` "
                "(or mote.onnx.export_multitask) first"
            )
        self.path = path
        self.meta: dict[str, Any] = read_json(path / CONFIG_FILE)
        if self.meta.get("kind") != "multitask":
            raise ValueError(f"{path} is not a multi-task export (kind {self.meta.get('kind')!r}): use OnnxEncoder")
        self.tasks: list[str] = [t["name"] for t in self.meta["tasks"]]
        self.prefixes: dict[str, str] = {t["name"]: t["prefix"] for t in self.meta["tasks"]}
        self.default_task: str = self.meta["default_task"]
        self.do_lower_case = bool(self.meta.get("do_lower_case", False))
        self.tokenizer = load_tokenizer(path, self.meta)
        self.session = make_session(path / MODEL_FILE, threads, providers)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.full_dimension = int(self.meta["dimension"])
        self.truncate_dim = check_dim(truncate_dim, self.full_dimension)
        self.dimension = self.truncate_dim or self.full_dimension

    @property
    def max_seq_length(self) -> int:
        return int(self.meta["max_seq_length"])

    def describe(self) -> str:
        rows = ", ".join(f"{i}={name!r} (prefix {self.prefixes[name]!r})" for i, name in enumerate(self.tasks))
        return f"Task ids: {rows}; default task {self.default_task!r}."

    def task_ids(self, task: str | int | Sequence[str | int] | None, n: int) -> np.ndarray:
        """int64 ``[n]`` task ids from a task name / id, one per text, or ``None`` (the default task)."""
        items: list[str | int]
        if task is None or isinstance(task, str | int | np.integer):
            items = [self.default_task if task is None else task] * n
        else:
            items = list(task)
            if len(items) != n:
                raise ValueError(f"Got {len(items)} tasks for {n} texts: pass one task, or one per text")
        ids = np.empty(n, dtype=np.int64)
        cache: dict[Any, int] = {}
        for i, t in enumerate(items):
            if t not in cache:
                cache[t] = self._task_id(t)
            ids[i] = cache[t]
        return ids

    def _task_id(self, task: str | int) -> int:
        if isinstance(task, str):
            if task not in self.prefixes:
                raise UnknownTaskIdError(f"Unknown task {task!r}. {self.describe()}")
            return self.tasks.index(task)
        if isinstance(task, bool) or not isinstance(task, int | np.integer) or not 0 <= int(task) < len(self.tasks):
            raise UnknownTaskIdError(f"Unknown task id {task!r}: the graph serves ids 0..{len(self.tasks) - 1}. "
                                     f"{self.describe()}")
        return int(task)

    def prompted(self, texts: list[str], ids: np.ndarray) -> list[str]:
        """``prefix + text`` per row (lower-cased when the model lower-cases), as the torch model tokenises it."""
        out = [self.prefixes[self.tasks[i]] + t for i, t in zip(ids.tolist(), texts)]
        return [t.lower() for t in out] if self.do_lower_case else out

    def embed_batch(self, prompted: list[str], ids: np.ndarray) -> np.ndarray:
        """Embeddings (full dimension) of one batch of already-prompted texts with their task ids."""
        inputs = feeds(self.tokenizer, prompted, self.input_names)
        inputs[TASK_INPUT] = np.ascontiguousarray(ids, dtype=np.int64)
        (out,) = self.session.run(["sentence_embedding"], inputs)
        return out.astype(np.float32, copy=False)

    def encode(
        self,
        texts: str | Sequence[str],
        task: str | int | Sequence[str | int] | None = None,
        batch_size: int = 32,
    ) -> np.ndarray:
        """Embeddings ``[len(texts), dim]`` (float32); ``task``: a name or id, one per text, or None (default).

        Example:
            >>> enc.encode(["q", "d"], task=[0, "document"]).shape   # doctest: +SKIP
            (2, 384)
        """
        items = check_texts(texts)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        ids = self.task_ids(task, len(items))
        if not items:
            return np.zeros((0, self.dimension), dtype=np.float32)
        prompted = self.prompted(items, ids)
        order = length_order(items)
        out = np.empty((len(items), self.full_dimension), dtype=np.float32)
        for start in range(0, len(items), batch_size):
            idx = order[start : start + batch_size]
            out[idx] = self.embed_batch([prompted[i] for i in idx], ids[idx])
        return truncate(out, self.truncate_dim)
