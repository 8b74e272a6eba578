"""MoEE behind the evaluation harness's ``Encoder`` protocol (``mote.eval.encoders``).

``encoder_for_eval(model, view, alpha, template)`` returns an object with ``name``, ``identity``,
``encode(texts, task, *, batch_size, show_progress)`` and ``task_key(task)``. For ``view="sum"`` it also has the
optional hooks the harness uses in place of cosine similarity:

* ``pair_scores(a, b)``: ``cos(HS_a, HS_b) + alpha * cos(RW_a, RW_b)`` row by row (STS, pair classification);
* ``score_matrix(q, d)``: the same for every query x document (retrieval, reranking);
* ``views(emb)``: ``[("hs", HS, 1.0), ("rw", RW, alpha)]`` for classification and clustering, whose per-view
  predictions ``combine_predictions(preds, weights, kind=...)`` merges as the reference code does.

``task``: MoEE over a Hugging Face LM ignores it (every task gets the same embeddings; ``task_key`` says so, so the
harness caches one set). Over a sentence-transformers model whose input module takes a task (MoTE models), it is
passed on, so the model's own prefix/expert choice applies.

Example:
    >>> enc = encoder_for_eval("allenai/OLMoE-1B-7B-0924", "sum", alpha="auto")   # doctest: +SKIP
    >>> e = enc.encode(["a cat", "a dog"], task="document")                        # doctest: +SKIP
    >>> enc.pair_scores(e[:1], e[1:])                                               # doctest: +SKIP
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

import numpy as np

from mote.moee.combine import (
    combine_predictions,
    cosine_matrix,
    cosine_rows,
    sample_pairs,
    select_alpha,
    sum_pair_scores,
    sum_score_matrix,
)
from mote.moee.config import MoEEConfig, check_view
from mote.moee.model import MoEEEmbedder
from mote.moee.templates import template_name

_LOAD_KEYS = ("device", "dtype", "quantization", "trust_remote_code")


class MoEEEncoder:
    """One MoEE view as an evaluation encoder (no scoring hooks: the harness uses cosine similarity).

    Args:
        embedder: the :class:`~mote.moee.model.MoEEEmbedder`.
        view: ``hs``, ``rw`` or ``concat``.
        standardize: see :meth:`MoEEEmbedder.encode`.
        name: label for tables (default ``"<model> moee-<view> [<template>]"``).
    """

    def __init__(
        self, embedder: MoEEEmbedder, view: str, *, standardize: bool | None = None, name: str | None = None
    ) -> None:
        self.embedder = embedder
        self.view = check_view(view)
        self.standardize = standardize
        self._standardized = embedder.uses_stats(view, standardize)  # raises now if statistics are missing
        self.name = name or self._default_name()
        self._identity: str | None = None

    def _default_name(self) -> str:
        label = str(self.embedder.name).rstrip("/").rsplit("/", 1)[-1]
        return f"{label} moee-{self.view} [{template_name(self.embedder.config.template)}]"

    @property
    def identity(self) -> str:
        """Weights + extraction config + view + statistics (not alpha: it does not change the embeddings)."""
        if self._identity is None:
            self._identity = self.embedder.identity(self.view, self._standardized)
        return self._identity

    def task_key(self, task: str) -> str:
        return f"task={task}" if self.embedder.passes_task else "moee:any-task"

    def encode(
        self, texts: Sequence[str], task: str, *, batch_size: int = 32, show_progress: bool = False
    ) -> np.ndarray:
        feats = self.embedder.features(list(texts), task=task, batch_size=batch_size, show_progress=show_progress)
        return self.embedder.view_of(feats, self.view, self._standardized)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, view={self.view!r})"


class MoEESumEncoder(MoEEEncoder):
    """MoEE (sum): ``encode`` returns ``[HS; RW]``; similarity is ``cos(HS) + alpha * cos(RW)``.

    Args:
        alpha: a fixed weight, or ``"auto"``: chosen label-free by :func:`~mote.moee.combine.select_alpha` on the
            pairs of each ``pair_scores`` / ``score_matrix`` call (the paper tunes alpha at test time, per task,
            without labels; call these once per dataset to get one alpha per task). ``views`` picks it from
            deterministic row pairs of the embeddings it is given. The chosen values are kept in ``alphas``.
    """

    def __init__(
        self,
        embedder: MoEEEmbedder,
        alpha: float | str = 1.0,
        *,
        standardize: bool | None = None,
        name: str | None = None,
    ) -> None:
        if alpha != "auto":
            try:
                alpha = float(alpha)
            except (TypeError, ValueError):
                raise ValueError(f"alpha must be a number or 'auto', got {alpha!r}") from None
            if not np.isfinite(alpha) or alpha < 0:
                raise ValueError(f"alpha must be a finite number >= 0, got {alpha}")
        self.alpha = alpha
        self.alphas: list[float] = []
        super().__init__(embedder, "sum", standardize=standardize, name=name)

    def _default_name(self) -> str:
        a = "auto" if self.alpha == "auto" else f"{self.alpha:g}"
        return f"{super()._default_name()} alpha={a}"

    @property
    def hs_dim(self) -> int:
        """Where HS ends in ``[HS; RW]``."""
        if self.embedder.hs_dim is None:
            self.embedder.ensure_layout()
        return int(self.embedder.hs_dim)

    def _alpha_from(self, sim_hs: np.ndarray, sim_rw: np.ndarray) -> float:
        if self.alpha != "auto":
            alpha = float(self.alpha)
        else:  # fewer than 3 pairs carry no rank information: fall back to alpha = 1
            alpha = select_alpha(sim_hs, sim_rw) if np.size(sim_hs) >= 3 else 1.0
        self.alphas.append(alpha)
        return alpha

    def pair_scores(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``cos(HS) + alpha * cos(RW)`` of ``a[i]`` and ``b[i]``, ``[N]``."""
        if self.alpha != "auto":
            return sum_pair_scores(a, b, self.hs_dim, float(self.alpha))
        d = self.hs_dim
        sim_hs, sim_rw = cosine_rows(a[:, :d], b[:, :d]), cosine_rows(a[:, d:], b[:, d:])
        return sim_hs + self._alpha_from(sim_hs, sim_rw) * sim_rw

    def score_matrix(self, q: np.ndarray, d: np.ndarray) -> np.ndarray:
        """``cos(HS) + alpha * cos(RW)`` for every query x document, ``[Q, D]``."""
        if self.alpha != "auto":
            return sum_score_matrix(q, d, self.hs_dim, float(self.alpha))
        k = self.hs_dim
        sim_hs, sim_rw = cosine_matrix(q[:, :k], d[:, :k]), cosine_matrix(q[:, k:], d[:, k:])
        rows, cols = sample_pairs(*sim_hs.shape)
        alpha = self._alpha_from(sim_hs[rows, cols], sim_rw[rows, cols])
        return sim_hs + alpha * sim_rw

    def fit_scores(self, q: np.ndarray, d: np.ndarray) -> MoEESumEncoder:
        """This encoder with alpha fixed for one dataset: ``"auto"`` picks it once from deterministic cells of the
        whole ``q x d`` grid (unlabelled), so every query of a retrieval / reranking dataset shares one alpha."""
        if self.alpha != "auto":
            return self
        k = self.hs_dim
        rows, cols = sample_pairs(len(q), len(d))
        alpha = self._alpha_from(cosine_rows(q[rows, :k], d[cols, :k]), cosine_rows(q[rows, k:], d[cols, k:]))
        fitted = copy.copy(self)  # shares the embedder and the ``alphas`` log
        fitted.alpha = alpha
        return fitted

    def views(self, emb: np.ndarray) -> list[tuple[str, np.ndarray, float]]:
        """``[("hs", HS, 1.0), ("rw", RW, alpha)]``: one classifier / k-means per view, weighted by these."""
        k = self.hs_dim
        hs, rw = emb[:, :k], emb[:, k:]
        if self.alpha == "auto":
            # deterministic row pairs: evenly spaced cells of the N x N grid, off the diagonal
            rows, cols = sample_pairs(len(emb), len(emb))
            keep = rows != cols
            rows, cols = rows[keep], cols[keep]
            alpha = self._alpha_from(cosine_rows(hs[rows], hs[cols]), cosine_rows(rw[rows], rw[cols]))
        else:
            alpha = float(self.alpha)
        return [("hs", hs, 1.0), ("rw", rw, alpha)]

    @staticmethod
    def combine_predictions(preds: list[np.ndarray], weights: list[float], kind: str = "classification") -> np.ndarray:
        """The reference code's combination of the views' predictions (see
        :func:`mote.moee.combine.combine_predictions`); pass ``kind="clustering"`` for cluster ids."""
        return combine_predictions(preds, weights, kind=kind)


