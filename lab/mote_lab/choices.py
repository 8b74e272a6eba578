"""The report's "What selection kept" section: per selected arm and seed, what each expert (and the shared weights)
kept, under the validation groups together (the choice written) and under each group alone, and the validation
change behind it. Read from each selected model's ``selection.json``; nothing is re-scored.

Example:
    >>> lines = selection_lines(plan, "minilm-l6")      # doctest: +SKIP
    >>> print("\\n".join(lines))                         # doctest: +SKIP
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from mote.select.record import choice_by_group, read_selection

if TYPE_CHECKING:
    from mote_lab.plan import Plan


def selection_lines(plan: Plan, model: str) -> list[str]:
    """Markdown for the selected arms of block ``model`` (empty when it has none finished)."""
    exp = plan.config
    records = [(t, read_selection(t.model_dir)) for t in plan.trainings if t.model == model and t.source is not None]
    records = [(t, r) for t, r in records if r is not None]
    if not records:
        return []
    lines = ["### What selection kept", "",
             "Per selected run: what each group of weights kept (`base` = untrained; `final@a` = base + a x training; "
             "`step-N` = the snapshot), decided on both validation groups (the choice written), and what the same "
             "rule keeps on the in-domain rows alone / the out-of-domain sources alone (re-decided from the scored "
             "candidates in the run's `selection.json`; `-`: that group has no set for it; `n/a`: not scored). "
             "Merged: experts consolidated into one, with the total parameters before -> after. "
             "Validation = mean over categories, plain base -> selected.", ""]
    agree: Counter[str] = Counter()
    for arm in dict.fromkeys(t.arm for t, _ in records):
        rows = [(t, r) for t, r in records if t.arm == arm]
        groups = ["shared", *rows[0][1]["experts"]]
        names = {"shared": "shared"} | {e: "/".join(i["tasks"]) for e, i in rows[0][1]["experts"].items()}
        lines += [f"**{exp.arm_label(arm)}** (from {exp.arm_label(exp.arms[arm].select_from)}); each cell: both "
                  "(in-domain / ood)", "",
                  "| seed | " + " | ".join(names[g] for g in groups) + " | merged | validation |",
                  "|---|" + "---|" * len(groups) + "---|---:|"]
        for t, rec in rows:
            by = choice_by_group(rec)
            views = [v for v in by if v != "both"]
            cells = []
            for g in groups:
                got = [by[v].get(g, "n/a") for v in ["both", *views]]
                cells.append(f"{got[0]} ({' / '.join(got[1:])})")
                agree["same" if len(set(x for x in got if x not in ("-", "n/a"))) == 1 else "differ"] += 1
            merges = rec["choice"].get("merges") or []
            merged = "; ".join("+".join("/".join(rec["experts"][str(e)]["tasks"]) for e in m) for m in merges) or "-"
            cons = rec.get("consolidation") or {}
            if merges and cons.get("parameters_before"):  # the memory a merge saved (it cost <= the tolerance)
                merged += f" ({cons['parameters_before'] / 1e6:.2f}M -> {cons['parameters_after'] / 1e6:.2f}M params)"
            lines.append(f"| {t.seed} | " + " | ".join(cells) + f" | {merged} | "
                         f"{rec['reference']['mean']:.2f} -> {rec['selected']['mean']:.2f} |")
        lines.append("")
    total = sum(agree.values())
    lines += [f"The groups agree on {agree['same']} of {total} choices (a choice counts as agreeing when every group "
              "that can decide it picks the same candidate).", ""]
    return lines


__all__ = ["selection_lines"]
