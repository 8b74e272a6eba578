"""The experiment file of ``mote-lab reproduce``: validated up front into an :class:`ExperimentConfig` (pydantic).

One YAML file is one complete experiment (the lab's are ``lab/budgets/<budget>.yaml``, one file per budget, whose
name is the file's stem): a training recipe (a ``mote train`` config) with the values every run changes in it
(``training:``), the arms (each one a training method of ``mote.methods`` with its settings, plus recipe overrides),
the base models ("blocks") with their arms and seeds, the evaluation datasets and split, the similarity and
throughput measurements, and the report.

Every problem is collected and reported at once in one :class:`ExperimentConfigError`: unknown keys, unknown arms,
methods not registered in ``mote.methods``, seeds, names unfit for folders, and every problem of every run's
training recipe (``mote.train.parse_config`` with its data checks), prefixed with the run it belongs to.

The arm list is data: an arm is ``{method: <a registered method, or {name: ..., <its settings>}>, label: ...,
overrides: {...}}``; a new method (say ``tsembed``) needs only a new entry here. A run's recipe is the recipe file,
then ``training:``, the block's ``training:`` and the arm's ``overrides:`` (mappings merge key by key, anything
else replaces); its ``method:`` section is the arm's method with its settings (over :data:`LAB_BASE_METHOD`'s
settings that the method has).

Example::

    recipe: mote-minilm.yaml               # relative to this file
    training: {train: {steps: 1600}, data: {holdout: 0.1}}    # for every run
    arms:
      ic: {method: ic}
      mote: {method: {name: mote, placement: every-other}, label: mote (EOB)}
      mote-400: {point_of: mote, at_step: 400}        # learning-curve point: mote's run at step 400 (not retrained)
      mote-sel: {select_from: mote}                   # per-task selection of the run
      mote-sel-400: {point_of: mote-sel, at_step: 400}  # that selection made at step 400 (from mote-400)
    models:
      minilm-l6: {base: all-MiniLM-L6-v2, arms: [ic, mote, mote-400, mote-sel, mote-sel-400], seeds: [42]}
    eval: {datasets: [STSBenchmark, WikiQARetrieval], split: test, also_validation: true}

    >>> cfg = load_experiment("lab/budgets/small.yaml")        # doctest: +SKIP
    >>> cfg.budget, list(cfg.models)                            # doctest: +SKIP
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

BASELINES: dict[str, str] = {"base": "dense", "base-ic": "ic"}  # untrained evaluations: name -> eval mode
BASELINE_LABELS: dict[str, str] = {"base": "base", "base-ic": "base+prefix"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class ExperimentConfigError(ValueError):
    """An experiment file with problems; ``problems`` lists every one of them."""

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = problems
        where = f" in {source}" if source else ""
        super().__init__(f"{len(problems)} problem(s){where}:\n" + "\n".join(f"  - {p}" for p in problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ArmSpec(_Strict):
    """One arm of the comparison: a training method (with its settings) and what differs in its recipe."""

    # the method: a registered name, or {name: ..., <its settings>} (default: this arm's own name)
    method: str | dict[str, Any] | None = None
    label: str | None = None  # how tables and plots name it (default: its name)
    description: str = ""
    overrides: dict[str, Any] = Field(default_factory=dict)  # deep-merged into the recipe
    eval_mode: Literal["detect", "auto", "ic", "dense"] = "detect"  # detect: a MoTE folder -> auto, else ic
    # A selected arm is not trained: it is per-task selection (mote.select) of another arm's run of the same seed,
    # with these `select:` options over that run's recipe.
    select_from: str | None = None
    select: dict[str, Any] = Field(default_factory=dict)
    # A point arm is not trained either: it is another arm's run as it stood at optimiser step ``at_step`` (a point of
    # a learning curve). A point of a trained arm is that run's weight snapshot folder at the step, evaluated as it is
    # (the source run keeps snapshots at every step its points name); a point of a selected arm is the selection of
    # the source run at the same step (``mote select --at-step``; the block must list the trained arm's point too).
    point_of: str | None = None
    at_step: int | None = Field(default=None, gt=0)


class ModelSpec(_Strict):
    """A block of the experiment: one base model, the arms trained from it, their seeds."""

    base: str
    label: str | None = None
    enabled: bool = True
    arms: list[str] = Field(min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [42], min_length=1)
    arm_seeds: dict[str, list[int]] = Field(default_factory=dict)  # per-arm seeds (replace ``seeds``)
    baselines: list[Literal["base", "base-ic"]] = Field(default_factory=lambda: ["base", "base-ic"])
    training: dict[str, Any] = Field(default_factory=dict)  # recipe overrides for this block's runs

    def seeds_of(self, arm: str) -> list[int]:
        return list(self.arm_seeds.get(arm, self.seeds))


class EvalSpec(_Strict):
    """What every model is evaluated on (one list for every arm, so the tables are comparable)."""

    suite: str = "default"
    datasets: list[str] | None = None  # overrides suite
    split: str = "test"  # passed explicitly: "test", or "auto" (MTEB's split, e.g. TwitterURLCorpus 51k pairs)
    routes: dict[str, str] = Field(default_factory=dict)
    batch_size: int = Field(default=32, gt=0)
    data_dir: str | None = None  # default: the recipe's data.data_dir, else $MOTE_DATA / ../shared/data
    cache: str | bool = True  # embedding cache: true (default location), a folder, or false
    # Recipe selection: hold out this fraction of every training set (data.holdout of every run) and evaluate on
    # mote.eval.validation's suite built from those rows (split "validation"), never on a test set.
    validation: float | None = Field(default=None, gt=0, lt=1)
    # Score every evaluated run (baselines included) on the validation suite as well (both groups: the rows the
    # runs' data.holdout kept out, and the out-of-domain sources), next to the test datasets: <block>/eval-validation/
    also_validation: bool = False


class SimilaritySpec(_Strict):
    """Inter-task cosine-similarity heatmaps (mote.eval.task_similarity) of some runs (first seed)."""

    enabled: bool = True
    runs: list[str] = Field(default_factory=lambda: ["base-ic", "ic", "mote"])  # arms or baselines
    datasets: list[str] = Field(default_factory=lambda: ["STSBenchmark", "Banking77Classification",
                                                           "WikiQARetrieval", "TwentyNewsgroupsClustering"])
    texts_per_dataset: int = Field(default=64, gt=0)


class ThroughputSpec(_Strict):
    """Encode throughput of every arm (first seed) and the base, side by side in one process, same texts."""

    enabled: bool = True
    datasets: list[str] = Field(default_factory=lambda: ["STSBenchmark", "Banking77Classification"])
    texts: int = Field(default=512, gt=0)
    rounds: int = Field(default=3, gt=0)
    chunk: int = Field(default=128, gt=0)
    batch_size: int = Field(default=32, gt=0)
    threads: int | None = Field(default=None, gt=0)  # torch threads while measuring (default: as is)


class ReportSpec(_Strict):
    path: str = "docs/results.md"  # where `mote-lab reproduce` writes the report (--report overrides)
    title: str = "Results"
    significance: list[list[str]] = Field(default_factory=lambda: [["mote", "ic"]])  # [arm, against]
    headline_category: str = "Retrieval"
    n_boot: int = Field(default=1000, gt=0)
    bootstrap_seed: int = 0
    copy_raw: bool = True  # copy every results.json next to the report (raw/)
    notes: list[str] = Field(default_factory=list)  # markdown paragraphs after the headline (context, caveats)


class ExperimentConfig(_Strict):
    """The whole experiment (one file)."""

    name: str = "experiment"
    description: str = ""
    recipe: str | None = None  # a mote train YAML, relative to the experiment file (or absolute)
    training: dict[str, Any] = Field(default_factory=dict)  # overrides for every run
    arms: dict[str, ArmSpec] = Field(min_length=1)
    models: dict[str, ModelSpec] = Field(min_length=1)
    eval: EvalSpec = Field(default_factory=EvalSpec)
    similarity: SimilaritySpec = Field(default_factory=SimilaritySpec)
    throughput: ThroughputSpec = Field(default_factory=ThroughputSpec)
    report: ReportSpec = Field(default_factory=ReportSpec)
    device: str = "auto"  # evaluation device: auto (cuda if available) | cpu | cuda | cuda:N
    keep_checkpoints: bool = False  # a finished run keeps model/ only (checkpoints matter only while it runs)

    # filled in by load_experiment / parse_experiment
    source: str | None = None
    budget: str | None = None  # the experiment's short name (the file's stem): runs go to <output>/<budget>
    recipe_raw: dict[str, Any] = Field(default_factory=dict)

    # ------------------------------------------------------------------------------------------- derived
    def arm_label(self, arm: str) -> str:
        if arm in BASELINES:
            return BASELINE_LABELS[arm]
        spec = self.arms[arm]
        if spec.label is None and spec.point_of in self.arms and spec.at_step is not None:
            return f"{self.arm_label(spec.point_of)} @{spec.at_step}"
        return spec.label or arm

    def train_method(self, arm: str) -> str:
        """The name of the method that trains ``arm``'s runs (its source arm's)."""
        source = self.source_arm(arm)
        method = self.arms[source].method
        name = method.get("name") if isinstance(method, Mapping) else method
        return name if isinstance(name, str) else source

    def _lineage(self, arm: str) -> list[str]:
        """``arm``, then the arm it is selected from or a point of, and so on up to a trained arm."""
        chain = [arm]
        while True:
            spec = self.arms[chain[-1]]
            up = spec.select_from if spec.select_from is not None else spec.point_of
            if up is None or up not in self.arms or up in chain:
                return chain
            chain.append(up)

    def source_arm(self, arm: str) -> str:
        """The trained arm whose runs ``arm`` derives from (itself unless it is a selected or a point arm)."""
        return self._lineage(arm)[-1]

    def is_snapshot_point(self, arm: str) -> bool:
        """A point of a trained arm: its model is that run's weight snapshot (not a selection)."""
        spec = self.arms.get(arm)
        return spec is not None and spec.point_of is not None and spec.select_from is None

    def arm_step(self, arm: str) -> int | None:
        """The optimiser step of the source run that ``arm``'s model stands at: a point's ``at_step`` (a selected
        arm: its source's), ``None`` for the end of the run."""
        if arm not in self.arms:
            return None
        for a in self._lineage(arm):
            spec = self.arms[a]
            if spec.point_of is not None:
                return spec.at_step
            if spec.select_from is None:
                return None
        return None

    def point_steps(self, model: str, arm: str) -> list[int]:
        """The steps at which block ``model`` takes snapshot points of the trained arm ``arm``."""
        block = self.models[model]
        return sorted({s.at_step for a in block.arms if (s := self.arms.get(a)) is not None
                       and s.point_of == arm and s.select_from is None and s.at_step is not None})

    def validation_fraction(self) -> float | None:
        """The ``data.holdout`` of the runs (what ``eval.also_validation`` scores), from the first run's recipe."""
        for mname, block in self.enabled_models().items():
            for arm in block.arms:
                if arm in self.arms:
                    holdout = (self.run_recipe(mname, arm, block.seeds_of(arm)[0]).get("data") or {}).get("holdout")
                    return float(holdout) if holdout else None
        return None

    def select_config(self, model: str, arm: str, seed: int):
        """The :class:`mote.select.SelectConfig` of a selected arm: the source recipe's ``select:`` + the arm's."""
        from mote.select.config import SelectConfig

        raw = self.run_recipe(model, self.source_arm(arm), seed).get("select") or {}
        return SelectConfig.model_validate(deep_merge({k: v for k, v in raw.items() if k != "enabled"},
                                                      self.arms[arm].select))

    def enabled_models(self) -> dict[str, ModelSpec]:
        return {k: m for k, m in self.models.items() if m.enabled}

    def run_recipe(self, model: str, arm: str, seed: int) -> dict[str, Any]:
        """The raw training recipe of one run: recipe < training < block training < arm overrides < base/seed
        (a selected arm: its source arm's recipe)."""
        arm = self.source_arm(arm)
        block = self.models[model]
        raw = deep_merge(deep_merge(LAB_BASE, self.recipe_raw), self.training)
        raw = deep_merge(raw, block.training)
        raw = deep_merge(raw, self.arms[arm].overrides)
        raw = deep_merge(raw, {"model": {"base": block.base}, "seed": seed})
        raw["method"] = self._run_method(arm, block)
        if self.eval.validation is not None:  # the validation rows are never trained on
            raw = deep_merge(raw, {"data": {"holdout": self.eval.validation}})
        points = self.point_steps(model, arm)
        if points:  # the run keeps a weight snapshot at every step a point of it stands at
            steps = (raw.get("train") or {}).get("steps") or _default_steps()
            select = raw.get("select") or {}
            kept = list(select.get("snapshots", _default_snapshots()))
            wanted = sorted(set(kept) | {s / steps for s in points if 0 < s < steps})
            raw = deep_merge(raw, {"select": {"snapshots": wanted}})
        return raw

    def _run_method(self, arm: str, block: ModelSpec) -> dict[str, Any]:
        """The ``method:`` section of a run of the trained arm ``arm`` (see the module doc for the order)."""
        from mote.methods import METHODS, method_config_class

        name = self.train_method(arm)
        fields = method_config_class(name).model_fields if name in METHODS else {}
        settings = {k: v for k, v in LAB_BASE_METHOD.items() if k in fields}
        for layer in (self.recipe_raw, self.training, block.training, self.arms[arm].overrides,
                      {"method": self.arms[arm].method}):
            value = layer.get("method")
            if isinstance(value, Mapping):
                settings = deep_merge(settings, {k: v for k, v in value.items() if k != "name"})
        return {"name": name, **settings}

    def run_config(self, model: str, arm: str, seed: int, check_files: bool = True):
        """The validated :class:`mote.train.RunConfig` of one run."""
        from mote.train import parse_config

        return parse_config(self.run_recipe(model, arm, seed), f"{model}/{arm}/seed-{seed}", check_files)

    def train_data_dir(self) -> str | None:
        return (self.training.get("data") or {}).get("data_dir") or (self.recipe_raw.get("data") or {}).get(
            "data_dir")

    def eval_data_dir(self) -> str | None:
        if self.eval.validation is not None:
            return str(validation_dir(self.eval.validation))
        return self.eval.data_dir or (self.recipe_raw.get("data") or {}).get("data_dir") or (
            self.training.get("data") or {}
        ).get("data_dir")


