"""Optional ONNX export of an exported dense model (``pip install mote[onnx]``), verified for exactness.

:func:`export_onnx` turns a dense sentence-transformers folder (from :func:`mote.export.export_dense`) into
``<folder>/onnx/``: ``model.onnx`` (BERT + the folder's Pooling/Normalize in one graph; inputs ``input_ids``,
``attention_mask``, ``token_type_ids`` with dynamic batch and sequence axes; outputs ``sentence_embedding`` and
``last_hidden_state``), the tokenizer exactly as sentence-transformers configured it, and ``mote_onnx.json``
(prompts, tokenizer settings, measured quality). :class:`OnnxEncoder` serves the same embeddings with onnxruntime,
tokenizers and numpy only (no torch or transformers import in this module's inference path).

Why the dynamo exporter: the TorchScript exporter traces the model at the example's shape and has been measured to
give silently wrong embeddings for other shapes with transformers-5 BERT (min cosine 0.73); the dynamo exporter with
dynamic batch and sequence axes exports the shape logic symbolically. Every export is checked anyway: onnxruntime
against the torch sentence-transformers model on real sentences of many lengths (1 token to ``max_seq_length``,
truncated ones) and batch shapes (1, 3, 17, 64); below min cosine 0.9999 the export is refused and removed. Dynamic
int8 quantisation (``quantize=True``) is faster but lossy, so it is written only together with its measured quality
(cosine vs torch, STSBenchmark Spearman change).

Example:
    >>> report = export_onnx("minilm-query", quantize=True)   # doctest: +SKIP
    >>> print(report)                                          # doctest: +SKIP
    >>> OnnxEncoder("minilm-query").encode(["how do magnets work"]).shape   # doctest: +SKIP
    (1, 384)
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import shutil
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mote.io import atomic_dir, atomic_write_bytes, atomic_write_json, open_text

logger = logging.getLogger(__name__)

ONNX_DIR = "onnx"
MODEL_FILE = "model.onnx"
INT8_FILE = "model_int8.onnx"
CONFIG_FILE = "mote_onnx.json"
FORMAT_VERSION = 1
MIN_COSINE = 0.9999
BATCH_SIZES = (1, 3, 17, 64)
OUTPUT_NAMES = ("sentence_embedding", "last_hidden_state")
_INPUT_CANDIDATES = ("input_ids", "attention_mask", "token_type_ids")
_INSTALL_HINT = "pip install mote[onnx]"

# Used when no dataset folder is available (a plain `pip install mote`): varied, real-looking sentences.
_BUILTIN_SENTENCES = (
    "A man is playing a guitar.",
    "how do magnets work",
    "The new movie is awesome and I loved every minute of it, especially the ending.",
    "Stocks fell sharply on Tuesday after the central bank raised interest rates again.",
    "hi",
    "What is the capital of France? Paris is the capital and most populous city of France.",
    "A woman is slicing an onion.",
    "Two dogs are running through a snowy field while their owner throws a red ball.",
    "The committee postponed its decision until more data on the long-term safety of the drug becomes available.",
    "I can't log in to my account since yesterday's update; the app keeps asking for a code I never receive.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "ok",
    "Is it safe to eat raw cookie dough?",
    "The 2019 report found that 43% of respondents preferred remote work, up from 31% two years earlier.",
    'She said: "don\'t wait for me" - and left.',
    "Heavy rain caused flooding in several districts, and schools were closed for two days.",
    "Which programming language should I learn first if I want to analyse data?",
    "The cat sat on the mat.",
    "Researchers trained the model on 1.2 million labelled images and evaluated it on a held-out test set.",
    "Refund not received after 14 days",
)


class OnnxVerificationError(ValueError):
    """The ONNX model does not reproduce the torch model's embeddings (min cosine below the threshold)."""


