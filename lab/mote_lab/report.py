"""docs/results.md and its figures, generated from a reproduction's folders (never edited by hand).

Per block (base model): per-dataset and per-category tables of the untrained base, the base with the task
prefixes, and every arm (mean ± sample std over seeds where an arm has more than one); gains over the base,
overall and per category; the paired significance of each configured pair (``report.significance``, default
mote vs ic) — per dataset a paired bootstrap per seed and across datasets the Wilcoxon signed-rank and sign tests,
all computed by :mod:`mote.eval.compare` / :mod:`mote.eval.stats`; the learning curve of runs with point arms
(:mod:`mote_lab.curve`); inter-task similarity heatmaps; training curves;
parameters and encode throughput; and, with more than one block, how the gains change with capacity.

The numbers come from :mod:`mote_lab.summary` (plain means over datasets, categories and seeds); a run that
misses a dataset gets no aggregate ("–"), so a partial reproduction never mixes averages over different datasets.
The significance comes from :mod:`mote_lab.significance`. This module writes them as markdown and figures,
and publishes the report and its figure folder atomically.

Example:
    >>> write_report(make_plan(cfg, "runs/reproduce/small"), "docs/results.md")   # doctest: +SKIP
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mote.atomic import atomic_write_text, fsync_dir, fsync_tree, remove_stale, replace_dir
from mote.files import read_log
from mote_lab.config import BASELINES, ExperimentConfig
from mote_lab.plan import Plan
from mote_lab.significance import Significance, significance
from mote_lab.summary import (
    OVERALL,
    Stat,
    Summary,
    block_summary,
    collect,
    finished_results,
    group_categories,
    group_mean,
)


def fmt(stat: Stat | None, signed: bool = False, digits: int = 2) -> str:
    """``82.03``, ``+1.20 ± 0.31`` or ``–``."""
    if stat is None or stat[0] is None:
        return "–"
    m, s, _ = stat
    text = f"{m:+.{digits}f}" if signed else f"{m:.{digits}f}"
    return text if s is None else f"{text} ± {s:.{digits}f}"


def _p(p: float | None) -> str:
    if p is None:
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


# ------------------------------------------------------------------------------------------------ markdown
def _table(head: list[str], rows: list[list[str]], left: int = 1) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * left + "---:|" * (len(head) - left),
            *["| " + " | ".join(r) + " |" for r in rows]]


def _col(exp: ExperimentConfig, s: Summary, name: str) -> str:
    n = len([x for x in s.seeds.get(name, [])])
    label = exp.arm_label(name)
    return f"{label} ({n} seeds)" if n > 1 else label


def summary_markdown(exp: ExperimentConfig, s: Summary, metric: Mapping[str, str] | None = None) -> list[str]:
    """The per-dataset, per-category and gain tables of one block."""
    names = [n for n in s.names if s.seeds.get(n)]
    lines = ["#### Per dataset (main score, %)", ""]
    head = ["category", "dataset", *(["metric"] if metric else []), *[_col(exp, s, n) for n in names]]
    rows = [[s.task_type[d], d, *([metric.get(d, "")] if metric else []),
             *[fmt(s.per_dataset[n][d]) for n in names]] for d in s.datasets]
    lines += _table(head, rows, left=3 if metric else 2)
    lines += ["", "#### Per category and overall (mean of the category's datasets, %)", ""]
    head = ["category", "datasets", *[_col(exp, s, n) for n in names]]
    rows = []
    for c in [*s.categories, *OVERALL]:
        count = sum(1 for d in s.datasets if s.task_type[d] == c) if c in s.categories else (
            len(s.datasets) if c == OVERALL[0] else len(s.categories))
        label = c if c in s.categories else f"**{c}**"
        rows.append([label, str(count), *[fmt(s.per_category[n][c]) for n in names]])
    groups = group_categories(s)  # a validation summary: one mean per group too
    for g, cats in groups.items():
        rows.append([f"**mean over {g} categories**", str(len(cats)),
                     *[fmt((group_mean(s, n, g), None, 1)) for n in names]])
    lines += _table(head, rows)
    if s.gains:
        gnames = [n for n in names if n in s.gains]
        lines += ["", f"#### Gain over the untrained base ({exp.arm_label(s.base)}), points", ""]
        head = ["category", *[_col(exp, s, n) for n in gnames]]
        rows = [[c if c in s.categories else f"**{c}**", *[fmt(s.gains[n][c], signed=True) for n in gnames]]
                for c in [*s.categories, *OVERALL]]
        for g in groups:
            rows.append([f"**mean over {g} categories**", *[fmt(_group_gain(s, n, g), signed=True) for n in gnames]])
        lines += _table(head, rows)
    return lines


def _group_gain(s: Summary, name: str, group: str) -> Stat | None:
    """A validation group's mean minus the base's (the means over seeds of its categories: no std)."""
    got, ref = group_mean(s, name, group), group_mean(s, s.base, group) if s.base else None
    return None if got is None or ref is None else (got - ref, None, 1)


def significance_markdown(exp: ExperimentConfig, sig: Significance, n_boot: int) -> list[str]:
    a, b = exp.arm_label(sig.a), exp.arm_label(sig.b)
    seeds = ", ".join(str(s) for s in sig.seeds)
    paired = "the same baseline run" if sig.b in BASELINES else "the same seed"
    lines = [f"#### Significance: {a} vs {b}", "",
             f"Δ = {a} − {b} in points, mean ± std over seeds ({seeds}; each {a} run paired with {paired}). "
             f"p: paired bootstrap over test items ({n_boot} resamples, `mote.eval.compare`), one per seed; "
             "\\* p < 0.05.", ""]
    head = ["category", "dataset", "Δ", *[f"p (seed {s})" for s in sig.seeds]]
    rows = []
    for d in sig.datasets:
        ps = []
        for p in sig.per_seed:
            bs = p["per_dataset"][d].get("bootstrap")
            ps.append("–" if not bs else _p(bs["p"]) + ("\\*" if bs["p"] < 0.05 else ""))
        rows.append([sig.task_type[d], d, fmt(sig.delta[d], signed=True), *ps])
    lines += _table(head, rows, left=2)
    lines += ["", "| category | Δ (mean ± std over seeds) |", "|---|---:|"]
    lines += [f"| {c} | {fmt(v, signed=True)} |" for c, v in sig.category_delta.items()]
    if sig.across:
        x = sig.across
        lines += ["", f"Across {x['n_datasets']} datasets (seed-mean Δ): {x['wins']} wins, {x['losses']} losses, "
                  f"{x['ties']} ties; mean Δ {x['mean_delta']:+.2f}; Wilcoxon signed-rank p = {_p(x['wilcoxon_p'])}; "
                  f"sign test p = {_p(x['sign_test_p'])}."]
    for s, p in zip(sig.seeds, sig.per_seed):
        x = p["across_datasets"]
        sig_n = sum(1 for d in sig.datasets if (bs := p["per_dataset"][d].get("bootstrap")) and bs["p"] < 0.05)
        lines.append(f"- seed {s}: {x['wins']} wins, {x['losses']} losses; Wilcoxon p = {_p(x['wilcoxon_p'])}, "
                     f"sign test p = {_p(x['sign_test_p'])}; {sig_n} of {len(sig.datasets)} datasets with "
                     "bootstrap p < 0.05.")
    return lines


def _curves(plan: Plan, model: str) -> tuple[dict[str, list], dict[str, list], list[str]]:
    """Loss and quick-eval score curves per arm label, one per finished seed (from metrics.jsonl), and the
    datasets the quick evaluations scored."""
    import re

    exp = plan.config
    losses: dict[str, list] = {}
    scores: dict[str, list] = {}
    names: dict[str, None] = {}
    for arm in exp.models[model].arms:
        label = exp.arm_label(arm)
        for t in plan.trainings:
            if t.model != model or t.arm != arm or not (t.dir / "metrics.jsonl").is_file():
                continue
            loss, score = [], []
            for e in read_log(t.dir / "metrics.jsonl"):
                if "loss" in e:
                    loss.append((int(e["step"]), float(e["loss"])))
                if isinstance(e.get("eval"), dict):
                    found = {m.group(1): v for k, v in e["eval"].items()
                             if (m := re.fullmatch(r"datasets/([^/]+)/main_score", k))}
                    names.update(dict.fromkeys(found))
                    main = list(found.values())
                    if main:
                        score.append((int(e["step"]), float(np.mean(main))))
            losses.setdefault(label, []).append(loss)
            scores.setdefault(label, []).append(score)
    return losses, scores, list(names)


def _timings(root: Path) -> dict[str, float]:
    """Seconds per kind of work from timings.jsonl: every piece of work done in this output folder, over all
    invocations (an interrupted training counts with its part before the interruption)."""
    from mote_lab.layout import TIMINGS

    out: dict[str, float] = {}
    for e in read_log(root / TIMINGS):
        out[e["kind"]] = out.get(e["kind"], 0.0) + float(e["seconds"])
    return out


def _recipe_lines(exp: ExperimentConfig, model: str) -> list[str]:
    block = exp.models[model]
    lines = []
    for arm in block.arms:
        cfg = exp.run_config(model, arm, block.seeds_of(arm)[0], check_files=False)
        t = cfg.train
        where, trained, lr = cfg.training_method().recipe_row(cfg)
        at = exp.arm_step(arm)
        steps = t.steps if at is None else f"{at} of {t.steps}"
        lines.append(
            f"| {exp.arm_label(arm)} | `{cfg.method.name}` | {where} | {trained} | {steps} | {t.batch_size} | "
            f"{lr} | {cfg.model.max_seq_length} | {', '.join(map(str, block.seeds_of(arm)))} |"
        )
    first = exp.run_config(model, block.arms[0], block.seeds_of(block.arms[0])[0], check_files=False)
    data = []
    for name, task in first.objectives.items():
        items = [f"{d.label}" + (f" (≤{d.max_examples:,})" if d.max_examples else "") for d in task.dataset_configs()]
        kind = first.objective_kind(name)
        data.append(f"- {name} (temperature {kind.temperature:g}): {', '.join(items)}")
    return ["| arm | method | expert layers | trained | steps | batch | lr | max seq | seeds |",
            "|---|---|---|---|---:|---:|---:|---:|---|", *lines, "",
            f"Training data (sampling `{first.data.sampling}`, warmup {first.train.warmup_ratio:g}, "
            f"scheduler {first.train.scheduler}):", "", *data]


def _copy(src: Path, dst: Path) -> bool:
    if not src.is_file():
        return False
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return True


FIGURES_MARKER = ".generated-by-mote-reproduce"


def _check_figures_dir(figdir: Path) -> None:
    """Only a folder this module made (it holds the marker) is ever rewritten."""
    if figdir.is_dir() and not (figdir / FIGURES_MARKER).is_file() and any(figdir.iterdir()):
        raise FileExistsError(f"{figdir} exists and was not made by mote-lab reproduce; choose another --report")


def _publish(staging: Path, figdir: Path, report: Path, text: str) -> None:
    """Swap the new figures and Markdown in together: the new figures (and raw results) go in first, replacing
    files of the same name one rename each and removing none; then the Markdown (one rename); only then the
    figures of the old report that the new one no longer shows. At every instant (a kill included) the Markdown
    in place has every figure it links."""
    figdir.mkdir(parents=True, exist_ok=True)
    (staging / FIGURES_MARKER).write_text("figures of the report next to this folder; rewritten on every run\n")
    fsync_tree(staging)
    new = sorted(p.name for p in staging.iterdir() if p.is_file())
    raw = (staging / "raw").is_dir()
    for name in new:
        os.replace(staging / name, figdir / name)
    if raw:
        replace_dir(staging / "raw", figdir / "raw")
    fsync_dir(figdir)
    atomic_write_text(report, text)
    for p in figdir.glob("*.png"):
        if p.name not in new:
            p.unlink()
    if not raw:
        shutil.rmtree(figdir / "raw", ignore_errors=True)
    shutil.rmtree(staging, ignore_errors=True)


def write_report(plan: Plan, report: str | Path) -> Path:
    """Write ``report`` (Markdown) and its figures (``<report without .md>/``) from the plan's folders; the old
    report's figures are replaced only once the new ones are complete, and removed only after the new Markdown
    is in place (see :func:`_publish`)."""
    exp = plan.config
    report = Path(report)
    final_figdir = report.with_suffix("")
    _check_figures_dir(final_figdir)
    rel = final_figdir.name
    final_figdir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(final_figdir.parent, f".{rel}.tmp-")  # the staging folder of a killed report
    figdir = Path(tempfile.mkdtemp(prefix=f".{rel}.tmp-{os.getpid()}-", dir=final_figdir.parent))
    try:
        text = _report_text(plan, exp, figdir, rel)
        _publish(figdir, final_figdir, report, text)
    except BaseException:
        shutil.rmtree(figdir, ignore_errors=True)
        raise
    return report


def _report_text(plan: Plan, exp: ExperimentConfig, figdir: Path, rel: str) -> str:
    """The report's Markdown; its figures (and raw results) are written into ``figdir`` (linked as ``rel/...``)."""
    from mote_lab.choices import selection_lines
    from mote_lab.curve import curve_lines
    from mote_lab.figures import arm_colors, gains_chart, similarity_panels, training_curves
    from mote_lab.layout import MEASUREMENTS, similarity_dir

    results = collect(plan)
    validation_results = collect(plan, validation=True) if plan.validations else {}
    env: dict[str, Any] = {}
    budget = exp.budget or "-"
    lines = [
        f"# {exp.report.title}",
        "",
        f"<!-- generated by `mote-lab reproduce` ({_dt.datetime.now(_dt.UTC).isoformat(timespec='seconds')}); "
        "do not edit by hand: edit the experiment file and rerun -->",
        "",
        f"Budget **{budget}**" + (f": {exp.description.strip()}" if exp.description else "") + ".",
        "Reproduce with " + (f"`make reproduce BUDGET={budget}` or " if str(exp.source).endswith(
            f"lab/budgets/{budget}.yaml") else "") + f"`mote-lab reproduce {exp.source or 'CONFIG'}` "
        f"(resumable; trained models stay under `{plan.root}`).",
        "",
    ]
    headline: list[str] = []
    body: list[str] = []
    capacity: list[tuple[str, Summary, Significance | None]] = []
    measured = json.loads((plan.root / MEASUREMENTS).read_text()) if (plan.root / MEASUREMENTS).is_file() else None
    for model, res in results.items():
        block = exp.models[model]
        s = block_summary(exp, res)
        first_results = next((r for rs in res.runs.values() for _, _, r in rs), None)
        if first_results:
            env = env or first_results.get("environment", {})
        metric = {d: e["main_metric"] for rs in res.runs.values() for _, _, r in rs for d, e in r["datasets"].items()}
        colors = arm_colors([exp.arm_label(n) for n in [*block.baselines, *block.arms]])
        body += [f"## {block.label or model}: `{block.base}`", ""]
        pending = [ev.key for name in res.runs for ev in plan.evals_of(model, name) if finished_results(ev) is None]
        if pending:
            body += [f"Not finished yet (left out of the tables): {', '.join(pending)}.", ""]
        if not s.datasets:
            body += ["No finished evaluations yet.", ""]
            continue
        body += [f"### Scores ({len(s.datasets)} datasets, split `{exp.eval.split}`)", ""]
        body += [*summary_markdown(exp, s, metric), ""]
        if s.gains:
            groups = [*s.categories, *OVERALL]
            gains = {exp.arm_label(n): {g: s.gains[n][g][:2] for g in groups} for n in s.gains if s.seeds.get(n)}
            png = f"{model}-gains.png"
            gains_chart(gains, groups, figdir / png, title=f"Gain over the untrained base: {block.base}",
                        colors=colors)
            body += [f"![gains over the base per category]({rel}/{png})", ""]
        sigs = []
        for a, b in exp.report.significance:
            sig = significance(plan, res, a, b)
            if sig is not None:
                sigs.append(sig)
                body += [*significance_markdown(exp, sig, exp.report.n_boot), ""]
        capacity.append((model, s, sigs[0] if sigs else None))
        # headline (first block with a significance pair)
        if sigs and not headline:
            headline = _headline(exp, model, s, sigs[0])
        body += selection_lines(plan, model)
        vres = validation_results.get(model)
        body += curve_lines(plan, model, s, block_summary(exp, vres) if vres is not None else None, figdir, rel,
                            colors)
        # similarity
        sims = []
        for name in exp.similarity.runs if exp.similarity.enabled else []:
            d = similarity_dir(plan, model, name)
            if (d / "similarity.json").is_file():
                sims.append((name, json.loads((d / "similarity.json").read_text())))
        if sims:
            png = f"{model}-similarity.png"
            similarity_panels({exp.arm_label(n): (sim["tasks"], sim["matrix"]) for n, sim in sims}, figdir / png,
                              title=f"Inter-task similarity, {block.base} (same {sims[0][1]['n_texts']} texts)")
            body += ["### Inter-task similarity", "",
                     "Mean over the same texts of cos(view_a(x), view_b(x)) between task views (lower = the tasks "
                     "embed the text more differently; first seed of each arm; `mote.eval.task_similarity`).", "",
                     "| run | off-diagonal mean | texts |", "|---|---:|---:|"]
            body += [f"| {exp.arm_label(n)} | {sim['off_diagonal_mean']:.4f} | {sim['n_texts']} |" for n, sim in sims]
            body += ["", f"![inter-task similarity]({rel}/{png})", ""]
        # training curves
        losses, scores, quick = _curves(plan, model)
        if any(c for cs in losses.values() for c in cs):
            png = f"{model}-training.png"
            label = "quick evaluation: " + (f"mean main score of {', '.join(quick)}" if len(quick) < 4 else
                                            f"mean main score of {len(quick)} datasets") + " (%)"
            training_curves(losses, scores, figdir / png, title=block.base, colors=colors, score_label=label)
            body += ["### Training curves", "",
                     "Loss as logged by the trainer (mean over each logging interval; line = mean over seeds, band = "
                     "min..max). Losses of arms with other temperatures (static) or an auxiliary loss (tlr) are not "
                     "on the same scale.", "", f"![training curves]({rel}/{png})", ""]
        # parameters and throughput
        if measured:
            body += _measure_lines(exp, model, measured)
        body += ["### Recipe", "", *_recipe_lines(exp, model), ""]
        if exp.report.copy_raw:
            copies = [(res, figdir / "raw" / model)]
            if model in validation_results:
                copies.append((validation_results[model], figdir / "raw" / model / "validation"))
            for block_res, dest in copies:
                for name, rs in block_res.runs.items():
                    for seed, d, _ in rs:
                        stem = name if seed is None else f"{name}-seed{seed}"
                        _copy(d / "results.json", dest / f"{stem}.json")
    if len([c for c in capacity if c[2] is not None]) > 1:
        body += _capacity_lines(exp, capacity)
    if headline:
        lines += ["## Headline", "", *headline, ""]
    for note in exp.report.notes:
        lines += [note.strip(), ""]
    lines += body
    lines += _setup_lines(exp, plan, env, rel)
    return "\n".join(lines).rstrip() + "\n"


