"""Encode throughput: dense all-MiniLM-L6-v2 (sentence-transformers) vs its MoTE conversion, side by side.

Same 2,000+ real sentences from the offline data, same prefixed texts, same batch size. Two settings:
  (a) single: every sentence routed to one task (the normal case: encode a corpus, a batch of queries);
  (b) mixed:  four tasks interleaved in one call (mote.encode groups the texts by task, so every batch is
              single-task; the dense model encodes the interleaved prefixed strings).
The dense model encodes exactly the same prefixed strings in both settings. Rounds alternate dense / MoTE so that
background load hits both alike; the ratio reported is the median over rounds.

    python benchmarks/encode.py [--n 2000] [--rounds 3] [--batch-size 32] [--threads 1,2]

The last lines are `encode ratio mote/dense (<t> threads): single=<x> mixed=<y>`, one per torch thread count
(throughput ratios; 1.0 = same speed).
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import time

import torch
from sentence_transformers import SentenceTransformer

import mote
from mote.data import data_dir


def load_sentences(n: int) -> list[str]:
    """Unique sentences from STSBenchmark, STS12 and Banking77 test files (real text of varied length)."""
    root = data_dir()
    out: list[str] = []
    seen: set[str] = set()
    for name, fields in (
        ("STSBenchmark", ("sentence1", "sentence2")),
        ("STS12", ("sentence1", "sentence2")),
        ("Banking77Classification", ("text",)),
    ):
        with gzip.open(root / name / "test.jsonl.gz", "rt", encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                for k in fields:
                    if row[k] not in seen:
                        seen.add(row[k])
                        out.append(row[k])
    if len(out) < n:
        raise SystemExit(f"only {len(out)} sentences available, asked for {n}")
    return out[:n]


def timed(fn) -> tuple[float, float]:
    """``(wall seconds, CPU seconds of this process)`` of ``fn()``; the CPU time is the steadier of the two on a
    machine shared with other jobs (at one thread it does not count the time other processes hold the core)."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--placement", default="every")
    parser.add_argument("--chunk", type=int, default=256, help="sentences per alternation (multiple of batch size)")
    parser.add_argument("--threads", default="1,2", help="comma list of torch thread counts, each measured in turn")
    args = parser.parse_args()

    texts = load_sentences(args.n)
    dense = SentenceTransformer(mote.resolve_model_path(mote.DEFAULT_BASE_MODEL), device="cpu")
    moe = mote.convert(mote.DEFAULT_BASE_MODEL, placement=args.placement)
    lines = []
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        single, mixed = run(dense, moe, texts, args)
        lines.append(f"encode ratio mote/dense ({threads} threads): single={single:.3f} mixed={mixed:.3f}")
    print("\n".join(lines))


def run(dense: SentenceTransformer, moe: SentenceTransformer, texts: list[str], args) -> tuple[float, float]:
    """``(single, mixed)`` throughput ratios MoTE / dense at the current torch thread count."""
    tasks = list(mote.DEFAULT_TASKS)
    mixed_tasks = [tasks[i % len(tasks)] for i in range(len(texts))]
    prefixes = mote.DEFAULT_TASKS
    single_prefixed = [prefixes["query"] + t for t in texts]
    mixed_prefixed = [prefixes[k] + t for k, t in zip(mixed_tasks, texts)]
    bs = args.batch_size
    print(
        f"{len(texts)} sentences, batch {bs}, torch threads {torch.get_num_threads()}, MoTE placement {args.placement}"
    )

    # warm-up (allocator, tokenizer caches)
    dense.encode(single_prefixed[:64], batch_size=bs)
    moe.encode(texts[:64], task="query", batch_size=bs)

    # Alternate dense / MoTE on small chunks (order flipped every chunk) so that load from other processes hits
    # both alike; a round's time is the sum over chunks.
    chunk = args.chunk
    runs: dict[str, list[float]] = {k: [] for k in ("dense_single", "mote_single", "dense_mixed", "mote_mixed")}
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(args.rounds):
        t = dict.fromkeys(runs, 0.0)
        c = dict.fromkeys(runs, 0.0)
        for i, start in enumerate(range(0, len(texts), chunk)):
            sl = slice(start, start + chunk)
            jobs = [
                ("dense_single", lambda sl=sl: dense.encode(single_prefixed[sl], batch_size=bs)),
                ("mote_single", lambda sl=sl: moe.encode(texts[sl], task="query", batch_size=bs)),
                ("dense_mixed", lambda sl=sl: dense.encode(mixed_prefixed[sl], batch_size=bs)),
                ("mote_mixed", lambda sl=sl: mote.encode(moe, texts[sl], task=mixed_tasks[sl], batch_size=bs)),
            ]
            if i % 2:
                jobs = [jobs[1], jobs[0], jobs[3], jobs[2]]
            for name, fn in jobs:
                wall, used = timed(fn)
                t[name] += wall
                c[name] += used
        for k in runs:
            runs[k].append(t[k])
            cpu[k].append(c[k])
        print(f"round {r + 1}: " + "  ".join(f"{k} {len(texts) / v[-1]:.0f}/s" for k, v in runs.items()), flush=True)

    single = statistics.median(d / m for d, m in zip(runs["dense_single"], runs["mote_single"]))
    mixed = statistics.median(d / m for d, m in zip(runs["dense_mixed"], runs["mote_mixed"]))
    cpu_single = statistics.median(d / m for d, m in zip(cpu["dense_single"], cpu["mote_single"]))
    cpu_mixed = statistics.median(d / m for d, m in zip(cpu["dense_mixed"], cpu["mote_mixed"]))
    for k, v in runs.items():
        print(f"{k:>13}: {len(texts) / statistics.median(v):8.1f} sentences/s (median of {len(v)})")
    print(f"CPU-time ratio mote/dense ({torch.get_num_threads()} threads): single={cpu_single:.3f} "
          f"mixed={cpu_mixed:.3f}")
    print(f"encode ratio mote/dense ({torch.get_num_threads()} threads): single={single:.3f} mixed={mixed:.3f}",
          flush=True)
    return single, mixed


if __name__ == "__main__":
    main()
