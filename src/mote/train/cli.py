"""CLI verbs of mote.train: ``mote train CONFIG.yaml --output DIR [--resume] [--method NAME]``: train, then select
per task (:func:`mote.select.run.train_and_select`): ``DIR/model`` is the model to use.

Runs unchanged under ``torchrun --nproc-per-node N`` (DDP: gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

import argparse


def cmd_train(args: argparse.Namespace) -> int:
    import json

    from mote.select.run import train_and_select
    from mote.train.config import load_config

    cfg = load_config(args.config, method=args.method)  # every problem of the recipe, before any work
    if args.steps is not None or args.data_dir is not None:
        from mote.train.config import parse_config

        raw = cfg.model_dump(mode="json")
        if args.steps is not None:
            from mote.methods import method_config_class

            raw["train"]["steps"] = args.steps
            # settings that follow the step budget (TSEmbed's stages share it) are rescaled by the method's config
            raw["method"] = method_config_class(cfg.method.name).rescaled(raw["method"], args.steps)
        if args.data_dir is not None:
            raw["data"]["data_dir"] = args.data_dir
        if "enabled" not in cfg.select.model_fields_set:  # the default stays a default (see RunConfig.selects)
            raw["select"].pop("enabled")
        cfg = parse_config(raw, args.config)
    summary = train_and_select(cfg, args.output, resume=args.resume)  # holds the run folder's lock
    lines = summary.pop("selection", None)
    print(json.dumps(summary, indent=2))
    if lines:
        print("\n".join(lines))
    return 130 if summary["interrupted"] else 0


def register(subparsers) -> None:
    """Add this subsystem's verbs to the `mote` parser."""
    from mote.methods import METHODS

    p = subparsers.add_parser(
        "train",
        help="train a MoTE model (or another registered method) with task-aware contrastive learning",
        description="Train with TA-CL from a YAML recipe (see configs/). The recipe is validated first; every "
        "problem is reported at once. Works unchanged under torchrun --nproc-per-node N.",
    )
    p.add_argument("config", help="YAML training recipe (configs/*.yaml)")
    p.add_argument("--output", required=True,
                   help="run folder: checkpoints, metrics, model/ (the model to use: selected per task) and "
                   "trained/ (the raw final weights)")
    p.add_argument("--resume", action="store_true", help="continue the run in --output from its last checkpoint")
    p.add_argument("--method", choices=list(METHODS), default=None,
                   help="override the recipe's method.name (same data, steps, seed; the recipe's method settings "
                   "stay, and must be settings of this method)")
    p.add_argument("--steps", type=int, default=None,
                   help="override train.steps (the TSEmbed methods split it between their stages in the same ratio)")
    p.add_argument("--data-dir", default=None, help="override data.data_dir (default $MOTE_DATA or ../shared/data)")
    p.set_defaults(func=cmd_train)
