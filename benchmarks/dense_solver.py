#!/usr/bin/env python
"""The first fit of a probe's C path (probes.PRECONDITIONED_MAX_C): scikit-learn's L-BFGS
(before) against L-BFGS in preconditioned coordinates (logistic.fit, now), side by side on the
probe stage of `--recipe auto`: each probe candidate's seconds, the search's, the pick, and the
test scores they lead to.

    python benchmarks/dense_solver.py --data FILE.jsonl --features F.pt --out benchmarks/results/dense-solver
    python benchmarks/dense_solver.py --sweep --features F.pt --out benchmarks/results/dense-solver-sweep

On cached pooled features (probe_candidates.start), the probe stage as `train` runs it
(probe_candidates.auto_probe_stage, one BLAS thread: the baseline once, shared), once per
solver, in one process; the test split is only scored. Both minimise the same objective (mean
cross-entropy + |W|^2 / (2 C N)); "before" is scikit-learn's LogisticRegression(solver='lbfgs')
at the search's tolerance for that fit too, as the probes were fitted up to this change. One row
per data set in OUT.json / OUT.md. `--sweep`: how the preconditioner's RANK and CURVATURE were
chosen: the first fit of a path (the grid's first C, from zero) on the first fold of the
search, for three probes (one layer, three, the concatenation of seven vectors), under each
setting: L-BFGS iterations and seconds, beside scikit-learn's.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np
from probe_candidates import (
    add_row,
    auto_probe_stage,
    baseline_stage,
    data_label,
    pool_and_test,
    start,
    tuned_threshold_test,
    write_report,
)

SOLVERS = ("scikit-learn", "preconditioned")  # before, now


def scikit_learn_fit(z, y, C, balanced: bool, tol: float, max_iter: int):
    """logistic.fit's contract on scikit-learn's LogisticRegression (lbfgs): how a path's first
    fit was solved before."""
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=C, max_iter=max_iter, tol=tol, solver="lbfgs",
                            class_weight="balanced" if balanced else None).fit(z, y)
    return lr.classes_, lr.coef_, lr.intercept_, int(lr.n_iter_[0])


SWEEP_PROBES = ("mean@20", "mean@20+24+28", "mean@8+16+22+30,last@16+22+30")
SWEEP_RANKS = (16, 32, 64, 256)
SWEEP_CURVATURES = (0.25, 1.0, 2.0, 4.0)


def sweep(a, machine, f) -> int:
    from threadpoolctl import threadpool_limits

    from llmclassify import logistic, probes

    d = pool_and_test(f, a.seed)
    keep = np.ones(len(d["y"]), dtype=bool)
    keep[d["folds"][0][0]] = False
    y, n_classes, C = d["y"][keep], len(f["names"]), probes.C_GRID[0]
    results = []
    with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in SWEEP_PROBES:
            x = d["pool"].matrix(list(probes.parse_probe(name, max(d["pool"].layers))))
            mean, scale = probes.standardiser(x)
            z = ((x - mean) / scale).astype(np.float32)[keep]
            settings = [(None, None)] + [(r, c) for r in SWEEP_RANKS for c in SWEEP_CURVATURES]
            for rank, curvature in settings:
                fit = scikit_learn_fit
                if rank is not None:
                    logistic.RANK, logistic.CURVATURE, fit = rank, curvature, logistic.fit
                t0 = time.perf_counter()
                *_, iterations = fit(z, y, C, False, probes.SEARCH_TOL, probes.MAX_ITER)
                results.append({"probe": name, "columns": z.shape[1], "rank": rank, "curvature": curvature,
                                "iterations": iterations, "seconds": time.perf_counter() - t0})
                print(results[-1], flush=True)
    rows = add_row(Path(a.out), {"data": data_label(a), "machine": machine, "trunk_dtype": f.get("trunk_dtype"),
                                 "rows": int(keep.sum()), "classes": n_classes, "results": results})
    md = ["# The preconditioner's rank and curvature (logistic.RANK, logistic.CURVATURE)", "",
          "A path's first fit (C = probes.C_GRID[0], from zero) on one fold of the search (its first: the rows the "
          "other four hold), at the search's tolerance, one BLAS thread: L-BFGS iterations and seconds (the "
          "preconditioner's SVD included). Rank x curvature; scikit-learn's L-BFGS first.", ""]
    for x in rows:
        md += [f"## {x['data']} ({x['rows']} rows, {x['classes']} classes)", "",
               "| probe (columns) | scikit-learn | " + " | ".join(f"{r} x {c:g}" for r in SWEEP_RANKS
                                                            for c in SWEEP_CURVATURES) + " |",
               "|---|" + "---:|" * (1 + len(SWEEP_RANKS) * len(SWEEP_CURVATURES))]
        for name in SWEEP_PROBES:
            cells = [r for r in x["results"] if r["probe"] == name]
            md.append(f"| {name} ({cells[0]['columns']}) | " + " | ".join(
                f"{r['iterations']} it, {r['seconds']:.2f} s" for r in cells) + " |")
        md.append("")
    write_report(Path(a.out), md, rows)
    return 0


def main(argv=None) -> int:
    a, machine, f = start(__doc__, "benchmarks/dense_solver.py", argv,
                          more_args=lambda ap: ap.add_argument("--sweep", action="store_true"))
    if a.sweep:
        return sweep(a, machine, f)
    from llmclassify import logistic
    from llmclassify.scoring import score

    names = f["names"]
    now = logistic.fit
    base = baseline_stage(f, a.seed)  # reads the texts only: the same for both
    arms = {}
    try:
        for solver in SOLVERS:
            logistic.fit = scikit_learn_fit if solver == "scikit-learn" else now
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a ConvergenceWarning of either is counted in the row's text
                r = auto_probe_stage(f, a.seed, base)
            tuned = tuned_threshold_test(r["pick"].oof, r["pick_test"], r["y"], r["y_test"], names)
            arms[solver] = {
                "seconds": time.perf_counter() - t0, "search_seconds": r["search_seconds"],
                "candidates": {c.name: {"seconds": c.seconds, "C": c.C, "cv": c.cv_macro_f1}
                               for c in r["found"] if c.kind == "probe" and not c.members},
                "pick": r["pick"].name, "pick_cv": r["pick"].cv_macro_f1,
                "pick_test": float(score(r["pick_test"], r["y_test"], names)["macro_f1"]),
                "pick_test_tuned": None if tuned is None else float(tuned[1]["macro_f1"]),
                "pick_labels": r["pick_test"].argmax(1),
                "llm": r["llm"].name, "llm_test": float(score(r["llm_test"], r["y_test"], names)["macro_f1"])}
            print(solver, {k: v for k, v in arms[solver].items() if k not in ("pick_labels", "candidates")}, flush=True)
    finally:
        logistic.fit = now
    before, after = (arms[s] for s in SOLVERS)
    row = {"data": data_label(a), "machine": machine, "trunk_dtype": f.get("trunk_dtype"),
           "texts": len(r["y"]), "classes": len(names), "test_texts": len(r["y_test"]),
           "pick_test_labels_differ": int((before["pick_labels"] != after["pick_labels"]).sum()),
           "solvers": {s: {k: v for k, v in x.items() if k != "pick_labels"} for s, x in arms.items()}}
    rows = add_row(Path(a.out), row)
    md = ["# A probe path's first fit: scikit-learn's L-BFGS (before) and preconditioned L-BFGS (now), side by side",
          "", "Where a probe's C path starts from zero at the grid's first C on three classes or more "
          "(probes.PRECONDITIONED_MAX_C), that fit is solved in preconditioned coordinates (now) or by scikit-learn's "
          "L-BFGS (before); every other fit by scikit-learn's L-BFGS in both. The probe stage of `--recipe auto` on cached features, once per solver in one process (one BLAS thread, "
          "as `train`; the TF-IDF baseline fitted once for both): the probe search (ridge screen, logistic regressions "
          "over the C grid by 2 x 5-fold CV over train + validation, the answers), the choice and its refit; the test "
          "split only scored. Seconds: the search; the slowest probe candidate (the concatenation of seven "
          "vectors). `differ`: test texts whose label under the pick changes with the solver. Test macro-F1 at argmax "
          "(and with the tuned threshold where `--tune-threshold auto` tunes one).", "",
          "| data (pool texts, classes) | search s, before / now | concatenation s | pick before (CV, test) "
          "| pick now (CV, test) | differ |", "|---|---|---|---|---|---:|"]
    for x in rows:
        b, n = (x["solvers"][s] for s in SOLVERS)
        cat = max(b["candidates"], key=lambda c: b["candidates"][c]["seconds"])
        md.append(f"| {x['data']} ({x['texts']}, {x['classes']}) "
                  f"| {b['search_seconds']:.1f} / {n['search_seconds']:.1f} "
                  f"(**{b['search_seconds'] / n['search_seconds']:.2f}x**) "
                  f"| {b['candidates'][cat]['seconds']:.1f} / {n['candidates'][cat]['seconds']:.1f} "
                  f"| {b['pick']} ({b['pick_cv']:.4f}, {_test(b)}) | {n['pick']} ({n['pick_cv']:.4f}, {_test(n)}) "
                  f"| {x['pick_test_labels_differ']} of {x['test_texts']} |")
    write_report(Path(a.out), md, rows)
    return 0


def _test(arm: dict) -> str:
    tuned = "" if arm["pick_test_tuned"] is None else f", tuned {arm['pick_test_tuned']:.4f}"
    return f"{arm['pick_test']:.4f}{tuned}"


if __name__ == "__main__":
    sys.exit(main())
