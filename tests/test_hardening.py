"""Issue 27 (hardening, round two): each case reproduced on a tiny model and checked at its cause."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer

import mote
from mote.train.testing import write_tiny_model


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> str:
    return write_tiny_model(tmp_path_factory.mktemp("base") / "tiny", dropout=0.0)


def distinct_experts(model, seed: int = 0):
    """Perturb every stacked expert weight, so that routing mistakes are visible."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model[0].auto_model.parameters():
            if p.dim() >= 2 and p.shape[0] == model[0].num_experts:
                p.add_(torch.randn(p.shape, generator=g) * 0.3)
    return model


@pytest.fixture(scope="module")
def tiny_mote(tiny_base):
    return distinct_experts(mote.convert(tiny_base, placement="every"))


# ------------------------------------------------------------------------------------------------ 1. task lists
def test_sentence_transformer_encode_keeps_each_texts_task(tiny_mote, tmp_path):
    texts = ["short", "a much longer sentence about magnets and iron"]
    tasks = ["query", "clustering"]
    want = mote.encode(tiny_mote, texts, task=tasks)
    assert np.abs(tiny_mote.encode(texts, task=tasks) - want).max() <= 1e-6
    many = [("word " * (i % 9)) + str(i) for i in range(21)]
    many_tasks = [list(mote.DEFAULT_TASKS)[i % 4] for i in range(21)]
    want = mote.encode(tiny_mote, many, task=many_tasks, batch_size=4)
    assert np.abs(tiny_mote.encode(many, task=many_tasks, batch_size=4) - want).max() <= 1e-6
    tiny_mote.save(str(tmp_path / "m"))
    loaded = SentenceTransformer(str(tmp_path / "m"), device="cpu")  # the hook also runs on load
    assert np.abs(loaded.encode(many, task=many_tasks, batch_size=4) - want).max() <= 1e-6
    with pytest.raises(ValueError, match="Got 3 tasks for 21 texts"):
        tiny_mote.encode(many, task=many_tasks[:3])


def test_a_task_list_that_reached_forward_sorted_is_refused(tiny_mote):
    features = tiny_mote.preprocess(["a", "bb"], task=["query", "document"])
    with pytest.raises(ValueError, match="mote.encode"):
        tiny_mote[0](features, task=["query", "document"])
