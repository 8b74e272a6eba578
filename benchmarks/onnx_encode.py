"""Encode throughput: torch (sentence-transformers) vs ONNX fp32 vs ONNX int8, side by side, plus int8 quality.

One exported MoTE task (a plain dense model, default: all-MiniLM-L6-v2 converted to MoTE, task ``query``) encodes
the same 2,000 real sentences (STSBenchmark + STS12 test) with the same prefix, batch size and thread count in
three ways. Rounds alternate the three so background load hits all alike; throughput is the median over rounds.
Quality: cosine of each ONNX model's embeddings vs torch on these sentences, and the int8 model's STSBenchmark
Spearman change measured by the export (``mote_onnx.json``).

    python benchmarks/onnx_encode.py [--model DENSE_DIR] [--n 2000] [--rounds 3] [--batch-size 32] [--reexport]

The last line is `onnx speed vs torch: fp32=<x>x int8=<y>x` (throughput ratios; 1.0 = same speed).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from sentence_transformers import SentenceTransformer

import mote
from mote.data import data_dir
from mote.export import export_dense
from mote.files import open_text
from mote.onnx import CONFIG_FILE, INT8_FILE, ONNX_DIR, OnnxEncoder, export_onnx


def load_sentences(n: int) -> list[str]:
    """Unique sentences from the STSBenchmark and STS12 test files (real text of varied length)."""
    out: list[str] = []
    seen: set[str] = set()
    for name in ("STSBenchmark", "STS12"):
        with open_text(data_dir() / name / "test.jsonl.gz") as f:
            for line in f:
                row = json.loads(line)
                for text in (row["sentence1"], row["sentence2"]):
                    if text not in seen:
                        seen.add(text)
                        out.append(text)
    if len(out) < n:
        raise SystemExit(f"only {len(out)} sentences available, asked for {n}")
    return out[:n]


def dense_model(path: str | None, task: str) -> Path:
    if path:
        return Path(path)
    out = Path("runs/bench-onnx") / f"minilm-{task}"
    if not (out / "modules.json").is_file():
        print(f"Converting all-MiniLM-L6-v2 to MoTE and exporting task {task!r} to {out} ...")
        export_dense(mote.convert("all-MiniLM-L6-v2"), task, out, overwrite=True)
    return out


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="dense sentence-transformers folder (default: MiniLM MoTE task, exported)")
    parser.add_argument("--task", default="query", help="task to export when --model is not given")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="threads for torch and onnxruntime alike")
    parser.add_argument("--reexport", action="store_true", help="export ONNX (fp32 + int8) even if present")
    args = parser.parse_args()

    dense = dense_model(args.model, args.task)
    if args.reexport or not (dense / ONNX_DIR / INT8_FILE).is_file():
        print(export_onnx(dense, quantize=True))
    meta = json.loads((dense / ONNX_DIR / CONFIG_FILE).read_text())
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)

    sentences = load_sentences(args.n)
    st = SentenceTransformer(str(dense), device="cpu")
    encoders = {
        "torch fp32": lambda texts: st.encode(texts, batch_size=args.batch_size, show_progress_bar=False),
        "onnx fp32": OnnxEncoder(dense, threads=threads).encode,
        "onnx int8": OnnxEncoder(dense, quantized=True, threads=threads).encode,
    }
    for encode in encoders.values():  # warm-up: allocator, thread pools, first-call overheads
        encode(sentences[:64])

    speeds: dict[str, list[float]] = {name: [] for name in encoders}
    embeddings: dict[str, np.ndarray] = {}
    for r in range(args.rounds):
        for name, encode in encoders.items():
            t0 = time.perf_counter()
            embeddings[name] = np.asarray(encode(sentences))
            speeds[name].append(len(sentences) / (time.perf_counter() - t0))
        print(f"round {r + 1}: " + "  ".join(f"{k} {v[-1]:.0f}/s" for k, v in speeds.items()))

    base = statistics.median(speeds["torch fp32"])
    print(
        f"\n{dense}  ({len(sentences)} sentences, batch {args.batch_size}, {threads} threads, median of "
        f"{args.rounds} rounds)"
    )
    print(f"{'backend':<12} {'sentences/s':>12} {'vs torch':>9}   cosine vs torch (min / mean)")
    for name, values in speeds.items():
        speed = statistics.median(values)
        cos = cosines(embeddings[name], embeddings["torch fp32"])
        quality = "-" if name == "torch fp32" else f"{cos.min():.5f} / {cos.mean():.5f}"
        print(f"{name:<12} {speed:>12.1f} {speed / base:>8.2f}x   {quality}")
    q = meta.get("int8") or {}
    print(
        f"int8 STSBenchmark Spearman ({q.get('sts_pairs')} pairs, measured at export): fp32 "
        f"{q.get('spearman_fp32', float('nan')):.4f} -> int8 {q.get('spearman_int8', float('nan')):.4f} "
        f"(change {q.get('spearman_change', float('nan')):+.4f})"
    )
    fp32, int8 = (statistics.median(speeds[k]) / base for k in ("onnx fp32", "onnx int8"))
    print(f"onnx speed vs torch: fp32={fp32:.2f}x int8={int8:.2f}x")


if __name__ == "__main__":
    main()
