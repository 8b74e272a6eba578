"""Per-task selection (mote.select): candidates, the search, consolidation, the written model, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_tiny_st
from pydantic import ValidationError
from safetensors.torch import save_model
from sentence_transformers import SentenceTransformer

import mote
from mote.eval.datasets import DatasetInfo
from mote.eval.encoders import DenseEncoder, MoTEEncoder, function_digests
from mote.select.config import SelectConfig
from mote.select.run import build_record, select_run, write_selected
from mote.select.search import ValidationSet, search
from mote.select.weights import BASE, SHARED, SelectionError, Setting, WeightSpace
from mote.train.config import CONFIG_FILE, ConfigError, parse_config
from mote.train.snapshots import META, SNAPSHOTS, WEIGHTS, list_snapshots

TASKS = {"retrieval": {"datasets": ["train-SQuADDev"]}, "classification": {"datasets": ["Banking77Classification"]}}


def _perturb(model, scale: float, experts_only: bool, seed: int) -> None:
    from mote.experts import expert_modules

    hf = model[0].auto_model
    stacked = {id(p) for m in expert_modules(hf) for p in m.parameters(recurse=False)}
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in hf.parameters():
            if experts_only and id(p) not in stacked:
                continue
            p.add_(scale * torch.randn(p.shape, generator=g))


def make_run(tmp_path: Path, tokenizer, trainable: str = "experts") -> Path:
    """A finished-looking run folder: model/ (a perturbed MoTE model), its recipe and one snapshot."""
    base = make_tiny_st(tmp_path, tokenizer, "bert", layers=4)
    run = tmp_path / "run"
    half = mote.convert(base, placement="every-other")
    _perturb(half, 0.05, trainable == "experts", seed=1)
    snap = run / SNAPSHOTS / "step-5"
    snap.mkdir(parents=True)
    save_model(half[0].auto_model, str(snap / WEIGHTS))
    (snap / META).write_text(json.dumps({"step": 5, "fraction": 0.5}))
    _perturb(half, 0.05, trainable == "experts", seed=2)  # the final weights: further along
    half.save(str(run / "model"))
    recipe = parse_config({"model": {"base": base}, "method": {"name": "mote", "placement": "every-other",
                                                                "trainable": trainable},
                           "data": {"holdout": 0.1}, "objectives": TASKS, "train": {"steps": 10}}, check_files=False)
    (run / "model" / CONFIG_FILE).write_text(recipe.to_yaml())
    return run


@pytest.fixture
def run(tmp_path, minilm_tokenizer) -> Path:
    return make_run(tmp_path, minilm_tokenizer)


def _info(name: str, task_type: str) -> DatasetInfo:
    return DatasetInfo(name, task_type, Path("."), {})


SETS = [ValidationSet(_info("r", "Retrieval"), "validation", "in-domain"),
        ValidationSet(_info("c", "Classification"), "validation", "in-domain"),
        ValidationSet(_info("k", "Clustering"), "validation", "in-domain")]


class StubEvaluator:
    """Scores that depend only on the settings in the space: a known answer for the search to find."""

    def __init__(self, space: WeightSpace, rules) -> None:
        self.space, self.rules, self.calls = space, rules, 0

    def score(self, sets, prepend=True):
        self.calls += 1
        cur = {g: (s.label if s is not None else "merged") for g, s in self.space.current.items()}
        return {v.name: self.rules[v.name](cur) for v in sets}


# Each expert has its own best candidate, so no single (global) setting can win every category.
RULES = {
    "r": lambda cur: 60 + 5 * (cur[0] == "final@0.5") + 3 * (cur[1] == "base"),
    "c": lambda cur: 50 + 4 * (cur[2] == "final"),
    "k": lambda cur: 40 - 2 * (cur[3] != "base"),
}


# ------------------------------------------------------------------------------------------------ candidates
def test_snapshots_are_listed_in_step_order(run):
    assert list(list_snapshots(run)) == ["step-5"]


def test_alpha_0_is_the_base_and_alpha_1_the_trained_weights_bitwise(run):
    space = WeightSpace.from_run(run)
    final = space.endpoints["final"]
    name = space.stacked[0]
    space.set_all(Setting("final", 1.0))
    for n, p in space.params.items():
        assert torch.equal(p, final[n]), n
    space.set(1, BASE)
    p = space.params[name]
    assert torch.equal(p[1], space.base[name][1])
    assert torch.equal(p[0], final[name][0]) and torch.equal(p[2], final[name][2])  # only expert 1 moved
    assert not torch.equal(space.base[name][1], final[name][1])  # so the test can fail
    space.set(1, Setting("final", 0.5))
    assert torch.allclose(p[1], (space.base[name][1] + final[name][1]) / 2, atol=1e-7)
    assert space.moved(1)["relative"] == pytest.approx(0.5, abs=1e-5)
    assert not space.shared_trained()  # trainable: experts left the shared weights at the base


def test_an_expert_reset_to_the_base_has_the_base_models_cache_identity(run):
    space = WeightSpace.from_run(run)
    base = SentenceTransformer(str(space.recipe.model.base), device="cpu")
    space.set_all(Setting("final", 1.0))
    space.set(2, BASE)
    module = space.model[0]
    module.set_routing(module.routing.replace("classification", prepend=False))
    digests = function_digests(space.model)
    assert digests[2] == function_digests(base)[None] != digests[0]
    enc, dense = MoTEEncoder(space.model, "m"), DenseEncoder(base, "b")
    assert enc.cache_identity("classification") == dense.cache_identity("classification")
    assert enc.cache_identity("query") != dense.cache_identity("query")
    texts = ["how do magnets work", "a b c"]
    np.testing.assert_array_equal(enc.encode(texts, "classification"), dense.encode(texts, "classification"))
    space.set(0, BASE)  # another expert's change leaves classification's identity alone
    assert MoTEEncoder(space.model, "m").cache_identity("classification") == enc.cache_identity("classification")


# ------------------------------------------------------------------------------------------------ the search
def test_selection_chooses_per_expert_where_a_global_choice_cannot(run):
    space = WeightSpace.from_run(run)
    cfg = SelectConfig(consolidate={"enabled": False})
    result = search(space, SETS, cfg, evaluator=StubEvaluator(space, RULES), log=lambda m: None)
    chosen = {e: s.label for e, s in result.choice.experts.items()}
    assert chosen == {0: "final@0.5", 1: "base", 2: "final", 3: "base"}
    assert result.shared_mode == "base" and result.choice.shared == BASE
    # every global setting misses at least one expert's best: the search did better than the best of them
    assert result.selected.scores == {"r": 68, "c": 54, "k": 40}
    # tasks whose expert (and the shared weights) stayed at the base encode without the instruction prefix
    assert result.choice.prepend == {"query": True, "document": False, "classification": True, "clustering": False}


def test_selection_never_goes_below_the_base_on_a_category(run):
    space = WeightSpace.from_run(run)
    rules = {**RULES, "r": lambda cur: 60 + 20 * (cur[0] == "final") - 30 * (cur[1] == "final")}
    rules["r2"] = lambda cur: 70 - 1 * (cur[0] == "final")  # a second category the query expert also moves
    sets = [*SETS, ValidationSet(_info("r2", "Reranking"), "validation", "in-domain")]
    result = search(space, sets, SelectConfig(consolidate={"enabled": False}),
                    evaluator=StubEvaluator(space, rules), log=lambda m: None)
    # "final" for expert 0 would gain 20 on Retrieval but lose 1 on Reranking: not admissible
    assert result.choice.experts[0].label != "final"
    assert all(result.selected.categories[c] >= result.reference.categories[c] for c in result.reference.categories)


def test_global_mode_chooses_the_shared_weights_like_wise_ft(tmp_path, minilm_tokenizer):
    run = make_run(tmp_path, minilm_tokenizer, trainable="all")
    space = WeightSpace.from_run(run)
    assert space.shared_trained()
    rules = {"r": lambda cur: 60 + 2 * (cur[SHARED] == "final@0.5"), "c": lambda cur: 50, "k": lambda cur: 40}
    result = search(space, SETS, SelectConfig(consolidate={"enabled": False}),
                    evaluator=StubEvaluator(space, rules), log=lambda m: None)
    assert result.shared_mode == "global" and result.choice.shared.label == "final@0.5"
    assert [c.settings[SHARED] for c in result.steps["global"]] == ["base", "final@0.5", "final", "step-5"]


def test_the_choice_under_each_validation_group_is_re_decided_from_the_scored_candidates(run, tmp_path):
    """In-domain rows and out-of-domain sources want different query experts; the record says what each group alone
    keeps (from the candidates already scored), and the view of both groups is the choice that was written."""
    from mote.select.record import choice_by_group, selection_markdown

    space = WeightSpace.from_run(run)
    sets = [ValidationSet(_info("r", "Retrieval"), "validation", "in-domain"),
            ValidationSet(_info("r-ood", "Retrieval"), "validation", "ood"),
            ValidationSet(_info("c", "Classification"), "validation", "in-domain")]
    rules = {"r": lambda cur: 60 + 5 * (cur[0] == "final@0.5") - 1 * (cur[0] == "final"),
             "r-ood": lambda cur: 60 + 5 * (cur[0] == "final"),
             "c": lambda cur: 50 + 4 * (cur[2] == "final")}
    cfg = SelectConfig(consolidate={"enabled": False})
    result = search(space, sets, cfg, evaluator=StubEvaluator(space, rules), log=lambda m: None)
    record = build_record(space, result, cfg, sets, tmp_path / "suite", run)
    by = choice_by_group(record)
    written = {"shared": record["choice"]["shared"], **record["choice"]["experts"]}
    assert {g: by["both"][g] for g in written} == written
    assert by["both"]["0"] == "final@0.5"  # "final" loses a point in-domain: not admissible on both
    assert by["in-domain"]["0"] == "final@0.5" and by["ood"]["0"] == "final"
    assert by["in-domain"]["2"] == "final" and by["ood"]["2"] == "-"  # no ood classification set
    text = selection_markdown(record)
    assert "## The choice under each validation group" in text
    assert "| expert 0 | query | final@0.5 | final@0.5 | final |" in text


def _row(settings, cats):
    """One scored candidate as selection.json records it."""
    return {"settings": settings, "categories": cats, "mean": sum(cats.values()) / len(cats)}


def _record(ref, choice, steps):
    """A minimal selection.json of one query expert, two validation groups, tolerance 0."""
    return {"config": {"tolerance": 0.0}, "validation": {"groups": ["in-domain", "ood"]},
            "reference": {"categories": ref}, "choice": choice, "experts": {"0": {"tasks": ["query"]}},
            "steps": steps}


def test_experts_decided_after_a_different_shared_choice_are_not_recorded():
    from mote.select.record import choice_by_group

    ref = {"in-domain/Retrieval": 50.0, "ood/Retrieval": 50.0}
    record = _record(ref, {"shared": "final", "experts": {"0": "final"}}, {
        "global": [_row({"shared": "base"}, ref),
                   _row({"shared": "final"}, {"in-domain/Retrieval": 58.0, "ood/Retrieval": 51.0}),
                   _row({"shared": "final@0.5"}, {"in-domain/Retrieval": 52.0, "ood/Retrieval": 53.0})],
        "component 0:query": [_row({"0": "base"}, {"in-domain/Retrieval": 58.0, "ood/Retrieval": 51.0}),
                              _row({"0": "final"}, {"in-domain/Retrieval": 57.0, "ood/Retrieval": 54.0})]})
    by = choice_by_group(record)
    assert by["both"] == {"shared": "final", "0": "final"}  # means 54.5 > 52.5 > 50, then 55.5 > 54.5
    assert by["in-domain"] == {"shared": "final", "0": "base"}  # 58 > 52, then 58 > 57
    assert by["ood"] == {"shared": "final@0.5", "0": "n/a"}  # its experts were searched after "final": unscored


def test_the_choice_is_re_decided_under_another_tolerance():
    """A candidate that drops one category 0.5 below the base is vetoed at tolerance 0 and kept at 0.5."""
    from mote.select.record import choice_by_group

    ref = {"in-domain/Retrieval": 50.0, "ood/STS": 70.0}
    record = _record(ref, {"shared": "base", "experts": {"0": "base"}}, {
        "component 0:query": [_row({"0": "base"}, ref),
                              _row({"0": "final"}, {"in-domain/Retrieval": 53.0, "ood/STS": 69.5})]})
    assert choice_by_group(record)["both"]["0"] == "base"
    assert choice_by_group(record, tolerance=0.5)["both"]["0"] == "final"
    assert choice_by_group(record, tolerance=0.49)["both"]["0"] == "base"
    with pytest.raises(ValueError, match="tolerance"):
        choice_by_group(record, tolerance=-1)


def make_dense_run(tmp_path: Path, tokenizer) -> tuple[Path, str]:
    """A finished-looking ic run: a perturbed dense model, its recipe and one snapshot (step 5)."""
    from sentence_transformers import SentenceTransformer

    base = make_tiny_st(tmp_path, tokenizer, "bert", layers=2)
    run = tmp_path / "dense-run"
    model = SentenceTransformer(base, device="cpu")
    for seed in (1, 2):
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for prm in model[0].auto_model.parameters():
                prm.add_(0.05 * torch.randn(prm.shape, generator=g))
        if seed == 1:
            snap = run / SNAPSHOTS / "step-5"
            snap.mkdir(parents=True)
            save_model(model[0].auto_model, str(snap / WEIGHTS))
            (snap / META).write_text(json.dumps({"step": 5, "fraction": 0.5}))
    model.save(str(run / "model"))
    recipe = parse_config({"method": "ic", "model": {"base": base}, "data": {"holdout": 0.1}, "objectives": TASKS,
                           "train": {"steps": 10}}, check_files=False)
    (run / "model" / CONFIG_FILE).write_text(recipe.to_yaml())
    return run, base


@pytest.mark.parametrize("winner", ["base", "final@0.5", "final"])
def test_a_dense_models_wise_ft_choice_is_what_is_written(tmp_path, minilm_tokenizer, winner):
    """IC's global selection: the saved weights are the chosen candidate's, not the sweep's last one (step-5)."""
    run, _ = make_dense_run(tmp_path, minilm_tokenizer)
    space = WeightSpace.from_run(run)
    assert not space.routed and space.shared_trained()
    rules = {"r": lambda cur: 60 + 2 * (cur[SHARED] == winner) - 3 * (cur[SHARED] == "step-5"),
             "c": lambda cur: 50 + (cur[SHARED] == winner), "k": lambda cur: 40}
    result = search(space, SETS, SelectConfig(), evaluator=StubEvaluator(space, rules), log=lambda m: None)
    assert result.choice.shared.label == winner
    assert result.selected.scores == {"r": 62, "c": 51, "k": 40} if winner != "base" else True
    written = {k: v.clone() for k, v in space.model[0].auto_model.state_dict().items()}
    fresh = WeightSpace.from_run(run)
    fresh.set_all(Setting.parse(winner))
    expected = fresh.model[0].auto_model.state_dict()
    assert all(torch.equal(written[k], expected[k]) for k in expected)


