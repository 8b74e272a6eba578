"""mote-lab reproduce: experiment validation, plan expansion, a tiny resumable reproduction, the report's numbers."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_eval_support import make_data_dir
from tiny_train import tiny_config, write_tiny_data, write_tiny_model

from mote_lab import ExperimentConfigError, load_experiment, make_plan, parse_experiment
from mote_lab.config import deep_merge
from mote_lab.report import fmt, write_report
from mote_lab.runner import (
    DONE,
    EVAL_MARKER,
    ReproductionInterrupted,
    StaleRunError,
    plan_status,
    run_reproduction,
)
from mote_lab.summary import OVERALL, mean_std, summarize

TOY = ["ToySTS", "ToyClassification", "ToyClustering", "ToyPairs", "ToyReranking", "ToyRetrieval"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: threads only add overhead


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny random BERT and one data folder with the tiny training sets and the toy evaluation sets."""
    root = tmp_path_factory.mktemp("exp")
    data = write_tiny_data(root / "data")
    make_data_dir(data)  # ToyClassification becomes an eval set (its train split still trains)
    return write_tiny_model(root / "bert"), data


def experiment(base: str, data: Path, cache: Path, **over) -> dict:
    recipe = tiny_config(base, data, train={"steps": 2, "batch_size": 8, "learning_rate": 1e-3, "warmup_ratio": 0.0},
                         checkpoint={"every": 1, "keep": 1})
    recipe.pop("method")  # each arm names its method
    recipe.pop("seed")
    raw = {
        "name": "tiny",
        "training": recipe,  # an inline recipe (no recipe file)
        "arms": {
            "ic": {"method": "ic"},
            "mote": {"method": {"name": "mote", "placement": "every"}, "label": "mote (EB)"},
            "mote-eob": {"method": {"name": "mote", "placement": "every-other"}},
            "mote-1": {"method": "mote", "overrides": {"method": {"placement": "1"}}},  # settings as overrides
        },
        "models": {"tiny": {"base": base, "arms": ["ic", "mote"], "seeds": [1], "arm_seeds": {"mote": [1, 2]}}},
        "eval": {"datasets": TOY, "split": "test", "data_dir": str(data), "cache": str(cache), "batch_size": 8},
        "similarity": {"runs": ["base-ic", "ic", "mote"], "datasets": ["ToySTS"], "texts_per_dataset": 6},
        "throughput": {"datasets": ["ToySTS"], "texts": 16, "rounds": 1, "chunk": 8, "batch_size": 8},
        "report": {"n_boot": 20, "significance": [["mote", "ic"]]},
        "device": "cpu",
    }
    return deep_merge(raw, over)


# ------------------------------------------------------------------------------------------------ config
def test_every_problem_of_the_experiment_is_listed_at_once(tiny, tmp_path):
    base, data = tiny
    raw = experiment(base, data, tmp_path / "cache")
    raw["arms"]["bad"] = {"method": "no-such-method"}
    raw["arms"]["base"] = {"method": "ic", "colour": "red"}
    raw["models"]["tiny"]["arms"] = ["ic", "mote", "missing", "bad"]
    raw["models"]["tiny"]["arm_seeds"] = {"mote": [3, 3]}
    raw["training"]["train"]["steps"] = 0
    raw["eval"]["datasets"] = ["ToySTS", "NoSuchSet"]
    raw["similarity"]["runs"] = ["nobody"]
    raw["eval"]["spilt"] = "test"
    with pytest.raises(ExperimentConfigError) as err:
        parse_experiment(raw, tmp_path / "x.yaml")
    text = "\n".join(err.value.problems)
    for needle in (
        "arms.base.colour: Extra inputs",  # unknown key
        "arms.bad: unknown method 'no-such-method'",  # the method list from mote.methods, not hard-coded
        "arms.base: ['base', 'base-ic'] name the untrained baselines",
        "models.tiny.arms: ['missing'] not defined under arms",
        "seeds of mote repeat",
        "training recipe of tiny/ic, tiny/mote: train.steps",  # mote.train's validation of every run's recipe
        "unknown evaluation dataset(s) ['NoSuchSet']",
        "similarity.runs: ['nobody']",
        "eval.spilt: Extra inputs",
    ):
        assert needle in text, (needle, text)
    assert "in " + str(tmp_path / "x.yaml") in str(err.value)
    old = experiment(base, data, tmp_path)
    old["arms"]["ic"] = {"arm": "ic"}  # the earlier spelling
    old["arms"]["mote"]["overrides"] = {"model": {"placement": "every"}}
    with pytest.raises(ExperimentConfigError) as err:
        parse_experiment(old, budget="small")
    assert err.value.problems == ["arms.ic: `arm: ic` is now `method: ic`"]
    del old["arms"]["ic"]["arm"]
    with pytest.raises(ExperimentConfigError, match=r"training recipe of tiny/mote: `model.placement` is now "
                                                    r"`method.placement`"):
        parse_experiment(old, budget="small")
    with pytest.raises(ExperimentConfigError, match=r"budgets: .*lab/budgets/<budget>\.yaml") as err:
        parse_experiment({**experiment(base, data, tmp_path), "budgets": {"small": {}}})  # the earlier layout
    assert len(err.value.problems) == 1
    with pytest.raises(ExperimentConfigError, match="split"):  # a split the datasets do not have
        parse_experiment(experiment(base, data, tmp_path, eval={"split": "validation"}), budget="small")


