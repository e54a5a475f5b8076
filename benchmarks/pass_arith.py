"""The trunk pass's padding and reduced-precision RMSNorm, side by side on this CPU.

    python benchmarks/pass_arith.py --out benchmarks/results/pass-arith --texts 1500 \
        --long-data ~/.cache/llmclassify-suite/work/data/movie-reviews-max700-seed123.jsonl

One process, the default model, the trunk pass of a run (layers 8, 10, ..., 30, pooled vectors,
the default arithmetic of this CPU) over the texts of benchmarks/pass_batch.py, four ways:

  padding  each batch padded to one of four lengths per octave (8 at least; before) or eight
           (a multiple of 4; now, `features.padded_length`); batched by padded length either way
  norm     RMSNorm in a reduced precision as Hugging Face writes it (x copied to float32,
           normalised, cast back; before) or the mean square alone in float32 (now, model.RMSNorm)

interleaved over `--repeats` rounds (the best round counts), and how far each way's pooled
vectors are from a float32 pass's (relative Frobenius distance over every layer kept).
Writes OUT.json and OUT.md with the command, commit, date and machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from machine import describe, report_header, write_report
from pass_batch import setup


def four_per_octave(t: int) -> int:
    """features.padded_length before: four lengths per octave, 8 at least."""
    step = max(8, 1 << max(0, t.bit_length() - 3))
    return -(-t // step) * step


def hf_rms_norm(self, x: torch.Tensor) -> torch.Tensor:
    """model.RMSNorm.forward before: Hugging Face's (x to float32, normalise, cast back, scale)."""
    if x.dtype == torch.float32:
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))
    x32 = x.float()
    return self.weight * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="benchmarks/results/pass-arith")
    a, dec, sets, pad, layers = setup(ap)
    from llmclassify import features, model
    from llmclassify.features import trunk_pass
    from llmclassify.precision import choose_trunk_dtype, reduced_blocks

    dtype = choose_trunk_dtype(torch.device("cpu"))
    blocks = reduced_blocks(dec, max(layers), dtype)
    now_length, now_norm = features.padded_length, model.RMSNorm.forward
    ways = {"before (4 per octave, HF norm)": (four_per_octave, hf_rms_norm),
            "8 per octave, HF norm": (now_length, hf_rms_norm),
            "4 per octave, float32 statistics": (four_per_octave, now_norm),
            "now (8 per octave, float32 statistics)": (now_length, now_norm)}

    def run(name, ids, w, length, norm, pass_dtype=dtype):
        features.padded_length, model.RMSNorm.forward = length, norm
        try:
            t = time.perf_counter()
            pooled, _ = trunk_pass(dec, ids, pad, layers=layers, window=w, dtype=pass_dtype, progress=False,
                                   blocks=blocks if pass_dtype == dtype else None)
            return time.perf_counter() - t, pooled.data.float()
        finally:
            features.padded_length, model.RMSNorm.forward = now_length, now_norm

    results: dict = {}
    for name, (ids, w) in sets.items():
        _, ref = run(name, ids, w, now_length, now_norm, pass_dtype="float32")
        pieces = features.split_windows(ids, w)[0]
        res = results[name] = {"texts": len(ids), "tokens": sum(map(len, ids)), "window": w, "ways": {}}
        for way, (length, _) in ways.items():
            res["ways"][way] = {"padded_tokens": sum(length(len(x)) for x in pieces), "seconds": []}
        for r in range(a.repeats):
            for way, (length, norm) in ways.items():
                s, got = run(name, ids, w, length, norm)
                res["ways"][way]["seconds"].append(s)
                res["ways"][way]["distance_to_float32"] = float((got - ref).norm() / ref.norm())
                print(f"round {r + 1} {name}, {way}: {s:.2f} s", flush=True)
    m = describe()
    report = {"command": m["command"], "commit": m["commit"], "date": m["date"], "machine": m, "trunk_dtype": dtype,
              "layers": layers, "sets": results}
    out = Path(a.out)
    md = [*report_header("Trunk pass: padding and reduced-precision RMSNorm, side by side", m),
          f"Trunk arithmetic {dtype}, layers {','.join(map(str, layers))} kept; best of {a.repeats} interleaved "
          "rounds. Padded tokens: each text at its padded length (batch padding aside). Distance: "
          "|pooled - pooled of a float32 pass| / |pooled of a float32 pass|, every layer kept.", "",
          "| texts | way | padded tokens / real | best s | speed (before = 1) | distance to float32 |",
          "|---|---|---:|---:|---:|---:|"]
    for name, res in results.items():
        first = min(next(iter(res["ways"].values()))["seconds"])
        for way, r in res["ways"].items():
            md.append(f"| {name} ({res['texts']} texts, {res['tokens']:,} tokens) | {way} | "
                      f"{r['padded_tokens'] / res['tokens']:.3f} | {min(r['seconds']):.2f} | "
                      f"{first / min(r['seconds']):.3f}x | {r['distance_to_float32']:.4f} |")
    write_report(out, report, md)


if __name__ == "__main__":
    sys.exit(main())
