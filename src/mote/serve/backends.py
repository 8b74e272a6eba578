"""What a ``mote serve`` replica holds: a model that embeds a batch whose rows have different tasks in ONE forward.

:func:`load_backend` recognises the folder:

* a MoTE or TLR folder (``mote_config.json``) or a TSEmbed folder (``tsembed_config.json``): torch; the module
  routes each row by its task (``preprocess(texts, task=[one per row])``), so a batch is never split by task;
* a dense export (:func:`mote.export.export_dense`, a plain sentence-transformers folder whose default prompt is its
  task's prefix): torch, one task;
* a multi-task ONNX export (:func:`mote.onnx.export_multitask`, ``mote_onnx.json`` of kind ``multitask``): one
  onnxruntime session with a ``task_id`` input per row, no torch;
* ``backend="onnx"`` on a dense export with ``onnx/`` (:func:`mote.onnx.export_onnx`): :class:`mote.onnx.OnnxEncoder`.

Every backend gives the same view (:class:`Backend`): its tasks and their prefixes, the default task, the embedding
width, the Matryoshka dimensions, the token limit, each text's token count (for the 413 / truncate rule) and
``embed(texts, tasks)``. A MoTE folder served with ``backend="onnx"`` must be exported first (``mote export MODEL
--onnx --all-tasks OUT``; ``mote serve`` does it for you).

Example:
    >>> backend = load_backend("minilm-mote")                                      # doctest: +SKIP
    >>> backend.embed(["how do magnets work", "Magnets attract iron."], ["query", "document"]).shape  # doctest: +SKIP
    (2, 384)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

BACKENDS = ("torch", "onnx")
MOTE_CONFIG = "mote_config.json"
TSEMBED_CONFIG = "tsembed_config.json"
ONNX_CONFIG = "mote_onnx.json"


@dataclass
class Backend:
    """A loaded model as the service sees it (see the module doc). ``embed`` returns full-width float32 rows."""

    kind: str  # "mote", "tlr", "tsembed", "dense", "onnx-multitask", "onnx-dense"
    backend: str  # "torch" | "onnx"
    prefixes: dict[str, str]  # task -> the prefix the task is named by (what /v1/models lists)
    default_task: str
    dimension: int
    max_seq_length: int
    matryoshka_dims: list[int] | None
    _embed: Any = field(repr=False)
    _count: Any = field(repr=False)

    @property
    def tasks(self) -> list[str]:
        return list(self.prefixes)

    def embed(self, texts: list[str], tasks: list[str]) -> np.ndarray:
        """``[len(texts), dimension]`` float32, row i encoded as ``tasks[i]``, in one forward."""
        return self._embed(texts, tasks)

    def token_counts(self, texts: list[str], tasks: list[str]) -> list[int]:
        """Tokens of each ``prefix + text`` with special tokens, before truncation."""
        return self._count(texts, tasks)


def folder_kind(path: str | os.PathLike) -> str:
    """``mote`` (MoTE or TLR), ``tsembed``, ``onnx-multitask`` or ``dense`` for a folder, else FileNotFoundError."""
    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(f"model folder {str(p)!r} does not exist")
    if (p / TSEMBED_CONFIG).is_file():
        return "tsembed"
    if (p / MOTE_CONFIG).is_file():
        return "mote"  # (or TLR: told apart once loaded, by the module's routing mode)
    if (p / ONNX_CONFIG).is_file():
        meta = json.loads((p / ONNX_CONFIG).read_text(encoding="utf-8"))
        if meta.get("kind") == "multitask":
            return "onnx-multitask"
    if (p / "modules.json").is_file():
        return "dense"
    raise FileNotFoundError(f"{str(p)!r} is neither a MoTE / TLR / TSEmbed folder, a dense sentence-transformers "
                            f"export nor a multi-task ONNX export")


def load_backend(path: str | os.PathLike, backend: str = "torch", threads: int | None = None) -> Backend:
    """The :class:`Backend` for a model folder (see the module doc); ``threads``: torch / onnxruntime threads."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    kind = folder_kind(path)
    if kind == "onnx-multitask":
        return _onnx_multitask(path, threads)
    if backend == "onnx":
        if kind == "dense":
            return _onnx_dense(path, threads)
        raise ValueError(f"--backend onnx serves a multi-task ONNX export or a dense export with onnx/; {path} is a "
                         f"{kind} folder: export it first (`mote export {path} --onnx --all-tasks OUT`)")
    if threads:
        import torch

        torch.set_num_threads(threads)
    return _torch_dense(path) if kind == "dense" else _torch_routed(path, kind)


# ------------------------------------------------------------------------------------------------ torch
def _torch_routed(path, kind: str) -> Backend:
    import torch

    if kind == "tsembed":
        from mote.lora.st import load as load_tsembed

        model = load_tsembed(path, device="cpu")
    else:
        import mote

        model = mote.load(str(path), device="cpu")
    model.eval()
    module = model[0]
    routing = module.routing
    counter = _hf_counter(getattr(module, "tokenizer", None) or model.tokenizer)
    lower = bool(getattr(module, "do_lower_case", False))

    @torch.inference_mode()
    def embed(texts: list[str], tasks: list[str]) -> np.ndarray:
        features = model.preprocess(texts, task=tasks)  # per-row task ids: the module routes each row
        return model(features)["sentence_embedding"].float().numpy()

    def count(texts: list[str], tasks: list[str]) -> list[int]:
        strings = [routing.resolve(t)[1] + x for x, t in zip(texts, tasks)]
        return counter([s.lower() for s in strings] if lower else strings)

    if kind == "mote" and getattr(module, "routing_mode", "sequence") == "token":
        kind = "tlr"
    return Backend(
        kind=kind, backend="torch", prefixes={r.name: r.prefix for r in routing.routes},
        default_task=routing.default_task, dimension=int(model.get_embedding_dimension()),
        max_seq_length=int(model.get_max_seq_length()),
        matryoshka_dims=getattr(module, "matryoshka_dims", None), _embed=embed, _count=count,
    )


