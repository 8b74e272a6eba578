"""What determines a MoEE feature vector: template, preprocessing, router scores, pooling, capture.

:class:`MoEEConfig` holds every setting that changes the raw ``[HS; RW]`` features of a text. It is persisted next
to fitted standardisation statistics (``moee_stats.json``) so that statistics are never applied to features made
differently. The view (``hs`` / ``rw`` / ``concat`` / ``sum``) and ``alpha`` are *not* part of it: they only choose
what to do with the features.

Example:
    >>> cfg = MoEEConfig(template="prompteol", rw_scores="logits")
    >>> MoEEConfig.from_dict(cfg.to_dict()) == cfg
    True
    >>> len(cfg.key())
    64
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from mote.moee.templates import EMPTY_POLICIES, resolve_template

View = Literal["hs", "rw", "concat", "sum"]
VIEWS: tuple[str, ...] = ("hs", "rw", "concat", "sum")
RW_SCORES: tuple[str, ...] = ("softmax", "logits", "sigmoid")
POOLINGS: tuple[str, ...] = ("auto", "last", "mean")
CAPTURES: tuple[str, ...] = ("auto", "router_logits", "hooks")
ARCHITECTURES: tuple[str, ...] = ("auto", "decoder", "encoder")

# What the reference code returns as "routing weights" per model family (papers.md §2.3): softmax probabilities
# for DeepSeekMoE, raw router logits for Qwen1.5-MoE and OLMoE. Used by :meth:`MoEEConfig.reference`.
REFERENCE_RW_SCORES: dict[str, str] = {"deepseek": "softmax", "qwen2_moe": "logits", "olmoe": "logits"}


def check_view(view: str) -> str:
    if view not in VIEWS:
        raise ValueError(f"Unknown MoEE view {view!r}: use one of {', '.join(VIEWS)}")
    return view


@dataclass(frozen=True)
class MoEEConfig:
    """Settings of MoEE feature extraction (one forward pass gives both HS and RW).

    Args:
        template: a name in :data:`mote.moee.templates.TEMPLATES` (``none``, ``quoted``, ``prompteol``, ...) or a
            string with a ``{text}`` slot.
        preprocess: the reference code's preprocessing (see :func:`mote.moee.templates.render`).
        instruction: text prepended to every input before templating (the reference code's instruction slot).
        empty_text: ``"period"`` (an empty text is encoded as ``"."``) or ``"error"``.
        rw_scores: per-token router scores: ``softmax`` (the paper's routing weights), ``logits`` (raw router
            logits, what the reference code returns for OLMoE and Qwen1.5-MoE), or ``sigmoid`` (DeepSeek-V3 style).
        rw_pooling / hs_pooling: ``last`` token, ``mean`` over tokens, or ``auto`` = last for decoder LMs (left
            padding, the paper's choice), mean for bidirectional encoders (BERT-family MoTE ``tlr`` models).
        architecture: ``auto`` (decoder if any attention module is causal), ``decoder`` or ``encoder``.
        capture: ``auto`` (``router_logits`` where transformers records them, else ``hooks``), ``router_logits``
            (``output_router_logits=True``) or ``hooks`` (forward hooks on router modules).
        router_pattern: regular expression (``re.search``) on qualified module names selecting the router modules
            for the hook path; default: modules named ``gate`` or ``router``.
        num_experts: expected router width for the hook path (default: read from the model config).
        max_length: truncate prompts to this many tokens; ``None`` = the model's position limit (the reference code
            does not truncate; the paper's sentence tasks never reach the limit).
    """

    template: str = "prompteol"
    preprocess: bool = False
    instruction: str = ""
    empty_text: str = "period"
    rw_scores: str = "softmax"
    rw_pooling: str = "auto"
    hs_pooling: str = "auto"
    architecture: str = "auto"
    capture: str = "auto"
    router_pattern: str | None = None
    num_experts: int | None = None
    max_length: int | None = None

    def __post_init__(self) -> None:
        resolve_template(self.template)
        problems = []
        for name, allowed in (
            ("empty_text", EMPTY_POLICIES),
            ("rw_scores", RW_SCORES),
            ("rw_pooling", POOLINGS),
            ("hs_pooling", POOLINGS),
            ("architecture", ARCHITECTURES),
            ("capture", CAPTURES),
        ):
            value = getattr(self, name)
            if value not in allowed:
                problems.append(f"{name} must be one of {allowed}, got {value!r}")
        if self.max_length is not None and (not isinstance(self.max_length, int) or self.max_length < 1):
            problems.append(f"max_length must be a positive int or None, got {self.max_length!r}")
        if self.num_experts is not None and (not isinstance(self.num_experts, int) or self.num_experts < 2):
            problems.append(f"num_experts must be an int >= 2 or None, got {self.num_experts!r}")
        if problems:
            raise ValueError("Invalid MoEE config: " + "; ".join(problems))
        if self.router_pattern is not None:
            import re

            try:
                re.compile(self.router_pattern)
            except re.error as e:
                msg = f"router_pattern {self.router_pattern!r} is not a valid regular expression: {e}"
                raise ValueError(msg) from None

    @classmethod
    def reference(cls, model_type: str, template: str = "prompteol", **overrides: Any) -> MoEEConfig:
        """The reference code's settings for a model family: its preprocessing and its kind of router scores.

        Example:
            >>> MoEEConfig.reference("olmoe").rw_scores
            'logits'
        """
        settings: dict[str, Any] = {
            "template": template,
            "preprocess": True,
            "rw_scores": REFERENCE_RW_SCORES.get(model_type, "softmax"),
            "rw_pooling": "last",
            "hs_pooling": "last",
        }
        settings.update(overrides)
        return cls(**settings)

    def replace(self, **changes: Any) -> MoEEConfig:
        return type(self).from_dict({**self.to_dict(), **changes})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MoEEConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Unknown MoEE config keys {unknown}; known: {sorted(known)}")
        return cls(**dict(data))

    def key(self) -> str:
        """sha256 of the settings that shape the features (the resolved template, not its name)."""
        data = self.to_dict()
        data["template"] = resolve_template(self.template)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


__all__ = [
    "ARCHITECTURES",
    "CAPTURES",
    "POOLINGS",
    "REFERENCE_RW_SCORES",
    "RW_SCORES",
    "VIEWS",
    "MoEEConfig",
    "View",
    "check_view",
]
