"""Golden test: the tables of the committed reports (docs/results*.md) regenerate from their committed raw results.

Each report of ``mote-lab reproduce`` copies each evaluation's results.json to ``docs/<report>/raw/<block>/``; here the
per-dataset, per-category and gain tables are rebuilt from those files with the report's own code
(:func:`mote_lab.summary.block_summary` / :func:`mote_lab.report.summary_markdown`) and must appear,
line for line, in the committed Markdown. A hand edit of a number, or a change of the aggregation code, fails here.
(The significance tables need the per-item scores of the evaluation folders, which are not committed.)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mote_lab.config import load_experiment
from mote_lab.report import summary_markdown
from mote_lab.summary import BlockResults, block_summary

ROOT = Path(__file__).resolve().parents[1]
BUDGETS = ["small", "seeds", "tune", "full", "select", "choose", "curve", "curve-1600", "headline", "recipe"]


def _raw_runs(exp, model: str, raw: Path) -> dict[str, list]:
    block = exp.models[model]
    runs: dict[str, list] = {}
    for name in [*block.baselines, *block.arms]:
        stems = [(None, name)] if name in block.baselines else [(s, f"{name}-seed{s}") for s in block.seeds_of(name)]
        runs[name] = [(seed, raw, json.loads((raw / f"{stem}.json").read_text())) for seed, stem in stems]
    return runs


@pytest.mark.parametrize("budget", BUDGETS)
def test_committed_report_tables_regenerate_from_the_raw_results(budget):
    exp = load_experiment(ROOT / "lab" / "budgets" / f"{budget}.yaml", check_files=False)
    report = ROOT / exp.report.path
    md = report.read_text(encoding="utf-8").splitlines()
    blocks = list(exp.enabled_models())
    assert blocks
    for model in blocks:
        raw = report.with_suffix("") / "raw" / model
        runs = _raw_runs(exp, model, raw)
        assert sorted(p.stem for p in raw.glob("*.json")) == sorted(
            stem for name, rs in runs.items() for stem in ([name] if rs[0][0] is None else
                                                             [f"{name}-seed{s}" for s, _, _ in rs]))
        res = BlockResults(model, runs)
        summary = block_summary(exp, res)
        metric = {d: e["main_metric"] for rs in runs.values() for _, _, r in rs for d, e in r["datasets"].items()}
        expected = summary_markdown(exp, summary, metric)
        start = md.index(expected[0], md.index(f"## {exp.models[model].label or model}: `{exp.models[model].base}`"))
        assert md[start:start + len(expected)] == expected, f"{report} block {model}"


def _wall_minutes(report: Path) -> str:
    import re

    found = re.search(r"summed over invocations\): ([\d.]+) min", report.read_text(encoding="utf-8"))
    assert found, report
    return found.group(1)


def test_findings_quote_the_reports_figures():
    """docs/findings.md's wall times and its gain table are the generated reports' numbers, not hand-typed ones."""
    import re

    readme = (ROOT / "docs" / "findings.md").read_text(encoding="utf-8")
    for name in ("results.md", "results-small.md", "results-seeds.md", "results-tune.md", "results-full.md",
                 "results-choose.md", "results-curve.md", "results-curve-1600.md"):
        minutes = _wall_minutes(ROOT / "docs" / name)
        assert f"{minutes} min" in readme, f"docs/findings.md lacks the wall time of docs/{name} ({minutes} min)"
    results = (ROOT / "docs" / "results-small.md").read_text(encoding="utf-8")
    gains = results[results.index("#### Gain over the untrained base"):]
    gains = gains[: gains.index("\n\n", gains.index("|"))]
    table = readme[readme.index("| arm | mean over datasets |"):]
    table = table[: table.index("\n\n")]
    numbers = re.findall(r"[+−-]\d+\.\d\d", table)
    assert len(numbers) >= 30
    for number in numbers:
        assert number.replace("−", "-") in gains.replace("−", "-"), number


def _section(md: str, head: str) -> str:
    """The text of a report's ``#### head`` section (up to the next heading of that level or above)."""
    start = md.index(head)
    ends = [i for i in (md.find("\n### ", start + 1), md.find("\n#### ", start + 1), md.find("\n## ", start + 1))
            if i != -1]
    return md[start: min(ends) if ends else len(md)]


@pytest.mark.parametrize("page", ["README.md", "docs/findings.md"])
def test_the_selection_table_is_the_headline_reports(page):
    """Each cell of the README's "what a trained model gets you" table is in docs/results.md (the headline budget):
    the gains and paired differences and tests, in the matching significance section."""
    import re

    readme = (ROOT / page).read_text(encoding="utf-8").replace("−", "-")
    report = (ROOT / "docs" / "results.md").read_text(encoding="utf-8").replace("−", "-")
    table = readme[readme.index("| category (datasets) | mote-selected | ic + WiSE-FT |"):]
    rows = [r.strip("|").split("|") for r in table[: table.index("\n\n")].splitlines()[2:]]
    sections = [_section(report, "#### Significance: mote-selected vs base"),
                _section(report, "#### Significance: ic + WiSE-FT vs base"),
                _section(report, "#### Significance: mote-selected vs ic + WiSE-FT")]
    assert len(rows) == 10
    for row in rows:
        label, cells = row[0].strip(), [c.strip() for c in row[1:]]
        category = re.sub(r" \(\d+\)$", "", label)
        for cell, section in zip(cells, sections, strict=True):
            if label == "wins / losses / ties":
                w, lo, t = cell.split(" / ")
                assert f"Across 14 datasets (seed-mean Δ): {w} wins, {lo} losses, {t} ties" in section, cell
            elif label.startswith("Wilcoxon"):
                wp, sp = cell.split(", ")
                assert f"Wilcoxon signed-rank p = {wp}; sign test p = {sp}" in section, cell
            else:
                assert f"| {category} | {cell} |" in section, (label, cell)


