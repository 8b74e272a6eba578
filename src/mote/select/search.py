"""Per-task selection: for each expert, the candidate weights with the best validation score of its task types.

Candidates of a parameter group are :class:`~mote.select.weights.Setting` s: the base model's weights, WiSE-FT
blends ``base + alpha * (final - base)`` and the snapshots kept during training. The search, on validation data
only (:mod:`mote.eval.validation`; never a test split):

1. **Reference**: the plain base model (every group at the base, no instruction prefixes), scored on every
   validation set. A *category* is a task type within a validation group (``in-domain/Retrieval``,
   ``ood/Classification``, ...); a candidate is *admissible* when no category it changes falls below the base's
   score by more than ``tolerance`` (default 0). The reference itself is always admissible.
2. **Shared weights** (``shared: global``): every group at the same setting (WiSE-FT of the whole model); the
   admissible setting with the best mean over categories fixes the shared weights. This is also the whole
   selection of a dense model (the instruction-conditioning baseline's fair counterpart: one alpha, one
   checkpoint). With ``shared: base`` the shared weights stay the base's (a run trained with
   ``trainable: experts`` never moved them).
3. **Experts**: experts coupled by a validation set (retrieval scores query embeddings against document
   embeddings) form a component; each component's candidates are all combinations of its experts' settings, scored
   on the sets that route to them, and the admissible one with the best mean over its categories is kept. An
   expert at the base weights with the shared weights at the base is exactly the base model for its tasks, so its
   prefix is not prepended (the base was trained without instructions).
4. **Consolidation**: two experts with identical weights are merged (one expert routed from both tasks); with
   ``consolidate.scored``, also two whose mean costs at most ``consolidate.tolerance`` points on the categories of
   both and stays admissible; repeated while a merge qualifies.

Only what a candidate changes is encoded: the embedding cache keys each task by the digest of its expert's dense
function (:func:`mote.eval.encoders.function_digests`), so a query-expert candidate re-encodes no classification
text and a setting seen before (or an expert at the base) costs a cache read. Within an encode, the layers before
the first expert layer run once per batch and shared setting (:class:`~mote.adapters.encoder_prefix.
LayerPrefixCache`): candidates that change only experts differ only after them.

Example:
    >>> space = WeightSpace.from_run("runs/train/mote")                                   # doctest: +SKIP
    >>> result = search(space, validation_sets("runs/validation-data"), SelectConfig())   # doctest: +SKIP
    >>> result.choice.experts                                                             # doctest: +SKIP
    {0: Setting(endpoint='final', alpha=0.5), 1: Setting(endpoint='base', alpha=0.0), ...}
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mote.eval import datasets as ds
from mote.eval.cache import EmbeddingCache
from mote.routing import RoutingTable
from mote.select.config import SelectConfig
from mote.select.weights import BASE, SHARED, SelectionError, Setting, WeightSpace


# ------------------------------------------------------------------------------------------------ validation data
@dataclass
class ValidationSet:
    """One validation dataset: its folder, split, side routes and group (``in-domain`` / ``ood``)."""

    info: ds.DatasetInfo
    split: str
    group: str
    overrides: dict[str, str] = field(default_factory=dict)  # harness route overrides for this dataset
    source: str | None = None  # where its rows come from (the recipe's file or folder), for the record
    _data: Any = None

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def category(self) -> str:
        return f"{self.group}/{self.info.task_type}"

    def routes(self) -> dict[str, str]:
        from mote.eval.harness import resolve_routes

        return resolve_routes(self.info, self.overrides)

    def data(self) -> Any:
        if self._data is None:
            self._data = ds.load(self.info, self.split)
        return self._data


def validation_sets(
    suite_dir: str | Path,
    group: str = "both",
    extra: Iterable[tuple[str, str]] = (),
    data_root: str | Path | None = None,
) -> list[ValidationSet]:
    """The validation sets of a built shared suite (:func:`mote.eval.validation.build_validation_suite`) for
    ``group``, plus ``extra`` ``(dataset, split)`` folders of ``data_root`` (their group: ``extra``). A test split
    is refused."""
    from mote.eval import validation

    found = ds.discover(suite_dir)
    out = []
    for name in validation.datasets_of(group):
        if name not in found:
            raise SelectionError(f"validation suite {suite_dir} lacks {name}: rebuild it (build_validation_suite)")
        out.append(ValidationSet(found[name], validation.SPLIT, validation.GROUPS[name],
                                 {name: validation.ROUTES[name]} if name in validation.ROUTES else {}))
    extra = list(extra)
    if extra:
        from mote.data import data_dir

        available = ds.discover(data_dir(data_root))
        for name, split in extra:
            out.append(_named_set(available, name, split, "extra"))
    return out


def _named_set(available: dict[str, ds.DatasetInfo], name: str, split: str, group: str) -> ValidationSet:
    if split.lower().startswith("test"):
        raise SelectionError(f"{name}: split {split!r} is a test split; selection never reads one")
    if name not in available:
        raise SelectionError(f"unknown validation dataset {name!r}; available: {', '.join(sorted(available))}")
    info = available[name]
    ds.split_file(info, split) if info.task_type != "Retrieval" else None
    return ValidationSet(info, split, group, source=str(info.path))


def user_sets(named: Iterable[Any], data_root: str | Path | None = None, group: str = "ood") -> list[ValidationSet]:
    """Validation sets the user names (:class:`mote.select.config.ValidationSet`: a folder ``path`` in the layout
    ``mote eval`` reads, or a folder ``name`` under the data root), scored on their ``split``; a test split, a
    missing folder or split is refused naming the set."""
    out = []
    for item in named:
        if item.path is not None:
            folder = Path(item.path).expanduser()
            meta = folder / "meta.json"
            if not meta.is_file():
                raise SelectionError(f"validation set {item.path!r}: no {meta} (a folder in the layout `mote eval` "
                                     "reads: meta.json with its task type, and the split's file)")
            found = ds.discover(folder.parent).values()
            available = {i.name: i for i in found if i.path.resolve() == folder.resolve()}
            out.append(_named_set(available, folder.name, item.split, group))
        else:
            from mote.data import data_dir

            out.append(_named_set(ds.discover(data_dir(data_root)), item.name, item.split, group))
    return out


# ------------------------------------------------------------------------------------------------ scoring
Scores = dict[str, float]  # dataset name -> main score (percent)


def categories(scores: Scores, sets: Sequence[ValidationSet]) -> dict[str, float]:
    """Mean score per category (``group/task type``) of the sets that ``scores`` has."""
    by: dict[str, list[float]] = {}
    for v in sets:
        if v.name in scores:
            by.setdefault(v.category, []).append(scores[v.name])
    return {c: float(np.mean(x)) for c, x in sorted(by.items())}


def mean(values: dict[str, float]) -> float:
    return float(np.mean(list(values.values()))) if values else float("nan")


class Evaluator:
    """Scores the space's current weights (and routing) on validation sets, through the embedding cache."""

    def __init__(self, space: WeightSpace, cache: EmbeddingCache | None, batch_size: int = 64,
                 prefixes: dict[str, str] | None = None, log: Callable[[str], None] | None = None) -> None:
        self.space, self.cache, self.batch_size = space, cache, batch_size
        self.prefixes = prefixes  # dense models: the instruction prefixes of the trained (alpha > 0) settings
        self.log = log or (lambda msg: None)
        self.calls = 0
        self.prefix = _prefix_cache(space)
        # a set's score is a function of the embeddings of the tasks it routes to: keyed by their cache identities,
        # a state scored before (the selected model, a consolidation round's reference) is not scored again
        self._memo: dict[tuple, float] = {}

    def encoder(self, prepend: bool = True) -> Any:
        from mote.eval.encoders import DenseEncoder, MoTEEncoder

        if self.space.routed:
            return MoTEEncoder(self.space.model, "candidate")
        return DenseEncoder(self.space.model, "candidate", self.prefixes if prepend else None)

    def score(self, sets: Sequence[ValidationSet], prepend: bool = True) -> Scores:
        from mote.eval.harness import evaluate_dataset

        encoder = self.encoder(prepend)
        if self.prefix is not None:  # the cached layers hold the shared weights: one scope per shared setting
            self.prefix.scope = self.space.current.get(SHARED)
        out: Scores = {}
        for v in sets:
            ids = tuple(encoder.cache_identity(t) for t in sorted(set(v.routes().values())))
            key = (v.name, v.split, ids) if None not in ids else None
            if key is not None and key in self._memo:
                out[v.name] = self._memo[key]
                continue
            entry, _ = evaluate_dataset(encoder, v.info, routes=v.overrides, cache=self.cache,
                                        batch_size=self.batch_size, split=v.split, data=v.data(), full=False)
            out[v.name] = float(entry["main_score"])
            if key is not None:
                self._memo[key] = out[v.name]
        self.calls += 1
        return out


