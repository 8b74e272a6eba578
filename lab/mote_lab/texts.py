"""Sample texts from evaluation datasets (for similarity heatmaps and throughput): deterministic, no model needed.

Reads the test file of each dataset (queries and corpus for retrieval) and collects its strings: ``text``,
``sentence1``/``sentence2``, ``query``, ``positive``/``negative`` and ``sentences`` (lists included). The same
arguments always give the same texts, in the same order.

Example:
    >>> sample_texts(data_dir(), ["STSBenchmark", "WikiQARetrieval"], per_dataset=50)[:1]   # doctest: +SKIP
    ['A man is playing a flute.']
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from mote.files import open_text

_FIELDS = ("text", "sentence1", "sentence2", "query", "positive", "negative", "sentences")
_SCAN = 5000  # rows read per file at most


def _strings(value) -> Iterator[str]:
    if isinstance(value, str):
        if value.strip():
            yield value
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _files(folder: Path) -> list[Path]:
    out = []
    for stem in ("test", "queries", "corpus"):
        for suffix in (".jsonl.gz", ".jsonl"):
            if (folder / f"{stem}{suffix}").is_file():
                out.append(folder / f"{stem}{suffix}")
                break
    return out


def dataset_texts(folder: str | os.PathLike, limit: int = _SCAN) -> list[str]:
    """Unique strings of a dataset folder's test (or queries + corpus) file(s), in file order."""
    seen: dict[str, None] = {}
    for path in _files(Path(folder)):
        with open_text(path) as f:
            for k, line in enumerate(f):
                if k >= limit:
                    break
                if not line.strip():
                    continue
                row = json.loads(line)
                for key in _FIELDS:
                    for s in _strings(row.get(key) if isinstance(row, dict) else None):
                        seen.setdefault(s, None)
    return list(seen)


def sample_texts(root: str | os.PathLike, datasets: Sequence[str], per_dataset: int, seed: int = 0) -> list[str]:
    """``per_dataset`` texts from each dataset (seeded sample, fewer if it has fewer), concatenated, unique."""
    out: dict[str, None] = {}
    for name in datasets:
        texts = dataset_texts(Path(root) / name)
        if not texts:
            raise ValueError(f"Dataset {name!r} in {root} has no texts to sample")
        rng = np.random.default_rng(seed)
        idx = rng.permutation(len(texts))[:per_dataset]
        for i in sorted(idx):
            out.setdefault(texts[i], None)
    return list(out)


__all__ = ["dataset_texts", "sample_texts"]
