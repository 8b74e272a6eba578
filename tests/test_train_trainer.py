"""The trainer end to end on a tiny random BERT: TA-CL batches, loss falls, methods, saving, Ctrl-C, evaluation."""

from __future__ import annotations

import json
import signal

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer
from tiny_train import tiny_config, write_tiny_data, write_tiny_model
from transformers import TrainerCallback

import mote
from mote.train.config import ConfigError, parse_config
from mote.train.trainer import prepare_run, run_training

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: threads only add overhead


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return write_tiny_model(root / "bert"), write_tiny_data(root / "data")


def _cfg(tiny, **overrides):
    base, root = tiny
    return parse_config(tiny_config(base, root, **overrides))


def _group_of(trainer):
    """index in the concatenated training data -> (group name, dataset)"""
    out = []
    for name, ds in trainer.train_dataset.items():
        out += [(name, d) for d in ds.with_format(None)["dataset"]]
    return out


def test_each_batch_holds_one_task_retrieval_one_dataset(tiny, tmp_path):
    tasks = {
        "retrieval": {"datasets": ["train-toyqa", "train-toynli"]},  # two retrieval datasets: homogeneous
        "classification": {"datasets": ["ToyClassification", "train-toyclusters"]},  # heterogeneous
    }
    run = prepare_run(_cfg(tiny, objectives=tasks), tmp_path / "run")
    groups = _group_of(run.trainer)
    loader = run.trainer.get_train_dataloader()
    sampler = loader.batch_sampler
    mixed_classification = 0
    for indices in sampler:
        names = {groups[i][0] for i in indices}
        assert len(names) == 1
        datasets = {groups[i][1] for i in indices}
        if names == {"classification"}:
            mixed_classification += len(datasets) > 1
        else:
            assert len(datasets) == 1
    assert mixed_classification > 0
    seen_columns = set()
    for batch in loader:
        group = batch["dataset_name"]
        routes = run.cfg.objective_kind(group.split(":")[0]).routes
        for column in ("anchor", "positive", "negative"):
            if f"{column}_task_ids" in batch:
                ids = batch[f"{column}_task_ids"].unique().tolist()
                assert len(ids) == 1 and run.built.routing.task_names[ids[0]] == routes[column]
                seen_columns.add((group.split(":")[0], column, routes[column]))
        n_neg = batch["negative_input_ids"].shape[0] if "negative_input_ids" in batch else 0
        assert batch["label"].shape[0] == batch["anchor_input_ids"].shape[0] + n_neg
    # retrieval batches send the two sides to different experts (query vs document)
    assert {("retrieval", "anchor", "query"), ("retrieval", "positive", "document")} <= seen_columns
    assert run.built.routing.expert("query") != run.built.routing.expert("document")


def test_static_method_mixes_tasks_and_uses_one_temperature(tiny, tmp_path):
    run = prepare_run(_cfg(tiny, method={"name": "static", "temperature": 0.07}), tmp_path / "run")
    assert not isinstance(run.trainer.loss, dict) and run.trainer.loss.temperature == 0.07
    mixed = 0
    for batch in run.trainer.get_train_dataloader():
        mixed += len(batch["anchor_task_ids"].unique()) > 1
    assert mixed > 0


def test_per_task_temperatures_reach_the_losses(tiny, tmp_path):
    run = prepare_run(_cfg(tiny), tmp_path / "run")
    temps = {name: loss.temperature for name, loss in run.trainer.loss.items()}
    assert temps == {
        "retrieval:train-toyqa": 0.03,
        "symmetric:train-toynli": 0.05,
        "classification": 0.03,
        "clustering": 0.06,
    }
    assert run.trainer.loss["symmetric:train-toynli"].symmetric


def _fixed_losses(run, rows=16):
    """Each group's loss on its first ``rows`` pairs, eval mode (no dropout)."""
    trainer, model = run.trainer, run.built.model
    model.eval()
    out = {}
    with torch.no_grad():
        for name, ds in trainer.train_dataset.items():
            batch = trainer.data_collator([ds[i] for i in range(min(rows, len(ds)))])
            batch.pop("dataset_name")
            features, labels = trainer.collect_features(batch)
            out[name] = float(trainer.loss[name](features, labels))
    model.train()
    return out


