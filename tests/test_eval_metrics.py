"""mote.eval scores equal mteb's own pipeline (task.evaluate) on the same data and embeddings; fast stats = sklearn."""

from __future__ import annotations

import numpy as np
import pytest
from test_eval_support import FakeEncoder, fake_embeddings, make_data_dir

from mote.eval import datasets as ds
from mote.eval.harness import evaluate_dataset
from mote.eval.local_tasks import local_task
from mote.eval.stats import average_precision, paired_bootstrap, spearman, v_measure


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
    return make_data_dir(tmp_path_factory.mktemp("toydata"))


def _mteb_model():
    from mteb.models.abs_encoder import AbsEncoder

    class Precomputed(AbsEncoder):
        """mteb encoder giving the same fake embeddings as FakeEncoder (task routing plays no role here)."""

        def __init__(self) -> None:
            pass

        def encode(self, inputs, *, task_metadata, hf_split, hf_subset, prompt_type=None, **kwargs):
            return fake_embeddings([t for batch in inputs for t in batch["text"]])

    return Precomputed()


@pytest.mark.parametrize(
    "name", ["ToySTS", "ToyClassification", "ToyClustering", "ToyPairs", "ToyReranking", "ToyRetrieval"]
)
def test_scores_equal_mteb_task_evaluate(toy_root, name):
    """Our fast path (unique texts, cache, per-item data) == mteb's full task.evaluate on every shared metric."""
    info = ds.discover(toy_root)[name]
    entry, items = evaluate_dataset(FakeEncoder(), info)
    task = local_task(info, ds.load(info))
    theirs = task.evaluate(_mteb_model(), split="test", encode_kwargs={"batch_size": 8})["default"]
    shared = [k for k, v in theirs.items() if k in entry["metrics"] and isinstance(v, float | list)]
    assert entry["main_metric"] in shared or entry["main_metric"] == "spearman"
    assert len(shared) >= 3
    for k in shared:
        if isinstance(theirs[k], list):  # per-set v-measures
            assert entry["metrics"][k] == pytest.approx([100 * x for x in theirs[k]], abs=1e-9), k
        elif np.isnan(theirs[k]):  # e.g. AP of a multi-class task
            assert entry["metrics"][k] is None, k
        else:
            assert entry["metrics"][k] == pytest.approx(100 * theirs[k], abs=1e-9), k
    assert entry["main_score"] == pytest.approx(100 * theirs[entry["main_metric"]], abs=1e-9)
    assert 0 < entry["main_score"] < 100  # informative fake embeddings: neither degenerate nor perfect
    assert items  # per-item data for significance tests


def test_protocol_comes_from_the_registered_mteb_task(tmp_path):
    """A dataset naming an MTEB task gets its protocol (Emotion: 16 samples per label); others get the default."""
    import json

    root = make_data_dir(tmp_path)
    meta = json.loads((root / "ToyClassification" / "meta.json").read_text())
    meta["mteb_task"] = "EmotionClassification"
    (root / "ToyClassification" / "meta.json").write_text(json.dumps(meta))
    info = ds.discover(root)["ToyClassification"]
    assert local_task(info).samples_per_label == 16
    entry, items = evaluate_dataset(FakeEncoder(), info)
    assert entry["metrics"]["samples_per_label"] == 16
    assert entry["metrics"]["n_experiments"] == 3 == items["correct"].shape[0]  # meta.json "protocol" override
    meta["mteb_task"] = None
    (root / "ToyClassification" / "meta.json").write_text(json.dumps(meta))
    assert local_task(ds.discover(root)["ToyClassification"]).samples_per_label == 8


def test_fast_statistics_equal_sklearn_and_scipy():
    from scipy.stats import spearmanr
    from sklearn.metrics import average_precision_score, v_measure_score

    rng = np.random.default_rng(0)
    for _ in range(25):
        y = rng.integers(0, 2, 200)
        s = np.round(rng.normal(size=200), 1)  # many ties
        assert average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)
        labels, assign = rng.integers(0, 5, 150), rng.integers(0, rng.integers(1, 7), 150)
        assert v_measure(labels, assign) == pytest.approx(v_measure_score(labels, assign), abs=1e-12)
        a, b = rng.normal(size=80), np.round(rng.normal(size=80), 1)
        assert spearman(a, b) == pytest.approx(spearmanr(a, b)[0], abs=1e-12)


def test_paired_bootstrap_detects_a_real_difference_and_not_a_null_one():
    rng = np.random.default_rng(1)
    n = 400
    gold = rng.normal(size=n)
    good = {"pred": gold + rng.normal(scale=0.5, size=n), "gold": gold}
    bad = {"pred": gold + rng.normal(scale=2.0, size=n), "gold": gold}
    res = paired_bootstrap("STS", bad, good, n_boot=300)
    assert res["delta"] > 10 and res["p"] < 0.01 and res["ci_low"] > 0
    same = paired_bootstrap("STS", good, good, n_boot=50)
    assert same["delta"] == 0 and same["p"] == 1.0  # ties count on both sides
    # a real null: two different systems of equal quality. The two-sided p is then about uniform: about 5% of
    # such comparisons fall below 0.05 (a one-sided or undoubled p would give ~2.5% or ~10%; a broken resampling
    # far more or none)
    null_p = []
    for trial in range(60):
        g = np.random.default_rng(100 + trial)
        gold = g.normal(size=200)
        a = {"pred": gold + g.normal(scale=1.0, size=200), "gold": gold}
        b = {"pred": gold + g.normal(scale=1.0, size=200), "gold": gold}
        null_p.append(paired_bootstrap("STS", a, b, n_boot=200, seed=trial)["p"])
    null_p = np.array(null_p)
    assert 0.35 < null_p.mean() < 0.65
    assert 0.0 < (null_p < 0.05).mean() < 0.15 and (null_p < 0.5).mean() == pytest.approx(0.5, abs=0.2)
    correct_a = rng.random((10, n)) < 0.7
    res = paired_bootstrap("Classification", {"correct": correct_a}, {"correct": correct_a.copy()}, n_boot=50)
    assert res["p"] == 1.0
    with pytest.raises(ValueError, match="not paired"):
        paired_bootstrap("Retrieval", {"ndcg_at_10": np.ones(3)}, {"ndcg_at_10": np.ones(4)}, n_boot=5)
