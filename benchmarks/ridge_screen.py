#!/usr/bin/env python
"""The search's ridge screen: every fold solved over the features by LU (before), or over the
rows where there are fewer training rows than features, by Cholesky (now, probes.ridge_screen).

    python benchmarks/ridge_screen.py --preset reference --features F.pt --out benchmarks/results/ridge-screen

On cached pooled features (probe_candidates.start), the screen of `--recipe auto` (every
single-layer candidate, the first repeat's folds, one BLAS thread as `train` runs it) on the
pool (train + validation) and on stratified subsamples of it of `--sizes` texts, both ways
interleaved over `--repeats` rounds (the best counts), and whether their out-of-fold decisions
and shortlists are the same. One row per data set in OUT.json / OUT.md.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from probe_candidates import add_row, data_label, pool_and_test, start, write_report


def over_features(x: np.ndarray, y: np.ndarray, n_classes: int, folds: list[np.ndarray]) -> dict:
    """probes.ridge_screen before: every fold solved over the features (d x d), by LU."""
    from llmclassify.probes import RIDGE_ALPHAS, standardiser

    mean, scale = standardiser(x)
    z = ((x - mean) / scale).astype(np.float64)
    t = np.eye(n_classes)[y]
    gram, zt, zsum, tsum = z.T @ z, z.T @ t, z.sum(0), t.sum(0)
    out = {a: np.zeros(len(y), dtype=np.int64) for a in RIDGE_ALPHAS}
    for held in folds:
        zf, tf = z[held], t[held]
        n_tr = len(y) - len(held)
        mu, tbar = (zsum - zf.sum(0)) / n_tr, (tsum - tf.sum(0)) / n_tr
        g = gram - zf.T @ zf - n_tr * np.outer(mu, mu)
        b = zt - zf.T @ tf - n_tr * np.outer(mu, tbar)
        ridge = np.stack([g + a * n_tr * np.eye(len(g)) for a in RIDGE_ALPHAS])
        weights = np.linalg.solve(ridge, np.broadcast_to(b, (len(RIDGE_ALPHAS), *b.shape)))
        for a, w in zip(RIDGE_ALPHAS, weights):
            out[a][held] = ((zf - mu) @ w + tbar).argmax(1)
    return out


def screen(way, pool, y, names, folds) -> tuple[float, list]:
    """Seconds of the search's screen (search.ridge_screened) done `way`, and its ranking."""
    from llmclassify import probes, search

    singles = [p for p in probes.candidate_probes(pool.layers) if len(p) == 1]
    t0 = time.perf_counter()
    ranked = search.ridge_screened(pool, y, names, folds, singles, screen=way)
    return time.perf_counter() - t0, ranked


def decisions(way, pool, y, names, folds) -> list[dict]:
    """Every single-layer candidate's out-of-fold decisions, done `way`."""
    from llmclassify import probes

    return [way(pool.matrix(list(p)), y, len(names), folds) for p in probes.candidate_probes(pool.layers)
            if len(p) == 1]


def main(argv=None) -> int:
    a, machine, f = start(__doc__, "benchmarks/ridge_screen.py", argv, more_args=lambda ap: (
        ap.add_argument("--sizes", default="100,200,400,600", help="subsample sizes of the pool, comma-separated"),
        ap.add_argument("--repeats", type=int, default=3)))
    from sklearn.model_selection import train_test_split
    from threadpoolctl import threadpool_limits

    from llmclassify import probes, search

    names = f["names"]
    d = pool_and_test(f, a.seed)
    pool, y = d["pool"], d["y"]
    ways = {"over the features (before)": over_features, "the smaller form (now)": probes.ridge_screen}
    sizes = [int(s) for s in a.sizes.split(",") if int(s) < len(y)] + [len(y)]
    results = []
    for n in sizes:
        rows = np.arange(len(y))
        if n < len(y):  # a stratified subsample
            rows = np.sort(train_test_split(rows, train_size=n, stratify=y, random_state=a.seed)[0])
        sub = type(pool)(pool.data[rows], pool.layers)
        ys = y[rows]
        folds = search.repeated_folds(ys, a.seed)[0]
        got: dict = {w: {"seconds": []} for w in ways}
        with threadpool_limits(limits=1, user_api="blas"):
            for _ in range(a.repeats):
                for w, fn in ways.items():
                    s, ranked = screen(fn, sub, ys, names, folds)
                    got[w]["seconds"].append(s)
                    got[w]["shortlist"] = [p for _, p in ranked[: search.SHORTLIST]]
            before, now = (decisions(fn, sub, ys, names, folds) for fn in ways.values())
        same = all(np.array_equal(p[k], q[k]) for p, q in zip(before, now) for k in p)
        before, now = got.values()
        results.append({"texts": int(n), "features": int(pool.data.shape[-1]), "training_rows": int(n - max(map(len, folds))),
                        "seconds": {w: min(g["seconds"]) for w, g in got.items()},
                        "same_decisions": bool(same), "same_shortlist": before["shortlist"] == now["shortlist"]})
        print(results[-1], flush=True)
    row = {"data": data_label(a), "machine": machine, "trunk_dtype": f.get("trunk_dtype"), "sizes": results}
    rows = add_row(Path(a.out), row)
    md = ["# The ridge screen: over the features by LU (before), or the smaller form by Cholesky (now)", "",
          "Every single-layer candidate's screen (the first repeat's 5 folds, 4 alphas, one BLAS thread); best of "
          f"{a.repeats} interleaved rounds. `same`: every out-of-fold decision equal, and the shortlist.", "",
          "| data | pool texts | training rows a fold | over the features s | smaller form s | speed | same decisions | same shortlist |",
          "|---|---:|---:|---:|---:|---:|---|---|"]
    for x in rows:
        for r in x["sizes"]:
            b, n = r["seconds"].values()
            md.append(f"| {x['data']} | {r['texts']} | {r['training_rows']} | {b:.2f} | {n:.2f} | {b / n:.2f}x "
                      f"| {r['same_decisions']} | {r['same_shortlist']} |")
    write_report(Path(a.out), md, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
