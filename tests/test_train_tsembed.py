"""The TSEmbed methods in the TA-CL trainer, on a tiny random BERT: recipe checks, two stages with EANS, the no-EANS
ablation, exact resume mid-stage-2 after SIGKILL, and the saved model / adapters."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file
from sentence_transformers import SentenceTransformer
from tiny_train import tiny_config, train_beside_killed, write_tiny_data, write_tiny_model
from transformers import TrainerCallback

import mote
import mote.lora as tl
from mote.data.sampler import task_batches
from mote.lora.eans import EANSMiner
from mote.train.config import ConfigError, load_config, parse_config, rescale_stage_steps
from mote.train.losses import TaskInfoNCE
from mote.train.trainer import OffsetTaskBatchSampler, run_training

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
LAB = Path(__file__).resolve().parents[1] / "lab"
TEXTS = ["what is a rocket", "a moon launch", "cheese and bread", "the league season"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: threads only add overhead


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-tsembed")
    return write_tiny_model(root / "bert"), write_tiny_data(root / "data")


def _raw(tiny, method="tsembed", steps=8, **overrides):
    base, root = tiny
    tsembed = {"lora": {"r": 4}, "eans": {"pool_size": 12, "refresh_every": 2, "num_negatives": 1},
               "stage1": {"learning_rate": 3e-3}, "stage2": {"learning_rate": 2e-3}}
    return tiny_config(base, root, method={"name": method, **tsembed, **overrides.pop("tsembed", {})},
                       train={"steps": steps, "batch_size": 8, "learning_rate": 1e-3, "warmup_ratio": 0.0},
                       **overrides)


# ------------------------------------------------------------------------------------------------ recipe
def test_recipe_checks_and_stage_steps(tiny):
    cfg = parse_config(_raw(tiny, steps=9))
    assert (cfg.method.stage1.steps, cfg.method.stage2.steps) == (4, 5)  # train.steps split half / half
    assert cfg.method.stage1.learning_rate == 3e-3 and cfg.method.stage2.eans and not cfg.method.stage2.train_router
    noeans_cfg = parse_config(_raw(tiny, method="tsembed-noeans", steps=9))
    noeans = noeans_cfg.training_method().plan(noeans_cfg)
    assert noeans.stage2 is None and noeans.stage1.steps == 9 and noeans.total_steps == 9
    partial = parse_config(_raw(tiny, steps=10, tsembed={"stage2": {"steps": 3}})).method
    assert (partial.stage1.steps, partial.stage2.steps) == (7, 3)
    # the dumped recipe re-parses to itself (resume compares them), and --steps keeps the split's ratio
    dumped = cfg.model_dump(mode="json")
    assert parse_config(dumped).model_dump() == cfg.model_dump()
    dumped["train"]["steps"] = 90
    dumped["method"] = rescale_stage_steps(dumped["method"], 90)
    assert (dumped["method"]["stage1"]["steps"], dumped["method"]["stage2"]["steps"]) == (40, 50)
    parse_config(dumped)

    bad = _raw(tiny, tsembed={"stage1": {"steps": 3}, "stage2": {"steps": 3}},
               loss={"cached": True, "mini_batch_size": 4})
    bad["train"]["expert_learning_rate"] = 1e-3
    with pytest.raises(ConfigError) as info:
        parse_config(bad)
    text = str(info.value)
    assert info.value.problems and len(info.value.problems) == 3, text
    assert "method.stage1.steps (3) + method.stage2.steps (3) = 6, but train.steps is 8" in text
    assert "loss.cached: the tsembed method needs the plain loss" in text
    assert "train.expert_learning_rate" in text
    with pytest.raises(ConfigError, match="EANS needs lora.routing: token"):  # EANS with mergeable routing
        parse_config(_raw(tiny, tsembed={"lora": {"routing": "sequence"}}))
    with pytest.raises(ConfigError, match=r"method\.lora: .*top_k \(5\) is larger than num_experts \(4\)"):
        parse_config(_raw(tiny, tsembed={"lora": {"top_k": 5}}))
    with pytest.raises(ConfigError, match="loss.cached: the tsembed-noeans method"):
        parse_config(_raw(tiny, method="tsembed-noeans", loss={"cached": True, "mini_batch_size": 4}))
    # TSEmbed's settings are its own: another method refuses them, naming its own
    with pytest.raises(ConfigError, match="method.lora: not a setting of the mote method; its settings: placement, "
                                          "trainable"):
        parse_config(_raw(tiny, method="mote"))


def test_shipped_recipe_has_the_mote_data_budget():
    mote_raw = yaml.safe_load((LAB / "reproduce-recipe.yaml").read_text())  # the lab's mote recipe
    ts_raw = yaml.safe_load((CONFIGS / "tsembed-minilm.yaml").read_text())
    for key in ("seed", "objectives", "data"):
        assert ts_raw[key] == mote_raw[key], key
    for key in ("steps", "batch_size"):
        assert ts_raw["train"][key] == mote_raw["train"][key], key
    assert ts_raw["model"]["base"] == mote_raw["model"]["base"]
    assert ts_raw["model"]["max_seq_length"] == mote_raw["model"]["max_seq_length"]
    cfg = load_config(CONFIGS / "tsembed-minilm.yaml", check_files=False)
    assert cfg.method.name == "tsembed" and cfg.method.total_steps == cfg.train.steps
    assert load_config(LAB / "reproduce-recipe.yaml", check_files=False, method="tsembed").method.total_steps == 120


def test_a_later_stage_continues_the_batch_stream():
    sizes, tasks = [24, 16, 40], ["a", "a", "b"]
    stream = [b for e in range(4) for b in task_batches(sizes, tasks, 8, 5, e)]  # the one-run stream, 4 epochs
    n = len(stream) // 4
    data = torch.utils.data.ConcatDataset([range(s) for s in sizes])
    samplers = [torch.utils.data.BatchSampler(range(s), 8, True) for s in sizes]
    sampler = OffsetTaskBatchSampler(data, samplers, seed=5, group_tasks=tasks, offset=n + 3)
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        assert list(sampler) == stream[n + 3 + epoch * n : n + 3 + (epoch + 1) * n]


# ------------------------------------------------------------------------------------------------ training
class _Spy:
    """Records the EANS miner's refreshes / picks and the negatives each TA-CL loss scored."""

    def __init__(self, monkeypatch):
        self.events: list[tuple] = []
        refresh, mine, compute = EANSMiner.refresh, EANSMiner.mine, TaskInfoNCE.compute

        def spy_refresh(miner, model, step=0):
            self.events.append(("refresh", step))
            return refresh(miner, model, step)

        def spy_mine(miner, group, query_routing, query_labels=None, positives=None):
            out = mine(miner, group, query_routing, query_labels, positives)
            picked = out.per_query >= 0
            mined_labels = out.labels[out.per_query.clamp_min(0)][picked]
            query = query_labels.cpu().unsqueeze(1).expand_as(out.per_query)[picked]
            self.events.append(("mine", len(out.items), bool((mined_labels == query).any())))
            return out

        def spy_compute(loss, embeddings, labels):
            self.events.append(("loss", embeddings[2].shape[0] if len(embeddings) > 2 else 0))
            return compute(loss, embeddings, labels)

        monkeypatch.setattr(EANSMiner, "refresh", spy_refresh)
        monkeypatch.setattr(EANSMiner, "mine", spy_mine)
        monkeypatch.setattr(TaskInfoNCE, "compute", spy_compute)

    def of(self, kind):
        return [e for e in self.events if e[0] == kind]


