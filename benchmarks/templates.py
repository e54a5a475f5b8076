#!/usr/bin/env python
"""The prompt template as an axis of the search (issue 15: "measure it; keep it in the search
only if it helps"): the probe stage of `--recipe auto` on the features of one trunk pass per
template, the same split, folds and TF-IDF baseline for all; each pick scored on test, which no
rule reads.

    python benchmarks/templates.py --data FILE.jsonl --out benchmarks/results/templates
    python benchmarks/templates.py --preset reference --templates none,text,question --out ...

Templates (`--templates`, comma-separated; `none` always runs first, the others are compared
with it):

  none      the text as it is (train's default)
  text      'Text: {text}\\nCategory:' (a generic prefix and suffix, README's example form)
  question  '{text}\\n\\nQuestion: Which of these is the text above: A, B or C?\\nAnswer:'
            with the data's label names (inputs.label_question: what `--template auto` tries)

The mean over real tokens includes the template's tokens, as in `train --template`; the last
real token is the template's last. Cost: each template is one more trunk pass, over the tokens
counted in the table. Features per template are cached in WORK_DIR (`--features` is not read).
One row per data set in OUT.json / OUT.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

from probe_candidates import (
    add_row,
    baseline_stage,
    data_label,
    pooled_features,
    start,
    write_report,
)
from search_variants import (  # stage(..., "now", ...): the rule train follows
    RULE_START,
    from_layer,
    stage,
)

TEMPLATES = ("none", "text", "question")


def template_text(name: str, labels: list[str]) -> str | None:
    """The template `name` for a data set with these label names."""
    if name == "none":
        return None
    if name == "text":
        return "Text: {text}\nCategory:"
    if name == "question":
        from llmclassify.inputs import label_question

        return label_question(labels)
    raise SystemExit(f"templates.py: unknown template {name} (known: {', '.join(TEMPLATES)})")


def features_for(a, name: str, labels: list[str] | None) -> dict:
    """The pooled features of one pass under template `name`, cached in the work dir."""
    a.features = str(Path(a.work_dir) / f"{data_label(a).replace(' ', '_')}-{name}.pt")
    return pooled_features(a, template_text(name, labels) if labels else None)


def main(argv=None) -> int:
    def more(ap):
        ap.add_argument("--label", help="the row's name (default: the data's)")
        ap.add_argument("--templates", default=",".join(TEMPLATES))

    a, machine, _ = start(__doc__, "benchmarks/templates.py", argv, more, features=False)
    names = ["none"] + [t for t in a.templates.split(",") if t != "none"]
    plain = features_for(a, "none", None)
    base = baseline_stage(from_layer(plain, RULE_START), a.seed)
    runs = {}
    for name in names:
        f = plain if name == "none" else features_for(a, name, plain["names"])
        runs[name] = stage(f, a.seed, "now", base) | {"template": f.get("template"), "tokens": f.get("tokens"),
                                               "pass_seconds": f.get("pass_seconds")}
        print(f"{name}: pick {runs[name]['pick']['test']:.4f} (CV {runs[name]['pick']['cv']:.4f}), LLM-only "
              f"{runs[name]['llm']['test']:.4f} (CV {runs[name]['llm']['cv']:.4f})", file=sys.stderr, flush=True)
    row = {"data": a.label or data_label(a), "machine": machine, "trunk_dtype": plain.get("trunk_dtype"),
           "runs": runs, "baseline": {"cv": base["base_cv"], "test": runs["none"]["base_test"], "C": base["base_C"]}}
    rows = add_row(Path(a.out), row)
    md = ["# The prompt template as a search axis (issue 15)", "",
          "Each template: one trunk pass, then `train`'s probe stage (probes, their ensemble, the hybrid with "
          "TF-IDF; 2 x 5-fold CV over train + validation). Cells: CV macro-F1 -> test macro-F1 (under the "
          "threshold `--tune-threshold auto` tunes where it tunes one). Tokens: every split's, relative to "
          "`none`. Templates: `benchmarks/templates.py`.", "",
          "| data | template | tokens | pick: CV -> test | LLM-only: CV -> test | TF-IDF: CV -> test |",
          "|---|---|---:|---|---|---|"]
    for r in rows:
        none_tokens = r["runs"]["none"]["tokens"]
        for name, x in r["runs"].items():
            md.append(f"| {r['data']} | {name} | {x['tokens'] / none_tokens:.2f}x | {x['pick']['cv']:.4f} -> "
                      f"{x['pick']['test']:.4f} | {x['llm']['cv']:.4f} -> {x['llm']['test']:.4f} | "
                      f"{r['baseline']['cv']:.4f} -> {r['baseline']['test']:.4f} |")
    md += ["", "Picks and templates:", ""] + [
        f"- {r['data']}, {name}: {x['pick']['name']}; LLM-only {x['llm']['name']}; template {x['template']!r}"
        for r in rows for name, x in r["runs"].items()]
    write_report(Path(a.out), md, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
