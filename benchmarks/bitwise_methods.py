"""Every registered method trains bitwise as before the method configs (issue 29): the same tiny run under the
reference code (recipe keys of the earlier layout: ``arm:``, ``model.placement`` / ``trainable``, ``tlr:``,
``tsembed:``, ``loss.static_temperature``, ``tasks:``) and under this code (``method:``, ``objectives:``),
compared tensor by tensor (SHA-256 of every tensor of every saved safetensors file).

    python benchmarks/bitwise_methods.py prepare DIR                      # the tiny model + data (once)
    PYTHONPATH=<ref>/src python benchmarks/bitwise_methods.py train DIR old  # -> DIR/old.json
    PYTHONPATH=src python benchmarks/bitwise_methods.py train DIR new        # -> DIR/new.json
    python benchmarks/bitwise_methods.py compare DIR                      # one line per method; exit 1 on a difference

``prepare`` writes the tiny model and data once, with the tests' helpers (tests/tiny_train.py), so that both
code versions train from the same files.
CPU only, one thread (bitwise determinism); a few steps per method.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

METHODS = ["mote", "ic", "static", "tlr", "ic-matched", "tsembed", "tsembed-noeans"]
TSEMBED = {"lora": {"r": 4}, "eans": {"pool_size": 12, "refresh_every": 2, "num_negatives": 1},
           "stage1": {"learning_rate": 3e-3}, "stage2": {"learning_rate": 2e-3}}
# per method: its settings (not all defaults, so that each one is carried over)
SETTINGS: dict[str, dict[str, Any]] = {
    "mote": {"placement": "every"},  # trainable left to the default (experts)
    "ic": {},
    "static": {"placement": "every", "trainable": "all", "temperature": 0.07},
    "tlr": {"placement": "every-other", "trainable": "all", "aux_loss_weight": 0.02, "router_learning_rate": 5e-3},
    "ic-matched": {"placement": "every-other"},
    "tsembed": TSEMBED,
    "tsembed-noeans": TSEMBED,
}
OLD_KEYS = {"placement": ("model", "placement"), "trainable": ("model", "trainable"),
            "temperature": ("loss", "static_temperature"), "aux_loss_weight": ("tlr", "aux_loss_weight"),
            "router_learning_rate": ("tlr", "router_learning_rate")}


def recipe(method: str, spelling: str, base: str, data: str) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "seed": 7,
        "model": {"base": base, "max_seq_length": 32},
        "data": {"data_dir": data, "holdout": 0.0},
        "select": {"enabled": False},
        # the training objectives: `tasks:` in the earlier layout, `objectives:` now
        ("objectives" if spelling == "new" else "tasks"): {
            "retrieval": {"datasets": ["train-toyqa"]}, "symmetric": {"datasets": ["train-toynli"]},
            "classification": {"datasets": ["ToyClassification"]}, "clustering": {"datasets": ["train-toyclusters"]}},
        "train": {"steps": 6, "batch_size": 8, "learning_rate": 1e-3, "warmup_ratio": 0.0},
        "log": {"every": 1, "progress": False},
        "checkpoint": {"every": 3, "keep": 3},
    }
    settings = SETTINGS[method]
    if spelling == "new":
        cfg["method"] = {"name": method, **settings}
        return cfg
    cfg["arm"] = method
    if method.startswith("tsembed"):
        cfg["tsembed"] = settings
        return cfg
    for key, value in settings.items():
        section, name = OLD_KEYS[key]
        cfg.setdefault(section, {})[name] = value
    return cfg


def tensor_hashes(model_dir: Path) -> dict[str, str]:
    import hashlib

    from safetensors.torch import load_file

    out = {}
    for f in sorted(model_dir.rglob("*.safetensors")):
        for name, t in sorted(load_file(str(f)).items()):
            out[f"{f.relative_to(model_dir)}:{name}"] = hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()
    return out


def train(root: Path, spelling: str) -> None:
    import torch

    from mote.train.config import parse_config
    from mote.train.trainer import run_training

    torch.set_num_threads(1)
    results = {}
    for method in METHODS:
        cfg = parse_config(recipe(method, spelling, str(root / "bert"), str(root / "data")))
        out = root / f"run-{spelling}-{method}"
        result = run_training(cfg, out)
        hashes = tensor_hashes(Path(result.model_dir))
        assert hashes, f"{method}: no safetensors under {result.model_dir}"
        results[method] = hashes
        print(f"{spelling} {method}: {len(hashes)} tensors", flush=True)
    (root / f"{spelling}.json").write_text(json.dumps(results, indent=1))


def compare(root: Path) -> int:
    old = json.loads((root / "old.json").read_text())
    new = json.loads((root / "new.json").read_text())
    failed = 0
    for method in METHODS:
        a, b = old.get(method), new.get(method)
        if a is None or b is None:
            print(f"{method}: missing ({'old' if a is None else 'new'})")
            failed += 1
            continue
        diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        print(f"{method}: {'identical' if not diff else 'DIFFERENT'} ({len(a)} tensors"
              + (f"; {len(diff)} differ, e.g. {diff[:3]})" if diff else ")"))
        failed += bool(diff)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    import argparse
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("verb", choices=["prepare", "train", "compare"])
    p.add_argument("dir")
    p.add_argument("spelling", nargs="?", choices=["old", "new"])
    a = p.parse_args(argv)
    root = Path(a.dir)
    if a.verb == "prepare":
        root.mkdir(parents=True, exist_ok=True)
        import sys

        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from tiny_train import write_tiny_data, write_tiny_model

        write_tiny_model(root / "bert")
        write_tiny_data(root / "data")
        return 0
    if a.verb == "train":
        if a.spelling is None:
            p.error("train needs old or new")
        train(root, a.spelling)
        return 0
    return compare(root)


if __name__ == "__main__":
    raise SystemExit(main())
