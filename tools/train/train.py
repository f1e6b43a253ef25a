#!/usr/bin/python3
"""Trains a small ModuleFormer (MoLM architecture) on the Brown corpus and writes a Hugging Face folder.

The forward pass is exactly MoLM's numerical contract (docs/architecture.md; the runtime's kernels and src/reference/):
stick-breaking attention with K = V = ln_1 output (n_head 1, att_hidden == n_embd), MLP routers with
the erf GELU, softmax over all experts, top-k WITHOUT renormalisation, expert weights [E, in, out],
MLP experts with the tanh GELU, LayerNorm eps 1e-5, untied lm_head, no position embedding.
Load balancing: the mutual-information auxiliary loss of the ModuleFormer paper (aux_loss_type "mi"):
  L_MI = -H(mean_x p(e|x)) + mean_x H(p(e|x)),  per router, averaged over routers.

Data: run `node tools/train/prep.mjs` first (writes tools/train/data/tokens.u32 + docs.json).
Uses Debian's python3-torch (1.13) on /usr/bin/python3; install libopenblas0-pthread for speed.
"""
import argparse
import csv
import json
import math
import os
import shutil
import struct
import sys
import time

# OpenMP workers that spin after each parallel region starve OpenBLAS's own threads on 2 cores (~20% per step).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BASE_CONFIG = os.path.join(ROOT, "tests", "fixtures", "configs", "molm-350m-4b.json")
TOKENIZER = os.path.join(ROOT, "tests", "fixtures", "tokenizer", "tokenizer.json")


# ---------------------------------------------------------------- model

def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)))


def grouped_matmul(rows, expert, weight):
    """rows [M, in] @ weight[expert[m]] -> [M, out]: one matmul per expert over the rows routed to it.

    Tokens are grouped by expert (the sparse computation a MoE is about) instead of running every
    expert on every token: with k of E experts chosen this does k/E of the dense work.
    """
    order = torch.argsort(expert)
    counts = torch.bincount(expert, minlength=weight.shape[0]).tolist()
    parts = rows.index_select(0, order).split(counts)
    grouped = torch.cat([part @ weight[e] for e, part in enumerate(parts)])  # rows in expert order
    inverse = torch.empty_like(order).scatter_(0, order, torch.arange(order.numel()))
    return grouped.index_select(0, inverse)


class ExpertWeight(nn.Module):
    """Holds `weight` [E, in, out] so that the state_dict name ends in `.experts.weight`."""

    def __init__(self, e, i, o, std):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(e, i, o) * std)


class Router(nn.Module):
    """`gate.w_gate.0` Linear(C, G) → erf GELU → (index 2: dropout slot, identity) → `.3` Linear(G, E, no bias)."""

    def __init__(self, c, g, e, k):
        super().__init__()
        self.k = k
        self.w_gate = nn.Sequential(nn.Linear(c, g), nn.GELU(), nn.Identity(), nn.Linear(g, e, bias=False))

    def logits(self, x):
        return self.w_gate(x)  # [N, E]

    def forward(self, x):
        probs = F.softmax(self.logits(x), dim=-1)  # [N, E]
        top_p, top_i = probs.topk(self.k, dim=-1)  # not renormalised
        gates = torch.zeros_like(probs).scatter(-1, top_i, top_p)  # dense [N, E], zero where not chosen
        # mutual-information load-balancing loss (ModuleFormer paper): maximise H(E), minimise H(E|x)
        eps = 1e-9
        marginal = probs.mean(0)
        h_marg = -(marginal * (marginal + eps).log()).sum()
        h_cond = -(probs * (probs + eps).log()).sum(-1).mean()
        aux = h_cond - h_marg
        return gates, top_i, aux, probs


class MoEProj(nn.Module):
    """A gated set of experts. `experts` [E, C, H], `output_experts` [E, H, C]."""

    def __init__(self, c, h, e, k, g, std, out_std):
        super().__init__()
        self.gate = Router(c, g, e, k)
        self.experts = ExpertWeight(e, c, h, std)
        self.output_experts = ExpertWeight(e, h, c, out_std)


