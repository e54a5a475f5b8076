"""Tests for llmclassify.evaluate: hand-computed values and scikit-learn reference numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmclassify.evaluate import compute_metrics, format_table, roc_auc

FIXTURES = Path(__file__).parent / "fixtures"


def test_hand_computed_binary():
    # true:  0 0 0 0 1 1 1 1 1 1
    # pred:  0 0 0 1 1 1 1 1 0 0     -> cm [[3, 1], [2, 4]]
    y_true = [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]
    y_pred = [0, 0, 0, 1, 1, 1, 1, 1, 0, 0]
    scores = [0.1, 0.2, 0.3, 0.8, 0.9, 0.7, 0.6, 0.55, 0.4, 0.3]
    m = compute_metrics(y_true, y_pred, scores, ["ham", "spam"], loss=0.25)
    assert m["confusion_matrix"] == [[3, 1], [2, 4]]
    assert m["accuracy"] == pytest.approx(0.7)
    ham, spam = m["per_class"]["ham"], m["per_class"]["spam"]
    assert ham["precision"] == pytest.approx(3 / 5) and ham["recall"] == pytest.approx(3 / 4)
    assert spam["precision"] == pytest.approx(4 / 5) and spam["recall"] == pytest.approx(4 / 6)
    assert ham["f1"] == pytest.approx(2 / 3)  # 2*0.6*0.75/1.35
    assert spam["f1"] == pytest.approx(2 * 0.8 * (2 / 3) / (0.8 + 2 / 3))
    assert (ham["support"], spam["support"]) == (4, 6)
    assert m["macro_f1"] == pytest.approx((ham["f1"] + spam["f1"]) / 2)
    assert m["balanced_accuracy"] == pytest.approx((0.75 + 4 / 6) / 2)
    # AUC: pairs (pos, neg) with pos > neg; 0.3 ties once (counts 1/2).
    # positives 0.9 0.7 0.6 0.55 0.4 0.3 vs negatives 0.1 0.2 0.3 0.8
    wins = 4 + 3 + 3 + 3 + 3 + 2.5
    assert m["roc_auc"] == pytest.approx(wins / 24)
    assert m["loss"] == 0.25 and m["n"] == 10
    json.dumps(m)


def test_zero_division_and_absent_class():
    m = compute_metrics([0, 0, 0], [0, 0, 0], [[0.9, 0.1]] * 3, ["a", "b"])
    assert m["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["roc_auc"] is None
    assert m["balanced_accuracy"] == 1.0 and m["macro_f1"] == 0.5
    e = compute_metrics([], [], None, ["a", "b"])
    assert e["n"] == 0 and e["accuracy"] == 0.0 and e["confusion_matrix"] == [[0, 0], [0, 0]]


def test_auc_edge_cases():
    assert roc_auc([0, 1], [0.5, 0.5]) == 0.5
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert roc_auc([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4]) == 0.0
    assert roc_auc([1, 1], [0.1, 0.2]) is None
    assert compute_metrics([0, 1, 2], [0, 1, 2], np.eye(3), ["a", "b", "c"])["roc_auc"] is None


def test_bad_inputs():
    with pytest.raises(ValueError):
        compute_metrics([0, 1], [0], None, ["a", "b"])
    with pytest.raises(ValueError):
        compute_metrics([0, 2], [0, 1], None, ["a", "b"])
    with pytest.raises(ValueError):
        compute_metrics([0, 1], [0, 1], [[0.1, 0.9]], ["a", "b"])


@pytest.mark.parametrize(
    "case",
    json.loads((FIXTURES / "metrics_sklearn.json").read_text())["cases"],
    ids=lambda c: c["name"],
)
def test_matches_sklearn(case):
    names = [f"c{i}" for i in range(case["n_classes"])]
    m = compute_metrics(case["y_true"], case["y_pred"], case["probs"], names)
    assert m["accuracy"] == pytest.approx(case["accuracy"])
    assert m["macro_f1"] == pytest.approx(case["macro_f1"])
    assert m["balanced_accuracy"] == pytest.approx(case["balanced_accuracy"])
    assert m["confusion_matrix"] == case["confusion_matrix"]
    for i, n in enumerate(names):
        pc = m["per_class"][n]
        assert pc["precision"] == pytest.approx(case["precision"][i])
        assert pc["recall"] == pytest.approx(case["recall"][i])
        assert pc["f1"] == pytest.approx(case["f1"][i])
        assert pc["support"] == case["support"][i]
    if case["roc_auc"] is None:
        assert m["roc_auc"] is None
    else:
        assert m["roc_auc"] == pytest.approx(case["roc_auc"])


@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 4)), min_size=2, max_size=40))
def test_auc_equals_pairwise_definition(pairs):
    y = np.array([p[0] for p in pairs])
    s = np.array([p[1] for p in pairs], dtype=float)
    got = roc_auc(y, s)
    pos, neg = s[y == 1], s[y == 0]
    if len(pos) == 0 or len(neg) == 0:
        assert got is None
        return
    want = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (
        len(pos) * len(neg)
    )
    assert got == pytest.approx(want)


def test_format_table():
    m1 = compute_metrics([0, 1, 1, 0], [0, 1, 0, 0], [0.2, 0.9, 0.4, 0.1], ["ham", "spam"])
    m2 = compute_metrics([0, 1], [0, 1], [0.1, 0.8], ["ham", "spam"], loss=0.1234)
    out = format_table({"train": m1, "val": m2, "test": None})
    lines = out.splitlines()
    assert lines[0].split() == ["train", "val"]
    assert "accuracy" in lines[2] and "75.00%" in lines[2] and "100.00%" in lines[2]
    assert any(line.startswith("F1 spam") for line in lines)
    assert any(line.startswith("ROC-AUC") and "1.0000" in line for line in lines)
    assert any(line.startswith("loss") and "-" in line and "0.1234" in line for line in lines)
    assert "confusion matrix (train; rows true, columns predicted)" in out
    i = lines.index("confusion matrix (train; rows true, columns predicted)")
    assert lines[i + 1].split() == ["ham", "spam"]
    assert lines[i + 2].split() == ["ham", "2", "0"]
    assert lines[i + 3].split() == ["spam", "1", "1"]
    # Fixed width: the metric rows line up.
    assert len({len(line) for line in lines[: lines.index("")]}) == 1
    assert format_table({}) == "(no metrics)"


def test_a_wide_confusion_matrix_is_numbered_then_summarised():
    """Names that make the matrix wider than CONFUSION_WIDTH give way to class numbers; where
    even those do not fit, the most frequent confusions are listed, largest first."""
    from llmclassify.evaluate import CONFUSION_WIDTH, TOP_CONFUSIONS

    def table(k, confusions):
        names = [f"intent:a_rather_long_class_name_{i}" for i in range(k)]
        y, p = list(range(k)) * 3, list(range(k)) * 3
        for (t, q), n in confusions.items():
            y, p = y + [t] * n, p + [q] * n
        return format_table({"test": compute_metrics(y, p, None, names)}).splitlines(), names

    lines, names = table(2, {(0, 1): 1})
    i = lines.index("confusion matrix (test; rows true, columns predicted)")
    assert lines[i + 1].split() == names  # two classes: named columns, as before
    lines, names = table(8, {(3, 5): 2})
    i = lines.index("confusion matrix (test; rows true, columns predicted, numbered as the rows)")
    assert lines[i + 1].split() == [str(c) for c in range(1, 9)]
    assert lines[i + 5].split() == ["4", names[3], "0", "0", "0", "3", "0", "2", "0", "0"]
    assert max(len(x) for x in lines[i:]) <= CONFUSION_WIDTH
    confusions = {(c, (c + 1) % 40): 1 + c % 4 for c in range(40)}
    lines, names = table(40, confusions)
    i = next(j for j, x in enumerate(lines) if x.startswith("confusion matrix (test): 40 x 40 classes"))
    listed = lines[i + 1:]
    assert len(listed) == TOP_CONFUSIONS
    assert listed[0] == f"  {names[3]} -> {names[4]}: 4"  # 4 texts: classes 3, 7, 11, ..., first by class
    assert [int(x.rsplit(": ", 1)[1]) for x in listed] == [4] * TOP_CONFUSIONS


def test_paired_difference_is_the_macro_f1_gap_with_a_bootstrap_interval_over_the_same_texts():
    """paired_difference: the point is compute_metrics's macro-F1 of one minus the other (a
    class absent from the texts included), bit for bit (one F1: precision_recall_f1); its interval is what resampling the texts with
    replacement, the same draw for both, gives (checked against that loop); identical
    predictions give 0 and p 1; McNemar's p is the exact binomial tail."""
    import math

    from llmclassify.evaluate import mcnemar_p, paired_difference

    rng = np.random.default_rng(3)
    n, c = 400, 4
    y = rng.integers(0, c - 1, n)  # class 3 never occurs
    a = np.where(rng.random(n) < 0.85, y, rng.integers(0, c, n))
    b = np.where(rng.random(n) < 0.75, y, rng.integers(0, c, n))
    names = [str(i) for i in range(c)]
    d = paired_difference(y, a, b, c)
    want = compute_metrics(y, a, label_names=names)["macro_f1"] - compute_metrics(y, b, label_names=names)["macro_f1"]
    assert d["macro_f1_difference"] == want
    assert d == paired_difference(y, a, b, c)  # seeded
    naive = []
    for _ in range(2000):
        i = rng.integers(0, n, n)
        naive.append(compute_metrics(y[i], a[i], label_names=names)["macro_f1"]
                     - compute_metrics(y[i], b[i], label_names=names)["macro_f1"])
    lo, hi = np.quantile(naive, [0.025, 0.975])
    assert d["interval"][0] == pytest.approx(lo, abs=0.01) and d["interval"][1] == pytest.approx(hi, abs=0.01)
    assert d["interval"][0] < want < d["interval"][1] and d["interval"][1] - d["interval"][0] > 0.05
    assert (d["a_only_right"], d["b_only_right"]) == (int(np.sum((a == y) & (b != y))), int(np.sum((b == y) & (a != y))))
    same = paired_difference(y, a, a, c)
    assert (same["macro_f1_difference"], same["interval"], same["mcnemar_p"]) == (0.0, [0.0, 0.0], 1.0)
    for k, m in ((0, 6), (4, 14), (9, 20)):
        exact = 2 * sum(math.comb(m, i) for i in range(k + 1)) / 2**m
        assert mcnemar_p(k, m - k) == pytest.approx(min(1.0, exact))


def test_macro_f1_alone_is_compute_metrics_macro_f1_bit_for_bit():
    """evaluate.macro_f1 (what the search scores by) against compute_metrics' report: the same
    float, a class that never occurs and one never predicted included."""
    from llmclassify.evaluate import macro_f1

    rng = np.random.default_rng(5)
    for n, c in ((50, 2), (400, 5), (7, 4)):
        y = rng.integers(0, c - 1, n)  # class c-1 never occurs
        p = np.where(rng.random(n) < 0.7, y, rng.integers(1, c, n))  # class 0 predicted only when right
        names = [str(i) for i in range(c)]
        assert macro_f1(y, p, c) == compute_metrics(y, p, label_names=names)["macro_f1"]
