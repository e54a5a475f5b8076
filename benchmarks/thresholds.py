#!/usr/bin/env python
"""The decision rule of a run: argmax against a threshold tuned for macro-F1 on the chosen
candidate's out-of-fold predictions over train + validation (what `--tune-threshold auto` does
where two classes are unbalanced), and on validation alone; with more than two classes, argmax
against per-class offsets added to the log-probabilities, tuned the same way (measured here,
not built into `train`). Each row also gives the out-of-fold rule's cross-fitted gain: tuned on
one half of the pool's out-of-fold predictions and scored on the other (3 x 2 folds), what the
pool itself says the rule is worth. One data set per invocation; each adds (or replaces) its row
in OUT.json / OUT.md.

    python benchmarks/thresholds.py --data sms-spam --features /tmp/default-pooled.pt --out benchmarks/results/threshold
    python benchmarks/thresholds.py --preset reference --features /tmp/ref-pooled.pt --out benchmarks/results/threshold
    python benchmarks/thresholds.py --data reuters-r8.jsonl --features /tmp/reuters-pooled.pt --out benchmarks/results/threshold

One trunk pass (as benchmarks/probe_candidates.py), then the probe stage of `--recipe auto`
as `train` runs it on one BLAS thread: the baseline's C and out-of-fold predictions, the probe
search, the hybrid, the choice, the refit on train + validation; then the test split scored
under each decision rule. The test split chooses nothing. Records command, commit, date and
machine per row.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from probe_candidates import (
    add_row,
    auto_probe_stage,
    data_label,
    start,
    write_report,
)
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold

OFFSET_GRID = np.linspace(-3, 3, 61)  # added to a class's log-probability


def tune_offsets(logp: np.ndarray, y: np.ndarray, rounds: int = 3) -> np.ndarray:
    """Per-class offsets to the log-probabilities with the best macro-F1 of their argmax:
    coordinate ascent over OFFSET_GRID, one class at a time, until a round changes nothing."""
    off, best = np.zeros(logp.shape[1]), f1_score(y, logp.argmax(1), average="macro")
    for _ in range(rounds):
        before = best
        for c in range(logp.shape[1]):
            for g in OFFSET_GRID:
                trial = off.copy()
                trial[c] = g
                score = f1_score(y, (logp + trial).argmax(1), average="macro")
                if score > best + 1e-9:
                    best, off = score, trial
        if best == before:
            break
    return off


def tuned_rule(p: np.ndarray, y: np.ndarray):
    """The out-of-fold rule tuned on probabilities `p` of labels `y`: (its parameters, labels of
    new probabilities). Two classes: a threshold on the second's; more: per-class offsets."""
    from llmclassify.calibrate import tune_threshold

    if p.shape[1] == 2:
        t = tune_threshold(p[:, 1], y, "macro-f1")[0]
        return t, lambda q: (q[:, 1] >= t).astype(int)
    off = tune_offsets(np.log(np.clip(p, 1e-9, 1)), y)
    return off, lambda q: (np.log(np.clip(q, 1e-9, 1)) + off).argmax(1)


def cross_fitted_gain(p: np.ndarray, y: np.ndarray, seeds=(0, 1, 2)) -> list[float]:
    """Macro-F1 of the tuned rule minus argmax's, each rule tuned on one half of (p, y) and
    scored on the other: 2 halves x len(seeds) splits."""
    gains = []
    for seed in seeds:
        for fit, held in StratifiedKFold(2, shuffle=True, random_state=seed).split(p, y):
            labels = tuned_rule(p[fit], y[fit])[1](p[held])
            gains.append(f1_score(y[held], labels, average="macro")
                         - f1_score(y[held], p[held].argmax(1), average="macro"))
    return gains


