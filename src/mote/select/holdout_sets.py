"""In-domain validation from the user's own data: the held-out rows of every dataset a recipe trains on.

``data.holdout: f`` keeps a hashed fraction of every training dataset out of training (:mod:`mote.data.holdout`),
whatever its source (a folder under the data root, a local CSV / JSONL / Parquet file, a Hugging Face id). This
module turns those rows into evaluation folders (the layout ``mote eval`` reads, split ``validation``), one per
dataset, scored as the task it trains:

==============  ==============  ==============================================================================
training kind   scored as       the set
==============  ==============  ==============================================================================
retrieval       Retrieval       held-out queries against their positives, plus positives of other rows as
                                distractors (query side -> the kind's anchor route, corpus -> its positive route)
symmetric       Retrieval       the same, both sides routed as the kind routes them (the query expert)
classification  Classification  held-out rows scored; the classifier is fitted on the other (trained) rows
clustering      Clustering      the held-out sentences as one set, clustered by their labels
==============  ==============  ==============================================================================

Each task's sets are sized for a decision, not a benchmark: ``max_examples`` (default 100, ``select.max_examples``)
queries or scored rows per *task*, shared evenly by its datasets (at least 10 each), so that a recipe with many
datasets validates no longer than one with few; per dataset, a corpus of at most twice its queries, classifier rows
of at most twice its share or 4 per label where that is more, and twice its share of clustering sentences. A
dataset whose held-out rows are too few for its task (under :data:`MIN_ITEMS` queries / rows, or a single label) is
skipped and named in the log; a recipe with no usable set gets a :class:`~mote.select.weights.SelectionError`
naming the fix. Nothing here reads ``../shared``: the sets come from the recipe's own sources.

Example:
    >>> sets = build_recipe_sets(load_config("my-recipe.yaml"), "runs/mine/validation")   # doctest: +SKIP
    >>> [(s.name, s.group) for s in sets]                                                 # doctest: +SKIP
    [('retrieval-tickets', 'in-domain'), ('classification-intents', 'in-domain')]
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mote.atomic import atomic_dir, atomic_write_json
from mote.data.holdout import split_rows
from mote.data.pairs import labelled_rows, pair_rows
from mote.data.sources import load_records
from mote.eval import datasets as ds
from mote.eval.validation import PROTOCOL, SPLIT, write_beir, write_jsonl

GROUP = "in-domain"
CORPUS_FACTOR = 2  # a retrieval set's corpus: at most this many texts per query (its positives + distractors)
MIN_ITEMS = 5  # fewer held-out queries / rows than this decide nothing: the set is skipped (and said)
_VERSION = 2  # bump when what a folder holds changes: existing folders are rebuilt


def _folder_name(task: str, label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{task}-{label}")


def _retrieval(out: Path, kept: list[dict], held: list[dict], cap: int) -> dict[str, Any] | None:
    """BEIR layout: held-out queries (the first ``cap`` distinct ones) -> their positives; the corpus also holds
    positives of further held-out queries and of trained rows as distractors, up to CORPUS_FACTOR times the queries."""
    positives: dict[str, list[str]] = {}
    for anchor, positive, _ in pair_rows(held):
        if positive not in positives.setdefault(anchor, []):
            positives[anchor].append(positive)
    chosen = list(positives.items())[:cap]
    if len(chosen) < MIN_ITEMS:
        return None
    doc_ids: dict[str, str] = {}
    queries, qrels = [], []
    for query, docs in chosen:
        qid = f"q{len(queries)}"
        queries.append({"_id": qid, "text": query})
        for text in docs:
            qrels.append((qid, doc_ids.setdefault(text, f"d{len(doc_ids)}")))
    more = [t for _, docs in list(positives.items())[cap:] for t in docs] + [p for _, p, _ in pair_rows(kept)]
    for text in more:
        if len(doc_ids) >= CORPUS_FACTOR * len(queries):
            break
        doc_ids.setdefault(text, f"d{len(doc_ids)}")
    write_beir(out, doc_ids, queries, qrels)
    return {"task": "Retrieval", "splits": {SPLIT: len(queries), "corpus": len(doc_ids)},
            "note": f"{len(queries)} held-out queries; corpus = their positives + distractors ({len(doc_ids)} texts)"}


def _spread(rows: list[tuple[str, str]], n: int) -> list[tuple[str, str]]:
    """At most ``n`` rows taken round-robin over the labels (every label represented while rows last)."""
    by: dict[str, list[tuple[str, str]]] = {}
    for row in rows:
        by.setdefault(row[1], []).append(row)
    out: list[tuple[str, str]] = []
    queues = list(by.values())
    i = 0
    while len(out) < n and any(queues):
        queue = queues[i % len(queues)]
        if queue:
            out.append(queue.pop(0))
        i += 1
    return out


def _classification(out: Path, kept: list[dict], held: list[dict], cap: int) -> dict[str, Any] | None:
    scored = _spread(labelled_rows(held), cap)  # every label scored while rows last
    trained = labelled_rows(kept)
    labels = {label for _, label in trained}  # every label gets a few rows to fit on (mteb's protocol takes 8)
    fit = _spread(trained, max(2 * cap, 4 * len(labels)))
    seen = {label for _, label in scored}
    # mteb scores two labels as a binary task (average precision of label code 1): only a two-label dataset may
    if len(scored) < MIN_ITEMS or len(labels) < 2 or (len(seen) == 2 and len(labels | seen) > 2):
        return None
    write_jsonl(out / "train.jsonl.gz", ({"text": t, "label": label} for t, label in fit))
    write_jsonl(out / f"{SPLIT}.jsonl.gz", ({"text": t, "label": label} for t, label in scored))
    return {"task": "Classification", "splits": {"train": len(fit), SPLIT: len(scored)}, "protocol": PROTOCOL,
            "note": f"{len(scored)} held-out rows scored; the classifier fits {len(fit)} trained rows"}


def _clustering(out: Path, kept: list[dict], held: list[dict], cap: int) -> dict[str, Any] | None:
    rows = labelled_rows(held)[: 2 * cap]
    if len(rows) < MIN_ITEMS or len({label for _, label in rows}) < 2:
        return None
    write_jsonl(out / f"{SPLIT}.jsonl.gz", [{"sentences": [t for t, _ in rows], "labels": [lb for _, lb in rows]}])
    return {"task": "Clustering", "splits": {SPLIT: 1}, "note": f"{len(rows)} held-out sentences as one set"}


# the evaluation each training kind's held-out rows get, and the harness sides its routes feed
_BUILDERS: dict[str, tuple[Callable[..., dict[str, Any] | None], dict[str, str]]] = {
    "retrieval": (_retrieval, {"query": "anchor", "document": "positive"}),
    "symmetric": (_retrieval, {"query": "anchor", "document": "positive"}),
    "classification": (_classification, {"text": "anchor"}),
    "clustering": (_clustering, {"text": "anchor"}),
}


def _digest(recipe: Any, task: str, dataset: Any, cap: int) -> str:
    what = {"v": _VERSION, "task": task, "kind": recipe.objective_kind(task).name,  # "task": the digest's old key
            "source": dataset.source().describe(), "columns": dataset.columns, "holdout": recipe.data.holdout,
            "cap": cap}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


def build_recipe_sets(recipe: Any, output: str | Path, max_examples: int = 100, data_root: str | Path | None = None,
                      log: Callable[[str], None] | None = None) -> list[Any]:
    """Write one validation folder per training dataset of ``recipe`` (a :class:`mote.train.RunConfig` trained
    with ``data.holdout`` > 0) under ``output`` and return them as
    :class:`mote.select.search.ValidationSet` s of group ``in-domain``, with the routes the recipe trains.

    A folder built before from the same source, columns, holdout and cap is kept (``meta.json`` records a digest
    of them); each one is written atomically. ``data_root``: where named folders are (default the recipe's).
    """
    from mote.select.search import ValidationSet
    from mote.select.weights import SelectionError

    log = log or (lambda msg: None)
    if recipe.data.holdout <= 0:
        raise SelectionError("in-domain validation needs held-out rows: train with data.holdout (e.g. 0.1)")
    root = data_root if data_root is not None else recipe.data_root()
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    out, skipped = [], []
    for task in recipe.objectives:
        kind = recipe.objective_kind(task)
        build, sides = _BUILDERS[kind.name]
        datasets = recipe.objectives[task].dataset_configs()
        cap = max(2 * MIN_ITEMS, -(-max_examples // len(datasets)))  # the task's budget, shared by its datasets
        for dataset in datasets:
            source = dataset.source()
            folder = output / _folder_name(task, dataset.label)
            digest = _digest(recipe, task, dataset, cap)
            meta_path = folder / "meta.json"
            meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else None
            if meta is None or meta.get("digest") != digest:
                kept, held = split_rows(load_records(source, root), recipe.data.holdout)
                with atomic_dir(folder, overwrite=True) as tmp:
                    built = build(tmp, kept, held, cap)
                    meta = {**(built or {"task": None}), "role": "eval" if built else "skipped", "group": GROUP,
                            "source": source.describe(), "training_task": task, "digest": digest,
                            "holdout": recipe.data.holdout}
                    atomic_write_json(tmp / "meta.json", meta)
            if meta["role"] != "eval":
                skipped.append(source.describe())
                continue
            info = ds.DatasetInfo(folder.name, meta["task"], folder, meta)
            routes = {f"{info.name}.{side}": kind.routes[column] for side, column in sides.items()}
            out.append(ValidationSet(info, SPLIT, GROUP, routes, source=source.describe()))
    if skipped:
        log(f"validation: too few held-out rows to score (skipped): {', '.join(skipped)}")
    if not out:
        raise SelectionError(
            "no dataset of the recipe has enough held-out rows to validate on (at least "
            f"{MIN_ITEMS} queries or rows and two labels): raise data.holdout, add rows, or name validation sets of "
            "yours in select.datasets")
    return out


__all__ = ["GROUP", "MIN_ITEMS", "build_recipe_sets"]