# What every lab run starts from, under its recipe: the library's defaults when the experiments ran (the library's
# defaults are now the validated recipe, docs/selection.md), so that every budget resolves to the recipes its reports
# were made with. The lab trains and selects as separate steps (a selected arm selects its source arm's run), so its
# training runs never select, and its selections use the fixed shared suite (mote.eval.validation).
LAB_BASE: dict[str, Any] = {
    "model": {"max_seq_length": 128},
    "train": {"steps": 200, "batch_size": 32, "learning_rate": 2e-5},
    "data": {"holdout": 0.0},
    "select": {"enabled": False, "suite": "shared", "consolidate": {"scored": True}},
}


# The method settings every lab run starts from, for the methods that have them: experts at every other layer (EOB),
# every weight trained (the library's default is now the experts only).
LAB_BASE_METHOD: dict[str, Any] = {"placement": "every-other", "trainable": "all"}


def _default_steps() -> int:
    return LAB_BASE["train"]["steps"]


def _default_snapshots() -> list[float]:
    from mote.select.config import SelectConfig

    return list(SelectConfig().snapshots)


def validation_dir(fraction: float) -> Path:
    """Where the validation suite of a holdout fraction lives (:func:`mote.eval.validation.validation_dir`)."""
    from mote.eval.validation import validation_dir as where

    return where(fraction)


