"""The method registry: every arm is a registered method, and a new method is one module + one registry line.

``NormsOnly`` below is a complete new method (what a file under ``src/mote/methods/`` would hold): registered, it
is accepted by the recipe check, listed by ``mote train --arm``, trained by the unchanged trainer and saved.
"""

from __future__ import annotations

import argparse

import pytest
import torch
from sentence_transformers import SentenceTransformer
from tiny_train import tiny_config, write_tiny_data, write_tiny_model

from mote.methods import METHODS, UnknownMethodError, get_method, register_method
from mote.methods.base import ArmModel, Method, dense_base, finish_arm, placement_layers
from mote.train.config import ConfigError, parse_config
from mote.train.trainer import prepare_run, run_training

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class NormsOnly(Method):
    """A new method: the dense base + prefixes, training only the LayerNorms of the expert layers."""

    name = "norms-only"
    summary = "IC training only the norms of the expert layers"
    routed = False

    def build(self, cfg, device: str = "cpu") -> ArmModel:
        model = dense_base(cfg, device)
        layers = placement_layers(cfg, model)
        pattern = rf"encoder\.layer\.({'|'.join(map(str, layers))})\.(attention\.output|output)\.LayerNorm\.weight$"
        return finish_arm(cfg, self.name, model, layers, routed=False, freeze=True, expert_pattern=pattern)


@pytest.fixture
def norms_only():
    method = register_method(NormsOnly())  # the one registry line
    try:
        yield method
    finally:
        del METHODS[method.name]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return write_tiny_model(root / "bert"), write_tiny_data(root / "data")


def test_every_arm_is_a_registered_method():
    assert list(METHODS) == ["mote", "ic", "static", "tlr", "ic-matched", "tsembed", "tsembed-noeans"]
    assert {name: m.eval_mode for name, m in METHODS.items()} == {
        "mote": "auto", "ic": "ic", "static": "auto", "tlr": "auto", "ic-matched": "ic", "tsembed": "auto",
        "tsembed-noeans": "auto"}
    assert [n for n, m in METHODS.items() if m.supports_select] == ["mote", "ic", "static", "ic-matched"]
    assert [n for n, m in METHODS.items() if m.training_loop] == ["tsembed", "tsembed-noeans"]


def test_unknown_arm_is_a_clear_error(tiny):
    with pytest.raises(UnknownMethodError, match="unknown arm 'nope'; known: \\['mote', 'ic'"):
        get_method("nope")
    with pytest.raises(ConfigError, match="arm: unknown arm 'nope'"):
        parse_config(tiny_config(*tiny, arm="nope"))
    with pytest.raises(ValueError, match="already registered"):
        register_method(get_method("mote").__class__())


def test_a_new_method_is_one_module_and_one_registry_line(tiny, tmp_path, norms_only):
    from mote.train.cli import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    assert parser.parse_args(["train", "x.yaml", "--output", "o", "--arm", "norms-only"]).arm == "norms-only"

    cfg = parse_config(tiny_config(*tiny, arm="norms-only"))
    run = prepare_run(cfg, tmp_path / "prepared")
    trainable = [n for n, p in run.arm.model.named_parameters() if p.requires_grad]
    assert trainable and all("LayerNorm.weight" in n for n in trainable)
    assert run.trainer.mixed is False

    before = {n: p.detach().clone() for n, p in run.arm.model.named_parameters()}
    result = run_training(cfg, tmp_path / "run")
    trained = SentenceTransformer(str(result.model_dir))
    after = dict(trained.named_parameters())
    changed = {n for n in before if not torch.equal(before[n], after[n].detach())}
    assert changed and changed <= set(trainable)  # the trainer trained exactly what the method chose


def test_arm_model_comes_from_the_method(tiny):
    cfg = parse_config(tiny_config(*tiny, arm="ic-matched"))
    arm = get_method("ic-matched").build(cfg)
    assert arm.arm == "ic-matched" and not arm.routed
    assert arm.model.max_seq_length == cfg.model.max_seq_length
    frozen = [n for n, p in arm.model.named_parameters() if not p.requires_grad]
    assert frozen and any("attention.self" in n for n in frozen)
