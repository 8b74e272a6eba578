"""``mote select RUN_DIR --output MODEL``: finish a training run with per-task selection, written atomically.

The selected model is a normal model folder (a MoTE folder for the MoTE arms, a plain sentence-transformers folder
for the dense ones) that loads, evaluates and exports like any other, plus ``selection.json`` / ``selection.md``
(:mod:`mote.select.record`) and the run's ``train_config.yaml``. It is written to a temporary folder and renamed
into place, so an interrupted selection leaves nothing half-written; the candidates' embeddings stay in the
embedding cache, so running the same command again repeats only the arithmetic.

Example:
    >>> select_run("runs/train/mote", "runs/train/mote/selected")   # doctest: +SKIP
    PosixPath('runs/train/mote/selected')
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mote.select.config import SelectConfig, recipe_problems
from mote.select.record import SELECTION_FILE, SELECTION_MD, selection_markdown
from mote.select.search import SearchResult, search, validation_sets
from mote.select.weights import SHARED, SelectionError, WeightSpace

SELECTED = "selected"  # a run's selected model: <run>/selected


def compaction(num_experts: int, merges: list[list[int]]) -> tuple[list[int], dict[int, int]]:
    """``(experts kept, {expert: its index in the saved model})`` after consolidation: each merged group keeps its
    first expert.

    >>> compaction(4, [[0, 1]])
    ([0, 2, 3], {0: 0, 2: 1, 3: 2, 1: 0})
    """
    drop = {e for group in merges for e in group[1:]}
    keep = [e for e in range(num_experts) if e not in drop]
    saved_as = {e: keep.index(e) for e in keep} | {e: keep.index(group[0]) for group in merges for e in group[1:]}
    return keep, saved_as


def write_selected(space: WeightSpace, result: SearchResult, output: Path, record: dict[str, Any],
                   overwrite: bool = False) -> Path:
    """Save the space's model (chosen weights, routing, merges compacted) with its record, atomically."""
    from mote.atomic import atomic_dir, atomic_write_json, atomic_write_text
    from mote.train.config import CONFIG_FILE

    model = space.model
    if space.routed:
        module = model[0]
        routing = module.routing
        for t, on in result.choice.prepend.items():
            routing = routing.replace(t, prepend=on)
        if result.choice.merges:
            from mote.experts import keep_experts
            from mote.routing import RoutingTable, TaskRoute

            keep, saved_as = compaction(space.num_experts, result.choice.merges)
            keep_experts(module.auto_model, keep)
            routing = RoutingTable(
                routes=tuple(TaskRoute(r.name, r.prefix, saved_as[r.expert], r.prepend) for r in routing.routes),
                default_task=routing.default_task,
            )
        module.set_routing(routing)
    else:
        if not result.choice.prepend.get("*", True):  # the plain base: no instruction prefixes
            model.prompts = {}
            model.default_prompt_name = None
    with atomic_dir(output, overwrite=overwrite) as tmp:
        model.save(str(tmp))
        atomic_write_json(tmp / SELECTION_FILE, record)
        atomic_write_text(tmp / SELECTION_MD, selection_markdown(record))
        recipe = getattr(space, "run_dir", None)
        if recipe is not None and (Path(recipe) / "model" / CONFIG_FILE).is_file():
            atomic_write_text(tmp / CONFIG_FILE, (Path(recipe) / "model" / CONFIG_FILE).read_text(encoding="utf-8"))
    return output


