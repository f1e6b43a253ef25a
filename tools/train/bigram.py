#!/usr/bin/python3
"""Token-bigram baseline for the built-in model: interpolated Kneser-Ney, fitted on the training split.

Uses the same split as train.py (every Nth document held out) and prints held-out perplexity, so the
trained ModuleFormer is compared against a strong count-based model, not a strawman: the discount is
chosen on the training split by leave-one-out (the classic D = n1 / (n1 + 2 n2)), and the
continuation unigram is interpolated with a uniform distribution over the whole vocabulary so that
tokens never seen in training still get probability mass.
"""
import argparse
import json
import math
import os
import sys
from collections import Counter, defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
EOS = 50256  # <|endoftext|>, written by prep.mjs after every document
sys.path.insert(0, HERE)
from brown_split import split_documents  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=os.path.join(HERE, "data"))
    ap.add_argument("--heldout-every", type=int, default=20)
    ap.add_argument("--vocab", type=int, default=50295)
    ap.add_argument("--max-tokens", type=int, default=0, help="score only the first N held-out tokens")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    train, held = split_documents(a.data, a.heldout_every)

    # Training text is one stream (documents end with <|endoftext|>), as the model sees it.
    stream = [t for d in train for t in d]
    big = Counter(zip(stream, stream[1:]))
    ctx_count = Counter()          # c(a ·)
    ctx_types = Counter()          # N1+(a ·)
    cont_types = Counter()         # N1+(· b)
    for (x, y), c in big.items():
        ctx_count[x] += c
        ctx_types[x] += 1
        cont_types[y] += 1
    n1 = sum(1 for c in big.values() if c == 1)
    n2 = sum(1 for c in big.values() if c == 2)
    d = n1 / (n1 + 2 * n2)
    total_types = len(big)
    # unigram backoff: continuation counts, interpolated with uniform (mass = unique-continuation rate)
    n_cont = len(cont_types)
    lam_u = n_cont / (total_types + n_cont)

    def p_cont(y):
        return (1 - lam_u) * cont_types.get(y, 0) / total_types + lam_u / a.vocab

    def p(x, y):
        cx = ctx_count.get(x, 0)
        if cx == 0:
            return p_cont(y)
        return max(big.get((x, y), 0) - d, 0) / cx + d * ctx_types[x] / cx * p_cont(y)

    nll, n = 0.0, 0
    for doc in held:
        # the first token of a held-out document follows the previous document's <|endoftext|>
        prev = EOS
        for t in doc:
            if a.max_tokens and n >= a.max_tokens:
                break
            nll -= math.log(p(prev, t))
            prev = t
            n += 1
    ppl = math.exp(nll / n)
    res = {"model": "interpolated Kneser-Ney token bigram", "discount": round(d, 4), "train_tokens": len(stream),
           "heldout_tokens": n, "heldout_nll": nll / n, "heldout_perplexity": ppl}
    print(json.dumps(res) if a.json else
          f"KN bigram (D={d:.3f}) fitted on {len(stream)} training tokens: held-out perplexity {ppl:.2f} "
          f"({nll / n:.4f} nats/token over {n} tokens)")


if __name__ == "__main__":
    main()
