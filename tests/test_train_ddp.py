"""`mote train` under torchrun with 2 CPU processes (gloo) gives the loss curve of 1 process, same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from tiny_train import tiny_config, write_tiny_data, write_tiny_model

from mote.train.config import load_config
from mote.train.trainer import run_training


def _losses(run: Path) -> list[tuple[int, float]]:
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [(x["step"], x["loss"]) for x in lines if "loss" in x]


def test_two_processes_match_one_process(tmp_path):
    # No dropout, so the two runs compute the same function; every task kind (hard negatives present on one
    # process and not the other, symmetric loss, label masking) is in the mix.
    base = write_tiny_model(tmp_path / "bert", dropout=0.0)
    root = write_tiny_data(tmp_path / "data")
    raw = tiny_config(base, root, train={"steps": 8, "batch_size": 8, "learning_rate": 1e-3, "warmup_ratio": 0.0},
                      checkpoint={"every": 0})
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))

    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    torchrun = str(Path(sys.executable).parent / "torchrun")
    proc = subprocess.run(
        [torchrun, "--standalone", "--nproc-per-node", "2", "-m", "mote.cli", "train", str(tmp_path / "cfg.yaml"),
         "--output", str(tmp_path / "ddp")],
        env=env, capture_output=True, text=True, timeout=400,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = run_training(load_config(tmp_path / "cfg.yaml"), tmp_path / "single")
    finally:
        torch.set_num_threads(n)

    ddp, one = _losses(tmp_path / "ddp"), _losses(tmp_path / "single")
    assert [s for s, _ in ddp] == [s for s, _ in one] == list(range(1, 9))
    for (_, a), (_, b) in zip(ddp, one):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-5)
    wa = load_file(tmp_path / "ddp" / "model" / "model.safetensors")
    wb = load_file(single.model_dir / "model.safetensors")
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) < 1e-4
