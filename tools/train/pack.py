#!/usr/bin/python3
"""Trains an expert pack for the built-in model: new experts (and router units) in every layer that
teach it JavaScript / TypeScript without changing a single base weight.

  /usr/bin/python3 tools/train/pack.py                       # stage 1 + router step → out/js-pack-norouter, out/js-pack
  /usr/bin/python3 tools/train/pack.py --no-router-step      # stage 1 only → out/js-pack-norouter
  /usr/bin/python3 tools/train/pack.py --from-pack out/js-pack-norouter   # router step only, on a stage-1 pack
  /usr/bin/python3 tools/train/pack.py --finetune --time-budget 900       # whole-model fine-tune → out/js-finetune/model

The base is the shipped q8 model (public/models/molm-brown) dequantised by molm_shards.py: exactly
the weights the runtime runs. Data: tools/train/data/code/train.u32 (code-corpus.mjs) and, for the
router step's replay, a few Brown TRAINING windows (prep.mjs; brown_split.py's split).

The pack (what the runtime reads; docs/extending.md): in every layer A new attention experts,
M new MLP experts and U new hidden units per router. Router with a pack:
  hidden' = concat(GELU_erf(W0 x + b0) [G], GELU_erf(W0_new x + b0_new) [U])
  logits  = concat(W3 · hidden'[:G] [E], W3_new · hidden' [A])
softmax over E+A, top-k, no renormalisation. Old experts' logits read only the old hidden units, so
base + pack is a plain ModuleFormer with gating_size G+U and E+A experts whose old W3 rows are zero over
the U new columns (merge() builds it; --check compares the two).

Stage 1: base frozen, the new experts and router parameters trained on code (LM loss + the MI
load-balancing term over the new experts). Stage 2, the router step (MoE-LPR, arXiv 2408.11396): only
the new router parameters, on code plus a replay of Brown training text under 1 % of Brown's training
tokens, with LM loss on both + lambda · mean over Brown tokens of -log(1 - P_new) (P_new: the softmax mass
on the new experts, averaged over the routers): appending experts scales every old gate by
1 - P_new (no renormalisation), so old text keeps the base's output only where P_new ~ 0.
"""
import argparse
import csv
import json
import math
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import train  # noqa: E402
from molm_shards import load_model_folder, weights_sha256  # noqa: E402

BASE = os.path.join(ROOT, "public", "models", "molm-brown")


# ---------------------------------------------------------------- model with a pack

class PackRouter(train.Router):
    """A base router (frozen) plus U new hidden units and n_new new experts' logits."""

    def __init__(self, base, c, u, n_new):
        g, e = base.w_gate[0].out_features, base.w_gate[3].out_features
        super().__init__(c, g, e, base.k)
        self.w_gate.load_state_dict(base.w_gate.state_dict())
        self.new0 = nn.Linear(c, u) if u else None
        self.new3 = nn.Linear(g + u, n_new, bias=False)
        self.n_old = e

    def logits(self, x):
        hb = self.w_gate[1](self.w_gate[0](x))  # [N, G], erf GELU
        h = torch.cat([hb, F.gelu(self.new0(x))], -1) if self.new0 is not None else hb
        return torch.cat([self.w_gate[3](hb), self.new3(h)], -1)  # [N, E + n_new]

    def new_parameters(self):
        return [p for m in (self.new0, self.new3) if m is not None for p in m.parameters()]


class PackExpertWeight(nn.Module):
    """`weight` = the base experts (frozen) followed by the new ones, [E + n_new, in, out]."""

    def __init__(self, base_weight, new_weight):
        super().__init__()
        self.base = nn.Parameter(base_weight.detach().clone(), requires_grad=False)
        self.new = nn.Parameter(new_weight)

    @property
    def weight(self):
        return torch.cat([self.base, self.new])