class _Keep(TrainerCallback):
    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.model = model


def test_two_stages_with_eans_save_and_reload(tiny, tmp_path, monkeypatch):
    spy = _Spy(monkeypatch)
    keep = _Keep()
    cfg = parse_config(_raw(tiny, steps=8, checkpoint={"every": 0}))
    result = run_training(cfg, tmp_path / "run", callbacks=[keep])
    assert result.steps == 8 and not result.interrupted and result.model_dir == tmp_path / "run" / "model"

    # stage 1: plain negatives, no miner; stage 2: refreshed at its start and every 2 steps (not after its last),
    # one mining per batch, and every loss saw the mined negatives on top of the data's own
    start = spy.events.index(("refresh", 0))
    stage1, stage2 = spy.events[:start], spy.events[start:]
    assert [e[0] for e in stage1] == ["loss"] * 4
    assert [e for e in stage2 if e[0] == "refresh"] == [("refresh", 0), ("refresh", 2)]
    mined = [e for e in stage2 if e[0] == "mine"]
    scored = [e for e in stage2 if e[0] == "loss"]
    assert len(mined) == len(scored) == 4
    assert all(m[1] > 0 and s[1] >= m[1] for m, s in zip(mined, scored))
    assert not any(m[2] for m in mined)  # never the anchor's own label (its positives share it)

    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = [(x["step"], x["stage"]) for x in lines if "loss" in x]
    assert logged == [(s, "stage1") for s in range(1, 5)] + [(s, "stage2") for s in range(5, 9)]
    assert all("load_balance" in x for x in lines if "loss" in x and x["stage"] == "stage1")
    params = json.loads((tmp_path / "run" / "parameters.json").read_text())
    assert params["trainable"] == params["adapters"] and params["active"] < params["total"]
    assert params["stages"][1]["trainable"] == params["experts"]  # routers frozen in stage 2

    # stage 2 froze the routers and moved the experts; the backbone never moved
    s1 = load_file(tmp_path / "run" / "stage1" / "model" / "moe_lora" / "adapter_model.safetensors")
    s2 = load_file(result.model_dir / "moe_lora" / "adapter_model.safetensors")
    assert all(torch.equal(s1[k], s2[k]) for k in s1 if ".router." in k)
    assert any(not torch.equal(s1[k], s2[k]) for k in s1 if ".lora_B" in k)
    base, _ = tiny
    before, after = load_file(Path(base) / "model.safetensors"), load_file(result.model_dir / "model.safetensors")
    assert after.keys() == before.keys() and all(torch.equal(before[k], after[k]) for k in before)

    # the folder loads with SentenceTransformer(path) after `import mote`, and encodes as the trained model did
    trained = keep.model.eval()
    loaded = SentenceTransformer(str(result.model_dir), device="cpu")
    assert isinstance(loaded[0], tl.TSEmbedTransformer) and mote.lora.tsembed_module(loaded) is loaded[0]
    assert loaded.max_seq_length == trained.max_seq_length == 32
    for task in ("query", "document", "classification"):
        want = trained.encode(TEXTS, task=task)
        assert np.array_equal(loaded.encode(TEXTS, task=task), want)
        assert not np.allclose(SentenceTransformer(base, device="cpu").encode(TEXTS), want, atol=1e-4)
    # the adapters alone: the model's moe_lora/ is an adapter folder; save_adapter writes another one
    from_folder = tl.from_adapter(base, result.model_dir / "moe_lora")
    tl.save_adapter(loaded[0].auto_model, tmp_path / "adapter", loaded[0].lora_config, loaded[0].routing)
    from_saved = tl.from_adapter(base, tmp_path / "adapter")
    for model in (from_folder, from_saved):
        assert np.array_equal(model.encode(TEXTS, task="query"), trained.encode(TEXTS, task="query"))


