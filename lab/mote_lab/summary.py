"""A reproduction's scores as numbers: collected from its evaluation folders, summarised over datasets, categories
and seeds (:func:`summarize`; plain means, tested on made-up scores). A run that misses a dataset gets no aggregate,
so a partial reproduction never mixes averages over different datasets.

Example:
    >>> s = summarize({"base": [{"a": 50.0}], "mote": [{"a": 51.0}, {"a": 53.0}]}, {"a": "STS"})
    >>> s.per_dataset["mote"]["a"][:2], s.gains["mote"]["mean over datasets"][0]
    ((52.0, 1.4142135623730951), 2.0)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mote_lab.config import ExperimentConfig
from mote_lab.plan import EvalRun, Plan

OVERALL = ("mean over datasets", "mean over categories")
GROUPS = ("in-domain", "ood")  # the validation suite's groups (categories "Retrieval (ood)", ...)
Stat = tuple[float | None, float | None, int]  # mean, sample std (None for one value), number of values


# ------------------------------------------------------------------------------------------------ numbers
def mean_std(values: Sequence[float | None]) -> Stat:
    """``(mean, sample std, n)`` of the non-missing values (std ``None`` below two values)."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return None, None, 0
    std = float(np.std(vals, ddof=1)) if len(vals) > 1 else None
    return float(np.mean(vals)), std, len(vals)


def category_order(types: set[str]) -> list[str]:
    from mote.eval.datasets import TASK_TYPES

    return [t for t in TASK_TYPES if t in types] + sorted(types - set(TASK_TYPES))


def aggregates(scores: Mapping[str, float], datasets: Sequence[str], task_type: Mapping[str, str]) -> dict[str, Any]:
    """One run's category means and both overall means over ``datasets``; ``None`` where a dataset is missing."""
    cats = category_order({task_type[d] for d in datasets})
    out: dict[str, float | None] = {}
    for c in cats:
        vals = [scores.get(d) for d in datasets if task_type[d] == c]
        out[c] = None if any(v is None for v in vals) else float(np.mean(vals))
    every = [scores.get(d) for d in datasets]
    out[OVERALL[0]] = None if any(v is None for v in every) or not every else float(np.mean(every))
    cat_vals = [out[c] for c in cats]
    out[OVERALL[1]] = None if any(v is None for v in cat_vals) or not cat_vals else float(np.mean(cat_vals))
    return out


@dataclass
class Summary:
    """The tables of one block: every value a :data:`Stat` over seeds."""

    names: list[str]  # columns: baselines, then arms
    datasets: list[str]
    task_type: dict[str, str]
    categories: list[str]
    seeds: dict[str, list[int | None]]
    per_dataset: dict[str, dict[str, Stat]] = field(default_factory=dict)
    per_category: dict[str, dict[str, Stat]] = field(default_factory=dict)  # categories + OVERALL
    gains: dict[str, dict[str, Stat]] = field(default_factory=dict)  # vs base; categories + OVERALL
    base: str | None = None


def summarize(
    runs: Mapping[str, Sequence[Mapping[str, float]]],
    task_type: Mapping[str, str],
    *,
    base: str = "base",
    seeds: Mapping[str, Sequence[int | None]] | None = None,
    datasets: Sequence[str] | None = None,
) -> Summary:
    """Tables from main scores: ``runs[name]`` = one ``{dataset: score}`` per seed (column order kept).

    Per dataset and per category: mean ± std over seeds. Gains: per seed, the run's aggregate minus the base's
    (the base has one run; with several, their mean), then mean ± std over seeds.
    """
    if datasets is None:
        found = {d for rs in runs.values() for r in rs for d in r}
        cats = category_order({task_type[d] for d in found})
        datasets = sorted(found, key=lambda d: (cats.index(task_type[d]), d))
    datasets = list(datasets)
    categories = category_order({task_type[d] for d in datasets})
    summary = Summary(list(runs), datasets, {d: task_type[d] for d in datasets}, categories,
                      {n: list((seeds or {}).get(n, [None] * len(rs))) for n, rs in runs.items()})
    agg = {n: [aggregates(r, datasets, task_type) for r in rs] for n, rs in runs.items()}
    for n, rs in runs.items():
        summary.per_dataset[n] = {d: mean_std([r.get(d) for r in rs]) for d in datasets}
        summary.per_category[n] = {k: mean_std([a[k] for a in agg[n]]) for k in [*categories, *OVERALL]}
    if runs.get(base):
        summary.base = base
        base_agg = {k: mean_std([a[k] for a in agg[base]])[0] for k in [*categories, *OVERALL]}
        for n in runs:
            if n == base:
                continue
            summary.gains[n] = {
                k: mean_std([None if a[k] is None or base_agg[k] is None else a[k] - base_agg[k] for a in agg[n]])
                for k in [*categories, *OVERALL]
            }
    return summary


