"""Attention in the bfloat16 trunk pass, side by side on this CPU: PyTorch's fused kernel
(`F.scaled_dot_product_attention`), two matmuls with the scores copied to float32 for the
softmax (`model.matmul_attention` before), and two matmuls with everything in bfloat16 (now;
what the pass runs up to `model.MATMUL_ATTENTION_MAX_TOKENS`).

    python benchmarks/attention.py --out benchmarks/results/attention-softmax \
        --long-data ~/.cache/llmclassify-suite/work/data/movie-reviews-max700-seed123.jsonl

One process, the default model, the trunk pass of a run (layers 8, 10, ..., 30, pooled vectors)
in bfloat16 over the texts of benchmarks/pass_batch.py (SMS texts whole; with `--long-data`,
long texts in windows of the default `--window`), each way interleaved over `--repeats` rounds;
the best round counts, and the median of the rounds' ratios (this machine's speed drifts within
a run). Also how far each way's pooled vectors are from a float32 pass's
(relative Frobenius distance over every layer kept) and whether two ways' vectors are the same
bit for bit. Writes OUT.json and OUT.md with the command, commit, date and machine. Only
meaningful on a CPU with AVX512-BF16 or AMX (elsewhere bfloat16 is emulated and no run uses it).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from machine import describe, report_header, write_report
from pass_batch import setup

WAYS = ("fused (SDPA)", "matmul, float32 softmax (before)", "matmul (now)")


def float32_softmax_attention(q, k, v, bias):
    """model.matmul_attention before: the scores copied to float32 for scale, bias and softmax."""
    B, H, T, hd = q.shape
    n_kv = k.shape[1]
    group = H // n_kv
    scores = torch.matmul(q.reshape(B, n_kv, group * T, hd), k.transpose(-1, -2)).view(B, n_kv, group, T, T)
    p = torch.softmax(scores.float().mul_(hd**-0.5).add_(bias), dim=-1).to(q.dtype)
    return torch.matmul(p.view(B, n_kv, group * T, T), v).view(B, H, T, hd)


def speedup(rates: dict, way: str, other: str) -> tuple[float, float]:
    """`way` over `other`: best round over best round, and the median of the rounds' ratios."""
    return max(rates[way]) / max(rates[other]), statistics.median(a / b for a, b in zip(rates[way], rates[other]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="benchmarks/results/attention-softmax")
    a, dec, sets, pad, layers = setup(ap)
    from llmclassify import model
    from llmclassify.features import trunk_pass
    from llmclassify.precision import reduced_blocks

    now_fn, now_limit = model.matmul_attention, model.MATMUL_ATTENTION_MAX_TOKENS
    ways = {"fused (SDPA)": (now_fn, 0), "matmul, float32 softmax (before)": (float32_softmax_attention, now_limit),
            "matmul (now)": (now_fn, now_limit)}
    blocks = reduced_blocks(dec, max(layers), "bfloat16")

    def run(ids, window, way, dtype="bfloat16"):
        model.matmul_attention, model.MATMUL_ATTENTION_MAX_TOKENS = ways[way]
        try:
            t = time.perf_counter()
            f, _ = trunk_pass(dec, ids, pad, layers=layers, window=window, dtype=dtype, progress=False,
                              blocks=blocks if dtype == "bfloat16" else None)
            return time.perf_counter() - t, f.data.float()
        finally:
            model.matmul_attention, model.MATMUL_ATTENTION_MAX_TOKENS = now_fn, now_limit

    ref = {name: run(ids, window, "matmul (now)", "float32")[1] for name, (ids, window) in sets.items()}
    rates: dict = {name: {w: [] for w in WAYS} for name in sets}
    feats: dict = {name: {} for name in sets}
    for r in range(a.repeats):
        for name, (ids, window) in sets.items():
            for way in WAYS:
                s, feats[name][way] = run(ids, window, way)
                rates[name][way].append(sum(map(len, ids)) / s)
                print(f"round {r + 1} {name}, {way}: {rates[name][way][-1]:.0f} tokens/s", flush=True)
    m = describe()
    report = {"command": m["command"], "commit": m["commit"], "date": m["date"], "machine": m, "layers": layers,
              "matmul_attention_max_tokens": now_limit, "sets": {}}
    md = [*report_header("Attention in the bfloat16 trunk pass: fused kernel, float32 softmax or bfloat16, "
                         "side by side", m),
          f"Layers {','.join(map(str, layers))} kept; best of {a.repeats} interleaved rounds. Distance: relative "
          "Frobenius distance of the pooled vectors (mean and last token, every layer kept) from a float32 pass's.",
          "",
          "| texts | " + " | ".join(f"{w} tokens/s" for w in WAYS) + " | now / before (median of rounds) | "
          "now / fused (median) | distance fused / before / now | now = before bit for bit |",
          "|---|" + "---:|" * (len(WAYS) + 2) + "---|---|"]
    for name, (ids, window) in sets.items():
        best = {w: max(rates[name][w]) for w in WAYS}
        dist = {w: ((feats[name][w] - ref[name]).norm() / ref[name].norm()).item() for w in WAYS}
        same = torch.equal(feats[name]["matmul (now)"], feats[name]["matmul, float32 softmax (before)"])
        over_before, over_fused = (speedup(rates[name], "matmul (now)", other)
                                   for other in ("matmul, float32 softmax (before)", "fused (SDPA)"))
        report["sets"][name] = {"texts": len(ids), "tokens": sum(map(len, ids)), "window": window,
                                "tokens_per_s": rates[name], "distance_from_float32": dist,
                                "now_over_before_best_median": over_before, "now_over_fused_best_median": over_fused,
                                "now_equals_before": same}
        md.append(f"| {name} ({len(ids)} texts, {sum(map(len, ids)):,} tokens) | "
                  + " | ".join(f"{best[w]:,.0f}" for w in WAYS)
                  + f" | {over_before[0]:.3f}x ({over_before[1]:.3f}x) | {over_fused[0]:.2f}x ({over_fused[1]:.2f}x)"
                  f" | {' / '.join(f'{dist[w]:.4f}' for w in WAYS)} | {'yes' if same else 'no'} |")
    write_report(Path(a.out), report, md)


if __name__ == "__main__":
    sys.exit(main())
