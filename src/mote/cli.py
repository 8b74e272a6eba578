"""The ``mote`` command line: a thin shell over the library (every verb is one library call).

    mote convert BASE OUT [--placement every|every-other|0,2,4] [--tasks ...]
    mote encode MODEL --task T --input FILE(.txt|.jsonl) --output FILE.npy    (MoTE, TLR or TSEmbed model)
    mote export MODEL OUT --task T [--onnx [--quantize]]                  (MoTE, sequence-routed TSEmbed)
    mote export MODEL --onnx --all-tasks OUT                              (MoTE)
    mote info MODEL
    mote demo

Subsystems add their own verbs (eval, compare, similarity, train, moee, ...) through ``register(subparsers)``
in their ``cli`` modules, listed in ``_SUBCOMMAND_MODULES``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

# Each of these modules defines `register(subparsers) -> None`.
_SUBCOMMAND_MODULES = (
    "mote.eval.cli", "mote.train.cli", "mote.select.cli", "mote.moee.cli", "mote.serve.cli",
)


def _quiet_hf() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    import logging

    logging.getLogger("sentence_transformers").setLevel(logging.WARNING)


# ------------------------------------------------------------------------------------------------ verbs
def cmd_convert(args: argparse.Namespace) -> int:
    import mote
    from mote.atomic import atomic_dir

    routing = mote.RoutingTable.from_spec(args.tasks)
    model = mote.convert(args.base, placement=args.placement, routing=routing)
    with atomic_dir(args.out, overwrite=args.overwrite) as tmp:
        model.save(str(tmp))
    print(f"Saved MoTE model to {args.out}")
    print(describe(model))
    return 0


def load_model(path: str):
    """A saved model for the core verbs: MoTE or TLR (``mote_config.json``) or TSEmbed (``tsembed_config.json``)."""
    import mote
    from mote.lora.st import CONFIG_NAME as TSEMBED_CONFIG
    from mote.lora.st import load as load_tsembed

    local = Path(path)
    if local.is_dir() and (local / TSEMBED_CONFIG).is_file():
        return load_tsembed(local)
    return mote.load(path)


def _is_tsembed(model) -> bool:
    from mote.lora.st import TSEmbedTransformer

    return len(model) > 0 and isinstance(model[0], TSEmbedTransformer)


def cmd_encode(args: argparse.Namespace) -> int:
    import io

    import numpy as np

    import mote
    from mote.atomic import atomic_write_bytes
    from mote.files import read_texts

    out = Path(args.output)
    if out.suffix != ".npy":  # before any work
        raise ValueError(f"--output must end in .npy (float32 [N, dim]), got {str(out)!r}")
    if out.is_dir():
        raise ValueError(f"--output {str(out)!r} is a folder; name a .npy file")
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} already exists; choose another --output or pass --overwrite")
    texts = read_texts(args.input, field=args.field)
    model = load_model(args.model)
    if _is_tsembed(model):
        model[0].routing.route(args.task)  # an unknown task fails before any work
        emb = model.encode(texts, task=args.task, batch_size=args.batch_size, show_progress_bar=True) if texts \
            else np.zeros((0, model.get_embedding_dimension()), dtype=np.float32)
    else:
        emb = mote.encode(model, texts, task=args.task, batch_size=args.batch_size, show_progress_bar=True)
    buf = io.BytesIO()
    np.save(buf, np.asarray(emb, dtype=np.float32))
    atomic_write_bytes(out, buf.getvalue())
    print(f"Encoded {len(texts)} texts as task {args.task!r} -> {out} {tuple(emb.shape)}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    if args.quantize and not args.onnx:
        raise ValueError("--quantize needs --onnx")
    if args.all_tasks:
        if not args.onnx:
            raise ValueError("--all-tasks writes one ONNX graph for every task: add --onnx")
        if args.task or args.quantize:
            raise ValueError("--all-tasks exports every task (no --task) in fp32 (no --quantize)")
    elif not args.task:
        raise ValueError("name the task to export (--task T), or export every task as one graph: --onnx --all-tasks")
    if args.onnx:
        from mote.onnx import require_onnx

        require_onnx()  # fail before the dense export when onnx/onnxruntime are missing
    if args.all_tasks:
        from mote.onnx import export_multitask

        print(export_multitask(args.model, args.out, overwrite=args.overwrite))
        return 0
    model = load_model(args.model)
    reports = []
    then = None
    if args.onnx:  # written into the staged dense folder: both are published together, in one atomic step
        from mote.onnx import export_onnx

        def then(folder: Path) -> None:
            reports.append(export_onnx(folder, quantize=args.quantize, staged_for=args.out))

    if _is_tsembed(model):
        from mote.lora.st import export_task

        out = export_task(model, args.task, args.out, overwrite=args.overwrite, then=then)
    else:
        from mote.export import export_dense

        out = export_dense(model, args.task, args.out, overwrite=args.overwrite, then=then)
    print(f"Exported task {args.task!r} as a plain sentence-transformers model: {out}")
    for report in reports:
        print(report)
    return 0


def describe(model) -> str:
    """Tasks, prefixes, expert layers and parameter counts of a MoTE, TLR or TSEmbed model, as text."""
    if _is_tsembed(model):
        return _describe_tsembed(model)
    from mote import mote_module
    from mote.parameter_counts import parameter_counts

    module = mote_module(model)
    counts = parameter_counts(model)
    config = module.auto_model.config
    lines = [
        f"base encoder: {type(module.auto_model).__name__} ({config.num_hidden_layers} layers, "
        f"hidden {config.hidden_size}), max_seq_length {module.max_seq_length}",
    ]
    if module.routing_mode == "token":
        lines += [
            f"expert layers: {module.expert_layers}  ({module.num_experts} experts each: FFN + both LayerNorms), "
            "token-routed (TLR): a learned top-1 router per layer picks each token's expert; the task sets the "
            "prefix only",
            f"default task: {module.routing.default_task!r}",
            f"parameters: total {counts['total']:,}; active per token {counts['active']:,} (one expert per layer, "
            "plus the routers)",
            "export: none (no dense model equals a token-routed one)",
            "tasks:",
        ]
        lines += [f"  {r.name:<16} prefix {r.prefix!r}" for r in module.routing.routes]
        return "\n".join(lines)
    lines += [
        f"expert layers: {module.expert_layers}  ({module.num_experts} experts each: FFN + both LayerNorms)",
        f"default task: {module.routing.default_task!r}",
        *([f"matryoshka dims: {module.matryoshka_dims} (encode/eval can truncate to these)"]
          if getattr(module, "matryoshka_dims", None) else []),
        f"parameters: total {counts['total']:,}; active per task {counts['active']:,} "
        f"(dense base {counts['dense']:,})",
        "tasks:",
    ]
    for r in module.routing.routes:
        shown = f"prefix {r.prefix!r:<24}" if r.prepend else f"prefix {r.prefix!r} (not prepended)"
        lines.append(f"  {r.name:<16} {shown} -> expert {r.expert}   active {counts['active']:,}")
    return "\n".join(lines)


def _describe_tsembed(model) -> str:
    module = model[0]
    c, report = module.lora_config, module.parameter_report()
    routing = module.routing
    lines = [
        f"TSEmbed (MoE-LoRA) on {type(module.auto_model).__name__}, max_seq_length {module.max_seq_length}",
        f"adapters: {report['adapted_layers']} linear layers, {c.num_experts} LoRA experts each (r {c.r}), "
        f"top-{c.top_k} {c.routing} routing" + (" (learned per token: the task sets the prefix and a router bias)"
                                  if c.routing == "token" else " (a learned table per task)"),
        f"default task: {routing.default_task!r}",
        f"parameters: total {report['total']:,}; backbone {report['backbone']:,}; adapters {report['adapters']:,}; "
        f"active per token {report['active']:,}",
        "export: " + ("one dense model per task (`mote export`)" if c.routing == "sequence"
                      else "none (no dense model equals token routing)"),
        "tasks:",
    ]
    lines += [f"  {r.name:<16} prefix {r.prefix!r}" for r in routing.routes]
    return "\n".join(lines)


def cmd_info(args: argparse.Namespace) -> int:
    from mote.select.record import read_selection, summary_lines

    print(describe(load_model(args.model)))
    record = read_selection(args.model) if Path(args.model).is_dir() else None
    if record is not None:
        print("\n".join(summary_lines(record)))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from mote.demo import run_demo

    return run_demo(args)


# ------------------------------------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mote", description="Task-specialised embeddings with mixtures of experts.")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error (also MOTE_DEBUG=1); accepted anywhere on the line")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("convert", help="upcycle a dense encoder into a MoTE model")
    p.add_argument("base", help="sentence-transformers model: hub id, local folder, or all-MiniLM-L6-v2 (offline)")
    p.add_argument("out", help="output folder")
    p.add_argument("--placement", default="every-other", help="every | every-other | layer indices like 0,2,4")
    p.add_argument(
        "--tasks",
        default=None,
        help="comma list of tasks: names with default prefixes (query,document,classification,clustering), "
        "'name=prefix', and '@k' to share expert k (e.g. query@0,document@0,classification,clustering)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("encode", help="encode texts as one task (MoTE, TLR or TSEmbed model)")
    p.add_argument("model")
    p.add_argument("--task", required=True)
    p.add_argument("--input", required=True, help=".txt (one text per line) or .jsonl[.gz]")
    p.add_argument("--field", default="text", help="JSONL field holding the text (default: text)")
    p.add_argument("--output", required=True, help="output .npy (float32, [N, dim])")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser(
        "export",
        help="write one task of a MoTE (or sequence-routed TSEmbed) model as a plain dense sentence-transformers "
        "model, or all tasks of a MoTE model as one ONNX graph",
    )
    p.add_argument("model")
    p.add_argument("out")
    p.add_argument("--task", default=None, help="the task to export as a dense model")
    p.add_argument(
        "--onnx",
        action="store_true",
        help="also write an ONNX export laid out for sentence-transformers' ONNX backend (needs mote[onnx])",
    )
    p.add_argument(
        "--all-tasks",
        action="store_true",
        help="with --onnx: one ONNX graph (inputs + task_id) serving every task at one model's memory",
    )
    p.add_argument("--quantize", action="store_true", help="with --onnx: also a dynamic int8 model + its quality")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("info", help="tasks, prefixes, expert layers and parameter counts")
    p.add_argument("model")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser(
        "demo",
        help="the end-to-end tour: convert MiniLM, route, encode, then a few minutes of TA-CL and an evaluation",
    )
    p.add_argument("--workdir", default="runs/demo")
    p.add_argument("--steps", type=int, default=None, help="TA-CL steps of the training part (default: 60)")
    p.add_argument("--no-train", action="store_true", help="stop after the conversion checks (about 10 s)")
    p.set_defaults(func=cmd_demo)

    for name in _SUBCOMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


# What the library raises for bad input, a damaged file or folder, a busy or existing output, a missing extra:
# one line naming the fix, exit 2. Anything else (a TypeError, an IndexError) is a bug and keeps its traceback.
USER_ERRORS = (ValueError, OSError, ImportError)


def run_verbs(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    """Parse ``argv`` with ``parser`` and run the chosen verb (``args.func``). The one place where the library's
    errors become a one-line ``error: ...`` and exit 2 (``mote`` and the lab's ``mote-lab`` alike); the traceback is
    shown only with ``--debug`` (anywhere on the line) or ``MOTE_DEBUG=1``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or bool(os.environ.get("MOTE_DEBUG"))
    args = parser.parse_args([a for a in argv if a != "--debug"])
    _quiet_hf()
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130
    except USER_ERRORS as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    """Run one ``mote`` verb (:func:`run_verbs`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["reproduce"]:  # the experiments moved out of the package, into the lab beside it
        print("error: `mote reproduce` is now the lab's: mote-lab reproduce lab/budgets/<budget>.yaml "
              "(make reproduce BUDGET=<budget>; the lab is installed by make install)", file=sys.stderr)
        return 2
    return run_verbs(build_parser(), argv)


__all__ = ["USER_ERRORS", "build_parser", "main", "run_verbs"]


if __name__ == "__main__":
    sys.exit(main())
