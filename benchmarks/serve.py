"""`mote serve` under load: one MoTE deployment vs four dense per-task deployments vs one dense model, on Ray Serve.

A bounded load generator on loopback (aiohttp), mixed four-task traffic (each request: one text, a random task),
the same engine and the same CPU budget (``--cpus``) for every setup, measured one setup at a time:

  mote-torch    one MoTE deployment (all-MiniLM-L6-v2 converted, experts perturbed), every task, torch
  dense4-torch  four dense deployments, the per-task exports (mote.export.export_dense), each a quarter of the
                budget; a request goes to its task's deployment
  dense1-torch  one dense model (the query export) serving one task: the cost MoTE should match
  mote-onnx     the MoTE model's multi-task ONNX export (mote.onnx.export_multitask), every task

Closed loop at concurrency 1 / 8 / 32 (each client sends its next request when the last one answered), then open
loop (Poisson arrivals) at rising fixed rates until p99 latency breaks ``--slo-ms`` or requests fail. Resident
memory is the summed RSS of each setup's replica processes. The goals of issue 28 are printed last: mixed-task
MoTE throughput >= 0.95x the single dense model's at the same concurrency, memory <= 0.4x the four dense
deployments', ONNX >= 1.5x torch.

    python benchmarks/serve.py --quick          # ~3-4 min on 2 cores
    python benchmarks/serve.py [--cpus 2] [--seconds 8] [--rates 10,20,40,80,160] [--setups mote-torch,...]
    python benchmarks/serve.py --paired mote-torch,dense1-torch --rounds 5   # one ratio, drift-resistant

The client runs on the same machine and takes CPU too: every setup pays for it alike.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

TASKS = ["query", "document", "classification", "clustering"]
SETUPS = ("mote-torch", "dense4-torch", "dense1-torch", "mote-onnx")
BUILTIN = [
    "how do magnets work", "A man is playing a guitar.", "Stocks fell sharply after the central bank raised rates.",
    "What is the capital of France? Paris is the capital and most populous city of France.",
    "I lost my card yesterday, can you block it and send me a new one?", "The movie was awesome.",
    "Researchers report a new method for training small language models on modest hardware with limited data.",
]


def sentences(n: int) -> list[str]:
    """Real sentences of varied length (the offline data's STS / Banking77 test sets), else a built-in few."""
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        from encode import load_sentences

        return load_sentences(n)
    except (Exception, SystemExit):
        rng = random.Random(0)
        return [" ".join(rng.choice(BUILTIN) for _ in range(rng.randint(1, 3))) for _ in range(n)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------------ models
def build_models(root: Path, onnx: bool) -> dict[str, Path]:
    import torch

    import mote
    from mote.experts import expert_modules
    from mote.export import export_dense

    model = mote.convert("all-MiniLM-L6-v2")
    torch.manual_seed(0)
    with torch.no_grad():  # distinct experts (a trained model's differ); the cost is the same
        for m in expert_modules(model[0].auto_model):
            m.weight.add_(torch.randn_like(m.weight) * 0.01)
    model.save(str(root / "mote"))
    paths = {"mote": root / "mote"}
    for task in TASKS:
        paths[task] = export_dense(model, task, root / f"dense-{task}")
    if onnx:
        from mote.onnx import export_multitask

        export_multitask(root / "mote", root / "onnx")
        paths["onnx"] = root / "onnx"
    return paths


# ------------------------------------------------------------------------------------------------ load
async def closed_loop(routes: dict[str, str], texts: list[str], concurrency: int, seconds: float,
                      tasks: list[str], per: int = 1) -> dict:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds
    rng = random.Random(concurrency)

    async def client(session) -> None:
        nonlocal errors
        while time.perf_counter() < stop:
            task = rng.choice(tasks)
            body = {"input": rng.sample(texts, per), "input_type": task}
            t0 = time.perf_counter()
            async with session.post(routes[task], json=body) as r:
                await r.read()
                if r.status == 200:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors += 1

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return summary(latencies, errors, wall)


async def open_loop(routes: dict[str, str], texts: list[str], rate: float, seconds: float, tasks: list[str],
                    per: int = 1) -> dict:
    """Poisson arrivals at ``rate`` requests/s for ``seconds``; latencies of the answers (bounded: at most
    ``rate * seconds`` requests are ever sent)."""
    import aiohttp

    latencies: list[float] = []
    errors = 0
    rng = random.Random(int(rate))

    async def one(session, task: str, batch: list[str]) -> None:
        nonlocal errors
        t0 = time.perf_counter()
        try:
            async with session.post(routes[task], json={"input": batch, "input_type": task}) as r:
                await r.read()
                if r.status == 200:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors += 1
        except aiohttp.ClientError:
            errors += 1

    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        pending = []
        t0 = time.perf_counter()
        at = 0.0
        while at < seconds:
            delay = t0 + at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            pending.append(asyncio.create_task(one(session, rng.choice(tasks), rng.sample(texts, per))))
            at += rng.expovariate(rate)
        await asyncio.gather(*pending)
        wall = time.perf_counter() - t0
    return summary(latencies, errors, wall)


def summary(latencies: list[float], errors: int, wall: float) -> dict:
    lat = sorted(latencies)

    def q(p: float) -> float:
        return 1000 * lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan")

    return {"n": len(lat), "errors": errors, "rps": len(lat) / wall, "p50": q(0.50), "p99": q(0.99)}


def replica_rss(app_names: list[str]) -> float:
    """Summed RSS (MiB) of the replica processes of ``app_names`` (Ray titles them ray::ServeReplica:APP:...)."""
    import psutil

    total = 0
    for p in psutil.process_iter(["cmdline", "name"]):
        try:
            title = " ".join(p.info["cmdline"] or []) + " " + (p.info["name"] or "")
            if any(f"ServeReplica:{a}:" in title for a in app_names):
                total += p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total / 2**20


# ------------------------------------------------------------------------------------------------ setups
def deploy(setup: str, paths: dict[str, Path], cpus: int, batch: int, replicas: int = 1,
           wait_ms: float | None = None) -> tuple[dict[str, str], list[str], list[str]]:
    """Deploy one setup; returns (task -> URL path, app names, the tasks its traffic uses). ``replicas``: of the
    one-deployment setups (each replica a 1/replicas share of the budget); dense4 is four one-replica deployments."""
    from ray import serve

    from mote.serve.app import build_app

    def run(name: str, model: Path, share: float, backend: str = "torch", n: int = 1) -> None:
        args = {"model": str(model), "name": name, "backend": backend, "num_cpus": share / n, "replicas": n,
                "threads": max(1, int(share / n)), "max_batch_size": batch, "max_queued_requests": -1,
                "max_ongoing_requests": 4 * batch}
        if wait_ms is not None:
            args["batch_wait_timeout_s"] = wait_ms / 1000
        serve.run(build_app(args), name=name, route_prefix=f"/{name}")

    if setup == "mote-torch":
        run("mote", paths["mote"], cpus, n=replicas)
        return {t: "/mote/v1/embeddings" for t in TASKS}, ["mote"], TASKS
    if setup == "mote-onnx":
        run("onnx", paths["onnx"], cpus, "onnx", n=replicas)
        return {t: "/onnx/v1/embeddings" for t in TASKS}, ["onnx"], TASKS
    if setup == "dense4-torch":
        for t in TASKS:
            run(t, paths[t], cpus / len(TASKS))
        return {t: f"/{t}/v1/embeddings" for t in TASKS}, list(TASKS), TASKS
    if setup == "dense1-torch":
        run("dense1", paths["query"], cpus, n=replicas)
        return {"query": "/dense1/v1/embeddings"}, ["dense1"], ["query"]
    raise SystemExit(f"unknown setup {setup!r}; choose from {SETUPS}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="3 s per point (a few minutes)")
    p.add_argument("--cpus", type=int, default=min(2, os.cpu_count() or 1), help="CPU budget of every setup")
    p.add_argument("--seconds", type=float, default=8.0, help="seconds per measured point")
    p.add_argument("--concurrency", default="1,8,32")
    p.add_argument("--rates", default="10,20,40,80,160,320", help="open-loop request rates (req/s), rising")
    p.add_argument("--slo-ms", type=float, default=250.0, help="p99 above this = broken (open loop stops)")
    p.add_argument("--max-batch-size", type=int, default=32)
    p.add_argument("--batch-wait-ms", type=float, default=None, help="mote serve's --batch-wait-ms (default: its own)")
    p.add_argument("--setups", default=",".join(SETUPS))
    p.add_argument("--n-texts", type=int, default=2000)
    p.add_argument("--texts-per-request", type=int, default=1, help="inputs per request (default 1)")
    p.add_argument("--replicas", type=int, default=1,
                   help="replicas of the one-deployment setups (mote-torch, dense1-torch, mote-onnx), sharing --cpus")
    p.add_argument("--paired", default=None, metavar="A,B",
                   help="two setups deployed side by side and measured alternately, closed loop only, --rounds times "
                        "(ratio A/B per round: the machine's drift hits both alike); e.g. mote-torch,dense1-torch")
    p.add_argument("--rounds", type=int, default=5, help="rounds of --paired")
    a = p.parse_args()
    if a.quick:
        a.seconds = min(a.seconds, 3.0)
    setups = a.setups.split(",")
    per = a.texts_per_request
    conc = [int(x) for x in a.concurrency.split(",")]
    rates = [float(x) for x in a.rates.split(",")]
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import logging

    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    logging.getLogger("sentence_transformers").setLevel(logging.ERROR)

    import ray
    from ray import serve

    texts = sentences(a.n_texts)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    with tempfile.TemporaryDirectory(prefix="mote-serve-bench-") as tmp:
        print(f"building the models in {tmp} ...", flush=True)
        paths = build_models(Path(tmp), onnx="mote-onnx" in setups)
        port = free_port()
        pair = a.paired.split(",") if a.paired else None
        # paired: both deployments are resident, one takes traffic at a time (Ray's CPUs are logical: each setup
        # still gets --cpus threads and --cpus logical CPUs)
        ray.init(num_cpus=a.cpus * (2 if pair else 1), include_dashboard=False, object_store_memory=128 * 2**20,
                 log_to_driver=False)
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        base = f"http://127.0.0.1:{port}"
        results: dict[str, dict] = {}
        if pair:
            try:
                paired(pair, paths, a, conc, texts, base, started)
            finally:
                serve.shutdown()
                ray.shutdown()
            return
        try:
            for setup in setups:
                routes, apps, tasks = deploy(setup, paths, a.cpus, a.max_batch_size, a.replicas, a.batch_wait_ms)
                routes = {t: base + r for t, r in routes.items()}
                asyncio.run(closed_loop(routes, texts, 4, 1.0, tasks))  # warm-up
                res = {"rss": replica_rss(apps), "closed": {}, "open": []}
                for c in conc:
                    res["closed"][c] = r = asyncio.run(closed_loop(routes, texts, c, a.seconds, tasks, per))
                    print(f"  {setup:13s} closed c={c:<3d} {r['rps']:8.1f} req/s  p50 {r['p50']:7.1f} ms  "
                          f"p99 {r['p99']:7.1f} ms  errors {r['errors']}", flush=True)
                for rate in rates:
                    r = asyncio.run(open_loop(routes, texts, rate, a.seconds, tasks, per))
                    res["open"].append((rate, r))
                    print(f"  {setup:13s} open {rate:6.0f}/s   {r['rps']:8.1f} req/s  p50 {r['p50']:7.1f} ms  "
                          f"p99 {r['p99']:7.1f} ms  errors {r['errors']}", flush=True)
                    if r["errors"] or not r["p99"] <= a.slo_ms:
                        break
                results[setup] = res
                for app in apps:
                    serve.delete(app)
        finally:
            serve.shutdown()
            ray.shutdown()
    report(results, conc, a, started)


def paired(pair: list[str], paths: dict[str, Path], a, conc: list[int], texts: list[str], base: str,
           started: str) -> None:
    """Deploy both setups of ``pair``, then per round and concurrency measure A then B (B then A on odd rounds);
    print each round's A/B throughput ratio and their median and range."""
    deployed = {}
    for setup in pair:
        routes, _, tasks = deploy(setup, paths, a.cpus, a.max_batch_size, a.replicas, a.batch_wait_ms)
        deployed[setup] = ({t: base + r for t, r in routes.items()}, tasks)
        asyncio.run(closed_loop(deployed[setup][0], texts, 4, 1.0, tasks))  # warm-up
    ratios: dict[int, list[float]] = {c: [] for c in conc}
    for rnd in range(a.rounds):
        for c in conc:
            rps = {}
            for setup in (pair if rnd % 2 == 0 else pair[::-1]):
                routes, tasks = deployed[setup]
                r = asyncio.run(closed_loop(routes, texts, c, a.seconds, tasks, a.texts_per_request))
                rps[setup] = r["rps"]
                if r["errors"]:
                    raise SystemExit(f"{setup} answered {r['errors']} errors at c={c}")
            ratios[c].append(rps[pair[0]] / rps[pair[1]])
            print(f"  round {rnd + 1} c={c:<3d} " + "  ".join(f"{k} {v:7.1f} req/s" for k, v in rps.items())
                  + f"  ratio {ratios[c][-1]:.3f}", flush=True)
    print()
    print(f"# mote serve benchmark, paired, {started}; {pair[0]} / {pair[1]}, CPU budget {a.cpus} each, "
          f"{a.rounds} rounds alternating, {a.seconds:g} s per point, max batch {a.max_batch_size}, "
          f"{a.texts_per_request} text(s) per request")
    for c in conc:
        xs = ratios[c]
        print(f"c={c:<3d} {pair[0]}/{pair[1]} throughput: median {statistics.median(xs):.3f}x "
              f"(range {min(xs):.3f}-{max(xs):.3f}; rounds {', '.join(f'{x:.3f}' for x in xs)})")


def report(results: dict[str, dict], conc: list[int], a, started: str) -> None:
    print()
    print(f"# mote serve benchmark, {started}; CPU budget {a.cpus} per setup, {a.replicas} replica(s) of "
          f"mote / dense1 / onnx, {a.seconds:g} s per point, "
          f"max batch {a.max_batch_size}, {a.texts_per_request} text(s) per request, mixed four-task traffic "
          "(dense1: one task); req/s = requests per second (x texts per request = texts/s)")
    head = f"{'setup':13s} {'RSS MiB':>8s}" + "".join(f" | c={c:<3d} req/s  p50  p99" for c in conc) \
        + " | open: best rate within SLO (p99)"
    print(head)
    print("-" * len(head))
    for setup, res in results.items():
        cells = "".join(f" | {r['rps']:9.1f} {r['p50']:5.0f} {r['p99']:5.0f}"
                        for r in (res["closed"][c] for c in conc))
        ok = [(rate, r) for rate, r in res["open"] if not r["errors"] and r["p99"] <= a.slo_ms]
        best = f"{ok[-1][0]:.0f}/s ({ok[-1][1]['p99']:.0f} ms)" if ok else "none"
        print(f"{setup:13s} {res['rss']:8.0f}{cells} | {best}")
    print()
    if {"mote-torch", "dense1-torch"} <= set(results):
        ratios = [results["mote-torch"]["closed"][c]["rps"] / results["dense1-torch"]["closed"][c]["rps"]
                  for c in conc]
        print("goal mote/dense1 throughput >= 0.95x: " + ", ".join(f"c={c}: {x:.2f}x" for c, x in zip(conc, ratios)))
    if {"mote-torch", "dense4-torch"} <= set(results):
        print(f"goal memory mote/dense4 <= 0.4x: {results['mote-torch']['rss'] / results['dense4-torch']['rss']:.2f}x")
    if {"mote-onnx", "mote-torch"} <= set(results):
        ratios = [results["mote-onnx"]["closed"][c]["rps"] / results["mote-torch"]["closed"][c]["rps"] for c in conc]
        print("goal onnx/torch throughput >= 1.5x: " + ", ".join(f"c={c}: {x:.2f}x" for c, x in zip(conc, ratios)))
    print(f"(median p50 over setups at c={conc[-1]}: "
          f"{statistics.median(r['closed'][conc[-1]]['p50'] for r in results.values()):.0f} ms)")


if __name__ == "__main__":
    main()
