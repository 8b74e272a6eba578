"""Training recipes: a YAML file validated up front into a :class:`RunConfig` (pydantic).

Everything that can be checked before any work starts is checked at once, and every problem is reported in
one :class:`ConfigError`: unknown keys, methods and their settings, task kinds and routing tasks, missing data
folders, splits, files and columns, an empty file, a dataset whose rows do not fit its task, a test split named for
training, and bad numbers.

**The defaults are the validated recipe** (docs/selection.md, "The default recipe"): a recipe names its data and
everything else is MoTE with experts in every other block (EOB), training only the experts (FFN + norms), 64
tokens, 100 steps of batch 16 at learning rate 1e-4, 10% of every dataset held out, and per-task selection on
those held-out rows at the end. ``configs/mote-minilm.yaml`` is such a recipe: data lists only. Its
``objectives:`` are the training objectives by kind (retrieval, symmetric, classification, clustering), each with
its datasets; a *task* is a routing task only (``query``, ``document``, ...: ``model.tasks``). Example::

    objectives:
      retrieval:
        datasets:
          - {path: tickets.csv, columns: {query: question, positive: answer}}   # your column names -> mote's
      classification:
        datasets: [{path: intents.jsonl}]                                       # {text, label} rows

Every knob stays available (``model:``, ``train:``, ``data:``, ``select:``, and ``method:``: the training
method and its own settings, e.g. ``method: ic`` for the baseline or
``method: {name: mote, placement: every, trainable: all}``; :mod:`mote.methods`). Keys of the earlier recipe
layout (``arm:``, ``tlr:``, ``tsembed:``, ``model.placement``, ``model.trainable``, ``loss.static_temperature``,
``tasks:``)
are refused up front, each with its new spelling.

    >>> cfg = parse_config({"objectives": {"clustering": {"datasets": [{"path": "x.jsonl"}]}}}, check_files=False)
    >>> cfg.objective_specs(None)[0].kind.temperature
    0.06
    >>> cfg.train.steps, cfg.model.max_seq_length, cfg.data.holdout, cfg.select.enabled
    (100, 64, 0.1, True)
    >>> cfg.method
    MoteConfig(name='mote', placement='every-other', trainable=None)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, field_validator, model_validator

from mote.data.pairs import LABELLED_SCHEMAS, PAIR_SCHEMAS, SCHEMAS, detect_schema
from mote.data.sources import DataSourceError, Source, TestSplitError, check_split, peek, resolve_file
from mote.data.tasks import COLUMNS, TASK_KINDS, TaskKind
from mote.data.training import DatasetSpec, TaskSpec
from mote.lora.plan import fill_stage_steps, rescale_stage_steps
from mote.methods import (
    DEFAULT_METHOD,
    METHODS,
    Method,
    MethodConfig,
    UnknownMethodError,
    get_method,
    method_config,
    method_config_class,
    method_settings,
)
from mote.routing import RoutingTable
from mote.select.config import SelectConfig, recipe_problems

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


class ObjectiveConfig(_Strict):
    """A training objective (``objectives.<name>``): its datasets and (optional) overrides of its kind's defaults
    (see mote.data.tasks)."""

    kind: str | None = None  # default: the objective's own name
    datasets: list[str | DatasetConfig] = Field(min_length=1)
    temperature: float | None = Field(default=None, gt=0)
    symmetric: bool | None = None
    batching: Literal["homogeneous", "heterogeneous"] | None = None
    routes: dict[str, str] | None = None

    def dataset_configs(self) -> list[DatasetConfig]:
        return [DatasetConfig(name=d) if isinstance(d, str) else d for d in self.datasets]


class ModelConfig(_Strict):
    base: str = "all-MiniLM-L6-v2"
    tasks: str | list[str] | None = None  # routing table spec (mote convert --tasks); default: the four tasks
    # Truncation while training (memory, speed); the saved model keeps the base model's own limit.
    max_seq_length: int | None = Field(default=64, gt=0)
    # Per routed task (e.g. {document: 256}): train each side at the length it is encoded at.
    task_max_seq_length: dict[str, int] = Field(default_factory=dict)

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

    # the training method and its own settings (mote.methods): `method: mote` or `method: {name: mote, ...}`
    method: SerializeAsAny[MethodConfig] = Field(default_factory=lambda: method_config(DEFAULT_METHOD))
    seed: int = 42
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    # the training objectives by kind (retrieval / symmetric / classification / clustering), each with its datasets
    objectives: dict[str, ObjectiveConfig] = Field(min_length=1)
    loss: LossConfig = Field(default_factory=LossConfig)
    train: OptimConfig = Field(default_factory=OptimConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    select: SelectConfig = Field(default_factory=SelectConfig)

    @model_validator(mode="before")
    @classmethod
    def _method_settings(cls, raw: Any) -> Any:
        """``method:`` in its mapping form, with the settings that follow from ``train.steps`` filled in."""
        return _normalise_method(raw)

    @field_validator("method", mode="before")
    @classmethod
    def _method_config(cls, value: Any) -> Any:
        """The registered config class of the method, validated (:func:`parse_config` reports its problems one by
        one, as ``method.<setting>: ...``)."""
        if isinstance(value, Mapping) and value.get("name") not in METHODS:
            raise ValueError(f"unknown method {value.get('name')!r}; known: {list(METHODS)}")
        return method_config(value)

    # ------------------------------------------------------------------------------------------- derived
    def data_root(self) -> Path | None:
        """The data root folder, or ``None`` if none is configured or found."""
        from mote.data.location import data_dir

        try:
            return data_dir(self.data.data_dir)
        except FileNotFoundError:
            return None

    def objective_kind(self, name: str) -> TaskKind:
        """The kind of objective ``name`` with its per-objective overrides applied."""
        task = self.objectives[name]
        base = TASK_KINDS[task.kind or name]
        return TaskKind(
            name=base.name,
            pair_kind=base.pair_kind,
            routes={**base.routes, **(task.routes or {})},
            batching=task.batching or base.batching,
            temperature=task.temperature if task.temperature is not None else base.temperature,
            symmetric=task.symmetric if task.symmetric is not None else base.symmetric,
        )

    def objective_specs(self, data_root: Path | None) -> list[TaskSpec]:
        """The objectives as the data layer's training specs (:class:`mote.data.training.TaskSpec`)."""
        specs = []
        for name, task in self.objectives.items():
            datasets = tuple(
                DatasetSpec(d.source(), d.max_examples, d.split_by, d.hard_negatives) for d in task.dataset_configs()
            )
            specs.append(TaskSpec(name, self.objective_kind(name), datasets))
        return specs

    def training_method(self) -> Method:
        """The run's :class:`~mote.methods.base.Method` (the registry entry of ``method.name``; its settings are
        ``self.method``)."""
        return get_method(self.method.name)

    def selects(self) -> bool:
        """Whether the run ends with per-task selection: ``select.enabled`` and a method it applies to (a
        token-routed method with selection left at its default trains without it, and says so)."""
        return self.select.enabled and self.training_method().supports_select

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


