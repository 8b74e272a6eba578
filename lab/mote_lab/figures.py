"""The report's figures: training curves (loss and quick-eval score vs step), gains over the base per category, and
learning curves (score at each point of the runs vs step, per category).

Each function takes plain data (no plan, no files besides the PNG it writes), so tests and other reports can call
them directly. PNGs are written atomically.

Example:
    >>> training_curves({"mote (EOB)": [[(1, 2.1), (10, 1.7)]]}, {}, "curves.png", title="MiniLM-L6")  # doctest: +SKIP
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence

import numpy as np

Curve = Sequence[tuple[int, float]]


def _plt():
    from mote.eval.plots import pyplot  # matplotlib: the lab extra, imported only to draw

    return pyplot()


def _save(fig, path: str | os.PathLike) -> None:
    from mote.atomic import atomic_write_bytes

    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def arm_colors(labels: Sequence[str]) -> dict[str, tuple]:
    """One colour per run label (tab10, in order), so that an arm has the same colour in every figure."""
    palette = _plt().get_cmap("tab10").colors
    return {label: palette[i % len(palette)] for i, label in enumerate(labels)}


def _mean_curve(curves: Sequence[Curve]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Steps logged by every seed, and the mean / min / max over seeds at those steps."""
    common = sorted(set.intersection(*[{s for s, _ in c} for c in curves])) if curves else []
    if not common:
        return np.array([]), np.array([]), np.array([]), np.array([])
    vals = np.array([[dict(c)[s] for s in common] for c in curves])
    return np.array(common), vals.mean(0), vals.min(0), vals.max(0)


def training_curves(
    losses: Mapping[str, Sequence[Curve]],
    scores: Mapping[str, Sequence[Curve]],
    path: str | os.PathLike,
    *,
    title: str = "",
    score_label: str = "quick evaluation: mean main score (%)",
    colors: Mapping[str, tuple] | None = None,
) -> None:
    """Loss vs step for every arm (line = mean over seeds, band = min..max), and, if any arm has them, the
    quick-evaluation scores vs step in a second panel."""
    plt = _plt()
    panels = 2 if any(c for cs in scores.values() for c in cs) else 1
    fig, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 4.2), squeeze=False)
    colors = {**arm_colors(list(losses)), **(colors or {})}
    for arm, curves in losses.items():
        steps, mean, lo, hi = _mean_curve([c for c in curves if c])
        if not len(steps):
            continue
        n = len([c for c in curves if c])
        ax = axes[0][0]
        ax.plot(steps, mean, color=colors[arm], label=f"{arm} ({n} seed{'s' if n > 1 else ''})", linewidth=1.4)
        if n > 1:
            ax.fill_between(steps, lo, hi, color=colors[arm], alpha=0.15, linewidth=0)
    ax = axes[0][0]
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("training loss (InfoNCE, per logging interval)")
    ax.set_title("Training loss" + (f": {title}" if title else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if panels == 2:
        ax = axes[0][1]
        for arm in losses:
            curves = [c for c in scores.get(arm, []) if c]
            steps, mean, lo, hi = _mean_curve(curves)
            if not len(steps):
                continue
            ax.plot(steps, mean, "o-", color=colors[arm], label=arm, linewidth=1.4, markersize=3)
            if len(curves) > 1:
                ax.fill_between(steps, lo, hi, color=colors[arm], alpha=0.15, linewidth=0)
        ax.set_xlabel("optimiser step")
        ax.set_ylabel(score_label)
        ax.set_title("Quick evaluation during training")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _save(fig, path)


def gains_chart(
    gains: Mapping[str, Mapping[str, tuple[float | None, float | None]]],
    groups: Sequence[str],
    path: str | os.PathLike,
    *,
    title: str = "",
    ylabel: str = "gain over the untrained base (points)",
    colors: Mapping[str, tuple] | None = None,
) -> None:
    """Grouped bars: for each group (category, overall) the gain of every arm; error bars = std over seeds
    (only for arms with several seeds)."""
    plt = _plt()
    arms = list(gains)
    colors = {**arm_colors(["", *arms]), **(colors or {})}
    width = 0.8 / max(1, len(arms))
    fig, ax = plt.subplots(figsize=(max(7.0, 1.25 * len(groups) + 2), 4.6))
    x = np.arange(len(groups))
    for k, arm in enumerate(arms):
        vals = [gains[arm].get(g, (None, None)) for g in groups]
        mean = np.array([np.nan if m is None else m for m, _ in vals], dtype=float)
        pos = x + (k - (len(arms) - 1) / 2) * width
        ax.bar(pos, mean, width=width, color=colors[arm], label=arm)
        has = [i for i, (_, s) in enumerate(vals) if s is not None]
        if has:
            ax.errorbar(pos[has], mean[has], yerr=[vals[i][1] for i in has], fmt="none", ecolor="black",
                        elinewidth=1, capsize=2)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(x, [g.replace(" over ", "\nover ") for g in groups], fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title or "Gain over the base")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=min(len(arms), 4))
    _save(fig, path)


def similarity_panels(
    matrices: Mapping[str, tuple[Sequence[str], Sequence[Sequence[float]]]],
    path: str | os.PathLike,
    *,
    title: str = "",
) -> None:
    """Inter-task similarity heatmaps side by side on one colour scale (so that the runs can be compared):
    ``matrices[label] = (tasks, matrix)`` as :func:`mote.eval.task_similarity` returns them."""
    plt = _plt()
    labels = list(matrices)
    off = [np.asarray(m)[~np.eye(len(t), dtype=bool)] for t, m in matrices.values()]
    lows = [float(o.min()) for o in off if o.size]
    vmin = min([*lows, 0.99])
    first_tasks = list(next(iter(matrices.values()))[0]) if matrices else []
    same = all(list(t) == first_tasks for t, _ in matrices.values())
    fig, axes = plt.subplots(1, len(labels), figsize=(4.0 * len(labels) + 2.0, 4.4), squeeze=False,
                             gridspec_kw={"wspace": 0.08 if same else 0.6})
    im = None
    for k, (ax, label) in enumerate(zip(axes[0], labels)):
        tasks, m = matrices[label]
        m = np.asarray(m)
        im = ax.imshow(m, cmap="viridis", vmin=vmin, vmax=1.0)
        ax.set_xticks(range(len(tasks)), tasks, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(tasks)), tasks if k == 0 or not same else [""] * len(tasks), fontsize=8)
        for i in range(len(tasks)):
            for j in range(len(tasks)):
                ax.text(j, i, f"{m[i, j]:.3f}", ha="center", va="center", fontsize=7,
                        color="white" if m[i, j] < (vmin + 1.0) / 2 else "black")
        mean_off = float(m[~np.eye(len(tasks), dtype=bool)].mean()) if len(tasks) > 1 else 1.0
        ax.set_title(f"{label}\noff-diagonal mean {mean_off:.4f}", fontsize=9)
    if im is not None:
        fig.colorbar(im, ax=axes[0].tolist(), label="mean cosine between task views", shrink=0.85)
    fig.suptitle(title or "Inter-task similarity (same texts, one colour scale)", fontsize=10)
    _save(fig, path)