def _apply_validation(raw: dict[str, Any]) -> dict[str, Any]:
    """With ``eval.validation``: the validation suite's datasets, split and routes (explicit ones win)."""
    ev = raw.get("eval")
    if not isinstance(ev, Mapping) or ev.get("validation") is None:
        return raw
    from mote.eval.validation import DATASETS, ROUTES, SPLIT

    ev = dict(ev)
    if ev.get("datasets") is None:
        ev["datasets"] = list(DATASETS)
    ev["split"] = SPLIT
    ev["routes"] = {**ROUTES, **(ev.get("routes") or {})}
    return {**raw, "eval": ev}


# ------------------------------------------------------------------------------------------------ merging
def deep_merge(base: Mapping[str, Any], overlay: Mapping[str, Any] | None) -> dict[str, Any]:
    """``overlay`` over ``base``: mappings merge key by key, anything else (lists too) replaces.

    >>> deep_merge({"a": {"b": 1, "c": [1]}}, {"a": {"c": [2]}, "d": 3})
    {'a': {'b': 1, 'c': [2]}, 'd': 3}
    """
    out = copy.deepcopy(dict(base))
    for key, value in (overlay or {}).items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# ------------------------------------------------------------------------------------------------ validation
def _pydantic_problems(err: ValidationError) -> list[str]:
    out = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"])
        got = e.get("input")
        shown = "" if e["type"] in ("missing",) or isinstance(got, dict) else f" (got {got!r})"
        out.append(f"{loc or 'config'}: {e['msg'].removeprefix('Value error, ')}{shown}")
    return out


