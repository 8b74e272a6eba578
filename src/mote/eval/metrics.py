"""Scoring: MTEB's own metric and protocol code (mteb 2.x) applied to our local data and our embeddings.

For every dataset a local mteb task is built (:func:`mote.eval.local_tasks.local_task`: the registered mteb task's
protocol, or the task type's mteb base class, on the local folder). Scoring then calls that task's own methods on
precomputed embeddings:

==================  ======================================================================================
STS                 ``AbsTaskSTS._calculate_scores`` (Pearson/Spearman of cosine, manhattan, euclidean, model
                    similarity) on the similarities ``AnySTSEvaluator`` computes; main ``spearman`` of the
                    encoder's similarity (cosine unless the encoder has ``pair_scores``) = ``cosine_spearman``.
Classification      ``_undersample_data`` (seeded, ``samples_per_label`` per label, ``n_experiments``),
                    ``_run_experiment`` (``SklearnEvaluator`` + ``LogisticRegression(max_iter=100)``),
                    ``_calculate_avg_scores``; main ``accuracy``.
Clustering          ``ClusteringEvaluator``'s ``MiniBatchKMeans(n_clusters=#labels, batch_size=500, n_init="auto",
                    random_state=42)`` per set + ``AbsTaskClusteringLegacy._compute_metrics``; main ``v_measure``
                    (mean over sets).
PairClassification  ``AbsTaskPairClassification._compute_metrics`` on the 5 similarities of
                    ``PairClassificationEvaluator``; main ``max_ap``.
Retrieval           full top-1000 search by cosine (or ``score_matrix``) + ``calculate_retrieval_scores``
                    (pytrec_eval) + ``make_score_dict``; main ``ndcg_at_10``.
Reranking           as retrieval over each query's own candidates (mteb 2.x reranking = retrieval with
                    ``top_ranked``); main ``map_at_1000`` (mteb 2.x name of MAP); ``map`` (mteb 1.x: mean
                    sklearn average precision per query) and ``mrr`` (1.x MRR@10) are reported too.
==================  ======================================================================================

Each scorer also returns per-item data (``items``) for paired significance tests (see :mod:`mote.eval.compare`).
``full=False`` asks a scorer for its main score (and items) and lets it skip metrics that cost time and are not
the main score (retrieval and reranking: mteb's nAUC abstention metrics); per-candidate selection scores that way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mote.adapters import mteb as mteb_steps
from mote.eval.datasets import (
    ClassificationData,
    ClusteringData,
    PairClassificationData,
    RerankingData,
    RetrievalData,
    STSData,
)
from mote.eval.local_tasks import label_codes, reranking_as_retrieval

Embed = Callable[[list[str], str], np.ndarray]  # (texts, side) -> float32 [N, d]
MAIN_METRIC: dict[str, str] = {
    "STS": "spearman",
    "Classification": "accuracy",
    "Clustering": "v_measure",
    "PairClassification": "max_ap",
    "Reranking": "map_at_1000",
    "Retrieval": "ndcg_at_10",
}
RETRIEVAL_K_VALUES: tuple[int, ...] = (1, 3, 5, 10, 20, 100, 1000)
SEED = 42  # mteb's default task/evaluator seed


@dataclass
class Scored:
    """Scores of one dataset: ``metrics`` as fractions (the harness reports them x100), per-item ``items``."""

    metrics: dict[str, Any]
    main_metric: str
    items: dict[str, np.ndarray] = field(default_factory=dict)
    n_items: int = 0

    @property
    def main_score(self) -> float:
        return float(self.metrics[self.main_metric])


# ------------------------------------------------------------------------------------------------ helpers
def pair_similarity(encoder: Any, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise similarity: the encoder's ``pair_scores`` hook, else mteb's default ``pairwise_cos_sim``."""
    hook = getattr(encoder, "pair_scores", None)
    if callable(hook):
        return np.asarray(hook(a, b), dtype=np.float64).reshape(-1)
    from mteb.similarity_functions import pairwise_cos_sim

    sim = pairwise_cos_sim(a, b)
    return np.asarray(sim.cpu().numpy() if hasattr(sim, "cpu") else sim, dtype=np.float64).reshape(-1)


def score_matrix(encoder: Any, q: np.ndarray, d: np.ndarray) -> np.ndarray:
    """``[Q, D]`` scores: the encoder's ``score_matrix`` hook, else cosine similarity."""
    hook = getattr(encoder, "score_matrix", None)
    if callable(hook):
        return np.asarray(hook(q, d), dtype=np.float32)
    from mteb.similarity_functions import cos_sim

    sim = cos_sim(q, d)  # what mteb's search uses for cosine models
    return np.asarray(sim.cpu().numpy() if hasattr(sim, "cpu") else sim, dtype=np.float32)


