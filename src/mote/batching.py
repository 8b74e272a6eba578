"""Batches by token length: texts of nearly the same token count share a batch, so a batch pads little.

One home for length batching, used by every encode path that chooses its own batches:

* :func:`length_batches` cuts a length-sorted order where that minimises padded tokens plus a per-forward
  overhead (exact dynamic programme). :func:`mote.api.encode_mixed` (a MoTE model's ``encode`` with several
  tasks) cuts each task's share of a call with it.
* :func:`encode_length_batched` encodes through a model's own ``encode``, one call per batch of the token order cut
  every ``batch_size`` texts. The evaluation harness and per-task selection go through it
  (:class:`mote.eval.encoders.DenseEncoder` / :class:`~mote.eval.encoders.MoTEEncoder`), and
  :func:`mote.eval.cache.embed_texts` cuts its cache chunks in :func:`longest_first` order of :func:`token_lengths`.

Why: ``SentenceTransformer.encode`` orders a call's texts by *character* count before cutting its batches, and a
batch is padded to its longest member in *tokens*. Character and token counts disagree enough that batches of 32
carry about a third more tokens than they hold (STS14: 1.36x padded / real tokens; TwitterURLCorpus: 1.35x), and
the extra tokens cost matrix products like real ones. Ordered by token count the same batches carry 1.01-1.05x.
The embeddings are the same up to float rounding (each row is computed alone; only its batch mates and padding
change). ``benchmarks/eval_batching.py`` measures the gain.

This is a lower layer: it imports numpy (and tqdm for a progress bar) only.

Example:
    >>> length_batches([3, 50, 4, 48, 5], batch_size=4, overhead=4)
    [[1, 3], [4, 2, 0]]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def token_lengths(model: Any, texts: Sequence[str]) -> np.ndarray | None:
    """Token count of each text (special tokens included, capped at the model's ``max_seq_length``), from the
    model's Hugging Face tokenizer; ``None`` when the model has none (e.g. a static-embedding model), whose callers
    order by character count instead (an ordering only: the embeddings do not depend on it).

    >>> token_lengths(object(), ["a"]) is None
    True
    """
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None or not callable(tokenizer) or not hasattr(tokenizer, "model_input_names"):
        return None
    cap = getattr(model, "max_seq_length", None)
    ids = tokenizer(list(texts), add_special_tokens=True, truncation=cap is not None, max_length=cap,
                    return_attention_mask=False, return_token_type_ids=False)["input_ids"]
    return np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))


def longest_first(lengths: Sequence[int] | np.ndarray) -> np.ndarray:
    """Indices by decreasing length; ties keep their input order.

    >>> longest_first([3, 50, 4, 50]).tolist()
    [1, 3, 2, 0]
    """
    return np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")


# Work of one forward call besides its tokens, in tokens (MiniLM on a CPU: a 1 x 8-token forward costs about what
# 40 tokens of a large batch cost). Batches are cut to minimise padded tokens + this per batch.
BATCH_OVERHEAD_TOKENS = 32


def length_batches(lengths: Sequence[int] | np.ndarray, batch_size: int,
                   overhead: int = BATCH_OVERHEAD_TOKENS) -> list[list[int]]:
    """Indices grouped into batches of at most ``batch_size``, longest first (:func:`longest_first`), cut where that
    minimises the padded tokens (each batch is padded to its longest member) plus ``overhead`` tokens per batch
    (exact, by dynamic programming over the length-sorted order; O(n x batch_size)).

    Example:
        >>> length_batches([3, 50, 4, 48, 5], batch_size=4, overhead=4)
        [[1, 3], [4, 2, 0]]
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    order = longest_first(lengths).tolist()
    sorted_len = [int(lengths[i]) for i in order]
    n = len(order)
    best, cut = [0] * (n + 1), [0] * (n + 1)
    for j in range(1, n + 1):
        best[j] = -1
        for i in range(max(0, j - batch_size), j):
            cost = best[i] + (j - i) * sorted_len[i] + overhead  # sorted_len[i]: the longest of order[i:j]
            if best[j] < 0 or cost < best[j]:
                best[j], cut[j] = cost, i
    batches, j = [], n
    while j > 0:
        batches.append(order[cut[j]:j])
        j = cut[j]
    return batches[::-1]


def encode_length_batched(model: Any, texts: Sequence[str], batch_size: int = 32,
                          lengths: Sequence[int] | np.ndarray | None = None, show_progress: bool = False,
                          **encode_kwargs: Any) -> np.ndarray:
    """``model.encode(texts, **encode_kwargs)`` as float32 ``[N, d]`` in input order, the :func:`longest_first`
    order cut every ``batch_size`` texts (each batch a run of nearly the same token count), one ``model.encode``
    call per batch, so prompts, tasks, pooling and normalisation behave exactly as in a plain call. ``lengths``
    defaults to :func:`token_lengths` (character counts for a model without a Hugging Face tokenizer).

    Fixed cuts, not :func:`length_batches`: a ``model.encode`` call costs more than the bare forward that
    ``length_batches``' overhead models, and the fixed cuts are what ``benchmarks/eval_batching.py`` measured
    (padded/real tokens 1.02-1.05 on default-suite texts).
    """
    texts = list(texts)
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    if lengths is None:
        lengths = token_lengths(model, texts)
        if lengths is None:
            lengths = [len(t) for t in texts]
    if len(lengths) != len(texts):
        raise ValueError(f"got {len(lengths)} lengths for {len(texts)} texts")
    from tqdm.auto import tqdm

    order = longest_first(lengths)
    out: np.ndarray | None = None
    for start in tqdm(range(0, len(texts), batch_size), desc="Batches", disable=not show_progress):
        rows = order[start:start + batch_size]
        emb = model.encode([texts[i] for i in rows], batch_size=len(rows), show_progress_bar=False,
                           convert_to_numpy=True, **encode_kwargs)
        emb = np.asarray(emb.detach().float().cpu().numpy() if hasattr(emb, "detach") else emb, dtype=np.float32)
        if out is None:
            out = np.empty((len(texts), emb.shape[1]), dtype=np.float32)
        out[rows] = emb
    if out is None:
        raise ValueError("no texts to encode")
    return out


__all__ = ["BATCH_OVERHEAD_TOKENS", "encode_length_batched", "length_batches", "longest_first", "token_lengths"]
