"""The inference side of tokenisation, shared by the ONNX encoders: the ``tokenizers`` library only (torch-free).

The tokenizer saved at export is the one sentence-transformers used (same vocabulary, casing, truncation and
padding sides); :func:`load_tokenizer` configures it from ``mote_onnx.json`` to truncate at ``max_seq_length`` and
pad to the longest text, so a batch's ``input_ids`` equal what the torch model saw.

Example:
    >>> tok = load_tokenizer(folder, meta)                      # doctest: +SKIP
    >>> feeds(tok, ["search_query: hi"], ["input_ids", "attention_mask"])["input_ids"].shape   # doctest: +SKIP
    (1, 6)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

_FIELDS = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}


def check_texts(texts: Any) -> list[str]:
    """``texts`` as a list of strings (one string is one text), or a ``TypeError`` naming the first bad item."""
    if isinstance(texts, str):
        return [texts]
    try:
        items = list(texts)
    except TypeError:
        raise TypeError(f"Expected a list of strings, got {type(texts).__name__}") from None
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise TypeError(f"Expected strings: item {i} is a {type(item).__name__} ({item!r:.60})")
    return items


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def load_tokenizer(folder: Path, meta: dict[str, Any]):
    """The ``tokenizers.Tokenizer`` of an export, truncating at ``max_seq_length`` and padding to the longest."""
    from mote.onnx.deps import require

    (tokenizers,) = require("tokenizers")
    tok = meta["tokenizer"]
    tokenizer = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.enable_truncation(
        max_length=int(meta["max_seq_length"]), strategy="longest_first", direction=tok["truncation_side"]
    )
    tokenizer.enable_padding(
        direction=tok["padding_side"],
        pad_id=int(tok["pad_token_id"]),
        pad_type_id=int(tok["pad_token_type_id"]),
        pad_token=tok["pad_token"],
    )
    return tokenizer


def feeds(tokenizer, texts: list[str], input_names: list[str]) -> dict[str, np.ndarray]:
    """Model inputs (int64 ``[batch, longest]``) for already-prompted texts, for the inputs the graph has."""
    encodings = tokenizer.encode_batch(texts)
    return {
        name: np.asarray([getattr(e, _FIELDS[name]) for e in encodings], dtype=np.int64).reshape(len(texts), -1)
        for name in input_names
        if name in _FIELDS
    }


def length_order(texts: list[str]) -> np.ndarray:
    """Longest first, as sentence-transformers batches: texts of similar length share a batch (little padding)."""
    return np.argsort([-len(t) for t in texts], kind="stable")
