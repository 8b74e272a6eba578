"""The serve backends' forward alone, outside Ray: one MoTE model on mixed four-task batches against one dense model
(the query export) on one task, at batch sizes 1 / 8 / 32, alternating the two, five rounds each.

    python benchmarks/mixed_batch_forward.py

Prints texts/s and the MoTE / dense ratio (mean and range over rounds). It isolates what `benchmarks/serve.py`
measures through the engine: the cost of grouped expert dispatch on small task-mixed batches.
"""

import random
import tempfile
import time

import numpy as np
import torch

import mote
from mote.experts import expert_modules
from mote.export import export_dense
from mote.serve.backends import load_backend

TASKS = ["query", "document", "classification", "clustering"]
WORDS = ["how", "do", "magnets", "work", "the", "movie", "was", "awesome", "stocks", "fell", "sharply", "after",
         "the", "bank", "raised", "rates"]


def main() -> None:
    torch.manual_seed(0)
    root = tempfile.mkdtemp()
    model = mote.convert("all-MiniLM-L6-v2")
    with torch.no_grad():  # distinct experts, as a trained model's (the cost is the same)
        for e in expert_modules(model[0].auto_model):
            e.weight.add_(torch.randn_like(e.weight) * 0.01)
    model.save(root + "/mote")
    export_dense(model, "query", root + "/q")
    mote_backend, dense_backend = load_backend(root + "/mote"), load_backend(root + "/q")
    rng = random.Random(0)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14))) for _ in range(4000)]

    def run(backend, n: int, mixed: bool, reps: int) -> float:
        start = time.perf_counter()
        for r in range(reps):
            chunk = texts[(r * n) % 3000:(r * n) % 3000 + n]
            backend.embed(chunk, [rng.choice(TASKS) for _ in chunk] if mixed else ["query"] * n)
        return reps * n / (time.perf_counter() - start)

    for n, reps in ((1, 300), (8, 80), (32, 30)):
        res: dict[str, list[float]] = {"mote": [], "dense": []}
        for _ in range(5):
            res["mote"].append(run(mote_backend, n, True, reps))
            res["dense"].append(run(dense_backend, n, False, reps))
        ratio = [a / b for a, b in zip(res["mote"], res["dense"], strict=True)]
        print(f"batch {n}: mote mixed {np.mean(res['mote']):.0f} texts/s, dense1 {np.mean(res['dense']):.0f}; "
              f"ratio mean {np.mean(ratio):.3f} range {min(ratio):.3f}-{max(ratio):.3f}", flush=True)


if __name__ == "__main__":
    main()
