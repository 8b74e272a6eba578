"""CLI verbs of mote.moee.

    mote moee encode MODEL --input FILE --output FILE.npy [--view hs|rw|concat|sum] [--template prompteol] ...
    mote moee fit-stats MODEL --corpus FILE [--output DIR] [--limit N] ...
    mote moee info MODEL [...]
    mote moee templates

``fit-stats`` writes the standardisation statistics of ``concat`` into ``MODEL/moee-stats-<config key>`` (a
local model folder) or ``--output``; ``encode`` finds them there again (or takes ``--stats DIR``).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def _add_model_args(p: argparse.ArgumentParser) -> None:
    from mote.moee.config import ARCHITECTURES, CAPTURES, POOLINGS, RW_SCORES
    from mote.moee.templates import EMPTY_POLICIES

    p.add_argument("model", help="MoE model: hub id (allenai/OLMoE-1B-7B-0924), local folder, or a MoTE tlr folder")
    g = p.add_argument_group("features (these must match the statistics' settings)")
    g.add_argument(
        "--template",
        default="prompteol",
        help="template name (see `mote moee templates`) or a string with {text} (default: prompteol)",
    )
    g.add_argument("--preprocess", action="store_true", help="the reference code's text preprocessing")
    g.add_argument(
        "--reference",
        action="store_true",
        help="the reference code's settings for this model family: --preprocess, last-token pooling, "
        "router logits for OLMoE/Qwen2-MoE, softmax for DeepSeek",
    )
    g.add_argument("--instruction", default="", help="text prepended to every input before templating")
    g.add_argument(
        "--empty-text",
        choices=EMPTY_POLICIES,
        default="period",
        help="an empty text becomes '.' (period, default) or is an error",
    )
    g.add_argument("--rw-scores", choices=RW_SCORES, default=None, help="router scores (default: softmax)")
    pooling_help = "auto: last token (decoders), mean (encoders)"
    g.add_argument("--rw-pooling", choices=POOLINGS, default="auto", help=pooling_help)
    g.add_argument("--hs-pooling", choices=POOLINGS, default="auto", help=pooling_help)
    g.add_argument("--architecture", choices=ARCHITECTURES, default="auto")
    g.add_argument(
        "--capture",
        choices=CAPTURES,
        default="auto",
        help="router_logits (transformers' output_router_logits) or hooks on router modules",
    )
    g.add_argument("--router-pattern", default=None, help="regex on module names selecting the router modules (hooks)")
    g.add_argument("--num-experts", type=int, default=None, help="router width for the hook path")
    g.add_argument("--max-length", type=int, default=None, help="truncate prompts (default: the model's limit)")
    g = p.add_argument_group("loading")
    g.add_argument("--device", default=None, help="cuda if available, else cpu")
    g.add_argument(
        "--dtype",
        default="auto",
        choices=("auto", "float32", "bfloat16", "float16"),
        help="auto: bf16 on CUDA and on CPUs with native bf16, else float32",
    )
    g.add_argument("--quantization", choices=("4bit", "8bit"), default=None, help="bitsandbytes (CUDA only)")
    g.add_argument("--trust-remote-code", action="store_true", help="e.g. deepseek-ai/deepseek-moe-16b-base")
    g.add_argument("--batch-size", type=int, default=32)
    g.add_argument("--task", default=None, help="task passed to MoTE models (ignored by Hugging Face LMs)")


def _config(args: argparse.Namespace):
    from mote.moee.config import MoEEConfig

    settings = {
        "template": args.template,
        "preprocess": args.preprocess,
        "instruction": args.instruction,
        "empty_text": args.empty_text,
        "rw_pooling": args.rw_pooling,
        "hs_pooling": args.hs_pooling,
        "architecture": args.architecture,
        "capture": args.capture,
        "router_pattern": args.router_pattern,
        "num_experts": args.num_experts,
        "max_length": args.max_length,
    }
    if args.rw_scores is not None:
        settings["rw_scores"] = args.rw_scores
    if not args.reference:
        return MoEEConfig(**settings)
    from transformers import AutoConfig

    from mote.base_models import resolve_model_path

    model_type = getattr(
        AutoConfig.from_pretrained(resolve_model_path(args.model), trust_remote_code=args.trust_remote_code),
        "model_type",
        "",
    )
    settings.pop("preprocess")
    for key in ("rw_pooling", "hs_pooling"):
        if settings[key] == "auto":
            settings.pop(key)
    return MoEEConfig.reference(model_type, **settings)


def _load(args: argparse.Namespace, stats):
    from mote.moee.model import MoEEEmbedder

    return MoEEEmbedder.from_pretrained(
        args.model,
        _config(args),
        stats=stats,
        device=args.device,
        dtype=args.dtype,
        quantization=args.quantization,
        trust_remote_code=args.trust_remote_code,
    )


def _save_npy(path: Path, array) -> None:
    import io

    import numpy as np

    from mote.atomic import atomic_write_bytes

    buf = io.BytesIO()
    np.save(buf, array.astype(np.float32))
    atomic_write_bytes(path, buf.getvalue())


# ------------------------------------------------------------------------------------------------ verbs
def cmd_encode(args: argparse.Namespace) -> int:
    from mote.files import read_texts

    out = Path(args.output)
    if out.suffix != ".npy":
        raise ValueError(f"--output must end in .npy, got {out}")
    texts = read_texts(args.input, field=args.field)
    standardize = False if args.no_standardize else None
    emb = _load(args, args.stats or "auto")
    array = emb.encode(
        texts, view=args.view, task=args.task, batch_size=args.batch_size, show_progress=True, standardize=standardize
    )
    _save_npy(out, array)
    std = "standardised" if emb.uses_stats(args.view, standardize) else "raw"
    print(f"Encoded {len(texts)} texts, view {args.view!r} ({std}) -> {out} {tuple(array.shape)}")
    if args.view == "sum":
        print(
            f"[HS; RW]: columns [0, {emb.hs_dim}) are HS, [{emb.hs_dim}, {array.shape[1]}) are RW; "
            "score pairs with cos(HS) + alpha * cos(RW) (mote.moee.sum_pair_scores)"
        )
    return 0


def cmd_fit_stats(args: argparse.Namespace) -> int:
    from mote.files import read_texts
    from mote.moee.model import stats_dirname

    texts = read_texts(args.corpus, field=args.field)
    if args.limit is not None:
        texts = texts[: args.limit]
    if len(texts) < 2:
        raise ValueError(f"--corpus needs at least 2 texts, {args.corpus} has {len(texts)}")
    emb = _load(args, None)
    if args.output is None:
        local = Path(args.model)
        if not local.is_dir():
            raise ValueError(f"{args.model!r} is not a local folder: give --output DIR for the statistics")
        output = local / stats_dirname(emb.config)
    else:
        output = Path(args.output)
    stats = emb.fit_stats(
        texts, batch_size=args.batch_size, show_progress=True, task=args.task, meta={"corpus": str(args.corpus)}
    )
    stats.save(output, overwrite=args.overwrite)
    print(
        f"Fitted MoEE statistics on {stats.count} texts (HS {stats.hs_dim} + RW {stats.dim - stats.hs_dim} "
        f"features) -> {output}"
    )
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    emb = _load(args, "auto")
    print(emb.describe())
    return 0


def cmd_templates(args: argparse.Namespace) -> int:
    from mote.moee.templates import PAPER_PROMPTS, TEMPLATES

    for name, template in TEMPLATES.items():
        mark = "*" if name in PAPER_PROMPTS else " "
        print(f"{mark} {name:<18} {template}")
    print("(* = the paper's nine prompts; 'quoted' is the reference code's 'none', used for Table 3)")
    return 0


def register(subparsers) -> None:
    """Add ``mote moee ...`` to the ``mote`` parser."""
    parser = subparsers.add_parser(
        "moee",
        help="training-free MoE embeddings from routing weights + hidden state (MoEE)",
        description="MoEE: embeddings from the routers (RW) and last hidden state (HS) of mixture-of-experts models.",
    )
    sub = parser.add_subparsers(dest="moee_command", required=True, metavar="MOEE_COMMAND")

    from mote.moee.config import VIEWS

    p = sub.add_parser("encode", help="encode texts with one MoEE view")
    _add_model_args(p)
    p.add_argument(
        "--view",
        choices=VIEWS,
        default="hs",
        help="hs | rw | concat (standardised [HS; RW], needs fit-stats) | sum ([HS; RW] for cos+alpha*cos)",
    )
    p.add_argument("--input", required=True, help=".txt (one text per line) or .jsonl[.gz]")
    p.add_argument("--field", default="text", help="JSONL field holding the text (default: text)")
    p.add_argument("--output", required=True, help="output .npy (float32, [N, dim])")
    p.add_argument(
        "--stats", default=None, help="statistics folder (default: MODEL/moee-stats-<config key> if it exists)"
    )
    p.add_argument("--no-standardize", action="store_true", help="raw rw / sum features even when statistics exist")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("fit-stats", help="fit the per-feature statistics of [HS; RW] on a reference corpus")
    _add_model_args(p)
    p.add_argument("--corpus", required=True, help=".txt (one text per line) or .jsonl[.gz]")
    p.add_argument("--field", default="text", help="JSONL field holding the text (default: text)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N texts")
    p.add_argument("--output", default=None, help="statistics folder (default: MODEL/moee-stats-<config key>)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_fit_stats)

    p = sub.add_parser("info", help="router layout, HS/RW widths and capture method of a MoE model")
    _add_model_args(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("templates", help="list the prompt templates")
    p.set_defaults(func=cmd_templates)
