"""Splitting: `parse_split`, `prepare` (conflicts, duplicates, label map, stratified split,
balancing) and `reference_split` (the book's chapter-6 split, row for row). No torch here."""

from __future__ import annotations

import logging
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import DataError, UserError
from .labels import LabelMap
from .readers import Table

log = logging.getLogger(__name__)


@dataclass
class Split:
    """One split: texts, label ids (int, or sorted list of ints when multi-label), source lines."""

    texts: list[str]
    labels: list
    lines: list[int]

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class Prepared:
    train: Split
    val: Split
    test: Split
    label_map: LabelMap
    report: dict


def parse_split(spec: str | Sequence[float]) -> tuple[float, float, float]:
    """`"0.7,0.1,0.2"` (or `"70,10,20"`) -> (train, val, test) fractions.

    Three non-negative numbers summing to 1 (or 100); train must be > 0; val or test may be 0.
    """
    if isinstance(spec, str):
        parts = [p.strip() for p in spec.replace("/", ",").split(",")]
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise UserError(
                f"--split '{spec}': expected three numbers such as 0.7,0.1,0.2"
            ) from None
    else:
        values = [float(v) for v in spec]
    if len(values) != 3:
        raise UserError(
            f"--split {spec!r}: expected three numbers (train,val,test), got {len(values)}"
        )
    if any(not math.isfinite(v) or v < 0 for v in values):
        raise UserError(f"--split {spec!r}: fractions must be non-negative numbers")
    total = sum(values)
    if abs(total - 100) < 1e-6:
        values = [v / 100 for v in values]
    elif abs(total - 1) > 1e-6:
        raise UserError(f"--split {spec!r}: fractions sum to {total:g}, not 1")
    if values[0] <= 0:
        raise UserError(f"--split {spec!r}: the train fraction must be > 0")
    return values[0], values[1], values[2]


