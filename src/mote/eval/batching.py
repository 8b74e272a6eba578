"""Length-ordered encoding: batches of texts with nearly the same token count, so a batch pads little.

``SentenceTransformer.encode`` orders a call's texts by *character* count before cutting its batches, and a batch
is padded to its longest member in *tokens*. Character and token counts disagree enough that batches of 32 carry
about a third more tokens than they hold (STS14: 1.36x padded / real tokens; TwitterURLCorpus: 1.35x), and the
extra tokens cost matrix products like real ones. Ordered by token count the same batches carry 1.01x. The
embeddings are the same up to float rounding (each row is computed alone; only its batch mates and padding change).

The evaluation harness and per-task selection encode through :func:`encode_length_batched` (via
:class:`mote.eval.encoders.DenseEncoder` / :class:`~mote.eval.encoders.MoTEEncoder`), and
:func:`mote.eval.cache.embed_texts` cuts its cache chunks in the same order. ``benchmarks/eval_batching.py``
measures the gain.

Example:
    >>> from sentence_transformers import SentenceTransformer                       # doctest: +SKIP
    >>> st = SentenceTransformer(mote.resolve_model_path("all-MiniLM-L6-v2"))        # doctest: +SKIP
    >>> encode_length_batched(st, ["a", "a longer sentence"], batch_size=32).shape  # doctest: +SKIP
    (2, 384)
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


def encode_length_batched(model: Any, texts: Sequence[str], batch_size: int = 32,
                          lengths: Sequence[int] | np.ndarray | None = None, show_progress: bool = False,
                          **encode_kwargs: Any) -> np.ndarray:
    """``model.encode(texts, **encode_kwargs)`` as float32 ``[N, d]`` in input order, each batch a run of texts of
    nearly the same token count (one ``model.encode`` call per batch, so prompts, tasks, pooling and normalisation
    behave exactly as in a plain call). ``lengths`` defaults to :func:`token_lengths` (character counts for a model
    without a Hugging Face tokenizer).
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


__all__ = ["encode_length_batched", "longest_first", "token_lengths"]
