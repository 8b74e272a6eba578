"""The MoTE sentence-transformers module: a BERT-family encoder whose chosen blocks hold task experts.

``MoTETransformer`` is the first module of a normal sentence-transformers pipeline
(``[MoTETransformer, Pooling, Normalize]``). It resolves each input's task, prepends the task's instruction
prefix, tokenizes, and runs the encoder with every sequence routed through its task's expert.

Task resolution (per call): an explicit ``task=``, else the prompt (``prompt_name=`` / ``prompt=`` resolved by
sentence-transformers) matched against the task prefixes, else the routing table's default task
(``"document"`` unless configured). With an explicit prompt, that prompt text is what gets prepended.

Example:
    >>> import mote
    >>> model = mote.convert("all-MiniLM-L6-v2", placement="every-other")     # doctest: +SKIP
    >>> q = model.encode_query(["how do magnets work"])                       # doctest: +SKIP
    >>> c = model.encode(["great phone, bad battery"], task="classification")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from safetensors.torch import save_model
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.modules import InputModule, Transformer
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedModel

from mote.atomic import SAVE_ID, new_save_id, staged_files
from mote.base_models import DEFAULT_BASE_MODEL, hub_errors, resolve_model_path
from mote.batching import length_batches, token_lengths
from mote.experts import (
    RoutingContext,
    Segment,
    SequenceRoute,
    expert_layer_indices,
    expert_modules,
    plan_segments,
    resolve_placement,
    upcycle,
)
from mote.files import ModelFolderError, file_sha256, read_json_config, read_safetensors, safetensors_header
from mote.routing import RoutingTable, UnknownTaskError

CONFIG_NAME = "mote_config.json"
WEIGHTS_NAME = "model.safetensors"
FILES_SHA256 = "files_sha256"  # in mote_config.json: {file: SHA-256} of the files saved with it (weights, configs,
# tokenizer), so that any damage to one of them is refused on load
FORMAT_VERSION = 1
_REQUIRED_KEYS = ("routing", "expert_layers", "num_experts")


class NotAMoTEModelError(ModelFolderError):
    """Raised when a folder or model is not a MoTE model, or a MoTE folder is damaged (a
    :class:`~mote.files.ModelFolderError`, the one error type of a model folder that cannot be loaded)."""


def check_texts(inputs: Any) -> list[str]:
    """Inputs as a list of strings, or a ``TypeError`` that names the first bad item."""
    if isinstance(inputs, str):
        return [inputs]
    try:
        items = list(inputs)
    except TypeError:
        raise TypeError(f"Expected a list of strings, got {type(inputs).__name__}") from None
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise TypeError(
                f"MoTE encodes text only: item {i} is a {type(item).__name__} ({item!r:.60}). Convert it to str first."
            )
    return items


TASK_PLAN = "task_plan"


@dataclass(frozen=True)
class TaskPlan:
    """Each row's task id, known on the host: ``preprocess`` stamps it next to ``task_ids`` (which
    sentence-transformers moves to the model's device), so that ``forward`` plans the routing without reading a
    device tensor."""

    task_ids: tuple[int, ...]


PER_TEXT_TASKS_FIX = (
    "use mote.encode(model, texts, task=[...]) (it groups the texts by task), or one encode call per task"
)


def refuse_sorted_task_list(task: Any) -> None:
    """``ValueError`` if a per-text task list reached a module's ``forward``: only ``SentenceTransformer.encode``
    passes its ``task`` on to ``forward``, after sorting the texts by length without reordering the list, so the
    rows' tasks would be each other's. A model built by sentence-transformers carries such lists with their texts
    (:class:`TaskListEncode`); a model assembled by hand (``model.append``) lacks that, and is refused here."""
    if task is not None and not isinstance(task, str):
        raise ValueError(
            "SentenceTransformer.encode sorts the texts by length and cannot carry a per-text task list with them "
            f"on this model; {PER_TEXT_TASKS_FIX}"
        )


class TaskListEncode:
    """``SentenceTransformer.encode`` of a task-routed model, with a per-text ``task`` list carried with its texts.

    sentence-transformers sorts a call's inputs by length and passes the same ``task`` to every batch, so a list of
    one task per text would not follow its texts. This callable replaces the model's ``encode`` (installed through
    sentence-transformers' public ``Module.on_model_ready`` hook, :func:`carry_task_lists`): a per-text list is cut
    into one ``encode`` call per task (each of them single-task, so sorted freely) and the results are put back in
    input order. One task, or none, goes to the stock ``encode`` unchanged. ``encode_query`` / ``encode_document``
    call ``self.encode`` and go through it too. Stateless, so threads may share it.
    """

    def __init__(self, model: SentenceTransformer) -> None:
        self.model = model

    def __call__(self, inputs, *args, task: str | Sequence[str] | None = None, **kwargs):
        encode = type(self.model).encode
        if task is None or isinstance(task, str):
            return encode(self.model, inputs, *args, task=task, **kwargs)
        import inspect

        bound = inspect.signature(encode).bind(self.model, inputs, *args, **kwargs)
        options = {k: v for k, v in bound.arguments.items() if k not in ("self", "inputs", "kwargs")}
        options.update(bound.arguments.get("kwargs", {}))
        single = self.model.is_singular_input(inputs)
        items = [inputs] if single else (inputs.tolist() if isinstance(inputs, np.ndarray) else list(inputs))
        tasks = list(task)
        if len(tasks) != len(items):
            raise ValueError(f"Got {len(tasks)} tasks for {len(items)} texts: pass one task, or one task per text")
        if single or len(set(tasks)) <= 1:
            return encode(self.model, inputs if single else items, task=tasks[0] if tasks else None, **options)
        precision = options.pop("precision", "float32")
        groups: dict[str, list[int]] = {}
        for i, t in enumerate(tasks):
            groups.setdefault(t, []).append(i)
        parts = {t: encode(self.model, [items[i] for i in idx], task=t, **options) for t, idx in groups.items()}
        first = next(iter(parts.values()))
        if isinstance(first, np.ndarray | torch.Tensor):
            full = (np.empty((len(items), *first.shape[1:]), dtype=first.dtype) if isinstance(first, np.ndarray)
                    else first.new_empty((len(items), *first.shape[1:])))
            for t, idx in groups.items():
                full[torch.as_tensor(idx) if isinstance(full, torch.Tensor) else idx] = parts[t]
        else:
            full = [None] * len(items)
            for t, idx in groups.items():
                for i, row in zip(idx, parts[t]):
                    full[i] = row
        if precision not in (None, "float32"):  # quantisation ranges are computed over the whole call
            from sentence_transformers.util import quantize_embeddings

            full = quantize_embeddings(full, precision=precision)
        return full


def carry_task_lists(model: SentenceTransformer) -> None:
    """Make ``model.encode`` carry a per-text task list with its texts (:class:`TaskListEncode`); idempotent."""
    if not isinstance(vars(model).get("encode"), TaskListEncode):
        model.encode = TaskListEncode(model)


def host_task_ids(features: dict[str, Any], batch: int, routing: RoutingTable, task: str | None = None) -> list[int]:
    """The task id of each of the ``batch`` rows of ``features``, read on the host.

    From the ``task_plan`` that ``preprocess`` stamped, when it describes this batch; else from ``task_ids`` (one
    host read per forward: features built by hand, or a batch that was split or merged after preprocessing); else
    (no task ids at all) every row gets ``task``, or the table's default task.
    """
    plan = features.get(TASK_PLAN)
    if isinstance(plan, TaskPlan) and len(plan.task_ids) == batch:
        return list(plan.task_ids)
    task_ids = features.get("task_ids")
    if task_ids is None:  # features built by hand: route them all by the explicit task (or the default)
        return [routing.task_id(routing.resolve(task)[0])] * batch
    return task_ids.tolist()


class MoTETransformer(InputModule):
    """Tokenizer + task-routed BERT-family encoder (the MoTE input module).

    Args:
        model: a Hugging Face encoder whose ``expert_layers`` already hold experts (see :meth:`from_dense`).
        tokenizer: its tokenizer.
        routing: task -> prefix -> expert table.
        max_seq_length: inputs (prefix included, special tokens included) are truncated to this many tokens.
        do_lower_case: lower-case inputs (prefix included) before tokenizing, as sentence-transformers does.
    """

    config_file_name = CONFIG_NAME
    save_in_root = True
    forward_kwargs: ClassVar[set[str]] = {"task"}
    routing_mode: ClassVar[str] = "sequence"  # each sequence through its task's expert (TLR: "token")

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer,
        routing: RoutingTable,
        max_seq_length: int | None = None,
        do_lower_case: bool = False,
        routing_context: RoutingContext | None = None,
    ) -> None:
        super().__init__()
        self.auto_model = model
        self.tokenizer = tokenizer
        self.routing = routing
        self.do_lower_case = do_lower_case
        if max_seq_length is None:
            limits = [
                getattr(model.config, "max_position_embeddings", None),
                getattr(tokenizer, "model_max_length", None),
            ]
            limits = [x for x in limits if isinstance(x, int) and x < 1_000_000]
            max_seq_length = min(limits) if limits else 512
        self.max_seq_length = int(max_seq_length)
        self.routing_context = routing_context if routing_context is not None else RoutingContext()
        self.expert_layers = expert_layer_indices(model)
        if not self.expert_layers:
            raise NotAMoTEModelError("The model holds no expert layers; build it with MoTETransformer.from_dense")
        self._expert_of_task = [routing.expert(t) for t in routing.task_names]
        self._prompt_lengths: dict[str, int | None] = {}
        # The nested dimensions the model was trained for (Matryoshka), largest first; None: not trained so.
        self.matryoshka_dims: list[int] | None = None

    # ------------------------------------------------------------------------------------------- construction
    @classmethod
    def from_dense(
        cls,
        model: PreTrainedModel,
        tokenizer,
        routing: RoutingTable | None = None,
        placement: str | Sequence[int] = "every-other",
        max_seq_length: int | None = None,
        do_lower_case: bool = False,
    ) -> MoTETransformer:
        """Upcycle a dense encoder in place: each expert an exact copy of the dense FFN and norms."""
        routing = routing or RoutingTable.default()
        from mote.experts import transformer_layers

        layers = resolve_placement(placement, len(transformer_layers(model)))
        context = RoutingContext()
        upcycle(model, layers, routing.num_experts, context)
        return cls(model, tokenizer, routing, max_seq_length, do_lower_case, context)

    # ------------------------------------------------------------------------------------------- properties
    @property
    def num_experts(self) -> int:
        return self.routing.num_experts

    def get_embedding_dimension(self) -> int:
        return int(self.auto_model.config.hidden_size)

    def get_max_seq_length(self) -> int:
        return self.max_seq_length

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "routing": self.routing.to_dict(),
            "expert_layers": list(self.expert_layers),
            "num_experts": self.num_experts,
            "max_seq_length": self.max_seq_length,
            "do_lower_case": self.do_lower_case,
            **({"matryoshka_dims": list(self.matryoshka_dims)} if self.matryoshka_dims else {}),
        }

    # ------------------------------------------------------------------------------------------- preprocessing
    def resolve_tasks(
        self, n: int, task: str | Sequence[str] | None, prompt: str | None
    ) -> tuple[list[int], list[str]]:
        """Per-input ``(task_ids, prefixes)``; ``task`` may be one name or one name per input."""
        if task is None or isinstance(task, str):
            name, prefix = self.routing.resolve(task, prompt)
            return [self.routing.task_id(name)] * n, [prefix] * n
        tasks = list(task)
        if len(tasks) != n:
            raise ValueError(f"Got {len(tasks)} tasks for {n} inputs: pass one task, or one task per input "
                             f"({PER_TEXT_TASKS_FIX})")
        resolved = [self.routing.resolve(t, prompt) for t in tasks]
        return [self.routing.task_id(name) for name, _ in resolved], [p for _, p in resolved]

    def preprocess(
        self,
        inputs: Sequence[str],
        prompt: str | None = None,
        task: str | Sequence[str] | None = None,
        **kwargs,
    ) -> dict[str, Any]:
        """Tokenize ``prefix + text`` and stamp ``task_ids`` (LongTensor[B]) and their host copy (``task_plan``).

        Texts longer than ``max_seq_length`` tokens (prefix and special tokens included) are truncated at the end.
        """
        texts = check_texts(inputs)
        task_ids, prefixes = self.resolve_tasks(len(texts), task, prompt)
        texts = [p + t for p, t in zip(prefixes, texts)]
        if self.do_lower_case:
            texts = [t.lower() for t in texts]
        features = dict(
            self.tokenizer(
                texts,
                padding=True,
                truncation="longest_first",
                max_length=self.max_seq_length,
                return_tensors="pt",
            )
        )
        features["task_ids"] = torch.tensor(task_ids, dtype=torch.long)
        features[TASK_PLAN] = TaskPlan(tuple(task_ids))
        if prefixes and all(p == prefixes[0] for p in prefixes):
            prompt_length = self._prompt_length(prefixes[0])
            if prompt_length is not None:
                features["prompt_length"] = prompt_length
        return features

    def _prompt_length(self, prefix: str) -> int | None:
        """Tokens of the prefix (with the leading special token), as sentence-transformers counts them."""
        if prefix not in self._prompt_lengths:
            if not prefix:
                self._prompt_lengths[prefix] = None
            else:
                text = prefix.lower() if self.do_lower_case else prefix
                ids = self.tokenizer(text, add_special_tokens=True)["input_ids"]
                if ids and ids[-1] == getattr(self.tokenizer, "sep_token_id", None):
                    ids = ids[:-1]
                self._prompt_lengths[prefix] = len(ids)
        return self._prompt_lengths[prefix]

    def on_model_ready(self, model) -> None:
        """sentence-transformers' hook once the owning model is built: its ``encode`` carries per-text task lists."""
        carry_task_lists(model)

    # ------------------------------------------------------------------------------------------- forward
    def forward(self, features: dict[str, Any], task: str | None = None, **kwargs) -> dict[str, Any]:
        refuse_sorted_task_list(task)
        batch = features["input_ids"].shape[0]
        experts = [self._expert_of_task[t] for t in host_task_ids(features, batch, self.routing, task)]
        order, segments = plan_segments(experts)
        inputs = {k: features[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in features}
        device = features["input_ids"].device
        rows = perm = None
        if order is not None:  # mixed batch: make each expert's rows contiguous, once for all layers
            perm = torch.tensor(order).to(device, non_blocking=True)
            inputs = {k: v.index_select(0, perm) for k, v in inputs.items()}
            rows = torch.tensor([experts[i] for i in order]).to(device, non_blocking=True)
        elif len(segments) > 1:
            rows = torch.tensor(experts).to(device, non_blocking=True)
        with self.routing_context.use(SequenceRoute(tuple(segments), rows)):
            hidden = self.auto_model(**inputs, return_dict=True).last_hidden_state  # (B, T, H)
        if perm is not None:
            inverse = torch.empty_like(perm)
            inverse[perm] = torch.arange(batch, device=perm.device)
            hidden = hidden.index_select(0, inverse)
        features["token_embeddings"] = hidden
        return features

    def set_routing(self, routing: RoutingTable) -> None:
        """Route with ``routing`` from now on: the same tasks, prefixes and number of experts, with experts or
        ``prepend`` flags changed (what per-task selection and expert consolidation write)."""
        if routing.task_names != self.routing.task_names:
            raise ValueError(f"set_routing keeps the tasks {self.routing.task_names}, got {routing.task_names}")
        held = {m.num_experts for m in expert_modules(self.auto_model)}
        if held != {routing.num_experts}:
            raise ValueError(f"the routing table names {routing.num_experts} experts, the expert layers hold {held}")
        self.routing = routing
        self._expert_of_task = [routing.expert(t) for t in routing.task_names]

    @contextlib.contextmanager
    def routed(self, task: str) -> Iterator[None]:
        """Route every sequence of direct ``self.auto_model(...)`` calls in this block through ``task``'s expert.

        Like every forward's routing, it holds for the current thread (and asyncio task) only.
        """
        with self.routing_context.use(SequenceRoute((Segment(self.routing.expert(task), 0, -1),))):
            yield

    # ------------------------------------------------------------------------------------------- save / load
    def save(self, output_path: str, *args, safe_serialization: bool = True, **kwargs) -> None:
        """Write the encoder, tokenizer and ``mote_config.json`` into ``output_path``.

        Every file is written aside, flushed to disk and renamed into place (``mote_config.json`` last), so no file
        is ever torn; the config and the weights carry one save id, and :meth:`load` refuses a pair from two
        different saves (a save killed between two renames). For an all-or-nothing folder, save into
        :func:`mote.atomic.atomic_dir` (as ``mote convert`` does).
        """
        save_id = new_save_id()
        with staged_files(output_path, last=(CONFIG_NAME,)) as tmp:
            self.auto_model.config.save_pretrained(tmp)
            save_model(self.auto_model, str(tmp / WEIGHTS_NAME), metadata={"format": "pt", SAVE_ID: save_id})
            self.tokenizer.save_pretrained(tmp)
            files = {p.relative_to(tmp).as_posix(): file_sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
            saved = {**self.get_config_dict(), SAVE_ID: save_id, FILES_SHA256: files}
            (tmp / CONFIG_NAME).write_text(json.dumps(saved, indent=2), encoding="utf-8")

    @classmethod
    def load(
        cls,
        model_name_or_path: str,
        subfolder: str = "",
        token: bool | str | None = None,
        cache_folder: str | None = None,
        revision: str | None = None,
        local_files_only: bool = False,
        **kwargs,
    ) -> MoTETransformer:
        hub = dict(token=token, cache_folder=cache_folder, revision=revision, local_files_only=local_files_only)
        folder = Path(cls.load_dir_path(model_name_or_path, subfolder=subfolder, **hub))
        file = folder / CONFIG_NAME
        config = read_json_config(file, NotAMoTEModelError, _REQUIRED_KEYS) if file.is_file() else None
        config = cls._checked_config(config, model_name_or_path)
        try:
            routing = RoutingTable.from_dict(config["routing"])
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise NotAMoTEModelError(f"{file}: bad routing table ({e}); save (or copy) the model again") from None
        if routing.num_experts != config["num_experts"]:
            raise NotAMoTEModelError(
                f"{file}: its routing table routes to {routing.num_experts} expert(s) but its layers hold "
                f"num_experts {config['num_experts']}; the file is damaged or edited by hand: save (or copy) the "
                "model again"
            )
        hf_config = cls._checked_weights(folder, config)  # every check before a tensor is loaded
        model = AutoModel.from_config(hf_config)
        context = cls._add_experts(model, config)
        state = read_safetensors(folder / WEIGHTS_NAME, NotAMoTEModelError, file, config.get(SAVE_ID))
        missing, unexpected = model.load_state_dict(state, strict=False)
        # Non-persistent buffers (e.g. position_ids) are rebuilt by the model; anything else is an error.
        missing = [k for k in missing if k in dict(model.named_parameters())]
        if missing or unexpected:
            raise NotAMoTEModelError(
                f"Weights in {folder} do not match its {CONFIG_NAME}: missing {missing[:5]}, unexpected "
                f"{unexpected[:5]}"
            )
        model.eval()
        max_seq_length = config.get("max_seq_length")
        positions = getattr(hf_config, "max_position_embeddings", None)
        if max_seq_length is not None and isinstance(positions, int) and max_seq_length > positions:
            raise NotAMoTEModelError(
                f"{file}: max_seq_length {max_seq_length} exceeds the {positions} positions of the encoder "
                f"(config.json); set it to at most {positions}"
            )
        module = cls(
            model,
            _read_tokenizer(folder),
            routing,
            max_seq_length,
            config.get("do_lower_case", False),
            context,
        )
        module.matryoshka_dims = config.get("matryoshka_dims")
        return module

    @classmethod
    def _checked_config(cls, config: dict | None, name: str) -> dict:
        """``mote_config.json`` of a loadable folder, each field of the right type and range, or
        :class:`NotAMoTEModelError` naming the field and the fix."""
        if not config:
            raise NotAMoTEModelError(
                f"{name!r} has no {CONFIG_NAME}: it is not a MoTE model. "
                "Create one with `mote convert BASE OUT` (or mote.convert)."
            )
        where, fix = f"{name}/{CONFIG_NAME}", "the file is damaged or edited by hand: save (or copy) the model again"

        def whole(value: Any, low: int) -> bool:
            return isinstance(value, int) and not isinstance(value, bool) and value >= low

        version = config.get("format_version", FORMAT_VERSION)
        if not whole(version, 1):
            raise NotAMoTEModelError(f"{where}: format_version must be a whole number >= 1, got {version!r}; {fix}")
        if version > FORMAT_VERSION:
            raise NotAMoTEModelError(f"{name!r} uses MoTE format {version}; upgrade mote to load it")
        layers = config["expert_layers"]
        if not isinstance(layers, list) or not layers or not all(whole(x, 0) for x in layers) \
                or len(set(layers)) != len(layers):
            raise NotAMoTEModelError(
                f"{where}: expert_layers must be a non-empty list of distinct layer indices (0, 1, ...), got "
                f"{layers!r}; {fix}"
            )
        if not whole(config["num_experts"], 1):
            raise NotAMoTEModelError(f"{where}: num_experts must be a whole number >= 1, got "
                                     f"{config['num_experts']!r}; {fix}")
        length = config.get("max_seq_length")
        if length is not None and not whole(length, 1):
            raise NotAMoTEModelError(f"{where}: max_seq_length must be a whole number of tokens >= 1, got "
                                     f"{length!r}; {fix}")
        if not isinstance(config.get("do_lower_case", False), bool):
            raise NotAMoTEModelError(f"{where}: do_lower_case must be true or false, got "
                                     f"{config['do_lower_case']!r}; {fix}")
        dims = config.get("matryoshka_dims")
        if dims is not None and (not isinstance(dims, list) or not all(whole(d, 1) for d in dims)):
            raise NotAMoTEModelError(f"{where}: matryoshka_dims must be a list of whole numbers >= 1, got "
                                     f"{dims!r}; {fix}")
        if config.get(SAVE_ID) is not None and not isinstance(config[SAVE_ID], str):
            raise NotAMoTEModelError(f"{where}: {SAVE_ID} must be a string, got {config[SAVE_ID]!r}; {fix}")
        files = config.get(FILES_SHA256)
        if files is not None and not (isinstance(files, dict) and all(
            isinstance(k, str) and isinstance(v, str) and k and not k.startswith("/") and ".." not in k.split("/")
            for k, v in files.items()
        )):
            raise NotAMoTEModelError(f"{where}: {FILES_SHA256} must map file names inside the folder to SHA-256 "
                                     f"hashes; {fix}")
        return config

    @classmethod
    def _checked_weights(cls, folder: Path, config: dict):
        """The folder's encoder config (``config.json``), once it and ``mote_config.json`` agree with the weights:
        the same save, the bytes of every file saved with it (``files_sha256``: weights, configs, tokenizer), and
        every tensor's name and shape, read from the safetensors header only (no tensor is loaded), against a
        shape-only build of the model they describe. :class:`NotAMoTEModelError` naming the file and the fix
        otherwise."""
        weights, fix = folder / WEIGHTS_NAME, "save (or copy) the model again"
        hf_file = folder / "config.json"
        found, metadata = safetensors_header(weights, NotAMoTEModelError)
        if config.get(SAVE_ID) is not None and metadata.get(SAVE_ID) != config[SAVE_ID]:
            raise NotAMoTEModelError(f"{weights} and {folder / CONFIG_NAME} come from different saves (an interrupted "
                                     f"save?); {fix}")
        for name, digest in (config.get(FILES_SHA256) or {}).items():
            file = folder / name
            if not file.is_file():
                raise NotAMoTEModelError(f"{file} is missing: the model folder is incomplete; {fix}")
            if file_sha256(file) != digest:
                raise NotAMoTEModelError(
                    f"{file} is not the file {folder / CONFIG_NAME} was saved with (its SHA-256 differs): damaged or "
                    f"replaced; {fix}"
                )
        try:
            hf_config = AutoConfig.from_pretrained(str(folder))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise NotAMoTEModelError(f"{hf_file} is missing or not a valid encoder config ({e}); {fix}") from None
        layers = getattr(hf_config, "num_hidden_layers", None)
        if not isinstance(layers, int) or isinstance(layers, bool) or layers < 1:
            raise NotAMoTEModelError(f"{hf_file}: num_hidden_layers must be a whole number >= 1, got {layers!r}; "
                                     f"{fix}")
        bad = [i for i in config["expert_layers"] if i >= layers]
        if bad:
            raise NotAMoTEModelError(
                f"{folder / CONFIG_NAME}: expert_layers {bad} are out of range: the encoder ({hf_file}) has layers "
                f"0..{layers - 1}; {fix}"
            )
        try:
            with torch.device("meta"):
                shape_model = AutoModel.from_config(hf_config)
                cls._add_experts(shape_model, config)
        except (ValueError, TypeError, RuntimeError, KeyError, AttributeError, IndexError, OverflowError) as e:
            raise NotAMoTEModelError(
                f"{hf_file} and {folder / CONFIG_NAME} describe no model that can be built ({e}); {fix}"
            ) from None
        params = {k: list(v.shape) for k, v in shape_model.named_parameters()}
        known = {k: list(v.shape) for k, v in shape_model.state_dict().items()}
        missing = sorted(set(params) - set(found))
        unexpected = sorted(set(found) - set(known))
        wrong = sorted(k for k in set(found) & set(known) if found[k] != known[k])
        if missing or unexpected or wrong:
            detail = "; ".join(
                [f"{k} is {found[k]} in the weights, {known[k]} by the configs" for k in wrong[:3]]
                + ([f"missing {missing[:3]}"] if missing else [])
                + ([f"unexpected {unexpected[:3]}"] if unexpected else [])
            )
            raise NotAMoTEModelError(
                f"{weights} does not match {folder / CONFIG_NAME} (num_experts {config['num_experts']}, expert_layers "
                f"{config['expert_layers']}) and {hf_file} (hidden_size {getattr(hf_config, 'hidden_size', '?')}): "
                f"{detail}. The weights and configs come from different models; {fix}"
            )
        return hf_config

    @classmethod
    def _add_experts(cls, model: PreTrainedModel, config: dict) -> RoutingContext:
        """Put the (not yet loaded) expert layers into a freshly built backbone; returns their routing context."""
        context = RoutingContext()
        upcycle(model, config["expert_layers"], int(config["num_experts"]), context)
        return context

    def __repr__(self) -> str:
        return (
            f"MoTETransformer(model={type(self.auto_model).__name__}, experts={self.num_experts}, "
            f"expert_layers={self.expert_layers}, tasks={self.routing.task_names}, "
            f"max_seq_length={self.max_seq_length})"
        )


def _read_tokenizer(folder: Path):
    """The folder's tokenizer, or :class:`NotAMoTEModelError` naming its files (a truncated ``tokenizer.json``)."""
    try:
        return AutoTokenizer.from_pretrained(str(folder))
    except Exception as e:  # tokenizers raises a bare Exception for a damaged tokenizer.json
        names = [n for n in ("tokenizer.json", "tokenizer_config.json", "vocab.txt") if (folder / n).is_file()]
        raise NotAMoTEModelError(
            f"the tokenizer of {folder} ({', '.join(names) or 'no tokenizer files'}) cannot be read "
            f"({str(e).splitlines()[0] if str(e) else type(e).__name__}): damaged or missing; save (or copy) the "
            "model again"
        ) from None


# ------------------------------------------------------------------------------------------------ public helpers
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
    each module's folder inside ``folder`` (a path that leaves the model folder is refused, never followed)."""
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


def register_module_class(cls: type) -> None:
    """Let ``SentenceTransformer(path)`` load folders of module class ``cls`` without ``trust_remote_code``.

    sentence-transformers 6 imports a ``modules.json`` class outside its own namespace only with
    ``trust_remote_code=True``, unless the class is registered as already imported
    (:mod:`mote.adapters.sentence_transformers`). The code that runs is then the installed ``mote`` the user
    imported, never code shipped inside a model folder. Import mote first rather than passing
    ``trust_remote_code=True``: that flag also lets a folder name modules of its own to import, so never pass it for
    a folder you did not make.
    """
    from mote.adapters.sentence_transformers import register_module_class as register

    register(cls)


register_module_class(MoTETransformer)

__all__ = [
    "CONFIG_NAME",
    "MoTETransformer",
    "NotAMoTEModelError",
    "UnknownTaskError",
    "convert",
    "encode",
    "encode_mixed",
    "load",
    "mote_module",
]
