"""mteb's own scoring steps, called on local data (:mod:`mote.eval.metrics`).

mteb 2 exposes whole-task evaluation (``mteb.evaluate``) but not the steps that turn embeddings into a task's
scores; ``mote eval`` embeds once, caches, and then needs exactly those steps so that its numbers are mteb's.
These are the task classes' private methods and mteb's private retrieval-metric module; nothing else in mote
touches them. ``tests/test_adapters.py`` checks each one's signature against the pinned mteb.

Example:
    >>> sts_metrics(task, scores, gold=[0.0, 2.5, 5.0])     # doctest: +SKIP
    {'pearson': ..., 'spearman': ..., 'cosine_pearson': ..., ...}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# (class, private method, its parameter names after self): what this adapter calls, checked by the tests.
USED: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("mteb.abstasks.AbsTaskSTS", "_normalize", ("x",)),
    ("mteb.abstasks.AbsTaskSTS", "_calculate_scores", ("scores", "normalized_scores")),
    ("mteb.abstasks.AbsTaskClassification", "_undersample_data", ("dataset", "experiment_num", "idxs")),
    ("mteb.abstasks.AbsTaskClassification", "_run_experiment",
     ("train_split", "eval_split", "train_embeddings", "test_embeddings", "timer")),
    ("mteb.abstasks.AbsTaskClassification", "_calculate_scores", ("y_test", "y_pred")),
    ("mteb.abstasks.AbsTaskClassification", "_calculate_avg_scores", ("scores",)),
    ("mteb.abstasks.clustering_legacy.AbsTaskClusteringLegacy", "_compute_metrics",
     ("labels", "cluster_assignment", "v_measure_only")),
    ("mteb.abstasks.AbsTaskPairClassification", "_compute_metrics", ("similarity_scores", "labels")),
)


def sts_metrics(task: Any, scores: Mapping[str, list[float]], gold: Sequence[float]) -> dict[str, Any]:
    """An STS task's metrics from its similarity lists and the gold scores (normalised as mteb does)."""
    normalized = [task._normalize(x) for x in gold]
    return dict(task._calculate_scores(scores, normalized))


def undersample(task: Any, dataset: Any, experiment: int, idxs: list[int] | None) -> tuple[Any, list[int], list[int]]:
    """A classification task's seeded training sample of experiment ``experiment``: ``(sample, idxs, chosen)``."""
    return task._undersample_data(dataset, experiment, idxs)


def run_experiment(task: Any, train_split: Any, eval_split: Any, train_emb: Any, test_emb: Any, timer: Any):
    """One classification experiment (mteb's classifier on the embeddings): ``(scores, predictions)``."""
    return task._run_experiment(train_split, eval_split, train_emb, test_emb, timer=timer)


def classification_scores(task: Any, y_test: Any, y_pred: Any) -> Any:
    """A classification task's scores of predictions ``y_pred``."""
    return task._calculate_scores(y_test, y_pred)


def average_scores(task: Any, scores: list[Any]) -> dict[str, Any]:
    """A classification task's scores averaged over its experiments."""
    return dict(task._calculate_avg_scores(scores))


def clustering_metrics(task: Any, labels: list[int], assignment: list[int]) -> dict[str, Any]:
    """A (legacy) clustering task's v-measure of one cluster assignment."""
    return task._compute_metrics(labels, assignment, v_measure_only=True)


def pair_metrics(task: Any, distances: Mapping[str, list[float]], labels: list[int]) -> dict[str, float]:
    """A pair-classification task's metrics from its five similarity lists."""
    return task._compute_metrics(distances, labels)


def retrieval_metrics(
    results: Mapping[str, Mapping[str, float]], qrels: Mapping[str, Mapping[str, int]], k_values: Sequence[int],
    abstention: bool = True,
) -> tuple[dict[str, Any], Any]:
    """mteb's retrieval scores (nDCG, MAP, recall, precision, MRR, nAUCs, hit rate at ``k_values``) and its
    per-query scores: ``(metrics, per_query)``.

    ``abstention=False`` leaves out the nAUC abstention metrics, which cost more than all the others together
    (per-candidate selection scores only the main score); every other value is computed by mteb's same steps and
    is equal to the full call's (``tests/test_adapters.py``)."""
    from mteb._evaluators import retrieval_metrics as rm

    if abstention:
        (per_query, ndcg, _map, recall, precision, naucs, mrr, naucs_mrr, hit_rate) = rm.calculate_retrieval_scores(
            results, qrels, list(k_values)
        )
    else:  # calculate_retrieval_scores' steps without its evaluate_abstention calls
        import pytrec_eval

        ks = ",".join(str(k) for k in k_values)
        measures = {f"map_cut.{ks}", f"ndcg_cut.{ks}", f"recall.{ks}", f"P.{ks}", f"success.{ks}"}
        per_query = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(results)
        ndcg, _map, recall, precision, *_, hit_rate = rm.parse_metrics_from_scores(per_query, list(k_values))
        mrr_scores = rm.mrr(qrels, results, list(k_values))
        mrr = {k: sum(v) / len(v) for k, v in mrr_scores.items()}
        naucs, naucs_mrr = {}, {}
    metrics = rm.make_score_dict(ndcg=ndcg, _map=_map, recall=recall, precision=precision, mrr=mrr, naucs=naucs,
                                 naucs_mrr=naucs_mrr, hit_rate=hit_rate, task_scores={})
    return metrics, per_query