def group_categories(s: Summary) -> dict[str, list[str]]:
    """``{validation group: its categories}`` for the groups present (none for a test-set summary)."""
    found = {g: [c for c in s.categories if c.endswith(f"({g})")] for g in GROUPS}
    return {g: cats for g, cats in found.items() if cats}


def group_mean(s: Summary, name: str, group: str) -> float | None:
    """The mean over the categories of one validation group (``None`` when one is missing or there are none)."""
    cats = group_categories(s).get(group, [])
    vals = [s.per_category.get(name, {}).get(c, (None,))[0] for c in cats]
    return None if not cats or any(v is None for v in vals) else float(np.mean(vals))


# ------------------------------------------------------------------------------------------------ collecting
@dataclass
class BlockResults:
    """The finished evaluations of one block: ``runs[name]`` = [(seed, folder, results.json)]."""

    model: str
    runs: dict[str, list[tuple[int | None, Path, dict[str, Any]]]]


def finished_results(ev: EvalRun) -> dict[str, Any] | None:
    """The ``results.json`` of a finished evaluation (its marker written), else ``None``."""
    from mote_lab.layout import EVAL_MARKER

    if not (ev.dir / "results.json").is_file() or not (ev.dir / EVAL_MARKER).is_file():
        return None
    return json.loads((ev.dir / "results.json").read_text(encoding="utf-8"))


def collect(plan: Plan, validation: bool = False) -> dict[str, BlockResults]:
    """The finished evaluations of every block (``validation``: those on the validation suite)."""
    out: dict[str, BlockResults] = {}
    for model, block in plan.config.enabled_models().items():
        runs: dict[str, list] = {}
        for name in [*block.baselines, *block.arms]:
            evals = plan.validations_of(model, name) if validation else plan.evals_of(model, name)
            runs[name] = [(ev.seed, ev.dir, r) for ev in evals if (r := finished_results(ev)) is not None]
        out[model] = BlockResults(model, runs)
    return out


def report_category(entry: dict[str, Any]) -> str:
    """The category a dataset's result counts in: its task type, with its group for the validation suite's folders
    (``Retrieval (ood)``), so that in-domain and out-of-domain validation are never averaged together. Results
    written before the suite had groups carry none and keep their task type."""
    group = entry.get("group")
    return f"{entry['task_type']} ({group})" if group else entry["task_type"]


def block_summary(exp: ExperimentConfig, res: BlockResults) -> Summary:
    task_type: dict[str, str] = {}
    for rs in res.runs.values():
        for _, _, r in rs:
            task_type.update({d: report_category(e) for d, e in r["datasets"].items()})
    scores = {n: [{d: e["main_score"] for d, e in r["datasets"].items()} for _, _, r in rs]
              for n, rs in res.runs.items()}
    seeds = {n: [s for s, _, _ in rs] for n, rs in res.runs.items()}
    # rows in the order the results hold them (the order they were evaluated in: the configured one), so a report
    # regenerated from older raw results keeps its rows when the suite's list has changed since
    return summarize(scores, task_type, base="base", seeds=seeds, datasets=exp.eval.datasets and list(task_type))


__all__ = ["OVERALL", "BlockResults", "Stat", "Summary", "aggregates", "block_summary", "category_order", "collect",
           "finished_results", "mean_std", "report_category", "summarize"]
