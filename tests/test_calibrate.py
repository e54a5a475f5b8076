"""Thresholds and temperature scaling on data where the right answer is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llmclassify.calibrate import (
    apply_temperature,
    calibration_report,
    ece,
    fit_temperature,
    nll,
    per_label_thresholds,
    tune_threshold,
)

# scores, high to low, and labels: the F1-best rule takes the top 5 (tp 4, fp 1, fn 1 -> F1 0.8).
SCORES = [0.95, 0.90, 0.80, 0.70, 0.60, 0.40, 0.35, 0.30, 0.20, 0.10]
LABELS = [1, 1, 0, 1, 1, 0, 0, 1, 0, 0]


def brute_force_f1(p, y):
    """F1 of `p >= t` for every candidate t: the reference the tuned threshold must match."""
    p, y = np.asarray(p), np.asarray(y)
    best = 0.0
    for t in np.unique(p):
        pred = p >= t
        tp = (pred & (y == 1)).sum()
        prec = tp / pred.sum()
        rec = tp / max((y == 1).sum(), 1)
        best = max(best, 2 * prec * rec / (prec + rec) if prec + rec else 0.0)
    return best


def test_threshold_max_f1_hand_made():
    t, m = tune_threshold(SCORES, LABELS)
    assert t == pytest.approx(0.5)  # half way between 0.60 (in) and 0.40 (out)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (4, 1, 1, 4)
    assert m["f1"] == pytest.approx(0.8) and m["precision"] == pytest.approx(0.8)
    pred = np.asarray(SCORES) >= t
    assert pred.sum() == 5


def brute_force_macro_f1(p, y):
    """The best mean of both classes' F1 over every rule `p >= t`."""
    from sklearn.metrics import f1_score

    p, y = np.asarray(p), np.asarray(y)
    return max(f1_score(y, p >= t, average="macro") for t in np.unique(p))


def test_threshold_max_macro_f1_matches_brute_force_and_differs_from_f1():
    rng = np.random.default_rng(1)
    differs = 0
    for _ in range(20):
        y = (rng.random(80) < 0.2).astype(int)  # unbalanced, as auto tunes it
        y[0] = 1
        p = np.round(np.clip(0.3 * y + rng.normal(0.3, 0.15, 80), 0, 1), 2)
        t, m = tune_threshold(p, y, objective="macro-f1")
        assert m["macro_f1"] == pytest.approx(brute_force_macro_f1(p, y))
        from sklearn.metrics import f1_score

        assert m["macro_f1"] == pytest.approx(f1_score(y, p >= t, average="macro"))
        differs += t != tune_threshold(p, y, objective="f1")[0]
    assert differs  # a different objective, not the positive class's F1 renamed


def test_threshold_ties_are_taken_whole():
    # Two examples share 0.5; one positive, one negative: no threshold can split them.
    t, m = tune_threshold([0.9, 0.5, 0.5, 0.1], [1, 1, 0, 0])
    assert m["tp"] + m["fp"] in (1, 3)
    assert m["f1"] == pytest.approx(brute_force_f1([0.9, 0.5, 0.5, 0.1], [1, 1, 0, 0]))


def test_threshold_matches_brute_force_on_random_data():
    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.integers(0, 2, 60)
        y[0] = 1
        p = np.round(np.clip(0.3 * y + rng.normal(0.4, 0.2, 60), 0, 1), 2)  # rounding: ties
        t, m = tune_threshold(p, y)
        assert m["f1"] == pytest.approx(brute_force_f1(p, y))
        pred = p >= t
        assert pred.sum() == m["tp"] + m["fp"]


def test_threshold_for_target_precision():
    # Precision of the top-k rules: 1, 1, 2/3, 3/4, 4/5, 4/6, 4/7, 5/8, ...
    t, m = tune_threshold(SCORES, LABELS, objective="precision", target_precision=0.75)
    assert m["precision"] >= 0.75 and (m["tp"], m["fp"]) == (4, 1)  # lowest threshold reaching it
    assert t == pytest.approx(0.5)
    t, m = tune_threshold(SCORES, LABELS, objective="precision", target_precision=0.9)
    assert (m["tp"], m["fp"]) == (2, 0) and t == pytest.approx(0.85)
    t, m = tune_threshold(SCORES, LABELS, objective="precision", target_precision=1.0)
    assert m["precision"] == 1.0 and m["recall"] == pytest.approx(0.4)


