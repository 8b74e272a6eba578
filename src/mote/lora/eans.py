"""Expert-Aware Negative Sampling (EANS): hard negatives whose routing looks like the query's.

Every forward of a MoE-LoRA model already yields, per example, its routing distribution: the router
probabilities of each routed layer averaged over the example's tokens (``features["routing_probs"]``,
``(B, M, E)``). EANS uses it as a cheap similarity proxy (``E``- or ``M*E``-dimensional, a by-product of the
forward): for each query, the hard negatives are the candidates of a pool whose routing distributions are
closest to the query's, never its positives and, for labelled data, never an item of its label.

* :func:`routing_similarity` / :func:`select_hard_negatives`: the vectorised pool search (one ``(B, N)`` score
  matrix, masked, ``topk``; Jensen-Shannon in bounded chunks). No Python loop over examples.
* :class:`CandidatePool` / :class:`EANSMiner`: the candidates of each batch group and their routing
  distributions, recomputed (and the pool resampled) every ``refresh_every`` steps.
* :class:`EANSLoss`: wraps a TA-CL loss (``mote.train.losses.TaskInfoNCE``); the anchors' own forward gives their
  routing, the mined negatives are embedded (with gradients) and appended to the batch's candidates, so they mix
  with the in-batch negatives and the data's hard negatives.
* :class:`EANSRefreshCallback`: a ``TrainerCallback`` that refreshes the miner every ``refresh_every`` steps.

The paper publishes no formula (``docs/tsembed.md``): which layers, which similarity, how many negatives and how
often to refresh are settings here (:class:`EANSConfig`).

Example:
    >>> q = torch.tensor([[0.7, 0.3]]); pool = torch.tensor([[0.1, 0.9], [0.69, 0.31], [0.7, 0.3]])
    >>> idx, ok = select_hard_negatives(q, pool, k=1, query_labels=torch.tensor([5]),
    ...                                 pool_labels=torch.tensor([1, 2, 5]))
    >>> idx.tolist(), ok.tolist()     # pool item 2 is closer but has the query's label
    ([[1]], [[True]])
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import ConfigDict
from torch import Tensor, nn
from transformers import TrainerCallback

logger = logging.getLogger(__name__)

NO_LABEL = -1  # mote.data.pairs.NO_LABEL: an unlabelled item is never excluded by label


@dataclass
class EANSConfig:
    """EANS settings (``docs/tsembed.md`` gives the reason for each default)."""

    __pydantic_config__ = ConfigDict(extra="forbid")

    metric: Literal["cosine", "js"] = field(
        default="cosine", metadata={"help": "Routing similarity: cosine, or minus the Jensen-Shannon divergence."}
    )
    reduce: Literal["mean", "concat"] = field(
        default="mean",
        metadata={"help": "'mean': one E-dim distribution averaged over routed layers (the brief's proxy); "
                  "'concat': keep the layers apart (M*E dims; JS is then averaged over layers)."},
    )
    num_negatives: int = field(default=1, metadata={"help": "Mined hard negatives per query."})
    refresh_every: int = field(default=100, metadata={"help": "K: steps between pool refreshes."})
    pool_size: int | None = field(
        default=2048, metadata={"help": "Candidates per batch group, resampled at each refresh; None: all."}
    )
    center: bool = field(
        default=False,
        metadata={"help": "Cosine only: subtract the batch's mean query signature and the pool's mean signature "
                  "first, so that ranking follows content variation rather than the offset between the query's "
                  "and the candidates' task routing."},
    )
    exclude_same_label: bool = field(
        default=True, metadata={"help": "Never mine an item with the query's label (positives share it)."}
    )
    encode_batch_size: int = field(default=64, metadata={"help": "Batch size of the pool refresh forward passes."})
    seed: int = field(default=0, metadata={"help": "Seed of the pool resampling."})

    def __post_init__(self) -> None:
        problems = []
        if self.metric not in ("cosine", "js"):
            problems.append(f"metric must be 'cosine' or 'js', got {self.metric!r}")
        if self.reduce not in ("mean", "concat"):
            problems.append(f"reduce must be 'mean' or 'concat', got {self.reduce!r}")
        if self.num_negatives < 1:
            problems.append(f"num_negatives must be >= 1, got {self.num_negatives}")
        if self.refresh_every < 1:
            problems.append(f"refresh_every must be >= 1, got {self.refresh_every}")
        if self.pool_size is not None and self.pool_size < 1:
            problems.append(f"pool_size must be >= 1 or None, got {self.pool_size}")
        if self.center and self.metric != "cosine":
            problems.append("center applies to metric 'cosine' only (JS compares probability distributions)")
        if self.encode_batch_size < 1:
            problems.append(f"encode_batch_size must be >= 1, got {self.encode_batch_size}")
        if problems:
            raise ValueError("Invalid EANSConfig: " + "; ".join(problems))


# ------------------------------------------------------------------------------------------------ search
def signature(dist: Tensor, reduce: str = "mean") -> Tensor:
    """``(N, M, E)`` routing distributions -> ``(N, 1, E)`` (mean over layers) or ``(N, M, E)`` (concat).

    A 2-D ``(N, E)`` input is one layer already.
    """
    if dist.dim() == 2:
        dist = dist.unsqueeze(1)
    if reduce == "mean":
        return dist.mean(dim=1, keepdim=True)
    if reduce == "concat":
        return dist
    raise ValueError(f"reduce must be 'mean' or 'concat', got {reduce!r}")


def _entropy(p: Tensor) -> Tensor:
    return -torch.special.xlogy(p, p).sum(-1)


def routing_similarity(query: Tensor, pool: Tensor, metric: str = "cosine", chunk_elements: int = 1 << 24) -> Tensor:
    """Similarity ``(B, N)`` of query and pool routing distributions ``(B, M, E)`` / ``(N, M, E)`` (higher = closer).

    ``cosine`` of the flattened distributions, or ``-JS`` (the Jensen-Shannon divergence, averaged over the ``M``
    layers; computed in query chunks of at most ``chunk_elements`` intermediate values).
    """
    q, c = query.float(), pool.float()
    if q.dim() == 2:
        q, c = q.unsqueeze(1), c.unsqueeze(1)
    if metric == "cosine":
        return F.normalize(q.flatten(1), dim=-1) @ F.normalize(c.flatten(1), dim=-1).T
    if metric != "js":
        raise ValueError(f"metric must be 'cosine' or 'js', got {metric!r}")
    # JS(q, c) = H((q + c) / 2) - (H(q) + H(c)) / 2, per layer, then averaged over layers
    hq, hc = _entropy(q), _entropy(c)  # (B, M), (N, M)
    per_query = max(1, c.numel())
    step = max(1, chunk_elements // per_query)
    out = []
    for s in range(0, q.shape[0], step):
        qs = q[s : s + step]  # (b, M, E)
        mix = (qs.unsqueeze(1) + c.unsqueeze(0)) / 2  # (b, N, M, E)
        js = _entropy(mix) - (hq[s : s + step].unsqueeze(1) + hc.unsqueeze(0)) / 2  # (b, N, M)
        out.append(-js.mean(-1))
    return torch.cat(out) if out else q.new_zeros(0, c.shape[0])


def select_hard_negatives(
    query: Tensor,
    pool: Tensor,
    k: int = 1,
    metric: str = "cosine",
    query_labels: Tensor | None = None,
    pool_labels: Tensor | None = None,
    positives: Tensor | None = None,
    exclude: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """The ``k`` pool items whose routing is closest to each query's, never a positive or same-label item.

    Args:
        query: (B, E) or (B, M, E) routing distributions. pool: (N, E) or (N, M, E).
        k: negatives per query. metric: ``cosine`` or ``js``.
        query_labels, pool_labels: (B,), (N,); items with the query's label are excluded (``-1``: unlabelled,
            never excluded by label).
        positives: (B, P) pool indices of each query's positives (``-1`` padding), excluded.
        exclude: (B, N) bool, further exclusions.

    Returns:
        ``(indices (B, k'), valid (B, k'))`` with ``k' = min(k, N)``; ``valid`` is False where a query had fewer
        than ``k'`` admissible candidates.
    """
    scores = routing_similarity(query, pool, metric)  # (B, N)
    b, n = scores.shape
    banned = torch.zeros(b, n, dtype=torch.bool, device=scores.device)
    if query_labels is not None and pool_labels is not None:
        ql, pl = query_labels.to(scores.device), pool_labels.to(scores.device)
        banned |= (ql.unsqueeze(1) == pl.unsqueeze(0)) & (ql.unsqueeze(1) != NO_LABEL)
    if positives is not None and positives.numel():
        pos = positives.to(scores.device).reshape(b, -1)
        hits = torch.zeros(b, n, dtype=torch.int32, device=scores.device)
        hits.scatter_add_(1, pos.clamp_min(0), (pos >= 0).to(torch.int32))
        banned |= hits > 0
    if exclude is not None:
        banned |= exclude.to(scores.device)
    scores = scores.masked_fill(banned, float("-inf"))
    kk = min(k, n)
    values, idx = scores.topk(kk, dim=1)  # (B, k')
    return idx, torch.isfinite(values)


# ------------------------------------------------------------------------------------------------ pools
@dataclass
class CandidatePool:
    """The candidates of one batch group: texts (or multimodal items), labels, the task they are routed as."""

    items: list[Any]
    labels: Tensor  # (N,) long
    task: str
    distributions: Tensor | None = None  # (n, M', E) signatures of the current sample, after a refresh
    sample: Tensor | None = None  # (n,) indices into items of the current sample

    @classmethod
    def from_pairs(cls, pairs: Iterable[Any], task: str) -> CandidatePool:
        """Unique positives and hard negatives of training pairs (objects with ``positive``, ``negative``,
        ``label``, ``negative_label``, e.g. ``mote.data.pairs.Pair``); a text keeps its first label."""
        seen: dict[Any, int] = {}
        for p in pairs:
            seen.setdefault(p.positive, int(p.label))
            if getattr(p, "negative", None) is not None:
                seen.setdefault(p.negative, int(p.negative_label))
        return cls(list(seen), torch.tensor(list(seen.values()), dtype=torch.long), task)

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class MinedNegatives:
    """The negatives mined for one batch: the distinct items to embed, their labels, and who got what."""

    items: list[Any]  # U distinct pool items
    labels: Tensor  # (U,)
    per_query: Tensor  # (B, k') positions in ``items`` (-1: none admissible)


class EANSMiner:
    """Candidate pools per batch group, refreshed every ``config.refresh_every`` steps (see the module doc).

    Example:
        >>> miner = EANSMiner({"retrieval:squad": CandidatePool.from_pairs(pairs, "document")})  # doctest: +SKIP
        >>> miner.refresh(model)                                                          # doctest: +SKIP
        >>> mined = miner.mine("retrieval:squad", anchor_routing, anchor_labels)           # doctest: +SKIP
    """

    def __init__(self, pools: Mapping[str, CandidatePool], config: EANSConfig | None = None) -> None:
        self.pools = dict(pools)
        self.config = config or EANSConfig()
        self.refreshes = 0

    @classmethod
    def from_groups(cls, groups: Sequence[Any], route_tasks: Mapping[str, str], config: EANSConfig | None = None
                    ) -> EANSMiner:
        """Pools from the trainer's batch groups (``.name``, ``.pairs``; ``mote.data.training.BatchGroup``).

        ``route_tasks[group]`` is the task candidates are routed as (the group's ``positive`` column route).
        """
        return cls({g.name: CandidatePool.from_pairs(g.pairs, route_tasks[g.name]) for g in groups}, config)

    def refresh(self, model: Any, step: int = 0) -> None:
        """Resample each pool (``pool_size``) and recompute its routing signatures with ``model`` (no grad)."""
        from mote.lora.st import routing_distributions

        cfg = self.config
        for name, pool in self.pools.items():
            n = len(pool)
            if cfg.pool_size is None or cfg.pool_size >= n:
                sample = torch.arange(n)
            else:
                rng = np.random.default_rng([cfg.seed, step, _stable(name)])
                sample = torch.from_numpy(np.sort(rng.choice(n, size=cfg.pool_size, replace=False)))
            dist = routing_distributions(model, [pool.items[i] for i in sample.tolist()], task=pool.task,
                                         batch_size=cfg.encode_batch_size)
            pool.distributions = signature(dist, cfg.reduce)
            pool.sample = sample
        self.refreshes += 1

    def state_dict(self) -> dict[str, Any]:
        """The refreshed pools (sample indices and signatures, on the CPU) and the refresh count: what a training
        checkpoint needs so that a resumed run mines exactly what an uninterrupted one does."""
        pools = {}
        for name, pool in self.pools.items():
            if pool.distributions is not None and pool.sample is not None:
                pools[name] = {"sample": pool.sample.cpu(), "distributions": pool.distributions.cpu()}
        return {"refreshes": self.refreshes, "pools": pools}

    def load_state_dict(self, state: Mapping[str, Any], device: torch.device | str | None = None) -> None:
        """Restore :meth:`state_dict` (signatures onto ``device``); pools must be the same groups."""
        unknown = sorted(set(state["pools"]) - set(self.pools))
        if unknown:
            raise KeyError(f"EANS state has pools {unknown} this miner does not know; pools: {sorted(self.pools)}")
        for name, saved in state["pools"].items():
            pool = self.pools[name]
            pool.sample = saved["sample"].long()
            pool.distributions = saved["distributions"].to(device) if device is not None else saved["distributions"]
        self.refreshes = int(state["refreshes"])

    def mine(self, group: str, query_routing: Tensor, query_labels: Tensor | None = None,
             positives: Tensor | None = None) -> MinedNegatives:
        """Hard negatives for the queries of one batch of ``group``.

        Args:
            query_routing: (B, M, E) the anchors' ``routing_probs`` (detached).
            query_labels: (B,) the anchors' labels (their positives share them).
            positives: (B, P) indices into the group's pool items of known positives (-1 padding), optional.
        """
        pool = self.pools.get(group)
        if pool is None:
            raise KeyError(f"EANS has no candidate pool for batch group {group!r}; pools: {sorted(self.pools)}")
        if pool.distributions is None or pool.sample is None:
            raise RuntimeError("EANS pools are empty: call miner.refresh(model) first (EANSRefreshCallback does)")
        cfg = self.config
        device = pool.distributions.device
        sample = pool.sample.to(device)
        labels = pool.labels.to(device).index_select(0, sample)  # (n,)
        pos = None
        if positives is not None:  # item indices -> positions in the current sample
            where = torch.full((len(pool),), -1, dtype=torch.long, device=device)
            where[sample] = torch.arange(sample.numel(), device=device)
            p = positives.to(device)
            pos = torch.where(p >= 0, where[p.clamp_min(0)], p)
        query = signature(query_routing.detach().to(device), cfg.reduce)
        candidates = pool.distributions
        if cfg.center:
            query, candidates = query - query.mean(0, keepdim=True), candidates - candidates.mean(0, keepdim=True)
        idx, valid = select_hard_negatives(
            query,
            candidates,
            k=cfg.num_negatives,
            metric=cfg.metric,
            query_labels=query_labels if cfg.exclude_same_label else None,
            pool_labels=labels if cfg.exclude_same_label else None,
            positives=pos,
        )
        chosen = idx[valid]  # sample positions of the admissible picks
        unique, inverse = torch.unique(chosen, return_inverse=True)
        per_query = torch.full_like(idx, -1)
        per_query[valid] = inverse
        items_idx = sample.index_select(0, unique).tolist()
        return MinedNegatives([pool.items[i] for i in items_idx], labels.index_select(0, unique).cpu(), per_query)


def _stable(name: str) -> int:
    import zlib

    return zlib.crc32(name.encode())


# ------------------------------------------------------------------------------------------------ training glue
class EANSLoss(nn.Module):
    """A TA-CL loss with EANS negatives appended to each batch's candidates.

    Args:
        loss: a ``mote.train.losses.TaskInfoNCE``-like loss: ``.model`` (the ``SentenceTransformer``),
            ``.compute(embeddings, labels)`` and ``.aux_loss_weight``.
        miner: the refreshed :class:`EANSMiner`.
        group: the batch group this loss serves (its pool).
        negative_task: the task the mined candidates are routed as (the group's ``negative`` column route).

    Labels are required: a query's positives share its label (``mote.data.pairs``), which is how EANS knows them.
    Not compatible with the GradCache loss (``CachedTaskInfoNCE``).
    """

    def __init__(self, loss: nn.Module, miner: EANSMiner, group: str, negative_task: str) -> None:
        super().__init__()
        self.loss = loss
        self.miner, self.group, self.negative_task = miner, group, negative_task

    @property
    def model(self) -> nn.Module:
        return self.loss.model

    def forward(self, features: list[dict[str, Any]], labels: Tensor | None = None) -> Tensor | dict[str, Tensor]:
        if labels is None:
            raise ValueError("EANS needs the batch labels (the TA-CL collator's `label` column)")
        model = self.loss.model
        outputs = [model(f) for f in features]
        anchor = outputs[0]
        if "routing_probs" not in anchor:
            raise ValueError("EANS needs a MoE-LoRA (TSEmbed) model: its outputs carry `routing_probs`")
        b = anchor["sentence_embedding"].shape[0]
        mined = self.miner.mine(self.group, anchor["routing_probs"], labels[:b])
        embeddings = [o["sentence_embedding"] for o in outputs]
        if mined.items:
            feats = model.preprocess(mined.items, task=self.negative_task)
            device = embeddings[0].device
            feats = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in feats.items()}
            mined_out = model(feats)
            outputs.append(mined_out)
            negatives = embeddings[2] if len(embeddings) > 2 else embeddings[0][:0]
            embeddings = [embeddings[0], embeddings[1], torch.cat([negatives, mined_out["sentence_embedding"]])]
            labels = torch.cat([labels, mined.labels.to(labels.device)])
        loss = self.loss.compute(embeddings, labels)
        aux = [o["router_aux_loss"] for o in outputs if "router_aux_loss" in o]
        weight = float(getattr(self.loss, "aux_loss_weight", 0.0))
        if aux and weight > 0:
            return {"info_nce": loss, "load_balance": weight * torch.stack(aux).mean()}
        return loss

    def get_config_dict(self) -> dict[str, Any]:
        inner = self.loss.get_config_dict() if hasattr(self.loss, "get_config_dict") else {}
        return {**inner, "eans": vars(self.miner.config)}


class EANSRefreshCallback(TrainerCallback):
    """Refresh ``miner`` at the start of training and every ``miner.config.refresh_every`` steps.

    Resumable: :meth:`save_checkpoint` writes the miner's pools into a checkpoint folder (the TA-CL trainer calls
    it for every checkpoint), and with ``resume_from`` set to that folder the first ``on_train_begin`` restores
    them instead of refreshing, so a resumed run mines exactly the negatives of an uninterrupted one. No refresh
    after the last step (nothing would use it).
    """

    STATE_FILE = "eans_miner.pt"

    def __init__(self, miner: EANSMiner, model: Any, resume_from: str | None = None) -> None:
        self.miner, self.model = miner, model
        self.resume_from = resume_from

    def _device(self):
        from mote.lora.st import tsembed_module

        module = self.model if hasattr(self.model, "auto_model") else tsembed_module(self.model)
        return module.auto_model.device

    def on_train_begin(self, args, state, control, **kwargs):
        resume, self.resume_from = self.resume_from, None
        if resume is not None:
            from pathlib import Path

            file = Path(resume) / self.STATE_FILE
            if file.is_file():
                self.miner.load_state_dict(torch.load(file, map_location="cpu", weights_only=True), self._device())
                return
            logger.warning("%s has no %s: refreshing the EANS pools instead", resume, self.STATE_FILE)
        self.miner.refresh(self.model, step=state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        last = getattr(state, "max_steps", None)
        if state.global_step % self.miner.config.refresh_every == 0 and (not last or state.global_step < last):
            self.miner.refresh(self.model, step=state.global_step)

    def save_checkpoint(self, folder: str) -> None:
        """Write the miner's pools into ``folder`` (a checkpoint being written)."""
        import os

        torch.save(self.miner.state_dict(), os.path.join(folder, self.STATE_FILE))