def _views(encoder: Any, emb: np.ndarray) -> list[tuple[str, np.ndarray, float]] | None:
    hook = getattr(encoder, "views", None)
    return list(hook(emb)) if callable(hook) else None


def _combine(encoder: Any, preds: list[np.ndarray], weights: list[float], kind: str) -> np.ndarray:
    return np.asarray(encoder.combine_predictions(preds, weights, kind=kind))


def _fitted_scorer(encoder: Any, q: np.ndarray, d: np.ndarray) -> Any:
    """The encoder's ``fit_scores(q, d)`` hook (e.g. MoEE's label-free alpha, chosen once per dataset from all of
    its unlabelled query x document pairs), else the encoder itself."""
    hook = getattr(encoder, "fit_scores", None)
    return hook(q, d) if callable(hook) else encoder


def _timer():
    from mteb.timing import TimingStack

    return TimingStack()


def _floatify(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, float | int) and not isinstance(v, bool):
            out[k] = None if np.isnan(v) else float(v)  # NaN (e.g. AP of a multi-class task) -> null in JSON
        elif isinstance(v, list | tuple) and all(isinstance(x, float | int | np.generic) for x in v):
            out[k] = [float(x) for x in v]
        elif v is None:
            out[k] = None
    return out


# ------------------------------------------------------------------------------------------------ scorers
def score_sts(data: STSData, embed: Embed, encoder: Any, task: Any, full: bool = True) -> Scored:
    from sklearn.metrics.pairwise import (
        paired_cosine_distances,
        paired_euclidean_distances,
        paired_manhattan_distances,
    )

    n = len(data.scores)
    emb = embed(data.sentence1 + data.sentence2, "text")
    e1, e2 = emb[:n], emb[n:]
    cosine = 1 - paired_cosine_distances(e1, e2)
    model_sim = pair_similarity(encoder, e1, e2)
    scores = {
        "cosine_scores": cosine.tolist(),
        "manhattan_distances": (-paired_manhattan_distances(e1, e2)).tolist(),
        "euclidean_distances": (-paired_euclidean_distances(e1, e2)).tolist(),
        "similarity_scores": model_sim.tolist(),
    }
    metrics = mteb_steps.sts_metrics(task, scores, data.scores)
    items = {"pred": model_sim, "gold": np.asarray(data.scores, dtype=np.float64)}
    return Scored(_floatify(metrics), MAIN_METRIC["STS"], items, n)


class _Columns:
    """The part of ``datasets.Dataset`` that mteb's classification protocol uses (``ds[column]``, ``select``, ``len``).

    mteb's ``_undersample_data`` reads ``labels[i]`` one by one; on a ``datasets`` column each read decodes a row
    (~0.1 ms), which made the protocol dominate warm runs. Plain lists give the same values, instantly.
    """

    def __init__(self, columns: dict[str, list]) -> None:
        self.columns = columns

    def __getitem__(self, key: str) -> list:
        return self.columns[key]

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))

    def select(self, indices) -> _Columns:
        return _Columns({k: [v[i] for i in indices] for k, v in self.columns.items()})


def score_classification(data: ClassificationData, embed: Embed, encoder: Any, task: Any, full: bool = True) -> Scored:
    codes = label_codes(data.train_labels + data.test_labels)
    y_train, y_test = codes[: len(data.train_labels)], codes[len(data.train_labels) :]
    train_ds = _Columns({task.label_column_name: y_train.tolist()})
    eval_ds = _Columns({task.label_column_name: y_test.tolist()})
    if "random_state" in task.evaluator_model.get_params():  # as AbsTaskClassification.evaluate does
        task.evaluator_model = task.evaluator_model.set_params(random_state=task.seed)

    sim_idxs = None
    selected: list[list[int]] = []
    for i in range(task.n_experiments):
        _, sim_idxs, chosen = mteb_steps.undersample(task, train_ds, i, sim_idxs)
        selected.append(list(chosen))
    union = sorted(set().union(*selected))
    position = {j: p for p, j in enumerate(union)}
    train_emb = embed([data.train_texts[j] for j in union], "text")
    test_emb = embed(data.test_texts, "text")
    train_views = _views(encoder, train_emb)
    test_views = _views(encoder, test_emb) if train_views is not None else None

    scores, predictions = [], []
    timer = _timer()
    for i in range(task.n_experiments):
        rows = [position[j] for j in selected[i]]
        train_split = train_ds.select(selected[i])
        if train_views is None:
            s, pred = mteb_steps.run_experiment(task, train_split, eval_ds, train_emb[rows], test_emb, timer)
            pred = np.asarray(pred)
        else:
            preds, weights = [], []
            for (_, tr, w), (_, te, _) in zip(train_views, test_views):
                _, p = mteb_steps.run_experiment(task, train_split, eval_ds, tr[rows], te, timer)
                preds.append(np.asarray(p))
                weights.append(float(w))
            pred = _combine(encoder, preds, weights, kind="classification")
            s = mteb_steps.classification_scores(task, y_test, pred)
        scores.append(s)
        predictions.append(pred)
    avg = mteb_steps.average_scores(task, scores)
    avg.pop("scores_per_experiment", None)
    metrics = _floatify(avg)
    metrics["n_experiments"] = float(task.n_experiments)
    metrics["samples_per_label"] = float(task.samples_per_label)
    correct = np.stack([np.asarray(p) == y_test for p in predictions])  # [E, N]
    return Scored(metrics, MAIN_METRIC["Classification"], {"correct": correct}, len(y_test))


