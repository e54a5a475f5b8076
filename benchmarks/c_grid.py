#!/usr/bin/env python
"""The probes' C grid, fixed against grown past its ends (search.cross_validate_c, EDGE_DECADES):
the choice `--recipe auto` makes under each, and its test score (the baseline keeps its fixed
grid in both; `results/c-grid-both-grown.md` has it grown too, from commit f1883c1). One data set
per invocation; each adds (or replaces) its row in OUT.json / OUT.md.

    python benchmarks/c_grid.py --data sms-spam --features /tmp/default-pooled.pt --out benchmarks/results/c-grid
    python benchmarks/c_grid.py --data FILE.jsonl --features /tmp/x.pt --out benchmarks/results/c-grid

One trunk pass (as benchmarks/probe_candidates.py), then the probe stage of `--recipe auto` as
`train` runs it (probe_candidates.auto_probe_stage: baseline, probe search, hybrid, choice,
refit on train + validation) twice: with EDGE_DECADES = 0 (probes.C_GRID as it is) and with
the library's value. The test split chooses nothing. Records command,
commit, date and machine per row.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from probe_candidates import (
    add_row,
    auto_probe_stage,
    baseline_stage,
    data_label,
    start,
    write_report,
)


def probe_c(c):
    """A candidate's C, or its members' (an ensemble fits each member with its own)."""
    return [m.C for m in c.members] if c.members else c.C


def shown_c(C) -> str:
    return "/".join(f"{x:g}" for x in C) if isinstance(C, list) else f"{C:g}"


def main(argv=None) -> int:
    a, machine, f = start(__doc__, "benchmarks/c_grid.py", argv)
    from llmclassify import baseline, probes, search
    from llmclassify.scoring import score

    names, y_test = f["names"], np.array(f["test"]["y"])
    grown = search.EDGE_DECADES
    settings = {f"fixed ({', '.join(f'{c:g}' for c in probes.C_GRID)})": 0,
                f"grown up to {grown} decades past an end": grown}
    row = {"data": data_label(a), "machine": machine,
           "trunk_dtype": f.get("trunk_dtype"), "test_n": len(y_test), "settings": {}}
    base = baseline_stage(f, a.seed)  # the same under either grid: fitted once
    for label, decades in settings.items():
        search.EDGE_DECADES = decades
        st = auto_probe_stage(f, a.seed, base)
        m = {k: float(score(st[k + "_test"], y_test, names)["macro_f1"]) for k in ("pick", "llm", "base")}
        row["settings"][label] = {
            "chosen": st["pick"].name, "chosen_C": probe_c(st["pick"]), "chosen_cv": st["pick"].cv_macro_f1,
            "chosen_test_macro_f1": m["pick"], "llm_only": st["llm"].name, "llm_only_C": probe_c(st["llm"]),
            "llm_only_cv": st["llm"].cv_macro_f1, "llm_only_test_macro_f1": m["llm"], "baseline_C": st["base_C"],
            "baseline_cv": st["base_cv"], "baseline_test_macro_f1": m["base"],
            "search_seconds": st["search_seconds"]}
    search.EDGE_DECADES = grown
    out = Path(a.out)
    rows = add_row(out, row)
    md = ["# The probes' C grid: fixed, or grown past an end", "",
          "Per data set, the choice of `--recipe auto`'s probe stage (at argmax: no decision threshold) and "
          "its test macro-F1, the best LLM-only probe's, and the TF-IDF baseline's, under each setting. CV: "
          "out-of-fold macro-F1 over train + validation, what the choice reads. Search seconds: the probe "
          "search and the hybrid, on one BLAS thread.", "",
          f"The baseline's C comes from its fixed grid ({', '.join(f'{c:g}' for c in baseline.C_GRID)}) in both.", "",
          "| data (test texts) | probes' C grid | chosen (C) | CV | test macro-F1 | best LLM-only (C) | CV | test | "
          "baseline C | baseline CV | baseline test | search s |",
          "|---|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        for i, (label, s) in enumerate(r["settings"].items()):
            head = f"| {r['data']} ({r['test_n']}) " if i == 0 else "| "
            md.append(f"{head}| {label} | {s['chosen']} ({shown_c(s['chosen_C'])}) | {s['chosen_cv']:.4f} | "
                      f"{s['chosen_test_macro_f1']:.4f} | {s['llm_only']} ({shown_c(s['llm_only_C'])}) | "
                      f"{s['llm_only_cv']:.4f} | {s['llm_only_test_macro_f1']:.4f} | {s['baseline_C']:g} | "
                      f"{s['baseline_cv']:.4f} | {s['baseline_test_macro_f1']:.4f} | {s['search_seconds']:.1f} |")
    write_report(out, md, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
