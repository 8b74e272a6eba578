"""Per-task selection: finish a trained run by choosing, per expert, the weights validation data says it keeps.

* :mod:`mote.select.config`   the ``select:`` recipe section (:class:`SelectConfig`)
* :mod:`mote.select.weights`  the candidates: base, snapshots, WiSE-FT blends (:class:`WeightSpace`, :class:`Setting`)
* :mod:`mote.select.search`   the search on validation sets (:func:`search`)
* :mod:`mote.select.record`   ``selection.json`` / ``selection.md`` of a selected model
* :mod:`mote.select.holdout_sets`  in-domain validation sets from the recipe's own held-out rows
* :mod:`mote.select.run`      ``mote train`` (:func:`train_and_select`) and ``mote select RUN`` (:func:`select_run`)

Example:
    >>> from mote.select import select_run
    >>> select_run("runs/train/mote")          # doctest: +SKIP
    PosixPath('runs/train/mote/model')
"""

from mote.select.config import SelectConfig


def __getattr__(name: str):
    # lazy: the search pulls in the evaluation harness; the recipe schema (SelectConfig) must stay light
    if name in ("select_run", "train_and_select", "SelectionError"):
        from mote.select import run

        return getattr(run, name)
    if name in ("WeightSpace", "Setting"):
        from mote.select import weights

        return getattr(weights, name)
    raise AttributeError(name)


__all__ = ["SelectConfig", "SelectionError", "Setting", "WeightSpace", "select_run", "train_and_select"]
