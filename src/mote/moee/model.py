"""MoEEEmbedder: training-free embeddings from a mixture-of-experts model's hidden state and router weights.

One forward pass per batch yields both views of every text:

* **HS**: the last layer's hidden state after the final norm, at the last token (decoder LMs, left padding) or
  mean-pooled over tokens (bidirectional encoders).
* **RW**: per MoE layer, the router's distribution over its routed experts (softmax of the router logits by default)
  at the last token (or mean over tokens), concatenated over MoE layers in layer order; dense layers add nothing.

Views: ``hs``, ``rw``, ``concat`` (``[HS; RW]`` standardised per feature with statistics fitted on a reference
corpus, see :meth:`MoEEEmbedder.fit_stats`) and ``sum`` (``[HS; RW]``, scored as ``cos(HS) + alpha * cos(RW)``).

Example:
    >>> emb = MoEEEmbedder.from_pretrained("allenai/OLMoE-1B-7B-0924", MoEEConfig())  # doctest: +SKIP
    >>> emb.encode(["a cat sat on the mat"], view="hs").shape                       # doctest: +SKIP
    (1, 2048)
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from mote.moee.combine import Standardizer
from mote.moee.config import MoEEConfig, check_view
from mote.moee.extract import (
    HookCapture,
    RouterLayout,
    as_btE,
    base_model_of,
    find_router_modules,
    hf_model_of,
    is_decoder,
    model_class_name,
    no_router_error,
    pool,
    records_router_logits,
    router_scores,
)
from mote.moee.loading import load_model
from mote.moee.templates import render, resolve_template

STATS_DIR_PREFIX = "moee-stats-"


@dataclass
class MoEEFeatures:
    """The raw features of ``N`` texts: ``hs`` float32 ``[N, d_hs]``, ``rw`` float32 ``[N, d_rw]``."""

    hs: np.ndarray
    rw: np.ndarray

    def joined(self) -> np.ndarray:
        return np.concatenate([self.hs, self.rw], axis=1)


def stats_dirname(config: MoEEConfig) -> str:
    """Folder name of the statistics for ``config``, e.g. ``moee-stats-3f2a9c1b0d4e`` (next to the model)."""
    return STATS_DIR_PREFIX + config.key()[:12]


def length_order(prompts: Sequence[str]) -> np.ndarray:
    """Longest first (stable): similar lengths share a batch, so little padding is computed."""
    return np.argsort([-len(p) for p in prompts], kind="stable")


# ------------------------------------------------------------------------------------------------ identity
def weights_fingerprint(model: nn.Module) -> str:
    """sha256 over the class name and every state-dict entry (name, dtype, shape, bytes)."""
    h = hashlib.sha256(type(model).__name__.encode())
    for name, tensor in model.state_dict().items():
        if not isinstance(tensor, torch.Tensor):
            continue
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------ the embedder
class MoEEEmbedder:
    """Hidden-state and routing-weight embeddings of a mixture-of-experts model.

    Args:
        model: a Hugging Face MoE model (``*ForCausalLM`` or its backbone) or a sentence-transformers model whose
            input module wraps a token-routed MoE encoder (this project's ``tlr`` models).
        tokenizer: the model's tokenizer (not needed for sentence-transformers models).
        config: extraction settings (:class:`MoEEConfig`).
        stats: fitted :class:`Standardizer` for ``concat`` (and, if present, ``rw`` / ``sum``), or a folder.
        name: label for tables (default: the model's ``name_or_path``).

    Example:
        >>> emb = MoEEEmbedder(tiny_olmoe, tokenizer, MoEEConfig(template="none"))   # doctest: +SKIP
        >>> f = emb.features(["a cat", "the dog sat"])                               # doctest: +SKIP
        >>> f.hs.shape, f.rw.shape                                                   # doctest: +SKIP
        ((2, 32), (2, 16))
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any = None,
        config: MoEEConfig | None = None,
        *,
        stats: Standardizer | str | os.PathLike | None = None,
        name: str | None = None,
    ) -> None:
        self.config = config or MoEEConfig()
        self.st_module = self._st_input_module(model)
        self.model = model
        self.hf = hf_model_of(model)
        if self.st_module is None:
            if tokenizer is None:
                raise ValueError(f"{type(model).__name__}: pass its tokenizer (MoEEEmbedder(model, tokenizer, ...))")
            self.backbone = base_model_of(model)
        else:
            tokenizer = tokenizer or getattr(self.st_module, "tokenizer", None)
            self.backbone = self.hf
        self.tokenizer = tokenizer
        self.model.eval()
        arch = self.config.architecture
        self.decoder = is_decoder(self.backbone) if arch == "auto" else arch == "decoder"
        default_pool = "last" if self.decoder else "mean"
        self.hs_pooling = default_pool if self.config.hs_pooling == "auto" else self.config.hs_pooling
        self.rw_pooling = default_pool if self.config.rw_pooling == "auto" else self.config.rw_pooling
        self._capture, self._hooks = self._choose_capture()
        self._accepts = set(inspect.signature(self.backbone.forward).parameters)
        self.max_length = self._max_length()
        self.name = name or str(getattr(self.hf, "name_or_path", "") or type(self.hf).__name__)
        self.layout: RouterLayout | None = None
        self.hs_dim: int | None = None
        self._fingerprint: str | None = None
        self.stats: Standardizer | None = None
        if stats is not None:
            self.set_stats(stats)

    # ------------------------------------------------------------------------------------------- construction
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        config: MoEEConfig | None = None,
        *,
        stats: Standardizer | str | os.PathLike | None = "auto",
        device: str | None = None,
        dtype: str | torch.dtype = "auto",
        quantization: str | None = None,
        trust_remote_code: bool = False,
        name: str | None = None,
    ) -> MoEEEmbedder:
        """Load a MoE model by hub id or folder (only its backbone: no LM head), or a sentence-transformers folder.

        Args:
            stats: ``"auto"`` = the folder ``moee-stats-<config key>`` inside a local model folder, if it exists;
                a folder; a :class:`Standardizer`; or ``None``.
            device: ``cuda`` if available, else ``cpu`` (default).
            dtype: ``auto`` (bf16 on CUDA and on CPUs with native bf16, else float32), ``float32``, ``bfloat16``,
                ``float16``. Sentence-transformers models keep their dtype unless one is given.
            quantization: ``"4bit"`` (NF4, the reference code's setting) or ``"8bit"``; needs bitsandbytes + CUDA.

        Example:
            >>> MoEEEmbedder.from_pretrained("Qwen/Qwen1.5-MoE-A2.7B", dtype="bfloat16")   # doctest: +SKIP
        """
        config = config or MoEEConfig()
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        model, tokenizer, local = load_model(name_or_path, device, dtype, quantization, trust_remote_code)
        label = name or (local.name if local.exists() else str(name_or_path))
        if stats == "auto":
            candidate = local / stats_dirname(config) if local.is_dir() else None
            stats = candidate if candidate is not None and candidate.is_dir() else None
        return cls(model, tokenizer, config, stats=stats, name=label)

    @staticmethod
    def _st_input_module(model: nn.Module) -> nn.Module | None:
        from sentence_transformers import SentenceTransformer

        if not isinstance(model, SentenceTransformer):
            return None
        first = model[0] if len(model) else None
        if first is None or getattr(first, "auto_model", None) is None:
            raise ValueError(
                f"{model_class_name(model)}: MoEE reads sentence-transformers models whose first module wraps a "
                "Hugging Face model as `auto_model` (like MoTETransformer / Transformer)"
            )
        return first

    def _choose_capture(self) -> tuple[str, HookCapture | None]:
        cfg = self.config
        can_record = records_router_logits(self.backbone) and self.st_module is None
        if cfg.capture == "router_logits" and not can_record:
            raise ValueError(
                f"{model_class_name(self.model)} does not record router_logits (transformers' _can_record_outputs); "
                "use capture='hooks' or 'auto'"
            )
        if cfg.capture in ("auto", "router_logits") and can_record:
            return "router_logits", None
        routers = find_router_modules(self.backbone, cfg.router_pattern, cfg.num_experts)
        if not routers:
            raise no_router_error(self.model, cfg.router_pattern, cfg.num_experts)
        return "hooks", HookCapture(routers)

    def _max_length(self) -> int | None:
        if self.config.max_length is not None:
            return self.config.max_length
        limits = [getattr(getattr(self.hf, "config", None), "max_position_embeddings", None)]
        if self.st_module is not None:
            limits.append(getattr(self.st_module, "max_seq_length", None))
        limits = [x for x in limits if isinstance(x, int) and 0 < x < 1_000_000]
        return min(limits) if limits else None

    @property
    def device(self) -> torch.device:
        try:
            return next(self.backbone.parameters()).device
        except StopIteration:  # pragma: no cover
            return torch.device("cpu")

    @property
    def passes_task(self) -> bool:
        """Whether ``task`` reaches the model (sentence-transformers input modules that take a ``task``)."""
        return self.st_module is not None and "task" in getattr(self.st_module, "forward_kwargs", set())

    # ------------------------------------------------------------------------------------------- stats
    def set_stats(self, stats: Standardizer | str | os.PathLike | None) -> None:
        """Attach fitted statistics (a :class:`Standardizer` or its folder); they must match this config."""
        if stats is not None and not isinstance(stats, Standardizer):
            stats = Standardizer.load(stats)
        if stats is not None:
            mine = self.config.to_dict()
            if stats.config != mine:
                diff = sorted(k for k in set(mine) | set(stats.config) if mine.get(k) != stats.config.get(k))
                raise ValueError(
                    f"These MoEE statistics were fitted with other settings ({', '.join(diff)} differ: fitted "
                    f"{ {k: stats.config.get(k) for k in diff} }, now { {k: mine.get(k) for k in diff} }). Fit "
                    "statistics for this configuration with `mote moee fit-stats`."
                )
            if self.hs_dim is not None and (stats.hs_dim, stats.dim) != (self.hs_dim, self.hs_dim + self.rw_dim):
                raise ValueError(
                    f"MoEE statistics have HS/RW widths {stats.hs_dim}/{stats.dim - stats.hs_dim} but this model "
                    f"gives {self.hs_dim}/{self.rw_dim}: they were fitted on another model"
                )
        self.stats = stats

    def fit_stats(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 32,
        show_progress: bool = False,
        task: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> Standardizer:
        """Fit per-feature mean/std of ``[HS; RW]`` on a reference corpus (streaming, float64) and attach them.

        The statistics do not depend on batching: every text's features are batch-independent and the moments
        are accumulated in float64.

        Example:
            >>> stats = emb.fit_stats(corpus)                     # doctest: +SKIP
            >>> stats.save("my-olmoe/" + stats_dirname(emb.config))  # doctest: +SKIP
        """
        prompts = self.prompts(texts)
        digest = hashlib.sha256("\x1e".join(prompts).encode()).hexdigest()
        info = {
            "model": self.name,
            "model_class": model_class_name(self.model),
            "texts": len(prompts),
            "prompts_sha256": digest,
            **(meta or {}),
        }
        self.ensure_layout()
        ordered = [prompts[i] for i in length_order(prompts)]
        batches = (f.joined() for f in self._iter_features(ordered, task, batch_size, show_progress))
        stats = Standardizer.fit(batches, hs_dim=int(self.hs_dim), config=self.config.to_dict(), meta=info)
        self.set_stats(stats)
        return stats

    # ------------------------------------------------------------------------------------------- encoding
    def prompts(self, texts: Sequence[str]) -> list[str]:
        """The prompts the model sees (template, preprocessing, instruction, empty-text policy applied)."""
        if isinstance(texts, str):
            raise TypeError("Pass a list of texts, not a single string")
        cfg = self.config
        return [
            render(t, cfg.template, preprocess=cfg.preprocess, instruction=cfg.instruction, empty_text=cfg.empty_text)
            for t in texts
        ]

    def features(
        self,
        texts: Sequence[str],
        *,
        task: str | None = None,
        batch_size: int = 32,
        show_progress: bool = False,
    ) -> MoEEFeatures:
        """Raw HS and RW features of ``texts`` (no standardisation), float32, in input order.

        Texts are batched by length (longest first) for speed; an embedding never depends on its batch.
        ``task`` is passed to sentence-transformers input modules that take one (MoTE models) and ignored otherwise.
        """
        prompts = self.prompts(texts)
        if not prompts:
            self.ensure_layout()
            return MoEEFeatures(np.zeros((0, self.hs_dim), np.float32), np.zeros((0, self.rw_dim), np.float32))
        order = length_order(prompts)
        parts = list(self._iter_features([prompts[i] for i in order], task, batch_size, show_progress))
        hs, rw = np.empty((len(prompts), self.hs_dim), np.float32), np.empty((len(prompts), self.rw_dim), np.float32)
        hs[order] = np.concatenate([p.hs for p in parts])
        rw[order] = np.concatenate([p.rw for p in parts])
        return MoEEFeatures(hs, rw)

    def encode(
        self,
        texts: Sequence[str],
        view: str = "hs",
        *,
        task: str | None = None,
        batch_size: int = 32,
        show_progress: bool = False,
        standardize: bool | None = None,
    ) -> np.ndarray:
        """Embeddings of one view, float32 ``[N, d]``.

        Args:
            view: ``hs``, ``rw``, ``concat`` (standardised ``[HS; RW]``; needs statistics) or ``sum`` (``[HS; RW]``;
                score it with :func:`mote.moee.combine.sum_pair_scores`, split at :attr:`hs_dim`).
            standardize: ``None`` = ``concat`` always (statistics required), ``rw`` / ``sum`` when statistics are
                attached (the reference code z-scores every view but HS), ``hs`` never; ``True`` = always (statistics
                required); ``False`` = never.

        Example:
            >>> emb.encode(["a cat"], view="rw").shape   # doctest: +SKIP
            (1, 1024)
        """
        check_view(view)
        use = self.uses_stats(view, standardize)
        feats = self.features(texts, task=task, batch_size=batch_size, show_progress=show_progress)
        return self.view_of(feats, view, use)

    def uses_stats(self, view: str, standardize: bool | None = None) -> bool:
        """Whether ``view`` is standardised under ``standardize`` (raises if statistics are needed but missing)."""
        check_view(view)
        if standardize is False:
            if view == "concat":
                raise ValueError("view 'concat' is [HS; RW] after standardisation; it cannot be used unstandardised")
            return False
        need = standardize is True or view == "concat"
        if need and self.stats is None:
            raise ValueError(
                f"view {view!r} needs standardisation statistics fitted on a reference corpus and none are "
                f"attached: run `mote moee fit-stats MODEL --corpus FILE` (or MoEEEmbedder.fit_stats) and pass "
                "stats=<folder>"
            )
        return need or (view in ("rw", "sum") and self.stats is not None)

    def view_of(self, feats: MoEEFeatures, view: str, standardized: bool) -> np.ndarray:
        """One view of raw features (``standardized`` applies the attached statistics)."""
        st = self.stats if standardized else None
        if view == "hs":
            out = feats.hs if st is None else st.transform(feats.hs, "hs")
        elif view == "rw":
            out = feats.rw if st is None else st.transform(feats.rw, "rw")
        else:
            joined = feats.joined()
            out = joined if st is None else st.transform(joined, "all")
        return np.ascontiguousarray(out, dtype=np.float32)

    # ------------------------------------------------------------------------------------------- internals
    def _iter_features(
        self, prompts: list[str], task: str | None, batch_size: int, show_progress: bool
    ) -> Iterator[MoEEFeatures]:
        """Features of ``prompts`` (already rendered), batch by batch, in the given order."""
        from tqdm.auto import tqdm

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        starts = range(0, len(prompts), batch_size)
        for start in tqdm(starts, disable=not show_progress, desc="MoEE batches", unit="batch"):
            yield self._forward(prompts[start : start + batch_size], task)

    def ensure_layout(self) -> RouterLayout:
        """The router layout (runs one probe forward pass on ``"."`` if no batch has been encoded yet)."""
        if self.layout is None:
            self._forward(self.prompts(["."]), None)
        assert self.layout is not None
        return self.layout

    @property
    def rw_dim(self) -> int:
        return self.ensure_layout().rw_dim

    @torch.inference_mode()
    def _forward(self, prompts: list[str], task: str | None) -> MoEEFeatures:
        if self.st_module is not None:
            hidden, mask, logits = self._forward_st(prompts, task)
        else:
            hidden, mask, logits = self._forward_hf(prompts)
        batch, length = mask.shape
        hs = pool(hidden.float(), mask, self.hs_pooling)
        rws, widths = [], []
        for name, lg in zip(self._router_names(len(logits)), logits):
            scores = router_scores(as_btE(lg, batch, length, name), self.config.rw_scores)
            rws.append(pool(scores, mask, self.rw_pooling))
            widths.append(int(scores.shape[-1]))
        if not rws:
            raise no_router_error(self.model, self.config.router_pattern, self.config.num_experts)
        if self.layout is None:
            self.layout = RouterLayout(self._capture, self._router_names(len(logits)), widths)
            self.hs_dim = int(hs.shape[-1])
            if self.stats is not None:
                self.set_stats(self.stats)  # now that widths are known, check them
        elif widths != self.layout.widths:
            raise RuntimeError(f"Router widths changed between batches: {self.layout.widths} -> {widths}")
        rw = torch.cat(rws, dim=-1)
        return MoEEFeatures(hs.cpu().numpy().astype(np.float32), rw.cpu().numpy().astype(np.float32))

    def _router_names(self, n: int) -> list[str]:
        if self._hooks is not None:
            return [name for name, _, _ in self._hooks.routers]
        return [f"moe_layer_{i}" for i in range(n)]

    def _forward_hf(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        tok = self.tokenizer
        if self.decoder and tok.pad_token_id is None:
            # Padding never reaches the model's output (left padding + attention mask); any id will do.
            tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.unk_token
            if tok.pad_token_id is None:
                tok.pad_token_id = 0
        enc = tok(
            prompts,
            padding=True,
            truncation=self.max_length is not None,
            max_length=self.max_length,
            padding_side="left" if self.decoder else "right",
            return_tensors="pt",
        )
        device = self.device
        mask = enc["attention_mask"].to(device)
        if mask.shape[1] == 0 or bool((mask.sum(-1) == 0).any()):
            raise ValueError("A prompt tokenized to zero tokens; MoEE needs at least one token per text")
        kwargs: dict[str, Any] = {k: v.to(device) for k, v in enc.items() if k in self._accepts}
        if self.decoder:
            # Positions count real tokens only, so a left-padded text sees exactly the positions it has alone.
            if "position_ids" in self._accepts:
                kwargs["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0)
            if "use_cache" in self._accepts:
                kwargs["use_cache"] = False
        if self._hooks is None:
            out = self.backbone(**kwargs, output_router_logits=True, return_dict=True)
            logits = list(out.router_logits or ())
        else:
            with self._hooks.active():
                out = self.backbone(**kwargs, return_dict=True)
            logits = self._hooks.logits()
        return out.last_hidden_state, mask, logits

    def _forward_st(self, prompts: list[str], task: str | None) -> tuple[torch.Tensor, torch.Tensor, list]:
        task_kw = {"task": task} if self.passes_task and task is not None else {}
        features = self.model.preprocess(prompts, **task_kw)
        device = self.device
        features = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}
        assert self._hooks is not None
        with self._hooks.active():
            out = self.st_module(features, **task_kw)
        logits = self._hooks.logits()
        return out["token_embeddings"], out["attention_mask"], logits

    # ------------------------------------------------------------------------------------------- identity
    def fingerprint(self) -> str:
        """sha256 of the weights (computed once; hashing a 16B model takes a while)."""
        if self._fingerprint is None:
            self._fingerprint = weights_fingerprint(self.model)
        return self._fingerprint

    def identity(self, view: str, standardize: bool | None = None) -> str:
        """Stable id of weights + extraction config + view + statistics: equal ids give equal embeddings."""
        check_view(view)
        use = self.uses_stats(view, standardize)
        doc = {
            "weights": self.fingerprint(),
            "config": self.config.to_dict(),
            "template": resolve_template(self.config.template),
            "view": view,
            "stats": self.stats.digest() if use and self.stats is not None else None,
            "pooling": [self.hs_pooling, self.rw_pooling],
            "max_length": self.max_length,
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]

    def describe(self) -> str:
        """Human-readable summary: model, padding, HS/RW widths, router layout, settings, statistics."""
        layout = self.ensure_layout()
        cfg = self.config
        kind = "decoder (left padding)" if self.decoder else "encoder"
        dtype = next(self.backbone.parameters()).dtype
        stats = f"attached ({self.stats.count} texts)" if self.stats is not None else "none"
        lines = [
            f"model: {model_class_name(self.model)} [{kind}], device {self.device}, dtype {dtype}",
            f"HS: {self.hs_dim} dims ({self.hs_pooling} token, last layer after the final norm)",
            f"RW: {layout.describe()}",
            f"RW scores {cfg.rw_scores}, pooled by {self.rw_pooling} token",
            f"template {cfg.template!r}, preprocess {cfg.preprocess}, max_length {self.max_length}",
            f"statistics: {stats}",
        ]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"MoEEEmbedder(model={model_class_name(self.model)}, capture={self._capture!r}, "
            f"template={self.config.template!r}, decoder={self.decoder})"
        )


__all__ = [
    "MoEEEmbedder",
    "MoEEFeatures",
    "stats_dirname",
    "weights_fingerprint",
]
