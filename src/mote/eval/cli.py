"""CLI verbs of mote.eval (each is one library call):

mote eval MODEL [--suite quick|default|mteb] [--datasets a,b] --output DIR [--ic|--dense] [--route TYPE=TASK ...]
          [--dims N]
mote compare RUN_DIR... [--base RUN_DIR] --output DIR
mote similarity MODEL --texts FILE --output DIR [--ic]
"""

from __future__ import annotations

import argparse


def _alpha(value: str) -> float | str:
    if value == "auto":
        return value
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--alpha must be a number or 'auto', got {value!r}") from None


def _option(value: str) -> tuple[str, object]:
    """``KEY=VALUE`` with VALUE read as JSON when it parses (numbers, true/false, null), else as a string."""
    import json

    key, sep, raw = value.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"--moee-opt takes KEY=VALUE (e.g. rw_scores=logits), got {value!r}")
    try:
        parsed: object = json.loads(raw)
    except json.JSONDecodeError:
        parsed = raw
    return key.strip(), parsed


def _mode(args: argparse.Namespace) -> str:
    return "ic" if args.ic else "dense" if args.dense else "auto"


def _routing(args: argparse.Namespace):
    from mote.routing import RoutingTable

    return RoutingTable.from_spec(args.tasks) if args.tasks else None


def _cache(args: argparse.Namespace):
    return False if args.no_cache else (args.cache or True)


def _moee_encoder(args: argparse.Namespace):
    """``mote.moee.encoder_for_eval(MODEL, view=..., alpha=..., template=...)``, imported only when asked for."""
    try:
        import mote.moee as moee
    except ImportError as e:  # pragma: no cover - the package ships with mote
        raise ValueError(f"--moee needs mote.moee, which failed to import: {e}") from None
    factory = getattr(moee, "encoder_for_eval", None)
    if factory is None:
        raise ValueError(
            "--moee needs mote.moee.encoder_for_eval(model, view=..., alpha=..., template=...), which this version "
            "of mote does not provide yet"
        )
    kwargs = {"view": args.moee}
    if args.alpha is not None:
        kwargs["alpha"] = args.alpha
    if args.template is not None:
        kwargs["template"] = args.template
    for key, value in args.moee_opt or []:
        if key in kwargs or key == "view":
            raise ValueError(f"--moee-opt {key}=... repeats an option; use --{key} (or give it once)")
        kwargs[key] = value
    try:
        return factory(args.model, **kwargs)
    except TypeError as e:  # an unknown --moee-opt key: name the valid ones
        raise ValueError(f"--moee-opt: {e} (see `mote moee encode --help` for MoEE options)") from None


def cmd_eval(args: argparse.Namespace) -> int:
    from mote.eval import evaluate, results_markdown

    if args.moee is None and (args.alpha is not None or args.template is not None or args.moee_opt):
        raise ValueError("--alpha/--template/--moee-opt go with --moee VIEW")
    if args.moee is not None and (args.ic or args.dense):
        raise ValueError("--moee cannot be combined with --ic/--dense")
    model, name = (_moee_encoder(args), args.name) if args.moee is not None else (args.model, args.name)
    results = evaluate(
        model,
        suite=args.suite,
        datasets=args.datasets,
        output=args.output,
        mode=_mode(args),
        routing=_routing(args),
        routes=args.route,
        data_dir=args.data_dir,
        batch_size=args.batch_size,
        cache=_cache(args),
        split=args.split,
        overwrite=args.overwrite,
        name=name,
        dims=args.dims,
    )
    print(results_markdown(results))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from mote.eval import compare
    from mote.eval.compare import compare_markdown

    result = compare(
        args.runs, base=args.base, output=args.output, n_boot=args.n_boot, seed=args.seed, overwrite=args.overwrite
    )
    print(compare_markdown(result))
    if args.output:
        print(f"Wrote {args.output}/compare.md, compare.json, " + ", ".join(result.get("plots", [])))
    return 0


def cmd_similarity(args: argparse.Namespace) -> int:
    from mote.eval import task_similarity
    from mote.eval.similarity import similarity_markdown
    from mote.files import read_texts

    texts = read_texts(args.texts, field=args.field)
    if args.limit:
        texts = texts[: args.limit]
    model, name = (args.model, args.name)
    res = task_similarity(
        model,
        texts,
        tasks=args.task_list.split(",") if args.task_list else None,
        mode=_mode(args),
        routing=_routing(args),
        output=args.output,
        cache=_cache(args),
        batch_size=args.batch_size,
        overwrite=args.overwrite,
        name=name,
    )
    print(similarity_markdown(res))
    if args.output:
        print(f"Wrote {args.output}/similarity.json, similarity.md, similarity.png")
    return 0


