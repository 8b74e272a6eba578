"""Export one task of a MoTE model as a plain dense sentence-transformers model (stock modules only).

Routing is per sequence and deterministic, so for a fixed task the MoTE model *is* a dense model: the task's
expert slice of every stacked weight. The exported folder loads with vanilla sentence-transformers (no mote
import), stores the task's prefix as its default prompt, and encodes at exactly the dense model's cost.

Example:
    >>> export_dense("minilm-mote", "query", "minilm-query")   # doctest: +SKIP
    >>> SentenceTransformer("minilm-query").encode(["how do magnets work"])  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sentence_transformers import SentenceTransformer
from sentence_transformers.base.modules import Transformer

from mote.api import load, mote_module
from mote.atomic import atomic_dir
from mote.experts import densify
from mote.model import MoTETransformer


def sequence_routed_module(model: SentenceTransformer) -> MoTETransformer:
    """The MoTE module of ``model`` if it routes whole sequences by task; else a ``ValueError`` naming why not.

    Token-routed models (TLR: a learned router per token; TSEmbed: MoE-LoRA routers) choose experts from the text
    itself, so no single expert slice (dense export) and no ``task_id`` input (multi-task ONNX) reproduce them.
    """
    first = model[0] if len(model) else None
    if type(first) is not MoTETransformer:
        if getattr(first, "routing", None) is not None:
            raise ValueError(
                f"{type(first).__name__} routes tokens with learned routers, not whole sequences by task: neither a "
                "per-task dense export nor a task_id graph reproduces it. Serve it with torch (mote.load) or export a "
                "MoTE model (method mote) instead."
            )
        return mote_module(model)  # not a MoTE model at all: the usual error
    return first


class NotExportableError(ValueError):
    """A model that no plain dense model equals (token routing)."""


def export_dense(
    model: SentenceTransformer | str | os.PathLike,
    task: str,
    output: str | os.PathLike,
    overwrite: bool = False,
    then: Callable[[Path], Any] | None = None,
) -> Path:
    """Write task ``task`` of a MoTE model as a plain sentence-transformers folder at ``output`` (atomically).

    The folder holds a stock ``Transformer`` (BERT weights = the task's experts), the MoTE model's remaining
    modules (Pooling, Normalize), and ``prompts = {task: prefix}`` with ``default_prompt_name = task`` so that
    ``SentenceTransformer(output).encode(texts)`` prepends the task's instruction like the MoTE model does.
    ``then(folder)`` runs on the complete folder before it is published, so that what it adds (the ONNX export of
    ``mote export --onnx``) is published with it in one step: ``output`` is the old whole or the new whole.
    """
    if not isinstance(model, SentenceTransformer):
        model = load(model, device="cpu")
    module = mote_module(model)
    if module.routing_mode != "sequence":
        raise NotExportableError(
            f"This is a {module.routing_mode}-routed MoTE model (TLR): learned routers pick an expert for every "
            "token, so no dense model computes one task of it and it cannot be exported. Serve the routed model "
            "itself (mote.load, `mote encode`)."
        )
    route = module.routing.route(task)
    hf = copy.deepcopy(module.auto_model).cpu()
    densify(hf, route.expert)
    output = Path(output)
    with atomic_dir(output, overwrite=overwrite) as tmp:
        hf.save_pretrained(tmp)
        module.tokenizer.save_pretrained(tmp)
        with open(tmp / "sentence_bert_config.json", "w", encoding="utf-8") as f:
            json.dump({"max_seq_length": module.max_seq_length, "do_lower_case": module.do_lower_case}, f, indent=2)
        transformer = Transformer(str(tmp), max_seq_length=module.max_seq_length, do_lower_case=module.do_lower_case)
        dense = SentenceTransformer(
            modules=[transformer, *list(model)[1:]],
            prompts={task: route.text_prefix},
            default_prompt_name=task,
            similarity_fn_name=model.similarity_fn_name,
            device="cpu",
        )
        dense.save(str(tmp))
        meta = {"exported_from": "mote", "task": task, "prefix": route.text_prefix, "expert": route.expert}
        with open(tmp / "mote_export.json", "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=2)
        if then is not None:
            then(tmp)
    return output
