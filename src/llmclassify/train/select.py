"""The probe stage of a run and the choice between recipes: the baseline and the probes scored
out of fold over train + validation (search.py has the protocol), the fine-tuned top (with
--search-finetune) compared on validation, the chosen probe refitted on train + validation."""

from __future__ import annotations

import time

import numpy as np
import torch

from ..scoring import score
from ..search import cross_validate
from .config import SPLITS
from .state import Fitted, Run, log


def pool_and_folds(run: Run):
    """Train + validation rows as one pool, and its cross-validation folds (search.py)."""
    from ..search import repeated_folds

    if run.multi:
        return None, None
    y = np.asarray(run.prep.train.labels + run.prep.val.labels)
    return y, repeated_folds(y, run.cfg.seed)


def fit_baseline(run: Run, y_pool, folds):
    """TF-IDF + logistic regression: C by the search's folds, refitted on train + validation
    (single-label); multi-label runs have none yet. Never sees the test split. With
    `--hybrid-ngrams words+chars` the search also gets the same model over words and
    characters (baseline.HYBRID_NGRAMS) under `partner`: what its hybrid averages in (else the
    baseline itself)."""
    from .. import baseline

    if run.multi:
        return None
    base = _fit_ngrams(run, y_pool, folds, baseline.BASELINE)
    log(f"baseline ({baseline.NAME}): CV macro-F1 {base['cv_macro_f1']:.4f} (C {base['C']}, {base['seconds']:.1f} s)",
        run.cfg)
    run.seconds["baseline"] = base["seconds"]
    if run.cfg.hybrid_ngrams == "words+chars":
        base["partner"] = partner = _fit_ngrams(run, y_pool, folds, baseline.HYBRID_NGRAMS)
        run.seconds["hybrid_ngrams"] = partner["seconds"]
        log(f"hybrid's n-gram partner ({baseline.PARTNER_NAME}): CV macro-F1 {partner['cv_macro_f1']:.4f} "
            f"(C {partner['C']}, {partner['seconds']:.1f} s)", run.cfg)
    return base


def hybrid_partner(base: dict | None) -> dict | None:
    """The n-gram model the search's hybrid averages in: `--hybrid-ngrams words+chars`'s
    partner, else the baseline."""
    return None if base is None else base.get("partner", base)


def ngram_proba(fitted: dict, run: Run, split: str) -> np.ndarray:
    """A fitted n-gram model's (`_fit_ngrams`) probabilities on a split's texts, computed once:
    the hybrid's refit and the baseline's report read the same ones."""
    cache = fitted.setdefault("proba", {})
    if split not in cache:
        cache[split] = fitted["model"].proba(getattr(run.prep, split).texts)
    return cache[split]


def _fit_ngrams(run: Run, y_pool, folds, parts) -> dict:
    """A TF-IDF + logistic regression over `parts`: C by the folds, refitted on train + validation."""
    from .. import baseline

    t0 = time.perf_counter()
    texts = list(run.prep.train.texts) + list(run.prep.val.texts)
    C, f1, oof = cross_validate(
        lambda f: baseline.out_of_fold(texts, y_pool, len(run.names), f, baseline.C_GRID, parts), y_pool, run.names,
        folds)
    model = baseline.fit(texts, y_pool, len(run.names), C, parts)
    return {"model": model, "oof": oof, "cv_macro_f1": float(f1), "C": C, "seconds": time.perf_counter() - t0}


def score_probes(run: Run, pooled: dict, y_pool, folds, base) -> list:
    """Probe candidates, their ensemble and the hybrid (search.with_answers) scored out of fold
    over train + validation."""
    from ..features import PooledFeatures
    from ..probes import candidate_probes, parse_probe
    from ..search import search_probes, with_answers

    t0 = time.perf_counter()
    cfg = run.cfg
    pool = PooledFeatures(torch.cat([pooled["train"].data, pooled["val"].data]), pooled["train"].layers)
    val_rows = np.arange(len(run.prep.train.labels), len(y_pool))
    from ..probes import MIX

    asked = parse_probe(cfg.probe, run.clf.n_layers) if cfg.probe else None
    mixes = [asked] if asked and cfg.probe.startswith(MIX) else []
    cands = ([] if mixes else [asked]) if asked else candidate_probes(pool.layers)
    log(f"probe search: {len(cands) + len(mixes)} candidates, {len(folds)} x {len(folds[0])}-fold cross-validation over "
        "train + validation", cfg)
    found = search_probes(pool, y_pool, run.names, folds, val_rows, cands, log=lambda m: log(m, cfg),
                          mixes=mixes)
    base_oof = hybrid_partner(base)["oof"] if base is not None and cfg.recipe == "auto" else None
    found = with_answers(found, y_pool, run.names, val_rows, base_oof, ensemble=not asked, log=lambda m: log(m, cfg))
    run.seconds["probe_search"] = run.seconds.get("probe_search", 0) + time.perf_counter() - t0  # + the question's
    return found


