"""The train / held-out split of the prepared Brown corpus, in one place (no torch needed).

prep.mjs writes tokens.u32 (every document followed by <|endoftext|>) and docs.json; every
`heldout_every`-th document is held out. train.py, bigram.py and pytorch_eval.py all split here,
and prep.mjs writes heldout.txt with the same rule.
"""
import array
import json
import os
import sys


def split_documents(data_dir, heldout_every=20):
    """(train documents, held-out documents): lists of token-id arrays, each with its trailing EOS."""
    raw = array.array("I")
    with open(os.path.join(data_dir, "tokens.u32"), "rb") as f:
        raw.frombytes(f.read())
    if sys.byteorder != "little":
        raw.byteswap()
    with open(os.path.join(data_dir, "docs.json")) as f:
        docs = json.load(f)
    train, held = [], []
    for i, d in enumerate(docs):
        seg = raw[d["start"]: d["end"] + 1]
        (held if heldout_every > 0 and i % heldout_every == heldout_every - 1 else train).append(seg)
    return train, held