def main(argv=None) -> int:
    a, machine, f = start(__doc__, "benchmarks/thresholds.py", argv)
    from llmclassify import search
    from llmclassify.calibrate import tune_threshold
    from llmclassify.scoring import score

    names = f["names"]
    stage = auto_probe_stage(f, a.seed)
    pick, p_test, y, val_rows = stage["pick"], stage["pick_test"], stage["y"], stage["val_rows"]
    y_test = np.array(f["test"]["y"])
    params, oof_rule = tuned_rule(pick.oof, y)
    rules = {"argmax": (None, lambda q: q.argmax(1)),
             ("macro-F1, out of fold (train + val)" if len(names) == 2 else
              "per-class offsets, macro-F1, out of fold (train + val)"): (params, oof_rule)}
    if len(names) == 2:
        t_val = tune_threshold(pick.oof[val_rows, 1], y[val_rows], "macro-f1")[0]
        rules["macro-F1, validation only"] = (t_val, lambda q: (q[:, 1] >= t_val).astype(int))
    gains = cross_fitted_gain(pick.oof, y)
    counts = np.bincount(y, minlength=len(names))
    row = {"data": data_label(a), "machine": machine,
           "trunk_dtype": f.get("trunk_dtype"), "pool_counts": dict(zip(names, counts.tolist())),
           "auto_tunes": len(names) == 2 and search.unbalanced(y), "chosen": pick.name,
           "cross_fitted_gain": {"mean": float(np.mean(gains)), "each": [round(g, 4) for g in gains]},
           "test_n": len(y_test), "rules": {}}
    for rule, (param, labels) in rules.items():
        s = score(np.eye(len(names))[labels(p_test)], y_test, names)
        row["rules"][rule] = {"parameters": None if param is None else np.round(param, 3).tolist(),
                              "test_macro_f1": float(s["macro_f1"]), "test_accuracy": float(s["accuracy"])}
        if len(names) == 2:
            row["rules"][rule]["test_f1_" + names[1]] = float(s["per_class"][names[1]]["f1"])
    out = Path(a.out)
    rows = add_row(out, row)
    md = ["# Decision rules: the threshold of two-class runs, per-class offsets of multi-class ones", "",
          "Per data set: the search's choice (as `--recipe auto`), refitted on train + validation, scored "
          "on test under each decision rule. `auto` tunes a threshold (out of fold, macro-F1) where two classes "
          f"are unbalanced: the larger more than {search.NEAR_BALANCED}x the smaller in train + validation; it "
          "never tunes more than two classes. Threshold: the second label's probability (spam, pos) at or above "
          "it; offsets: added to each class's log-probability (in the order of the classes column) before "
          "argmax. Cross-fitted gain: the out-of-fold rule's macro-F1 minus argmax's, tuned on one half of the "
          "pool's out-of-fold predictions and scored on the other (mean of 3 x 2 halves): what the pool says "
          "the rule is worth before the test split is read. F1 (2nd class): the second label's F1.", "",
          "| data (test texts) | train + val classes | auto tunes | chosen | cross-fitted gain | rule | "
          "threshold / offsets | test macro-F1 | test acc | F1 (2nd class) |",
          "|---|---|---|---|---:|---|---|---:|---:|---:|"]
    for r in rows:
        for i, (rule, m) in enumerate(r["rules"].items()):
            classes = " / ".join(f"{k} {v}" for k, v in r["pool_counts"].items())
            head = (f"| {r['data']} ({r['test_n']}) | {classes} | {'yes' if r['auto_tunes'] else 'no'} | "
                    f"{r['chosen']} | {r['cross_fitted_gain']['mean']:+.4f} " if i == 0 else "| | | | | ")
            param = m["parameters"]
            param = "-" if param is None else f"{param:.3f}" if isinstance(param, float) else " ".join(
                f"{x:+.1f}" for x in param)
            f1 = next((f"{v:.4f}" for k, v in m.items() if k.startswith("test_f1_")), "")
            md.append(f"{head}| {rule} | {param} | {m['test_macro_f1']:.4f} | {m['test_accuracy']:.2%} | {f1} |")
    write_report(out, md, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
