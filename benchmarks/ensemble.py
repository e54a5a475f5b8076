#!/usr/bin/env python
"""Measured, not built yet: the search's LLM-only answer as an ensemble of its top probes.

    python benchmarks/ensemble.py --data FILE.jsonl --features F.pt --out benchmarks/results/ensemble

On cached pooled features (probe_candidates.start), the probe stage of `--recipe auto` as
`train` runs it (probe_candidates.auto_probe_stage), then the same stage with the rule under
test: the ENSEMBLE probes best by CV, their log-probabilities averaged (a mean of linear
probes' logits is one linear probe on the union of their picks, so a saved run would keep its
format), standing for every single probe, and the hybrid built on it. Why: the search's single
pick is the max of CV scores over many candidates, optimistic by selection; an average of the
top few is not. The test split is only scored. One row per data set in OUT.json / OUT.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from probe_candidates import add_row, auto_probe_stage, data_label, provenance, start

ENSEMBLE = 3


def geometric(ps) -> np.ndarray:
    from llmclassify.probes import softmax

    return softmax(np.mean([np.log(np.clip(p, 1e-12, 1)) for p in ps], 0))


def main(argv=None) -> int:
    a, machine, f = start(__doc__, "benchmarks/ensemble.py", argv)
    from threadpoolctl import threadpool_limits

    from llmclassify import search
    from llmclassify.scoring import score

    names = f["names"]
    r = auto_probe_stage(f, a.seed)
    y, y_test = r["y"], r["y_test"]
    f1 = lambda p, yy: float(score(p, yy, names)["macro_f1"])  # noqa: E731
    top = sorted([c for c in r["found"] if c.kind == "probe"], key=lambda c: -c.cv_macro_f1)[:ENSEMBLE]
    oof = geometric([c.oof for c in top])
    ens = search.Candidate("ensemble", "probe", f1(oof, y), 0.0, cost=(0,), oof=oof)
    hyb = search.hybrid_candidates(ens, r["base_oof"], y, names, r["val_rows"])
    pick = search.choose([ens, hyb], "cv_macro_f1")
    with threadpool_limits(limits=1, user_api="blas"):  # as auto_probe_stage fits
        ens_test = geometric([r["test_proba"](c) for c in top])
    pick_test = ens_test if pick is ens else hyb.hybrid_weight * ens_test + (1 - hyb.hybrid_weight) * r["base_test"]
    row = {"data": data_label(a), "machine": machine, "trunk_dtype": f.get("trunk_dtype"),
           "members": [c.name for c in top], "baseline_test": f1(r["base_test"], y_test),
           "now": {"pick": r["pick"].name, "test": f1(r["pick_test"], y_test), "llm": r["llm"].name,
                   "llm_test": f1(r["llm_test"], y_test)},
           "ensemble": {"cv": ens.cv_macro_f1, "test": f1(ens_test, y_test), "pick": pick.name,
                        "pick_cv": pick.cv_macro_f1, "pick_test": f1(pick_test, y_test),
                        "pick_accuracy": float(score(pick_test, y_test, names)["accuracy"])}}
    rows = add_row(Path(a.out), row)
    md = ["# The search's LLM-only answer as an ensemble of its top probes (measured, not built)", "",
          f"Rule under test: the {ENSEMBLE} probes best by CV macro-F1, log-probabilities averaged, stand for "
          "every single probe; the hybrid is built on them; the choice between the two by CV (search.TIE). "
          "Test macro-F1, never read by either rule.", "",
          "| data | search now: pick (test) | now: best LLM-only (test) | ensemble (CV / test) | "
          "rule under test: pick (test, accuracy) | TF-IDF (test) |", "|---|---|---|---|---|---:|"]
    for x in rows:
        n, e = x["now"], x["ensemble"]
        md.append(f"| {x['data']} | {n['pick']} ({n['test']:.4f}) | {n['llm']} ({n['llm_test']:.4f}) | "
                  f"{e['cv']:.4f} / {e['test']:.4f} | {e['pick'].replace('probe ', '')} ({e['pick_test']:.4f}, "
                  f"{e['pick_accuracy']:.2%}) | {x['baseline_test']:.4f} |")
    md += ["", "Members of the ensemble:", ""] + [f"- {x['data']}: " + "; ".join(x["members"]) for x in rows]
    md += provenance(rows)
    Path(a.out).with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
