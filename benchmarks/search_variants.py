#!/usr/bin/env python
"""Changes to the probe stage of `--recipe auto` measured beside the rule `train` follows, on the
same cached features, folds and baseline: each variant's pick and LLM-only answer scored on
test, which no rule reads. What a change to search.py is judged by before it is taken.

    python benchmarks/search_variants.py --features F.pt --label NAME --out benchmarks/results/search-variants
    python benchmarks/search_variants.py --data FILE.jsonl --features F.pt --probe-layers 2,4,...,30 ...

Variants (`--variants`, comma-separated; `now` always runs first):

  now               the rule `train` follows (probe_candidates.auto_probe_stage)
  ensemble-2/-5     the LLM-only answer averages the top 2 or 5 probes, not search.ENSEMBLE (3)
  shortlist-5       5 single-layer probes go on from the ridge screen, not search.SHORTLIST (3)
  layer-average     two more candidates: the mean over the kept layers from 16 up, of each pooling
  hybrid-geometric  the hybrid as a weighted geometric mean of the two probabilities
  all-weighted      when the best probe's class-weighted refit wins, the other top probes get one
                    too (each ensemble member then the better of its two)
  from-2, from-4    the kept layers start at 2 or 4, not 8: needs features that hold them
                    (--probe-layers when the features are made)
  joint             one logistic regression on [TF-IDF | the concatenation probe's standardised
                    vectors times s / sqrt(width)], s and C by 5-fold CV: in place of the hybrid,
                    reported as its own pick
  repeats-1         one shuffle of search.FOLDS folds, not search.REPEATS (2): half the fits
  folds-3           one shuffle of 3 folds: a quarter of the fits' rows (the baseline too)
  repeats-3         three shuffles of search.FOLDS folds: 1.5x the fits, less noise in the choice
  threshold-cv      two unbalanced classes: every out-of-fold score (C, candidates, ensemble, hybrid
                    weight) is the macro-F1 at the threshold `--tune-threshold auto` would tune on
                    those predictions, not at argmax: the decision the saved run makes
  hybrid-char       the hybrid averages in a TF-IDF model over words and character 2-5 grams
                    (`--hybrid-ngrams words+chars`, baseline.HYBRID_NGRAMS), not the baseline

Features: a .pt of probe_candidates.pooled_features (one trunk pass; made when missing). The
rule's kept layers are those from 8 up (features.probe_layers(30) for SmolLM2); `from-N` reads
lower ones. One row per data set in OUT.json / OUT.md.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

import numpy as np
import torch
from probe_candidates import (
    add_row,
    auto_probe_stage,
    baseline_stage,
    ngram_stage,
    pool_and_test,
    start,
    tuned_threshold_test,
    write_report,
)

from llmclassify.baseline import HYBRID_NGRAMS

RULE_START = 8  # the lowest layer features.probe_layers keeps on a 30-layer model
VARIANTS = ("now", "ensemble-2", "ensemble-5", "shortlist-5", "layer-average", "hybrid-geometric", "all-weighted",
            "from-2", "from-4", "joint", "repeats-1", "folds-3", "repeats-3", "threshold-cv",
            "hybrid-char")
FOLD_VARIANTS = {"repeats-1": {"REPEATS": 1}, "folds-3": {"REPEATS": 1, "FOLDS": 3},  # search.py's settings
                 "repeats-3": {"REPEATS": 3}}
AVERAGE = 100  # the layer number the layer-average vectors are filed under
JOINT_SCALES = (0.5, 1.0, 2.0)
JOINT_C = (1.0, 10.0, 100.0)


def from_layer(f: dict, lowest: int) -> dict:
    """`f` with only the layers from `lowest` up."""
    out = dict(f)
    for s in ("train", "val", "test"):
        keep = [i for i, layer in enumerate(f[s]["layers"]) if layer >= lowest]
        out[s] = {**f[s], "data": f[s]["data"][:, keep].contiguous(), "layers": [f[s]["layers"][i] for i in keep]}
    return out


def with_layer_average(f: dict) -> dict:
    """`f` with one more 'layer', AVERAGE: the mean of the vectors of layers 16 and up."""
    out = dict(f)
    for s in ("train", "val", "test"):
        d, layers = f[s]["data"], f[s]["layers"]
        upper = [i for i, layer in enumerate(layers) if layer >= 16]
        avg = d[:, upper].float().mean(1, keepdim=True).to(d.dtype)
        out[s] = {**f[s], "data": torch.cat([d, avg], 1), "layers": layers + [AVERAGE]}
    return out


@contextlib.contextmanager
def patched(obj, **attrs):
    old = {k: getattr(obj, k) for k in attrs}
    for k, v in attrs.items():
        setattr(obj, k, v)
    try:
        yield
    finally:
        for k, v in old.items():
            setattr(obj, k, v)


def variant_context(name: str):
    """The change `name` makes to search.py / probes.py while the stage runs."""
    from llmclassify import probes, search

    if name.startswith("ensemble-"):
        return patched(search, ENSEMBLE=int(name.split("-")[1]))
    if name == "shortlist-5":
        return patched(search, SHORTLIST=5)
    if name == "layer-average":
        rule = probes.candidate_probes
        return patched(probes, candidate_probes=lambda layers: rule([x for x in layers if x != AVERAGE])
                       + [((AVERAGE, "mean"),), ((AVERAGE, "last"),)])
    if name == "hybrid-geometric":
        return patched(search, hybrid_candidates=geometric_hybrid)
    if name == "all-weighted":
        return patched(search, search_probes=all_weighted(search.search_probes))
    if name in FOLD_VARIANTS:
        return patched(search, **FOLD_VARIANTS[name])
    if name == "threshold-cv":
        return patched(search, _macro_f1=thresholded_macro_f1(search._macro_f1))
    return contextlib.nullcontext()


def thresholded_macro_f1(rule):
    """search._macro_f1, but for two unbalanced classes the macro-F1 at the best threshold on
    these probabilities (calibrate.tune_threshold), as `--tune-threshold auto` decides."""
    from llmclassify import search
    from llmclassify.calibrate import tune_threshold

    def macro_f1(probs, y, names):
        y = np.asarray(y)
        if len(names) != 2 or len(y) == 0 or not search.unbalanced(y) or y.min() == y.max():
            return rule(probs, y, names)
        return float(tune_threshold(np.asarray(probs)[:, 1], y, objective="macro-f1")[1]["macro_f1"])

    return macro_f1


def geometric_hybrid(best_probe, baseline_oof, y, names, val_rows, weights=None):
    from llmclassify import probes, search

    best = None
    for w in weights or search.HYBRID_WEIGHTS:
        p = probes.softmax(w * np.log(np.clip(best_probe.oof, 1e-12, None))
                           + (1 - w) * np.log(np.clip(baseline_oof, 1e-12, None)))
        f1 = search._macro_f1(p, y, names)
        if best is None or f1 > best[0]:
            best = (f1, w, p)
    f1, w, p = best
    return search.Candidate(f"hybrid-geometric ({best_probe.name.removeprefix('probe ')} + TF-IDF, w {w})", "hybrid",
                            f1, search._macro_f1(p[val_rows], y[val_rows], names), cost=(1,) + best_probe.cost[1:],
                            picks=best_probe.picks, C=best_probe.C, balanced=best_probe.balanced,
                            hybrid_weight=w, oof=p, members=best_probe.members)


def all_weighted(rule):
    from llmclassify import search

    def search_probes(pooled, y, names, folds, val_rows, candidates, log=print, mixes=()):
        out = rule(pooled, y, names, folds, val_rows, candidates, log, mixes)
        done = {(c.picks, c.mix) for c in out if c.balanced}
        if done:
            for c in sorted([c for c in out if not c.balanced], key=lambda c: -c.cv_macro_f1)[:search.ENSEMBLE]:
                if (c.picks, c.mix) not in done:
                    out.append(search._logistic_candidate(pooled, y, names, folds, val_rows, c.picks, True, log,
                                                          mix=c.mix))
        return out

    return search_probes


def test_figures(c_name: str, cv: float, oof, p_test, y, y_test, names) -> dict:
    """Test macro-F1 / accuracy, the macro-F1 under the threshold `--tune-threshold auto` tunes
    where it tunes one (probe_candidates.tuned_threshold_test)."""
    from llmclassify.scoring import score

    s = score(p_test, y_test, names)
    out = {"name": c_name, "cv": cv, "test": float(s["macro_f1"]), "accuracy": float(s["accuracy"])}
    tuned = tuned_threshold_test(oof, p_test, y, y_test, names)
    if tuned:
        out["threshold"], out["test"] = tuned[0], float(tuned[1]["macro_f1"])
    return out


def stage(f: dict, seed: int, variant: str, base: dict) -> dict:
    """The probe stage under `variant` (`base`: probe_candidates.baseline_stage, the same for
    every variant): its pick and LLM-only answer on test."""
    if variant.startswith("from-"):
        f = from_layer(f, int(variant.split("-")[1]))
    else:
        f = from_layer(f, RULE_START)
    if variant == "layer-average":
        f = with_layer_average(f)
    if variant == "joint":
        return joint(f, seed)
    with variant_context(variant):
        if variant in FOLD_VARIANTS:  # the baseline's C is chosen on the same folds: fitted again on these
            base = baseline_stage(f, seed)
        t0 = time.perf_counter()
        r = auto_probe_stage(f, seed, base)
    y, y_test, names = r["y"], r["y_test"], f["names"]
    return {"pick": test_figures(r["pick"].name, r["pick"].cv_macro_f1, r["pick"].oof, r["pick_test"], y, y_test, names),
            "llm": test_figures(r["llm"].name, r["llm"].cv_macro_f1, r["llm"].oof, r["llm_test"], y, y_test, names),
            "layers": f["train"]["layers"], "seconds": time.perf_counter() - t0, "base_seconds": base["base_seconds"],
            "base_test": float(score_of(base["base_test"], y_test, names))}


def stage_on_each_pass(passes: dict[str, dict], seed: int) -> tuple[dict, dict]:
    """`train`'s probe stage (`now`) on the features of each of `passes` (name -> the cached
    features of one split made by a different pass over the same texts), with one baseline (it
    reads the texts only); each pick's figures printed. Returns (runs by name, the baseline's
    CV macro-F1, test macro-F1 and C)."""
    base = baseline_stage(from_layer(next(iter(passes.values())), RULE_START), seed)
    runs = {name: stage(f, seed, "now", base) for name, f in passes.items()}
    for name, x in runs.items():
        print(f"{name}: pick {x['pick']['test']:.4f} (CV {x['pick']['cv']:.4f}), LLM-only {x['llm']['test']:.4f} "
              f"(CV {x['llm']['cv']:.4f})", file=sys.stderr, flush=True)
    return runs, {"cv": base["base_cv"], "test": next(iter(runs.values()))["base_test"], "C": base["base_C"]}


def pass_cells(row: dict) -> list[str]:
    """A stage_on_each_pass row's table cells: 'CV -> test' of each pass's pick, of each pass's
    LLM-only answer, then of the TF-IDF baseline."""
    runs, b = row["runs"], row["baseline"]
    return [f"{x[part]['cv']:.4f} -> {x[part]['test']:.4f}" for part in ("pick", "llm") for x in runs.values()] + [
        f"{b['cv']:.4f} -> {b['test']:.4f}"]


def pass_picks(rows: list[dict]) -> list[str]:
    """Markdown lines naming each pass's pick and LLM-only answer, per row."""
    return ["", "Picks:", ""] + [f"- {r['data']}, {name}: {x['pick']['name']}; LLM-only {x['llm']['name']}"
                                 for r in rows for name, x in r["runs"].items()]


