#!/usr/bin/env python
"""The folds of the search's cross-validations on one thread (before) or on the run's cores (now:
probes.fold_probabilities), side by side on the probe stage of `--recipe auto`: the baseline's
CV and refit, the probe search, the pick, and whether anything but the time changed.

    python benchmarks/fold_threads.py --preset reference --features F.pt --out benchmarks/results/fold-threads
    python benchmarks/fold_threads.py --data FILE.jsonl --features F.pt --out benchmarks/results/fold-threads

On cached pooled features (probe_candidates.start), the probe stage as `train` runs it
(probe_candidates.auto_probe_stage, numpy's BLAS on one thread), once per arm, in one process;
the test split is only scored. `identical`: every candidate's out-of-fold probabilities and the
baseline's are equal bit for bit between the arms. One row per data set in OUT.json / OUT.md.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from probe_candidates import add_row, auto_probe_stage, data_label, start, write_report


def main(argv=None) -> int:
    a, machine, f = start(__doc__, "benchmarks/fold_threads.py", argv)
    import torch

    from llmclassify import probes

    arms = {"one thread": 1, f"{torch.get_num_threads()} threads": None}  # before, now
    now = probes.FOLD_THREADS
    runs = {}
    try:
        for arm, threads in arms.items():
            probes.FOLD_THREADS = threads
            t0 = time.perf_counter()
            runs[arm] = auto_probe_stage(f, a.seed)
            runs[arm]["seconds"] = time.perf_counter() - t0
            r = runs[arm]
            print(arm, f"{r['seconds']:.1f} s (baseline {r['base_seconds']:.1f}, search {r['search_seconds']:.1f}); "
                  f"pick {r['pick'].name}", flush=True)
    finally:
        probes.FOLD_THREADS = now
    before, after = runs.values()
    identical = bool(np.array_equal(before["base_oof"], after["base_oof"]) and all(
        b.name == n.name and np.array_equal(b.oof, n.oof) for b, n in zip(before["found"], after["found"])))
    labels = lambda r: r["pick_test"].argmax(1)  # noqa: E731
    row = {"data": data_label(a), "machine": machine, "trunk_dtype": f.get("trunk_dtype"),
           "texts": len(before["y"]), "classes": len(f["names"]), "threads": list(arms),
           "identical": identical, "test_labels_differ": int((labels(before) != labels(after)).sum()),
           "arms": {arm: {"seconds": r["seconds"], "baseline_seconds": r["base_seconds"],
                          "search_seconds": r["search_seconds"], "pick": r["pick"].name,
                          "pick_cv": r["pick"].cv_macro_f1} for arm, r in runs.items()}}
    rows = add_row(Path(a.out), row)
    md = ["# The search's folds on one thread and on the run's cores, side by side", "",
          "The probe stage of `--recipe auto` on cached features, once per arm in one process (numpy's BLAS on "
          "one thread, as `train`): the TF-IDF baseline's 2 x 5-fold CV over train + validation and its refit, the "
          "probe search (ridge screen, logistic regressions over the C grid, the answers), the choice. Seconds: "
          "one thread / the cores' threads. `identical`: every out-of-fold probability equal bit for bit.", "",
          "| data (pool texts, classes) | threads | baseline s | search s | stage s | identical | pick (CV macro-F1) |",
          "|---|---|---|---|---|---|---|"]
    for x in rows:
        b, n = x["arms"].values()
        seconds = [f"{b[k]:.1f} / {n[k]:.1f} ({b[k] / n[k]:.2f}x)" for k in ("baseline_seconds", "search_seconds", "seconds")]
        md.append(f"| {x['data']} ({x['texts']}, {x['classes']}) | {' / '.join(x['threads'])} | {' | '.join(seconds)} "
                  f"| {'yes' if x['identical'] else 'NO'} ({x['test_labels_differ']} test labels differ) "
                  f"| {b['pick']} ({b['pick_cv']:.4f}){'' if b['pick'] == n['pick'] else ' / ' + n['pick']} |")
    write_report(Path(a.out), md, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
