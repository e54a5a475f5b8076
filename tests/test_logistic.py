"""The dense solver of the probes (logistic.DenseLogistic): scikit-learn's objective, reached in
fewer iterations where the features are correlated as hidden states of nearby layers are."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from llmclassify.logistic import DenseLogistic
from llmclassify.probes import LogisticPath


def correlated_features(n: int, classes: int, seed: int, dtype=np.float64):
    """Rows whose 60 columns share a few strong directions (the class signal among them) plus
    noise, standardised: what a concatenation of layers' pooled vectors looks like."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    factors = rng.normal(0, 1, (n, 4)) + rng.normal(0, 1, (classes, 4))[y]
    x = factors @ rng.normal(0, 3, (4, 60)) + rng.normal(0, 1, (n, 60))
    return ((x - x.mean(0)) / x.std(0)).astype(dtype), y


@pytest.mark.parametrize("classes, present, balanced", [(3, 3, False), (2, 2, False), (4, 2, True), (5, 4, True)])
def test_the_optimum_is_scikit_learns(classes, present, balanced):
    """Multinomial, binary (scikit-learn's one-vector form), class weights 'balanced', classes
    absent from the rows (left at a -inf-like bias): the same model as LogisticRegression's,
    solved tightly, at a strong and a weak penalty."""
    z, y = correlated_features(400, present, seed=classes)
    y = np.where(y >= 1, y + classes - present, y)  # classes 1 .. classes-present absent
    path = LogisticPath(classes, balanced, tol=1e-8)
    for C in (0.01, 1.0):
        w, b = path.fit(z, y, C)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = LogisticRegression(C=C, tol=1e-10, max_iter=100000,
                                     class_weight="balanced" if balanced else None).fit(z, y)
        ours = z @ w.T + b
        theirs = ref.decision_function(z)
        if theirs.ndim == 1:  # binary: the second class's logit minus the first's
            ours = ours[:, ref.classes_[1]] - ours[:, ref.classes_[0]]
        else:  # softmax logits are defined up to a shift per row
            ours = ours[:, ref.classes_] - ours[:, ref.classes_].mean(1, keepdims=True)
            theirs = theirs - theirs.mean(1, keepdims=True)
        assert np.abs(ours - theirs).max() < 1e-3 * np.abs(theirs).max(), C
        absent = np.setdiff1d(np.arange(classes), ref.classes_)
        assert (b[absent] <= -30).all() and not w[absent].any()


def test_preconditioning_cuts_the_iterations_on_correlated_features():
    """Where a few directions carry most of the features' variance, plain L-BFGS (scikit-learn's)
    needs several times the iterations of the preconditioned one for the same tolerance."""
    z, y = correlated_features(600, 4, seed=0, dtype=np.float32)
    ours = DenseLogistic(balanced=False, tol=1e-4, max_iter=1000)
    theirs = LogisticRegression(C=1.0, tol=1e-4, max_iter=1000)
    ours.fit(z, y, 1.0)
    theirs.fit(z, y)
    assert ours.n_iter * 2 < theirs.n_iter_[0], (ours.n_iter, theirs.n_iter_[0])


def test_a_fit_at_a_close_c_may_take_no_step_and_another_c_still_moves():
    """Along a path each fit starts where the last ended: at the same C it is already there
    (scikit-learn's gradient test, zero iterations); at a C ten times larger it is not."""
    z, y = correlated_features(300, 3, seed=1, dtype=np.float32)
    solver = DenseLogistic(balanced=False, tol=1e-4, max_iter=1000)
    _, w1, _ = solver.fit(z, y, 0.1)
    _, w2, _ = solver.fit(z, y, 0.1)
    assert solver.n_iter == 0 and np.array_equal(w1, w2)
    _, w3, _ = solver.fit(z, y, 1.0)
    assert solver.n_iter > 0 and np.abs(w3).max() > np.abs(w1).max()


def test_rows_of_one_class_are_an_error():
    with pytest.raises(ValueError, match="at least 2 classes"):
        DenseLogistic(False, 1e-4, 100).fit(np.ones((5, 3), np.float32), np.zeros(5, int), 1.0)
