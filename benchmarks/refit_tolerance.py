#!/usr/bin/env python
"""The refit's tolerance: does the kept model (and its test labels) depend on the number of BLAS
threads it was fitted with? The search's pick refitted on train + validation at the search's
tolerance (probes.SEARCH_TOL) and at probes.FINAL_TOL, each under one BLAS thread and under two.

    python benchmarks/refit_tolerance.py --data FILE.jsonl --features F.pt --out benchmarks/results/refit-tolerance

On cached pooled features (probe_candidates.start), the probe stage of `--recipe auto` as
`train` runs it (probe_candidates.auto_probe_stage); the test split is only scored. The
baseline's part of a hybrid is the one auto_probe_stage fitted. One row per data set in
OUT.json / OUT.md.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from probe_candidates import add_row, auto_probe_stage, data_label, start, write_report

THREADS = (1, 2)


def main(argv=None) -> int:
    a, machine, f = start(__doc__, "benchmarks/refit_tolerance.py", argv)
    from threadpoolctl import threadpool_limits

    from llmclassify import probes
    from llmclassify.scoring import score

    names = f["names"]
    r = auto_probe_stage(f, a.seed)
    final_tol = probes.FINAL_TOL
    fits = {}
    try:
        for tol in (probes.SEARCH_TOL, final_tol):
            probes.FINAL_TOL = tol  # what a kept model (fit_probe, fit_logistic) is solved to
            for threads in THREADS:
                with threadpool_limits(limits=threads, user_api="blas"):
                    t0 = time.perf_counter()
                    p = r["test_proba"](r["pick"])
                    seconds = time.perf_counter() - t0
                s = score(p, r["y_test"], names)
                fits[(tol, threads)] = {"tol": tol, "threads": threads, "seconds": seconds, "labels": p.argmax(1),
                                        "test": float(s["macro_f1"]), "accuracy": float(s["accuracy"])}
    finally:
        probes.FINAL_TOL = final_tol
    per_tol = {}
    for tol in (probes.SEARCH_TOL, final_tol):
        one, two = fits[(tol, THREADS[0])], fits[(tol, THREADS[1])]
        per_tol[f"{tol:g}"] = {"labels_differ": int((one["labels"] != two["labels"]).sum()),
                               "runs": [{k: v for k, v in x.items() if k != "labels"} for x in (one, two)]}
    row = {"data": data_label(a), "machine": machine, "trunk_dtype": f.get("trunk_dtype"),
           "pick": r["pick"].name, "test_texts": len(r["y_test"]), "tolerances": per_tol}
    rows = add_row(Path(a.out), row)
    md = ["# The kept model's tolerance: test labels under one BLAS thread and under two",
          "", f"The search's pick refitted on train + validation at the search's tolerance ({probes.SEARCH_TOL:g}) and at "
          "the tolerance `train` now keeps models at (probes.FINAL_TOL), with 1 and 2 BLAS threads. `differ`: test "
          "texts whose label changes with the thread count. Test macro-F1 1 thread / 2 threads; refit seconds.", "",
          "| data (test texts) | pick | tol | differ | test macro-F1 (1 / 2 threads) | refit s (1 / 2) |",
          "|---|---|---:|---:|---|---|"]
    for x in rows:
        for tol, t in x["tolerances"].items():
            one, two = t["runs"]
            md.append(f"| {x['data']} ({x['test_texts']}) | {x['pick']} | {tol} | {t['labels_differ']} "
                      f"| {one['test']:.4f} / {two['test']:.4f} | {one['seconds']:.1f} / {two['seconds']:.1f} |")
    write_report(Path(a.out), md, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
