"""The texts every export is verified on: real sentences of all lengths, edge cases, and texts at the limit.

Example:
    >>> texts, source = verification_texts(tokenizer, 256)   # doctest: +SKIP
"""

from __future__ import annotations

import json
import os

import numpy as np

from mote.files import open_text

# Used when no dataset folder is available (a plain `pip install mote`): varied, real-looking sentences.
_BUILTIN_SENTENCES = (
    "A man is playing a guitar.",
    "how do magnets work",
    "The new movie is awesome and I loved every minute of it, especially the ending.",
    "Stocks fell sharply on Tuesday after the central bank raised interest rates again.",
    "hi",
    "What is the capital of France? Paris is the capital and most populous city of France.",
    "A woman is slicing an onion.",
    "Two dogs are running through a snowy field while their owner throws a red ball.",
    "The committee postponed its decision until more data on the long-term safety of the drug becomes available.",
    "I can't log in to my account since yesterday's update; the app keeps asking for a code I never receive.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "ok",
    "Is it safe to eat raw cookie dough?",
    "The 2019 report found that 43% of respondents preferred remote work, up from 31% two years earlier.",
    'She said: "don\'t wait for me" - and left.',
    "Heavy rain caused flooding in several districts, and schools were closed for two days.",
    "Which programming language should I learn first if I want to analyse data?",
    "The cat sat on the mat.",
    "Researchers trained the model on 1.2 million labelled images and evaluated it on a held-out test set.",
    "Refund not received after 14 days",
)


def sts_pairs(data: str | os.PathLike | None, limit: int | None = None) -> list[tuple[str, str, float]]:
    from mote.data import data_dir

    path = data_dir(data) / "STSBenchmark" / "test.jsonl.gz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the STSBenchmark test set is needed to measure int8 quality")
    pairs = []
    with open_text(path) as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                pairs.append((row["sentence1"], row["sentence2"], float(row["score"])))
    return pairs[:limit] if limit else pairs


def verification_texts(
    tokenizer, max_seq_length: int, data: str | os.PathLike | None = None, n: int = 64, prompt: str = ""
) -> tuple[list[str], str]:
    """Real sentences spread over all lengths, edge cases, and texts of exactly, just under and over the limit.

    With ``prompt`` prepended, the long texts come to ``max_seq_length`` / 2, ``max_seq_length`` - 1,
    ``max_seq_length`` (the longest untruncated input), ``max_seq_length`` + 1 and 3x ``max_seq_length`` tokens
    (special tokens included; give or take one where a cut splits a word). Returns the texts and where they came
    from (``"STSBenchmark"``, or ``"built-in"`` without a dataset folder).

    Example:
        >>> texts, source = verification_texts(tokenizer, 256)   # doctest: +SKIP
    """
    try:
        sentences = sorted({s for a, b, _ in sts_pairs(data) for s in (a, b)})
        source = "STSBenchmark"
    except FileNotFoundError:
        sentences, source = sorted(set(_BUILTIN_SENTENCES)), "built-in"
    by_len = sorted(sentences, key=lambda s: (len(s), s))
    idx = np.unique(np.linspace(0, len(by_len) - 1, num=min(n, len(by_len))).round().astype(int))
    picked = [by_len[i] for i in idx]
    edge = ["", "a", "?", "Hello!", "naïve café – 東京 🙂 ÀÉÎ", "   ", "ok ok ok"]

    m = max_seq_length
    budget = m - 2 - len(tokenizer(prompt, add_special_tokens=False, verbose=False)["input_ids"])
    rng = np.random.default_rng(0)
    parts: list[str] = []
    while len(parts) < 4 * m:  # enough words for 3x the limit, cycling through few (built-in) sentences
        parts.extend(sentences[i] for i in rng.permutation(len(sentences)))
    joined = " ".join(parts)
    offsets = tokenizer(joined, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    ends = [end for _, end in offsets["offset_mapping"]]
    long = [joined[: ends[min(k, len(ends)) - 1]] for k in (budget // 2, budget - 1, budget, budget + 1, 3 * m)]
    return picked + edge + long, source


def token_lengths(tokenizer, texts: list[str]) -> list[int]:
    return [len(x) for x in tokenizer(texts, add_special_tokens=True, verbose=False)["input_ids"]]
