"""Kill a training run with SIGKILL mid-way, resume it, and get exactly the weights of an uninterrupted run."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file
from tiny_train import tiny_config, train_beside_killed, write_tiny_data, write_tiny_model
from transformers import TrainerCallback

from mote.train.config import load_config
from mote.train.trainer import run_training

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: threads only add overhead


def test_resume_after_sigkill_is_bitwise_identical(tmp_path):
    base = write_tiny_model(tmp_path / "bert")
    root = write_tiny_data(tmp_path / "data")
    # 30 steps, an epoch is 24 batches: the last checkpoint before the kill (28) lies in the second epoch, so
    # the resumed run must replay the second epoch's batch order, skip 4 batches and restore the RNG states.
    raw = tiny_config(base, root, train={"steps": 30, "batch_size": 8, "learning_rate": 1e-3, "warmup_ratio": 0.1},
                      checkpoint={"every": 7, "keep": 2})
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    cfg = load_config(tmp_path / "cfg.yaml")

    whole = train_beside_killed(tmp_path / "cfg.yaml", cfg, tmp_path / "killed", tmp_path / "whole", kill_step=29)
    ckpts = tmp_path / "killed" / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir() if p.name.startswith("checkpoint-")) == [
        "checkpoint-21", "checkpoint-28"]
    # a save killed half-way leaves a partial staging folder, which resume ignores and removes
    (ckpts / ".staging" / "checkpoint-35").mkdir(parents=True)
    (ckpts / ".staging" / "checkpoint-35" / "model.safetensors").write_bytes(b"partial")
    # a save killed after its staged copy was complete, before the rename: that copy is the only checkpoint-28,
    # and resume must publish it (and continue from step 28), not delete it
    os.replace(ckpts / "checkpoint-28", ckpts / ".staging" / "checkpoint-28")
    (ckpts / ".staging" / "checkpoint-28" / ".complete").touch()

    class Steps(TrainerCallback):
        n = 0

        def on_step_end(self, args, state, control, **kwargs):
            Steps.n += 1

    resumed = run_training(cfg, tmp_path / "killed", resume=True, callbacks=[Steps()])
    assert resumed.steps == 30 and not (ckpts / ".staging").exists()  # garbage removed, nothing left behind
    assert Steps.n == 2  # resumed from the published checkpoint-28, not from checkpoint-21
    assert resumed.losses == whole.losses  # the log reads like one run: same steps, same losses
    a = load_file(whole.model_dir / "model.safetensors")
    b = load_file(resumed.model_dir / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_resume_puts_back_a_checkpoint_that_a_kill_left_renamed_aside(tmp_path):
    """The two-rename fallback of a checkpoint replacement killed between its renames: checkpoint-N is missing
    and its complete old copy sits beside it as .checkpoint-N.old-PID; recovery renames it back."""
    from mote.train.trainer import recover_checkpoints

    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    ckpts = tmp_path / "checkpoints"
    (ckpts / "checkpoint-3").mkdir(parents=True)
    aside = ckpts / f".checkpoint-6.old-{dead}"
    aside.mkdir()
    (aside / "state.txt").write_bytes(b"complete")  # a stand-in file (a model.safetensors is checked for damage)
    (ckpts / ".staging" / "checkpoint-9").mkdir(parents=True)  # partial: no .complete marker
    recover_checkpoints(ckpts)
    assert sorted(p.name for p in ckpts.iterdir()) == ["checkpoint-3", "checkpoint-6"]
    assert (ckpts / "checkpoint-6" / "state.txt").read_bytes() == b"complete"
