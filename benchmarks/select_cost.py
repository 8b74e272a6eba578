"""What per-task selection costs against the training it finishes, at the default recipe.

    python benchmarks/select_cost.py                       # configs/mote-minilm.yaml: the default recipe, 100 steps
    python benchmarks/select_cost.py --steps 60 --recipe configs/demo.yaml

Trains the recipe (``mote.train.run_training``) into a fresh run folder, then selects it
(``mote.select.run.select_run``: the recipe's own held-out rows, ``select.max_examples`` per set) with an empty
embedding cache, and prints both wall times and their ratio, then the selection once more on the filled cache
(a re-decision with ``mote select``). Run it on an idle machine: two torch jobs on 2 cores slow each other 5-10x.
The issue's goal: selection <= the training's wall time on the 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="configs/mote-minilm.yaml")
    ap.add_argument("--steps", type=int, default=None, help="override train.steps")
    ap.add_argument("--max-examples", type=int, default=None, help="override select.max_examples")
    ap.add_argument("--output", default=None, help="run folder (default: a temporary one)")
    args = ap.parse_args()

    out = Path(args.output or tempfile.mkdtemp(prefix="mote-select-cost-")) / "run"
    os.environ["MOTE_CACHE"] = str(out.parent / "cache")  # cold: an empty embedding cache

    from mote.select.record import read_selection
    from mote.select.run import select_run
    from mote.train.config import load_config, parse_config
    from mote.train.trainer import run_training

    cfg = load_config(args.recipe)
    raw = cfg.model_dump(mode="json")
    if args.steps is not None:
        raw["train"]["steps"] = args.steps
    if args.max_examples is not None:
        raw["select"]["max_examples"] = args.max_examples
    cfg = parse_config(raw, args.recipe)

    t0 = time.perf_counter()
    result = run_training(cfg, out)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    model = select_run(out, cfg=cfg.select, log=lambda m: None)
    select_s = time.perf_counter() - t0
    record = read_selection(model)
    t0 = time.perf_counter()
    select_run(out, cfg=cfg.select, log=lambda m: None)
    warm_s = time.perf_counter() - t0

    sets = record["validation"]["datasets"]
    print(json.dumps({
        "recipe": args.recipe, "steps": result.steps, "batch_size": cfg.train.batch_size,
        "max_examples": cfg.select.max_examples, "validation_sets": len(sets),
        "evaluations": record["evaluations"], "search_s": record["seconds"],
    }, indent=2))
    print(f"training  {train_s:7.1f} s  ({train_s / result.steps:.2f} s/step, model and data loading included)")
    print(f"selection {select_s:7.1f} s  cold cache (validation sets built, {len(sets)} sets)")
    print(f"selection {warm_s:7.1f} s  warm cache (mote select re-deciding)")
    print(f"selection / training = {select_s / train_s:.2f}x (goal <= 1.00x)")


if __name__ == "__main__":
    main()