# ------------------------------------------------------------------------------------------------ the method section
def _normalise_method(raw: Any) -> Any:
    """``raw`` with ``method:`` in its mapping form (``mote`` -> ``{name: mote}``) and the settings that follow from
    the run's step budget filled in (:meth:`~mote.methods.base.MethodConfig.for_steps`: TSEmbed's stage steps).
    Malformed input is left to the validation."""
    if not isinstance(raw, Mapping) or isinstance(raw.get("method"), MethodConfig):
        return raw
    settings = method_settings(raw.get("method"))
    if isinstance(settings, Mapping) and settings.get("name") in METHODS:
        train = raw.get("train") or {}
        total = train.get("steps", OptimConfig.model_fields["steps"].default) if isinstance(train, Mapping) else None
        if isinstance(total, int) and not isinstance(total, bool):
            settings = method_config_class(settings["name"]).for_steps(dict(settings), total)
    return {**raw, "method": settings}


def _method_problems(settings: Any) -> tuple[MethodConfig | None, list[str]]:
    """The validated method config of a normalised ``method:`` value, or ``None`` and its problems (one each:
    ``method.<setting>: ...``; a setting the method does not have names the ones it has)."""
    try:
        return method_config(settings), []
    except UnknownMethodError as e:
        return None, [f"method: {e}"]
    except ValidationError as e:
        cls = method_config_class(settings["name"])
        own = [f for f in cls.model_fields if f != "name"]
        problems = []
        for err in e.errors():
            if err["type"] == "extra_forbidden" and len(err["loc"]) == 1:
                problems.append(f"method.{err['loc'][0]}: not a setting of the {settings['name']} method; its "
                                f"settings: {', '.join(own) if own else 'none'}")
            else:
                problems += _error_lines([err], "method")
        return None, problems
    except ValueError as e:  # not a name nor a mapping
        return None, [str(e)]


