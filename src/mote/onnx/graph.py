"""Torch side of the dense export: load a dense folder, wrap it as one module, export it with the dynamo exporter.

Why the dynamo exporter: the TorchScript exporter traces the model at the example's shape and has been measured to
give silently wrong embeddings for other shapes with transformers-5 BERT (min cosine 0.73); the dynamo exporter with
dynamic batch and sequence axes exports the shape logic symbolically. torch is imported inside the functions, so
importing this module stays torch-free.

Example:
    >>> st = load_dense("minilm-query"); proto = export_bytes(embedder(st), example, 512, None)   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mote.onnx.files import OUTPUT_NAMES
from mote.onnx.tokens import read_json


def load_dense(dense_dir: str | os.PathLike):
    """Load a dense sentence-transformers folder (Transformer + Pooling/Dense/Normalize) or raise ``ValueError``."""
    dense_dir = Path(dense_dir)
    if not dense_dir.exists():
        raise FileNotFoundError(f"{str(dense_dir)!r} does not exist")
    modules_file = dense_dir / "modules.json"
    if not dense_dir.is_dir() or not modules_file.is_file():
        raise ValueError(f"{str(dense_dir)!r} is not a sentence-transformers model folder (no modules.json)")
    types = [m.get("type", "") for m in read_json(modules_file)]
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

    with quiet_export():
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


def embedder(st):
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
def quiet_export(root: bool = False) -> Iterator[None]:
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


def export_bytes(
    module, example: dict[str, Any], max_len: int | None, opset: int | None, per_row: tuple[str, ...] = ()
) -> bytes:
    """The dynamo export (dynamic batch and sequence axes) serialised as one ONNX protobuf.

    Inputs named in ``per_row`` are ``[batch]`` vectors (e.g. ``task_id``); the others ``[batch, sequence]``.
    """
    import torch

    batch = torch.export.Dim("batch")
    sequence = torch.export.Dim("sequence", max=max_len) if max_len else torch.export.Dim("sequence")
    names = list(example)
    args = tuple(example[n] for n in names)
    with quiet_export(), torch.no_grad():
        program = torch.onnx.export(
            module,
            args,
            dynamo=True,
            input_names=names,
            output_names=list(OUTPUT_NAMES),
            opset_version=opset,
            dynamic_shapes=tuple({0: batch} if n in per_row else {0: batch, 1: sequence} for n in names),
            external_data=False,
            verbose=False,
        )
    return program.model_proto.SerializeToString()


def opset_of(proto: bytes) -> int:
    import onnx

    model = onnx.load_from_string(proto)
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), -1)
