"""Metrics: from true labels, predicted labels and probabilities to numbers and a table.

This module owns the scoring of a classifier's predictions; it knows nothing of models or
torch (numpy only), so train.py, the CLI and the tests all score the same way.

Conventions (the same as scikit-learn's with `labels=range(C)` and `zero_division=0`):
a precision, recall or F1 whose denominator is zero is 0.0; macro-F1 averages over every
class in `label_names`; balanced accuracy averages recall over the classes present in
`y_true`; the confusion matrix has true classes as rows and predicted classes as columns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def roc_auc(y_true_binary, scores) -> float | None:
    """Area under the ROC curve from ranks (Mann-Whitney U); tied scores get average ranks.

    `y_true_binary` holds 1 for the positive class, 0 otherwise. None when either class is
    absent, since the AUC is undefined then.
    """
    y = np.asarray(y_true_binary).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    ranks = np.empty(s.size, dtype=np.float64)
    # Average 1-based ranks over runs of equal scores.
    boundaries = np.flatnonzero(np.diff(sorted_s)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [s.size]])
    avg = (starts + ends + 1) / 2.0  # mean of ranks start+1 .. end
    ranks[order] = np.repeat(avg, ends - starts)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def precision_recall_f1(tp, fp, fn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision tp / (tp + fp), recall tp / (tp + fn) and F1 2 tp / (2 tp + fp + fn) (= 2PR /
    (P + R)) of counts, arrays of any shape (or numbers), each 0 where it is 0 / 0: the one
    definition behind every report, the search's scores, the bootstrap and the threshold's tuning."""
    tp, fp, fn = (np.asarray(v, dtype=np.float64) for v in (tp, fp, fn))

    def ratio(a, b):
        return np.divide(a, b, out=np.zeros(np.broadcast(a, b).shape), where=b > 0)

    return ratio(tp, tp + fp), ratio(tp, tp + fn), ratio(2 * tp, 2 * tp + fp + fn)


def compute_metrics(
    y_true: Sequence[int],
    y_pred: Sequence[int],
    probs=None,
    label_names: Sequence[str] | None = None,
    loss: float | None = None,
) -> dict:
    """Accuracy, per-class precision/recall/F1/support, macro-F1, balanced accuracy, confusion
    matrix and (two classes) ROC-AUC.

    `y_true`, `y_pred`: class ids in `[0, C)`. `probs`: `(N, C)` class probabilities (or scores),
    or `(N,)` scores of class 1; only used for ROC-AUC, which is None for more than two classes,
    when `probs` is None, or when a class is missing from `y_true`. `label_names` defaults to
    "0".."C-1" with C from the data. Returns plain Python types (JSON-serialisable).
    """
    yt = np.asarray(y_true, dtype=np.int64).ravel()
    yp = np.asarray(y_pred, dtype=np.int64).ravel()
    if yt.shape != yp.shape:
        raise ValueError(f"y_true has {yt.size} items, y_pred {yp.size}")
    if label_names is None:
        c = int(max(yt.max(initial=-1), yp.max(initial=-1))) + 1
        label_names = [str(i) for i in range(max(c, 2))]
    names = [str(n) for n in label_names]
    c = len(names)
    for arr, what in ((yt, "y_true"), (yp, "y_pred")):
        if arr.size and (arr.min() < 0 or arr.max() >= c):
            raise ValueError(f"{what} has a class id outside [0, {c})")

    cm = np.zeros((c, c), dtype=np.int64)
    np.add.at(cm, (yt, yp), 1)
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    precision, recall, f1 = precision_recall_f1(tp, cm.sum(axis=0) - tp, support - tp)
    per_class = {name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                        "support": int(support[i])} for i, name in enumerate(names)}
    present = support > 0

    auc = None
    if probs is not None and c == 2 and yt.size:
        pr = np.asarray(probs, dtype=np.float64)
        if pr.ndim == 2:
            if pr.shape != (yt.size, c):
                raise ValueError(f"probs has shape {pr.shape}, expected ({yt.size}, {c})")
            scores = pr[:, 1]
        else:
            if pr.size != yt.size:
                raise ValueError(f"probs has {pr.size} items, expected {yt.size}")
            scores = pr.ravel()
        auc = roc_auc(yt == 1, scores)

    return {
        "n": int(yt.size),
        "accuracy": float(tp.sum() / yt.size) if yt.size else 0.0,
        "macro_f1": float(f1.mean()) if c else 0.0,
        "balanced_accuracy": float(recall[present].mean()) if present.any() else 0.0,
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
        "labels": names,
        "roc_auc": auc,
        "loss": None if loss is None else float(loss),
    }


