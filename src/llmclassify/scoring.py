"""Logits -> probabilities -> decisions -> metrics: the ONE scoring path.

Training's final report, `llmclassify evaluate`, `Classifier.predict` and the baseline all go
through these functions, so a run's temperature and threshold mean the same thing
everywhere: single-label probabilities are softmax(logits / temperature); with a threshold
(two classes) the second label is predicted when its probability reaches it, else the most
probable label. Multi-label probabilities are independent sigmoids; a label is predicted when
its probability reaches its own threshold (0.5 when none was tuned).

No torch at import: the ONNX predictor decides through `decide` without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .evaluate import compute_metrics

if TYPE_CHECKING:
    import torch


def probabilities(logits: torch.Tensor, *, multi_label: bool = False, temperature: float = 1.0) -> torch.Tensor:
    """(N, C) logits -> (N, C) float32 probabilities."""
    logits = logits.float()
    if multi_label:
        return logits.sigmoid()
    return (logits / temperature).softmax(-1)


def decide(probs, *, multi_label: bool = False, threshold: float | Sequence[float] | None = None) -> np.ndarray:
    """(N, C) probabilities -> class ids (N,), or for multi-label a (N, C) 0/1 matrix."""
    probs = np.asarray(probs)
    if multi_label:
        thr = 0.5 if threshold is None else threshold
        return (probs >= np.asarray(thr, dtype=probs.dtype)).astype(np.int64)
    if threshold is not None:
        return (probs[:, 1] >= threshold).astype(np.int64)
    return probs.argmax(-1)


def score(probs, y, names: Sequence[str], *, multi_label: bool = False,
          threshold: float | Sequence[float] | None = None, loss: float | None = None) -> dict | None:
    """Metrics of (N, C) probabilities against true labels: class ids (N,), or multi-hot (N, C)
    rows for multi-label (then "accuracy" is subset accuracy, as scikit-learn's). None for no
    texts (an empty split, `--split 0.9,0.1,0`): no figure is better than a 0.00% accuracy."""
    probs = np.asarray(probs)
    y = np.asarray(y)
    if len(y) == 0:
        return None
    pred = decide(probs, multi_label=multi_label, threshold=threshold)
    if multi_label:
        from .multilabel import multilabel_metrics

        m = multilabel_metrics(y, pred, list(names), loss=loss)
        m["accuracy"] = m["subset_accuracy"]
        return m
    return compute_metrics(y, pred, probs, list(names), loss=loss)


def logit_metrics(logits: torch.Tensor, labels: torch.Tensor, names: Sequence[str], *, weight=None,
                  temperature: float = 1.0, threshold=None) -> dict | None:
    """`score` of a split's logits, with the loss training minimises (weighted cross-entropy,
    or binary cross-entropy with `weight` as pos_weight when `labels` are multi-hot floats).
    None for an empty split."""
    import torch.nn.functional as F

    if len(labels) == 0:
        return None
    multi = labels.is_floating_point()
    if multi:
        from .multilabel import bce_loss

        loss = float(bce_loss(logits, labels, weight))
    else:
        loss = float(F.cross_entropy(logits.float() / temperature, labels, weight=weight))
    probs = probabilities(logits, multi_label=multi, temperature=temperature)
    return score(probs.numpy(), labels.numpy(), names, multi_label=multi, threshold=threshold, loss=loss)