def test_recipe_file_and_training_section(tiny, tmp_path):
    base, data = tiny
    raw = experiment(base, data, tmp_path / "cache")
    recipe = raw.pop("training")
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    raw["recipe"] = "recipe.yaml"  # relative to the experiment file
    raw["training"] = {"train": {"learning_rate": 5e-4}}
    (tmp_path / "big.yaml").write_text(yaml.safe_dump(raw))
    big = load_experiment(tmp_path / "big.yaml")
    assert big.budget == "big"  # the file's stem names it (and its output folder)
    assert big.run_config("tiny", "ic", 1).train.steps == 2  # mappings merge: training: keeps the recipe's rest
    assert big.run_config("tiny", "ic", 1).train.learning_rate == 5e-4
    assert deep_merge({"a": {"b": 1, "c": [1, 2]}}, {"a": {"c": [3]}}) == {"a": {"b": 1, "c": [3]}}  # lists replace


def test_validation_budget_holds_rows_out_of_every_run(tiny, tmp_path, monkeypatch):
    """eval.validation: every run trains with data.holdout, and the evaluation is the held-out suite, not test."""
    from mote.eval import validation

    base, data = tiny
    monkeypatch.setenv("MOTE_CACHE", str(tmp_path / "cache"))
    built = []
    monkeypatch.setattr(validation, "build_validation_suite", lambda root, out, f: built.append((out, f)))
    raw = experiment(base, data, tmp_path / "cache", similarity={"enabled": False}, throughput={"enabled": False})
    tune = deep_merge(raw, {"eval": {"validation": 0.2, "datasets": None}})
    cfg = parse_experiment(tune, check_files=False)
    assert cfg.eval.split == "validation" and cfg.eval.datasets == list(validation.DATASETS)
    assert cfg.eval.routes == validation.ROUTES
    assert cfg.eval_data_dir() == str(tmp_path / "cache" / "validation-holdout-0.2")
    assert {cfg.run_config("tiny", a, 1).data.holdout for a in ("ic", "mote")} == {0.2}
    assert parse_experiment(raw, check_files=False).run_config("tiny", "ic", 1).data.holdout == 0
    with pytest.raises(ExperimentConfigError, match="eval.validation"):
        parse_experiment(deep_merge(raw, {"eval": {"validation": 1.5}}), check_files=False)
    # with the data checks the suite is built from the training data (here: recorded, not built)
    with pytest.raises(ExperimentConfigError):  # the toy data folder has none of the suite's datasets
        parse_experiment(tune)
    assert built == [(str(tmp_path / "cache" / "validation-holdout-0.2"), 0.2)]


def test_report_path_comes_from_the_file(tiny, tmp_path):
    base, data = tiny
    raw = experiment(base, data, tmp_path / "cache")
    big = deep_merge(raw, {"report": {"path": "docs/results-big.md"}})
    assert parse_experiment(big, check_files=False).report.path == "docs/results-big.md"
    assert parse_experiment(raw, check_files=False).report.path == "docs/results.md"


