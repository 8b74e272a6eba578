"""The domain scenario (issue 26): a user with biomedical QA data trains and selects on it, as the README path does.

    mote-lab domain --output runs/domain                  # 3 seeds, then docs/results-domain.md
    mote-lab domain --output runs/domain --report-only    # the report again from finished runs

What it does, with the library's public API only (``mote.train.parse_config``, ``mote.select.run.train_and_select``,
``mote.eval.evaluate``, ``mote.eval.stats``):

1. **The user's files.** PubMedQA (``$MOTE_DATA/train-PubMedQA``: 500 expert-labelled questions -> their abstracts)
   and MedQuAD (``train-MedQuAD``: medical questions -> answers) are split by a hash of the question
   (``DOMAIN_SALT``, independent of the training holdout's hash): 20% of the questions are the domain's test, never
   trained on nor selected on; the rest are written as the user's files (PubMedQA as a CSV with its own column
   names ``question,abstract``; MedQuAD as JSONL).
2. **The domain tests** (``domain-test/``, the layout ``mote eval`` reads): the PubMedQA test questions against
   **every** PubMedQA abstract (500), not just their positives; the first 300 MedQuAD test questions against their
   answers and the other test questions' answers (3,000 texts at most).
3. **The user's recipe** names those two datasets and nothing else: the default recipe (MoTE, experts only,
   100 steps, 10% held out, per-task selection on the held-out rows of the two datasets). The baseline is the same
   recipe with ``method: ic`` (IC, every weight trained), whose selection is one WiSE-FT blend for the whole model
   (ic + WiSE-FT). Seeds 42, 43, 44.
4. **Scores**: the plain base, mote-selected and ic + WiSE-FT on the domain tests (nDCG@10 and @1) and on the
   headline's 14 datasets of the default suite (docs/results.md); mote (experts) unselected on the domain tests.
   Paired significance: a bootstrap over the test queries per seed (domain), a Wilcoxon signed-rank test and a
   sign test over the 14 datasets of the seed-mean differences (suite).

The report (``docs/results-domain.md``) is generated from ``<output>/scores.json``; nothing in it is typed by hand.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

DOMAIN_SALT = b"mote-domain"  # the domain test's hash, independent of mote.data.holdout's
TEST_FRACTION = 0.2
SEEDS = (42, 43, 44)
SUITE = ["STS12", "STS13", "STS14", "STS15", "STS16", "STSBenchmark", "BIOSSES", "QEDNaturalQuestionsRetrieval",
         "WikiQARetrieval", "TrecQAReranking", "MassiveScenarioClassification-en",
         "AmazonCounterfactualClassification-en", "StackExchangeClustering", "TwitterURLCorpus"]  # the headline's
DOMAIN = "PubMedQA-domain"
MEDQUAD = "MedQuAD-domain"
MEDQUAD_QUERIES, MEDQUAD_CORPUS = 300, 3000
DOMAIN_SETS = (DOMAIN, MEDQUAD)


def in_domain_test(question: str) -> bool:
    key = " ".join(str(question).split()).encode("utf-8")
    digest = hashlib.blake2b(key, digest_size=8, person=DOMAIN_SALT).digest()
    return int.from_bytes(digest, "big") / 2.0**64 < TEST_FRACTION


def _write_beir(folder: Path, queries: list[str], positives: list[list[str]], extra: list[str], note: str) -> dict:
    """A retrieval folder in the layout ``mote eval`` reads: ``queries`` -> their ``positives``; ``extra`` joins the
    corpus as distractors."""
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    docs: dict[str, str] = {}
    for text in [t for ps in positives for t in ps] + extra:
        docs.setdefault(text, f"d{len(docs)}")
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": d, "title": "", "text": t}) + "\n"
                                                 for t, d in docs.items()), encoding="utf-8")
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{i}", "text": q}) + "\n"
                                                  for i, q in enumerate(queries)), encoding="utf-8")
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"q{i}\t{docs[t]}\t1\n" for i, ps in enumerate(positives) for t in ps), encoding="utf-8")
    (folder / "meta.json").write_text(json.dumps({
        "task": "Retrieval", "role": "eval", "splits": {"test": len(queries), "corpus": len(docs)}, "note": note}),
        encoding="utf-8")
    return {"queries": len(queries), "corpus": len(docs)}


def prepare(out: Path, data_root: Path) -> dict[str, Any]:
    """The user's files, the domain test folders and the recipe (steps 1-3 of the module doc)."""
    from mote.data.sources import Source, load_records

    files = out / "user-files"
    files.mkdir(parents=True, exist_ok=True)
    tests = out / "domain-test"
    # PubMedQA: the test questions against every abstract
    pubmed = load_records(Source("pubmedqa", folder="train-PubMedQA"), data_root)
    test = [r for r in pubmed if in_domain_test(r["query"])]
    with open(files / "pubmed_qa.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["question", "abstract"])
        w.writerows([r["query"], r["positive"]] for r in pubmed if not in_domain_test(r["query"]))
    sizes = {DOMAIN: _write_beir(tests / DOMAIN, [r["query"] for r in test], [[r["positive"]] for r in test],
                                 [r["positive"] for r in pubmed], "PubMedQA test questions against every abstract")}
    # MedQuAD: the first MEDQUAD_QUERIES test questions against their answers and other test questions' answers
    medquad = load_records(Source("medquad", folder="train-MedQuAD"), data_root)
    with open(files / "medquad.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in medquad if not in_domain_test(r["query"]))
    answers: dict[str, list[str]] = {}
    for r in medquad:
        if in_domain_test(r["query"]) and r["positive"] not in answers.setdefault(r["query"], []):
            answers[r["query"]].append(r["positive"])
    chosen = list(answers.items())[:MEDQUAD_QUERIES]
    others = [t for _, ps in list(answers.items())[MEDQUAD_QUERIES:] for t in ps]
    sizes[MEDQUAD] = _write_beir(tests / MEDQUAD, [q for q, _ in chosen], [ps for _, ps in chosen],
                                 others[: MEDQUAD_CORPUS - sum(len(ps) for _, ps in chosen)],
                                 f"MedQuAD test questions (first {MEDQUAD_QUERIES}) against their answers and "
                                 "other test questions' answers")
    recipe = {"objectives": {"retrieval": {"datasets": [
        {"path": str(files / "pubmed_qa.csv"), "columns": {"query": "question", "positive": "abstract"}},
        {"path": str(files / "medquad.jsonl"), "max_examples": 3000}]}}}
    return {"recipe": recipe, "domain_sets": sizes,
            "train_rows": {"pubmed_qa.csv": sum(not in_domain_test(r["query"]) for r in pubmed),
                           "medquad.jsonl": sum(not in_domain_test(r["query"]) for r in medquad)}}


def _evaluate(model: Any, name: str, mode: str, out: Path, data_root: Path, domain_root: Path,
              suite: bool = True) -> dict[str, Any]:
    from mote.eval import evaluate

    common = {"mode": mode, "name": name, "cache": True, "show_progress": False, "quiet": True, "overwrite": True}
    domain = evaluate(model, datasets=list(DOMAIN_SETS), data_dir=domain_root, split="test", output=out / "domain",
                      **common)
    scores = {"domain": {d: domain["datasets"][d]["main_score"] for d in DOMAIN_SETS},
              "domain_at_1": {d: domain["datasets"][d]["metrics"]["ndcg_at_1"] for d in DOMAIN_SETS}}
    if suite:
        res = evaluate(model, datasets=SUITE, data_dir=data_root, split="auto", output=out / "suite", **common)
        scores["suite"] = {d: r["main_score"] for d, r in res["datasets"].items()}
    return scores


def _mode(model_dir: Path) -> str:
    """How a folder is evaluated: a MoTE folder routes itself; a dense (IC) folder gets its task prefixes, unless
    selection took it back to the plain base (then its prompts were dropped)."""
    if (model_dir / "mote_config.json").is_file():
        return "auto"
    record = json.loads((model_dir / "selection.json").read_text()) if (model_dir / "selection.json").is_file() \
        else None
    return "dense" if record is not None and not record["choice"]["prepend"].get("*", True) else "ic"


def run(out: Path, seeds: tuple[int, ...]) -> None:
    from mote.data import data_dir
    from mote.select.run import train_and_select
    from mote.train.config import parse_config

    root = data_dir(None)
    prepared = prepare(out, root)
    domain_root = out / "domain-test"
    scores_path = out / "scores.json"
    scores = json.loads(scores_path.read_text()) if scores_path.is_file() else {"runs": {}}
    scores.update(prepared)

    def save() -> None:
        tmp = scores_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(scores, indent=1))
        os.replace(tmp, scores_path)

    t0 = time.perf_counter()
    if "base" not in scores["runs"]:
        scores["runs"]["base"] = _evaluate("all-MiniLM-L6-v2", "base", "dense", out / "eval" / "base", root,
                                           domain_root)
        save()
    for seed in seeds:
        for arm in ("mote", "ic"):
            run_dir = out / "runs" / f"{arm}-seed{seed}"
            key = f"{arm}-seed{seed}"
            if key in scores["runs"]:
                continue
            cfg = parse_config({**prepared["recipe"], "seed": seed, "method": arm}, f"{arm} seed {seed}")
            t = time.perf_counter()
            if not (run_dir / "model" / "selection.json").is_file():
                import shutil

                shutil.rmtree(run_dir, ignore_errors=True)
                summary = train_and_select(cfg, run_dir, log=lambda m: print(f"   {m}", flush=True))
            else:
                summary = {"wall_s": None}
            train_select_s = time.perf_counter() - t
            entry = {"selected": _evaluate(str(run_dir / "model"), f"{arm}-selected@{seed}",
                                           _mode(run_dir / "model"), out / "eval" / f"{key}-selected", root,
                                           domain_root),
                     "train_s": summary.get("wall_s"), "train_select_s": round(train_select_s, 1),
                     "selection": json.loads((run_dir / "model" / "selection.json").read_text())["choice"]}
            if arm == "mote":  # unselected: the raw trained weights (domain tests only: CPU time)
                entry["trained"] = _evaluate(str(run_dir / "trained"), f"{arm}-trained@{seed}", "auto",
                                             out / "eval" / f"{key}-trained", root, domain_root, suite=False)
            scores["runs"][key] = entry
            save()
            print(f"== {key}: domain {entry['selected']['domain']} (base {scores['runs']['base']['domain']})"
                  f" in {time.perf_counter() - t:.0f} s", flush=True)
    scores["wall_s"] = round(scores.get("wall_s", 0) + time.perf_counter() - t0, 1)
    scores["date"] = dt.date.today().isoformat()
    scores["seeds"] = list(seeds)
    save()


# ------------------------------------------------------------------------------------------------ report
def _items(out: Path, run: str, dataset: str) -> dict[str, np.ndarray]:
    data = np.load(out / "eval" / run / "domain" / "items" / f"{dataset}.npz")
    return {k: data[k] for k in data.files}


SERIES = {"mote (experts), unselected": ("mote", "trained"),
          "mote-selected (the default recipe)": ("mote", "selected"),
          "ic + WiSE-FT": ("ic", "selected")}
PAIRS = [("mote-selected − plain base", "base", "mote-seed{}-selected"),
         ("mote-selected − ic + WiSE-FT", "ic-seed{}-selected", "mote-seed{}-selected"),
         ("ic + WiSE-FT − plain base", "base", "ic-seed{}-selected"),
         ("mote (experts), unselected − plain base", "base", "mote-seed{}-trained")]


def report(out: Path, path: Path) -> str:
    from mote.eval.stats import across_datasets, paired_bootstrap

    s = json.loads((out / "scores.json").read_text())
    seeds, base = s["seeds"], s["runs"]["base"]

    def get(label: str, seed: int) -> dict[str, Any]:
        arm, which = SERIES[label]
        return s["runs"][f"{arm}-seed{seed}"][which]

    sets = s["domain_sets"]
    lines = [
        "# The domain scenario: biomedical QA, trained and selected on the user's own data",
        "",
        f"Generated by `mote-lab domain --output {out}` ({s['date']}; seeds "
        f"{', '.join(map(str, seeds))}; "
        + (f"{s['wall_s'] / 60:.1f} min of work on the 2-core CPU" if "wall_s" in s else
           f"the run was stopped after seed {seeds[-1]} of {', '.join(map(str, SEEDS))} for CPU time; per-run wall "
           "times below")
        + "). Nothing below is typed by hand.",
        "",
        "## Setup",
        "",
        f"- **The user's files**: PubMedQA questions -> abstracts as a CSV with its own column names "
        f"(`question,abstract`; {s['train_rows']['pubmed_qa.csv']} rows) and MedQuAD questions -> answers as JSONL "
        f"({s['train_rows']['medquad.jsonl']} rows, 3,000 read). The questions of either whose hash falls in a "
        f"{TEST_FRACTION:.0%} range (a hash independent of the training holdout's) are the domain's **test**: not "
        "in the user's files, never trained on, never selected on.",
        f"- **Domain tests** (nDCG@10, and nDCG@1): {DOMAIN}, {sets[DOMAIN]['queries']} PubMedQA test questions "
        f"against every PubMedQA abstract ({sets[DOMAIN]['corpus']}); {MEDQUAD}, the first "
        f"{sets[MEDQUAD]['queries']} MedQuAD test questions against their answers and other test questions' answers "
        f"({sets[MEDQUAD]['corpus']} texts).",
        "- **The recipe** names the two files and nothing else: the default recipe (MoTE, experts only, 100 steps of "
        "batch 16 at lr 1e-4, 10% of each file held out, per-task selection on those held-out rows). "
        "**ic + WiSE-FT** is the same recipe with `method: ic` (every weight trained), selected the same way (one "
        "blend for the whole model).",
        "- **Suite**: the headline's 14 datasets of the default suite ([results.md](results.md)); none is trained or "
        "selected on.",
        "",
        "## Domain tests",
        "",
    ]
    for dataset in (DOMAIN, MEDQUAD):
        for metric, key in (("nDCG@10", "domain"), ("nDCG@1", "domain_at_1")):
            b = base[key][dataset]
            lines += [f"**{dataset}, {metric}**", "",
                      "| model | " + " | ".join(f"seed {sd}" for sd in seeds) + " | mean ± std | − base |",
                      "|---|" + "---:|" * (len(seeds) + 2),
                      "| plain base | " + " | ".join(f"{b:.2f}" for _ in seeds) + f" | {b:.2f} | |"]
            for label in SERIES:
                v = np.array([get(label, sd)[key][dataset] for sd in seeds])
                spread = f" ± {v.std(ddof=1):.2f}" if len(v) > 1 else " (one seed)"
                lines.append(f"| {label} | " + " | ".join(f"{x:.2f}" for x in v)
                             + f" | {v.mean():.2f}{spread} | {v.mean() - b:+.2f} |")
            lines.append("")
        lines += [f"Paired bootstrap over the {dataset} test queries (nDCG@10, 1,000 resamples), per seed: Δ (p)", "",
                  "| comparison | " + " | ".join(f"seed {sd}" for sd in seeds) + " |", "|---|" + "---:|" * len(seeds)]
        for label, a, b in PAIRS:
            cells = []
            for sd in seeds:
                r = paired_bootstrap("Retrieval", _items(out, a.format(sd), dataset),
                                     _items(out, b.format(sd), dataset), 1000, seed=0)
                cells.append(f"{r['delta']:+.2f} ({r['p']:.3f})")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    scored = [label for label in SERIES if "suite" in get(label, seeds[0])]  # unselected: domain tests only
    lines += ["## The 14 suite datasets (seed means)", "",
              "| dataset | plain base | " + " | ".join(scored) + " |", "|---|---:|" + "---:|" * len(scored)]
    means = {label: {d: float(np.mean([get(label, sd)["suite"][d] for sd in seeds])) for d in SUITE}
             for label in scored}
    for d in SUITE:
        lines.append(f"| {d} | {base['suite'][d]:.2f} | " + " | ".join(f"{means[lb][d]:.2f}" for lb in scored) + " |")
    lines.append("| **mean** | " + f"{np.mean([base['suite'][d] for d in SUITE]):.2f} | "
                 + " | ".join(f"{np.mean(list(means[lb].values())):.2f}" for lb in scored) + " |")
    lines += ["", "Over the 14 datasets (seed-mean differences): Wilcoxon signed-rank test and sign test.", "",
              "| comparison | mean Δ | wins / losses / ties | Wilcoxon p | sign-test p |", "|---|---:|---:|---:|---:|"]
    sel, ic = means["mote-selected (the default recipe)"], means["ic + WiSE-FT"]
    for label, a, b in [("mote-selected − plain base", base["suite"], sel), ("mote-selected − ic + WiSE-FT", ic, sel),
                        ("ic + WiSE-FT − plain base", base["suite"], ic)]:
        r = across_datasets([b[d] - a[d] for d in SUITE])
        lines.append(f"| {label} | {r['mean_delta']:+.2f} | {r['wins']} / {r['losses']} / {r['ties']} | "
                     f"{r['wilcoxon_p']:.3f} | {r['sign_test_p']:.3f} |")
    lines += ["", "## What selection kept", "", "| run | choice |", "|---|---|"]
    for key in sorted(s["runs"]):
        if key != "base":
            lines.append(f"| {key} | `{json.dumps(s['runs'][key]['selection'], sort_keys=True)}` |")
    lines += ["", "## Wall time per run (seconds)", "",
              "Wall clock of each invocation, with whatever else shared the 2 cores at the time: a record, not a "
              "speed figure (the idle cost of selection against training is benchmarks/select_cost.py's, in "
              "[selection.md](selection.md)). A run trained and selected in an earlier, interrupted invocation shows "
              "\"earlier\".", "", "| run | training | training + selection |", "|---|---:|---:|"]
    for key in sorted(s["runs"]):
        if key != "base":
            e = s["runs"][key]
            done_before = e["train_s"] is None
            lines.append(f"| {key} | {'earlier' if done_before else e['train_s']} | "
                         f"{'earlier' if done_before else e['train_select_s']} |")
    text = "\n".join(lines) + "\n"
    path.write_text(text, encoding="utf-8")
    return text


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--output", default="runs/domain", help="runs and scores.json (default runs/domain)")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    ap.add_argument("--report", default="docs/results-domain.md")
    ap.add_argument("--report-only", action="store_true", help="only rewrite the report from <output>/scores.json")


def main(args: argparse.Namespace) -> int:
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        run(out, tuple(args.seeds))
    print(report(out, Path(args.report)))
    return 0