# Keys of the earlier recipe layout -> their new spelling (the settings of a method moved to its `method:` section).
def _old_key_problems(raw: Mapping[str, Any]) -> list[str]:
    """One line per key of the earlier layout, naming its new spelling."""
    def flow(name: str, settings: Any) -> str:
        body = {"name": name, **settings} if isinstance(settings, Mapping) else {"name": name}
        return yaml.safe_dump(body, default_flow_style=True, sort_keys=False, width=10_000).strip()

    problems = []
    if "arm" in raw:
        problems.append(f"`arm: {raw['arm']}` is now `method: {raw['arm']}`")
    if "tlr" in raw:
        problems.append(f"`tlr:` is now the tlr method's settings: `method: {flow('tlr', raw['tlr'])}`")
    if "tsembed" in raw:
        problems.append(f"`tsembed:` is now the settings of the tsembed methods: "
                        f"`method: {flow('tsembed', raw['tsembed'])}`")
    model, loss = raw.get("model"), raw.get("loss")
    old = raw.get("arm")  # the earlier key
    for key in ("placement", "trainable"):
        if isinstance(model, Mapping) and key in model:
            # the example names the recipe's own method where it has the setting
            name = old if isinstance(old, str) and old in METHODS and key in method_config_class(old).model_fields \
                else DEFAULT_METHOD
            problems.append(f"`model.{key}` is now `method.{key}` (`method: {{name: {name}, {key}: {model[key]}}}`)")
    if "tasks" in raw:
        problems.append("`tasks:` is now `objectives:` (the training objectives by kind, each with its datasets; "
                        "`model.tasks` stays the routing tasks)")
    if isinstance(loss, Mapping) and "static_temperature" in loss:
        problems.append(f"`loss.static_temperature` is now `method.temperature` of the static method "
                        f"(`method: {{name: static, temperature: {loss['static_temperature']}}}`)")
    return problems


# ------------------------------------------------------------------------------------------------ validation
def _pydantic_problems(err: ValidationError, prefix: str = "") -> list[str]:
    return _error_lines(err.errors(), prefix)