class Attention(nn.Module):
    def __init__(self, cfg, std, out_std):
        super().__init__()
        c = cfg["n_embd"]
        self.q_proj = MoEProj(c, cfg["att_hidden"], cfg["n_att_experts"], cfg["k_att"], cfg["gating_size"], std, out_std)
        self.scale = 1.0 / math.sqrt(cfg["att_hidden"])  # n_head 1: head size d = A

    def forward(self, x):
        # x: [B, T, C] = ln_1 output = K = V.
        b, t, c = x.shape
        gates, top_i, aux, probs = self.q_proj.gate(x.reshape(b * t, c))
        # Only the k selected experts' queries attend (K = V = x is shared by all of them).
        sel = top_i.view(b * t, -1)  # [N, k]
        gk = gates.gather(-1, sel).view(b, t, -1)  # [B, T, k] selected gates
        kk = sel.shape[1]
        # Only the k selected experts' queries are computed (K = V = x is shared by all of them).
        rows = x.reshape(b * t, c).repeat_interleave(kk, 0)  # [N*k, C], row n*k+j is token n's j-th pick
        q = grouped_matmul(rows, sel.reshape(-1), self.q_proj.experts.weight).view(b, t, kk, -1)  # [B, T, k, A]
        # Plain batched matmuls on contiguous [B, k*T, .] operands: einsum's strided views made CPU bmm 5x slower.
        qk = q.permute(0, 2, 1, 3).reshape(b, kk * t, -1)  # [B, k*T, A]
        logits = torch.bmm(qk, x.transpose(1, 2)).view(b, kk, t, t) * self.scale  # [B, k, Tq, Tk]
        causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()  # key j <= query i
        sp = F.softplus(logits).masked_fill(~causal, 0.0)
        # S_j = sum_{j < m <= i} softplus(l_m): reverse inclusive cumsum minus own term
        s_incl = sp.flip(-1).cumsum(-1).flip(-1)
        log_a = F.logsigmoid(logits) - (s_incl - sp)
        att = log_a.exp().masked_fill(~causal, 0.0)  # leftover mass 1 - sum A is discarded
        o = torch.bmm(att.view(b, kk * t, t), x).view(b, kk, t, c).permute(0, 2, 1, 3)  # [B, T, k, A]
        y = grouped_matmul(o.reshape(b * t * kk, c), sel.reshape(-1), self.q_proj.output_experts.weight)
        y = y.view(b, t, kk, c)
        return (y * gk.unsqueeze(-1)).sum(2), aux, probs


class MLP(nn.Module):
    def __init__(self, cfg, std, out_std):
        super().__init__()
        c = cfg["n_embd"]
        # mlpf.gate / mlpf.experts / mlpf.output_experts
        p = MoEProj(c, cfg["ffd_hidden"], cfg["n_mlp_experts"], cfg["k_mlp"], cfg["gating_size"], std, out_std)
        self.gate, self.experts, self.output_experts = p.gate, p.experts, p.output_experts

    def forward(self, x):
        b, t, c = x.shape
        xf = x.reshape(b * t, c)
        gates, top_i, aux, probs = self.gate(xf)
        sel = top_i  # [N, k]
        kk = sel.shape[1]
        rows = xf.repeat_interleave(kk, 0)  # [N*k, C]
        hdn = F.gelu(grouped_matmul(rows, sel.reshape(-1), self.experts.weight), approximate="tanh")
        y = grouped_matmul(hdn, sel.reshape(-1), self.output_experts.weight).view(b * t, kk, c)
        y = (y * gates.gather(-1, sel).unsqueeze(-1)).sum(1)
        return y.view(b, t, c), aux, probs


class Block(nn.Module):
    def __init__(self, cfg, std, out_std):
        super().__init__()
        c = cfg["n_embd"]
        self.ln_1 = nn.LayerNorm(c, eps=cfg["layer_norm_epsilon"])
        self.attn = Attention(cfg, std, out_std)
        self.ln_2 = nn.LayerNorm(c, eps=cfg["layer_norm_epsilon"])
        self.mlpf = MLP(cfg, std, out_std)

    def forward(self, h):
        ya, aux_a, pa = self.attn(self.ln_1(h))
        h = h + ya
        ym, aux_m, pm = self.mlpf(self.ln_2(h))
        return h + ym, aux_a + aux_m, (pa, pm)


class Transformer(nn.Module):
    def __init__(self, cfg, std, out_std):
        super().__init__()
        self.wte = nn.Embedding(cfg["vocab_size"], cfg["n_embd"])
        self.h = nn.ModuleList([Block(cfg, std, out_std) for _ in range(cfg["n_layer"])])
        self.ln_f = nn.LayerNorm(cfg["n_embd"], eps=cfg["layer_norm_epsilon"])


