#!/usr/bin/env python
"""Every probe candidate of the search on one split, with the test score each would get: what
the search cannot see (it never reads the test split) and what a recipe change is judged by.

    python benchmarks/probe_candidates.py --preset reference --out benchmarks/results/layer-mix
    python benchmarks/probe_candidates.py --data FILE.jsonl --out benchmarks/results/NAME

One trunk pass (llmclassify's own, `--trunk-dtype auto`), then the search of `--recipe probe`
(search.search_probes: ridge screen, logistic regression on the shortlist and concatenations,
2 x 5-fold CV over train + validation) plus a learned softmax mix of every kept vector
(probes.fit_mix); each candidate refitted on train + validation and scored on test. Writes
OUT.json and OUT.md with command, commit, date and machine. The pooled features are kept in
`--features` (a .pt file) so a second look costs no pass.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from machine import describe

SPLITS = ("train", "val", "test")


def start(doc: str, script: str, argv=None, more_args=None, features: bool = True
          ) -> tuple[argparse.Namespace, dict, dict | None]:
    """What a benchmark on pooled features begins with: its arguments (what `pooled_features`
    reads: the data, its split, the features' cache; --out; and `more_args(ap)`'s), the
    machine's description with the command, and the features (None if not `features`: the
    benchmark makes its own). `script`: benchmarks/NAME.py."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--data", default="sms-spam")
    ap.add_argument("--preset", help="reference: the book's split")
    ap.add_argument("--seed", type=int, default=123)
    ap.add_argument("--features", help="cache of the pooled features (.pt)")
    ap.add_argument("--probe-layers", help="layers the pass keeps, e.g. 2,4,6 (default: train's)")
    ap.add_argument("--work-dir", default="/tmp/llmclassify-" + Path(script).stem.replace("_", "-"))
    ap.add_argument("--out", required=True)
    if more_args:
        more_args(ap)
    a = ap.parse_args(argv)
    machine = describe(sys.argv if argv is None else [script, *argv])
    return a, machine, pooled_features(a) if features else None


