"""The trunk pass with its projections fused or not (Block.fuse_projections), side by side.

    python benchmarks/pass_fused.py --out benchmarks/results/pass-fused --texts 1494 \
        --long-data ~/.cache/llmclassify-suite/work/data/movie-reviews-max700-seed123.jsonl

One process, the default model, the trunk pass of a run (layers 8, 10, ..., 30, pooled vectors,
in `--dtype`: by default the arithmetic `auto` picks on this CPU; int8 unsmoothed here) over the
texts of benchmarks/pass_batch.py, two ways: the converted blocks as they were (q, k, v and gate,
up as five Linears) and fused (q/k/v as one Linear, gate/up as one: what
precision.reduce_in_place does now); in float32, the decoder's own blocks (which runs do not
fuse) against fused copies. Interleaved over `--repeats` rounds; reports the best round, the
median, and the median of the rounds' ratios (this machine's speed drifts within a run), and how
far each way's pooled vectors are from a float32 pass's. Then, with `--train-pairs N`, N pairs of
whole `llmclassify train` runs (the default command: auto on the built-in data, in its own
arithmetic), one process each, the two ways alternating and each pair in the other order to the
last: a speed-up of the pass alone is not yet one of a run. Writes OUT.json and OUT.md with the
command, commit, date and machine.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from machine import describe, report_header, write_report
from pass_batch import setup


def unfused_blocks(decoder, n: int, dtype: str) -> torch.nn.ModuleList:
    """The first n blocks converted as before fusion: precision.reduced_blocks with fusing left out."""
    from llmclassify import model
    from llmclassify.precision import reduced_blocks

    fuse, model.Block.fuse_projections = model.Block.fuse_projections, lambda self: None
    try:
        return reduced_blocks(decoder, n, dtype)
    finally:
        model.Block.fuse_projections = fuse


# One `llmclassify train` run: argv[1] the way ("separate" patches fusing out), argv[2] its run
# directory; prints the run's metrics.json.
TRAIN_CHILD = (
    "import sys\n"
    "from llmclassify import cli, model\n"
    "if sys.argv[1] == 'separate':\n"
    "    model.Block.fuse_projections = lambda self: None\n"
    "rc = cli.main(['train', '--output', sys.argv[2], '--overwrite', '--quiet'])\n"
    "sys.exit(rc)\n"
)


def train_pairs(n: int) -> list[dict]:
    """`n` pairs of default train runs, the two ways alternating (ABBA...): each run's seconds by
    stage, its choice and its test figures."""
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n):
            for way in ("separate", "fused") if i % 2 == 0 else ("fused", "separate"):
                out = Path(tmp) / way
                subprocess.run([sys.executable, "-c", TRAIN_CHILD, way, str(out)], check=True)
                m = json.loads((out / "metrics.json").read_text())
                test = m["splits"]["test"]
                runs.append({"pair": i + 1, "way": way, "seconds": m["seconds"], "chosen": m["recipe"]["chosen"],
                             "test_macro_f1": test["macro_f1"], "test_accuracy": test["accuracy"]})
                print(f"pair {i + 1}, {way}: trunk pass {m['seconds']['trunk_pass']:.1f} s, "
                      f"run {m['seconds']['total']:.1f} s", flush=True)
    return runs


def train_table(runs: list[dict]) -> list[str]:
    """The train runs as markdown: each pair's pass and whole-run seconds, the ratios, the median."""
    md = ["| pair | trunk pass s, separate / fused | ratio | run s, separate / fused | ratio | test macro-F1 / "
          "accuracy, separate / fused |", "|---:|---:|---:|---:|---:|---|"]
    ratios = {"trunk_pass": [], "total": []}
    for i in sorted({r["pair"] for r in runs}):
        sep, fus = (next(r for r in runs if r["pair"] == i and r["way"] == w) for w in ("separate", "fused"))
        cells = []
        for stage in ratios:
            ratios[stage].append(sep["seconds"][stage] / fus["seconds"][stage])
            cells += [f"{sep['seconds'][stage]:.1f} / {fus['seconds'][stage]:.1f}", f"{ratios[stage][-1]:.3f}x"]
        md.append(f"| {i} | {' | '.join(cells)} | {sep['test_macro_f1']:.4f} / {sep['test_accuracy']:.2%}, "
                  f"{fus['test_macro_f1']:.4f} / {fus['test_accuracy']:.2%} |")
    md.append(f"| median | | {statistics.median(ratios['trunk_pass']):.3f}x | | "
              f"{statistics.median(ratios['total']):.3f}x | |")
    return md


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="benchmarks/results/pass-fused")
    ap.add_argument("--train-pairs", type=int, default=0, help="pairs of whole default train runs (ABBA)")
    ap.add_argument("--dtype", choices=["float32", "bfloat16", "int8"],
                    help="the pass's arithmetic (default: auto's on this CPU); float32 blocks are never fused "
                         "by a run: this measures whether they should be")
    a, dec, sets, pad, layers = setup(ap)
    from llmclassify.features import trunk_pass
    from llmclassify.precision import choose_trunk_dtype, reduced_blocks

    dtype = a.dtype or choose_trunk_dtype(torch.device("cpu"))
    depth = max(layers)
    if dtype == "float32":  # the decoder's own blocks (never fused), against fused copies
        fused = torch.nn.ModuleList(copy.deepcopy(b) for b in dec.blocks[:depth])
        for block in fused:
            block.fuse_projections()
        ways = {"separate projections (now)": dec.blocks[:depth], "fused q/k/v and gate/up": fused}
    else:
        ways = {"separate projections (before)": unfused_blocks(dec, depth, dtype),
                "fused q/k/v and gate/up (now)": reduced_blocks(dec, depth, dtype)}
    results: dict = {}
    for name, (ids, w) in sets.items():
        ref, _ = trunk_pass(dec, ids, pad, layers=layers, window=w, dtype="float32", progress=False)
        ref = ref.data.float()
        res = results[name] = {"texts": len(ids), "tokens": sum(map(len, ids)), "window": w,
                               "ways": {way: {"seconds": []} for way in ways}}
        for r in range(a.repeats):
            for way, blocks in ways.items():
                t = time.perf_counter()
                got, _ = trunk_pass(dec, ids, pad, layers=layers, window=w, dtype=dtype, progress=False, blocks=blocks)
                s = time.perf_counter() - t
                res["ways"][way]["seconds"].append(s)
                got = got.data.float()
                res["ways"][way]["distance_to_float32"] = float((got - ref).norm() / ref.norm())
                print(f"round {r + 1} {name}, {way}: {s:.2f} s", flush=True)
        before, now = (res["ways"][w]["seconds"] for w in ways)
        res["ratio_per_round"] = [b / n for b, n in zip(before, now)]
    runs = train_pairs(a.train_pairs)
    m = describe()
    report = {"command": m["command"], "commit": m["commit"], "date": m["date"], "machine": m, "trunk_dtype": dtype,
              "layers": layers, "sets": results, "train_runs": runs}
    out = Path(a.out)
    md = [*report_header("Trunk pass: projections fused or separate, side by side", m),
          f"Trunk arithmetic {dtype}, layers {','.join(map(str, layers))} kept; {a.repeats} interleaved rounds. "
          "Speed: the before way's seconds over this way's, best round against best round; the median of "
          "the rounds' own ratios beside it. Distance: |pooled - pooled of a float32 pass| / |pooled of a "
          "float32 pass|, every layer kept.", "",
          "| texts | way | best s | median s | speed (best) | speed (median of rounds) | distance to float32 |",
          "|---|---|---:|---:|---:|---:|---:|"]
    for name, res in results.items():
        first = min(next(iter(res["ways"].values()))["seconds"])
        for i, (way, r) in enumerate(res["ways"].items()):
            per_round = statistics.median(res["ratio_per_round"]) if i else 1.0
            md.append(f"| {name} ({res['texts']} texts, {res['tokens']:,} tokens) | {way} | {min(r['seconds']):.2f} | "
                      f"{statistics.median(r['seconds']):.2f} | {first / min(r['seconds']):.3f}x | {per_round:.3f}x | "
                      f"{r['distance_to_float32']:.4f} |")
    if runs:
        md += ["", "Whole `llmclassify train` runs (default command), one process each; seconds from each run's "
               "metrics.json:", "", *train_table(runs), "", "Chosen: " + "; ".join(sorted({r["chosen"] for r in runs}))]
    write_report(out, report, md)


if __name__ == "__main__":
    sys.exit(main())
