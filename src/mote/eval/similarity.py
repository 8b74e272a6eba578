"""``mote.eval.task_similarity``: how different are the task views of the same texts?

Encode the same texts under every task; entry ``(a, b)`` of the matrix is the mean over texts of
``cos(view_a(x), view_b(x))``. 1.0 everywhere = the tasks do not change the embedding; lower = more distinct task
views. The MoTE paper uses this to show that task experts separate tasks more than instructions alone (compare a
MoTE model with the IC baseline of its base model: ``mode="ic"``).

Example:
    >>> res = task_similarity("runs/minilm-mote", ["how do magnets work"], output="runs/sim")  # doctest: +SKIP
    >>> res["matrix"][0][0]                                                                  # doctest: +SKIP
    1.0
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mote.eval.cache import EmbeddingCache, embed_texts
from mote.eval.encoders import Mode, load_encoder
from mote.routing import RoutingTable


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)


def _encoder_tasks(encoder: Any) -> list[str]:
    routing = getattr(encoder, "routing", None)
    if routing is not None:
        return list(routing.task_names)
    prefixes = getattr(encoder, "prefixes", None)
    if prefixes:
        return list(prefixes)
    return list(RoutingTable.default().task_names)


def similarity_markdown(res: dict[str, Any]) -> str:
    tasks = res["tasks"]
    lines = [
        f"# Inter-task similarity: {res['model']}",
        "",
        f"Mean over {res['n_texts']} texts of cos(view_a(x), view_b(x)); encoder `{res['model_identity']}` "
        f"({res['kind']}). Off-diagonal mean: {res['off_diagonal_mean']:.4f}.",
        "",
        "| task | " + " | ".join(tasks) + " |",
        "|---|" + "---:|" * len(tasks),
    ]
    for t, row in zip(tasks, res["matrix"]):
        lines.append(f"| {t} | " + " | ".join(f"{v:.4f}" for v in row) + " |")
    return "\n".join(lines) + "\n"


def _heatmap(res: dict[str, Any]) -> bytes:
    from mote.eval.plots import pyplot  # matplotlib: the lab extra, imported only to draw

    plt = pyplot()
    m = np.asarray(res["matrix"])
    tasks = res["tasks"]
    fig, ax = plt.subplots(figsize=(1.3 * len(tasks) + 2.5, 1.1 * len(tasks) + 1.5))
    off = m[~np.eye(len(tasks), dtype=bool)] if len(tasks) > 1 else m.ravel()
    vmin = min(float(off.min()), 0.99) if off.size else 0.0
    im = ax.imshow(m, cmap="viridis", vmin=vmin, vmax=1.0)
    ax.set_xticks(range(len(tasks)), tasks, rotation=30, ha="right")
    ax.set_yticks(range(len(tasks)), tasks)
    for i in range(len(tasks)):
        for j in range(len(tasks)):
            ax.text(
                j,
                i,
                f"{m[i, j]:.3f}",
                ha="center",
                va="center",
                fontsize=9,
                color="white" if m[i, j] < (vmin + 1.0) / 2 else "black",
            )
    ax.set_title(
        f"Mean cosine between task views\n{res['model']} ({res['kind']}, {res['n_texts']} texts)", fontsize=10
    )
    fig.colorbar(im, ax=ax, label="mean cosine similarity")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def task_similarity(
    model: Any,
    texts: Sequence[str],
    *,
    tasks: Sequence[str] | None = None,
    mode: Mode = "auto",
    routing: RoutingTable | None = None,
    output: str | os.PathLike | None = None,
    cache: EmbeddingCache | str | os.PathLike | bool | None = True,
    batch_size: int = 32,
    overwrite: bool = False,
    name: str | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """The task x task matrix of mean cosine similarity between task views of ``texts``.

    Works for MoTE models (``mode="auto"``), the IC baseline (``mode="ic"``) and any :class:`Encoder`. With
    ``output``: writes similarity.json, similarity.md and similarity.png (heatmap) atomically.
    """
    from mote.atomic import atomic_dir, atomic_write_bytes, atomic_write_text

    texts = [t for t in texts]
    if not texts:
        raise ValueError("task_similarity needs at least one text")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"texts must be strings; item {bad[0]} is {type(texts[bad[0]]).__name__}")
    out_path = Path(output) if output is not None else None
    if out_path is not None and out_path.exists() and not overwrite:
        raise FileExistsError(f"{out_path} already exists; choose another --output or pass --overwrite")
    if out_path is not None:
        from mote.eval.plots import pyplot

        pyplot()  # the heatmap needs matplotlib (mote[lab]): fail before any encoding
    encoder = load_encoder(model, mode=mode, routing=routing, name=name)
    tasks = list(tasks) if tasks else _encoder_tasks(encoder)
    store = (
        cache
        if isinstance(cache, EmbeddingCache)
        else EmbeddingCache()
        if cache is True
        else (EmbeddingCache(cache) if cache else None)
    )
    try:
        views = {
            t: _unit(
                embed_texts(
                    encoder,
                    texts,
                    t,
                    cache=store,
                    batch_size=batch_size,
                    show_progress=show_progress,
                    desc=f"task {t}",
                )
            )
            for t in tasks
        }
    finally:
        if store is not None and store is not cache:
            store.close()
    m = np.array([[float(np.mean(np.sum(views[a] * views[b], axis=1))) for b in tasks] for a in tasks])
    off = m[~np.eye(len(tasks), dtype=bool)]
    res = {
        "model": encoder.name,
        "model_identity": encoder.identity,
        "kind": getattr(encoder, "kind", "mote" if hasattr(encoder, "routing") else "custom"),
        "tasks": tasks,
        "n_texts": len(texts),
        "matrix": m.round(6).tolist(),
        "off_diagonal_mean": float(off.mean()) if off.size else 1.0,
        "definition": "mean over texts x of cos(view_a(x), view_b(x))",
    }
    if out_path is not None:
        with atomic_dir(out_path, overwrite=overwrite) as tmp:
            atomic_write_text(tmp / "similarity.json", json.dumps(res, indent=2) + "\n")
            atomic_write_text(tmp / "similarity.md", similarity_markdown(res))
            atomic_write_bytes(tmp / "similarity.png", _heatmap(res))
    return res


__all__ = ["similarity_markdown", "task_similarity"]
