"""CLI verb of mote.experiment: ``mote reproduce CONFIG [--budget B] [--output DIR] [--report FILE]``.

    mote reproduce configs/reproduce.yaml --budget small             # train, evaluate, measure, write the report
    mote reproduce configs/reproduce.yaml --budget full --dry-run    # what is done, what resumes, what is to do
    mote reproduce configs/reproduce.yaml --budget small --report-only

Runs go to ``<output>/<budget>`` (default ``runs/reproduce/<budget>``), so budgets never share folders.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_reproduce(args: argparse.Namespace) -> int:
    from mote.experiment.config import load_experiment
    from mote.experiment.plan import make_plan
    from mote.experiment.runner import ReproductionInterrupted, plan_status, run_reproduction

    exp = load_experiment(args.config, budget=args.budget)  # every problem of the file and its recipes, up front
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
        from mote.experiment.report import write_report

        print(f"wrote {write_report(make_plan(exp, root), report)}")
        return 0
    try:
        run_reproduction(exp, root, report=None if args.no_report else report)
    except ReproductionInterrupted as e:
        print(f"interrupted: {e}")
        return 130
    return 0


def register(subparsers) -> None:
    """Add this subsystem's verbs to the `mote` parser."""
    p = subparsers.add_parser(
        "reproduce",
        help="train every arm of an experiment, evaluate them, and write the results report (resumable)",
        description="Train every arm of an experiment file (configs/reproduce.yaml) from the same base on the same "
        "data, steps and seeds, evaluate each, measure parameters and encode throughput, and write the report. "
        "Finished trainings and evaluations are reused; a killed training resumes from its last checkpoint.",
    )
    p.add_argument("config", help="experiment YAML (configs/reproduce.yaml)")
    p.add_argument("--budget", default=None, help="a budget of the file (e.g. small, full; default: its "
                   "default_budget)")
    p.add_argument("--output", default="runs/reproduce", help="output root; runs go to OUTPUT/BUDGET "
                   "(default runs/reproduce)")
    p.add_argument("--report", default=None, help="the Markdown report; figures go to the folder of the same name "
                   "without .md (default: the budget's report.path, else docs/results.md)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and what is done / resumes / to do")
    p.add_argument("--report-only", action="store_true", help="only (re)write the report from finished runs")
    p.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    p.set_defaults(func=cmd_reproduce)
