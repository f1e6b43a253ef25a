#!/usr/bin/python3
"""Checks a folder written by train.py: config fields, and tensor names/shapes/dtypes (pure-Python reader)."""
import json, os, struct, sys

d = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "out", "model")
cfg = json.load(open(os.path.join(d, "config.json")))
base = json.load(open(os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "configs", "molm-350m-4b.json")))
assert cfg["model_type"] == "moduleformer" and set(base) <= set(cfg), set(base) - set(cfg)
with open(os.path.join(d, "model.safetensors"), "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    hdr = json.loads(f.read(n))
    size = os.fstat(f.fileno()).st_size
C, A, V, G, F = cfg["n_embd"], cfg["att_hidden"], cfg["vocab_size"], cfg["gating_size"], cfg["ffd_hidden"]
Ea, Em = cfg["n_att_experts"], cfg["n_mlp_experts"]
want = {"transformer.wte.weight": [V, C], "transformer.ln_f.weight": [C], "transformer.ln_f.bias": [C], "lm_head.weight": [V, C]}
for L in range(cfg["n_layer"]):
    p = f"transformer.h.{L}."
    for ln in ("ln_1", "ln_2"):
        want[p + ln + ".weight"] = [C]; want[p + ln + ".bias"] = [C]
    for g, E, H in ((p + "attn.q_proj.", Ea, A), (p + "mlpf.", Em, F)):
        want[g + "gate.w_gate.0.weight"] = [G, C]; want[g + "gate.w_gate.0.bias"] = [G]
        want[g + "gate.w_gate.3.weight"] = [E, G]
        want[g + "experts.weight"] = [E, C, H]; want[g + "output_experts.weight"] = [E, H, C]
got = {k: v for k, v in hdr.items() if k != "__metadata__"}
assert set(got) == set(want), (sorted(set(got) - set(want)), sorted(set(want) - set(got)))
end = 0
for k, v in got.items():
    assert v["dtype"] == "F32" and v["shape"] == want[k], (k, v, want[k])
    a, b = v["data_offsets"]; n_el = 1
    for s in v["shape"]: n_el *= s
    assert b - a == 4 * n_el; end = max(end, b)
assert 8 + n + end == size
print(f"OK: {len(got)} tensors, names/shapes/dtypes as ARCHITECTURE.md, {size/1e6:.1f} MB")