def _headline(exp: ExperimentConfig, model: str, s: Summary, sig: Significance) -> list[str]:
    a, b = sig.a, sig.b
    cat = exp.report.headline_category
    gains = dict(s.gains)
    if b == s.base and a in gains:  # a pair against the base itself: the base's gain over itself is zero
        gains[b] = {key: (0.0, None, 1) for key in gains[a]}
    out = []
    for key in (OVERALL[0], OVERALL[1], cat):
        if a in gains and b in gains and key in gains[a]:
            out.append(f"| {key} | {fmt(gains[a][key], signed=True)} | {fmt(gains[b][key], signed=True)} | "
                       f"{fmt(sig.category_delta.get(key), signed=True)} |")
    lines = [f"Block `{model}` ({exp.models[model].base}); gains over the untrained base in points, mean ± std over "
             "seeds:", "",
             f"| | {exp.arm_label(a)} gain | {exp.arm_label(b)} gain | {exp.arm_label(a)} − {exp.arm_label(b)} |",
             "|---|---:|---:|---:|", *out]
    if sig.across:
        x = sig.across
        lines += ["", f"{exp.arm_label(a)} vs {exp.arm_label(b)} across {x['n_datasets']} datasets: {x['wins']} wins, "
                  f"{x['losses']} losses; Wilcoxon p = {_p(x['wilcoxon_p'])}, sign test p = {_p(x['sign_test_p'])} "
                  f"({len(sig.seeds)} seed{'s' if len(sig.seeds) > 1 else ''})."]
    return lines