def _known_methods() -> tuple[str, ...]:
    from mote.methods import METHODS

    return tuple(METHODS)


def _dataset_problems(cfg: ExperimentConfig) -> list[str]:
    """Evaluation / similarity / throughput datasets that the data folder lacks, and missing splits."""
    from mote.data import data_dir
    from mote.eval import datasets as ds

    if cfg.eval.validation is not None:  # build (or reuse) the suite from the training data
        from mote.eval.validation import build_validation_suite

        try:
            build_validation_suite(data_dir(cfg.train_data_dir()), cfg.eval_data_dir(), cfg.eval.validation)
        except (FileNotFoundError, ValueError) as e:
            return [f"eval.validation: cannot build the validation suite: {e}"]
    try:
        root = data_dir(cfg.eval_data_dir())
    except FileNotFoundError as e:
        return [f"eval.data_dir: {e}"]
    try:
        available = ds.discover(root)
    except ds.DatasetFormatError as e:
        return [f"eval: {e}"]
    problems = []
    if cfg.eval.datasets is None and cfg.eval.suite not in ds.SUITES:
        problems.append(f"eval.suite: unknown suite {cfg.eval.suite!r}; choose one of {ds.SUITES} or list datasets")
    wanted = {"eval.datasets": cfg.eval.datasets or []}
    if cfg.similarity.enabled:
        wanted["similarity.datasets"] = cfg.similarity.datasets
    if cfg.throughput.enabled:
        wanted["throughput.datasets"] = cfg.throughput.datasets
    for where, names in wanted.items():
        unknown = [n for n in names if n not in available]
        if unknown:
            problems.append(f"{where}: unknown evaluation dataset(s) {unknown} in {root}; available: "
                            f"{', '.join(sorted(available))}")
    chosen = [available[n] for n in cfg.eval.datasets or [] if n in available]
    if cfg.eval.datasets is None and cfg.eval.suite in ds.SUITES:
        chosen = ds.select(available, cfg.eval.suite)
    for info in chosen:
        try:
            split = info.resolve_split(cfg.eval.split)
            if info.task_type != "Retrieval":
                ds.split_file(info, split)
            elif not (info.path / "qrels" / f"{split}.tsv").is_file():
                raise FileNotFoundError(f"Dataset {info.name!r} has no qrels/{split}.tsv")
        except (FileNotFoundError, ds.DatasetFormatError) as e:
            problems.append(f"eval.split: {e}")
    return problems


