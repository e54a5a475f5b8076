#!/usr/bin/env python
"""How far apart a saved run and its TF-IDF baseline are on the run's test split, and how sure
that is: `llmclassify evaluate`'s figures (evaluate.paired_difference: the macro-F1 gap, its
95% interval from 2,000 paired bootstrap resamples of the test texts, the texts only one of the
two gets right and McNemar's exact p). One row per run, each from its own invocation.

    python benchmarks/baseline_gap.py --run RUN_DIR --label NAME --out benchmarks/results/baseline-gap

Why: the suite's differences go down to one text (reuters-r8 subsampled -0.0003, the Dutch
reviews -0.0001); a figure without its noise reads as a verdict it is not.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from machine import describe
from probe_candidates import add_row, write_report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="a run directory (its own test split is scored)")
    ap.add_argument("--label", required=True, help="the row's name")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    from llmclassify.predict import evaluate_run, read_metrics

    _, m = evaluate_run(a.run)
    saved = read_metrics(Path(a.run)) or {}
    d = m["baseline_difference"]
    row = {"data": a.label, "machine": describe(sys.argv if argv is None else ["benchmarks/baseline_gap.py", *argv]),
           "trunk_dtype": saved.get("trunk_dtype"), "chosen": saved["recipe"]["chosen"],
           "macro_f1": m["macro_f1"], "accuracy": m["accuracy"], "baseline_macro_f1": m["baseline"]["macro_f1"],
           "baseline_accuracy": m["baseline"]["accuracy"], "difference": d}
    rows = add_row(Path(a.out), row)
    md = ["# The gap to the TF-IDF baseline, with its noise", "",
          "`llmclassify evaluate RUN` on the run's own test split: macro-F1 of the run and of its TF-IDF baseline "
          "(fitted on the same train + validation texts), the gap, its 95% interval from 2,000 paired bootstrap "
          "resamples of the test texts, the texts only one of them gets right, and McNemar's exact p on those. "
          "`benchmarks/baseline_gap.py`.", "",
          "| run (test texts) | chosen | run macro-F1 / acc | TF-IDF macro-F1 / acc | gap | 95% interval | "
          "right only: run / TF-IDF | McNemar p |", "|---|---|---|---|---:|---|---:|---:|"]
    for r in rows:
        g = r["difference"]
        md.append(f"| {r['data']} ({g['n']:,}) | {r['chosen']} | {r['macro_f1']:.4f} / {r['accuracy']:.2%} | "
                  f"{r['baseline_macro_f1']:.4f} / {r['baseline_accuracy']:.2%} | {g['macro_f1_difference']:+.4f} | "
                  f"{g['interval'][0]:+.4f} to {g['interval'][1]:+.4f} | {g['a_only_right']} / {g['b_only_right']} | "
                  f"{g['mcnemar_p']:.2g} |")
    write_report(Path(a.out), md, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
