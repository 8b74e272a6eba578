"""The report's "Learning curve" section: the score of every point of a run (its weight snapshots, the point arms,
and the run's end) vs the optimiser step, per category, on the test datasets and on the validation suite, with the
wall time each run took. Read from the evaluations' results (nothing is re-scored) and ``timings.jsonl``.

A *series* is an arm that other arms are points of (``point_of``): its points (at their ``at_step``) and the arm
itself (at the run's last step). Selected points (a point of a selected arm) form the selected arm's series.

Example:
    >>> lines = curve_lines(plan, "minilm-l6", test, val, figdir, "results")     # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from mote_lab.summary import GROUPS, OVERALL, Summary, group_categories, group_mean

if TYPE_CHECKING:
    from mote_lab.plan import Plan



def series(plan: Plan, model: str) -> dict[str, list[tuple[int, str]]]:
    """``{series arm: [(step, arm), ...]}`` in step order, for the arms of block ``model`` that have points."""
    exp = plan.config
    block = exp.models[model]
    out: dict[str, list[tuple[int, str]]] = {}
    for arm in block.arms:
        points = [a for a in block.arms if exp.arms[a].point_of == arm]
        if not points:
            continue
        src = exp.source_arm(arm)
        final = exp.run_config(model, src, block.seeds_of(src)[0], check_files=False).train.steps
        out[arm] = sorted([(int(exp.arms[a].at_step), a) for a in points] + [(final, arm)])
    return out


def _columns(s: Summary | None, validation: bool) -> list[str]:
    if s is None:
        return []
    if validation:
        return [*s.categories, *[f"{g} mean" for g in group_categories(s)]]
    return [*s.categories, *OVERALL]


def _value(s: Summary, name: str, column: str) -> float | None:
    if column.endswith(" mean") and column.removesuffix(" mean") in GROUPS:
        return group_mean(s, name, column.removesuffix(" mean"))
    stat = s.per_category.get(name, {}).get(column)
    return None if stat is None else stat[0]


def _cell(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"


def _seconds(entries: list[dict], key: str, kinds: tuple[str, ...]) -> float | None:
    got = [float(e["seconds"]) for e in entries if e.get("key") == key and e.get("kind") in kinds]
    return sum(got) if got else None


def _minutes(v: float | None) -> str:
    return "–" if v is None else f"{v / 60:.1f}"


def curve_lines(plan: Plan, model: str, test: Summary | None, val: Summary | None, figdir: Path, rel: str,
                colors: Mapping[str, tuple] | None = None) -> list[str]:
    """Markdown (and ``<model>-curve.png`` in ``figdir``) for block ``model``; empty when it has no points."""
    from mote.files import read_log
    from mote_lab.figures import learning_curve
    from mote_lab.layout import TIMINGS

    exp = plan.config
    curves = series(plan, model)
    if not curves:
        return []
    steps = sorted({s for pts in curves.values() for s, _ in pts})
    lines = ["### Learning curve", "",
             f"Each series is one run read at several optimiser steps ({', '.join(f'{s:,}' for s in steps)}): the "
             "points before the end are the run's weight snapshots at those steps (not separate, shorter runs: the "
             "learning-rate schedule is the full run's), and a selected series selects at each step among the "
             "candidates that existed then (base, earlier snapshots, blends of that step's weights). Step 0 is the "
             "untrained base. Mean over seeds of the main score (%) per category."]
    figure: dict[str, dict[str, list]] = {}
    reference: dict[str, float | None] = {}
    for title, s, validation in (("Test datasets", test, False), ("Validation suite", val, True)):
        cols = _columns(s, validation)
        if s is None or not any(s.seeds.get(a) for pts in curves.values() for _, a in pts):
            continue
        head = ["series", "step", *cols]
        rows = []
        if s.seeds.get("base"):
            rows.append(["base (untrained)", "0", *[_cell(_value(s, "base", c)) for c in cols]])
        for arm, pts in curves.items():
            for step, a in pts:
                if s.seeds.get(a):
                    rows.append([exp.arm_label(arm), f"{step:,}", *[_cell(_value(s, a, c)) for c in cols]])
        where = (f"{len(s.datasets)} datasets, split `{exp.eval.split}`" if not validation else
                 "held-out rows of the trained sources (in-domain) and whole sources kept out of training (ood), "
                 "split `validation`; the groups are never averaged together")
        lines += ["", f"#### {title} ({where})", "",
                  "| " + " | ".join(head) + " |", "|---|---:|" + "---:|" * len(cols),
                  *["| " + " | ".join(r) + " |" for r in rows]]
        # the figure: every test category and the mean over them; of the validation suite the mean of each group
        # (its categories are in the table), so that the panels stay readable at the report's width
        panels = [c for c in cols if c != OVERALL[0] and (not validation or c.endswith(" mean"))]
        for c in panels:
            name = f"{'validation' if validation else 'test'}: {c}"
            figure[name] = {exp.arm_label(arm): [(step, _value(s, a, c)) for step, a in pts if s.seeds.get(a)]
                            for arm, pts in curves.items()}
            reference[name] = _value(s, "base", c) if s.seeds.get("base") else None
    if figure:
        png = f"{model}-curve.png"
        learning_curve(figure, figdir / png, reference=reference, colors=colors,
                       title=f"Learning curve: {exp.models[model].base} (score at each step, per category)")
        lines += ["", f"![learning curve: score vs step per category]({rel}/{png})"]
    # wall times
    entries = read_log(plan.root / TIMINGS) if (plan.root / TIMINGS).is_file() else []
    rows = []
    for pts in curves.values():
        for step, a in pts:
            for t in plan.trainings:
                if t.model != model or t.arm != a:
                    continue
                what = ("snapshot" if t.point is not None else "selection" if t.source is not None else "training")
                made = _seconds(entries, t.key, ("train", "select", "point"))
                rows.append([exp.arm_label(a), str(t.seed), f"{step:,}", what, _minutes(made),
                             _minutes(_seconds(entries, t.key, ("eval",))),
                             _minutes(_seconds(entries, t.key, ("validate",)))])
    lines += ["", "#### Wall time of each run (min)", "",
              "Training = the whole run (every point before its end comes from it at no extra training cost); "
              "snapshot = a point read from its run's weight snapshot (nothing is made: checking the snapshot); "
              "selection = `mote select` of the run at that point's step; summed over "
              "invocations from `timings.jsonl` (– = not run in this output folder).", "",
              "| run | seed | step | made by | made in | test evaluation | validation evaluation |",
              "|---|---:|---:|---|---:|---:|---:|", *["| " + " | ".join(r) + " |" for r in rows], ""]
    return lines


__all__ = ["curve_lines", "series"]
