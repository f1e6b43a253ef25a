#!/bin/sh
# Held-out perplexity of the trained model in every storage type (docs/built-in-model.md).
#   sh tools/train/storage-perplexity.sh [HF_MODEL_DIR] [TEXT] [MAX_TOKENS]
set -e
model=${1:-tools/train/out/model}
text=${2:-tools/train/data/heldout.txt}
max=${3:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for t in f32 f16 q8 q4; do
  node bin/molm.mjs convert --model "$model" --out "$tmp/$t" --dtype "$t" > /dev/null
  bytes=$(du -b "$tmp/$t"/shard-*.bin | awk '{s += $1} END {print s}')
  printf '%s\t%s\t' "$t" "$bytes"
  node bin/molm.mjs eval --model "$tmp/$t" --text "$text" ${max:+--max-tokens $max} --json 2>/dev/null
done
