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
    temps = {name: cfg.objective_kind(name).temperature for name in cfg.objectives}
    assert temps == {"retrieval": 0.03, "symmetric": 0.05, "classification": 0.03, "clustering": 0.06}
    routes = {"anchor": "query", "positive": "document", "negative": "document"}
    assert cfg.objective_kind("retrieval").routes == routes
    assert cfg.objective_kind("retrieval").batching == "homogeneous"
    assert cfg.objective_kind("classification").batching == "heterogeneous"
    assert cfg.objective_kind("symmetric").symmetric
    raw = tiny_config("some-base", root)
    raw["objectives"]["clustering"]["temperature"] = 0.1
    assert parse_config(raw).objective_kind("clustering").temperature == 0.1
    tlr = parse_config(raw, method="tlr").method  # the recipe's method settings stay
    assert (tlr.name, tlr.placement, tlr.trainable, tlr.aux_loss_weight) == ("tlr", "every", "all", 0.01)
    with pytest.raises(ConfigError, match="method.placement: not a setting of the ic method; its settings: none"):
        parse_config(raw, method="ic")


def test_every_problem_is_reported_at_once(root):
    raw = tiny_config("some-base", root)
    raw["objectives"]["classification"]["datasets"] = [{"name": "ToyClassification", "split": "test"}]  # test split
    raw["objectives"]["retrieval"]["datasets"] = ["train-toyqa", "train-missing"]  # unknown dataset folder
    raw["objectives"]["clustering"]["datasets"] = [{"name": "train-toyqa"}]  # pair rows for a labelled task
    raw["objectives"]["sentiment"] = {"datasets": ["ToyClassification"]}  # unknown task kind
    raw["objectives"]["symmetric"]["routes"] = {"anchor": "summary"}  # not a routing-table task
    raw["train"] = {"steps": 0, "batch_size": 1, "learning_rate": -1}  # bad numbers
    raw["method"] = {"name": "static", "temperature": 0}
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
        "unknown objective kind 'sentiment'",
        "'summary', which is not a task of the routing table",
        "train.steps",
        "train.batch_size",
        "train.learning_rate",
        "method.temperature",
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
    raw["objectives"]["classification"]["datasets"] = [{"name": "ToyClassification", "split": "test"}]
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


def test_method_short_and_mapping_forms_validate_into_the_methods_own_config(root):
    from mote.methods.static import StaticConfig

    raw = tiny_config("some-base", root)
    raw.pop("method")
    default = parse_config(raw).method  # the validated recipe: MoTE, EOB, the experts train
    assert (type(default).__name__, default.name, default.placement, default.trainable) == (
        "MoteConfig", "mote", "every-other", None)
    assert default.trains_experts_only()
    assert parse_config({**raw, "method": "mote"}).method == default
    static = parse_config({**raw, "method": {"name": "static", "placement": "every", "temperature": 0.07}}).method
    assert isinstance(static, StaticConfig) and (static.placement, static.temperature) == ("every", 0.07)
    assert parse_config({**raw, "method": "ic"}).method.model_dump() == {"name": "ic"}
    ts = parse_config({**raw, "train": {"steps": 10}, "method": {"name": "tsembed", "stage1": {"steps": 4}}}).method
    assert (ts.stage1.steps, ts.stage2.steps) == (4, 6)  # stage steps follow train.steps
    dumped = yaml.safe_load(parse_config({**raw, "method": "tlr"}).to_yaml())["method"]
    assert dumped == {"name": "tlr", "placement": "every-other", "trainable": None, "aux_loss_weight": 0.01,
                      "router_learning_rate": None}
    assert parse_config({**raw, "method": dumped}).method.name == "tlr"  # a saved recipe reloads
    with pytest.raises(ConfigError) as info:
        parse_config({**raw, "method": {"name": "ic", "trainable": "experts"}})
    assert info.value.problems == ["method.trainable: not a setting of the ic method; its settings: none"]
    with pytest.raises(ConfigError) as info:
        parse_config({**raw, "method": {"name": "mote", "placement": "sideways", "temperature": 1}})
    assert [p.split(":")[0] for p in info.value.problems] == ["method.placement", "method.temperature"]
    assert "its settings: placement, trainable" in info.value.problems[1]
    with pytest.raises(ConfigError, match=r"method: unknown method 'nope'; known: \['mote', 'ic'"):
        parse_config({**raw, "method": "nope"})


def test_old_recipe_keys_are_refused_naming_their_new_spelling(root):
    raw = tiny_config("some-base", root)
    raw.pop("method")
    objectives = raw.pop("objectives")
    old = {**raw, "arm": "ic", "tlr": {"aux_loss_weight": 0.02}, "tsembed": {"lora": {"r": 4}}, "tasks": objectives,
           "model": {**raw["model"], "placement": "every", "trainable": "experts"},
           "loss": {"static_temperature": 0.07}}
    with pytest.raises(ConfigError) as info:
        parse_config(old, "old.yaml")
    assert info.value.problems == [
        "`arm: ic` is now `method: ic`",
        "`tlr:` is now the tlr method's settings: `method: {name: tlr, aux_loss_weight: 0.02}`",
        "`tsembed:` is now the settings of the tsembed methods: `method: {name: tsembed, lora: {r: 4}}`",
        "`model.placement` is now `method.placement` (`method: {name: mote, placement: every}`)",
        "`model.trainable` is now `method.trainable` (`method: {name: mote, trainable: experts}`)",
        "`tasks:` is now `objectives:` (the training objectives by kind, each with its datasets; `model.tasks` stays "
        "the routing tasks)",
        "`loss.static_temperature` is now `method.temperature` of the static method "
        "(`method: {name: static, temperature: 0.07}`)",
    ]
    raw["objectives"] = objectives
    for key, value in [("arm", "mote"), ("tlr", {}), ("tsembed", {}), ("tasks", objectives)]:  # each one alone
        with pytest.raises(ConfigError, match=f"`{key}"):
            parse_config({**raw, key: value})
    routing = "query,document,classification,clustering"  # model.tasks: the routing tasks, not refused
    assert parse_config({**raw, "model": {**raw["model"], "tasks": routing}}).model.tasks == routing
