"""The lab's budgets are one complete experiment file each (lab/budgets/<budget>.yaml), and they resolve to exactly
the runs the earlier overlays of lab/reproduce.yaml did (tests/fixtures/lab-budgets-resolved.json, made once from
those overlays by tests/lab_resolution.py): every plan key and folder, every run's training recipe (and its
validated config), every selection's options, every evaluation's inputs, the labels and the report's settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from lab_resolution import BUDGETS, resolution

from mote_lab import ExperimentConfigError, load_experiment, parse_experiment

ROOT = Path(__file__).resolve().parents[1]
BUDGET_DIR = ROOT / "lab" / "budgets"
FIXTURE = Path(__file__).parent / "fixtures" / "lab-budgets-resolved.json"


@pytest.fixture(scope="module")
def before() -> dict:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


def test_every_budget_is_one_file():
    assert sorted(p.stem for p in BUDGET_DIR.glob("*.yaml")) == sorted(BUDGETS)
    assert not (ROOT / "lab" / "reproduce.yaml").exists()


@pytest.mark.parametrize("budget", BUDGETS)
def test_a_budget_file_resolves_to_the_runs_of_the_old_overlay(budget, before):
    exp = load_experiment(BUDGET_DIR / f"{budget}.yaml", check_files=False)
    assert exp.budget == budget  # the name (and the output folder) is the file's stem
    now = json.loads(json.dumps(resolution(exp, budget)))
    old = before[budget]
    assert now["steps"] == old["steps"]  # the plan: every training and evaluation, in order
    assert sorted(now["trainings"]) == sorted(old["trainings"])
    for key in old["trainings"]:
        assert now["trainings"][key] == old["trainings"][key], key
    assert now["recipes"] == old["recipes"]
    for section in ("similarity", "throughput"):  # a disabled section's settings are never read
        if not old[section]["enabled"]:
            old[section] = {"enabled": False}
            now[section] = {"enabled": now[section]["enabled"]}
    assert now == old


def test_a_budget_file_stands_alone():
    """No overlay section, no other budget named, the base recipe a plain recipe (no overlays of its own)."""
    recipe = yaml.safe_load((ROOT / "lab" / "reproduce-recipe.yaml").read_text(encoding="utf-8"))
    assert not {"budgets", "default_budget", "recipe", "training"} & set(recipe)
    for budget in BUDGETS:
        raw = yaml.safe_load((BUDGET_DIR / f"{budget}.yaml").read_text(encoding="utf-8"))
        assert not {"budgets", "default_budget"} & set(raw), budget
        assert raw.get("recipe") in (None, "../reproduce-recipe.yaml"), budget
        text = (BUDGET_DIR / f"{budget}.yaml").read_text(encoding="utf-8")
        assert f"mote-lab reproduce lab/budgets/{budget}.yaml" in text, budget
        assert "--budget" not in text, budget


@pytest.mark.parametrize("budget", BUDGETS)
def test_the_committed_report_names_its_budget_file(budget):
    exp = load_experiment(BUDGET_DIR / f"{budget}.yaml", check_files=False)
    report = ROOT / exp.report.path
    if not report.is_file():  # gpu: not run yet
        return
    md = report.read_text(encoding="utf-8")
    assert md.splitlines()[0] == f"# {exp.report.title}"
    assert (f"Reproduce with `make reproduce BUDGET={budget}` or `mote-lab reproduce lab/budgets/{budget}.yaml` "
            in md)
    assert f"- experiment file `lab/budgets/{budget}.yaml`, budget `{budget}`;" in md
    assert "--budget" not in md


def test_an_old_style_file_with_budgets_names_the_new_layout(tmp_path):
    with pytest.raises(ExperimentConfigError) as err:
        parse_experiment({"arms": {"ic": {"method": "ic"}}, "budgets": {"small": {}}}, tmp_path / "reproduce.yaml")
    assert len(err.value.problems) == 1 and "lab/budgets/" in err.value.problems[0]
