"""The TSEmbed sentence-transformers module: a stock ``Transformer`` whose linear layers hold MoE-LoRA experts.

``TSEmbedTransformer`` is the first module of a normal pipeline (``[TSEmbedTransformer, Pooling, Normalize]``). It
wraps sentence-transformers' own ``Transformer`` (so tokenization, truncation, prompts and the processors of
vision-language models are the stock code paths), prepends each input's task prefix from the
:class:`~mote.routing.RoutingTable`, stamps ``features["task_ids"]`` and runs the encoder with the routing state
installed. Task resolution is MoTE's: explicit ``task=``, else the prompt matched against the prefixes, else the
table's default task.

Outputs besides ``token_embeddings``: ``router_aux_loss`` (when gradients are on; the trainer weights it, as for
``mote.ablations.tlr``) and ``routing_probs`` ``(B, M, E)``, each example's routing distribution per routed layer
averaged over its tokens (in training, or inside :meth:`TSEmbedTransformer.emit_routing`), which EANS uses.

Saved folders hold the plain backbone exactly as the stock ``Transformer`` saves it (``config.json``,
``model.safetensors``, tokenizer), ``tsembed_config.json``, and the adapters in ``moe_lora/`` (``adapter_config.json``
+ ``adapter_model.safetensors``; a subfolder, so that transformers' PEFT auto-detection never sees them).

Example:
    >>> from mote.lora import MoELoRAConfig, convert
    >>> model = convert("all-MiniLM-L6-v2", MoELoRAConfig(num_experts=4, r=8))      # doctest: +SKIP
    >>> model.encode(["how do magnets work"], task="query").shape                     # doctest: +SKIP
    (1, 384)
    >>> export_task(model, "query", "minilm-query")   # sequence routing only         # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.modules import InputModule, Transformer

from mote.api import check_modules_file
from mote.atomic import SAVE_ID, atomic_dir, new_save_id, staged_files
from mote.base_models import resolve_model_path
from mote.export import NotExportableError
from mote.files import FORMAT_VERSION, ModelFolderError, check_format_version, read_json_config
from mote.lora.config import MoELoRAConfig
from mote.lora.inputs import format_input, image_token_of
from mote.lora.model import (
    adapters_detached,
    inject_adapters,
    load_adapter_weights,
    merge_task,
    moe_lora_layers,
    parameter_report,
    read_adapter_config,
    write_adapter_files,
)
from mote.lora.router import RoutingState, mean_aux_loss, routing_signature
from mote.model import MoTETransformer, register_module_class
from mote.routing import RoutingTable
from mote.task_calls import TASK_PLAN, TaskPlan, carry_task_lists, host_task_ids, refuse_sorted_task_list

CONFIG_NAME = "tsembed_config.json"
ADAPTER_SUBFOLDER = "moe_lora"
_EMIT_ROUTING: contextvars.ContextVar[bool] = contextvars.ContextVar("mote_emit_routing", default=False)
_HF_LOAD_KWARGS = ("trust_remote_code", "model_kwargs", "processor_kwargs", "config_kwargs", "backend")


class NotATSEmbedModelError(ModelFolderError):
    """A folder or model that is not a TSEmbed (MoE-LoRA) model."""


class TSEmbedTransformer(InputModule):
    """A stock ``Transformer`` with MoE-LoRA adapters and task routing (see the module doc).

    Args:
        transformer: the sentence-transformers ``Transformer`` to adapt (its model is changed in place).
        routing: task -> prefix -> expert table (``task_init`` starts each task on its expert).
        lora_config: the adapter settings.
        targets: resolved target layer names (when loading a saved adapter); default: ``lora_config``'s match.
    """

    config_file_name = CONFIG_NAME
    save_in_root = True
    forward_kwargs: ClassVar[set[str]] = {"task"}

    # MoTE's task resolution, shared as-is (it reads only self.routing).
    resolve_tasks = MoTETransformer.resolve_tasks

    def __init__(
        self,
        transformer: Transformer,
        routing: RoutingTable,
        lora_config: MoELoRAConfig,
        targets: list[str] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(transformer, Transformer):
            raise TypeError(f"TSEmbedTransformer wraps a sentence-transformers Transformer, got {type(transformer)}")
        self.transformer = transformer
        self.routing = routing
        self.lora_config = lora_config
        self.state = RoutingState()
        inject_adapters(transformer.model, lora_config, routing, self.state, targets=targets)
        self.output_routing = False
        self.image_token = image_token_of(transformer.processor)

    # ------------------------------------------------------------------------------------------- properties
    @property
    def auto_model(self) -> torch.nn.Module:
        return self.transformer.model

    @property
    def tokenizer(self):
        return self.transformer.tokenizer

    @property
    def modalities(self) -> list:
        return self.transformer.modalities

    @property
    def max_seq_length(self) -> int | None:
        return self.transformer.max_seq_length

    @max_seq_length.setter
    def max_seq_length(self, value: int | None) -> None:
        self.transformer.max_seq_length = value

    def get_max_seq_length(self) -> int | None:
        return self.transformer.max_seq_length

    def get_embedding_dimension(self) -> int:
        return self.transformer.get_embedding_dimension()

    @property
    def num_experts(self) -> int:
        return self.lora_config.num_experts

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "routing": self.routing.to_dict(),
            "lora": self.lora_config.to_dict(),
            "adapter_folder": ADAPTER_SUBFOLDER,
        }

    def parameter_report(self) -> dict[str, int]:
        """Parameter counts of the adapted encoder (see :func:`mote.lora.model.parameter_report`)."""
        return parameter_report(self.auto_model)

    # ------------------------------------------------------------------------------------------- preprocessing
    def preprocess(
        self,
        inputs: Sequence[Any],
        prompt: str | None = None,
        task: str | Sequence[str] | None = None,
        **kwargs,
    ) -> dict[str, Any]:
        """Prefix each input with its task's instruction, run the stock preprocessing, stamp ``task_ids`` (B,).

        Inputs are texts, or ``{"text": ..., "image": ...}`` dicts for vision-language backbones (see
        :mod:`mote.lora.multimodal`).
        """
        items = [inputs] if isinstance(inputs, str) else list(inputs)
        task_ids, prefixes = self.resolve_tasks(len(items), task, prompt)
        kwargs.pop("task", None)  # the stock module reads `task` as query/document lengths; ours is a route name
        if all(isinstance(x, str) for x in items) and all(p == prefixes[0] for p in prefixes) and items:
            features = self.transformer.preprocess(items, prompt=prefixes[0] or None, **kwargs)
        else:
            formatted = [format_input(x, p, self.image_token) for x, p in zip(items, prefixes)]
            features = self.transformer.preprocess(formatted, **kwargs)
        features["task_ids"] = torch.tensor(task_ids, dtype=torch.long)
        features[TASK_PLAN] = TaskPlan(tuple(task_ids))
        return features

    def on_model_ready(self, model) -> None:
        """sentence-transformers' hook once the owning model is built: its ``encode`` carries per-text task lists."""
        carry_task_lists(model)

    # ------------------------------------------------------------------------------------------- forward
    def forward(self, features: dict[str, Any], task: str | None = None, **kwargs) -> dict[str, Any]:
        refuse_sorted_task_list(task)
        # routing bookkeeping, not model inputs: a backbone whose forward takes **kwargs would receive them
        routing_keys = {k: features.pop(k) for k in ("task_ids", TASK_PLAN) if k in features}
        task_ids = routing_keys.get("task_ids")
        mask = features.get("attention_mask")
        ref = features.get("input_ids", mask)
        batch = int(ref.shape[0]) if ref is not None else 1
        host = host_task_ids(routing_keys, batch, self.routing, task)  # from the host plan: no device read
        single = host[0] if host and all(t == host[0] for t in host) else None
        device = ref.device if ref is not None else self.auto_model.device
        if task_ids is None or task_ids.shape[0] != batch:
            task_ids = torch.tensor(host, dtype=torch.long)
        task_ids = task_ids.to(device, non_blocking=True)
        record = torch.is_grad_enabled() or self.output_routing or _EMIT_ROUTING.get()
        with self.state.use(task_ids, single, mask, record=record) as records:
            features = self.transformer(features, **kwargs)
        features["task_ids"] = task_ids
        if records:
            if torch.is_grad_enabled():
                aux = mean_aux_loss(records)
                if aux is not None and aux.requires_grad:
                    features["router_aux_loss"] = aux
            signature = routing_signature(records, mask, batch)
            if signature is not None:
                features["routing_probs"] = signature  # (B, M, E)
        return features

    @contextlib.contextmanager
    def routed(self, task: str) -> Iterator[None]:
        """Route every sequence of direct ``self.auto_model(...)`` calls through ``task``."""
        tid = self.routing.task_id(task)
        with self.state.use(torch.tensor([tid], device=self.auto_model.device), tid, record=False):
            yield

    @contextlib.contextmanager
    def emit_routing(self) -> Iterator[None]:
        """Also output ``routing_probs`` in inference (e.g. for EANS pool refreshes), for the forwards of this
        block in this thread / asyncio task."""
        token = _EMIT_ROUTING.set(True)
        try:
            yield
        finally:
            _EMIT_ROUTING.reset(token)

    # ------------------------------------------------------------------------------------------- save / load
    def save(self, output_path: str, *args, safe_serialization: bool = True, **kwargs) -> None:
        """Write the backbone, the adapters (``moe_lora/``) and ``tsembed_config.json`` into ``output_path``.

        As :meth:`mote.model.MoTETransformer.save`: every file written aside, flushed and renamed into place (the
        config last); the config and the adapter weights carry one save id, checked by :meth:`load`.
        """
        save_id = new_save_id()
        with staged_files(output_path, last=(CONFIG_NAME,)) as tmp:
            with adapters_detached(self.auto_model):  # the backbone exactly as the stock Transformer saves it
                self.transformer.save(str(tmp), safe_serialization=safe_serialization)
            sub = tmp / ADAPTER_SUBFOLDER
            sub.mkdir()
            base = getattr(self.auto_model.config, "_name_or_path", None) or None
            write_adapter_files(sub, self.auto_model, self.lora_config, self.routing, base_model=base,
                                save_id=save_id)
            (tmp / CONFIG_NAME).write_text(json.dumps({**self.get_config_dict(), SAVE_ID: save_id}, indent=2),
                                           encoding="utf-8")

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
    ) -> TSEmbedTransformer:
        hub = dict(token=token, cache_folder=cache_folder, revision=revision, local_files_only=local_files_only)
        root = Path(cls.load_dir_path(model_name_or_path, subfolder=subfolder, **hub))
        if not (root / CONFIG_NAME).is_file():
            raise NotATSEmbedModelError(
                f"{model_name_or_path!r} has no {CONFIG_NAME}: it is not a TSEmbed model (create one with "
                "mote.lora.convert, or train one with `mote train` with `method: tsembed`)"
            )
        config = read_json_config(root / CONFIG_NAME, NotATSEmbedModelError, ("routing", "lora"))
        check_format_version(config, root / CONFIG_NAME, "TSEmbed", NotATSEmbedModelError)
        extra = {k: v for k, v in kwargs.items() if k in _HF_LOAD_KWARGS}
        transformer = Transformer.load(model_name_or_path, subfolder=subfolder, **hub, **extra)
        folder = adapter_folder(root, config.get("adapter_folder", ADAPTER_SUBFOLDER))
        lora_config, routing, targets, _ = read_adapter_config(folder)
        module = cls(transformer, routing, lora_config, targets=targets)
        load_adapter_weights(module.auto_model, folder, save_id=config.get(SAVE_ID), config=root / CONFIG_NAME)
        module.eval()
        return module

    def __repr__(self) -> str:
        c = self.lora_config
        return (
            f"TSEmbedTransformer(model={type(self.auto_model).__name__}, experts={c.num_experts}, top_k={c.top_k}, "
            f"r={c.r}, routing={c.routing}, adapted_layers={len(moe_lora_layers(self.auto_model))}, "
            f"tasks={self.routing.task_names})"
        )


