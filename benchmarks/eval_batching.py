"""Evaluation encode throughput: batches cut by token count (mote.batching) vs sentence-transformers' order.

The same unique texts of a few default-suite datasets are encoded by all-MiniLM-L6-v2 both ways, without prefixes
(the plain base) and with the IC prefixes (every trained arm prepends one), rounds alternating so that background
load hits both alike. Prints, per dataset and prefix policy, the padded/real token ratio of each order and the
median wall-time ratio, and the embeddings' largest difference (float rounding only).

    python benchmarks/eval_batching.py [--n 3000] [--rounds 3] [--batch-size 32]

The last line is `eval batching speedup (total): <x>` (sentence-transformers' time / length-batched time).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from mote.batching import encode_length_batched, token_lengths
from mote.data import data_dir
from mote.eval import datasets as ds
from mote.eval.encoders import load_encoder

# (dataset, side): short sentences, tweets, titles and long passages
SETS = (("STS14", "text"), ("TwitterURLCorpus", "text"), ("StackExchangeClustering", "text"),
        ("WikiQARetrieval", "document"))


def texts_of(name: str, side: str, n: int) -> list[str]:
    info = ds.discover(data_dir())[name]
    data = ds.load(info, info.resolve_split("auto", "default"))
    if info.task_type == "Retrieval":
        pool = list(data.corpus.values()) if side == "document" else list(data.queries.values())
    elif hasattr(data, "sets"):  # clustering
        pool = [t for sentences, _ in data.sets for t in sentences]
    else:  # STS, pair classification
        pool = list(data.sentence1) + list(data.sentence2)
    unique = list(dict.fromkeys(str(t) for t in pool))
    if not unique:
        raise SystemExit(f"no texts found in {name} ({side})")
    return unique[:n]


def padded(lengths: np.ndarray, order: np.ndarray, batch_size: int) -> int:
    ordered = lengths[order]
    return int(sum(ordered[i:i + batch_size].max() * len(ordered[i:i + batch_size])
                   for i in range(0, len(ordered), batch_size)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    enc = load_encoder("all-MiniLM-L6-v2", mode="ic")
    model = enc.model
    total_st = total_lb = 0.0
    for name, side in SETS:
        texts = texts_of(name, side, args.n)
        for policy, task in (("plain", None), ("ic", "document" if side == "document" else "query")):
            prompt = enc.prefix(task) if task else None
            full = [(prompt or "") + t for t in texts]
            lengths = token_lengths(model, full)
            by_chars = np.argsort([-len(t) for t in texts], kind="stable")
            by_tokens = np.argsort(-lengths, kind="stable")
            real = int(lengths.sum())
            st_s, lb_s = [], []
            a = b = None
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                a = model.encode(texts, prompt=prompt, batch_size=args.batch_size, convert_to_numpy=True)
                st_s.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                b = encode_length_batched(model, texts, args.batch_size, prompt=prompt)
                lb_s.append(time.perf_counter() - t0)
            st_m, lb_m = statistics.median(st_s), statistics.median(lb_s)
            total_st += st_m
            total_lb += lb_m
            print(f"{name:26s} {policy:5s} n={len(texts):5d} real tokens {real:7d}  padded/real: "
                  f"chars {padded(lengths, by_chars, args.batch_size) / real:.3f} "
                  f"tokens {padded(lengths, by_tokens, args.batch_size) / real:.3f}  "
                  f"st {len(texts) / st_m:6.0f}/s  length-batched {len(texts) / lb_m:6.0f}/s  "
                  f"speedup {st_m / lb_m:.2f}  max |diff| {float(np.abs(a - b).max()):.1e}", flush=True)
    print(f"eval batching speedup (total): {total_st / total_lb:.2f}")


if __name__ == "__main__":
    main()
