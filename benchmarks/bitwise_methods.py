"""Every registered method trains bitwise as before the method configs (issue 29): the same tiny run under the
reference code (recipe keys of the earlier layout: ``arm:``, ``model.placement`` / ``trainable``, ``tlr:``,
``tsembed:``, ``loss.static_temperature``, ``tasks:``) and under this code (``method:``, ``objectives:``),
compared tensor by tensor (SHA-256 of every tensor of every saved safetensors file).

    python benchmarks/bitwise_methods.py prepare DIR                      # the tiny model + data (once)
    PYTHONPATH=<ref>/src python benchmarks/bitwise_methods.py train DIR old  # -> DIR/old.json
    PYTHONPATH=src python benchmarks/bitwise_methods.py train DIR new        # -> DIR/new.json
    python benchmarks/bitwise_methods.py compare DIR                      # one line per method; exit 1 on a difference

The tiny helpers are copied here (not imported) so that both code versions train from the same files.
CPU only, one thread (bitwise determinism); a few steps per method.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

TOPICS = {
    "space": ["rocket", "orbit", "planet", "astronaut", "telescope", "galaxy", "moon", "launch"],
    "food": ["bread", "cheese", "recipe", "oven", "garlic", "noodle", "soup", "butter"],
    "sport": ["goal", "match", "coach", "league", "tennis", "runner", "stadium", "season"],
    "money": ["bank", "loan", "credit", "stock", "price", "market", "budget", "salary"],
}


def _jsonl_gz(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def write_tiny_data(root: str | Path) -> Path:
    """Write the tiny data folder: ``train-toyqa`` (retrieval pairs, some hard negatives), ``train-toynli``
    (symmetric pairs), ``ToyClassification`` (``train`` + ``test`` splits, 4 labels) and ``train-toyclusters``
    (clustering sets)."""
    root = Path(root)
    qa, nli, cls_train, cls_test, sets = [], [], [], [], []
    names = list(TOPICS)
    for t, (topic, words) in enumerate(TOPICS.items()):
        other = TOPICS[names[(t + 1) % len(names)]]
        for i, w in enumerate(words):
            row = {"query": f"what is a {w} in {topic}", "positive": f"a {w} is a thing of {topic} number {i}"}
            if i % 2 == 0:
                row["negative"] = f"a {other[i]} is not about {topic}"
            qa.append(row)
            qa.append({"query": f"tell me about the {w}", "positive": f"the {w} story, {topic} edition {i}"})
            nli.append({"query": f"the {w} is near the {words[i - 1]}", "positive": f"a {words[i - 1]} by a {w}"})
            cls_train.append({"text": f"i love my {w} and {words[(i + 3) % 8]}", "label": topic})
            cls_train.append({"text": f"no {w} today, only {words[(i + 5) % 8]}", "label": topic})
            cls_test.append({"text": f"test {w} {topic}", "label": topic})
        sets.append({"sentences": [f"{w} news {j}" for j, w in enumerate(words)], "labels": [topic] * len(words)})
    mixed = {"sentences": [s for st in sets for s in st["sentences"]], "labels": [lb for st in sets for lb in
                                                                                 st["labels"]]}
    _jsonl_gz(root / "train-toyqa" / "train.jsonl.gz", qa)
    _jsonl_gz(root / "train-toynli" / "train.jsonl.gz", nli)
    _jsonl_gz(root / "ToyClassification" / "train.jsonl.gz", cls_train)
    _jsonl_gz(root / "ToyClassification" / "test.jsonl.gz", cls_test)
    _jsonl_gz(root / "train-toyclusters" / "train.jsonl.gz", [mixed])
    return root


def write_tiny_model(path: str | Path, layers: int = 2, hidden: int = 32, seed: int = 0, dropout: float = 0.1) -> str:
    """Save a random tiny BERT sentence-transformer (Transformer, mean Pooling, Normalize) and return its path."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling
    from transformers import AutoTokenizer, BertConfig, BertModel

    from mote.base_models import resolve_model_path

    path = Path(path)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("all-MiniLM-L6-v2"))
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=64,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    raw = path.with_name(path.name + "-hf")
    BertModel(config).save_pretrained(raw)
    tokenizer.save_pretrained(raw)
    st = SentenceTransformer(
        modules=[Transformer(str(raw), max_seq_length=32), Pooling(hidden, "mean"), Normalize()], device="cpu"
    )
    st.save(str(path))
    return str(path)


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