def _allocate(n: int, fracs: Sequence[float]) -> list[int]:
    """Split n items by fractions (largest remainder), giving every non-zero split one if it can."""
    exact = [n * f for f in fracs]
    counts = [math.floor(round(e, 9)) for e in exact]
    order = sorted(range(len(fracs)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    for i, f in enumerate(fracs):
        if f > 0 and counts[i] == 0:
            donor = max(range(len(fracs)), key=lambda j: counts[j])
            if counts[donor] > 1:
                counts[donor] -= 1
                counts[i] += 1
    return counts


def _label_key(lab):
    return tuple(lab) if isinstance(lab, list) else lab


def prepare(
    table: Table,
    split: Sequence[float] | str = (0.7, 0.1, 0.2),
    seed: int = 123,
    dedupe: bool = True,
    balance: str = "none",
    min_per_class: int | None = None,
    test_table: Table | None = None,
    max_texts: int | None = None,
) -> Prepared:
    """Clean and split a table: conflicts, duplicates, label map, stratified split, balancing.

    - Conflicting texts (the same text under different labels) are dropped entirely when
      `dedupe` is on: there is no way to know which label is right, and keeping both copies
      would put one text in two splits with opposite targets. They are counted either way.
    - Exact duplicates (same text, same label) keep their first occurrence when `dedupe` is on;
      without it a duplicate can land in train and test at once and inflate test accuracy.
    - The split is stratified: each class (each label combination for multi-label) is shuffled
      with `numpy.random.default_rng(seed)` and cut by the fractions (largest remainder), so the
      result depends only on the table's rows, their order and the seed.
    - `balance="undersample"` undersamples every class of the TRAIN split to its smallest class;
      val and test keep the natural distribution.
    - A class with fewer than `min_per_class` rows (default: one per non-empty split) cannot
      be trained and measured: single-label, it is left out (its rows with it), with a warning
      naming it, as AutoGluon does with a label too rare to split (multi-label: an error naming
      it). A table with one class left is an error.
    - `max_texts` (`--max-texts`): where more texts than that remain after the above, a
      stratified sample of that many is split instead (`_sample`): every class keeps its share
      and at least what one text per split needs; single-label only. With `test_table` it
      samples `table` (train and validation) and the test file stays whole.
    - `test_table` (a file of its own, `--test-data`) is the test split as it is, cleaned by the
      same rule; `table` then gives train and validation only, in the ratio of the split's first
      two fractions, less (with `dedupe`) any text that is also a test text. A test label that
      `table` lacks is an error naming the file.

    `report` holds rows_read, skipped, conflicting_texts, conflicting_rows_removed,
    duplicates_removed, sampled ({"from": ..., "to": ...} texts, or None), rows_used,
    class_counts, splits (per-class counts per split), balance and undersampled ({"before":
    ..., "after": ...} of train, or None); with `test_table`, also
    test_source, test_rows_read, test_duplicates_removed, test_conflicting_rows_removed and
    test_texts_removed_from_training.
    """
    fracs = parse_split(split) if isinstance(split, str) else parse_split(list(split))
    if balance not in ("none", "undersample"):
        raise UserError(f"unknown balance '{balance}' (choose none or undersample)")
    if max_texts is not None and max_texts < 1:
        raise UserError(f"--max-texts must be a positive number of texts, got {max_texts}")
    test_texts: set[str] = set()
    if test_table is not None:
        fracs = (fracs[0] / (fracs[0] + fracs[1]), fracs[1] / (fracs[0] + fracs[1]), 0.0)
        test_keep, _, test_conflict_rows, test_duplicates = _dedupe(test_table, dedupe)
        test_texts = {test_table.texts[i] for i in test_keep} if dedupe else set()
    keep, n_conflicting, conflict_rows, duplicates = _dedupe(table, dedupe)
    in_test = [i for i in keep if table.texts[i] in test_texts] if test_texts else []
    if in_test:  # a test text in training inflates the test figures: the test file keeps it
        keep = [i for i in keep if table.texts[i] not in test_texts]
    rng = np.random.default_rng(seed)  # one generator: the sample, the split, then the undersampling
    sampled = None
    if max_texts is not None and len(keep) > max_texts:
        if table.multi_label:
            raise UserError("--max-texts is not supported for multi-label data")
        sampled = {"from": len(keep)}
        keep = _sample(table, keep, max_texts, _texts_needed(fracs, min_per_class), rng)
        sampled["to"] = len(keep)
    kept_labels = [table.labels[i] for i in keep]
    class_counts: Counter = Counter()  # rows per class (per label, multi-label)
    for lab in kept_labels:
        class_counts.update(lab if isinstance(lab, list) else [lab])
    left_out, why = _too_small(table, class_counts, len(kept_labels), fracs, dedupe, min_per_class)
    if left_out:
        keep = [i for i in keep if table.labels[i] not in left_out]
        kept_labels = [table.labels[i] for i in keep]
    label_map = LabelMap.from_labels(kept_labels)
    _check_classes(table, label_map, dedupe, left_out)
    if left_out:
        log.warning("%s: left out %d class%s with %s: %s; add texts to keep %s", table.source, len(left_out),
                    "" if len(left_out) == 1 else "es", why, _named(left_out), "it" if len(left_out) == 1 else "them")

    ids = label_map.encode(kept_labels)
    parts = _stratified_parts(ids, fracs, rng, table.multi_label)
    undersampled = None
    if balance == "undersample":
        if table.multi_label:
            raise UserError("balance=undersample is not supported for multi-label data")
        parts[0], undersampled = _undersample(parts[0], ids, label_map, rng)

    def make(positions):
        return Split(
            texts=[table.texts[keep[p]] for p in positions],
            labels=[ids[p] for p in positions],
            lines=[table.lines[keep[p]] for p in positions],
        )

    splits = [make(p) for p in parts]
    if test_table is not None:
        splits[2] = _test_split(test_table, test_keep, label_map, table.multi_label, left_out)
    report = {
        "source": table.source,
        "text_column": table.text_column,
        "rows_read": len(table),
        "skipped": dict(table.skipped),
        "dedupe": dedupe,
        "conflicting_texts": n_conflicting,
        "conflicting_rows_removed": conflict_rows,
        "duplicates_removed": duplicates,
        "sampled": sampled,
        "rows_used": len(keep),
        "class_counts": {n: class_counts[n] for n in label_map.names},
        "split": list(fracs),
        "seed": seed,
        "splits": {
            name: _split_counts(sp, label_map) for name, sp in zip(("train", "val", "test"), splits)
        },
        "balance": balance,
        "undersampled": undersampled,
        "classes_left_out": left_out,
    }
    if test_table is not None:
        report |= {"test_source": test_table.source, "test_rows_read": len(test_table),
                   "test_duplicates_removed": test_duplicates, "test_conflicting_rows_removed": test_conflict_rows,
                   "test_texts_removed_from_training": len(in_test)}
    return Prepared(*splits, label_map=label_map, report=report)


def _test_split(test_table: Table, keep: list[int], label_map: LabelMap, multi: bool, left_out: dict[str, int]
                ) -> Split:
    """The rows `keep` of a test file as a split, its labels encoded by the training data's map
    (`left_out`: the training data's classes too small to train, _too_small)."""
    if test_table.multi_label != multi:
        raise DataError("single-label and multi-label files mixed: the test file's labels are "
                        + ("lists" if test_table.multi_label else "single names"), file=test_table.source)
    known = set(label_map.names)
    for i in keep:
        lab = test_table.labels[i]
        unknown = sorted(set(lab if isinstance(lab, list) else [lab]) - known)
        if unknown and unknown[0] in left_out:
            n = left_out[unknown[0]]
            raise DataError(f"label '{unknown[0]}' (line {test_table.lines[i]}) has {n} training text"
                            f"{'' if n == 1 else 's'}, too few to train it, and was left out", file=test_table.source)
        if unknown:
            raise DataError(f"label '{unknown[0]}' (line {test_table.lines[i]}) is not in the training data "
                            f"({', '.join(label_map.names)})", file=test_table.source)
    return Split(texts=[test_table.texts[i] for i in keep],
                 labels=label_map.encode([test_table.labels[i] for i in keep]),
                 lines=[test_table.lines[i] for i in keep])


def _dedupe(table: Table, dedupe: bool) -> tuple[list[int], int, int, int]:
    """(rows kept, conflicting texts, conflicting rows removed, duplicates removed)."""
    labels_of: dict[str, set] = defaultdict(set)
    for text, lab in zip(table.texts, table.labels):
        labels_of[text].add(_label_key(lab))
    conflicting = {t for t, labs in labels_of.items() if len(labs) > 1}
    keep: list[int] = []
    seen: set[str] = set()
    duplicates = conflict_rows = 0
    for i, text in enumerate(table.texts):
        if dedupe and text in conflicting:
            conflict_rows += 1
            continue
        if dedupe and text in seen:
            duplicates += 1
            continue
        seen.add(text)
        keep.append(i)
    if not keep:
        raise DataError("no rows left after removing conflicting texts", file=table.source)
    return keep, len(conflicting), conflict_rows, duplicates


# The most of the texts that classes too small to split may hold and be left out: past it the
# label column is more likely not a class at all (a score, an id) than a class with a long tail.
LEFT_OUT_MAX = 0.1
LEFT_OUT_SHOWN = 10  # classes a message names of those left out (the report holds every one)


def _texts_needed(fracs, min_per_class: int | None) -> int:
    """The texts a class needs to be trained and measured: `min_per_class`, by default one per
    non-empty split."""
    return sum(f > 0 for f in fracs) if min_per_class is None else int(min_per_class)


def _sample(table: Table, keep: list[int], n_max: int, need: int, rng) -> list[int]:
    """A stratified sample of about `n_max` of the rows `keep` (positions in `table`), in the
    file's order: each class its share (largest remainder), and at least `need` rows (or all it
    has) so that it can still be split; so a little over `n_max` where rare classes are topped up."""
    by_class: dict = defaultdict(list)
    for i in keep:
        by_class[table.labels[i]].append(i)
    names = sorted(by_class)
    shares = _allocate(n_max, [len(by_class[c]) / len(keep) for c in names])
    chosen: list[int] = []
    for c, share in zip(names, shares):
        rows = by_class[c]
        chosen += [rows[j] for j in rng.choice(len(rows), size=min(len(rows), max(share, need)), replace=False)]
    return sorted(chosen)


def _too_small(table: Table, counts: Counter, n_rows: int, fracs, dedupe: bool, min_per_class: int | None
               ) -> tuple[dict[str, int], str]:
    """({class: rows}, why) of the classes with fewer rows than `min_per_class` (default: one
    per non-empty split), which a single-label table leaves out while they hold at most
    LEFT_OUT_MAX of its rows (past it an error asks whether the label column is one); in a
    multi-label table (a text holds several labels) an error naming the first."""
    need = _texts_needed(fracs, min_per_class)
    small = {name: counts[name] for name in sorted(counts, key=lambda n: (counts[n], n)) if counts[name] < need}
    if not small:
        return {}, ""
    fewer = f"fewer than {need} texts" + (" after deduplication" if dedupe else "")
    if table.multi_label:
        name = next(iter(small))
        raise DataError(f"label '{name}' has {fewer} ({small[name]}); need at least {need} per label"
                        + (f" for a {'/'.join(f'{f:g}' for f in fracs)} split (one per split)" if min_per_class is None
                           else "") + "; add examples, remove the label or change --split", file=table.source)
    where = f" (one per split of {'/'.join(f'{f:g}' for f in fracs)})" if min_per_class is None else ""
    rows = sum(small.values())
    if rows > LEFT_OUT_MAX * n_rows:
        raise DataError(f"{rows} of {n_rows} texts are in {len(small)} class{'' if len(small) == 1 else 'es'} "
                        f"with {fewer}{where}, "
                        f"too many to leave out: is '{table.label_column}' the class column? (a score or an id "
                        f"is not: {_named(small)})", file=table.source)
    return small, fewer + where


def _named(left_out: dict[str, int]) -> str:
    """"'c' 1, 'b' 2 and 3 more": the classes left out with their texts, the first LEFT_OUT_SHOWN."""
    shown = ", ".join(f"'{n}' {c}" for n, c in list(left_out.items())[:LEFT_OUT_SHOWN])
    return shown + (f" and {len(left_out) - LEFT_OUT_SHOWN} more" if len(left_out) > LEFT_OUT_SHOWN else "")


def _check_classes(table, label_map, dedupe, left_out: dict[str, int]) -> None:
    """An error for a single class (left after `left_out`, _too_small's)."""
    if len(label_map) < 2:
        raise DataError(
            f"only one class ('{label_map.names[0]}') in label column '{table.label_column}'"
            + (" after removing duplicates and conflicts" if dedupe else "")
            + (f" and leaving out {len(left_out)} with too few texts ({_named(left_out)})" if left_out else "")
            + "; a classifier needs at least two",
            file=table.source,
        )


def _stratified_parts(ids: list, fracs, rng, multi: bool) -> list[list[int]]:
    """Positions of `ids` for train / val / test: each stratum shuffled and cut by `fracs`."""
    nonzero = sum(f > 0 for f in fracs)
    # Strata: the class, or for multi-label the label combination (rare ones pooled).
    strata: dict = defaultdict(list)
    for pos, y in enumerate(ids):
        strata[tuple(y) if multi else y].append(pos)
    if multi:
        pooled = [p for k in list(strata) if len(strata[k]) < nonzero for p in strata.pop(k)]
        if pooled:
            strata[("rare",)] = sorted(pooled)
    parts: list[list[int]] = [[], [], []]
    for key in sorted(strata, key=str):
        members = np.asarray(strata[key])
        members = members[rng.permutation(len(members))]
        counts = _allocate(len(members), fracs)
        start = 0
        for s, c in enumerate(counts):
            parts[s].extend(members[start : start + c].tolist())
            start += c
    return [[p[i] for i in rng.permutation(len(p))] if p else [] for p in parts]


def _undersample(train: list[int], ids: list, label_map: LabelMap, rng) -> tuple[list[int], dict]:
    """Every class of `train` cut to the smallest class's count; (new train, report entry)."""
    by_class: dict[int, list[int]] = defaultdict(list)
    for p in train:
        by_class[ids[p]].append(p)
    target = min(len(v) for v in by_class.values())
    new_train: list[int] = []
    for y in sorted(by_class):
        members = by_class[y]
        if len(members) > target:
            pick = np.sort(rng.choice(len(members), size=target, replace=False))
            members = [members[i] for i in pick]
        new_train.extend(members)
    undersampled = {
        "before": {label_map.name(y): len(v) for y, v in sorted(by_class.items())},
        "after": {label_map.name(y): target for y in sorted(by_class)},
    }
    return [new_train[i] for i in rng.permutation(len(new_train))], undersampled


def _split_counts(sp: Split, label_map: LabelMap) -> dict[str, int]:
    counts = Counter()
    for y in sp.labels:
        counts.update(y if isinstance(y, list) else [y])
    return {n: counts[i] for i, n in enumerate(label_map.names)}


def reference_split(
    table: Table, seed: int = 123, train_frac: float = 0.7, val_frac: float = 0.1
) -> Prepared:
    """The book's chapter 6 split, row for row, without pandas.

    The book (pandas): undersample the larger class to the smaller one's count with
    `df[df.Label == "ham"].sample(n_spam, random_state=123)`, concat [ham subset, spam],
    shuffle with `df.sample(frac=1, random_state=123)`, then cut 70/10/20 by position
    (`train_end = int(n * 0.7)`, `val_end = train_end + int(n * 0.1)`). No deduplication.

    pandas' `sample` is `RandomState(seed).choice(n, size=k, replace=False)`, which is
    `RandomState(seed).permutation(n)[:k]`; a fresh RandomState per call, as pandas makes one
    from the integer each time. The book reads SMSSpamCollection with quoting on (5,572 rows);
    for its exact rows use `load_dataset("sms-spam", quoting=True)`. Two classes only.
    """
    if table.multi_label:
        raise UserError("reference_split is for single-label data")
    label_map = LabelMap.from_labels(table.labels)
    if len(label_map) != 2:
        raise DataError(
            f"reference_split needs exactly two classes, found {len(label_map)}",
            file=table.source,
        )
    positions = {n: [i for i, lab in enumerate(table.labels) if lab == n] for n in label_map}
    small, large = sorted(label_map.names, key=lambda n: (len(positions[n]), n))
    if len(positions[small]) == len(positions[large]):  # tie: sample the first class
        large, small = label_map.names[0], label_map.names[1]
    n_small = len(positions[small])
    large_pos = np.asarray(positions[large])
    subset = large_pos[np.random.RandomState(seed).permutation(len(large_pos))[:n_small]]
    balanced = np.concatenate([subset, np.asarray(positions[small], dtype=subset.dtype)])
    shuffled = balanced[np.random.RandomState(seed).permutation(len(balanced))]
    n = len(shuffled)
    train_end = int(n * train_frac)
    val_end = train_end + int(n * val_frac)
    ids = label_map.encode(table.labels)

    def make(pos):
        pos = pos.tolist()
        return Split(
            texts=[table.texts[p] for p in pos],
            labels=[ids[p] for p in pos],
            lines=[table.lines[p] for p in pos],
        )

    splits = [
        make(shuffled[:train_end]),
        make(shuffled[train_end:val_end]),
        make(shuffled[val_end:]),
    ]
    report = {
        "source": table.source,
        "rows_read": len(table),
        "reference": "book chapter 6",
        "seed": seed,
        "class_counts": {k: len(v) for k, v in positions.items()},
        "undersampled": {"class": large, "before": len(large_pos), "after": n_small},
        "splits": {
            name: _split_counts(sp, label_map) for name, sp in zip(("train", "val", "test"), splits)
        },
    }
    return Prepared(*splits, label_map=label_map, report=report)
