"""L2 logistic regression on dense features (the probes' pooled vectors): scikit-learn's
objective, minimised by L-BFGS in preconditioned coordinates.

The objective is LogisticRegression's (solver lbfgs), so that a probe means what it meant:

    (1 / S) sum_i s_i loss_i  +  |W|^2 / (2 C S)

with loss_i the cross-entropy of row i (softmax over the classes present; with two classes,
scikit-learn's binary form: one weight vector and a sigmoid), s_i its class weight (1, or
n / (k n_class) where balanced), S their sum, and an unpenalised intercept. A fit stops by
scikit-learn's test, the largest entry of this objective's gradient, at STOP_SHARE x `tol`.

Why not scikit-learn's own L-BFGS: standardised hidden states of nearby layers are strongly
correlated, so the objective's curvature is far larger along a handful of directions than
elsewhere, and plain L-BFGS spends most of its iterations there: from zero at the search's
first C on a fold of ATIS (3,472 rows, 15 intents) it took 117 iterations on one layer's
vector, 199 on the concatenation of seven (4,032 columns). Here the weights are W = M U with
M = P^(-1/2), P = CURVATURE * (the weighted second moment of the rows, its RANK largest
directions exact, the rest at the RANK-th) + the penalty: L-BFGS on U sees a rounder problem
(the same one: only the coordinates change) and took 32 and 36 iterations there
(benchmarks/results/dense-solver-sweep.md). P costs one randomized SVD of the rows (RANK
directions). probes.LogisticPath uses this for a path's first fit only (PRECONDITIONED_MAX_C).
"""

from __future__ import annotations

import warnings

import numpy as np

# The preconditioner: how many of the rows' largest directions it takes exactly, and the
# curvature it assumes of the loss along them (a cross-entropy's is at most 1/4 a class; more
# flattens the directions L-BFGS finds hardest). Chosen on ATIS's probes (1, 3 and 7 vectors):
# 16 to 64 directions at 1 to 4 took 28 to 48 iterations, 0.25 or 256 directions 46 to 122
# (benchmarks/results/dense-solver-sweep.md).
RANK = 32
CURVATURE = 2.0
SEED = 0  # the randomized SVD's: the same rows get the same preconditioner
# A fit given scikit-learn's tolerance `tol` stops at STOP_SHARE x tol. The gradient test says
# little about the flat directions (those the penalty alone holds), and preconditioned steps
# reach it with more of the distance to the optimum left there than scikit-learn's; a little
# further, the fit hands LogisticPath's next fits a start at least as near the optimum as
# scikit-learn's own would have (ATIS: the same out-of-fold scores to the last digit,
# benchmarks/results/dense-solver.md).
STOP_SHARE = 0.3


class Preconditioner:
    """P = CURVATURE * V diag(e) V^T (+ the rest of the space at e's last) + penalty * I, where
    V diag(e) V^T is the top of the weighted second moment of the rows."""

    def __init__(self, z: np.ndarray, weight: np.ndarray):
        from sklearn.utils.extmath import randomized_svd

        zw = z * np.sqrt(weight / weight.sum())[:, None].astype(z.dtype)
        rank = min(RANK, *z.shape)
        if rank < min(z.shape):
            _, s, vt = randomized_svd(zw, rank, n_iter=3, random_state=SEED)
        else:
            _, s, vt = np.linalg.svd(zw, full_matrices=False)
        self.v = vt.T.astype(np.float64)
        self.top = CURVATURE * s.astype(np.float64) ** 2  # curvature along V's directions
        self.rest = self.top[-1]  # and along every other

    def inverse_root(self, penalty: float):
        """x -> P^(-1/2) x, for (F, k) arrays: M, from the coordinates L-BFGS moves in to W."""
        top = (self.top + penalty) ** -0.5
        rest = (self.rest + penalty) ** -0.5
        v = self.v
        return lambda x: v @ ((top - rest)[:, None] * (v.T @ x)) + rest * x


def objective(z: np.ndarray, y: np.ndarray, k: int, weight: np.ndarray, penalty: float):
    """(W (F, k), b (k,)) -> (value, gradient of W, gradient of b) of scikit-learn's objective,
    `y` in 0..k-1 (k = 1: the binary form, y in 0/1). Matrix products in z's precision, sums in
    float64."""
    from scipy.special import expit, logsumexp

    share = weight / weight.sum()
    rows = np.arange(len(y))

    def value_and_gradient(w: np.ndarray, b: np.ndarray):
        raw = (z @ w.astype(z.dtype)).astype(np.float64) + b
        if k == 1:
            r = raw[:, 0]
            loss = np.logaddexp(0.0, r) - y * r
            residual = (expit(r) - y)[:, None]
        else:
            lse = logsumexp(raw, axis=1)
            loss = lse - raw[rows, y]
            residual = np.exp(raw - lse[:, None])
            residual[rows, y] -= 1.0
        residual *= share[:, None]
        value = float(loss @ share) + 0.5 * penalty * float(np.sum(w * w))
        grad_w = (z.T @ residual.astype(z.dtype)).astype(np.float64) + penalty * w
        return value, grad_w, residual.sum(0)

    return value_and_gradient


def fit(z: np.ndarray, y: np.ndarray, C: float, balanced: bool, tol: float, max_iter: int
        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """One fit from zero: (classes present (k,), weight, bias, L-BFGS iterations) in scikit-
    learn's form (two classes: one row of weights, one bias, for the second class). `tol` as
    scikit-learn's (STOP_SHARE)."""
    from scipy import optimize
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.utils.class_weight import compute_class_weight

    classes, y_idx = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"logistic regression needs rows of at least 2 classes; got {len(classes)}")
    k = 1 if len(classes) == 2 else len(classes)
    weight = (compute_class_weight("balanced", classes=np.arange(len(classes)), y=y_idx)[y_idx] if balanced
              else np.ones(len(y)))  # each row's: scikit-learn's 'balanced' is n / (classes x rows of the class)
    penalty = 1.0 / (C * weight.sum())
    f = objective(z, y_idx, k, weight, penalty)
    to_w = Preconditioner(z, weight).inverse_root(penalty)
    n_w = z.shape[1] * k
    tol = STOP_SHARE * tol
    last = {}  # the last point evaluated and its gradient's largest entry

    def value_and_gradient(x: np.ndarray):
        w = to_w(x[:n_w].reshape(-1, k))
        value, grad_w, grad_b = f(w, x[n_w:])
        last.update(x=x.copy(), largest=max(np.abs(grad_w).max(), np.abs(grad_b).max()))
        return value, np.concatenate([to_w(grad_w).ravel(), grad_b])  # the chain rule: M is symmetric

    def largest_entry(x: np.ndarray) -> float:
        if "x" not in last or not np.array_equal(x, last["x"]):
            value_and_gradient(x)
        return last["largest"]

    def stop_at_tolerance(intermediate_result):
        if largest_entry(intermediate_result.x) <= tol:
            raise StopIteration

    res = optimize.minimize(
        value_and_gradient, np.zeros(n_w + k), method="L-BFGS-B", jac=True, callback=stop_at_tolerance,
        options={"maxiter": max_iter, "maxls": 50, "gtol": 0.0, "ftol": 64 * np.finfo(float).eps})
    if largest_entry(res.x) > tol and res.nit >= max_iter:
        warnings.warn(f"lbfgs failed to converge after {res.nit} iterations (largest gradient entry "
                      f"{last['largest']:.2e} > tol {tol:g})", ConvergenceWarning, stacklevel=2)
    return classes, to_w(res.x[:n_w].reshape(-1, k)).T, res.x[n_w:], res.nit
