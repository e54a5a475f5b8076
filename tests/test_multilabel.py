"""Multi-label helpers: multi-hot targets, weighted BCE, decisions and metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from llmclassify.calibrate import per_label_thresholds
from llmclassify.multilabel import (
    bce_loss,
    multi_hot,
    multilabel_metrics,
    pos_weight_from_targets,
)
from llmclassify.scoring import decide

T = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
P = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 1], [0, 0, 0]])


def test_multi_hot():
    Y = multi_hot([[0, 2], [1], [1, 0, 1], []], 3)
    assert Y.dtype == torch.float32
    assert Y.tolist() == [[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 0]]
    with pytest.raises(ValueError, match="row 1: label id 3"):
        multi_hot([[0], [3]], 3)
    with pytest.raises(ValueError, match="label id -1"):
        multi_hot([[-1]], 3)


def test_bce_matches_formula_with_pos_weight():
    torch.manual_seed(0)
    x = torch.randn(5, 3) * 3
    y = multi_hot([[0], [1, 2], [], [0, 1, 2], [2]], 3)
    pw = torch.tensor([1.0, 2.0, 0.5])
    s = torch.sigmoid(x.double())
    manual = -(pw * y * torch.log(s) + (1 - y) * torch.log(1 - s)).mean()
    assert_close(bce_loss(x, y, pw).double(), manual, rtol=1e-5, atol=1e-6)
    assert_close(bce_loss(x, y), bce_loss(x, y, torch.ones(3)))
    assert bce_loss(x.bfloat16(), y).dtype == torch.float32
    with pytest.raises(ValueError, match="shape"):
        bce_loss(x, y[:, :2])


def test_pos_weight_from_targets():
    w = pos_weight_from_targets(torch.tensor(T, dtype=torch.float32))
    assert w.tolist() == pytest.approx([1.0, 1.0, 3.0])
    w = pos_weight_from_targets(np.array([[0, 1], [0, 0], [0, 0], [0, 0], [0, 0]]), max_weight=2.0)
    assert w.tolist() == [1.0, 2.0]  # no positives -> 1; 4/1 capped at 2


def test_metrics_hand_computed():
    m = multilabel_metrics(T, P, ["a", "b", "c"], loss=0.25)
    assert m["n"] == 4
    assert m["subset_accuracy"] == pytest.approx(0.5)
    assert m["hamming_loss"] == pytest.approx(3 / 12)
    assert m["micro_precision"] == pytest.approx(0.75)
    assert m["micro_recall"] == pytest.approx(0.6)
    assert m["micro_f1"] == pytest.approx(2 / 3)
    assert m["per_label"]["a"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2}
    assert m["per_label"]["b"]["f1"] == pytest.approx(2 / 3)
    assert m["per_label"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert m["macro_f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert m["labels"] == ["a", "b", "c"] and m["loss"] == 0.25
    perfect = multilabel_metrics(T, T)
    assert perfect["subset_accuracy"] == 1.0 and perfect["micro_f1"] == 1.0
    assert perfect["labels"] == ["0", "1", "2"]
    with pytest.raises(ValueError, match="must both be"):
        multilabel_metrics(T, P[:, :2])


def test_decisions_and_tuned_thresholds():
    probs = np.array([[0.9, 0.2, 0.6], [0.1, 0.3, 0.2], [0.7, 0.35, 0.1], [0.2, 0.1, 0.4]])
    Y = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    at_half = decide(probs, multi_label=True)
    assert at_half.tolist() == (probs >= 0.5).tolist()
    thr, _ = per_label_thresholds(probs, Y)
    tuned = decide(probs, multi_label=True, threshold=thr)
    assert multilabel_metrics(Y, tuned)["subset_accuracy"] == 1.0  # separable per label
    assert multilabel_metrics(Y, at_half)["subset_accuracy"] < 1.0