def _prefix_cache(space: WeightSpace) -> Any:
    """A :class:`~mote.adapters.encoder_prefix.LayerPrefixCache` over the layers of a routed space's encoder before
    its first expert layer (they hold only shared weights), or None (a dense space, or experts in layer 0)."""
    from mote.adapters.encoder_prefix import LayerPrefixCache
    from mote.api import encoder_of
    from mote.experts import expert_layer_indices, transformer_layers

    if not space.routed:
        return None
    hf = encoder_of(space.model)
    first = min(expert_layer_indices(hf), default=0)
    return LayerPrefixCache(transformer_layers(hf)[:first]) if first > 0 else None


# ------------------------------------------------------------------------------------------------ the result
@dataclass
class Candidate:
    """One scored candidate of a search step."""

    settings: dict[str, str]  # group -> setting label (e.g. {"shared": "final@0.5"} or {"0": "base", "1": ...})
    scores: Scores
    categories: dict[str, float]
    mean: float
    admissible: bool

    def to_dict(self) -> dict[str, Any]:
        return {"settings": self.settings, "categories": self.categories, "mean": self.mean,
                "admissible": self.admissible, "scores": self.scores}


@dataclass
class Choice:
    """What the selected model keeps: a setting per group, whether each task prepends its prefix, and the expert
    merges of consolidation (``[[a, b], ...]``: experts that become one, with the mean of their weights)."""

    shared: Setting
    experts: dict[int, Setting]
    prepend: dict[str, bool]
    merges: list[list[int]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"shared": self.shared.label, "experts": {str(e): s.label for e, s in self.experts.items()},
                "prepend": dict(self.prepend), "merges": [list(m) for m in self.merges]}


