"""Training recipes: a YAML file validated up front into a :class:`RunConfig` (pydantic).

Everything that can be checked before any work starts is checked at once, and every problem is reported in
one :class:`ConfigError`: unknown keys, arms, task kinds and routing tasks, missing data folders, splits, files and
columns, an empty file, a dataset whose rows do not fit its task, a test split named for training, and bad numbers.

**The defaults are the validated recipe** (docs/selection.md, "The default recipe"): a recipe names its data and
everything else is MoTE with experts in every other block (EOB), training only the experts (FFN + norms), 64
tokens, 100 steps of batch 16 at learning rate 1e-4, 10% of every dataset held out, and per-task selection on
those held-out rows at the end. ``configs/mote-minilm.yaml`` is such a recipe: data lists only. Example::

    tasks:
      retrieval:
        datasets:
          - {path: tickets.csv, columns: {query: question, positive: answer}}   # your column names -> mote's
      classification:
        datasets: [{path: intents.jsonl}]                                       # {text, label} rows

Every knob stays available (``model:``, ``train:``, ``data:``, ``select:``, ``arm:`` for the baselines).

    >>> cfg = parse_config({"tasks": {"clustering": {"datasets": [{"path": "x.jsonl"}]}}}, check_files=False)
    >>> cfg.task_specs(None)[0].kind.temperature
    0.06
    >>> cfg.train.steps, cfg.model.max_seq_length, cfg.data.holdout, cfg.select.enabled
    (100, 64, 0.1, True)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mote.data.pairs import LABELLED_SCHEMAS, PAIR_SCHEMAS, SCHEMAS, detect_schema
from mote.data.sources import DataSourceError, Source, TestSplitError, check_split, peek, resolve_file
from mote.data.tasks import COLUMNS, TASK_KINDS, TaskKind
from mote.data.training import DatasetSpec, TaskSpec
from mote.lora.plan import TSEmbedConfig
from mote.methods import METHODS, get_method
from mote.routing import RoutingTable
from mote.select.config import SelectConfig, recipe_problems

ARMS: tuple[str, ...] = tuple(METHODS)  # the registered methods (mote.methods), at import time
CONFIG_FILE = "train_config.yaml"


class ConfigError(ValueError):
    """A training config with problems; ``problems`` lists every one of them."""

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = problems
        where = f" in {source}" if source else ""
        super().__init__(
            f"{len(problems)} problem(s){where}:\n" + "\n".join(f"  - {p}" for p in problems)
        )


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetConfig(_Strict):
    """One dataset of a task. A bare string in YAML is ``{name: <string>}`` (a folder under the data root)."""

    name: str | None = None
    path: str | None = None
    hf: str | None = None
    subset: str | None = None
    split: str = "train"
    max_examples: int | None = Field(default=None, gt=0)
    split_by: str | None = None
    hard_negatives: bool = True
    # mote's column -> the file's column, for files whose columns carry other names ({query: question, ...})
    columns: dict[str, str] = Field(default_factory=dict)

    @field_validator("columns")
    @classmethod
    def _known_columns(cls, v: dict[str, str]) -> dict[str, str]:
        known = sorted({c for keys in SCHEMAS.values() for c in keys} | {"negative", "label"})
        bad = sorted(set(v) - set(known))
        if bad:
            raise ValueError(f"columns maps mote's column names to yours: {bad} are not mote columns; use {known}")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> DatasetConfig:
        if self.path and self.hf:
            raise ValueError("give either path or hf, not both")
        if not (self.name or self.path or self.hf):
            raise ValueError("a dataset needs a name (folder under the data root), a path or an hf id")
        return self

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if self.path:
            return Path(self.path).name.split(".")[0]
        return str(self.hf).replace("/", "__") + (f"-{self.subset}" if self.subset else "")

    def source(self) -> Source:
        columns = tuple(self.columns.items())
        if self.path or self.hf:
            return Source(self.label, path=self.path, hf=self.hf, subset=self.subset, split=self.split,
                          columns=columns)
        return Source(self.label, folder=self.name, split=self.split, columns=columns)


class TaskConfig(_Strict):
    """A training task: its datasets and (optional) overrides of its kind's defaults (see mote.data.tasks)."""

    kind: str | None = None  # default: the task's own name
    datasets: list[str | DatasetConfig] = Field(min_length=1)
    temperature: float | None = Field(default=None, gt=0)
    symmetric: bool | None = None
    batching: Literal["homogeneous", "heterogeneous"] | None = None
    routes: dict[str, str] | None = None

    def dataset_configs(self) -> list[DatasetConfig]:
        return [DatasetConfig(name=d) if isinstance(d, str) else d for d in self.datasets]


