"""mote_lab: ``mote-lab reproduce`` — every arm from the same base, data, steps and seeds; one report.

An experiment file (:mod:`mote_lab.config`, e.g. ``lab/budgets/small.yaml``) expands into a plan of
trainings and evaluations (:mod:`mote_lab.plan`), which the runner executes resumably
(:mod:`mote_lab.runner`: ``mote.train.run_training`` and ``mote.eval.evaluate``), then measures parameters
and encode throughput side by side (:mod:`mote_lab.measure`) and writes ``docs/results.md`` with its figures
(:mod:`mote_lab.report`, :mod:`mote_lab.figures`).

Example:
    >>> from mote_lab import load_experiment, run_reproduction
    >>> cfg = load_experiment("lab/budgets/small.yaml")                          # doctest: +SKIP
    >>> run_reproduction(cfg, "runs/reproduce/small", report="docs/results.md")                  # doctest: +SKIP
"""

from mote_lab.config import ExperimentConfig, ExperimentConfigError, load_experiment, parse_experiment
from mote_lab.plan import EvalRun, Plan, TrainRun, make_plan


def run_reproduction(*args, **kwargs):
    """See :func:`mote_lab.runner.run_reproduction` (imported lazily: it pulls in training and eval)."""
    from mote_lab.runner import run_reproduction as _run

    return _run(*args, **kwargs)


def write_report(*args, **kwargs):
    """See :func:`mote_lab.report.write_report`."""
    from mote_lab.report import write_report as _write

    return _write(*args, **kwargs)


__all__ = [
    "EvalRun",
    "ExperimentConfig",
    "ExperimentConfigError",
    "Plan",
    "TrainRun",
    "load_experiment",
    "make_plan",
    "parse_experiment",
    "run_reproduction",
    "write_report",
]
