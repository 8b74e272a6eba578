"""The functional API: convert a dense encoder to MoTE, load a MoTE folder, encode with per-text tasks.

``mote.convert``, ``mote.load``, ``mote.encode`` and ``mote.encode_mixed`` (re-exported by :mod:`mote`); the module
class they build and load is :class:`mote.model.MoTETransformer`.

A weight snapshot of a ``mote train`` run (``RUN/snapshots/step-N``: the encoder's weights and ``snapshot.json``) is a
model folder too: :func:`snapshot_source` resolves it to the run's raw trained model folder and the snapshot's
weights file, and ``load`` (MoTE runs) or :func:`load_snapshot` (any run that keeps snapshots, dense ones too) gives
the run's model with those weights, bitwise.

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
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.modules import Transformer

from mote.base_models import DEFAULT_BASE_MODEL, hub_errors, resolve_model_path
from mote.batching import length_batches, token_lengths
from mote.files import (
    RUN_MODEL,
    RUN_TRAINED,
    SELECTION_FILE,
    SNAPSHOT_META,
    SNAPSHOT_WEIGHTS,
    SNAPSHOTS,
    ModelFolderError,
    check_class_paths,
    read_json_config,
    safetensors_header,
)
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
    """Load a saved MoTE model; a clear error if ``path`` is missing or not a MoTE model.

    A weight snapshot folder of a MoTE run (``RUN/snapshots/step-N``) loads as the run's model with the snapshot's
    weights (:func:`load_snapshot`)."""
    source = snapshot_source(path)
    if source is not None:
        if not (source[0] / CONFIG_NAME).is_file():
            raise NotAMoTEModelError(
                f"{str(path)!r} is a weight snapshot of a run whose model ({source[0]}) is not a MoTE model: load it "
                "with mote.api.load_snapshot (`mote eval` takes it as it is)")
        return load_snapshot(path, device=device)
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


def encoder_of(model: SentenceTransformer) -> torch.nn.Module:
    """The Hugging Face encoder inside a sentence-transformers model (MoTE's ``auto_model`` or a Transformer's): what
    a weight snapshot holds."""
    first = model[0]
    return getattr(first, "auto_model", None) or first.model


def run_model_folder(run_dir: str | os.PathLike, error: type[Exception] = ModelFolderError) -> Path:
    """The raw final model of a ``mote train`` run: ``RUN/trained`` (a run that selects), else ``RUN/model`` unless
    that is a selected model; ``error`` naming the fix for an unfinished run, or one whose raw weights are gone."""
    run = Path(run_dir)
    folder = run / RUN_TRAINED if (run / RUN_TRAINED).is_dir() else run / RUN_MODEL
    if not (folder / "modules.json").is_file():
        raise error(f"{run} is not a finished `mote train` run: it has no {RUN_TRAINED}/ or {RUN_MODEL}/ (train it, "
                    "or resume it with --resume)")
    if (folder / SELECTION_FILE).is_file():
        raise error(f"{folder} is a selected model and the run has no {RUN_TRAINED}/ (its raw final weights): use "
                    "the run that trained it")
    return folder


_STEP = re.compile(r"step-(\d+)")


def snapshot_source(path: str | os.PathLike) -> tuple[Path, Path] | None:
    """``(model folder, weights file)`` of a weight snapshot folder ``RUN/snapshots/step-N``: the run's raw trained
    model folder (:func:`run_model_folder`: architecture, tokenizer, routing, prefixes) and the snapshot's encoder
    weights. ``None`` for any other path (a model folder, a name, a path that does not exist).

    Raises :class:`ModelFolderError` naming the fix for a folder named like a snapshot without ``snapshot.json`` (or
    its weights, or whose ``snapshot.json`` names another step), a snapshot of a run that has not finished, and a
    model folder or weights file that leaves the run folder (a link is never followed out of it).

    Example:
        >>> snapshot_source("runs/x/snapshots/step-50")     # doctest: +SKIP
        (PosixPath('runs/x/trained'), PosixPath('runs/x/snapshots/step-50/model.safetensors'))
    """
    folder = Path(path)
    name = _STEP.fullmatch(folder.name)
    if name is None or folder.parent.name != SNAPSHOTS or not folder.is_dir() or (folder / "modules.json").exists():
        return None
    step = int(name.group(1))
    if not (folder / SNAPSHOT_META).is_file():
        raise ModelFolderError(f"{folder} is named like a weight snapshot but has no {SNAPSHOT_META}: it is not one "
                               "`mote train` wrote; give a model folder, or a snapshot folder of a run")
    meta = read_json_config(folder / SNAPSHOT_META, ModelFolderError, required=("step",))
    if meta["step"] != step:
        raise ModelFolderError(f"{folder / SNAPSHOT_META} is the snapshot of step {meta['step']!r}, not of its "
                               f"folder's step {step}: the folder was renamed; give it back its name "
                               f"step-{meta['step']}")
    weights = folder / SNAPSHOT_WEIGHTS
    if not weights.is_file():
        raise ModelFolderError(f"{folder} has no {SNAPSHOT_WEIGHTS}: the snapshot is incomplete (a resumed run writes "
                               "a missing one again)")
    run = folder.parent.parent
    try:
        model_dir = run_model_folder(run)
    except ModelFolderError as e:
        if any((run / d / "modules.json").is_file() for d in (RUN_TRAINED, RUN_MODEL)):
            raise ModelFolderError(f"{folder}: a snapshot holds the encoder's weights only, and {e}") from None
        raise ModelFolderError(
            f"{folder} is a snapshot of a run that has not finished: {run} has no {RUN_TRAINED}/ or {RUN_MODEL}/ yet, "
            "and a snapshot holds the encoder's weights only (the rest of its model is the run's); finish the run "
            f"(mote train RECIPE --output {run} --resume) and load the snapshot then") from None
    inside = run.resolve()
    for p in (model_dir, weights):
        if inside not in p.resolve().parents:
            raise ModelFolderError(f"{p} leads out of the run folder {run} (a link?); refusing to follow it")
    return model_dir, weights


def load_snapshot_weights(model: SentenceTransformer, weights: str | os.PathLike) -> SentenceTransformer:
    """Load a weight snapshot's file into ``model``'s encoder (:func:`encoder_of`), in place and bitwise; returns
    ``model``. :class:`ModelFolderError` when the weights do not fit the model (another run's, or another model's)."""
    from safetensors.torch import load_model

    weights = Path(weights)
    shapes, _ = safetensors_header(weights)
    encoder = encoder_of(model)
    state = encoder.state_dict()
    fix = "it is a snapshot of another model; load a snapshot of this run"
    unexpected = [k for k in shapes if k not in state]
    wrong = [k for k in shapes if k in state and list(state[k].shape) != shapes[k]]
    if unexpected or wrong:
        k = (unexpected or wrong)[0]
        what = "no such weight" if unexpected else f"shape {shapes[k]}, the model's {list(state[k].shape)}"
        raise ModelFolderError(f"{weights} does not fit the model ({len(unexpected)} unknown and {len(wrong)} "
                               f"mis-shaped weights, e.g. {k!r}: {what}): {fix}")
    missing, _ = load_model(encoder, str(weights), strict=False)
    if missing:
        raise ModelFolderError(f"{weights} does not fit the model ({len(missing)} of its weights missing, e.g. "
                               f"{sorted(missing)[0]!r}): {fix}")
    return model


def load_snapshot(path: str | os.PathLike, device: str | None = None) -> SentenceTransformer:
    """The model of a weight snapshot folder ``RUN/snapshots/step-N``: the run's trained model (:func:`load` for MoTE
    and TLR runs, else a sentence-transformers model: the dense ``ic`` runs) with the snapshot's weights, bitwise.

    Example:
        >>> model = load_snapshot("runs/ic/snapshots/step-50")   # doctest: +SKIP
    """
    source = snapshot_source(path)
    if source is None:
        raise ModelFolderError(f"{str(path)!r} is not a weight snapshot folder (RUN/{SNAPSHOTS}/step-N of a `mote "
                               "train` run)")
    model_dir, weights = source
    if (model_dir / CONFIG_NAME).is_file():
        model = load(model_dir, device=device)
    else:
        check_modules_file(model_dir)
        model = SentenceTransformer(str(model_dir), device=device)
    return load_snapshot_weights(model, weights)


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


__all__ = [
    "check_modules_file",
    "convert",
    "encode",
    "encode_mixed",
    "encoder_of",
    "load",
    "load_snapshot",
    "load_snapshot_weights",
    "mote_module",
    "run_model_folder",
    "snapshot_source",
]
