"""MoTE models in mteb's own runner, routed as ``mote eval`` routes them.

mteb picks a model's prompt per task from the keys of its ``prompts`` dict (task name, ``{type}-{query|document}``,
task type, prompt type; :func:`mteb.models.abs_encoder.get_prompt_name`). Two ways in, both giving every task
type the expert and prefix of ``mote eval`` (:data:`mote.routing.MTEB_PROMPT_TASKS`):

* ``mteb.evaluate(SentenceTransformer(folder), tasks)``: a saved MoTE folder's prompts carry mteb's keys
  (``Classification: "classification: "``, ``STS: "search_query: "``, ...; :meth:`RoutingTable.saved_prompts`),
  mteb hands the prompt text to ``encode``, and MoTE routes a prompt to the task whose prefix it is.
* ``mote.mteb.get_model(folder)`` (= ``model_meta(folder).load_model()``, a :class:`mteb.ModelMeta` with a loader):
  mteb's own ``get_prompt_name`` picks a key, :meth:`RoutingTable.task_for_prompt_name` names its task, and the
  model encodes with that task explicitly. Use this for routes other than the defaults (``routes={"STS":
  "classification"}``, ``{"Retrieval.document": "query"}``: the ``mote eval --route`` syntax), for folders saved
  before the mteb keys existed, and for task types the table does not route (a clear error instead of the default
  expert). A dense model gets mteb's own ``SentenceTransformerEncoderWrapper``, with the routing table's prefixes as
  prompts in ``mode="ic"`` (the instruction-conditioning baseline) or none in ``mode="dense"``.

Example:
    >>> import mteb                                                              # doctest: +SKIP
    >>> model = get_model("runs/train/mote/final")                               # doctest: +SKIP
    >>> mteb.evaluate(model, mteb.get_tasks(["Banking77Classification"]))        # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
from mteb.models.abs_encoder import AbsEncoder, get_prompt_name
from mteb.models.model_meta import ModelMeta, ScoringFunction

from mote.routing import MTEB_PROMPT_TASKS, RoutingTable, UnknownTaskError

Mode = Literal["auto", "dense", "ic"]
_TWO_SIDED = ("Retrieval", "Reranking")


def prompt_aliases(routes: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{mteb prompt key: task}``: the defaults with ``mote eval``-style route overrides applied.

    ``{"STS": "classification"}`` (a task type), ``{"Retrieval.document": "query"}`` (one side), ``{"Retrieval":
    "query"}`` (both sides) or an mteb task name (``{"SciFact.query": "document"}``) become mteb's key syntax
    (``Retrieval-document``, ``SciFact-query``).

    Example:
        >>> prompt_aliases({"Retrieval.document": "query"})["Retrieval-document"]
        'query'
    """
    aliases = dict(MTEB_PROMPT_TASKS)
    for key, task in (routes or {}).items():
        head, _, side = key.partition(".")
        if side and side not in ("query", "document", "text"):
            raise ValueError(f"Route key {key!r}: side {side!r} is not query, document or text")
        if side in ("query", "document"):
            aliases[f"{head}-{side}"] = task
        elif head in _TWO_SIDED or (not side and _is_two_sided_task(head)):
            aliases[f"{head}-query"] = aliases[f"{head}-document"] = task
        else:
            aliases[head] = task
    return aliases


def _is_two_sided_task(name: str) -> bool:
    try:
        import mteb

        return mteb.get_task(name).metadata.type in _TWO_SIDED
    except KeyError:
        return False


