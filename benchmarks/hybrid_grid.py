#!/usr/bin/env python
"""The hybrid's weight grid: the weights `train` tries now (search.HYBRID_WEIGHTS) against the
grid before (BEFORE), side by side on the same features, folds, LLM-only answer and baseline.

    python benchmarks/hybrid_grid.py --data FILE.jsonl --features F.pt --out benchmarks/results/hybrid-grid

On cached pooled features (probe_candidates.start), the probe stage of `--recipe auto` as
`train` runs it (probe_candidates.auto_probe_stage); then the same choice with the hybrid
built on the grid before. Each pick refitted on train + validation and scored on test (the test
split is only scored), beside the baseline's CV and test macro-F1. One row per data set in
OUT.json / OUT.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

from probe_candidates import add_row, auto_probe_stage, data_label, start, write_report

BEFORE = (0.3, 0.5, 0.7)


def main(argv=None) -> int:
    a, machine, f = start(__doc__, "benchmarks/hybrid_grid.py", argv)
    from threadpoolctl import threadpool_limits

    from llmclassify import search
    from llmclassify.scoring import score

    names = f["names"]
    r = auto_probe_stage(f, a.seed)
    y, y_test = r["y"], r["y_test"]
    hybrid_before = search.hybrid_candidates(r["llm"], r["base_oof"], y, names, r["val_rows"], weights=BEFORE)
    pick_before = search.choose([c for c in r["found"] if c.kind != "hybrid"] + [hybrid_before], "cv_macro_f1")
    with threadpool_limits(limits=1, user_api="blas"):  # as auto_probe_stage fits
        p_before = r["test_proba"](pick_before)

    def scored(c, p) -> dict:
        s = score(p, y_test, names)
        return {"name": c.name, "kind": c.kind, "cv": c.cv_macro_f1, "test": float(s["macro_f1"]),
                "accuracy": float(s["accuracy"])}

    row = {"data": data_label(a), "machine": machine, "trunk_dtype": f.get("trunk_dtype"),
           "grids": {"before": list(BEFORE), "now": list(search.HYBRID_WEIGHTS)},
           "baseline": {"cv": r["base_cv"], "test": float(score(r["base_test"], y_test, names)["macro_f1"])},
           "llm": scored(r["llm"], r["llm_test"]),
           "before": scored(pick_before, p_before), "now": scored(r["pick"], r["pick_test"])}
    rows = add_row(Path(a.out), row)
    md = ["# The hybrid's weight on the LLM-only answer: the grid before and the grid now",
          "", f"Weights tried (on the probe's probabilities, the rest on TF-IDF's): before {BEFORE}, now "
          f"{search.HYBRID_WEIGHTS}, chosen by out-of-fold macro-F1 over train + validation, as `train` does. The pick: "
          "the best CV macro-F1 of the LLM-only answer and its hybrid (search.TIE to the cheaper). Test macro-F1 / "
          "accuracy, never read by either rule.", "",
          "| data | before: pick | CV | test | now: pick | CV | test | LLM-only CV / test | TF-IDF CV / test |",
          "|---|---|---:|---:|---|---:|---:|---:|---:|"]
    for x in rows:
        b, n, llm, base = x["before"], x["now"], x["llm"], x["baseline"]
        md.append(f"| {x['data']} | {b['name']} | {b['cv']:.4f} | {b['test']:.4f} / {b['accuracy']:.2%} "
                  f"| {n['name']} | {n['cv']:.4f} | {n['test']:.4f} / {n['accuracy']:.2%} "
                  f"| {llm['cv']:.4f} / {llm['test']:.4f} | {base['cv']:.4f} / {base['test']:.4f} |")
    write_report(Path(a.out), md, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
