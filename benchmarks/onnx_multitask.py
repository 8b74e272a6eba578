"""One multi-task ONNX session vs torch MoTE vs four per-task dense ONNX sessions: throughput and resident memory.

The same real sentences (STSBenchmark + STS12 test) are encoded, batch 32, same thread count, by

* ``torch``       the MoTE model (``mote.encode``; mixed batches through its grouped expert dispatch),
* ``onnx-mt``     the multi-task graph (``mote export MODEL --onnx --all-tasks``), one session for every task,
* ``onnx-dense``  the per-task dense exports (``mote export MODEL --task T --onnx``), one session per task.

Single-task: every text as task ``query``. Mixed: the four tasks in turn over the texts (every batch mixes them);
``onnx-dense`` then encodes each task's texts with that task's session (what serving needs four sessions for).
Rounds alternate the backends so background load hits all alike; throughput is the median over rounds.
Memory: resident set size (``VmRSS``) added by loading the session(s) and encoding 256 texts of every task, each
measured in a fresh process without torch (onnxruntime + tokenizers + numpy), minus that process's baseline.

    python benchmarks/onnx_multitask.py [--model MOTE_DIR] [--n 1000] [--rounds 3] [--threads 2]

The last lines print the ratios (targets: onnx-mt single-task >= 1.0x torch; memory of the one session <= 0.6x
of the four dense sessions) and the load average before and after (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

import mote
from mote.data import data_dir
from mote.export import export_dense
from mote.files import open_text
from mote.onnx import MultiTaskOnnxEncoder, OnnxEncoder, export_multitask, export_onnx

TASKS = ("query", "document", "classification", "clustering")
WORK = Path("runs/bench-onnx-mt")

# Runs in a fresh process: RSS added by the session(s) after encoding a warm-up of every task.
MEMORY_PROBE = """
import importlib.abc, json, sys
class _NoTorch(importlib.abc.MetaPathFinder):  # a serving process without torch: `import mote` skips its torch API
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("torch", "transformers", "sentence_transformers"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, _NoTorch())
import numpy as np
from mote.onnx.encoder import OnnxEncoder
from mote.onnx.runtime import MultiTaskOnnxEncoder

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

kind, threads, texts = sys.argv[1], int(sys.argv[2]), json.load(open(sys.argv[3]))
folders = sys.argv[4:]
OnnxEncoder, MultiTaskOnnxEncoder  # imported before the baseline: the libraries are not the model
base = rss_mb()
if kind == "mt":
    enc = MultiTaskOnnxEncoder(folders[0], threads=threads)
    enc.encode(texts, task=[i % 4 for i in range(len(texts))])
else:
    encs = [OnnxEncoder(f, threads=threads) for f in folders]
    for e in encs:
        e.encode(texts)
