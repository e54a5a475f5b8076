#!/usr/bin/env python
"""The mean over real tokens with and without the first token: the probe stage of `--recipe
auto` on the features of both, the same split, folds and TF-IDF baseline; each pick scored on
test, which no rule reads.

    python benchmarks/first_token.py --data FILE.jsonl --features F.pt --out benchmarks/results/first-token

Why: from layer 12 of SmolLM2-135M up the first token's state is an attention sink, its residual
about a hundred times the others' and, after the final norm, the same vector for every text
(cosine 1.000 between texts). `train`'s `mean` includes it, so a text's mean vector is its other
tokens' mean shrunk by (T-1)/T plus that constant over T: a length signal in every column.
`after-first` drops the first real token of each sequence (of each window, for long texts)
from the mean when it has more than one; `last` is the same in both. `--features` caches the
rule's pass (probe_candidates.pooled_features); the other pass is cached in the work dir.
One row per data set in OUT.json / OUT.md.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import torch
from probe_candidates import add_row, data_label, pooled_features, start, write_report
from search_variants import pass_cells, pass_picks, stage_on_each_pass


@contextlib.contextmanager
def mean_after_first():
    """The pass's `mean` pooling without each sequence's first real token (features.pool)."""
    import llmclassify.features as features
    from llmclassify.heads import pool

    def pool_after_first(hidden, mask, pooling):
        if pooling != "mean":
            return pool(hidden, mask, pooling)
        rows = torch.nonzero(mask.sum(-1) > 1).flatten()  # a one-token sequence keeps its token
        mask = mask.clone()
        mask[rows, mask[rows].argmax(-1)] = 0  # (B, T): the first 1 of each such row cleared
        return pool(hidden, mask, "mean")

    features.pool = pool_after_first
    try:
        yield
    finally:
        features.pool = pool


@torch.inference_mode()
def sink_statistics(a, n_texts: int = 64) -> dict:
    """On the first `n_texts` train texts, per kept layer: the mean norm of the first token's
    residual state and of the other real tokens', and the mean cosine between texts of the
    first token's final-normed state (1.0: the same vector for every text)."""
    from llmclassify.features import probe_layers
    from llmclassify.inputs import pad_batch
    from llmclassify.train import run as R
    from llmclassify.train.config import TrainConfig, with_preset

    cfg = TrainConfig(data=a.data, recipe="probe", progress=False, baseline="none", seed=a.seed)
    cfg = with_preset(cfg, a.preset, {"recipe", "baseline"}) if a.preset else cfg
    run = R._prepare(cfg, Path(a.work_dir) / "sink")
    dec = run.clf.decoder
    ids, mask = pad_batch(run.ids["train"][:n_texts], 0, side="right")
    pos = dec.positions(mask)
    x = dec.embed(ids, pos)
    ctx = dec.context(mask, pos, True, x.dtype)
    rest = mask[:, 1:, None].float()  # (B, T-1, 1): the real tokens after the first
    out = {}
    for k in range(len(dec.blocks) + 1):  # x: the states after layer k
        if k in probe_layers(len(dec.blocks)):
            first = torch.nn.functional.normalize(dec.final_norm(x)[:, 0], dim=-1)  # (B, D)
            out[k] = {"first_norm": float(x[:, 0].norm(dim=-1).mean()),
                      "rest_norm": float((x[:, 1:].norm(dim=-1, keepdim=True) * rest).sum() / rest.sum()),
                      "first_cosine": float((first @ first.T).mean())}
        if k < len(dec.blocks):
            x = dec.blocks[k](x, mask, pos, causal=True, ctx=ctx)
    return out


def main(argv=None) -> int:
    def more(ap):
        ap.add_argument("--label", help="the row's name (default: the data's)")

    a, machine, rule = start(__doc__, "benchmarks/first_token.py", argv, more)
    a.features = str(Path(a.work_dir) / f"{data_label(a).replace(' ', '_')}-after-first.pt")
    with mean_after_first():
        after = pooled_features(a)
    runs, baseline = stage_on_each_pass({"mean": rule, "after-first": after}, a.seed)
    row = {"data": a.label or data_label(a), "machine": machine, "trunk_dtype": rule.get("trunk_dtype"),
           "sink": sink_statistics(a), "runs": runs, "baseline": baseline}
    rows = add_row(Path(a.out), row)
    md = ["# The mean pooling without the first token (the attention sink)", "",
          "`mean`: the rule (every real token); `after-first`: each sequence's first real token left out of "
          "the mean. Then `train`'s probe stage on each (probes, their ensemble, the hybrid with TF-IDF; 2 x 5-fold "
          "CV over train + validation). Cells: CV macro-F1 -> test macro-F1. `benchmarks/first_token.py`.", "",
          "| data | mean: pick | after-first: pick | mean: LLM-only | after-first: LLM-only | TF-IDF |",
          "|---|---|---|---|---|---|"]
    md += [f"| {r['data']} | " + " | ".join(pass_cells(r)) + " |" for r in rows]
    md += ["", "The first token, on 64 train texts (float32 pass): mean norm of its residual state against the "
           "other real tokens', and the mean cosine between texts of its final-normed state, per kept layer:", ""]
    md += [f"- {r['data']}: " + "; ".join(f"layer {k}: {v['first_norm']:,.0f} vs {v['rest_norm']:,.0f}, cosine "
                                         f"{v['first_cosine']:.3f}" for k, v in r["sink"].items())
           for r in rows if "sink" in r]
    diffs = [r["runs"]["after-first"]["pick"]["test"] - r["runs"]["mean"]["pick"]["test"] for r in rows]
    md += ["", f"Mean change of the pick's test macro-F1: {sum(diffs) / len(diffs):+.4f} over {len(diffs)} splits."]
    md += pass_picks(rows)
    write_report(Path(a.out), md, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
