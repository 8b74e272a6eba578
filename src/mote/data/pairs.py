"""Training pairs: every source row becomes ``(anchor, positive, hard negative or None, label, negative label)``.

Two pair builders, chosen by the task kind:

* **pair data** (retrieval, symmetric): rows ``{query, positive, negative?}`` (or ``{sentence1, sentence2,
  label?}``, positives only) are used as they are.
* **labelled data** (classification, clustering): rows ``{text, label}`` (or clustering sets
  ``{sentences: [...], labels: [...]}``, flattened) become ``(text, another text of the same label, a text of
  another label)``, one pair per text whose label has at least two distinct texts.

**Labels** are integers shared by the whole run (a :class:`LabelSpace`) and say which in-batch candidates must
*not* count as negatives of an anchor: a candidate with the anchor's label is masked out of the softmax (except
the anchor's own positive). For labelled data the label is ``(dataset, class)``. For pair data it is the connected
component of the row in the graph "texts of one row are linked": rows that share a query or a positive (SQuAD's
several questions about one paragraph, TrecQA's several answers to one question) get one label, so a duplicate
positive is never pushed away from its own query. A hard negative gets the label of its text's component when its
text occurs as a query/positive, else a label of its own.

Example:
    >>> space = LabelSpace()
    >>> rows = [{"text": "a", "label": "x"}, {"text": "b", "label": "x"}, {"text": "c", "label": "y"},
    ...         {"text": "d", "label": "y"}]
    >>> pairs = labelled_pairs(rows, "toy", space, seed=0)
    >>> len(pairs), pairs[0].label == pairs[1].label, pairs[0].negative_label == pairs[2].label
    (4, True, True)
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

NO_LABEL = -1

# Row layouts a source may have (see shared/data/MANIFEST.md), and the pair builder each one feeds.
SCHEMAS: dict[str, tuple[str, ...]] = {
    "pairs": ("query", "positive"),
    "sentence-pairs": ("sentence1", "sentence2"),
    "labelled": ("text", "label"),
    "sets": ("sentences", "labels"),
}
PAIR_SCHEMAS = ("pairs", "sentence-pairs")
LABELLED_SCHEMAS = ("labelled", "sets")


@dataclass(frozen=True)
class Pair:
    """One training example. ``negative`` is ``None`` when the row has no hard negative."""

    anchor: str
    positive: str
    negative: str | None
    label: int
    negative_label: int = NO_LABEL


class LabelSpace:
    """Integer ids for label keys, shared by every dataset of a run (so labels never collide across datasets)."""

    def __init__(self) -> None:
        self._ids: dict[Hashable, int] = {}

    def id(self, key: Hashable) -> int:
        if key not in self._ids:
            self._ids[key] = len(self._ids)
        return self._ids[key]

    def fresh(self) -> int:
        """A label no other row has."""
        return self.id(("__fresh__", len(self._ids)))

    def __len__(self) -> int:
        return len(self._ids)


def detect_schema(row: dict[str, Any] | None) -> str | None:
    """The schema name of a row (``pairs``, ``sentence-pairs``, ``labelled``, ``sets``), or ``None``."""
    if not row:
        return None
    for name, keys in SCHEMAS.items():
        if all(k in row for k in keys):
            return name
    return None


def stable_seed(*parts: Any) -> int:
    """A seed that depends only on ``parts`` (not on Python's per-process hash salt)."""
    return zlib.crc32("\x1f".join(map(str, parts)).encode())


def _clean(text: Any) -> str | None:
    if not isinstance(text, str):
        return None
    text = " ".join(text.split())
    return text or None


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list | tuple) and value else value