def test_noeans_method_runs_stage_one_for_all_steps(tiny, tmp_path, monkeypatch):
    spy = _Spy(monkeypatch)
    cfg = parse_config(_raw(tiny, method="tsembed-noeans", steps=8, checkpoint={"every": 0}))
    result = run_training(cfg, tmp_path / "run")
    assert result.steps == 8 and [s for s, _ in result.losses] == list(range(1, 9))
    assert not spy.of("refresh") and not spy.of("mine")
    assert sorted(p.name for p in (tmp_path / "run").iterdir() if p.is_dir()) == ["model", "stage1"]
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {x["stage"] for x in lines} == {"stage1"}
    assert all("load_balance" in x for x in lines if "loss" in x)  # stage 1 keeps the balancing loss throughout
    assert SentenceTransformer(str(result.model_dir), device="cpu").encode(TEXTS, task="query").shape == (4, 32)


# ------------------------------------------------------------------------------------------------ resume
def test_resume_mid_stage_two_after_sigkill_is_bitwise_identical(tiny, tmp_path):
    # stage 2: 7 steps, pools refreshed at 0, 3, 6 from 12 of the candidates; checkpoints at 2, 4; killed at 5.
    # The resumed run restores stage 2's optimizer, schedule, RNG, batch position and the EANS pools of step 3.
    raw = _raw(tiny, steps=11, tsembed={"stage1": {"steps": 4}, "eans": {"pool_size": 12, "refresh_every": 3}},
               checkpoint={"every": 2, "keep": 2})
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    cfg = load_config(tmp_path / "cfg.yaml")
    whole = train_beside_killed(tmp_path / "cfg.yaml", cfg, tmp_path / "killed", tmp_path / "whole", kill_step=5,
                                stage="stage2")
    killed = tmp_path / "killed"
    assert (killed / "stage1" / "model").is_dir() and not (killed / "model").exists()
    ckpts = sorted(p.name for p in (killed / "stage2" / "checkpoints").iterdir())
    assert ckpts == ["checkpoint-2", "checkpoint-4"]
    assert (killed / "stage2" / "checkpoints" / "checkpoint-4" / "eans_miner.pt").is_file()
    with pytest.raises(FileExistsError, match="--resume"):
        run_training(cfg, killed)

    resumed = run_training(cfg, killed, resume=True)
    assert resumed.steps == 11 and not resumed.interrupted
    assert resumed.losses == whole.losses  # one log, as if uninterrupted
    for name in ("model.safetensors", "moe_lora/adapter_model.safetensors"):
        a, b = load_file(whole.model_dir / name), load_file(resumed.model_dir / name)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)
