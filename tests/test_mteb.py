"""mteb's own runner (mteb.evaluate) on local-data mteb tasks gives exactly `mote eval`'s scores, routed alike.

The MoTE model's experts are perturbed (each expert differs from the others), so a text routed to the wrong
expert or prefix changes the scores: the test first shows that the old prompts (task names only, which mteb
ignores) change them, then that a saved folder's prompts and mote.mteb's loader reproduce the harness exactly.
"""

from __future__ import annotations

import logging
import warnings

import mteb
import pytest
import torch
from sentence_transformers import SentenceTransformer
from test_eval_support import make_data_dir, make_tiny_model

import mote
import mote.mteb as mm
from mote.eval import datasets as ds
from mote.eval import evaluate
from mote.eval.harness import DEFAULT_ROUTES
from mote.eval.local_tasks import local_task
from mote.experts import expert_modules
from mote.routing import MTEB_PROMPT_TASKS, RoutingTable, UnknownTaskError

TYPES = ("STS", "Classification", "Clustering", "PairClassification", "Retrieval", "Reranking")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mteb")
    root = make_data_dir(tmp / "data")
    base = make_tiny_model(tmp / "tiny")
    model = mote.convert(str(base), placement="every")
    torch.manual_seed(1)
    with torch.no_grad():  # four different experts: a routing mistake changes the embeddings
        for m in expert_modules(model[0].auto_model):
            m.weight.add_(torch.randn_like(m.weight) * 0.5)
    model.save(str(tmp / "mote"))
    infos = ds.discover(root)
    assert sorted(i.task_type for i in infos.values()) == sorted(TYPES)  # one local task per task type
    return tmp, root, base, infos


def harness_scores(model, root, **kw) -> dict[str, float]:
    res = evaluate(model, data_dir=root, output=None, cache=False, show_progress=False, quiet=True, **kw)
    return {name: r["main_score"] for name, r in res["datasets"].items()}


