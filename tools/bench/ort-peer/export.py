#!/usr/bin/python3
"""Export the dense "MoLM-350M-4B active shape" peer model to ONNX (opset 17).

The model is what one MoLM-350M-4B layer computes with k=2 experts active,
written as a plain dense network with random weights N(0, 0.02), f32:

  per layer (C = 1024):
    x   = LayerNorm(h)                       eps 1e-5, with weight and bias
    q   = x @ Wq                             1024 -> 2048 (2 heads of 1024)
    K=V = concat(past_x[layer], x)           no k/v projection; the KV cache
                                             holds past LN(h) rows
    att = causal softmax(q_h K^T / sqrt(1024)) V   per head, both heads share K=V
    h   = h + concat(att_0, att_1) @ Wo      2048 -> 1024
    x2  = LayerNorm(h)
    h   = h + gelu_tanh(x2 @ W1) @ W2        1024 -> 4096 -> 1024
  then final LayerNorm and lm_head 1024 -> 50295 (no bias); embedding 50295 x 1024
  (separate from lm_head). No positional embedding (it does not change the FLOPs).

ONNX graph
  inputs : input_ids int64 [1, S]            S = new tokens (32 prefill, 1 decode)
           past_x    f32  [L, T_past, 1024]   T_past may be 0
  outputs: logits    f32  [1, 1, 50295]       last position only (default) or
                          [1, S, 50295]       with --all-logits
           present_x f32  [L, T_past+S, 1024]
  dynamic axes: S ("seq") and T_past ("past").

Usage:  /usr/bin/python3 export.py [OUT_DIR]        (default /tmp/ort-peer)
        writes OUT_DIR/dense-1layer.onnx and OUT_DIR/dense-2layer.onnx, plus
        dense-Nlayer.ref.json (PyTorch reference outputs that bench.mjs --check uses)
"""
import argparse
import json
import math
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

C = 1024
HEADS = 2
HEAD_DIM = 1024
FF = 4096
VOCAB = 50295


class Layer(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1 = nn.LayerNorm(C, eps=1e-5)
        self.wq = nn.Linear(C, HEADS * HEAD_DIM, bias=False)
        self.wo = nn.Linear(HEADS * HEAD_DIM, C, bias=False)
        self.ln2 = nn.LayerNorm(C, eps=1e-5)
        self.w1 = nn.Linear(C, FF, bias=False)
        self.w2 = nn.Linear(FF, C, bias=False)

    def forward(self, h, past):
        # h: [S, C]; past: [T_past, C]
        s = h.shape[0]
        x = self.ln1(h)
        kv = torch.cat([past, x], dim=0)  # [T, C]  (K = V = cached LN(h) rows)
        t = kv.shape[0]
        t_past = t - s
        q = self.wq(x).reshape(s, HEADS, HEAD_DIM).transpose(0, 1)  # [H, S, D]
        scores = torch.matmul(q, kv.t()) * (1.0 / math.sqrt(HEAD_DIM))  # [H, S, T]
        qpos = torch.arange(s).unsqueeze(1) + t_past  # absolute query positions
        kpos = torch.arange(t).unsqueeze(0)
        mask = kpos <= qpos  # [S, T] causal
        scores = scores.masked_fill(~mask, float("-inf"))
        p = torch.softmax(scores, dim=-1)
        att = torch.matmul(p, kv)  # [H, S, D]
        att = att.transpose(0, 1).reshape(s, HEADS * HEAD_DIM)
        h = h + self.wo(att)
        x2 = self.ln2(h)
        h = h + self.w2(F.gelu(self.w1(x2), approximate="tanh"))
        return h, x


class Dense(nn.Module):
    def __init__(self, n_layers, all_logits=False):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, C)
        self.layers = nn.ModuleList([Layer() for _ in range(n_layers)])
        self.ln_f = nn.LayerNorm(C, eps=1e-5)
        self.lm_head = nn.Linear(C, VOCAB, bias=False)
        self.all_logits = all_logits
        g = torch.Generator().manual_seed(1234 + n_layers)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("ln1.weight") or name.endswith("ln2.weight") or name == "ln_f.weight":
                    p.fill_(1.0)
                elif ".ln" in name or name.startswith("ln_f"):
                    p.zero_()
                else:
                    p.normal_(0.0, 0.02, generator=g)

    def forward(self, input_ids, past_x):
        h = self.embed(input_ids[0])  # [S, C]
        presents = []
        for i, layer in enumerate(self.layers):
            h, x = layer(h, past_x[i])
            presents.append(torch.cat([past_x[i], x], dim=0))
        present_x = torch.stack(presents, dim=0)  # [L, T_past+S, C]
        if self.all_logits:
            logits = self.lm_head(self.ln_f(h)).unsqueeze(0)  # [1, S, V]
        else:
            logits = self.lm_head(self.ln_f(h[-1])).reshape(1, 1, VOCAB)  # [1, 1, V]
        return logits, present_x