def twins(n_new, e):
    """Which base expert each new one starts from: spread over the base experts."""
    return [(i * e) // n_new for i in range(n_new)]


def attach_pack(model, a_new, m_new, u, gen, noise=0.1):
    """Turns a base ModuleFormer into base + pack (the base's parameters frozen). New experts start as
    copies of base experts plus noise (noise × the tensor's std); a new expert's router row starts as
    its twin's row over the old hidden units and small over the new ones."""
    c = model.cfg["n_embd"]
    for p in model.parameters():
        p.requires_grad_(False)
    for blk in model.transformer.h:
        for owner, gate_attr, n_new in ((blk.attn.q_proj, "gate", a_new), (blk.mlpf, "gate", m_new)):
            if n_new == 0:
                continue  # this MoE stays the base's
            base_gate = getattr(owner, gate_attr)
            e = base_gate.w_gate[3].out_features
            pr = PackRouter(base_gate, c, u, n_new)
            tw = twins(n_new, e)
            with torch.no_grad():
                if u:
                    pr.new0.weight.normal_(0.0, model.cfg["initializer_range"], generator=gen)
                    pr.new0.bias.zero_()
                g = base_gate.w_gate[3].in_features
                pr.new3.weight.zero_()
                pr.new3.weight[:, :g] = base_gate.w_gate[3].weight[tw]
                if u:
                    pr.new3.weight[:, g:].normal_(0.0, model.cfg["initializer_range"], generator=gen)
            for p in pr.w_gate.parameters():
                p.requires_grad_(False)
            setattr(owner, gate_attr, pr)
            for name in ("experts", "output_experts"):
                w = getattr(owner, name).weight.detach()
                new = w[tw].clone()
                new += torch.randn(new.shape, generator=gen) * (noise * w.std())
                setattr(owner, name, PackExpertWeight(w, new))
    return model


def routers(model):
    """(gate, owner) of every MoE the pack extends."""
    for blk in model.transformer.h:
        for gate, owner in ((blk.attn.q_proj.gate, blk.attn.q_proj), (blk.mlpf.gate, blk.mlpf)):
            if isinstance(gate, PackRouter):
                yield gate, owner


def new_parameters(model, routers_only=False):
    out = []
    for gate, owner in routers(model):
        out += gate.new_parameters()
        if not routers_only:
            out += [owner.experts.new, owner.output_experts.new]
    return out


def pack_tensors(model):
    """The pack's tensors under the names of the base tensors they extend (F32); none for a MoE
    the pack adds no expert to (A = 0 or M = 0)."""
    out = {}
    for l, blk in enumerate(model.transformer.h):
        for prefix, gate, owner in ((f"transformer.h.{l}.attn.q_proj", blk.attn.q_proj.gate, blk.attn.q_proj),
                                    (f"transformer.h.{l}.mlpf", blk.mlpf.gate, blk.mlpf)):
            if not isinstance(gate, PackRouter):
                continue
            if gate.new0 is not None:
                out[f"{prefix}.gate.w_gate.0.weight"] = gate.new0.weight.detach().clone()
                out[f"{prefix}.gate.w_gate.0.bias"] = gate.new0.bias.detach().clone()
            out[f"{prefix}.gate.w_gate.3.weight"] = gate.new3.weight.detach().clone()
            out[f"{prefix}.experts.weight"] = owner.experts.new.detach().clone()
            out[f"{prefix}.output_experts.weight"] = owner.output_experts.new.detach().clone()
    return out


def merge(cfg, base, pack, adds):
    """(config, tensors) of base + pack as one plain ModuleFormer: gating_size G+U, E+A / E+M experts,
    the old W3 rows zero over the U new hidden units (a MoE without new experts gets U zero hidden
    units). What the runtime computes with a pack (docs/format.md, "Merging")."""
    a_new, m_new, u = adds["attExperts"], adds["mlpExperts"], adds["routerUnits"]
    g = cfg["gating_size"]
    mcfg = dict(cfg, gating_size=g + u, n_att_experts=cfg["n_att_experts"] + a_new, n_mlp_experts=cfg["n_mlp_experts"] + m_new)
    out = dict(base)
    for l in range(cfg["n_layer"]):
        for prefix in (f"transformer.h.{l}.attn.q_proj", f"transformer.h.{l}.mlpf"):
            w0, b0, w3 = (f"{prefix}.gate.w_gate.{s}" for s in ("0.weight", "0.bias", "3.weight"))
            has = w3 in pack
            if u:
                out[w0] = torch.cat([base[w0], pack[w0] if has else base[w0].new_zeros(u, base[w0].shape[1])])
                out[b0] = torch.cat([base[b0], pack[b0] if has else base[b0].new_zeros(u)])
            old3 = base[w3]
            out[w3] = torch.cat([old3, old3.new_zeros(old3.shape[0], u)], 1)
            if has:
                out[w3] = torch.cat([out[w3], pack[w3]])
                for n in (f"{prefix}.experts.weight", f"{prefix}.output_experts.weight"):
                    out[n] = torch.cat([base[n], pack[n]])
    return mcfg, out


def pack_param_count(pack):
    return sum(t.numel() for t in pack.values())


def load_base(folder):
    cfg, tensors = load_model_folder(folder)
    model = train.ModuleFormer(cfg)
    model.load_state_dict(tensors, strict=True)
    return cfg, tensors, model


def load_pack(folder):
    with open(os.path.join(folder, "pack.json")) as f:
        meta = json.load(f)
    return meta, train.load_safetensors(os.path.join(folder, "model.safetensors"))


def pack_into_model(model, pack, adds):
    """Loads a saved pack's tensors into a model made by attach_pack."""
    with torch.no_grad():
        for l, blk in enumerate(model.transformer.h):
            for prefix, gate, owner in ((f"transformer.h.{l}.attn.q_proj", blk.attn.q_proj.gate, blk.attn.q_proj),
                                        (f"transformer.h.{l}.mlpf", blk.mlpf.gate, blk.mlpf)):
                if not isinstance(gate, PackRouter):
                    continue
                if gate.new0 is not None:
                    gate.new0.weight.copy_(pack[f"{prefix}.gate.w_gate.0.weight"])
                    gate.new0.bias.copy_(pack[f"{prefix}.gate.w_gate.0.bias"])
                gate.new3.weight.copy_(pack[f"{prefix}.gate.w_gate.3.weight"])
                owner.experts.new.copy_(pack[f"{prefix}.experts.weight"])
                owner.output_experts.new.copy_(pack[f"{prefix}.output_experts.weight"])


# ---------------------------------------------------------------- data

def read_u32(path):
    import array
    a = array.array("I")
    with open(path, "rb") as f:
        a.frombytes(f.read())
    if sys.byteorder != "little":
        a.byteswap()
    return torch.tensor(a, dtype=torch.int64)


def batch(tokens, n, block, gen):
    starts = torch.randint(0, len(tokens) - block - 1, (n,), generator=gen)
    x = torch.stack([tokens[s: s + block] for s in starts])
    y = torch.stack([tokens[s + 1: s + block + 1] for s in starts])
    return x, y


def replay_windows(brown_train, n_tokens, block):
    """A fixed replay set: n_tokens // (block + 1) windows of block + 1 Brown training tokens, evenly spaced."""
    n = n_tokens // (block + 1)
    stride = (len(brown_train) - block - 1) // n
    return torch.stack([brown_train[i * stride: i * stride + block + 1] for i in range(n)])


def corpus_summary(code_dir):
    with open(os.path.join(code_dir, "packages.json")) as f:
        pk = json.load(f)
    out = {"source": "npm packages in node_modules/ (package-lock.json), tools/train/code-corpus.mjs; details in tools/train/data/code/packages.json"}
    for split in ("train", "heldout"):
        ps = [p for p in pk if p["split"] == split]
        lic = {}
        for p in ps:
            lic[p["license"]] = lic.get(p["license"], 0) + 1
        out[split] = {"packages": len(ps), "files": sum(p["files"] for p in ps), "tokens": sum(p["tokens"] for p in ps), "licences": lic}
    out["heldout"]["packageNames"] = sorted(p["name"] for p in pk if p["split"] == "heldout")
    return out


# ---------------------------------------------------------------- training

def mi_new(probs, n_old):
    """The MI load-balancing term among the new experts (their share renormalised)."""
    p = probs[:, n_old:]
    if p.shape[-1] == 0:
        return probs.new_zeros(())
    p = p / (p.sum(-1, keepdim=True) + 1e-9)
    eps = 1e-9
    marg = p.mean(0)
    return -(p * (p + eps).log()).sum(-1).mean() + (marg * (marg + eps).log()).sum()


def p_new_penalty(probs_list, n_att, n_mlp):
    """mean over tokens and routers of -log(1 - P_new)."""
    terms = []
    for pa, pm in probs_list:
        for p, e in ((pa, n_att), (pm, n_mlp)):
            terms.append(-torch.log1p(-p[:, e:].sum(-1).clamp(max=1 - 1e-6)).mean())
    return sum(terms) / len(terms)


def new_share(probs_list, n_att, n_mlp, k_att, k_mlp):
    """Per layer (attention, MLP): share of the top-k picks that go to new experts."""
    out = []
    for pa, pm in probs_list:
        out.append([(p.topk(k, -1).indices >= e).float().mean().item() for p, e, k in ((pa, n_att, k_att), (pm, n_mlp, k_mlp))])
    return out


@torch.no_grad()
def quick_eval(model, tokens, block, n_windows):
    model.eval()
    stride = (len(tokens) - block - 1) // n_windows
    tot = 0.0
    for i in range(n_windows):
        x = tokens[i * stride: i * stride + block].unsqueeze(0)
        y = tokens[i * stride + 1: i * stride + block + 1].unsqueeze(0)
        tot += model.loss(x, y)[0].item()
    return tot / n_windows


def lm_loss(model, x, y, a, gen, exact):
    """train.py's losses: exact (chunked) or the sampled softmax with --negatives negatives."""
    return model.loss(x, y) if exact or a.negatives <= 0 else model.sampled_loss(x, y, a.negatives, gen)


def cosine(lr, min_lr, warmup, step, frac):
    if step < warmup:
        return lr * (step + 1) / warmup
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * min(1.0, frac)))


