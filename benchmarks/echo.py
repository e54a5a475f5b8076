#!/usr/bin/env python
"""Echo features: each text read twice, pooled over the second reading; the probe stage of
`--recipe auto` on them and on the rule's, the same split, folds and TF-IDF baseline; each
pick scored on test, which no rule reads.

    python benchmarks/echo.py --data FILE.jsonl --features F.pt --out benchmarks/results/echo

Why: in a causal decoder a token's state reads only what precedes it, so the mean over a text's
tokens averages states that saw little of the text. Springer et al. 2024 ("Repetition Improves
Language Model Embeddings") feed the text twice and pool over the second copy, whose tokens
have read the whole text once. Here the pass reads `TEXT\\nTEXT`; `mean` is over the last half
of the real tokens (the second copy), `last` is the second copy's last token. It costs a pass
over twice the tokens. `--features` caches the rule's pass (probe_candidates.pooled_features);
the echo pass is cached in the work dir. One row per data set in OUT.json / OUT.md.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from probe_candidates import add_row, data_label, pooled_features, start, write_report
from search_variants import mean_changes, pass_cells, pass_picks, stage_on_each_pass


@contextlib.contextmanager
def echo_pass():
    """The pass reads each text twice (inputs.apply_template) and pools `mean` over the last
    half of each sequence's real tokens (features.pool)."""
    import llmclassify.features as features
    import llmclassify.inputs as inputs
    from llmclassify.heads import pool

    def twice(texts, template):
        return [f"{t}\n{t}" for t in texts]

    def pool_second_half(hidden, mask, pooling):
        if pooling != "mean":
            return pool(hidden, mask, pooling)
        seen = mask.cumsum(-1)  # (B, T): real tokens up to each position
        first_half = (mask.sum(-1, keepdim=True) + 1) // 2  # ceil(n / 2): the copy and the newline
        return pool(hidden, mask * (seen > first_half), "mean")

    saved = inputs.apply_template, features.pool
    inputs.apply_template, features.pool = twice, pool_second_half
    try:
        yield
    finally:
        inputs.apply_template, features.pool = saved


def main(argv=None) -> int:
    def more(ap):
        ap.add_argument("--label", help="the row's name (default: the data's)")

    a, machine, rule = start(__doc__, "benchmarks/echo.py", argv, more)
    label = a.label or data_label(a)
    a.features = str(Path(a.work_dir) / f"{label.replace(' ', '_')}-echo.pt")
    with echo_pass():
        echo = pooled_features(a)
    runs, baseline = stage_on_each_pass({"rule": rule, "echo": echo}, a.seed)
    row = {"data": label, "machine": machine, "trunk_dtype": rule.get("trunk_dtype"), "runs": runs,
           "seconds": {"rule": rule.get("pass_seconds"), "echo": echo.get("pass_seconds")},
           "tokens": {"rule": rule.get("tokens"), "echo": echo.get("tokens")}, "baseline": baseline}
    rows = add_row(Path(a.out), row)
    md = ["# Echo features: each text read twice, pooled over the second reading", "",
          "`rule`: the pass `train` makes; `echo`: the pass over `TEXT\\nTEXT`, `mean` over the second copy, `last` "
          "its last token. Then `train`'s probe stage on each (probes, their ensemble, the hybrid with TF-IDF; "
          "2 x 5-fold CV over train + validation). Cells: CV macro-F1 -> test macro-F1. `benchmarks/echo.py`.", "",
          "| data | rule: pick | echo: pick | rule: LLM-only | echo: LLM-only | TF-IDF | pass s, rule / echo |",
          "|---|---|---|---|---|---|---:|"]
    for r in rows:
        s = r["seconds"]
        md.append(f"| {r['data']} | " + " | ".join(pass_cells(r)) + f" | {s['rule'] or 0:.0f} / {s['echo'] or 0:.0f} |")
    md += mean_changes(rows, "rule", "echo")
    md += pass_picks(rows)
    write_report(Path(a.out), md, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
