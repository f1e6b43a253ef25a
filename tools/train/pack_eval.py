#!/usr/bin/python3
"""Scores the base, base + expert packs and the whole-model fine-tune on held-out code and held-out Brown.

  /usr/bin/python3 tools/train/pack_eval.py        # → tools/train/out/pack-report.json

Held-out code: tools/train/data/code/heldout.u32 (packages never trained on; code-corpus.mjs).
Held-out Brown: every 20th document (brown_split.py), as pytorch_eval.py. Windowing of pytorch_eval.py /
`molm eval`: windows of 256 tokens, each run from an empty context and preceded by the token before it
(<|endoftext|> for the first). A pack is applied by merging it into a plain ModuleFormer (pack.merge:
gating_size G+U, E+A experts, old router rows zero over the new hidden units), which pack.py --check
shows equal to base + pack. Also per layer: the share of the top-k picks that go to new experts
(attention and MLP) and the mean softmax mass on them (P_new), on both held-out sets.
"""
import argparse
import json
import math
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import train  # noqa: E402
import pack as packlib  # noqa: E402
from molm_shards import load_model_folder, weights_sha256  # noqa: E402

EOS = 50256


@torch.no_grad()
def score(model, ids, window, n_att, n_mlp, k_att, k_mlp):
    """(mean nll, per-layer stats) with pytorch_eval.py's windowing."""
    nll = 0.0
    n_layer = len(model.transformer.h)
    picks = [[0, 0] for _ in range(n_layer)]
    pnew = [[0.0, 0.0] for _ in range(n_layer)]
    for start in range(0, len(ids), window):
        targets = ids[start: start + window]
        inp = [ids[start - 1] if start else EOS] + targets[:-1]
        h, _, probs = model(torch.tensor([inp]))
        logp = torch.log_softmax(model.lm_head(h)[0], dim=-1)
        nll -= logp[torch.arange(len(targets)), torch.tensor(targets)].double().sum().item()
        for l, (pa, pm) in enumerate(probs):
            for j, (p, e, k) in enumerate(((pa, n_att, k_att), (pm, n_mlp, k_mlp))):
                if p.shape[-1] > e:
                    picks[l][j] += (p.topk(k, -1).indices >= e).sum().item()
                    pnew[l][j] += p[:, e:].sum().item()
    n = len(ids)
    stats = {"newPickShare": {"attention": [picks[l][0] / (n * k_att) for l in range(n_layer)],
                              "mlp": [picks[l][1] / (n * k_mlp) for l in range(n_layer)]},
             "meanPNew": {"attention": [pnew[l][0] / n for l in range(n_layer)],
                          "mlp": [pnew[l][1] / n for l in range(n_layer)]}}
    return nll / n, stats


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default=packlib.BASE)
    ap.add_argument("--data", default=os.path.join(HERE, "data"))
    ap.add_argument("--out-dir", default=os.path.join(HERE, "out"))
    ap.add_argument("--packs", nargs="*", default=["js-pack-norouter", "js-pack"], help="pack folders (relative to --out-dir)")
    ap.add_argument("--finetune", default="js-finetune/model", help="HF folder (relative to --out-dir); '' to skip")
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--max-tokens", type=int, default=0, help="score only the first N tokens of each set (a quick look)")
    ap.add_argument("--report", default=None, help="default OUT_DIR/pack-report.json")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    code = packlib.read_u32(os.path.join(a.data, "code", "heldout.u32")).tolist()
    _, brown, _, _ = train.load_data(a.data, 20)
    brown = brown.tolist()
    if a.max_tokens:
        code, brown = code[: a.max_tokens], brown[: a.max_tokens]
    cfg, base = load_model_folder(a.base)
    e_att, e_mlp, k_att, k_mlp = cfg["n_att_experts"], cfg["n_mlp_experts"], cfg["k_att"], cfg["k_mlp"]
    base_sha = weights_sha256(base)

    models = [("base", cfg, base, None)]
    for p in a.packs:
        folder = os.path.join(a.out_dir, p)
        meta, pk = packlib.load_pack(folder)
        assert meta["base"]["weightsSha256"] == base_sha, (folder, meta["base"]["weightsSha256"], base_sha)
        mcfg, merged = packlib.merge(cfg, base, pk, meta["adds"])
        models.append((p, mcfg, merged, (meta, pk, folder)))
    if a.finetune:
        fcfg, ft = load_model_folder(os.path.join(a.out_dir, a.finetune))
        models.append(("js-finetune", fcfg, ft, None))

    report = {"base": {"folder": os.path.relpath(a.base, os.getcwd()), "weightsSha256": base_sha},
              "heldout": {"code": {"file": "tools/train/data/code/heldout.u32", "tokens": len(code)},
                          "brown": {"split": "every 20th Brown document (brown_split.py)", "tokens": len(brown)}},
              "window": a.window, "models": {}}
    for name, mcfg, tensors, extra in models:
        model = train.ModuleFormer(mcfg)
        model.load_state_dict(tensors, strict=True)
        model.eval()
        entry = {}
        for set_name, ids in (("code", code), ("brown", brown)):
            t0 = time.time()
            nll, stats = score(model, ids, a.window, e_att, e_mlp, k_att, k_mlp)
            entry[set_name] = {"nll": nll, "perplexity": math.exp(nll)}
            if extra is not None:
                entry[set_name].update(stats)
            print(f"{name} {set_name}: perplexity {math.exp(nll):.3f} ({time.time() - t0:.0f} s)", flush=True)
        if extra is not None:
            meta, pk, folder = extra
            n = packlib.pack_param_count(pk)
            entry["pack"] = {"folder": os.path.relpath(folder, os.getcwd()), "adds": meta["adds"], "parameters": n,
                             "f32Bytes": os.path.getsize(os.path.join(folder, "model.safetensors")),
                             "q8BytesEstimate": round(n * 8.5 / 8), "training": meta["training"]}
        elif name == "js-finetune":
            tj = os.path.join(a.out_dir, "js-finetune", "training.json")
            if os.path.exists(tj):
                with open(tj) as f:
                    entry["training"] = json.load(f)
        report["models"][name] = entry
    b = report["models"]["base"]
    for name, entry in report["models"].items():
        entry["vsBase"] = {s: entry[s]["perplexity"] / b[s]["perplexity"] for s in ("code", "brown")}
    path = a.report or os.path.join(a.out_dir, "pack-report.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    print(f"{'model':20s} {'code ppl':>10s} {'×base':>6s} {'Brown ppl':>10s} {'×base':>6s}")
    for name, entry in report["models"].items():
        print(f"{name:20s} {entry['code']['perplexity']:10.2f} {entry['vsBase']['code']:6.3f} "
              f"{entry['brown']['perplexity']:10.2f} {entry['vsBase']['brown']:6.4f}")
    print(f"→ {path}")


if __name__ == "__main__":
    main()
