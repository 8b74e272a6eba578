"""``mote select RUN_DIR``: finish a training run with per-task selection, written atomically.

A run's ``model/`` is the model to use. ``mote train`` ends with selection (``select.enabled``, the default): the
raw final weights are in ``RUN/trained/`` and the selection in ``RUN/model/``. ``mote select RUN`` re-decides with
other options (it replaces ``RUN/model/``, reading ``RUN/trained/``); on a run trained without selection it first
moves the raw weights from ``model/`` to ``trained/`` (one rename), so they are never lost.

``select_run(RUN, OUT, at_step=N)`` (``mote select RUN --at-step N --output OUT``) selects the run as it stood at
step N: the candidates are what existed then (the base, the snapshots before N, blends of step N's snapshot, which
is the ``final`` endpoint), written to ``OUT`` (never ``RUN/model``), and the record says so (``at_step``).

The selected model is a normal model folder (a MoTE folder for the MoTE methods, a plain sentence-transformers folder
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
        trained = getattr(space, "model_dir", None)
        if trained is not None and (Path(trained) / CONFIG_FILE).is_file():
            atomic_write_text(tmp / CONFIG_FILE, (Path(trained) / CONFIG_FILE).read_text(encoding="utf-8"))
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
        "at_step": getattr(space, "at_step", None),  # the run's step selected at (None: its end)
        "method": getattr(getattr(getattr(space, "recipe", None), "method", None), "name", None),
        "base": getattr(getattr(getattr(space, "recipe", None), "model", None), "base", None),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "config": cfg.model_dump(mode="json"),
        "grid": [f"{e}@{a:g}" if 0 < a < 1 else ("base" if a == 0 else e) for e, a in cfg.candidate_grid(snapshots)],
        "validation": {"groups": sorted({v.group for v in sets}, key=["in-domain", "ood", "extra"].index),
                       "suite": str(suite_dir), "kind": cfg.suite, "datasets": {v.name: v.group for v in sets},
                       "sources": {v.name: v.source for v in sets if v.source is not None}},
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
    at_step: int | None = None,
) -> Path:
    """Select per task on validation data and write the selected model (default ``<run>/model``, module doc).

    ``at_step``: select the run as it stood at that step (its snapshot there is the ``final`` endpoint, the
    snapshots before it the others) into ``output``, which must be given and not be the run's own model folders.

    ``cfg`` defaults to the run recipe's ``select:`` section. Validation (``cfg.suite``): ``recipe``, the held-out
    rows of the recipe's own datasets (:mod:`mote.select.holdout_sets`) plus the out-of-domain sets named in
    ``cfg.datasets``; ``shared``, the fixed suite built from the data root (:mod:`mote.eval.validation`). Raises
    :class:`SelectionError` (naming the fix) for a run that cannot be selected: unfinished, token-routed, with
    no validation rows, or without a snapshot at ``at_step`` (the message lists the steps it kept).
    """
    from mote.eval.cache import EmbeddingCache
    from mote.train.checkpoints import MODEL, TRAINED

    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    run = Path(run_dir)
    if at_step is not None and (output is None or Path(output).resolve() in
                                ((run / MODEL).resolve(), (run / TRAINED).resolve())):
        raise SelectionError(f"a selection at step {at_step} is not the run's own model: name its folder with "
                             f"--output (mote select {run} --at-step {at_step} --output DIR); {run / MODEL} stays "
                             "as it is")
    out = Path(output) if output is not None else run / MODEL
    own = out.resolve() == (run / MODEL).resolve()  # the run's own model folder: a derived, re-decidable selection
    if out.exists() and not (overwrite or own):
        raise FileExistsError(f"{out} already exists; choose another --output or pass --overwrite")
    space = WeightSpace.from_run(run, device=device, at_step=at_step)
    cfg = cfg or space.recipe.select
    problems = recipe_problems(space.recipe, cfg)
    if problems:
        raise SelectionError("cannot select this run: " + "; ".join(problems))
    suite, sets = _validation(space.recipe, cfg, run, data_dir, log)
    store = EmbeddingCache() if cache is True else (EmbeddingCache(cache) if cache else None)
    prefixes = None if space.routed else space.recipe.model.routing().prompts()
    try:
        result = search(space, sets, cfg, store, prefixes, log)
    finally:
        if store is not None:
            store.close()
    record = build_record(space, result, cfg, sets, suite, run)
    if own and not (run / TRAINED).exists():  # a run trained without selection: its raw weights move aside first
        os.replace(run / MODEL, run / TRAINED)
    write_selected(space, result, out, record, overwrite=True if own else overwrite)
    log(f"selected model{'' if at_step is None else f' at step {at_step}'} written to {out} "
        f"({result.evaluations} evaluations, {result.seconds:.0f} s): "
        f"validation mean {result.reference.mean:.2f} (base) -> {result.selected.mean:.2f}")
    return out


def train_and_select(cfg: Any, output: str | os.PathLike, resume: bool = False, callbacks: list | None = None,
                     log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """``mote train``: train ``cfg`` (:func:`mote.train.run_training`) and, when it selects
    (:meth:`~mote.train.RunConfig.selects`), end with per-task selection into ``RUN/model`` (the raw final weights
    stay in ``RUN/trained``). Returns the run's summary; ``summary["selection"]`` holds the lines of what each
    expert kept and the validation behind it (:func:`mote.select.record.summary_lines`).

    A selection that fails leaves the trained weights where they are and raises :class:`SelectionError` naming
    ``mote select RUN``, to run again once the cause is fixed.
    """
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    with run_lock(output):  # one writer per run folder: a second `mote train --output` is refused at once
        return _train_and_select(cfg, output, resume, callbacks, log)


def run_lock(output: str | os.PathLike):
    """The exclusive lock of the run folder ``output`` (:func:`mote.atomic.output_lock`), held by the main process
    (under torchrun every rank writes the same run)."""
    import contextlib

    from mote.atomic import output_lock
    from mote.train.distributed import world

    return output_lock(output) if world()[0] == 0 else contextlib.nullcontext()


def _train_and_select(cfg: Any, output: str | os.PathLike, resume: bool, callbacks: list | None,
                      log: Callable[[str], None]) -> dict[str, Any]:
    from mote.select.record import read_selection, summary_lines
    from mote.train.distributed import world
    from mote.train.trainer import describe_result, run_training

    result = run_training(cfg, output, resume=resume, callbacks=callbacks)
    summary = describe_result(result)
    if result.model_dir is None:
        return summary
    if not cfg.selects():
        if cfg.select.enabled:
            log(f"selection: not applicable to the {cfg.method.name} method (its experts are chosen per token); "
                f"{result.model_dir} is the trained model")
        return summary
    if world()[0] != 0:  # one process selects
        return summary
    try:
        target = select_run(result.output_dir, cfg=cfg.select, log=log)
    except SelectionError as e:
        raise SelectionError(f"training finished ({result.model_dir}), but per-task selection failed: {e}. Fix it "
                             f"and run `mote select {result.output_dir}`") from None
    summary["trained_dir"], summary["model_dir"] = summary["model_dir"], str(target)
    summary["selection"] = summary_lines(read_selection(target))
    return summary


def _validation(recipe: Any, cfg: SelectConfig, run: Path, data_dir: Any, log: Callable[[str], None]):
    """``(where the sets are, the sets)`` that ``cfg`` selects on (see :func:`select_run`)."""
    from mote.select.search import user_sets

    if cfg.suite == "shared":
        from mote.data import data_dir as resolve_data_dir
        from mote.eval.validation import build_validation_suite, validation_dir

        root = resolve_data_dir(data_dir or recipe.data.data_dir)
        fraction = recipe.data.holdout if recipe.data.holdout > 0 else 0.1  # ood-only: any fraction
        suite = build_validation_suite(root, validation_dir(fraction), fraction)
        sets = validation_sets(suite, cfg.validation, data_root=root)
        return suite, sets + user_sets(cfg.datasets, data_dir or recipe.data.data_dir, group="extra")
    from mote.select.holdout_sets import build_recipe_sets

    suite = run / "validation"
    sets = []
    if cfg.validation != "ood":  # the recipe's own data, where it trained from (else where --data-dir says it is now)
        root = recipe.data_root() or (Path(data_dir) if data_dir is not None else None)
        sets += build_recipe_sets(recipe, suite, cfg.max_examples, root, log)
    if cfg.validation != "in-domain":
        sets += user_sets(cfg.datasets, data_dir or recipe.data.data_dir)
    log(f"validation: {len(sets)} sets ({', '.join(v.name for v in sets)})")
    return suite, sets


__all__ = ["SelectionError", "build_record", "recipe_problems", "select_run", "train_and_select",
           "write_selected"]
