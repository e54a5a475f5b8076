"""The probes' preconditioned solver (logistic.fit): scikit-learn's objective, reached in fewer
iterations where the features are correlated as hidden states of nearby layers are; and how a
LogisticPath hands its first fit on to scikit-learn."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from llmclassify import logistic, probes
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
    absent from the rows: the same model as LogisticRegression's, solved tightly, at a strong
    and a weak penalty."""
    z, y = correlated_features(400, present, seed=classes)
    y = np.where(y >= 1, y + classes - present, y)  # classes 1 .. classes-present absent
    for C in (0.01, 1.0):
        found, w, b, _ = logistic.fit(z, y, C, balanced, tol=1e-8, max_iter=10000)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = LogisticRegression(C=C, tol=1e-10, max_iter=100000,
                                     class_weight="balanced" if balanced else None).fit(z, y)
        assert np.array_equal(found, ref.classes_)
        assert np.abs(w - ref.coef_).max() < 1e-3 * np.abs(ref.coef_).max(), C
        assert np.abs(b - ref.intercept_).max() < 1e-3 * np.abs(ref.coef_).max(), C


def test_preconditioning_cuts_the_iterations_on_correlated_features():
    """Where a few directions carry most of the features' variance, plain L-BFGS (scikit-learn's)
    needs several times the iterations of the preconditioned one for the same tolerance."""
    z, y = correlated_features(600, 4, seed=0, dtype=np.float32)
    *_, ours = logistic.fit(z, y, 1.0, False, tol=1e-4, max_iter=1000)
    theirs = LogisticRegression(C=1.0, tol=1e-4, max_iter=1000).fit(z, y).n_iter_[0]
    assert ours * 2 < theirs, (ours, theirs)


def test_a_path_starts_preconditioned_and_every_c_reaches_its_optimum():
    """LogisticPath's first fit at the grid's strong end (three classes or more) is the
    preconditioned one; scikit-learn's L-BFGS goes on from it: each C of the grid ends at its
    own optimum (a warm start handed over wrongly, in the other form or with the classes out
    of order, would not)."""
    z, y = correlated_features(500, 4, seed=2, dtype=np.float32)
    y = np.where(y == 1, 3, y)  # class 1 absent, so the path's rows and scikit-learn's differ
    path = LogisticPath(5, balanced=True)
    assert probes.C_GRID[0] <= probes.PRECONDITIONED_MAX_C
    for C in probes.C_GRID:
        w, b = path.fit(z, y, C)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = LogisticRegression(C=C, tol=1e-10, max_iter=100000, class_weight="balanced").fit(z, y)
        assert np.abs(w[ref.classes_] - ref.coef_).max() < 0.02 * np.abs(ref.coef_).max(), C
        assert b[1] <= -30 and not w[1].any()


def test_a_spent_iteration_budget_is_said():
    from sklearn.exceptions import ConvergenceWarning

    z, y = correlated_features(200, 3, seed=3, dtype=np.float32)
    with pytest.warns(ConvergenceWarning, match="after 2 iterations"):
        logistic.fit(z, y, 100.0, False, tol=1e-4, max_iter=2)


def test_rows_of_one_class_are_an_error():
    with pytest.raises(ValueError, match="at least 2 classes"):
        logistic.fit(np.ones((5, 3), np.float32), np.zeros(5, int), 1.0, False, 1e-4, 100)
