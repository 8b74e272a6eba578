"""The lab's command line, ``mote-lab`` (``python -m mote_lab``): the experiments behind docs/results*.md.

    mote-lab reproduce lab/budgets/small.yaml                # train, evaluate, measure, write the report
    mote-lab reproduce lab/budgets/full.yaml --dry-run       # what is done, what resumes, what is to do
    mote-lab reproduce lab/budgets/small.yaml --report-only
    mote-lab domain --output runs/domain                     # the user's-own-data scenario (issue 26)
    mote-lab anchors [--check]                               # docs/mteb-anchor.md from its raw files

An experiment file is one budget; its name is the file's stem. Runs go to ``<output>/<name>`` (default
``runs/reproduce/<name>``), so budgets never share folders. The lab uses the ``mote`` library through its public API
only (``tests/test_architecture.py``).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_reproduce(args: argparse.Namespace) -> int:
    from mote_lab.config import load_experiment
    from mote_lab.plan import make_plan
    from mote_lab.runner import ReproductionInterrupted, plan_status, run_reproduction

    if args.budget is not None:
        raise ValueError(f"--budget is gone: each budget is its own experiment file; run mote-lab reproduce "
                         f"lab/budgets/{args.budget}.yaml")
    exp = load_experiment(args.config)  # every problem of the file and its recipes, up front
    root = Path(args.output) / (exp.budget or "default")
    report = args.report or exp.report.path
    if args.dry_run:
        plan = make_plan(exp, root)
        rows = plan_status(plan)
        print(f"{exp.name}: budget {exp.budget or '-'} -> {root}")
        for r in rows:
            print(f"  {r.kind:<5} {r.key:<48} {r.state}")
        counts = {s: sum(1 for r in rows if r.state == s) for s in dict.fromkeys(r.state for r in rows)}
        print("  " + ", ".join(f"{n} {s}" for s, n in counts.items()))
        return 0
    if args.report_only:
        from mote_lab.report import write_report

        print(f"wrote {write_report(make_plan(exp, root), report)}")
        return 0
    try:
        run_reproduction(exp, root, report=None if args.no_report else report)
    except ReproductionInterrupted as e:
        print(f"interrupted: {e}")
        return 130
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``mote-lab`` parser: ``reproduce``, ``domain``, ``anchors``."""
    from mote_lab import anchors, domain

    parser = argparse.ArgumentParser(prog="mote-lab", description="The mote lab: the experiments behind docs/.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    p = subparsers.add_parser(
        "reproduce",
        help="train every arm of an experiment, evaluate them, and write the results report (resumable)",
        description="Train every arm of an experiment file (lab/budgets/<budget>.yaml) from the same base on the same "
        "data, steps and seeds, evaluate each, measure parameters and encode throughput, and write the report. "
        "Finished trainings and evaluations are reused; a killed training resumes from its last checkpoint.",
    )
    p.add_argument("config", help="experiment YAML, one budget (e.g. lab/budgets/small.yaml)")
    p.add_argument("--budget", default=None, help=argparse.SUPPRESS)  # gone: a one-line error naming the file
    p.add_argument("--output", default="runs/reproduce", help="output root; runs go to OUTPUT/NAME, NAME the "
                   "experiment file's stem (default runs/reproduce)")
    p.add_argument("--report", default=None, help="the Markdown report; figures go to the folder of the same name "
                   "without .md (default: the file's report.path, else docs/results.md)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and what is done / resumes / to do")
    p.add_argument("--report-only", action="store_true", help="only (re)write the report from finished runs")
    p.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    p.set_defaults(func=cmd_reproduce)
    p = subparsers.add_parser("domain", help="the domain scenario: a user's biomedical QA files, trained and "
                              "selected on their own held-out rows (docs/results-domain.md)",
                              description=domain.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    domain.add_arguments(p)
    p.set_defaults(func=domain.main)
    p = subparsers.add_parser("anchors", help="rewrite docs/mteb-anchor.md from docs/mteb-anchor/raw")
    anchors.add_arguments(p)
    p.set_defaults(func=anchors.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    """``mote-lab``: bad input (an experiment file or recipe problem, a missing file) is one line and exit 2, as
    ``mote``'s (the same runner, :func:`mote.cli.run_verbs`); the traceback only with ``--debug``."""
    from mote.cli import run_verbs

    return run_verbs(build_parser(), argv)