def run_loop(name, model, params, step_fn, a, budget, lr, min_lr, log_path, evals, warmup):
    """Time-budgeted AdamW loop; step_fn(step, exact) -> (loss tensor, {log fields}); the last
    --exact-final share of the budget uses the exact loss (as train.py)."""
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), weight_decay=a.weight_decay)
    t0 = time.time()
    step = 0
    with open(log_path, "w", newline="") as cf:
        w = None
        while True:
            el = time.time() - t0
            if el >= budget or step >= a.max_steps:
                break
            cur = cosine(lr, min_lr, warmup, step, el / budget)
            for g in opt.param_groups:
                g["lr"] = cur
            model.train()
            exact = el >= (1 - a.exact_final) * budget
            loss, fields = step_fn(step, exact)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, a.grad_clip)
            opt.step()
            step += 1
            row = {"step": step, "lr": f"{cur:.2e}", "elapsed_s": f"{time.time() - t0:.1f}", "exact": int(exact)}
            row.update({k: f"{v:.4f}" for k, v in fields.items()})
            if step % a.eval_every == 0:
                for k, fn in evals.items():
                    row[k] = f"{fn():.4f}"
            if w is None:
                keys = list(row) + [k for k in evals if k not in row]
                w = csv.DictWriter(cf, fieldnames=keys, restval="")
                w.writeheader()
            w.writerow(row)
            cf.flush()
            print(f"[{name}] " + " ".join(f"{k} {v}" for k, v in row.items()), flush=True)
    return step, time.time() - t0


