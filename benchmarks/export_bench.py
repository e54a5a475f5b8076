#!/usr/bin/env python
"""Prediction side by side (issue 17): llmclassify with torch, llmclassify with onnxruntime on
its ONNX export, and transformers.pipeline on its Hugging Face export, on the test texts of
one run, batch 32, each path in its own process.

    .venv/bin/python benchmarks/export_bench.py                   # trains --preset reference --no-head-bias first
    .venv/bin/python benchmarks/export_bench.py --run runs/ref    # an existing run
    .venv/bin/python benchmarks/export_bench.py --run runs/ref --quick    # 64 texts, 16 one by one

The run: `--run DIR`, else `llmclassify train --preset reference --no-head-bias` on `--model`
(default: the default preset). A Llama-family run needs --no-head-bias for the HF export
(export/hf.py says why); with a run that has a head bias the pipeline path is reported as
refused and the other two still run. Both exports are written to a temporary directory.

Per path: load seconds, prediction seconds and texts/s over the run's test texts (split.json;
300 on the book's split) in batches of 32 after a warm-up batch, peak RSS of its own process
(VmHWM: model, runtime and imports included), and, against llmclassify's torch path,
labels identical and the largest probability difference, batched and one by one (on the first
`--one-by-one` texts). Writes OUT.json and OUT.md (default benchmarks/results/export) with the
command, commit, date, CPU and torch version (machine.describe()).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

BATCH = 32
PATHS = {"torch": "llmclassify (torch)", "onnx": "llmclassify (onnxruntime)", "pipeline": "transformers.pipeline"}


# --- one path, in its own process ---------------------------------------------------------------
def child(path: str, target: str, texts_file: str, one_by_one: int) -> dict:
    """Load `target` the way `path` does, predict the texts (warm-up first), and report."""
    texts = json.loads(Path(texts_file).read_text(encoding="utf-8"))
    t0 = time.perf_counter()
    if path == "pipeline":
        from transformers import pipeline

        classify = pipeline("text-classification", model=target)
        labels = [classify.model.config.id2label[i] for i in range(classify.model.config.num_labels)]

        def proba(batch, batch_size=BATCH):
            out = classify(batch, batch_size=batch_size, truncation=True, top_k=None)
            return [[{d["label"]: d["score"] for d in r}[lab] for lab in labels] for r in out]
    else:
        from llmclassify.export.onnx import OnnxClassifier
        from llmclassify.predict import Classifier

        clf = OnnxClassifier.load(target) if path == "onnx" else Classifier.load(target)

        def proba(batch, batch_size=BATCH):
            return [[p.probabilities[lab] for lab in clf.labels] for p in clf.predict(batch, batch_size=batch_size)]
    load_s = time.perf_counter() - t0
    proba(texts[:BATCH])  # warm-up
    t0 = time.perf_counter()
    probs = proba(texts)
    seconds = time.perf_counter() - t0
    alone = [proba([t], 1)[0] for t in texts[:one_by_one]]
    return {"load_s": load_s, "seconds": seconds, "texts_per_s": len(texts) / seconds, "probabilities": probs,
            "one_by_one": alone, "torch_imported": "torch" in sys.modules, "peak_rss_mib": peak_rss_mib()}


def peak_rss_mib() -> float:
    """This process's own peak resident memory: VmHWM (Linux). Not ru_maxrss: Linux carries the
    high-water mark of the address space a child was forked from across exec, so a child of a
    large parent reports at least the parent's size there (measured: 511 MiB for a 9 MiB child
    of a 500 MiB parent)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # elsewhere: the best there is


def run_child(path: str, target: Path, texts_file: Path, one_by_one: int, work: Path) -> dict:
    result = work / f"{path}.json"
    print(f"[export_bench] {PATHS[path]} ...", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", path, "--target", str(target),
                    "--texts", str(texts_file), "--one-by-one", str(one_by_one), "--result", str(result)], check=True)
    return json.loads(result.read_text())


# --- the parent ---------------------------------------------------------------------------------
def prepare_run(a, work: Path) -> Path:
    if a.run:
        return Path(a.run)
    from llmclassify.cli import main as cli

    run = work / "run"
    args = ["train", "--preset", "reference", "--no-head-bias", "--quiet", "-o", str(run)]
    if a.model:
        args += ["--model", a.model]
    print(f"[export_bench] llmclassify {' '.join(args)}", file=sys.stderr, flush=True)
    if cli(args) != 0:
        raise SystemExit("export_bench: training failed")
    return run


def export(run: Path, fmt: str, work: Path) -> tuple[Path | None, str | None]:
    """The exported directory, or None and the one-line reason it was refused."""
    from llmclassify.errors import UserError
    from llmclassify.export import export_run

    try:
        return export_run(run, fmt, work / fmt), None
    except UserError as e:
        return None, str(e)


def compare(ref: dict, res: dict) -> dict:
    import numpy as np

    p, q = np.asarray(ref["probabilities"]), np.asarray(res["probabilities"])
    a, b = np.asarray(ref["one_by_one"]), np.asarray(res["one_by_one"])
    return {"labels_identical": bool((p.argmax(1) == q.argmax(1)).all()),
            "max_abs_prob_diff": float(np.abs(p - q).max()),
            "max_abs_prob_diff_one_by_one": float(np.abs(a - b).max()) if len(a) else None}


