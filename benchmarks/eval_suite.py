"""Wall time of an evaluation suite, cold (empty embedding cache) and warm (second run on the same cache).

    python benchmarks/eval_suite.py --suite quick                       # all-MiniLM-L6-v2, fresh temp cache
    python benchmarks/eval_suite.py --suite default --output runs/eval/bench-default
    python benchmarks/eval_suite.py --suite default --cache .cache/mote --warm-only
    python benchmarks/eval_suite.py --suite default --record docs/mteb-anchor/raw/speed-default.json

Prints one JSON object: seconds cold/warm (in all and per dataset, with the split each scored), texts encoded, the
machine's load average (1, 5, 15 min) before, between and after the runs, and a throughput probe (texts/s of the
bare model on 256 STSBenchmark sentences), so timings taken on a shared machine can be judged. ``--record FILE``
also writes it (with the date and the command) atomically: docs/mteb-anchor.md's Speed section is generated from
such records (``mote-lab anchors``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path


def probe_throughput(model: str, n: int = 256) -> float:
    from mote.data import data_dir
    from mote.eval import load_encoder
    from mote.eval.datasets import discover, load

    data = load(discover(data_dir())["STSBenchmark"])
    texts = list(dict.fromkeys(data.sentence1 + data.sentence2))[:n]
    enc = load_encoder(model)
    enc.encode(texts[:32], "query")  # warm-up
    t = time.perf_counter()
    enc.encode(texts, "query")
    return n / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="all-MiniLM-L6-v2")
    p.add_argument("--suite", default="quick", choices=["quick", "default", "mteb"])
    p.add_argument("--mode", default="auto", choices=["auto", "dense", "ic"])
    p.add_argument("--cache", default=None, help="cache folder (default: a fresh temporary one = cold start)")
    p.add_argument("--warm-only", action="store_true", help="skip the cold run (the cache is already filled)")
    p.add_argument("--output", default=None, help="keep the (last) run folder here")
    p.add_argument("--record", default=None, help="also write the JSON report to this file (atomically)")
    args = p.parse_args()

    from mote.eval import EmbeddingCache, evaluate

    cache_dir = Path(args.cache) if args.cache else Path(tempfile.mkdtemp(prefix="mote-eval-bench-"))
    report: dict = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "python benchmarks/eval_suite.py " + shlex.join(sys.argv[1:]),
        "cpu_count": os.cpu_count(),
        "model": args.model,
        "suite": args.suite,
        "mode": args.mode,
        "cache": str(cache_dir),
        "load_before": os.getloadavg(),
    }
    report["probe_texts_per_s"] = round(probe_throughput(args.model), 1)
    runs = ["warm"] if args.warm_only else ["cold", "warm"]
    for label in runs:
        cache = EmbeddingCache(cache_dir)
        before = cache.count()
        t = time.perf_counter()
        out = args.output if label == runs[-1] else None
        res = evaluate(args.model, suite=args.suite, mode=args.mode, cache=cache, output=out, overwrite=True)
        report[f"{label}_seconds"] = round(time.perf_counter() - t, 1)
        report[f"{label}_new_cache_entries"] = cache.count() - before
        report[f"{label}_scores"] = {k: round(v["main_score"], 2) for k, v in res["datasets"].items()}
        report[f"{label}_dataset_seconds"] = {k: round(v["seconds"], 1) for k, v in res["datasets"].items()}
        report["splits"] = {k: v["split"] for k, v in res["datasets"].items()}
        report["n_items"] = {k: v["n_items"] for k, v in res["datasets"].items()}
        report[f"load_after_{label}"] = os.getloadavg()
        cache.close()
    text = json.dumps(report, indent=2)
    if args.record:
        from mote.atomic import atomic_write_text

        atomic_write_text(Path(args.record), text + "\n")
    print(text)


if __name__ == "__main__":
    main()
