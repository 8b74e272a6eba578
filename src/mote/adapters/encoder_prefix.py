"""Compute the first layers of a Hugging Face encoder once per batch while only later layers change.

Per-task selection (:mod:`mote.select.search`) encodes the same validation texts once per candidate, and a
candidate that changes only expert weights leaves every layer before the first expert layer as it was: with the
default every-other-block placement, the embeddings' layer 0 is the same for every candidate (a sixth of the
encoder, more for long documents). :class:`LayerPrefixCache` keeps that layer's output per batch and hands it back
when the same batch comes again under the same weights, so later encodes run only the layers that changed. The
embeddings still run (they are lookups); their output is the batch's key, with its attention mask.

What it relies on is transformers' encoder loop, not a public API: ``BertEncoder.forward`` (and its family's) calls
each module of ``encoder.layer`` in order as ``layer(hidden_states, attention_mask, ...)`` and passes on the tensor it
returns. The cache overrides ``forward`` on the first layers' instances (their parameter names, hooks and state
dict stay as they are) and restores them on exit. ``tests/test_adapters.py`` checks that encodes through it stay
bitwise those without it and that a repeated batch skips the layers, so a transformers release that changes the
loop fails there.

The caller says which weights the cached layers hold (:attr:`LayerPrefixCache.scope`): entries are kept per scope,
and ``scope = None`` computes every layer as usual (e.g. while those layers' weights are being changed).

Example:
    >>> with LayerPrefixCache(transformer_layers(hf_model)[:1]) as prefix:    # doctest: +SKIP
    ...     prefix.scope = "shared weights: base"
    ...     encode(texts); encode(texts)  # the second encode runs layer 0 from the cache
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Sequence
from typing import Any

import torch
from torch import nn

DEFAULT_MAX_BYTES = 1 << 30  # 1 GiB of cached hidden states at most; later batches are computed, not stored


class LayerPrefixCache:
    """Cache the output of ``layers`` (the first layers of an encoder, in order) per batch and :attr:`scope`."""

    def __init__(self, layers: Sequence[nn.Module], max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if not layers:
            raise ValueError("LayerPrefixCache needs at least one layer")
        self.layers = list(layers)
        self.max_bytes = int(max_bytes)
        self.scope: Hashable | None = None
        self.hits = self.misses = 0
        self._store: dict[tuple, torch.Tensor] = {}
        self._bytes = 0
        self._pending: tuple | None = None  # the key of the batch in flight, from layer 0 to the last cached layer
        self._hit: torch.Tensor | None = None

    # -------------------------------------------------------------------------------------------- install
    def __enter__(self) -> LayerPrefixCache:
        for i, layer in enumerate(self.layers):
            if "forward" in vars(layer):
                raise RuntimeError(f"layer {i} already has an instance forward (another LayerPrefixCache?)")
            layer.forward = self._wrap(i, layer.forward)
        return self

    def __exit__(self, *exc: Any) -> None:
        for layer in self.layers:
            vars(layer).pop("forward", None)
        self.clear()

    def clear(self) -> None:
        self._store.clear()
        self._bytes = 0
        self._pending = self._hit = None

    # -------------------------------------------------------------------------------------------- the layers
    @staticmethod
    def _key(hidden: torch.Tensor, mask: Any) -> bytes:
        h = hashlib.blake2b(digest_size=16)
        for t in (hidden, mask):
            if isinstance(t, torch.Tensor):
                t = t.detach().contiguous().cpu()
                h.update(f"{t.dtype}{tuple(t.shape)}|".encode())
                h.update(t.view(torch.uint8).numpy().tobytes())
            else:
                h.update(repr(t).encode())
        return h.digest()

    def _wrap(self, index: int, forward: Any) -> Any:
        last = index == len(self.layers) - 1

        def cached_forward(hidden_states: torch.Tensor, attention_mask: Any = None, *args: Any, **kwargs: Any):
            if index == 0:
                self._pending = self._hit = None
                if self.scope is not None and not torch.is_grad_enabled():
                    self._pending = (self.scope, self._key(hidden_states, attention_mask))
                    self._hit = self._store.get(self._pending)
            if self._hit is not None:  # the batch is cached: the prefix's layers pass it through
                self.hits += last
                out = self._hit if last else hidden_states
                if last:
                    self._pending = self._hit = None
                return out
            out = forward(hidden_states, attention_mask, *args, **kwargs)
            if last and self._pending is not None:
                self.misses += 1
                size = out.numel() * out.element_size() if isinstance(out, torch.Tensor) else None
                if size is not None and self._bytes + size <= self.max_bytes:
                    self._store[self._pending] = out
                    self._bytes += size
                self._pending = None
            return out

        return cached_forward


__all__ = ["DEFAULT_MAX_BYTES", "LayerPrefixCache"]