def _table_rows(md: str, head: str) -> list[dict[str, str]]:
    """The rows of the Markdown table right after ``head``, as ``{column: cell}``."""
    text = md[md.index(head):]
    lines = [ln for ln in text[text.index("\n|"):].split("\n\n")[0].strip().splitlines()]
    cols = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(cols, (c.strip() for c in ln.strip("|").split("|")), strict=True)) for ln in lines[2:]]


@pytest.mark.parametrize(("report_name", "readme_head", "points"), [
    ("results-curve.md", "### Does longer training change it?", 9),
    ("results-curve-1600.md", "#### To 1,600 steps", 13),
])
def test_findings_learning_curve_tables_are_the_curve_reports(report_name, readme_head, points):
    """docs/findings.md's learning-curve tables: each point's test and validation means, as the curve reports have
    them."""
    readme = (ROOT / "docs" / "findings.md").read_text(encoding="utf-8")
    report = (ROOT / "docs" / report_name).read_text(encoding="utf-8")
    test = {(r["series"], r["step"]): r for r in _table_rows(report, "#### Test datasets")}
    val = {(r["series"], r["step"]): r for r in _table_rows(report, "#### Validation suite")}
    rows = _table_rows(readme, readme_head)
    assert len(rows) == len(test) == points
    for r in rows:
        key = (r["series"], r["step"])
        assert r["test: mean over datasets"] == test[key]["mean over datasets"], key
        assert r["validation: in-domain mean"] == val[key]["in-domain mean"], key
        assert r["validation: ood mean"] == val[key]["ood mean"], key


def test_readme_domain_figures_are_the_domain_reports():
    """The README's domain-scenario paragraph quotes docs/results-domain.md (generated by lab/mote_lab/domain.py):
    every number in it stands in the report."""
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"<!-- domain-results -->(.*?)<!-- /domain-results -->", readme, re.S)
    assert found, "README.md lost its domain-results paragraph"
    report = (ROOT / "docs" / "results-domain.md").read_text(encoding="utf-8")
    numbers = re.findall(r"[+−-]?\d+\.\d+", found.group(1))
    assert numbers
    missing = [n for n in numbers if n not in report]
    assert not missing, f"README quotes {missing}, which docs/results-domain.md does not hold"


def test_the_readme_is_a_guide():
    """README.md stays a guide (issue 29): at most 250 lines; the results history and benchmarks live in docs/."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250
    for link in ("docs/findings.md", "docs/results.md", "docs/usage.md", "docs/training.md", "docs/serving.md"):
        assert f"]({link}" in readme and (ROOT / link).is_file(), link


def test_the_default_recipe_against_the_headline_table_is_recomputed():
    """docs/selection.md's comparison of the default recipe (own rows) with the headline's mote-selected: its
    trained models are the headline's (same identities), and every cell recomputes from the two reports' raw files."""
    import re
    import statistics

    from mote.eval.stats import across_datasets

    recipe, headline = ROOT / "docs/results-recipe/raw/minilm-l6", ROOT / "docs/results/raw/minilm-l6"

    def load(path: Path) -> dict:
        return json.loads(path.read_text(encoding="utf-8"))

    seeds = (42, 43, 44)
    for s in seeds:
        assert load(recipe / f"mote-x-seed{s}.json")["model_identity"] == \
            load(headline / f"mote-x-seed{s}.json")["model_identity"], s
    base = {d: e["main_score"] for d, e in load(headline / "base.json")["datasets"].items()}

    def mean(folder: Path, stem: str) -> dict[str, float]:
        return {d: statistics.mean(load(folder / f"{stem}-seed{s}.json")["datasets"][d]["main_score"] for s in seeds)
                for d in base}

    own, sel = mean(recipe, "mote-own"), mean(headline, "mote-sel")
    text = (ROOT / "docs" / "selection.md").read_text(encoding="utf-8")
    table = re.search(r"<!-- recipe-vs-headline -->(.*?)<!-- /recipe-vs-headline -->", text, re.S).group(1)
    rows = [r.strip("|").split("|") for r in table.strip().splitlines()[2:]]
    assert len(rows) == 3
    for row, (x, y) in zip(rows, [(own, base), (sel, base), (own, sel)], strict=True):
        r = across_datasets([x[d] - y[d] for d in base])
        assert [c.strip() for c in row[1:]] == [
            f"{r['mean_delta']:+.2f}", f"{r['wins']} / {r['losses']} / {r['ties']}", f"{r['wilcoxon_p']:.3f}",
            f"{r['sign_test_p']:.3f}"], row[0]
