"""Embedding cache: sqlite3 (WAL mode), keyed by (encoder identity, task key, sha256 of the text).

Every batch of new embeddings is written in one transaction, so an interrupted run (Ctrl-C, crash, kill) leaves
only complete entries: the rows of the batch in flight are rolled back, never half-written. Reads validate the
stored vector size, so a damaged entry is re-encoded instead of being trusted. Several processes may share one
cache file (sqlite serialises writers; readers never block).

Location: ``$MOTE_CACHE`` (a folder) or ``.cache/mote`` under the current folder; the file is
``embeddings.sqlite`` inside it.

Example:
    >>> cache = EmbeddingCache("/tmp/mote-doc-cache")
    >>> embed_texts(enc, ["a", "b", "a"], "query", cache=cache).shape   # doctest: +SKIP
    (3, 384)
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mote.batching import longest_first

CACHE_ENV = "MOTE_CACHE"
DEFAULT_CACHE_DIR = ".cache/mote"
CACHE_FILE = "embeddings.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS embeddings (
    model TEXT NOT NULL,
    task TEXT NOT NULL,
    key BLOB NOT NULL,
    dim INTEGER NOT NULL,
    vec BLOB NOT NULL,
    PRIMARY KEY (model, task, key)
)
"""  # a rowid table: rows of ~1.6 KB (384 floats) would overflow the pages of a WITHOUT ROWID table


def text_key(text: str) -> bytes:
    """The cache key of a text: the first 16 bytes of its sha256 (collisions: ~2^-64 per pair)."""
    return hashlib.sha256(text.encode("utf-8")).digest()[:16]


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR)


class EmbeddingCache:
    """A persistent ``(model identity, task key, text) -> float32 vector`` store.

    Args:
        folder: where ``embeddings.sqlite`` lives (default: ``$MOTE_CACHE`` or ``.cache/mote``).
    """

    def __init__(self, folder: str | os.PathLike | None = None) -> None:
        self.folder = Path(folder) if folder is not None else default_cache_dir()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / CACHE_FILE
        self._conn: sqlite3.Connection | None = None

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)  # autocommit; explicit BEGIN
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=60000")
            conn.execute(_SCHEMA)
            self._conn = conn
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def get(self, model: str, task: str, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """The cached vectors of ``keys`` (missing or damaged entries are simply absent)."""
        found: dict[bytes, np.ndarray] = {}
        keys = list(dict.fromkeys(keys))
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.conn.execute(
                f"SELECT key, dim, vec FROM embeddings WHERE model=? AND task=? AND key IN ({marks})",
                [model, task, *chunk],
            ).fetchall()
            for key, dim, vec in rows:
                if dim > 0 and len(vec) == 4 * dim:
                    found[bytes(key)] = np.frombuffer(vec, dtype=np.float32)
        return found

    def put(self, model: str, task: str, items: Iterable[tuple[bytes, np.ndarray]]) -> None:
        """Store vectors in one transaction: all of them or (on any interruption) none."""
        rows = []
        for key, vec in items:
            v = np.ascontiguousarray(vec, dtype=np.float32).reshape(-1)
            rows.append((model, task, key, int(v.shape[0]), v.tobytes()))
        if not rows:
            return
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("INSERT OR REPLACE INTO embeddings (model, task, key, dim, vec) VALUES (?,?,?,?,?)", rows)
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise

    def count(self, model: str | None = None) -> int:
        if model is None:
            return int(self.conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0])
        return int(self.conn.execute("SELECT COUNT(*) FROM embeddings WHERE model=?", (model,)).fetchone()[0])


def task_key(encoder: Any, task: str) -> str:
    """The cache key of ``task`` for ``encoder``: its ``task_key(task)`` hook, else the task name."""
    hook = getattr(encoder, "task_key", None)
    return str(hook(task)) if callable(hook) else f"task={task}"


def cache_keys(encoder: Any, task: str) -> tuple[str, str]:
    """``(model, task)`` cache keys of ``task``: the encoder's ``cache_identity(task)`` (a digest of the function
    that encodes the task, shared by every model computing it) if it gives one, else its identity and task key."""
    hook = getattr(encoder, "cache_identity", None)
    ident = hook(task) if callable(hook) else None
    if ident is not None:
        return str(ident), "function"
    return str(encoder.identity), task_key(encoder, task)


def embed_texts(
    encoder: Any,
    texts: Sequence[str],
    task: str,
    *,
    cache: EmbeddingCache | None = None,
    batch_size: int = 32,
    chunk_size: int = 256,
    show_progress: bool = False,
    desc: str = "encode",
) -> np.ndarray:
    """Embeddings of ``texts`` under ``task`` (float32 ``[N, d]``): each distinct text is encoded at most once.

    Cached vectors are reused; new ones are encoded longest-first in chunks of ``chunk_size`` and each chunk is
    committed to the cache as soon as it is done (so an interrupted run keeps the finished chunks). Length is the
    encoder's ``token_lengths(texts)`` hook where it has one (:mod:`mote.batching`: chunks of texts with
    nearly the same token count pad least), else character count.
    """
    from tqdm.auto import tqdm

    texts = list(texts)
    unique = list(dict.fromkeys(texts))
    keys = [text_key(t) for t in unique]
    model_id, tkey = cache_keys(encoder, task)
    vectors: dict[bytes, np.ndarray] = cache.get(model_id, tkey, keys) if cache is not None else {}
    todo = [i for i, k in enumerate(keys) if k not in vectors]
    hook = getattr(encoder, "token_lengths", None)
    lengths = hook([unique[i] for i in todo]) if callable(hook) and todo else None
    if lengths is None:
        lengths = [len(unique[i]) for i in todo]
    todo = [todo[j] for j in longest_first(lengths)]
    if todo:
        bar = tqdm(total=len(todo), desc=desc, unit="text", disable=not show_progress, leave=False)
        try:
            for start in range(0, len(todo), chunk_size):
                idx = todo[start : start + chunk_size]
                emb = encoder.encode([unique[i] for i in idx], task, batch_size=batch_size, show_progress=False)
                emb = np.asarray(emb, dtype=np.float32)
                if emb.ndim != 2 or emb.shape[0] != len(idx):
                    raise ValueError(
                        f"{type(encoder).__name__}.encode returned shape {emb.shape} for {len(idx)} texts"
                    )
                new = [(keys[i], emb[j]) for j, i in enumerate(idx)]
                if cache is not None:
                    cache.put(model_id, tkey, new)
                vectors.update(new)
                bar.update(len(idx))
        finally:
            bar.close()
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    dims = {v.shape[0] for v in vectors.values()}
    if len(dims) != 1:
        raise ValueError(f"Embeddings of different sizes {sorted(dims)} for one encoder and task; clear the cache")
    table = np.stack([vectors[k] for k in keys])
    position = {t: i for i, t in enumerate(unique)}
    return table[[position[t] for t in texts]]


__all__ = ["CACHE_ENV", "EmbeddingCache", "cache_keys", "default_cache_dir", "embed_texts", "task_key", "text_key"]
