"""The user's path, as the README opens with it: their own files -> ``mote train`` (training, then per-task
selection on their held-out rows) -> ``run/model`` -> ``mote export`` -> a plain sentence-transformers load.

Runs with ``MOTE_DATA`` pointing at an empty folder: nothing of ``../shared`` is needed. The README block's commands
run as they are written, except the install line (the test runs inside the installed environment) and
``--steps 6`` appended to ``mote train`` (the default 100 steps are the recipe's, not a test's)."""

from __future__ import annotations

import csv
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"<!-- quickstart[^>]*-->\s*```bash\n(.*?)```\s*<!-- /quickstart -->", re.S)

TOPICS = ["password", "invoice", "shipping", "refund", "warranty", "battery", "screen", "login", "subscription",
          "delivery", "printer", "router"]
VERBS = ["reset", "change", "track", "cancel", "renew", "fix", "update", "check"]
INTENTS = {"billing": ["invoice", "refund", "charge", "payment"], "tech": ["screen", "battery", "router", "printer"],
           "account": ["login", "password", "profile", "email"], "shipping": ["parcel", "delivery", "courier"]}


def write_user_data(folder: Path, pairs_name: str, labels_name: str, n: int = 150) -> None:
    """A user's own files: question/answer pairs as CSV, utterance/intent rows as JSONL (their column names)."""
    rng = random.Random(0)
    with open(folder / pairs_name, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["question", "answer"])
        for i in range(n):
            t, v = rng.choice(TOPICS), rng.choice(VERBS)
            w.writerow([f"how can I {v} my {t} number {i}",
                        f"To {v} the {t} #{i}, open Settings, choose {t.title()} and press {v.title()}."])
    with open(folder / labels_name, "w", encoding="utf-8") as f:
        for i in range(n):
            intent = rng.choice(list(INTENTS))
            word = rng.choice(INTENTS[intent])
            f.write(json.dumps({"utterance": f"I have a problem with my {word}, case {i}", "intent": intent}) + "\n")


def quickstart_commands() -> list[str]:
    match = BLOCK.search((ROOT / "README.md").read_text(encoding="utf-8"))
    assert match, "README.md lost its quickstart block (<!-- quickstart --> ... <!-- /quickstart -->)"
    return match.group(1).strip("\n").split("\n")


def test_the_readme_path_is_short_and_starts_with_the_install():
    lines = quickstart_commands()
    assert len(lines) <= 15
    assert lines[0].startswith("pip install")
    assert any(line.startswith("mote train recipe.yaml --output run") for line in lines)


@pytest.mark.slow
def test_the_readme_path_runs_on_a_users_own_files(tmp_path):
    write_user_data(tmp_path, "tickets.csv", "intents.jsonl")
    (tmp_path / "empty-data").mkdir()
    script = []
    for line in quickstart_commands()[1:]:  # the install line: this test runs in the installed environment
        if line.startswith("mote train "):
            line = line.split("#")[0].rstrip() + " --steps 6"
        script.append(line)
    env = {**os.environ, "MOTE_DATA": str(tmp_path / "empty-data"), "MOTE_CACHE": str(tmp_path / "cache"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", "\n".join(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.strip().endswith("(1, 384)")  # the exported query model, loaded by plain sentence-transformers
    run = tmp_path / "run"
    assert (run / "trained" / "modules.json").is_file() and (run / "model" / "modules.json").is_file()
    record = json.loads((run / "model" / "selection.json").read_text(encoding="utf-8"))
    sources = " ".join(record["validation"]["sources"].values())
    assert "tickets.csv" in sources and "intents.jsonl" in sources  # validated on the user's own files
    assert set(record["validation"]["datasets"].values()) == {"in-domain"}
    assert "validated on: " in done.stdout and "tickets.csv" in done.stdout  # `mote info run/model` says so
    assert not list((tmp_path / "empty-data").iterdir())  # nothing was read from (or written to) a data root
