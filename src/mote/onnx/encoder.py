"""``OnnxEncoder``: a per-task dense ONNX export served with onnxruntime + tokenizers + numpy (torch-free).

Tokenizes with the tokenizer sentence-transformers used (saved at export) and prepends the default prompt (the task
prefix) from ``config_sentence_transformers.json``, so ``OnnxEncoder(folder).encode(texts)`` matches
``SentenceTransformer(folder).encode(texts)``; the export verified exactly this.

Example:
    >>> enc = OnnxEncoder("minilm-query")                  # doctest: +SKIP
    >>> enc.encode(["how do magnets work"]).shape          # doctest: +SKIP
    (1, 384)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mote.matryoshka import check_dim, truncate
from mote.onnx.files import CONFIG_FILE, INT8_FILE, LEGACY_INT8_FILE, MODEL_FILE, ONNX_DIR
from mote.onnx.session import make_session
from mote.onnx.tokens import check_texts, feeds, length_order, load_tokenizer, read_json

logger = logging.getLogger("mote.onnx")


class OnnxEncoder:
    """Encode texts with a dense ONNX export (onnxruntime only; no torch model runs), like the dense model does.

    Args:
        path: the dense folder holding ``onnx/`` (or the ``onnx/`` folder itself, self-contained).
        quantized: use the int8 model (lossy; its measured quality is logged when it loads).
        threads: onnxruntime intra-op threads (default: onnxruntime's choice, one per core).
        providers: onnxruntime execution providers (default ``["CPUExecutionProvider"]``).
        truncate_dim: keep the first ``truncate_dim`` dimensions and renormalise (Matryoshka models).

    Example:
        >>> OnnxEncoder("minilm-query").encode(["a", "b"], batch_size=16).shape   # doctest: +SKIP
        (2, 384)
    """

    def __init__(
        self,
        path: str | os.PathLike,
        quantized: bool = False,
        threads: int | None = None,
        providers: Sequence[str] | None = None,
        truncate_dim: int | None = None,
    ) -> None:
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
        self.meta = read_json(onnx_dir / CONFIG_FILE)
        if self.meta.get("kind") == "multitask":
            raise ValueError(f"{onnx_dir} is a multi-task export: use mote.onnx.MultiTaskOnnxEncoder")
        st_config = dense_dir / "config_sentence_transformers.json" if dense_dir is not None else None
        source = read_json(st_config) if st_config is not None and st_config.is_file() else self.meta
        self.prompts: dict[str, str] = dict(source.get("prompts") or {})
        self.default_prompt_name: str | None = source.get("default_prompt_name")
        self.quantized = quantized
        self.quality: dict[str, Any] | None = None
        int8_file = self.meta.get("int8_file", LEGACY_INT8_FILE if self.meta.get("format", 1) < 2 else INT8_FILE)
        model_file = onnx_dir / (int8_file if quantized else MODEL_FILE)
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
        self.tokenizer = load_tokenizer(onnx_dir, self.meta)
        self.session = make_session(model_file, threads, providers)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.full_dimension = int(self.meta["dimension"])
        self.truncate_dim = check_dim(truncate_dim, self.full_dimension)
        self.dimension = self.truncate_dim or self.full_dimension

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
        return feeds(self.tokenizer, texts, self.input_names)

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        """Embeddings of one batch of already-prompted texts (padded to the batch's longest), full dimension."""
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
        items = check_texts(texts)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        prefix = self.resolve_prompt(prompt, prompt_name)
        if not items:
            return np.zeros((0, self.dimension), dtype=np.float32)
        prompted = [prefix + t for t in items] if prefix else items
        order = length_order(items)
        out = np.empty((len(items), self.full_dimension), dtype=np.float32)
        for start in range(0, len(items), batch_size):
            idx = order[start : start + batch_size]
            out[idx] = self.embed_batch([prompted[i] for i in idx])
        return truncate(out, self.truncate_dim)

