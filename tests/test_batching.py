"""Batches by token length (mote.batching): the cuts are optimal, and encoding through them gives
sentence-transformers' own embeddings, in input order."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import SENTENCES

import mote
from mote.batching import encode_length_batched, length_batches, longest_first, token_lengths
from mote.eval.cache import embed_texts
from mote.eval.encoders import DenseEncoder, MoTEEncoder

# Character order and token order disagree on these (long words are few word pieces; spaced letters are many).
DISAGREE = ["a b c d e f g h i j", "internationalization", "x y", "unbelievable", "q r s t u v"]


class Recorder:
    """Wraps a SentenceTransformer and records the texts of each ``encode`` call."""

    def __init__(self, model):
        self.model, self.calls = model, []
        self.tokenizer, self.max_seq_length = model.tokenizer, model.max_seq_length

    def encode(self, texts, **kwargs):
        self.calls.append(list(texts))
        return self.model.encode(texts, **kwargs)


def _runs_in_order(calls, lengths_of) -> bool:
    """True when each call's shortest text is at least as long as the next call's longest."""
    spans = [(min(map(lengths_of, c)), max(map(lengths_of, c))) for c in calls]
    return all(spans[i][0] >= spans[i + 1][1] for i in range(len(spans) - 1))


def test_same_embeddings_as_sentence_transformers_in_input_order(minilm):
    texts = SENTENCES + [t.upper() for t in SENTENCES] + DISAGREE
    for prompt in (None, "search_query: "):
        ref = minilm.encode(texts, prompt=prompt, batch_size=4, convert_to_numpy=True)
        got = encode_length_batched(minilm, texts, batch_size=4, prompt=prompt)
        assert got.dtype == np.float32 and got.shape == ref.shape
        np.testing.assert_allclose(got, ref, atol=2e-6)


def test_each_batch_is_a_run_of_the_token_order_not_the_character_order(minilm):
    lengths = dict(zip(DISAGREE, token_lengths(minilm, DISAGREE).tolist()))
    chars_first = sorted(DISAGREE, key=len, reverse=True)
    by_chars = [chars_first[i:i + 2] for i in range(0, len(chars_first), 2)]
    assert not _runs_in_order(by_chars, lengths.get)  # the character order pads more: the test can fail
    rec = Recorder(minilm)
    encode_length_batched(rec, DISAGREE, batch_size=2)
    assert [len(c) for c in rec.calls] == [2, 2, 1]
    assert _runs_in_order(rec.calls, lengths.get)


def test_token_lengths_count_special_tokens_and_stop_at_max_seq_length(minilm):
    ids = minilm.tokenizer(["how do magnets work"])["input_ids"][0]
    assert token_lengths(minilm, ["how do magnets work"]).tolist() == [len(ids)]
    assert token_lengths(minilm, ["word " * 2000]).tolist() == [minilm.max_seq_length]
    assert token_lengths(object(), ["a"]) is None
    assert longest_first([2, 9, 2, 9]).tolist() == [1, 3, 0, 2]


def test_bad_arguments_are_refused(minilm):
    with pytest.raises(ValueError, match="batch_size"):
        encode_length_batched(minilm, ["a"], batch_size=0)
    with pytest.raises(ValueError, match="2 lengths for 1 texts"):
        encode_length_batched(minilm, ["a"], lengths=[1, 2])


def test_embed_texts_cuts_chunks_in_the_encoders_token_order(minilm):
    enc = DenseEncoder(minilm, "minilm")
    calls: list[list[str]] = []
    plain = enc.encode

    def spy(texts, task, **kw):
        calls.append(list(texts))
        return plain(texts, task, **kw)

    enc.encode = spy  # type: ignore[method-assign]
    out = embed_texts(enc, DISAGREE, "query", chunk_size=2)
    lengths = dict(zip(DISAGREE, token_lengths(minilm, DISAGREE).tolist()))
    assert _runs_in_order(calls, lengths.get) and sum(map(len, calls)) == len(DISAGREE)
    np.testing.assert_allclose(out, minilm.encode(DISAGREE, convert_to_numpy=True), atol=2e-6)


def test_mote_encoder_matches_the_models_own_encode_per_task(tiny_bert):
    torch.manual_seed(0)
    model = mote.convert(tiny_bert, placement="every")
    module = mote.mote_module(model)
    with torch.no_grad():  # experts apart, so a wrong expert or prefix would show
        for p in module.auto_model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    enc = MoTEEncoder(model, "tiny")
    texts = SENTENCES + DISAGREE
    for task in module.routing.task_names:
        ref = model.encode(texts, task=task, batch_size=3, convert_to_numpy=True)
        np.testing.assert_allclose(enc.encode(texts, task, batch_size=3), ref, atol=2e-6)
    assert enc.token_lengths(texts).tolist() == token_lengths(model, texts).tolist()


def test_length_batches_minimise_padded_tokens_plus_overhead():
    """The dynamic programme against brute force over every way to cut the length-sorted order."""
    import itertools
    import random

    def cost(lengths, batches, overhead):
        return sum(len(b) * max(lengths[i] for i in b) + overhead for b in batches)

    rng = random.Random(0)
    for _ in range(40):
        lengths = [rng.randint(1, 60) for _ in range(rng.randint(1, 9))]
        bs, overhead = rng.randint(1, 4), rng.choice([0, 8, 40])
        got = length_batches(lengths, bs, overhead)
        assert sorted(i for b in got for i in b) == list(range(len(lengths))) and all(len(b) <= bs for b in got)
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        best = min(
            cost(lengths, [order[a:b] for a, b in zip((0, *cuts), (*cuts, len(order)))], overhead)
            for k in range(len(order))
            for cuts in itertools.combinations(range(1, len(order)), k)
            if all(b - a <= bs for a, b in zip((0, *cuts), (*cuts, len(order))))
        )
        assert cost(lengths, got, overhead) == best
