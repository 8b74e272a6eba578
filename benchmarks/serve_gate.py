"""`mote serve`'s batching gate, A/B: the gated replica (the default) against Ray Serve's batcher alone.

Both variants of one model are resident on one Ray Serve and measured alternately (closed loop, mixed four-task
traffic, one text per request, the load generator of ``benchmarks/serve.py``): ``gated`` is ``mote serve`` as
shipped (:class:`mote.serve.gate.IdleGate`, no batch wait); ``ungated`` is the same replica with the gate opened for
good (a subclass of the deployment whose gate never holds) and a ``--ungated-wait-ms`` batch wait (default 5, the
default before the gate). Prints each round's gated / ungated throughput ratio and their median.

    python benchmarks/serve_gate.py                    # the MoTE folder, torch (~3 min on 2 cores)
    python benchmarks/serve_gate.py --model onnx       # its multi-task ONNX export
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from serve import TASKS, build_models, closed_loop, free_port, sentences


class _OpenGate:
    """A gate that never holds a request (the ungated variant)."""

    async def wait(self) -> None:
        return None

    @contextlib.asynccontextmanager
    async def running(self):
        yield


def ungated_deployment():
    """``mote serve``'s deployment with the gate opened for good (a subclass, pickled by value into its replica)."""
    from ray import serve

    from mote.serve.app import MoteEmbeddings

    class Ungated(MoteEmbeddings.func_or_class):
        async def __init__(self, args) -> None:  # (the ingress wrapper's __init__ is async)
            await super().__init__(args)
            self.gate = _OpenGate()

        def gate_kind(self) -> str:
            return type(self.gate).__name__

    return serve.deployment(name="mote")(Ungated)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=("mote", "onnx"), default="mote")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--concurrency", default="1,8,32")
    p.add_argument("--cpus", type=int, default=min(2, os.cpu_count() or 1), help="threads of each replica")
    p.add_argument("--ungated-wait-ms", type=float, default=5.0)
    a = p.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import ray
    from ray import serve

    from mote.serve.app import MoteEmbeddings

    conc = [int(c) for c in a.concurrency.split(",")]
    texts = sentences(2000)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    with tempfile.TemporaryDirectory(prefix="mote-serve-gate-") as tmp:
        paths = build_models(Path(tmp), onnx=a.model == "onnx")
        port = free_port()
        ray.init(num_cpus=2 * a.cpus, include_dashboard=False, object_store_memory=128 * 2**20, log_to_driver=False)
        try:
            serve.start(http_options={"host": "127.0.0.1", "port": port})
            routes = {}
            for variant in ("gated", "ungated"):
                args = {"model": str(paths[a.model]), "name": variant, "threads": a.cpus,
                        "backend": "onnx" if a.model == "onnx" else "torch", "max_batch_size": 32}
                deployment = MoteEmbeddings
                if variant == "ungated":
                    args["batch_wait_timeout_s"] = a.ungated_wait_ms / 1000
                    deployment = ungated_deployment()
                app = deployment.options(max_ongoing_requests=128, max_queued_requests=-1,
                                         ray_actor_options={"num_cpus": a.cpus}).bind(args)
                handle = serve.run(app, name=variant, route_prefix=f"/{variant}")
                if variant == "ungated":  # the replica really holds the open gate
                    assert handle.gate_kind.remote().result(timeout_s=60) == "_OpenGate"
                routes[variant] = {t: f"http://127.0.0.1:{port}/{variant}/v1/embeddings" for t in TASKS}
                asyncio.run(closed_loop(routes[variant], texts, 4, 1.0, TASKS))  # warm-up
            ratios: dict[int, list[float]] = {c: [] for c in conc}
            for rnd in range(a.rounds):
                for c in conc:
                    rps = {}
                    for variant in (("gated", "ungated") if rnd % 2 == 0 else ("ungated", "gated")):
                        r = asyncio.run(closed_loop(routes[variant], texts, c, a.seconds, TASKS))
                        if r["errors"]:
                            raise SystemExit(f"{variant} answered {r['errors']} errors at c={c}")
                        rps[variant] = r["rps"]
                    ratios[c].append(rps["gated"] / rps["ungated"])
                    print(f"  round {rnd + 1} c={c:<3d} gated {rps['gated']:6.1f} req/s  ungated "
                          f"{rps['ungated']:6.1f} req/s  ratio {ratios[c][-1]:.3f}", flush=True)
        finally:
            serve.shutdown()
            ray.shutdown()
    print(f"\n# mote serve batching gate, {started}; {a.model}, {a.rounds} rounds alternating, {a.seconds:g} s per "
          f"point, max batch 32, 1 text per request; ungated: batch wait {a.ungated_wait_ms:g} ms")
    for c in conc:
        xs = ratios[c]
        print(f"c={c:<3d} gated/ungated throughput: median {statistics.median(xs):.3f}x (range {min(xs):.3f}-"
              f"{max(xs):.3f}; rounds {', '.join(f'{x:.3f}' for x in xs)})")


if __name__ == "__main__":
    main()
