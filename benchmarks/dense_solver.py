#!/usr/bin/env python
"""The probes' solver (logistic.DenseLogistic): scikit-learn's L-BFGS (before) against
preconditioned L-BFGS (now), side by side on the probe stage of `--recipe auto`: each probe
candidate's seconds, the search's, the pick, and the test scores they lead to.

    python benchmarks/dense_solver.py --data FILE.jsonl --features F.pt --out benchmarks/results/dense-solver

On cached pooled features (probe_candidates.start), the probe stage as `train` runs it
(probe_candidates.auto_probe_stage, one BLAS thread: the baseline once, shared), once per
solver, in one process; the test split is only scored. Both minimise the same objective (mean
cross-entropy + |W|^2 / (2 C N)); "before" is scikit-learn's LogisticRegression(solver='lbfgs')
at the search's tolerance, as the probes were fitted up to this change. One row per data set
in OUT.json / OUT.md.
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
    start,
    tuned_threshold_test,
    write_report,
)

SOLVERS = ("scikit-learn", "preconditioned")  # before, now


class ScikitLearnLBFGS:
    """logistic.DenseLogistic's interface on scikit-learn's LogisticRegression (lbfgs, warm
    starts along the path): how the probes were fitted before."""

    def __init__(self, balanced: bool, tol: float, max_iter: int):
        from sklearn.linear_model import LogisticRegression

        self.lr = LogisticRegression(max_iter=max_iter, tol=tol, warm_start=True, solver="lbfgs",
                                     class_weight="balanced" if balanced else None)

    def fit(self, z, y, C):
        lr = self.lr.set_params(C=C)
        lr.fit(z, y)
        coef, icpt = lr.coef_, lr.intercept_
        if len(lr.classes_) == 2:
            coef, icpt = np.vstack([-coef / 2, coef / 2]), np.array([-icpt[0] / 2, icpt[0] / 2])
        return lr.classes_, coef, icpt


def main(argv=None) -> int:
    a, machine, f = start(__doc__, "benchmarks/dense_solver.py", argv)
    from llmclassify import logistic
    from llmclassify.scoring import score

    names = f["names"]
    now = logistic.DenseLogistic
    base = baseline_stage(f, a.seed)  # reads the texts only: the same for both
    arms = {}
    try:
        for solver in SOLVERS:
            logistic.DenseLogistic = ScikitLearnLBFGS if solver == "scikit-learn" else now
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
        logistic.DenseLogistic = now
    before, after = (arms[s] for s in SOLVERS)
    row = {"data": data_label(a), "machine": machine, "trunk_dtype": f.get("trunk_dtype"),
           "texts": len(r["y"]), "classes": len(names), "test_texts": len(r["y_test"]),
           "pick_test_labels_differ": int((before["pick_labels"] != after["pick_labels"]).sum()),
           "solvers": {s: {k: v for k, v in x.items() if k != "pick_labels"} for s, x in arms.items()}}
    rows = add_row(Path(a.out), row)
    md = ["# The probes' solver: scikit-learn's L-BFGS (before) and preconditioned L-BFGS (now), side by side", "",
          "The probe stage of `--recipe auto` on cached features, once per solver in one process (one BLAS thread, "
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