def _measure_lines(exp: ExperimentConfig, model: str, m: dict[str, Any]) -> list[str]:
    rows = []
    base = m["models"].get(f"{model}/base")
    for key, v in m["models"].items():
        blk, _, name = key.partition("/")
        if blk != model:
            continue
        ratio_s = f"{v['single_per_s'] / base['single_per_s']:.3f}" if base and "single_per_s" in v else "–"
        ratio_m = f"{v['mixed_per_s'] / base['mixed_per_s']:.3f}" if base and "mixed_per_s" in v else "–"
        rows.append([exp.arm_label(name), v["kind"], f"{v['total']:,}", f"{v['active']:,}",
                     f"{v.get('single_per_s', float('nan')):.1f}", ratio_s,
                     f"{v.get('mixed_per_s', float('nan')):.1f}", ratio_m])
    if not rows:
        return []
    return ["### Parameters and encode throughput", "",
            f"Same {m['n_texts']} texts for every model, batch {m['batch_size']}, {m['threads']} torch thread(s) on "
            f"{m.get('device', 'cpu')}, models taking turns on chunks of {m['chunk']} texts, median of {m['rounds']} "
            "rounds. single = every text as task `query`; mixed = the tasks interleaved in one call (MoTE groups "
            "them by task). A dense model "
            "encodes exactly the prefixed strings MoTE sees. Active = parameters one task's forward pass uses.", "",
            *_table(["model", "kind", "total parameters", "active per task", "single texts/s", "× base",
                     "mixed texts/s", "× base"], rows, left=2), ""]


