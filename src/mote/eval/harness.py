"""``mote.eval.evaluate``: run an encoder over the evaluation datasets and write results.json / results.md / items.

Task routing (which routing-table task encodes which texts) per task type and side:

================== ================================ =========================================================
task type          default                          why
================== ================================ =========================================================
Retrieval          query -> ``query``,              asymmetric search: the query and document experts (and the
                   corpus -> ``document``           ``search_query: ``/``search_document: `` prefixes)
Reranking          query -> ``query``,              the same asymmetric search problem over given candidates
                   candidates -> ``document``
Classification     ``classification``               one expert per task family (MoTE / TA-CL)
Clustering         ``clustering``
STS                ``query`` on both sides          symmetric pairs of short texts: both sides must share one
PairClassification ``query`` on both sides          embedding space, and in TA-CL training the symmetric pairs
                                                    (NLI, paraphrase, duplicate questions) train the query
                                                    expert; nomic-style models also embed STS with the query
                                                    prefix
================== ================================ =========================================================

Override with ``routes={"STS": "classification"}`` (every side), ``{"Retrieval.document": "query"}`` (one side)
or a dataset name instead of a task type (``{"STS12": "document"}``); CLI: ``--route STS=classification``. The same
mapping chooses the IC baseline's prefixes, so IC and MoTE see identical instructions.

Example:
    >>> res = evaluate("all-MiniLM-L6-v2", suite="quick", output="runs/eval/minilm-quick")   # doctest: +SKIP
    >>> res["datasets"]["STSBenchmark"]["main_score"]                                        # doctest: +SKIP
    82.03
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import os
import platform
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mote.eval import datasets as ds
from mote.eval.cache import EmbeddingCache, embed_texts
from mote.eval.encoders import Encoder, Mode, load_encoder
from mote.eval.local_tasks import local_task
from mote.eval.metrics import MAIN_METRIC, SCORERS, SIDES
from mote.matryoshka import check_dim, truncate
from mote.routing import RoutingTable

RESULTS_FORMAT = 1
DEFAULT_ROUTES: dict[str, dict[str, str]] = {
    "STS": {"text": "query"},
    "PairClassification": {"text": "query"},
    "Classification": {"text": "classification"},
    "Clustering": {"text": "clustering"},
    "Retrieval": {"query": "query", "document": "document"},
    "Reranking": {"query": "query", "document": "document"},
}
# Metric values that are counts or protocol settings, not fractions: reported as they are (not x100).
_NOT_PERCENT = {"n_experiments", "samples_per_label"}


# ------------------------------------------------------------------------------------------------ routes
def parse_routes(items: Sequence[str] | str | None) -> dict[str, str]:
    """``["STS=classification", "Retrieval.document=query"]`` (or one comma string) -> ``{key: task}``."""
    if not items:
        return {}
    if isinstance(items, str):
        items = items.split(",")
    out: dict[str, str] = {}
    for item in items:
        if not item.strip():
            continue
        key, sep, task = item.partition("=")
        if not sep or not key.strip() or not task.strip():
            raise ValueError(f"Bad route {item!r}: use KEY=TASK, e.g. STS=classification or Retrieval.query=query")
        out[key.strip()] = task.strip()
    return out


def resolve_routes(info: ds.DatasetInfo, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{side: routing task}`` for one dataset: dataset.side > dataset > type.side > type > default."""
    overrides = dict(overrides or {})
    routes = dict(DEFAULT_ROUTES[info.task_type])
    for side in routes:
        for key in (info.task_type, f"{info.task_type}.{side}", info.name, f"{info.name}.{side}"):
            if key in overrides:
                routes[side] = overrides[key]
    return routes


def _check_route_keys(overrides: Mapping[str, str], available: Mapping[str, ds.DatasetInfo]) -> None:
    for key in overrides:
        head, _, side = key.partition(".")
        if head in DEFAULT_ROUTES:
            sides = SIDES[head]
        elif head in available:
            sides = SIDES[available[head].task_type]
        else:
            raise ValueError(
                f"Route key {key!r}: {head!r} is neither a task type {list(DEFAULT_ROUTES)} nor a dataset "
                f"({', '.join(sorted(available))})"
            )
        if side and side not in sides:
            raise ValueError(f"Route key {key!r}: side {side!r} is not one of {list(sides)}")


def _dimension(encoder: Any, chosen: Sequence[ds.DatasetInfo], overrides: Mapping[str, str]) -> int:
    """The encoder's embedding width: its model's, else that of one probe embedding of a task the run uses."""
    model = getattr(encoder, "model", None)
    width = model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension") else None
    if width:
        return int(width)
    task = next(iter(resolve_routes(chosen[0], overrides).values()))
    return int(np.asarray(encoder.encode(["dimension probe"], task)).shape[1])


