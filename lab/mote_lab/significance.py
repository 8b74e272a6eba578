"""The paired significance of two columns of a reproduction (``report.significance``, default mote vs ic).

Per dataset a paired bootstrap per seed, and across datasets the Wilcoxon signed-rank and sign tests, all computed
by :mod:`mote.eval.compare` / :mod:`mote.eval.stats`; each seed's comparison is cached beside the runs and reused
while both results are unchanged.

Example:
    >>> sig = significance(plan, collect(plan)["minilm"], "mote", "ic")   # doctest: +SKIP
    >>> sig.across["wilcoxon_p"]                                          # doctest: +SKIP
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mote.atomic import atomic_write_json
from mote_lab.config import BASELINES
from mote_lab.plan import Plan
from mote_lab.summary import BlockResults, Stat, category_order, mean_std


# ------------------------------------------------------------------------------------------------ significance
def cached_compare(a_dir: Path, b_dir: Path, out: Path, n_boot: int, seed: int) -> dict[str, Any]:
    """``mote.eval.compare([b, a], base=b)`` into ``out``, reused while both results.json are unchanged."""
    import hashlib

    from mote.eval import compare

    key = hashlib.sha256(
        (a_dir / "results.json").read_bytes() + b"|" + (b_dir / "results.json").read_bytes()
        + f"|{n_boot}|{seed}".encode()
    ).hexdigest()[:16]
    marker = out / "reproduce.json"
    if (out / "compare.json").is_file() and marker.is_file() and json.loads(marker.read_text()).get("key") == key:
        return json.loads((out / "compare.json").read_text())
    res = compare([b_dir, a_dir], base=b_dir, output=out, n_boot=n_boot, seed=seed, overwrite=True, plots=False)
    atomic_write_json(marker, {"key": key})
    return res


@dataclass
class Significance:
    a: str
    b: str
    seeds: list[int | None]
    per_seed: list[dict[str, Any]]  # compare()'s comparison of a vs b, one per seed
    datasets: list[str]
    task_type: dict[str, str]
    delta: dict[str, Stat]  # per dataset, over seeds
    category_delta: dict[str, Stat]
    across: dict[str, Any] | None  # mote.eval.stats.across_datasets of the seed-mean deltas


def significance(plan: Plan, res: BlockResults, a: str, b: str) -> Significance | None:
    """Paired comparison of arm ``a`` against ``b`` (an arm: paired by seed; a baseline: every seed of ``a``)."""
    from mote.eval.stats import across_datasets

    exp = plan.config
    runs_a, runs_b = res.runs.get(a, []), res.runs.get(b, [])
    if not runs_a or not runs_b:
        return None
    if b in BASELINES:
        pairs = [(sa, da, runs_b[0][1]) for sa, da, _ in runs_a]
    else:
        by_seed = {s: d for s, d, _ in runs_b}
        pairs = [(sa, da, by_seed[sa]) for sa, da, _ in runs_a if sa in by_seed]
    if not pairs:
        return None
    per_seed = []
    for seed, da, db in pairs:
        out = plan.root / res.model / "compare" / f"{a}-vs-{b}" / f"seed-{seed}"
        c = cached_compare(da, db, out, exp.report.n_boot, exp.report.bootstrap_seed)
        label = next(r["label"] for r in c["runs"] if r["label"] != c["base"])
        per_seed.append({**c["comparisons"][label], "common_datasets": c["common_datasets"],
                         "task_type": c["task_type"]})
    common = [d for d in per_seed[0]["common_datasets"] if all(d in p["per_dataset"] for p in per_seed)]
    task_type = per_seed[0]["task_type"]
    delta = {d: mean_std([p["per_dataset"][d]["delta"] for p in per_seed]) for d in common}
    cats = category_order({task_type[d] for d in common})
    cat_delta = {c: mean_std([p["category_deltas"].get(c) for p in per_seed]) for c in cats}
    for k in ("mean_over_datasets", "mean_over_categories"):
        cat_delta[k.replace("_", " ")] = mean_std([p["overall_delta"][k] for p in per_seed])
    across = across_datasets([delta[d][0] for d in common]) if common else None
    return Significance(a, b, [s for s, _, _ in pairs], per_seed, common, task_type, delta, cat_delta, across)


__all__ = ["Significance", "cached_compare", "significance"]