def mteb_prompts(routing: RoutingTable, routes: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{mteb prompt key: prefix}`` for ``routing`` (every key's task checked, every key valid for mteb).

    Raises :class:`UnknownTaskError` when a route names a task the table lacks, ``ValueError`` for a key mteb
    does not accept (it would ignore it and encode those texts without a prompt).

    Example:
        >>> mteb_prompts(RoutingTable.default())["STS"]
        'search_query: '
    """
    for key, task in (routes or {}).items():
        if task not in routing.task_names:
            raise UnknownTaskError(f"Route {key}={task}: {task!r} is not a task of the model. {routing.describe()}")
    prompts = routing.mteb_prompts(prompt_aliases(routes))
    _, problems = AbsEncoder.validate_task_to_prompt_name(prompts, raise_for_invalid_keys=False)
    if problems:
        raise ValueError("mteb would ignore these prompt keys: " + "; ".join(sorted(problems)))
    return prompts


class MoTEForMteb(AbsEncoder):
    """An mteb encoder for a MoTE (or TLR / TSEmbed) model: mteb's prompt key -> routing-table task -> ``encode``.

    Args:
        model: a loaded task-routed ``SentenceTransformer`` (``mote.load``).
        routes: ``mote eval``-style overrides of the default routes.

    Example:
        >>> enc = MoTEForMteb(mote.load("minilm-mote"))                          # doctest: +SKIP
        >>> enc.task_for(mteb.get_task("STSBenchmark").metadata, None)           # doctest: +SKIP
        'query'
    """

    def __init__(
        self, model: Any, routes: Mapping[str, str] | None = None, truncate_dim: int | None = None, **_: Any
    ) -> None:
        from mote.eval.encoders import _routed_module

        module = _routed_module(model)
        if module is None:
            raise ValueError("MoTEForMteb needs a task-routed model (MoTE, TLR, TSEmbed); use mode='ic' for dense")
        self.model = model
        self.routing: RoutingTable = module.routing
        self.aliases = prompt_aliases(routes)
        self.model_prompts = mteb_prompts(self.routing, routes)
        self.truncate_dim = truncate_dim

    def task_for(self, task_metadata: Any, prompt_type: Any) -> str:
        """The routing-table task that encodes ``task_metadata``'s texts of ``prompt_type`` (query/document/None)."""
        name = get_prompt_name(self.model_prompts, task_metadata, prompt_type)
        if name is None:
            side = f" ({prompt_type.value} side)" if prompt_type is not None else ""
            raise UnknownTaskError(
                f"mteb task {task_metadata.name!r} of type {task_metadata.type!r}{side} has no MoTE route: pass "
                f"routes={{{task_metadata.type!r}: TASK}} with TASK one of {self.routing.task_names}"
            )
        return self.routing.task_for_prompt_name(name, self.aliases)

    def encode(self, inputs, *, task_metadata, hf_split, hf_subset, prompt_type=None, **kwargs) -> np.ndarray:
        from mote.api import encode

        task = self.task_for(task_metadata, prompt_type)
        texts = [text for batch in inputs for text in batch["text"]]
        return encode(
            self.model,
            texts,
            task=task,
            batch_size=int(kwargs.get("batch_size", 32)),
            show_progress_bar=bool(kwargs.get("show_progress_bar", False)),
            truncate_dim=self.truncate_dim,
        )


def load_for_mteb(
    name: str,
    revision: str | None = None,
    device: str | None = None,
    *,
    mode: Mode = "auto",
    routes: Mapping[str, str] | None = None,
    routing: RoutingTable | None = None,
    embed_dim: int | None = None,
    **kwargs: Any,
) -> AbsEncoder:
    """The loader of :func:`model_meta`: a MoTE folder -> :class:`MoTEForMteb`; a dense model -> mteb's own wrapper.

    ``mode="ic"`` gives a dense model ``routing``'s (default: the four MoTE tasks') prefixes as mteb prompts;
    ``mode="dense"`` gives it none. ``embed_dim`` (``meta.load_model(embed_dim=128)``) truncates a MoTE model's
    embeddings to their first ``embed_dim`` dimensions, renormalised (Matryoshka).
    """
    from mteb.models.sentence_transformer_wrapper import SentenceTransformerEncoderWrapper

    from mote.eval.encoders import _is_mote_model, load_encoder

    if mode not in ("auto", "dense", "ic"):
        raise ValueError(f"mode must be auto, dense or ic, got {mode!r}")
    loaded = load_encoder(name, mode="dense" if mode == "ic" else mode, device=device or "cpu")
    model = loaded.model
    if _is_mote_model(model):
        return MoTEForMteb(model, routes, truncate_dim=embed_dim)
    if embed_dim is not None:
        raise ValueError("embed_dim (Matryoshka truncation) is supported for MoTE models here; for a dense model use "
                         "SentenceTransformer(path, truncate_dim=N)")
    if routes and mode != "ic":
        raise ValueError("routes apply to MoTE models and to mode='ic'")
    prompts = mteb_prompts(routing or RoutingTable.default(), routes) if mode == "ic" else {}
    model.prompts = dict(prompts)  # mteb's wrapper reads the model's own prompts
    model.default_prompt_name = None
    return SentenceTransformerEncoderWrapper(model)


def model_meta(
    path: str | os.PathLike,
    *,
    mode: Mode = "auto",
    routes: Mapping[str, str] | None = None,
    routing: RoutingTable | None = None,
) -> ModelMeta:
    """An :class:`mteb.ModelMeta` for a local model whose ``load_model()`` routes as ``mote eval`` does.

    Example:
        >>> model_meta("runs/train/mote/final").load_model()   # doctest: +SKIP
    """
    from mote.base_models import resolve_model_path

    resolved = resolve_model_path(path)
    label = Path(str(path)).name or str(path)
    config = Path(resolved) / "mote_config.json"
    dims = json.loads(config.read_text()).get("matryoshka_dims") if config.is_file() else None
    kwargs: dict[str, Any] = {"mode": mode}
    if routes:
        kwargs["routes"] = dict(routes)
    if routing is not None:
        kwargs["routing"] = routing
    return ModelMeta.create_empty(
        overwrites=dict(
            loader=load_for_mteb,
            loader_kwargs=kwargs,
            name=str(resolved),
            revision="local",
            framework=["Sentence Transformers", "PyTorch"],
            similarity_fn_name=ScoringFunction.COSINE,
            use_instructions=mode != "dense",
            open_weights=True,
            reference=None,
            adapted_from=label,
            embed_dim=list(dims) if dims else None,  # the Matryoshka sizes mteb may ask for (load_model(embed_dim=))
        )
    )


def get_model(
    path: str | os.PathLike,
    *,
    mode: Mode = "auto",
    routes: Mapping[str, str] | None = None,
    routing: RoutingTable | None = None,
    device: str | None = None,
) -> AbsEncoder:
    """``model_meta(path, ...).load_model(device=device)``: what ``mteb.get_model`` gives for registered models.

    Example:
        >>> mteb.evaluate(get_model("runs/train/mote/final"), tasks)   # doctest: +SKIP
    """
    return model_meta(path, mode=mode, routes=routes, routing=routing).load_model(device=device)


__all__ = ["MoTEForMteb", "get_model", "load_for_mteb", "model_meta", "mteb_prompts", "prompt_aliases"]