def _require(*modules: str) -> list[Any]:
    """Import ``modules`` or raise an ``ImportError`` that names the missing ones and the extra to install."""
    loaded, missing = [], []
    for name in modules:
        try:
            loaded.append(importlib.import_module(name))
        except ImportError:
            missing.append(name)
    if missing:
        raise ImportError(
            f"ONNX support needs {', '.join(modules)} (missing: {', '.join(missing)}). "
            f"Install it with: {_INSTALL_HINT}"
        )
    return loaded


def require_onnx() -> None:
    """Raise an ``ImportError`` naming ``pip install mote[onnx]`` unless everything the export needs imports."""
    _require("onnx", "onnxruntime", "onnxscript", "tokenizers")


# ------------------------------------------------------------------------------------------------ reports
@dataclass
class Int8Quality:
    """Measured quality of the dynamic int8 model against the torch model."""

    path: Path
    size_mb: float
    min_cosine: float
    mean_cosine: float
    sts_pairs: int
    spearman_fp32: float
    spearman_int8: float

    @property
    def spearman_change(self) -> float:
        return self.spearman_int8 - self.spearman_fp32

    def __str__(self) -> str:
        return (
            f"int8 (dynamic quantisation, lossy): {self.path} ({self.size_mb:.1f} MB)\n"
            f"  cosine vs torch: min {self.min_cosine:.4f}  mean {self.mean_cosine:.4f}\n"
            f"  STSBenchmark Spearman ({self.sts_pairs} pairs): fp32/torch {self.spearman_fp32:.4f} -> int8 "
            f"{self.spearman_int8:.4f} (change {self.spearman_change:+.4f})\n"
            f"  use it only if this loss is acceptable: OnnxEncoder(folder, quantized=True)"
        )


@dataclass
class ExportReport:
    """What :func:`export_onnx` wrote and how exactly it reproduces the torch model.

    Example:
        >>> print(export_onnx("minilm-query"))   # doctest: +SKIP
    """

    path: Path
    opset: int
    size_mb: float
    seconds: float
    texts: int
    texts_source: str
    token_lengths: tuple[int, int]
    truncated: int
    batch_sizes: tuple[int, ...]
    min_cosine: float
    mean_cosine: float
    threshold: float = MIN_COSINE
    int8: Int8Quality | None = None
    checks: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        lo, hi = self.token_lengths
        lines = [
            f"ONNX export: {self.path} (opset {self.opset}, {self.size_mb:.1f} MB, {self.seconds:.1f} s)",
            f"  verified vs torch on {self.texts} {self.texts_source} texts ({lo}-{hi} tokens, {self.truncated} "
            f"truncated) in batches of {', '.join(map(str, self.batch_sizes))}, plus token-id batches of 1 token "
            f"to max length",
            f"  cosine min {self.min_cosine:.7f} (1 - {1 - self.min_cosine:.1e})  mean {self.mean_cosine:.7f}  "
            f"(export refused below {self.threshold})",
        ]
        if self.int8 is not None:
            lines.append(str(self.int8))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "path": str(self.path),
            "opset": self.opset,
            "size_mb": round(self.size_mb, 2),
            "seconds": round(self.seconds, 2),
            "texts": self.texts,
            "texts_source": self.texts_source,
            "token_lengths": list(self.token_lengths),
            "truncated": self.truncated,
            "batch_sizes": list(self.batch_sizes),
            "min_cosine": self.min_cosine,
            "mean_cosine": self.mean_cosine,
            "threshold": self.threshold,
            "checks": self.checks,
            "timings": {k: round(v, 2) for k, v in self.timings.items()},
        }
        if self.int8 is not None:
            q = self.int8
            out["int8"] = {
                "path": str(q.path),
                "size_mb": round(q.size_mb, 2),
                "min_cosine": q.min_cosine,
                "mean_cosine": q.mean_cosine,
                "sts_pairs": q.sts_pairs,
                "spearman_fp32": q.spearman_fp32,
                "spearman_int8": q.spearman_int8,
                "spearman_change": q.spearman_change,
            }
        return out


