"""Selection computes the layers before the first expert layer once per batch (mote.adapters.encoder_prefix) and
decides exactly as it does computing every layer of every encode."""

from __future__ import annotations

import json

import pytest

from mote.select.config import SelectConfig
from mote.select.run import select_run
from mote.train.config import parse_config


@pytest.fixture(scope="module")
def trained(one_torch_thread, tmp_path_factory):
    from tiny_train import tiny_config, write_tiny_data, write_tiny_model

    from mote.train.trainer import run_training

    tmp = tmp_path_factory.mktemp("prefix")
    base = write_tiny_model(tmp / "bert", layers=4)  # experts in layers 1 and 3: layer 0 is the cached prefix
    root = write_tiny_data(tmp / "data")
    raw = tiny_config(base, root, method={"name": "mote", "placement": "every-other", "trainable": "experts"},
                      data={"data_dir": str(root), "holdout": 0.2}, train={"steps": 4, "batch_size": 8})
    return run_training(parse_config(raw, check_files=True), tmp / "run").output_dir


def _select(run, out, monkeypatch, prefix: bool):
    import mote.select.search as search

    made = []
    real = search._prefix_cache
    monkeypatch.setattr(search, "_prefix_cache", lambda space: made.append(real(space)) or made[-1] if prefix
                        else None)
    cfg = SelectConfig(alphas=[0.5, 1.0], snapshots=[0.5], batch_size=4)
    select_run(run, out, cfg, cache=False, log=lambda m: None)
    return json.loads((out / "selection.json").read_text()), made


def test_selection_with_the_prefix_cache_decides_and_scores_exactly_as_without(one_torch_thread, trained, tmp_path,
                                                                               monkeypatch):
    with_prefix, made = _select(trained, tmp_path / "with", monkeypatch, prefix=True)
    without, none = _select(trained, tmp_path / "without", monkeypatch, prefix=False)
    assert len(made) == 1 and made[0] is not None and made[0].hits > 0 and none == []
    for key in ("choice", "reference", "selected", "steps", "evaluations"):
        assert with_prefix[key] == without[key], key
    assert len(with_prefix["steps"]) >= 2  # candidates were scored: the comparison covers them
