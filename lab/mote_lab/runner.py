"""Run a reproduction plan, resumably: finished work is reused, a killed training resumes from its checkpoint.

What counts as finished (checked before each step, so a killed ``mote-lab reproduce`` just runs again):

* a **training** is done when its folder has ``model/`` and the ``reproduce_done.json`` marker, and its saved recipe
  equals the run's recipe (a changed recipe is an error naming the differing sections, never a silent reuse);
  a folder with checkpoints but no model resumes with ``run_training(resume=True)`` (bitwise the batches of an
  uninterrupted run); a model without the marker (killed right after saving) is checked and marked; once marked,
  its checkpoints are deleted (``keep_checkpoints: true`` keeps them);
* a **point** (an arm's run read at an earlier step: ``point_of`` / ``at_step``) is done when its folder has a
  marker naming its source run and step; nothing else is written or trained: its model is the source run's weight
  snapshot folder at that step, evaluated as it is (:func:`check_point`, ``mote.api.load_snapshot``), and a point
  of a selected arm is ``mote select`` of the source run at that step (``select_run(..., at_step=N)``); a source
  without that snapshot is an error naming the fix;
* an **evaluation** is done when its folder has ``results.json`` and a marker whose key (the training's run id,
  the datasets, split, routes and data folder) matches; otherwise it is re-run, and the embedding cache makes
  the datasets it had already encoded cost seconds;
* **similarity** and **measurements** are keyed the same way.

Every step prints one line when it starts and one when it ends (with its wall time, or "reused"); the times are
appended to ``timings.jsonl`` so that the report can give the wall time of the whole reproduction.

Example:
    >>> cfg = load_experiment("lab/budgets/small.yaml")      # doctest: +SKIP
    >>> run_reproduction(cfg, "runs/reproduce/small", report="docs/results.md")   # doctest: +SKIP
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import shutil
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mote.atomic import atomic_write_json
from mote.files import append_log, read_log
from mote_lab.config import BASELINES, ExperimentConfig
from mote_lab.layout import DONE, EVAL_MARKER, MEASUREMENTS, TIMINGS, TRAIN_CONFIG, similarity_dir
from mote_lab.plan import EvalRun, Plan, TrainRun, make_plan


class ReproductionInterrupted(RuntimeError):
    """A training stopped on Ctrl-C / SIGTERM after saving a checkpoint; run the same command to continue."""


class StaleRunError(ValueError):
    """A finished run in the output folder was made with a different recipe than the one asked for now."""


def _say(msg: str) -> None:
    print(f"[reproduce] {msg}", flush=True)


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# ------------------------------------------------------------------------------------------------ training
def _recipe_differences(saved: Path, cfg) -> list[str] | None:
    """Sections of the run's recipe that differ from ``saved`` (``None`` if ``saved`` cannot be read)."""
    from mote.train import ConfigError, parse_config

    try:
        before = parse_config(yaml.safe_load(saved.read_text(encoding="utf-8")), str(saved), check_files=False)
    except (OSError, yaml.YAMLError, ConfigError):
        return None
    a, b = before.model_dump(mode="json"), cfg.model_dump(mode="json")
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def train_status(run: TrainRun, cfg) -> str:
    """``done`` | ``finished`` (model saved, no marker yet) | ``resume`` (checkpoints) | ``todo``; raises
    :class:`StaleRunError` when the folder holds a run of another recipe."""
    from transformers.trainer_utils import get_last_checkpoint

    marker = _read_json(run.dir / DONE)
    saved = run.model_dir / TRAIN_CONFIG
    if run.model_dir.is_dir() and saved.is_file():
        diff = _recipe_differences(saved, cfg)
        if diff is None or diff:
            what = "its recipe cannot be read" if diff is None else f"sections {diff} differ"
            raise StaleRunError(
                f"{run.dir} holds a finished {run.arm} run of another recipe ({what}); delete the folder to retrain "
                "it, or choose another --output"
            )
        return "done" if marker is not None and marker.get("run_id") else "finished"
    ckpts = run.dir / "checkpoints"
    if ckpts.is_dir() and get_last_checkpoint(str(ckpts)) is not None:
        return "resume"
    return "todo"