def test_loss_falls(tiny, tmp_path):
    cfg = _cfg(tiny, train={"steps": 40, "batch_size": 8, "learning_rate": 2e-3, "warmup_ratio": 0.0},
               checkpoint={"every": 0})
    run = prepare_run(cfg, tmp_path / "run")
    before = _fixed_losses(run)
    run.trainer.train()
    after = _fixed_losses(run)
    assert all(after[g] < before[g] for g in before), (before, after)
    assert sum(after.values()) < 0.8 * sum(before.values())
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "loss" in x][:3] == [1, 2, 3]
    assert all(x["examples_per_s"] > 0 for x in lines if "loss" in x)
    assert (tmp_path / "run" / "metrics.csv").read_text().startswith("step,epoch,loss")


def test_untouched_experts_keep_the_base_embeddings_exactly(tiny, tmp_path):
    base, _ = tiny
    cfg = _cfg(tiny, method={"name": "mote", "placement": "every", "trainable": "experts"},
               objectives={"retrieval": {"datasets": ["train-toyqa"]}}, train={"steps": 4, "batch_size": 8})
    result = run_training(cfg, tmp_path / "run")
    trained = mote.load(result.model_dir)
    fresh = mote.convert(base, placement="every")
    texts = ["a rocket in orbit", "cheese and bread", "the league season"]
    for task in ("classification", "clustering"):  # experts that saw no data, shared weights frozen
        assert np.array_equal(trained.encode(texts, task=task), fresh.encode(texts, task=task))
    for task in ("query", "document"):
        assert not np.allclose(trained.encode(texts, task=task), fresh.encode(texts, task=task), atol=1e-4)


@pytest.mark.parametrize("method", ["ic", "ic-matched", "tlr"])
def test_methods_train_and_save_loadable_models(tiny, tmp_path, method):
    result = run_training(_cfg(tiny, method=method, train={"steps": 3, "batch_size": 8}), tmp_path / method)
    assert result.model_dir is not None and result.steps == 3
    texts = ["what is a rocket", "a moon launch"]
    if method.startswith("ic"):
        st = SentenceTransformer(str(result.model_dir), device="cpu")  # a plain folder: no mote needed
        assert st.prompts["query"] == "search_query: "
        assert not (result.model_dir / "mote_config.json").exists()
    else:
        from mote.ablations.tlr import TLRTransformer

        st = mote.load(result.model_dir)
        assert isinstance(st[0], TLRTransformer)
        lines = (tmp_path / method / "metrics.jsonl").read_text()
        assert "load_balance" in lines  # the router loss is part of the objective and logged
    assert st.encode(texts).shape == (2, 32)


def test_ic_matched_trains_only_the_expert_layer_ffn_and_norms(tiny, tmp_path):
    run = prepare_run(_cfg(tiny, method={"name": "ic-matched", "placement": "1"}), tmp_path / "r")
    trainable = {n for n, p in run.built.model.named_parameters() if p.requires_grad}
    assert trainable and all(".encoder.layer.1." in n for n in trainable)
    assert {n.split("encoder.layer.1.")[1].rsplit(".", 1)[0] for n in trainable} == {
        "attention.output.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm"}


def test_expert_learning_rate(tiny, tmp_path):
    run = prepare_run(_cfg(tiny, train={"steps": 2, "batch_size": 8, "learning_rate": 1e-4,
                                        "expert_learning_rate": 5e-4}), tmp_path / "run")
    opt = run.trainer.create_optimizer()
    expert_params = {id(p) for m in mote.experts.expert_modules(run.built.model) for p in m.parameters()}
    by_lr: dict[float, set[int]] = {}
    for g in opt.param_groups:
        by_lr.setdefault(g["lr"], set()).update(id(p) for p in g["params"])
    assert by_lr[5e-4] == expert_params
    assert by_lr[1e-4] and not by_lr[1e-4] & expert_params


