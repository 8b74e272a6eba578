"""A few minutes of TA-CL for ``make demo``: train, select per task, evaluate against the plain base.

:func:`demo_train` trains the query, document and classification experts of all-MiniLM-L6-v2 on the offline data
(only the expert FFN + norms; the shared weights stay frozen), checks that clustering, whose expert saw no data,
still gives exactly the base model's embeddings, finishes the model with per-task selection on validation data
(:mod:`mote.select`), and evaluates the plain base, the base with the task prefixes, the trained and the selected
model on a few small evaluation sets.

Example:
    >>> from mote.train import demo_train
    >>> summary = demo_train("runs/demo")      # doctest: +SKIP
    >>> summary["untouched_max_abs_diff"]      # doctest: +SKIP
    0.0
"""

from __future__ import annotations

import copy
import os
import time
from pathlib import Path
from typing import Any

# configs/demo.yaml holds the same recipe (a test keeps the two equal): a user's recipe, its data only (the
# defaults are the validated recipe: experts only, 10% held out, selection on those rows at the end), with fewer
# steps to stay a demo. The clustering expert sees no data: selection keeps it at the base.
DEMO_RECIPE: dict[str, Any] = {
    "objectives": {
        "retrieval": {
            "datasets": [{"name": "train-SQuADDev", "max_examples": 1000}, "train-WikiQA", "train-TrecQA"],
        },
        "classification": {
            "datasets": [
                {"name": "Banking77Classification", "max_examples": 1000},
                {"name": "EmotionClassification", "max_examples": 1000},
                {"name": "train-AGNews", "max_examples": 1000},
            ],
        },
    },
    "train": {"steps": 60},
}
# Small evaluation sets: one per trained task family, plus clustering (untouched expert: same score as the base).
DEMO_EVAL = ("STSBenchmark", "AmazonCounterfactualClassification-en", "WikiQARetrieval", "Banking77Clustering")
UNTOUCHED_TASK = "clustering"
PROBE_TEXTS = [
    "Central bank raises interest rates for the third time this year",
    "how do noise-cancelling headphones work",
    "The battery died after two days, I want a refund.",
]


def demo_train(
    workdir: str | os.PathLike = "runs/demo",
    steps: int | None = None,
    eval_datasets: tuple[str, ...] | list[str] | None = DEMO_EVAL,
    data_dir: str | os.PathLike | None = None,
    overwrite: bool = True,
) -> dict[str, Any]:
    """Train the demo recipe into ``workdir/train``, evaluate, compare; returns a summary dict.

    Args:
        steps: override the recipe's 60 steps. eval_datasets: evaluation sets (``None``: skip evaluation).
        overwrite: start afresh if ``workdir/train`` holds an earlier demo run.
    """
    import shutil

    import numpy as np

    import mote
    from mote.select.record import read_selection
    from mote.select.run import train_and_select
    from mote.train.config import parse_config

    workdir = Path(workdir)
    recipe = copy.deepcopy(DEMO_RECIPE)
    if steps is not None:
        recipe["train"]["steps"] = int(steps)
    if data_dir is not None:
        recipe["data"] = {"data_dir": str(data_dir)}
    cfg = parse_config(recipe, "mote.train.demo_training")
    out = workdir / "train"
    if out.exists() and overwrite:
        shutil.rmtree(out)
    t0 = time.perf_counter()
    print(f"== mote train: {cfg.train.steps} steps, batch {cfg.train.batch_size}, experts only, "
          f"{cfg.data.holdout:g} of every dataset held out, then per-task selection on those rows", flush=True)
    result = train_and_select(cfg, out, log=lambda m: print(f"   {m}", flush=True))
    trained_dir, selected_dir = Path(result["trained_dir"]), Path(result["model_dir"])
    summary: dict[str, Any] = {
        "model_dir": str(trained_dir),
        "selected_dir": str(selected_dir),
        "steps": result["steps"],
        "train_seconds": result["wall_s"],
        "first_loss": result["first_loss"],
        "last_loss": result["last_loss"],
        "selection_lines": result["selection"],
    }

    trained = mote.load(trained_dir)
    fresh = mote.convert(cfg.model.base, placement=cfg.method.placement)
    diff = float(np.abs(trained.encode(PROBE_TEXTS, task=UNTOUCHED_TASK) - fresh.encode(PROBE_TEXTS,
                                                                                         task=UNTOUCHED_TASK)).max())
    moved = float(np.abs(trained.encode(PROBE_TEXTS, task="query") - fresh.encode(PROBE_TEXTS, task="query")).max())
    summary["untouched_max_abs_diff"] = diff
    summary["query_max_abs_diff"] = moved
    record = read_selection(selected_dir)
    summary["selection"] = {e: info["chosen"] for e, info in record["experts"].items()}
    summary["validation"] = {"base": record["reference"]["categories"], "selected": record["selected"]["categories"]}

    if eval_datasets:
        from mote.base_models import resolve_model_path
        from mote.eval import evaluate

        names = list(eval_datasets)
        runs = {
            "base": resolve_model_path(cfg.model.base),  # the plain base: what a user compares with
            "base+prefix": fresh,
            "trained": trained,
            "selected": mote.load(selected_dir),
        }
        scores = {k: evaluate(m, datasets=names, name=k, cache=True, show_progress=False, data_dir=data_dir)
                  for k, m in runs.items()}
        rows = []
        for name in names:
            row = {"dataset": name, "task_type": scores["base"]["datasets"][name]["task_type"],
                   "metric": scores["base"]["datasets"][name]["main_metric"]}
            row.update({k: round(scores[k]["datasets"][name]["main_score"], 2) for k in runs})
            row["delta"] = round(row["selected"] - row["base"], 2)
            rows.append(row)
        summary["comparison"] = rows
        print(f"{'dataset':<40} {'base':>7} {'+prefix':>8} {'trained':>8} {'selected':>9} {'sel-base':>9}")
        for r in rows:
            print(f"{r['dataset']:<40} {r['base']:>7.2f} {r['base+prefix']:>8.2f} {r['trained']:>8.2f} "
                  f"{r['selected']:>9.2f} {r['delta']:>+9.2f}")
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    return summary