def _mark_done(run: TrainRun, wall_s: float | None, steps: int | None) -> dict[str, Any]:
    marker = {
        "run_id": uuid.uuid4().hex,
        "key": run.key,
        "steps": steps,
        "wall_s": wall_s,
        "finished": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    atomic_write_json(run.dir / DONE, marker)
    return marker


def select_key(exp: ExperimentConfig, run: TrainRun, source_marker: dict[str, Any] | None) -> str:
    """What a selected run depends on: its source run and the selection options."""
    cfg = exp.select_config(run.model, run.arm, run.seed)
    return _sha({"source": (source_marker or {}).get("run_id"), "select": cfg.model_dump(mode="json")})


def select(run: TrainRun, exp: ExperimentConfig, source_marker: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """Per-task selection of a selected arm's run (or reuse it); ``(what happened, done marker)``."""
    from mote.select.run import select_run

    key = select_key(exp, run, source_marker)
    marker = _read_json(run.dir / DONE)
    if run.model_dir.is_dir() and marker is not None and marker.get("select_key") == key:
        return "reused", marker
    t0 = time.perf_counter()
    cfg = exp.select_config(run.model, run.arm, run.seed)
    if run.source.point is not None:  # a point of a selected arm: the selection of the point's run at its step
        select_run(run.source.point.dir, run.model_dir, cfg, overwrite=True, at_step=run.source.at_step)
    else:
        select_run(run.source.dir, run.model_dir, cfg, overwrite=True)
    marker = {**_mark_done(run, round(time.perf_counter() - t0, 1), None), "select_key": key}
    atomic_write_json(run.dir / DONE, marker)
    return "selected", marker


class MissingSnapshotError(FileNotFoundError):
    """A point arm's source run has no weight snapshot at the point's step."""


def point_key(run: TrainRun, source_marker: dict[str, Any] | None) -> str:
    """What a point depends on: its source run and the step."""
    return _sha({"source": (source_marker or {}).get("run_id"), "point": run.at_step})


def snapshot_folder(run: TrainRun) -> Path:
    """A point arm's model: its source run's weight snapshot folder at ``run.at_step``, a model as it is."""
    from mote.train.snapshots import SNAPSHOTS

    return run.point.dir / SNAPSHOTS / f"step-{run.at_step}"


def model_folder(run: TrainRun) -> Path:
    """The folder a run's evaluations load: a point arm's snapshot folder (:func:`snapshot_folder`), else
    ``model/``."""
    return snapshot_folder(run) if run.point is not None else run.model_dir


def check_point(run: TrainRun, source_marker: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """A point arm (or reuse it): nothing is written but its done marker, since its model is the source run's
    weight snapshot at ``run.at_step``, which ``mote.api.load_snapshot`` loads as it is. Checks that the snapshot is
    there and opens as a model of its run (:func:`mote.api.snapshot_source`); raises :class:`MissingSnapshotError`
    when the source kept no snapshot at the step."""
    from mote.api import snapshot_source
    from mote.train.snapshots import list_snapshots

    key = point_key(run, source_marker)
    marker = _read_json(run.dir / DONE)
    if marker is not None and marker.get("point_key") == key:
        return "reused", marker
    src = run.point
    kept = list_snapshots(src.dir)
    if snapshot_folder(run).name not in kept:
        raise MissingSnapshotError(
            f"{src.dir} has no weight snapshot at step {run.at_step} for the point arm {run.arm} (it kept "
            f"{list(kept) or 'none'}): the run was trained before this point was asked for; delete {src.dir} to "
            f"retrain it (its recipe now keeps the snapshot), or give {run.arm} a step it kept")
    t0 = time.perf_counter()
    snapshot_source(snapshot_folder(run))
    marker = {**_mark_done(run, round(time.perf_counter() - t0, 1), run.at_step), "point_key": key}
    atomic_write_json(run.dir / DONE, marker)
    return "checked", marker


def load_model_folder(model_dir: Path, device: str = "cpu"):
    """A saved model folder as a ``SentenceTransformer`` (MoTE folders through ``mote.load``; a weight snapshot
    folder through ``mote.api.load_snapshot``: its run's model with the snapshot's weights)."""
    from sentence_transformers import SentenceTransformer

    import mote
    from mote.api import load_snapshot, snapshot_source
    from mote.model import CONFIG_NAME

    if snapshot_source(model_dir) is not None:
        return load_snapshot(model_dir, device=device)
    if (model_dir / CONFIG_NAME).is_file():
        return mote.load(model_dir, device=device)
    return SentenceTransformer(str(model_dir), device=device)


def train(run: TrainRun, exp: ExperimentConfig, trainer: Callable | None = None) -> tuple[str, dict[str, Any]]:
    """Train (or reuse, or resume) one run; returns ``(what happened, done marker)``."""
    cfg = exp.run_config(run.model, run.arm, run.seed, check_files=False)
    status = train_status(run, cfg)
    if status == "done":
        return "reused", _read_json(run.dir / DONE) or {}
    if status == "finished":
        return "marked", _mark_done(run, None, cfg.train.steps)
    if trainer is None:
        from mote.train import run_training as trainer
    result = trainer(cfg, run.dir, resume=status == "resume")
    if result.interrupted:
        raise ReproductionInterrupted(
            f"training {run.key} stopped at step {result.steps} (checkpoint saved); run the same command to continue"
        )
    marker = _mark_done(run, round(result.wall_s, 1), result.steps)
    if not exp.keep_checkpoints:
        shutil.rmtree(run.dir / "checkpoints", ignore_errors=True)
    return ("resumed" if status == "resume" else "trained"), marker


# ------------------------------------------------------------------------------------------------ evaluation
def block_routing(exp: ExperimentConfig, model: str):
    """The routing table (tasks and prefixes) of a block's runs: the IC baseline uses the same prefixes."""
    block = exp.models[model]
    arm = block.arms[0]
    return exp.run_config(model, arm, block.seeds_of(arm)[0], check_files=False).model.routing()


def first_module_type(model_dir: Path) -> str | None:
    """The class path of a saved sentence-transformers folder's first module (``modules.json``)."""
    modules = _read_json(model_dir / "modules.json")
    if not isinstance(modules, list) or not modules:
        return None
    return modules[0].get("type")


def _eval_mode(exp: ExperimentConfig, ev: EvalRun) -> str:
    """``dense`` / ``ic`` for the baselines; for a trained arm its ``eval_mode``, where ``detect`` means: a stock
    sentence-transformers model (first module from sentence_transformers) -> ``ic`` with the block's prefixes, any
    other (MoTE, TLR, TSEmbed, ...: the model routes tasks itself) -> ``auto``."""
    if ev.baseline:
        return BASELINES[ev.arm]
    mode = exp.arms[ev.arm].eval_mode
    if mode != "detect":
        return mode
    folder = ev.train.model_dir
    if ev.train.point is not None:  # a snapshot folder: its model files are its run's
        from mote.api import snapshot_source

        folder = snapshot_source(snapshot_folder(ev.train))[0]
    kind = first_module_type(folder) or ""
    if not kind.startswith("sentence_transformers."):
        return "auto"
    from mote.select.record import read_selection

    record = read_selection(folder)  # a dense model selected back to the base drops the prefixes
    return "dense" if record is not None and not record["choice"]["prepend"].get("*", True) else "ic"


def run_name(ev: EvalRun) -> str:
    """The label of an evaluation in results.json and compare tables (unique within a block)."""
    return ev.arm if ev.baseline else f"{ev.arm}@seed{ev.seed}"


def eval_inputs(exp: ExperimentConfig, ev: EvalRun) -> dict[str, Any]:
    """What an evaluation scores: ``datasets``, ``suite``, ``split``, ``routes``, ``data_dir`` (the validation suite
    of the runs' holdout for a validation evaluation, else the experiment's ``eval``)."""
    e = exp.eval
    if ev.validation:
        from mote.eval.validation import DATASETS, ROUTES, SPLIT, validation_dir

        return {"datasets": list(DATASETS), "suite": None, "split": SPLIT, "routes": dict(ROUTES),
                "data_dir": str(validation_dir(exp.validation_fraction()))}
    return {"datasets": e.datasets, "suite": e.suite if e.datasets is None else None, "split": e.split,
            "routes": e.routes, "data_dir": exp.eval_data_dir()}


def eval_key(exp: ExperimentConfig, ev: EvalRun, train_marker: dict[str, Any] | None) -> str:
    from mote.base_models import resolve_model_path

    what: dict[str, Any] = {**eval_inputs(exp, ev), "name": run_name(ev)}
    if ev.baseline:
        base = exp.models[ev.model].base
        what["model"] = {"base": base, "path": str(resolve_model_path(base)), "mode": BASELINES[ev.arm],
                         "prefixes": block_routing(exp, ev.model).prompts()}
    else:
        what["model"] = {"run_id": (train_marker or {}).get("run_id"), "mode": exp.arms[ev.arm].eval_mode}
    return _sha(what)


def load_model(exp: ExperimentConfig, ev: EvalRun, device: str):
    """The ``SentenceTransformer`` of an evaluation (MoTE folders through ``mote.load``)."""
    from sentence_transformers import SentenceTransformer

    from mote.base_models import resolve_model_path

    if ev.baseline:
        return SentenceTransformer(resolve_model_path(exp.models[ev.model].base), device=device)
    return load_model_folder(model_folder(ev.train), device)


def load_eval_encoder(exp: ExperimentConfig, ev: EvalRun, device: str):
    """The :class:`mote.eval.Encoder` that evaluates ``ev`` (base: dense; base-ic and dense arms: the block's
    prefixes; other arms: ``mote.eval.load_encoder``'s own detection on the model folder; a point arm's snapshot
    folder is loaded first, as its run's model with the snapshot's weights)."""
    from mote.eval import load_encoder

    mode = _eval_mode(exp, ev)
    if mode == "auto" and not ev.baseline:  # MoTE, TLR and TSEmbed folders are evaluated with their own routing
        spec = str(ev.train.model_dir) if ev.train.point is None else load_model(exp, ev, device)
        return load_encoder(spec, mode="auto", name=run_name(ev), device=device)
    routing = block_routing(exp, ev.model) if mode == "ic" else None
    return load_encoder(load_model(exp, ev, device), mode=mode, routing=routing, name=run_name(ev))


def eval_done(exp: ExperimentConfig, ev: EvalRun, train_marker: dict[str, Any] | None) -> bool:
    marker = _read_json(ev.dir / EVAL_MARKER)
    return (
        (ev.dir / "results.json").is_file()
        and marker is not None
        and marker.get("key") == eval_key(exp, ev, train_marker)
    )


def evaluate(exp: ExperimentConfig, ev: EvalRun, train_marker: dict[str, Any] | None, device: str,
             cache: Any) -> str:
    """Evaluate (or reuse) one run into ``ev.dir``; returns what happened."""
    from mote.eval import evaluate as run_eval

    if eval_done(exp, ev, train_marker):
        return "reused"
    encoder = load_eval_encoder(exp, ev, device)
    e = exp.eval
    what = eval_inputs(exp, ev)
    run_eval(
        encoder,
        suite=what["suite"] or e.suite,
        datasets=what["datasets"],
        output=ev.dir,
        routes=what["routes"] or None,
        data_dir=what["data_dir"],
        batch_size=e.batch_size,
        cache=cache,
        split=what["split"],
        overwrite=True,
        show_progress=sys.stderr.isatty(),
    )
    atomic_write_json(ev.dir / EVAL_MARKER, {"key": eval_key(exp, ev, train_marker), "name": run_name(ev)})
    return "evaluated"


# -------------------------------------------------------------------------------------- similarity, measurements
def _texts(exp: ExperimentConfig, datasets: list[str], per_dataset: int) -> list[str]:
    from mote.data import data_dir
    from mote_lab.texts import sample_texts

    return sample_texts(data_dir(exp.eval_data_dir()), datasets, per_dataset)


def similarity(plan: Plan, device: str, cache: Any, markers: dict[str, dict]) -> list[tuple[str, str, float]]:
    """Inter-task similarity of the configured runs (first seed of each), per block: ``(key, what, seconds)``."""
    from mote.eval import task_similarity

    exp = plan.config
    spec = exp.similarity
    done: list[tuple[str, str, float]] = []
    if not spec.enabled:
        return done
    texts = _texts(exp, spec.datasets, spec.texts_per_dataset)
    for model in exp.enabled_models():
        for name in spec.runs:
            ev = plan.first(model, name)
            if ev is None or not (ev.baseline or ev.train.key in markers):
                continue
            out = similarity_dir(plan, model, name)
            key = _sha({"eval": eval_key(exp, ev, markers.get(ev.train.key) if ev.train else None),
                        "texts": _sha(texts)})
            marker = _read_json(out / EVAL_MARKER)
            if (out / "similarity.json").is_file() and marker and marker.get("key") == key:
                done.append((f"{model}/similarity/{name}", "reused", 0.0))
                continue
            t0 = time.perf_counter()
            encoder = load_eval_encoder(exp, ev, device)
            task_similarity(encoder, texts, output=out, cache=cache, overwrite=True, show_progress=False)
            atomic_write_json(out / EVAL_MARKER, {"key": key})
            done.append((f"{model}/similarity/{name}", "measured", time.perf_counter() - t0))
    return done


def measurements(plan: Plan, markers: dict[str, dict], device: str = "cpu") -> tuple[str, dict[str, Any] | None]:
    """Parameters and encode throughput of every block's base and arms (first seed), in one process."""
    from mote_lab.measure import measure

    exp = plan.config
    spec = exp.throughput
    if not spec.enabled:
        return "disabled", None
    entries: list[tuple[str, str, EvalRun]] = []
    for model, block in exp.enabled_models().items():
        if "base" in block.baselines:
            entries.append((model, "base", EvalRun(model, "base", None, plan.root / model / "eval" / "base")))
        for arm in block.arms:
            ev = plan.first(model, arm)
            if ev is not None and ev.train.key in markers and exp.arm_step(arm) is None:  # a point: as its source
                entries.append((model, arm, ev))
    if not entries:
        return "nothing to measure", None
    texts = _texts(exp, spec.datasets, max(1, spec.texts // max(1, len(spec.datasets))))[: spec.texts]
    key = _sha({
        "runs": [(m, a, markers[ev.train.key]["run_id"] if ev.train else exp.models[m].base) for m, a, ev in entries],
        "spec": spec.model_dump(),
        "texts": _sha(texts),
        "device": device,
    })
    path = plan.root / MEASUREMENTS
    old = _read_json(path)
    if old and old.get("key") == key:
        return "reused", old
    t0 = time.perf_counter()
    models = {f"{m}/{a}": load_model(exp, ev, device) for m, a, ev in entries}
    routing = block_routing(exp, entries[0][0])
    res = measure(models, texts, routing=routing, rounds=spec.rounds, chunk=spec.chunk, batch_size=spec.batch_size,
                  threads=spec.threads)
    res["key"] = key
    res["device"] = device
    res["seconds"] = time.perf_counter() - t0
    atomic_write_json(path, res)
    return "measured", res


# ------------------------------------------------------------------------------------------------ the whole run
@dataclass
class Status:
    key: str
    kind: str  # train | select | point | eval | val
    state: str  # done | finished | resume | todo | stale | waiting


def plan_status(plan: Plan) -> list[Status]:
    """What each step would do now (for ``--dry-run``), without doing anything."""
    exp = plan.config
    out: list[Status] = []
    markers: dict[str, dict] = {}
    for step in plan.steps():
        if isinstance(step, TrainRun) and step.point is not None:
            marker = _read_json(step.dir / DONE)
            src = markers.get(step.point.key)
            state = "done" if (src is not None and marker is not None
                               and marker.get("point_key") == point_key(step, src)) else (
                "todo" if src is not None else "waiting")
            if state == "done":
                markers[step.key] = marker
            out.append(Status(step.key, "point", state))
        elif isinstance(step, TrainRun) and step.source is not None:
            marker = _read_json(step.dir / DONE)
            src = markers.get(step.source.key)
            state = "done" if (src is not None and marker is not None and step.model_dir.is_dir()
                               and marker.get("select_key") == select_key(exp, step, src)) else "todo"
            if state == "done":
                markers[step.key] = marker
            out.append(Status(step.key, "select", state))
        elif isinstance(step, TrainRun):
            try:
                state = train_status(step, exp.run_config(step.model, step.arm, step.seed, check_files=False))
            except StaleRunError:
                state = "stale"
            if state == "done":
                markers[step.key] = _read_json(step.dir / DONE) or {}
            out.append(Status(step.key, "train", state))
        else:
            kind = "val" if step.validation else "eval"
            if step.train is not None and step.train.key not in markers:
                out.append(Status(step.key, kind, "waiting"))
                continue
            marker = markers.get(step.train.key) if step.train else None
            out.append(Status(step.key, kind, "done" if eval_done(exp, step, marker) else "todo"))
    return out


def _log_time(root: Path, key: str, kind: str, what: str, seconds: float) -> None:
    root.mkdir(parents=True, exist_ok=True)
    entry = {"key": key, "kind": kind, "what": what, "seconds": round(seconds, 2),
             "at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
    read_log(root / TIMINGS, repair=True)  # a torn last line (a killed run) would swallow this entry
    append_log(root / TIMINGS, entry)


def run_reproduction(
    exp: ExperimentConfig,
    root: str | Path,
    *,
    report: str | Path | None = None,
    trainer: Callable | None = None,
) -> Plan:
    """Train, evaluate and measure everything of ``exp`` under ``root`` (resumably), then write the report.

    ``trainer`` replaces :func:`mote.train.run_training` (tests count calls with it).
    """
    from mote.eval import EmbeddingCache

    plan = make_plan(exp, root)
    plan.root.mkdir(parents=True, exist_ok=True)
    atomic_write_json(plan.root / "experiment.json", exp.model_dump(mode="json", exclude={"recipe_raw"}))
    device = resolve_device(exp.device)
    if exp.eval.validation is not None:  # the recipe-selection suite (kept when already built alike)
        from mote.data import data_dir
        from mote.eval.validation import build_validation_suite

        build_validation_suite(data_dir(exp.train_data_dir()), exp.eval_data_dir(), exp.eval.validation)
    if exp.eval.also_validation:  # the validation suite of the runs' holdout, scored next to the test datasets
        from mote.data import data_dir
        from mote.eval.validation import build_validation_suite, validation_dir

        fraction = exp.validation_fraction()
        build_validation_suite(data_dir(exp.train_data_dir()), validation_dir(fraction), fraction)
    steps = plan.steps()
    t_start = time.perf_counter()
    _say(f"{exp.name}: budget {exp.budget or '-'}, {len(plan.trainings)} trainings and {len(plan.evaluations)} "
         f"evaluations under {plan.root} (evaluation device {device})")
    c = exp.eval.cache
    cache = EmbeddingCache(c) if isinstance(c, str) else EmbeddingCache() if c else None
    markers: dict[str, dict] = {}
    try:
        for i, step in enumerate(steps, 1):
            t0 = time.perf_counter()
            kind = (("validate" if step.validation else "eval") if not isinstance(step, TrainRun) else
                    "point" if step.point is not None else "select" if step.source is not None else "train")
            head = f"({i}/{len(steps)}) {kind} {step.key}"
            if isinstance(step, TrainRun) and step.point is not None:
                _say(f"{head} (step {step.at_step} of {step.point.key}) ...")
                what, marker = check_point(step, markers.get(step.point.key))
                markers[step.key] = marker
            elif isinstance(step, TrainRun) and step.source is not None:
                _say(f"{head} (select from {step.source.key}) ...")
                what, marker = select(step, exp, markers.get(step.source.key))
                markers[step.key] = marker
            elif isinstance(step, TrainRun):
                _say(f"{head} ...")
                try:
                    what, marker = train(step, exp, trainer)
                except ReproductionInterrupted:
                    _log_time(plan.root, step.key, kind, "interrupted", time.perf_counter() - t0)
                    raise
                markers[step.key] = marker
            else:
                what = evaluate(exp, step, markers.get(step.train.key) if step.train else None, device, cache)
            dt = time.perf_counter() - t0
            if what != "reused":
                _log_time(plan.root, step.key, kind, what, dt)
            _say(f"{head}: {what}" + ("" if what == "reused" else f" in {dt:.0f} s") +
                 f"  [elapsed {(time.perf_counter() - t_start) / 60:.1f} min]")
        for key, what, seconds in similarity(plan, device, cache, markers):
            _say(f"{key}: {what}" + ("" if what == "reused" else f" in {seconds:.0f} s"))
            if what != "reused":
                _log_time(plan.root, key, "similarity", what, seconds)
        t0 = time.perf_counter()
        what, _ = measurements(plan, markers, device)
        dt = time.perf_counter() - t0
        _say(f"parameters and encode throughput: {what}" + (f" in {dt:.0f} s" if what == "measured" else ""))
        if what == "measured":
            _log_time(plan.root, "measurements", "measure", what, dt)
    finally:
        if cache is not None:
            cache.close()
    if report is not None:
        from mote_lab.report import write_report

        t0 = time.perf_counter()
        path = write_report(plan, report)
        _say(f"report: {path} ({time.perf_counter() - t0:.0f} s)")
    _say(f"finished in {(time.perf_counter() - t_start) / 60:.1f} min")
    return plan


__all__ = [
    "DONE",
    "EVAL_MARKER",
    "MissingSnapshotError",
    "ReproductionInterrupted",
    "StaleRunError",
    "check_point",
    "model_folder",
    "plan_status",
    "resolve_device",
    "run_reproduction",
    "train",
    "train_status",
]
