#!/usr/bin/env bash
# Record the raw files of docs/mteb-anchor.md (docs/mteb-anchor/raw/), then regenerate the page.
#
#   PATH=.venv/bin:$PATH bash benchmarks/mteb_anchor.sh            # all steps (~1.5 h on an idle 2-core CPU)
#   PATH=.venv/bin:$PATH bash benchmarks/mteb_anchor.sh speed      # steps: imdb imdb-orders speed mteb quick tweet doc
#
# Each step overwrites its raw files; runs.json keeps the command, date, wall time and load average of each run.
# The speed steps use fresh embedding caches; the others share runs/cache-mteb, filled cold by the step `imdb`
# (ImdbClassification's 25,000 test reviews) and by `mteb` (TwitterURLCorpus's 51,534 pairs, all 25 sets of the two
# title-clustering sets): the mteb suite = those runs + the default suite's run for the datasets whose split is the
# same in both suites.
set -euo pipefail
R=docs/mteb-anchor/raw
C=runs/cache-mteb
REC=(python benchmarks/record_run.py --record "$R/runs.json")
mkdir -p "$R" runs/eval
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(imdb imdb-orders speed mteb quick tweet doc)

for step in "${steps[@]}"; do
  case "$step" in
  imdb)
    "${REC[@]}" --name minilm-imdb-full --copy runs/eval/minilm-imdb-full/results.json \
      --note "fresh embedding cache $C" -- \
      mote eval all-MiniLM-L6-v2 --datasets ImdbClassification --split test --cache "$C" \
      --output runs/eval/minilm-imdb-full --overwrite
    ;;
  imdb-orders)
    # How much the order of the train rows alone moves Imdb's accuracy (MTEB's undersampling draws 8 reviews per
    # label by index): the same 25,000 train rows in 5 seeded random orders, the same full test split.
    for seed in 1 2 3 4 5; do
      python - "$seed" <<'EOF'
import gzip, os, random, shutil, sys
from pathlib import Path
seed = int(sys.argv[1])
src = Path("../shared/data/ImdbClassification")
dst = Path(f"runs/imdb-orders/seed{seed}/ImdbClassification")
shutil.rmtree(dst, ignore_errors=True)
dst.mkdir(parents=True)
shutil.copyfile(src / "meta.json", dst / "meta.json")
os.symlink((src / "test.jsonl.gz").resolve(), dst / "test.jsonl.gz")
rows = gzip.open(src / "train.jsonl.gz", "rt", encoding="utf-8").read().rstrip("\n").split("\n")
random.Random(seed).shuffle(rows)
with gzip.open(dst / "train.jsonl.gz", "wt", encoding="utf-8") as f:
    f.write("\n".join(rows) + "\n")