def learning_curve(
    panels: Mapping[str, Mapping[str, Curve]],
    path: str | os.PathLike,
    *,
    reference: Mapping[str, float | None] | None = None,
    reference_label: str = "base (untrained)",
    title: str = "",
    ylabel: str = "score (%)",
    colors: Mapping[str, tuple] | None = None,
    ncols: int = 3,
) -> None:
    """Score vs optimiser step, one panel per category: ``panels[title][run label] = [(step, score), ...]``; log-x
    with a tick at every step; ``reference[title]`` (the untrained base) as a dashed line; one legend for all.

    >>> learning_curve({"STS": {"ic": [(100, 80.1), (400, 80.9)]}}, "c.png", reference={"STS": 79.5})  # doctest: +SKIP
    """
    plt = _plt()
    names = list(panels)
    labels = list(dict.fromkeys(label for p in panels.values() for label in p))
    colors = {**arm_colors(labels), **(colors or {})}
    steps = sorted({s for p in panels.values() for c in p.values() for s, _ in c})
    ncols = max(1, min(ncols, len(names)))
    nrows = max(1, -(-len(names) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 2.9 * nrows + 0.6), squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= len(names):
            ax.axis("off")
            continue
        name = names[k]
        for label, curve in panels[name].items():
            pts = sorted((s, v) for s, v in curve if v is not None)
            if pts:
                ax.plot([s for s, _ in pts], [v for _, v in pts], "o-", color=colors[label], label=label,
                        linewidth=1.5, markersize=4)
        ref = (reference or {}).get(name)
        if ref is not None:
            ax.axhline(ref, color="0.4", linestyle="--", linewidth=1.0, label=reference_label)
        ax.set_xscale("log")
        if steps:
            ax.set_xticks(steps, [f"{s:,}" for s in steps], fontsize=8)
            ax.minorticks_off()
            ax.set_xlim(steps[0] / 1.4, steps[-1] * 1.4)
        ax.tick_params(axis="y", labelsize=8)
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
        if k % ncols == 0:
            ax.set_ylabel(ylabel, fontsize=8)
        if k >= len(names) - ncols:
            ax.set_xlabel("optimiser step (log)", fontsize=8)
    handles: dict[str, object] = {}
    for ax in axes.flat:
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=min(len(handles), 5), fontsize=8,
               frameon=False, bbox_to_anchor=(0.5, 0.0))
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.06 if nrows > 1 else 0.1, 1, 1))
    _save(fig, path)


__all__ = ["arm_colors", "gains_chart", "learning_curve", "similarity_panels", "training_curves"]