def export(n_layers, out_dir, all_logits):
    model = Dense(n_layers, all_logits).eval()
    ids = torch.randint(0, VOCAB, (1, 4), dtype=torch.long)
    past = torch.randn(n_layers, 3, C) * 0.5
    path = os.path.join(out_dir, f"dense-{n_layers}layer.onnx")
    dynamic_axes = {"input_ids": {1: "seq"}, "past_x": {1: "past"}, "present_x": {1: "total"}}
    if all_logits:
        dynamic_axes["logits"] = {1: "seq"}
    t0 = time.time()
    with torch.no_grad():
        ref_logits, ref_present = model(ids, past)
        torch.onnx.export(
            model,
            (ids, past),
            path,
            opset_version=17,
            input_names=["input_ids", "past_x"],
            output_names=["logits", "present_x"],
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
        )
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"{path}: layers={n_layers} params={n_params / 1e6:.1f}M "
        f"size={os.path.getsize(path) / 2**20:.0f} MiB ({time.time() - t0:.1f}s)"
    )
    # Self-check: same weights, incremental decode must equal a full pass.
    with torch.no_grad():
        full, _ = model(ids, torch.zeros(n_layers, 0, C))
        _, pres = model(ids[:, :3], torch.zeros(n_layers, 0, C))
        step, _ = model(ids[:, 3:], pres)
        err = (full[:, -1] - step[:, -1]).abs().max().item()
        assert err < 1e-4, f"KV-cache decode mismatch {err}"
        # Reference for bench.mjs --check: prefill 7 tokens from an empty cache,
        # then greedy-decode 4 tokens, at shapes other than the traced ones.
        prompt = torch.randint(0, VOCAB, (1, 7), generator=torch.Generator().manual_seed(7))
        logits, pres = model(prompt, torch.zeros(n_layers, 0, C))
        first = logits[0, -1]
        tokens = []
        for _ in range(4):
            tok = int(logits[0, -1].argmax())
            tokens.append(tok)
            logits, pres = model(torch.tensor([[tok]]), pres)
        ref = {
            "layers": n_layers,
            "prompt": prompt[0].tolist(),
            "prefill_last_logits_head": first[:8].tolist(),
            "greedy_tokens": tokens,
            "final_last_logits_head": logits[0, -1, :8].tolist(),
        }
    with open(os.path.join(out_dir, f"dense-{n_layers}layer.ref.json"), "w") as f:
        json.dump(ref, f)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir", nargs="?", default="/tmp/ort-peer")
    ap.add_argument("--layers", default="1,2", help="comma list of layer counts (default 1,2)")
    ap.add_argument("--all-logits", action="store_true", help="emit logits for every new position, not just the last")
    args = ap.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    torch.manual_seed(0)
    for n in [int(v) for v in args.layers.split(",")]:
        export(n, args.out_dir, args.all_logits)


if __name__ == "__main__":
    main()
