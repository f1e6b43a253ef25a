#!/usr/bin/env bash
# Experts streamed under a GPU memory budget (docs/experts.md): hit rate and decode speed of the
# built-in model for several budgets and both eviction policies, on real text (the start of a
# held-out press document as the prompt, then 64 greedy tokens). Every run must give the same
# text as the run with every expert resident; the script checks that too.
#
#   sh tools/experts/budget-study.sh [OUT=/tmp/molm-budget-study]     → OUT/results.csv
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-/tmp/molm-budget-study}
MODEL=public/models/molm-brown
mkdir -p "$OUT"
npm run -s build:cli >/dev/null
[ -f "$OUT/press-heldout.txt" ] || node tools/experts/brown-texts.mjs "$OUT" >/dev/null
# About 200 tokens of unseen press text.
PROMPT=$(head -c 900 "$OUT/press-heldout.txt")
run() { node bin/molm.mjs generate --model "$MODEL" --prompt "$PROMPT" --max-new-tokens 64 --temperature 0 --json --max-context 512 "$@" 2>/dev/null; }
field() { /usr/bin/python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
full=$(run)
want=$(echo "$full" | field 'd["text"]')
echo "budget,policy,att_slots,mlp_slots,hit_rate,decode_tokens_per_s,same_text" > "$OUT/results.csv"
echo "100%,-,8,8,1,$(echo "$full" | field 'round(d["usage"]["decodeTokensPerS"], 2)'),true" | tee -a "$OUT/results.csv"
for budget in 75% 62.5% 50% 37.5% 25%; do
  for policy in lru lfu; do
    r=$(run --gpu-memory-budget "$budget" --expert-eviction "$policy")
    same=$([ "$(echo "$r" | field 'd["text"]')" = "$want" ] && echo true || echo false)
    share=${budget%\%}
    slots=$(/usr/bin/python3 -c "import math; print(max(2, math.floor($share / 100 * 8)))")
    echo "$budget,$policy,$slots,$slots,$(echo "$r" | field 'round(d["expert_cache_hit_rate"], 4)'),$(echo "$r" | field 'round(d["usage"]["decodeTokensPerS"], 2)'),$same" | tee -a "$OUT/results.csv"
  done
done
