"""The trunk pass in float32, bfloat16 and int8, side by side on this CPU.

    python benchmarks/precision.py --out benchmarks/results/precision

One process, the default model, the texts of the book's SMS split (`--preset reference`,
1,494 texts): each arithmetic runs the same pass (every layer, pooled mean and last vectors),
interleaved over `--repeats` rounds so that load from other work falls on all of them alike.
Reports seconds (best round), tokens per second, the speed-up over float32 and the cosine of
each arithmetic's features to float32's (the accuracy each gives a trained run is in
benchmarks/results/recipes.md, where whole runs are compared). Writes OUT.json and OUT.md
with the command, commit, date and machine.

An AVX2-only CPU, emulated on a newer one: the libraries' own switches cap the instructions
they use (recorded in the report), so bfloat16 and int8 run without AVX512-BF16 / VNNI:

    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 FBGEMM_ENABLE_INSTRUCTIONS=AVX2 \
    MKL_ENABLE_INSTRUCTIONS=AVX2 python benchmarks/precision.py --out benchmarks/results/precision-avx2

It is the instruction set of such a CPU, not its cores, caches or memory: a guide, not a
measurement of that machine. Nor of PyTorch's own choices, which read the CPU's flags, not the
caps: torch._int_mm takes oneDNN's kernels only where the CPU has AVX512-VNNI, so under the caps
it ran them at AVX2's speed while a real AVX2-only EPYC ran PyTorch's plain loop, 0.02x float32
(results/int8-ceiling-milan.md; precision.int8_product now picks oneDNN's matmul there).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
from machine import describe

# Each arithmetic: trunk_pass's keywords. "int8, unsmoothed" is the int8 of runs saved before
# SmoothQuant's smoothing (no calibration texts), kept as the figure smoothing is measured against.
ARITHMETICS = {"float32": {"dtype": "float32"}, "bfloat16": {"dtype": "bfloat16"}, "int8": {"dtype": "int8"},
               "int8, unsmoothed": {"dtype": "int8", "calibration": []}}
ISA_SWITCHES = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "FBGEMM_ENABLE_INSTRUCTIONS", "MKL_ENABLE_INSTRUCTIONS")


def pretrained_decoder(model: str):
    """(the model's Decoder with its pretrained weights, in eval mode; the loaded model)."""
    from llmclassify.loaders import load_model
    from llmclassify.model import Decoder

    lm = load_model(model)
    dec = Decoder(lm.config)
    dec.load_state_dict(lm.state_dict)
    return dec.eval(), lm


def load(n_texts: int | None):
    from llmclassify.inputs import encode_texts
    from llmclassify.train import TrainConfig, with_preset
    from llmclassify.train.run import _prepare_data

    cfg = with_preset(TrainConfig(progress=False), "reference")
    prep = _prepare_data(cfg)
    texts = prep.train.texts + prep.val.texts + prep.test.texts
    dec, lm = pretrained_decoder(cfg.model)
    ids, _ = encode_texts(lm.tokenizer, texts[:n_texts], lm.config.context_length)
    return dec, ids, lm.tokenizer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="benchmarks/results/precision")
    ap.add_argument("--texts", type=int, default=None, help="first N texts only")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--skip", default="", help="comma-separated arithmetics to leave out (float32 always runs)")
    a = ap.parse_args()
    from llmclassify.features import trunk_pass
    from llmclassify.precision import TRUNK_DTYPES

    assert {v["dtype"] for v in ARITHMETICS.values()} == set(TRUNK_DTYPES)
    skip = {x.strip() for x in a.skip.split(",") if x.strip()} - {"float32"}
    arithmetics = [d for d in ARITHMETICS if d not in skip]
    torch.set_grad_enabled(False)
    dec, ids, tok = load(a.texts)
    pad = tok.pad_id
    layers = list(range(1, dec.cfg.n_layers + 1))
    tokens = sum(len(x) for x in ids)
    times = {d: [] for d in arithmetics}
    feats = {}
    for r in range(a.repeats):
        for d in arithmetics:
            t = time.perf_counter()
            f, _ = trunk_pass(dec, ids, pad, layers=layers, progress=False, **ARITHMETICS[d])
            times[d].append(time.perf_counter() - t)
            feats[d] = f.data.float()
            print(f"round {r + 1} {d}: {times[d][-1]:.1f} s", flush=True)
    rows = {}
    for d in arithmetics:
        cos = torch.nn.functional.cosine_similarity(feats[d].flatten(2), feats["float32"].flatten(2), dim=-1)
        best = min(times[d])
        rows[d] = {"seconds": times[d], "best_s": best, "tokens_per_s": tokens / best,
                   "speedup_vs_float32": min(times["float32"]) / best,
                   "cosine_to_float32_mean": cos.mean().item(), "cosine_to_float32_min": cos.min().item(),
                   "cosine_by_layer": {layer: cos[:, j].mean().item() for j, layer in enumerate(layers)}}
    m = describe()
    isa = {k: os.environ[k] for k in ISA_SWITCHES if k in os.environ}
    report = {"command": m["command"], "commit": m["commit"], "date": m["date"], "machine": m,
              "isa_limited_by": isa, "texts": len(ids), "tokens": tokens, "results": rows}
    out = Path(a.out)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    md = ["# Trunk pass arithmetic, side by side", "",
          f"Command: `{m['command']}`; commit {m['commit']}; {m['date']}.", "",
          f"Machine: {m['summary']}."
          + (f" Instructions capped by {', '.join(f'{k}={v}' for k, v in isa.items())}: an emulated CPU without "
             "AVX512 (see the script's docstring)." if isa else ""), "",
          f"{len(ids)} texts, {tokens:,} tokens, all {len(layers)} layers, best of {a.repeats} interleaved rounds.",
          "", "| arithmetic | best s | tokens/s | speed-up vs float32 | cosine to float32 (mean / min) |",
          "|---|---:|---:|---:|---|"]
    for d, r in rows.items():
        md.append(f"| {d} | {r['best_s']:.1f} | {r['tokens_per_s']:.0f} | {r['speedup_vs_float32']:.2f}x | "
                  f"{r['cosine_to_float32_mean']:.5f} / {r['cosine_to_float32_min']:.4f} |")
    md += ["", "Mean cosine to float32 by layer (mean pooling and last token together):", "",
           "| layer | " + " | ".join(arithmetics[1:]) + " |", "|---:|" + "---:|" * (len(arithmetics) - 1)]
    for layer in layers[::4] + ([layers[-1]] if (len(layers) - 1) % 4 else []):
        md.append(f"| {layer} | " + " | ".join(f"{rows[d]['cosine_by_layer'][layer]:.4f}" for d in arithmetics[1:]) + " |")
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    sys.exit(main())
