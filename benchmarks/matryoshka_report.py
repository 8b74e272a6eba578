"""The Matryoshka table: quick-suite scores per embedding dimension for several models, from `mote eval --dims` runs.

Reads ``RUNS/<model>-<dims>/results.json`` (written by ``mote eval MODEL --suite quick --dims D --output ...``) and
prints one Markdown table per model set: rows = model x dimension, columns = the datasets, their mean, and the
change of the mean against the model's own full width.

    python benchmarks/matryoshka_report.py runs/matryoshka/eval --models base,mote,mrl --dims 384,256,128,64
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", help="folder holding <model>-<dims>/results.json")
    parser.add_argument("--models", default="base,mote,mrl")
    parser.add_argument("--dims", default="384,256,128,64")
    parser.add_argument("--labels", default=None, help="comma list of display names, one per model")
    args = parser.parse_args()
    models, dims = args.models.split(","), [int(d) for d in args.dims.split(",")]
    labels = dict(zip(models, args.labels.split(","))) if args.labels else {m: m for m in models}
    results = {
        (m, d): json.loads((Path(args.runs) / f"{m}-{d}" / "results.json").read_text()) for m in models for d in dims
    }
    first = results[(models[0], dims[0])]
    datasets = list(first["datasets"])
    short = {n: f"{n} ({first['datasets'][n]['task_type']}, {first['datasets'][n]['main_metric']})" for n in datasets}
    print("| model | dims | " + " | ".join(short[n] for n in datasets) + " | mean | vs full width |")
    print("|---|---:|" + "---:|" * (len(datasets) + 2))
    for m in models:
        full = None
        for d in dims:
            r = results[(m, d)]
            scores = [r["datasets"][n]["main_score"] for n in datasets]
            mean = sum(scores) / len(scores)
            full = mean if full is None else full
            delta = "" if d == dims[0] else f"{mean - full:+.2f}"
            print(f"| {labels[m]} | {d} | " + " | ".join(f"{s:.2f}" for s in scores) + f" | {mean:.2f} | {delta} |")


if __name__ == "__main__":
    main()
