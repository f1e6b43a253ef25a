#!/usr/bin/env bash
# The pruning study of docs/experts.md: profile the built-in model's experts on press text, prune
# to N experts per layer for several N (and by gate mass), and score each pruned model on unseen
# press text (the task) and on unseen fiction (other text).
#
#   sh tools/experts/prune-study.sh [OUT=/tmp/molm-prune-study]
#
# Profiling runs on the runtime (`molm profile`, WebGPU through Dawn). Perplexity is scored by
# tools/train/pytorch_eval.py on the pruned shards (the PyTorch model that agrees with `molm eval`
# to 2e-8 nats/token, docs/built-in-model.md): on a CPU adapter the runtime would take hours.
# Needs /usr/bin/python3 with torch (Debian's python3-torch). Writes OUT/results.csv; then
# `node tools/experts/plot.mjs OUT/results.csv docs/images/prune.svg`.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-/tmp/molm-prune-study}
MODEL=public/models/molm-brown
mkdir -p "$OUT"
npm run -s build:cli >/dev/null
node tools/experts/brown-texts.mjs "$OUT"
[ -f "$OUT/usage.json" ] || node bin/molm.mjs profile --model "$MODEL" --text "$OUT/press-profile.txt" --window 512 --out "$OUT/usage.json"

score() { # model-dir ids-file → perplexity
  /usr/bin/python3 tools/train/pytorch_eval.py --model "$1" --ids "$2" --window 256 | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["perplexity"])'
}
bytes() { /usr/bin/python3 -c 'import json,sys; print(sum(s["bytes"] for s in json.load(open(sys.argv[1]))["shards"]))' "$1/manifest.json"; }

echo "rule,att_experts,mlp_experts,bytes,press_ppl,fiction_ppl" > "$OUT/results.csv"
row() { # rule dir
  local att mlp
  att=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["config"]["n_att_experts"])' "$2/manifest.json")
  mlp=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["config"]["n_mlp_experts"])' "$2/manifest.json")
  echo "$1,$att,$mlp,$(bytes "$2"),$(score "$2" "$OUT/press-heldout.u32"),$(score "$2" "$OUT/fiction-heldout.u32")" | tee -a "$OUT/results.csv"
}
row "all" "$MODEL"
for n in 6 4 3 2; do
  node bin/molm.mjs prune --model "$MODEL" --usage "$OUT/usage.json" --keep "$n" --out "$OUT/keep-$n" >/dev/null
  row "keep $n" "$OUT/keep-$n"
done
for m in 0.95 0.8; do
  node bin/molm.mjs prune --model "$MODEL" --usage "$OUT/usage.json" --mass "$m" --out "$OUT/mass-$m" >/dev/null
  row "mass $m" "$OUT/mass-$m"
done