def build_record(space: WeightSpace, result: SearchResult, cfg: SelectConfig, sets: list, suite_dir: Path,
                 run: Path) -> dict[str, Any]:
    from mote.select.record import FORMAT

    routing = space.model[0].routing if space.routed else None
    experts = {}
    _, saved_as = compaction(space.num_experts, result.choice.merges)
    for e in range(space.num_experts):
        tasks = routing.tasks_of_expert(e)
        experts[str(e)] = {
            "tasks": tasks,
            "saved_as": saved_as[e],  # its index in the saved model (consolidation renumbers the experts)
            "chosen": result.choice.experts[e].label if e in result.choice.experts else "base",
            "prepend": all(result.choice.prepend.get(t, True) for t in tasks),
            "moved": result.moved[str(e)],
            "parameters": space.parameter_count(e),
        }
    before = sum(space.parameter_count(g) for g in space.groups())
    merged = sum(len(g) - 1 for g in result.choice.merges)
    after = before - merged * (space.parameter_count(0) if space.routed else 0)
    from mote.select.search import candidate_snapshots

    snapshots = candidate_snapshots(space, cfg)
    return {
        "format": FORMAT,
        "run": str(run),
        "arm": getattr(getattr(space, "recipe", None), "arm", None),
        "base": getattr(getattr(getattr(space, "recipe", None), "model", None), "base", None),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "config": cfg.model_dump(mode="json"),
        "grid": [f"{e}@{a:g}" if 0 < a < 1 else ("base" if a == 0 else e) for e, a in cfg.candidate_grid(snapshots)],
        "validation": {"groups": [cfg.validation] if cfg.validation != "both" else ["in-domain", "ood"],
                       "suite": str(suite_dir), "datasets": {v.name: v.group for v in sets}},
        "shared_mode": result.shared_mode,
        "choice": result.choice.to_dict(),
        "shared": {"moved": result.moved[SHARED], "parameters": space.parameter_count(SHARED)},
        "experts": experts,
        "consolidation": {"merges": result.choice.merges, "parameters_before": before, "parameters_after": after},
        "reference": result.reference.to_dict(),
        "selected": result.selected.to_dict(),
        "steps": {k: [c.to_dict() for c in rows] for k, rows in result.steps.items()},
        "evaluations": result.evaluations,
        "seconds": round(result.seconds, 1),
    }


def select_run(
    run_dir: str | os.PathLike,
    output: str | os.PathLike | None = None,
    cfg: SelectConfig | None = None,
    *,
    cache: Any = True,
    data_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    device: str = "cpu",
    log: Callable[[str], None] | None = None,
) -> Path:
    """Select per task on validation data and write the selected model (default ``<run>/selected``).

    ``cfg`` defaults to the run recipe's ``select:`` section. Raises :class:`SelectionError` (naming the fix) for
    a run that cannot be selected: unfinished, token-routed, or trained on its validation rows.
    """
    from mote.data import data_dir as resolve_data_dir
    from mote.eval.cache import EmbeddingCache
    from mote.eval.validation import build_validation_suite, validation_dir

    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    run = Path(run_dir)
    out = Path(output) if output is not None else run / SELECTED
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; choose another --output or pass --overwrite")
    space = WeightSpace.from_run(run, device=device)
    cfg = cfg or space.recipe.select
    problems = recipe_problems(space.recipe, cfg)
    if problems:
        raise SelectionError("cannot select this run: " + "; ".join(problems))
    root = resolve_data_dir(data_dir or space.recipe.data.data_dir)
    fraction = space.recipe.data.holdout if space.recipe.data.holdout > 0 else 0.1  # ood-only: any fraction
    suite = build_validation_suite(root, validation_dir(fraction), fraction)
    sets = validation_sets(suite, cfg.validation, [(d.name, d.split) for d in cfg.datasets], data_root=root)
    store = EmbeddingCache() if cache is True else (EmbeddingCache(cache) if cache else None)
    prefixes = None if space.routed else space.recipe.model.routing().prompts()
    try:
        result = search(space, sets, cfg, store, prefixes, log)
    finally:
        if store is not None:
            store.close()
    record = build_record(space, result, cfg, sets, suite, run)
    write_selected(space, result, out, record, overwrite=overwrite)
    log(f"selected model written to {out} ({result.evaluations} evaluations, {result.seconds:.0f} s): "
        f"validation mean {result.reference.mean:.2f} (base) -> {result.selected.mean:.2f}")
    return out


__all__ = ["SELECTED", "SelectionError", "build_record", "recipe_problems", "select_run", "write_selected"]