def test_threshold_errors():
    with pytest.raises(ValueError, match="no threshold reaches precision 0.9"):
        tune_threshold([0.9, 0.8, 0.1], [0, 1, 1], objective="precision", target_precision=0.9)
    with pytest.raises(ValueError, match="target precision"):
        tune_threshold(SCORES, LABELS, objective="precision")
    with pytest.raises(ValueError, match="unknown threshold objective"):
        tune_threshold(SCORES, LABELS, objective="recall")
    with pytest.raises(ValueError, match="no positive"):
        tune_threshold([0.1, 0.2], [0, 0])
    with pytest.raises(ValueError, match="0/1"):
        tune_threshold([0.1, 0.2], [0, 2])


def test_per_label_thresholds():
    P = np.stack([SCORES, SCORES[::-1], [0.5] * 10], axis=1)
    Y = np.stack([LABELS, LABELS[::-1], [0] * 10], axis=1)
    thr, rep = per_label_thresholds(P, Y)
    assert thr[0] == pytest.approx(0.5) and thr[1] == pytest.approx(0.5)
    assert rep[0]["f1"] == pytest.approx(0.8) and rep[1]["f1"] == pytest.approx(0.8)
    assert thr[2] == 0.5 and rep[2]["tuned"] is False
    assert rep[0]["support"] == 5


def synthetic_logits(n=4000, c=4, scale=3.0, seed=0):
    """Labels drawn from softmax(z): z is perfectly calibrated, scale * z over-confident."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, c, generator=g) * 1.5
    y = torch.multinomial(torch.softmax(z, -1), 1, generator=g).ravel()
    return z * scale, y


@pytest.mark.parametrize("scale", [3.0, 0.5])
def test_temperature_recovers_the_scale(scale):
    logits, y = synthetic_logits(scale=scale)
    T = fit_temperature(logits, y)
    assert T == pytest.approx(scale, rel=0.1)
    assert nll(logits, y, T) < nll(logits, y)


def test_temperature_two_classes_and_numpy():
    logits, y = synthetic_logits(c=2, scale=2.0, seed=3)
    T = fit_temperature(logits.numpy(), y.numpy())
    assert T == pytest.approx(2.0, rel=0.15)


def test_ece_decreases_after_scaling():
    logits, y = synthetic_logits(scale=3.0)
    before = ece(torch.softmax(logits, -1), y)
    T = fit_temperature(logits, y)
    after = ece(apply_temperature(logits, T), y)
    assert before > 0.1 and after < 0.03 and after < before
    # argmax unchanged: accuracy is the same
    assert torch.equal(apply_temperature(logits, T).argmax(-1), logits.argmax(-1))


def test_ece_known_values():
    # All at confidence 0.8, 80% correct: perfectly calibrated.
    probs = np.array([[0.8, 0.2]] * 10)
    y = np.array([0] * 8 + [1] * 2)
    assert ece(probs, y) == pytest.approx(0.0)
    # Confidence 1.0 everywhere, half right: ECE 0.5 (1.0 lands in the last bin).
    assert ece(np.array([[1.0, 0.0]] * 4), np.array([0, 0, 1, 1])) == pytest.approx(0.5)
    # (N,) probabilities of class 1 mean two classes.
    assert ece(np.full(4, 0.0), np.array([0, 0, 1, 1])) == pytest.approx(0.5)


def test_calibration_report():
    z_val, y_val = synthetic_logits(scale=3.0, seed=1)
    z_test, y_test = synthetic_logits(scale=3.0, seed=2)
    r = calibration_report(z_val, y_val, z_test, y_test)
    assert r["temperature"] == pytest.approx(3.0, rel=0.1)
    for s in ("val", "test"):
        assert r[s]["ece_after"] < r[s]["ece_before"]
        assert r[s]["nll_after"] < r[s]["nll_before"]
    assert "test" not in calibration_report(z_val, y_val)