def report(r: dict) -> str:
    rows = ["| path | texts/s | vs pipeline | prediction s | load s | peak RSS MiB | labels identical | "
            "max abs prob diff (batched / one by one) | torch imported |", "|---|---:|---:|---:|---:|---:|---|---|---|"]
    pipe = (r["paths"].get("pipeline") or {}).get("texts_per_s")
    for name, res in r["paths"].items():
        if "refused" in res:
            rows.append(f"| {PATHS[name]} | refused: {res['refused']} | | | | | | | |")
            continue
        ratio = f"{res['texts_per_s'] / pipe:.2f}x" if pipe else "-"
        same = "reference" if name == "torch" else ("yes" if res["labels_identical"] else "**no**")
        diff = "" if name == "torch" else f"{res['max_abs_prob_diff']:.1e} / {res['max_abs_prob_diff_one_by_one']:.1e}"
        rows.append(f"| {PATHS[name]} | {res['texts_per_s']:.1f} | {ratio} | {res['seconds']:.1f} | {res['load_s']:.1f} | "
                    f"{res['peak_rss_mib']:.0f} | {same} | {diff} | {'yes' if res['torch_imported'] else 'no'} |")
    m = r["machine"]
    return "\n".join([
        "# Prediction: llmclassify (torch, onnxruntime) vs transformers.pipeline", "",
        f"Command: `{m['command']}`; commit {m['commit']}; {m['date']}.", "",
        f"Machine: {m['summary']}.", "",
        f"Run: `{r['run']}` ({r['base_model']}, recipe {r['recipe']}); {r['texts']} test texts, batch {BATCH}, "
        f"one process per path; one by one on the first {r['one_by_one']}. Differences are against llmclassify (torch).",
        "", *rows, "",
        f"Goal (issue 17): llmclassify's fastest path >= 2x the pipeline's throughput with identical labels: "
        f"{r['goal']}.", ""])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", help="an existing run directory (default: train --preset reference --no-head-bias)")
    ap.add_argument("--model", help="model for the run this script trains (default: the default preset)")
    ap.add_argument("--quick", action="store_true", help="64 test texts, 16 one by one")
    ap.add_argument("--one-by-one", type=int, default=64, help="texts also predicted one at a time (default 64)")
    ap.add_argument("--out", default=str(HERE / "results" / "export"), help="write OUT.json and OUT.md")
    ap.add_argument("--child", choices=list(PATHS), help=argparse.SUPPRESS)
    ap.add_argument("--target", help=argparse.SUPPRESS)
    ap.add_argument("--texts", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        Path(a.result).write_text(json.dumps(child(a.child, a.target, a.texts, a.one_by_one)))
        return 0

    from machine import describe

    from llmclassify.checkpoint import load_run_config
    from llmclassify.spec import RunSpec

    one_by_one = 16 if a.quick else a.one_by_one
    with tempfile.TemporaryDirectory(prefix="llmclassify-export-bench-") as tmp:
        work = Path(tmp)
        run = prepare_run(a, work)
        texts = json.loads((run / "split.json").read_text(encoding="utf-8"))["test"]["texts"]
        texts = texts[:64] if a.quick else texts
        texts_file = work / "texts.json"
        texts_file.write_text(json.dumps(texts))
        spec = RunSpec.from_dict(load_run_config(run))
        r = {"machine": describe(), "run": str(a.run or "trained here"),
             "base_model": spec.base_model.get("source"), "recipe": spec.recipe, "texts": len(texts),
             "batch_size": BATCH, "one_by_one": min(one_by_one, len(texts)), "paths": {}}
        targets = {"torch": (run, None), "onnx": export(run, "onnx", work), "pipeline": export(run, "hf", work)}
        for name, (target, refused) in targets.items():
            r["paths"][name] = {"refused": refused} if refused else run_child(name, target, texts_file, one_by_one, work)
    ref = r["paths"]["torch"]
    for name, res in r["paths"].items():
        if name != "torch" and "refused" not in res:
            res.update(compare(ref, res))
    ours = [res for n, res in r["paths"].items() if n != "pipeline" and "refused" not in res]
    pipe = r["paths"]["pipeline"]
    if "refused" in pipe:
        r["goal"] = "not measured (the HF export was refused)"
    else:
        best = max(res["texts_per_s"] for res in ours) / pipe["texts_per_s"]
        same = all(res.get("labels_identical", True) for res in r["paths"].values() if "refused" not in res)
        r["goal"] = f"{'met' if best >= 2 and same else 'missed'} ({best:.2f}x, labels identical: {'yes' if same else 'no'})"
    for res in r["paths"].values():  # the figures stay; the raw probabilities are not worth keeping
        res.pop("probabilities", None)
        res.pop("one_by_one", None)
    md = report(r)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(r, indent=1) + "\n")
    out.with_suffix(".md").write_text(md)
    print(md)
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
