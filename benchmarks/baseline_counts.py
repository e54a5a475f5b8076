#!/usr/bin/env python
"""The TF-IDF baseline's cross-validation: a vectorizer fitted on every fold's texts (before)
against the n-grams counted once and each fold's TF-IDF read off the counts (now,
baseline.tfidf), side by side.

    python benchmarks/baseline_counts.py --data sms-spam,FILE.jsonl,... --out benchmarks/results/baseline-counts

Per data set (llmclassify's own split, `--seed`), what `train` runs for the baseline
(train/select.fit_baseline, one BLAS thread): C by 2 x 5-fold CV over train + validation and
the refit on them, each way; then the largest difference of the out-of-fold probabilities, the
C each way chose and the test labels that differ. `--repeats` interleaved rounds, the best
counts. Writes OUT.json and OUT.md with the command, commit, date and machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from machine import describe


def vectorizer_per_fold(texts, y, n_classes, folds, C_grid):
    """baseline.out_of_fold before: a TfidfVectorizer fitted on each fold's training texts."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    from llmclassify.probes import LogisticPath, softmax

    texts = np.asarray(texts, dtype=object)
    probs = {C: np.zeros((len(y), n_classes)) for C in C_grid}
    for held in folds:
        keep = np.ones(len(y), dtype=bool)
        keep[held] = False
        vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, dtype=np.float32)
        x, x_held = vec.fit_transform(texts[keep]), vec.transform(texts[held])
        path = LogisticPath(n_classes)
        for C in sorted(C_grid):
            w, b = path.fit(x, y[keep], C)
            probs[C][held] = softmax(np.asarray(x_held @ w.T) + b)
    return probs


def before(texts, y, names, folds):
    from sklearn.feature_extraction.text import TfidfVectorizer

    from llmclassify import baseline, search
    from llmclassify.probes import fit_logistic

    C, f1, oof = search.cross_validate(lambda f: vectorizer_per_fold(texts, y, len(names), f, baseline.C_GRID),
                                       y, names, folds)
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, dtype=np.float32)
    w, b = fit_logistic(vec.fit_transform(texts), y, len(names), C)
    return C, f1, oof, lambda t: np.asarray(vec.transform(t) @ w.T) + b


def now(texts, y, names, folds):
    from llmclassify import baseline, search

    counts = baseline.count_ngrams(texts)
    C, f1, oof = search.cross_validate(lambda f: baseline.out_of_fold(counts, y, len(names), f, baseline.C_GRID),
                                       y, names, folds)
    model = baseline.fit(counts, y, len(names), C)
    return C, f1, oof, model.logits


WAYS = {"a vectorizer per fold (before)": before, "counted once (now)": now}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="sms-spam", help="built-in names or files, comma-separated")
    ap.add_argument("--seed", type=int, default=123)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    from threadpoolctl import threadpool_limits

    from llmclassify import data, search
    from llmclassify.train.config import TrainConfig

    machine = describe()
    rows = []
    for source in a.data.split(","):
        cfg = TrainConfig(data=source, seed=a.seed)
        prep = data.prepare(data.load_dataset(cfg.data), split=cfg.split, seed=cfg.seed, dedupe=cfg.dedupe,
                            balance=cfg.balance)
        names = list(prep.label_map.names)
        texts = list(prep.train.texts) + list(prep.val.texts)
        y = np.asarray(prep.train.labels + prep.val.labels)
        folds = search.repeated_folds(y, a.seed)
        got: dict = {w: {"seconds": []} for w in WAYS}
        with threadpool_limits(limits=1, user_api="blas"):
            for _ in range(a.repeats):
                for w, way in WAYS.items():
                    t0 = time.perf_counter()
                    C, f1, oof, logits = way(texts, y, names, folds)
                    got[w]["seconds"].append(time.perf_counter() - t0)
                    got[w] |= {"C": C, "cv": f1, "oof": oof, "labels": logits(list(prep.test.texts)).argmax(1)}
        b, n = got.values()
        rows.append({"data": Path(source).stem, "texts": len(y), "classes": len(names),
                     "test_texts": len(prep.test.texts),
                     "seconds": {w: min(g["seconds"]) for w, g in got.items()},
                     "C": {w: g["C"] for w, g in got.items()}, "cv": {w: g["cv"] for w, g in got.items()},
                     "max_oof_difference": float(np.abs(b["oof"] - n["oof"]).max()),
                     "test_labels_differ": int((b["labels"] != n["labels"]).sum())})
        print(rows[-1], flush=True)
    report = {"command": machine["command"], "commit": machine["commit"], "date": machine["date"],
              "machine": machine, "rows": rows}
    out = Path(a.out)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    md = ["# The baseline's cross-validation: a vectorizer per fold (before) or the n-grams counted once (now)", "",
          f"Command: `{machine['command']}`; commit {machine['commit']}; {machine['date']}.", "",
          f"Machine: {machine['summary']}.", "",
          f"C by 2 x 5-fold CV over train + validation and the refit, one BLAS thread, best of {a.repeats} "
          "interleaved rounds. `difference`: the largest |out-of-fold probability before - now|; `differ`: test "
          "texts whose label changes.", "",
          "| data (pool texts, classes) | before s | now s | speed | C before / now | difference | differ |",
          "|---|---:|---:|---:|---|---:|---:|"]
    for r in rows:
        sb, sn = r["seconds"].values()
        md.append(f"| {r['data']} ({r['texts']}, {r['classes']}) | {sb:.1f} | {sn:.1f} | {sb / sn:.2f}x "
                  f"| {' / '.join(f'{c:g}' for c in r['C'].values())} | {r['max_oof_difference']:.2g} "
                  f"| {r['test_labels_differ']} of {r['test_texts']} |")
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
