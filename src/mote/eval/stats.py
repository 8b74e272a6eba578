"""Fast per-item statistics for paired bootstrap tests (each checked against its sklearn/scipy twin in the tests).

The bootstrap recomputes every dataset's main metric on resampled test items, thousands of times; these vectorised
versions give the same numbers as ``sklearn.metrics.average_precision_score``, ``v_measure_score`` and
``scipy.stats.spearmanr``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.stats import rankdata


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """sklearn's ``average_precision_score`` (binary, ties grouped as sklearn groups them)."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos = int(labels.sum())
    if n_pos == 0:
        return 0.0
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    tp = np.cumsum(y)
    # last index of each group of equal scores = one threshold
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tps = tp[last]
    precision = tps / (last + 1)
    recall = tps / n_pos
    prev = np.r_[0.0, recall[:-1]]
    return float(np.sum((recall - prev) * precision))


def _entropy_counts(counts: np.ndarray) -> float:
    counts = counts[counts > 0].astype(np.float64)
    total = counts.sum()
    if total == 0:
        return 0.0
    p = counts / total
    return float(-(p * np.log(p)).sum())


def v_measure(labels: np.ndarray, assign: np.ndarray) -> float:
    """sklearn's ``v_measure_score`` (beta = 1) from a contingency table."""
    labels = np.asarray(labels)
    assign = np.asarray(assign)
    if labels.size == 0:
        return 1.0
    _, li = np.unique(labels, return_inverse=True)
    _, ci = np.unique(assign, return_inverse=True)
    n_l, n_c = li.max() + 1, ci.max() + 1
    cont = np.bincount(li * n_c + ci, minlength=n_l * n_c).reshape(n_l, n_c).astype(np.float64)
    n = cont.sum()
    h_c = _entropy_counts(cont.sum(1))  # entropy of the classes
    h_k = _entropy_counts(cont.sum(0))  # entropy of the clusters
    nz = cont > 0
    pi = cont.sum(1, keepdims=True)
    pj = cont.sum(0, keepdims=True)
    mi = float(np.sum(cont[nz] / n * (np.log(cont[nz]) - np.log((pi @ pj)[nz] / n))))
    homogeneity = 1.0 if h_c == 0 else mi / h_c
    completeness = 1.0 if h_k == 0 else mi / h_k
    if homogeneity + completeness == 0:
        return 0.0
    return float(2 * homogeneity * completeness / (homogeneity + completeness))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman correlation (average ranks for ties), as ``scipy.stats.spearmanr``."""
    ra, rb = rankdata(a), rankdata(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denom = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else 0.0


# ------------------------------------------------------------------------------------------------ statistics
def statistic(task_type: str, items: dict[str, np.ndarray]) -> tuple[int, Callable[[np.ndarray], float]]:
    """``(number of resampling units, f(indices) -> main metric as a fraction)`` for a run's per-item data.

    Units: STS / pair classification / classification / retrieval / reranking = test items (pairs, texts,
    queries); clustering = texts, resampled within their set (each set keeps its size).
    """
    if task_type == "STS":
        pred, gold = items["pred"], items["gold"]
        return len(gold), lambda idx: spearman(pred[idx], gold[idx])
    if task_type == "Classification":
        acc = items["correct"].mean(axis=0)
        return len(acc), lambda idx: float(acc[idx].mean())
    if task_type == "PairClassification":
        scores, labels = items["scores"], items["labels"]
        # max_ap's scoring function is chosen once on the full test set, then kept fixed for the resamples
        best = int(np.argmax([average_precision(labels, s) for s in scores]))
        chosen = scores[best]
        return len(labels), lambda idx: average_precision(labels[idx], chosen[idx])
    if task_type == "Retrieval":
        per_query = items["ndcg_at_10"]
        return len(per_query), lambda idx: float(per_query[idx].mean())
    if task_type == "Reranking":
        per_query = items["ap"]
        return len(per_query), lambda idx: float(per_query[idx].mean())
    if task_type == "Clustering":
        sets, labels, assign = items["set"], items["label"], items["assign"]
        groups = [np.nonzero(sets == s)[0] for s in np.unique(sets)]
        offsets = np.cumsum([0] + [len(g) for g in groups])

        def clustering_stat(idx: np.ndarray) -> float:
            # idx indexes the concatenation of the groups; map it back per set
            vals = []
            for k, g in enumerate(groups):
                sel = idx[(idx >= offsets[k]) & (idx < offsets[k + 1])] - offsets[k]
                vals.append(v_measure(labels[g][sel], assign[g][sel]))
            return float(np.mean(vals))

        return int(offsets[-1]), clustering_stat
    raise ValueError(f"No bootstrap statistic for task type {task_type!r}")


def resample_indices(rng: np.random.Generator, task_type: str, items: dict[str, Any], n: int) -> np.ndarray:
    """One bootstrap resample of unit indices (clustering: within each set, keeping set sizes)."""
    if task_type == "Clustering":
        sets = items["set"]
        _, counts = np.unique(sets, return_counts=True)
        offsets = np.cumsum(np.r_[0, counts])
        return np.concatenate([rng.integers(offsets[k], offsets[k + 1], counts[k]) for k in range(len(counts))])
    return rng.integers(0, n, n)


def check_n_boot(n_boot: int) -> None:
    """``ValueError`` unless ``n_boot`` is a whole number of bootstrap resamples >= 1 (before any work)."""
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise ValueError(f"n_boot (--n-boot) must be a whole number of bootstrap resamples >= 1, got {n_boot!r}; "
                         "1000 is the default")


def paired_bootstrap(
    task_type: str,
    items_a: dict[str, np.ndarray],
    items_b: dict[str, np.ndarray],
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """Paired bootstrap over test items of ``B - A`` (main metric, percentage points).

    Both runs are scored on the same resampled items each round. Returns the observed difference, the 95%
    percentile interval of the resampled differences, and the two-sided p-value ``2 * min(P(d* <= 0), P(d* >= 0))``
    (capped at 1).
    """
    check_n_boot(n_boot)
    n_a, stat_a = statistic(task_type, items_a)
    n_b, stat_b = statistic(task_type, items_b)
    if n_a != n_b:
        raise ValueError(f"Runs have different numbers of test items ({n_a} vs {n_b}): not paired")
    rng = np.random.default_rng(seed)
    full = np.arange(n_a)
    observed = 100.0 * (stat_b(full) - stat_a(full))
    deltas = np.empty(n_boot)
    for i in range(n_boot):
        idx = resample_indices(rng, task_type, items_a, n_a)
        deltas[i] = 100.0 * (stat_b(idx) - stat_a(idx))
    p = min(1.0, 2.0 * min(float(np.mean(deltas <= 0)), float(np.mean(deltas >= 0))))
    lo, hi = np.percentile(deltas, [2.5, 97.5])
    return {
        "delta": float(observed),
        "ci_low": float(lo),
        "ci_high": float(hi),
        "p": float(p),
        "n_boot": n_boot,
        "n_units": int(n_a),
    }


def across_datasets(deltas: list[float]) -> dict[str, Any]:
    """Wilcoxon signed-rank test (scipy, two-sided) and sign test (binomial) of per-dataset differences."""
    from scipy.stats import binomtest, wilcoxon

    d = np.asarray(deltas, dtype=np.float64)
    wins, losses = int((d > 0).sum()), int((d < 0).sum())
    out: dict[str, Any] = {
        "n_datasets": len(d),
        "wins": wins,
        "losses": losses,
        "ties": int((d == 0).sum()),
        "mean_delta": float(d.mean()) if len(d) else float("nan"),
    }
    if len(d) == 0 or not np.any(d != 0):
        out.update(wilcoxon_statistic=None, wilcoxon_p=1.0, sign_test_p=1.0)
        return out
    res = wilcoxon(d, zero_method="wilcox", alternative="two-sided")
    out["wilcoxon_statistic"] = float(res.statistic)
    out["wilcoxon_p"] = float(res.pvalue)
    out["sign_test_p"] = float(binomtest(wins, wins + losses, 0.5).pvalue)
    return out


__all__ = [
    "across_datasets",
    "average_precision",
    "check_n_boot",
    "paired_bootstrap",
    "resample_indices",
    "spearman",
    "statistic",
    "v_measure",
]
