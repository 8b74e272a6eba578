"""A user's own data: CSV and column mapping, errors before any work, the in-domain validation sets built from
the recipe's held-out rows, and the default recipe (the config models' defaults are the validated recipe, as
docs/selection.md states them). Every test here runs with ``MOTE_DATA`` pointing at an empty folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mote.data.holdout import split_rows
from mote.data.pairs import pair_rows
from mote.data.sources import Source, load_records
from mote.select.config import SelectConfig, recipe_problems
from mote.select.holdout_sets import MIN_ITEMS, build_recipe_sets
from mote.select.weights import SelectionError
from mote.train.config import ConfigError, RunConfig, load_config, parse_config
from tests.test_quickstart import write_user_data

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def empty_data_root(tmp_path, monkeypatch):
    empty = tmp_path / "empty-data"
    empty.mkdir()
    monkeypatch.setenv("MOTE_DATA", str(empty))
    return empty


def _recipe(folder: Path, **tasks) -> dict:
    return {"objectives": {name: {"datasets": datasets} for name, datasets in tasks.items()}}


def test_csv_rows_read_under_mote_column_names(tmp_path):
    write_user_data(tmp_path, "acme.csv", "zorb.jsonl", n=20)
    src = Source("acme", path=str(tmp_path / "acme.csv"), columns=(("query", "question"), ("positive", "answer")))
    rows = load_records(src, None)
    assert len(rows) == 20 and rows[0]["query"].startswith("how can I") and "question" not in rows[0]
    assert len(pair_rows(rows)) == 20


def test_a_users_recipe_is_checked_before_any_work(tmp_path):
    write_user_data(tmp_path, "acme.csv", "zorb.jsonl", n=20)
    (tmp_path / "blank.csv").write_text("", encoding="utf-8")
    (tmp_path / "header-only.csv").write_text("question,answer\n", encoding="utf-8")
    (tmp_path / "test.csv").write_text("question,answer\nq,a\n", encoding="utf-8")
    bad = {"objectives": {
        "retrieval": {"datasets": [
            {"path": str(tmp_path / "acme.csv"), "columns": {"query": "question", "positive": "reply"}},
            {"path": str(tmp_path / "blank.csv")},
            {"path": str(tmp_path / "header-only.csv"), "columns": {"query": "question", "positive": "answer"}},
            {"path": str(tmp_path / "test.csv")},
        ]},
        "classification": {"datasets": [{"path": str(tmp_path / "zorb.jsonl")}]},   # columns not mapped
    }}
    with pytest.raises(ConfigError) as err:
        parse_config(bad)
    problems = err.value.problems
    text = "\n".join(problems)
    assert len(problems) == 5, text
    assert "acme.csv has no column 'reply'" in text
    assert "blank.csv has no rows" in text and "header-only.csv has no rows" in text
    assert "test file" in text or "test split" in text
    assert "zorb.jsonl" in text and "columns: {text: utterance, label: intent}" in text


def test_unknown_mote_column_names_are_refused():
    with pytest.raises(ConfigError, match="not mote columns"):
        parse_config({"objectives": {"retrieval": {"datasets": [{"path": "x.csv", "columns": {"question": "q"}}]}}},
                     check_files=False)


def _sets(tmp_path, tasks, max_examples=200, log=None):
    cfg = parse_config({"objectives": tasks})
    return cfg, build_recipe_sets(cfg, tmp_path / "validation", max_examples, log=log)


def test_in_domain_sets_are_the_held_out_rows_scored_as_their_task(tmp_path):
    write_user_data(tmp_path, "acme.csv", "zorb.jsonl", n=400)
    pairs = {"path": str(tmp_path / "acme.csv"), "columns": {"query": "question", "positive": "answer"}}
    labels = {"path": str(tmp_path / "zorb.jsonl"), "columns": {"text": "utterance", "label": "intent"}}
    cfg, sets = _sets(tmp_path, {"retrieval": {"datasets": [pairs]}, "symmetric": {"datasets": [pairs]},
                                 "classification": {"datasets": [labels]}, "clustering": {"datasets": [labels]}})
    by = {v.name: v for v in sets}
    assert sorted(by) == ["classification-zorb", "clustering-zorb", "retrieval-acme", "symmetric-acme"]
    assert {v.info.task_type for v in sets} == {"Retrieval", "Classification", "Clustering"}
    assert {v.group for v in sets} == {"in-domain"} and all("zorb.jsonl" in v.source or "acme.csv" in v.source
                                                            for v in sets)
    # routes: retrieval's query side -> query, corpus -> document; symmetric: both sides through the query expert
    assert by["retrieval-acme"].routes() == {"query": "query", "document": "document"}
    assert by["symmetric-acme"].routes() == {"query": "query", "document": "query"}
    assert by["classification-zorb"].routes() == {"text": "classification"}
    # the queries are exactly held-out rows, never trained ones
    rows = load_records(cfg.objectives["retrieval"].dataset_configs()[0].source(), None)
    kept, held = split_rows(rows, cfg.data.holdout)
    held_q, kept_q = {a for a, _, _ in pair_rows(held)}, {a for a, _, _ in pair_rows(kept)}
    data = by["retrieval-acme"].data()
    queries = set(data.queries.values())
    assert len(queries) >= MIN_ITEMS and queries <= held_q and not queries & kept_q
    # classification: scored rows held out, the classifier fits trained rows only
    cls = by["classification-zorb"].data()
    intents = load_records(cfg.objectives["classification"].dataset_configs()[0].source(), None)
    held_texts = {r["text"] for r in split_rows(intents, cfg.data.holdout)[1]}
    assert set(cls.test_texts) <= held_texts and not set(cls.train_texts) & held_texts
    # built once: a second call reads the folders it wrote
    stamp = (tmp_path / "validation" / "retrieval-acme" / "meta.json").stat().st_mtime_ns
    _sets(tmp_path, {"retrieval": {"datasets": [pairs]}})
    assert (tmp_path / "validation" / "retrieval-acme" / "meta.json").stat().st_mtime_ns == stamp


def test_caps_bound_each_set(tmp_path):
    write_user_data(tmp_path, "acme.csv", "zorb.jsonl", n=600)
    pairs = {"path": str(tmp_path / "acme.csv"), "columns": {"query": "question", "positive": "answer"}}
    _, sets = _sets(tmp_path, {"retrieval": {"datasets": [pairs]}}, max_examples=10)
    meta = json.loads((sets[0].info.path / "meta.json").read_text())
    assert meta["splits"]["validation"] == 10 and meta["splits"]["corpus"] == 20
    # the budget is per task: two datasets share it
    write_user_data(tmp_path, "acme2.csv", "zorb2.jsonl", n=600)
    pairs2 = {**pairs, "path": str(tmp_path / "acme2.csv")}
    _, sets = _sets(tmp_path, {"retrieval": {"datasets": [pairs, pairs2]}}, max_examples=40)
    assert [json.loads((v.info.path / "meta.json").read_text())["splits"]["validation"] for v in sets] == [20, 20]


def test_a_scored_set_with_two_of_many_labels_is_skipped(tmp_path):
    """mteb scores a two-label set as binary (average precision of label code 1): a held-out share that sees only
    two labels of a larger label space is skipped, not scored wrongly (or crashed on)."""
    from mote.select.holdout_sets import _classification

    kept = [{"text": f"t{i}", "label": lab} for i, lab in enumerate(["a", "b", "c"] * 10)]
    held = [{"text": f"h{i}", "label": lab} for i, lab in enumerate(["b", "c"] * 5)]
    assert _classification(tmp_path, kept, held, 10) is None
    held3 = [*held, {"text": "h-a", "label": "a"}]
    assert _classification(tmp_path, kept, held3, 10)["splits"]["validation"] == 10


def test_too_few_held_out_rows_are_skipped_and_said_then_refused(tmp_path):
    write_user_data(tmp_path, "tiny.csv", "tiny.jsonl", n=12)
    pairs = {"path": str(tmp_path / "tiny.csv"), "columns": {"query": "question", "positive": "answer"}}
    said = []
    with pytest.raises(SelectionError, match="raise data.holdout"):
        _sets(tmp_path, {"retrieval": {"datasets": [pairs]}}, log=said.append)
    assert said and "tiny" in said[0] and MIN_ITEMS == 5


def test_the_default_recipe_selects_on_its_own_rows_and_says_what_it_needs():
    cfg = parse_config({"objectives": {"retrieval": {"datasets": [{"path": "x.csv"}]}}}, check_files=False)
    assert recipe_problems(cfg, cfg.select) == []
    assert recipe_problems(cfg, SelectConfig(validation="ood")) != []  # no out-of-domain sets named
    with pytest.raises(ConfigError, match=r"data.holdout.*select: \{enabled: false\}"):
        parse_config({"objectives": {"retrieval": {"datasets": [{"path": "x.csv"}]}}, "data": {"holdout": 0}},
                     check_files=False)
    off = {"objectives": {"retrieval": {"datasets": [{"path": "x.csv"}]}}, "data": {"holdout": 0},
           "select": {"enabled": 0}}
    assert not parse_config(off, check_files=False).selects()
    assert not parse_config({**off, "select": {}, "method": "tlr"}, check_files=False).selects()  # token-routed


def test_the_defaults_are_the_validated_recipe_and_the_docs_say_so():
    cfg = RunConfig(objectives={"retrieval": {"datasets": ["x"]}})
    assert (cfg.method.name, cfg.method.placement, cfg.method.trainable, cfg.method.trains_experts_only(),
            cfg.model.max_seq_length) == ("mote", "every-other", None, True, 64)
    assert (cfg.train.steps, cfg.train.batch_size, cfg.train.learning_rate) == (100, 16, 1e-4)
    assert (cfg.data.holdout, cfg.select.enabled, cfg.select.suite) == (0.1, True, "recipe")
    doc = (ROOT / "docs" / "selection.md").read_text(encoding="utf-8")
    table = doc[doc.index("## The default recipe"):doc.index("## On what data")]
    for key, value in [("method", "`mote`"), ("method.placement", "`every-other`"),
                       ("method.trainable", "experts only"),
                       ("model.max_seq_length", "64"), ("train.steps", "100"), ("train.batch_size", "16"),
                       ("train.learning_rate", "1e-4"), ("data.holdout", "0.1"), ("select.enabled", "true")]:
        assert f"| `{key}` | {value}" in table, key
    # the shipped recipe is data only
    raw = (ROOT / "configs" / "mote-minilm.yaml").read_text(encoding="utf-8")
    assert [line for line in raw.splitlines() if line and not line.startswith((" ", "#"))] == ["objectives:"]


def test_the_default_recipe_trains_exactly_the_headlines_mote_experts_run():
    """Same models by construction: the shipped recipe resolves to the training recipe of the headline's
    mote (experts) arm (docs/results.md) in everything that shapes the weights."""
    from mote_lab.config import load_experiment

    ours = load_config(ROOT / "configs" / "mote-minilm.yaml", check_files=False)
    exp = load_experiment(ROOT / "lab" / "budgets" / "headline.yaml", check_files=False)
    theirs = exp.run_config("minilm-l6", "mote-x", 42, check_files=False)
    for cfg in (ours, theirs):
        assert cfg.method.trains_experts_only()
    shape = lambda c: {  # noqa: E731
        "method": {k: v for k, v in c.method.model_dump().items() if k != "trainable"}, "seed": c.seed,
        "objectives": c.model_dump()["objectives"], "loss": c.model_dump()["loss"],
        "train": c.model_dump()["train"], "data": c.model_dump()["data"],
        "model": c.model_dump()["model"],
        "snapshots": c.select.snapshot_steps(c.train.steps)}
    assert shape(ours) == shape(theirs)


def test_the_labs_trainings_never_select_and_its_recipe_budget_selects_on_own_rows():
    """The lab trains and selects as separate steps (a selected arm selects its source arm's run), whatever the
    library's defaults: every trained run of every budget resolves with selection off; the `recipe` budget's
    selected arm uses the default (own held-out rows), the headline's the shared suite."""
    from mote_lab.config import load_experiment

    budgets = sorted((ROOT / "lab" / "budgets").glob("*.yaml"))
    assert len(budgets) >= 10
    for budget in budgets:
        exp = load_experiment(budget, check_files=False)
        for model, block in exp.enabled_models().items():
            for arm in block.arms:
                if exp.source_arm(arm) == arm:
                    assert not exp.run_config(model, arm, block.seeds_of(arm)[0], check_files=False).selects()
    recipe = load_experiment(ROOT / "lab" / "budgets" / "recipe.yaml", check_files=False)
    headline = load_experiment(ROOT / "lab" / "budgets" / "headline.yaml", check_files=False)
    assert recipe.select_config("minilm-l6", "mote-own", 42).suite == "recipe"
    assert headline.select_config("minilm-l6", "mote-sel", 42).suite == "shared"


def test_a_run_that_cannot_be_selected_keeps_its_weights_and_names_the_fix(tmp_path, capsys):
    """Too few held-out rows to validate on: `mote train` trains, keeps run/trained, and ends with one line that
    says why selection failed and what to run once it is fixed (exit 2, no traceback)."""
    import yaml
    from tiny_train import write_tiny_model

    from mote.cli import main

    base = write_tiny_model(tmp_path / "bert", layers=2)
    write_user_data(tmp_path, "few.csv", "few.jsonl", n=12)
    recipe = {"model": {"base": str(base), "max_seq_length": 32}, "train": {"steps": 2, "batch_size": 4},
              "log": {"progress": False},
              "objectives": {"retrieval": {"datasets": [{"path": str(tmp_path / "few.csv"),
                                                    "columns": {"query": "question", "positive": "answer"}}]}}}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe), encoding="utf-8")
    code = main(["train", str(tmp_path / "recipe.yaml"), "--output", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: training finished") and f"mote select {tmp_path / 'run'}" in last
    assert "raise data.holdout" in last and "Traceback" not in err
    assert (tmp_path / "run" / "trained" / "modules.json").is_file() and not (tmp_path / "run" / "model").exists()
