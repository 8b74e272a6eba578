"""Parameters (total / active per task) and encode throughput of several models, measured side by side.

Every model encodes the same texts with the same batch size in one process. Two settings, as in
``benchmarks/encode.py``: **single** (every text as task ``query``: one expert, the query prefix) and **mixed**
(the routing table's tasks interleaved in one call; ``mote.encode`` groups them by task). A dense model (base,
ic, ic-matched) encodes exactly the prefixed strings a MoTE model sees. The models take turns on small chunks (the
order rotates every chunk) so that background load hits all of them alike; a round's time is the sum over its
chunks, and the reported rate is the median over rounds.

Example:
    >>> res = measure({"base": base_st, "mote": mote_st}, texts, rounds=3)        # doctest: +SKIP
    >>> res["models"]["mote"]["single_per_s"] / res["models"]["base"]["single_per_s"]   # doctest: +SKIP
    0.99
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Mapping, Sequence
from typing import Any

from mote.routing import RoutingTable


def is_mote(model: Any) -> bool:
    from mote.model import MoTETransformer

    try:
        return isinstance(model[0], MoTETransformer)
    except (TypeError, IndexError):
        return False


def parameters(model: Any) -> dict[str, int]:
    """``{"total", "active"}`` parameters (:func:`mote.parameter_counts.parameter_counts`; dense: both equal)."""
    from mote.parameter_counts import parameter_counts

    counts = parameter_counts(model)
    return {"total": int(counts["total"]), "active": int(counts["active"])}


def kind(model: Any) -> str:
    """``mote`` (task-routed MoTE / TLR), ``dense`` (a stock sentence-transformers model) or the first module's
    class name (a model that routes tasks itself, e.g. TSEmbed)."""
    if is_mote(model):
        return "mote"
    try:
        first = model[0]
    except (TypeError, IndexError):
        return type(model).__name__
    return "dense" if type(first).__module__.startswith("sentence_transformers.") else type(first).__name__


def _encoder_fn(model: Any, routing: RoutingTable, batch_size: int):
    """``fn(texts, tasks)`` encoding each text under its task: MoTE through ``mote.encode`` (mixed tasks in one
    batch), a dense model on the prefixed strings, any other model with ``encode(..., task=t)`` per task."""
    import mote

    k = kind(model)
    if k == "mote":
        return lambda texts, tasks: mote.encode(model, list(texts), task=list(tasks), batch_size=batch_size)
    if k == "dense":
        prompts = routing.prompts()
        return lambda texts, tasks: model.encode([prompts[t] + x for x, t in zip(texts, tasks)],
                                                 batch_size=batch_size)

    def grouped(texts, tasks):  # e.g. TSEmbed: encode(..., task=t) prepends its own prefix
        for t in dict.fromkeys(tasks):
            model.encode([x for x, u in zip(texts, tasks) if u == t], task=t, batch_size=batch_size)

    return grouped


@contextlib.contextmanager
def _threads(n: int | None):
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def measure(
    models: Mapping[str, Any],
    texts: Sequence[str],
    *,
    routing: RoutingTable | None = None,
    rounds: int = 3,
    chunk: int = 128,
    batch_size: int = 32,
    threads: int | None = None,
    settings: Sequence[str] = ("single", "mixed"),
) -> dict[str, Any]:
    """Parameters and throughput (texts/s) of each of ``models`` (loaded ``SentenceTransformer`` s) on ``texts``.

    ``routing`` gives the tasks and prefixes (default: :meth:`RoutingTable.default`); MoTE models use their own
    routing table, which must have the same tasks.
    """
    import torch

    routing = routing or RoutingTable.default()
    texts = list(texts)
    if not texts:
        raise ValueError("measure needs texts")
    names = list(models)
    task_list = routing.task_names
    plans = {
        "single": ["query" if "query" in task_list else task_list[0]] * len(texts),
        "mixed": [task_list[i % len(task_list)] for i in range(len(texts))],
    }
    fns = {n: _encoder_fn(models[n], routing, batch_size) for n in names}
    out: dict[str, Any] = {
        "n_texts": len(texts),
        "batch_size": batch_size,
        "rounds": rounds,
        "chunk": chunk,
        "settings": list(settings),
        "models": {n: {**parameters(models[n]), "kind": kind(models[n])} for n in names},
    }
    with _threads(threads) as used, torch.inference_mode():
        out["threads"] = used
        for n in names:  # warm-up (allocator, tokenizer)
            fns[n](texts[: 2 * batch_size], plans["mixed"][: 2 * batch_size])
        times: dict[tuple[str, str], list[float]] = {(n, s): [] for n in names for s in settings}
        cpu_times: dict[tuple[str, str], list[float]] = {key: [] for key in times}
        for r in range(rounds):
            spent = dict.fromkeys(times, 0.0)
            cpu = dict.fromkeys(times, 0.0)
            for i, start in enumerate(range(0, len(texts), chunk)):
                sl = slice(start, start + chunk)
                order = names[i % len(names):] + names[: i % len(names)]
                if (i + r) % 2:
                    order = order[::-1]
                for s in settings:
                    for n in order:
                        t0, c0 = time.perf_counter(), time.process_time()
                        fns[n](texts[sl], plans[s][sl])
                        spent[(n, s)] += time.perf_counter() - t0
                        cpu[(n, s)] += time.process_time() - c0
            for key, v in spent.items():
                times[key].append(v)
                cpu_times[key].append(cpu[key])
    for n in names:
        for s in settings:
            out["models"][n][f"{s}_per_s"] = len(texts) / statistics.median(times[(n, s)])
            out["models"][n][f"{s}_seconds"] = [round(t, 4) for t in times[(n, s)]]
            # per CPU second of this process: steadier than wall time on a shared machine (at one thread it leaves
            # out the time other processes hold the core)
            out["models"][n][f"{s}_cpu_per_s"] = len(texts) / statistics.median(cpu_times[(n, s)])
    return out


__all__ = ["is_mote", "kind", "measure", "parameters"]