def kmeans_assign(emb: np.ndarray, n_clusters: int, seed: int = SEED) -> np.ndarray:
    """Cluster ids exactly as mteb's ``ClusteringEvaluator`` fits them (MiniBatchKMeans, batch 500, n_init auto)."""
    from sklearn import cluster

    model = cluster.MiniBatchKMeans(
        n_clusters=n_clusters, batch_size=500, n_init="auto", compute_labels=True, random_state=seed
    )
    model.fit(emb)
    return np.asarray(model.labels_)


def score_clustering(data: ClusteringData, embed: Embed, encoder: Any, task: Any, full: bool = True) -> Scored:
    all_texts = [t for sentences, _ in data.sets for t in sentences]
    emb_all = embed(all_texts, "text")
    v_measures: list[float] = []
    set_ids, label_ids, assigns = [], [], []
    start = 0
    for k, (sentences, labels) in enumerate(data.sets):
        emb = emb_all[start : start + len(sentences)]
        start += len(sentences)
        codes = label_codes(labels)
        n_clusters = len(set(labels))
        if n_clusters <= 1:  # mteb: a set with one label scores 1.0 without clustering
            v_measures.append(1.0)
            assign = np.zeros(len(labels), dtype=np.int64)
        else:
            views = _views(encoder, emb)
            if views is None:
                assign = kmeans_assign(emb, n_clusters)
            else:
                preds = [kmeans_assign(v, n_clusters) for _, v, _ in views]
                assign = _combine(encoder, preds, [float(w) for _, _, w in views], kind="clustering")
            m = mteb_steps.clustering_metrics(task, codes.tolist(), assign.tolist())
            v_measures.append(float(m["v_measure"]))
        set_ids.append(np.full(len(labels), k, dtype=np.int32))
        label_ids.append(codes)
        assigns.append(np.asarray(assign, dtype=np.int64))
    metrics = {
        "v_measure": float(np.mean(v_measures)),
        "v_measure_std": float(np.std(v_measures)),
        "v_measures": [float(v) for v in v_measures],
    }
    items = {"set": np.concatenate(set_ids), "label": np.concatenate(label_ids), "assign": np.concatenate(assigns)}
    return Scored(metrics, MAIN_METRIC["Clustering"], items, len(all_texts))


PAIR_FUNCTIONS = ("similarity", "cosine", "manhattan", "euclidean", "dot")


def score_pair_classification(data: PairClassificationData, embed: Embed, encoder: Any, task: Any,
                              full: bool = True) -> Scored:
    from sklearn.metrics.pairwise import (
        paired_cosine_distances,
        paired_euclidean_distances,
        paired_manhattan_distances,
    )

    n = len(data.labels)
    emb = embed(data.sentence1 + data.sentence2, "text")
    e1, e2 = emb[:n], emb[n:]
    cosine = 1 - paired_cosine_distances(e1, e2)
    manhattan = paired_manhattan_distances(e1, e2)
    euclidean = paired_euclidean_distances(e1, e2)
    similarity = pair_similarity(encoder, e1, e2)
    dot = np.einsum("ij,ij->i", e1.astype(np.float64), e2.astype(np.float64))
    distances = {
        "cosine_scores": cosine.tolist(),
        "euclidean_distances": euclidean.tolist(),
        "manhattan_distances": manhattan.tolist(),
        "similarity_scores": np.asarray(similarity).tolist(),
        "dot_scores": dot.tolist(),
    }
    metrics = mteb_steps.pair_metrics(task, distances, data.labels)
    oriented = np.stack([similarity, cosine, -manhattan, -euclidean, dot]).astype(np.float64)  # higher = similar
    items = {"scores": oriented, "labels": np.asarray(data.labels, dtype=np.int64)}
    return Scored(_floatify(metrics), MAIN_METRIC["PairClassification"], items, n)