class ChunkedLMHeadLoss(torch.autograd.Function):
    """Mean cross-entropy of h @ W^T against targets, a chunk of rows at a time.

    The full [tokens, 50295] logit matrix never exists: each chunk's logits are recomputed in the
    backward pass. On 2 CPU cores this halves the step time (no 400 MB allocation, fill and
    log-softmax passes per step) for one extra matmul.
    """

    CHUNK = 256

    @staticmethod
    def forward(ctx, h, weight, targets):
        total = h.new_zeros(())
        for i in range(0, h.shape[0], ChunkedLMHeadLoss.CHUNK):
            logits = h[i:i + ChunkedLMHeadLoss.CHUNK] @ weight.t()
            t = targets[i:i + ChunkedLMHeadLoss.CHUNK]
            total += (torch.logsumexp(logits, -1) - logits.gather(1, t.unsqueeze(1)).squeeze(1)).sum()
        ctx.save_for_backward(h, weight, targets)
        return total / h.shape[0]

    @staticmethod
    def backward(ctx, grad):
        h, weight, targets = ctx.saved_tensors
        scale = grad / h.shape[0]
        grad_h = torch.empty_like(h)
        grad_w = torch.zeros_like(weight) if ctx.needs_input_grad[1] else None  # None: a frozen lm_head
        for i in range(0, h.shape[0], ChunkedLMHeadLoss.CHUNK):
            hc = h[i:i + ChunkedLMHeadLoss.CHUNK]
            p = torch.softmax(hc @ weight.t(), -1)
            p.scatter_add_(1, targets[i:i + ChunkedLMHeadLoss.CHUNK].unsqueeze(1), -torch.ones(hc.shape[0], 1))
            p.mul_(scale)
            grad_h[i:i + ChunkedLMHeadLoss.CHUNK] = p @ weight
            if grad_w is not None:
                grad_w.addmm_(p.t(), hc)
        return grad_h, grad_w, None


class ModuleFormer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        std = cfg["initializer_range"]
        out_std = std / math.sqrt(2 * cfg["n_layer"])  # GPT-2 style scaled residual projections
        self.cfg = cfg
        self.transformer = Transformer(cfg, std, out_std)
        self.lm_head = nn.Linear(cfg["n_embd"], cfg["vocab_size"], bias=False)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0.0, std)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, ids):
        h = self.transformer.wte(ids)
        aux = 0.0
        probs = []
        for blk in self.transformer.h:
            h, a, p = blk(h)
            aux = aux + a
            probs.append(p)
        h = self.transformer.ln_f(h)
        return h, aux / (2 * len(self.transformer.h)), probs

    def loss(self, ids, targets):
        h, aux, probs = self(ids)
        ce = ChunkedLMHeadLoss.apply(h.reshape(-1, h.shape[-1]), self.lm_head.weight, targets.reshape(-1))
        return ce, aux, probs

    def sampled_loss(self, ids, targets, negatives, generator):
        """Cross-entropy over the batch's own targets plus `negatives` other tokens drawn uniformly.

        The partition function is estimated by importance sampling: every target token of the batch
        is in it exactly, and each sampled token stands for |others| / negatives tokens (a log weight
        added to its logit). With 2048 targets covering the frequent tokens, this is 5x less work
        than the 50295-way softmax; the last part of a run uses the exact loss (see --exact-final).
        """
        h, aux, probs = self(ids)
        hf = h.reshape(-1, h.shape[-1])
        t = targets.reshape(-1)
        vocab = self.lm_head.weight.shape[0]
        pos = torch.unique(t)  # sorted
        keep = torch.ones(vocab, dtype=torch.bool)
        keep[pos] = False
        others = keep.nonzero().squeeze(1)
        n = min(negatives, others.numel())
        neg = others[torch.randperm(others.numel(), generator=generator)[:n]]
        cand = torch.cat([pos, neg])
        logits = hf @ self.lm_head.weight.index_select(0, cand).t()
        if n:
            shift = torch.zeros(cand.numel())
            shift[pos.numel():] = math.log(others.numel() / n)
            logits = logits + shift
        ce = F.cross_entropy(logits, torch.searchsorted(pos, t))
        return ce, aux, probs


# ---------------------------------------------------------------- safetensors (pure Python writer/reader)

def save_safetensors(path, tensors):
    header, chunks, off = {}, [], 0
    for name, t in tensors.items():
        data = t.detach().to(torch.float32).contiguous().cpu().numpy().tobytes() if _has_numpy() else _tensor_bytes(t)
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(data)]}
        chunks.append(data)
        off += len(data)
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for c in chunks:
            f.write(c)


def _has_numpy():
    try:
        import numpy  # noqa: F401
        return True
    except ImportError:
        return False


def _tensor_bytes(t):
    import array
    a = array.array("f", t.detach().to(torch.float32).contiguous().view(-1).tolist())
    if sys.byteorder != "little":
        a.byteswap()
    return a.tobytes()


