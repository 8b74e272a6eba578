"""The Ray Serve application of ``mote serve``: one deployment, FastAPI ingress, dynamic batching across requests.

Each replica holds one :class:`~mote.serve.backends.Backend`. A request is checked (:mod:`mote.serve.api`) and its
texts enter :meth:`MoteEmbeddings.embed_rows`, a ``@serve.batch`` method: Ray Serve gathers the texts of all the
requests in flight on the replica (up to ``max_batch_size`` texts) and the batch runs in ONE forward with one task
per row. While a batch runs, new requests wait at the replica's :class:`~mote.serve.gate.IdleGate`, so the next batch
is everything that came meanwhile (continuous batching; ``batch_wait_timeout_s`` adds a wait, default none). The
batch is never split by task: the MoTE module (or the ONNX graph's ``task_id`` input) routes each row to its expert.

Ray Serve does the rest: replicas (``num_replicas``), a bounded queue at each caller (``max_ongoing_requests`` per
replica, ``max_queued_requests``; beyond them the proxy answers 503 with ``Retry-After``,
:class:`ray.serve.config.BackpressureConfig`), graceful shutdown (in-flight requests finish), health checks and
its Prometheus metrics (``ray_serve_*``). :func:`build_app` is the application builder a ``serve deploy`` config
names (``import_path: mote.serve.app:build_app``, ``args:`` :class:`ServeArgs`).

Routes: ``POST /v1/embeddings`` (OpenAI-compatible), ``GET /v1/models`` (tasks, prefixes, Cohere names),
``GET /health`` (liveness) and ``GET /ready`` (readiness: the model is loaded and answered a warm-up batch).
"""

# (no `from __future__ import annotations`: FastAPI reads the route signatures' annotations as classes)
import asyncio
import logging
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from ray.serve.config import BackpressureConfig

from mote.serve.api import (
    CHARS_PER_TOKEN_LIMIT,
    COHERE_INPUT_TYPES,
    DEFAULT_MAX_INPUTS,
    ApiError,
    EmbeddingRequest,
    check_dimensions,
    check_inputs,
    embeddings_response,
    error_body,
    resolve_task,
    too_long,
    validation_message,
)
from mote.serve.gate import DEFAULT_BATCH_WAIT_S, IdleGate

logger = logging.getLogger("mote.serve")


class ServeArgs(BaseModel):
    """The application's arguments (``mote serve`` flags; the ``args:`` of a ``serve deploy`` config)."""

    model_config = ConfigDict(extra="forbid")

    model: str
    backend: str = "torch"
    name: str | None = None  # the model id clients send (default: the folder's name)
    replicas: int = Field(1, ge=1)
    max_batch_size: int = Field(32, ge=1)
    batch_wait_timeout_s: float = Field(DEFAULT_BATCH_WAIT_S, ge=0)
    max_ongoing_requests: int | None = Field(None, ge=1)  # per replica (default: 2 x max_batch_size)
    max_queued_requests: int = Field(256, ge=-1)  # at each caller; beyond: 503 + Retry-After (-1: unbounded)
    retry_after_s: float = Field(1.0, ge=0)
    max_inputs: int = Field(DEFAULT_MAX_INPUTS, ge=1)
    threads: int | None = Field(None, ge=1)  # torch / onnxruntime threads per replica
    num_cpus: float = Field(1.0, ge=0)  # Ray CPUs reserved per replica


api = FastAPI(title="mote serve", description="Task-specialised embeddings (MoTE), OpenAI-compatible")


@api.exception_handler(RequestValidationError)
async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    message, param = validation_message(exc.errors())
    return JSONResponse(error_body(message, 400, param), status_code=400)


@api.exception_handler(ApiError)
async def _refused(request: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status)


