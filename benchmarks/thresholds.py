#!/usr/bin/env python
"""The decision threshold of a two-class run: argmax against a threshold tuned for macro-F1 on
the chosen candidate's out-of-fold predictions over train + validation (what `--tune-threshold
auto` does where the classes are unbalanced), and on validation alone. One data set per
invocation; each adds (or replaces) its row in OUT.json / OUT.md.

    python benchmarks/thresholds.py --data sms-spam --features /tmp/default-pooled.pt --out benchmarks/results/threshold
    python benchmarks/thresholds.py --preset reference --features /tmp/ref-pooled.pt --out benchmarks/results/threshold

One trunk pass (as benchmarks/probe_candidates.py), then the probe stage of `--recipe auto`
as `train` runs it on one BLAS thread: the baseline's C and out-of-fold predictions, the probe
search, the hybrid, the choice, the refit on train + validation; then the test split scored
under each decision rule. The test split chooses nothing. Records command, commit, date and
machine per row.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from machine import describe
from probe_candidates import (
    add_feature_args,
    add_row,
    auto_probe_stage,
    data_label,
    pooled_features,
    provenance,
)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_feature_args(ap, "/tmp/llmclassify-thresholds")
    a = ap.parse_args(argv)
    from llmclassify import search
    from llmclassify.calibrate import tune_threshold
    from llmclassify.scoring import score

    machine = describe(sys.argv if argv is None else ["benchmarks/thresholds.py", *argv])
    f = pooled_features(a)
    names = f["names"]
    if len(names) != 2:
        raise SystemExit(f"{a.data}: {len(names)} classes; a decision threshold is for two")
    stage = auto_probe_stage(f, a.seed)
    pick, p_test, y, val_rows = stage["pick"], stage["pick_test"], stage["y"], stage["val_rows"]
    y_test = np.array(f["test"]["y"])
    rules = {"argmax (0.5)": 0.5,
             "macro-F1, out of fold (train + val)": tune_threshold(pick.oof[:, 1], y, "macro-f1")[0],
             "macro-F1, validation only": tune_threshold(pick.oof[val_rows, 1], y[val_rows], "macro-f1")[0]}
    counts = np.bincount(y, minlength=2)
    row = {"data": data_label(a), "machine": machine,
           "trunk_dtype": f.get("trunk_dtype"), "pool_counts": dict(zip(names, counts.tolist())),
           "auto_tunes": search.unbalanced(y), "chosen": pick.name,
           "test_n": len(y_test), "rules": {}}
    for rule, t in rules.items():
        s = score(np.eye(2)[(p_test[:, 1] >= t).astype(int)], y_test, names)
        row["rules"][rule] = {"threshold": float(t), "test_macro_f1": float(s["macro_f1"]),
                              "test_accuracy": float(s["accuracy"]),
                              "test_f1_" + names[1]: float(s["per_class"][names[1]]["f1"])}
    out = Path(a.out)
    rows = add_row(out, row)
    md = ["# The decision threshold of two-class runs", "",
          "Per data set: the search's choice (as `--recipe auto`), refitted on train + validation, scored "
          "on test under three decision rules. `auto` tunes (out of fold, macro-F1) where the larger class "
          f"is more than {search.NEAR_BALANCED}x the smaller in train + validation. F1 (2nd class): the second "
          "label's F1 (spam, pos).", "",
          "| data (test texts) | train + val classes | auto tunes | chosen | rule | threshold | test macro-F1 | "
          "test acc | F1 (2nd class) |", "|---|---|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        for i, (rule, m) in enumerate(r["rules"].items()):
            classes = " / ".join(f"{k} {v}" for k, v in r["pool_counts"].items())
            head = (f"| {r['data']} ({r['test_n']}) | {classes} | {'yes' if r['auto_tunes'] else 'no'} | "
                    f"{r['chosen']} " if i == 0 else "| | | | ")
            f1 = next(v for k, v in m.items() if k.startswith("test_f1_"))
            md.append(f"{head}| {rule} | {m['threshold']:.3f} | {m['test_macro_f1']:.4f} | "
                      f"{m['test_accuracy']:.2%} | {f1:.4f} |")
    md += provenance(rows)
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