# ------------------------------------------------------------------------------------------------ plan
def test_plan_expands_blocks_arms_and_seeds_seed_major(tiny, tmp_path):
    base, data = tiny
    raw = experiment(base, data, tmp_path / "cache")
    raw["models"]["tiny"]["arms"] = ["ic", "mote", "mote-eob"]
    raw["models"]["tiny"]["arm_seeds"] = {"mote": [1, 2, 3]}
    raw["models"]["off"] = {"base": base, "arms": ["ic"], "enabled": False}
    cfg = parse_experiment(raw, budget="small")
    plan = make_plan(cfg, tmp_path / "out")
    keys = [s.key for s in plan.steps()]
    assert keys == [
        "tiny/base", "tiny/base-ic",
        "tiny/ic/seed-1", "tiny/ic/seed-1", "tiny/mote/seed-1", "tiny/mote/seed-1", "tiny/mote-eob/seed-1",
        "tiny/mote-eob/seed-1", "tiny/mote/seed-2", "tiny/mote/seed-2", "tiny/mote/seed-3", "tiny/mote/seed-3",
    ]  # every arm once before any arm twice; each training followed by its evaluation; disabled block left out
    assert [type(s).__name__ for s in plan.steps()[2:4]] == ["TrainRun", "EvalRun"]
    assert plan.trainings[0].dir == tmp_path / "out" / "tiny" / "train" / "ic" / "seed-1"
    assert [e.seed for e in plan.evals_of("tiny", "mote")] == [1, 2, 3]
    # one recipe, per-arm differences only where the arm says so; base and seed forced by the plan
    eb, eob, ic = (cfg.run_config("tiny", a, 2) for a in ("mote", "mote-eob", "ic"))
    assert (eb.method.name, eb.method.placement, eb.seed, eb.model.base) == ("mote", "every", 2, base)
    assert (eob.method.name, eob.method.placement) == ("mote", "every-other")
    assert eb.method.trainable == eob.method.trainable == "all"  # LAB_BASE_METHOD, for the methods that have it
    assert cfg.run_config("tiny", "mote-1", 2).method.placement == "1"
    assert ic.method.model_dump() == {"name": "ic"} and ic.train == eb.train and ic.objectives == eb.objectives
    assert cfg.arm_label("mote") == "mote (EB)" and cfg.arm_label("base-ic") == "base+prefix"


