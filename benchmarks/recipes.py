"""`llmclassify train` (default: --recipe auto) against today's default recipe (fine-tune the
last block, no baseline) side by side, each in its own process, on the built-in SMS data:
the default split and the book's split (`--preset reference`); auto also with a float32 trunk
pass, to show what bfloat16 (chosen where the CPU has AVX512-BF16 or AMX) changes.

    python benchmarks/recipes.py --out benchmarks/results/recipes

Writes OUT.md and OUT.json: per run the wall time, CPU time, peak RSS, the chosen recipe, test
accuracy / macro-F1 / spam F1 and the TF-IDF baseline's on the same split, with the command,
commit, date and machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from machine import describe, git_commit
from precision import ISA_SWITCHES
from suite import train_child

RUNS = {
    "default split, auto (new default)": [],
    "default split, auto, float32 trunk": ["--trunk-dtype", "float32"],
    "default split, auto, int8 trunk": ["--trunk-dtype", "int8"],
    "default split, finetune last block (old default)": ["--recipe", "finetune", "--baseline", "none"],
    "book split, auto": ["--preset", "reference", "--recipe", "auto"],
    "book split, auto, float32 trunk": ["--preset", "reference", "--recipe", "auto", "--trunk-dtype", "float32"],
    "book split, finetune (--preset reference)": ["--preset", "reference"],
    "book split, auto, int8 trunk": ["--preset", "reference", "--recipe", "auto", "--trunk-dtype", "int8"],
}

def run_one(args: list[str], out_dir: Path) -> dict:
    res = train_child(["train", "-o", str(out_dir / "run"), "--overwrite", "--quiet", *args], out_dir / "stats.json")
    if res["rc"] != 0:
        raise SystemExit(f"recipes: llmclassify train {' '.join(args)} failed with exit status {res['rc']}")
    m = json.loads((out_dir / "run" / "metrics.json").read_text())
    test = m["splits"]["test"]
    base = (m.get("baseline") or {}).get("splits", {}).get("test")
    res.update(
        command="llmclassify train " + " ".join(args), chosen=m["recipe"]["chosen"],
        trunk_dtype=m.get("trunk_dtype"),
        test_accuracy=test["accuracy"], test_macro_f1=test["macro_f1"], test_spam_f1=test["per_class"]["spam"]["f1"],
        baseline_test_accuracy=base and base["accuracy"], baseline_test_macro_f1=base and base["macro_f1"],
        baseline_test_spam_f1=base and base["per_class"]["spam"]["f1"], seconds=m["seconds"],
        candidates=m["recipe"]["candidates"], threshold=(m.get("threshold") or {}).get("threshold"),
    )
    return res


def table(results: dict) -> list[str]:
    def pct(x):
        return "-" if x is None else f"{100 * x:.2f}%"

    def f3(x):
        return "-" if x is None else f"{x:.4f}"

    lines = ["| run | chosen recipe | trunk | threshold (spam) | test acc | test macro-F1 | spam F1 | "
             "TF-IDF acc / macro-F1 / spam F1 | wall s | CPU s | peak RSS MiB |",
             "|---|---|---|---:|---:|---:|---:|---|---:|---:|---:|"]
    for name, r in results.items():
        threshold = "argmax" if r.get("threshold") is None else f"{r['threshold']:.3f}"
        lines.append(f"| {name} | {r['chosen']} | {r['trunk_dtype'] or '-'} | {threshold} | {pct(r['test_accuracy'])} | "
                     f"{f3(r['test_macro_f1'])} | "
                     f"{f3(r['test_spam_f1'])} | {pct(r['baseline_test_accuracy'])} / "
                     f"{f3(r['baseline_test_macro_f1'])} / {f3(r['baseline_test_spam_f1'])} | "
                     f"{r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['peak_rss_mib']:.0f} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="benchmarks/results/recipes")
    ap.add_argument("--runs", help="a subset, separated by semicolons (the names hold commas): " + "; ".join(RUNS))
    a = ap.parse_args()
    names = [n.strip() for n in a.runs.split(";")] if a.runs else list(RUNS)
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, name in enumerate(names):
            print(f"== {name}", flush=True)
            results[name] = run_one(RUNS[name], Path(tmp) / str(i))
            print(json.dumps({k: v for k, v in results[name].items() if k not in ("seconds", "candidates")}),
                  flush=True)
    isa = {k: os.environ[k] for k in ISA_SWITCHES if k in os.environ}  # an emulated older CPU (precision.py)
    report = {"command": "python " + " ".join(sys.argv), "commit": git_commit(), "date": started,
              "machine": describe(), "isa_caps": isa, "results": results}
    out = Path(a.out)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    md = ["# `llmclassify train`: auto vs the old default, side by side", "",
          f"Command: `{report['command']}`; commit {report['commit']}; {started}.", "",
          f"Machine: {report['machine']['summary']}."
          + (f" Instructions capped by {', '.join(f'{k}={v}' for k, v in isa.items())}: an emulated CPU without "
             "AVX512 (see precision.py's docstring)." if isa else ""), "", *table(results), ""]
    for name, r in results.items():
        md.append(f"- {name}: stage seconds " + ", ".join(f"{k} {v:.1f}" for k, v in r["seconds"].items()))
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
