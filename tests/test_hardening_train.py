"""Issue 27, the training cases: a checkpoint knows its run, a damaged checkpoint is set aside, a finished run is not
resumed, a run folder has one writer, ``--steps 1`` works for every method that is not staged."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from tiny_train import tiny_config, write_tiny_data, write_tiny_model

from mote.train.checkpoints import RUN_FILE
from mote.train.config import ConfigError, parse_config
from mote.train.trainer import run_training

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: threads only add overhead


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    return write_tiny_model(root / "bert"), write_tiny_data(root / "data")


def recipe(tiny, **overrides):
    base, data = tiny
    return tiny_config(base, data, select={"enabled": False}, **overrides)


@pytest.fixture(scope="module")
def finished(tiny, tmp_path_factory) -> Path:
    """A finished 6-step run with checkpoints at 3 and 6."""
    out = tmp_path_factory.mktemp("finished") / "run"
    result = run_training(parse_config(recipe(tiny)), out)
    assert result.steps == 6 and result.model_dir is not None
    return out


@pytest.fixture
def killed(finished, tmp_path) -> Path:
    """The same run killed after its last checkpoint, before its final model was saved."""
    out = Path(shutil.copytree(finished, tmp_path / "run"))
    shutil.rmtree(out / "model", ignore_errors=True)
    shutil.rmtree(out / "trained", ignore_errors=True)
    return out


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    folder = run / "trained" if (run / "trained").is_dir() else run / "model"
    return load_file(folder / "model.safetensors")


def test_resume_refuses_another_runs_checkpoint_naming_both(finished, killed, tiny):
    (killed / "train_config.yaml").unlink()  # old: nothing was checked without it, and the run continued
    other = parse_config(recipe(tiny, seed=8, train={"learning_rate": 5e-3}))
    with pytest.raises(ConfigError) as e:
        run_training(other, killed, resume=True)
    msg = str(e.value)
    assert "belongs to another run" in msg and "seed 7 (checkpoint) vs 8 (this recipe)" in msg
    assert "recipe_sha256" in msg and "another --output" in msg
    assert yaml.safe_load((killed / "checkpoints" / "checkpoint-6" / RUN_FILE).read_text())["seed"] == 7


def test_resume_from_the_final_checkpoint_takes_no_extra_step(finished, killed, tiny):
    result = run_training(parse_config(recipe(tiny)), killed, resume=True)
    assert result.steps == 6  # old: 7, with a checkpoint-7 saved past max_steps
    assert sorted(p.name for p in (killed / "checkpoints").iterdir()) == ["checkpoint-3", "checkpoint-6"]
    want, got = final_weights(finished), final_weights(killed)
    assert all(torch.equal(want[k], got[k]) for k in want)


def test_resuming_a_finished_run_is_refused(finished, tiny):
    ckpts = finished / "checkpoints"
    before = ckpts.stat().st_mtime_ns, sorted(p.name for p in ckpts.iterdir())
    with pytest.raises(FileExistsError, match="finished run .* nothing to resume"):
        run_training(parse_config(recipe(tiny)), finished, resume=True)  # old: one more step, saved again
    assert (ckpts.stat().st_mtime_ns, sorted(p.name for p in ckpts.iterdir())) == before


def test_a_truncated_optimizer_state_falls_back_to_the_checkpoint_before(finished, killed, tiny, caplog):
    optimizer = killed / "checkpoints" / "checkpoint-6" / "optimizer.pt"
    optimizer.write_bytes(optimizer.read_bytes()[:100])  # old: a raw traceback from torch.load inside the trainer
    result = run_training(parse_config(recipe(tiny)), killed, resume=True)
    assert "optimizer.pt" in caplog.text and "set aside as .damaged-checkpoint-6" in caplog.text
    assert result.steps == 6 and (killed / "checkpoints" / ".damaged-checkpoint-6" / "optimizer.pt").is_file()
    want, got = final_weights(finished), final_weights(killed)  # steps 4-6 replayed from checkpoint-3
    assert all(torch.equal(want[k], got[k]) for k in want)


def test_a_second_mote_train_into_one_output_is_refused(tiny, tmp_path, capsys):
    from mote.atomic import output_lock
    from mote.cli import main

    config = tmp_path / "recipe.yaml"
    config.write_text(yaml.safe_dump(recipe(tiny)))
    out = tmp_path / "run"
    with output_lock(out):  # another `mote train` is running there
        assert main(["train", str(config), "--output", str(out)]) == 2
    assert "being written by another process" in capsys.readouterr().err
    assert not out.exists()  # nothing of the running one was touched


def test_steps_1_trains_the_mote_method(tiny, tmp_path, capsys):
    from mote.cli import main

    raw = recipe(tiny, checkpoint={"every": 0})
    raw["train"]["steps"] = 6
    config = tmp_path / "recipe.yaml"
    config.write_text(yaml.safe_dump(raw))
    assert main(["train", str(config), "--output", str(tmp_path / "run"), "--steps", "1"]) == 0  # old: refused
    assert '"steps": 1' in capsys.readouterr().out
    # --method keeps the recipe's method settings: MoTE's placement is not a TSEmbed setting
    assert main(["train", str(config), "--output", str(tmp_path / "x"), "--method", "tsembed"]) == 2
    assert "method.placement: not a setting of the tsembed method" in capsys.readouterr().err
    raw["method"] = {"name": "tsembed", "stage1": {"steps": 3}, "stage2": {"steps": 3}}
    config.write_text(yaml.safe_dump(raw))
    assert main(["train", str(config), "--output", str(tmp_path / "ts"), "--steps", "1"]) == 2  # two stages
    assert "train.steps is 1" in capsys.readouterr().err