def _semantic_problems(cfg: ExperimentConfig, check_files: bool) -> list[str]:
    problems: list[str] = []
    known = _known_methods()
    for name, spec in cfg.arms.items():
        if not _NAME.match(name):
            problems.append(f"arms.{name}: a name must be letters, digits, '.', '_' or '-' (it names folders)")
        if name in BASELINES:
            problems.append(f"arms.{name}: {sorted(BASELINES)} name the untrained baselines; choose another name")
        if spec.select_from is not None:
            if spec.select_from not in cfg.arms or cfg.arms[spec.select_from].select_from is not None:
                problems.append(f"arms.{name}.select_from: {spec.select_from!r} is not a trained arm of arms "
                                f"({[a for a, s in cfg.arms.items() if s.select_from is None]})")
            try:
                from mote.select.config import SelectConfig

                SelectConfig.model_validate({k: v for k, v in spec.select.items() if k != "enabled"})
            except ValidationError as e:
                problems += [f"arms.{name}.select.{p}" for p in _pydantic_problems(e)]
        elif spec.point_of is None and cfg.train_method(name) not in known:  # point arms: _point_problems
            problems.append(f"arms.{name}: unknown method {cfg.train_method(name)!r}; known: {list(known)}")
    problems += _point_problems(cfg)
    for mname, block in cfg.models.items():
        if not _NAME.match(mname):
            problems.append(f"models.{mname}: a name must be letters, digits, '.', '_' or '-' (it names folders)")
        missing = [a for a in block.arms if a not in cfg.arms]
        if missing:
            problems.append(f"models.{mname}.arms: {missing} not defined under arms ({list(cfg.arms)})")
        if len(set(block.arms)) < len(block.arms):
            problems.append(f"models.{mname}.arms: an arm is listed twice")
        for i, arm in enumerate(block.arms):
            pt = cfg.arms[arm].point_of if arm in cfg.arms else None
            if pt is not None and pt in cfg.arms and pt not in (block.arms[:i] if cfg.is_snapshot_point(arm) else
                                                                  block.arms):
                problems.append(f"models.{mname}.arms: {arm} is a point of {pt}, which must be listed "
                                + ("before it" if cfg.is_snapshot_point(arm) else "in the block too"))
            elif pt is not None and pt in cfg.arms and block.seeds_of(arm) != block.seeds_of(pt)[
                    : len(block.seeds_of(arm))]:
                problems.append(f"models.{mname}: the seeds of {arm} must be seeds of {pt}")
            src = cfg.arms[arm].select_from if arm in cfg.arms else None
            if src is not None and src not in block.arms[:i]:
                problems.append(f"models.{mname}.arms: {arm} selects from {src}, which must be listed before it")
            elif src is not None and block.seeds_of(arm) != block.seeds_of(src)[: len(block.seeds_of(arm))]:
                problems.append(f"models.{mname}: the seeds of {arm} must be seeds of {src}")
        for arm, seeds in block.arm_seeds.items():
            if arm not in block.arms:
                problems.append(f"models.{mname}.arm_seeds.{arm}: not an arm of this block ({block.arms})")
            if not seeds:
                problems.append(f"models.{mname}.arm_seeds.{arm}: needs at least one seed")
        for arm in block.arms:
            seeds = block.seeds_of(arm)
            if len(set(seeds)) < len(seeds):
                problems.append(f"models.{mname}: seeds of {arm} repeat ({seeds})")
    enabled = cfg.enabled_models()
    if not enabled:
        problems.append("models: every block is disabled (enabled: false)")
    names = {a for b in enabled.values() for a in b.arms} | set(BASELINES)
    if cfg.similarity.enabled:
        bad = [r for r in cfg.similarity.runs if r not in names]
        if bad:
            problems.append(f"similarity.runs: {bad} are neither arms of an enabled block nor {sorted(BASELINES)}")
    for i, pair in enumerate(cfg.report.significance):
        if len(pair) != 2 or any(p not in cfg.arms and p not in BASELINES for p in pair):
            problems.append(f"report.significance[{i}]: needs [arm, other arm or baseline], got {pair}")
    if cfg.device != "auto" and not re.fullmatch(r"cpu|cuda(:\d+)?|mps", cfg.device):
        problems.append(f"device: {cfg.device!r} is not auto, cpu, cuda, cuda:N or mps")
    # every run's training recipe, with mote.train's own validation (data files included)
    from mote.train import ConfigError

    if cfg.recipe_raw or cfg.training:
        recipe_problems: dict[str, list[str]] = {}  # one line per problem, naming every run that has it
        for mname, block in enabled.items():
            for arm in block.arms:
                spec = cfg.arms.get(arm)
                if (spec is None or spec.select_from is not None or spec.point_of is not None
                        or cfg.train_method(arm) not in known):
                    continue
                seed = block.seeds_of(arm)[0] if block.seeds_of(arm) else 0
                try:
                    cfg.run_config(mname, arm, seed, check_files=check_files)
                except ConfigError as e:
                    for p in e.problems:
                        recipe_problems.setdefault(p, []).append(f"{mname}/{arm}")
        problems += [f"training recipe of {', '.join(runs)}: {p}" for p, runs in recipe_problems.items()]
    else:
        problems.append("recipe: no training recipe (give recipe: FILE and/or a training: section)")
    if cfg.eval.also_validation and not problems:
        problems += _also_validation_problems(cfg)
    if check_files:
        problems += _dataset_problems(cfg)
    return problems


