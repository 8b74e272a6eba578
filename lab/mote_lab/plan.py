"""The plan of a reproduction: blocks x arms x seeds -> training runs, and the evaluations that follow them.

Folders under the output root (``runs/reproduce/<budget>``)::

    <block>/train/<arm>/seed-<s>/     mote train's run folder (model/, metrics.jsonl, checkpoints/) + DONE marker;
                                      for a selected arm: model/ = mote select of its source arm's run (same seed);
                                      for a point arm: the DONE marker only (its model is the source run's
                                      snapshots/step-N, evaluated as it is); for a point of a selected arm:
                                      model/ = mote select of the source run at that step (--at-step N)
    <block>/eval/<arm>/seed-<s>/      mote eval's results.json / results.md / items/ + marker
    <block>/eval/base/, eval/base-ic/ the untrained base (dense) and the base with the task prefixes (ic)
    <block>/eval-validation/...       with ``eval.also_validation``: the same runs scored on the validation suite
    <block>/similarity/<run>/         inter-task similarity heatmaps
    <block>/compare/<name>/           mote compare outputs (tables, bootstrap, bars)
    measurements.json                 parameters and encode throughput of every arm, measured in one process

Order: per block the two baselines first, then the first seed of every arm (so a budget cut short still has every
arm once), then the further seeds; each training is followed by its evaluation (and its validation evaluation).

Example:
    >>> cfg = load_experiment("lab/budgets/small.yaml")      # doctest: +SKIP
    >>> plan = make_plan(cfg, "runs/reproduce/small")                        # doctest: +SKIP
    >>> [t.key for t in plan.trainings][:2]                                  # doctest: +SKIP
    ['minilm-l6/ic/seed-42', 'minilm-l6/mote/seed-42']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mote_lab.config import ExperimentConfig


@dataclass(frozen=True)
class TrainRun:
    """One training: ``arm`` of block ``model`` with ``seed``."""

    model: str
    arm: str
    seed: int
    dir: Path
    source: TrainRun | None = None  # a selected arm: the run it selects from (its model/ is the selection)
    point: TrainRun | None = None  # a point arm: the trained run whose snapshot at ``at_step`` is its model
    at_step: int | None = None

    @property
    def key(self) -> str:
        return f"{self.model}/{self.arm}/seed-{self.seed}"

    @property
    def model_dir(self) -> Path:
        return self.dir / "model"


@dataclass(frozen=True)
class EvalRun:
    """One evaluation: a trained run (``train`` set) or an untrained baseline (``base`` / ``base-ic``)."""

    model: str
    arm: str  # an arm name, or a baseline name
    seed: int | None  # None for baselines
    dir: Path
    train: TrainRun | None = None
    validation: bool = False  # scored on the validation suite (eval.also_validation), not the test datasets

    @property
    def key(self) -> str:
        return f"{self.model}/{self.arm}" + (f"/seed-{self.seed}" if self.seed is not None else "")

    @property
    def baseline(self) -> bool:
        return self.train is None


@dataclass
class Plan:
    """Everything a reproduction does, in order, and where it goes."""

    root: Path
    config: ExperimentConfig
    trainings: list[TrainRun] = field(default_factory=list)
    evaluations: list[EvalRun] = field(default_factory=list)
    validations: list[EvalRun] = field(default_factory=list)  # eval.also_validation: one per evaluation

    def steps(self) -> list[TrainRun | EvalRun]:
        """Trainings and evaluations interleaved in execution order (baselines, then train -> eval per run)."""
        out: list[TrainRun | EvalRun] = []
        by_train = {e.train.key: e for e in self.evaluations if e.train is not None}
        val_by_train = {e.train.key: e for e in self.validations if e.train is not None}
        for block in self.config.enabled_models():
            out += [e for e in self.evaluations if e.model == block and e.baseline]
            out += [e for e in self.validations if e.model == block and e.baseline]
            for t in self.trainings:
                if t.model == block:
                    out += [t, by_train[t.key], *([val_by_train[t.key]] if t.key in val_by_train else [])]
        return out

    def validations_of(self, model: str, arm: str) -> list[EvalRun]:
        """The validation-suite evaluations of one arm (or baseline) of a block, in seed order."""
        return [e for e in self.validations if e.model == model and e.arm == arm]

    def evals_of(self, model: str, arm: str) -> list[EvalRun]:
        """The evaluations of one arm (or baseline) of a block, in seed order."""
        return [e for e in self.evaluations if e.model == model and e.arm == arm]

    def first(self, model: str, arm: str) -> EvalRun | None:
        runs = self.evals_of(model, arm)
        return runs[0] if runs else None


def make_plan(cfg: ExperimentConfig, root: str | Path) -> Plan:
    """Expand ``cfg`` into the runs under ``root``."""
    root = Path(root)
    plan = Plan(root, cfg)
    for mname, block in cfg.enabled_models().items():
        for base in block.baselines:
            plan.evaluations.append(EvalRun(mname, base, None, root / mname / "eval" / base))
        per_arm = {arm: block.seeds_of(arm) for arm in block.arms}
        rounds = max(len(s) for s in per_arm.values())
        for k in range(rounds):  # seed-major: every arm once before any arm twice
            for arm in block.arms:
                if k < len(per_arm[arm]):
                    seed = per_arm[arm][k]
                    src = cfg.arms[arm].select_from
                    source = next((r for r in plan.trainings if r.model == mname and r.arm == src and r.seed == seed),
                                  None) if src else None
                    of = cfg.arms[arm].point_of if cfg.is_snapshot_point(arm) else None
                    point = next((r for r in plan.trainings if r.model == mname and r.arm == of and r.seed == seed),
                                 None) if of else None
                    t = TrainRun(mname, arm, seed, root / mname / "train" / arm / f"seed-{seed}", source, point,
                                 cfg.arms[arm].at_step if point is not None else None)
                    plan.trainings.append(t)
                    plan.evaluations.append(EvalRun(mname, arm, seed, root / mname / "eval" / arm / f"seed-{seed}", t))
        if cfg.eval.also_validation:
            plan.validations += [EvalRun(e.model, e.arm, e.seed, root / e.model / "eval-validation" /
                                         e.dir.relative_to(root / e.model / "eval"), e.train, validation=True)
                                 for e in plan.evaluations if e.model == mname]
    return plan


__all__ = ["EvalRun", "Plan", "TrainRun", "make_plan"]