# A difference in macro-F1 between two classifiers on the same texts comes with an interval:
# the percentiles of the difference over this many resamples of the texts (drawn with
# replacement, the same texts for both: a paired bootstrap), and McNemar's exact test on the
# texts only one of them gets right (Dietterich 1998's test for two classifiers on one test set).
BOOTSTRAP_RESAMPLES = 2000
INTERVAL_LEVEL = 0.95


def paired_difference(y_true, pred_a, pred_b, n_classes: int, *, resamples: int = BOOTSTRAP_RESAMPLES,
                      level: float = INTERVAL_LEVEL, seed: int = 0) -> dict:
    """Macro-F1 of predictions `pred_a` minus that of `pred_b` (class ids, the same texts), the
    `level` interval of that difference by a paired bootstrap, the number of texts each alone
    gets right, and McNemar's exact two-sided p-value on those. Seeded: the same inputs give
    the same interval. A resample only changes how many texts fall in each (true, a, b) triple,
    so it is drawn as multinomial counts of the triples: the cost does not grow with the texts."""
    y, a, b = (np.asarray(v, dtype=np.int64).ravel() for v in (y_true, pred_a, pred_b))
    c = n_classes
    triples, counts = np.unique((y * c + a) * c + b, return_counts=True)
    cell_a, cell_b = triples // c, (triples // (c * c)) * c + triples % c  # (true, a) and (true, b) cells
    n = int(counts.sum())
    drawn = np.random.default_rng(seed).multinomial(n, counts / n, size=resamples)  # (R, triples)
    scores = {}
    for name, cells in (("a", cell_a), ("b", cell_b)):
        cm = np.zeros((resamples + 1, c * c))  # row 0: the texts as they are
        for j, cell in enumerate(cells):
            cm[0, cell] += counts[j]
            cm[1:, cell] += drawn[:, j]
        scores[name] = _macro_f1(cm.reshape(-1, c, c))
    diffs = scores["a"] - scores["b"]
    lo, hi = np.quantile(diffs[1:], [(1 - level) / 2, (1 + level) / 2])
    a_only, b_only = int(np.sum((a == y) & (b != y))), int(np.sum((b == y) & (a != y)))
    return {"macro_f1_difference": float(diffs[0]), "interval": [float(lo), float(hi)], "level": level,
            "resamples": resamples, "n": n, "a_only_right": a_only, "b_only_right": b_only,
            "mcnemar_p": mcnemar_p(a_only, b_only)}


def _macro_f1(cm: np.ndarray) -> np.ndarray:
    """Macro-F1 of (..., C, C) confusion matrices, as compute_metrics gives it for one."""
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    return precision_recall_f1(tp, cm.sum(-2) - tp, cm.sum(-1) - tp)[2].mean(-1)


def macro_f1(y_true, y_pred, n_classes: int) -> float:
    """compute_metrics' macro-F1 of class ids over `n_classes` classes, bit for bit, without the
    rest of its report (per-class dicts, ROC-AUC): what the search scores its candidates by."""
    cell = np.asarray(y_true, dtype=np.int64) * n_classes + np.asarray(y_pred, dtype=np.int64)
    return float(_macro_f1(np.bincount(cell, minlength=n_classes * n_classes).reshape(n_classes, n_classes)))


def mcnemar_p(a_only: int, b_only: int) -> float:
    """Exact two-sided McNemar p-value: of the texts only one classifier gets right, the
    chance of a split at least this uneven if each were equally likely to be the one."""
    from scipy.stats import binom

    return float(min(1.0, 2 * binom.cdf(min(a_only, b_only), a_only + b_only, 0.5)))


def format_difference(d: dict, split: str, a_name: str = "this run", b_name: str = "TF-IDF") -> str:
    """paired_difference as one line of a report."""
    lo, hi = d["interval"]
    a_alone = "here" if a_name == "this run" else f"by {a_name}"
    return (f"{split} macro-F1, {a_name} - {b_name}: {d['macro_f1_difference']:+.4f} ({100 * d['level']:.0f}% "
            f"interval {lo:+.4f} to {hi:+.4f}, {d['resamples']:,} paired bootstrap resamples of the {d['n']:,} "
            f"texts); right only {a_alone}: {d['a_only_right']}, only by {b_name}: {d['b_only_right']} "
            f"(McNemar p {d['mcnemar_p']:.2g})")


def format_figure(v, pct=True) -> str:
    """A metric as the reports show it: a percentage, or 4 decimals (`pct=False`); '-' for none."""
    if v is None:
        return "-"
    return f"{100 * v:.2f}%" if pct else f"{v:.4f}"