def _torch_dense(path) -> Backend:
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(path), device="cpu")
    model.eval()
    task, prefix = _dense_task(model.prompts, model.default_prompt_name, path)
    lower = bool(getattr(model[0], "do_lower_case", False))
    counter = _hf_counter(model.tokenizer)

    @torch.inference_mode()
    def embed(texts: list[str], tasks: list[str]) -> np.ndarray:
        features = model.preprocess([prefix + t for t in texts])
        return model(features)["sentence_embedding"].float().numpy()

    def count(texts: list[str], tasks: list[str]) -> list[int]:
        strings = [prefix + x for x in texts]
        return counter([s.lower() for s in strings] if lower else strings)

    meta = _export_meta(path)
    return Backend(
        kind="dense", backend="torch", prefixes={task: prefix}, default_task=task,
        dimension=int(model.get_embedding_dimension()), max_seq_length=int(model.get_max_seq_length()),
        matryoshka_dims=meta.get("matryoshka_dims"), _embed=embed, _count=count,
    )


def _hf_counter(tokenizer):
    """A token counter of its own for a Hugging Face tokenizer: the request handler counts while a worker thread
    tokenises a batch, and a fast tokenizer's truncation / padding settings are state shared by its callers."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        counter = _untruncated(backend)
        return lambda strings: [len(e.ids) for e in counter.encode_batch(strings)]
    import copy

    counter = copy.deepcopy(tokenizer)
    return lambda strings: [len(x) for x in counter(strings, add_special_tokens=True, truncation=False,
                                                    verbose=False)["input_ids"]]


def _dense_task(prompts: dict[str, str] | None, default: str | None, path) -> tuple[str, str]:
    prompts = dict(prompts or {})
    if default and default in prompts:
        return default, prompts[default]
    if len(prompts) == 1:
        return next(iter(prompts.items()))
    return "default", ""  # a plain model: one unnamed task, no prefix


def _export_meta(path) -> dict[str, Any]:
    for name in ("mote_export.json", "export.json"):
        f = Path(path) / name
        if f.is_file():
            return json.loads(f.read_text(encoding="utf-8"))
    return {}


# ------------------------------------------------------------------------------------------------ onnx
def _onnx_multitask(path, threads: int | None) -> Backend:
    from mote.onnx import MultiTaskOnnxEncoder

    enc = MultiTaskOnnxEncoder(path, threads=threads)
    counter = _untruncated(enc.tokenizer)

    def embed(texts: list[str], tasks: list[str]) -> np.ndarray:
        ids = enc.task_ids(tasks, len(texts))
        return enc.embed_batch(enc.prompted(texts, ids), ids)  # one session run, task_id per row

    def count(texts: list[str], tasks: list[str]) -> list[int]:
        return [len(e.ids) for e in counter.encode_batch(enc.prompted(texts, enc.task_ids(tasks, len(texts))))]

    return Backend(
        kind="onnx-multitask", backend="onnx", prefixes=dict(enc.prefixes), default_task=enc.default_task,
        dimension=enc.full_dimension, max_seq_length=enc.max_seq_length,
        matryoshka_dims=enc.meta.get("matryoshka_dims"), _embed=embed, _count=count,
    )


def _onnx_dense(path, threads: int | None) -> Backend:
    from mote.onnx import OnnxEncoder

    enc = OnnxEncoder(path, threads=threads)
    task, prefix = _dense_task(enc.prompts, enc.default_prompt_name, path)
    counter = _untruncated(enc.tokenizer)
    lower = bool(enc.meta.get("do_lower_case", False))

    def embed(texts: list[str], tasks: list[str]) -> np.ndarray:
        return enc.encode(texts, batch_size=max(1, len(texts)))

    def count(texts: list[str], tasks: list[str]) -> list[int]:
        strings = [prefix + x for x in texts]
        return [len(e.ids) for e in counter.encode_batch([s.lower() for s in strings] if lower else strings)]

    return Backend(
        kind="onnx-dense", backend="onnx", prefixes={task: prefix}, default_task=task,
        dimension=int(enc.meta.get("dimension") or enc.encode(["x"]).shape[1]),
        max_seq_length=int(enc.meta["max_seq_length"]), matryoshka_dims=_export_meta(path).get("matryoshka_dims"),
        _embed=embed, _count=count,
    )


def _untruncated(tokenizer):
    """A copy of a ``tokenizers.Tokenizer`` that neither truncates nor pads (to count a text's tokens)."""
    import tokenizers

    copy = tokenizers.Tokenizer.from_str(tokenizer.to_str())
    copy.no_truncation()
    copy.no_padding()
    return copy