def mean_changes(rows: list[dict], rule: str, variant: str) -> list[str]:
    """Markdown lines: the mean change, `variant`'s pass against `rule`'s, of the pick's and of
    the LLM-only answer's test macro-F1 over stage_on_each_pass rows."""
    lines = []
    for part, what in (("pick", "pick"), ("llm", "LLM-only answer")):
        diffs = [r["runs"][variant][part]["test"] - r["runs"][rule][part]["test"] for r in rows]
        lines += ["", f"Mean change of the {what}'s test macro-F1: {sum(diffs) / len(diffs):+.4f} over {len(diffs)} "
                  "splits."]
    return lines


def score_of(p_test, y_test, names) -> float:
    from llmclassify.scoring import score

    return score(p_test, y_test, names)["macro_f1"]


def joint(f: dict, seed: int) -> dict:
    """One logistic regression on TF-IDF beside the concatenation probe's vectors: scale and C by
    the search's first repeat of folds, refitted on train + validation."""
    from scipy.sparse import csr_matrix, hstack
    from threadpoolctl import threadpool_limits

    from llmclassify import baseline, probes, search

    t0 = time.perf_counter()
    names = f["names"]
    d = pool_and_test(f, seed)
    y, texts = d["y"], np.asarray(d["texts"], dtype=object)
    concat = next(p for p in probes.candidate_probes(d["pool"].layers) if len(p) > 2)
    x, x_test = d["pool"].matrix(list(concat)), d["test"].matrix(list(concat))

    def features(tr_texts, tr_x, te_texts, te_x, s):
        vec = baseline.vectorizer()
        mean, sd = probes.standardiser(tr_x)
        k = s / np.sqrt(tr_x.shape[1])
        dense = [csr_matrix(((v - mean) / sd * k).astype(np.float32)) for v in (tr_x, te_x)]
        return (hstack([vec.fit_transform(list(tr_texts)), dense[0]]).tocsr(),
                hstack([vec.transform(list(te_texts)), dense[1]]).tocsr())

    with threadpool_limits(limits=1, user_api="blas"):
        oof = {(s, C): np.zeros((len(y), len(names))) for s in JOINT_SCALES for C in JOINT_C}
        for held in d["folds"][0]:
            keep = np.ones(len(y), dtype=bool)
            keep[held] = False
            for s in JOINT_SCALES:
                a, b = features(texts[keep], x[keep], texts[held], x[held], s)
                path = probes.LogisticPath(len(names))
                for C in JOINT_C:
                    w, bias = path.fit(a, y[keep], C)
                    oof[(s, C)][held] = probes.softmax(np.asarray(b @ w.T) + bias)
        cv = {k: search._macro_f1(v, y, names) for k, v in oof.items()}
        s, C = max(cv, key=cv.get)
        a, b = features(texts, x, f["test"]["texts"], x_test, s)
        w, bias = probes.fit_logistic(a, y, len(names), C)
        p = probes.softmax(np.asarray(b @ w.T) + bias)
    pick = test_figures(f"joint (TF-IDF | {probes.probe_name(concat)} x {s}, C {C})", cv[(s, C)], oof[(s, C)], p,
                        y, d["y_test"], names)
    return {"pick": pick, "llm": None, "layers": d["pool"].layers, "seconds": time.perf_counter() - t0}