class ModelConfig(_Strict):
    base: str = "all-MiniLM-L6-v2"
    placement: str = "every-other"  # EB: every, EOB: every-other, or layer indices "1,3"
    tasks: str | list[str] | None = None  # routing table spec (mote convert --tasks); default: the four tasks
    # Truncation while training (memory, speed); the saved model keeps the base model's own limit.
    max_seq_length: int | None = Field(default=64, gt=0)
    # Per routed task (e.g. {document: 256}): train each side at the length it is encoded at.
    task_max_seq_length: dict[str, int] = Field(default_factory=dict)
    # what trains: "experts" (the expert FFN + norms; everything shared stays the base's) or "all";
    # None = the method's own default (experts for the MoTE arms, every weight for ic)
    trainable: Literal["all", "experts"] | None = None

    def trains_experts_only(self) -> bool:
        """Whether only the experts train (``trainable: experts``, or left to a MoTE arm's default)."""
        return self.trainable != "all"

    def routing(self) -> RoutingTable:
        return RoutingTable.from_spec(self.tasks)


class DataConfig(_Strict):
    data_dir: str | None = None  # default: $MOTE_DATA, else ../shared/data
    sampling: Literal["proportional", "temperature", "round-robin"] = "proportional"
    sampling_temperature: float = Field(default=2.0, gt=0)
    # fraction of every training set held out for validation (mote.data.holdout): the rows per-task selection
    # chooses on; 0 = train on every row (then select only on sets named in select.datasets)
    holdout: float = Field(default=0.1, ge=0, lt=1)


class LossConfig(_Strict):
    cached: bool = False  # GradCache: large batches in small memory
    mini_batch_size: int = Field(default=16, gt=0)
    static_temperature: float = Field(default=0.05, gt=0)  # the static arm's one temperature
    gather_across_devices: bool = True  # DDP: in-batch negatives from every process
    # Matryoshka: the TA-CL loss at each of these leading dimensions too (sentence-transformers' MatryoshkaLoss
    # around every task's loss), e.g. [384, 256, 128, 64]; recorded in the saved MoTE model (mote_config.json)
    matryoshka_dims: list[int] | None = None
    matryoshka_weights: list[float] | None = None  # one per dimension (default: 1 each)

    @model_validator(mode="after")
    def _matryoshka(self) -> LossConfig:
        dims, weights = self.matryoshka_dims, self.matryoshka_weights
        if dims is not None:
            if not dims or any(d <= 0 for d in dims) or len(set(dims)) != len(dims):
                raise ValueError(f"matryoshka_dims must be distinct positive sizes, e.g. [384, 256, 128]; got {dims}")
            if weights is not None and len(weights) != len(dims):
                raise ValueError(f"matryoshka_weights needs one weight per dimension of {dims}, got {weights}")
        elif weights is not None:
            raise ValueError("matryoshka_weights needs matryoshka_dims")
        return self


class TLRConfig(_Strict):
    aux_loss_weight: float = Field(default=0.01, ge=0)
    router_learning_rate: float | None = Field(default=None, gt=0)


