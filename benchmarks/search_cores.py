#!/usr/bin/env python
"""The probe search on one core and on two: where the second core's time goes.

    python benchmarks/search_cores.py --features F.pt --out benchmarks/results/search-cores

On cached pooled features (probe_candidates.start), the probe search of `--recipe auto` as
`train` runs it (probe_candidates.auto_probe_stage, one BLAS thread; the baseline fitted once
beforehand and shared) with torch's thread count 1 and 2: cores.map_forked forks that many
workers for the folds, the ridge screen and the refit. Alternated over `--repeats` rounds. Per
arm: wall seconds of the search, and CPU seconds of the process and of its workers
(getrusage's RUSAGE_SELF and RUSAGE_CHILDREN). If two workers only shared the work, the CPU
seconds would stay and the wall halve; CPU seconds that grow with the second worker are the
two cores slowing each other (shared caches, memory bandwidth), wall above CPU / 2 is waiting
(the parent's serial parts, forks). Also what a fork costs here: cores.map_forked of a
function that does nothing, on two workers in the same process (wall and the workers' CPU
seconds per call), and how many calls one search makes. One row per data set in OUT.json /
OUT.md.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
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

CORES = (1, 2)


def cpu_seconds() -> tuple[float, float]:
    """(this process's, its ended children's) user + system CPU seconds so far."""
    own, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime


def fork_cost(calls: int = 20) -> dict:
    """Wall and workers' CPU seconds of one cores.map_forked call that does nothing (two items,
    so two workers), the mean of `calls`."""
    from llmclassify.cores import map_forked

    kids0, t0 = cpu_seconds()[1], time.perf_counter()
    for _ in range(calls):
        map_forked(lambda i: i, [0, 1])
    return {"wall": (time.perf_counter() - t0) / calls, "cpu_workers": (cpu_seconds()[1] - kids0) / calls}


def main(argv=None) -> int:
    a, machine, f = start(__doc__, "benchmarks/search_cores.py", argv,
                          more_args=lambda ap: ap.add_argument("--repeats", type=int, default=3))
    import torch

    from llmclassify import search

    base = baseline_stage(f, a.seed)
    calls = []
    counted = search.map_forked
    search.map_forked = lambda fn, items: calls.append(len(items)) or counted(fn, items)
    arms: dict = {c: [] for c in CORES}
    picks = {}
    for r in range(a.repeats):
        for cores in CORES:
            torch.set_num_threads(cores)
            own0, kids0 = cpu_seconds()
            t0 = time.perf_counter()
            out = auto_probe_stage(f, a.seed, base)
            wall = time.perf_counter() - t0
            own1, kids1 = cpu_seconds()
            arms[cores].append({"wall": wall, "search": out["search_seconds"], "cpu_self": own1 - own0,
                                "cpu_workers": kids1 - kids0})
            picks[cores] = (out["pick"].name, out["pick_test"])
            print(f"round {r + 1}, {cores} core(s): stage {wall:.1f} s, search {out['search_seconds']:.1f} s, "
                  f"CPU {own1 - own0:.1f} + workers {kids1 - kids0:.1f} s", flush=True)
    search.map_forked = counted
    torch.set_num_threads(2)
    fork = fork_cost()
    same = picks[1][0] == picks[2][0] and np.array_equal(picks[1][1], picks[2][1])
    median = {str(c): {k: statistics.median(x[k] for x in arms[c]) for k in arms[c][0]} for c in CORES}  # JSON's keys
    row = {"data": data_label(a), "machine": machine, "trunk_dtype": f.get("trunk_dtype"), "pool": len(f["train"]["y"])
           + len(f["val"]["y"]), "classes": len(f["names"]), "pick": picks[1][0], "same_pick_and_test": bool(same),
           "rounds": {str(c): arms[c] for c in CORES}, "median": median,
           "map_calls_per_search": len(calls) // (a.repeats * len(CORES)), "fork": fork}
    rows = add_row(Path(a.out), row)
    md = ["# The probe search on one core and on two: wall and CPU seconds", "",
          "The probe stage of `--recipe auto` on cached features (baseline fitted beforehand), torch's thread count "
          "1 and 2 (cores.map_forked's workers), alternated; medians over the rounds. CPU: the process's own + its "
          "workers'. `CPU 2 / CPU 1` above 1: the cores slow each other; `wall 2 x 2 / CPU 2` above 1: waiting. "
          "Forks: map_forked calls per search x one empty call's wall and workers' CPU ms (two workers).", "",
          "| data (pool, classes) | stage wall 1 / 2 cores | speed-up | CPU s 1 core (own + workers) | CPU s 2 cores "
          "(own + workers) | CPU 2 / CPU 1 | wall 2 x 2 / CPU 2 | forks | same pick and test |",
          "|---|---|---:|---|---|---:|---:|---|---|"]
    for x in rows:
        one, two = x["median"]["1"], x["median"]["2"]
        cpu1, cpu2 = one["cpu_self"] + one["cpu_workers"], two["cpu_self"] + two["cpu_workers"]
        md.append(f"| {x['data']} ({x['pool']:,}, {x['classes']}) | {one['wall']:.1f} / {two['wall']:.1f} s | "
                  f"{one['wall'] / two['wall']:.2f}x | {cpu1:.1f} ({one['cpu_self']:.1f} + {one['cpu_workers']:.1f}) | "
                  f"{cpu2:.1f} ({two['cpu_self']:.1f} + {two['cpu_workers']:.1f}) | {cpu2 / cpu1:.2f} | "
                  f"{2 * two['wall'] / cpu2:.2f} | {x['map_calls_per_search']} x {1e3 * x['fork']['wall']:.0f} ms wall, "
                  f"{1e3 * x['fork']['cpu_workers']:.0f} ms CPU | {'yes' if x['same_pick_and_test'] else 'no'} |")
    write_report(Path(a.out), md, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