def encoder_for_eval(
    model: Any,
    view: str,
    alpha: float | str = 1.0,
    template: str = "prompteol",
    **kw: Any,
) -> MoEEEncoder:
    """An evaluation encoder for one MoEE view of a MoE model.

    Args:
        model: a hub id or folder (loaded with :meth:`MoEEEmbedder.from_pretrained`), a Hugging Face model (pass
            ``tokenizer=``; else it is loaded from the model's ``name_or_path``), a sentence-transformers model
            (e.g. a MoTE ``tlr`` model), or a ready :class:`MoEEEmbedder` (its config is then used as is).
        view: ``hs``, ``rw``, ``concat`` or ``sum``.
        alpha: weight of ``cos(RW)`` for ``sum``: a number or ``"auto"`` (label-free selection).
        template: prompt template name or string with ``{text}``.
        **kw: :class:`~mote.moee.config.MoEEConfig` fields (``preprocess``, ``rw_scores``, ``rw_pooling``,
            ``router_pattern``, ...), loading options (``device``, ``dtype``, ``quantization``,
            ``trust_remote_code``), ``stats`` (folder / Standardizer / ``"auto"``), ``tokenizer``, ``standardize``,
            ``name``.

    Example:
        >>> enc = encoder_for_eval("my-olmoe", "concat", stats="my-olmoe/moee-stats-0123abcd4567")  # doctest: +SKIP
    """
    check_view(view)
    config_keys = {f.name for f in fields(MoEEConfig)}
    cfg_kw = {k: kw.pop(k) for k in list(kw) if k in config_keys}
    load_kw = {k: kw.pop(k) for k in list(kw) if k in _LOAD_KEYS}
    stats = kw.pop("stats", "auto")
    tokenizer = kw.pop("tokenizer", None)
    standardize = kw.pop("standardize", None)
    name = kw.pop("name", None)
    if kw:
        raise TypeError(f"encoder_for_eval got unknown options {sorted(kw)}")
    if isinstance(model, MoEEEmbedder):
        embedder = model
        if stats not in ("auto", None):
            embedder.set_stats(stats)
    else:
        config = MoEEConfig(template=template, **cfg_kw)
        if isinstance(model, str | bytes) or hasattr(model, "__fspath__"):
            embedder = MoEEEmbedder.from_pretrained(model, config, stats=stats, **load_kw)
        else:
            if load_kw:
                raise TypeError(f"{sorted(load_kw)} apply when loading by name; move the model yourself")
            from sentence_transformers import SentenceTransformer

            if tokenizer is None and not isinstance(model, SentenceTransformer):
                from transformers import AutoTokenizer

                source = getattr(model, "name_or_path", "") or ""
                if not source:
                    raise ValueError(f"Pass tokenizer=... for this {type(model).__name__} (it has no name_or_path)")
                tokenizer = AutoTokenizer.from_pretrained(source)
            embedder = MoEEEmbedder(model, tokenizer, config, stats=None if stats == "auto" else stats)
    if view == "sum":
        return MoEESumEncoder(embedder, alpha, standardize=standardize, name=name)
    return MoEEEncoder(embedder, view, standardize=standardize, name=name)


__all__ = ["MoEEEncoder", "MoEESumEncoder", "encoder_for_eval"]
