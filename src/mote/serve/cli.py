"""The ``mote serve`` verb: the OpenAI-compatible embeddings service on a local Ray Serve, or its cluster config.

    mote serve MODEL [--backend torch|onnx] [--host H] [--port P] [--replicas N] [--max-batch-size B] ...
    mote serve MODEL --write-config FILE [...]      (a `serve deploy` config for a Ray cluster; starts nothing)

Locally it starts an embedded Ray (no dashboard, loopback by default), runs :func:`mote.serve.app.build_app` and
waits; SIGINT or SIGTERM shuts Serve down (the replicas finish the requests in flight) and then Ray, so that no Ray
process is left. ``--backend onnx`` on a MoTE folder exports the multi-task ONNX graph to a temporary folder first.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path

from mote.serve.gate import DEFAULT_BATCH_WAIT_S


def register(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a model over HTTP (OpenAI-compatible /v1/embeddings, every task) on Ray Serve",
        description="Serve MODEL (a MoTE / TLR / TSEmbed folder, a dense export or a multi-task ONNX export) on Ray "
        "Serve: POST /v1/embeddings (task as input_type), GET /v1/models, /health, /ready. Needs mote[serve].",
    )
    p.add_argument("model", help="model folder")
    p.add_argument("--backend", choices=("torch", "onnx"), default="torch",
                   help="torch, or onnx (a multi-task ONNX export; a MoTE folder is exported first)")
    p.add_argument("--host", default="127.0.0.1", help="HTTP host (default 127.0.0.1; 0.0.0.0 listens on all)")
    p.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    p.add_argument("--replicas", type=int, default=1, help="model replicas (one process each; default 1)")
    p.add_argument("--max-batch-size", type=int, default=32, help="texts per forward, across requests (default 32)")
    p.add_argument("--batch-wait-ms", type=float, default=DEFAULT_BATCH_WAIT_S * 1000,
                   help="how long a batch waits to fill up, in ms (default 0: the next batch is every request that "
                        "came while the last one ran)")
    p.add_argument("--max-ongoing-requests", type=int, default=None,
                   help="requests in flight per replica (default 2 x --max-batch-size)")
    p.add_argument("--max-queued-requests", type=int, default=256,
                   help="requests queued beyond those; more get 503 + Retry-After (default 256; -1: unbounded)")
    p.add_argument("--max-inputs", type=int, default=2048, help="inputs per request; more get 413 (default 2048)")
    p.add_argument("--threads", type=int, default=None, help="torch / onnxruntime threads per replica")
    p.add_argument("--num-cpus", type=float, default=1.0, help="Ray CPUs reserved per replica (default 1)")
    p.add_argument("--name", default=None, help="the model id clients send (default: the folder's name)")
    p.add_argument("--metrics-port", type=int, default=None,
                   help="port of Ray's Prometheus metrics endpoint (ray_serve_* metrics; default: none exported)")
    p.add_argument("--write-config", metavar="FILE", default=None,
                   help="write a `serve deploy` config for a Ray cluster to FILE and exit")
    p.set_defaults(func=cmd_serve)


def serve_args(args: argparse.Namespace, model: str) -> dict:
    """The application's arguments (:class:`mote.serve.app.ServeArgs`) from the flags."""
    return {
        "model": model, "backend": args.backend, "name": args.name or Path(args.model).resolve().name,
        "replicas": args.replicas, "max_batch_size": args.max_batch_size,
        "batch_wait_timeout_s": args.batch_wait_ms / 1000.0, "max_ongoing_requests": args.max_ongoing_requests,
        "max_queued_requests": args.max_queued_requests, "max_inputs": args.max_inputs, "threads": args.threads,
        "num_cpus": args.num_cpus,
    }


def cmd_serve(args: argparse.Namespace) -> int:
    from mote.serve.backends import folder_kind

    kind = folder_kind(args.model)  # a missing folder fails before Ray starts
    if args.write_config and args.backend == "onnx" and kind != "onnx-multitask":
        raise ValueError(f"a cluster config needs the ONNX export itself: `mote export {args.model} --onnx "
                         "--all-tasks OUT`, then `mote serve OUT --write-config FILE`")
    if args.write_config:
        from mote.atomic import atomic_write_bytes
        from mote.serve.config import deploy_config

        host = "0.0.0.0" if args.host == "127.0.0.1" else args.host
        text = deploy_config(serve_args(args, str(Path(args.model).resolve())), host=host, port=args.port)
        atomic_write_bytes(Path(args.write_config), text.encode("utf-8"))
        print(f"Wrote a Ray Serve config to {args.write_config}: run it on a cluster with "
              f"`serve deploy {args.write_config}`")
        return 0
    # Ray's C++ core installs abseil's failure-signal handler, which turns the SIGTERM we handle below into an
    # abort; usage stats would phone home. Both off unless the user set them.
    os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
        from ray import serve
    except ImportError:
        raise ImportError("mote serve needs Ray Serve: pip install 'mote[serve]'") from None
    with tempfile.TemporaryDirectory(prefix="mote-serve-") as tmp:
        model = str(Path(args.model).resolve())
        if args.backend == "onnx" and kind == "mote":
            from mote.onnx import export_multitask

            print(f"Exporting {args.model} as one multi-task ONNX graph (once, into {tmp}) ...", flush=True)
            print(export_multitask(model, Path(tmp) / "onnx"), flush=True)
            model = str(Path(tmp) / "onnx")
        app_args = serve_args(args, model)
        from mote.serve.app import build_app

        app = build_app(app_args)
        stop = threading.Event()
        ray.init(
            num_cpus=max(1, int(args.replicas * args.num_cpus + 0.999)),
            include_dashboard=False,
            object_store_memory=128 * 1024 * 1024,
            log_to_driver=False,
            **({"_metrics_export_port": args.metrics_port} if args.metrics_port else {}),
        )
        for sig in (signal.SIGINT, signal.SIGTERM):  # (after ray.init, which sets a SIGTERM handler of its own)
            signal.signal(sig, lambda *_: stop.set())
        try:
            serve.start(http_options={"host": args.host, "port": args.port})
            serve.run(app, name="mote", route_prefix="/", blocking=False)
            url = f"http://{args.host}:{args.port}"
            print(f"Serving {app_args['name']} ({kind}, {args.backend}, {args.replicas} replica(s)) at "
                  f"{url}/v1/embeddings; models: {url}/v1/models. Ctrl-C or SIGTERM stops it.", flush=True)
            while not stop.wait(0.5):
                pass
            print("Stopping: finishing the requests in flight ...", file=sys.stderr, flush=True)
        finally:
            try:  # the app first, while the proxy still holds the clients' connections: its replicas stop
                serve.delete("mote")  # taking requests and finish those in flight (graceful_shutdown_timeout_s)
            finally:
                try:
                    serve.shutdown()
                finally:
                    ray.shutdown()
    print("Stopped.", file=sys.stderr, flush=True)
    return 0