def test_selected_weights_that_do_not_score_like_the_choice_are_an_error(tmp_path, minilm_tokenizer, monkeypatch):
    run, _ = make_dense_run(tmp_path, minilm_tokenizer)
    space = WeightSpace.from_run(run)
    rules = {"r": lambda cur: 60 + 2 * (cur[SHARED] == "final@0.5"), "c": lambda cur: 50, "k": lambda cur: 40}
    original, calls = WeightSpace.set_all, []

    def set_all(self, setting):  # the base, the 3 grid settings of the sweep, then the choice: forget the last
        calls.append(setting.label)
        if len(calls) <= 4:
            original(self, setting)

    monkeypatch.setattr(WeightSpace, "set_all", set_all)
    with pytest.raises(SelectionError, match="do not score like the chosen candidate"):
        search(space, SETS, SelectConfig(), evaluator=StubEvaluator(space, rules), log=lambda m: None)
    assert calls == ["base", "final@0.5", "final", "step-5", "final@0.5"]


# ------------------------------------------------------------------------------------------------ consolidation
def test_consolidated_experts_share_one_expert_and_load_in_sentence_transformers(run, tmp_path):
    space = WeightSpace.from_run(run)
    trained = ("final", "merged")  # experts 2 and 3 gain from training; merging them costs clustering 0.1
    rules = {"r": lambda cur: 60 + 5 * (cur[0] == "final") + 3 * (cur[1] == "base"),
             "c": lambda cur: 50 + 4 * (cur[2] in trained),
             "k": lambda cur: 40 + 4 * (cur[3] in trained) - 0.1 * (cur[3] == "merged")}
    free_only = search(space, SETS, SelectConfig(), evaluator=StubEvaluator(space, rules), log=lambda m: None)
    assert free_only.choice.merges == []  # the default merges only identical experts: these differ
    cfg = SelectConfig(consolidate={"enabled": True, "scored": True, "tolerance": 0.25, "max_pairs": 6})
    result = search(space, SETS, cfg, evaluator=StubEvaluator(space, rules), log=lambda m: None)
    assert result.choice.merges == [[2, 3]]
    name = space.stacked[0]
    merged = space.params[name][2].detach().clone()
    torch.testing.assert_close(merged, (space.endpoints["final"][name][2] + space.endpoints["final"][name][3]) / 2)
    out = write_selected(space, result, tmp_path / "selected", build_record(space, result, cfg, SETS, tmp_path, run))
    loaded = SentenceTransformer(str(out), device="cpu")  # after `import mote`: no trust_remote_code
    routing = loaded[0].routing
    assert routing.expert("classification") == routing.expert("clustering")
    assert loaded[0].num_experts == space.num_experts - len(result.choice.merges)
    weight = dict(loaded[0].auto_model.named_parameters())[name]
    assert weight.shape[0] == loaded[0].num_experts
    torch.testing.assert_close(weight[routing.expert("clustering")], merged)
    record = json.loads((out / "selection.json").read_text())
    assert record["consolidation"]["parameters_after"] < record["consolidation"]["parameters_before"]


