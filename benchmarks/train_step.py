"""Training-step cost of MoTE vs the dense model on the same single-task batch (all-MiniLM-L6-v2).

One step = embed both columns of a batch of (anchor, positive) pairs, TA-CL InfoNCE, backward, AdamW step.
The MoTE model (experts every other block) routes the batch to one expert; the dense model gets the same texts
with the same task prefix (the IC baseline), so both see identical token ids. Steps of the two models alternate,
so a busy machine slows both alike; the ratio compares medians of wall time (process CPU time is printed too:
on a shared machine it is the steadier measure). Peak memory is the peak RSS of a fresh process
per model (CPU) or ``torch.cuda.max_memory_allocated`` (GPU).

    python benchmarks/train_step.py                      # batch 64, seq 128, 6 timed steps each
    python benchmarks/train_step.py --steps 3 --batch-size 16

The last line is ``train step ratio mote/dense: <x>`` (target <= 1.05).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

TASK = "classification"


def batch_texts(n: int) -> tuple[list[str], list[str]]:
    """``n`` long (anchor, positive) texts: SQuAD paragraphs if the data folder is there, else synthetic."""
    try:
        from mote.data.sources import Source, load_records

        rows = load_records(Source("squad", folder="train-SQuADDev"), _data_root(), limit=4 * n)
        paras = list(dict.fromkeys(r["positive"] for r in rows))
        if len(paras) >= 2 * n:
            return paras[:n], paras[n : 2 * n]
    except Exception:
        pass
    words = ["the", "of", "model", "expert", "routing", "task", "embedding", "batch", "token", "layer", "norm"]
    text = [" ".join(words[(i * 7 + j) % len(words)] for j in range(200)) for i in range(2 * n)]
    return text[:n], text[n:]


def _data_root():
    from mote.data import data_dir

    try:
        return data_dir()
    except FileNotFoundError:
        return None


def build(kind: str, seq_len: int, device: str):
    """(model, preprocess(texts) -> features) for ``kind`` in {mote, dense}."""
    from sentence_transformers import SentenceTransformer

    import mote

    if kind == "mote":
        model = mote.convert("all-MiniLM-L6-v2", placement="every-other", device=device)
        model.max_seq_length = seq_len

        def prep(texts):
            return model.preprocess(texts, task=TASK)
    else:
        model = SentenceTransformer(mote.resolve_model_path("all-MiniLM-L6-v2"), device=device)
        model.max_seq_length = seq_len
        prefix = mote.RoutingTable.default().prefix(TASK)

        def prep(texts):
            return model.preprocess(texts, prompt=prefix)

    model.train()
    return model, prep


def make_step(model, prep, anchors, positives, device):
    import torch

    from mote.train.losses import info_nce

    features = [prep(anchors), prep(positives)]
    features = [{k: v.to(device) if hasattr(v, "to") else v for k, v in f.items()} for f in features]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)

    def step() -> tuple[float, float]:
        """(wall seconds, process CPU seconds) of one step."""
        t, c = time.perf_counter(), time.process_time()
        embs = [model(dict(f))["sentence_embedding"] for f in features]
        loss = info_nce(embs[0], embs[1], None, None, temperature=0.03)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - t, time.process_time() - c

    return step, features[0]["input_ids"].shape


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def peak_memory_child(args) -> None:
    """--child KIND: two steps of one model in a fresh process; print (as JSON) the peak memory during the steps
    and its growth over the process before the model was built (weights + gradients + optimizer + activations)."""
    import threading

    import torch

    anchors, positives = batch_texts(args.batch_size)
    if args.device.startswith("cuda"):
        model, prep = build(args.child, args.seq_len, args.device)
        step, _ = make_step(model, prep, anchors, positives, args.device)
        for _ in range(2):
            step()
        peak = torch.cuda.max_memory_allocated() / 2**20
        print(json.dumps({"peak_mib": peak, "model_mib": peak}))
        return
    baseline = _rss_mib()
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mib())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    model, prep = build(args.child, args.seq_len, args.device)
    step, _ = make_step(model, prep, anchors, positives, args.device)
    for _ in range(2):
        step()
    done.set()
    sampler.join()
    print(json.dumps({"peak_mib": peak[0], "model_mib": peak[0] - baseline}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--steps", type=int, default=6, help="timed steps per model (after 1 warm-up step each)")
    ap.add_argument("--device", default="cuda" if _cuda() else "cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--no-memory", action="store_true", help="skip the per-model peak-memory processes")
    ap.add_argument("--child", choices=["mote", "dense"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        peak_memory_child(args)
        return 0

    anchors, positives = batch_texts(args.batch_size)
    steps, shapes = {}, {}
    for kind in ("mote", "dense"):
        model, prep = build(kind, args.seq_len, args.device)
        steps[kind], shapes[kind] = make_step(model, prep, anchors, positives, args.device)
    if shapes["mote"] != shapes["dense"]:
        raise SystemExit(f"token shapes differ: {shapes}")
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, batch {args.batch_size} pairs "
          f"(2 x {tuple(shapes['mote'])} tokens), task {TASK!r}")
    for kind in steps:  # warm-up
        steps[kind]()
    times: dict[str, list[float]] = {"mote": [], "dense": []}
    cpu: dict[str, list[float]] = {"mote": [], "dense": []}
    for i in range(args.steps):
        for kind in ("mote", "dense") if i % 2 == 0 else ("dense", "mote"):
            wall, used = steps[kind]()
            times[kind].append(wall)
            cpu[kind].append(used)
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    for kind in ("dense", "mote"):
        print(f"{kind:>5}: step {med[kind]:.3f} s wall (median of {args.steps}; min {min(times[kind]):.3f}), "
              f"{med_cpu[kind]:.3f} s CPU; {args.batch_size / med[kind]:.1f} pairs/s = "
              f"{2 * args.batch_size / med[kind]:.1f} texts/s")
    print(f"CPU-time ratio mote/dense (robust to a busy machine): {med_cpu['mote'] / med_cpu['dense']:.3f}")
    if not args.no_memory:
        for kind in ("dense", "mote"):
            cmd = [sys.executable, __file__, "--child", kind, "--batch-size", str(args.batch_size), "--seq-len",
                   str(args.seq_len), "--device", args.device]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            out = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
            if args.device == "cpu":
                print(f"{kind:>5}: peak memory {out['peak_mib']:.0f} MiB RSS during the steps, "
                      f"{out['model_mib']:.0f} MiB above the process before the model was built")
            else:
                print(f"{kind:>5}: peak memory {out['peak_mib']:.0f} MiB (CUDA max allocated)")
    print(f"train step ratio mote/dense: {med['mote'] / med['dense']:.3f}")
    return 0


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


if __name__ == "__main__":
    sys.exit(main())