class _CtrlC(TrainerCallback):
    def __init__(self, at):
        self.at = at

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.at:
            signal.raise_signal(signal.SIGINT)  # the real signal path: handler -> finish step -> save -> stop


def test_ctrl_c_saves_a_checkpoint_and_resume_is_exact(tiny, tmp_path):
    cfg = _cfg(tiny, train={"steps": 8, "batch_size": 8}, checkpoint={"every": 0})
    whole = run_training(cfg, tmp_path / "whole")
    cut = run_training(cfg, tmp_path / "cut", callbacks=[_CtrlC(at=3)])
    assert cut.interrupted and cut.steps == 4 and cut.model_dir is None
    assert (tmp_path / "cut" / "checkpoints" / "checkpoint-4" / "optimizer.pt").is_file()
    with pytest.raises(FileExistsError, match="--resume"):
        run_training(cfg, tmp_path / "cut")
    changed = _cfg(tiny, train={"steps": 8, "batch_size": 8, "learning_rate": 0.5}, checkpoint={"every": 0})
    with pytest.raises(ConfigError, match="'train' differs"):
        run_training(changed, tmp_path / "cut", resume=True)
    resumed = run_training(cfg, tmp_path / "cut", resume=True)
    assert resumed.steps == 8 and resumed.losses == whole.losses
    a, b = mote.load(whole.model_dir), mote.load(resumed.model_dir)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        run_training(cfg, tmp_path / "never", resume=True)


def test_periodic_evaluation_is_pluggable(tiny, tmp_path, monkeypatch):
    calls = []

    def fake_evaluator(suite="quick", **options):
        def run(model, name, dense_prefixes=None):
            calls.append((suite, name))
            return {"datasets": {"Toy": {"main_score": 42.0}}}

        return run

    monkeypatch.setattr("mote.train.callbacks.quick_evaluator", fake_evaluator)
    cfg = _cfg(tiny, train={"steps": 4, "batch_size": 8}, eval={"every": 2, "at_end": True})
    run_training(cfg, tmp_path / "run")
    assert calls == [("quick", "mote@2"), ("quick", "mote@4")]
    saved = json.loads((tmp_path / "run" / "eval" / "step-4.json").read_text())
    assert saved["scores"] == {"datasets/Toy/main_score": 42.0}
    assert '"eval"' in (tmp_path / "run" / "metrics.jsonl").read_text()


def test_weight_decay_spares_unused_experts():
    from mote.experts import ExpertLinear
    from mote.train.trainer import expert_aware_weight_decay

    torch.manual_seed(0)
    layer = ExpertLinear(3, 4, 2)
    torch.nn.init.normal_(layer.weight)
    before = layer.weight.detach().clone()
    opt = torch.optim.AdamW([{"params": [layer.weight], "weight_decay": 0.5}], lr=0.1)
    assert expert_aware_weight_decay(opt, {id(layer.weight)}) == 1
    layer.weight.grad = torch.zeros_like(layer.weight)
    layer.weight.grad[1] = 1.0  # only expert 1 was used this step
    opt.step()
    assert torch.equal(layer.weight[0], before[0]) and torch.equal(layer.weight[2], before[2])
    expected = before[1] * (1 - 0.1 * 0.5) - 0.1  # decoupled decay, then Adam's first step (-lr * sign)
    assert torch.allclose(layer.weight[1], expected, atol=1e-5)


@pytest.mark.parametrize("method", ["mote", "ic"])
def test_saved_model_keeps_the_base_max_seq_length(tiny, tmp_path, method):
    base, _ = tiny
    cfg = _cfg(tiny, method=method, model={"base": base, "max_seq_length": 16}, train={"steps": 1})
    run = prepare_run(cfg, tmp_path / "run")
    assert run.built.model.max_seq_length == 16  # training truncates
    result = run_training(cfg, tmp_path / "run2")
    saved = SentenceTransformer(str(result.model_dir), device="cpu", trust_remote_code=True)
    assert saved.max_seq_length == SentenceTransformer(base).max_seq_length == 32