def main(argv=None) -> int:
    def more(ap):
        ap.add_argument("--label", help="the row's name (default: the data's)")
        ap.add_argument("--variants", default=",".join(VARIANTS))

    a, machine, f = start(__doc__, "benchmarks/search_variants.py", argv, more)
    from probe_candidates import data_label

    variants = ["now"] + [v for v in a.variants.split(",") if v != "now"]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"search_variants.py: unknown variant {', '.join(unknown)} (known: {', '.join(VARIANTS)})")
    lowest = min(f["train"]["layers"])
    base = baseline_stage(f, a.seed)
    # hybrid-char's partner: the words + characters model beside the baseline (its own fields, partner_*)
    chars = {**base, **ngram_stage(f, pool_and_test(f, a.seed), HYBRID_NGRAMS, "partner")} \
        if "hybrid-char" in variants else base
    runs = {}
    for v in variants:
        if v.startswith("from-") and int(v.split("-")[1]) < lowest:
            print(f"{v}: the features keep layers from {lowest} only; skipped", file=sys.stderr)
            continue
        runs[v] = stage(f, a.seed, v, chars if v == "hybrid-char" else base)
        print(f"{v}: pick {runs[v]['pick']['test']:.4f} ({runs[v]['pick']['name']})", file=sys.stderr, flush=True)
    y_test = np.asarray(f["test"]["y"])
    ngrams = {k: {"cv": chars[f"{k}_cv"], "C": chars[f"{k}_C"], "seconds": chars[f"{k}_seconds"],
                  "test": float(score_of(chars[f"{k}_test"], y_test, f["names"]))}
              for k in ("base", "partner") if f"{k}_cv" in chars}
    row = {"data": a.label or data_label(a), "machine": machine, "trunk_dtype": f.get("trunk_dtype"), "runs": runs,
           "pool": len(f["train"]["y"]) + len(f["val"]["y"]), "ngrams": ngrams}
    rows = add_row(Path(a.out), row)
    shown = [v for v in VARIANTS if any(v in r["runs"] for r in rows)]
    md = ["# Changes to the search, beside the rule `train` follows (test macro-F1 of the pick; never read to choose)",
          "", "Each cell: the variant's pick scored on test (under the tuned threshold where `--tune-threshold auto` "
          "tunes one), then its difference from `now`. The last row: the mean difference over the rows that ran "
          "it. Variants: `benchmarks/search_variants.py`.", "",
          "| data | " + " | ".join(shown) + " |", "|---|" + "---:|" * len(shown)]
    for r in rows:
        now = r["runs"]["now"]["pick"]["test"]
        cells = []
        for v in shown:
            x = r["runs"].get(v)
            cells.append("-" if x is None else f"{x['pick']['test']:.4f}" if v == "now"
                         else f"{x['pick']['test']:.4f} ({x['pick']['test'] - now:+.4f})")
        md.append(f"| {r['data']} | " + " | ".join(cells) + " |")
    means = []
    for v in shown:
        diffs = [r["runs"][v]["pick"]["test"] - r["runs"]["now"]["pick"]["test"] for r in rows if v in r["runs"]]
        means.append("" if v == "now" else f"{np.mean(diffs):+.4f} over {len(diffs)}")
    md.append("| mean difference | " + " | ".join(means) + " |")
    timed = [v for v in shown if v in FOLD_VARIANTS]
    if timed:  # what the fold variants are for: the seconds of the probe stage and of the baseline
        md += ["", "Seconds of the probe stage + the baseline's CV and refit, and the baseline's test macro-F1, "
               "under `now` and the fold variants (one BLAS thread):", "",
               "| data | pool | " + " | ".join(["now"] + timed) + " |", "|---|---:|" + "---:|" * (1 + len(timed))]
        for r in rows:
            cells = [f"{x['seconds']:.0f} + {x['base_seconds']:.0f} s (TF-IDF {x['base_test']:.4f})"
                     if (x := r["runs"].get(v)) and "base_seconds" in x else "-" for v in ["now"] + timed]
            md.append(f"| {r['data']} | {r.get('pool', '-')} | " + " | ".join(cells) + " |")
    partnered = [r for r in rows if "partner" in r.get("ngrams", {})]
    if partnered:
        md += ["", "The n-gram models alone (CV macro-F1 -> test macro-F1, seconds of CV and refit): the baseline "
               "every run is shown beside, and the hybrid's partner (words + characters, baseline.HYBRID_NGRAMS):",
               "", "| data | baseline (words) | hybrid's partner |", "|---|---:|---:|"]
        md += [f"| {r['data']} | " + " | ".join(f"{n['cv']:.4f} -> {n['test']:.4f} ({n['seconds']:.0f} s)"
                                               for n in (r["ngrams"]["base"], r["ngrams"]["partner"])) + " |"
               for r in partnered]
    md += ["", "Picks:", ""] + [f"- {r['data']}, {v}: {x['pick']['name']} (CV {x['pick']['cv']:.4f})"
                                for r in rows for v, x in r["runs"].items()]
    write_report(Path(a.out), md, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
