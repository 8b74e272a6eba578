"""mote.train: Task-Aware Contrastive Learning (TA-CL) for MoTE models and their baselines.

One YAML recipe (:mod:`mote.train.config`) trains any method of :mod:`mote.methods` (``mote``, ``ic``, ``static``,
``tlr``, ``ic-matched``, and the two-stage TSEmbed methods ``tsembed`` / ``tsembed-noeans`` of
:mod:`mote.train.tsembed`) with one trainer (:mod:`mote.train.trainer`) on the same batches.

Example:
    >>> from mote.train import load_config, run_training
    >>> cfg = load_config("configs/demo.yaml")                     # doctest: +SKIP
    >>> result = run_training(cfg, "runs/demo-train")              # doctest: +SKIP
    >>> mote.load(result.model_dir).encode(["hi"], task="query")   # doctest: +SKIP
"""

from mote.train.config import ConfigError, RunConfig, load_config, parse_config
from mote.train.losses import CachedTaskInfoNCE, TaskInfoNCE, info_nce


def run_training(*args, **kwargs):
    """See :func:`mote.train.trainer.run_training` (imported lazily: it pulls in the trainer stack)."""
    from mote.train.trainer import run_training as _run

    return _run(*args, **kwargs)


def demo_train(*args, **kwargs):
    """See :func:`mote.train.demo_training.demo_train`."""
    from mote.train.demo_training import demo_train as _demo

    return _demo(*args, **kwargs)


__all__ = [
    "CachedTaskInfoNCE",
    "ConfigError",
    "RunConfig",
    "TaskInfoNCE",
    "demo_train",
    "info_nce",
    "load_config",
    "parse_config",
    "run_training",
]