def adapter_folder(root: Path, name: Any) -> Path:
    """The adapters' folder named by ``tsembed_config.json``: a folder inside the model folder ``root``, or
    :class:`NotATSEmbedModelError` (a path that leaves the folder is refused, never read)."""
    where = root / CONFIG_NAME
    if not isinstance(name, str) or not name.strip():
        raise NotATSEmbedModelError(f"{where}: adapter_folder must be a folder name, got {name!r}; save the model "
                                    "again")
    inner, top = (root / name).resolve(), root.resolve()
    if inner == top or top not in inner.parents:
        raise NotATSEmbedModelError(
            f"{where}: adapter_folder {name!r} is not a folder inside the model folder; refusing to load adapters "
            f"from elsewhere (a model folder reads only its own files). Use {ADAPTER_SUBFOLDER!r}"
        )
    return inner


# ------------------------------------------------------------------------------------------------ public helpers
def tsembed_module(model: SentenceTransformer) -> TSEmbedTransformer:
    """The TSEmbed input module of ``model``, or :class:`NotATSEmbedModelError`."""
    first = model[0] if len(model) else None
    if not isinstance(first, TSEmbedTransformer):
        raise NotATSEmbedModelError(
            f"This SentenceTransformer's first module is {type(first).__name__}, not TSEmbedTransformer"
        )
    return first


