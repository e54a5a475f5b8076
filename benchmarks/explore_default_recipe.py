"""Which recipe gives the best spam F1 (default split) and accuracy (the book's split)?

Runs several TrainConfig variants in one process; variants with the same frozen trunk share
its cache (train(shared_caches=...)), so each extra variant costs only its fit. Prints one
line per variant and writes benchmarks/results/default_recipe.md.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from llmclassify.train import TrainConfig, train, with_preset

REFERENCE = with_preset(TrainConfig(), "reference").to_dict()

VARIANTS = {
    "book split, visible eos padding to longest train text (--preset reference --padding longest-train)":
        REFERENCE | {"padding": "longest-train"},
    "book split, last real token, final epoch (--preset reference)": REFERENCE,
    "book split, last real token, best epoch by val loss": REFERENCE | {"keep_best": True},
    "last-block, class weights auto (default)": {},
    "last-block, no class weights": {"class_weights": "none"},
    "last-block, auto, threshold tuned (F1)": {"tune_threshold": "f1"},
    "last-block, none, threshold tuned (F1)": {"class_weights": "none", "tune_threshold": "f1"},
    "last-2-blocks, auto": {"trainable": "last-2-blocks"},
    "last-2-blocks, none, threshold tuned (F1)": {"trainable": "last-2-blocks", "class_weights": "none",
                                                  "tune_threshold": "f1"},
}


def main(out_root: str = "runs/explore") -> None:
    caches: dict = {}
    rows = []
    for name, over in VARIANTS.items():
        t = time.perf_counter()
        cfg = TrainConfig(**(TrainConfig().to_dict() | over | {
            "output_dir": f"{out_root}/{len(rows)}", "overwrite": True, "progress": False}))
        s = train(cfg, shared_caches=caches)
        te = s["splits"]["test"]
        row = (name, te["accuracy"], te["per_class"]["spam"]["f1"], te["balanced_accuracy"],
               time.perf_counter() - t)
        rows.append(row)
        print(f"{name:60} acc {row[1]:.4f}  spam F1 {row[2]:.4f}  bal acc {row[3]:.4f}  ({row[4]:.0f} s)",
              flush=True)
    lines = ["| recipe | test accuracy | spam F1 | balanced accuracy | seconds (cache shared) |",
             "|---|---|---|---|---|"]
    lines += [f"| {n} | {100 * a:.2f}% | {f:.4f} | {100 * b:.2f}% | {sec:.0f} |" for n, a, f, b, sec in rows]
    Path("benchmarks/results").mkdir(parents=True, exist_ok=True)
    Path("benchmarks/results/default_recipe.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