def format_table(metrics_by_split: Mapping[str, Mapping], baseline: Mapping[str, Mapping] | None = None) -> str:
    """A fixed-width table of splits (columns) by metrics (rows), then each confusion matrix.

    `metrics_by_split`: e.g. `{"train": compute_metrics(...), "val": ..., "test": ...}`.
    `baseline`: the TF-IDF baseline's metrics by split, shown as extra columns ("test TF-IDF")
    for validation and test, so every figure stands beside the baseline's on the same texts.
    """
    splits = [s for s, m in metrics_by_split.items() if m is not None]
    if not splits:
        return "(no metrics)"
    ms = [metrics_by_split[s] for s in splits]
    extra = [s for s in splits if baseline and baseline.get(s)]
    cm_splits = list(splits)
    splits = splits + [f"{s} TF-IDF" for s in extra]
    ms = ms + [baseline[s] for s in extra]
    names = list(ms[0].get("labels", []))
    rows: list[tuple[str, list[str]]] = [
        ("examples", [str(m.get("n", "-")) for m in ms]),
        ("accuracy", [format_figure(m.get("accuracy")) for m in ms]),
        ("macro F1", [format_figure(m.get("macro_f1")) for m in ms]),
        ("balanced accuracy", [format_figure(m.get("balanced_accuracy")) for m in ms]),
    ]
    for name in names:
        rows.append(
            (f"F1 {name}", [format_figure((m.get("per_class") or m.get("per_label") or {}).get(name, {}).get("f1"))
                            for m in ms])
        )
    if any(m.get("roc_auc") is not None for m in ms):
        rows.append(("ROC-AUC", [format_figure(m.get("roc_auc"), pct=False) for m in ms]))
    if any(m.get("loss") is not None for m in ms):
        rows.append(("loss", [format_figure(m.get("loss"), pct=False) for m in ms]))

    w0 = max(len(r[0]) for r in rows)
    widths = [max(len(s), *(len(r[1][j]) for r in rows)) for j, s in enumerate(splits)]
    out = ["  ".join([" " * w0] + [s.rjust(w) for s, w in zip(splits, widths)])]
    for label, vals in rows:
        out.append("  ".join([label.ljust(w0)] + [v.rjust(w) for v, w in zip(vals, widths)]))

    for s, m in zip(cm_splits, ms):
        if m.get("confusion_matrix"):
            out += ["", *format_confusion(s, list(m.get("labels", names)), m["confusion_matrix"])]
    return "\n".join(out)


# How wide a printed confusion matrix may be: past it the columns are headed by class numbers,
# and where even that is wider (about 25 classes and more), the most frequent confusions are
# listed instead (the matrix is in metrics.json and in `evaluate --json`'s file).
CONFUSION_WIDTH = 120
TOP_CONFUSIONS = 10


def format_confusion(split: str, labels: list[str], cm: list[list[int]]) -> list[str]:
    """A confusion matrix as lines: columns headed by the class names; by class numbers where the
    names make it wider than CONFUSION_WIDTH; else the TOP_CONFUSIONS most frequent (true,
    predicted) pairs."""
    def matrix(row_labels, heads):
        cw = max([len(x) for x in heads] + [len(str(v)) for row in cm for v in row])
        lw = max(len(x) for x in row_labels)
        return ["  ".join([" " * lw] + [x.rjust(cw) for x in heads])] + [
            "  ".join([x.ljust(lw)] + [str(v).rjust(cw) for v in row]) for x, row in zip(row_labels, cm)]

    title = f"confusion matrix ({split}; rows true, columns predicted"
    named = matrix(labels, labels)
    if max(map(len, named)) <= CONFUSION_WIDTH:
        return [title + ")"] + named
    numbered = matrix([f"{i + 1:>{len(str(len(labels)))}} {x}" for i, x in enumerate(labels)],
                      [str(i + 1) for i in range(len(labels))])
    if max(map(len, numbered)) <= CONFUSION_WIDTH:
        return [title + ", numbered as the rows)"] + numbered
    pairs = sorted(((v, i, j) for i, row in enumerate(cm) for j, v in enumerate(row) if i != j and v),
                   key=lambda p: (-p[0], p[1], p[2]))
    head = (f"confusion matrix ({split}): {len(labels)} x {len(labels)} classes, too wide to print (metrics.json "
            "and `evaluate --json` hold it); "
            + (f"the {min(TOP_CONFUSIONS, len(pairs))} most frequent confusions (true -> predicted: texts):"
               if pairs else "no text confused"))
    return [head] + [f"  {labels[i]} -> {labels[j]}: {v}" for v, i, j in pairs[:TOP_CONFUSIONS]]
