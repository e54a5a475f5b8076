"""Post-hoc choices made on the validation split: decision thresholds and temperature scaling.

This module owns turning held-out scores into (a) a decision threshold for two classes
(best F1 of the positive class, best macro-F1 of both, or the lowest threshold that reaches a
target precision), (b) one threshold per
label for multi-label outputs, and (c) a softmax temperature that minimises validation NLL,
with expected calibration error (ECE) before and after. numpy for counting, torch for NLL.

Threshold convention (the one predict.py applies): the positive class is predicted when its
probability is ``>= threshold``. A tuned threshold is placed half way between two adjacent
distinct validation scores, so it does not sit on a validation example and small score
noise on new data does not flip a tie.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .errors import UserError
from .evaluate import precision_recall_f1

OBJECTIVES = ("f1", "macro-f1", "precision")


class CalibrationError(UserError, ValueError):
    """A threshold or calibration request the data cannot satisfy (one-line UserError)."""


def _binary_inputs(probs_pos, y) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probs_pos, dtype=np.float64).ravel()
    t = np.asarray(y).ravel()
    if p.shape != t.shape:
        raise CalibrationError(f"{p.size} scores but {t.size} labels")
    if p.size == 0:
        raise CalibrationError("no validation examples to tune on")
    if not np.isin(t, (0, 1)).all():
        raise CalibrationError("labels must be 0/1 (1 = the positive class)")
    return p, t.astype(bool)


def _counts(tp, fp, fn, tn) -> dict:
    prec, rec, f1 = precision_recall_f1(tp, fp, fn)
    return {"precision": float(prec), "recall": float(rec), "f1": float(f1),
            "tp": int(tp), "fp": int(fp), "fn": int(fn), "tn": int(tn)}


def threshold_curve(probs_pos, y) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every distinct decision rule on the validation scores, from strictest to loosest.

    Returns (thresholds, tp, fp, n_pos): rule k predicts positive for the k+1 highest distinct
    scores; its threshold is half way to the next lower distinct score (the lowest score
    itself for the last rule, which predicts everything positive). The rule "nothing positive"
    is not listed (F1 0, precision undefined).
    """
    p, t = _binary_inputs(probs_pos, y)
    order = np.argsort(-p, kind="mergesort")
    ps, ts = p[order], t[order]
    # last index of each run of equal scores: a rule must take a whole tie or none of it
    ends = np.flatnonzero(np.r_[ps[1:] != ps[:-1], True])
    tp = np.cumsum(ts)[ends]
    fp = (ends + 1) - tp
    distinct = ps[ends]
    below = np.r_[distinct[1:], distinct[-1]]
    thresholds = np.where(np.arange(distinct.size) < distinct.size - 1, (distinct + below) / 2, distinct)
    return thresholds, tp, fp, np.int64(t.sum())


def tune_threshold(probs_pos, y, objective: str = "f1",
                   target_precision: float | None = None) -> tuple[float, dict]:
    """Decision threshold for the positive class, chosen on validation data.

    probs_pos: (N,) probability (or any score) of the positive class; y: (N,) 0/1 labels.
    objective ``"f1"``: the threshold with the highest F1 (ties: the higher threshold, i.e.
    fewer positives); ``"macro-f1"``: the highest mean of both classes' F1 (the search's
    criterion; ties the same way). ``"precision"``: the lowest threshold whose precision is at least
    `target_precision`, i.e. the most recall at that precision; a CalibrationError when no
    threshold reaches it. Returns (threshold, metrics at that threshold on these data:
    precision, recall, f1, tp, fp, fn, tn, threshold, objective).
    """
    if objective not in OBJECTIVES:
        raise CalibrationError(f"unknown threshold objective '{objective}' (choose from {', '.join(OBJECTIVES)})")
    thr, tp, fp, n_pos = threshold_curve(probs_pos, y)
    n = int(np.asarray(probs_pos).size)
    if objective in ("f1", "macro-f1"):
        if target_precision is not None:
            raise CalibrationError("target precision is only used with objective 'precision'")
        if n_pos == 0:
            raise CalibrationError("no positive examples in the validation data: F1 is 0 at every threshold")
        f1 = precision_recall_f1(tp, fp, n_pos - tp)[2]
        if objective == "macro-f1":  # the negative class's F1: its true positives tn = n_neg - fp
            f1 = (f1 + precision_recall_f1(n - n_pos - fp, n_pos - tp, fp)[2]) / 2
        k = int(np.argmax(f1))  # first maximum = the highest threshold among ties
    else:
        if target_precision is None or not 0.0 < target_precision <= 1.0:
            raise CalibrationError(f"objective 'precision' needs a target precision in (0, 1] (got {target_precision})")
        prec = precision_recall_f1(tp, fp, n_pos - tp)[0]
        ok = np.flatnonzero((prec >= target_precision - 1e-12) & (tp > 0))
        if ok.size == 0:
            raise CalibrationError(
                f"no threshold reaches precision {target_precision:g} on the validation data "
                f"(best {prec.max():.4f}, {n} examples)")
        k = int(ok[-1])  # the loosest rule that still reaches it
    m = _counts(tp[k], fp[k], n_pos - tp[k], n - n_pos - fp[k])
    m.update(threshold=float(thr[k]), objective=objective)
    if objective == "macro-f1":
        m["macro_f1"] = float(f1[k])
    if target_precision is not None:
        m["target_precision"] = float(target_precision)
    return float(thr[k]), m


