"""Recipe selection data: the row holdout, the validation suite built from it, and no leak into training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mote.data import data_dir
from mote.data.holdout import is_held_out, split_rows
from mote.data.sources import Source, load_records
from mote.data.tasks import TASK_KINDS
from mote.data.training import DatasetSpec, TaskSpec, TrainingData
from mote.eval import datasets as ds
from mote.eval import validation
from mote.train import load_config


def test_split_rows_splits_by_key():
    rows = [{"text": f"t{i // 3}", "label": i % 7} for i in range(3000)]  # 3 rows per text
    kept, held = split_rows(rows, 0.2)
    assert len(kept) + len(held) == len(rows)  # labelled rows: a partition
    assert {r["text"] for r in kept}.isdisjoint({r["text"] for r in held})  # a text is never split
    assert 0.15 < len(held) / len(rows) < 0.25


def test_pair_rows_never_train_on_a_held_out_text():
    # duplicate-question chains: q_i ~ q_{i+1}; a held-out question must not be a trained positive
    rows = [{"query": f"q{i}", "positive": f"q{i + 1}"} for i in range(3000)]
    kept, held = split_rows(rows, 0.2)
    held_queries = {r["query"] for r in held}
    assert 0.15 < len(held) / len(rows) < 0.25
    assert not held_queries & {t for r in kept for t in (r["query"], r["positive"])}
    assert len(kept) < len(rows) - len(held)  # the rows whose positive is held out are in neither
    # a row without a positive (or an empty one) is judged by its query alone
    for q in ("q1", "q2", "q3", "q4", "q5", "q6", "q7", "q8", "q9", "q10"):
        kept_one, held_one = split_rows([{"query": q, "positive": ""}], 0.5)
        assert len(kept_one) + len(held_one) == 1 and bool(held_one) == is_held_out(q, 0.5)
    assert split_rows(rows, 0.2) == (kept, held)  # deterministic
    assert split_rows(rows, 0.0) == (rows, [])
    # a larger fraction holds out a superset (one hash threshold), so nested validation sets stay consistent
    assert {r["query"] for r in held} <= {r["query"] for r in split_rows(rows, 0.4)[1]}
    # whitespace does not move a key to the other side
    assert is_held_out("a  question ", 0.5) == is_held_out("a question", 0.5)


def test_split_rows_splits_clustering_sets_by_sentence():
    sentences = [f"title {i}" for i in range(500)]
    rows = [{"sentences": sentences, "labels": [i % 5 for i in range(500)]},
            {"sentences": sentences[:100], "labels": [i % 5 for i in range(100)]}]  # overlapping sets
    kept, held = split_rows(rows, 0.1)
    held_texts = {s for r in held for s in r["sentences"]}
    kept_texts = {s for r in kept for s in r["sentences"]}
    assert held_texts and held_texts.isdisjoint(kept_texts) and held_texts | kept_texts == set(sentences)
    for r in kept + held:  # labels travel with their sentences
        assert all(r["labels"][j] == int(s.split()[1]) % 5 for j, s in enumerate(r["sentences"]))


def test_split_rows_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        split_rows([], 1.0)
    with pytest.raises(ValueError, match="cannot hold out a row with keys"):
        split_rows([{"foo": "bar"}], 0.1)


@pytest.fixture(scope="module")
def real_root():
    # CI always has ../shared beside the checkout: its absence fails (a skip would hide the no-leak check)
    try:
        root = data_dir()
    except FileNotFoundError as e:
        pytest.fail(f"the validation-leak check needs the shared data ($MOTE_DATA or ../shared/data): {e}")
    if not (root / "train-WikiQA").is_dir():
        pytest.fail(f"the validation-leak check needs the shared training sets ({root / 'train-WikiQA'} is missing)")
    return root


@pytest.fixture(scope="module")
def suite(real_root, tmp_path_factory):
    return validation.build_validation_suite(real_root, tmp_path_factory.mktemp("val"), fraction=0.1)


def test_suite_loads_with_the_harness(suite):
    infos = ds.discover(suite)
    assert sorted(infos) == sorted(validation.DATASETS)
    for name, info in infos.items():
        data = ds.load(info, validation.SPLIT)
        assert data.n_items > 0, name
        meta = json.loads((info.path / "meta.json").read_text())
        assert meta["group"] == validation.GROUPS[name]
        assert meta["holdout"] == (0.1 if meta["group"] == "in-domain" else 0.0)  # ood: whole untrained sources
    qa = ds.load(infos["val-QAReranking"], validation.SPLIT)
    assert all(pos and neg for pos, neg in zip(qa.positives, qa.negatives, strict=True))


def test_suite_is_rebuilt_only_when_its_fraction_changes(suite, real_root, tmp_path):
    import shutil

    own = shutil.copytree(suite, tmp_path / "val")  # the module's suite stays at 0.1 for the other tests
    meta = own / "val-QAReranking" / "meta.json"
    stamp = meta.stat().st_mtime_ns
    validation.build_validation_suite(real_root, own, fraction=0.1)
    assert meta.stat().st_mtime_ns == stamp
    validation.build_validation_suite(real_root, own, fraction=0.2)
    assert json.loads(meta.read_text())["holdout"] == 0.2


def test_no_validation_text_is_trained_on(suite, real_root):
    """Training with data.holdout = 0.1 never sees a validation query, held-out text or clustering title."""
    cfg = load_config("configs/mote-minilm.yaml")
    # and the new sources (mix B of the choose budget): caption pairs, Reddit titles and title sets
    specs = [*cfg.objective_specs(real_root), *(
        TaskSpec(f"{kind}-b", TASK_KINDS[kind], (DatasetSpec(Source(folder, folder=folder), max_examples=3000),))
        for kind, folder in (("symmetric", "train-Multi30kCaptions"), ("classification", "train-RedditTitles"),
                             ("clustering", "train-RedditTitlesClustering")))]
    trained = TrainingData.load(specs, real_root, seed=0, holdout=0.1)
    seen = {t for ps in trained.tasks.values() for pairs in ps.values() for p in pairs
            for t in (p.anchor, p.positive, p.negative) if t}
    infos = ds.discover(suite)
    held: set[str] = set()
    held |= set(ds.load(infos["val-QARetrieval"], validation.SPLIT).queries.values())
    held |= set(ds.load(infos["val-QuoraRetrieval"], validation.SPLIT).queries.values())
    held |= set(ds.load(infos["val-QAReranking"], validation.SPLIT).queries)
    held |= set(ds.load(infos["val-Banking77"], validation.SPLIT).test_texts)
    for name in ("val-20NewsgroupsTitlesClustering", "val-AGNewsTitlesClustering"):
        held |= {s for sentences, _ in ds.load(infos[name], validation.SPLIT).sets for s in sentences}
    held |= set(ds.load(infos["val-Multi30kRetrieval"], validation.SPLIT).queries.values())
    held |= set(ds.load(infos["val-RedditTitles"], validation.SPLIT).test_texts)
    held |= {s for sentences, _ in ds.load(infos["val-RedditTitlesClustering"], validation.SPLIT).sets
             for s in sentences}
    held = {" ".join(t.split()) for t in held}
    assert len(held) > 2000
    assert not held & seen
    # and without the holdout they would have been: the test can fail
    everything = TrainingData.load(specs, real_root, seed=0)
    seen_all = {t for ps in everything.tasks.values() for pairs in ps.values() for p in pairs
                for t in (p.anchor, p.positive, p.negative) if t}
    assert len(held & seen_all) > 500


def test_shipped_validation_splits_are_used_as_is(suite, real_root):
    rows = load_records(Source("e", folder="EmotionClassification", split="validation"), real_root)
    data = ds.load(ds.discover(suite)["val-Emotion"], validation.SPLIT)
    assert list(data.test_texts) == [r["text"] for r in rows][: validation.MAX_SCORED]  # the first rows, as shipped
    assert len(rows) > validation.MAX_SCORED


def test_the_ood_group_holds_only_sources_the_recipes_do_not_train_on(suite, real_root):
    """Leave-one-source-out: every ood folder is built from OOD_SOURCES alone, and no shipped recipe trains on
    them (the recipe check refuses selection on the ood group otherwise: tests/test_select.py)."""
    import yaml

    infos = ds.discover(suite)
    for name in validation.datasets_of("ood"):
        assert set(json.loads((infos[name].path / "meta.json").read_text())["sources"]) <= set(validation.OOD_SOURCES)
    for recipe in ("configs/mote-minilm.yaml", "configs/demo.yaml"):
        cfg = load_config(recipe)
        trained = {d.name for t in cfg.objectives.values() for d in t.dataset_configs()}
        assert not trained & set(validation.OOD_SOURCES), recipe
    for arm in yaml.safe_load(Path("lab/budgets/choose.yaml").read_text())["arms"].values():
        for task in (arm.get("overrides", {}).get("objectives") or {}).values():
            names = {d if isinstance(d, str) else d["name"] for d in task["datasets"]}
            assert not names & set(validation.OOD_SOURCES)
