"""The full resolution of a lab experiment, as data: every run's training recipe, selection options and plan keys.

``tests/test_lab_budgets.py`` compares it, for every budget file of ``lab/budgets/``, with
``tests/fixtures/lab-budgets-resolved.json``: the same dump made once from the old ``lab/reproduce.yaml`` budgets
(before they became one file each), so that the move changed no run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

BUDGETS = ["small", "tune", "seeds", "full", "choose", "select", "curve", "curve-1600", "headline", "recipe", "gpu"]


def _plain(value: Any, cache: str) -> Any:
    """JSON-able, with the embedding cache folder (machine-dependent) written as ``$CACHE``."""
    if isinstance(value, dict):
        return {str(k): _plain(v, cache) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, cache) for v in value]
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, str) and value.startswith(cache):
        return "$CACHE" + value[len(cache):]
    return value


def resolution(exp, name: str) -> dict[str, Any]:
    """Everything of ``exp`` that decides what runs (plan keys and folders, each run's recipe and selection options,
    each evaluation's inputs) and what the report is made of (labels, eval, report settings but the title)."""
    from mote.eval.cache import default_cache_dir
    from mote_lab.plan import make_plan
    from mote_lab.runner import eval_inputs

    root = Path("runs/reproduce") / name
    plan = make_plan(exp, root)
    runs: dict[str, Any] = {}
    for t in plan.trainings:
        spec = exp.arms[t.arm]
        entry: dict[str, Any] = {
            "dir": str(t.dir.relative_to(root)),
            "source": t.source.key if t.source else None,
            "point": t.point.key if t.point else None,
            "at_step": t.at_step,
            "source_arm": exp.source_arm(t.arm),
            "arm_step": exp.arm_step(t.arm),
            "label": exp.arm_label(t.arm),
            "eval_mode": spec.eval_mode,
            "recipe": exp.run_recipe(t.model, t.arm, t.seed),
        }
        if t.source is None and t.point is None:  # what mote.train gets: the recipe, validated
            entry["run_config"] = exp.run_config(t.model, t.arm, t.seed, check_files=False).model_dump(mode="json")
        if t.source is not None:
            entry["select"] = exp.select_config(t.model, t.arm, t.seed).model_dump(mode="json")
        runs[t.key] = entry
    evals = [{"key": e.key, "dir": str(e.dir.relative_to(root)), "validation": e.validation,
              "train": e.train.key if e.train else None, "inputs": eval_inputs(exp, e)}
             for e in [*plan.evaluations, *plan.validations]]
    report = exp.report.model_dump(mode="json")
    report.pop("title")  # names the command; tests/test_lab_budgets.py checks it against the committed report
    out = {
        "name": exp.name,
        "description": exp.description,
        "blocks": {m: {"base": b.base, "label": b.label, "baselines": list(b.baselines),
                       "arms": list(b.arms), "seeds": {a: b.seeds_of(a) for a in b.arms}}
                   for m, b in exp.enabled_models().items()},
        "steps": [s.key for s in plan.steps()],
        "trainings": runs,
        "evaluations": evals,
        "eval": exp.eval.model_dump(mode="json"),
        "eval_data_dir": exp.eval_data_dir(),
        "validation_fraction": exp.validation_fraction(),
        "similarity": exp.similarity.model_dump(mode="json"),
        "throughput": exp.throughput.model_dump(mode="json"),
        "report": report,
        "device": exp.device,
        "keep_checkpoints": exp.keep_checkpoints,
    }
    return _shared(_plain(out, str(default_cache_dir())))


def _shared(out: dict[str, Any]) -> dict[str, Any]:
    """Each distinct recipe once (under ``recipes``, by content hash, its seed apart), the runs naming it; a run's
    validated config by its hash only (it is made from the recipe)."""
    import hashlib
    import json

    def sha(value: Any) -> str:
        return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]

    table: dict[str, Any] = {}
    for entry in out["trainings"].values():
        entry["seed"] = entry["recipe"].pop("seed")
        table[key := sha(entry["recipe"])] = entry["recipe"]
        entry["recipe"] = key
        if "run_config" in entry:
            entry["run_config"] = sha(entry["run_config"])
    out["recipes"] = table
    return out