@dataclass
class SearchResult:
    choice: Choice
    reference: Candidate  # the plain base
    selected: Candidate  # the choice, scored
    shared_mode: str
    steps: dict[str, list[Candidate]]  # "global", "component <experts>", "consolidate": the candidates scored
    seconds: float
    evaluations: int
    moved: dict[str, dict[str, float]] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ the search
def components(routing: RoutingTable, sets: Sequence[ValidationSet]) -> list[tuple[list[int], list[ValidationSet]]]:
    """Experts coupled by a validation set (one set routes sides to both), each with the sets that use them."""
    parent = list(range(routing.num_experts))

    def find(e: int) -> int:
        while parent[e] != e:
            parent[e] = parent[parent[e]]
            e = parent[e]
        return e

    uses = {v.name: sorted({routing.expert(t) for t in v.routes().values()}) for v in sets}
    for experts in uses.values():
        for e in experts[1:]:
            parent[find(e)] = find(experts[0])
    groups: dict[int, list[int]] = {}
    for e in range(routing.num_experts):
        groups.setdefault(find(e), []).append(e)
    out = []
    for experts in groups.values():
        used = [v for v in sets if set(uses[v.name]) & set(experts)]
        if used:  # an expert no validation set routes to keeps its start setting
            out.append((experts, used))
    return out


