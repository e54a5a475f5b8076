#!/usr/bin/env python
"""The mean over real tokens against the position-weighted mean (SGPT's pooling for decoders):
the probe stage of `--recipe auto` on the features of both, the same split, folds and TF-IDF
baseline; each pick scored on test, which no rule reads.

    python benchmarks/position_weighted.py --data FILE.jsonl --features F.pt --out benchmarks/results/position-weighted

Why: in a causal decoder the state of a text's k-th token has read only its first k tokens, so
the plain mean gives the first tokens, which have seen least of the text, as much weight as the
last. Muennighoff 2022 ("SGPT: GPT Sentence Embeddings for Semantic Search") weights token k of
T by k / (1 + ... + T) instead, and found it better than the plain mean for GPT models'
embeddings. `weighted` replaces `mean` by that (per window, for long texts; the windows are
then averaged by their tokens as for `mean`); `last` is the same in both. `--features` caches
the rule's pass (probe_candidates.pooled_features); the other pass is cached in the work dir.
One row per data set in OUT.json / OUT.md.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import torch
from probe_candidates import add_row, data_label, pooled_features, start, write_report
from search_variants import mean_changes, pass_cells, pass_picks, stage_on_each_pass


def position_weighted_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, D), (B, T) 0/1 -> (B, D): the real tokens' states weighted by their rank among
    the real tokens (1 for the first), normalised to sum to one."""
    m = mask.to(hidden.dtype)
    rank = m.cumsum(-1) * m  # (B, T): 1, 2, ... on real tokens, 0 on padding
    w = (rank / rank.sum(-1, keepdim=True).clamp(min=1.0)).unsqueeze(-1)
    return (hidden * w).sum(1)


@contextlib.contextmanager
def mean_weighted_by_position():
    """The pass's `mean` pooling replaced by position_weighted_mean (features.pool)."""
    import llmclassify.features as features
    from llmclassify.heads import pool

    def pool_weighted(hidden, mask, pooling):
        return position_weighted_mean(hidden, mask) if pooling == "mean" else pool(hidden, mask, pooling)

    features.pool = pool_weighted
    try:
        yield
    finally:
        features.pool = pool


def main(argv=None) -> int:
    def more(ap):
        ap.add_argument("--label", help="the row's name (default: the data's)")

    a, machine, rule = start(__doc__, "benchmarks/position_weighted.py", argv, more)
    a.features = str(Path(a.work_dir) / f"{data_label(a).replace(' ', '_')}-weighted.pt")
    with mean_weighted_by_position():
        weighted = pooled_features(a)
    runs, baseline = stage_on_each_pass({"mean": rule, "weighted": weighted}, a.seed)
    row = {"data": a.label or data_label(a), "machine": machine, "trunk_dtype": rule.get("trunk_dtype"),
           "runs": runs, "baseline": baseline}
    rows = add_row(Path(a.out), row)
    md = ["# The mean pooling against the position-weighted mean", "",
          "`mean`: the rule (every real token alike); `weighted`: token k of T weighted by k / (1 + ... + T) "
          "(SGPT). Then `train`'s probe stage on each (probes, their ensemble, the hybrid with TF-IDF; 2 x 5-fold "
          "CV over train + validation). Cells: CV macro-F1 -> test macro-F1. `benchmarks/position_weighted.py`.", "",
          "| data | mean: pick | weighted: pick | mean: LLM-only | weighted: LLM-only | TF-IDF |",
          "|---|---|---|---|---|---|"]
    md += [f"| {r['data']} | " + " | ".join(pass_cells(r)) + " |" for r in rows]
    md += mean_changes(rows, "mean", "weighted")
    md += pass_picks(rows)
    write_report(Path(a.out), md, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
