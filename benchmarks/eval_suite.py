"""Wall time of an evaluation suite, cold (empty embedding cache) and warm (second run on the same cache).

    python benchmarks/eval_suite.py --suite quick                       # all-MiniLM-L6-v2, fresh temp cache
    python benchmarks/eval_suite.py --suite default --output runs/eval/bench-default
    python benchmarks/eval_suite.py --suite default --cache .cache/mote --warm-only

Prints one JSON object: seconds cold/warm, texts encoded, the machine's load average before and after, and a
throughput probe (texts/s of the bare model on 256 STSBenchmark sentences), so timings taken on a shared machine
can be judged.
"""

from __future__ import annotations

import argparse
import json
import os
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
    p.add_argument("--suite", default="quick", choices=["quick", "default"])
    p.add_argument("--mode", default="auto", choices=["auto", "dense", "ic"])
    p.add_argument("--cache", default=None, help="cache folder (default: a fresh temporary one = cold start)")
    p.add_argument("--warm-only", action="store_true", help="skip the cold run (the cache is already filled)")
    p.add_argument("--output", default=None, help="keep the (last) run folder here")
    args = p.parse_args()

    from mote.eval import EmbeddingCache, evaluate

    cache_dir = Path(args.cache) if args.cache else Path(tempfile.mkdtemp(prefix="mote-eval-bench-"))
    report: dict = {
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
        cache.close()
    report["load_after"] = os.getloadavg()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