def convert(
    base: str | os.PathLike | SentenceTransformer = "all-MiniLM-L6-v2",
    lora: MoELoRAConfig | None = None,
    routing: RoutingTable | None = None,
    device: str | None = "cpu",
    targets: list[str] | None = None,
) -> SentenceTransformer:
    """Add MoE-LoRA adapters to a dense sentence-transformers model (its first module a ``Transformer``).

    A ``SentenceTransformer`` passed in is copied, never changed. Fresh adapters are a no-op (``B = 0``).
    ``targets`` (resolved layer names) overrides ``lora.target_modules``.

    Example:
        >>> model = convert("all-MiniLM-L6-v2", MoELoRAConfig(routing="sequence"))   # doctest: +SKIP
    """
    lora = lora or MoELoRAConfig()
    routing = routing or RoutingTable.default()
    owned = not isinstance(base, SentenceTransformer)
    st = SentenceTransformer(resolve_model_path(base), device=device) if owned else base
    first = st[0]
    if isinstance(first, TSEmbedTransformer):
        raise ValueError("This model already holds MoE-LoRA adapters")
    if not isinstance(first, Transformer):
        raise ValueError(f"Expected a sentence-transformers Transformer first module, got {type(first).__name__}")
    transformer = first if owned else copy.deepcopy(first)
    module = TSEmbedTransformer(transformer, routing, lora, targets=targets)
    rest = list(st)[1:] if owned else [copy.deepcopy(m) for m in list(st)[1:]]
    return SentenceTransformer(
        modules=[module, *rest],
        prompts=routing.saved_prompts(),
        similarity_fn_name=st.similarity_fn_name,
        device=str(st.device) if device is None else device,
    )


