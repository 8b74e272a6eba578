"""``mote.eval.compare``: side-by-side tables, gains over a base run, paired significance tests and bar charts.

Significance, for every run B against the base A:

* per dataset: **paired bootstrap over test items** (1,000 resamples by default; the same resampled items score
  both runs; clustering resamples texts within each set): observed difference of the main score, its 95%
  percentile interval and a two-sided p-value ``2 * min(P(d* <= 0), P(d* >= 0))``. Only done when both runs
  scored identical data files (same file hashes) and stored their per-item data.
* across datasets: **Wilcoxon signed-rank test** (scipy, two-sided) of the per-dataset differences, and a sign
  test (exact binomial) of wins vs losses; both over the datasets that every run scored.

Category average = mean of the category's datasets; overall = mean over datasets and mean over categories (both
shown). Only datasets present in every run enter the averages.

Example:
    >>> compare(["runs/eval/minilm", "runs/eval/minilm-ic"], output="runs/eval/cmp")   # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mote.eval.datasets import TASK_TYPES
from mote.eval.harness import load_items, load_run
from mote.eval.stats import across_datasets, check_n_boot, paired_bootstrap


def _labels(runs: list[dict[str, Any]], dirs: list[Path]) -> list[str]:
    labels = [r["model"] for r in runs]
    if len(set(labels)) < len(labels):  # the same model twice: tell the runs apart by folder
        labels = [f"{m} ({d.name})" for m, d in zip(labels, dirs)]
    if len(set(labels)) < len(labels):
        labels = [f"{m} [{i}]" for i, m in enumerate(labels)]
    return labels


def _category_order(types: set[str]) -> list[str]:
    return [t for t in TASK_TYPES if t in types] + sorted(types - set(TASK_TYPES))


def compare(
    run_dirs: Sequence[str | os.PathLike],
    *,
    base: str | os.PathLike | None = None,
    output: str | os.PathLike | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    overwrite: bool = False,
    plots: bool = True,
) -> dict[str, Any]:
    """Compare evaluation runs; with ``output``, write compare.md, compare.json and PNG charts (atomically).

    Args:
        run_dirs: folders written by :func:`mote.eval.evaluate` (results.json + items/).
        base: the run the others are compared against (default: the first); added if not in ``run_dirs``.
        n_boot: bootstrap resamples per dataset and pair of runs.

    Returns the comparison as a dict (what compare.json holds).
    """
    check_n_boot(n_boot)
    dirs = [Path(d) for d in run_dirs]
    if base is not None:
        base_path = Path(base)
        dirs = [base_path] + [d for d in dirs if d.resolve() != base_path.resolve()]
    if len(dirs) < 2:
        raise ValueError("compare needs at least two run folders (or one run and --base)")
    out_path = Path(output) if output is not None else None
    if out_path is not None and out_path.exists() and not overwrite:
        raise FileExistsError(f"{out_path} already exists; choose another --output or pass --overwrite")
    if out_path is not None and plots:
        from mote.eval.plots import pyplot

        pyplot()  # the charts need matplotlib (mote[lab]): fail before reading the runs
    runs = [load_run(d) for d in dirs]
    labels = _labels(runs, dirs)

    all_names: list[str] = []
    task_type: dict[str, str] = {}
    for r in runs:
        for name, entry in r["datasets"].items():
            if name not in task_type:
                all_names.append(name)
                task_type[name] = entry["task_type"]
    type_order = _category_order(set(task_type.values()))
    order = sorted(all_names, key=lambda n: (type_order.index(task_type[n]), n))
    common = [n for n in order if all(n in r["datasets"] for r in runs)]
    categories = _category_order({task_type[n] for n in common})

    scores = {lab: {n: r["datasets"][n]["main_score"] for n in r["datasets"]} for lab, r in zip(labels, runs)}
    cat_means = {
        lab: {c: float(np.mean([scores[lab][n] for n in common if task_type[n] == c])) for c in categories}
        for lab in labels
    }
    overall = {
        lab: {
            "mean_over_datasets": float(np.mean([scores[lab][n] for n in common])) if common else float("nan"),
            "mean_over_categories": float(np.mean(list(cat_means[lab].values()))) if categories else float("nan"),
        }
        for lab in labels
    }

    base_label, base_run, base_dir = labels[0], runs[0], dirs[0]
    pairs: dict[str, Any] = {}
    for lab, run, d in zip(labels[1:], runs[1:], dirs[1:]):
        per_dataset: dict[str, Any] = {}
        for name in common:
            delta = scores[lab][name] - scores[base_label][name]
            info: dict[str, Any] = {"delta": delta}
            same_data = base_run["data"]["datasets"].get(name, {}).get("files") == run["data"]["datasets"].get(
                name, {}
            ).get("files") and base_run["datasets"][name].get("split") == run["datasets"][name].get("split")
            items_a, items_b = load_items(base_dir, name), load_items(d, name)
            if not same_data:
                info["bootstrap"] = None
                info["note"] = "data files differ between the runs: not paired"
            elif items_a is None or items_b is None:
                info["bootstrap"] = None
                info["note"] = "per-item data missing"
            else:
                try:
                    info["bootstrap"] = paired_bootstrap(task_type[name], items_a, items_b, n_boot=n_boot, seed=seed)
                except ValueError as e:
                    info["bootstrap"] = None
                    info["note"] = str(e)
            per_dataset[name] = info
        deltas = [per_dataset[n]["delta"] for n in common]
        cat_deltas = [cat_means[lab][c] - cat_means[base_label][c] for c in categories]
        pairs[lab] = {
            "per_dataset": per_dataset,
            "across_datasets": across_datasets(deltas),
            "category_deltas": dict(zip(categories, cat_deltas)),
            "overall_delta": {
                k: overall[lab][k] - overall[base_label][k] for k in ("mean_over_datasets", "mean_over_categories")
            },
        }

    result = {
        "runs": [
            {
                "label": lab,
                "dir": str(d),
                "model": r["model"],
                "model_identity": r.get("model_identity"),
                "kind": r.get("encoder", {}).get("kind"),
            }
            for lab, r, d in zip(labels, runs, dirs)
        ],
        "base": base_label,
        "datasets": order,
        "common_datasets": common,
        "task_type": task_type,
        "main_metric": {n: next(r["datasets"][n]["main_metric"] for r in runs if n in r["datasets"]) for n in order},
        "scores": scores,
        "category_means": cat_means,
        "overall": overall,
        "comparisons": pairs,
        "method": {
            "per_dataset": f"paired bootstrap over test items, {n_boot} resamples, seed {seed}; 95% percentile "
            "interval; two-sided p = 2*min(P(d*<=0), P(d*>=0)). Clustering resamples texts within each set; "
            "pair classification keeps each run's best (max_ap) scoring function fixed.",
            "across_datasets": "Wilcoxon signed-rank test (scipy.stats.wilcoxon, two-sided, zero_method='wilcox') "
            "and exact sign test (scipy.stats.binomtest) over per-dataset differences of common datasets",
        },
    }
    if out_path is not None:
        _write(result, out_path, overwrite, plots)
    return result


# ------------------------------------------------------------------------------------------------ output
def _fmt(x: float | None, digits: int = 2, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "–"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def _p(p: float | None) -> str:
    if p is None:
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def compare_markdown(c: dict[str, Any]) -> str:
    labels = [r["label"] for r in c["runs"]]
    base = c["base"]
    others = [lab for lab in labels if lab != base]
    lines = ["# Comparison of evaluation runs", ""]
    lines += ["| run | model | identity | kind | folder |", "|---|---|---|---|---|"]
    for r in c["runs"]:
        mark = " (base)" if r["label"] == base else ""
        lines.append(f"| {r['label']}{mark} | {r['model']} | `{r['model_identity']}` | {r['kind']} | `{r['dir']}` |")
    lines += ["", "Scores are main scores in percent; Δ = run − base; * = paired-bootstrap p < 0.05.", ""]

    head = ["task type", "dataset", "metric", *labels, *[f"Δ {lab}" for lab in others]]
    lines += ["## Per dataset", "", "| " + " | ".join(head) + " |", "|" + "---|" * 3 + "---:|" * (len(head) - 3)]
    for n in c["datasets"]:
        row = [c["task_type"][n], n, c["main_metric"][n]]
        row += [_fmt(c["scores"][lab].get(n)) for lab in labels]
        for lab in others:
            pd = c["comparisons"][lab]["per_dataset"].get(n)
            if pd is None:
                row.append("–")
                continue
            star = "*" if pd.get("bootstrap") and pd["bootstrap"]["p"] < 0.05 else ""
            row.append(_fmt(pd["delta"], signed=True) + star)
        lines.append("| " + " | ".join(row) + " |")

    lines += ["", "## Per task category and overall", ""]
    head = ["category", "datasets", *labels, *[f"Δ {lab}" for lab in others]]
    lines += ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    cats = list(next(iter(c["category_means"].values())).keys())
    for cat in cats:
        n = sum(1 for d in c["common_datasets"] if c["task_type"][d] == cat)
        row = [cat, str(n), *[_fmt(c["category_means"][lab][cat]) for lab in labels]]
        row += [_fmt(c["comparisons"][lab]["category_deltas"][cat], signed=True) for lab in others]
        lines.append("| " + " | ".join(row) + " |")
    for key, title in (
        ("mean_over_datasets", "**mean over datasets**"),
        ("mean_over_categories", "**mean over categories**"),
    ):
        n = len(c["common_datasets"]) if key == "mean_over_datasets" else len(cats)
        row = [title, str(n), *[_fmt(c["overall"][lab][key]) for lab in labels]]
        row += [_fmt(c["comparisons"][lab]["overall_delta"][key], signed=True) for lab in others]
        lines.append("| " + " | ".join(row) + " |")
    if len(c["common_datasets"]) < len(c["datasets"]):
        missing = [d for d in c["datasets"] if d not in c["common_datasets"]]
        lines += ["", f"Not in every run (left out of the averages and tests): {', '.join(missing)}."]

    for lab in others:
        comp = c["comparisons"][lab]
        lines += ["", f"## Significance: {lab} vs {base}", ""]
        lines += ["| dataset | Δ | 95% CI | p (paired bootstrap) | units |", "|---|---:|---|---:|---:|"]
        for n in c["common_datasets"]:
            pd = comp["per_dataset"][n]
            b = pd.get("bootstrap")
            if b:
                lines.append(
                    f"| {n} | {_fmt(pd['delta'], signed=True)} | [{_fmt(b['ci_low'], signed=True)}, "
                    f"{_fmt(b['ci_high'], signed=True)}] | {_p(b['p'])} | {b['n_units']} |"
                )
            else:
                lines.append(f"| {n} | {_fmt(pd['delta'], signed=True)} | – | – ({pd.get('note', '')}) | – |")
        a = comp["across_datasets"]
        lines += [
            "",
            f"Across {a['n_datasets']} datasets: {a['wins']} wins, {a['losses']} losses, {a['ties']} ties; "
            f"mean Δ {_fmt(a['mean_delta'], signed=True)} points. Wilcoxon signed-rank (two-sided): "
            f"statistic {_fmt(a['wilcoxon_statistic'], 1)}, p = {_p(a['wilcoxon_p'])}; sign test p = "
            f"{_p(a['sign_test_p'])}.",
        ]
    lines += [
        "",
        "## Method",
        "",
        f"- per dataset: {c['method']['per_dataset']}",
        f"- across datasets: {c['method']['across_datasets']}",
        "",
    ]
    return "\n".join(lines)


def _plots(c: dict[str, Any], folder: Path) -> list[str]:
    from mote.atomic import atomic_write_bytes
    from mote.eval.plots import pyplot  # matplotlib: the lab extra, imported only to draw

    plt = pyplot()

    labels = [r["label"] for r in c["runs"]]
    others = [lab for lab in labels if lab != c["base"]]
    names = c["datasets"]
    colors = plt.get_cmap("tab10").colors
    written = []

    def save(fig, name: str) -> None:
        import io

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
        plt.close(fig)
        atomic_write_bytes(folder / name, buf.getvalue())
        written.append(name)

    # 1. main score per dataset, one bar per run
    height = 0.8 / len(labels)
    fig, ax = plt.subplots(figsize=(9, 1.0 + 0.42 * len(names) * max(1, len(labels) / 2)))
    y = np.arange(len(names))
    for k, lab in enumerate(labels):
        vals = [c["scores"][lab].get(n, np.nan) for n in names]
        ax.barh(y + (k - (len(labels) - 1) / 2) * height, vals, height=height, color=colors[k % 10], label=lab)
    ax.set_yticks(y, [f"{n}  ({c['task_type'][n]})" for n in names], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("main score (%)")
    ax.set_title("Main score per dataset")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    save(fig, "scores.png")

    # 2. gain over the base per dataset, with bootstrap intervals
    common = c["common_datasets"]
    if others and common:
        height = 0.8 / len(others)
        fig, ax = plt.subplots(figsize=(9, 1.0 + 0.38 * len(common) * max(1, len(others) / 2)))
        y = np.arange(len(common))
        for k, lab in enumerate(others):
            pdata = c["comparisons"][lab]["per_dataset"]
            d = np.array([pdata[n]["delta"] for n in common])
            lo = np.array([pdata[n]["bootstrap"]["ci_low"] if pdata[n].get("bootstrap") else np.nan for n in common])
            hi = np.array([pdata[n]["bootstrap"]["ci_high"] if pdata[n].get("bootstrap") else np.nan for n in common])
            # The bootstrap resamples per-item scores; where the dataset's main score is not their plain mean (e.g.
            # classification: the mean over MTEB's 10 subsampled experiments) the interval can exclude the point
            # estimate. Error bars are drawn to the interval's ends, never past the bar (matplotlib needs >= 0).
            err = np.vstack([np.where(np.isnan(lo), 0, d - lo), np.where(np.isnan(hi), 0, hi - d)]).clip(min=0)
            ax.barh(
                y + (k - (len(others) - 1) / 2) * height,
                d,
                height=height,
                xerr=err,
                capsize=2,
                color=colors[(labels.index(lab)) % 10],
                label=f"{lab} − {c['base']}",
            )
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(y, [f"{n}  ({c['task_type'][n]})" for n in common], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("Δ main score vs base (percentage points; bars: 95% paired-bootstrap interval)")
        ax.set_title(f"Gain over the base run ({c['base']})")
        ax.grid(axis="x", alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
        save(fig, "gains.png")

    # 3. category means and the two overall means
    cats = list(next(iter(c["category_means"].values())).keys())
    groups = [*cats, "mean over\ndatasets", "mean over\ncategories"]
    width = 0.8 / len(labels)
    fig, ax = plt.subplots(figsize=(max(7, 1.3 * len(groups)), 4.5))
    x = np.arange(len(groups))
    for k, lab in enumerate(labels):
        vals = [c["category_means"][lab][cat] for cat in cats]
        vals += [c["overall"][lab]["mean_over_datasets"], c["overall"][lab]["mean_over_categories"]]
        bars = ax.bar(x + (k - (len(labels) - 1) / 2) * width, vals, width=width, color=colors[k % 10], label=lab)
        ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=1)
    ax.set_xticks(x, groups, fontsize=8)
    ax.set_ylabel("mean main score (%)")
    ax.set_title("Per task category and overall")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=min(len(labels), 4))
    save(fig, "categories.png")
    return written


def _write(c: dict[str, Any], out_path: Path, overwrite: bool, plots: bool) -> None:
    from mote.atomic import atomic_dir, atomic_write_text

    with atomic_dir(out_path, overwrite=overwrite) as tmp:
        if plots:
            c["plots"] = _plots(c, tmp)
        atomic_write_text(tmp / "compare.md", compare_markdown(c))
        atomic_write_text(tmp / "compare.json", json.dumps(c, indent=2, allow_nan=True) + "\n")


__all__ = ["compare", "compare_markdown"]
