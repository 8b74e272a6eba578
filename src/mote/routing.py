"""The routing table: the one place that knows task names, their instruction prefixes and their experts.

MoTE routes whole sequences, deterministically, by task: ``task -> (prefix, expert index)``. Several tasks may
share one expert (many-to-one), e.g. to consolidate similar tasks. Everybody else (model, trainer, evaluation,
IC baseline, export) reads task names and prefixes from here.

Example:
    >>> table = RoutingTable.default()
    >>> table.expert("query"), table.prefix("query")
    (0, 'search_query: ')
    >>> table.task_for_prompt("clustering: ")
    'clustering'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

DEFAULT_TASKS: dict[str, str] = {
    "query": "search_query: ",
    "document": "search_document: ",
    "classification": "classification: ",
    "clustering": "clustering: ",
}
# `SentenceTransformer.encode(texts)` with neither task nor prompt routes here. "document" matches the
# sentence-transformers Router convention (its default route) and the most common bulk use: indexing a corpus.
DEFAULT_TASK = "document"
# mteb's prompt keys (task types, "{type}-{prompt type}", prompt types) -> the routing-table task that serves them:
# the evaluation protocol of `mote eval` (mote.eval.harness.DEFAULT_ROUTES; a test keeps the two equal). Saved MoTE
# folders carry these keys in their prompts, so `mteb.evaluate(SentenceTransformer(folder), tasks)` reaches the
# same expert and prefix as `mote eval` for every task type (see docs/evaluation.md).
MTEB_PROMPT_TASKS: dict[str, str] = {
    "query": "query",
    "document": "document",
    "Retrieval-query": "query",
    "Retrieval-document": "document",
    "Reranking-query": "query",
    "Reranking-document": "document",
    "Classification": "classification",
    "Clustering": "clustering",
    "STS": "query",
    "PairClassification": "query",
}


class UnknownTaskError(ValueError):
    """A task name (or prompt) that the routing table does not know."""


@dataclass(frozen=True)
class TaskRoute:
    """One row of the routing table.

    ``prefix`` is the task's instruction: prompts name the task by it. ``prepend=False`` keeps it as the task's
    name for prompts but encodes the text as it is: what per-task selection (:mod:`mote.select`) writes for a task
    whose expert was reset to the base model's weights, which were trained without instructions.
    """

    name: str
    prefix: str
    expert: int
    prepend: bool = True

    @property
    def text_prefix(self) -> str:
        """What is prepended to this task's texts: ``prefix``, or nothing when ``prepend`` is off."""
        return self.prefix if self.prepend else ""


