"""The ``select:`` section of a training recipe (and the options of ``mote select``), validated by pydantic.

Example::

    select:
      enabled: true                  # `mote train` ends with per-task selection: RUN/model (RUN/trained: raw)
      snapshots: [0.5]               # weights kept at these fractions of train.steps (candidates)
      alphas: [0.5, 1.0]             # WiSE-FT: base + alpha * (final - base); alpha 0 (the base) is always one
      shared: auto                   # shared (non-expert) weights: auto | global | base
      validation: both               # in-domain | ood | both (the groups the choice is made on)
      suite: recipe                  # in-domain = the recipe's own held-out rows; "shared": the fixed lab suite
      datasets: [{path: my-dev-set}] # out-of-domain sets of yours (folders mote eval reads, validation split)
      max_examples: 100              # per task: queries / scored rows / sentences, shared by its datasets
      consolidate: {enabled: true, scored: false}   # merge identical experts (free); scored: also close ones

    >>> SelectConfig().candidate_grid(["step-50"])
    [('base', 0.0), ('final', 0.5), ('final', 1.0), ('step-50', 1.0)]
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

VALIDATION_CHOICES = ("in-domain", "ood", "both")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ValidationSet(_Strict):
    """An out-of-domain evaluation folder to select on (the layout ``mote eval`` reads), with the split to score
    (never a test split): ``path`` a folder of yours, or ``name`` a folder under the data root."""

    name: str | None = None
    path: str | None = None
    split: str = "validation"

    @field_validator("path")
    @classmethod
    def _a_folder(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("path must name a folder")
        return v

    @model_validator(mode="after")
    def _one_place(self) -> ValidationSet:
        if (self.name is None) == (self.path is None):
            raise ValueError("a validation set needs exactly one of name (a folder under the data root) or path")
        return self

    @property
    def label(self) -> str:
        from pathlib import Path

        return self.name if self.name is not None else Path(str(self.path)).name

    @field_validator("split")
    @classmethod
    def _not_test(cls, v: str) -> str:
        if v.lower().startswith("test"):
            raise ValueError(
                f"split {v!r} is a test split: selection picks weights by their score, so selecting on a test split "
                "would make every test score reported for the selected model optimistic. Use a validation/dev "
                "split (or the held-out training rows of the validation suite)"
            )
        return v


class ConsolidateConfig(_Strict):
    """Expert consolidation: merge two experts (many-to-one routing, averaged weights). Experts whose weights are
    identical (two tasks both kept at the base, say) merge at no cost; with ``scored``, the closest other pairs are
    scored too and merged when validation says the merge costs at most ``tolerance`` points on the categories of
    both (and no category falls below the base). Scoring re-encodes the validation sets of both experts per pair
    (about a third of a selection's time), so the default merges only the free ones."""

    enabled: bool = True
    scored: bool = False
    tolerance: float = Field(default=0.25, ge=0)
    max_pairs: int = Field(default=2, ge=1)  # per round, the closest expert pairs (by weight distance) scored


class SelectConfig(_Strict):
    """Per-task selection (:mod:`mote.select`): which candidate weights each expert (and the shared weights) keep.

    Candidates of a parameter group: the base model's weights (alpha 0), ``base + alpha * (final - base)`` for
    every ``alpha`` (WiSE-FT; alpha 1 is the trained model), and every snapshot kept during training as it is.
    ``shared``: ``base`` keeps the shared (non-expert) weights at the base (what ``trainable: experts`` trains
    against); ``global`` chooses one candidate for them with every expert at the same candidate (WiSE-FT of the
    whole model, the counterpart of IC's selection), then each expert on its own; ``auto`` is ``base`` when the run
    left the shared weights untouched, else ``global``.
    """

    enabled: bool = True
    snapshots: list[float] = Field(default_factory=lambda: [0.5])
    alphas: list[float] = Field(default_factory=lambda: [0.5, 1.0])
    shared: Literal["auto", "global", "base"] = "auto"
    validation: Literal["in-domain", "ood", "both"] = "both"
    tolerance: float = Field(default=0.0, ge=0)  # points a category may fall below the base on validation
    consolidate: ConsolidateConfig = Field(default_factory=ConsolidateConfig)
    # "recipe": in-domain = the held-out rows of the recipe's own datasets (mote.select.holdout_sets), ood = the
    # sets in `datasets`; "shared": the fixed suite built from ../shared/data (mote.eval.validation; the lab's)
    suite: Literal["recipe", "shared"] = "recipe"
    datasets: list[ValidationSet] = Field(default_factory=list)  # out-of-domain folders (their validation splits)
    # suite "recipe": per training task, queries / scored rows / sentences, shared by the task's datasets
    max_examples: int = Field(default=100, gt=0)
    batch_size: int = Field(default=64, gt=0)

    @field_validator("snapshots")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        bad = [f for f in v if not 0 < f < 1]
        if bad:
            raise ValueError(f"snapshot fractions must be in (0, 1) (the final weights are always kept), got {bad}")
        return sorted(set(v))

    @field_validator("alphas")
    @classmethod
    def _alphas(cls, v: list[float]) -> list[float]:
        bad = [a for a in v if not 0 < a <= 1]
        if bad:
            raise ValueError(f"alphas must be in (0, 1] (alpha 0, the base, is always a candidate), got {bad}")
        return sorted(set(v))

    def snapshot_steps(self, total_steps: int) -> list[int]:
        """The optimiser steps whose weights are kept (each fraction rounded, at least step 1, before the end)."""
        steps = {max(1, round(f * total_steps)) for f in self.snapshots}
        return sorted(s for s in steps if s < total_steps)

    def candidate_grid(self, snapshots: list[str] | None = None) -> list[tuple[str, float]]:
        """``(endpoint, alpha)`` of every candidate: the base, the final weights at each alpha, each snapshot."""
        grid: list[tuple[str, float]] = [("base", 0.0)]
        grid += [("final", float(a)) for a in self.alphas]
        grid += [(name, 1.0) for name in snapshots or []]
        return grid


def recipe_problems(recipe: Any, cfg: SelectConfig) -> list[str]:
    """What keeps ``recipe`` (a :class:`mote.train.RunConfig`) from being selected with ``cfg``: no validation rows
    (``data.holdout`` 0 for the in-domain group; no out-of-domain set named for ``validation: ood``), or, with the
    shared suite, an out-of-domain source among its datasets.

    Both sides ask it: the recipe's up-front checks (``mote.train.config``, for its own ``select:`` section) and
    ``mote select`` (for the recipe a run saved). It lives here, in the section's config, so neither imports the
    other's implementation."""
    problems = []
    if cfg.validation != "ood" and recipe.data.holdout <= 0:
        problems.append(
            f"select.validation {cfg.validation!r} scores candidates on held-out training rows, but the run trained "
            "with data.holdout 0 (every row): train with data.holdout (e.g. 0.1), select with validation 'ood' "
            "on sets you name in select.datasets, or train without selection (select: {enabled: false})"
        )
    if cfg.suite == "recipe":
        if cfg.validation == "ood" and not cfg.datasets:
            problems.append("select.validation 'ood' needs out-of-domain sets: name them in select.datasets "
                            "(e.g. [{path: my-dev-set}]), or select with validation 'in-domain'")
        return problems
    if cfg.validation != "in-domain":
        from mote.eval.validation import OOD_SOURCES

        trained = {d.name for t in recipe.objectives.values() for d in t.dataset_configs() if d.name}
        clash = sorted(trained & set(OOD_SOURCES))
        if clash:
            problems.append(
                f"select.validation {cfg.validation!r}: the run trained on {clash}, which the out-of-domain "
                "validation group holds out whole; select with validation 'in-domain', or train without them"
            )
    return problems

__all__ = [
    "VALIDATION_CHOICES",
    "ConsolidateConfig",
    "SelectConfig",
    "ValidationSet",
    "recipe_problems",
]
