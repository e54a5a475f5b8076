"""Multi-label classification: targets, loss, decisions and metrics.

This module owns the multi-label case, where a text may carry any number of L labels: each
label is an independent yes/no with its own sigmoid, so the head has L outputs, the loss is
binary cross-entropy on logits, and a label is predicted when its probability is at least
its threshold (0.5, or tuned per label by calibrate.per_label_thresholds).

Metric conventions follow scikit-learn's with ``zero_division=0``: micro scores pool every
(text, label) decision; macro-F1 averages the per-label F1 over all L labels; subset accuracy
counts texts whose whole label set is exactly right.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .errors import UserError
from .evaluate import precision_recall_f1


class MultiLabelError(UserError, ValueError):
    """Bad multi-label input: a label id out of range, mismatched shapes (one-line UserError)."""


def multi_hot(label_lists: Iterable[Iterable[int]], num_labels: int) -> torch.Tensor:
    """Label-id lists -> (N, num_labels) float32 multi-hot targets (an empty list: all zeros).

    Repeated ids count once. An id outside [0, num_labels) is an error naming the row.
    """
    rows = [list(ids) for ids in label_lists]
    out = torch.zeros(len(rows), num_labels, dtype=torch.float32)
    for i, ids in enumerate(rows):
        for j in ids:
            if not 0 <= int(j) < num_labels:
                raise MultiLabelError(f"row {i}: label id {j} is outside [0, {num_labels})")
            out[i, int(j)] = 1.0
    return out


def pos_weight_from_targets(targets, max_weight: float | None = None) -> torch.Tensor:
    """Per-label positive weight n_negative / n_positive (L,), for rare labels.

    With it, a label's positives and negatives weigh the same in the loss in total. A label
    with no positive example gets 1.0 (nothing to up-weight). `max_weight` caps the ratio, since
    a label seen twice in 10,000 texts would otherwise get a weight of 5,000.
    """
    Y = torch.as_tensor(targets, dtype=torch.float32)
    pos = Y.sum(0)
    neg = Y.shape[0] - pos
    w = torch.where(pos > 0, neg / pos.clamp(min=1), torch.ones_like(pos))
    if max_weight is not None:
        w = w.clamp(max=float(max_weight))
    return w


def bce_loss(logits: torch.Tensor, targets: torch.Tensor, pos_weight: torch.Tensor | None = None,
             reduction: str = "mean") -> torch.Tensor:
    """Binary cross-entropy on logits (N, L) against multi-hot targets (N, L).

    `pos_weight` (L,) multiplies the positive term of each label (see pos_weight_from_targets).
    Computed in float32 from the logits (log-sum-exp form: no sigmoid underflow).
    """
    if logits.shape != targets.shape:
        raise MultiLabelError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ in shape")
    pw = None if pos_weight is None else pos_weight.to(device=logits.device, dtype=torch.float32)
    return F.binary_cross_entropy_with_logits(
        logits.float(), targets.to(logits.device, torch.float32), pos_weight=pw, reduction=reduction
    )


def multilabel_metrics(y_true, y_pred, label_names: Sequence[str] | None = None,
                       loss: float | None = None) -> dict:
    """Subset accuracy, Hamming loss, micro precision/recall/F1, macro-F1 and per-label scores.

    y_true, y_pred: (N, L) 0/1 (or bool) arrays. Returns plain Python types (JSON-ready):
    ``{"n", "subset_accuracy", "hamming_loss", "micro_precision", "micro_recall", "micro_f1",
    "macro_f1", "per_label": {name: {precision, recall, f1, support}}, "labels", "loss"}``.
    """
    T = np.asarray(y_true).astype(bool)
    P = np.asarray(y_pred).astype(bool)
    if T.ndim != 2 or T.shape != P.shape:
        raise MultiLabelError(f"y_true {T.shape} and y_pred {P.shape} must both be (N, labels)")
    n, n_labels = T.shape
    names = [str(x) for x in (label_names if label_names is not None else range(n_labels))]
    if len(names) != n_labels:
        raise MultiLabelError(f"{len(names)} label names for {n_labels} label columns")
    tp = (T & P).sum(0)
    fp = (~T & P).sum(0)
    fn = (T & ~P).sum(0)
    precision, recall, f1 = precision_recall_f1(tp, fp, fn)
    per_label = {name: {"precision": float(precision[j]), "recall": float(recall[j]), "f1": float(f1[j]),
                        "support": int(T[:, j].sum())} for j, name in enumerate(names)}
    mp, mr, mf = (float(v) for v in precision_recall_f1(tp.sum(), fp.sum(), fn.sum()))
    return {
        "n": int(n),
        "subset_accuracy": float((T == P).all(1).mean()) if n else 0.0,
        "hamming_loss": float((T != P).mean()) if T.size else 0.0,
        "micro_precision": mp,
        "micro_recall": mr,
        "micro_f1": mf,
        "macro_f1": float(f1.mean()) if n_labels else 0.0,
        "per_label": per_label,
        "labels": names,
        "loss": None if loss is None else float(loss),
    }