# ------------------------------------------------------------------------------------------------ running
class CountingTrainer:
    """``mote.train.run_training`` that records its calls; ``interrupt`` = a run to stop with Ctrl-C at step 1."""

    def __init__(self, interrupt: str | None = None) -> None:
        self.calls: list[tuple[str, bool]] = []
        self.interrupt = interrupt

    def __call__(self, cfg, output, resume=False):
        from transformers import TrainerCallback

        from mote.train import run_training

        key = Path(output).relative_to(Path(output).parents[3]).as_posix()
        self.calls.append((key, resume))

        class CtrlC(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                if state.global_step == 0:
                    os.kill(os.getpid(), signal.SIGINT)  # GracefulInterrupt: checkpoint after this step, stop

        return run_training(cfg, output, resume=resume, callbacks=[CtrlC()] if key == self.interrupt else None)


def test_reproduction_resumes_a_killed_training_and_reuses_finished_work(tiny, tmp_path, capsys):
    base, data = tiny
    cfg = parse_experiment(experiment(base, data, tmp_path / "cache"), budget="small")
    root, report = tmp_path / "runs" / "small", tmp_path / "docs" / "results.md"
    plan = make_plan(cfg, root)

    # 1. Ctrl-C in the second training: a checkpoint, no model; the same command continues from there
    with pytest.raises(ReproductionInterrupted, match="tiny/mote/seed-1 stopped at step 1"):
        run_reproduction(cfg, root, report=report, trainer=CountingTrainer(interrupt="tiny/train/mote/seed-1"))
    states = {(s.kind, s.key): s.state for s in plan_status(plan)}
    assert states[("train", "tiny/ic/seed-1")] == "done" and states[("eval", "tiny/ic/seed-1")] == "done"
    assert states[("train", "tiny/mote/seed-1")] == "resume" and not (root / "tiny/train/mote/seed-1/model").exists()
    trainer = CountingTrainer()
    run_reproduction(cfg, root, report=report, trainer=trainer)
    assert trainer.calls == [("tiny/train/mote/seed-1", True), ("tiny/train/mote/seed-2", False)]
    for t in plan.trainings:
        assert (t.model_dir / "modules.json").is_file() and json.loads((t.dir / DONE).read_text())["run_id"]
        assert not (t.dir / "checkpoints").exists()  # a finished run keeps its model only
    for e in plan.evaluations:
        assert set(json.loads((e.dir / "results.json").read_text())["datasets"]) == set(TOY)
    mote_results = json.loads((root / "tiny/eval/mote/seed-1/results.json").read_text())
    ic_results = json.loads((root / "tiny/eval/ic/seed-1/results.json").read_text())
    assert mote_results["encoder"]["kind"] == "mote" and ic_results["encoder"]["kind"] == "ic"
    measured = json.loads((root / "measurements.json").read_text())["models"]
    assert set(measured) == {"tiny/base", "tiny/ic", "tiny/mote"}
    assert measured["tiny/mote"]["total"] > measured["tiny/mote"]["active"] == measured["tiny/base"]["active"]
    assert measured["tiny/ic"]["total"] == measured["tiny/base"]["total"] and measured["tiny/mote"]["single_per_s"] > 0
    md = report.read_text()
    for needle in ("## Headline", "#### Per dataset", "#### Per category and overall", "#### Gain over the untrained",
                   "#### Significance: mote (EB) vs ic", "Wilcoxon", "### Inter-task similarity",
                   "### Training curves", "### Parameters and encode throughput", "mote (EB) (2 seeds)"):
        assert needle in md, needle
    figs = report.with_suffix("")
    for png in ("tiny-gains.png", "tiny-training.png", "tiny-similarity.png"):
        assert (figs / png).read_bytes()[:4] == b"\x89PNG", png
    assert (figs / "raw" / "tiny" / "mote-seed2.json").is_file()

    # 2. again: nothing is trained or evaluated again
    stamps = {e.key: (e.dir / "results.json").stat().st_mtime_ns for e in plan.evaluations}
    capsys.readouterr()
    trainer = CountingTrainer()
    run_reproduction(cfg, root, report=report, trainer=trainer)
    assert trainer.calls == []
    assert stamps == {e.key: (e.dir / "results.json").stat().st_mtime_ns for e in plan.evaluations}
    out = capsys.readouterr().out
    assert len(re.findall(r"\(\d+/8\) (train|eval) \S+: reused", out)) == len(plan.steps()) == 8
    assert "tiny/similarity/mote: reused" in out and "parameters and encode throughput: reused" in out
    assert {s.state for s in plan_status(plan)} == {"done"}

    # 3. the recipe changed under a finished run: an error that names the section, never a silent reuse
    changed = parse_experiment(experiment(base, data, tmp_path / "cache", training={"train": {"steps": 3}}),
                               budget="small")
    with pytest.raises(StaleRunError, match=r"sections \['train'"):
        run_reproduction(changed, root, report=None, trainer=CountingTrainer())


def test_cli_dry_run_lists_the_plan(tiny, tmp_path, capsys):
    from mote_lab.cli import main

    base, data = tiny
    big = experiment(base, data, tmp_path / "cache", training={"train": {"steps": 3}}, models={"tiny": {"seeds": [5]}})
    (tmp_path / "big.yaml").write_text(yaml.safe_dump(big))
    assert main(["reproduce", str(tmp_path / "big.yaml"), "--output", str(tmp_path / "r"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"budget big -> {tmp_path / 'r' / 'big'}" in out  # the file's stem names the output folder
    assert "train tiny/ic/seed-5" in out and "train tiny/mote/seed-2" in out and "5 todo, 3 waiting" in out
    assert not (tmp_path / "r").exists()
    # the earlier --budget: one line naming the file to run instead
    assert main(["reproduce", str(tmp_path / "big.yaml"), "--budget", "small", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "lab/budgets/small.yaml" in err


# ------------------------------------------------------------------------------------------------ report numbers
def test_summary_means_stds_and_gains():
    tt = {"S1": "STS", "S2": "STS", "R1": "Retrieval"}
    runs = {
        "base": [{"S1": 80.0, "S2": 70.0, "R1": 50.0}],
        "ic": [{"S1": 81.0, "S2": 71.0, "R1": 52.0}, {"S1": 83.0, "S2": 71.0, "R1": 54.0}],
        "partial": [{"S1": 90.0}],
    }
    s = summarize(runs, tt)
    assert s.datasets == ["S1", "S2", "R1"] and s.categories == ["STS", "Retrieval"]
    assert s.per_dataset["ic"]["S1"] == pytest.approx((82.0, np.std([81, 83], ddof=1), 2))
    assert s.per_dataset["base"]["S1"] == (80.0, None, 1)
    # ic per seed: STS 76 / 77, Retrieval 52 / 54; over datasets 68 / 69.333; over categories 64 / 65.5
    assert s.per_category["ic"]["STS"][0] == pytest.approx(76.5)
    assert s.per_category["ic"][OVERALL[0]][0] == pytest.approx((68 + 208 / 3) / 2)
    assert s.per_category["ic"][OVERALL[1]][0] == pytest.approx(64.75)
    # base: STS 75, Retrieval 50, over datasets 66.667, over categories 62.5
    assert s.gains["ic"]["STS"][0] == pytest.approx(1.5) and s.gains["ic"]["Retrieval"][0] == pytest.approx(3.0)
    assert s.gains["ic"]["Retrieval"][1] == pytest.approx(np.std([2.0, 4.0], ddof=1))
    assert s.gains["ic"][OVERALL[1]][0] == pytest.approx(64.75 - 62.5)
    assert s.per_category["partial"]["STS"] == (None, None, 0)  # a missing dataset: no aggregate at all
    assert s.gains["partial"][OVERALL[0]] == (None, None, 0)
    assert fmt(s.gains["ic"]["STS"], signed=True) == "+1.50 ± 0.71" and fmt((None, None, 0)) == "–"
    assert mean_std([1.0, None, 3.0]) == (2.0, pytest.approx(np.sqrt(2)), 2)


def test_validation_tables_give_each_groups_mean_and_gain():
    """A validation report (categories "X (in-domain)" / "X (ood)") has one mean and one gain row per group."""
    from mote_lab.config import load_experiment
    from mote_lab.report import summary_markdown

    exp = load_experiment(Path(__file__).resolve().parents[1] / "lab" / "budgets" / "choose.yaml", check_files=False)
    tt = {"a": "Classification (in-domain)", "b": "Retrieval (in-domain)", "c": "Retrieval (ood)"}
    s = summarize({"base": [{"a": 50.0, "b": 70.0, "c": 90.0}], "ic": [{"a": 54.0, "b": 70.0, "c": 88.0}]}, tt)
    md = summary_markdown(exp, s)
    assert "| **mean over in-domain categories** | 2 | 60.00 | 62.00 |" in md
    assert "| **mean over ood categories** | 1 | 90.00 | 88.00 |" in md
    assert "| **mean over in-domain categories** | +2.00 |" in md and "| **mean over ood categories** | -2.00 |" in md
    plain = summary_markdown(exp, summarize({"base": [{"a": 1.0}], "ic": [{"a": 2.0}]}, {"a": "STS"}))
    assert not any("mean over in-domain" in line for line in plain)


def test_headline_of_a_pair_against_the_base_shows_the_gain():
    """A report whose first significance pair is (arm, base) gets a headline table, not an empty one."""
    from mote_lab.config import load_experiment
    from mote_lab.report import _headline
    from mote_lab.significance import Significance

    exp = load_experiment(Path(__file__).resolve().parents[1] / "lab" / "budgets" / "headline.yaml",
                          check_files=False)
    s = summarize({"base": [{"r": 50.0, "t": 70.0}], "mote-sel": [{"r": 52.0, "t": 70.0}]},
                  {"r": "Retrieval", "t": "STS"})
    sig = Significance("mote-sel", "base", [42], [], ["r", "t"], dict(s.task_type), {}, {OVERALL[0]: (1.0, None, 1)},
                       None)
    md = "\n".join(_headline(exp, "minilm-l6", s, sig))
    assert "| mean over datasets | +1.00 | +0.00 | +1.00 |" in md
    assert "| Retrieval | +2.00 | +0.00 | – |" in md


def _fake_results(folder: Path, name: str, scores: dict[str, float], task_type: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    results = {
        "format": 1, "model": name, "model_identity": name, "encoder": {"kind": "fake"}, "seconds": 1.0,
        "data": {"dir": "/data", "split": "test", "datasets": {d: {"task_type": t, "files": {"test": "x"}}
                                                                for d, t in task_type.items()}},
        "environment": {"mote": "0.1.0"},
        "datasets": {d: {"task_type": task_type[d], "main_metric": "m", "main_score": v, "split": "test",
                         "metrics": {"m": v}, "seconds": 0.1, "n_items": 10, "routes": {}} for d, v in scores.items()},
    }
    (folder / "results.json").write_text(json.dumps(results))
    (folder / EVAL_MARKER).write_text(json.dumps({"key": "fake"}))


def test_report_from_fake_results_has_the_right_numbers(tiny, tmp_path):
    base, data = tiny
    raw = experiment(base, data, tmp_path / "cache", similarity={"enabled": False}, throughput={"enabled": False})
    raw["models"]["tiny"]["arm_seeds"] = {"ic": [1, 2], "mote": [1, 2]}
    raw["report"]["notes"] = ["The recipe was chosen on validation rows."]
    cfg = parse_experiment(raw, budget="small")
    plan = make_plan(cfg, tmp_path / "runs")
    tt = {"ToySTS": "STS", "ToyRetrieval": "Retrieval", "ToyReranking": "Reranking"}
    scores = {
        ("base", None): [70.0, 40.0, 50.0],
        ("base-ic", None): [69.0, 41.0, 50.0],
        ("ic", 1): [71.0, 42.0, 51.0], ("ic", 2): [73.0, 44.0, 51.0],
        ("mote", 1): [72.0, 46.0, 52.0], ("mote", 2): [72.0, 48.0, 54.0],
    }
    for e in plan.evaluations:
        _fake_results(e.dir, e.key, dict(zip(tt, scores[(e.arm, e.seed)])), tt)
    report = write_report(plan, tmp_path / "docs" / "results.md")
    md = report.read_text()
    # per dataset: mean ± sample std over the two seeds
    assert "| STS | ToySTS | m | 70.00 | 69.00 | 72.00 ± 1.41 | 72.00 ± 0.00 |" in md
    assert "| Retrieval | ToyRetrieval | m | 40.00 | 41.00 | 43.00 ± 1.41 | 47.00 ± 1.41 |" in md
    # gains over base: retrieval ic +3 ± 1.41, mote +7 ± 1.41; over datasets (base 53.33) ic seeds +1.33 / +2.67,
    # mote +3.33 / +4.67
    assert "| Retrieval | +1.00 | +3.00 ± 1.41 | +7.00 ± 1.41 |" in md
    assert "| **mean over datasets** | +0.00 | +2.00 ± 0.94 | +4.00 ± 0.94 |" in md
    # mote vs ic paired by seed: per dataset Δ (seed 1: +1, +4, +1; seed 2: -1, +4, +3)
    assert "| STS | ToySTS | +0.00 ± 1.41 |" in md and "| Retrieval | ToyRetrieval | +4.00 ± 0.00 |" in md
    assert "Across 3 datasets (seed-mean Δ): 2 wins, 0 losses, 1 ties" in md
    assert "| mote (EB) gain | ic gain | mote (EB) − ic |" in md  # the headline table
    assert "| Retrieval | +7.00 ± 1.41 | +3.00 ± 1.41 | +4.00 ± 0.00 |" in md
    assert md.index("The recipe was chosen on validation rows.") < md.index("## tiny")  # notes follow the headline
    assert (report.with_suffix("") / "tiny-gains.png").read_bytes()[:4] == b"\x89PNG"


def test_selected_arms_select_after_their_source_and_are_reused(tiny, tmp_path, monkeypatch):
    """A selected arm (select_from) runs `mote select` on its source arm's run of the same seed, after it; a
    finished selection is reused, a changed selection option re-selects; a bad source is a config error."""
    import shutil

    base, data = tiny
    calls = []

    def fake_select_run(run_dir, output, cfg, overwrite=False, **kw):  # the search itself: tests/test_select.py
        calls.append((Path(run_dir).as_posix().split("/train/")[1], tuple(cfg.alphas)))
        if Path(output).exists():
            shutil.rmtree(output)
        shutil.copytree(Path(run_dir) / "model", output)
        ref = {"categories": {"in-domain/STS": 70.0, "ood/STS": 60.0}, "mean": 65.0}
        steps = {"global": [{"settings": {"shared": "base"}, **ref},
                            {"settings": {"shared": "final"}, "categories": {"in-domain/STS": 71.0, "ood/STS": 59.0},
                             "mean": 65.0}]}
        (Path(output) / "selection.json").write_text(json.dumps({
            "choice": {"shared": "base", "experts": {}, "prepend": {"*": False}, "merges": []}, "experts": {},
            "reference": ref, "selected": ref, "steps": steps, "config": {"tolerance": 0.0},
            "validation": {"groups": ["in-domain", "ood"]}}))
        return Path(output)

    monkeypatch.setattr("mote.select.run.select_run", fake_select_run)
    over = {"arms": {"ic-wise": {"select_from": "ic", "label": "ic + WiSE-FT", "select": {"alphas": [0.5, 1.0]}}},
            "models": {"tiny": {"arms": ["ic", "ic-wise"]}}, "similarity": {"enabled": False},
            "throughput": {"enabled": False}, "report": {"significance": [["ic-wise", "base"]]}}
    def exp(over):
        raw = experiment(base, data, tmp_path / "cache", **over)
        raw["models"]["tiny"]["arm_seeds"] = {}
        return raw

    cfg = parse_experiment(exp(over), budget="small")
    root = tmp_path / "runs"
    plan = make_plan(cfg, root)
    assert [(t.key, t.source.key if t.source else None) for t in plan.trainings] == [
        ("tiny/ic/seed-1", None), ("tiny/ic-wise/seed-1", "tiny/ic/seed-1")]
    run_reproduction(cfg, root, report=tmp_path / "r.md", trainer=CountingTrainer())
    assert calls == [("ic/seed-1", (0.5, 1.0))]
    ev = json.loads((root / "tiny/eval/ic-wise/seed-1/results.json").read_text())
    assert ev["encoder"]["kind"] == "dense"  # selected back to the base: evaluated without the prefixes
    md = (tmp_path / "r.md").read_text()
    assert "ic + WiSE-FT" in md
    # what selection kept, under both groups (written) and each alone: in-domain alone would keep "final"
    assert "| 1 | base (final / base) | - | 65.00 -> 65.00 |" in md
    run_reproduction(cfg, root, report=None, trainer=CountingTrainer())
    assert len(calls) == 1  # reused
    assert {s.kind: s.state for s in plan_status(plan)}["select"] == "done"
    over["arms"]["ic-wise"]["select"] = {"alphas": [1.0]}
    changed = parse_experiment(exp(over), budget="small")
    run_reproduction(changed, root, report=None, trainer=CountingTrainer())
    assert calls[-1] == ("ic/seed-1", (1.0,))

    bad = deep_merge(over, {"arms": {"ic-wise": {"select_from": "nobody"}},
                            "models": {"tiny": {"arms": ["ic-wise", "ic"]}}})
    with pytest.raises(ExperimentConfigError, match=r"select_from: 'nobody' is not a trained arm"):
        parse_experiment(exp(bad), budget="small")
    bad = deep_merge(over, {"models": {"tiny": {"arms": ["ic-wise", "ic"]}}})
    with pytest.raises(ExperimentConfigError, match="must be listed before it"):
        parse_experiment(exp(bad), budget="small")


def test_report_swaps_figures_and_markdown_in_together(tiny, tmp_path, monkeypatch):
    """A report rewritten over an older one, interrupted before each rename: the Markdown in place (old or new)
    always has every figure it links; once finished, the old report's figures that the new one lacks are gone."""
    import os
    import re as _re

    base, data = tiny
    raw = experiment(base, data, tmp_path / "cache", similarity={"enabled": False}, throughput={"enabled": False})
    plan = make_plan(parse_experiment(raw, budget="small"), tmp_path / "runs")
    tt = {"ToySTS": "STS", "ToyRetrieval": "Retrieval"}
    for e in plan.evaluations:
        _fake_results(e.dir, e.key, {"ToySTS": 70.0 + (e.seed or 0), "ToyRetrieval": 40.0}, tt)

    class Killed(BaseException):
        pass

    def linked_figures_exist(report):
        md = report.read_text()
        links = _re.findall(r"\]\((results/[^)]+)\)", md)
        assert links
        return all((report.parent / link).is_file() for link in links)

    for k in range(1, 40):
        docs = tmp_path / f"docs{k}"
        figdir = docs / "results"
        figdir.mkdir(parents=True)
        (figdir / ".generated-by-mote-reproduce").write_text("x")
        (figdir / "old-block-gains.png").write_bytes(b"\x89PNG old")
        (docs / "results.md").write_text("# old\n\n![old](results/old-block-gains.png)\n")
        calls = [0]

        def replace(*args, _calls=calls, _k=k, _original=os.replace, **kwargs):
            _calls[0] += 1
            if _calls[0] == _k:
                raise Killed
            return _original(*args, **kwargs)

        monkeypatch.setattr(os, "replace", replace)
        try:
            write_report(plan, docs / "results.md")
            finished = True
        except Killed:
            finished = False
        monkeypatch.undo()
        assert linked_figures_exist(docs / "results.md"), k
        if finished:
            assert "# old" not in (docs / "results.md").read_text()
            assert not (figdir / "old-block-gains.png").exists()
            assert not [p for p in docs.iterdir() if p.name.startswith(".")]  # no staging left behind
            break
    else:
        pytest.fail("write_report never finished")
    assert k > 2


def test_what_selection_kept_reports_the_parameters_a_merge_saved(tmp_path):
    """A consolidated selection shows which experts merged and the total parameters before -> after."""
    from types import SimpleNamespace

    from mote_lab.choices import selection_lines

    ref = {"categories": {"in-domain/Retrieval": 80.0}, "mean": 80.0}
    record = {
        "choice": {"shared": "base", "experts": {"0": "base", "1": "base"}, "merges": [[0, 1]]},
        "experts": {"0": {"tasks": ["query"]}, "1": {"tasks": ["document"]}},
        "consolidation": {"merges": [[0, 1]], "parameters_before": 33_361_152, "parameters_after": 29_811_840},
        "reference": ref, "selected": ref, "config": {"tolerance": 0.0}, "validation": {"groups": ["in-domain"]},
        "steps": {"component 0:query+1:document": [{"settings": {"0": "base", "1": "base"}, **ref}]},
    }
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "selection.json").write_text(json.dumps(record))
    run = SimpleNamespace(model="m", arm="sel", seed=7, source=object(), model_dir=model_dir)
    config = SimpleNamespace(arm_label=lambda a: a, arms={"sel": SimpleNamespace(select_from="x")})
    lines = selection_lines(SimpleNamespace(config=config, trainings=[run]), "m")
    row = "| 7 | base (base) | base (base) | base (base) | query+document (33.36M -> 29.81M params) | 80.00 -> 80.00 |"
    assert row in lines


def test_the_lab_cli_refuses_a_missing_experiment_file_in_one_line(tmp_path, capsys):
    from mote_lab.cli import main

    assert main(["reproduce", str(tmp_path / "nope.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "nope.yaml" in err[0]


def test_mote_reproduce_names_the_lab_command(capsys):
    from mote.cli import main

    assert main(["reproduce", "lab/reproduce.yaml", "--budget", "small"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mote-lab reproduce lab/budgets/" in err[0]