def _check_encoder_tasks(encoder: Any, tasks: set[str]) -> None:
    """Fail before any work when a route names a task the encoder cannot encode."""
    routing = getattr(encoder, "routing", None)
    prefixes = getattr(encoder, "prefixes", None)
    known = routing.task_names if routing is not None else list(prefixes) if prefixes is not None else None
    if known is None:
        return
    missing = sorted(t for t in tasks if t not in known)
    if missing:
        raise ValueError(
            f"The routes use task(s) {missing} that {encoder.name!r} does not have (its tasks: {known}); "
            "change the routes (--route TYPE=TASK) or the routing table"
        )


# ------------------------------------------------------------------------------------------------ output
def _percent(metrics: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in metrics.items():
        if k in _NOT_PERCENT or v is None:
            out[k] = v
        elif isinstance(v, list):
            out[k] = [100.0 * x for x in v]
        else:
            out[k] = 100.0 * float(v)
    return out


def results_markdown(results: Mapping[str, Any]) -> str:
    """The Markdown table of one run: dataset, task type, main metric, score, items, seconds."""
    lines = [
        f"# Evaluation: {results['model']}",
        "",
        f"- model identity: `{results['model_identity']}` ({results['encoder'].get('kind', '?')})",
        f"- data: `{results['data']['dir']}` (split `{results['data']['split']}`)",
        *([f"- embeddings truncated to the first {results['dims']} dimensions, renormalised"]
          if results.get("dims") else []),
        f"- mote {results['environment'].get('mote')}, mteb {results['environment'].get('mteb')}; "
        f"scores in percent; total {results['seconds']:.1f} s",
        "",
        "| dataset | task type | routes | main metric | score | items | seconds |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    by_type: dict[str, list[float]] = {}
    for name, r in results["datasets"].items():
        routes = ", ".join(f"{s}->{t}" for s, t in r["routes"].items())
        shown = name if r.get("split", "test") == "test" else f"{name} ({r['split']})"
        lines.append(
            f"| {shown} | {r['task_type']} | {routes} | {r['main_metric']} | {r['main_score']:.2f} | "
            f"{r['n_items']} | {r['seconds']:.1f} |"
        )
        by_type.setdefault(r["task_type"], []).append(r["main_score"])
    if results["datasets"]:
        scores = [r["main_score"] for r in results["datasets"].values()]
        cats = [float(np.mean(v)) for v in by_type.values()]
        lines += [
            "",
            "| summary | score |",
            "|---|---:|",
            *[f"| {t} (mean of {len(v)}) | {np.mean(v):.2f} |" for t, v in by_type.items()],
            f"| mean over datasets ({len(scores)}) | {np.mean(scores):.2f} |",
            f"| mean over task types ({len(cats)}) | {np.mean(cats):.2f} |",
        ]
    return "\n".join(lines) + "\n"


def _npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def _environment() -> dict[str, str]:
    import importlib.metadata as md

    env = {"python": platform.python_version()}
    for pkg in ("mote", "mteb", "torch", "sentence-transformers", "transformers", "scikit-learn", "numpy"):
        try:
            env[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            env[pkg] = "?"
    return env


def _encoder_description(encoder: Any) -> dict[str, Any]:
    desc: dict[str, Any] = {"class": f"{type(encoder).__module__}.{type(encoder).__qualname__}"}
    kind = getattr(encoder, "kind", None)
    if kind is None:
        kind = "mote" if hasattr(encoder, "routing") else "custom"
    desc["kind"] = kind
    if getattr(encoder, "prefixes", None) is not None:
        desc["prefixes"] = dict(encoder.prefixes)
    if hasattr(encoder, "routing"):
        desc["routing"] = encoder.routing.to_dict()
    hooks = ("pair_scores", "score_matrix", "fit_scores", "views", "combine_predictions", "task_key")
    hooks = [h for h in hooks if hasattr(encoder, h)]
    desc["hooks"] = hooks
    return desc


def _log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------ evaluate
def evaluate_dataset(
    encoder: Encoder,
    info: ds.DatasetInfo,
    *,
    routes: Mapping[str, str] | None = None,
    cache: EmbeddingCache | None = None,
    batch_size: int = 32,
    split: str = "auto",
    suite: str = "default",
    show_progress: bool = False,
    data: Any = None,
    dims: int | None = None,
    full: bool = True,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Score one dataset: ``(result entry for results.json, per-item arrays)``; scores in percent.

    ``split="auto"`` scores the split ``suite`` scores for this dataset (:meth:`DatasetInfo.suite_split`).
    ``data``: the dataset as :func:`mote.eval.datasets.load` returns it for this split, when the caller scores
    it many times (per-task selection); otherwise it is read here.
    ``dims``: score the first ``dims`` dimensions, renormalised (Matryoshka); the cache keeps full embeddings.
    ``full=False``: the main score without the metrics that cost time and are not it (:mod:`mote.eval.metrics`).
    """
    t0 = time.perf_counter()
    split = info.resolve_split(split, suite)
    side_routes = resolve_routes(info, routes)
    if data is None:
        data = ds.load(info, split)
    task = local_task(info, data, ds.parse_split(split)[0])

    def embed(texts: list[str], side: str) -> np.ndarray:
        route = side_routes[side]
        emb = embed_texts(
            encoder,
            texts,
            route,
            cache=cache,
            batch_size=batch_size,
            show_progress=show_progress,
            desc=f"{info.name} [{side}->{route}]",
        )
        return truncate(emb, dims)

    with warnings.catch_warnings():  # mteb's protocol on small sets: labels a fit never predicts score 0, as in mteb
        warnings.filterwarnings("ignore", category=UserWarning, module=r"sklearn\.")
        warnings.filterwarnings("ignore", message=".*(ill-defined|did not converge|least populated class).*")
        scored = SCORERS[info.task_type](data, embed, encoder, task, full=full)
    entry = {
        "task_type": info.task_type,
        "main_metric": scored.main_metric,
        "main_score": 100.0 * scored.main_score,
        "metrics": _percent(scored.metrics),
        "seconds": time.perf_counter() - t0,
        "n_items": scored.n_items,
        "split": split,
        "routes": side_routes,
        "mteb_task": info.meta.get("mteb_task"),
        **({"group": info.meta["group"]} if "group" in info.meta else {}),  # validation suite: in-domain / ood
    }
    return entry, scored.items


def evaluate(
    model: Any,
    *,
    suite: str = "default",
    datasets: str | Sequence[str] | None = None,
    output: str | os.PathLike | None = None,
    mode: Mode = "auto",
    routing: RoutingTable | None = None,
    routes: Mapping[str, str] | Sequence[str] | str | None = None,
    data_dir: str | os.PathLike | None = None,
    batch_size: int = 32,
    cache: EmbeddingCache | str | os.PathLike | bool | None = True,
    split: str = "auto",
    overwrite: bool = False,
    name: str | None = None,
    show_progress: bool = True,
    quiet: bool = False,
    dims: int | None = None,
) -> dict[str, Any]:
    """Evaluate ``model`` on the suite's (or the named) datasets; return results.json's dict (scores in percent).

    Args:
        model: anything :func:`load_encoder` accepts: a name/folder, a ``SentenceTransformer``, an :class:`Encoder`.
        suite: ``quick`` (one small dataset per task type), ``default`` (every evaluation dataset, sized for a 2-core
            CPU: ImdbClassification ``test-sample2000``, TwitterURLCorpus ``test``, a third of the Reddit /
            StackExchange clustering sets) or ``mteb`` (every evaluation dataset on the rows MTEB scores).
        datasets: dataset names (list or comma string); overrides the suite's datasets (``suite`` still picks
            their splits under ``split="auto"``).
        output: folder for results.json, results.md and items/*.npz, written atomically (all or nothing).
        mode: ``auto`` | ``dense`` | ``ic`` (see :func:`load_encoder`); ``routing`` gives the IC prefixes.
        routes: task-routing overrides, e.g. ``{"STS": "classification"}`` or ``["Retrieval.query=query"]``.
        data_dir: dataset folder (default ``$MOTE_DATA`` or ``../shared/data``).
        cache: an :class:`EmbeddingCache`, a folder for one, ``True`` (default location) or ``False``/``None``.
        split: ``auto`` (default): per dataset, the split of ``suite`` (:meth:`DatasetInfo.suite_split`; for
            ``mteb`` the split MTEB scores, e.g. TwitterURLCorpus ``test-mteb51534``: 51,534 pairs instead of the
            9,334 of ``test``); or one split for every dataset, optionally selecting items (``test[::3]``).
        dims: score the first ``dims`` embedding dimensions, renormalised (Matryoshka truncation; the embedding
            cache holds the full embeddings, so a sweep over dimensions encodes once). Larger than the model's: error.

    Example:
        >>> r = evaluate("all-MiniLM-L6-v2", datasets="STSBenchmark", output=None)   # doctest: +SKIP
        >>> round(r["datasets"]["STSBenchmark"]["main_score"], 2)                    # doctest: +SKIP
        82.03
    """
    from mote.atomic import atomic_dir, atomic_write_bytes, atomic_write_json, atomic_write_text
    from mote.data import data_dir as resolve_data_dir

    t_start = time.perf_counter()
    out_path = Path(output) if output is not None else None
    if out_path is not None and out_path.exists() and not overwrite:
        raise FileExistsError(f"{out_path} already exists; choose another --output or pass --overwrite")
    root = resolve_data_dir(data_dir)
    available = ds.discover(root)
    if not available:
        raise FileNotFoundError(f"No evaluation datasets (sub-folders with meta.json, role 'eval') in {root}")
    if suite not in ds.SUITES:
        raise ValueError(f"Unknown suite {suite!r}; choose one of {ds.SUITES} (or name datasets with --datasets)")
    chosen = ds.select(available, suite, datasets)
    overrides = routes if isinstance(routes, Mapping) else parse_routes(routes)
    _check_route_keys(overrides, available)

    encoder = load_encoder(model, mode=mode, routing=routing, name=name)
    _check_encoder_tasks(encoder, {t for i in chosen for t in resolve_routes(i, overrides).values()})
    if dims is not None:
        dims = check_dim(dims, _dimension(encoder, chosen, overrides))
    if isinstance(cache, EmbeddingCache):
        store: EmbeddingCache | None = cache
    elif cache is True:
        store = EmbeddingCache()
    elif cache:
        store = EmbeddingCache(cache)
    else:
        store = None

    results: dict[str, Any] = {
        "format": RESULTS_FORMAT,
        "model": encoder.name,
        "model_identity": encoder.identity,
        "encoder": _encoder_description(encoder),
        "data": {
            "dir": str(root),
            "split": split,
            "datasets": {i.name: {"task_type": i.task_type, "files": i.fingerprint()} for i in chosen},
        },
        "suite": suite if not datasets else "custom",
        "routes": {i.name: resolve_routes(i, overrides) for i in chosen},
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "environment": _environment(),
        "cache": str(store.path) if store is not None else None,
        "dims": dims,
        "datasets": {},
    }
    items: dict[str, dict[str, np.ndarray]] = {}
    _log(f"Evaluating {encoder.name} ({encoder.identity}) on {len(chosen)} datasets from {root}", quiet)
    try:
        for k, info in enumerate(chosen, 1):
            entry, arrays = evaluate_dataset(
                encoder,
                info,
                routes=overrides,
                cache=store,
                batch_size=batch_size,
                split=split,
                suite=suite,
                show_progress=show_progress,
                dims=dims,
            )
            results["datasets"][info.name] = entry
            items[info.name] = arrays
            _log(
                f"[{k}/{len(chosen)}] {info.name:<42} {info.task_type:<18} {entry['main_metric']:<12} "
                f"{entry['main_score']:6.2f}  ({entry['seconds']:.1f} s)",
                quiet,
            )
    finally:
        if store is not None and not isinstance(cache, EmbeddingCache):
            store.close()
    results["seconds"] = time.perf_counter() - t_start

    if out_path is not None:
        with atomic_dir(out_path, overwrite=overwrite) as tmp:
            for dname, arrays in items.items():
                atomic_write_bytes(tmp / "items" / f"{dname}.npz", _npz_bytes(arrays))
            atomic_write_text(tmp / "results.md", results_markdown(results))
            atomic_write_json(tmp / "results.json", results)
        _log(f"Wrote {out_path}/results.json, results.md, items/", quiet)
    return results


def load_run(run_dir: str | os.PathLike) -> dict[str, Any]:
    """results.json of a run folder (a clear error if it is not one)."""
    path = Path(run_dir) / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not an evaluation run folder: it has no results.json")
    with open(path, encoding="utf-8") as f:
        results = json.load(f)
    if "datasets" not in results or "model" not in results:
        raise ValueError(f"{path} is not a mote eval results.json (no 'model'/'datasets')")
    return results


def load_items(run_dir: str | os.PathLike, dataset: str) -> dict[str, np.ndarray] | None:
    path = Path(run_dir) / "items" / f"{dataset}.npz"
    if not path.is_file():
        return None
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


__all__ = [
    "DEFAULT_ROUTES",
    "MAIN_METRIC",
    "evaluate",
    "evaluate_dataset",
    "load_items",
    "load_run",
    "parse_routes",
    "resolve_routes",
    "results_markdown",
]
