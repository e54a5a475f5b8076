#!/usr/bin/env python
"""numpy / scipy's BLAS threads during the search, side by side: OpenBLAS's default (one thread
per core) against one thread, which is what `train` now sets (train/run.py, one_blas_thread).

    python benchmarks/blas_threads.py --preset reference --out benchmarks/results/blas-threads
    python benchmarks/blas_threads.py --data FILE.jsonl --out benchmarks/results/NAME

One trunk pass (as benchmarks/probe_candidates.py: the pooled features of train, validation
and test), then the stages of `--recipe auto` that run on numpy and scikit-learn, each timed
under both settings in interleaved rounds (the best round counts): the baseline's C by 2 x 5-fold
cross-validation, and the probe search (ridge screen, logistic regression over the shortlist
and the concatenations). Both settings must choose the same candidate with the same score;
the script says so. Writes OUT.json and OUT.md with command, commit, date and machine.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from probe_candidates import pool_and_test, start

SETTINGS = {"OpenBLAS default": None, "one BLAS thread": 1}


def main(argv=None) -> int:
    a, machine, f = start(__doc__, "benchmarks/blas_threads.py", argv,
                          lambda ap: ap.add_argument("--rounds", type=int, default=2))
    from threadpoolctl import threadpool_info, threadpool_limits

    from llmclassify import baseline, probes, search

    names = f["names"]
    d = pool_and_test(f, a.seed)
    pool, y, texts, folds, val_rows = (d[k] for k in ("pool", "y", "texts", "folds", "val_rows"))

    def baseline_cv():
        C, f1, _ = search.cross_validate(
            lambda fo: baseline.out_of_fold(texts, y, len(names), fo, baseline.C_GRID), y, names, folds)
        return f"C {C}, CV macro-F1 {f1:.4f}"

    def probe_search():
        found = search.search_probes(pool, y, names, folds, val_rows, probes.candidate_probes(pool.layers),
                                     log=lambda m: None)
        best = search.choose(found, "cv_macro_f1")
        return f"{best.name}, CV macro-F1 {best.cv_macro_f1:.4f}"

    stages = {"baseline C (2 x 5 folds)": baseline_cv, "probe search": probe_search}
    seconds = {st: {s: [] for s in SETTINGS} for st in stages}
    outcome = {st: {s: [] for s in SETTINGS} for st in stages}  # what each round chose
    for r in range(a.rounds):
        for stage, run in stages.items():
            for setting, limit in SETTINGS.items():
                with threadpool_limits(limits=limit, user_api="blas"):
                    t = time.perf_counter()
                    outcome[stage][setting].append(run())
                    seconds[stage][setting].append(time.perf_counter() - t)
                print(f"round {r + 1} {stage}, {setting}: {seconds[stage][setting][-1]:.2f} s "
                      f"({outcome[stage][setting][-1]})", flush=True)
    same = all(len({x for runs in o.values() for x in runs}) == 1 for o in outcome.values())
    blas = [f"{i['internal_api']} {i.get('version')} ({i['num_threads']} threads)"
            for i in threadpool_info() if i["user_api"] == "blas"]
    report = {"machine": machine, "data": a.data, "preset": a.preset, "pool": len(y), "classes": len(names),
              "blas": blas, "seconds": seconds, "outcome": outcome, "same_outcome": same}
    out = Path(a.out)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    md = [f"# numpy / scipy BLAS threads during the search, on {a.data}" + (f" (--preset {a.preset})" if a.preset
                                                                             else ""), "",
          f"Command: `{machine['command']}`; commit {machine['commit']}; {machine['date']}.", "",
          f"Machine: {machine['summary']}. BLAS: {'; '.join(blas)}. Pool (train + validation): {len(y)} texts, "
          f"{len(names)} classes.", "",
          f"Best of {a.rounds} interleaved rounds, wall seconds.", "",
          "| stage | " + " | ".join(SETTINGS) + " | default / one thread | outcome |", "|---|---:|---:|---:|---|"]
    for stage in stages:
        best = {s: min(v) for s, v in seconds[stage].items()}
        default, one = (best[s] for s in SETTINGS)
        md.append(f"| {stage} | {default:.2f} | {one:.2f} | {default / one:.1f}x | "
                  f"{outcome[stage]['one BLAS thread'][-1]} |")
    md += ["", "Every round of both settings chose the same candidate with the same score." if same else
           "**The settings disagree on the outcome** (see the JSON)."]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
