"""A validation suite for choosing a training recipe: evaluation folders built from held-out training rows.

The reported test sets must not pick the recipe. Only AmazonCounterfactual-en and Emotion ship a validation split,
so :func:`build_validation_suite` also carves the rows that ``data.holdout: f`` keeps out of training
(:mod:`mote.data.holdout`, same hash, same fraction) into evaluation folders of the usual layouts
(:mod:`mote.eval.datasets`), each with a ``validation`` split:

=====================================  ==================  ===============================================
folder                                 task type           from
=====================================  ==================  ===============================================
val-AmazonCounterfactual-en            Classification      the shipped validation split (classifier: train)
val-Emotion                            Classification      the shipped validation split (classifier: train)
val-Banking77                          Classification      held-out train rows (classifier: the other rows)
val-20NewsgroupsTitlesClustering       Clustering          held-out titles of train-20NewsgroupsTitlesClustering
val-AGNewsTitlesClustering             Clustering          held-out titles of train-AGNewsTitlesClustering
val-QAReranking                        Reranking           held-out questions of train-WikiQA + train-TrecQA
val-QARetrieval                        Retrieval           400 held-out questions each of SQuADDev, MedQuAD
val-QuoraRetrieval                     Retrieval           400 held-out Quora duplicates (both sides: query)
=====================================  ==================  ===============================================

There is no STS training data, so no STS validation set; ``val-QuoraRetrieval`` stands for the symmetric task.
Evaluate with ``split="validation"`` and the suite folder as data folder::

    mote eval MODEL --data-dir runs/validation-data --split validation --route val-QuoraRetrieval=query

Example:
    >>> root = build_validation_suite("../shared/data", "runs/validation-data", fraction=0.1)   # doctest: +SKIP
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mote.data.holdout import split_rows
from mote.data.sources import Source, load_records
from mote.io import atomic_dir, atomic_write_json

SPLIT = "validation"
ROUTES: dict[str, str] = {"val-QuoraRetrieval": "query"}  # symmetric duplicates: both sides the query view
MAX_QUERIES = 400  # per retrieval source: keeps a validation pass near a minute on 2 CPU cores
_VERSION = 2  # bump when what a folder holds changes: existing suites are rebuilt


def _write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    n = 0
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def _rows(folder: str, data_root: Path, split: str = "train") -> list[dict[str, Any]]:
    return load_records(Source(folder, folder=folder, split=split), data_root)


def _meta(task: str, note: str, splits: dict[str, int], sources: list[str], fraction: float) -> dict[str, Any]:
    return {"task": task, "role": "eval", "note": note, "splits": splits, "sources": sources,
            "holdout": fraction, "version": _VERSION}


def _classification(out: Path, root: Path, folder: str, fraction: float) -> dict[str, Any]:
    files = {p.name.split(".", 1)[0] for p in (root / folder).iterdir()}
    train = _rows(folder, root)
    if SPLIT in files:
        held, note = _rows(folder, root, SPLIT), f"{folder}: its own validation split; classifier fit on train"
    else:
        train, held = split_rows(train, fraction)
        note = f"{folder}: held-out train rows (fraction {fraction}); classifier fit on the other train rows"
    n_train, n_val = _write_jsonl(out / "train.jsonl.gz", train), _write_jsonl(out / f"{SPLIT}.jsonl.gz", held)
    return _meta("Classification", note, {"train": n_train, SPLIT: n_val}, [folder], fraction)


def _clustering(out: Path, root: Path, folder: str, fraction: float) -> dict[str, Any]:
    sentences: dict[str, Any] = {}  # AG News sets overlap: one copy of each held-out title
    for row in split_rows(_rows(folder, root), fraction)[1]:
        for s, label in zip(row["sentences"], row["labels"], strict=False):
            sentences.setdefault(s, label)
    _write_jsonl(out / f"{SPLIT}.jsonl.gz", [{"sentences": list(sentences), "labels": list(sentences.values())}])
    note = f"{folder}: its held-out sentences (fraction {fraction}) as one set"
    return _meta("Clustering", note, {SPLIT: 1}, [folder], fraction)


def _grouped(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, list[str]]]:
    """``{query: {positive: [...], negative: [...]}}`` (order kept, duplicates dropped)."""
    out: dict[str, dict[str, list[str]]] = {}
    for row in rows:
        item = out.setdefault(row["query"], {"positive": [], "negative": []})
        for side in ("positive", "negative"):
            text = row.get(side)
            if isinstance(text, str) and text.strip() and text not in item[side]:
                item[side].append(text)
    for item in out.values():
        item["negative"] = [n for n in item["negative"] if n not in item["positive"]]
    return out


def _reranking(out: Path, root: Path, folders: list[str], fraction: float) -> dict[str, Any]:
    items = []
    for folder in folders:
        for query, item in _grouped(split_rows(_rows(folder, root), fraction)[1]).items():
            if item["positive"] and item["negative"]:
                items.append({"query": query, **item})
    n = _write_jsonl(out / f"{SPLIT}.jsonl.gz", items)
    note = f"held-out questions (fraction {fraction}) with a positive and a negative candidate"
    return _meta("Reranking", note, {SPLIT: n}, folders, fraction)


def _retrieval(
    out: Path, root: Path, folders: list[str], fraction: float, max_queries: int = MAX_QUERIES
) -> dict[str, Any]:
    """BEIR layout: queries = held-out questions (the first ``max_queries`` of each source), corpus = every
    positive of them (one id per distinct text)."""
    doc_ids: dict[str, str] = {}
    queries: list[dict[str, str]] = []
    qrels: list[tuple[str, str]] = []
    for folder in folders:
        grouped = [(q, item) for q, item in _grouped(split_rows(_rows(folder, root), fraction)[1]).items()
                   if item["positive"]]
        for query, item in grouped[:max_queries]:
            qid = f"q{len(queries)}"
            queries.append({"_id": qid, "text": query})
            for text in item["positive"]:
                did = doc_ids.setdefault(text, f"d{len(doc_ids)}")
                qrels.append((qid, did))
    _write_jsonl(out / "corpus.jsonl.gz", ({"_id": d, "title": "", "text": t} for t, d in doc_ids.items()))
    _write_jsonl(out / "queries.jsonl.gz", queries)
    (out / "qrels").mkdir()
    (out / "qrels" / f"{SPLIT}.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, d in qrels), encoding="utf-8"
    )
    note = f"held-out questions (fraction {fraction}); corpus = their positives ({len(doc_ids)} texts)"
    return _meta("Retrieval", note, {SPLIT: len(queries), "corpus": len(doc_ids)}, folders, fraction)


_BUILDERS = {
    "val-AmazonCounterfactual-en": lambda o, r, f: _classification(o, r, "AmazonCounterfactualClassification-en", f),
    "val-Emotion": lambda o, r, f: _classification(o, r, "EmotionClassification", f),
    "val-Banking77": lambda o, r, f: _classification(o, r, "Banking77Classification", f),
    "val-20NewsgroupsTitlesClustering": lambda o, r, f: _clustering(o, r, "train-20NewsgroupsTitlesClustering", f),
    "val-AGNewsTitlesClustering": lambda o, r, f: _clustering(o, r, "train-AGNewsTitlesClustering", f),
    "val-QAReranking": lambda o, r, f: _reranking(o, r, ["train-WikiQA", "train-TrecQA"], f),
    "val-QARetrieval": lambda o, r, f: _retrieval(o, r, ["train-SQuADDev", "train-MedQuAD"], f),
    "val-QuoraRetrieval": lambda o, r, f: _retrieval(o, r, ["train-QuoraDuplicates"], f),
}
DATASETS: tuple[str, ...] = tuple(_BUILDERS)  # the suite's folders, in build order


def build_validation_suite(
    data_root: str | os.PathLike, output: str | os.PathLike, fraction: float = 0.1
) -> Path:
    """Write the validation folders (module doc) under ``output``; existing ones built alike are kept.

    Train with ``data: {holdout: fraction}`` so that none of these rows is trained on. Each folder is written
    atomically; a folder built with another fraction (or an older layout) is rebuilt.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"a validation suite needs a holdout fraction in (0, 1), got {fraction}")
    root, output = Path(data_root), Path(output)
    output.mkdir(parents=True, exist_ok=True)
    for name, build in _BUILDERS.items():
        meta_path = output / name / "meta.json"
        if meta_path.is_file():
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if meta.get("holdout") == fraction and meta.get("version") == _VERSION:
                continue
        with atomic_dir(output / name, overwrite=True) as tmp:
            atomic_write_json(tmp / "meta.json", build(tmp, root, fraction))
    return output
