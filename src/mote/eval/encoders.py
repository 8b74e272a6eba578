"""What the evaluation harness evaluates: anything with ``encode(texts, task) -> float32 [N, d]``.

Three built-in kinds, all behind the :class:`Encoder` protocol:

* :class:`MoTEEncoder`   a MoTE model; ``task`` picks the expert *and* the instruction prefix (routing table).
* :class:`DenseEncoder`  a plain sentence-transformers model, either with no prefixes (``dense``) or with the
  routing table's prefix of each task prepended (``ic``: the instruction-conditioning baseline, which sees
  exactly the instructions MoTE sees).
* anything else that follows the protocol (e.g. ``mote.moee.encoder_for_eval(...)``).

Optional hooks an encoder may define (the harness uses them when present, else cosine similarity):

* ``pair_scores(a, b) -> [N]``: row-wise similarity (STS, pair classification).
* ``score_matrix(q, d) -> [Q, D]``: query x document scores (retrieval, reranking).
* ``fit_scores(q, d) -> scorer``: called once per retrieval / reranking dataset with all its query and document
  embeddings; the returned object's ``score_matrix`` scores that dataset (MoEE fixes its label-free alpha here,
  so a dataset gets one alpha, not one per query chunk).
* ``views(emb) -> [(name, emb_view, weight), ...]`` and ``combine_predictions(preds, weights, kind) -> labels``:
  classification / clustering fit one classifier / k-means per view and combine the predicted labels
  (``kind`` is ``"classification"`` or ``"clustering"``: cluster ids are not ordinal labels).
* ``task_key(task) -> str``: the embedding-cache key of a task (default: the task name). Two tasks with the same
  key share cached embeddings (a dense encoder without prefixes gives every task the same key).
* ``token_lengths(texts) -> [N] ints | None``: the order in which the harness cuts its encode chunks (longest
  first; default: character count). The built-in encoders give token counts and batch by them
  (:mod:`mote.batching`), which pads far fewer tokens than sentence-transformers' character order.

Example:
    >>> enc = load_encoder("all-MiniLM-L6-v2", mode="ic")                 # doctest: +SKIP
    >>> enc.encode(["how do magnets work"], task="query").shape          # doctest: +SKIP
    (1, 384)
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from mote.batching import encode_length_batched, token_lengths
from mote.routing import RoutingTable

Mode = Literal["auto", "dense", "ic"]
MODES: tuple[str, ...] = ("auto", "dense", "ic")


@runtime_checkable
class Encoder(Protocol):
    """The one interface the harness needs. ``task`` is a routing-table task name (query, document, ...)."""

    name: str  # label for tables
    identity: str  # stable id of weights + config + prefix policy (a hash); part of the embedding-cache key

    def encode(
        self, texts: Sequence[str], task: str, *, batch_size: int = 32, show_progress: bool = False
    ) -> np.ndarray:  # float32 [N, d]
        ...


# ------------------------------------------------------------------------------------------------ identity
def weights_fingerprint(model: Any) -> str:
    """sha256 over every parameter/buffer (name, dtype, shape, bytes) and every module's config of a torch model.

    Two models with the same fingerprint compute the same function (up to code changes), so cached embeddings
    can be shared between them; any weight update changes it.
    """
    import torch

    h = hashlib.sha256()
    h.update(type(model).__name__.encode())
    for name, tensor in model.state_dict().items():
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.dtype == torch.bfloat16:
            t = t.view(torch.int16)
        h.update(t.numpy().tobytes())
    # Module configs (pooling mode, normalisation, max_seq_length, routing table ...), when the model has them.
    try:
        modules = list(model)
    except TypeError:
        modules = []
    for m in modules:
        cfg: Any = None
        if hasattr(m, "get_config_dict"):
            try:
                cfg = m.get_config_dict()
            except Exception:  # a module without a serialisable config still has its weights hashed
                cfg = None
        h.update(f"{type(m).__name__}|{json.dumps(cfg, sort_keys=True, default=str)}|".encode())
        for attr in ("max_seq_length", "do_lower_case"):
            if hasattr(m, attr):
                h.update(f"{attr}={getattr(m, attr)!r}|".encode())
        tok = getattr(m, "tokenizer", None)
        if tok is not None:
            h.update(f"tok={type(tok).__name__}|{len(tok)}|{getattr(tok, 'do_lower_case', None)}|".encode())
    return h.hexdigest()


def _short(digest: str) -> str:
    return digest[:16]


# Hugging Face config fields that, with the weights, fix what an encoder computes.
_FUNCTION_CONFIG = ("model_type", "hidden_act", "layer_norm_eps", "num_hidden_layers", "hidden_size",
                    "num_attention_heads", "intermediate_size", "max_position_embeddings", "type_vocab_size",
                    "position_embedding_type", "pad_token_id")


def _tensor_digest(name: str, t: Any) -> bytes:
    import torch

    t = t.detach().to("cpu").contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    h = hashlib.sha256(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
    h.update(t.numpy().tobytes())
    return h.digest()


def function_digests(model: Any) -> dict[int | None, str]:
    """Digests of the dense function a sentence-transformers model computes for each expert: ``{expert: digest}``.

    For a MoTE model the function of expert ``e`` is its shared weights plus slice ``e`` of every stacked expert
    weight (what :func:`mote.export.export_dense` writes), so the digest hashes exactly those, under the dense
    model's parameter names (in name order), together with the tokenizer, sequence length, lower-casing, the
    remaining modules (pooling, normalisation) and the Hugging Face config fields that fix the computation. A dense
    model has one entry, ``None``. A MoTE expert whose weights equal a dense model's therefore has the dense
    model's digest, and the embedding cache shares their embeddings (per-task selection relies on it: an expert
    reset to the base is not encoded again). Each weight is hashed once; an expert costs only its own slices.
    """
    from mote.experts import ExpertLayerNorm, ExpertLinear

    first = model[0]
    hf = getattr(first, "auto_model", None) or getattr(first, "model", None)
    expert_mods = [m for m in hf.modules() if isinstance(m, ExpertLinear | ExpertLayerNorm)]
    stacked = {id(p) for m in expert_mods for p in m.parameters(recurse=False)}
    common = hashlib.sha256()
    cfg = hf.config.to_dict()
    common.update(json.dumps({k: cfg.get(k) for k in _FUNCTION_CONFIG}, sort_keys=True, default=str).encode())
    tok = getattr(first, "tokenizer", None)
    common.update(f"tok={type(tok).__name__}|{len(tok) if tok is not None else 0}|"
                  f"{getattr(tok, 'do_lower_case', None)}|".encode())
    for attr in ("max_seq_length", "do_lower_case"):
        common.update(f"{attr}={getattr(first, attr, None)!r}|".encode())
    for i, m in enumerate(list(model)[1:], 1):
        cfg_m = m.get_config_dict() if hasattr(m, "get_config_dict") else None
        common.update(f"{i}|{type(m).__name__}|{json.dumps(cfg_m, sort_keys=True, default=str)}|".encode())
        for name, t in m.state_dict().items():
            common.update(_tensor_digest(f"{i}.{name}", t))
    tensors = hf.state_dict(keep_vars=True)
    shared = {n: _tensor_digest(n, t) for n, t in tensors.items() if id(t) not in stacked}
    experts = {n: t for n, t in tensors.items() if id(t) in stacked}

    def finish(digests: dict[str, bytes]) -> str:
        h = common.copy()
        for name in sorted(digests):
            h.update(name.encode() + b"|" + digests[name])
        return _short(h.hexdigest())

    if not experts:
        return {None: finish(shared)}
    num_experts = expert_mods[0].num_experts
    return {e: finish({**shared, **{n: _tensor_digest(n, t[e]) for n, t in experts.items()}})
            for e in range(num_experts)}


def _function_digest_or_none(model: Any, expert: int | None) -> str | None:
    """:func:`function_digests` of a plain sentence-transformers model, or ``None`` if it has no HF encoder."""
    try:
        first = model[0]
    except (TypeError, IndexError, KeyError):
        return None
    if getattr(first, "auto_model", None) is None and not hasattr(getattr(first, "model", None), "config"):
        return None
    return function_digests(model).get(expert)


def _function_key(digest: str | None, prefix: str) -> str | None:
    if digest is None:
        return None
    return "fn:" + _short(hashlib.sha256(f"{digest}|prefix={json.dumps(prefix)}".encode()).hexdigest())


def _model_label(model: Any, fallback: str) -> str:
    card = getattr(model, "model_card_data", None)
    base = getattr(card, "base_model", None)
    return str(base).rsplit("/", 1)[-1] if base else fallback


# ------------------------------------------------------------------------------------------------ encoders
class DenseEncoder:
    """A plain sentence-transformers model; ``prefixes`` = ``{task: prefix}`` for the IC baseline, else none.

    Args:
        model: a loaded ``SentenceTransformer``.
        name: label for result tables.
        prefixes: per-task instruction prefixes (``RoutingTable.prompts()``), or ``None`` for no prefixes.

    Example:
        >>> from sentence_transformers import SentenceTransformer                      # doctest: +SKIP
        >>> st = SentenceTransformer(mote.resolve_model_path("all-MiniLM-L6-v2"))      # doctest: +SKIP
        >>> DenseEncoder(st, "MiniLM+IC", RoutingTable.default().prompts())            # doctest: +SKIP
    """

    def __init__(self, model: Any, name: str, prefixes: dict[str, str] | None = None) -> None:
        self.model = model
        self.prefixes = dict(prefixes) if prefixes is not None else None
        self.name = name
        self._policy = "dense" if self.prefixes is None else "ic:" + json.dumps(self.prefixes, sort_keys=True)
        self._identity: str | None = None
        self._function = _function_digest_or_none(model, None)

    @property
    def identity(self) -> str:
        """A hash of every weight and module config and of the prefix policy (computed on first use)."""
        if self._identity is None:
            digest = hashlib.sha256(f"{weights_fingerprint(self.model)}|{self._policy}".encode()).hexdigest()
            self._identity = _short(digest)
        return self._identity

    @property
    def kind(self) -> str:
        return "dense" if self.prefixes is None else "ic"

    def prefix(self, task: str) -> str:
        if self.prefixes is None:
            return ""
        if task not in self.prefixes:
            raise ValueError(f"Task {task!r} has no IC prefix; known tasks: {sorted(self.prefixes)}")
        return self.prefixes[task]

    def task_key(self, task: str) -> str:
        """Cache key of a task: the prefix itself (tasks with the same prefix give the same embeddings)."""
        return "prefix=" + json.dumps(self.prefix(task))

    def cache_identity(self, task: str) -> str | None:
        """The embedding-cache identity of ``task``: the model's function digest and the prefix it prepends (shared
        with any model that computes the same function: see :func:`function_digests`); ``None`` if unknown."""
        return _function_key(self._function, self.prefix(task))

    def encode(
        self, texts: Sequence[str], task: str, *, batch_size: int = 32, show_progress: bool = False
    ) -> np.ndarray:
        texts = list(texts)
        prefix = self.prefix(task)
        dim = self.model.get_embedding_dimension()
        if not texts:
            return np.zeros((0, dim or 0), dtype=np.float32)
        return encode_length_batched(self.model, texts, batch_size, show_progress=show_progress,
                                     prompt=prefix if prefix else None)

    def token_lengths(self, texts: Sequence[str]) -> np.ndarray | None:
        """Token count of each text (the order :func:`mote.eval.cache.embed_texts` encodes in)."""
        return token_lengths(self.model, texts)

    def __repr__(self) -> str:
        return f"DenseEncoder(name={self.name!r}, kind={self.kind!r}, identity={self.identity!r})"


class MoTEEncoder:
    """A MoTE model: ``task`` selects the expert and the prefix from the model's own routing table.

    Example:
        >>> enc = MoTEEncoder(mote.load("minilm-mote"), "minilm-mote")   # doctest: +SKIP
        >>> enc.encode(["a b c"], task="clustering").dtype                 # doctest: +SKIP
        dtype('float32')
    """

    def __init__(self, model: Any, name: str) -> None:
        from mote.api import mote_module

        self.model = model
        self.module = _routed_module(model) or mote_module(model)  # mote_module raises the helpful error
        self.routing: RoutingTable = self.module.routing
        self.name = name
        # "mote"; subclasses of the MoTE module (e.g. token-level routing) report their own class
        self.kind = "mote" if type(self.module).__name__ == "MoTETransformer" else type(self.module).__name__
        self._identity: str | None = None
        # sequence routing: a task's embeddings depend only on the shared weights and its own expert
        self._functions = function_digests(model) if self.kind == "mote" else {}

    @property
    def identity(self) -> str:
        """A hash of every weight and module config and of the routing table (computed on first use)."""
        if self._identity is None:
            policy = "mote:" + json.dumps(self.routing.to_dict(), sort_keys=True)
            self._identity = _short(hashlib.sha256(f"{weights_fingerprint(self.model)}|{policy}".encode()).hexdigest())
        return self._identity

    def prefix(self, task: str) -> str:
        return self.routing.route(task).text_prefix

    def task_key(self, task: str) -> str:
        route = self.routing.route(task)
        return f"expert={route.expert}|prefix=" + json.dumps(route.text_prefix)

    def cache_identity(self, task: str) -> str | None:
        """The embedding-cache identity of ``task``: the digest of its expert's dense function and its prefix, so
        that models differing only in other experts share this task's cached embeddings (``None`` for token-routed
        modules, whose tasks mix experts)."""
        route = self.routing.route(task)
        return _function_key(self._functions.get(route.expert), route.text_prefix)

    def encode(
        self, texts: Sequence[str], task: str, *, batch_size: int = 32, show_progress: bool = False
    ) -> np.ndarray:
        texts = list(texts)
        self.routing.resolve(task)  # unknown task -> UnknownTaskError before any work
        if not texts:
            return np.zeros((0, self.model.get_sentence_embedding_dimension()), dtype=np.float32)
        return encode_length_batched(self.model, texts, batch_size, show_progress=show_progress, task=task)

    def token_lengths(self, texts: Sequence[str]) -> np.ndarray | None:
        """Token count of each text (the order :func:`mote.eval.cache.embed_texts` encodes in)."""
        return token_lengths(self.model, texts)

    def __repr__(self) -> str:
        return f"MoTEEncoder(name={self.name!r}, tasks={self.routing.task_names}, identity={self.identity!r})"


# ------------------------------------------------------------------------------------------------ loading
def _routed_module(model: Any) -> Any | None:
    """The first module of a task-routed model (MoTE, TLR, TSEmbed: it owns a :class:`RoutingTable`), else None."""
    try:
        first = model[0] if len(model) else None
    except TypeError:
        return None
    return first if isinstance(getattr(first, "routing", None), RoutingTable) else None


def _routed_folder_loader(path: Path) -> Any | None:
    """``load(path)`` of the mote family a saved folder belongs to (by its config file), else None."""
    if not path.is_dir():
        return None
    from mote.model import CONFIG_NAME

    if (path / CONFIG_NAME).is_file():
        from mote.api import load

        return load
    from mote.lora.st import CONFIG_NAME as TSEMBED_CONFIG

    if (path / TSEMBED_CONFIG).is_file():
        from mote.lora.st import load as load_tsembed

        return load_tsembed
    return None


def _is_mote_model(model: Any) -> bool:
    return _routed_module(model) is not None


def load_encoder(
    spec: str | os.PathLike | Any,
    mode: Mode = "auto",
    routing: RoutingTable | None = None,
    *,
    name: str | None = None,
    device: str | None = "cpu",
) -> Encoder:
    """An :class:`Encoder` from a model name/folder or an already-loaded ``SentenceTransformer``.

    Args:
        spec: ``all-MiniLM-L6-v2`` (offline package), a hub id, a local folder, a loaded ``SentenceTransformer``,
            or an object that already satisfies :class:`Encoder` (returned unchanged).
        mode: ``auto`` = the model's own task routing if it is task-routed (a folder with ``mote_config.json`` or
            ``tsembed_config.json``, or a model whose first module has a routing table: MoTE, TLR, TSEmbed), else
            dense; ``dense`` = a sentence-transformers model without prefixes; ``ic`` = a dense model with the
            routing table's prefix of each task prepended (instruction-conditioning baseline).
        routing: the routing table whose prefixes ``ic`` uses (default: :meth:`RoutingTable.default`).
        name: label for result tables (default: derived from ``spec``).

    Example:
        >>> load_encoder("all-MiniLM-L6-v2", mode="ic").name   # doctest: +SKIP
        'all-MiniLM-L6-v2+ic'
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    from sentence_transformers import SentenceTransformer

    if not isinstance(spec, SentenceTransformer | str | os.PathLike) and isinstance(spec, Encoder):
        return spec
    if isinstance(spec, SentenceTransformer):
        model, label, is_mote = spec, name or _model_label(spec, "model"), _is_mote_model(spec)
    else:
        from mote.base_models import resolve_model_path

        label = name or Path(str(spec)).name or str(spec)
        path = resolve_model_path(spec)
        local = Path(path)
        from mote.api import load_snapshot, snapshot_source

        if snapshot_source(local) is not None:  # RUN/snapshots/step-N: the run's model with the snapshot's weights
            model = load_snapshot(local, device=device)
            is_mote = _is_mote_model(model)
        else:
            if local.exists() and not (local / "modules.json").is_file():
                raise ValueError(f"{str(spec)!r} is not a sentence-transformers model folder (it has no "
                                 "modules.json)")
            if not local.exists() and ("/" not in str(spec) or str(spec).startswith((".", "/"))):
                raise FileNotFoundError(
                    f"Model {str(spec)!r} is neither a local folder nor an offline-packaged model "
                    "(e.g. all-MiniLM-L6-v2); give a model folder or a hub id (org/name)."
                )
            loader = _routed_folder_loader(local)
            is_mote = loader is not None
            model = loader(path, device=device) if loader else SentenceTransformer(path, device=device)
    if is_mote:
        if mode == "dense" or mode == "ic":
            raise ValueError(
                f"{label!r} is a MoTE model: evaluate it with mode 'auto' (its own routing); --dense/--ic apply to "
                "dense sentence-transformers models (export one task with `mote export` first)."
            )
        return MoTEEncoder(model, label)
    if mode == "ic":
        table = routing or RoutingTable.default()
        return DenseEncoder(model, name or f"{label}+ic", table.prompts())
    return DenseEncoder(model, label, None)


__all__ = ["MODES", "DenseEncoder", "Encoder", "MoTEEncoder", "Mode", "load_encoder", "weights_fingerprint"]
