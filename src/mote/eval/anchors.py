"""Published MTEB scores of all-MiniLM-L6-v2 (the harness's anchor) and the table that compares a run with them.

Source: ``../shared/design/mteb-reference.md`` (embeddings-benchmark/results, folder
``sentence-transformers__all-MiniLM-L6-v2/8b3219a9...``, mteb 1.12.x; test split, main score x 100).
``exact`` says whether our local copy of the data is MTEB's (``../shared/data/MANIFEST.md``).

Example:
    >>> print(anchor_markdown(load_run("runs/eval/minilm-default")))   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# dataset -> (published main score, metric in the 1.x file, data exactness per MANIFEST.md)
MINILM_PUBLISHED: dict[str, tuple[float, str, str]] = {
    "STS12": (72.37, "cosine_spearman", "exact (rows, unique texts; chars within 0.15%)"),
    "STS13": (80.60, "cosine_spearman", "exact (chars within 0.1%)"),
    "STS14": (75.59, "cosine_spearman", "exact (chars within 0.2%)"),
    "STS15": (85.39, "cosine_spearman", "exact (chars within 0.2%)"),
    "STS16": (78.99, "cosine_spearman", "exact (chars within 0.2%)"),
    "STSBenchmark": (82.03, "cosine_spearman", "exact"),
    "BIOSSES": (81.64, "cosine_spearman", "~ (MTEB's text differs by ~0.5% of characters)"),
    "Banking77Classification": (80.04, "accuracy", "exact (train and test)"),
    "EmotionClassification": (40.83, "accuracy", "exact (train, test)"),
    "AmazonCounterfactualClassification-en": (63.64, "accuracy", "exact"),
    "AmazonCounterfactualClassification-en-ext": (65.59, "accuracy", "exact"),
    "TweetSentimentExtractionClassification": (54.04, "accuracy", "test exact; train 27,480 vs 27,481 rows"),
    "TwitterURLCorpus": (
        84.70,
        "max_ap",
        "split test-mteb51534 = MTEB's 51,534 pairs (42,200 lower-cased); "
        "split test = the 9,334 exact test pairs only",
    ),
    "TwentyNewsgroupsClustering": (46.49, "v_measure", "NOT exact (same source and size, different sampling)"),
}
TOLERANCE = 0.5  # points: the harness must reproduce every MTEB-exact anchor within this


def anchor_rows(*runs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per anchored dataset found in ``runs`` (results.json dicts; a later run wins for a dataset)."""
    found: dict[str, tuple[float, str]] = {}
    for run in runs:
        for name, entry in run["datasets"].items():
            split = entry.get("split", "test")
            if name in MINILM_PUBLISHED:
                found[f"{name}@{split}"] = (entry["main_score"], entry["main_metric"])
    rows = []
    for key, (ours, metric) in found.items():
        name, split = key.split("@", 1)
        published, pub_metric, exact = MINILM_PUBLISHED[name]
        diff = round(ours - published, 2) + 0.0  # no "-0.00"
        rows.append(
            {
                "dataset": name,
                "split": split,
                "metric": f"{metric} (1.x: {pub_metric})",
                "ours": ours,
                "published": published,
                "diff": diff,
                "exactness": exact,
                "within": abs(diff) <= TOLERANCE,
            }
        )
    order = list(MINILM_PUBLISHED)
    return sorted(rows, key=lambda r: (order.index(r["dataset"]), r["split"]))


def anchor_markdown(*runs: Mapping[str, Any]) -> str:
    lines = [
        "| dataset | split | metric | ours | published | diff | within 0.5 | data vs MTEB |",
        "|---|---|---|---:|---:|---:|:---:|---|",
    ]
    for r in anchor_rows(*runs):
        lines.append(
            f"| {r['dataset']} | {r['split']} | {r['metric']} | {r['ours']:.2f} | {r['published']:.2f} | "
            f"{r['diff']:+.2f} | {'yes' if r['within'] else 'NO'} | {r['exactness']} |"
        )
    return "\n".join(lines) + "\n"


__all__ = ["MINILM_PUBLISHED", "TOLERANCE", "anchor_markdown", "anchor_rows"]
