"""mote-lab reproduce's learning curve: point arms (a weight snapshot at a step, and selections of it), validation
scores next to the test scores (eval.also_validation), and the report's "Learning curve" section."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_experiment import TOY, CountingTrainer, _fake_results, experiment

from mote_lab import ExperimentConfigError, make_plan, parse_experiment
from mote_lab.config import deep_merge
from mote_lab.layout import TIMINGS
from mote_lab.report import write_report
from mote_lab.runner import DONE, MissingSnapshotError, load_model_folder, plan_status, run_reproduction

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CURVE = {
    "training": {"train": {"steps": 4}},
    "arms": {
        "ic-1": {"point_of": "ic", "at_step": 1},
        "ic-2": {"point_of": "ic", "at_step": 2},
        "mote-2": {"point_of": "mote", "at_step": 2},
        "ic-wise": {"select_from": "ic", "label": "ic + WiSE-FT", "select": {"alphas": [0.5, 1.0]}},
        "ic-wise-2": {"point_of": "ic-wise", "at_step": 2},
    },
    "models": {"tiny": {"arms": ["ic", "ic-1", "ic-2", "mote", "mote-2", "ic-wise", "ic-wise-2"]}},
    "similarity": {"enabled": False},
    "throughput": {"enabled": False},
}


def curve_experiment(tiny, cache: Path, **over) -> dict:
    base, data = tiny
    raw = experiment(base, data, cache, **deep_merge(CURVE, over))
    raw["models"]["tiny"]["arm_seeds"] = {}
    return raw


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from test_eval_support import make_data_dir
    from tiny_train import write_tiny_data, write_tiny_model

    root = tmp_path_factory.mktemp("curve")
    data = write_tiny_data(root / "data")
    make_data_dir(data)
    return write_tiny_model(root / "bert"), data


# ------------------------------------------------------------------------------------------------ config and plan
def test_the_plan_has_each_point_after_its_source_and_the_source_keeps_its_snapshots(tiny, tmp_path):
    cfg = parse_experiment(curve_experiment(tiny, tmp_path / "cache"), budget="small")
    plan = make_plan(cfg, tmp_path / "out")
    got = [(t.key, t.point.key if t.point else None, t.at_step, t.source.key if t.source else None)
           for t in plan.trainings]
    assert got == [
        ("tiny/ic/seed-1", None, None, None),
        ("tiny/ic-1/seed-1", "tiny/ic/seed-1", 1, None),
        ("tiny/ic-2/seed-1", "tiny/ic/seed-1", 2, None),
        ("tiny/mote/seed-1", None, None, None),
        ("tiny/mote-2/seed-1", "tiny/mote/seed-1", 2, None),
        ("tiny/ic-wise/seed-1", None, None, "tiny/ic/seed-1"),
        # a point of a selected arm: that selection, made from the source's point at the same step
        ("tiny/ic-wise-2/seed-1", None, None, "tiny/ic-2/seed-1"),
    ]
    # the source runs keep a snapshot at every step their points stand at (besides the recipe's own fractions)
    assert cfg.run_config("tiny", "ic", 1).select.snapshot_steps(4) == [1, 2]
    assert cfg.run_config("tiny", "mote", 1).select.snapshot_steps(4) == [2]
    assert cfg.select_config("tiny", "ic-wise-2", 1) == cfg.select_config("tiny", "ic-wise", 1)
    assert cfg.arm_label("ic-2") == "ic @2" and cfg.arm_label("ic-wise-2") == "ic + WiSE-FT @2"
    assert [cfg.arm_step(a) for a in ("ic", "ic-2", "ic-wise", "ic-wise-2")] == [None, 2, None, 2]
    assert cfg.train_method("ic-wise-2") == "ic"
    assert cfg.run_config("tiny", "ic-2", 1) == cfg.run_config("tiny", "ic", 1)


@pytest.mark.parametrize("over, needle", [
    ({"models": {"tiny": {"arms": ["ic-1", "ic", "mote"]}}}, "ic-1 is a point of ic, which must be listed before it"),
    ({"arms": {"ic-1": {"at_step": 4}}}, "arms.ic-1.at_step: 4 is not inside ic's run of 4 steps"),
    ({"arms": {"ic-1": {"point_of": "nobody"}}}, "arms.ic-1.point_of: 'nobody' is not a trained or selected arm"),
    ({"arms": {"ic-1": {"overrides": {"train": {"steps": 1}}}}}, "a point arm takes its model from ic's run"),
    ({"arms": {"ic-1": {"point_of": None}}}, "a point arm needs both point_of"),
    ({"models": {"tiny": {"arms": ["ic", "ic-wise", "ic-wise-2"]}}}, "ic-wise-2 selects from ic-2"),
    ({"arms": {"ic-wise-2": {"at_step": 3}}}, "define one arm {point_of: ic, at_step: 3}"),
])
def test_bad_point_arms_are_refused_with_the_fix(tiny, tmp_path, over, needle):
    raw = curve_experiment(tiny, tmp_path / "cache")
    raw = deep_merge(raw, over)
    with pytest.raises(ExperimentConfigError) as err:
        parse_experiment(raw, budget="small")
    assert needle in str(err.value), str(err.value)


def test_also_validation_needs_held_out_rows(tiny, tmp_path):
    raw = curve_experiment(tiny, tmp_path / "cache", eval={"also_validation": True})
    with pytest.raises(ExperimentConfigError, match=r"eval.also_validation \(runs tiny/ic, tiny/mote\): .*holdout"):
        parse_experiment(raw, budget="small", check_files=False)
    cfg = parse_experiment(deep_merge(raw, {"training": {"data": {"holdout": 0.2}}}), budget="small",
                           check_files=False)
    plan = make_plan(cfg, tmp_path / "out")
    assert cfg.validation_fraction() == 0.2
    assert [e.key for e in plan.validations] == [e.key for e in plan.evaluations]
    assert plan.validations[0].dir == tmp_path / "out" / "tiny" / "eval-validation" / "base"
    keys = [(type(s).__name__, s.key, getattr(s, "validation", None)) for s in plan.steps()][:7]
    assert keys == [("EvalRun", "tiny/base", False), ("EvalRun", "tiny/base-ic", False),
                    ("EvalRun", "tiny/base", True), ("EvalRun", "tiny/base-ic", True),
                    ("TrainRun", "tiny/ic/seed-1", None), ("EvalRun", "tiny/ic/seed-1", False),
                    ("EvalRun", "tiny/ic/seed-1", True)]


# ------------------------------------------------------------------------------------------------ running
def _fake_select_run(calls):
    def fake(run_dir, output, cfg, overwrite=False, at_step=None, **kw):  # the search itself: tests/test_select.py
        calls.append((Path(run_dir).as_posix().split("/train/")[1], at_step))
        if Path(output).exists():
            shutil.rmtree(output)
        shutil.copytree(Path(run_dir) / "model", output)
        return Path(output)

    return fake


def test_points_are_evaluated_straight_from_the_snapshots_and_selected_at_their_step(tiny, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from mote.eval import load_encoder
    from mote.train.snapshots import encoder_of
    from mote_lab.runner import _eval_mode, block_routing, model_folder

    calls = []
    monkeypatch.setattr("mote.select.run.select_run", _fake_select_run(calls))
    cfg = parse_experiment(curve_experiment(tiny, tmp_path / "cache"), budget="small")
    root, report = tmp_path / "runs", tmp_path / "docs" / "results.md"
    plan = make_plan(cfg, root)
    trainer = CountingTrainer()
    run_reproduction(cfg, root, report=report, trainer=trainer)
    assert [k for k, _ in trainer.calls] == ["tiny/train/ic/seed-1", "tiny/train/mote/seed-1"]  # points: not trained
    runs = {t.arm: t for t in plan.trainings}
    evals = {e.arm: e for e in plan.evaluations}
    for arm, step in (("ic-1", 1), ("ic-2", 2), ("mote-2", 2)):
        t = runs[arm]
        assert [p.name for p in t.dir.iterdir()] == [DONE], arm  # no model folder written: the marker only
        assert model_folder(t) == t.point.dir / "snapshots" / f"step-{step}"
        # what the point was evaluated as: the source's final model with the snapshot's state dict in its encoder
        ref = load_model_folder(t.point.model_dir)
        encoder_of(ref).load_state_dict(load_file(str(model_folder(t) / "model.safetensors")))
        mode = _eval_mode(cfg, evals[arm])
        routing = block_routing(cfg, "tiny") if mode == "ic" else None
        want = load_encoder(ref, mode=mode, routing=routing).identity
        got = json.loads((evals[arm].dir / "results.json").read_text())["model_identity"]
        final = json.loads((evals[t.point.arm].dir / "results.json").read_text())["model_identity"]
        assert got == want != final, arm  # the snapshot's weights, not the run's final ones
    assert json.loads((root / "tiny/eval/mote-2/seed-1/results.json").read_text())["encoder"]["kind"] == "mote"
    assert json.loads((root / "tiny/eval/ic-2/seed-1/results.json").read_text())["encoder"]["prefixes"]  # ic mode
    # the selection of the point at step 2 is mote select of ic's run at step 2; at the end, of the whole run
    assert calls == [("ic/seed-1", None), ("ic/seed-1", 2)]
    for e in plan.evaluations:
        assert set(json.loads((e.dir / "results.json").read_text())["datasets"]) == set(TOY), e.key
    md = report.read_text()
    assert "### Learning curve" in md and "#### Test datasets (6 datasets" in md
    assert "| ic | 2 |" in md and "| ic | 4 |" in md and "| ic + WiSE-FT | 2 |" in md and "| mote (EB) | 2 |" in md
    assert "| ic @2 | 1 | 2 | snapshot |" in md and "| ic | 1 | 4 | training |" in md
    assert "| ic + WiSE-FT @2 | 1 | 2 | selection |" in md
    assert (report.with_suffix("") / "tiny-curve.png").read_bytes()[:4] == b"\x89PNG"
    assert "2 of 4" in md  # the recipe table gives a point's step
    # again: reused, nothing redone
    stamps = {t.key: (t.dir / DONE).stat().st_mtime_ns for t in plan.trainings}
    run_reproduction(cfg, root, report=None, trainer=CountingTrainer())
    assert stamps == {t.key: (t.dir / DONE).stat().st_mtime_ns for t in plan.trainings} and len(calls) == 2
    assert {s.state for s in plan_status(plan)} == {"done"}

    # a source run without the point's snapshot (trained before the point was asked for): a clear error
    shutil.rmtree(runs["ic-1"].dir)
    shutil.rmtree(runs["ic"].dir / "snapshots" / "step-1")
    assert {s.key: s.state for s in plan_status(plan) if s.kind == "point"}["tiny/ic-1/seed-1"] == "todo"
    with pytest.raises(MissingSnapshotError, match=r"has no weight snapshot at step 1 for the point arm ic-1 "
                                                   r"\(it kept \['step-2'\]\).*delete .* to retrain it"):
        run_reproduction(cfg, root, report=None, trainer=CountingTrainer())


# ------------------------------------------------------------------------------------------------ report
def test_the_curve_section_gives_test_and_validation_scores_per_step_and_the_wall_times(tiny, tmp_path):
    raw = curve_experiment(tiny, tmp_path / "cache", eval={"also_validation": True},
                           training={"data": {"holdout": 0.2}})
    cfg = parse_experiment(raw, budget="small", check_files=False)
    plan = make_plan(cfg, tmp_path / "runs")
    tt = {"ToySTS": "STS", "ToyRetrieval": "Retrieval"}
    score = {"base": 50.0, "base-ic": 50.0, "ic-1": 51.0, "ic-2": 52.0, "ic": 54.0, "mote-2": 53.0, "mote": 56.0,
             "ic-wise-2": 52.5, "ic-wise": 55.0}
    for e in plan.evaluations:
        _fake_results(e.dir, e.key, {"ToySTS": score[e.arm], "ToyRetrieval": score[e.arm] - 10}, tt)
    vt = {"val-A": "Retrieval", "val-B": "Classification", "ood-C": "Retrieval"}
    for e in plan.validations:
        _fake_results(e.dir, e.key, {"val-A": score[e.arm] + 1, "val-B": score[e.arm] + 3, "ood-C": score[e.arm] - 20},
                      vt)
        res = json.loads((e.dir / "results.json").read_text())
        for d, entry in res["datasets"].items():
            entry["group"] = "ood" if d.startswith("ood") else "in-domain"
        (e.dir / "results.json").write_text(json.dumps(res))
    (plan.root / TIMINGS).write_text("".join(json.dumps(x) + "\n" for x in [
        {"key": "tiny/ic/seed-1", "kind": "train", "what": "interrupted", "seconds": 60.0},
        {"key": "tiny/ic/seed-1", "kind": "train", "what": "resumed", "seconds": 120.0},
        {"key": "tiny/ic/seed-1", "kind": "eval", "what": "evaluated", "seconds": 30.0},
        {"key": "tiny/ic/seed-1", "kind": "validate", "what": "evaluated", "seconds": 90.0}]))
    md = write_report(plan, tmp_path / "docs" / "results.md").read_text()
    sec = md[md.index("### Learning curve"):]
    # test: per category and both overall means
    assert "| series | step | STS | Retrieval | mean over datasets | mean over categories |" in sec
    assert "| base (untrained) | 0 | 50.00 | 40.00 | 45.00 | 45.00 |" in sec
    assert "| ic | 1 | 51.00 | 41.00 | 46.00 | 46.00 |" in sec and "| ic | 4 | 54.00 | 44.00 | 49.00 | 49.00 |" in sec
    assert "| ic + WiSE-FT | 2 | 52.50 | 42.50 | 47.50 | 47.50 |" in sec
    # validation: in-domain and ood categories apart, and a mean per group (never the two together)
    assert ("| series | step | Classification (in-domain) | Retrieval (in-domain) | Retrieval (ood) | in-domain mean "
            "| ood mean |") in sec
    assert "| mote (EB) | 2 | 56.00 | 54.00 | 33.00 | 55.00 | 33.00 |" in sec
    assert "| ic | 1 | 4 | training | 3.0 | 0.5 | 1.5 |" in sec
    assert "| mote (EB) @2 | 1 | 2 | snapshot | – | – | – |" in sec
    assert (tmp_path / "docs" / "results" / "tiny-curve.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "docs" / "results" / "raw" / "tiny" / "validation" / "mote-2-seed1.json").is_file()
    # the test tables above the section stay test-only
    assert "val-A" not in md[:md.index("### Learning curve")]


def test_the_curve_budget_lists_its_runs(capsys, tmp_path):
    """lab/budgets/curve.yaml: ic and mote (experts) at 100 / 400 steps, each plain and selected."""
    from mote_lab.cli import main

    assert main(["reproduce", "lab/budgets/curve.yaml", "--output", str(tmp_path / "r"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    for key in ("train minilm-l6/ic/seed-42", "point minilm-l6/ic-100/seed-42",
                "select minilm-l6/ic-wise/seed-42", "select minilm-l6/ic-wise-100/seed-42",
                "train minilm-l6/mote-x/seed-42", "point minilm-l6/mote-x-100/seed-42",
                "select minilm-l6/mote-sel-100/seed-42", "val   minilm-l6/mote-sel-100/seed-42",
                "val   minilm-l6/ic/seed-42"):
        assert key in out, (key, out)
    assert not (tmp_path / "r").exists()


def test_also_validation_scores_every_run_on_the_validation_suite_next_to_the_test_sets(tiny, tmp_path, monkeypatch):
    """The wiring (suite, split, routes and folder come from mote.eval.validation; here pointed at two toy sets
    with a test split, since the toy data has no validation suite: tests/test_validation.py builds the real one)."""
    from mote.eval import validation

    _, data = tiny
    built = []
    monkeypatch.setattr(validation, "build_validation_suite", lambda root, out, f: built.append((Path(out), f)))
    monkeypatch.setattr(validation, "validation_dir", lambda f: data)
    monkeypatch.setattr(validation, "DATASETS", ("ToySTS", "ToyPairs"))
    monkeypatch.setattr(validation, "SPLIT", "test")
    monkeypatch.setattr(validation, "ROUTES", {"ToyPairs": "query"})
    raw = curve_experiment(tiny, tmp_path / "cache", eval={"also_validation": True},
                           training={"data": {"holdout": 0.2}},
                           models={"tiny": {"arms": ["ic", "ic-2"]}})
    cfg = parse_experiment(raw, budget="small")
    root = tmp_path / "runs"
    plan = make_plan(cfg, root)
    run_reproduction(cfg, root, report=tmp_path / "r.md", trainer=CountingTrainer())
    assert built == [(data, 0.2)]
    for e in plan.validations:
        res = json.loads((e.dir / "results.json").read_text())
        assert set(res["datasets"]) == {"ToySTS", "ToyPairs"} and res["datasets"]["ToyPairs"]["routes"], e.key
        assert e.dir.parts[-3 if e.seed is not None else -2] == "eval-validation"
    for e in plan.evaluations:
        assert set(json.loads((e.dir / "results.json").read_text())["datasets"]) == set(TOY)
    assert {(s.kind, s.state) for s in plan_status(plan) if s.kind == "val"} == {("val", "done")}
    assert "#### Validation suite" in (tmp_path / "r.md").read_text()
