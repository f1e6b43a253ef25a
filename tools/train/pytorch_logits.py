#!/usr/bin/python3
"""Logits of train.py's PyTorch ModuleFormer on a model folder: the runtime's second reference.

  /usr/bin/python3 tools/train/pytorch_logits.py --model public/models/molm-brown \
      --ids 464,5583,531,326 --new-tokens 8 --out tests/fixtures/golden/molm-brown

Reads a converted folder (manifest.json + shards, dequantised by molm_shards.py) or a Hugging
Face folder (model.safetensors), runs the PyTorch model of train.py (float64, so that the
reference's own rounding is negligible) on the prompt ids, greedy-decodes `--new-tokens` tokens
by recomputing the whole sequence each step, and writes expected.json (input ids, greedy tokens)
and expected_logits.f32 (float32 little-endian [T, vocab] of the prompt's positions).
"""
import argparse
import json
import os
import struct
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import train  # noqa: E402
from molm_shards import load_model_folder  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--ids", required=True, help="comma-separated prompt ids")
    ap.add_argument("--new-tokens", type=int, default=8)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    cfg, tensors = load_model_folder(a.model)
    model = train.ModuleFormer(cfg).double()
    missing, unexpected = model.load_state_dict({k: v.double() for k, v in tensors.items()}, strict=False)
    assert not unexpected, unexpected
    assert not missing, missing
    model.eval()
    ids = [int(x) for x in a.ids.split(",")]
    with torch.no_grad():
        h, _, _ = model(torch.tensor([ids]))
        logits = model.lm_head(h)[0]
        seq = list(ids)
        new = []
        for _ in range(a.new_tokens):
            hh, _, _ = model(torch.tensor([seq]))
            nxt = int(model.lm_head(hh)[0, -1].argmax())
            new.append(nxt)
            seq.append(nxt)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "expected.json"), "w") as f:
        json.dump({"model": a.model, "input_ids": ids, "greedy_new_tokens": new,
                   "reference": "tools/train/pytorch_logits.py (train.py's ModuleFormer, float64)"}, f, indent=1)
        f.write("\n")
    with open(os.path.join(a.out, "expected_logits.f32"), "wb") as f:
        f.write(struct.pack(f"<{logits.numel()}f", *logits.reshape(-1).tolist()))
    print(f"{len(ids)} prompt tokens, greedy {new} -> {a.out}")


if __name__ == "__main__":
    main()
