"""Reads a molm-web converted model (manifest.json + shards, docs/format.md) into float32 torch tensors.

An independent Python implementation of the shard format and of the q8 / q4 dequantisation
(src/quant/layout.ts documents the layout), so that the PyTorch model of train.py can run on the
exact weights the runtime runs on: the built-in model is shipped as q8 shards only.
"""
import json
import os

import torch


def _f16_from_u32(words):
    """[n] int64 tensor of u32 words -> [2n] float32 tensor of the f16 halves (low half first)."""
    lo = (words & 0xFFFF).to(torch.int16)
    hi = ((words >> 16) & 0xFFFF).to(torch.int16)
    halves = torch.stack([lo, hi], dim=1).reshape(-1)
    return halves.view(torch.float16).to(torch.float32)


def _dequantize(raw, storage, shape):
    """q8 / q4 bytes of a [R, IN] or [E, IN, OUT] tensor -> float32 tensor of that shape."""
    bits = 8 if storage == "q8" else 4
    per = 32 // bits
    words_all = torch.frombuffer(bytearray(raw), dtype=torch.int32).to(torch.int64) & 0xFFFFFFFF
    if len(shape) == 2:
        blocks, in_dim, cols = 1, shape[1], shape[0]
    else:
        blocks, in_dim, cols = shape[0], shape[1], shape[2]
    n_words = cols * in_dim // per
    n_scales = cols * in_dim // 32
    scale_words = (n_scales + 1) // 2
    out = []
    at = 0
    for _ in range(blocks):
        words = words_all[at: at + n_words]
        scales = _f16_from_u32(words_all[at + n_words: at + n_words + scale_words])[:n_scales]
        at += n_words + scale_words
        # Value k of a word sits in bits [k*bits, (k+1)*bits), two's complement.
        shifts = torch.arange(per, dtype=torch.int64) * bits
        q = (words.unsqueeze(1) >> shifts) & ((1 << bits) - 1)
        q = torch.where(q >= (1 << (bits - 1)), q - (1 << bits), q).to(torch.float32)  # [n_words, per]
        if len(shape) == 2:
            # words row-major [R, IN/per]; scales [R, IN/32]
            vals = q.reshape(cols, in_dim)
            s = scales.reshape(cols, in_dim // 32).repeat_interleave(32, dim=1)
            out.append(vals * s)
        else:
            # words [IN/per, OUT] (word (w, j) holds i = w*per .. w*per+per-1 of column j); scales [IN/32, OUT]
            vals = q.reshape(in_dim // per, cols, per).permute(0, 2, 1).reshape(in_dim, cols)
            s = scales.reshape(in_dim // 32, cols).repeat_interleave(32, dim=0)
            out.append(vals * s)
    t = out[0] if len(shape) == 2 else torch.stack(out)
    return t.reshape(shape)


def _decode(raw, storage, shape):
    if storage == "f32":
        return torch.frombuffer(bytearray(raw), dtype=torch.float32).clone().reshape(shape)
    if storage == "f16":
        n = 1
        for d in shape:
            n *= d
        return torch.frombuffer(bytearray(raw), dtype=torch.float16)[:n].to(torch.float32).reshape(shape)
    if storage == "bf16":
        n = 1
        for d in shape:
            n *= d
        b = torch.frombuffer(bytearray(raw), dtype=torch.int16)[:n].to(torch.int32) << 16
        return b.view(torch.float32).reshape(shape)
    if storage in ("q8", "q4"):
        return _dequantize(raw, storage, shape)
    raise ValueError(f"unknown storage type {storage}")


def load_converted(folder):
    """(config dict, {name: float32 tensor}) of a converted model folder."""
    with open(os.path.join(folder, "manifest.json")) as f:
        manifest = json.load(f)
    assert manifest["format"] == "molm-web-shards", manifest.get("format")
    shards = [open(os.path.join(folder, s["file"]), "rb").read() for s in manifest["shards"]]
    tensors = {}
    for t in manifest["tensors"]:
        raw = b"".join(shards[p["shard"]][p["offset"]: p["offset"] + p["bytes"]] for p in t["pieces"])
        tensors[t["name"]] = _decode(raw, t["storage"], t["shape"])
    return manifest["config"], tensors


def load_model_folder(folder):
    """(config dict, {name: float32 tensor}) of a converted folder or a Hugging Face one (model.safetensors)."""
    if os.path.exists(os.path.join(folder, "manifest.json")):
        return load_converted(folder)
    import train  # the pure-Python safetensors reader
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    return cfg, train.load_safetensors(os.path.join(folder, "model.safetensors"))


def weights_sha256(tensors):
    """A model's content hash (what an expert pack's base.weightsSha256 names).

    `tensors`: {name: tensor}, every tensor of the model (for a converted folder: every tensor its
    manifest.json lists, dequantised to float32). Sorted by name in code-point order, each gives the
    line "NAME D0xD1x... SHA256(float32 little-endian row-major values)\n"; the hash is the sha256 of
    the UTF-8 concatenation of the lines, in lower-case hex.
    """
    import hashlib
    import sys

    lines = []
    for name in sorted(tensors):
        t = tensors[name].detach().to(torch.float32).contiguous().cpu().reshape(-1)
        data = t.numpy().tobytes()
        if sys.byteorder != "little":
            data = t.numpy().byteswap().tobytes()
        shape = "x".join(str(d) for d in tensors[name].shape)
        lines.append(f"{name} {shape} {hashlib.sha256(data).hexdigest()}\n")
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="Prints the weightsSha256 of a model folder (converted or Hugging Face).")
    ap.add_argument("folder")
    a = ap.parse_args()
    print(weights_sha256(load_model_folder(a.folder)[1]))