def _resolve_points(cfg: ExperimentConfig) -> list[str]:
    """Give every point of a selected arm its selection: from the point of that arm's source at the same step
    (``select_from``), with the selected arm's ``select`` options. Returns the problems found."""
    problems = []
    for name, spec in list(cfg.arms.items()):
        if spec.point_of is not None and (spec.select_from is not None or spec.select):
            problems.append(f"arms.{name}: a point arm takes its model (and a point of a selected arm its selection) "
                            f"from {spec.point_of}: give it no select_from / select of its own")
            continue
        if spec.point_of is None or spec.point_of not in cfg.arms:
            continue
        of = cfg.arms[spec.point_of]
        if of.select_from is None or of.point_of is not None:
            continue
        found = [a for a, s in cfg.arms.items() if s.point_of == of.select_from and s.select_from is None
                 and s.at_step == spec.at_step]
        if len(found) != 1:
            what = "no arm" if not found else f"several arms ({found})"
            problems.append(
                f"arms.{name}: a point of the selected arm {spec.point_of} selects from the point of "
                f"{of.select_from} at step {spec.at_step}, and {what} is that point: define one arm "
                f"{{point_of: {of.select_from}, at_step: {spec.at_step}}} and list it before {name}")
            continue
        cfg.arms[name] = spec.model_copy(update={"select_from": found[0], "select": copy.deepcopy(of.select)})
    return problems