def _model_options(p: argparse.ArgumentParser) -> None:
    kind = p.add_mutually_exclusive_group()
    kind.add_argument(
        "--ic",
        action="store_true",
        help="dense model + the routing table's prefix per task (instruction-conditioning baseline)",
    )
    kind.add_argument("--dense", action="store_true", help="dense model, no prefixes")
    p.add_argument(
        "--tasks",
        default=None,
        help="routing table for --ic prefixes, as for `mote convert --tasks` (default: the 4 MoTE tasks)",
    )
    p.add_argument("--name", default=None, help="label for tables (default: the model folder name)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--cache", default=None, help="embedding-cache folder (default: $MOTE_CACHE or .cache/mote)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the embedding cache")
    p.add_argument("--overwrite", action="store_true", help="replace --output if it exists")


def register(subparsers) -> None:
    """Add this subsystem's verbs to the `mote` parser."""
    p = subparsers.add_parser("eval", help="evaluate a model on the offline MTEB-style suite")
    p.add_argument("model", help="MoTE folder, sentence-transformers model/folder, a run's weight snapshot folder "
                   "(RUN/snapshots/step-N), or all-MiniLM-L6-v2 (offline)")
    p.add_argument(
        "--suite",
        default="default",
        choices=["quick", "default", "mteb"],
        help="quick: one small dataset per task type; default: every eval dataset, sized for a 2-core CPU "
        "(ImdbClassification test-sample2000, TwitterURLCorpus test, a third of the Reddit/StackExchange "
        "clustering sets); mteb: every eval dataset on the rows MTEB scores (for published-score comparisons)",
    )
    p.add_argument("--quick", dest="suite", action="store_const", const="quick", help="same as --suite quick")
    p.add_argument("--datasets", default=None, help="comma list of dataset names (overrides --suite)")
    p.add_argument("--output", required=True, help="run folder: results.json, results.md, items/*.npz")
    p.add_argument("--data-dir", default=None, help="dataset folder (default: $MOTE_DATA, else ../shared/data)")
    p.add_argument(
        "--route",
        action="append",
        default=None,
        metavar="KEY=TASK",
        help="task routing override, repeatable: TYPE=TASK, TYPE.SIDE=TASK or DATASET=TASK "
        "(e.g. STS=classification, Retrieval.document=query)",
    )
    p.add_argument(
        "--split",
        default="auto",
        help="split to score: auto (default) = per dataset, the split of --suite (also with --datasets; "
        "--suite mteb: the split MTEB scores, e.g. TwitterURLCorpus test-mteb51534); or a split for every "
        "dataset, optionally selecting items (e.g. test, test[::3])",
    )
    p.add_argument(
        "--dims",
        type=int,
        default=None,
        metavar="N",
        help="score the first N embedding dimensions, renormalised (Matryoshka truncation)",
    )
    p.add_argument(
        "--moee",
        default=None,
        metavar="VIEW",
        help="evaluate mote.moee.encoder_for_eval(MODEL, view=VIEW, ...) (MoEE embeddings)",
    )
    p.add_argument("--alpha", type=_alpha, default=None, help="with --moee: similarity mixing weight (number or auto)")
    p.add_argument("--template", default=None, help="with --moee: prompt template")
    p.add_argument(
        "--moee-opt",
        type=_option,
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="with --moee: any mote.moee.encoder_for_eval option, repeatable (e.g. rw_scores=logits, "
        "rw_pooling=mean, stats=DIR, preprocess=true)",
    )
    _model_options(p)
    p.set_defaults(func=cmd_eval)

    p = subparsers.add_parser("compare", help="compare evaluation runs: tables, significance tests, bar charts")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="folders written by `mote eval`")
    p.add_argument("--base", default=None, help="the run the others are compared with (default: the first)")
    p.add_argument("--output", required=True, help="folder for compare.md, compare.json and PNG charts")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples per dataset (default 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_compare)

    p = subparsers.add_parser("similarity", help="mean cosine similarity between the task views of the same texts")
    p.add_argument("model")
    p.add_argument("--texts", required=True, help=".txt (one text per line) or .jsonl[.gz]")
    p.add_argument("--field", default="text", help="JSONL field holding the text (default: text)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N texts")
    p.add_argument("--task-list", default=None, help="comma list of tasks to compare (default: all of the model's)")
    p.add_argument("--output", required=True, help="folder for similarity.json, similarity.md, similarity.png")
    _model_options(p)
    p.set_defaults(func=cmd_similarity)
