"""CLI verb of mote.select: ``mote select RUN_DIR [--output MODEL] [--at-step N] [--validation ...] ...``."""

from __future__ import annotations

import argparse


def _step(value: str) -> int:
    try:
        step = int(value)
    except ValueError:
        step = 0
    if step <= 0:
        raise argparse.ArgumentTypeError(f"--at-step takes an optimiser step (a positive integer), got {value!r}")
    return step


def _config(args: argparse.Namespace):
    """The run recipe's ``select:`` section with the command line's overrides."""
    import yaml

    from mote.select.config import SelectConfig
    from mote.train.config import CONFIG_FILE

    raw = {}
    for folder in ("trained", "model"):  # the run's recipe, next to its raw weights
        try:
            with open(f"{args.run}/{folder}/{CONFIG_FILE}", encoding="utf-8") as f:
                raw = (yaml.safe_load(f) or {}).get("select") or {}
            break
        except FileNotFoundError:
            continue
    for key in ("validation", "shared", "tolerance", "batch_size", "max_examples", "suite"):
        value = getattr(args, key)
        if value is not None:
            raw[key] = value
    if args.alphas is not None:
        raw["alphas"] = [float(a) for a in args.alphas.split(",") if a.strip()]
    if args.snapshots is not None:
        raw["snapshots"] = [float(a) for a in args.snapshots.split(",") if a.strip()]
    if args.no_consolidate:
        raw["consolidate"] = {**(raw.get("consolidate") or {}), "enabled": False}
    return SelectConfig.model_validate(raw)


def cmd_select(args: argparse.Namespace) -> int:
    from mote.select.record import read_selection, summary_lines
    from mote.select.run import select_run

    out = select_run(args.run, args.output, _config(args), data_dir=args.data_dir, overwrite=args.overwrite,
                     at_step=args.at_step)
    print(f"selected model: {out} (see {out}/selection.md)")
    print("\n".join(summary_lines(read_selection(out))))
    return 0


def register(subparsers) -> None:
    """Add this subsystem's verbs to the `mote` parser."""
    from mote.select.config import VALIDATION_CHOICES

    p = subparsers.add_parser(
        "select",
        help="finish a training run: per task, keep the weights validation data prefers (base, snapshot, blend)",
        description="Per-task selection (mote.select): for every expert (and the shared weights) choose among the "
        "base weights, the snapshots kept during training and WiSE-FT blends, on held-out validation data "
        "(never a test split). Writes a normal model folder with selection.json / selection.md.",
    )
    p.add_argument("run", help="a `mote train` run folder (with trained/ or model/, and snapshots/)")
    p.add_argument("--output", default=None,
                   help="the selected model folder (default RUN/model, re-decided from RUN/trained)")
    p.add_argument("--at-step", type=_step, default=None, metavar="N",
                   help="select the run as it stood at step N (a step it kept a snapshot of): the candidates are "
                   "the base, the snapshots before N and blends of step N's weights; needs --output")
    p.add_argument("--validation", choices=VALIDATION_CHOICES, default=None,
                   help="validation groups to choose on (default: the recipe's select.validation, else both)")
    p.add_argument("--shared", choices=("auto", "global", "base"), default=None,
                   help="how the shared (non-expert) weights are chosen (default auto)")
    p.add_argument("--alphas", default=None, help="WiSE-FT grid, e.g. 0.25,0.5,0.75,1")
    p.add_argument("--snapshots", default=None,
                   help="which kept snapshots are candidates, as fractions of the run's steps (e.g. 0.5; '' for none)")
    p.add_argument("--tolerance", type=float, default=None, help="points a category may fall below the base")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--max-examples", type=int, default=None,
                   help="per training task: in-domain validation queries / scored rows / sentences, shared by the "
                   "task's datasets (default 100)")
    p.add_argument("--suite", choices=("recipe", "shared"), default=None,
                   help="in-domain validation: the recipe's own held-out rows (recipe, the default) or the fixed "
                   "suite built from the data root (shared)")
    p.add_argument("--no-consolidate", action="store_true", help="do not merge experts")
    p.add_argument("--data-dir", default=None, help="training data folder (default $MOTE_DATA or ../shared/data)")
    p.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    p.set_defaults(func=cmd_select)