@serve.deployment(name="mote", graceful_shutdown_wait_loop_s=0.5, graceful_shutdown_timeout_s=30)
@serve.ingress(api)
class MoteEmbeddings:
    """One replica: a loaded backend behind the OpenAI-compatible routes (see the module doc)."""

    def __init__(self, args: dict[str, Any]) -> None:
        from mote.serve.backends import load_backend

        self.args = ServeArgs.model_validate(args)
        self.backend = load_backend(self.args.model, self.args.backend, self.args.threads)
        self.name = self.args.name or Path(self.args.model).resolve().name
        self.embed_rows.set_max_batch_size(self.args.max_batch_size)
        self.embed_rows.set_batch_wait_timeout_s(self.args.batch_wait_timeout_s)
        self.backend.embed(["warm-up"], [self.backend.default_task])  # ready = the model answered once
        self.gate = IdleGate()
        self.ready = True

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=DEFAULT_BATCH_WAIT_S)
    async def embed_rows(self, texts: list[str], tasks: list[str]) -> list[np.ndarray]:
        """One row per call; Ray Serve hands over the rows of every request in flight, and they run as ONE forward
        (in a worker thread, so that the replica keeps taking requests meanwhile)."""
        async with self.gate.running():
            out = await asyncio.to_thread(self.backend.embed, list(texts), list(tasks))
        return list(out)

    @api.post("/v1/embeddings")
    async def embeddings(self, body: EmbeddingRequest) -> JSONResponse:
        if body.model is not None and body.model != self.name:
            raise ApiError(404, f"model {body.model!r} is not served here; this service serves {self.name!r}",
                           "model", "model_not_found")
        texts = body.texts()
        check_inputs(texts, self.args.max_inputs)
        task = resolve_task(body.input_type, self.backend.tasks, self.backend.default_task)
        dim = check_dimensions(body.dimensions, self.backend.dimension, self.backend.matryoshka_dims)
        limit = self.backend.max_seq_length
        texts, counts = self._check_lengths(texts, task, limit, body.truncate)
        await self.gate.wait()  # while a batch runs: the next batch is every request that came meanwhile
        rows = await asyncio.gather(*(self.embed_rows(t, task) for t in texts))
        vectors = np.stack(rows)
        if dim is not None:
            from mote.matryoshka import truncate

            vectors = truncate(vectors, dim)
        tokens = sum(min(n, limit) for n in counts)
        return JSONResponse(embeddings_response(list(vectors), self.name, body.encoding_format, tokens))

    def _check_lengths(self, texts: list[str], task: str, limit: int, cut: bool) -> tuple[list[str], list[int]]:
        """413 for a text over the token limit (prefix and special tokens included), unless ``truncate``: then the
        model cuts it, as it does at ``max_seq_length``. Huge texts are cut to a bound before tokenising."""
        bound = CHARS_PER_TOKEN_LIMIT * limit
        for i, t in enumerate(texts):
            if len(t) > bound and not cut:
                raise too_long(i, len(t), limit, "characters")  # far too long: not even tokenised
        texts = [t[:bound] for t in texts]
        counts = self.backend.token_counts(texts, [task] * len(texts))
        if not cut:
            for i, n in enumerate(counts):
                if n > limit:
                    raise too_long(i, n, limit)
        return texts, counts

    @api.get("/v1/models")
    async def models(self) -> dict[str, Any]:
        b = self.backend
        tasks = [{"name": t, "prefix": p, "input_types": [t, *(k for k, v in COHERE_INPUT_TYPES.items() if v == t)]}
                 for t, p in b.prefixes.items()]
        return {"object": "list", "data": [{
            "id": self.name, "object": "model", "owned_by": "mote", "kind": b.kind, "backend": b.backend,
            "tasks": tasks, "default_task": b.default_task, "dimension": b.dimension,
            "matryoshka_dims": b.matryoshka_dims, "max_seq_length": b.max_seq_length,
            "max_batch_size": self.args.max_batch_size, "max_inputs": self.args.max_inputs,
        }]}

    @api.get("/health")
    async def health(self) -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/ready")
    async def ready_route(self) -> JSONResponse:
        ok = getattr(self, "ready", False)
        return JSONResponse({"status": "ready" if ok else "loading"}, status_code=200 if ok else 503)

    def check_health(self) -> None:
        """Ray Serve's replica health check: a replica without a loaded model is restarted."""
        if not getattr(self, "ready", False):
            raise RuntimeError("the model is not loaded")


def build_app(args: dict[str, Any]) -> serve.Application:
    """The application for ``args`` (:class:`ServeArgs`): what ``mote serve`` runs and ``serve deploy`` builds."""
    a = ServeArgs.model_validate(args)
    from mote.serve.backends import BACKENDS, folder_kind

    if a.backend not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, got {a.backend!r}")
    kind = folder_kind(a.model)  # a missing or unknown folder fails here, not in every replica
    if a.backend == "onnx" and kind not in ("onnx-multitask", "dense"):
        raise ValueError(f"backend 'onnx' serves a multi-task ONNX export (or a dense export with onnx/); "
                         f"{a.model} is a {kind} folder: `mote export {a.model} --onnx --all-tasks OUT`, then "
                         "serve OUT")
    return MoteEmbeddings.options(
        num_replicas=a.replicas,
        max_ongoing_requests=a.max_ongoing_requests or 2 * a.max_batch_size,
        max_queued_requests=a.max_queued_requests,
        backpressure_config=BackpressureConfig(status_code=503, retry_after_s=a.retry_after_s),
        ray_actor_options={"num_cpus": a.num_cpus},
    ).bind(a.model_dump())
