"""Evaluation datasets: discovered from the data folder, loaded from local files, validated line by line.

Every sub-folder of the data folder with a ``meta.json`` is a dataset; ``meta.json`` gives its ``task`` (task type:
STS, Classification, Clustering, PairClassification, Reranking, Retrieval) and ``role`` (``eval`` or ``train``).
Only ``role == "eval"`` folders are evaluated; classification fits its classifier on the ``train`` split, as MTEB
does. A new folder in the same layout is picked up with no code change.

Suites and splits (``split="auto"`` scores each dataset's split of the suite, :meth:`DatasetInfo.suite_split`):

===========  =================================================================================================
``mteb``     every evaluation dataset on the rows MTEB scores (:meth:`DatasetInfo.mteb_split`: ``test``, or a
             ``test-mteb*`` split where the folder has one, e.g. TwitterURLCorpus ``test-mteb51534``): numbers
             comparable with published MTEB scores (costs: ``docs/mteb-anchor.md``, section Speed).
``default``  every evaluation dataset, sized for a 2-core CPU (cold <= 15 min): a folder's ``test-sample*``
             split where it has one (ImdbClassification ``test-sample2000``), else the choice of
             :data:`DEFAULT_SPLITS`, else the ``mteb`` split.
``quick``    one small dataset per task type (:data:`QUICK_PREFERRED`), on the ``default`` suite's splits.
===========  =================================================================================================

A split may select items of its file: ``test[::3]`` = every third line (every third set of a clustering file,
every third pair of an STS file; Python slice syntax), for every task type but Retrieval.

File layouts (``*.jsonl`` or ``*.jsonl.gz``, one JSON object per line):

=====================  ==========================================================================================
STS                    ``test.jsonl.gz``: ``{sentence1, sentence2, score}``; ``meta.score_range`` (default [0, 5])
Classification         ``train.jsonl.gz``, ``test.jsonl.gz``: ``{text, label}``
Clustering             ``test.jsonl.gz``: ``{sentences: [...], labels: [...]}`` (one line = one set)
PairClassification     ``test.jsonl.gz``: ``{sentence1, sentence2, label}`` (label 0/1)
Reranking              ``test.jsonl.gz``: ``{query, positive: [...], negative: [...]}``
Retrieval              BEIR: ``corpus.jsonl.gz {_id, title, text}``, ``queries.jsonl.gz {_id, text}``,
                       ``qrels/test.tsv`` (header ``query-id corpus-id score``)
=====================  ==========================================================================================

Example:
    >>> infos = discover("../shared/data")                  # doctest: +SKIP
    >>> infos["STSBenchmark"].task_type                      # doctest: +SKIP
    'STS'
    >>> load(infos["STSBenchmark"]).n_items                   # doctest: +SKIP
    1379
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mote.files import iter_jsonl as _iter_jsonl

TASK_TYPES: tuple[str, ...] = ("STS", "Classification", "Clustering", "PairClassification", "Reranking", "Retrieval")

# The quick suite: one small dataset per task type (falls back to the smallest dataset of a type when absent).
QUICK_PREFERRED: dict[str, str] = {
    "STS": "STSBenchmark",
    "Classification": "AmazonCounterfactualClassification-en",
    "Clustering": "TwentyNewsgroupsClustering",
    "PairClassification": "MSRPPairClassification",
    "Reranking": "TrecQAReranking",
    "Retrieval": "WikiQARetrieval",
}
SUITES: tuple[str, ...] = ("quick", "default", "mteb")
# The default suite's split where it differs from MTEB's, chosen to keep its cold run <= 15 min on a 2-core CPU
# (measured costs: docs/mteb-anchor.md#speed). Folders with a ``test-sample*`` split need no entry.
DEFAULT_SPLITS: dict[str, str] = {
    "TwitterURLCorpus": "test",  # the 9,334 test pairs, not MTEB's 51,534 (test-mteb51534: +42,200 train pairs)
    "RedditClustering": "test[::3]",  # 9 of the 25 sets (10..50 classes, 10,800 of 30,000 titles)
    "StackExchangeClustering": "test[::3]",  # 9 of the 25 sets (10..50 classes, 10,778 of 29,973 titles)
}


class DatasetFormatError(ValueError):
    """A dataset file that does not follow its layout; the message names the file and the line."""


class UnknownDatasetError(ValueError):
    """A dataset name that is not an evaluation dataset of the data folder."""


# ------------------------------------------------------------------------------------------------ discovery
@dataclass(frozen=True)
class DatasetInfo:
    """One evaluation dataset folder: its name, task type and ``meta.json``."""

    name: str
    task_type: str
    path: Path
    meta: dict[str, Any] = field(repr=False, compare=False)

    @property
    def mteb_task(self) -> tuple[str | None, str | None]:
        """``(task name, subset)`` of the MTEB task this dataset reproduces, from ``meta["mteb_task"]``."""
        value = self.meta.get("mteb_task")
        if not value:
            return None, None
        m = re.fullmatch(r"\s*(\S+)\s*(?:\((.+)\))?\s*", str(value))
        return (m.group(1), m.group(2)) if m else (str(value), None)

    def mteb_split(self) -> str:
        """The split holding the rows MTEB scores: a ``test-mteb*`` split when the folder has one (its rows differ
        from ``test``, e.g. TwitterURLCorpus ``test-mteb51534``), else ``test``."""
        mteb = sorted(n for n in self._split_names() if n.startswith("test-mteb"))
        if len(mteb) > 1:
            raise DatasetFormatError(f"Dataset {self.name!r} has several MTEB splits {mteb}; pass split= explicitly")
        return mteb[0] if mteb else "test"

    def suite_split(self, suite: str) -> str:
        """The split ``suite`` scores: MTEB's for ``mteb``; for ``default``/``quick`` a ``test-sample*`` split of
        the folder (a sample for CPU runs, e.g. ImdbClassification ``test-sample2000``), else
        :data:`DEFAULT_SPLITS`, else MTEB's."""
        if suite not in SUITES:
            raise ValueError(f"Unknown suite {suite!r}; choose one of {SUITES}")
        if suite == "mteb":
            return self.mteb_split()
        samples = sorted(n for n in self._split_names() if n.startswith("test-sample"))
        if len(samples) > 1:
            raise DatasetFormatError(f"Dataset {self.name!r} has several sample splits {samples}; pass split=")
        return samples[0] if samples else DEFAULT_SPLITS.get(self.name) or self.mteb_split()

    def resolve_split(self, split: str, suite: str = "mteb") -> str:
        """``split`` itself, or for ``"auto"`` the split ``suite`` scores (:meth:`suite_split`)."""
        return self.suite_split(suite) if split == "auto" else split

    def _split_names(self) -> set[str]:
        names = {p.name.split(".", 1)[0] for p in self.path.iterdir() if p.is_file()}
        return names | set(self.meta.get("splits", {}))

    def files(self) -> list[Path]:
        return sorted(p for p in self.path.rglob("*") if p.is_file())

    def size(self) -> int:
        return sum(p.stat().st_size for p in self.files())

    def fingerprint(self) -> dict[str, str]:
        """sha256 (first 16 hex digits) of every file of the folder, by relative path."""
        out: dict[str, str] = {}
        for p in self.files():
            h = hashlib.sha256()
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            out[p.relative_to(self.path).as_posix()] = h.hexdigest()[:16]
        return out


