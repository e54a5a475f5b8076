"""Labels: `LabelMap` (names <-> indices, serialised as a JSON list) and label parsing (a cell
-> a label name, or a sorted list of names for multi-label data). No torch here."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence

from ..errors import DataError, UserError


def _label_value(value, label_sep: str | None, path, line: int, column: str):
    """A cell -> label string, sorted list (multi-label), or None when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, list):
        names = []
        for v in value:
            names.append(_label_scalar(v, path, line, column))
        names = sorted({n for n in names if n})
        return names or None
    s = _label_scalar(value, path, line, column)
    if label_sep is not None:
        parts = sorted({p.strip() for p in s.split(label_sep) if p.strip()})
        return parts or None
    return s or None


def _label_scalar(v, path, line, column) -> str:
    if isinstance(v, str):
        return v.strip()
    if isinstance(v, (bool, int, float)) and not (isinstance(v, float) and math.isnan(v)):
        if isinstance(v, float) and v.is_integer():
            v = int(v)  # 1.0 -> "1": what pandas writes of an integer column that has a missing value
        return json.dumps(v)  # 1 -> "1", true -> "true": integer labels stay as their string
    if v is None:
        return ""
    raise DataError(
        f"a label must be a string, number or list, found {type(v).__name__}",
        file=path,
        line=line,
        field=column,
    )


def list_literals(labels: Sequence) -> list | None:
    """Every label of a single-label read parsed as the list it is written as, where each is a
    list literal of names or numbers: `['sport', 'politics']` (what pandas' to_csv writes of a
    column of lists) or `["sport", "politics"]`; else None. Such a file is multi-label (its
    lists go through `_label_value` as a JSON list does), not one class per combination."""
    import ast

    if not labels or not all(isinstance(lab, str) and lab.startswith("[") and lab.endswith("]") for lab in labels):
        return None
    parsed = []
    for lab in labels:
        try:
            value = ast.literal_eval(lab)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return None
        if not isinstance(value, list) or not all(isinstance(v, (str, int)) and not isinstance(v, bool)
                                                  for v in value):
            return None
        parsed.append(value)
    return parsed


def case_variants(labels: Iterable, lines: Sequence[int]) -> list[list[tuple[str, int, int]]]:
    """Label names that differ only in case or spacing ('Spam', 'spam', ' SPAM'), grouped: each
    group a list of (name, rows, first line), most rows first. Such names are distinct classes
    to training, which is what `read_table` warns of; most often they are one class typed two
    ways."""
    seen: dict[str, dict[str, list[int]]] = {}
    for lab, line in zip(labels, lines):
        for name in lab if isinstance(lab, list) else [lab]:
            seen.setdefault(" ".join(name.casefold().split()), {}).setdefault(name, [0, line])[0] += 1
    return [sorted(((n, c, first) for n, (c, first) in names.items()), key=lambda g: (-g[1], g[2]))
            for names in seen.values() if len(names) > 1]


_INT_RE = re.compile(r"[+-]?\d+\Z")


def _label_sort_key(names: Iterable[str]):
    names = list(names)
    if names and all(_INT_RE.match(n) for n in names):
        return lambda n: (int(n), n)
    return lambda n: n


class LabelMap:
    """Label names <-> indices. Order is the given list; `from_labels` sorts (numerically when
    every name is an integer, so "2" < "10"). Serialised as a plain JSON list of names."""

    def __init__(self, names: Sequence[str], multi_label: bool = False):
        names = list(names)
        if not names:
            raise UserError("a label map needs at least one label")
        for n in names:
            if not isinstance(n, str) or not n:
                raise UserError(f"label names must be non-empty strings, found {n!r}")
        dup = [n for n, c in Counter(names).items() if c > 1]
        if dup:
            raise UserError(f"duplicate label name '{dup[0]}' in the label map")
        self.names: list[str] = names
        self.multi_label = multi_label
        self._index = {n: i for i, n in enumerate(names)}

    @classmethod
    def from_labels(cls, labels: Iterable) -> LabelMap:
        """Sorted distinct names of `labels` (strings, or lists of strings for multi-label)."""
        seen: set[str] = set()
        multi = False
        for lab in labels:
            if isinstance(lab, list):
                multi = True
                seen.update(lab)
            else:
                seen.add(lab)
        return cls(sorted(seen, key=_label_sort_key(seen)), multi_label=multi)

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self):
        return iter(self.names)

    def __eq__(self, other) -> bool:
        return (
            isinstance(other, LabelMap)
            and self.names == other.names
            and self.multi_label == other.multi_label
        )

    def __repr__(self) -> str:
        return f"LabelMap({self.names!r}{', multi_label=True' if self.multi_label else ''})"

    def index(self, name: str) -> int:
        try:
            return self._index[name]
        except KeyError:
            raise DataError(f"unknown label '{name}' (known: {', '.join(self.names)})") from None

    def name(self, index: int) -> str:
        return self.names[index]

    def encode(self, labels: Iterable) -> list:
        """Names -> ids; a list of names (multi-label) -> a sorted list of ids."""
        return [
            sorted(self.index(n) for n in lab) if isinstance(lab, list) else self.index(lab)
            for lab in labels
        ]

    def decode(self, ids: Iterable) -> list:
        return [
            [self.names[i] for i in x] if isinstance(x, (list, tuple)) else self.names[int(x)]
            for x in ids
        ]

    def to_json(self) -> list[str]:
        return list(self.names)

    @classmethod
    def from_json(cls, data, multi_label: bool = False) -> LabelMap:
        """From `to_json()`'s list, or a JSON string of it."""
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except ValueError as e:
                raise UserError(f"label map is not valid JSON: {e}") from None
        if not isinstance(data, list):
            raise UserError("a label map must be a JSON list of label names")
        return cls(data, multi_label=multi_label)

