"""Matryoshka embeddings at inference: keep the first ``dim`` dimensions and renormalise (numpy only, torch-free).

A model trained with nested dimensions (``loss: {matryoshka_dims: [384, 256, 128, 64]}``, see
:mod:`mote.train.losses`) records them in its ``mote_config.json``; any prefix of its embedding is then an
embedding in its own right. ``mote eval --dims 128``, ``SentenceTransformer(folder, truncate_dim=128)`` and the ONNX
encoders' ``truncate_dim`` all cut the same way: the first ``dim`` coordinates, rescaled to unit length (cosine
scores are unchanged by the rescale; dot-product scores need it).

Example:
    >>> import numpy as np
    >>> truncate(np.array([[3.0, 4.0, 12.0]]), 2).round(2).tolist()
    [[0.6, 0.8]]
"""

from __future__ import annotations

import numpy as np


def check_dim(dim: int | None, dimension: int) -> int | None:
    """``dim`` if it is a valid truncation of a ``dimension``-wide embedding (``None``: keep all), else ValueError.

    Example:
        >>> check_dim(128, 384), check_dim(384, 384)
        (128, None)
    """
    if dim is None or dim == dimension:
        return None
    if isinstance(dim, bool) or not isinstance(dim, int | np.integer) or not 1 <= dim < dimension:
        raise ValueError(
            f"Cannot truncate to {dim!r} dimensions: the model's embeddings have {dimension}; choose 1..{dimension}"
        )
    return int(dim)


def truncate(emb: np.ndarray, dim: int | None) -> np.ndarray:
    """The first ``dim`` dimensions of every row, rescaled to unit length (float32); ``emb`` when ``dim`` is None."""
    if dim is None:
        return emb
    cut = np.asarray(emb, dtype=np.float32)[:, :dim]
    norms = np.linalg.norm(cut, axis=1, keepdims=True)
    return np.ascontiguousarray(cut / np.maximum(norms, 1e-12), dtype=np.float32)