def choose_recipe(run: Run, recipe: str, probe_cands: list, finetuned: Fitted | None, pooled, y_pool, base) -> Fitted:
    """The search's choice (search.py), refitted on train + validation when it is a probe."""
    from ..search import Candidate, choose

    if recipe == "finetune":
        return finetuned
    best = choose(probe_cands, "cv_macro_f1")
    llm_only = choose([c for c in probe_cands if c.kind == "probe"], "cv_macro_f1")
    pick = best
    cands = list(probe_cands)
    if finetuned is not None:
        val_y = run.prep.val.labels
        from ..scoring import logit_metrics

        f1 = logit_metrics(finetuned.logits["val"], torch.as_tensor(val_y), run.names)["macro_f1"]
        ft = Candidate(f"finetune {run.cfg.trainable}, {run.cfg.pooling} token", "finetune", None, float(f1),
                       cost=(2,))
        cands.append(ft)
        pick = choose([best, ft], "val_macro_f1")
        log(f"  {ft.name:<40} val macro-F1 {f1:.4f} (epoch {finetuned.best_epoch} of {run.cfg.epochs})", run.cfg)
    score = (f"CV macro-F1 {pick.cv_macro_f1:.4f}" if pick.cv_macro_f1 is not None
             else f"validation macro-F1 {pick.val_macro_f1:.4f}")
    llm = "LLM only" if pick is llm_only else f"best LLM-only answer: {llm_only.name}, CV macro-F1 {llm_only.cv_macro_f1:.4f}"
    log(f"recipe: {pick.name} ({score}; {llm})", run.cfg)
    report = [c.report() for c in cands]
    if pick.kind == "finetune":
        finetuned.candidates, finetuned.chosen = report, pick.name
        return finetuned
    return refit_probe(run, pick, pooled, y_pool, base, report)


def refit_probe(run: Run, pick, pooled: dict, y_pool, base, report: list) -> Fitted:
    """The chosen probe fitted on train + validation, as a ProbeClassifier over the decoder."""
    from ..probes import ProbeClassifier
    from ..search import refit

    probe = refit(pick, lambda picks: np.concatenate([pooled[s].matrix(list(picks)) for s in ("train", "val")]),
                  y_pool, len(run.names))
    clf = ProbeClassifier(run.clf.decoder, pick.picks, len(run.names), causal=run.cfg.causal)
    clf.load_probe(probe)
    logits = {s: torch.from_numpy(probe.logits(pooled[s].matrix(list(pick.picks)))).float() for s in SPLITS}
    if pick.kind == "hybrid":  # log of the averaged probabilities: softmax gives them back
        from ..probes import softmax

        for s in SPLITS:
            p_ngrams = ngram_proba(hybrid_partner(base), run, s)
            mix = pick.hybrid_weight * softmax(logits[s].numpy()) + (1 - pick.hybrid_weight) * p_ngrams
            logits[s] = torch.from_numpy(np.log(np.clip(mix, 1e-12, None))).float()
    ids = run.probe_inputs[1] if run.probe_inputs else run.ids  # (--template auto: the question's)
    longest = max(len(x) for v in ids.values() for x in v)
    window = run.cfg.window if run.cfg.window and longest > run.cfg.window else None
    spec = {"recipe": pick.kind, "probe": [list(x) for x in pick.picks], "hybrid_weight": pick.hybrid_weight,
            "window": window}
    oof = torch.from_numpy(np.log(np.clip(pick.oof, 1e-12, None))).float()
    n_train = len(run.prep.train.labels)
    return Fitted(spec, clf, logits, ["mean", "scale", "head.weight", "head.bias"], candidates=report,
                  chosen=pick.name, held_out_logits={"train": oof[:n_train], "val": oof[n_train:]})


def baseline_metrics(run: Run, base, test_pred: np.ndarray | None = None) -> dict | None:
    """The baseline scored on every split with the same scoring path as the run; given the
    run's decisions on the test texts, `test_difference`: the run's test macro-F1 minus the
    baseline's, with its paired bootstrap interval (evaluate.paired_difference)."""
    from .. import baseline
    from ..evaluate import paired_difference
    from ..scoring import decide

    if base is None:
        return None
    p_test = ngram_proba(base, run, "test")
    y_test = np.asarray(run.prep.test.labels)
    splits = {"train": score(ngram_proba(base, run, "train"), np.asarray(run.prep.train.labels), run.names),
              "test": score(p_test, y_test, run.names)}
    # refitted on train + validation: its validation figures are the out-of-fold ones
    splits["val"] = score(base["oof"][len(run.prep.train.labels):], np.asarray(run.prep.val.labels), run.names)
    out = {"name": baseline.NAME, "C": base["C"], "cv_macro_f1": base["cv_macro_f1"], "refit_on": "train+val",
           "seconds": run.seconds.get("baseline"), "splits": splits}
    if test_pred is not None and len(y_test):
        out["test_difference"] = paired_difference(y_test, test_pred, decide(p_test), len(run.names))
    if "partner" in base:  # what the hybrid averages in; its test figure only scored, as the baseline's
        partner = base["partner"]
        test = score(ngram_proba(partner, run, "test"), np.asarray(run.prep.test.labels), run.names)
        out["hybrid_ngrams"] = {"name": baseline.PARTNER_NAME, "C": partner["C"], "cv_macro_f1": partner["cv_macro_f1"],
                                "seconds": partner["seconds"], "test": test}
    return out
