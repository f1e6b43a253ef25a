#!/bin/sh
# Held-out perplexity of the trained model in every storage type (docs/built-in-model.md): each
# conversion is scored by the PyTorch reference on its dequantised shards (tools/train/pytorch_eval.py,
# which agrees with `molm eval` to ~1e-8 nats/token and is ~50x faster than SwiftShader).
#   sh tools/train/storage-perplexity.sh [HF_MODEL_DIR]
set -e
model=${1:-tools/train/out/model}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for t in f32 f16 q8 q4; do
  node bin/molm.mjs convert --model "$model" --out "$tmp/$t" --dtype "$t" > /dev/null 2>&1
  bytes=$(du -cb "$tmp/$t"/shard-*.bin | tail -1 | cut -f1)
  printf '%s\t%s\t' "$t" "$bytes"
  /usr/bin/python3 tools/train/pytorch_eval.py --model "$tmp/$t"
done
