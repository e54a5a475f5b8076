#!/usr/bin/env python
"""What int8 can give the trunk pass on this CPU's instructions: each Linear layer of one of
the default model's blocks (projections fused as the reduced-arithmetic pass fuses them) in
float32, as precision.Int8Linear (the input's per-token rounding included), as the bare int8 x
int8 product (torch._int_mm, and oneDNN's matmul primitive: the two products of
precision.int8_product) and as PyTorch's dynamically quantized Linear (fbgemm / x86 engine:
one input scale per batch, the rounding included), side by side in one process; and in
bfloat16 (weights and input), the product the bfloat16 pass runs, for comparison on the same CPU.

    python benchmarks/int8_ceiling.py --out benchmarks/results/int8-ceiling
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 FBGEMM_ENABLE_INSTRUCTIONS=AVX2 \\
        MKL_ENABLE_INSTRUCTIONS=AVX2 python benchmarks/int8_ceiling.py --out benchmarks/results/int8-ceiling

The Linear layers are the part of the pass int8 speeds up; attention, norms and activations
stay float32, and a whole run adds the baseline and the probe search, which no arithmetic of
the pass touches. So the Linear layers' int8 / float32 ratio under an instruction set caps what
the pass, and less what the whole run, can gain there. The caps (precision.py's docstring)
emulate an instruction set, not a machine. Each invocation is one row of OUT.json / OUT.md,
keyed by the caps.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

import torch
from machine import describe
from precision import ISA_SWITCHES, pretrained_decoder
from probe_candidates import add_row, write_report

from llmclassify.precision import (
    Int8Linear,
    _has_onednn_int8,
    fast_bfloat16,
    hold_freed_memory,
    int8_product,
)


def best_seconds(repeats: int, f, *args) -> float:
    """The fastest of `repeats` calls of f(*args), after one to warm up (kernels chosen, memory
    faulted in)."""
    f(*args)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f(*args)
        times.append(time.perf_counter() - t)
    return min(times)


def block_linears(model: str) -> dict[str, torch.nn.Linear]:
    """The Linear layers of the model's first block, fused as `reduce_in_place` fuses them."""
    block = pretrained_decoder(model)[0].blocks[0]
    block.fuse_projections()
    return {name: m for name, m in block.named_modules() if isinstance(m, torch.nn.Linear)}


def dynamic_linear(lin: torch.nn.Linear) -> torch.nn.Module:
    """`lin` as torch.ao's dynamically quantized Linear: weights int8 per output channel, as
    Int8Linear's; the input rounded with one scale for the whole batch."""
    torch.backends.quantized.engine = "x86"
    n = lin.out_features
    q = torch.ao.nn.quantized.dynamic.Linear(lin.in_features, n)
    w = torch.quantize_per_channel(lin.weight.detach(), (lin.weight.detach().abs().amax(1) / 127).clamp(min=1e-12),
                                   torch.zeros(n, dtype=torch.long), 0, torch.qint8)
    q.set_weight_bias(w, None if lin.bias is None else lin.bias.detach())
    return q


@torch.inference_mode()
def measure(linears: dict, rows: int, repeats: int) -> dict:
    out = {}
    for name, lin in linears.items():
        x = torch.randn(rows, lin.in_features)
        q = Int8Linear(lin)
        xi = torch.randint(-127, 128, (rows, lin.in_features), dtype=torch.int8)
        s = {"float32": best_seconds(repeats, lin, x), "Int8Linear": best_seconds(repeats, q, x),
             "int_mm": best_seconds(repeats, torch._int_mm, xi, Int8Linear(lin, "int_mm").weight_int8),
             "dynamic": best_seconds(repeats, dynamic_linear(lin), x),
             # without AVX512-BF16 several times slower than float32: a tenth of the repeats measures it
             "bfloat16": best_seconds(repeats if fast_bfloat16("cpu") else max(2, repeats // 10),
                                      copy.deepcopy(lin).to(torch.bfloat16), x.to(torch.bfloat16))}
        if _has_onednn_int8():
            onednn = Int8Linear(lin, "onednn")
            s["onednn"] = best_seconds(repeats, onednn._onednn_product, (xi.to(torch.int16) + 128).to(torch.uint8))
        out[name] = {"shape": [lin.in_features, lin.out_features], "seconds": s,
                     "gflop": 2 * rows * lin.in_features * lin.out_features / 1e9}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct-q4")
    ap.add_argument("--rows", type=int, default=2048, help="tokens per product (a batch of the pass)")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    machine = describe(sys.argv if argv is None else ["benchmarks/int8_ceiling.py", *argv])
    caps = {k: os.environ[k] for k in ISA_SWITCHES if k in os.environ}
    hold_freed_memory()  # as the trunk pass does: without it each product faults its output's pages in anew
    layers = measure(block_linears(a.model), a.rows, a.repeats)
    forms = next(iter(layers.values()))["seconds"]  # each form measure() times, by name
    total = {k: sum(v["seconds"][k] for v in layers.values()) for k in forms}
    label = caps.get("ONEDNN_MAX_CPU_ISA", "no caps (all of this CPU)") + f"; Int8Linear by {int8_product()}"
    rows = add_row(Path(a.out), {"data": label, "machine": machine, "caps": caps, "rows": a.rows, "layers": layers,
                                 "total": total, "trunk_dtype": "-"})
    md = ["# int8 and bfloat16 against float32 on the pass's Linear layers, by instruction set", "",
          "One block of the default model, projections fused; per layer the best of the repeats at "
          "`--rows` tokens. `Int8Linear`: precision.Int8Linear as the int8 pass runs it (each token's input "
          "rounded to int8, the product, the scales), by the product precision.int8_product chooses (rows "
          "measured before it was added ran `int_mm`); `int_mm`: torch._int_mm's int8 product alone; "
          "`oneDNN`: oneDNN's int8 matmul primitive alone, unsigned input (rows before it show -); `dynamic`: torch.ao's "
          "dynamically quantized Linear (fbgemm / x86, one input scale per batch: a token's result depends on its "
          "batch, which is why the pass does not use it). Cells: float32 / int8 "
          "seconds (the speed-up). The last three columns: the block's Linear layers together in each int8 form "
          "(float32 seconds over int8's); `int_mm` is what int8 can give the pass's Linear layers at most with "
          "PyTorch's product under these instructions; `bfloat16`: the same layers in bfloat16, the product of "
          "the bfloat16 pass (rows measured before it was added show -). `benchmarks/int8_ceiling.py`.", ""]
    names = list(rows[0]["layers"])
    md += ["| instructions | " + " | ".join(f"{n} {tuple(rows[0]['layers'][n]['shape'])}" for n in names)
           + " | all Linear layers: Int8Linear | all: int_mm | all: oneDNN | all: dynamic | all: bfloat16 |",
           "|---|" + "---:|" * (len(names) + 5)]
    for r in rows:
        cells = []
        for n in names:
            s = r["layers"][n]["seconds"]
            cells.append(f"{s['float32'] * 1e3:.2f} / {s['Int8Linear'] * 1e3:.2f} ms "
                         f"({s['float32'] / s['Int8Linear']:.2f}x)")
        t = r["total"]
        ratio = {k: f"{t['float32'] / t[k]:.2f}x" if k in t else "-" for k in ("int_mm", "onednn", "dynamic", "bfloat16")}
        md.append(f"| {r['data']} | " + " | ".join(cells) + f" | **{t['float32'] / t['Int8Linear']:.2f}x** | "
                  + " | ".join(ratio.values()) + " |")
    write_report(Path(a.out), md, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
