"""Tokens per batch of the trunk pass (`features.PASS_TOKENS`), side by side on this CPU.

    python benchmarks/pass_batch.py --out benchmarks/results/pass-batch \
        --long-data ~/.cache/llmclassify-suite/work/data/movie-reviews-max700-seed123.jsonl

One process, the default model, the trunk pass of a run (layers 8, 10, ..., 30, pooled vectors,
the default arithmetic of this CPU) over short texts (the first `--texts` of the book's SMS
split) and, with `--long-data` (a JSONL with a "text" field, e.g. a subsample written by
benchmarks/suite.py), long texts read in windows of `--window` tokens. Each batch size in
padded tokens runs interleaved with the others over `--repeats` rounds; the best round counts.
Writes OUT.json and OUT.md with the command, commit, date and machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from machine import describe, report_header, write_report
from precision import load


def setup(ap: argparse.ArgumentParser) -> tuple:
    """The flags of the pass benchmarks (the texts, `--repeats`) added to `ap` and parsed; then
    the default model (read once) and the texts to pass: the first `--texts` of the SMS split
    whole and, with `--long-data`, its first `--long-texts` in windows of `--window`. Returns
    the arguments, the decoder, {name: (token ids, window)}, the pad id and the layers a run keeps."""
    from llmclassify.features import probe_layers
    from llmclassify.inputs import encode_texts
    from llmclassify.train import TrainConfig

    ap.add_argument("--texts", type=int, default=400, help="short texts: the first N of the SMS split")
    ap.add_argument("--long-data", help="JSONL of long texts ('text' field)")
    ap.add_argument("--long-texts", type=int, default=20, help="the first N texts of --long-data")
    ap.add_argument("--window", type=int, default=None, help="window of the long texts (default: train's --window)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds; the best counts")
    a = ap.parse_args()
    torch.set_grad_enabled(False)
    dec, short, tok = load(a.texts)
    window = a.window or TrainConfig().window
    sets = {"SMS texts": (short, None)}
    if a.long_data:
        rows = [json.loads(line) for line in Path(a.long_data).expanduser().read_text().splitlines() if line.strip()]
        ids, _ = encode_texts(tok, [r["text"] for r in rows[: a.long_texts]], dec.cfg.context_length)
        sets[f"long texts, windows of {window}"] = (ids, window)
    return a, dec, sets, tok.pad_id, probe_layers(dec.cfg.n_layers)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="benchmarks/results/pass-batch")
    ap.add_argument("--sizes", default="4096,2048,1024,512", help="padded tokens per batch, comma-separated")
    a, dec, sets, pad, layers = setup(ap)
    from llmclassify.features import trunk_pass
    from llmclassify.precision import choose_trunk_dtype

    dtype = choose_trunk_dtype(torch.device("cpu"))
    sizes = [int(s) for s in a.sizes.split(",")]
    rates: dict = {name: {s: [] for s in sizes} for name in sets}
    for r in range(a.repeats):
        for name, (ids, w) in sets.items():
            for size in sizes:
                t = time.perf_counter()
                trunk_pass(dec, ids, pad, layers=layers, window=w, dtype=dtype, progress=False, max_tokens=size)
                rates[name][size].append(sum(map(len, ids)) / (time.perf_counter() - t))
                print(f"round {r + 1} {name}, {size} tokens per batch: {rates[name][size][-1]:.0f} tokens/s", flush=True)
    m = describe()
    report = {"command": m["command"], "commit": m["commit"], "date": m["date"], "machine": m, "trunk_dtype": dtype,
              "layers": layers, "sets": {name: {"texts": len(ids), "tokens": sum(map(len, ids)), "window": w,
                                                "tokens_per_s": {str(s): rates[name][s] for s in sizes}}
                                         for name, (ids, w) in sets.items()}}
    out = Path(a.out)
    md = [*report_header("Trunk pass: padded tokens per batch, side by side", m),
          f"Trunk arithmetic {dtype}, layers {','.join(map(str, layers))} kept; best of {a.repeats} interleaved "
          "rounds, tokens per second (ratio to the first size).", "",
          "| texts | " + " | ".join(f"{s} tokens" for s in sizes) + " |", "|---|" + "---:|" * len(sizes)]
    for name, (ids, _) in sets.items():
        best = {s: max(rates[name][s]) for s in sizes}
        md.append(f"| {name} ({len(ids)} texts, {sum(map(len, ids)):,} tokens) | "
                  + " | ".join(f"{best[s]:,.0f} ({best[s] / best[sizes[0]]:.2f}x)" for s in sizes) + " |")
    write_report(out, report, md)


if __name__ == "__main__":
    sys.exit(main())
