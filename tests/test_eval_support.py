"""Shared helpers of the mote.eval tests: synthetic dataset folders, fake encoders, a tiny random model.

(Only helpers live here; pytest collects nothing from this file.)
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np

TOPICS = {
    "sport": "football goal match team player score league coach stadium referee",
    "food": "pizza pasta bread cheese tomato soup kitchen recipe spicy dinner",
    "tech": "computer software laptop code server network chip python keyboard screen",
}
DIM = 16


def _sentences(rng: np.random.Generator, topic: str, n: int, words: int = 6) -> list[str]:
    vocab = TOPICS[topic].split()
    return [" ".join(rng.choice(vocab, size=words)) + f" {topic[:2]}{i}" for i in range(n)]


def write_jsonl_gz(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def _meta(folder: Path, task: str, role: str = "eval", **extra) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "meta.json").write_text(json.dumps({"name": folder.name, "task": task, "role": role, **extra}))


def make_data_dir(root: Path, seed: int = 0) -> Path:
    """One small synthetic dataset per task type (names unknown to mote), plus a training-role folder."""
    rng = np.random.default_rng(seed)
    topics = list(TOPICS)
    # STS: same-topic pairs score high
    rows = []
    for i in range(40):
        a, b = rng.choice(topics, 2)
        rows.append(
            {
                "sentence1": _sentences(rng, a, 1)[0],
                "sentence2": _sentences(rng, b, 1)[0],
                "score": float(4.0 if a == b else rng.uniform(0, 2)) + i * 1e-3,
            }
        )
    _meta(root / "ToySTS", "STS", score_range=[0, 5])
    write_jsonl_gz(root / "ToySTS" / "test.jsonl.gz", rows)
    # Classification
    _meta(root / "ToyClassification", "Classification", protocol={"n_experiments": 3})  # mteb default 10: slower
    for split, n in (("train", 20), ("test", 8)):
        rows = [{"text": s, "label": t} for t in topics for s in _sentences(rng, t, n)]
        write_jsonl_gz(root / "ToyClassification" / f"{split}.jsonl.gz", rows)
    # Clustering: two sets
    _meta(root / "ToyClustering", "Clustering")
    pool = {t: _sentences(rng, t, 16) for t in topics}
    sets = []
    for k in range(2):  # overlapping sets, as MTEB's TwentyNewsgroupsClustering
        sents, labels = [], []
        for t in topics:
            s = pool[t][4 * k : 4 * k + 12]
            sents += s
            labels += [t] * len(s)
        sets.append({"sentences": sents, "labels": labels})
    write_jsonl_gz(root / "ToyClustering" / "test.jsonl.gz", sets)
    # Pair classification
    rows = []
    for _ in range(40):
        a, b = rng.choice(topics, 2)
        rows.append(
            {"sentence1": _sentences(rng, a, 1)[0], "sentence2": _sentences(rng, b, 1)[0], "label": int(a == b)}
        )
    _meta(root / "ToyPairs", "PairClassification")
    write_jsonl_gz(root / "ToyPairs" / "test.jsonl.gz", rows)
    # Reranking
    rows = []
    for t in topics:
        for _ in range(4):
            others = [o for o in topics if o != t]
            rows.append(
                {
                    "query": _sentences(rng, t, 1, 3)[0],
                    "positive": _sentences(rng, t, 2),
                    "negative": _sentences(rng, others[0], 2) + _sentences(rng, others[1], 2),
                }
            )
    _meta(root / "ToyReranking", "Reranking")
    write_jsonl_gz(root / "ToyReranking" / "test.jsonl.gz", rows)
    # Retrieval (BEIR)
    folder = root / "ToyRetrieval"
    _meta(folder, "Retrieval")
    corpus, queries, qrels = [], [], []
    for t in topics:
        for j, s in enumerate(_sentences(rng, t, 10)):
            corpus.append({"_id": f"{t}-d{j}", "title": t if j % 2 else "", "text": s})
        for j, s in enumerate(_sentences(rng, t, 3, 3)):
            queries.append({"_id": f"{t}-q{j}", "text": s})
            qrels += [(f"{t}-q{j}", f"{t}-d{k}", 1) for k in range(j, j + 3)]
    write_jsonl_gz(folder / "corpus.jsonl.gz", corpus)
    write_jsonl_gz(folder / "queries.jsonl.gz", queries)
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in qrels)
    )
    # A training folder: never evaluated
    _meta(root / "train-Toy", "pairs", role="train")
    write_jsonl_gz(root / "train-Toy" / "train.jsonl.gz", [{"query": "a", "positive": "b"}])
    return root


def fake_embeddings(texts: list[str], salt: str = "") -> np.ndarray:
    """Deterministic embeddings with signal: a text is the sum of its words' random vectors (+ salt)."""
    out = np.zeros((len(texts), DIM), dtype=np.float32)
    for i, t in enumerate(texts):
        for w in (salt + " " + t).lower().split():
            seed = int.from_bytes(hashlib.sha256(w.encode()).digest()[:8], "little")
            out[i] += np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return out


class FakeEncoder:
    """A recording :class:`mote.eval.Encoder`: counts encoded texts per task; ``salt_by_task`` makes views differ."""

    def __init__(self, name: str = "fake", salt_by_task: bool = False, identity: str = "fake-v1") -> None:
        self.name = name
        self.identity = identity
        self.salt_by_task = salt_by_task
        self.calls: Counter[str] = Counter()
        self.texts: dict[str, list[str]] = {}

    def encode(self, texts, task, *, batch_size=32, show_progress=False):
        texts = list(texts)
        self.calls[task] += len(texts)
        self.texts.setdefault(task, []).extend(texts)
        return fake_embeddings(texts, task if self.salt_by_task else "")


def make_tiny_model(path: Path) -> Path:
    """A tiny random BERT sentence-transformers model (MiniLM's tokenizer), saved at ``path``."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling
    from transformers import AutoTokenizer, BertConfig, BertModel

    import mote

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(mote.resolve_model_path("all-MiniLM-L6-v2"))
    config = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    hf_dir = path.parent / (path.name + "-hf")
    BertModel(config).save_pretrained(hf_dir)
    tok.save_pretrained(hf_dir)
    transformer = Transformer(str(hf_dir), max_seq_length=64)
    model = SentenceTransformer(modules=[transformer, Pooling(32, "mean"), Normalize()], device="cpu")
    model.save(str(path))
    return path
