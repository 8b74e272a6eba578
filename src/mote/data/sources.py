"""Where training rows come from: dataset folders under the data root, local files, or Hugging Face dataset ids.

A *source* names one split of one dataset. Three kinds:

* ``folder``: a dataset folder under the data root (``$MOTE_DATA``), e.g. ``train-SQuADDev`` or the ``train``
  split of ``Banking77Classification``; the split is the file ``<split>.jsonl.gz`` / ``.jsonl`` / ``.parquet``.
* ``path``: one local JSONL(.gz), CSV or Parquet file.
* ``hf``: a Hugging Face dataset id (``datasets.load_dataset(hf, subset, split=split)``), for users online.

A source whose columns carry other names maps them (``columns``: mote's column -> the file's, e.g.
``{query: question, positive: answer}``); the rows then read as if they had mote's names.

An evaluation **test** split is never training data: :func:`check_split` refuses any split (or file) whose name
starts with ``test`` (``test``, ``test-mteb51534``, ...), whatever the source.

Example:
    >>> is_test_split("test-mteb51534"), is_test_split("train")
    (True, False)
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mote.files import iter_jsonl

SPLIT_SUFFIXES = (".jsonl.gz", ".jsonl", ".csv", ".parquet")


class TestSplitError(ValueError):
    """A test split was named as training data."""

    __test__ = False  # not a pytest test class


class DataSourceError(ValueError):
    """A source that cannot be read (missing file, bad JSON, unreachable hub id)."""


@dataclass(frozen=True)
class Source:
    """One split of one dataset. Exactly one of ``folder``, ``path``, ``hf`` is set.

    Args:
        name: the dataset's name in logs, labels and configs (unique within a task).
        folder: dataset folder name under the data root.
        path: a local ``.jsonl`` / ``.jsonl.gz`` / ``.parquet`` file.
        hf: a Hugging Face dataset id; ``subset`` its configuration name.
        split: which split (default ``train``).
        columns: ``((mote's column, the file's column), ...)`` for files whose columns carry other names.
    """

    name: str
    folder: str | None = None
    path: str | None = None
    hf: str | None = None
    subset: str | None = None
    split: str = "train"
    columns: tuple[tuple[str, str], ...] = ()

    def describe(self) -> str:
        where = self.folder or self.path or f"hf:{self.hf}" + (f"/{self.subset}" if self.subset else "")
        return f"{self.name} ({where}, split {self.split!r})"


def is_test_split(split: str) -> bool:
    """Whether ``split`` (or a file name) is an evaluation test split: its name starts with ``test``."""
    stem = Path(str(split)).name.lower()
    return stem.startswith("test")


def check_split(source: Source) -> None:
    """Refuse test splits, by split name and (for local files) by file name."""
    if is_test_split(source.split):
        raise TestSplitError(
            f"{source.describe()}: refusing to train on a test split. Evaluation test splits are for scoring only; "
            "use the 'train' (or 'validation') split."
        )
    if source.path and is_test_split(Path(source.path).name):
        raise TestSplitError(f"{source.describe()}: {source.path!r} is a test file; refusing to train on it.")


def split_files(folder: Path) -> dict[str, Path]:
    """``{split: file}`` of a dataset folder (``train.jsonl.gz`` -> ``train``)."""
    out: dict[str, Path] = {}
    if folder.is_dir():
        for f in sorted(folder.iterdir()):
            for suffix in SPLIT_SUFFIXES:
                if f.is_file() and f.name.endswith(suffix):
                    out.setdefault(f.name[: -len(suffix)], f)
    return out


def resolve_file(source: Source, data_root: str | os.PathLike | None) -> Path | None:
    """The local file of a folder/path source (``None`` for hub sources); a clear error if it does not exist."""
    check_split(source)
    if source.path:
        path = Path(source.path).expanduser()
        if not path.is_absolute() and data_root is not None and not path.exists():
            path = Path(data_root) / path
        if not path.is_file():
            raise DataSourceError(f"{source.describe()}: file {str(path)!r} does not exist")
        if not path.name.endswith(SPLIT_SUFFIXES):
            raise DataSourceError(f"{source.describe()}: unsupported file type; use {', '.join(SPLIT_SUFFIXES)}")
        return path
    if source.folder:
        if data_root is None:
            raise DataSourceError(f"{source.describe()}: no data folder set (set $MOTE_DATA or data.data_dir)")
        folder = Path(data_root) / source.folder
        if not folder.is_dir():
            raise DataSourceError(f"{source.describe()}: no dataset folder {str(folder)!r}")
        files = split_files(folder)
        if source.split not in files:
            usable = sorted(s for s in files if not is_test_split(s))
            raise DataSourceError(
                f"{source.describe()}: {folder} has no {source.split!r} split; "
                f"trainable splits there: {usable or 'none'}"
            )
        return files[source.split]
    return None


def iter_records(path: Path) -> Iterator[dict[str, Any]]:
    """Rows of a JSONL(.gz), CSV (a header row, then one row per line) or Parquet file as dicts; read errors name
    the file (and line)."""
    if path.name.endswith(".parquet"):
        import pyarrow.parquet as pq

        yield from pq.read_table(path).to_pylist()
        return
    if path.name.endswith(".csv"):
        try:
            with open(path, encoding="utf-8", newline="") as f:
                yield from csv.DictReader(f)
        except (UnicodeDecodeError, csv.Error) as e:
            raise DataSourceError(f"{path}: not a readable UTF-8 CSV file ({e}); save it as UTF-8 CSV with a "
                                  "header row") from None
        return
    for _, obj in iter_jsonl(path, DataSourceError):
        yield obj


def rename_columns(row: dict[str, Any], columns: tuple[tuple[str, str], ...] | Mapping[str, str]) -> dict[str, Any]:
    """``row`` with each file column of ``columns`` (mote's name -> the file's) under mote's name.

    >>> rename_columns({"question": "q?", "answer": "a."}, {"query": "question", "positive": "answer"})
    {'query': 'q?', 'positive': 'a.'}
    """
    pairs = columns.items() if isinstance(columns, Mapping) else columns
    if not pairs:
        return row
    out = dict(row)
    for ours, theirs in pairs:
        if theirs in out:
            out[ours] = out.pop(theirs)
    return out


def peek(path: Path, columns: tuple[tuple[str, str], ...] = ()) -> dict[str, Any] | None:
    """The first row of a file, its columns mapped (``None`` if the file has no row)."""
    row = next(iter_records(path), None)
    return None if row is None else rename_columns(row, columns)


def load_records(source: Source, data_root: str | os.PathLike | None, limit: int | None = None) -> list[dict]:
    """All rows of a source (at most ``limit``), test splits refused.

    Example:
        >>> rows = load_records(Source("squad", folder="train-SQuADDev"), "/data", limit=10)  # doctest: +SKIP
    """
    path = resolve_file(source, data_root)
    if path is None:
        return [rename_columns(row, source.columns) for row in _load_hf(source, limit)]
    rows = []
    for row in iter_records(path):
        rows.append(rename_columns(row, source.columns))
        if limit is not None and len(rows) >= limit:
            break
    return rows


def _load_hf(source: Source, limit: int | None) -> list[dict]:
    try:
        import datasets
    except ImportError as e:  # pragma: no cover - datasets is a dependency of sentence-transformers[train]
        raise DataSourceError(f"{source.describe()}: loading hub datasets needs the `datasets` package") from e
    split = source.split if limit is None else f"{source.split}[:{int(limit)}]"
    try:
        ds = datasets.load_dataset(source.hf, source.subset, split=split)
    except Exception as e:  # hub unreachable, unknown id, unknown split ...
        raise DataSourceError(
            f"{source.describe()}: could not load Hugging Face dataset {source.hf!r}: {type(e).__name__}: {e}. "
            "Offline? Download it once, or point the source at a local JSONL/Parquet file (path: ...)."
        ) from None
    return [dict(row) for row in ds]

__all__ = [
    "SPLIT_SUFFIXES",
    "DataSourceError",
    "Source",
    "TestSplitError",
    "check_split",
    "is_test_split",
    "iter_records",
    "load_records",
    "peek",
    "rename_columns",
    "resolve_file",
    "split_files",
]
