#!/usr/bin/python3
"""Held-out perplexity of a model folder with train.py's PyTorch model (the runtime's second reference).

  /usr/bin/python3 tools/train/pytorch_eval.py --model public/models/molm-brown [--max-tokens N] [--window 256]

Scores the held-out split (every 20th document, the tokens of tools/train/data/heldout.txt) with
exactly the windowing of `molm eval` (src/cli/eval.ts): windows of `--window` tokens, each run from
an empty context and preceded by the token before it (<|endoftext|> for the first), so every token
is scored given at least one token. On 2 CPU cores this takes a minute or two where the runtime on
SwiftShader takes most of an hour; the two agree on the tokens both score (docs/built-in-model.md).
"""
import argparse
import array
import json
import math
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import train  # noqa: E402
from molm_shards import load_model_folder  # noqa: E402

EOS = 50256


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", default=os.path.join(HERE, "data"))
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--max-tokens", type=int, default=0)
    ap.add_argument("--heldout-every", type=int, default=20)
    ap.add_argument("--ids", help="score these token ids (little-endian uint32 file) instead of the held-out split")
    a = ap.parse_args()
    cfg, tensors = load_model_folder(a.model)
    model = train.ModuleFormer(cfg)
    model.load_state_dict(tensors, strict=True)
    model.eval()
    if a.ids:
        ids = array.array("I")
        with open(a.ids, "rb") as f:
            ids.frombytes(f.read())
        if sys.byteorder != "little":
            ids.byteswap()
        ids = ids.tolist()
    else:
        _, held, _, _ = train.load_data(a.data, a.heldout_every)
        ids = held.tolist()
    if a.max_tokens:
        ids = ids[: a.max_tokens]
    nll = 0.0
    with torch.no_grad():
        for start in range(0, len(ids), a.window):
            targets = ids[start: start + a.window]
            inp = [ids[start - 1] if start else EOS] + targets[:-1]
            h, _, _ = model(torch.tensor([inp]))
            logp = torch.log_softmax(model.lm_head(h)[0].double(), dim=-1)
            nll -= logp[torch.arange(len(targets)), torch.tensor(targets)].sum().item()
    mean = nll / len(ids)
    print(json.dumps({"model": a.model, "tokens": len(ids), "window": a.window, "nll": mean, "perplexity": math.exp(mean)}))


if __name__ == "__main__":
    main()
