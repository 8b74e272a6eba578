"""``mote serve`` (mote.serve): a real Ray Serve on a free loopback port, one per module, stopped at the end.

Every task's embeddings over HTTP equal ``mote.encode`` (torch <= 1e-5, the multi-task ONNX backend cosine >=
0.9999), 16 concurrent clients with random tasks each get their own task's embeddings, the bad-input matrix gets
its 400 / 413 / 404 (never a 5xx) and the service answers afterwards, a full queue answers 503 with Retry-After, and
``mote serve`` stopped with SIGTERM leaves no process behind. The MoTE model's experts are perturbed so that every
task's embedding differs. Without Ray, every folder kind's backend embeds a task-mixed batch in one forward.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil
import pytest
import requests
import yaml
from conftest import SENTENCES, perturbed_routed_models

import mote
from mote.export import export_dense
from mote.serve.api import ApiError, check_dimensions, resolve_task
from mote.serve.backends import load_backend

TASKS = ["query", "document", "classification", "clustering"]
COHERE = {"search_query": "query", "search_document": "document", "classification": "classification",
          "clustering": "clustering"}
TEXTS = [*SENTENCES, "", "magnets " * 3, "Paris is the capital of France.", "a b c d e f g"]
LONG = "word " * 200  # > 64 tokens, the tiny model's max_seq_length
MAX_INPUTS = 24
MOTE = str(Path(sys.executable).parent / "mote")  # the installed console script


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen | None = None, limit_s: float = 180) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"mote serve exited with {proc.returncode}: {proc.stdout.read()}")
        try:
            if requests.get(url + "/ready", timeout=2).status_code == 200:
                return
        except requests.RequestException:  # not listening yet, or busy starting
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} never became ready")


@pytest.fixture(scope="module")
def folders(tmp_path_factory, perturbed_mote, perturbed_mote_onnx):
    """A perturbed tiny MoTE model and its multi-task ONNX export (conftest: built once, shared with
    test_onnx_multitask.py), its dense `query` export, a TLR and a TSEmbed folder; and the reference: mote.encode of
    TEXTS per task."""
    model, shared = perturbed_mote
    root = tmp_path_factory.mktemp("serve")
    export_dense(model, "query", root / "dense-query")
    token, lora = perturbed_routed_models(root)
    ref = {t: mote.encode(model, TEXTS, task=t) for t in TASKS}
    for a in TASKS:  # the perturbed experts really differ
        for b in TASKS:
            if a < b:
                assert np.abs(ref[a] - ref[b]).max() > 1e-2
    return {"root": root, "mote": shared / "mote", "onnx": perturbed_mote_onnx, "model": model, "ref": ref,
            "tlr": token, "tsembed": lora}


# ------------------------------------------------------------------------------------------------ no Ray
def test_every_folder_kind_embeds_a_task_mixed_batch_in_one_forward_as_encode_does(folders, monkeypatch):
    root, ref = folders["root"], folders["ref"]
    rng = np.random.default_rng(0)
    mixed = [TASKS[i] for i in rng.integers(0, 4, len(TEXTS))]
    assert len(set(mixed)) == 4
    want = np.stack([ref[t][i] for i, t in enumerate(mixed)])

    calls = []
    forward = mote.MoTETransformer.forward
    def counted(self, *a, **k):
        calls.append(1)
        return forward(self, *a, **k)

    monkeypatch.setattr(mote.MoTETransformer, "forward", counted)
    b = load_backend(folders["mote"])
    assert (b.kind, b.tasks, b.default_task) == ("mote", TASKS, "document")
    got = b.embed(TEXTS, mixed)
    assert len(calls) == 1  # one forward for four tasks: the batch is not split by task
    assert np.abs(got - want).max() <= 1e-5

    onnx = load_backend(folders["onnx"])
    assert (onnx.kind, onnx.backend, onnx.tasks) == ("onnx-multitask", "onnx", TASKS)
    cos = (onnx.embed(TEXTS, mixed) * want).sum(1)
    assert cos.min() >= 0.9999

    dense = load_backend(root / "dense-query")
    assert (dense.kind, dense.tasks) == ("dense", ["query"])
    assert np.abs(dense.embed(TEXTS, ["query"] * len(TEXTS)) - ref["query"]).max() <= 1e-5

    for kind in ("tlr", "tsembed"):
        b = load_backend(root / kind)
        assert b.kind == kind and b.tasks == TASKS
        m = folders[kind]
        expect = np.stack([m.encode([x], task=t)[0] for x, t in zip(TEXTS, mixed)])
        assert np.abs(b.embed(TEXTS, mixed) - expect).max() <= 1e-5, kind

    counts = load_backend(folders["mote"]).token_counts([LONG, "hi"], ["query", "query"])
    assert counts[0] > 64 and counts[1] == len(mote.load(folders["mote"]).tokenizer("search_query: hi")["input_ids"])


def test_task_names_and_dimensions_are_checked():
    assert [resolve_task(k, TASKS, "document") for k in COHERE] == list(COHERE.values())
    assert resolve_task(None, TASKS, "document") == "document"
    assert resolve_task("clustering", TASKS, "document") == "clustering"
    with pytest.raises(ApiError, match=r"unknown input_type 'rerank'.*'query'.*'search_query'") as e:
        resolve_task("rerank", TASKS, "document")
    assert e.value.status == 400
    assert check_dimensions(None, 384, None) is None and check_dimensions(384, 384, None) is None
    assert check_dimensions(128, 384, [384, 128]) == 128
    for dim, dims in ((128, None), (0, [384, 128]), (512, [384, 128])):
        with pytest.raises(ApiError) as e:
            check_dimensions(dim, 384, dims)
        assert e.value.status == 400


def test_the_defaults_docs_serving_md_states_are_the_cli_and_app_defaults():
    """docs/serving.md names mote serve's defaults; the CLI's flags and ServeArgs (what `serve deploy` builds) have
    exactly those."""
    import argparse
    import re

    from mote.serve.app import ServeArgs
    from mote.serve.cli import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    cli = vars(parser.parse_args(["serve", "m"]))
    doc = (Path(__file__).parents[1] / "docs" / "serving.md").read_text(encoding="utf-8")
    stated = {flag.replace("-", "_"): float(value)
              for flag, value in re.findall(r"`--([a-z-]+)` \([^)]*?default (\d+)(?![\dx])", doc)}
    assert {"batch_wait_ms", "max_queued_requests", "max_inputs"} <= set(stated), stated
    for flag, value in stated.items():
        assert cli[flag] == value, flag
    head = re.search(r"127\.0\.0\.1:(\d+), (\d+) replica, batches of up to (\d+) texts", doc)
    want = ("127.0.0.1", *map(int, head.groups()))
    assert (cli["host"], cli["port"], cli["replicas"], cli["max_batch_size"]) == want
    app = {k: f.default for k, f in ServeArgs.model_fields.items()}
    assert app["batch_wait_timeout_s"] * 1000 == cli["batch_wait_ms"] == 0
    for k in ("max_batch_size", "max_queued_requests", "max_inputs", "replicas", "num_cpus"):
        assert app[k] == cli[k], k


def test_write_config_is_a_serve_deploy_config_naming_the_app_builder(folders, tmp_path, capsys):
    from ray.serve.schema import ServeDeploySchema

    from mote.cli import main
    from mote.serve.app import ServeArgs, build_app

    out = tmp_path / "serve.yaml"
    assert main(["serve", str(folders["mote"]), "--write-config", str(out), "--replicas", "3",
                 "--max-batch-size", "8", "--port", "9000"]) == 0
    config = yaml.safe_load(out.read_text())
    ServeDeploySchema.model_validate(config)
    (app,) = config["applications"]
    assert app["import_path"] == "mote.serve.app:build_app"
    args = ServeArgs.model_validate(app["args"])
    assert (args.model, args.replicas, args.max_batch_size) == (str(folders["mote"]), 3, 8)
    assert config["http_options"]["port"] == 9000
    build_app(app["args"])  # what Ray Serve calls on the cluster (it checks the folder)
    with pytest.raises(ValueError, match="--all-tasks"):  # ONNX from a MoTE folder: export it first
        build_app({**app["args"], "backend": "onnx"})
    assert main(["serve", str(folders["mote"]), "--backend", "onnx", "--write-config", str(out)]) != 0
    capsys.readouterr()
    assert main(["serve", str(tmp_path / "missing"), "--write-config", str(tmp_path / "other.yaml")]) != 0
    assert not (tmp_path / "other.yaml").exists()
    err = capsys.readouterr().err.strip()
    assert "does not exist" in err and len(err.splitlines()) == 1, err


# ------------------------------------------------------------------------------------------------ Ray Serve
@pytest.fixture(scope="module")
def cli_serve(folders):
    """`mote serve` as a user runs it (the TSEmbed folder, torch), started once and early: it comes up while the
    in-process Serve below starts; the last test stops it."""
    port, metrics = free_port(), free_port()
    # Ray's workers report metrics to its agent every metrics_report_interval_ms (10 s by default); every 1 s, the
    # first request's Serve metrics reach --metrics-port without the test waiting out a 10 s period.
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_metrics_report_interval_ms": "1000"}
    proc = subprocess.Popen(
        [MOTE, "serve", str(folders["root"] / "tsembed"), "--port", str(port), "--num-cpus", "0", "--threads", "1",
         "--max-batch-size", "1",  # one text per forward: a request of 2,048 texts stays in flight a while
         "--metrics-port", str(metrics)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True,
    )
    try:
        yield proc, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics}/metrics"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def server(folders, cli_serve):
    """One Ray Serve on a free loopback port: /torch (the MoTE folder) and /onnx (its multi-task export, with a
    queue of one request in flight + one waiting and batches of one text, to overload it)."""
    import ray
    from ray import serve

    from mote.serve.app import build_app

    port = free_port()
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 1024 * 1024, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        common = {"num_cpus": 0, "threads": 1, "max_inputs": MAX_INPUTS}
        # Both applications in one deploy (serve.run_many): their replicas start side by side, not one after the other.
        serve.run_many([
            serve.RunTarget(build_app({"model": str(folders["mote"]), "max_batch_size": 16,
                                       "batch_wait_timeout_s": 0.01, **common}), name="torch", route_prefix="/torch"),
            serve.RunTarget(build_app({"model": str(folders["onnx"]), "name": "mote", "max_batch_size": 1,
                                       "max_ongoing_requests": 1, "max_queued_requests": 1, "retry_after_s": 2,
                                       **common}), name="onnx", route_prefix="/onnx"),
        ])
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


def post(url: str, body, raw: bool = False) -> requests.Response:
    if raw:
        return requests.post(url + "/v1/embeddings", data=body, headers={"content-type": "application/json"},
                             timeout=60)
    return requests.post(url + "/v1/embeddings", json=body, timeout=60)


def vectors(response: requests.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert [d["index"] for d in data] == list(range(len(data)))
    rows = [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") if isinstance(d["embedding"], str)
            else np.asarray(d["embedding"], dtype=np.float32) for d in data]
    return np.stack(rows)


def test_every_task_over_http_equals_encode_torch_and_onnx(server, folders):
    ref = folders["ref"]
    url = server + "/torch"
    for name, task in [*COHERE.items(), *((t, t) for t in TASKS), (None, "document")]:
        for fmt in ("float", "base64"):
            body = {"input": TEXTS, "model": "mote", "encoding_format": fmt,
                    **({"input_type": name} if name else {})}
            assert np.abs(vectors(post(url, body)) - ref[task]).max() <= 1e-5, (name, fmt)
    one = post(url, {"input": TEXTS[1], "input_type": "search_query"})
    assert np.abs(vectors(one)[0] - ref["query"][1]).max() <= 1e-5
    assert one.json()["usage"]["prompt_tokens"] > 0 and one.json()["model"] == "mote"
    for task in TASKS:
        got = vectors(post(server + "/onnx", {"input": TEXTS, "input_type": task}))
        assert (got * ref[task]).sum(1).min() >= 0.9999, task


def test_models_health_and_readiness_routes(server):
    models = requests.get(server + "/torch/v1/models", timeout=10).json()["data"]
    (m,) = models
    assert m["id"] == "mote" and m["default_task"] == "document" and m["dimension"] == 32
    assert [(t["name"], t["prefix"]) for t in m["tasks"]] == [(t, mote.RoutingTable.default().prefix(t))
                                                               for t in TASKS]
    assert "search_query" in m["tasks"][0]["input_types"]
    assert requests.get(server + "/torch/health", timeout=10).json() == {"status": "ok"}
    assert requests.get(server + "/torch/ready", timeout=10).status_code == 200


def test_sixteen_concurrent_clients_with_random_tasks_get_their_own_tasks_embeddings(server, folders):
    ref = folders["ref"]

    def client(seed: int) -> list[tuple[str, list[int], np.ndarray]]:
        rng = np.random.default_rng(seed)
        out = []
        for _ in range(4):
            task = TASKS[int(rng.integers(0, 4))]
            idx = [int(i) for i in rng.choice(len(TEXTS), size=int(rng.integers(1, 5)), replace=False)]
            body = {"input": [TEXTS[i] for i in idx], "input_type": task}
            out.append((task, idx, vectors(post(server + "/torch", body))))
        return out

    with ThreadPoolExecutor(16) as pool:
        results = [r for rs in pool.map(client, range(16)) for r in rs]
    assert len({task for task, _, _ in results}) == 4
    for task, idx, got in results:
        assert np.abs(got - ref[task][idx]).max() <= 1e-5, task


def _probe_deployment():
    """A replica whose batch (max 32 rows, no wait) takes 0.8 s and records its size, with requests gated by
    mote's IdleGate or sent straight to Ray Serve's batcher."""
    import asyncio

    from ray import serve

    from mote.serve.gate import IdleGate

    @serve.deployment(max_ongoing_requests=64, ray_actor_options={"num_cpus": 0})
    class Probe:
        def __init__(self) -> None:
            self.gate, self.sizes = IdleGate(), []

        @serve.batch(max_batch_size=32, batch_wait_timeout_s=0)
        async def rows(self, xs: list[int]) -> list[int]:
            async with self.gate.running():
                self.sizes.append(len(xs))
                await asyncio.sleep(0.8)  # the forward (mote runs it in a worker thread: the loop goes on)
            return xs

        async def call(self, x: int, gated: bool) -> int:
            if gated:
                await self.gate.wait()
            return await self.rows(x)

        def batches(self) -> list[int]:
            out, self.sizes = self.sizes, []
            return out

    return Probe


def test_the_gate_makes_the_next_batch_of_what_came_while_busy(server):
    """One request starts a batch; five more arrive while it runs. Behind the gate they are the next batch, all
    five; straight into Ray Serve's batcher each is sealed on its own (Ray Serve 2.60 seals a batch while the one
    before it runs: if that half fails, Ray Serve now batches what came while busy, and mote.serve.gate can go)."""
    from ray import serve

    handle = serve.run(_probe_deployment().bind(), name="probe", route_prefix=None)
    try:
        sizes = {}
        for gated in (True, False):
            calls = [handle.call.remote(0, gated)]
            time.sleep(0.25)  # the first batch is running
            for i in range(1, 6):
                calls.append(handle.call.remote(i, gated))
                time.sleep(0.04)
            assert [c.result(timeout_s=60) for c in calls] == list(range(6))
            sizes[gated] = handle.batches.remote().result(timeout_s=60)
        assert sizes[True] == [1, 5]
        assert sizes[False][0] == 1 and len(sizes[False]) >= 4, sizes[False]
    finally:
        serve.delete("probe")


def test_openai_client_gets_the_tasks_embeddings(server, folders):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server + "/torch/v1", api_key="unused")
    out = client.embeddings.create(model="mote", input=TEXTS[:3], extra_body={"input_type": "search_query"})
    got = np.asarray([d.embedding for d in out.data], dtype=np.float32)
    assert np.abs(got - folders["ref"]["query"][:3]).max() <= 1e-5


BAD = [  # (body, raw JSON text?, status, words the message holds)
    ('{"input": ["a", ', True, 400, "not valid JSON"),
    ("[1, 2]", True, 400, "JSON object"),
    ({"input": 5}, False, 400, "'input' must be a string or a list of strings"),
    ({"input": [1, 2]}, False, 400, "'input' must be a string or a list of strings"),
    ({"input": ["a", None]}, False, 400, "'input' must be"),
    ({"model": "mote"}, False, 400, "input"),
    ({"input": []}, False, 400, "empty list"),
    ({"input": "a", "input_type": "rerank"}, False, 400, "'search_query'"),
    ({"input": "a", "input_type": 3}, False, 400, "input_type"),
    ({"input": "a", "encoding_format": "hex"}, False, 400, "encoding_format"),
    ({"input": "a", "dimensions": 16}, False, 400, "Matryoshka"),
    ({"input": "a", "dimensions": "16"}, False, 400, "dimensions"),
    ({"input": "a", "truncate": "yes"}, False, 400, "truncate"),
    ({"input": "a", "model": "gpt-4"}, False, 404, "'gpt-4'"),
    ({"input": ["a"] * (MAX_INPUTS + 1)}, False, 413, f"limit is {MAX_INPUTS}"),
    ({"input": ["a", LONG]}, False, 413, "input 1 has"),
    ({"input": "word " * 20_000}, False, 413, "input 0 has 100000 characters"),
]


@pytest.mark.parametrize(("body", "raw", "status", "words"), BAD, ids=[f"{i}-{b[2]}" for i, b in enumerate(BAD)])
def test_bad_input_gets_its_4xx_and_the_service_keeps_answering(server, folders, body, raw, status, words):
    r = post(server + "/torch", body, raw=raw)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert words in error["message"] and "\n" not in error["message"]
    ok = post(server + "/torch", {"input": TEXTS[:2], "input_type": "clustering"})
    assert np.abs(vectors(ok) - folders["ref"]["clustering"][:2]).max() <= 1e-5


def test_truncate_cuts_a_long_input_as_the_model_does(server, folders):
    huge = "word " * 20_000  # 100,000 characters: cut before tokenising, then by the model
    r = post(server + "/torch", {"input": [LONG, huge], "input_type": "query", "truncate": True})
    want = mote.encode(folders["model"], [LONG, huge], task="query")
    assert np.abs(vectors(r) - want).max() <= 1e-5
    assert r.json()["usage"]["prompt_tokens"] == 2 * 64
    full = post(server + "/torch", {"input": "a", "dimensions": 32})  # the full width is always given
    assert vectors(full).shape == (1, 32)


def test_a_full_queue_answers_503_with_retry_after_and_the_service_recovers(server, folders):
    """/onnx holds one request in flight and one waiting, and runs one text per batch: 24 concurrent requests of
    MAX_INPUTS texts overflow it."""
    body = {"input": [LONG] * MAX_INPUTS, "input_type": "query", "truncate": True}
    with ThreadPoolExecutor(24) as pool:
        responses = list(pool.map(lambda _: post(server + "/onnx", body), range(24)))
    codes = sorted(r.status_code for r in responses)
    assert set(codes) == {200, 503}, codes
    assert all(r.headers.get("retry-after") == "2" for r in responses if r.status_code == 503)
    ok = post(server + "/onnx", {"input": TEXTS, "input_type": "document"})
    assert (vectors(ok) * folders["ref"]["document"]).sum(1).min() >= 0.9999


# ------------------------------------------------------------------------------------------------ the verb
def test_mote_serve_answers_finishes_in_flight_requests_on_sigterm_and_leaves_no_ray_process(cli_serve, folders):
    """It answers and exports Ray Serve's metrics; SIGTERM during a long request lets that request finish (200,
    every embedding), then every process it started (Ray's GCS, raylet, agents, controller, proxy, replica) is
    gone."""
    proc, url, metrics = cli_serve
    wait_ready(url, proc)
    started = psutil.Process(proc.pid).children(recursive=True)
    names = " ".join(p.name() for p in started)
    assert "raylet" in names and "gcs_server" in names
    got = vectors(post(url, {"input": TEXTS[:3], "input_type": "search_document"}))
    want = folders["tsembed"].encode(TEXTS[:3], task="document")
    assert np.abs(got - want).max() <= 1e-5
    deadline = time.monotonic() + 60  # Ray Serve's Prometheus metrics, on --metrics-port
    while "ray_serve_num_http_requests" not in (text := requests.get(metrics, timeout=10).text):
        assert time.monotonic() < deadline, "no ray_serve_num_http_requests metric: " + text[:300]
        time.sleep(1)
    many = [f"{TEXTS[i % len(TEXTS)]} {i}" for i in range(2048)]
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(lambda: (post(url, {"input": many, "input_type": "query"}), time.monotonic()))
        time.sleep(1.0)  # (ordering, not timing: the request is sent; the check below fails if it had finished)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        response, answered = pending.result(timeout=120)
    assert answered > signalled, "the request finished before SIGTERM: make it longer"
    assert vectors(response).shape == (2048, want.shape[1])
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "Stopped." in out
    _, alive = psutil.wait_procs(started, timeout=30)
    assert not alive, [p.name() for p in alive]
