"""``mote demo``: the first thing a new user runs (``make demo``).

1. convert the real all-MiniLM-L6-v2 into a MoTE model (experts in every other block) and save it;
2. encode example sentences under each task and show what routed where;
3. check the promise of exactness: a fresh conversion equals the dense base on the same prefixed text;
4. train the query, document and classification experts with TA-CL for a few minutes
   (:func:`mote.train.demo_train`), check that the clustering expert, which saw no data, still gives exactly the
   base model's embeddings, finish the model with per-task selection on validation data, and compare the plain
   base, the base with prefixes, the trained and the selected model on four small evaluation sets;
5. export the selected model's query task as a plain sentence-transformers folder and load it without mote.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

EXAMPLES = [
    ("query", "how do noise-cancelling headphones work"),
    ("document", "Active noise cancellation uses microphones to record ambient sound and plays an inverted wave."),
    ("classification", "The battery died after two days, I want a refund."),
    ("clustering", "Central bank raises interest rates for the third time this year"),
]


def run_demo(args: argparse.Namespace) -> int:
    import mote
    from mote.atomic import atomic_dir
    from mote.parameter_counts import parameter_counts

    console = Console()
    workdir = Path(args.workdir)
    out = workdir / "mote-minilm"
    t0 = time.perf_counter()

    console.rule("[bold]1. Convert all-MiniLM-L6-v2 into a Mixture of Task Experts")
    with console.status("loading the dense base and upcycling its FFN blocks..."):
        model = mote.convert(mote.DEFAULT_BASE_MODEL, placement="every-other")
        with atomic_dir(out, overwrite=True) as tmp:
            model.save(str(tmp))
    module = mote.mote_module(model)
    counts = parameter_counts(model)
    console.print(
        f"saved to [cyan]{out}[/]: experts in layers {module.expert_layers}, {module.num_experts} experts per layer; "
        f"{counts['total']:,} parameters in total, {counts['active']:,} active per task (= the dense base)"
    )

    console.rule("[bold]2. Route: one expert per task, chosen by the task instruction")
    table = Table("task", "prefix prepended", "expert", "text", "|emb|")
    embeddings = {}
    for task, text in EXAMPLES:
        emb = model.encode([text], task=task)[0]
        embeddings[task] = emb
        route = module.routing.route(task)
        table.add_row(task, repr(route.prefix), str(route.expert), text[:40], f"{np.linalg.norm(emb):.3f}")
    console.print(table)
    same = "Noise cancelling headphones cancel outside sound."
    views = {t: model.encode([same], task=t)[0] for t in module.routing.task_names}
    sims = Table("cos(task A, task B)", *module.routing.task_names, title=f"one text, four task views: {same!r}")
    for a in module.routing.task_names:
        sims.add_row(a, *[f"{float(views[a] @ views[b]):.3f}" for b in module.routing.task_names])
    console.print(sims)
    console.print(
        "Only the instruction differs between views so far: all experts start as exact copies of the dense FFN. "
        "Training (mote train) specialises them."
    )

    console.rule("[bold]3. Exactness: a fresh MoTE model equals the dense base on the same prefixed text")
    from sentence_transformers import SentenceTransformer

    dense = SentenceTransformer(mote.resolve_model_path(mote.DEFAULT_BASE_MODEL), device="cpu")
    texts = [t for _, t in EXAMPLES]
    worst = 0.0
    for task in module.routing.task_names:
        ref = dense.encode([module.routing.prefix(task) + t for t in texts])
        worst = max(worst, float(np.abs(model.encode(texts, task=task) - ref).max()))
    console.print(f"max |MoTE - dense| over all tasks: {worst:.2e}")
    if worst > 1e-5:
        console.print("[red]exactness check failed[/]")
        return 1
    if args.no_train:
        console.print(f"[green]done in {time.perf_counter() - t0:.0f} s[/]. Next: `mote info {out}`")
        return 0
    return _train_part(console, workdir, args.steps, t0)


def _train_part(console: Console, workdir: Path, steps: int | None, t0: float) -> int:
    from mote.train import demo_train

    console.rule("[bold]4. mote train configs/demo.yaml: TA-CL on your data, then per-task selection")
    summary = demo_train(workdir, steps=steps)
    console.print(
        f"{summary['steps']} steps in {summary['train_seconds']:.0f} s; loss {summary['first_loss']:.3f} -> "
        f"{summary['last_loss']:.3f}; raw weights in [cyan]{summary['model_dir']}[/], the model to use in "
        f"[cyan]{summary['selected_dir']}[/]"
    )
    console.print("\n".join(summary["selection_lines"]), markup=False)
    table = Table("dataset", "task type", "metric", "base", "base + prefixes", "trained (TA-CL)", "selected",
                  "selected - base", title="the plain base vs what `mote train` + `mote select` give (percent, MTEB "
                  "metrics, test splits)")
    for r in summary.get("comparison", []):
        colour = "green" if r["delta"] > 0 else "red" if r["delta"] < 0 else "white"
        table.add_row(r["dataset"], r["task_type"], r["metric"], f"{r['base']:.2f}", f"{r['base+prefix']:.2f}",
                      f"{r['trained']:.2f}", f"{r['selected']:.2f}", f"[{colour}]{r['delta']:+.2f}[/]")
    console.print(table)
    untouched = summary["untouched_max_abs_diff"]
    console.print(
        f"clustering expert (saw no data): max |trained - base| = {untouched:.1e}; "
        f"query expert (trained): {summary['query_max_abs_diff']:.3f}"
    )
    console.rule("[bold]5. mote export: one task as a plain sentence-transformers model")
    from sentence_transformers import SentenceTransformer

    import mote
    from mote.export import export_dense

    exported = export_dense(mote.load(summary["selected_dir"]), "query", workdir / "query", overwrite=True)
    dense = SentenceTransformer(str(exported), device="cpu")
    same = float(np.abs(dense.encode(EXAMPLES[0][1:]) - mote.load(summary["selected_dir"]).encode(
        list(EXAMPLES[0][1:]), task="query")).max())
    console.print(f"exported to [cyan]{exported}[/]; SentenceTransformer('{exported}').encode(...) equals the MoTE "
                  f"model's query embeddings (max abs diff {same:.1e})")
    ok = untouched == 0.0 and summary["last_loss"] < summary["first_loss"] and same <= 1e-5
    verdict = "[green]done" if ok else "[red]a check failed"
    console.print(
        f"{verdict} in {time.perf_counter() - t0:.0f} s[/]. Next: `mote info {summary['selected_dir']}`, "
        f"`mote eval {summary['selected_dir']} --suite quick --output runs/eval/mine`"
    )
    return 0 if ok else 1
