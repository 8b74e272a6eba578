"""Tiny fixtures for the tests (moved from mote.train.testing): a random BERT sentence-transformer and a few dozen
training rows.

Nothing here downloads: the model is a random ``BertConfig`` (hidden 32) with the offline MiniLM tokenizer, and
the data are JSONL files written to a folder laid out like ``$MOTE_DATA`` (``train-*`` folders and a classification
set with ``train`` and ``test`` splits, so that refusing the test split can be tested).

Example:
    >>> root = write_tiny_data(tmp_path / "data")              # doctest: +SKIP
    >>> base = write_tiny_model(tmp_path / "tiny-bert")        # doctest: +SKIP
    >>> cfg = parse_config(tiny_config(base, root))            # doctest: +SKIP
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import textwrap
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


TINY_METHOD: dict[str, Any] = {"placement": "every", "trainable": "all"}  # where the method has these settings


def tiny_method(method: Any = "mote") -> dict[str, Any]:
    """A ``method:`` section for the tiny recipes: ``method`` (a name or a mapping) over :data:`TINY_METHOD`'s
    settings that the method has (experts in every layer, every weight trained)."""
    from mote.methods import METHODS, method_config_class, method_settings

    settings = method_settings(method)
    if not isinstance(settings, dict) or settings.get("name") not in METHODS:
        return settings
    fields = method_config_class(settings["name"]).model_fields
    return {**{k: v for k, v in TINY_METHOD.items() if k in fields}, **settings}


def tiny_config(base: str, data_root: str | Path, **overrides: Any) -> dict[str, Any]:
    """A small recipe over the tiny data: all four task kinds, a few steps, no progress bar. ``method=`` (a name
    or a mapping) goes through :func:`tiny_method`."""
    cfg: dict[str, Any] = {
        "method": tiny_method(overrides.pop("method", "mote")),
        "seed": 7,
        "model": {"base": base, "max_seq_length": 32},
        "data": {"data_dir": str(data_root), "holdout": 0.0},
        "select": {"enabled": False},  # the trainer's tests train only; selection's tests turn it on
        "objectives": {
            "retrieval": {"datasets": ["train-toyqa"]},
            "symmetric": {"datasets": ["train-toynli"]},
            "classification": {"datasets": ["ToyClassification"]},
            "clustering": {"datasets": ["train-toyclusters"]},
        },
        "train": {"steps": 6, "batch_size": 8, "learning_rate": 1e-3, "warmup_ratio": 0.0},
        "log": {"every": 1, "progress": False},
        "checkpoint": {"every": 3, "keep": 3},
    }
    for key, value in overrides.items():  # sections are merged, except ``objectives`` (replaced)
        if isinstance(value, dict) and isinstance(cfg.get(key), dict) and key != "objectives":
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


_KILLED = textwrap.dedent(
    """
    import os, signal, sys
    import torch
    torch.set_num_threads(1)
    from transformers import TrainerCallback
    from mote.train.config import load_config
    from mote.train.trainer import run_training

    class Kill(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if sys.argv[4] in args.output_dir and state.global_step == int(sys.argv[3]):
                os.kill(os.getpid(), signal.SIGKILL)  # no clean-up of any kind

    run_training(load_config(sys.argv[1]), sys.argv[2], callbacks=[Kill()])
    """
)


def train_beside_killed(cfg_file: Path, cfg: Any, killed: Path, whole: Path, kill_step: int, stage: str = "") -> Any:
    """Train ``cfg`` into ``whole`` here while a child process trains ``cfg_file`` into ``killed`` and SIGKILLs
    itself at ``kill_step`` (of the trainer whose output folder holds ``stage``). They run side by side, one core
    each, sharing only their inputs (recipe, data, base model), which neither writes. Returns the uninterrupted
    run's result once the child is dead by SIGKILL."""
    from mote.train.trainer import run_training

    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    child = subprocess.Popen([sys.executable, "-c", _KILLED, str(cfg_file), str(killed), str(kill_step), stage],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        result = run_training(cfg, whole)
        _, stderr = child.communicate(timeout=300)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == -9, stderr[-2000:]
    return result
