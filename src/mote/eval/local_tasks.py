"""Local dataset folders as mteb task objects, so that scoring runs MTEB's own protocol code on them.

:func:`local_task` builds, for a dataset folder, a subclass of the registered mteb task named in its ``meta.json``
(``mteb_task``; so its protocol attributes, e.g. ``samples_per_label``, are MTEB's) or of the task type's mteb base
class, with metadata for the local folder and a ``load_data`` that puts the loaded data in mteb's layout
(:func:`to_mteb_dataset`). :mod:`mote.eval.metrics` calls that task's scoring steps on precomputed embeddings.

Example:
    >>> from mote.eval.datasets import discover
    >>> task = local_task(discover("../shared/data")["STSBenchmark"])        # doctest: +SKIP
    >>> task.metadata.main_score                                            # doctest: +SKIP
    'cosine_spearman'
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

import numpy as np

from mote.eval.datasets import DatasetInfo, RerankingData

_MTEB_BASES = {
    "STS": ("mteb.abstasks.sts", "AbsTaskSTS"),
    "Classification": ("mteb.abstasks.classification", "AbsTaskClassification"),
    "Clustering": ("mteb.abstasks.clustering_legacy", "AbsTaskClusteringLegacy"),
    "PairClassification": ("mteb.abstasks.pair_classification", "AbsTaskPairClassification"),
    "Reranking": ("mteb.abstasks.retrieval", "AbsTaskRetrieval"),
    "Retrieval": ("mteb.abstasks.retrieval", "AbsTaskRetrieval"),
}
_MTEB_MAIN = {  # main_score fields of the local task metadata (mteb's names)
    "STS": "cosine_spearman",
    "Classification": "accuracy",
    "Clustering": "v_measure",
    "PairClassification": "max_ap",
    "Reranking": "map_at_1000",
    "Retrieval": "ndcg_at_10",
}


def _mteb_base(task_type: str) -> type:
    import importlib

    module, name = _MTEB_BASES[task_type]
    return getattr(importlib.import_module(module), name)


@functools.cache
def _registered_mteb_class(name: str, task_type: str) -> type | None:
    """The mteb task class registered under ``name`` if its type derives from ``task_type``'s base."""
    try:
        import mteb

        cls = type(mteb.get_task(name))
    except Exception:  # not an mteb task name (or a version without it): use the generic protocol
        return None
    return cls if issubclass(cls, _mteb_base(task_type)) else None


def local_task(info: DatasetInfo, data: Any = None, split: str = "test"):
    """An mteb task object for a local dataset folder (its protocol from the registered mteb task, if any).

    With ``data`` (the loaded dataset) its ``load_data`` sets ``self.dataset`` in mteb's layout, so the task can
    also run mteb's own full ``task.evaluate(model)`` pipeline (used by the tests to cross-check the harness).
    """
    from mteb.abstasks.task_metadata import TaskMetadata

    mteb_name, _subset = info.mteb_task
    base = (_registered_mteb_class(mteb_name, info.task_type) if mteb_name else None) or _mteb_base(info.task_type)
    metadata = TaskMetadata(
        dataset={"path": f"local/{info.name}", "revision": "local"},
        name=f"mote-local-{info.name}",
        description=f"Local copy of {info.name} ({info.path}); evaluated by mote.eval",
        type=info.task_type,
        eval_splits=[split],
        eval_langs=["eng-Latn"],
        main_score=_MTEB_MAIN[info.task_type],
    )
    attrs: dict[str, Any] = {"metadata": metadata, "superseded_by": None}
    if info.task_type == "STS":
        lo, hi = info.meta.get("score_range", [0, 5])
        attrs.update(min_score=lo, max_score=hi)
    if info.task_type == "Classification":
        for key in ("samples_per_label", "n_experiments"):  # meta.json may override the protocol
            if key in info.meta.get("protocol", {}):
                attrs[key] = int(info.meta["protocol"][key])

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        self.dataset = to_mteb_dataset(info.task_type, data, split)
        self.data_loaded = True

    attrs["load_data"] = load_data
    cls = type(f"Local{base.__name__}", (base,), attrs)
    return cls()


def to_mteb_dataset(task_type: str, data: Any, split: str = "test") -> Any:
    """Our loaded data in the layout the mteb task types expect (``{"default": {split: ...}}`` etc.)."""
    from datasets import Dataset

    if task_type == "STS":
        ds = Dataset.from_dict({"sentence1": data.sentence1, "sentence2": data.sentence2, "score": data.scores})
        return {"default": {split: ds}}
    if task_type == "Classification":
        labels = label_codes(data.train_labels + data.test_labels)
        n = len(data.train_labels)
        return {
            "default": {
                "train": Dataset.from_dict({"text": data.train_texts, "label": labels[:n].tolist()}),
                split: Dataset.from_dict({"text": data.test_texts, "label": labels[n:].tolist()}),
            }
        }
    if task_type == "Clustering":
        ds = Dataset.from_dict({"sentences": [s for s, _ in data.sets], "labels": [lab for _, lab in data.sets]})
        return {"default": {split: ds}}
    if task_type == "PairClassification":
        ds = Dataset.from_dict({"sentence1": data.sentence1, "sentence2": data.sentence2, "labels": data.labels})
        return {"default": {split: ds}}
    if task_type in ("Retrieval", "Reranking"):
        from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData

        if task_type == "Reranking":
            corpus, queries, qrels, top_ranked = reranking_as_retrieval(data)
        else:
            corpus, queries, qrels, top_ranked = data.corpus, data.queries, data.qrels, None
        split_data = RetrievalSplitData(
            corpus=Dataset.from_dict({"id": list(corpus), "text": list(corpus.values())}),
            queries=Dataset.from_dict({"id": list(queries), "text": list(queries.values())}),
            relevant_docs=qrels,
            top_ranked=top_ranked,
        )
        return {"default": {split: split_data}}
    raise ValueError(f"Unknown task type {task_type!r}")


def reranking_as_retrieval(
    data: RerankingData,
) -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, int]], dict[str, list[str]]]:
    """Reranking data as mteb 2.x sees it: corpus, queries, qrels (positives = 1) and each query's candidates."""
    corpus: dict[str, str] = {}
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    top_ranked: dict[str, list[str]] = {}
    for i, (q, pos, neg) in enumerate(zip(data.queries, data.positives, data.negatives)):
        qid = f"q{i}"
        queries[qid] = q
        ids = []
        for j, text in enumerate([*pos, *neg]):
            did = f"q{i}-c{j}"
            corpus[did] = text
            ids.append(did)
        qrels[qid] = {f"q{i}-c{j}": (1 if j < len(pos) else 0) for j in range(len(pos) + len(neg))}
        top_ranked[qid] = ids
    return corpus, queries, qrels, top_ranked


def label_codes(labels: list[str]) -> np.ndarray:
    """Integer codes of class labels: numeric labels by value, others in sorted order (as ``np.unique``)."""
    uniq = sorted(set(labels))
    with contextlib.suppress(ValueError):
        uniq = sorted(uniq, key=float)
    index = {lab: i for i, lab in enumerate(uniq)}
    return np.asarray([index[lab] for lab in labels], dtype=np.int64)


__all__ = ["label_codes", "local_task", "reranking_as_retrieval", "to_mteb_dataset"]