@dataclass(frozen=True)
class RoutingTable:
    """Maps task name -> instruction prefix -> expert index.

    Args:
        routes: the rows, in a fixed order (a task's index in this tuple is its ``task_id``).
        default_task: task used when a caller names neither a task nor a prompt.
    """

    routes: tuple[TaskRoute, ...]
    default_task: str = DEFAULT_TASK
    _by_name: dict[str, TaskRoute] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not self.routes:
            problems.append("the routing table needs at least one task")
        names = [r.name for r in self.routes]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            problems.append(f"duplicate task names: {dupes}")
        for r in self.routes:
            if not r.name or not isinstance(r.name, str):
                problems.append(f"task names must be non-empty strings, got {r.name!r}")
            if not isinstance(r.prefix, str):
                problems.append(f"task {r.name!r}: prefix must be a string, got {r.prefix!r}")
            if not isinstance(r.expert, int) or r.expert < 0:
                problems.append(f"task {r.name!r}: expert must be a non-negative int, got {r.expert!r}")
            if not isinstance(r.prepend, bool):
                problems.append(f"task {r.name!r}: prepend must be true or false, got {r.prepend!r}")
        prefixes = [r.prefix for r in self.routes]
        clash = sorted({p for p in prefixes if prefixes.count(p) > 1})
        if clash:
            problems.append(f"two tasks share a prefix {clash}: a prompt could not tell them apart")
        experts = sorted({r.expert for r in self.routes})
        if experts and experts != list(range(len(experts))):
            problems.append(f"expert indices must be 0..E-1 with none unused, got {experts}")
        if self.routes and self.default_task not in names:
            problems.append(f"default task {self.default_task!r} is not one of the tasks {names}")
        if problems:
            raise ValueError("Invalid routing table: " + "; ".join(problems))
        object.__setattr__(self, "_by_name", {r.name: r for r in self.routes})

    # ----------------------------------------------------------------------------------------------- builders
    @classmethod
    def default(cls) -> RoutingTable:
        """The four MoTE tasks, one expert each: query, document, classification, clustering."""
        return cls.from_prefixes(DEFAULT_TASKS)

    @classmethod
    def from_prefixes(
        cls,
        prefixes: Mapping[str, str],
        experts: Mapping[str, int] | None = None,
        default_task: str | None = None,
    ) -> RoutingTable:
        """Build a table from ``{task: prefix}``; ``experts`` maps tasks to shared experts (default: one each).

        Example:
            >>> t = RoutingTable.from_prefixes({"query": "q: ", "document": "d: ", "clustering": "c: "},
            ...                                experts={"query": 0, "document": 1, "clustering": 1})
            >>> t.num_experts
            2
        """
        names = list(prefixes)
        if experts is None:
            experts = {name: i for i, name in enumerate(names)}
        missing = [n for n in names if n not in experts]
        extra = [n for n in experts if n not in prefixes]
        if missing or extra:
            raise ValueError(
                f"experts mapping must name exactly the tasks {names}; missing {missing}, unknown {extra}"
            )
        if default_task is None:
            default_task = DEFAULT_TASK if DEFAULT_TASK in prefixes else names[0]
        routes = tuple(TaskRoute(n, prefixes[n], int(experts[n])) for n in names)
        return cls(routes=routes, default_task=default_task)

    @classmethod
    def from_spec(cls, spec: str | Sequence[str] | None) -> RoutingTable:
        """Parse a CLI spec: ``"query=search_query: ,document=search_document: "`` or task names from the defaults.

        A ``task@k`` suffix shares expert ``k``: ``"query@0,document@0,classification,clustering"``.
        """
        if spec is None:
            return cls.default()
        items = [s for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
        prefixes: dict[str, str] = {}
        experts: dict[str, int] = {}
        for item in items:
            name, _, prefix = item.partition("=")
            name, _, expert = name.strip().partition("@")
            if name in prefixes:
                raise ValueError(
                    f"Task spec {spec if isinstance(spec, str) else ','.join(spec)!r} names task {name!r} twice; "
                    "name each task once (share an expert with '@k': query@0,document@0)"
                )
            if not prefix:
                if name not in DEFAULT_TASKS:
                    raise UnknownTaskError(
                        f"Task {name!r} has no default prefix; give one as '{name}=<prefix>'. "
                        f"Tasks with defaults: {DEFAULT_TASKS}"
                    )
                prefix = DEFAULT_TASKS[name]
            prefixes[name] = prefix
            if expert:
                if not expert.strip().isdigit():
                    raise ValueError(
                        f"Task spec {item.strip()!r}: what follows '@' must be an expert number (0, 1, ...), e.g. "
                        "'query@0,document@0,classification,clustering'"
                    )
                experts[name] = int(expert)
        if experts and len(experts) != len(prefixes):
            # Tasks without @k get fresh experts after the explicit ones.
            nxt = max(experts.values()) + 1
            for name in prefixes:
                if name not in experts:
                    experts[name], nxt = nxt, nxt + 1
        return cls.from_prefixes(prefixes, experts or None)

    # ----------------------------------------------------------------------------------------------- queries
    @property
    def task_names(self) -> list[str]:
        return [r.name for r in self.routes]

    @property
    def num_experts(self) -> int:
        return max(r.expert for r in self.routes) + 1

    def route(self, task: str) -> TaskRoute:
        try:
            return self._by_name[task]
        except (KeyError, TypeError):
            raise UnknownTaskError(f"Unknown task {task!r}. {self.describe()}") from None

    def expert(self, task: str) -> int:
        return self.route(task).expert

    def prefix(self, task: str) -> str:
        return self.route(task).prefix

    def task_id(self, task: str) -> int:
        self.route(task)
        return self.task_names.index(task)

    def tasks_of_expert(self, expert: int) -> list[str]:
        return [r.name for r in self.routes if r.expert == expert]

    def task_for_prompt(self, prompt: str) -> str:
        """The task whose prefix is exactly ``prompt`` (what ``encode(prompt_name=...)`` hands the model)."""
        for r in self.routes:
            if r.prefix == prompt:
                return r.name
        raise UnknownTaskError(
            f"The prompt {prompt!r} is not the prefix of any task, so it cannot choose an expert. "
            f"Pass task=... explicitly (the prompt text is still prepended). {self.describe()}"
        )

    def resolve(self, task: str | None = None, prompt: str | None = None) -> tuple[str, str]:
        """Resolve ``(task, text prefix)``: explicit task, else the prompt's task, else the default task.

        The text prefix is the task's :attr:`TaskRoute.text_prefix` (its prefix, or nothing for a task that does not
        prepend it); an explicit prompt other than the task's own prefix is prepended as given. An explicit task may
        also be an mteb prompt name (``"STS"``, ``"Retrieval-document"``: its task).

        Example:
            >>> t = RoutingTable.default().replace("query", prepend=False)
            >>> t.resolve(prompt="search_query: "), t.resolve("document"), t.resolve("STS")
            (('query', ''), ('document', 'search_document: '), ('query', ''))
        """
        if task is None:
            task = self.task_for_prompt(prompt) if prompt else self.default_task
        elif task not in self._by_name and task in MTEB_PROMPT_TASKS:  # an mteb prompt name: task="STS"
            task = self.task_for_prompt_name(task)
        route = self.route(task)
        return route.name, route.text_prefix if prompt is None or prompt == route.prefix else prompt

    def replace(self, task: str, *, expert: int | None = None, prepend: bool | None = None) -> RoutingTable:
        """A copy with ``task`` routed to ``expert`` and/or with ``prepend`` changed (validated like any table)."""
        route = self.route(task)
        new = TaskRoute(route.name, route.prefix, route.expert if expert is None else int(expert),
                        route.prepend if prepend is None else bool(prepend))
        routes = tuple(new if r.name == task else r for r in self.routes)
        return RoutingTable(routes=routes, default_task=self.default_task)

    def prompts(self) -> dict[str, str]:
        """``{task: prefix}``, the sentence-transformers ``prompts`` dict (so ``prompt_name=task`` works)."""
        return {r.name: r.prefix for r in self.routes}

    def mteb_prompts(self, aliases: Mapping[str, str] | None = None) -> dict[str, str]:
        """``{mteb prompt key: prefix}`` for every key of ``aliases`` (default :data:`MTEB_PROMPT_TASKS`) whose task
        is in this table, so mteb's prompt resolution picks the task's prefix (and the prefix picks the expert).

        Example:
            >>> RoutingTable.default().mteb_prompts()["Classification"]
            'classification: '
        """
        aliases = MTEB_PROMPT_TASKS if aliases is None else aliases
        return {key: self.prefix(task) for key, task in aliases.items() if task in self._by_name}

    def saved_prompts(self) -> dict[str, str]:
        """What a saved model's ``prompts`` holds: ``{task: prefix}`` plus the mteb keys (:meth:`mteb_prompts`)."""
        return {**self.mteb_prompts(), **self.prompts()}

    def task_for_prompt_name(self, name: str, aliases: Mapping[str, str] | None = None) -> str:
        """The task an mteb prompt key (or a task name) routes to; :class:`UnknownTaskError` if it names none.

        Example:
            >>> RoutingTable.default().task_for_prompt_name("STS")
            'query'
        """
        aliases = MTEB_PROMPT_TASKS if aliases is None else aliases
        if name in self._by_name:
            return name
        task = aliases.get(name)
        if task is None or task not in self._by_name:
            known = sorted(k for k, t in aliases.items() if t in self._by_name)
            target = f" (it maps to task {task!r}, which this table lacks)" if task is not None else ""
            raise UnknownTaskError(
                f"The prompt name {name!r} maps to no task{target}. Prompt names that route: {known} and the task "
                f"names; add a route for it (e.g. routes={{{name!r}: 'query'}}). {self.describe()}"
            )
        return task

    def describe(self) -> str:
        rows = ", ".join(
            f"{r.name!r} (prefix {r.prefix!r}{'' if r.prepend else ', not prepended'}, expert {r.expert})"
            for r in self.routes
        )
        return f"Known tasks: {rows}; default task {self.default_task!r}."

    # ----------------------------------------------------------------------------------------------- (de)serialise
    def to_dict(self) -> dict[str, Any]:
        return {
            "tasks": [{"name": r.name, "prefix": r.prefix, "expert": r.expert, "prepend": r.prepend}
                      for r in self.routes],
            "default_task": self.default_task,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RoutingTable:
        routes = tuple(
            TaskRoute(t["name"], t["prefix"], int(t["expert"]), bool(t.get("prepend", True))) for t in data["tasks"]
        )
        return cls(routes=routes, default_task=data.get("default_task", DEFAULT_TASK))

__all__ = [
    "DEFAULT_TASK",
    "DEFAULT_TASKS",
    "MTEB_PROMPT_TASKS",
    "RoutingTable",
    "TaskRoute",
    "UnknownTaskError",
]
