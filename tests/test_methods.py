"""The method registry: every method is registered with its config class, and a new method is one module + one
registry line.

``NormsOnly`` below is a complete new method (what a file under ``src/mote/methods/`` would hold: a config class
with its settings and a method class): registered, its settings are validated by the recipe check, it is listed by
``mote train --method``, trained by the unchanged trainer and saved.
"""

from __future__ import annotations

import argparse
from typing import Literal

import pytest
import torch
from sentence_transformers import SentenceTransformer
from tiny_train import tiny_config, write_tiny_data, write_tiny_model

from mote.methods import METHOD_CONFIGS, METHODS, UnknownMethodError, get_method, method_config_class, register_method
from mote.methods.base import Method, MethodModel, PlacementConfig, dense_base, finish_model, placement_layers
from mote.train.config import ConfigError, parse_config
from mote.train.trainer import prepare_run, run_training

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class NormsOnlyConfig(PlacementConfig):
    """Its settings: the layers (``placement``, shared with MoTE) and which of their norms train."""

    norms: Literal["both", "attention"] = "both"


class NormsOnly(Method):
    """A new method: the dense base + prefixes, training only the LayerNorms of the expert layers."""

    summary = "IC training only the norms of the expert layers"
    routed = False

    def build(self, cfg, device: str = "cpu") -> MethodModel:
        model = dense_base(cfg, device)
        layers = placement_layers(cfg, model)
        which = "attention\\.output|output" if cfg.method.norms == "both" else "attention\\.output"
        pattern = rf"encoder\.layer\.({'|'.join(map(str, layers))})\.({which})\.LayerNorm\.weight$"
        return finish_model(cfg, self.name, model, layers, routed=False, freeze=True, expert_pattern=pattern)


@pytest.fixture
def norms_only():
    method = register_method("norms-only", NormsOnlyConfig, NormsOnly)  # the one registry line
    try:
        yield method
    finally:
        del METHODS[method.name], METHOD_CONFIGS[method.name]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return write_tiny_model(root / "bert"), write_tiny_data(root / "data")


def test_every_method_is_registered_with_its_config_class():
    assert list(METHODS) == ["mote", "ic", "static", "tlr", "ic-matched", "tsembed", "tsembed-noeans"]
    assert {name: m.eval_mode for name, m in METHODS.items()} == {
        "mote": "auto", "ic": "ic", "static": "auto", "tlr": "auto", "ic-matched": "ic", "tsembed": "auto",
        "tsembed-noeans": "auto"}
    assert [n for n, m in METHODS.items() if m.supports_select] == ["mote", "ic", "static", "ic-matched"]
    assert [n for n, m in METHODS.items() if m.training_loop] == ["tsembed", "tsembed-noeans"]
    assert {name: method_config_class(name).__name__ for name in METHODS} == {
        "mote": "MoteConfig", "ic": "ICConfig", "static": "StaticConfig", "tlr": "TLRConfig",
        "ic-matched": "ICMatchedConfig", "tsembed": "TSEmbedMethodConfig", "tsembed-noeans": "TSEmbedMethodConfig"}
    assert all(m.name == name for name, m in METHODS.items())
    # settings where the methods use them: placement for the layer-placed ones, trainable for the MoTE family
    fields = {name: set(method_config_class(name).model_fields) - {"name"} for name in METHODS}
    assert [n for n in METHODS if "placement" in fields[n]] == ["mote", "static", "tlr", "ic-matched"]
    assert [n for n in METHODS if "trainable" in fields[n]] == ["mote", "static", "tlr"]
    assert fields["ic"] == set() and fields["static"] - fields["mote"] == {"temperature"}
    assert fields["tlr"] - fields["mote"] == {"aux_loss_weight", "router_learning_rate"}
    assert {"lora", "eans", "stage1", "stage2", "stage1_fraction"} == fields["tsembed"]


def test_unknown_method_is_a_clear_error(tiny):
    with pytest.raises(UnknownMethodError, match="unknown method 'nope'; known: \\['mote', 'ic'"):
        get_method("nope")
    with pytest.raises(ConfigError, match="method: unknown method 'nope'"):
        parse_config(tiny_config(*tiny, method="nope"))
    with pytest.raises(ValueError, match="already registered"):
        register_method("mote", METHOD_CONFIGS["mote"], get_method("mote").__class__)
    with pytest.raises(ValueError, match="must subclass mote.methods.base.MethodConfig"):
        register_method("bad", dict, NormsOnly)


def test_a_new_method_is_one_module_and_one_registry_line(tiny, tmp_path, norms_only):
    from mote.train.cli import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    assert parser.parse_args(["train", "x.yaml", "--output", "o", "--method", "norms-only"]).method == "norms-only"
    with pytest.raises(SystemExit):  # one word: --arm is gone
        parser.parse_args(["train", "x.yaml", "--output", "o", "--arm", "norms-only"])

    with pytest.raises(ConfigError, match="method.trainable: not a setting of the norms-only method; its settings: "
                                          "placement, norms"):
        parse_config(tiny_config(*tiny, method={"name": "norms-only", "trainable": "all"}))
    with pytest.raises(ConfigError, match="method.norms"):
        parse_config(tiny_config(*tiny, method={"name": "norms-only", "norms": "ffn"}))
    attention = prepare_run(parse_config(tiny_config(*tiny, method={"name": "norms-only", "norms": "attention"})),
                            tmp_path / "attention")
    assert {n for n, p in attention.built.model.named_parameters() if p.requires_grad} == {
        f"0.model.encoder.layer.{i}.attention.output.LayerNorm.weight" for i in (0, 1)}  # placement: every

    cfg = parse_config(tiny_config(*tiny, method="norms-only"))
    assert cfg.method == NormsOnlyConfig(name="norms-only", placement="every", norms="both")
    run = prepare_run(cfg, tmp_path / "prepared")
    trainable = [n for n, p in run.built.model.named_parameters() if p.requires_grad]
    assert trainable and all("LayerNorm.weight" in n for n in trainable)
    assert run.trainer.mixed is False

    before = {n: p.detach().clone() for n, p in run.built.model.named_parameters()}
    result = run_training(cfg, tmp_path / "run")
    trained = SentenceTransformer(str(result.model_dir))
    after = dict(trained.named_parameters())
    changed = {n for n in before if not torch.equal(before[n], after[n].detach())}
    assert changed and changed <= set(trainable)  # the trainer trained exactly what the method chose


def test_method_model_comes_from_the_method(tiny):
    cfg = parse_config(tiny_config(*tiny, method={"name": "ic-matched", "placement": "1"}))
    built = get_method("ic-matched").build(cfg)
    assert built.method == "ic-matched" and not built.routed
    assert built.model.max_seq_length == cfg.model.max_seq_length
    # only layer 1 trains: 0.model.encoder.layer.1. ...
    assert {n.split(".")[4] for n, p in built.model.named_parameters() if p.requires_grad} == {"1"}
    frozen = [n for n, p in built.model.named_parameters() if not p.requires_grad]
    assert frozen and any("attention.self" in n for n in frozen)