class OptimConfig(_Strict):
    # the headline recipe's (docs/results.md); docs/selection.md says why 100 steps and not the curve's 1,600
    steps: int = Field(default=100, gt=0)
    batch_size: int = Field(default=16, ge=2)  # global batch (split across DDP processes)
    learning_rate: float = Field(default=1e-4, gt=0)  # chosen on validation rows (docs/results-tune.md)
    expert_learning_rate: float | None = Field(default=None, gt=0)
    weight_decay: float = Field(default=0.01, ge=0)
    warmup_ratio: float = Field(default=0.1, ge=0, lt=1)
    scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    max_grad_norm: float = Field(default=1.0, ge=0)
    gradient_accumulation_steps: int = Field(default=1, ge=1)


class LogConfig(_Strict):
    every: int = Field(default=10, gt=0)
    tensorboard: bool = False
    progress: bool = True


class CheckpointConfig(_Strict):
    every: int = Field(default=100, ge=0)  # 0: only the final (and Ctrl-C) checkpoint
    keep: int | None = Field(default=2, gt=0)


class EvalConfig(_Strict):
    every: int = Field(default=0, ge=0)  # steps between quick evaluations; 0: none during training
    at_end: bool = False
    suite: str = "quick"
    options: dict[str, Any] = Field(default_factory=dict)  # passed to mote.eval.evaluate


