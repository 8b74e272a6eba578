"""The exactness check: ONNX against the torch model on real texts and on random token ids, in ragged batches.

Every export is checked before it is kept: onnxruntime against the torch model on real sentences of many lengths
(1 token to ``max_seq_length``, truncated ones) and batch shapes (1, 3, 17, 64); below min cosine 0.9999 the export
is refused and removed (:class:`OnnxVerificationError`).

Example:
    >>> cosines(onnx_emb, torch_emb).min() >= 0.9999   # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np


class OnnxVerificationError(ValueError):
    """The ONNX model does not reproduce the torch model's embeddings (min cosine below the threshold)."""


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    denom = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.maximum(denom, 1e-30)


def verify_texts(encoder, texts: list[str], reference: np.ndarray, batch_sizes) -> np.ndarray:
    """Cosines ONNX vs ``reference`` for every text, in shuffled (mixed-length, padded) batches of each size.

    Short texts come first and the long ones last, each group shuffled, so that every batch is ragged but only
    one batch per size mixes short and long texts (padding everything to ``max_seq_length`` costs a lot).
    """
    prefix = encoder.prompt
    prompted = [prefix + t for t in texts]
    lengths = encoder.tokenize(prompted)["attention_mask"].sum(axis=1)
    rng = np.random.default_rng(1)
    cos = []
    for size in batch_sizes:
        short = np.flatnonzero(lengths <= encoder.max_seq_length // 2)
        long = np.flatnonzero(lengths > encoder.max_seq_length // 2)
        order = np.concatenate([rng.permutation(short), rng.permutation(long)])
        out = np.empty_like(reference)
        for start in range(0, len(texts), size):
            idx = order[start : start + size]
            out[idx] = encoder.embed_batch([prompted[i] for i in idx])
        cos.append(cosines(out, reference))
    cos.append(cosines(encoder.encode(texts, batch_size=32), reference))  # the sorted encode() path too
    return np.concatenate(cos)


def verify_ids(module, session, vocab_size: int, max_len: int, input_names: list[str]) -> np.ndarray:
    """Cosines ONNX vs torch on random token-id batches from 1 token to ``max_len``, with ragged padding."""
    import torch

    rng = np.random.default_rng(2)
    cos = []
    for batch, seq in ((1, 1), (3, 2), (17, 37), (64, 29), (2, max_len), (1, max_len - 1)):
        seq = max(1, min(seq, max_len))
        ids = rng.integers(999, max(1000, vocab_size), size=(batch, seq), dtype=np.int64)
        lengths = rng.integers(1, seq + 1, size=batch)
        lengths[0] = seq
        mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int64)
        ids = ids * mask
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        feeds = {k: v for k, v in feeds.items() if k in input_names}
        with torch.no_grad():
            ref = module(*(torch.from_numpy(feeds[n]) for n in input_names))[0].numpy()
        (out,) = session.run(["sentence_embedding"], feeds)
        cos.append(cosines(out, ref))
    return np.concatenate(cos)


def spearman(a: np.ndarray, b: np.ndarray, gold: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(cosines(a, b), gold).statistic)