def discover(root: str | os.PathLike, role: str | None = "eval") -> dict[str, DatasetInfo]:
    """``{name: DatasetInfo}`` for every sub-folder of ``root`` with a ``meta.json`` (of ``role``, if given).

    Raises :class:`DatasetFormatError` for a ``meta.json`` that is not valid JSON or misses ``task``/``role``.
    """
    root = Path(root)
    found: dict[str, DatasetInfo] = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        meta_path = sub / "meta.json"
        if not meta_path.is_file():
            continue
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DatasetFormatError(f"{meta_path}:{e.lineno}: not valid JSON ({e.msg})") from None
        if not isinstance(meta, dict) or "task" not in meta or "role" not in meta:
            raise DatasetFormatError(f"{meta_path}: needs the keys 'task' and 'role'")
        if role is not None and meta["role"] != role:
            continue
        if meta["role"] == "eval" and meta["task"] not in TASK_TYPES:
            raise DatasetFormatError(
                f"{meta_path}: unknown task type {meta['task']!r}; evaluation datasets need one of {TASK_TYPES}"
            )
        found[sub.name] = DatasetInfo(sub.name, meta["task"], sub, meta)
    return found


def select(
    available: dict[str, DatasetInfo], suite: str = "default", names: str | list[str] | None = None
) -> list[DatasetInfo]:
    """The datasets to run: ``names`` if given (comma string or list), else the suite's.

    ``quick`` = one small dataset per task type; ``default`` and ``mteb`` = every evaluation dataset (they differ
    in the splits they score: :meth:`DatasetInfo.suite_split`).
    """
    if names:
        wanted = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n.strip()]
        unknown = [n for n in wanted if n not in available]
        if unknown:
            raise UnknownDatasetError(
                f"Unknown dataset(s) {unknown}. Available evaluation datasets: {', '.join(sorted(available))}"
            )
        return [available[n] for n in dict.fromkeys(wanted)]
    if suite in ("default", "mteb"):
        return list(available.values())
    if suite == "quick":
        chosen: list[DatasetInfo] = []
        for task_type in TASK_TYPES:
            of_type = [i for i in available.values() if i.task_type == task_type]
            if not of_type:
                continue
            preferred = QUICK_PREFERRED.get(task_type)
            chosen.append(available[preferred] if preferred in available else min(of_type, key=DatasetInfo.size))
        return chosen
    raise ValueError(f"Unknown suite {suite!r}; choose one of {SUITES} (or name datasets with --datasets)")


