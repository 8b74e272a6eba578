"""The selection record a selected model carries: ``selection.json`` (everything) and ``selection.md`` (a summary).

A user opening a selected model folder sees what each expert (and the shared weights) kept, how far it moved from
the base, and the validation scores behind each choice; ``mote info`` prints :func:`summary_lines`.

Example:
    >>> rec = read_selection("runs/train/mote/selected")   # doctest: +SKIP
    >>> rec["choice"]["experts"]                           # doctest: +SKIP
    {'0': 'final@0.5', '1': 'base', '2': 'final', '3': 'step-50'}
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mote.files import SELECTION_FILE

SELECTION_MD = "selection.md"
FORMAT = 1


def read_selection(folder: str | os.PathLike) -> dict[str, Any] | None:
    """``selection.json`` of a model folder, or ``None`` when the model was not selected."""
    path = Path(folder) / SELECTION_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e.msg}); re-run `mote select` to rewrite it") from None


NOT_DECIDED = "-"  # the group has no validation set of this step's categories: it cannot choose
NOT_RECORDED = "n/a"  # decided after a shared-weights choice this group would have made differently


def _decide(rows: list[dict[str, Any]], ref: dict[str, float], group: str | None, tolerance: float
            ) -> dict[str, str] | None:
    """The settings the search's rule (admissible: no category below the base by more than ``tolerance``; best mean
    over categories; ties to the earlier candidate) picks among ``rows`` when only ``group``'s categories count
    (``None``: all of them). ``None`` when the rows have no category of ``group``."""
    best: tuple[float, dict[str, str]] | None = None
    for row in rows:
        cats = {c: v for c, v in row["categories"].items() if group is None or c.split("/", 1)[0] == group}
        if not cats:
            return None
        if any(v < ref[c] - tolerance - 1e-9 for c, v in cats.items()):
            continue
        score = sum(cats.values()) / len(cats)
        if best is None or score > best[0]:
            best = (score, row["settings"])
    return None if best is None else dict(best[1])


def choice_by_group(record: dict[str, Any], tolerance: float | None = None) -> dict[str, dict[str, str]]:
    """What the selection would have kept had it decided on one validation group alone, from the candidates it
    scored (``selection.json`` holds every candidate's per-category scores, so nothing is re-encoded).
    ``tolerance`` (default: the record's) re-decides under another admissibility tolerance, in points.

    Returns ``{view: {"shared": label, "<expert>": label}}`` for the view ``both`` (every category; the rule
    re-applied, so it equals the recorded choice) and each group of the record (``in-domain``, ``ood``). A group
    with no validation set routed to an expert gets ``"-"`` for it; expert choices made after a shared-weights
    choice that the group would have made differently were never scored: ``"n/a"``. Consolidation is not
    re-decided.

    Example:
        >>> choice_by_group(read_selection("runs/train/mote/selected"))["ood"]   # doctest: +SKIP
        {'shared': 'base', '0': 'base', '1': 'final', '2': 'final', '3': 'final'}
    """
    ref = record["reference"]["categories"]
    tol = float(record["config"].get("tolerance", 0.0) if tolerance is None else tolerance)
    if tol < 0:
        raise ValueError(f"tolerance must be >= 0 points, got {tol}")
    steps = record["steps"]
    actual_shared = record["choice"]["shared"]
    out: dict[str, dict[str, str]] = {}
    for view in ["both", *record["validation"]["groups"]]:
        group = None if view == "both" else view
        picked: dict[str, str] = {"shared": actual_shared}
        if steps.get("global"):
            got = _decide(steps["global"], ref, group, tol)
            picked["shared"] = got["shared"] if got else NOT_DECIDED
        same_shared = picked["shared"] == actual_shared
        for name, rows in steps.items():
            if not name.startswith("component ") or not rows:
                continue
            experts = list(rows[0]["settings"])
            got = _decide(rows, ref, group, tol) if same_shared else None
            for e in experts:
                picked[e] = (got[e] if got else NOT_DECIDED) if same_shared else NOT_RECORDED
        for e in record["experts"]:
            picked.setdefault(e, actual_shared if same_shared else NOT_RECORDED)
        out[view] = picked
    return out


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x:.2f}"


def summary_lines(record: dict[str, Any]) -> list[str]:
    """A few lines for ``mote info``: the choice per group and the validation change per category."""
    choice = record["choice"]
    at = record.get("at_step")
    lines = [f"selection{'' if at is None else f' at step {at}'} (validation: "
             f"{', '.join(record['validation']['groups'])}; shared weights: "
             f"{record['shared_mode']} -> {choice['shared']}):"]
    for e, info in record["experts"].items():
        tasks = ", ".join(info["tasks"])
        saved = info.get("saved_as", int(e))
        lines.append(f"  {tasks} (expert {saved}): {info['chosen']}, moved {info['moved']['relative']:.2f} of "
                     f"training{'' if info['prepend'] else ', prefix not prepended'}")
    for merged in choice.get("merges", []):
        tasks = [t for e in merged for t in record["experts"][str(e)]["tasks"]]
        lines.append(f"  {', '.join(tasks)} share one expert (consolidated)")
    ref, sel = record["reference"]["categories"], record["selected"]["categories"]
    lines.append("  validation (base -> selected): " + "; ".join(
        f"{c} {ref[c]:.2f} -> {sel[c]:.2f}" for c in sel))
    sources = record["validation"].get("sources") or {}
    if sources:
        lines.append("  validated on: " + "; ".join(
            f"{name} ({group}, from {sources[name]})" if name in sources else f"{name} ({group})"
            for name, group in record["validation"]["datasets"].items()))
    return lines


def selection_markdown(record: dict[str, Any]) -> str:
    """``selection.md``: the summary, then every step's candidates."""
    ref, sel = record["reference"], record["selected"]
    lines = [
        f"# Per-task selection of `{record['run']}`"
        + ("" if record.get("at_step") is None else f" at step {record['at_step']}"),
        "",
        f"Generated by `mote select` ({record['created']}); validation groups {record['validation']['groups']} "
        f"(split `validation`, {len(record['validation']['datasets'])} sets; never a test split); grid "
        f"{', '.join(record['grid'])}; tolerance {record['config']['tolerance']:g} points; "
        f"{record['evaluations']} candidate evaluations in {record['seconds']:.0f} s.",
        "",
        "## What each group kept",
        "",
        "| group | tasks | chosen | prefix | moved (norm) | moved (share of training) | parameters |",
        "|---|---|---|---|---:|---:|---:|",
        f"| shared | all | {record['choice']['shared']} ({record['shared_mode']}) | | "
        f"{record['shared']['moved']['norm']:.3f} | {record['shared']['moved']['relative']:.2f} | "
        f"{record['shared']['parameters']:,} |",
    ]
    for e, info in record["experts"].items():
        lines.append(f"| expert {e} | {', '.join(info['tasks'])} | {info['chosen']} | "
                     f"{'prepended' if info['prepend'] else 'not prepended'} | {info['moved']['norm']:.3f} | "
                     f"{info['moved']['relative']:.2f} | {info['parameters']:,} |")
    cons = record.get("consolidation") or {}
    if cons.get("merges"):
        lines += ["", f"Consolidated experts {cons['merges']}: parameters {cons['parameters_before']:,} -> "
                      f"{cons['parameters_after']:,}."]
    by_group = choice_by_group(record)
    views = list(by_group)
    lines += ["", "## The choice under each validation group", "",
              "What the same rule keeps when only one group's categories count (re-decided from the candidates "
              "below; `-`: the group has no set for it; `n/a`: not scored). Where the groups disagree, the "
              "in-domain rows and the out-of-domain sources pull the model differently.", "",
              "| group | tasks | " + " | ".join(f"{v} (used)" if v == "both" else v for v in views) + " |",
              "|---|---|" + "---|" * len(views)]
    lines.append("| shared | all | " + " | ".join(by_group[v]["shared"] for v in views) + " |")
    for e, info in record["experts"].items():
        lines.append(f"| expert {e} | {', '.join(info['tasks'])} | "
                     + " | ".join(by_group[v].get(e, NOT_RECORDED) for v in views) + " |")
    lines += ["", "## Validation, plain base vs selected (main score, %)", "",
              "| category | base | selected | change |", "|---|---:|---:|---:|"]
    for c in sel["categories"]:
        lines.append(f"| {c} | {ref['categories'][c]:.2f} | {sel['categories'][c]:.2f} | "
                     f"{sel['categories'][c] - ref['categories'][c]:+.2f} |")
    lines.append(f"| **mean over categories** | {ref['mean']:.2f} | {sel['mean']:.2f} | "
                 f"{sel['mean'] - ref['mean']:+.2f} |")
    lines += ["", "| dataset | base | selected |", "|---|---:|---:|"]
    for d, v in sel["scores"].items():
        lines.append(f"| {d} | {_fmt(ref['scores'].get(d))} | {v:.2f} |")
    for step, rows in record["steps"].items():
        if not rows:
            continue
        cats = list(rows[0]["categories"])
        lines += ["", f"## Step: {step}", "",
                  "| candidate | " + " | ".join(cats) + " | mean | admissible |",
                  "|---|" + "---:|" * (len(cats) + 1) + "---|"]
        for r in rows:
            label = ", ".join(f"{k}={v}" for k, v in r["settings"].items())
            lines.append(f"| {label} | " + " | ".join(_fmt(r["categories"].get(c)) for c in cats)
                         + f" | {r['mean']:.2f} | {'yes' if r['admissible'] else 'no'} |")
    return "\n".join(lines) + "\n"

__all__ = [
    "FORMAT",
    "NOT_DECIDED",
    "NOT_RECORDED",
    "SELECTION_FILE",
    "SELECTION_MD",
    "choice_by_group",
    "read_selection",
    "selection_markdown",
    "summary_lines",
]
