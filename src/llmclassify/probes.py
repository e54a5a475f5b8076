"""Probe recipes: a linear classifier on pooled hidden states of chosen layers.

A probe reads the vectors `features.trunk_pass` keeps (per layer: the mean over real tokens
and the last real token, after the final norm), standardises them, and fits a multinomial
logistic regression (scikit-learn, L2, C chosen by cross-validation). No gradient reaches the
model, so a probe trains in seconds on cached features, and at prediction time the decoder
runs only up to the deepest layer the probe reads (`ProbeClassifier`).

A probe's "picks" name what it reads: ((22, "mean"),) is the mean of layer 22;
((16, "mean"), (16, "last"), (30, "last")) concatenates three vectors. `--probe mix:...`
fits a learned softmax mix of the picked vectors instead (`fit_mix`); it predicts as the
equivalent concatenation.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .features import POOLED, combine_windows, pooled_layer, split_windows
from .inputs import length_batches, pad_batch

Pick = tuple[int, str]


def probe_name(picks) -> str:
    """'mean@22', or 'mean@10+16+22+30,last@16+22+30' for a concatenation."""
    by_pool: dict[str, list[int]] = {}
    for layer, p in picks:
        by_pool.setdefault(p, []).append(layer)
    return ",".join(f"{p}@{'+'.join(str(x) for x in sorted(ls))}" for p, ls in by_pool.items())


MIX = "mix:"  # --probe mix:mean@8+16+24,last@30 : a learned softmax mix of those vectors (fit_mix)


def parse_probe(name: str, n_layers: int) -> tuple[Pick, ...]:
    """The inverse of `probe_name` (a `mix:` prefix aside); layers must lie in [1, n_layers]."""
    from .errors import UserError

    picks = []
    for part in name.removeprefix(MIX).split(","):
        pooling, _, layers = part.partition("@")
        if pooling not in ("mean", "last") or not layers:
            raise UserError(f"--probe '{name}': expected POOLING@LAYER[+LAYER...] with POOLING mean or last, "
                            "e.g. mean@22 or mean@16+22,last@30")
        for x in layers.split("+"):
            if not x.isdigit() or not 1 <= int(x) <= n_layers:
                raise UserError(f"--probe '{name}': layer '{x}' is not between 1 and {n_layers}")
            picks.append((int(x), pooling))
    return tuple(picks)


def candidate_probes(layers: list[int]) -> list[tuple[Pick, ...]]:
    """The probes a search tries over the kept `layers`: every single (layer, pooling), the
    mean and last token of the same layer together, and concatenations across depth (mean of
    four layers from a third of the way up + last token of the top three)."""
    singles = [((layer, p),) for layer in layers for p in ("mean", "last")]
    n = len(layers)
    spread = sorted({layers[round(i * (n - 1) / 3)] for i in range(4)})
    top = spread[-3:]
    concat = tuple([(layer, "mean") for layer in spread] + [(layer, "last") for layer in top])
    upper = [layer for layer in layers if layer > layers[-1] * 0.6]
    mean_upper = tuple((layer, "mean") for layer in upper[::2] or upper)
    return list(dict.fromkeys(singles + [concat, mean_upper]))  # in order, each once


# --- fitting -----------------------------------------------------------------------------------
C_GRID = (0.003, 0.03, 0.3)
# Solver iterations allowed per fit: 300 L-BFGS ones left one fit of the reuters-r8 search
# (8 classes) unconverged, and its out-of-fold score then depended on the BLAS's summation order.
MAX_ITER = 1000


@dataclass
class LinearProbe:
    """Standardise, then a linear map: logits = ((x - mean) / scale) @ weight.T + bias."""

    mean: np.ndarray  # (F,)
    scale: np.ndarray  # (F,)
    weight: np.ndarray  # (C, F)
    bias: np.ndarray  # (C,)

    def logits(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.scale) @ self.weight.T + self.bias


def standardiser(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(0)
    scale = x.std(0)
    return mean, np.where(scale > 1e-6, scale, 1.0)


SEARCH_TOL = 1e-4  # the solver's tolerance along the C path of the search (LogisticPath)
# The solver of LogisticPath, by the kind of features (the same objective either way). Dense
# pooled vectors (576 to a few thousand columns): L-BFGS, fastest on one BLAS thread. Sparse
# n-gram counts (the baseline: hundreds of thousands of columns): Newton steps with conjugate-
# gradient inner solves, where L-BFGS took many costly iterations: the baseline of 20newsgroups
# (2,285 texts, 20 classes, 300,034 n-grams) was 352 s of a 706 s run with L-BFGS
# (benchmarks/results/logistic-solver.md: both solvers side by side).
DENSE_SOLVER = "lbfgs"
SPARSE_SOLVER = "newton-cg"
# Where a path's first fit starts from zero on dense rows of three classes or more at a strong
# penalty (C at most this: the grid's first), it is solved in preconditioned coordinates
# (logistic.fit: the same objective), and scikit-learn's L-BFGS goes on from its solution.
# Correlated layer vectors make that fit long (ATIS's concatenation: 199 L-BFGS iterations,
# 36 preconditioned; ATIS's search 1.60x faster with the same pick: dense-solver.md). Only
# there: at a weak penalty L-BFGS stopping at the search's tolerance is part of what the search
# chose by, and solving those fits nearer the optimum moved ATIS's pick from 0.8682 to 0.8600
# test macro-F1 and the book's split from 98.33% to 97.33% (dense-solver-everywhere.md); two
# classes take 19 to 32 iterations there, and the SVD cost more than it saved (dense-solver-sweep.md).
PRECONDITIONED_MAX_C = C_GRID[0]


class LogisticPath:
    """Multinomial L2 logistic regression (scikit-learn; DENSE_SOLVER or SPARSE_SOLVER by the
    features, PRECONDITIONED_MAX_C) fitted along a grid of C on the same rows: each fit starts
    from the previous one's solution, so a grid in ascending C costs less than independent fits.
    The tolerance is scikit-learn's default, 1e-4: at 1e-3 the previous C's solution already
    passed the solver's gradient test (the gradient of the mean loss moves by only
    (1/C_prev - 1/C) |w| / n), so on reuters-r8 the baseline's C=100 took zero iterations and
    returned the C=10 model (test macro-F1 0.8269 instead of 0.8591). A model that is kept
    (fit_logistic) is solved to FINAL_TOL."""

    def __init__(self, n_classes: int, balanced: bool = False, tol: float = SEARCH_TOL):
        from sklearn.linear_model import LogisticRegression

        self.n_classes = n_classes
        self.lr = LogisticRegression(max_iter=MAX_ITER, tol=tol, warm_start=True,
                                     class_weight="balanced" if balanced else None)

    def fit(self, z, y: np.ndarray, C: float) -> tuple[np.ndarray, np.ndarray]:
        """(weight (n_classes, F), bias (n_classes,)) for every class even when the rows lack
        one (its row stays at a -inf-like bias)."""
        from scipy.sparse import issparse

        lr = self.lr.set_params(C=C, solver=SPARSE_SOLVER if issparse(z) else DENSE_SOLVER)
        if not hasattr(lr, "coef_") and not issparse(z) and C <= PRECONDITIONED_MAX_C and len(np.unique(y)) > 2:
            from . import logistic

            lr.classes_, lr.coef_, lr.intercept_, _ = logistic.fit(z, y, C, lr.class_weight == "balanced", lr.tol,
                                                                   MAX_ITER)
        else:
            with warnings.catch_warnings():
                # Newton-CG's line search gives up on a flat stretch (a few texts a class that the
                # n-grams separate: 60 texts of 20 topics) and says so twice on stderr; the solution it
                # returns is the model. A ConvergenceWarning (MAX_ITER spent) still shows.
                warnings.filterwarnings("ignore", message="The line search algorithm did not converge")
                warnings.filterwarnings("ignore", message="Line Search failed")
                lr.fit(z, y)
        weight = np.zeros((self.n_classes, z.shape[1]), dtype=np.float32)
        bias = np.full(self.n_classes, -30.0, dtype=np.float32)
        coef, icpt = lr.coef_, lr.intercept_
        if len(lr.classes_) == 2:  # scikit-learn's binary form: one row for class 1
            coef = np.vstack([-coef / 2, coef / 2])
            icpt = np.array([-icpt[0] / 2, icpt[0] / 2])
        weight[lr.classes_] = coef
        bias[lr.classes_] = icpt
        return weight, bias


# The tolerance of a model that is kept (a refit on train + validation, the baseline): at the
# search's 1e-4 lbfgs stops short of the optimum at a point that depends on the BLAS's summation
# order: the reuters-r8 pick's refit gave test labels that differed in one text between one
# BLAS thread and two (macro-F1 0.9126 / 0.9120); at 1e-6 both gave the same labels (0.8904);
# on the six other splits measured neither tolerance moved a label. A probe refit costs a second
# or two more, the baseline's final fit more on a large vocabulary.
# benchmarks/results/refit-tolerance.md.
FINAL_TOL = 1e-6


def fit_logistic(z, y: np.ndarray, n_classes: int, C: float, balanced: bool = False
                 ) -> tuple[np.ndarray, np.ndarray]:
    """One multinomial L2 logistic regression on standardised `z`, solved to FINAL_TOL: the
    model that is kept (LogisticPath.fit)."""
    return LogisticPath(n_classes, balanced, tol=FINAL_TOL).fit(z, y, C)


MIX_STEPS = 50  # L-BFGS iterations of a layer mix


def fit_mix(z: np.ndarray, y: np.ndarray, n_classes: int, C: float, balanced: bool = False, vectors: int = 1
            ) -> tuple[np.ndarray, np.ndarray]:
    """A learned softmax mix of `vectors` standardised vectors (z: (N, vectors * D), side by
    side), then a linear map: logits = (sum_v softmax(a)_v z_v) @ W.T + b, the scalar mix of
    ELMo (Peters et al. 2018) as a probe. One D-wide map and `vectors` mixing weights instead
    of a map per vector: a concatenation's reach with a single layer's parameters. Fitted by
    L-BFGS on mean cross-entropy + |W|^2 / (2 C N) (scikit-learn's objective for C, divided by
    N). Returned as the equivalent map on the concatenation, (weight (C, vectors * D), bias):
    prediction reads it like any concatenation probe."""
    import torch.nn.functional as F

    n, width = len(y), z.shape[1] // vectors
    # (vectors, N * D): mixing is one matrix-vector product over the features, both ways
    zt = torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32)).view(n, vectors, width)
    zt = zt.transpose(0, 1).reshape(vectors, n * width)
    yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
    counts = torch.bincount(yt, minlength=n_classes).float()
    cw = torch.where(counts > 0, n / (n_classes * counts.clamp(min=1)), 0.0) if balanced else None
    a = torch.zeros(vectors, requires_grad=True)
    w = torch.zeros(n_classes, width, requires_grad=True)
    b = torch.zeros(n_classes, requires_grad=True)
    opt = torch.optim.LBFGS([a, w, b], max_iter=MIX_STEPS, tolerance_grad=1e-6, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        mixed = (torch.softmax(a, 0) @ zt).view(n, width)
        loss = F.cross_entropy(mixed @ w.T + b, yt, weight=cw) + (w * w).sum() / (2 * C * n)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    share = torch.softmax(a.detach(), 0)
    weight = (share[None, :, None] * w.detach()[:, None, :]).reshape(n_classes, vectors * width)
    return weight.numpy().astype(np.float32), b.detach().numpy().astype(np.float32)


def fit_probe(x: np.ndarray, y: np.ndarray, n_classes: int, C: float, balanced: bool = False, mix: int = 0
              ) -> LinearProbe:
    """Standardise, then logistic regression on the concatenated vectors, or (mix: their number)
    a learned softmax mix of them (fit_mix)."""
    mean, scale = standardiser(x)
    w, b = fitter(n_classes, balanced, mix, tol=FINAL_TOL)(((x - mean) / scale).astype(np.float32), y, C)
    return LinearProbe(mean.astype(np.float32), scale.astype(np.float32), w, b)


def union_picks(picks_of_each) -> tuple[Pick, ...]:
    """The vectors several probes read together: each pick once, in order of first appearance."""
    return tuple(dict.fromkeys(tuple(p) for picks in picks_of_each for p in picks))


def average_probes(parts) -> LinearProbe:
    """One probe on `union_picks` of `parts`, [(picks, LinearProbe)], whose logits are the mean of
    theirs. Exact for any standardisers: each part's map is re-expressed on the union's
    standardisation (the first part's statistics of a shared vector). The mean of logits is the
    mean of log-probabilities up to a constant per text, so softmax gives the members'
    renormalised geometric mean."""
    width = len(parts[0][1].mean) // len(parts[0][0])
    cols = lambda i: slice(i * width, (i + 1) * width)  # noqa: E731
    column = {pick: i for i, pick in enumerate(union_picks(picks for picks, _ in parts))}
    holder: dict[Pick, tuple[LinearProbe, int]] = {}  # pick -> the first part reading it, and where
    for picks, probe in parts:
        for i, pick in enumerate(picks):
            holder.setdefault(tuple(pick), (probe, i))
    mean = np.concatenate([probe.mean[cols(i)] for probe, i in holder.values()])
    scale = np.concatenate([probe.scale[cols(i)] for probe, i in holder.values()])
    weight = np.zeros((len(parts[0][1].bias), len(mean)), dtype=np.float64)
    bias = np.zeros(len(parts[0][1].bias), dtype=np.float64)
    for picks, probe in parts:
        for i, pick in enumerate(picks):
            u = cols(column[tuple(pick)])
            w = probe.weight[:, cols(i)].astype(np.float64) / probe.scale[cols(i)]  # the map on raw vectors
            weight[:, u] += w * scale[u]
            bias += w @ (mean[u] - probe.mean[cols(i)])
        bias += probe.bias
    k = len(parts)
    return LinearProbe(mean.astype(np.float32), scale.astype(np.float32), (weight / k).astype(np.float32),
                       (bias / k).astype(np.float32))


def fitter(n_classes: int, balanced: bool, mix: int, tol: float = SEARCH_TOL):
    """`fit(z, y, C) -> (weight, bias)` on standardised z: a learned mix of `mix` vectors
    (fit_mix), else logistic regression on their concatenation along a LogisticPath (called
    again with a larger C, it starts from the previous solution) solved to `tol` (the search's;
    a kept model's is FINAL_TOL)."""
    if mix:
        return lambda z, y, C: fit_mix(z, y, n_classes, C, balanced, vectors=mix)
    return LogisticPath(n_classes, balanced, tol=tol).fit


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def out_of_fold(x: np.ndarray, y: np.ndarray, n_classes: int, folds: list[np.ndarray], C_grid,
                balanced: bool = False, mix: int = 0) -> dict[float, np.ndarray]:
    """{C: (N, n_classes) probabilities} for every C of `C_grid`, each row from a probe fitted
    without that row's fold; along the grid each fold's fits are one LogisticPath (warm starts)."""
    return out_of_fold_fitter(x, y, n_classes, balanced, mix)(folds, C_grid)


def out_of_fold_fitter(x: np.ndarray, y: np.ndarray, n_classes: int, balanced: bool = False, mix: int = 0):
    """out_of_fold's `(folds, C_grid) -> {C: probabilities}` with x standardised once, here: the
    search calls it fold by fold (search.cross_validate)."""
    mean, scale = standardiser(x)  # unsupervised: no labels used
    z = ((x - mean) / scale).astype(np.float32)

    def fit_out_of_fold(folds, C_grid):
        probs = {C: np.zeros((len(y), n_classes), dtype=np.float64) for C in C_grid}
        for held in folds:
            keep = np.ones(len(y), dtype=bool)
            keep[held] = False
            fit = fitter(n_classes, balanced, mix)
            for C in sorted(C_grid):
                w, b = fit(z[keep], y[keep], C)
                probs[C][held] = softmax(z[held] @ w.T + b)
        return probs

    return fit_out_of_fold


RIDGE_ALPHAS = (1e-3, 1e-2, 1e-1, 1.0)  # times the number of training rows


def ridge_screen(x: np.ndarray, y: np.ndarray, n_classes: int, folds: list[np.ndarray]) -> dict[float, np.ndarray]:
    """Out-of-fold class decisions (N,) of a ridge classifier (least squares on one-hot
    targets, with intercept) for each alpha of RIDGE_ALPHAS: the cheap first pass of the
    search. Each fold solves the alphas' systems (_ridge_solutions) in the smaller of two
    equal forms: over the features (d x d: one Gram matrix of the whole, the fold's rows
    subtracted) or, with fewer training rows than features, over the rows (n x n kernel:
    w = Zc^T (Zc Zc^T + aI)^-1 Tc): the same decisions, and on 100 texts 35x faster
    (benchmarks/results/ridge-screen.md)."""
    mean, scale = standardiser(x)
    z = ((x - mean) / scale).astype(np.float64)
    t = np.eye(n_classes)[y]
    d = z.shape[1]
    primal = len(y) - min(len(h) for h in folds) >= d
    if primal:
        gram, zt, zsum, tsum = z.T @ z, z.T @ t, z.sum(0), t.sum(0)
    out = {a: np.zeros(len(y), dtype=np.int64) for a in RIDGE_ALPHAS}
    for held in folds:
        zf, tf = z[held], t[held]
        n_tr = len(y) - len(held)
        if primal:
            mu, tbar = (zsum - zf.sum(0)) / n_tr, (tsum - tf.sum(0)) / n_tr
            g = gram - zf.T @ zf - n_tr * np.outer(mu, mu)  # centred Gram of the training rows
            b = zt - zf.T @ tf - n_tr * np.outer(mu, tbar)
            scores = [(zf - mu) @ w for w in _ridge_solutions(g, b, n_tr)]
        else:
            keep = np.ones(len(y), dtype=bool)
            keep[held] = False
            mu, tbar = z[keep].mean(0), t[keep].mean(0)
            zc, tc = z[keep] - mu, t[keep] - tbar
            cross = (zf - mu) @ zc.T
            scores = [cross @ dual for dual in _ridge_solutions(zc @ zc.T, tc, n_tr)]
        for a, sc in zip(RIDGE_ALPHAS, scores):
            out[a][held] = (sc + tbar).argmax(1)
    return out


def _ridge_solutions(gram: np.ndarray, rhs: np.ndarray, n_tr: int) -> list[np.ndarray]:
    """(gram + alpha * n_tr * I)^-1 rhs for each alpha of RIDGE_ALPHAS. The matrix is symmetric
    positive definite: Cholesky, half of LU's work (benchmarks/results/ridge-screen.md)."""
    from scipy.linalg import cho_factor, cho_solve

    eye = np.eye(len(gram))
    return [cho_solve(cho_factor(gram + a * n_tr * eye, check_finite=False), rhs, check_finite=False)
            for a in RIDGE_ALPHAS]


def stratified_folds(y: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """k folds with each class spread evenly (scikit-learn's StratifiedKFold, shuffled)."""
    from sklearn.model_selection import StratifiedKFold

    k = max(2, min(k, int(np.bincount(y).max())))
    counts = np.bincount(y)
    if counts[counts > 0].min() < k:  # a class rarer than k rows: plain shuffled folds
        from sklearn.model_selection import KFold

        splitter = KFold(k, shuffle=True, random_state=seed).split(y)
    else:
        splitter = StratifiedKFold(k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)
    return [held for _, held in splitter]


# --- the module that predicts --------------------------------------------------------------------
class ProbeClassifier(nn.Module):
    """Decoder up to the deepest picked layer + pooling + the standardised linear probe.

    forward(input_ids, attention_mask) -> logits (B, C), the same contract as
    `heads.SequenceClassifier`, so prediction, serving and export treat both alike.
    """

    def __init__(self, decoder, picks, n_classes: int, causal: bool = True):
        super().__init__()
        self.decoder = decoder
        self.picks = [(int(layer), p) for layer, p in picks]
        self.causal = causal
        self.depth = max(layer for layer, _ in self.picks)
        f = len(self.picks) * decoder.cfg.emb_dim
        self.register_buffer("mean", torch.zeros(f))
        self.register_buffer("scale", torch.ones(f))
        self.head = nn.Linear(f, n_classes)

    def load_probe(self, probe: LinearProbe) -> None:
        with torch.no_grad():
            self.mean.copy_(torch.from_numpy(probe.mean))
            self.scale.copy_(torch.from_numpy(probe.scale))
            self.head.weight.copy_(torch.from_numpy(probe.weight))
            self.head.bias.copy_(torch.from_numpy(probe.bias))

    def pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, L, 2, D): mean and last vectors of each picked layer (in `self.layers` order),
        running `depth` blocks only."""
        dec = self.decoder
        pos = dec.positions(attention_mask)
        x = dec.embed(input_ids, pos)
        if len(dec.blocks):  # the blocks may run in bfloat16 (spec.trunk_dtype)
            x = dec.to_block_dtype(x, 0)
        ctx = dec.context(attention_mask, pos, self.causal, x.dtype)
        out = []
        for k in range(self.depth + 1):  # x: the states after layer k
            if k in self.layers:
                out.append(pooled_layer(dec, x, attention_mask))  # (B, 2, D)
            if k < self.depth:
                x = dec.blocks[k](x, attention_mask, pos, causal=self.causal, ctx=ctx)
        return torch.stack(out, dim=1)

    @property
    def layers(self) -> list[int]:
        return sorted({layer for layer, _ in self.picks})

    def head_logits(self, pooled: torch.Tensor) -> torch.Tensor:
        """(B, L, 2, D) pooled vectors -> logits (B, C): the picks side by side, standardised."""
        f = torch.cat([pooled[:, self.layers.index(layer), POOLED.index(p)] for layer, p in self.picks], dim=1)
        return self.head((f.float() - self.mean) / self.scale)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        return self.head_logits(self.pooled(input_ids, attention_mask))

    @torch.inference_mode()
    def logits_windowed(self, ids: list[list[int]], pad_id: int, window: int, batch_size: int) -> torch.Tensor:
        """Logits (N, C) of texts longer than the model should attend over at once: each cut
        into windows of `window` tokens, their vectors combined as in training (features.py)."""
        pieces, owner = split_windows(ids, window)
        device = self.head.weight.device
        pooled = torch.empty(len(pieces), len(self.layers), 2, self.decoder.cfg.emb_dim)
        for b in length_batches([len(x) for x in pieces], batch_size, 8192):
            input_ids, mask = pad_batch([pieces[i] for i in b], pad_id, side="right")
            pooled[b] = self.pooled(input_ids.to(device), mask.to(device)).float().cpu()
        counts = torch.tensor([len(x) for x in pieces], dtype=torch.long)
        return self.head_logits(combine_windows(pooled, counts, owner, len(ids)).to(device))
