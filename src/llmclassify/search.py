"""The recipe search behind `--recipe auto`: choose among probes, a hybrid and the fine-tuned
top by held-out macro-F1, never looking at the test split.

Protocol (one trunk pass has already produced every candidate's features):

1. The pool is train + validation. It is cut into k stratified folds (k = FOLDS), REPEATS
   times with different shuffles: a candidate's score is the mean over the repeats, and its
   out-of-fold probabilities the mean over them, which halves the variance that decides
   between candidates a few texts apart.
2. Every probe candidate (probes.candidate_probes) is screened by a ridge classifier's
   out-of-fold macro-F1 (closed form, milliseconds each); the SHORTLIST best x every C of
   probes.C_GRID (grown a decade at a time past an end while the end scores best:
   cross_validate_c) get logistic-regression out-of-fold probabilities over the pool: each
   text is scored by a probe fitted without its fold. A candidate's score is the macro-F1 of those
   probabilities over the whole pool: on a validation split of 149 texts one text moves
   macro-F1 by most of a point, while the pool is eight times larger. Concatenations skip
   the screen (a 4,000-wide ridge costs more than its logistic regression) and go straight on;
   the best is tried once more with balanced class weights unless the classes are nearly
   balanced (search.NEAR_BALANCED). A learned softmax mix of layers
   (probes.fit_mix) is fitted only when asked for (`--probe mix:...`): over every kept vector
   of the reference split it scored below the concatenation (CV macro-F1 0.9812 vs 0.9841) at
   seven times its cost (benchmarks/results/layer-mix.md). The baseline gets the same folds
   and its C the same way, from its fixed grid (baseline.C_GRID).
3. The LLM-only answer is the ensemble of the ENSEMBLE probes best by CV, one per set of
   features: their out-of-fold log-probabilities averaged, scored the same way; the single
   probes are reported but not chosen alone. The best of ~7 CV scores a few texts apart is
   optimistic for the winner; an average of the top few is not: side by side on five data
   sets (benchmarks/results/ensemble-built.md) the LLM-only answer's test macro-F1 went from
   the single probe's to the ensemble's equal on one, higher on four (+0.007 to +0.089); the
   book's split 96.67% -> 98.33%.
   A mean of linear probes' logits is one linear probe on the union of their picks
   (probes.average_probes): the saved run reads like any other probe. Not with `--probe`.
   The hybrid averages that answer's out-of-fold probabilities with the baseline's (with
   `--hybrid-ngrams words+chars`, a TF-IDF model over words and characters fitted on the
   same folds: baseline.HYBRID_NGRAMS), weights HYBRID_WEIGHTS on the probe, scored the same
   way; it is named "hybrid" in every report, beside the LLM-only answer.
4. With `--search-finetune`, the fine-tuned top (trained on train, its epoch chosen on
   validation) is compared on the validation texts only, where every candidate's predictions
   are held out: the probes' and hybrid's out-of-fold predictions of those texts against the
   fine-tuned model's. Not by default: a validation split is a fraction of the pool the others
   are scored on. Over five data sets (benchmarks/results/finetune-candidate.md) the top
   trailed there by 0.05-0.36 macro-F1 on four and led on one by a single text (sms-spam,
   1,000 texts to train), where it was taken and scored 0.9391 on test, under TF-IDF's 0.9597
   and the search's own answer's 0.9844; it took a fifth of four runs and 230-350 MiB more
   peak memory (the per-token cache it trains on).
5. Ties (within TIE macro-F1) go to the cheaper candidate: a probe (fewer blocks first), then
   the hybrid, then fine-tuning. A chosen probe or hybrid is refitted on the whole pool with
   its C (an ensemble: each member with its own; `refit`); the test split is scored once,
   for the chosen candidate alone.

The cores: every fold of every repeat (cross_validate) and every candidate of the ridge screen
is fitted on its own, in processes forked from the run (cores.map_forked), with the same
results as one after another.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from . import probes
from .cores import map_forked
from .evaluate import format_figure, macro_f1

# The hybrid's weights on the probe (the rest on TF-IDF). Both ends near 0 and 1: on 20 topics
# with ~100 texts each the LLM-only probes trail n-grams by 0.07 macro-F1, and the grid before,
# (0.3, 0.5, 0.7), chose its end 0.3; with 0.1 tried, CV chose it and test macro-F1 went from
# 0.8312 to 0.8426, the picks of six other splits unchanged (benchmarks/results/hybrid-grid.md).
HYBRID_WEIGHTS = (0.1, 0.3, 0.5, 0.7, 0.9)
TIE = 0.002
FOLDS = 5
REPEATS = 2


def repeated_folds(y: np.ndarray, seed: int) -> list[list[np.ndarray]]:
    """REPEATS shuffles of FOLDS stratified folds of the pool."""
    return [probes.stratified_folds(y, FOLDS, seed + r) for r in range(REPEATS)]


def cross_validate(fit_oof, y: np.ndarray, names, repeats: list) -> tuple[float, float, np.ndarray]:
    """The best setting of `fit_oof(folds) -> {setting: (N, C) out-of-fold probabilities}` (a
    grid of C) by mean macro-F1 over the repeats; the first of the grid on a tie. Returns
    (setting, its mean macro-F1, the mean of its probabilities over the repeats). Every fold of
    every repeat is fitted on its own, the folds spread over the cores (cores.map_forked)."""
    oofs = [{} for _ in repeats]
    fitted = iter(map_forked(lambda held: {s: p[held] for s, p in fit_oof([held]).items()},
                             [held for folds in repeats for held in folds]))
    for oof, folds in zip(oofs, repeats):
        for held in folds:
            for setting, p in next(fitted).items():
                oof.setdefault(setting, np.zeros((len(y), p.shape[1]), dtype=p.dtype))[held] = p
    scored = [(float(np.mean([_macro_f1(o[s], y, names) for o in oofs])), s) for s in oofs[0]]
    f1, setting = max(scored, key=lambda x: x[0])
    return setting, f1, np.mean([o[setting] for o in oofs], 0)


# How many decades a probe's C grid may grow past its ends. Its best C moves with the width of
# the features (576 for one vector, 4,032 for the concatenation) and the number of texts: every
# rt-polarity candidate chose the grid's smallest C (0.003), reuters-r8's single layers its
# largest (0.3). A decade further down took rt-polarity's test macro-F1 from 0.8285 to 0.8496
# (benchmarks/results/c-grid.md).
EDGE_DECADES = 2


def cross_validate_c(fit_oof, y: np.ndarray, names, repeats: list, grid) -> tuple[float, float, np.ndarray]:
    """`cross_validate` over a `grid` of C, `fit_oof(folds, grid) -> {C: probabilities}`; while
    the best C is an end of the grid, one decade further out is tried (at most EDGE_DECADES),
    and kept only if it scores higher: a C chosen at the edge of what was tried is a sign the
    best lies beyond it."""
    grid = tuple(sorted(grid))
    C, f1, oof = cross_validate(lambda f: fit_oof(f, grid), y, names, repeats)
    for _ in range(EDGE_DECADES):
        if len(grid) < 2 or C not in (grid[0], grid[-1]):
            break
        beyond = float(f"{C / 10 if C == grid[0] else C * 10:.12g}")  # 0.0003, not 0.00030000000000000003
        C2, f2, oof2 = cross_validate(lambda f, one=(beyond,): fit_oof(f, one), y, names, repeats)
        if f2 <= f1:
            break
        grid = tuple(sorted(grid + (beyond,)))
        C, f1, oof = C2, f2, oof2
    return C, f1, oof


@dataclass
class Candidate:
    """One recipe tried: its name, what it is, and its held-out scores."""

    name: str
    kind: str  # probe | hybrid | finetune
    cv_macro_f1: float | None  # out-of-fold over train + validation (probes, hybrid, baseline)
    val_macro_f1: float | None  # on the validation texts, held out (None: no validation split)
    cost: tuple = ()
    picks: tuple = ()
    C: float | None = None
    balanced: bool = False  # class-weighted logistic regression
    mix: bool = False  # a learned softmax mix of the picked vectors (probes.fit_mix), not their concatenation
    hybrid_weight: float | None = None
    seconds: float = 0.0
    oof: np.ndarray | None = field(default=None, repr=False)
    members: tuple = ()  # an ensemble's probes (Candidates), each fitted with its own C
    choosable: bool = True  # False for a probe an ensemble stands for: reported, never chosen alone

    def report(self) -> dict:
        return {"name": self.name, "kind": self.kind, "cv_macro_f1": self.cv_macro_f1,
                "val_macro_f1": self.val_macro_f1, "C": self.C, "balanced": self.balanced, "mix": self.mix,
                "hybrid_weight": self.hybrid_weight, "seconds": round(self.seconds, 2),
                "members": [m.name for m in self.members], "choosable": self.choosable}


def _macro_f1(probs, y, names) -> float | None:
    """The macro-F1 of the most probable labels (scoring.decide without a threshold); None for
    no texts: the validation split may be empty (`--split 0.9,0,0.1`)."""
    return None if len(y) == 0 else macro_f1(y, np.asarray(probs).argmax(-1), len(names))


SHORTLIST = 3  # candidates that go on from the ridge screen to logistic regression
# A pool whose largest class is at most this times its smallest gets balanced class weights
# within 10% of 1: the weighted refit of the best probe is skipped there.
NEAR_BALANCED = 1.1


def unbalanced(y: np.ndarray) -> bool:
    """Whether the classes present in `y` are not NEAR_BALANCED: what decides the search's
    class-weighted candidate and the decision threshold of `--tune-threshold auto`."""
    counts = np.bincount(y)
    counts = counts[counts > 0]
    return len(counts) > 1 and bool(counts.max() > NEAR_BALANCED * counts.min())


def search_probes(pooled, y: np.ndarray, names: list[str], folds: list, val_rows: np.ndarray,
                  candidates, log=print, mixes=()) -> list[Candidate]:
    """`folds`: from `repeated_folds`. Single-vector probes screened by a ridge classifier's
    out-of-fold macro-F1 on the first repeat (seconds for
    all of them); the SHORTLIST best and every concatenation are then fitted as logistic
    regressions over probes.C_GRID on the same folds, as are the learned softmax mixes of
    `mixes` (probes.fit_mix), and the best of those once more with balanced class weights
    (unless the classes are NEAR_BALANCED already): their out-of-fold probabilities are what
    the choice reads."""
    singles = [p for p in candidates if len(p) == 1]
    t0 = time.perf_counter()
    screened = ridge_screened(pooled, y, names, folds[0], singles)
    if screened:
        log(f"  ridge screen of {len(singles)} single-layer probes: {time.perf_counter() - t0:.1f} s; best "
            + ", ".join(f"{probes.probe_name(p)} {f:.4f}" for f, p in screened[:SHORTLIST]))
    shortlist = [p for _, p in screened[:SHORTLIST]] + [p for p in candidates if len(p) > 1]
    out = [_logistic_candidate(pooled, y, names, folds, val_rows, picks, False, log) for picks in shortlist]
    out += [_logistic_candidate(pooled, y, names, folds, val_rows, picks, False, log, mix=True) for picks in mixes]
    best = max(out, key=lambda c: c.cv_macro_f1)
    if unbalanced(y):
        weighted = _logistic_candidate(pooled, y, names, folds, val_rows, best.picks, True, log, mix=best.mix)
        if weighted.cv_macro_f1 > best.cv_macro_f1:
            out.append(weighted)
    return out


def ridge_screened(pooled, y: np.ndarray, names, folds: list[np.ndarray], singles, screen=probes.ridge_screen
                   ) -> list[tuple[float, tuple]]:
    """(out-of-fold macro-F1 of the ridge classifier at its best alpha, picks) of each candidate
    of `singles` on `folds` (one repeat), best first. `screen`: probes.ridge_screen (a benchmark
    passes the version it is compared with)."""
    n_classes = len(names)
    decisions = map_forked(lambda picks: screen(pooled.matrix(list(picks)), y, n_classes, folds), singles)
    scored = [(max(macro_f1(y, d, n_classes) for d in oof.values()), picks)
              for picks, oof in zip(singles, decisions)]
    return sorted(scored, key=lambda s: -s[0])


def _logistic_candidate(pooled, y, names, folds, val_rows, picks, balanced: bool, log, mix: bool = False
                        ) -> Candidate:
    t0 = time.perf_counter()
    x = pooled.matrix(list(picks))
    n_mixed = len(picks) if mix else 0
    C, f1, oof = cross_validate_c(probes.out_of_fold_fitter(x, y, len(names), balanced, n_mixed), y, names, folds,
                                  probes.C_GRID)
    depth = max(layer for layer, _ in picks)
    name = "probe " + (probes.MIX if mix else "") + probes.probe_name(picks) + (" balanced" if balanced else "")
    cand = Candidate(name, "probe", f1, _macro_f1(oof[val_rows], y[val_rows], names),
                     cost=(0, depth, len(picks), balanced), picks=tuple(picks), C=C, balanced=balanced, mix=mix,
                     seconds=time.perf_counter() - t0, oof=oof)
    val = format_figure(cand.val_macro_f1, pct=False)
    log(f"  {cand.name:<44} CV macro-F1 {f1:.4f}  val {val}  (C {C}, {cand.seconds:.1f} s)")
    return cand


ENSEMBLE = 3


def ensemble_candidate(found: list[Candidate], y, names, val_rows) -> Candidate | None:
    """The ENSEMBLE probes best by CV macro-F1, one per set of features (of a probe and its
    class-weighted refit, the better), as one candidate: their out-of-fold log-probabilities
    averaged (renormalised geometric mean), the picks their union. A mean of linear probes'
    logits is one linear probe on the union (probes.average_probes), so the saved run keeps its
    format. None with fewer than two such probes."""
    best: dict = {}  # (picks, mix) -> the best probe reading them
    for c in sorted([c for c in found if c.kind == "probe"], key=lambda c: -c.cv_macro_f1):
        best.setdefault((c.picks, c.mix), c)
    top = list(best.values())[:ENSEMBLE]
    if len(top) < 2:
        return None
    oof = probes.softmax(np.mean([np.log(np.clip(c.oof, 1e-12, None)) for c in top], 0))
    picks = probes.union_picks(c.picks for c in top)
    return Candidate("probe ensemble (" + "; ".join(c.name.removeprefix("probe ") for c in top) + ")", "probe",
                     _macro_f1(oof, y, names), _macro_f1(oof[val_rows], y[val_rows], names),
                     cost=(0, max(c.cost[1] for c in top), len(picks), any(c.balanced for c in top)),
                     picks=picks, seconds=sum(c.seconds for c in top), oof=oof, members=tuple(top))


def with_answers(found: list[Candidate], y, names, val_rows, baseline_oof=None, ensemble: bool = True,
                 log=print) -> list[Candidate]:
    """`found` (search_probes) with the search's answers added: the ensemble of the top probes
    (unless `ensemble` is False), standing for every single probe (they stay in the list,
    reported, not choosable); and, given the baseline's out-of-fold probabilities, the hybrid on
    the best choosable probe."""
    out = list(found)
    ens = ensemble_candidate(found, y, names, val_rows) if ensemble else None
    if ens is not None:
        out = [replace(c, choosable=False) if c.kind == "probe" else c for c in out] + [ens]
        log(f"  {ens.name}\n  {'':<44} CV macro-F1 {ens.cv_macro_f1:.4f}  "
            f"val {format_figure(ens.val_macro_f1, pct=False)}")
    if baseline_oof is not None:
        hybrid = hybrid_candidates(choose(out, "cv_macro_f1"), baseline_oof, y, names, val_rows)
        log(f"  {hybrid.name:<44} CV macro-F1 {hybrid.cv_macro_f1:.4f}  "
            f"val {format_figure(hybrid.val_macro_f1, pct=False)}")
        out.append(hybrid)
    return out


def hybrid_candidates(best_probe: Candidate, baseline_oof: np.ndarray, y, names, val_rows,
                      weights=HYBRID_WEIGHTS) -> Candidate:
    """The best probe averaged with the baseline, its weight (of `weights`) chosen on the same folds."""
    best = None
    for w in weights:
        p = w * best_probe.oof + (1 - w) * baseline_oof
        f1 = _macro_f1(p, y, names)
        if best is None or f1 > best[0]:
            best = (f1, w, p)
    f1, w, p = best
    return Candidate(f"hybrid ({best_probe.name.removeprefix('probe ')} + TF-IDF, w {w})", "hybrid", f1,
                     _macro_f1(p[val_rows], y[val_rows], names), cost=(1,) + best_probe.cost[1:],
                     picks=best_probe.picks, C=best_probe.C, balanced=best_probe.balanced, mix=best_probe.mix,
                     hybrid_weight=w, oof=p, members=best_probe.members)


def refit(pick: Candidate, matrix, y: np.ndarray, n_classes: int) -> probes.LinearProbe:
    """A probe candidate (or the probe of a hybrid) fitted on the rows of `y` with its C:
    `matrix(picks)` gives those rows' vectors. An ensemble fits each member and averages them
    into one probe on `pick.picks`, the union of theirs (probes.average_probes); the members
    fit on the cores (cores.map_forked)."""

    def fit(m: Candidate) -> probes.LinearProbe:
        return probes.fit_probe(matrix(m.picks), y, n_classes, m.C, m.balanced, mix=len(m.picks) if m.mix else 0)

    members = pick.members or (pick,)
    parts = list(zip((m.picks for m in members), map_forked(fit, members)))
    return parts[0][1] if len(parts) == 1 else probes.average_probes(parts)


def choose(candidates: list[Candidate], by: str) -> Candidate:
    """The choosable candidate with the highest score `by` ('cv_macro_f1' or 'val_macro_f1');
    within TIE of the best, the cheapest."""
    candidates = [c for c in candidates if c.choosable]
    top = max(getattr(c, by) for c in candidates)
    close = [c for c in candidates if getattr(c, by) >= top - TIE]
    return min(close, key=lambda c: c.cost)