# ------------------------------------------------------------------------------------------------ file readers
_SELECTOR = re.compile(r"(?P<name>[^\[\]]+)(?:\[(?P<start>-?\d*):(?P<stop>-?\d*)(?::(?P<step>-?\d*))?\])?")


def parse_split(split: str) -> tuple[str, slice | None]:
    """``"test[::3]"`` -> ``("test", slice(None, None, 3))``; ``"test"`` -> ``("test", None)``.

    Example:
        >>> parse_split("test[1:10:2]")
        ('test', slice(1, 10, 2))
    """
    m = _SELECTOR.fullmatch(split.strip())
    if not m:
        raise ValueError(f"Bad split {split!r}: use a split name, optionally slicing its items, e.g. test[::3]")
    if "[" not in split:
        return m.group("name"), None
    start, stop, step = (int(v) if v else None for v in m.group("start", "stop", "step"))
    if step == 0:
        raise ValueError(f"Bad split {split!r}: the slice step cannot be 0")
    return m.group("name"), slice(start, stop, step)


def split_file(info: DatasetInfo, split: str) -> Path:
    """The file of ``split`` (any item selector, ``test[::3]``, is ignored: it applies to the file's lines)."""
    split = parse_split(split)[0]
    for suffix in (".jsonl.gz", ".jsonl"):
        p = info.path / f"{split}{suffix}"
        if p.is_file():
            return p
    have = sorted(p.name for p in info.path.iterdir() if p.name.endswith((".jsonl", ".jsonl.gz")))
    raise FileNotFoundError(f"Dataset {info.name!r} has no {split}.jsonl[.gz] in {info.path} (files: {have})")


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for every non-blank line; a bad line raises with ``path:line``."""
    return _iter_jsonl(path, DatasetFormatError)


def _field(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], path: Path, lineno: int) -> Any:
    if key not in obj:
        raise DatasetFormatError(f"{path}:{lineno}: missing field {key!r} (fields: {sorted(obj)})")
    value = obj[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        want = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise DatasetFormatError(f"{path}:{lineno}: field {key!r} must be {want}, got {type(value).__name__}")
    return value


def _str_list(obj: dict[str, Any], key: str, path: Path, lineno: int) -> list[str]:
    value = _field(obj, key, list, path, lineno)
    if not all(isinstance(v, str) for v in value):
        raise DatasetFormatError(f"{path}:{lineno}: field {key!r} must be a list of strings")
    return value


# ------------------------------------------------------------------------------------------------ typed data
@dataclass
class STSData:
    sentence1: list[str]
    sentence2: list[str]
    scores: list[float]
    min_score: float = 0.0
    max_score: float = 5.0

    @property
    def n_items(self) -> int:
        return len(self.scores)


@dataclass
class ClassificationData:
    train_texts: list[str]
    train_labels: list[str]
    test_texts: list[str]
    test_labels: list[str]

    @property
    def n_items(self) -> int:
        return len(self.test_labels)


@dataclass
class ClusteringData:
    sets: list[tuple[list[str], list[str]]]  # (sentences, labels) per set

    @property
    def n_items(self) -> int:
        return sum(len(s) for s, _ in self.sets)


@dataclass
class PairClassificationData:
    sentence1: list[str]
    sentence2: list[str]
    labels: list[int]

    @property
    def n_items(self) -> int:
        return len(self.labels)


@dataclass
class RerankingData:
    queries: list[str]
    positives: list[list[str]]
    negatives: list[list[str]]

    @property
    def n_items(self) -> int:
        return len(self.queries)


@dataclass
class RetrievalData:
    corpus: dict[str, str]  # doc id -> text (title + " " + text, as MTEB joins them)
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]

    @property
    def n_items(self) -> int:
        return len(self.queries)


def _label(obj: dict[str, Any], path: Path, lineno: int) -> str:
    value = _field(obj, "label", (str, int), path, lineno)
    return str(value)


def load_sts(info: DatasetInfo, split: str = "test") -> STSData:
    path = split_file(info, split)
    s1, s2, scores = [], [], []
    for lineno, obj in iter_jsonl(path):
        s1.append(_field(obj, "sentence1", str, path, lineno))
        s2.append(_field(obj, "sentence2", str, path, lineno))
        scores.append(float(_field(obj, "score", (int, float), path, lineno)))
    lo, hi = info.meta.get("score_range", [0, 5])
    return STSData(s1, s2, scores, float(lo), float(hi))


def load_classification(info: DatasetInfo, split: str = "test") -> ClassificationData:
    train_path, test_path = split_file(info, "train"), split_file(info, split)
    data: dict[str, tuple[list[str], list[str]]] = {}
    for key, path in (("train", train_path), ("test", test_path)):
        texts, labels = [], []
        for lineno, obj in iter_jsonl(path):
            texts.append(_field(obj, "text", str, path, lineno))
            labels.append(_label(obj, path, lineno))
        data[key] = (texts, labels)
    if len(set(data["train"][1])) < 2:
        raise DatasetFormatError(f"{train_path}: a classification train split needs at least two labels")
    return ClassificationData(*data["train"], *data["test"])


def load_clustering(info: DatasetInfo, split: str = "test") -> ClusteringData:
    path = split_file(info, split)
    sets = []
    for lineno, obj in iter_jsonl(path):
        sentences = _str_list(obj, "sentences", path, lineno)
        labels = _field(obj, "labels", list, path, lineno)
        if len(sentences) != len(labels):
            raise DatasetFormatError(
                f"{path}:{lineno}: 'sentences' has {len(sentences)} items but 'labels' has {len(labels)}"
            )
        sets.append((sentences, [str(x) for x in labels]))
    return ClusteringData(sets)


def load_pair_classification(info: DatasetInfo, split: str = "test") -> PairClassificationData:
    path = split_file(info, split)
    s1, s2, labels = [], [], []
    for lineno, obj in iter_jsonl(path):
        s1.append(_field(obj, "sentence1", str, path, lineno))
        s2.append(_field(obj, "sentence2", str, path, lineno))
        label = _field(obj, "label", (int, str), path, lineno)
        if str(label) not in ("0", "1"):
            raise DatasetFormatError(f"{path}:{lineno}: pair-classification label must be 0 or 1, got {label!r}")
        labels.append(int(label))
    return PairClassificationData(s1, s2, labels)


def load_reranking(info: DatasetInfo, split: str = "test") -> RerankingData:
    path = split_file(info, split)
    queries, pos, neg = [], [], []
    for lineno, obj in iter_jsonl(path):
        queries.append(_field(obj, "query", str, path, lineno))
        pos.append(_str_list(obj, "positive", path, lineno))
        neg.append(_str_list(obj, "negative", path, lineno))
    return RerankingData(queries, pos, neg)


def load_retrieval(info: DatasetInfo, split: str = "test") -> RetrievalData:
    corpus_path, queries_path = split_file(info, "corpus"), split_file(info, "queries")
    corpus: dict[str, str] = {}
    for lineno, obj in iter_jsonl(corpus_path):
        doc_id = str(_field(obj, "_id", (str, int), corpus_path, lineno))
        text = _field(obj, "text", str, corpus_path, lineno)
        title = obj.get("title") or ""
        if not isinstance(title, str):
            raise DatasetFormatError(f"{corpus_path}:{lineno}: field 'title' must be a string")
        corpus[doc_id] = (title + " " + text).strip() if title else text
    queries: dict[str, str] = {}
    for lineno, obj in iter_jsonl(queries_path):
        queries[str(_field(obj, "_id", (str, int), queries_path, lineno))] = _field(
            obj, "text", str, queries_path, lineno
        )
    qrels_path = info.path / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        raise FileNotFoundError(f"Dataset {info.name!r} has no qrels/{split}.tsv in {info.path}")
    qrels: dict[str, dict[str, int]] = {}
    with open(qrels_path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.rstrip("\n").split("\t")
            if lineno == 1 and parts[:2] == ["query-id", "corpus-id"]:
                continue
            if len(parts) != 3:
                raise DatasetFormatError(
                    f"{qrels_path}:{lineno}: expected 3 tab-separated fields (query-id corpus-id score)"
                )
            qid, did, score = parts
            try:
                rel = int(float(score))
            except ValueError:
                raise DatasetFormatError(f"{qrels_path}:{lineno}: score {score!r} is not a number") from None
            if qid not in queries:
                raise DatasetFormatError(f"{qrels_path}:{lineno}: query id {qid!r} is not in {queries_path.name}")
            if did not in corpus:
                raise DatasetFormatError(f"{qrels_path}:{lineno}: corpus id {did!r} is not in {corpus_path.name}")
            qrels.setdefault(qid, {})[did] = rel
    return RetrievalData(corpus, queries, qrels)


LOADERS = {
    "STS": load_sts,
    "Classification": load_classification,
    "Clustering": load_clustering,
    "PairClassification": load_pair_classification,
    "Reranking": load_reranking,
    "Retrieval": load_retrieval,
}


# The fields that hold a split's items, in file-line order (a selector such as test[::3] takes the same lines of each).
_ITEM_FIELDS: dict[str, tuple[str, ...]] = {
    "STS": ("sentence1", "sentence2", "scores"),
    "Classification": ("test_texts", "test_labels"),  # the classifier's train split is never sliced
    "Clustering": ("sets",),
    "PairClassification": ("sentence1", "sentence2", "labels"),
    "Reranking": ("queries", "positives", "negatives"),
}


def load(info: DatasetInfo, split: str = "test"):
    """The dataset's ``split`` as a typed object (:class:`STSData`, :class:`ClassificationData`, ...).

    ``split`` may select items: ``load(info, "test[::3]")`` keeps every third line of ``test`` (:func:`parse_split`).
    """
    name, selector = parse_split(split)
    if selector is not None and info.task_type not in _ITEM_FIELDS:
        raise ValueError(
            f"Split {split!r} of {info.name!r}: item selectors work on one-item-per-line files, not on "
            f"{info.task_type} (BEIR corpus/queries/qrels); use a plain split name"
        )
    data = LOADERS[info.task_type](info, name)
    if selector is not None:
        for key in _ITEM_FIELDS[info.task_type]:
            setattr(data, key, getattr(data, key)[selector])
    if data.n_items == 0:
        raise DatasetFormatError(f"Dataset {info.name!r} ({info.path}) has no items in split {split!r}")
    return data


__all__ = [
    "DEFAULT_SPLITS",
    "LOADERS",
    "QUICK_PREFERRED",
    "SUITES",
    "TASK_TYPES",
    "ClassificationData",
    "ClusteringData",
    "DatasetFormatError",
    "DatasetInfo",
    "PairClassificationData",
    "RerankingData",
    "RetrievalData",
    "STSData",
    "UnknownDatasetError",
    "discover",
    "load",
    "parse_split",
    "select",
    "split_file",
]
