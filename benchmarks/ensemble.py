#!/usr/bin/env python
"""The search's LLM-only answer: its single best probe (the rule before) against the ensemble of
its top probes (the rule `train` follows now, search.ensemble_candidate), side by side on the
same features, folds and baseline.

    python benchmarks/ensemble.py --data FILE.jsonl --features F.pt --out benchmarks/results/ensemble-built

On cached pooled features (probe_candidates.start), the probe stage of `--recipe auto` as
`train` runs it (probe_candidates.auto_probe_stage: the ensemble stands for every single
probe, the hybrid is built on it, the choice by CV); then the same stage under the rule before:
the single probes choosable, the hybrid built on the best of them. Each pick refitted on train
+ validation and scored on test, at argmax and under the decision threshold `train`'s
`--tune-threshold auto` would apply (two unbalanced classes: macro-F1 on the pick's
out-of-fold predictions). The test split is only scored. One row per data set in OUT.json / OUT.md.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from probe_candidates import (
    add_row,
    auto_probe_stage,
    data_label,
    start,
    tuned_threshold_test,
    write_report,
)


def main(argv=None) -> int:
    a, machine, f = start(__doc__, "benchmarks/ensemble.py", argv)
    from threadpoolctl import threadpool_limits

    from llmclassify import search
    from llmclassify.scoring import score

    names = f["names"]
    r = auto_probe_stage(f, a.seed)
    y, y_test = r["y"], r["y_test"]

    def scored(c, p=None) -> dict:
        """Candidate `c` on test; `p`: its test probabilities where auto_probe_stage has them."""
        if p is None:
            with threadpool_limits(limits=1, user_api="blas"):  # as auto_probe_stage fits
                p = r["test_proba"](c)
        s = score(p, y_test, names)
        out = {"name": c.name, "kind": c.kind, "cv": c.cv_macro_f1, "test": float(s["macro_f1"]),
               "accuracy": float(s["accuracy"])}
        tuned = tuned_threshold_test(c.oof, p, y, y_test, names)
        if tuned:
            t, st = tuned
            out["threshold"] = {"t": t, "test": float(st["macro_f1"]), "accuracy": float(st["accuracy"]),
                                "f1_" + names[1]: float(st["per_class"][names[1]]["f1"])}
        return out

    singles = [replace(c, choosable=True) for c in r["found"] if c.kind == "probe" and not c.members]
    single = search.choose(singles, "cv_macro_f1")
    before = singles + [search.hybrid_candidates(single, r["base_oof"], y, names, r["val_rows"])]
    row = {"data": data_label(a), "machine": machine, "trunk_dtype": f.get("trunk_dtype"),
           "baseline_test": float(score(r["base_test"], y_test, names)["macro_f1"]),
           "before": {"pick": scored(search.choose(before, "cv_macro_f1")), "llm": scored(single)},
           "now": {"pick": scored(r["pick"], r["pick_test"]), "llm": scored(r["llm"], r["llm_test"])}}
    rows = add_row(Path(a.out), row)
    md = ["# The search's LLM-only answer: its best single probe (before) or the ensemble of its top probes (now)",
          "", f"Now (`train`): the {search.ENSEMBLE} probes best by CV macro-F1, one per set of features, their "
          "log-probabilities averaged, stand for every single probe; the hybrid is built on that. Before: the "
          "best single probe, the hybrid built on it. The pick: the best CV macro-F1 of the LLM-only answer and "
          "its hybrid (search.TIE to the cheaper). Test macro-F1 / accuracy, never read by either rule; "
          "`thr`: under the threshold `--tune-threshold auto` tunes (two unbalanced classes).", "",
          "| data | before: pick | test | now: pick | test | LLM-only before / now (test) | TF-IDF |",
          "|---|---|---|---|---|---|---:|"]

    def fig(x):
        t = x.get("threshold")
        return f"{x['test']:.4f} / {x['accuracy']:.2%}" + (
            f" (thr {t['t']:.3f}: {t['test']:.4f} / {t['accuracy']:.2%})" if t else "")

    for x in rows:
        b, n = x["before"], x["now"]
        md.append(f"| {x['data']} | {b['pick']['name']} | {fig(b['pick'])} | {n['pick']['name']} | {fig(n['pick'])} "
                  f"| {b['llm']['test']:.4f} / {n['llm']['test']:.4f} | {x['baseline_test']:.4f} |")
    write_report(Path(a.out), md, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
