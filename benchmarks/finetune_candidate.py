"""The fine-tuned top as a candidate of `--recipe auto`: what it won and what it cost, from two
suite runs on the same splits, one whose auto search fine-tunes the top and one whose does not.

    python benchmarks/suite.py --recipes auto,finetune --max-train 1000 --out OUT_WITH ...   # with it
    python benchmarks/suite.py --recipes auto --max-train 1000 --out OUT_WITHOUT ...         # without
    python benchmarks/finetune_candidate.py --with OUT_WITH.json --without OUT_WITHOUT.json \
        --out benchmarks/results/finetune-candidate

The search compares the fine-tuned top with its own answer on the validation texts only (the
probes' and the hybrid's predictions of them out of fold); per data set this lists both
validation figures, which one the search took, the test macro-F1 that followed, and the seconds
the fine-tuning took of the run. Writes OUT.json and OUT.md with the command, commit, date and
machine of this script and of each suite run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from machine import describe, report_header, write_report


def _f(x) -> str:
    return "-" if x is None else f"{x:.4f}"


def compare(with_ft: dict, without_ft: dict) -> dict:
    """One row per data set that both suite runs hold with an auto run."""
    rows = {}
    for name, e in with_ft["datasets"].items():
        a, b = e["runs"].get("auto"), without_ft["datasets"].get(name, {}).get("runs", {}).get("auto")
        if not a or not b or "error" in a or "error" in b:
            continue
        cands = {c["name"]: c for c in a.get("candidates") or []}
        ft = next((c for c in cands.values() if c["kind"] == "finetune"), None)
        answer = cands.get(b["chosen"])  # what the search takes without the fine-tuned top: the same candidates
        finetune = e["runs"].get("finetune")
        rows[name] = {
            "splits": a["splits"],
            "with": {"chosen": a["chosen"], "chosen_kind": a["chosen_kind"], "test_macro_f1": a["test_macro_f1"],
                     "fine_tuned_val_macro_f1": ft and ft["val_macro_f1"],
                     "answer_val_macro_f1": answer and answer["val_macro_f1"],
                     "fine_tuning_s": a["seconds"].get("fit"), "wall_s": a["wall_s"],
                     "peak_rss_mib": a["peak_rss_mib"], "commit": a.get("commit")},
            "without": {"chosen": b["chosen"], "chosen_kind": b["chosen_kind"], "test_macro_f1": b["test_macro_f1"],
                        "wall_s": b["wall_s"], "peak_rss_mib": b["peak_rss_mib"], "commit": b.get("commit")},
            "recipe_finetune_test_macro_f1": finetune and finetune.get("test_macro_f1"),
            "tfidf_test_macro_f1": (e.get("baseline") or {}).get("test_macro_f1"),
        }
    return rows


def markdown(rows: dict, m: dict, sources: tuple[dict, dict]) -> list[str]:
    md = [*report_header("The fine-tuned top as a candidate of `--recipe auto`", m)]
    for label, s in zip(("with the fine-tuned top", "without it"), sources):
        commits = sorted({r.get("commit") for e in s["datasets"].values() for r in e.get("runs", {}).values()
                          if r.get("commit")})
        md.append(f"Suite run {label}: `{s['command']}`, commit {', '.join(commits)}; {s['machine']['summary']}.")
    md += ["", "Test macro-F1 on each data set's own split (the same texts in both runs). Val: macro-F1 on the "
           "validation texts, held out (the search's answer: out of fold; the fine-tuned top: trained on train "
           "alone), what the search compared.", "",
           "| data set (train / val / test) | val: answer / fine-tuned | auto took | auto test | "
           "without the fine-tuned top: took, test | `--recipe finetune` test | TF-IDF test | "
           "fine-tuning s / wall s, then wall s without | peak MiB with / without |",
           "|---|---:|---|---:|---|---:|---:|---:|---:|"]
    for name, r in rows.items():
        w, wo = r["with"], r["without"]
        sp = " / ".join(str(r["splits"][s]) for s in ("train", "val", "test"))
        md.append(f"| {name} ({sp}) | {_f(w['answer_val_macro_f1'])} / {_f(w['fine_tuned_val_macro_f1'])} | "
                  f"{w['chosen_kind']} | {_f(w['test_macro_f1'])} | {wo['chosen_kind']}, {_f(wo['test_macro_f1'])} | "
                  f"{_f(r['recipe_finetune_test_macro_f1'])} | {_f(r['tfidf_test_macro_f1'])} | "
                  f"{w['fine_tuning_s'] or 0:.1f} / {w['wall_s']:.0f}, then {wo['wall_s']:.0f} | "
                  f"{w['peak_rss_mib']:.0f} / {wo['peak_rss_mib']:.0f} |")
    return md


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--with", dest="with_ft", required=True, help="suite JSON whose auto runs fine-tune the top")
    ap.add_argument("--without", required=True, help="suite JSON whose auto runs do not")
    ap.add_argument("--out", default="benchmarks/results/finetune-candidate")
    a = ap.parse_args()
    sources = tuple(json.loads(Path(p).read_text()) for p in (a.with_ft, a.without))
    rows = compare(*sources)
    m = describe()
    report = {"command": m["command"], "commit": m["commit"], "date": m["date"], "machine": m,
              "sources": {"with": {"command": sources[0]["command"], "machine": sources[0]["machine"]["summary"]},
                          "without": {"command": sources[1]["command"], "machine": sources[1]["machine"]["summary"]}},
              "datasets": rows}
    write_report(a.out, report, markdown(rows, m, sources))


if __name__ == "__main__":
    main()