def _capacity_lines(exp: ExperimentConfig, capacity: list[tuple[str, Summary, Significance | None]]) -> list[str]:
    cat = exp.report.headline_category
    rows = []
    for model, s, sig in capacity:
        if sig is None:
            continue
        a, b = sig.a, sig.b
        for key in (OVERALL[0], cat):
            rows.append([f"{model} ({exp.models[model].base})", key, fmt(s.per_category.get("base", {}).get(key)),
                         fmt(s.gains.get(b, {}).get(key), signed=True), fmt(s.gains.get(a, {}).get(key), signed=True),
                         fmt(sig.category_delta.get(key), signed=True),
                         _p(sig.across["wilcoxon_p"]) if sig.across and key == OVERALL[0] else ""])
    a, b = capacity[0][2].a, capacity[0][2].b
    return ["## Capacity", "",
            f"Does {exp.arm_label(a)}'s advantage over {exp.arm_label(b)} grow as the base model shrinks?", "",
            *_table(["block", "score", "base", f"{exp.arm_label(b)} gain", f"{exp.arm_label(a)} gain",
                     f"{exp.arm_label(a)} − {exp.arm_label(b)}", "Wilcoxon p"], rows, left=2), ""]


def _setup_lines(exp: ExperimentConfig, plan: Plan, env: Mapping[str, Any], rel: str) -> list[str]:
    spent = _timings(plan.root)
    total = sum(spent.values())
    e = exp.eval
    what = ", ".join(e.datasets) if e.datasets else f"the `{e.suite}` suite"
    lines = ["## Setup", "",
             f"- experiment file `{exp.source}`, budget `{exp.budget}`; output folder `{plan.root}`",
             f"- evaluation: {what}; split `{e.split}`; routes {e.routes or 'default'}",
             f"- wall time of the work (every step done in this output folder, summed over invocations): "
             f"{total / 60:.1f} min"
             + (" (" + ", ".join(f"{k} {v / 60:.1f}" for k, v in sorted(spent.items())) + ")" if spent else "")]
    if env:
        lines.append("- environment: " + ", ".join(f"{k} {v}" for k, v in env.items()))
    lines += ["- statistics: means over datasets / categories as in `mote compare`; ± = sample standard deviation "
              "over seeds; significance from `mote.eval.compare` (paired bootstrap per dataset) and "
              "`mote.eval.stats.across_datasets` (Wilcoxon signed-rank, sign test)"]
    if exp.report.copy_raw:
        lines.append(f"- raw results.json of every evaluation: `{rel}/raw/<block>/<run>.json`")
    return lines


__all__ = ["fmt", "significance_markdown", "summary_markdown", "write_report"]