def _point_problems(cfg: ExperimentConfig) -> list[str]:
    """Point arms: a known trained or selected arm, a step inside its run, snapshots the method keeps."""
    problems = []
    for name, spec in cfg.arms.items():
        if spec.point_of is None and spec.at_step is None:
            continue
        where = f"arms.{name}"
        if spec.point_of is None or spec.at_step is None:
            problems.append(f"{where}: a point arm needs both point_of (an arm) and at_step (its optimiser step)")
            continue
        of = cfg.arms.get(spec.point_of)
        if of is None or of.point_of is not None:
            problems.append(f"{where}.point_of: {spec.point_of!r} is not a trained or selected arm of arms "
                            f"({[a for a, s in cfg.arms.items() if s.point_of is None]})")
            continue
        own = [k for k in ("method", "overrides") if getattr(spec, k)]
        if own:
            problems.append(f"{where}: a point arm takes its model from {spec.point_of}'s run, so it has no {own} "
                            "of its own (give them to the arm it is a point of)")
        trained = cfg.source_arm(name)
        if trained not in cfg.arms or cfg.arms[trained].select_from is not None:
            continue
        for mname, block in cfg.enabled_models().items():
            if name not in block.arms or trained not in block.arms:
                continue
            from mote.train import ConfigError

            try:
                run = cfg.run_config(mname, trained, block.seeds_of(trained)[0], check_files=False)
            except ConfigError:  # the recipe's own problems are reported with the recipes
                continue
            if spec.at_step >= run.train.steps:
                problems.append(
                    f"{where}.at_step: {spec.at_step} is not inside {trained}'s run of {run.train.steps} steps in "
                    f"block {mname} (the final step is {spec.point_of} itself): choose a step below "
                    f"{run.train.steps}")
            elif not run.training_method().keeps_snapshots:
                problems.append(f"{where}: the {run.method.name} method keeps no weight snapshots, so it has no "
                                "points; drop the point arm")
    return problems


def _also_validation_problems(cfg: ExperimentConfig) -> list[str]:
    """``eval.also_validation`` needs rows every run held out, and no out-of-domain source trained on."""
    from mote.select.config import SelectConfig, recipe_problems

    if cfg.eval.validation is not None:
        return ["eval.also_validation: eval.validation already evaluates on the validation suite; drop one"]
    holdouts = set()
    problems: dict[str, list[str]] = {}
    for mname, block in cfg.enabled_models().items():
        for arm in block.arms:
            if cfg.source_arm(arm) != arm:
                continue
            run = cfg.run_config(mname, arm, block.seeds_of(arm)[0], check_files=False)
            holdouts.add(run.data.holdout)
            if run.data.holdout <= 0:
                problems.setdefault("the in-domain validation rows are the rows data.holdout keeps out of training, "
                                    "but this run trains on every row: give training: {data: {holdout: 0.1}}",
                                    []).append(f"{mname}/{arm}")
            for p in recipe_problems(run, SelectConfig(validation="ood", suite="shared")):
                problems.setdefault(p, []).append(f"{mname}/{arm}")
    out = [f"eval.also_validation (runs {', '.join(r)}): {p}" for p, r in problems.items()]
    if len(holdouts) > 1:
        out.append(f"eval.also_validation: the runs hold out different fractions {sorted(holdouts)}; give every "
                   "run the same data.holdout (e.g. training: {data: {holdout: 0.1}})")
    return out


