#!/usr/bin/env python
"""The solver of the TF-IDF baseline's logistic regressions (probes.SPARSE_SOLVER): L-BFGS (before)
against Newton-CG (now), side by side on the probe stage of `--recipe auto`: the baseline (its
cross-validated C and refit), the probe search (dense features: L-BFGS in both arms; its
hybrid reads the baseline), the pick, and the test scores they lead to.

    python benchmarks/logistic_solver.py --data FILE.jsonl --features F.pt --out benchmarks/results/logistic-solver

On cached pooled features (probe_candidates.start), the probe stage as `train` runs it
(probe_candidates.auto_probe_stage, one BLAS thread), once per solver, in one process; the test
split is only scored. Both solvers minimise the same objective (mean cross-entropy + |W|^2 /
(2 C N)) to the same gradient tolerance. One row per data set in OUT.json / OUT.md.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from probe_candidates import add_row, auto_probe_stage, data_label, start, write_report

SOLVERS = ("lbfgs", "newton-cg")  # before, now


def main(argv=None) -> int:
    a, machine, f = start(__doc__, "benchmarks/logistic_solver.py", argv)
    from llmclassify import probes
    from llmclassify.scoring import score

    names = f["names"]
    now = probes.SPARSE_SOLVER
    arms = {}
    try:
        for solver in SOLVERS:
            probes.SPARSE_SOLVER = solver
            t0 = time.perf_counter()
            r = auto_probe_stage(f, a.seed)
            seconds = time.perf_counter() - t0
            arms[solver] = {
                "seconds": seconds, "baseline_seconds": r["base_seconds"], "search_seconds": r["search_seconds"],
                "baseline_C": r["base_C"], "baseline_cv": r["base_cv"],
                "baseline_test": float(score(r["base_test"], r["y_test"], names)["macro_f1"]),
                "baseline_labels": r["base_test"].argmax(1),
                "pick": r["pick"].name, "pick_cv": r["pick"].cv_macro_f1,
                "pick_test": float(score(r["pick_test"], r["y_test"], names)["macro_f1"]),
                "llm": r["llm"].name, "llm_test": float(score(r["llm_test"], r["y_test"], names)["macro_f1"])}
            print(solver, {k: v for k, v in arms[solver].items() if k != "baseline_labels"}, flush=True)
    finally:
        probes.SPARSE_SOLVER = now
    before, after = (arms[s] for s in SOLVERS)
    row = {"data": data_label(a), "machine": machine, "trunk_dtype": f.get("trunk_dtype"),
           "texts": len(r["y"]), "classes": len(names), "test_texts": len(r["y_test"]),
           "baseline_test_labels_differ": int((before["baseline_labels"] != after["baseline_labels"]).sum()),
           "solvers": {s: {k: v for k, v in x.items() if k != "baseline_labels"} for s, x in arms.items()}}
    rows = add_row(Path(a.out), row)
    md = ["# The TF-IDF baseline's solver: L-BFGS (before) and Newton-CG (now), side by side", "",
          "The probe stage of `--recipe auto` on cached features, once per solver in one process (one BLAS thread, "
          "as `train`): the TF-IDF baseline's C by 2 x 5-fold CV over train + validation and its refit, then the probe "
          "search (dense features: L-BFGS in both) and the choice. Seconds: baseline (CV + refit), search "
          "(screen, logistic regressions, answers), L-BFGS / Newton-CG. `differ`: test texts whose baseline label changes with the solver.", "",
          "| data (pool texts, classes) | baseline s | search s | baseline C, CV, test macro-F1 | differ "
          "| pick (CV, test macro-F1) |", "|---|---|---|---|---:|---|"]
    for x in rows:
        b, n = (x["solvers"][s] for s in SOLVERS)
        md.append(f"| {x['data']} ({x['texts']}, {x['classes']}) "
                  f"| {b['baseline_seconds']:.1f} / {n['baseline_seconds']:.1f} "
                  f"({b['baseline_seconds'] / n['baseline_seconds']:.1f}x) "
                  f"| {b['search_seconds']:.1f} / {n['search_seconds']:.1f} "
                  f"({b['search_seconds'] / n['search_seconds']:.1f}x) "
                  f"| {b['baseline_C']:g}, {b['baseline_cv']:.4f}, {b['baseline_test']:.4f} / "
                  f"{n['baseline_C']:g}, {n['baseline_cv']:.4f}, {n['baseline_test']:.4f} "
                  f"| {x['baseline_test_labels_differ']} of {x['test_texts']} "
                  f"| {b['pick']} ({b['pick_cv']:.4f}, {b['pick_test']:.4f}) / "
                  f"{n['pick']} ({n['pick_cv']:.4f}, {n['pick_test']:.4f}) |")
    write_report(Path(a.out), md, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
