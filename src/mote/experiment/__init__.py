"""mote.experiment: ``mote reproduce`` — every arm from the same base, data, steps and seeds; one report.

An experiment file (:mod:`mote.experiment.config`, e.g. ``configs/reproduce.yaml``) expands into a plan of
trainings and evaluations (:mod:`mote.experiment.plan`), which the runner executes resumably
(:mod:`mote.experiment.runner`: ``mote.train.run_training`` and ``mote.eval.evaluate``), then measures parameters
and encode throughput side by side (:mod:`mote.experiment.measure`) and writes ``docs/results.md`` with its figures
(:mod:`mote.experiment.report`, :mod:`mote.experiment.figures`).

Example:
    >>> from mote.experiment import load_experiment, run_reproduction
    >>> cfg = load_experiment("configs/reproduce.yaml", budget="small")                          # doctest: +SKIP
    >>> run_reproduction(cfg, "runs/reproduce/small", report="docs/results.md")                  # doctest: +SKIP
"""

from mote.experiment.config import ExperimentConfig, ExperimentConfigError, load_experiment, parse_experiment
from mote.experiment.plan import EvalRun, Plan, TrainRun, make_plan


def run_reproduction(*args, **kwargs):
    """See :func:`mote.experiment.runner.run_reproduction` (imported lazily: it pulls in training and eval)."""
    from mote.experiment.runner import run_reproduction as _run

    return _run(*args, **kwargs)


def write_report(*args, **kwargs):
    """See :func:`mote.experiment.report.write_report`."""
    from mote.experiment.report import write_report as _write

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