def parse_experiment(
    raw: Mapping[str, Any] | None,
    source: str | os.PathLike | None = None,
    budget: str | None = None,
    check_files: bool = True,
) -> ExperimentConfig:
    """Validate an experiment mapping; one :class:`ExperimentConfigError` lists every problem.

    ``source`` is the experiment file (its folder resolves a relative ``recipe``); ``budget`` the experiment's short
    name (default: the file's stem). ``check_files=False`` skips the checks that read the data folder.
    """
    where = str(source) if source is not None else None
    if not isinstance(raw, Mapping):
        raise ExperimentConfigError(
            [f"the experiment file must be a mapping of sections, got {type(raw).__name__}"], where)
    if "budgets" in raw or "default_budget" in raw:  # the earlier one-file-many-budgets layout
        raise ExperimentConfigError([
            "budgets: an experiment file is one budget now, with no budgets: overlays; write each budget as a "
            "complete file (the lab's are lab/budgets/<budget>.yaml) and run mote-lab reproduce FILE"], where)
    merged = dict(raw)
    problems: list[str] = []
    chosen = budget if budget is not None else (Path(source).stem if source is not None else None)
    arms = merged.get("arms")
    old = [name for name, spec in arms.items() if isinstance(spec, Mapping) and "arm" in spec] if isinstance(
        arms, Mapping) else []
    if old:  # the earlier spelling of an arm's method
        raise ExperimentConfigError([f"arms.{name}: `arm: {arms[name]['arm']}` is now `method: {arms[name]['arm']}`"
                                     for name in old], where)
    # the recipe file
    recipe_raw: dict[str, Any] = {}
    recipe = merged.get("recipe")
    if recipe is not None:
        path = resolve_recipe(str(recipe), source)
        if path is None:
            problems.append(f"recipe: file {recipe!r} not found (relative to the experiment file or the current "
                            "folder)")
        else:
            try:
                loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
                if not isinstance(loaded, Mapping):
                    problems.append(f"recipe: {path} is not a mapping of sections")
                else:
                    recipe_raw = dict(loaded)
            except yaml.YAMLError as e:
                problems.append(f"recipe: {path} is not valid YAML: {e}")
    source_name = where
    # Validate; on errors, drop the offending entries and validate again, so that the checks of the rest (arms,
    # recipes, datasets) still run and every problem is reported at once.
    candidate = {**_apply_validation(merged), "source": source_name, "budget": chosen, "recipe_raw": recipe_raw}
    cfg = None
    for _ in range(20):
        try:
            cfg = ExperimentConfig.model_validate(candidate)
            break
        except ValidationError as e:
            problems += [p for p in _pydantic_problems(e) if p not in problems]
            if not any(_prune(candidate, err["loc"], err["type"] == "missing") for err in e.errors()):
                break
    if cfg is None:
        raise ExperimentConfigError(problems, where)
    problems += _resolve_points(cfg)
    problems += _semantic_problems(cfg, check_files)
    if problems:
        raise ExperimentConfigError(problems, where)
    return cfg


def _prune(raw: dict[str, Any], loc: tuple, missing: bool) -> bool:
    """Delete the entry at ``loc`` (its parent for a missing field) from ``raw``; ``False`` if nothing to delete."""
    path = list(loc[:-1] if missing else loc)
    if len(path) < 2:  # never drop a whole top-level section: its own error stands
        return False
    node: Any = raw
    for key in path[:-1]:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            return False
    try:
        del node[path[-1]]
    except (KeyError, IndexError, TypeError):
        return False
    return True


def resolve_recipe(recipe: str, source: str | os.PathLike | None) -> Path | None:
    candidates = [Path(recipe)] if Path(recipe).is_absolute() else []
    if source is not None and not Path(recipe).is_absolute():
        candidates.append(Path(source).parent / recipe)
    candidates.append(Path(recipe))
    return next((p for p in candidates if p.is_file()), None)


def load_experiment(path: str | os.PathLike, check_files: bool = True) -> ExperimentConfig:
    """Read and validate an experiment YAML file (see :func:`parse_experiment`); its name is the file's stem."""
    from mote.files import read_yaml

    return parse_experiment(read_yaml(path, "Experiment file", ExperimentConfigError), Path(path), None, check_files)


__all__ = [
    "BASELINES",
    "ArmSpec",
    "EvalSpec",
    "ExperimentConfig",
    "ExperimentConfigError",
    "ModelSpec",
    "deep_merge",
    "load_experiment",
    "parse_experiment",
]