# ------------------------------------------------------------------------------------------------ writing, bad input
def test_an_interrupted_selection_leaves_no_half_written_folder(run, tmp_path, monkeypatch):
    space = WeightSpace.from_run(run)
    result = search(space, SETS, SelectConfig(), evaluator=StubEvaluator(space, RULES), log=lambda m: None)
    record = build_record(space, result, SelectConfig(), SETS, tmp_path, run)

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("mote.select.run.selection_markdown", boom)
    out = tmp_path / "selected"
    with pytest.raises(KeyboardInterrupt):
        write_selected(space, result, out, record)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".selected")]


def test_a_test_split_for_selection_is_refused_with_the_reason():
    with pytest.raises(ValidationError, match="test split.*optimistic"):
        SelectConfig(datasets=[{"name": "STSBenchmark", "split": "test"}])
    with pytest.raises(ConfigError, match="test split"):
        parse_config({"objectives": TASKS, "data": {"holdout": 0.1},
                      "select": {"enabled": True, "datasets": [{"name": "EmotionClassification", "split": "test"}]}},
                     check_files=False)


def test_selection_refuses_validation_rows_the_run_trained_on():
    with pytest.raises(ConfigError, match="data.holdout"):
        parse_config({"objectives": TASKS, "data": {"holdout": 0}, "select": {"enabled": True}}, check_files=False)
    ood_trained = {**TASKS, "symmetric": {"datasets": ["train-AltLexWikiSimple"]}}
    with pytest.raises(ConfigError, match="train-AltLexWikiSimple"):  # the shared suite holds it out whole
        parse_config({"objectives": ood_trained, "data": {"holdout": 0.1},
                      "select": {"enabled": True, "suite": "shared"}},
                     check_files=False)
    ok = parse_config({"objectives": ood_trained, "data": {"holdout": 0.1},
                       "select": {"enabled": True, "suite": "shared", "validation": "in-domain"}}, check_files=False)
    assert ok.select.enabled
    own = parse_config({"objectives": ood_trained}, check_files=False)  # the default: its own held-out rows
    assert own.selects() and own.select.suite == "recipe"