def candidate_snapshots(space: WeightSpace, cfg: SelectConfig) -> list[str]:
    """The snapshots of the run that ``cfg.snapshots`` names (by step), in step order."""
    recipe = getattr(space, "recipe", None)
    names = [n for n in space.endpoint_names() if n != "final"]
    if recipe is None:  # a space built by hand: every snapshot it holds
        return names
    wanted = {f"step-{s}" for s in cfg.snapshot_steps(recipe.train.steps)}
    return [n for n in names if n in wanted]


class _Search:
    def __init__(self, space: WeightSpace, sets: list[ValidationSet], cfg: SelectConfig,
                 cache: EmbeddingCache | None, prefixes: dict[str, str] | None, log: Callable[[str], None],
                 evaluator: Any = None) -> None:
        if not sets:
            raise SelectionError("no validation sets to select on")
        self.space, self.sets, self.cfg, self.log = space, sets, cfg, log
        self.eval = evaluator or Evaluator(space, cache, cfg.batch_size, prefixes, log)
        self.module = space.model[0] if space.routed else None
        self.routing: RoutingTable | None = self.module.routing if space.routed else None
        self.grid = [Setting(e, a) for e, a in cfg.candidate_grid(candidate_snapshots(space, cfg))]
        self.steps: dict[str, list[Candidate]] = {}
        self.reference: Candidate | None = None

    # --- helpers
    def _prepend_all(self, on: bool) -> None:
        if self.routing is None:
            return
        table = self.routing
        for t in table.task_names:
            table = table.replace(t, prepend=on)
        self._set_routing(table)

    def _set_routing(self, table: RoutingTable) -> None:
        self.routing = table
        self.module.set_routing(table)

    def _candidate(self, settings: dict[str, str], sets: Sequence[ValidationSet], scores: Scores) -> Candidate:
        cats = categories(scores, sets)
        ref = self.reference.categories if self.reference is not None else cats
        ok = all(cats[c] >= ref[c] - self.cfg.tolerance - 1e-9 for c in cats)
        return Candidate(settings, scores, cats, mean(cats), ok)

    def _score(self, settings: dict[str, str], sets: Sequence[ValidationSet], prepend: bool = True) -> Candidate:
        return self._candidate(settings, sets, self.eval.score(sets, prepend))

    @staticmethod
    def _best(cands: list[Candidate]) -> Candidate:
        """The admissible candidate with the best mean; ties go to the earlier (smaller-moving) candidate."""
        ok = [c for c in cands if c.admissible]
        return max(ok, key=lambda c: c.mean)  # max keeps the first of equal means

    # --- steps
    def run(self) -> SearchResult:
        t0 = time.perf_counter()
        space = self.space
        space.set_all(BASE)
        self._prepend_all(False)
        self.log(f"reference: the plain base on {len(self.sets)} validation sets")
        self.reference = self._score({SHARED: "base"}, self.sets, prepend=False)
        self.log(f"  base: mean over categories {self.reference.mean:.2f}")

        mode = self.cfg.shared
        if not space.routed:
            mode = "global"
        elif mode == "auto":
            mode = "global" if space.shared_trained() else "base"
        shared = BASE
        chosen = self.reference
        if mode == "global":
            chosen = self._global()
            shared = Setting.parse(chosen.settings[SHARED])
            space.set_all(shared)  # the sweep left the space at its last candidate: back to the choice
        experts: dict[int, Setting] = {}
        if space.routed:
            experts, last = self._experts(shared)
            chosen = last or chosen
        merges = self._consolidate(experts) if space.routed and self.cfg.consolidate.enabled else []
        choice = Choice(shared, experts, self._prepend_flags(shared, experts), merges)
        selected = self._score_choice(choice)
        if not merges:  # what is written must be what was chosen: the same scores on the sets they share
            differ = {n: (chosen.scores[n], selected.scores[n]) for n in chosen.scores
                      if abs(chosen.scores[n] - selected.scores[n]) > 1e-6}
            if differ:
                raise SelectionError(f"internal error: the selected weights do not score like the chosen candidate "
                                     f"{chosen.settings} on {differ}; please report it")
        moved = {str(g): space.moved(g) for g in space.groups()}
        return SearchResult(choice, self.reference, selected, mode, self.steps, time.perf_counter() - t0,
                            self.eval.calls, moved)

    def _prepend_flags(self, shared: Setting, experts: dict[int, Setting]) -> dict[str, bool]:
        if self.routing is None:
            return {"*": not shared.is_base}
        return {t: not (shared.is_base and experts.get(self.routing.expert(t), BASE).is_base)
                for t in self.routing.task_names}

    def _apply_prepend(self, flags: dict[str, bool]) -> None:
        if self.routing is None:
            return
        table = self.routing
        for t, on in flags.items():
            table = table.replace(t, prepend=on)
        self._set_routing(table)

    def _global(self) -> Setting:
        rows = [self.reference]
        self.log(f"shared weights: {len(self.grid) - 1} whole-model settings (WiSE-FT)")
        for setting in self.grid:
            if setting.is_base:
                continue
            self.space.set_all(setting)
            self._prepend_all(True)
            cand = self._score({SHARED: setting.label}, self.sets)
            rows.append(cand)
            self.log(f"  {setting.label:<12} mean {cand.mean:6.2f}  {'admissible' if cand.admissible else '-'}")
        self.steps["global"] = rows
        best = self._best(rows)
        self.log(f"  -> shared weights {best.settings[SHARED]}")
        return best

    def _experts(self, shared: Setting) -> tuple[dict[int, Setting], Candidate | None]:
        """Each component's best combination; returns the choice and the last component's winning candidate."""
        space = self.space
        space.set(SHARED, shared)
        start = {e: shared for e in range(space.num_experts)}  # admissible: the global choice (or the base)
        for e, s in start.items():
            space.set(e, s)
        chosen = dict(start)
        best = self.reference if shared.is_base else None
        for experts, sets in components(self.routing, self.sets):
            key = "component " + "+".join(f"{e}:{','.join(self.routing.tasks_of_expert(e))}" for e in experts)
            combos = list(itertools.product(self.grid, repeat=len(experts)))
            self.log(f"{key}: {len(combos)} candidates on {len(sets)} sets")
            rows = []
            for combo in combos:
                for e, s in zip(experts, combo, strict=True):
                    space.set(e, s)
                trial = {**chosen, **dict(zip(experts, combo, strict=True))}
                self._apply_prepend(self._prepend_flags(shared, trial))
                rows.append(self._score({str(e): s.label for e, s in zip(experts, combo, strict=True)}, sets))
            best = self._best(rows)
            for e in experts:
                chosen[e] = Setting.parse(best.settings[str(e)])
                space.set(e, chosen[e])
            self._apply_prepend(self._prepend_flags(shared, chosen))
            self.steps[key] = rows
            self.log(f"  -> {best.settings} (mean {best.mean:.2f} over {', '.join(best.categories)})")
        return chosen, best

    def _uses(self, v: ValidationSet) -> set[int]:
        return {self.routing.expert(t) for t in v.routes().values()}

    def _consolidate(self, chosen: dict[int, Setting]) -> list[list[int]]:
        """Greedy merges of expert groups (module doc). Only the ``consolidate.max_pairs`` closest pairs (by weight
        distance) are scored per round; experts with identical weights merge at no cost without scoring."""
        import torch

        tol = self.cfg.consolidate.tolerance
        space = self.space
        original = {n: space.params[n].detach().clone() for n in space.stacked}  # the selected experts' weights
        members: dict[int, list[int]] = {e: [e] for e in range(space.num_experts)}  # representative -> experts
        rows: list[Candidate] = []
        merges: list[list[int]] = []

        def weights_of(group: list[int]) -> dict[str, torch.Tensor]:
            return {n: original[n][group].mean(dim=0) for n in space.stacked}

        def distance(a: list[int], b: list[int]) -> float:
            wa, wb = weights_of(a), weights_of(b)
            return sum(float((wa[n] - wb[n]).double().pow(2).sum()) for n in space.stacked) ** 0.5

        @torch.no_grad()
        def write(group: list[int]) -> None:
            w = weights_of(group)
            for n in space.stacked:
                space.params[n][group] = w[n].unsqueeze(0).expand(len(group), *w[n].shape)
            for e in group:  # a lone expert is back at its chosen setting; a merged one is at none of the grid
                space.current[e] = chosen.get(e) if len(group) == 1 else None

        while len(members) > 1:
            current = self._score({"merge": "none"}, self.sets)
            pairs = sorted(itertools.combinations(sorted(members), 2),
                           key=lambda p: distance(members[p[0]], members[p[1]]))
            best: tuple[float, int, int] | None = None
            free = [p for p in pairs if distance(members[p[0]], members[p[1]]) == 0]
            if free:  # identical experts: the merge changes nothing
                best = (0.0, *free[0])
            for a, b in [] if free or not self.cfg.consolidate.scored else pairs[: self.cfg.consolidate.max_pairs]:
                group = members[a] + members[b]
                write(group)
                sets = [v for v in self.sets if self._uses(v) & set(group)]
                cand = self._score({"merge": f"{'+'.join(map(str, sorted(group)))}"}, sets)
                write(members[a])  # back to the two groups as they were
                write(members[b])
                cost = mean({c: current.categories[c] - cand.categories[c] for c in cand.categories})
                rows.append(cand)
                self.log(f"  merge experts {a}+{b}: cost {cost:+.2f} points"
                         f"{'' if cand.admissible else ' (not admissible)'}")
                if cand.admissible and cost <= tol + 1e-9 and (best is None or cost < best[0]):
                    best = (cost, a, b)
            if best is None:
                break
            cost, a, b = best
            members[a] = members[a] + members.pop(b)
            write(members[a])
            merges.append(sorted(members[a]))
            self.log(f"  -> experts {sorted(members[a])} share one expert (cost {cost:+.2f})")
        for group in members.values():
            write(group)
        self.steps["consolidate"] = rows
        return [sorted(g) for g in members.values() if len(g) > 1]

    def _score_choice(self, choice: Choice) -> Candidate:
        return self._score({"selected": "choice"}, self.sets, prepend=not choice.shared.is_base)


def search(
    space: WeightSpace,
    sets: list[ValidationSet],
    cfg: SelectConfig,
    cache: EmbeddingCache | None = None,
    prefixes: dict[str, str] | None = None,
    log: Callable[[str], None] | None = None,
    evaluator: Any = None,
) -> SearchResult:
    """Run the selection (module doc) on ``space`` and leave the chosen weights (and routing) in its model.

    ``evaluator``: anything with ``score(sets, prepend) -> {dataset: score}`` and a ``calls`` count, scoring the
    space's current weights (default: :class:`Evaluator`, the harness on the validation sets with ``cache``).
    """
    import contextlib

    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    evaluator = evaluator or Evaluator(space, cache, cfg.batch_size, prefixes, log)
    with getattr(evaluator, "prefix", None) or contextlib.nullcontext():
        return _Search(space, sets, cfg, cache, prefixes, log, evaluator).run()
