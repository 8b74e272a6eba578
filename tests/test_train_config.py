"""Training recipes are validated up front: every problem in one clear error, before any work starts."""

from __future__ import annotations

import pytest
import yaml
from tiny_train import tiny_config, write_tiny_data

from mote.cli import main
from mote.train.config import ConfigError, load_config, parse_config


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_tiny_data(tmp_path_factory.mktemp("data"))


def test_valid_recipe_and_task_defaults(root):
    cfg = parse_config(tiny_config("some-base", root))
    temps = {name: cfg.task_kind(name).temperature for name in cfg.tasks}
    assert temps == {"retrieval": 0.03, "symmetric": 0.05, "classification": 0.03, "clustering": 0.06}
    assert cfg.task_kind("retrieval").routes == {"anchor": "query", "positive": "document", "negative": "document"}
    assert cfg.task_kind("retrieval").batching == "homogeneous"
    assert cfg.task_kind("classification").batching == "heterogeneous"
    assert cfg.task_kind("symmetric").symmetric
    raw = tiny_config("some-base", root)
    raw["tasks"]["clustering"]["temperature"] = 0.1
    assert parse_config(raw).task_kind("clustering").temperature == 0.1
    assert parse_config(raw, arm="tlr").arm == "tlr"


def test_every_problem_is_reported_at_once(root):
    raw = tiny_config("some-base", root)
    raw["tasks"]["classification"]["datasets"] = [{"name": "ToyClassification", "split": "test"}]  # test split
    raw["tasks"]["retrieval"]["datasets"] = ["train-toyqa", "train-missing"]  # unknown dataset folder
    raw["tasks"]["clustering"]["datasets"] = [{"name": "train-toyqa"}]  # pair rows for a labelled task
    raw["tasks"]["sentiment"] = {"datasets": ["ToyClassification"]}  # unknown task kind
    raw["tasks"]["symmetric"]["routes"] = {"anchor": "summary"}  # not a routing-table task
    raw["train"] = {"steps": 0, "batch_size": 1, "learning_rate": -1}  # bad numbers
    raw["loss"] = {"static_temperature": 0}
    raw["optimiser"] = {}  # unknown section
    with pytest.raises(ConfigError) as info:
        parse_config(raw, "recipe.yaml")
    text = str(info.value)
    problems = info.value.problems
    for needle in [
        "refusing to train on a test split",
        "no dataset folder",
        "train-missing",
        "a clustering task needs {text, label}",
        "unknown task kind 'sentiment'",
        "'summary', which is not a task of the routing table",
        "train.steps",
        "train.batch_size",
        "train.learning_rate",
        "loss.static_temperature",
        "optimiser",
    ]:
        assert needle in text, needle
    assert len(problems) >= 10 and text.startswith(f"{len(problems)} problem(s) in recipe.yaml")


def test_data_root_problems(tmp_path):
    raw = tiny_config("base", tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="data.data_dir: folder .* does not exist"):
        parse_config(raw)


def test_cli_reports_problems_before_any_work(root, tmp_path, capsys):
    raw = tiny_config("some-base", root)
    raw["tasks"]["classification"]["datasets"] = [{"name": "ToyClassification", "split": "test"}]
    raw["train"]["learning_rate"] = 0
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    out = tmp_path / "run"
    assert main(["train", str(path), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "2 problem(s)" in err and "test split" in err and "learning_rate" in err
    assert not out.exists()
    with pytest.raises(ConfigError, match="not valid YAML"):
        path.write_text("tasks: [unclosed")
        load_config(path)


def test_shipped_recipes_are_valid_and_the_demo_recipe_matches_its_yaml():
    from pathlib import Path

    from mote.train.demo_training import DEMO_RECIPE

    configs = Path(__file__).resolve().parents[1] / "configs"
    assert yaml.safe_load((configs / "demo.yaml").read_text()) == DEMO_RECIPE
    recipes = [p for p in sorted(configs.glob("*.yaml")) if "budgets" not in yaml.safe_load(p.read_text())]
    assert {"demo.yaml", "mote-minilm.yaml"} <= {p.name for p in recipes}  # experiment plans (budgets) excluded
    for path in recipes:
        load_config(path, check_files=False)
