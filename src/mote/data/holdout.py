"""Held-out validation rows carved from training sets, by a hash of each row's key.

Choosing a recipe (learning rate, data mix) needs data that is neither trained on nor reported. Only three
evaluation datasets ship a validation split, so :func:`split_rows` holds out a fixed fraction of every training
set: a row is held out when the hash of its *key* falls below ``fraction``. The key is the text that identifies
the example, so every row of one question (WikiQA has a row per candidate answer) or every copy of one sentence
(AG News clustering sets overlap) lands on the same side:

============================  ====================================  ====================================
row layout                    key                                   held out
============================  ====================================  ====================================
``{query, positive, ...}``    ``query``                             the row
``{sentence1, sentence2}``    ``sentence1``                         the row
``{text, label}``             ``text``                              the row
``{sentences, labels}``       each sentence                         the sentence (the set keeps the rest)
============================  ====================================  ====================================

A pair row whose *positive* hashes into the held-out range is not trained on either (it is not a validation row
unless its query is held out too): duplicate-question data chains pairs (A-B, B-C), and a held-out question must
not come back as the positive of a trained pair. So ``kept`` and ``held`` do not always cover every row.

The hash (BLAKE2b of the normalised key) does not depend on the seed, the method or the process, so training with
``data.holdout: f`` and :mod:`mote.eval.validation` (which builds evaluation folders from the held-out rows)
agree on every row. Passages are not keys: a held-out SQuAD question's paragraph may still be the positive of a
trained question about the same paragraph.

Example:
    >>> rows = [{"text": f"t{i}", "label": i % 2} for i in range(1000)]
    >>> train, held = split_rows(rows, 0.1)
    >>> len(train) + len(held), 60 < len(held) < 140
    (1000, True)
    >>> pairs = [{"query": f"q{i}", "positive": f"p{i}"} for i in range(1000)]
    >>> train, held = split_rows(pairs, 0.1)
    >>> len(train) + len(held) < 1000    # rows whose positive is held out are in neither
    True
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

_KEYS = ("query", "sentence1", "text")
_SECOND = {"query": "positive", "sentence1": "sentence2"}  # pair rows: the other text that must not be trained on


def _normalise(text: Any) -> str:
    return " ".join(str(text).split())


def is_held_out(key: Any, fraction: float) -> bool:
    """Whether a row with this key is held out (deterministic: a hash of the whitespace-normalised key)."""
    if fraction <= 0:
        return False
    digest = hashlib.blake2b(_normalise(key).encode("utf-8"), digest_size=8, person=b"mote-holdout").digest()
    return int.from_bytes(digest, "big") / 2.0**64 < fraction


def split_rows(rows: Sequence[dict[str, Any]], fraction: float) -> tuple[list[dict], list[dict]]:
    """``(kept, held_out)``: rows split by the hash of their key; clustering sets are split sentence by sentence.

    A set row yields a kept set and a held-out set with the same other fields (empty sides are dropped). A pair
    row is kept only when neither its query nor its positive is held out (module doc).
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"holdout fraction must be in [0, 1), got {fraction}")
    if fraction == 0:
        return list(rows), []
    kept: list[dict] = []
    held: list[dict] = []
    for row in rows:
        if "sentences" in row and "labels" in row:
            sides: tuple[dict, dict] = ({**row, "sentences": [], "labels": []}, {**row, "sentences": [], "labels": []})
            for sentence, label in zip(row["sentences"], row["labels"], strict=False):
                side = sides[1] if is_held_out(sentence, fraction) else sides[0]
                side["sentences"].append(sentence)
                side["labels"].append(label)
            for side, out in zip(sides, (kept, held), strict=True):
                if side["sentences"]:
                    out.append(side)
            continue
        field = next((k for k in _KEYS if k in row), None)
        if field is None:
            raise ValueError(
                f"cannot hold out a row with keys {sorted(row)}: expected one of {', '.join(_KEYS)} or "
                "sentences/labels"
            )
        if is_held_out(row[field], fraction):
            held.append(row)
        else:
            second = row.get(_SECOND.get(field, ""))
            if not (isinstance(second, str) and second.strip() and is_held_out(second, fraction)):
                kept.append(row)
    return kept, held