def write_pack(out_dir, model, meta):
    os.makedirs(out_dir, exist_ok=True)
    tmp = os.path.join(out_dir, "model.safetensors.tmp")
    train.save_safetensors(tmp, pack_tensors(model))
    os.replace(tmp, os.path.join(out_dir, "model.safetensors"))
    with open(os.path.join(out_dir, "pack.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")


@torch.no_grad()
def check_merge(model, cfg, base_tensors, out_dir, meta, code):
    """base + pack (PackRouter) and the merged plain ModuleFormer give the same logits."""
    model.eval()
    _, pack = load_pack(out_dir)
    mcfg, merged = merge(cfg, base_tensors, pack, meta["adds"])
    plain = train.ModuleFormer(mcfg)
    plain.load_state_dict(merged, strict=True)
    plain.eval()
    x = code[:200].unsqueeze(0)
    a = model.lm_head(model(x)[0])
    b = plain.lm_head(plain(x)[0])
    diff = (a - b).abs().max().item()
    print(f"check: base + pack vs merged ModuleFormer, max |logit difference| {diff:.2e}", flush=True)
    assert diff < 1e-3, diff


def loss_desc(a):
    return (f"sampled softmax ({a.negatives} negatives) for the first {100 - 100 * a.exact_final:.0f} % of the time, then exact"
            if a.negatives > 0 else "exact")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default=BASE, help="the base model folder (converted or HF)")
    ap.add_argument("--data", default=os.path.join(HERE, "data"), help="prep.mjs's folder; code in DATA/code")
    ap.add_argument("--out", default=os.path.join(HERE, "out"))
    ap.add_argument("--name", default="molm-brown-js")
    ap.add_argument("--att-experts", type=int, default=4, help="A: new attention experts per layer")
    ap.add_argument("--mlp-experts", type=int, default=4, help="M: new MLP experts per layer")
    ap.add_argument("--router-units", type=int, default=32, help="U: new hidden units per router")
    ap.add_argument("--router-step", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--from-pack", help="skip stage 1: start the router step from this pack folder")
    ap.add_argument("--finetune", action="store_true", help="instead: fine-tune the whole base on code → OUT/js-finetune/model")
    ap.add_argument("--time-budget", type=float, default=720, help="seconds of stage 1 (or of the whole fine-tune)")
    ap.add_argument("--router-time", type=float, default=300, help="seconds of the router step")
    ap.add_argument("--max-steps", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--block", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3, help="stage 1 (and fine-tune) peak learning rate")
    ap.add_argument("--min-lr", type=float, default=2e-4)
    ap.add_argument("--router-lr", type=float, default=1e-2)
    ap.add_argument("--router-warmup", type=int, default=5)
    ap.add_argument("--router-batch", type=int, default=4, help="router step: code windows per step")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--aux-weight", type=float, default=0.05, help="MI load balancing over the new experts (stage 1)")
    ap.add_argument("--noise", type=float, default=0.1, help="new experts = base copies + noise × std")
    ap.add_argument("--lam", type=float, default=30.0, help="router step: weight of mean -log(1 - P_new) over Brown tokens")
    ap.add_argument("--replay-tokens", type=int, default=12000, help="router step: Brown training tokens replayed (< 1 %%)")
    ap.add_argument("--brown-batch", type=int, default=4, help="router step: Brown windows per step (code windows: --batch)")
    ap.add_argument("--negatives", type=int, default=8192, help="sampled-softmax negatives (0: always the exact loss)")
    ap.add_argument("--exact-final", type=float, default=0.2, help="share of each budget, at its end, with the exact loss")
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--check", action=argparse.BooleanOptionalAction, default=True, help="compare with the merged model after writing")
    a = ap.parse_args()

    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    gen = torch.Generator().manual_seed(a.seed)
    code_dir = os.path.join(a.data, "code")
    code = read_u32(os.path.join(code_dir, "train.u32"))
    code_held = read_u32(os.path.join(code_dir, "heldout.u32"))  # only for the log's quick estimate
    brown_train, brown_held, _, _ = train.load_data(a.data, 20)
    cfg, base_tensors, model = load_base(a.base)
    base_sha = weights_sha256(base_tensors)
    e_att, e_mlp = cfg["n_att_experts"], cfg["n_mlp_experts"]
    os.makedirs(a.out, exist_ok=True)
    logs = os.path.join(a.out, "pack-logs")
    os.makedirs(logs, exist_ok=True)
    print(f"base {a.base} weightsSha256 {base_sha}; code train {len(code)} tokens; Brown train {len(brown_train)} tokens; "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}", flush=True)
    evals = {"code_heldout": lambda: quick_eval(model, code_held, a.block, 8),
             "brown_heldout": lambda: quick_eval(model, brown_held, a.block, 8)}

    if a.finetune:
        for p in model.parameters():
            p.requires_grad_(True)
        params = list(model.parameters())

        def ft_step(step, exact):
            x, y = batch(code, a.batch, a.block, gen)
            ce, aux, _ = lm_loss(model, x, y, a, gen, exact)
            return ce + cfg["aux_loss_weight"] * aux, {"code_loss": ce.item()}

        steps, secs = run_loop("finetune", model, params, ft_step, a, a.time_budget, a.lr, a.min_lr,
                               os.path.join(logs, "finetune.csv"), evals, a.warmup)
        out = os.path.join(a.out, "js-finetune", "model")
        fcfg = dict(cfg, _name_or_path="molm-brown-js-finetune")
        train.write_hf_folder(model, fcfg, out)
        with open(os.path.join(a.out, "js-finetune", "training.json"), "w") as f:
            json.dump({"base": {"name": "molm-brown", "weightsSha256": base_sha}, "mode": "whole-model fine-tune on code",
                       "steps": steps, "seconds": round(secs, 1), "lr": a.lr, "minLr": a.min_lr, "loss": loss_desc(a), "batch": [a.batch, a.block],
                       "corpus": corpus_summary(code_dir)}, f, indent=1)
        print(f"wrote {out} after {steps} steps, {secs:.1f} s", flush=True)
        return

    adds = {"attExperts": a.att_experts, "mlpExperts": a.mlp_experts, "routerUnits": a.router_units}
    attach_pack(model, a.att_experts, a.mlp_experts, a.router_units, gen, a.noise)
    model.eval()
    n_pack = pack_param_count(pack_tensors(model))
    print(f"pack: A {a.att_experts}, M {a.mlp_experts}, U {a.router_units}: {n_pack} parameters "
          f"(q8 ≈ {n_pack * 8.5 / 8 / 1e6:.2f} MB)", flush=True)
    training = {"corpus": corpus_summary(code_dir), "batch": [a.batch, a.block], "seed": a.seed,
                "init": f"new experts = copies of base experts {twins(a.att_experts, e_att)} (attention) / "
                        f"{twins(a.mlp_experts, e_mlp)} (MLP) + {a.noise} × std noise; router rows copied from those experts'"}
    desc = ("Adds JavaScript/TypeScript experts to every layer of molm-brown, trained on permissively licensed npm "
            "package sources with the base frozen")

    def meta(stage, extra_desc):
        return {"name": a.name, "domain": "JavaScript and TypeScript source code", "description": desc + extra_desc,
                "base": {"name": "molm-brown", "weightsSha256": base_sha}, "adds": adds,
                "training": dict(training, parameters=n_pack, **stage)}

    if a.from_pack:
        old_meta, pk = load_pack(a.from_pack)
        assert old_meta["adds"] == adds, (old_meta["adds"], adds)
        pack_into_model(model, pk, adds)
        training.update({k: v for k, v in old_meta["training"].items() if k.startswith("stage1")})
        print(f"stage 1 from {a.from_pack}", flush=True)
    else:
        params = new_parameters(model)
        print(f"stage 1: {sum(p.numel() for p in params)} trainable parameters, "
              f"{sum(p.numel() for p in model.parameters() if p.requires_grad)} requiring grad", flush=True)

        def s1_step(step, exact):
            x, y = batch(code, a.batch, a.block, gen)
            ce, _, probs = lm_loss(model, x, y, a, gen, exact)
            aux = sum(mi_new(pa, e_att) + mi_new(pm, e_mlp) for pa, pm in probs) / (2 * len(probs))
            sh = new_share(probs, e_att, e_mlp, cfg["k_att"], cfg["k_mlp"])
            return ce + a.aux_weight * aux, {"code_loss": ce.item(), "aux": aux.item(),
                                             "new_share_code": sum(x for s in sh for x in s) / (2 * len(sh))}

        steps, secs = run_loop("stage1", model, params, s1_step, a, a.time_budget, a.lr, a.min_lr,
                               os.path.join(logs, "stage1.csv"), evals, a.warmup)
        training.update({"stage1": {"what": "new experts + new router parameters on code, base frozen; LM loss + "
                                            f"{a.aux_weight} × MI load balancing over the new experts",
                                    "steps": steps, "seconds": round(secs, 1), "lr": a.lr, "minLr": a.min_lr,
                                    "tokens": steps * a.batch * a.block, "loss": loss_desc(a)}})
        out = os.path.join(a.out, "js-pack-norouter")
        write_pack(out, model, meta({"routerStep": False}, " (no router step)."))
        print(f"wrote {out} after {steps} steps, {secs:.1f} s", flush=True)
        if a.check:
            check_merge(model, cfg, base_tensors, out, meta({}, ""), code)

    if not a.router_step:
        return
    # ---- stage 2: the router step
    replay = replay_windows(brown_train, a.replay_tokens, a.block)
    n_replay = replay.numel()
    frac = n_replay / len(brown_train)
    assert frac < 0.01, frac
    print(f"router step: replay {replay.shape[0]} Brown training windows, {n_replay} tokens ({100 * frac:.2f} % of "
          f"Brown training tokens); lambda {a.lam}", flush=True)
    for p in model.parameters():
        p.requires_grad_(False)
    params = new_parameters(model, routers_only=True)
    for p in params:
        p.requires_grad_(True)

    def s2_step(step, exact):
        x, y = batch(code, a.router_batch, a.block, gen)
        ce_c, _, probs_c = lm_loss(model, x, y, a, gen, exact)
        idx = torch.randint(0, replay.shape[0], (a.brown_batch,), generator=gen)
        w = replay[idx]
        ce_b, _, probs_b = lm_loss(model, w[:, :-1], w[:, 1:], a, gen, exact)
        pen = p_new_penalty(probs_b, e_att, e_mlp)
        shc = new_share(probs_c, e_att, e_mlp, cfg["k_att"], cfg["k_mlp"])
        shb = new_share(probs_b, e_att, e_mlp, cfg["k_att"], cfg["k_mlp"])
        avg = lambda sh: sum(x for s in sh for x in s) / (2 * len(sh))  # noqa: E731
        return ce_c + ce_b + a.lam * pen, {"code_loss": ce_c.item(), "brown_loss": ce_b.item(), "penalty": pen.item(),
                                          "new_share_code": avg(shc), "new_share_brown": avg(shb)}

    steps, secs = run_loop("router", model, params, s2_step, a, a.router_time, a.router_lr, a.router_lr / 10,
                           os.path.join(logs, "router.csv"), evals, a.router_warmup)
    training.update({"stage2": {"what": "router step (MoE-LPR): only the new router parameters (W0_new, b0_new, W3_new); "
                                        "LM loss on code and on a Brown replay + lambda × mean over Brown tokens of -log(1 - P_new)",
                                "steps": steps, "seconds": round(secs, 1), "lr": a.router_lr, "minLr": a.router_lr / 10,
                                "lambda": a.lam, "replayTokens": n_replay, "replayShareOfBrownTrain": round(frac, 5),
                                "codeBatch": [a.router_batch, a.block], "brownBatch": [a.brown_batch, a.block]}})
    out = os.path.join(a.out, "js-pack")
    write_pack(out, model, meta({"routerStep": True}, ", then a router step that keeps English text on the base experts."))
    print(f"wrote {out} after {steps} steps, {secs:.1f} s", flush=True)
    if a.check:
        check_merge(model, cfg, base_tensors, out, meta({}, ""), code)


if __name__ == "__main__":
    main()