class RunConfig(_Strict):
    """A whole training recipe (the YAML file)."""

    arm: str = "mote"  # a registered method (mote.methods)
    seed: int = 42
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    tasks: dict[str, TaskConfig] = Field(min_length=1)
    loss: LossConfig = Field(default_factory=LossConfig)
    tlr: TLRConfig = Field(default_factory=TLRConfig)
    tsembed: TSEmbedConfig = Field(default_factory=TSEmbedConfig)
    train: OptimConfig = Field(default_factory=OptimConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    select: SelectConfig = Field(default_factory=SelectConfig)

    @field_validator("arm")
    @classmethod
    def _known_arm(cls, arm: str) -> str:
        if arm not in METHODS:
            raise ValueError(f"unknown arm {arm!r}; known: {list(METHODS)}")
        return arm

    @model_validator(mode="before")
    @classmethod
    def _stage_steps(cls, raw: Any) -> Any:
        """Stage steps left out of ``tsembed:`` are taken from ``train.steps`` (see :func:`fill_stage_steps`)."""
        if not isinstance(raw, Mapping) or not isinstance(raw.get("tsembed", {}), Mapping | None):
            return raw
        train = raw.get("train") or {}
        total = train.get("steps", OptimConfig.model_fields["steps"].default) if isinstance(train, Mapping) else None
        if not isinstance(total, int) or isinstance(total, bool):
            return raw
        return {**raw, "tsembed": fill_stage_steps(raw.get("tsembed") or {}, total)}

    # ------------------------------------------------------------------------------------------- derived
    def data_root(self) -> Path | None:
        """The data root folder, or ``None`` if none is configured or found."""
        from mote.data.location import data_dir

        try:
            return data_dir(self.data.data_dir)
        except FileNotFoundError:
            return None

    def task_kind(self, name: str) -> TaskKind:
        """The kind of task ``name`` with its per-task overrides applied."""
        task = self.tasks[name]
        base = TASK_KINDS[task.kind or name]
        return TaskKind(
            name=base.name,
            pair_kind=base.pair_kind,
            routes={**base.routes, **(task.routes or {})},
            batching=task.batching or base.batching,
            temperature=task.temperature if task.temperature is not None else base.temperature,
            symmetric=task.symmetric if task.symmetric is not None else base.symmetric,
        )

    def task_specs(self, data_root: Path | None) -> list[TaskSpec]:
        specs = []
        for name, task in self.tasks.items():
            datasets = tuple(
                DatasetSpec(d.source(), d.max_examples, d.split_by, d.hard_negatives) for d in task.dataset_configs()
            )
            specs.append(TaskSpec(name, self.task_kind(name), datasets))
        return specs

    def method(self):
        """The run's :class:`~mote.methods.base.Method` (the registry entry of ``arm``)."""
        return get_method(self.arm)

    def selects(self) -> bool:
        """Whether the run ends with per-task selection: ``select.enabled`` and a method it applies to (a
        token-routed arm with selection left at its default trains without it, and says so)."""
        return self.select.enabled and self.method().supports_select

    def tsembed_plan(self) -> TSEmbedConfig:
        """The TSEmbed plan of this run: its method's (``tsembed`` as given, or the stage-1-only ablation of
        ``tsembed-noeans``); ``tsembed`` as given for a method without a plan."""
        plan = getattr(self.method(), "plan", None)
        return plan(self) if plan is not None else self.tsembed

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


# ------------------------------------------------------------------------------------------------ TSEmbed steps
def _split(total: int, fraction: float) -> int:
    return max(1, min(total - 1, round(total * fraction)))


def fill_stage_steps(tsembed: Mapping[str, Any], total: int) -> dict[str, Any]:
    """The ``tsembed`` section with omitted stage steps filled from the run's step budget ``total``.

    The stages share ``train.steps`` (the data budget of every arm): with both stage steps omitted, stage 1 gets
    ``round(stage1_fraction * total)`` (default half) and stage 2 the rest; with one given, the other gets the
    rest; a single stage (``stage2: null``) gets all of it. Explicit values are kept as they are (the recipe check
    then requires them to add up to ``train.steps``). Malformed input is left to the validation.

    Example:
        >>> fill_stage_steps({"stage1_fraction": 0.75}, 120)["stage2"]
        {'steps': 30}
    """
    out = dict(tsembed)
    s1, s2 = out.get("stage1", {}), out.get("stage2", {})
    fraction = out.get("stage1_fraction", TSEmbedConfig.model_fields["stage1_fraction"].default)
    if not (isinstance(s1, Mapping) and (s2 is None or isinstance(s2, Mapping))) or total < 1:
        return out
    if not isinstance(fraction, int | float) or not 0 < fraction < 1:
        return out
    s1, s2 = dict(s1 or {}), (dict(s2) if s2 is not None else None)
    if s2 is None:
        s1.setdefault("steps", total)
    elif total >= 2:
        if "steps" not in s1 and "steps" not in s2:
            s1["steps"] = _split(total, fraction)
        if "steps" not in s1 and isinstance(s2["steps"], int) and 0 < s2["steps"] < total:
            s1["steps"] = total - s2["steps"]
        if "steps" not in s2 and isinstance(s1["steps"], int) and 0 < s1["steps"] < total:
            s2["steps"] = total - s1["steps"]
    out["stage1"], out["stage2"] = s1, s2
    return out


def rescale_stage_steps(tsembed: Mapping[str, Any], total: int) -> dict[str, Any]:
    """A dumped ``tsembed`` section for a new step budget (``mote train --steps``): the stage split is kept
    proportional (each stage at least one step). A budget too small for the stages (one step, two stages) leaves
    the section as it is: it matters only to the TSEmbed arms, whose recipe check then names the mismatch, and
    ``--steps 1`` stays valid for every other arm."""
    out = dict(tsembed)
    s1, s2 = dict(out.get("stage1") or {}), out.get("stage2")
    if s2 is not None and total < 2:
        return out
    if s2 is None:
        s1["steps"] = total
    else:
        s2 = dict(s2)
        old1, old2 = int(s1.get("steps", 1)), int(s2.get("steps", 1))
        s1["steps"] = _split(total, old1 / max(1, old1 + old2)) if total >= 2 else total
        s2["steps"] = total - s1["steps"]
    out["stage1"], out["stage2"] = s1, s2
    return out


# ------------------------------------------------------------------------------------------------ validation
def _pydantic_problems(err: ValidationError, prefix: str = "") -> list[str]:
    out = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"] if not str(x).startswith("function-after"))
        where = f"{prefix}{'.' if prefix and loc else ''}{loc}" or "config"
        msg = e["msg"].removeprefix("Value error, ")
        got = e.get("input")
        shown = "" if e["type"] in ("missing", "model_type") or isinstance(got, dict) else f" (got {got!r})"
        out.append(f"{where}: {msg}{shown}")
    return out


def _dataset_problems(
    task: str, kind: TaskKind, ds: DatasetConfig, where: str, data_root: Path | None, check_files: bool
) -> list[str]:
    problems = []
    source = ds.source()
    try:
        check_split(source)
    except TestSplitError as e:
        return [f"{where}: {e}"]
    if not check_files or ds.hf:
        return problems
    if ds.name and not ds.path and data_root is None:
        return [
            f"{where}: dataset folder {ds.name!r} needs a data root: set data.data_dir or $MOTE_DATA "
            "(no ../shared/data here)"
        ]
    try:
        path = resolve_file(source, data_root)
    except (DataSourceError, TestSplitError) as e:
        return [f"{where}: {e}"]
    try:
        first = peek(path, source.columns)
    except DataSourceError as e:
        return [f"{where}: {e}"]
    if first is None:
        return [f"{where}: {path} has no rows; give it rows (a CSV needs a header line and at least one row)"]
    missing = sorted(theirs for ours, theirs in source.columns if ours not in first)
    if missing:
        return [f"{where}: {path.name} has no column {', '.join(map(repr, missing))} (named in columns:); its "
                f"columns are {sorted(first)}"]
    schema = detect_schema(first)
    wanted = PAIR_SCHEMAS if kind.pair_kind == "pairs" else LABELLED_SCHEMAS
    if schema not in wanted:
        fields = {"pairs": "{query, positive, negative?} or {sentence1, sentence2}", "labelled": "{text, label} or "
                  "{sentences, labels}"}[kind.pair_kind]
        problems.append(
            f"{where}: rows of {path.name} are {schema or 'of an unknown layout'} (columns {sorted(first)}), but a "
            f"{kind.name} task needs {fields}; if your columns carry other names, map them, e.g. columns: "
            + ("{query: question, positive: answer}" if kind.pair_kind == "pairs"
               else "{text: utterance, label: intent}")
        )
    if ds.split_by and ds.split_by not in first:
        problems.append(f"{where}: split_by field {ds.split_by!r} is not a field of its rows ({sorted(first)})")
    return problems


def _semantic_problems(cfg: RunConfig, check_files: bool) -> list[str]:
    problems: list[str] = []
    try:
        routing = cfg.model.routing()
    except ValueError as e:
        problems.append(f"model.tasks: {e}")
        routing = None
    data_root = cfg.data_root()
    if cfg.data.data_dir and data_root is None:
        problems.append(f"data.data_dir: folder {cfg.data.data_dir!r} does not exist")
    for name, task in cfg.tasks.items():
        kind_name = task.kind or name
        if kind_name not in TASK_KINDS:
            hint = "" if task.kind else f" (name it after a kind, or give kind: one of {sorted(TASK_KINDS)})"
            problems.append(f"tasks.{name}: unknown task kind {kind_name!r}{hint}; known: {sorted(TASK_KINDS)}")
            continue
        kind = cfg.task_kind(name)
        bad_cols = sorted(set(task.routes or {}) - set(COLUMNS))
        if bad_cols:
            problems.append(f"tasks.{name}.routes: unknown columns {bad_cols}; columns are {list(COLUMNS)}")
        if routing is not None:
            for col, target in kind.routes.items():
                if target not in routing.task_names:
                    problems.append(
                        f"tasks.{name}: column {col!r} is routed to {target!r}, which is not a task of the routing "
                        f"table {routing.task_names} (model.tasks)"
                    )
        seen: set[str] = set()
        for i, ds in enumerate(task.dataset_configs()):
            where = f"tasks.{name}.datasets[{i}] ({ds.label})"
            if ds.label in seen:
                problems.append(f"{where}: dataset listed twice in task {name!r}")
            seen.add(ds.label)
            problems += _dataset_problems(name, kind, ds, where, data_root, check_files)
    method = cfg.method()
    if cfg.loss.matryoshka_dims and method.router_aux_loss:
        plain = [name for name, m in METHODS.items() if not m.router_aux_loss]
        problems.append(
            f"loss.matryoshka_dims: the {cfg.arm} arm adds a router load-balancing loss, which the Matryoshka loss "
            f"cannot carry; use it with the {', '.join(plain[:-1])} or {plain[-1]} arms"
        )
    problems += method.problems(cfg)
    if method.uses_placement:
        try:
            from mote.experts import resolve_placement

            resolve_placement(cfg.model.placement, 1_000)
        except ValueError as e:
            problems.append(f"model.placement: {e}")
    if routing is not None:
        for task, length in cfg.model.task_max_seq_length.items():
            if task not in routing.task_names:
                problems.append(f"model.task_max_seq_length: {task!r} is not a task of the routing table "
                                f"{routing.task_names}")
            elif length <= 0:
                problems.append(f"model.task_max_seq_length.{task}: must be a positive number of tokens")
    problems += _select_problems(cfg)
    if cfg.loss.cached and cfg.loss.mini_batch_size > cfg.train.batch_size:
        problems.append(
            f"loss.mini_batch_size ({cfg.loss.mini_batch_size}) exceeds train.batch_size ({cfg.train.batch_size})"
        )
    return problems


def _select_problems(cfg: RunConfig) -> list[str]:
    """What per-task selection needs from the recipe: held-out rows to validate on, no validation source trained."""
    if not cfg.selects():  # off, or a token-routed arm: it trains without selection (and says so at the end)
        return []
    return [f"select.enabled: {p}" for p in recipe_problems(cfg, cfg.select)]


def parse_config(
    raw: Mapping[str, Any] | None, source: str | None = None, check_files: bool = True, arm: str | None = None
) -> RunConfig:
    """Validate a config mapping; one :class:`ConfigError` lists every problem found.

    ``check_files=False`` skips the data checks that read the disk (folders, splits, row layouts).
    ``arm`` overrides the config's ``arm`` (the same recipe trains every arm).
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError([f"the config must be a mapping of sections, got {type(raw).__name__}"], source)
    raw = dict(raw)
    if arm is not None:
        raw["arm"] = arm
    problems: list[str] = []
    cfg = None
    try:
        cfg = RunConfig.model_validate(raw)
    except ValidationError as e:
        problems += _pydantic_problems(e)
        # Check the datasets of whatever tasks did parse, so file problems come in the same report.
        tasks = raw.get("tasks")
        partial = None
        if isinstance(tasks, Mapping):
            good = {}
            for name, task in tasks.items():
                try:
                    good[name] = TaskConfig.model_validate(task)
                except ValidationError:
                    continue
            if good:
                try:
                    partial = RunConfig(tasks=good, data=DataConfig.model_validate(raw.get("data") or {}))
                except ValidationError:
                    partial = RunConfig(tasks=good)
        if partial is not None:
            problems += [p for p in _semantic_problems(partial, check_files) if p.startswith("tasks.")]
    if cfg is not None:
        problems += _semantic_problems(cfg, check_files)
    if problems:
        raise ConfigError(problems, source)
    return cfg


def load_config(path: str | os.PathLike, check_files: bool = True, arm: str | None = None) -> RunConfig:
    """Read and validate a YAML training config (see :func:`parse_config`)."""
    from mote.files import read_yaml

    return parse_config(read_yaml(path, "Training config", ConfigError), str(path), check_files, arm)

__all__ = [
    "ARMS",
    "CONFIG_FILE",
    "CheckpointConfig",
    "ConfigError",
    "DataConfig",
    "DatasetConfig",
    "EvalConfig",
    "LogConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "TLRConfig",
    "TaskConfig",
    "fill_stage_steps",
    "load_config",
    "parse_config",
    "rescale_stage_steps",
]