def from_adapter(
    base: str | os.PathLike | SentenceTransformer, adapter: str | os.PathLike, device: str | None = "cpu"
) -> SentenceTransformer:
    """A dense sentence-transformers model plus a saved adapter folder (:func:`mote.lora.save_adapter`).

    Example:
        >>> model = from_adapter("all-MiniLM-L6-v2", "runs/tsembed/adapter")   # doctest: +SKIP
    """
    lora, routing, targets, _ = read_adapter_config(adapter)
    model = convert(base, lora, routing, device=device, targets=targets)
    load_adapter_weights(tsembed_module(model).auto_model, adapter)
    return model.eval()


def load(path: str | os.PathLike, device: str | None = None) -> SentenceTransformer:
    """Load a saved TSEmbed model; a clear error if ``path`` is not one."""
    path = resolve_model_path(path)
    local = Path(path)
    if local.is_dir() and not (local / CONFIG_NAME).is_file():
        raise NotATSEmbedModelError(f"{path!r} has no {CONFIG_NAME}: it is not a TSEmbed model")
    if local.is_dir() and (local / "modules.json").is_file():
        check_modules_file(local, NotATSEmbedModelError)
    model = SentenceTransformer(path, device=device)
    tsembed_module(model)
    return model


def export_task(
    model: SentenceTransformer | str | os.PathLike,
    task: str,
    output: str | os.PathLike,
    overwrite: bool = False,
    then: Callable[[Path], Any] | None = None,
) -> Path:
    """Write task ``task`` as a plain sentence-transformers folder (stock modules only), atomically; ``then``
    as in :func:`mote.export.export_dense` (runs on the complete folder before it is published).

    Needs sequence-level routing. The folder's ``Transformer`` holds the merged weights
    ``W + scaling * sum_e g_e B_e A_e`` of the task's gates ``g``; ``prompts = {task: prefix}`` with
    ``default_prompt_name = task``, so ``SentenceTransformer(output).encode(texts)`` equals
    ``model.encode(texts, task=task)`` without importing mote.
    """
    if not isinstance(model, SentenceTransformer):
        model = load(model, device="cpu")
    module = tsembed_module(model)
    if module.lora_config.routing != "sequence":
        raise NotExportableError(
            "This TSEmbed model routes tokens (routing='token'): its routers pick experts per token from the input, "
            "so no dense model computes one task of it and it cannot be exported (only routing='sequence' adapters "
            "merge). Serve the routed model itself (mote.lora.load, `mote encode`)."
        )
    route = module.routing.route(task)
    transformer = copy.deepcopy(module.transformer).cpu()
    merge_task(transformer.model, module.routing.task_id(task), inplace=True)
    output = Path(output)
    with atomic_dir(output, overwrite=overwrite) as tmp:
        dense = SentenceTransformer(
            modules=[transformer, *[copy.deepcopy(m).cpu() for m in list(model)[1:]]],
            prompts={task: route.prefix},
            default_prompt_name=task,
            similarity_fn_name=model.similarity_fn_name,
            device="cpu",
        )
        dense.save(str(tmp))
        meta = {"exported_from": "mote.lora", "task": task, "prefix": route.prefix,
                "lora": module.lora_config.to_dict()}
        (tmp / "tsembed_export.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        if then is not None:
            then(tmp)
    return output


@torch.no_grad()
def routing_distributions(
    model: SentenceTransformer | TSEmbedTransformer,
    inputs: Sequence[Any],
    task: str | Sequence[str] | None = None,
    batch_size: int = 64,
) -> torch.Tensor:
    """Routing signatures ``(N, M, E)`` of ``inputs`` (eval mode, no gradients), on the model's device.

    Only the TSEmbed module runs (no pooling). Texts are length-sorted into batches, as ``encode`` does.

    Example:
        >>> routing_distributions(model, ["a", "b"], task="document").shape   # doctest: +SKIP
        torch.Size([2, 36, 4])
    """
    module = model if isinstance(model, TSEmbedTransformer) else tsembed_module(model)
    items = list(inputs)
    tasks = [task] * len(items) if task is None or isinstance(task, str) else list(task)
    if len(tasks) != len(items):
        raise ValueError(f"Got {len(tasks)} tasks for {len(items)} inputs")
    lengths = [-len(x) if isinstance(x, str) else 0 for x in items]
    order = np.argsort(lengths, kind="stable")
    was_training = module.training
    module.eval()
    device = module.auto_model.device
    out: list[torch.Tensor] = []
    try:
        with module.emit_routing():
            for start in range(0, len(items), batch_size):
                idx = order[start : start + batch_size]
                batch_tasks = [tasks[i] for i in idx]
                one = batch_tasks[0] if all(t == batch_tasks[0] for t in batch_tasks) else batch_tasks
                features = module.preprocess([items[i] for i in idx], task=one)
                features = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}
                out.append(module(features)["routing_probs"].float())
    finally:
        module.train(was_training)
    if not out:
        return torch.zeros(0, 0, module.num_experts, device=device)
    result = torch.cat(out)
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[torch.as_tensor(order)] = torch.arange(len(order))
    return result.index_select(0, inverse.to(result.device))


register_module_class(TSEmbedTransformer)  # SentenceTransformer(path) loads TSEmbed folders after import
