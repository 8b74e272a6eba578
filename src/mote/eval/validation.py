"""Validation suites for choosing a recipe and for per-task selection: evaluation folders built from training data.

The reported test sets must not pick the recipe, nor the weights a selected model keeps. The suites are built from
training data in two groups, each folder with a ``validation`` split:

* **in-domain**: the rows that ``data.holdout: f`` keeps out of training (:mod:`mote.data.holdout`, same hash,
  same fraction) of sources the recipe trains on, plus the validation split of Emotion (whose train split is a
  training source). They tell whether a choice helps the data it was trained for.
* **ood** (leave-one-source-out): whole sources of each task that the recipe does *not* train on, plus the
  validation split of an evaluation set whose train split is not trained on. They tell whether a choice helps data
  of other domains, which in-domain rows cannot show (the hidden evaluation found choices that win in domain and
  lose out of it). A recipe that trains on one of :data:`OOD_SOURCES` cannot select on this group
  (:mod:`mote.train.config` refuses it).

=====================================  ==============  =========  ==========================================
folder                                 task type       group      from
=====================================  ==============  =========  ==========================================
val-Emotion                            Classification  in-domain  the shipped validation split (classifier: train)
val-Banking77                          Classification  in-domain  held-out train rows (classifier: the other rows)
val-RedditTitles                       Classification  in-domain  held-out titles of 20 subreddits (same protocol)
val-20NewsgroupsTitlesClustering       Clustering      in-domain  held-out titles of train-20NewsgroupsTitlesClustering
val-AGNewsTitlesClustering             Clustering      in-domain  held-out titles of train-AGNewsTitlesClustering
val-RedditTitlesClustering             Clustering      in-domain  held-out titles of train-RedditTitlesClustering
val-QAReranking                        Reranking       in-domain  held-out questions of train-WikiQA + train-TrecQA
val-QARetrieval                        Retrieval       in-domain  held-out questions of SQuADDev, MedQuAD
val-QuoraRetrieval                     Retrieval       in-domain  held-out Quora duplicates (both sides: query)
val-Multi30kRetrieval                  Retrieval       in-domain  held-out caption pairs (both sides: query)
ood-AmazonCounterfactual-en            Classification  ood        its validation split (classifier: train)
ood-StackExchangeTitles                Classification  ood        titles of 20 Stack Exchange sites (not trained)
ood-StackExchangeTitlesClustering      Clustering      ood        one title set (19 sites) of its training sets
ood-PubMedQARetrieval                  Retrieval       ood        biomedical questions -> their abstracts (PubMedQA),
                                                                  + the other abstracts and held-out MedQuAD answers
ood-AltLexRetrieval                    Retrieval       ood        English -> Simple Wikipedia sentence (both: query),
                                                                  + 1,200 other Simple Wikipedia sentences
=====================================  ==============  =========  ==========================================

There is no STS training data, so no STS validation set; the symmetric retrieval sets (Quora, Multi30k, AltLex)
stand for the symmetric tasks. Evaluate with ``split="validation"`` and the suite folder as data folder::

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

from mote.atomic import atomic_dir, atomic_write_json
from mote.data.holdout import split_rows
from mote.data.sources import Source, load_records

SPLIT = "validation"
# symmetric pairs: both sides the query view
ROUTES: dict[str, str] = {"val-QuoraRetrieval": "query", "val-Multi30kRetrieval": "query",
                          "ood-AltLexRetrieval": "query"}
MAX_QUERIES = 300  # per retrieval source: keeps a validation pass near a minute on 2 CPU cores
TITLE_LABELS = 20  # title classification sets: the first labels in name order (MTEB's protocol fits 8 per label)
DISTRACTOR_FRACTION = 0.02  # below any holdout a recipe uses: rows held out at 0.02 are held out at 0.1 too
OOD_FRACTION = 0.25  # ood title classification: the share of rows scored (the rest fit the classifier)
MAX_SCORED = 1000  # classification: rows scored per set (the first ones)
MAX_TITLES = 1500  # clustering: titles per validation set (the first ones)
# MTEB's classification protocol fits 10 logistic regressions on 8 samples per label; 3 fits keep a candidate's
# validation pass short (the union of the undersampled training texts is what gets encoded)
PROTOCOL = {"n_experiments": 3}
_VERSION = 6  # bump when what a folder holds changes: existing suites are rebuilt


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    n = 0
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def write_beir(out: Path, doc_ids: dict[str, str], queries: list[dict[str, str]],
               qrels: list[tuple[str, str]]) -> None:
    """A retrieval folder's files (BEIR layout, split ``validation``): ``doc_ids`` text -> id, ``queries``
    ``{_id, text}``, ``qrels`` ``(query id, doc id)`` pairs (relevance 1)."""
    write_jsonl(out / "corpus.jsonl.gz", ({"_id": d, "title": "", "text": t} for t, d in doc_ids.items()))
    write_jsonl(out / "queries.jsonl.gz", queries)
    (out / "qrels").mkdir()
    (out / "qrels" / f"{SPLIT}.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, d in qrels), encoding="utf-8"
    )


def _rows(folder: str, data_root: Path, split: str = "train") -> list[dict[str, Any]]:
    return load_records(Source(folder, folder=folder, split=split), data_root)


def _meta(task: str, note: str, splits: dict[str, int], sources: list[str], fraction: float) -> dict[str, Any]:
    return {"task": task, "role": "eval", "note": note, "splits": splits, "sources": sources,
            "holdout": fraction, "version": _VERSION}


def _first_labels(rows: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    keep = set(sorted({r["label"] for r in rows})[:n])
    return [r for r in rows if r["label"] in keep]


def _classification(
    out: Path, root: Path, folder: str, fraction: float, labels: int | None = None
) -> dict[str, Any]:
    files = {p.name.split(".", 1)[0] for p in (root / folder).iterdir()}
    train = _rows(folder, root)
    if labels is not None:
        train = _first_labels(train, labels)
    if SPLIT in files:
        held, note = _rows(folder, root, SPLIT), f"{folder}: its own validation split; classifier fit on train"
    else:
        train, held = split_rows(train, fraction)
        note = f"{folder}: held-out train rows (fraction {fraction}); classifier fit on the other train rows"
    held = held[:MAX_SCORED]
    n_train, n_val = write_jsonl(out / "train.jsonl.gz", train), write_jsonl(out / f"{SPLIT}.jsonl.gz", held)
    return {**_meta("Classification", note, {"train": n_train, SPLIT: n_val}, [folder], fraction),
            "protocol": PROTOCOL}


def _clustering(out: Path, root: Path, folder: str, fraction: float) -> dict[str, Any]:
    sentences: dict[str, Any] = {}  # AG News sets overlap: one copy of each held-out title
    for row in split_rows(_rows(folder, root), fraction)[1]:
        for s, label in zip(row["sentences"], row["labels"], strict=False):
            sentences.setdefault(s, label)
    kept = list(sentences)[:MAX_TITLES]
    write_jsonl(out / f"{SPLIT}.jsonl.gz", [{"sentences": kept, "labels": [sentences[t] for t in kept]}])
    note = f"{folder}: its held-out sentences (fraction {fraction}, at most {MAX_TITLES}) as one set"
    return _meta("Clustering", note, {SPLIT: 1}, [folder], fraction)


def _ood_clustering(out: Path, root: Path, folder: str, sets: tuple[int, ...]) -> dict[str, Any]:
    rows = _rows(folder, root)
    chosen = [{"sentences": rows[i]["sentences"][:MAX_TITLES], "labels": rows[i]["labels"][:MAX_TITLES]} for i in sets]
    write_jsonl(out / f"{SPLIT}.jsonl.gz", chosen)
    note = f"{folder}: sets {list(sets)} as they are (the source is not trained on)"
    return _meta("Clustering", note, {SPLIT: len(chosen)}, [folder], 0.0)


def _ood_classification(out: Path, root: Path, folder: str, labels: int) -> dict[str, Any]:
    """A source the recipe does not train on: rows of its first ``labels`` labels, a hashed share scored."""
    rows = _first_labels(_rows(folder, root), labels)
    fit, scored = split_rows(rows, OOD_FRACTION)
    scored = scored[:MAX_SCORED]
    n_train, n_val = write_jsonl(out / "train.jsonl.gz", fit), write_jsonl(out / f"{SPLIT}.jsonl.gz", scored)
    note = f"{folder}: {labels} labels, a hashed {OOD_FRACTION:g} of the rows scored, the rest fit the classifier"
    return {**_meta("Classification", note, {"train": n_train, SPLIT: n_val}, [folder], 0.0), "protocol": PROTOCOL}


def grouped_pairs(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, list[str]]]:
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
        for query, item in grouped_pairs(split_rows(_rows(folder, root), fraction)[1]).items():
            if item["positive"] and item["negative"]:
                items.append({"query": query, **item})
    n = write_jsonl(out / f"{SPLIT}.jsonl.gz", items)
    note = f"held-out questions (fraction {fraction}) with a positive and a negative candidate"
    return _meta("Reranking", note, {SPLIT: n}, folders, fraction)


def _retrieval(
    out: Path, root: Path, folders: list[str], fraction: float, max_queries: int = MAX_QUERIES,
    distractors: int = 0, distractor_source: str | None = None,
) -> dict[str, Any]:
    """BEIR layout: queries = held-out questions (the first ``max_queries`` of each source), corpus = every
    positive of them (one id per distinct text), plus up to ``distractors`` positives of the source's further rows
    and of ``distractor_source``'s rows held out at :data:`DISTRACTOR_FRACTION` (never trained on), so that a
    small validation corpus is not solved by any model."""
    doc_ids: dict[str, str] = {}
    queries: list[dict[str, str]] = []
    qrels: list[tuple[str, str]] = []
    extra: list[str] = []
    for folder in folders:
        rows = _rows(folder, root)
        held = split_rows(rows, fraction)[1] if fraction > 0 else rows  # fraction 0: a source not trained on
        grouped = [(q, item) for q, item in grouped_pairs(held).items() if item["positive"]]
        for query, item in grouped[:max_queries]:
            qid = f"q{len(queries)}"
            queries.append({"_id": qid, "text": query})
            for text in item["positive"]:
                did = doc_ids.setdefault(text, f"d{len(doc_ids)}")
                qrels.append((qid, did))
        extra += [t for _, item in grouped[max_queries:] for t in item["positive"]]
    if distractor_source is not None:
        held = split_rows(_rows(distractor_source, root), DISTRACTOR_FRACTION)[1]
        extra += [t for item in grouped_pairs(held).values() for t in item["positive"]]
    for text in extra:
        if len(doc_ids) >= len(set(d for _, d in qrels)) + distractors:
            break
        doc_ids.setdefault(text, f"d{len(doc_ids)}")
    write_beir(out, doc_ids, queries, qrels)
    note = f"held-out questions (fraction {fraction}); corpus = their positives and distractors ({len(doc_ids)} texts)"
    meta = _meta("Retrieval", note, {SPLIT: len(queries), "corpus": len(doc_ids)}, folders, fraction)
    if distractor_source is not None:  # rows held out at DISTRACTOR_FRACTION: never trained on
        meta["distractors_from"] = {distractor_source: DISTRACTOR_FRACTION}
    return meta


IN_DOMAIN = {
    "val-Emotion": lambda o, r, f: _classification(o, r, "EmotionClassification", f),
    "val-Banking77": lambda o, r, f: _classification(o, r, "Banking77Classification", f),
    "val-RedditTitles": lambda o, r, f: _classification(o, r, "train-RedditTitles", f, TITLE_LABELS),
    "val-20NewsgroupsTitlesClustering": lambda o, r, f: _clustering(o, r, "train-20NewsgroupsTitlesClustering", f),
    "val-AGNewsTitlesClustering": lambda o, r, f: _clustering(o, r, "train-AGNewsTitlesClustering", f),
    "val-RedditTitlesClustering": lambda o, r, f: _clustering(o, r, "train-RedditTitlesClustering", f),
    "val-QAReranking": lambda o, r, f: _reranking(o, r, ["train-WikiQA", "train-TrecQA"], f),
    "val-QARetrieval": lambda o, r, f: _retrieval(o, r, ["train-SQuADDev", "train-MedQuAD"], f),
    "val-QuoraRetrieval": lambda o, r, f: _retrieval(o, r, ["train-QuoraDuplicates"], f),
    "val-Multi30kRetrieval": lambda o, r, f: _retrieval(o, r, ["train-Multi30kCaptions"], f),
}
OOD = {
    "ood-AmazonCounterfactual-en": lambda o, r, f: _classification(
        o, r, "AmazonCounterfactualClassification-en", 0.0),
    "ood-StackExchangeTitles": lambda o, r, f: _ood_classification(o, r, "train-StackExchangeTitles", TITLE_LABELS),
    "ood-StackExchangeTitlesClustering": lambda o, r, f: _ood_clustering(
        o, r, "train-StackExchangeTitlesClustering", (2,)),
    "ood-PubMedQARetrieval": lambda o, r, f: _retrieval(o, r, ["train-PubMedQA"], 0.0, max_queries=200,
                                                        distractors=300, distractor_source="train-MedQuAD"),
    "ood-AltLexRetrieval": lambda o, r, f: _retrieval(o, r, ["train-AltLexWikiSimple"], 0.0, distractors=1200),
}
# The training sources the ood group uses whole: a recipe selecting on it must not train on them.
OOD_SOURCES: tuple[str, ...] = ("AmazonCounterfactualClassification-en", "train-StackExchangeTitles",
                                "train-StackExchangeTitlesClustering", "train-PubMedQA", "train-AltLexWikiSimple")
_BUILDERS = {**IN_DOMAIN, **OOD}
GROUPS: dict[str, str] = {**dict.fromkeys(IN_DOMAIN, "in-domain"), **dict.fromkeys(OOD, "ood")}
DATASETS: tuple[str, ...] = tuple(_BUILDERS)  # the suite's folders, in build order


def validation_dir(fraction: float) -> Path:
    """Where the suite of a holdout fraction is built by default: under the embedding cache folder (derived data)."""
    from mote.eval.cache import default_cache_dir

    return default_cache_dir() / f"validation-holdout-{fraction:g}"


def datasets_of(group: str) -> list[str]:
    """The folders of ``group`` (``in-domain``, ``ood`` or ``both``)."""
    if group not in ("in-domain", "ood", "both"):
        raise ValueError(f"unknown validation group {group!r}: use in-domain, ood or both")
    return [d for d in DATASETS if group == "both" or GROUPS[d] == group]


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
            if meta.get("version") == _VERSION and (GROUPS[name] == "ood" or meta.get("holdout") == fraction):
                continue
        with atomic_dir(output / name, overwrite=True) as tmp:
            atomic_write_json(tmp / "meta.json", {**build(tmp, root, fraction), "group": GROUPS[name]})
    return output

__all__ = [
    "DATASETS",
    "DISTRACTOR_FRACTION",
    "GROUPS",
    "IN_DOMAIN",
    "MAX_QUERIES",
    "MAX_SCORED",
    "MAX_TITLES",
    "OOD",
    "OOD_FRACTION",
    "OOD_SOURCES",
    "PROTOCOL",
    "ROUTES",
    "SPLIT",
    "TITLE_LABELS",
    "build_validation_suite",
    "datasets_of",
    "grouped_pairs",
    "validation_dir",
    "write_beir",
    "write_jsonl",
]