def per_label_thresholds(probs, Y, default: float = 0.5) -> tuple[np.ndarray, list[dict]]:
    """Multi-label: one threshold per label (column), each maximising that label's F1.

    probs: (N, L) per-label probabilities (sigmoid outputs); Y: (N, L) 0/1 multi-hot targets.
    A label with no positive example in the data keeps `default` (its F1 is 0 at every
    threshold) and its metrics say ``"tuned": False``. Returns (thresholds (L,), metrics per label).
    """
    P = np.asarray(probs, dtype=np.float64)
    T = np.asarray(Y)
    if P.ndim != 2 or P.shape != T.shape:
        raise CalibrationError(f"probs {P.shape} and targets {T.shape} must both be (N, labels)")
    thresholds, report = np.full(P.shape[1], float(default)), []
    for j in range(P.shape[1]):
        if T[:, j].sum() == 0:
            report.append({"threshold": float(default), "tuned": False, "support": 0})
            continue
        thresholds[j], m = tune_threshold(P[:, j], T[:, j], "f1")
        m.update(tuned=True, support=int(T[:, j].sum()))
        report.append(m)
    return thresholds, report


# --------------------------------------------------------------------------------------------
# Temperature scaling and calibration error
# --------------------------------------------------------------------------------------------


def _logits_labels(logits, y) -> tuple[torch.Tensor, torch.Tensor]:
    z = torch.as_tensor(np.asarray(logits) if not torch.is_tensor(logits) else logits).double()
    t = torch.as_tensor(np.asarray(y) if not torch.is_tensor(y) else y).long().ravel()
    if z.ndim != 2 or z.shape[1] < 2 or z.shape[0] != t.numel():
        raise CalibrationError(f"logits must be (N, classes >= 2) with N labels; got {tuple(z.shape)} and {t.numel()}")
    if z.shape[0] == 0:
        raise CalibrationError("no validation examples to calibrate on")
    return z, t


def nll(logits, y, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of class ids `y` under softmax(logits / temperature)."""
    z, t = _logits_labels(logits, y)
    return float(F.cross_entropy(z / temperature, t))


def fit_temperature(logits, y, bounds: tuple[float, float] = (0.05, 20.0), iters: int = 60) -> float:
    """Temperature T > 0 minimising the NLL of softmax(logits / T) on validation data.

    logits: (N, C) (C >= 2, two-class models included); y: (N,) class ids. A golden-section
    search on log T: the NLL is convex in 1/T (log-sum-exp of a linear function, minus a
    linear one), so it has one minimum and the search finds it without a learning rate.
    Dividing by T does not change the argmax, so accuracy is unchanged. A result at a bound
    means the data wanted a more extreme T (e.g. separable validation data push T -> 0).
    """
    z, t = _logits_labels(logits, y)
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    f = lambda s: float(F.cross_entropy(z / math.exp(s), t))  # noqa: E731
    g = (math.sqrt(5) - 1) / 2
    a, b = lo, hi
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(iters):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = f(d)
    s = (a + b) / 2
    # The ends are candidates too (golden section only narrows inside the bracket).
    best = min((f(x), x) for x in (s, lo, hi))[1]
    return float(math.exp(best))


def apply_temperature(logits, temperature: float) -> torch.Tensor:
    """Calibrated probabilities softmax(logits / T), (N, C) float32."""
    z = torch.as_tensor(logits).float()
    return torch.softmax(z / float(temperature), dim=-1)


def ece(probs, y, n_bins: int = 15) -> float:
    """Expected calibration error of the top-class confidence, with `n_bins` equal-width bins.

    probs: (N, C) class probabilities, or (N,) probabilities of class 1 for two classes;
    y: (N,) class ids. ECE = sum over bins of (bin size / N) * |accuracy - mean confidence|.
    Bins are (lo, hi] so a confidence of exactly 1 lands in the last bin.
    """
    P = np.asarray(probs.detach().cpu() if torch.is_tensor(probs) else probs, dtype=np.float64)
    t = np.asarray(y.cpu() if torch.is_tensor(y) else y).ravel()
    if P.ndim == 1:
        P = np.stack([1 - P, P], axis=1)
    if P.shape[0] != t.size or t.size == 0:
        raise CalibrationError(f"{P.shape[0]} probability rows but {t.size} labels")
    conf = P.max(1)
    correct = P.argmax(1) == t
    bins = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        sel = bins == b
        if sel.any():
            total += sel.sum() * abs(correct[sel].mean() - conf[sel].mean())
    return float(total / t.size)


def calibration_report(val_logits, val_y, test_logits=None, test_y=None, n_bins: int = 15) -> dict:
    """Fit a temperature on validation logits; NLL and ECE before and after, per split.

    Returns ``{"temperature": T, "n_bins": n_bins, "val": {...}, "test": {...}}`` where each
    split holds nll_before, nll_after, ece_before, ece_after. Validation numbers are fitted on
    themselves (optimistic); the test ones are the honest check.
    """
    T = fit_temperature(val_logits, val_y)
    out = {"temperature": T, "n_bins": n_bins}
    for name, z, y in (("val", val_logits, val_y), ("test", test_logits, test_y)):
        if z is None or len(y) == 0:  # no test split: nothing to check on
            continue
        out[name] = {
            "nll_before": nll(z, y), "nll_after": nll(z, y, T),
            "ece_before": ece(apply_temperature(z, 1.0), y, n_bins),
            "ece_after": ece(apply_temperature(z, T), y, n_bins),
        }
    return out