def test_unfinished_or_token_routed_runs_are_refused(tmp_path):
    with pytest.raises(SelectionError, match="no trained/ or model/"):
        WeightSpace.from_run(tmp_path)
    with pytest.raises(FileExistsError):
        (tmp_path / "out").mkdir()
        select_run(tmp_path, tmp_path / "out")


# ------------------------------------------------------------------------------------------------ end to end
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def test_train_then_select_end_to_end_on_the_real_validation_suite(tmp_path, one_torch_thread, capsys):
    """A tiny model trained for a few steps (snapshots kept), selected on the real validation suite built from
    ../shared/data (CI always has it: no skip), written, loaded, exported and shown by `mote info`."""
    from tiny_train import tiny_config, write_tiny_data, write_tiny_model

    from mote.cli import main
    from mote.export import export_dense
    from mote.train.trainer import run_training

    assert SHARED_DATA.is_dir(), f"{SHARED_DATA} is missing: the selection test needs the shared training data"
    base = write_tiny_model(tmp_path / "bert", layers=2)
    root = write_tiny_data(tmp_path / "data")
    raw = tiny_config(base, root, method={"name": "mote", "placement": "every-other", "trainable": "experts"},
                      data={"data_dir": str(root), "holdout": 0.1}, train={"steps": 4, "batch_size": 8})
    cfg = parse_config(raw, check_files=True)
    result = run_training(cfg, tmp_path / "run")
    assert list(list_snapshots(tmp_path / "run")) == ["step-2"]  # select.snapshots [0.5] of 4 steps
    assert result.model_dir == tmp_path / "run" / "model"  # trained without selection: model/ is the trained model

    select_cfg = SelectConfig(alphas=[1.0], snapshots=[0.5], consolidate={"max_pairs": 1}, suite="shared")
    out = select_run(result.output_dir, None, select_cfg, data_dir=SHARED_DATA, cache=tmp_path / "cache",
                     log=lambda m: None)
    assert out == tmp_path / "run" / "model"
    assert (tmp_path / "run" / "trained" / "modules.json").is_file()  # the raw weights moved aside, not lost
    record = json.loads((out / "selection.json").read_text())
    ref, sel = record["reference"]["categories"], record["selected"]["categories"]
    assert set(ref) == {"in-domain/Classification", "in-domain/Clustering", "in-domain/Reranking",
                        "in-domain/Retrieval", "ood/Classification", "ood/Clustering", "ood/Retrieval"}
    assert all(sel[c] >= ref[c] for c in ref)  # the plain base is a candidate: never below it on validation
    assert record["shared_mode"] == "base"  # trainable: experts left the shared weights alone
    assert set(record["grid"]) == {"base", "final", "step-2"}
    model = mote.load(out)
    emb = mote.encode(model, ["how do magnets work"], task="query")
    assert emb.shape == (1, 32)
    export_dense(out, "classification", tmp_path / "dense-cls")
    assert (tmp_path / "dense-cls" / "modules.json").is_file()
    assert main(["info", str(out)]) == 0
    assert "selection (validation: in-domain, ood" in capsys.readouterr().out
