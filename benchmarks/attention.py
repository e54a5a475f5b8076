"""Attention in the bfloat16 trunk pass: two matmuls and a float32 softmax (`model.matmul_attention`,
what the pass runs up to `model.MATMUL_ATTENTION_MAX_TOKENS`) against PyTorch's fused kernel
(`F.scaled_dot_product_attention`), side by side on this CPU.

    python benchmarks/attention.py --out benchmarks/results/attention \
        --long-data ~/.cache/llmclassify-suite/work/data/movie-reviews-max700-seed123.jsonl

One process, the default model, the trunk pass of a run (layers 8, 10, ..., 30, pooled vectors)
in bfloat16 over the texts of benchmarks/pass_batch.py (SMS texts whole; with `--long-data`,
long texts in windows of the default `--window`), each way interleaved over `--repeats` rounds;
the best round counts. Also the agreement of the two ways' pooled features. Writes OUT.json and
OUT.md with the command, commit, date and machine. Only meaningful on a CPU with AVX512-BF16 or
AMX (elsewhere bfloat16 is emulated and no run uses it).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from machine import describe, report_header, write_report
from pass_batch import setup

WAYS = ("fused (SDPA)", "matmul")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="benchmarks/results/attention")
    a, dec, sets, pad, layers = setup(ap)
    from llmclassify import model
    from llmclassify.features import trunk_pass

    limit = {"fused (SDPA)": 0, "matmul": model.MATMUL_ATTENTION_MAX_TOKENS}
    rates: dict = {name: {w: [] for w in WAYS} for name in sets}
    feats: dict = {name: {} for name in sets}
    for r in range(a.repeats):
        for name, (ids, window) in sets.items():
            for way in WAYS:
                model.MATMUL_ATTENTION_MAX_TOKENS = limit[way]
                t = time.perf_counter()
                f, _ = trunk_pass(dec, ids, pad, layers=layers, window=window, dtype="bfloat16", progress=False)
                rates[name][way].append(sum(map(len, ids)) / (time.perf_counter() - t))
                feats[name][way] = f.data.float()
                print(f"round {r + 1} {name}, {way}: {rates[name][way][-1]:.0f} tokens/s", flush=True)
    model.MATMUL_ATTENTION_MAX_TOKENS = limit["matmul"]
    m = describe()
    report = {"command": m["command"], "commit": m["commit"], "date": m["date"], "machine": m, "layers": layers,
              "matmul_attention_max_tokens": limit["matmul"], "sets": {}}
    md = [*report_header("Attention in the bfloat16 trunk pass: fused kernel or two matmuls, side by side", m),
          f"Layers {','.join(map(str, layers))} kept; best of {a.repeats} interleaved rounds. Agreement: cosine of "
          "each text's pooled vectors (mean and last token, every layer kept) between the two ways.", "",
          "| texts | fused (SDPA) tokens/s | matmul tokens/s | speed-up | cosine (mean / min) |",
          "|---|---:|---:|---:|---|"]
    for name, (ids, window) in sets.items():
        best = {w: max(rates[name][w]) for w in WAYS}
        cos = torch.nn.functional.cosine_similarity(feats[name]["matmul"], feats[name]["fused (SDPA)"], dim=-1)
        report["sets"][name] = {"texts": len(ids), "tokens": sum(map(len, ids)), "window": window,
                                "tokens_per_s": rates[name], "speedup": best["matmul"] / best["fused (SDPA)"],
                                "cosine_mean": cos.mean().item(), "cosine_min": cos.min().item()}
        md.append(f"| {name} ({len(ids)} texts, {sum(map(len, ids)):,} tokens) | {best['fused (SDPA)']:,.0f} | "
                  f"{best['matmul']:,.0f} | {best['matmul'] / best['fused (SDPA)']:.2f}x | "
                  f"{cos.mean().item():.5f} / {cos.min().item():.4f} |")
    out = Path(a.out)
    write_report(out, report, md)


if __name__ == "__main__":
    sys.exit(main())