def _top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    k = min(k, scores.shape[1])
    idx = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return idx, np.take_along_axis(scores, idx, axis=1)


def _retrieval_metrics(results: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]],
                       full: bool = True) -> tuple[dict, dict]:
    metrics, per_query = mteb_steps.retrieval_metrics(results, qrels, RETRIEVAL_K_VALUES, abstention=full)
    return _floatify(metrics), per_query


def score_retrieval(data: RetrievalData, embed: Embed, encoder: Any, task: Any, full: bool = True) -> Scored:
    qrels = {q: docs for q, docs in data.qrels.items() if docs}  # mteb drops queries without judgements
    qids = [q for q in data.queries if q in qrels]
    doc_ids = list(data.corpus)
    q_emb = embed([data.queries[q] for q in qids], "query")
    d_emb = embed([data.corpus[d] for d in doc_ids], "document")
    results: dict[str, dict[str, float]] = {}
    top = max(RETRIEVAL_K_VALUES)
    scorer = _fitted_scorer(encoder, q_emb, d_emb)
    for start in range(0, len(qids), 256):
        sims = score_matrix(scorer, q_emb[start : start + 256], d_emb)
        idx, vals = _top_k(sims, top)
        for r, qid in enumerate(qids[start : start + 256]):
            results[qid] = {doc_ids[j]: float(v) for j, v in zip(idx[r], vals[r])}
    metrics, per_query = _retrieval_metrics(results, {q: qrels[q] for q in qids}, full)
    items = {"ndcg_at_10": np.asarray([per_query[q]["ndcg_cut_10"] for q in qids], dtype=np.float64)}
    return Scored(metrics, MAIN_METRIC["Retrieval"], items, len(qids))


def score_reranking(data: RerankingData, embed: Embed, encoder: Any, task: Any, full: bool = True) -> Scored:
    from sklearn.metrics import average_precision_score

    corpus, queries, qrels, top_ranked = reranking_as_retrieval(data)
    qids = [q for q in queries if any(v > 0 for v in qrels[q].values())]
    doc_ids = list(corpus)
    position = {d: i for i, d in enumerate(doc_ids)}
    q_emb = embed([queries[q] for q in qids], "query")
    d_emb = embed([corpus[d] for d in doc_ids], "document")
    results: dict[str, dict[str, float]] = {}
    ap_v1, mrr_v1 = [], []
    scorer = _fitted_scorer(encoder, q_emb, d_emb)
    for r, qid in enumerate(qids):
        cand = top_ranked[qid]
        sims = score_matrix(scorer, q_emb[r : r + 1], d_emb[[position[d] for d in cand]])[0].astype(np.float64)
        results[qid] = {d: float(s) for d, s in zip(cand, sims)}
        rel = np.asarray([qrels[qid][d] > 0 for d in cand])
        ap_v1.append(float(average_precision_score(rel, sims)) if rel.any() and not rel.all() else float(rel.all()))
        order = np.argsort(-sims, kind="stable")[:10]
        hits = np.nonzero(rel[order])[0]
        mrr_v1.append(1.0 / (hits[0] + 1) if len(hits) else 0.0)
    metrics, per_query = _retrieval_metrics(results, {q: qrels[q] for q in qids}, full)
    metrics["map"] = float(np.mean(ap_v1))
    metrics["mrr"] = float(np.mean(mrr_v1))
    items = {"ap": np.asarray([per_query[q]["map_cut_1000"] for q in qids], dtype=np.float64)}
    return Scored(metrics, MAIN_METRIC["Reranking"], items, len(qids))


SCORERS: dict[str, Callable[..., Scored]] = {
    "STS": score_sts,
    "Classification": score_classification,
    "Clustering": score_clustering,
    "PairClassification": score_pair_classification,
    "Retrieval": score_retrieval,
    "Reranking": score_reranking,
}

# The sides (text roles) each task type encodes; routes map (task type, side) -> routing-table task.
SIDES: dict[str, tuple[str, ...]] = {
    "STS": ("text",),
    "Classification": ("text",),
    "Clustering": ("text",),
    "PairClassification": ("text",),
    "Retrieval": ("query", "document"),
    "Reranking": ("query", "document"),
}


__all__ = [
    "MAIN_METRIC",
    "SCORERS",
    "SIDES",
    "Scored",
    "kmeans_assign",
]