def load_safetensors(path):
    """Returns {name: torch.Tensor} from an F32 safetensors file."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        body = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", info
        a, b = info["data_offsets"]
        t = torch.frombuffer(bytearray(body[a:b]), dtype=torch.float32)
        out[name] = t.view(info["shape"]).clone() if info["shape"] else t.clone()
    return out


def export_state(model):
    """Checkpoint tensors under the HF names of ARCHITECTURE.md (nothing else: no buffers)."""
    sd = model.state_dict()
    return {k: v for k, v in sd.items()}


def write_hf_folder(model, cfg, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    tmp = os.path.join(out_dir, "model.safetensors.tmp")
    save_safetensors(tmp, export_state(model))
    os.replace(tmp, os.path.join(out_dir, "model.safetensors"))
    if os.path.exists(TOKENIZER):
        shutil.copyfile(TOKENIZER, os.path.join(out_dir, "tokenizer.json"))


# ---------------------------------------------------------------- data

def load_data(data_dir, heldout_every):
    """(train tokens, held-out tokens, held-out documents, documents) as int64 tensors (brown_split.py)."""
    sys.path.insert(0, HERE)
    from brown_split import split_documents
    train, held = split_documents(data_dir, heldout_every)
    cat = lambda segs: torch.tensor([t for s in segs for t in s], dtype=torch.int64)  # noqa: E731
    return cat(train), cat(held), len(held), len(train) + len(held)


def build_config(a):
    with open(BASE_CONFIG) as f:
        cfg = json.load(f)
    cfg.update(
        {
            "_name_or_path": "molm-brown-tiny",
            "n_embd": a.n_embd,
            "att_hidden": a.n_embd,  # K = V = ln_1 output requires att_hidden == n_embd, n_head 1
            "n_head": 1,
            "n_layer": a.n_layer,
            "n_att_experts": a.att_experts,
            "k_att": a.k_att,
            "n_mlp_experts": a.mlp_experts,
            "k_mlp": a.k_mlp,
            "ffd_hidden": a.ffd,
            "gating_size": a.gating,
            "block_size": a.block,
            "history_length": a.block,
            "n_ctx": a.n_ctx,
            "aux_loss_type": "mi",
            "aux_loss_weight": a.aux_weight,
            "torch_dtype": "float32",
            "tie_word_embeddings": False,
        }
    )
    return cfg


@torch.no_grad()
def eval_loss(model, held, block, n_windows):
    model.eval()
    n = min(n_windows, (len(held) - 1) // block)
    stride = max(block, (len(held) - 1 - block) // max(1, n))
    losses = []
    for i in range(n):
        s = i * stride
        x = held[s: s + block].unsqueeze(0)
        y = held[s + 1: s + block + 1].unsqueeze(0)
        ce, _, _ = model.loss(x, y)
        losses.append(ce.item())
    model.train()
    return sum(losses) / len(losses)


def expert_usage(probs_list, k_att, k_mlp):
    """Fraction of top-k picks per expert, per router, from the last batch (for the log)."""
    out = []
    for pa, pm in probs_list:
        for p, k in ((pa, k_att), (pm, k_mlp)):
            idx = p.detach().topk(k, dim=-1).indices.reshape(-1)
            c = torch.bincount(idx, minlength=p.shape[-1]).float()
            out.append((c / c.sum()).tolist())
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.join(HERE, "data"), help="folder written by prep.mjs")
    ap.add_argument("--out", default=os.path.join(HERE, "out"), help="output folder (HF model in OUT/model, curve in OUT/curve.csv)")
    ap.add_argument("--steps", type=int, default=100000, help="upper bound; --time-budget usually ends the run")
    ap.add_argument("--time-budget", type=float, default=3000, help="seconds; stop (and save) when exceeded, 0 = none")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: all cores)")
    ap.add_argument("--n-embd", type=int, default=128)
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--att-experts", type=int, default=8)
    ap.add_argument("--k-att", type=int, default=2)
    ap.add_argument("--mlp-experts", type=int, default=8)
    ap.add_argument("--k-mlp", type=int, default=2)
    ap.add_argument("--ffd", type=int, default=256)
    ap.add_argument("--gating", type=int, default=64)
    ap.add_argument("--block", type=int, default=256, help="tokens per training sequence")
    ap.add_argument("--batch", type=int, default=8, help="sequences per step")
    ap.add_argument("--n-ctx", type=int, default=2048, help="n_ctx written to config.json")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr", type=float, default=2e-4)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--aux-weight", type=float, default=0.1, help="weight of the MI load-balancing loss")
    ap.add_argument("--negatives", type=int, default=8192,
                    help="sampled-softmax negatives per step (0: always the exact 50295-way loss)")
    ap.add_argument("--exact-final", type=float, default=0.15,
                    help="share of the time budget, at the end, trained with the exact loss")
    ap.add_argument("--heldout-every", type=int, default=20, help="every Nth document is held out (5%%)")
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--eval-windows", type=int, default=16)
    ap.add_argument("--save-every", type=int, default=100, help="also write the HF folder every N steps")
    a = ap.parse_args()

    torch.manual_seed(a.seed)
    if a.threads:
        torch.set_num_threads(a.threads)
    train, held, n_held, n_docs = load_data(a.data, a.heldout_every)
    cfg = build_config(a)
    model = ModuleFormer(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"docs {n_docs} (held out {n_held}), train tokens {len(train)}, held-out tokens {len(held)}; "
          f"params {n_params/1e6:.2f} M; torch {torch.__version__}, threads {torch.get_num_threads()}", flush=True)

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=a.lr, betas=(0.9, 0.95))

    def lr_at(step, elapsed):
        if step < a.warmup:
            return a.lr * (step + 1) / a.warmup
        # the cosine follows whichever runs out first, the step count or the time budget
        frac = (step - a.warmup) / max(1, a.steps - a.warmup)
        if a.time_budget > 0:
            frac = max(frac, elapsed / a.time_budget)
        frac = min(1.0, frac)
        return a.min_lr + 0.5 * (a.lr - a.min_lr) * (1 + math.cos(math.pi * frac))

    os.makedirs(a.out, exist_ok=True)
    model_dir = os.path.join(a.out, "model")
    curve_path = os.path.join(a.out, "curve.csv")
    gen = torch.Generator().manual_seed(a.seed)
    t0 = time.time()
    with open(curve_path, "w", newline="") as cf:
        w = csv.writer(cf)
        w.writerow(["step", "train_loss", "heldout_loss", "aux_loss", "lr", "elapsed_s"])
        held_loss = eval_loss(model, held, a.block, a.eval_windows)
        w.writerow([0, "", f"{held_loss:.4f}", "", "", "0.0"])
        cf.flush()
        print(f"step 0 held-out {held_loss:.4f}", flush=True)
        step = 0
        for step in range(1, a.steps + 1):
            lr = lr_at(step - 1, time.time() - t0)
            for gparam in opt.param_groups:
                gparam["lr"] = lr
            starts = torch.randint(0, len(train) - a.block - 1, (a.batch,), generator=gen)
            x = torch.stack([train[s: s + a.block] for s in starts])
            y = torch.stack([train[s + 1: s + a.block + 1] for s in starts])
            exact = a.negatives <= 0 or (a.time_budget > 0 and time.time() - t0 >= (1 - a.exact_final) * a.time_budget)
            ce, aux, probs = model.loss(x, y) if exact else model.sampled_loss(x, y, a.negatives, gen)
            loss = ce + a.aux_weight * aux
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if a.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), a.grad_clip)
            opt.step()
            el = time.time() - t0
            over = a.time_budget > 0 and el > a.time_budget
            held_s = ""
            if step % a.eval_every == 0 or step == a.steps or over:
                held_loss = eval_loss(model, held, a.block, a.eval_windows)
                held_s = f"{held_loss:.4f}"
            w.writerow([step, f"{ce.item():.4f}", held_s, f"{aux.item():.4f}", f"{lr:.2e}", f"{el:.1f}"])
            cf.flush()
            print(f"step {step} train{'' if exact else '~'} {ce.item():.4f} aux {aux.item():.4f} lr {lr:.2e} "
                  f"{el/step:.2f} s/step" + (f" held-out {held_s}" if held_s else ""), flush=True)
            if held_s:
                use = expert_usage(probs, a.k_att, a.k_mlp)
                att = min(min(u) for u in use[0::2])
                mlp = min(min(u) for u in use[1::2])
                dead = sum(1 for u in use for x in u if x == 0)
                print(f"  expert use (last batch), least-used share: attention {att:.3f} (uniform {1/a.att_experts:.3f}), "
                      f"MLP {mlp:.3f} (uniform {1/a.mlp_experts:.3f}); experts never picked: {dead}", flush=True)
            if a.save_every and step % a.save_every == 0:
                write_hf_folder(model, cfg, model_dir)
            if over:
                print(f"time budget {a.time_budget}s reached at step {step}", flush=True)
                break
    write_hf_folder(model, cfg, model_dir)
    print(f"wrote {model_dir} and {curve_path} after {step} steps, {time.time()-t0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
