"""AdamW's step for the fine-tuned top, torch's per-tensor loop against the fused kernel, side by side.

    python benchmarks/optimizer_step.py --out benchmarks/results/optimizer-step

One process, the default model with the reference recipe's trainable part (`--trainable
last-block`: the last block, the final norm and a 2-class head). The same gradients (random,
drawn once) are fed to AdamW (lr 5e-5, weight decay 0.1, as the recipe) written three ways:
torch's per-tensor loop (its CPU default, `foreach=False`), `foreach=True`, and `fused=True`
(what `optim.build_optimizer` builds), interleaved over `--repeats` rounds of `--steps` steps
(the best round counts). After the rounds, the largest difference of each way's parameters
from the per-tensor loop's (every way started from the same weights and saw the same gradients).
Writes OUT.json and OUT.md with the command, commit, date and machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from machine import describe, report_header, write_report

WAYS = {"per-tensor loop (torch's CPU default)": {"foreach": False}, "foreach": {"foreach": True},
        "fused (optim.build_optimizer)": {"fused": True}}


def trainable_top() -> list[torch.Tensor]:
    """The tensors `train --preset reference` trains, at the default model's weights."""
    from llmclassify.freeze import apply_strategy
    from llmclassify.heads import SequenceClassifier
    from llmclassify.loaders import load_model
    from llmclassify.model import Decoder
    from llmclassify.train import TrainConfig

    lm = load_model(TrainConfig().model)
    clf = SequenceClassifier(Decoder.from_state_dict(lm.config, lm.state_dict), 2)
    apply_strategy(clf, "last-block")
    return [p.detach() for p in clf.parameters() if p.requires_grad]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="benchmarks/results/optimizer-step")
    ap.add_argument("--steps", type=int, default=131, help="steps per round (131: one epoch of the reference recipe)")
    ap.add_argument("--repeats", type=int, default=5, help="interleaved rounds; the best counts")
    a = ap.parse_args()
    top = trainable_top()
    gen = torch.Generator().manual_seed(0)
    grads = [[torch.randn(p.shape, generator=gen) * 1e-3 for p in top] for _ in range(8)]
    params = {way: [torch.nn.Parameter(p.clone()) for p in top] for way in WAYS}
    opts = {way: torch.optim.AdamW(params[way], lr=5e-5, weight_decay=0.1, **kw) for way, kw in WAYS.items()}
    seconds: dict = {way: [] for way in WAYS}
    for r in range(a.repeats):
        for way, opt in opts.items():
            t = time.perf_counter()
            for s in range(a.steps):
                for p, g in zip(params[way], grads[s % len(grads)]):
                    p.grad = g
                opt.step()
            seconds[way].append(time.perf_counter() - t)
            print(f"round {r + 1}, {way}: {seconds[way][-1] * 1e3 / a.steps:.2f} ms a step", flush=True)
    loop = params[next(iter(WAYS))]
    rows = {way: {"ms_per_step": min(seconds[way]) * 1e3 / a.steps, "seconds": seconds[way],
                  "max_abs_diff_to_loop": max(float((p - q).abs().max()) for p, q in zip(params[way], loop))}
            for way in WAYS}
    m = describe()
    n = sum(p.numel() for p in top)
    report = {"command": m["command"], "commit": m["commit"], "date": m["date"], "machine": m,
              "parameters": n, "tensors": len(top), "steps": a.steps * a.repeats, "ways": rows}
    out = Path(a.out)
    first = rows[next(iter(WAYS))]["ms_per_step"]
    md = [*report_header("AdamW's step for the fine-tuned top, side by side", m),
          f"{n:,} parameters in {len(top)} tensors (the last block, the final norm and a 2-class head of the "
          f"default model); best of {a.repeats} interleaved rounds of {a.steps} steps. Difference: the largest "
          f"|parameter - the per-tensor loop's| after all {a.steps * a.repeats} steps from the same weights "
          "and gradients.", "",
          "| AdamW | ms a step | speed (per-tensor loop = 1) | max difference to the loop |", "|---|---:|---:|---:|"]
    for way, row in rows.items():
        md.append(f"| {way} | {row['ms_per_step']:.2f} | {first / row['ms_per_step']:.2f}x | "
                  f"{row['max_abs_diff_to_loop']:.2g} |")
    write_report(out, report, md)


if __name__ == "__main__":
    sys.exit(main())