print(json.dumps({"rss_mb": rss_mb() - base, "torch_loaded": "torch" in sys.modules}))
"""


def load_sentences(n: int) -> list[str]:
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


def prepare(model_arg: str | None) -> tuple[object, Path, dict[str, Path]]:
    """The MoTE model, its multi-task export and its four dense exports (made once under runs/bench-onnx-mt)."""
    source = Path(model_arg) if model_arg else WORK / "minilm-mote"
    if not model_arg and not (source / "mote_config.json").is_file():
        print(f"Converting all-MiniLM-L6-v2 to MoTE (EOB) -> {source}")
        mote.convert("all-MiniLM-L6-v2").save(str(source))
    model = mote.load(str(source), device="cpu")
    mt_dir = WORK / f"{source.name}-onnx-all"
    if not (mt_dir / "model.onnx").is_file():
        print(export_multitask(model, mt_dir, overwrite=True))
    dense = {}
    for task in TASKS:
        folder = WORK / f"{source.name}-{task}"
        if not (folder / "onnx" / "model.onnx").is_file():
            export_dense(model, task, folder, overwrite=True)
            print(export_onnx(folder))
        dense[task] = folder
    return model, mt_dir, dense


def memory(kind: str, folders: list[Path], threads: int, texts: list[str]) -> float:
    spec = WORK / "memory-texts.json"
    spec.write_text(json.dumps(texts))
    proc = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, kind, str(threads), str(spec), *map(str, folders)],
        capture_output=True, text=True, check=True,
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not result["torch_loaded"]
    return float(result["rss_mb"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a MoTE folder (default: all-MiniLM-L6-v2 converted to MoTE, EOB)")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="threads for torch and onnxruntime alike")
    args = parser.parse_args()
    load_before = Path("/proc/loadavg").read_text().split()[:3]

    model, mt_dir, dense_dirs = prepare(args.model)
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    texts = load_sentences(args.n)
    mixed = [TASKS[i % len(TASKS)] for i in range(len(texts))]
    groups = {t: [i for i, m in enumerate(mixed) if m == t] for t in TASKS}
    bs = args.batch_size
    mt = MultiTaskOnnxEncoder(mt_dir, threads=threads)
    dense = {t: OnnxEncoder(d, threads=threads) for t, d in dense_dirs.items()}

    def dense_mixed(items: list[str]) -> np.ndarray:
        out = np.empty((len(items), mt.dimension), dtype=np.float32)
        for t, idx in groups.items():
            out[idx] = dense[t].encode([items[i] for i in idx], batch_size=bs)
        return out

    runs = {
        ("single", "torch"): lambda: mote.encode(model, texts, task="query", batch_size=bs),
        ("single", "onnx-mt"): lambda: mt.encode(texts, task="query", batch_size=bs),
        ("single", "onnx-dense"): lambda: dense["query"].encode(texts, batch_size=bs),
        ("mixed", "torch"): lambda: mote.encode(model, texts, task=mixed, batch_size=bs),
        ("mixed", "onnx-mt"): lambda: mt.encode(texts, task=mixed, batch_size=bs),
        ("mixed", "onnx-dense"): lambda: dense_mixed(texts),
    }
    for fn in runs.values():  # warm-up: allocators, thread pools, first-call overheads
        fn()
    speeds: dict[tuple[str, str], list[float]] = {k: [] for k in runs}
    outputs: dict[tuple[str, str], np.ndarray] = {}
    for r in range(args.rounds):
        for key, fn in runs.items():
            t0 = time.perf_counter()
            outputs[key] = np.asarray(fn())
            speeds[key].append(len(texts) / (time.perf_counter() - t0))
        print(f"round {r + 1}: " + "  ".join(f"{a}/{b} {v[-1]:.0f}/s" for (a, b), v in speeds.items()))

    warm = list(texts[:256])
    mem_mt = memory("mt", [mt_dir], threads, warm)
    mem_dense = memory("dense", [dense_dirs[t] / "onnx" for t in TASKS], threads, warm)
    load_after = Path("/proc/loadavg").read_text().split()[:3]

    def cos_min(a: np.ndarray, b: np.ndarray) -> float:
        return float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).min())

    print(f"\n{len(texts)} sentences, batch {bs}, {threads} threads, median of {args.rounds} rounds; model {mt_dir}")
    print(f"{'batches':<8} {'backend':<11} {'sentences/s':>12} {'vs torch':>9}   min cosine vs torch")
    for (kind, backend), values in speeds.items():
        speed, base = statistics.median(values), statistics.median(speeds[(kind, "torch")])
        cos = "-" if backend == "torch" else f"{cos_min(outputs[(kind, backend)], outputs[(kind, 'torch')]):.6f}"
        print(f"{kind:<8} {backend:<11} {speed:>12.1f} {speed / base:>8.2f}x   {cos}")
    print(f"resident memory: one multi-task session {mem_mt:.0f} MB, four dense sessions {mem_dense:.0f} MB")
    med = {k: statistics.median(v) for k, v in speeds.items()}
    print(
        f"onnx-mt vs torch: single={med[('single', 'onnx-mt')] / med[('single', 'torch')]:.2f}x "
        f"mixed={med[('mixed', 'onnx-mt')] / med[('mixed', 'torch')]:.2f}x; "
        f"onnx-mt vs onnx-dense: single={med[('single', 'onnx-mt')] / med[('single', 'onnx-dense')]:.2f}x "
        f"mixed={med[('mixed', 'onnx-mt')] / med[('mixed', 'onnx-dense')]:.2f}x; "
        f"memory one session / four dense = {mem_mt / mem_dense:.2f}x"
    )
    print(f"load average (1/5/15 min): before {' '.join(load_before)}, after {' '.join(load_after)}")


if __name__ == "__main__":
    main()