def _error_lines(errors: list[Any], prefix: str = "") -> list[str]:
    out = []
    for e in errors:
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
    for name, task in cfg.objectives.items():
        kind_name = task.kind or name
        if kind_name not in TASK_KINDS:
            hint = "" if task.kind else f" (name it after a kind, or give kind: one of {sorted(TASK_KINDS)})"
            problems.append(f"objectives.{name}: unknown objective kind {kind_name!r}{hint}; known: "
                            f"{sorted(TASK_KINDS)}")
            continue
        kind = cfg.objective_kind(name)
        bad_cols = sorted(set(task.routes or {}) - set(COLUMNS))
        if bad_cols:
            problems.append(f"objectives.{name}.routes: unknown columns {bad_cols}; columns are {list(COLUMNS)}")
        if routing is not None:
            for col, target in kind.routes.items():
                if target not in routing.task_names:
                    problems.append(
                        f"objectives.{name}: column {col!r} is routed to {target!r}, which is not a task of the "
                        f"routing table {routing.task_names} (model.tasks)"
                    )
        seen: set[str] = set()
        for i, ds in enumerate(task.dataset_configs()):
            where = f"objectives.{name}.datasets[{i}] ({ds.label})"
            if ds.label in seen:
                problems.append(f"{where}: dataset listed twice in task {name!r}")
            seen.add(ds.label)
            problems += _dataset_problems(name, kind, ds, where, data_root, check_files)
    method = cfg.training_method()
    if cfg.loss.matryoshka_dims and method.router_aux_loss:
        plain = [name for name, m in METHODS.items() if not m.router_aux_loss]
        problems.append(
            f"loss.matryoshka_dims: the {cfg.method.name} method adds a router load-balancing loss, which the "
            f"Matryoshka loss cannot carry; use it with the {', '.join(plain[:-1])} or {plain[-1]} methods"
        )
    problems += method.problems(cfg)
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
    if not cfg.selects():  # off, or a token-routed method: it trains without selection (and says so at the end)
        return []
    return [f"select.enabled: {p}" for p in recipe_problems(cfg, cfg.select)]


def parse_config(
    raw: Mapping[str, Any] | None, source: str | None = None, check_files: bool = True, method: str | None = None
) -> RunConfig:
    """Validate a config mapping; one :class:`ConfigError` lists every problem found.

    ``check_files=False`` skips the data checks that read the disk (folders, splits, row layouts).
    ``method`` overrides the name of the recipe's method (the same recipe trains every method); the recipe's
    method settings stay, so a setting the new method does not have is a problem.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError([f"the config must be a mapping of sections, got {type(raw).__name__}"], source)
    old = _old_key_problems(raw)
    if old:
        raise ConfigError(old, source)
    raw = dict(raw)
    if method is not None:
        settings = method_settings(raw.get("method"))
        raw["method"] = {**settings, "name": method} if isinstance(settings, Mapping) else method
    raw = _normalise_method(raw)
    problems: list[str] = []
    config, problems = _method_problems(raw["method"])
    if config is None:
        raw.pop("method")  # its problems are listed; the rest is checked with the default method
    else:
        raw["method"] = config
    cfg = None
    try:
        cfg = RunConfig.model_validate(raw)
    except ValidationError as e:
        problems += _pydantic_problems(e)
        # Check the datasets of whatever objectives did parse, so file problems come in the same report.
        objectives = raw.get("objectives")
        partial = None
        if isinstance(objectives, Mapping):
            good = {}
            for name, task in objectives.items():
                try:
                    good[name] = ObjectiveConfig.model_validate(task)
                except ValidationError:
                    continue
            if good:
                try:
                    partial = RunConfig(objectives=good, data=DataConfig.model_validate(raw.get("data") or {}))
                except ValidationError:
                    partial = RunConfig(objectives=good)
        if partial is not None:
            problems += [p for p in _semantic_problems(partial, check_files) if p.startswith("objectives.")]
    if cfg is not None and config is not None:
        problems += _semantic_problems(cfg, check_files)
    elif cfg is not None:  # the method's problems are listed: check the data only
        problems += [p for p in _semantic_problems(cfg, check_files) if p.startswith("objectives.")]
    if problems:
        raise ConfigError(problems, source)
    return cfg


def load_config(path: str | os.PathLike, check_files: bool = True, method: str | None = None) -> RunConfig:
    """Read and validate a YAML training config (see :func:`parse_config`)."""
    from mote.files import read_yaml

    return parse_config(read_yaml(path, "Training config", ConfigError), str(path), check_files, method)

__all__ = [
    "CONFIG_FILE",
    "CheckpointConfig",
    "ConfigError",
    "DataConfig",
    "DatasetConfig",
    "EvalConfig",
    "LogConfig",
    "LossConfig",
    "ModelConfig",
    "ObjectiveConfig",
    "OptimConfig",
    "RunConfig",
    "fill_stage_steps",
    "load_config",
    "parse_config",
    "rescale_stage_steps",
]