def mteb_scores(model, infos) -> dict[str, float]:
    """mteb.evaluate on one local-data mteb task per task type (the task classes read our local files)."""
    tasks = [local_task(info, ds.load(info, "test"), "test") for info in infos.values()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("mteb").setLevel(logging.ERROR)
        result = mteb.evaluate(model, tasks, cache=None, show_progress_bar=False, encode_kwargs={"batch_size": 8})
    return {r.task_name.removeprefix("mote-local-"): 100 * r.get_score() for r in result.task_results}


def by_type(infos, scores):
    return {infos[name].task_type: score for name, score in scores.items()}


def test_routing_alias_table_is_the_harness_protocol():
    """The mteb keys saved in folders route every task type and side exactly as DEFAULT_ROUTES does."""
    for task_type, sides in DEFAULT_ROUTES.items():
        for side, task in sides.items():
            key = task_type if side == "text" else f"{task_type}-{side}"
            assert MTEB_PROMPT_TASKS[key] == task, key
    table = RoutingTable.default()
    prompts = table.saved_prompts()
    assert prompts["Classification"] == "classification: " and prompts["STS"] == "search_query: "
    assert {k: prompts[k] for k in table.task_names} == table.prompts()  # prompt_name=task still works
    for task_type in ("Classification", "Clustering", "STS", "PairClassification"):  # what the issue checked
        meta = mteb.get_task({"Classification": "Banking77Classification", "Clustering": "TwentyNewsgroupsClustering",
                              "STS": "STSBenchmark", "PairClassification": "SprintDuplicateQuestions"}[task_type])
        name = mteb.models.abs_encoder.get_prompt_name(prompts, meta.metadata, None)
        assert table.task_for_prompt_name(name) == DEFAULT_ROUTES[task_type]["text"]


def test_mteb_evaluate_equals_mote_eval_for_a_mote_folder(setup):
    tmp, root, _, infos = setup
    ours = harness_scores(str(tmp / "mote"), root)

    old = SentenceTransformer(str(tmp / "mote"), device="cpu")
    old.prompts = RoutingTable.default().prompts()  # what folders saved before: keys mteb ignores
    misrouted = by_type(infos, mteb_scores(old, infos))
    ok = by_type(infos, ours)
    for task_type in ("STS", "Classification", "Clustering", "PairClassification"):  # -> default expert
        assert misrouted[task_type] != pytest.approx(ok[task_type], abs=1e-6), task_type
    for task_type in ("Retrieval", "Reranking"):  # query/document prompt types always reached mteb
        assert misrouted[task_type] == pytest.approx(ok[task_type], abs=1e-9), task_type

    plain = mteb_scores(SentenceTransformer(str(tmp / "mote"), device="cpu"), infos)  # as a new user runs it
    assert plain == pytest.approx(ours, abs=1e-9)
    loaded = mteb_scores(mm.get_model(tmp / "mote"), infos)  # the ModelMeta/loader path
    assert loaded == pytest.approx(ours, abs=1e-9)


def test_mteb_routes_overrides_follow_the_harness(setup):
    tmp, root, _, infos = setup
    routes = {"STS": "classification", "Retrieval.document": "query"}
    ours = harness_scores(str(tmp / "mote"), root, routes=routes, datasets="ToySTS,ToyRetrieval")
    subset = {k: v for k, v in infos.items() if k in ours}
    theirs = mteb_scores(mm.get_model(tmp / "mote", routes=routes), subset)
    assert theirs == pytest.approx(ours, abs=1e-9)
    assert ours != pytest.approx(harness_scores(str(tmp / "mote"), root, datasets="ToySTS,ToyRetrieval"))


def test_ic_baseline_through_mteb_prompts_equals_mote_eval_ic(setup):
    _, root, base, infos = setup
    ours = harness_scores(str(base), root, mode="ic")
    assert mteb_scores(mm.get_model(base, mode="ic"), infos) == pytest.approx(ours, abs=1e-9)
    saved = SentenceTransformer(str(base), device="cpu", prompts=RoutingTable.default().saved_prompts())  # ic arm
    assert mteb_scores(saved, infos) == pytest.approx(ours, abs=1e-9)


def test_bad_mteb_prompt_names_and_routes_are_clear_errors(setup):
    tmp, *_ = setup
    table = RoutingTable.default()
    with pytest.raises(UnknownTaskError, match="maps to no task"):
        table.task_for_prompt_name("BitextMining")
    small = RoutingTable.from_prefixes({"query": "q: ", "document": "d: "})
    with pytest.raises(UnknownTaskError, match="which this table lacks"):
        small.task_for_prompt_name("Classification")
    assert "Classification" not in small.mteb_prompts()
    with pytest.raises(UnknownTaskError, match="not a task of the model"):
        mm.get_model(tmp / "mote", routes={"STS": "nope"})
    with pytest.raises(ValueError, match="side"):
        mm.prompt_aliases({"Retrieval.corpus": "query"})
    enc = mm.get_model(tmp / "mote")
    with pytest.raises(UnknownTaskError, match="has no MoTE route"):
        enc.task_for(mteb.get_task("BUCC").metadata, None)  # bitext mining: no route in the table
    with pytest.raises(ValueError, match="MoTE model"):
        mm.get_model(tmp / "mote", mode="ic")


def test_mote_resolves_mteb_prompt_names_as_tasks(setup):
    tmp, *_ = setup
    model = mote.load(str(tmp / "mote"))
    texts = ["a b c", "how do magnets work"]
    assert model[0].routing.resolve("STS") == ("query", "search_query: ")
    for name, task in (("STS", "query"), ("Classification", "classification"), ("Retrieval-document", "document")):
        assert (model.encode(texts, task=name) == model.encode(texts, task=task)).all()
        assert (model.encode(texts, prompt_name=name) == model.encode(texts, task=task)).all()
    with pytest.raises(UnknownTaskError, match="Unknown task 'Summarization'"):
        model.encode(texts, task="Summarization")