class _Components:
    """Union-find over texts."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:  # path compression
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)  # deterministic root


def _positive_label(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "entailment", "paraphrase", "duplicate")
    try:
        return float(value) >= 0.5
    except (TypeError, ValueError):
        return False


def pair_rows(rows: Iterable[dict[str, Any]]) -> list[tuple[str, str, str | None]]:
    """``(anchor, positive, negative)`` triples from pair-schema rows; empty texts and negative pairs dropped."""
    out = []
    for row in rows:
        if "query" in row:
            a, p = _clean(row.get("query")), _clean(_first(row.get("positive")))
            n = _clean(_first(row.get("negative")))
        else:
            if not _positive_label(row.get("label")):
                continue
            a, p, n = _clean(row.get("sentence1")), _clean(row.get("sentence2")), None
        if a and p:
            out.append((a, p, n if n and n != p else None))
    return out


def retrieval_pairs(rows: Iterable[dict[str, Any]], dataset: str, labels: LabelSpace) -> list[Pair]:
    """Pairs from ``{query, positive, negative?}`` rows, labelled by connected component (see module doc)."""
    triples = pair_rows(rows)
    comps = _Components()
    for a, p, _ in triples:
        comps.union(a, p)
    out = []
    for a, p, n in triples:
        label = labels.id((dataset, "component", comps.find(a)))
        if n is None:
            neg_label = NO_LABEL
        elif n in comps.parent:
            neg_label = labels.id((dataset, "component", comps.find(n)))
        else:
            neg_label = labels.fresh()
        out.append(Pair(a, p, n, label, neg_label))
    return out


def labelled_rows(rows: Iterable[dict[str, Any]]) -> list[tuple[str, str]]:
    """``(text, label)`` from ``{text, label}`` rows or flattened ``{sentences, labels}`` sets, de-duplicated."""
    seen: set[tuple[str, str]] = set()
    out = []
    for row in rows:
        if "sentences" in row:
            items = zip(row.get("sentences") or [], row.get("labels") or [])
        else:
            items = [(row.get("text"), row.get("label"))]
        for text, label in items:
            text = _clean(text)
            if text is None or label is None:
                continue
            key = (text, str(label))
            if key not in seen:
                seen.add(key)
                out.append(key)
    return out


def labelled_pairs(
    rows: Iterable[dict[str, Any]],
    dataset: str,
    labels: LabelSpace,
    seed: int = 0,
    hard_negatives: bool = True,
) -> list[Pair]:
    """``(text, same-label text, other-label text)`` for every text whose label has another distinct text.

    The positive and negative are drawn with a generator seeded by ``(seed, dataset)``: the same config always
    gives the same pairs.
    """
    items = labelled_rows(rows)
    by_label: dict[str, list[str]] = defaultdict(list)
    for text, label in items:
        by_label[label].append(text)
    names = sorted(by_label)
    ids = {name: labels.id((dataset, "class", name)) for name in names}
    rng = np.random.default_rng(stable_seed(seed, dataset, "labelled"))
    out = []
    for text, label in items:
        members = by_label[label]
        if len(members) < 2:
            continue
        j = int(rng.integers(len(members) - 1))
        positive = members[j] if members[j] != text else members[-1]
        if positive == text:  # the label's texts are all this one text
            continue
        negative, neg_label = None, NO_LABEL
        if hard_negatives and len(names) > 1:
            k = int(rng.integers(len(names) - 1))
            other = names[k] if names[k] != label else names[-1]
            negative = by_label[other][int(rng.integers(len(by_label[other])))]
            neg_label = ids[other]
        out.append(Pair(text, positive, negative, ids[label], neg_label))
    return out


def build_pairs(
    rows: Sequence[dict[str, Any]],
    kind: str,
    dataset: str,
    labels: LabelSpace,
    seed: int = 0,
    hard_negatives: bool = True,
    split_by: str | None = None,
) -> list[Pair]:
    """Pairs for a task kind (``pairs`` or ``labelled``); ``split_by`` builds them per value of a row field.

    ``split_by="source"`` on SentEval-style data keeps positives and hard negatives within one source.
    """
    if split_by:
        parts: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            parts[str(row.get(split_by))].append(row)
        out: list[Pair] = []
        for part in sorted(parts):
            out.extend(build_pairs(parts[part], kind, f"{dataset}[{part}]", labels, seed, hard_negatives))
        return out
    if kind == "pairs":
        pairs = retrieval_pairs(rows, dataset, labels)
        if not hard_negatives:
            pairs = [Pair(p.anchor, p.positive, None, p.label) for p in pairs]
        return pairs
    if kind == "labelled":
        return labelled_pairs(rows, dataset, labels, seed, hard_negatives)
    raise ValueError(f"Unknown pair kind {kind!r}: use 'pairs' or 'labelled'")