EOF
      "${REC[@]}" --name "minilm-imdb-order-seed$seed" \
        --copy "runs/eval/minilm-imdb-order-seed$seed/results.json" \
        --note "runs/imdb-orders/seed$seed made by benchmarks/mteb_anchor.sh imdb-orders: train rows shuffled by random.Random($seed)" -- \
        mote eval all-MiniLM-L6-v2 --data-dir "runs/imdb-orders/seed$seed" --datasets ImdbClassification \
        --split test --cache "$C" --output "runs/eval/minilm-imdb-order-seed$seed" --overwrite
    done
    ;;
  speed)
    python benchmarks/eval_suite.py --suite default --output runs/eval/minilm-default --record "$R/speed-default.json"
    cp runs/eval/minilm-default/results.json "$R/minilm-default.json"
    python benchmarks/eval_suite.py --suite quick --record "$R/speed-quick.json"
    ;;
  mteb)
    # The mteb suite's other splits than the default suite's (ImdbClassification: the step imdb), cold: the rest of
    # the mteb suite scores the same rows as the default suite.
    "${REC[@]}" --name minilm-mteb-extra --copy runs/eval/minilm-mteb-extra/results.json \
      --note "embedding cache $C, which holds none of these texts: cold" -- \
      mote eval all-MiniLM-L6-v2 --suite mteb --datasets TwitterURLCorpus,RedditClustering,StackExchangeClustering \
      --cache "$C" --output runs/eval/minilm-mteb-extra --overwrite
    ;;
  quick)
    "${REC[@]}" --name minilm-quick -- mote eval all-MiniLM-L6-v2 --suite quick --name "MiniLM (dense)" \
      --cache "$C" --output runs/eval/minilm-quick --overwrite
    "${REC[@]}" --name minilm-ic-quick -- mote eval all-MiniLM-L6-v2 --ic --suite quick --name "MiniLM + IC" \
      --cache "$C" --output runs/eval/minilm-ic-quick --overwrite
    rm -rf runs/eval/models/minilm-mote
    "${REC[@]}" --name minilm-mote-quick --note "mote convert all-MiniLM-L6-v2 runs/eval/models/minilm-mote" -- \
      bash -c 'mote convert all-MiniLM-L6-v2 runs/eval/models/minilm-mote >/dev/null && mote eval \
runs/eval/models/minilm-mote --suite quick --name "MoTE (converted)" --cache runs/cache-mteb \
--output runs/eval/minilm-mote-quick --overwrite'
    "${REC[@]}" --name compare-quick --copy runs/eval/compare-quick/compare.json -- \
      mote compare runs/eval/minilm-quick runs/eval/minilm-ic-quick runs/eval/minilm-mote-quick \
      --base runs/eval/minilm-quick --output runs/eval/compare-quick --overwrite
    for kind in ic mote; do
      model=all-MiniLM-L6-v2; flag=(--ic)
      [ "$kind" = mote ] && { model=runs/eval/models/minilm-mote; flag=(); }
      "${REC[@]}" --name "similarity-$kind" --copy "runs/eval/sim-minilm-$kind/similarity.json" -- \
        mote similarity "$model" "${flag[@]}" --texts ../shared/data/STSBenchmark/test.jsonl.gz --field sentence1 \
        --limit 200 --cache "$C" --output "runs/eval/sim-minilm-$kind" --overwrite
    done
    ;;
  tweet)
    # ../shared/data's TweetSentiment train split lacks MTEB's one empty-text row: restore it in a copy.
    python - <<'EOF'
import gzip, json, shutil
from pathlib import Path
src = Path("../shared/data/TweetSentimentExtractionClassification")
dst = Path("runs/tweetfix/TweetSentimentExtractionClassification")
shutil.rmtree(dst, ignore_errors=True)
dst.mkdir(parents=True)
for name in ("meta.json", "test.jsonl.gz"):
    shutil.copyfile(src / name, dst / name)
rows = gzip.open(src / "train.jsonl.gz", "rt", encoding="utf-8").read().rstrip("\n").split("\n")
rows.insert(314, json.dumps({"text": "", "label": "neutral"}))
with gzip.open(dst / "train.jsonl.gz", "wt", encoding="utf-8") as f:
    f.write("\n".join(rows) + "\n")
EOF
    "${REC[@]}" --name minilm-tweet-with-empty-row --copy runs/eval/minilm-tweet-with-empty-row/results.json \
      --note 'runs/tweetfix made by benchmarks/mteb_anchor.sh tweet: train.jsonl.gz with {"text": "", "label": "neutral"} inserted at 0-based line 314' -- \
      mote eval all-MiniLM-L6-v2 --data-dir runs/tweetfix --datasets TweetSentimentExtractionClassification \
      --cache "$C" --output runs/eval/minilm-tweet-with-empty-row --overwrite
    ;;
  doc)
    mote-lab anchors
    ;;
  *)
    echo "unknown step $step (imdb imdb-orders speed mteb quick tweet doc)" >&2
    exit 2
    ;;
  esac
done