# ------------------------------------------------------------------------------------------------ inference
def _check_texts(texts: Any) -> list[str]:
    if isinstance(texts, str):
        return [texts]
    try:
        items = list(texts)
    except TypeError:
        raise TypeError(f"Expected a list of strings, got {type(texts).__name__}") from None
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise TypeError(f"Expected strings: item {i} is a {type(item).__name__} ({item!r:.60})")
    return items


def _read_json(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class OnnxEncoder:
    """Encode texts with an ONNX export (onnxruntime only; no torch model runs), like the dense model does.

    Tokenizes with the tokenizer sentence-transformers used (saved at export: same vocabulary, casing,
    ``max_seq_length``, truncation and padding; run by the ``tokenizers`` library, so inference needs only
    onnxruntime, tokenizers and numpy) and prepends the default prompt (the task prefix) from
    ``config_sentence_transformers.json``, so ``OnnxEncoder(folder).encode(texts)`` matches
    ``SentenceTransformer(folder).encode(texts)``; the export verified exactly this.

    Args:
        path: the dense folder holding ``onnx/`` (or the ``onnx/`` folder itself, self-contained).
        quantized: use the int8 model (lossy; its measured quality is logged when it loads).
        threads: onnxruntime intra-op threads (default: onnxruntime's choice, one per core).
        providers: onnxruntime execution providers (default ``["CPUExecutionProvider"]``).

    Example:
        >>> enc = OnnxEncoder("minilm-query")                  # doctest: +SKIP
        >>> enc.encode(["how do magnets work"]).shape          # doctest: +SKIP
        (1, 384)
    """

    def __init__(
        self,
        path: str | os.PathLike,
        quantized: bool = False,
        threads: int | None = None,
        providers: Sequence[str] | None = None,
    ) -> None:
        ort, tokenizers = _require("onnxruntime", "tokenizers")
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{str(path)!r} does not exist")
        if (path / CONFIG_FILE).is_file():
            onnx_dir, dense_dir = path, None
        elif (path / ONNX_DIR / CONFIG_FILE).is_file():
            onnx_dir, dense_dir = path / ONNX_DIR, path
        else:
            raise FileNotFoundError(
                f"No ONNX export in {str(path)!r}: run mote.onnx.export_onnx({str(path)!r}) or "
                f"`mote export MODEL OUT --task T --onnx` first"
            )
        self.path = onnx_dir
        self.meta = _read_json(onnx_dir / CONFIG_FILE)
        st_config = dense_dir / "config_sentence_transformers.json" if dense_dir is not None else None
        source = _read_json(st_config) if st_config is not None and st_config.is_file() else self.meta
        self.prompts: dict[str, str] = dict(source.get("prompts") or {})
        self.default_prompt_name: str | None = source.get("default_prompt_name")
        self.quantized = quantized
        self.quality: dict[str, Any] | None = None
        model_file = onnx_dir / (INT8_FILE if quantized else MODEL_FILE)
        if not model_file.is_file():
            hint = " (export with quantize=True / --quantize)" if quantized else ""
            raise FileNotFoundError(f"{model_file} does not exist{hint}")
        if quantized:
            self.quality = self.meta.get("int8")
            q = self.quality or {}
            logger.warning(
                "Using the lossy int8 ONNX model: cosine vs torch min %.4f mean %.4f, STSBenchmark Spearman change "
                "%+.4f (measured at export)",
                q.get("min_cosine", float("nan")),
                q.get("mean_cosine", float("nan")),
                q.get("spearman_change", float("nan")),
            )
        # The `tokenizers` library directly (what transformers-5 tokenizers wrap): no transformers/torch import.
        tok = self.meta["tokenizer"]
        self.tokenizer = tokenizers.Tokenizer.from_file(str(onnx_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(
            max_length=int(self.meta["max_seq_length"]), strategy="longest_first", direction=tok["truncation_side"]
        )
        self.tokenizer.enable_padding(
            direction=tok["padding_side"],
            pad_id=int(tok["pad_token_id"]),
            pad_type_id=int(tok["pad_token_type_id"]),
            pad_token=tok["pad_token"],
        )
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        self.session = ort.InferenceSession(
            str(model_file), options, providers=list(providers or ["CPUExecutionProvider"])
        )
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.dimension = int(self.meta["dimension"])

    @property
    def max_seq_length(self) -> int:
        return int(self.meta["max_seq_length"])

    @property
    def prompt(self) -> str:
        """The default prompt (task prefix) prepended to every text, as the dense model does."""
        return self.resolve_prompt()

    def resolve_prompt(self, prompt: str | None = None, prompt_name: str | None = None) -> str:
        """The prompt sentence-transformers would use: ``prompt``, else ``prompts[prompt_name]``, else default."""
        if prompt is not None:
            return prompt
        if prompt_name is not None:
            if prompt_name not in self.prompts:
                raise ValueError(f"Prompt name {prompt_name!r} not found; known prompts: {list(self.prompts)}")
            return self.prompts[prompt_name]
        if self.default_prompt_name is not None:
            return self.prompts.get(self.default_prompt_name) or ""
        return ""

    def tokenize(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Model inputs for already-prompted texts: truncated to ``max_seq_length``, padded to the longest."""
        encodings = self.tokenizer.encode_batch(texts)
        fields = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}
        return {
            name: np.asarray([getattr(e, fields[name]) for e in encodings], dtype=np.int64).reshape(len(texts), -1)
            for name in self.input_names
        }

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        """Embeddings of one batch of already-prompted texts (padded to the batch's longest)."""
        (out,) = self.session.run(["sentence_embedding"], self.tokenize(texts))
        return out.astype(np.float32, copy=False)

    def encode(
        self,
        texts: str | Sequence[str],
        batch_size: int = 32,
        prompt_name: str | None = None,
        prompt: str | None = None,
    ) -> np.ndarray:
        """Embeddings ``[len(texts), dim]`` (float32), with the default prompt prepended unless overridden.

        Example:
            >>> OnnxEncoder("minilm-query").encode(["a", "b"], batch_size=16).shape   # doctest: +SKIP
            (2, 384)
        """
        items = _check_texts(texts)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        prefix = self.resolve_prompt(prompt, prompt_name)
        if not items:
            return np.zeros((0, self.dimension), dtype=np.float32)
        prompted = [prefix + t for t in items] if prefix else items
        # Longest first, as sentence-transformers does: batches of similar length waste little on padding.
        order = np.argsort([-len(t) for t in items], kind="stable")
        out = np.empty((len(items), self.dimension), dtype=np.float32)
        for start in range(0, len(items), batch_size):
            idx = order[start : start + batch_size]
            out[idx] = self.embed_batch([prompted[i] for i in idx])
        return out


# ------------------------------------------------------------------------------------------------ export
def load_dense(dense_dir: str | os.PathLike):
    """Load a dense sentence-transformers folder (Transformer + Pooling/Dense/Normalize) or raise ``ValueError``."""
    dense_dir = Path(dense_dir)
    if not dense_dir.exists():
        raise FileNotFoundError(f"{str(dense_dir)!r} does not exist")
    modules_file = dense_dir / "modules.json"
    if not dense_dir.is_dir() or not modules_file.is_file():
        raise ValueError(f"{str(dense_dir)!r} is not a sentence-transformers model folder (no modules.json)")
    types = [m.get("type", "") for m in _read_json(modules_file)]
    if any(t.startswith("mote.") for t in types):
        raise ValueError(
            f"{str(dense_dir)!r} is a MoTE model; export one task as a dense model first: "
            f"mote.export.export_dense(model, task, out) or `mote export MODEL OUT --task T --onnx`"
        )
    if not types or not types[0].startswith("sentence_transformers.") or not types[0].endswith(".Transformer"):
        raise ValueError(f"{str(dense_dir)!r} is not a dense sentence-transformers model: first module {types[:1]}")
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Dense, Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    with _quiet_export():
        st = SentenceTransformer(str(dense_dir), device="cpu")
    first, heads = st[0], list(st)[1:]
    if not isinstance(first, Transformer) or first.tokenizer is None:
        raise ValueError(f"{str(dense_dir)!r}: first module must be a text sentence-transformers Transformer")
    if not getattr(first.tokenizer, "is_fast", False) or first.tokenizer.pad_token is None:
        raise ValueError(f"{str(dense_dir)!r}: the export needs a fast tokenizer (tokenizer.json) with a pad token")
    if first.module_output_name != "token_embeddings" or first.transformer_task != "feature-extraction":
        raise ValueError(f"{str(dense_dir)!r}: the Transformer must output token embeddings (feature-extraction)")
    bad = [type(m).__name__ for m in heads if not isinstance(m, Pooling | Dense | Normalize)]
    if bad or not any(isinstance(m, Pooling) for m in heads):
        raise ValueError(f"{str(dense_dir)!r}: expected Pooling (+ Dense/Normalize) after the Transformer, got {bad}")
    for m in heads:
        if isinstance(m, Pooling) and not m.include_prompt:
            raise ValueError(f"{str(dense_dir)!r}: Pooling with include_prompt=False is not supported by the export")
    return st.eval()


def _embedder(st):
    """A torch module ``(input_ids, attention_mask[, token_type_ids]) -> (sentence_embedding, token_embeddings)``."""
    import torch

    class SentenceEmbedder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = st[0].auto_model
            self.heads = torch.nn.ModuleList(list(st)[1:])

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_type_ids is not None:
                kwargs["token_type_ids"] = token_type_ids
            tokens = self.model(**kwargs, return_dict=True).last_hidden_state
            features = {"token_embeddings": tokens, "attention_mask": attention_mask}
            for head in self.heads:
                features = head(features)
            return features["sentence_embedding"], tokens

    return SentenceEmbedder().eval()


@contextlib.contextmanager
def _quiet_export(root: bool = False) -> Iterator[None]:
    """Silence the exporter's chatter (torchvision not installed, axis renames, quantiser advice)."""
    names = ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "sentence_transformers")
    loggers = [logging.getLogger(n) for n in names] + ([logging.getLogger()] if root else [])
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _export_bytes(module, example: dict[str, Any], max_len: int | None, opset: int | None) -> bytes:
    """The dynamo export (dynamic batch and sequence axes) serialised as one ONNX protobuf."""
    import torch

    batch = torch.export.Dim("batch")
    sequence = torch.export.Dim("sequence", max=max_len) if max_len else torch.export.Dim("sequence")
    names = list(example)
    args = tuple(example[n] for n in names)
    with _quiet_export(), torch.no_grad():
        program = torch.onnx.export(
            module,
            args,
            dynamo=True,
            input_names=names,
            output_names=list(OUTPUT_NAMES),
            opset_version=opset,
            dynamic_shapes=tuple({0: batch, 1: sequence} for _ in names),
            external_data=False,
            verbose=False,
        )
    return program.model_proto.SerializeToString()


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    denom = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.maximum(denom, 1e-30)


def _sts_pairs(data: str | os.PathLike | None, limit: int | None = None) -> list[tuple[str, str, float]]:
    from mote.data import data_dir

    path = data_dir(data) / "STSBenchmark" / "test.jsonl.gz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the STSBenchmark test set is needed to measure int8 quality")
    pairs = []
    with open_text(path) as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                pairs.append((row["sentence1"], row["sentence2"], float(row["score"])))
    return pairs[:limit] if limit else pairs


def verification_texts(
    tokenizer, max_seq_length: int, data: str | os.PathLike | None = None, n: int = 64, prompt: str = ""
) -> tuple[list[str], str]:
    """Real sentences spread over all lengths, edge cases, and texts of exactly, just under and over the limit.

    With ``prompt`` prepended, the long texts come to ``max_seq_length`` / 2, ``max_seq_length`` - 1,
    ``max_seq_length`` (the longest untruncated input), ``max_seq_length`` + 1 and 3x ``max_seq_length`` tokens
    (special tokens included; give or take one where a cut splits a word). Returns the texts and where they came
    from (``"STSBenchmark"``, or ``"built-in"`` without a dataset folder).

    Example:
        >>> texts, source = verification_texts(tokenizer, 256)   # doctest: +SKIP
    """
    try:
        sentences = sorted({s for a, b, _ in _sts_pairs(data) for s in (a, b)})
        source = "STSBenchmark"
    except FileNotFoundError:
        sentences, source = sorted(set(_BUILTIN_SENTENCES)), "built-in"
    by_len = sorted(sentences, key=lambda s: (len(s), s))
    idx = np.unique(np.linspace(0, len(by_len) - 1, num=min(n, len(by_len))).round().astype(int))
    picked = [by_len[i] for i in idx]
    edge = ["", "a", "?", "Hello!", "naïve café – 東京 🙂 ÀÉÎ", "   ", "ok ok ok"]

    m = max_seq_length
    budget = m - 2 - len(tokenizer(prompt, add_special_tokens=False, verbose=False)["input_ids"])
    rng = np.random.default_rng(0)
    parts: list[str] = []
    while len(parts) < 4 * m:  # enough words for 3x the limit, cycling through few (built-in) sentences
        parts.extend(sentences[i] for i in rng.permutation(len(sentences)))
    joined = " ".join(parts)
    offsets = tokenizer(joined, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    ends = [end for _, end in offsets["offset_mapping"]]
    long = [joined[: ends[min(k, len(ends)) - 1]] for k in (budget // 2, budget - 1, budget, budget + 1, 3 * m)]
    return picked + edge + long, source


def _token_lengths(tokenizer, texts: list[str]) -> list[int]:
    return [len(x) for x in tokenizer(texts, add_special_tokens=True, verbose=False)["input_ids"]]


def _verify_texts(encoder: OnnxEncoder, texts: list[str], reference: np.ndarray, batch_sizes) -> np.ndarray:
    """Cosines ONNX vs ``reference`` for every text, in shuffled (mixed-length, padded) batches of each size.

    Short texts come first and the long ones last, each group shuffled, so that every batch is ragged but only
    one batch per size mixes short and long texts (padding everything to ``max_seq_length`` costs a lot).
    """
    prefix = encoder.prompt
    prompted = [prefix + t for t in texts]
    lengths = encoder.tokenize(prompted)["attention_mask"].sum(axis=1)
    rng = np.random.default_rng(1)
    cos = []
    for size in batch_sizes:
        short = np.flatnonzero(lengths <= encoder.max_seq_length // 2)
        long = np.flatnonzero(lengths > encoder.max_seq_length // 2)
        order = np.concatenate([rng.permutation(short), rng.permutation(long)])
        out = np.empty_like(reference)
        for start in range(0, len(texts), size):
            idx = order[start : start + size]
            out[idx] = encoder.embed_batch([prompted[i] for i in idx])
        cos.append(_cosines(out, reference))
    cos.append(_cosines(encoder.encode(texts, batch_size=32), reference))  # the sorted encode() path too
    return np.concatenate(cos)


def _verify_ids(module, session, vocab_size: int, max_len: int, input_names: list[str]) -> np.ndarray:
    """Cosines ONNX vs torch on random token-id batches from 1 token to ``max_len``, with ragged padding."""
    import torch

    rng = np.random.default_rng(2)
    cos = []
    for batch, seq in ((1, 1), (3, 2), (17, 37), (64, 29), (2, max_len), (1, max_len - 1)):
        seq = max(1, min(seq, max_len))
        ids = rng.integers(999, max(1000, vocab_size), size=(batch, seq), dtype=np.int64)
        lengths = rng.integers(1, seq + 1, size=batch)
        lengths[0] = seq
        mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int64)
        ids = ids * mask
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        feeds = {k: v for k, v in feeds.items() if k in input_names}
        with torch.no_grad():
            ref = module(*(torch.from_numpy(feeds[n]) for n in input_names))[0].numpy()
        (out,) = session.run(["sentence_embedding"], feeds)
        cos.append(_cosines(out, ref))
    return np.concatenate(cos)


def _spearman(a: np.ndarray, b: np.ndarray, gold: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(_cosines(a, b), gold).statistic)


def export_onnx(
    dense_dir: str | os.PathLike,
    quantize: bool = False,
    opset: int | None = None,
    *,
    data: str | os.PathLike | None = None,
    min_cosine: float = MIN_COSINE,
    max_sts_pairs: int | None = None,
) -> ExportReport:
    """Export a dense sentence-transformers folder to ``<dense_dir>/onnx/`` and verify it against torch.

    Writes ``model.onnx`` (and with ``quantize=True`` ``model_int8.onnx``), the tokenizer and ``mote_onnx.json``
    into a temp folder that replaces ``onnx/`` in one rename. Raises :class:`OnnxVerificationError` (and leaves no
    ``onnx/`` folder) if the fp32 model's min cosine vs torch is below ``min_cosine``. The int8 model is never
    refused but always reported with its quality: cosine vs torch and STSBenchmark Spearman change (needs the
    dataset folder: ``data``, ``$MOTE_DATA`` or ``../shared/data``; ``max_sts_pairs`` limits the pairs).

    Example:
        >>> print(export_onnx("minilm-query", quantize=True))   # doctest: +SKIP
    """
    require_onnx()
    t0 = time.perf_counter()
    dense_dir = Path(dense_dir)
    st = load_dense(dense_dir)
    sts = _sts_pairs(data, max_sts_pairs) if quantize else None  # fail early: int8 is never offered unmeasured
    import torch

    transformer = st[0]
    tokenizer = transformer.tokenizer
    max_len = int(st.max_seq_length)
    config = transformer.auto_model.config
    max_positions = getattr(config, "max_position_embeddings", None)
    prompt = (st.prompts.get(st.default_prompt_name) if st.default_prompt_name else None) or ""
    texts, source = verification_texts(tokenizer, max_len, data, prompt=prompt)
    timings = {"load": time.perf_counter() - t0}

    module = _embedder(st)
    # Two rows of different lengths, so the example has padding (the dynamic axes do not depend on it).
    pair = [texts[0], f"{texts[0]} {texts[1]}"]
    example = tokenizer(pair, padding=True, truncation="longest_first", return_tensors="pt")
    input_names = [n for n in _INPUT_CANDIDATES if n in example]
    try:
        proto = _export_bytes(module, {n: example[n] for n in input_names}, max_positions, opset)
    except Exception as e:
        raise RuntimeError(f"ONNX export of {type(transformer.auto_model).__name__} failed: {e}") from e
    timings["export"] = time.perf_counter() - t0 - sum(timings.values())

    target = dense_dir / ONNX_DIR
    reference = st.encode(texts, batch_size=32, convert_to_numpy=True, show_progress_bar=False)
    lengths = _token_lengths(tokenizer, [prompt + t for t in texts])
    timings["torch_reference"] = time.perf_counter() - t0 - sum(timings.values())
    meta: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "exported_from": str(dense_dir.resolve()),
        "inputs": input_names,
        "outputs": list(OUTPUT_NAMES),
        "dimension": int(st.get_embedding_dimension()),
        "max_seq_length": max_len,
        "tokenizer": {
            "pad_token": tokenizer.pad_token,
            "pad_token_id": tokenizer.pad_token_id,
            "pad_token_type_id": getattr(tokenizer, "pad_token_type_id", 0),
            "padding_side": tokenizer.padding_side,
            "truncation_side": tokenizer.truncation_side,
        },
        "prompts": dict(st.prompts),
        "default_prompt_name": st.default_prompt_name,
        "torch_version": torch.__version__,
    }
    try:
        with atomic_dir(target, overwrite=True) as tmp:
            atomic_write_bytes(tmp / MODEL_FILE, proto)
            tokenizer.save_pretrained(str(tmp))
            atomic_write_json(tmp / CONFIG_FILE, meta)
            encoder = OnnxEncoder(tmp)
            text_cos = _verify_texts(encoder, texts, reference, BATCH_SIZES)
            id_cos = _verify_ids(module, encoder.session, int(config.vocab_size), max_len, input_names)
            all_cos = np.concatenate([text_cos, id_cos])
            timings["verify"] = time.perf_counter() - t0 - sum(timings.values())
            report = ExportReport(
                path=target / MODEL_FILE,
                opset=_opset(proto),
                size_mb=len(proto) / 2**20,
                seconds=0.0,
                texts=len(texts),
                texts_source=source,
                token_lengths=(min(lengths), min(max(lengths), max_len)),
                truncated=sum(n > max_len for n in lengths),
                batch_sizes=BATCH_SIZES,
                min_cosine=float(all_cos.min()),
                mean_cosine=float(all_cos.mean()),
                threshold=min_cosine,
                checks={"texts_min_cosine": float(text_cos.min()), "token_ids_min_cosine": float(id_cos.min())},
                timings=timings,
            )
            del encoder
            if not report.min_cosine >= min_cosine:
                raise OnnxVerificationError(
                    f"ONNX export of {dense_dir} does not reproduce the torch model: min cosine "
                    f"{report.min_cosine:.6f} < {min_cosine} (texts {report.checks['texts_min_cosine']:.6f}, "
                    f"token ids {report.checks['token_ids_min_cosine']:.6f}); nothing was kept"
                )
            if quantize:
                report.int8 = _quantize(tmp, target, texts, reference, sts)
                timings["int8"] = time.perf_counter() - t0 - sum(timings.values())
            report.seconds = time.perf_counter() - t0
            meta["verification"] = report.to_dict()
            meta["int8"] = meta["verification"].pop("int8", None)
            atomic_write_json(tmp / CONFIG_FILE, meta)
    except OnnxVerificationError:
        shutil.rmtree(target, ignore_errors=True)  # an older export of this folder is no longer trustworthy
        raise
    return report


def _opset(proto: bytes) -> int:
    import onnx

    model = onnx.load_from_string(proto)
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), -1)


def _quantize(tmp: Path, target: Path, texts: list[str], reference: np.ndarray, sts) -> Int8Quality:
    """Write ``model_int8.onnx`` (dynamic int8, per-channel weights) and measure it against the fp32 model.

    Cosines: int8 vs torch on the verification texts, and int8 vs fp32 ONNX (verified equal to torch) on the
    STSBenchmark sentences. Spearman: fp32 ONNX (= torch) vs int8, cosine similarity against the gold scores.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet_export(root=True):
        # Per-channel weight scales: mean cosine 0.993 vs 0.968 per-tensor on MiniLM, at the same size and speed.
        quantize_dynamic(str(tmp / MODEL_FILE), str(tmp / INT8_FILE), weight_type=QuantType.QInt8, per_channel=True)
    fp32, int8 = OnnxEncoder(tmp), _int8_encoder(tmp)
    a, b, gold = zip(*sts)
    unique = sorted(set(a) | set(b))
    pos = {s: i for i, s in enumerate(unique)}
    ia, ib = [pos[s] for s in a], [pos[s] for s in b]
    ref, q = fp32.encode(unique, batch_size=64), int8.encode(unique, batch_size=64)
    cos = np.concatenate([_cosines(int8.encode(texts, batch_size=32), reference), _cosines(q, ref)])
    gold_arr = np.asarray(gold)
    return Int8Quality(
        path=target / INT8_FILE,
        size_mb=(tmp / INT8_FILE).stat().st_size / 2**20,
        min_cosine=float(cos.min()),
        mean_cosine=float(cos.mean()),
        sts_pairs=len(sts),
        spearman_fp32=_spearman(ref[ia], ref[ib], gold_arr),
        spearman_int8=_spearman(q[ia], q[ib], gold_arr),
    )


def _int8_encoder(onnx_dir: Path) -> OnnxEncoder:
    """The int8 encoder without the load-time quality warning (its quality is being measured right now)."""
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        return OnnxEncoder(onnx_dir, quantized=True)
    finally:
        logger.setLevel(level)
