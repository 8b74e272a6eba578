"""Encode throughput of the routed models (MoTE, TLR, TSEmbed) against the dense all-MiniLM-L6-v2, side by side.

All models are fresh conversions of the same base (MoTE / TLR: experts in layers 1, 3, 5; TSEmbed: the MoE-LoRA of
configs/tsembed-minilm.yaml, 4 experts, top-2 token routing, r 8 on every linear layer) and encode the same real
sentences through :func:`mote_lab.measure.measure` (the models take turns on small chunks; single = every
text as task ``query``, mixed = the four tasks interleaved; median over rounds).

    python benchmarks/routed_encode.py [--n 512] [--rounds 3] [--batch-size 32] [--threads 1,2]

The last lines are `routed encode ratio /dense (<t> threads): mote=<s>/<m> tlr=<s>/<m> tsembed=<s>/<m>`
(single/mixed throughput ratios; 1.0 = the dense model's speed), each after the same ratios per CPU second of the
process (`routed CPU-time ratio`: steadier on a shared machine).
"""

from __future__ import annotations

import argparse

from encode import load_sentences  # benchmarks/encode.py

import mote
from mote.ablations import tlr
from mote.lora import MoELoRAConfig
from mote.lora import convert as tsembed_convert
from mote_lab.measure import measure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--chunk", type=int, default=128)
    parser.add_argument("--threads", default="1,2", help="comma list of torch thread counts")
    args = parser.parse_args()

    from sentence_transformers import SentenceTransformer

    texts = load_sentences(args.n)
    base = mote.resolve_model_path(mote.DEFAULT_BASE_MODEL)
    lora = MoELoRAConfig(num_experts=4, top_k=2, routing="token", r=8, lora_alpha=16, target_modules="all-linear")
    models = {
        "dense": SentenceTransformer(base, device="cpu"),
        "mote": mote.convert(base, placement="every-other"),
        "tlr": tlr.convert(base, placement="every-other"),
        "tsembed": tsembed_convert(base, lora).eval(),
    }
    lines = []
    for threads in [int(t) for t in args.threads.split(",")]:
        res = measure(models, texts, rounds=args.rounds, chunk=args.chunk, batch_size=args.batch_size,
                      threads=threads)
        m = res["models"]
        for name, v in m.items():
            print(f"{threads} thread(s) {name:>8}: single {v['single_per_s']:7.1f}/s  mixed {v['mixed_per_s']:7.1f}/s",
                  flush=True)
        for clock, key in (("CPU-time", "_cpu_per_s"), ("encode", "_per_s")):
            ratios = " ".join(f"{n}={m[n]['single' + key] / m['dense']['single' + key]:.3f}/"
                              f"{m[n]['mixed' + key] / m['dense']['mixed' + key]:.3f}" for n in models if n != "dense")
            lines.append(f"routed {clock} ratio /dense ({res['threads']} threads): {ratios}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
