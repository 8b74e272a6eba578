"""Matryoshka: the training option (MatryoshkaLoss around TA-CL), the recorded dims, encode / eval truncation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss
from test_eval_support import make_data_dir
from tiny_train import tiny_config, write_tiny_data, write_tiny_model

import mote
from mote.eval import evaluate, load_encoder
from mote.matryoshka import check_dim, truncate
from mote.train.config import ConfigError, parse_config
from mote.train.losses import info_nce
from mote.train.trainer import prepare_run, run_training

pytestmark = pytest.mark.usefixtures("one_torch_thread")
DIMS = [32, 16, 8]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("mrl")
    return write_tiny_model(root / "bert"), write_tiny_data(root / "data")


def _cfg(tiny, **overrides):
    base, root = tiny
    return parse_config(tiny_config(base, root, **overrides))


def test_truncate_renormalises_and_checks_the_width():
    emb = np.asarray([[3.0, 4.0, 12.0], [1.0, 0.0, 0.0]], dtype=np.float32)
    np.testing.assert_allclose(truncate(emb, 2), [[0.6, 0.8], [1.0, 0.0]], atol=1e-6)
    assert truncate(emb, None) is emb and check_dim(3, 3) is None
    with pytest.raises(ValueError, match="have 3; choose 1..3"):
        check_dim(4, 3)
    with pytest.raises(ValueError):
        check_dim(0, 3)


def test_every_task_loss_is_the_matryoshka_sum_of_ta_cl_over_the_dims(tiny, tmp_path):
    run = prepare_run(_cfg(tiny, loss={"matryoshka_dims": DIMS}), tmp_path / "run")
    trainer, model = run.trainer, run.built.model
    assert all(isinstance(loss, MatryoshkaLoss) for loss in trainer.loss.values())
    model.eval()
    for name, loss in trainer.loss.items():
        ds = trainer.train_dataset[name]
        batch = trainer.data_collator([ds[i] for i in range(min(8, len(ds)))])
        batch.pop("dataset_name")
        features, labels = trainer.collect_features(batch)
        with torch.no_grad():
            got = float(loss(features, labels))
            embs = [model(dict(f))["sentence_embedding"] for f in features]
            inner = loss.loss
            want = sum(
                float(info_nce(*(F.normalize(e[:, :d], dim=-1) for e in embs[:2]),
                               F.normalize(embs[2][:, :d], dim=-1) if len(embs) > 2 else None,
                               labels, inner.temperature, inner.symmetric))
                for d in DIMS
            )
        assert got == pytest.approx(want, rel=1e-5), name


def test_trained_model_records_its_dims_and_encode_truncates(tiny, tmp_path):
    cfg = _cfg(tiny, loss={"matryoshka_dims": [16, 32, 8]}, train={"steps": 2, "batch_size": 8})
    result = run_training(cfg, tmp_path / "run")
    model = mote.load(result.model_dir)
    assert model[0].matryoshka_dims == DIMS  # largest first, in mote_config.json
    texts = ["a rocket in orbit", "cheese and bread"]
    full = mote.encode(model, texts, task="query")
    cut = mote.encode(model, texts, task="query", truncate_dim=8)
    np.testing.assert_allclose(cut, full[:, :8] / np.linalg.norm(full[:, :8], axis=1, keepdims=True), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(cut, axis=1), 1.0, atol=1e-6)
    assert mote.encode(model, texts, task=["query", "document"], truncate_dim=16).shape == (2, 16)
    with pytest.raises(ValueError, match="model's embeddings have 32"):
        mote.encode(model, texts, task="query", truncate_dim=64)


def test_bad_matryoshka_configs_are_clear_errors(tiny):
    with pytest.raises(ConfigError, match="load-balancing"):
        _cfg(tiny, method="tlr", loss={"matryoshka_dims": DIMS})
    with pytest.raises(ConfigError, match="distinct positive"):
        _cfg(tiny, loss={"matryoshka_dims": [32, 32]})
    with pytest.raises(ConfigError, match="one weight per dimension"):
        _cfg(tiny, loss={"matryoshka_dims": DIMS, "matryoshka_weights": [1.0]})


class Truncating:
    """Reference: an encoder that truncates and renormalises its own embeddings."""

    def __init__(self, inner, dim: int) -> None:
        self.inner, self.dim = inner, dim
        self.name, self.identity = inner.name, inner.identity + f"-cut{dim}"

    def encode(self, texts, task, *, batch_size=32, show_progress=False):
        emb = self.inner.encode(texts, task, batch_size=batch_size)[:, : self.dim]
        return emb / np.linalg.norm(emb, axis=1, keepdims=True)


def test_eval_dims_scores_the_truncated_embeddings(tiny, tmp_path):
    base, _ = tiny
    root = make_data_dir(tmp_path / "data")
    path = tmp_path / "mote"
    mote.convert(base).save(str(path))
    kw = dict(data_dir=root, output=None, show_progress=False, quiet=True)
    cache = tmp_path / "cache"
    full = evaluate(str(path), cache=cache, **kw)
    cut = evaluate(str(path), cache=cache, dims=8, **kw)  # from the full-width cache
    ref = evaluate(Truncating(load_encoder(str(path)), 8), cache=False, **kw)
    assert cut["dims"] == 8 and full["dims"] is None
    for name, r in ref["datasets"].items():
        assert cut["datasets"][name]["main_score"] == pytest.approx(r["main_score"], abs=1e-9), name
    scores = {n: (cut["datasets"][n]["main_score"], full["datasets"][n]["main_score"]) for n in ref["datasets"]}
    assert any(abs(a - b) > 1e-6 for a, b in scores.values())
    with pytest.raises(ValueError, match="model's embeddings have 32"):
        evaluate(str(path), cache=False, dims=64, **kw)
