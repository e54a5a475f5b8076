#!/usr/bin/env python
"""Two unbalanced two-class sets made from rt-polarity (sentence polarity, 2,000 + 2,000): 1,200
snippets each, 5% and 10% of them negative, for measuring the search where one class is rare
(the suite's real sets are balanced, or 13% and 27% spam).

    python benchmarks/unbalanced.py --out-dir DIR   # DIR/rt-polarity-neg5.jsonl, -neg10.jsonl

The draws are Python's random.sample with seed 2, in a fixed order (the 5% set first), so the
files are the same on every machine; their sha256s are printed, and checked where they are
listed in SHA256.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from pathlib import Path

import datasets

SETS = (("rt-polarity-neg5", 1140, 60), ("rt-polarity-neg10", 1080, 120))  # (name, positive, negative)
SHA256 = {"rt-polarity-neg5": "3405144fa3880eca691c15983187a7e324e6bdd8cc7228ea205b74d2484e1970",
          "rt-polarity-neg10": "d7486fb651b6adaa57a5711eca99a951402852bf75969301858a37ffb2676f43"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--data-dir", help="the suite's data cache (datasets.py)")
    a = ap.parse_args(argv)
    rows = datasets.read_jsonl(datasets.fetch("rt-polarity", a.data_dir))
    pos = [r for r in rows if r["label"] == "pos"]
    neg = [r for r in rows if r["label"] == "neg"]
    rng = random.Random(2)
    out = Path(a.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, n_pos, n_neg in SETS:
        drawn = rng.sample(pos, n_pos) + rng.sample(neg, n_neg)
        rng.shuffle(drawn)
        data = "".join(json.dumps({"text": r["text"], "label": r["label"]}) + "\n" for r in drawn).encode()
        digest = hashlib.sha256(data).hexdigest()
        if SHA256.get(name) and SHA256[name] != digest:
            raise SystemExit(f"unbalanced.py: {name}.jsonl has sha256 {digest}, expected {SHA256[name]}")
        (out / f"{name}.jsonl").write_bytes(data)
        print(f"{out / f'{name}.jsonl'}: {n_pos} pos + {n_neg} neg, sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
