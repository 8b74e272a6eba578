"""Run one command and record how it ran (for reports generated from raw files, e.g. docs/mteb-anchor.md).

    python benchmarks/record_run.py --record docs/mteb-anchor/raw/runs.json --name minilm-mteb \\
        --copy runs/eval/minilm-mteb/results.json -- \\
        mote eval all-MiniLM-L6-v2 --suite mteb --output runs/eval/minilm-mteb --cache runs/cache-mteb

Adds (or replaces) the entry ``NAME`` of the JSON file ``--record``: the command, its UTC start time, wall seconds,
exit status, the machine's load average (1, 5, 15 min) before and after, and the CPU count. ``--copy SRC`` copies
SRC (e.g. the run's results.json) next to the record as ``NAME.json`` once the command succeeded. Both writes are
atomic. The command's own output goes to the terminal; the exit status is the command's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--record", required=True, help="JSON file of records (created if missing)")
    p.add_argument("--name", required=True, help="entry name (and NAME.json for --copy)")
    p.add_argument("--copy", default=None, help="file to copy next to the record as NAME.json after success")
    p.add_argument("--note", default=None, help="free text kept with the entry (e.g. the cache state)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ...")
    args = p.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        p.error("give the command after --")

    from mote.atomic import atomic_write_text

    record = Path(args.record)
    entry = {
        "command": shlex.join(command),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "load_before": [round(x, 2) for x in os.getloadavg()],
    }
    t = time.perf_counter()
    rc = subprocess.call(command)
    entry["seconds"] = round(time.perf_counter() - t, 1)
    entry["load_after"] = [round(x, 2) for x in os.getloadavg()]
    entry["returncode"] = rc
    if args.note:
        entry["note"] = args.note
    if rc == 0 and args.copy:
        atomic_write_text(record.parent / f"{args.name}.json", Path(args.copy).read_text(encoding="utf-8"))
    records = json.loads(record.read_text(encoding="utf-8")) if record.is_file() else {}
    records[args.name] = entry
    atomic_write_text(record, json.dumps(dict(sorted(records.items())), indent=2) + "\n")
    print(json.dumps({args.name: entry}), file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