def pooled_features(a, template: str | None = None) -> dict:
    """One trunk pass's pooled vectors of every split (with `template` applied to the texts),
    their labels and raw texts, the label names, the pass's arithmetic, seconds and tokens;
    loaded from `a.features` where that exists, saved there otherwise."""
    from llmclassify.train import run as R
    from llmclassify.train.config import TrainConfig, with_preset

    if a.features and Path(a.features).exists():
        return torch.load(a.features)
    layers = tuple(int(x) for x in a.probe_layers.split(",")) if a.probe_layers else None
    cfg = TrainConfig(data=a.data, recipe="probe", progress=True, baseline="none", seed=a.seed, probe_layers=layers,
                      template=template)
    cfg = with_preset(cfg, a.preset, {"recipe", "baseline", "probe_layers"}) if a.preset else cfg
    work = Path(a.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    run = R._prepare(cfg, work)
    t0 = time.perf_counter()
    pooled = R._trunk_pass(run, "probe", {}, None)
    feats = {s: {"data": pooled[s].data.clone(), "layers": pooled[s].layers, "y": list(getattr(run.prep, s).labels),
                 "texts": list(getattr(run.prep, s).texts)} for s in SPLITS}
    feats |= {"names": run.names, "trunk_dtype": run.trunk_dtype, "pass_seconds": time.perf_counter() - t0,
              "template": template, "tokens": sum(len(x) for s in SPLITS for x in run.ids[s])}
    if a.features:
        torch.save(feats, a.features)
    return feats


def data_label(a) -> str:
    """What a row calls its data: the built-in name, or a suite file's stem; and the preset."""
    data = Path(a.data).stem if Path(a.data).suffix else a.data
    return data + (f" (--preset {a.preset})" if a.preset else "")


def add_row(out: Path, row: dict) -> list[dict]:
    """OUT.json holds one row per data set, each from its own invocation: `row` replaces the
    row of the same data, or joins them. Returns every row."""
    path = out.with_suffix(".json")
    rows = json.loads(path.read_text())["rows"] if path.exists() else []
    rows = [r for r in rows if r["data"] != row["data"]] + [row]
    path.write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    return rows


def provenance(rows: list[dict]) -> list[str]:
    """Markdown lines: each row's command, commit, date, machine and trunk arithmetic."""
    return ["", "Rows:", ""] + [f"- {r['data']}: `{r['machine']['command']}`; commit {r['machine']['commit']}; "
                                f"{r['machine']['date']}; {r['machine']['summary']}; trunk pass {r['trunk_dtype']}"
                                for r in rows]


def write_report(out: Path, md: list[str], rows: list[dict]) -> None:
    """OUT.md: the tables `md`, then each row's provenance; printed too."""
    text = "\n".join(md + provenance(rows))
    Path(out).with_suffix(".md").write_text(text + "\n")
    print(text)


def pool_and_test(f: dict, seed: int) -> dict:
    """What the search sees of cached features `f`, as `train` builds it (train/select.py):
    train + validation as one pool (`pool` features, labels `y`, `texts`, the search's `folds`,
    the validation rows `val_rows`), and the test split (`test`, `y_test`) to score only."""
    from llmclassify import search
    from llmclassify.features import PooledFeatures

    y = np.array(f["train"]["y"] + f["val"]["y"])
    return {"pool": PooledFeatures(torch.cat([f["train"]["data"], f["val"]["data"]]), f["train"]["layers"]),
            "test": PooledFeatures(f["test"]["data"], f["test"]["layers"]), "y": y,
            "y_test": np.array(f["test"]["y"]), "texts": f["train"]["texts"] + f["val"]["texts"],
            "folds": search.repeated_folds(y, seed), "val_rows": np.arange(len(f["train"]["y"]), len(y))}


def tuned_threshold_test(oof: np.ndarray, p_test: np.ndarray, y: np.ndarray, y_test: np.ndarray, names
                         ) -> tuple[float, dict] | None:
    """The decision threshold `--tune-threshold auto` tunes (two unbalanced classes: best macro-F1
    on the out-of-fold probabilities `oof`) and the test split's scores under it; None where it
    tunes none."""
    from llmclassify import search
    from llmclassify.calibrate import tune_threshold
    from llmclassify.scoring import score

    if len(names) != 2 or not search.unbalanced(y):
        return None
    t, _ = tune_threshold(oof[:, 1], y, objective="macro-f1")
    return t, score(np.eye(2)[(p_test[:, 1] >= t).astype(int)], y_test, names)


def baseline_stage(f: dict, seed: int) -> dict:
    """The baseline as `--recipe auto` fits it on cached features `f` (one BLAS thread): C and CV
    macro-F1 by the search's folds, out-of-fold probabilities, the test split's probabilities
    of its refit on train + validation, and its seconds (`base_*`); what the hybrid averages in,
    `partner_oof` / `partner_test`, is the baseline's (search_variants.py's `hybrid-char`
    replaces it)."""
    from llmclassify import baseline

    base = ngram_stage(f, pool_and_test(f, seed), baseline.BASELINE, "base")
    return {**base, "partner_oof": base["base_oof"], "partner_test": base["base_test"]}


def ngram_stage(f: dict, d: dict, parts, prefix: str) -> dict:
    """TF-IDF over `parts` + logistic regression, as select._fit_ngrams fits it, its fields named
    `prefix`_C, _cv, _oof, _test, _seconds."""
    from threadpoolctl import threadpool_limits

    from llmclassify import baseline, search

    with threadpool_limits(limits=1, user_api="blas"):
        t0 = time.perf_counter()
        C, cv, oof = search.cross_validate(
            lambda fo: baseline.out_of_fold(d["texts"], d["y"], len(f["names"]), fo, baseline.C_GRID, parts), d["y"],
            f["names"], d["folds"])
        test = baseline.fit(d["texts"], d["y"], len(f["names"]), C, parts).proba(f["test"]["texts"])
    return {f"{prefix}_C": C, f"{prefix}_cv": cv, f"{prefix}_oof": oof, f"{prefix}_test": test,
            f"{prefix}_seconds": time.perf_counter() - t0}


def auto_probe_stage(f: dict, seed: int, base: dict | None = None) -> dict:
    """The probe stage of `--recipe auto` on cached features `f`, as `train` runs it (one BLAS
    thread): the baseline (`base`, from baseline_stage: it reads the texts only, so one serves
    every variant of the features; made here when None), the probe search, its answers
    (search.with_answers: the ensemble of the top probes, the hybrid on it), the choice and its
    refit on train + validation; the test split only scored. Returns the chosen candidate
    (`pick`), the LLM-only answer (`llm`), their test probabilities, `test_proba`
    (any candidate's, refitted on the pool), baseline_stage's fields, the pool's and the test
    split's labels, the validation rows and the seconds of the search."""
    from threadpoolctl import threadpool_limits

    from llmclassify import probes, search

    names = f["names"]
    base = base or baseline_stage(f, seed)
    d = pool_and_test(f, seed)
    pool, test, y, folds, val_rows = (d[k] for k in ("pool", "test", "y", "folds", "val_rows"))
    with threadpool_limits(limits=1, user_api="blas"):
        t0 = time.perf_counter()
        found = search.search_probes(pool, y, names, folds, val_rows, probes.candidate_probes(pool.layers),
                                     log=lambda m: None)
        found = search.with_answers(found, y, names, val_rows, base["partner_oof"], log=lambda m: None)
        seconds = time.perf_counter() - t0
        pick = search.choose(found, "cv_macro_f1")
        llm = search.choose([c for c in found if c.kind == "probe"], "cv_macro_f1")

        def test_proba(c):
            probe = search.refit(c, lambda picks: pool.matrix(list(picks)), y, len(names))
            p = probes.softmax(probe.logits(test.matrix(list(c.picks))))
            return c.hybrid_weight * p + (1 - c.hybrid_weight) * base["partner_test"] if c.kind == "hybrid" else p

        return {"pick": pick, "llm": llm, "pick_test": test_proba(pick), "llm_test": test_proba(llm),
                "found": found, "test_proba": test_proba, **base, "y": y, "y_test": d["y_test"],
                "val_rows": val_rows, "search_seconds": seconds}


def main(argv=None) -> int:
    a, machine, f = start(__doc__, "benchmarks/probe_candidates.py", argv)
    from llmclassify import probes, search
    from llmclassify.features import POOLED
    from llmclassify.scoring import score

    names = f["names"]
    d = pool_and_test(f, a.seed)
    pool, test, y, y_test, folds, val_rows = (d[k] for k in ("pool", "test", "y", "y_test", "folds", "val_rows"))
    every = tuple((layer, p) for p in POOLED for layer in pool.layers)
    found = search.search_probes(pool, y, names, folds, val_rows, probes.candidate_probes(pool.layers),
                                 mixes=[every])
    chosen = search.choose(found, "cv_macro_f1")
    rows = []
    for c in sorted(found, key=lambda c: -c.cv_macro_f1):
        p = probes.fit_probe(pool.matrix(list(c.picks)), y, len(names), c.C, c.balanced,
                             mix=len(c.picks) if c.mix else 0)
        s = score(probes.softmax(p.logits(test.matrix(list(c.picks)))), y_test, names)
        rows.append({"name": c.name, "cv_macro_f1": c.cv_macro_f1, "val_macro_f1": c.val_macro_f1, "C": c.C,
                     "seconds": c.seconds, "test_accuracy": float(s["accuracy"]),
                     "test_macro_f1": float(s["macro_f1"]), "chosen": c is chosen})
    report = {"machine": machine, "data": a.data, "preset": a.preset, "trunk_dtype": f.get("trunk_dtype"),
              "sizes": {s: len(f[s]["y"]) for s in SPLITS}, "tie": search.TIE, "candidates": rows}
    out = Path(a.out)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    md = [f"# Probe candidates on {a.data}" + (f" (--preset {a.preset})" if a.preset else ""), "",
          f"Command: `{machine['command']}`; commit {machine['commit']}; {machine['date']}.", "",
          f"Machine: {machine['summary']}. Trunk pass: {f.get('trunk_dtype')}. Train / val / test: "
          + " / ".join(str(len(f[s]["y"])) for s in SPLITS) + ".", "",
          "| candidate | CV macro-F1 (train + val) | val macro-F1 (out of fold) | C | seconds | test accuracy | "
          "test macro-F1 |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        mark = " **(the search's choice)**" if r["chosen"] else ""
        md.append(f"| {r['name']}{mark} | {r['cv_macro_f1']:.4f} | {r['val_macro_f1']:.4f} | {r['C']} | "
                  f"{r['seconds']:.1f} | {r['test_accuracy']:.2%} | {r['test_macro_f1']:.4f} |")
    md += ["", f"The search picks the best CV macro-F1; within {search.TIE} of it, the cheapest (fewest blocks, "
           "then fewest vectors). The test column is never read by the search. `mix:` is a learned softmax "
           "mix of the vectors (probes.fit_mix); the others are logistic regression on their concatenation. "
           "Seconds: the candidate's cross-validation (3 C x 2 x 5 folds), on 2 shared cores."]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
